// ltocache install, uninstall, doctor and demo, run as users run them.
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { beforeAll, expect, it } from 'vitest';
import {
	asNobody,
	CLI,
	describeIf,
	hasToolchain,
	isRoot,
	NO_CONFIG,
	repo,
	SHIM,
	scratchRoot,
	shimDir,
	stagedShim,
} from '../helpers/tools.js';

const scratch = scratchRoot();
const nodeDir = path.dirname(process.execPath);
const cli = (args: string[], env: Record<string, string> = {}) =>
	execa(process.execPath, [CLI, ...args], {
		reject: false,
		env: { ...NO_CONFIG, PATH: `${nodeDir}:/usr/bin:/bin`, ...env },
		extendEnv: false,
	});

describeIf(hasToolchain, 'clang and ld.lld (Debian: clang lld)')('ltocache install and uninstall', () => {
	it('links ld.lld and every ld.lld-NN on PATH to the shim, idempotently', async () => {
		const dir = scratch('bin');
		const versions = fs.readdirSync('/usr/bin').filter((n) => /^ld\.lld-\d+$/.test(n));
		const first = await cli(['install', '--dir', dir]);
		expect(first.stderr).toBe('');
		expect(fs.readdirSync(dir).sort()).toEqual(['ld.lld', ...versions].sort());
		for (const name of fs.readdirSync(dir)) expect(fs.readlinkSync(path.join(dir, name))).toBe(SHIM);
		expect(first.stdout).toContain(`linked ${dir}/ld.lld -> ${SHIM}`);
		expect(first.stdout).toContain(`${dir} is not on your PATH`);

		const again = await cli(['install', '--dir', dir], { PATH: `${dir}:${nodeDir}:/usr/bin:/bin` });
		expect(again.exitCode).toBe(0);
		expect(again.stdout).toContain(`${dir}/ld.lld already points at the shim`);
		expect(again.stdout).not.toContain('not on your PATH');
		expect(fs.readdirSync(dir).sort()).toEqual(['ld.lld', ...versions].sort());
	});

	it('never replaces a file that is not its own, and uninstall removes only its own links', async () => {
		const dir = scratch('bin');
		const custom = path.join(dir, 'ld.lld');
		fs.writeFileSync(custom, '#!/bin/sh\n# a custom LLVM build\n', { mode: 0o755 });
		fs.symlinkSync('/usr/bin/ld.lld-16', path.join(dir, 'ld.lld-16'));

		const install = await cli(['install', '--dir', dir]);
		expect(install.exitCode).toBe(1);
		expect(install.stdout).toContain(`left ${custom} alone`);
		expect(fs.readFileSync(custom, 'utf8')).toContain('custom LLVM');
		expect(fs.readlinkSync(path.join(dir, 'ld.lld-16'))).toBe('/usr/bin/ld.lld-16');

		fs.symlinkSync(SHIM, path.join(dir, 'ld.lld-99'));
		for (let i = 0; i < 2; i++) {
			const uninstall = await cli(['uninstall', '--dir', dir]);
			expect(uninstall.exitCode).toBe(0);
			expect(fs.readdirSync(dir).sort()).toEqual(['ld.lld', 'ld.lld-16']);
		}
		expect(fs.readFileSync(custom, 'utf8')).toContain('custom LLVM');
	});

	it('leaves a copy of the shim (a file, not a link to it) alone: install links the other names, uninstall removes only its links', async () => {
		const dir = scratch('bin');
		const copy = path.join(dir, 'ld.lld');
		// Someone's own copy, perhaps edited: a file, which install replaces only when it is a link.
		fs.copyFileSync(SHIM, copy);
		fs.appendFileSync(copy, '# edited\n');
		const versions = fs.readdirSync('/usr/bin').filter((n) => /^ld\.lld-\d+$/.test(n));
		const install = await cli(['install', '--dir', dir]);
		expect(install).toMatchObject({ exitCode: 1, stderr: '' });
		expect(install.stdout).toContain(`left ${copy} alone`);
		expect(fs.readFileSync(copy, 'utf8')).toBe(`${fs.readFileSync(SHIM, 'utf8')}# edited\n`);
		for (const name of versions) expect(fs.readlinkSync(path.join(dir, name))).toBe(SHIM);
		const uninstall = await cli(['uninstall', '--dir', dir]);
		expect(uninstall.exitCode).toBe(0);
		expect(fs.readdirSync(dir)).toEqual(['ld.lld']);
		expect(fs.lstatSync(copy).isFile()).toBe(true);
	});

	it('--dry-run changes nothing; --system with --dir is a usage error', async () => {
		const dir = path.join(scratch('bin'), 'new');
		const dry = await cli(['install', '--dir', dir, '--dry-run']);
		expect(dry.exitCode).toBe(0);
		expect(dry.stdout).toContain(`(dry run) linked ${dir}/ld.lld`);
		expect(fs.existsSync(dir)).toBe(false);
		const both = await cli(['install', '--system', '--dir', dir]);
		expect(both).toMatchObject({
			exitCode: 2,
			stderr: "ltocache: --system and --dir cannot be used together; see 'ltocache install --help'",
		});
	});
});

describeIf(hasToolchain && isRoot, 'root (to run as nobody), clang and ld.lld')('ltocache doctor', () => {
	let modules = '';
	let staged = '';
	beforeAll(() => {
		// Installed kernels: ThinLTO with the in-tree cache flag, ThinLTO without it, and no LTO.
		modules = scratch('modules');
		const kernel = (release: string, config: string, makefile: string) => {
			const build = path.join(modules, release, 'build');
			fs.mkdirSync(build, { recursive: true });
			fs.writeFileSync(path.join(build, '.config'), config);
			fs.writeFileSync(path.join(build, 'Makefile'), makefile);
		};
		kernel(
			'6.1.0-lto',
			'CONFIG_LTO_CLANG=y\nCONFIG_LTO_CLANG_THIN=y\n',
			'KBUILD_LDFLAGS += --thinlto-cache-dir=$(extmod_prefix).thinlto-cache\n',
		);
		kernel('6.12.0-lto', 'CONFIG_LTO_CLANG_THIN=y\n', 'KBUILD_LDFLAGS += --lto-O2\n');
		kernel('6.1.0-gcc', 'CONFIG_LTO_NONE=y\n', 'KBUILD_LDFLAGS += --thinlto-cache-dir=x\n');
		staged = stagedShim(scratch('package'));
	});

	const doctor = (pathValue: string, extra: string[] = []) =>
		asNobody('node', [path.join(path.dirname(staged), 'ltocache'), 'doctor', ...extra], {
			PATH: pathValue,
			HOME: '/nonexistent',
			LTOCACHE_MODULES: modules,
		});

	it('fails for a ThinLTO kernel whose cache the user cannot write while the shim is not on PATH', async () => {
		const result = await doctor('/usr/bin:/bin');
		expect(result.exitCode).toBe(1);
		const lines = String(result.stdout).split('\n');
		expect(lines).toContainEqual(
			expect.stringMatching(/^fail {2}kernel 6\.1\.0-lto: .*\.thinlto-cache is not writable \(EACCES\).*ltocache install/),
		);
		expect(lines).toContainEqual(expect.stringMatching(/^ok {4}kernel 6\.12\.0-lto: .*without a cache directory/));
		expect(lines).toContainEqual(expect.stringMatching(/^ok {4}kernel 6\.1\.0-gcc: .*not built with Clang ThinLTO/));
		expect(lines).toContainEqual(
			expect.stringMatching(/^warn {2}ld\.lld on PATH: \/usr\/bin\/ld\.lld is the real linker \(.*LLD 1\d.*\), not the shim/),
		);
		expect(lines).toContainEqual(expect.stringMatching(/^warn {2}cache root: not usable: .*links will use \/var\/tmp\/ltocache-65534/));
	});

	it('is content once the shim is first on PATH, naming the real linker behind it', async () => {
		const shims = shimDir(scratch('shims'), staged);
		const result = await doctor(`${shims}:/usr/bin:/bin`, ['--json']);
		const { findings } = JSON.parse(String(result.stdout)) as { findings: { level: string; check: string; message: string }[] };
		expect(findings.filter((f) => f.level === 'fail')).toEqual([]);
		expect(result.exitCode).toBe(0);
		expect(findings).toContainEqual({
			level: 'ok',
			check: 'ld.lld on PATH',
			message: expect.stringMatching(new RegExp(`^${shims}/ld.lld is the shim; real linker /usr/bin/ld.lld \\(.*LLD`)),
		});
		expect(findings).toContainEqual({ level: 'ok', check: 'kernel 6.1.0-lto', message: expect.stringContaining('the shim redirects it') });
	});

	it("names each real linker's version behind the shim, and whether ltocache is tested with it", async () => {
		const shims = shimDir(scratch('shims'), staged, ['ld.lld', 'ld.lld-23']);
		const newer = scratch('newer');
		fs.writeFileSync(path.join(newer, 'ld.lld-23'), '#!/bin/sh\necho "Debian LLD 23.1.0 (compatible with GNU linkers)"\n', { mode: 0o755 });
		const result = await doctor(`${shims}:${newer}:/usr/bin:/bin`, ['--json']);
		const { findings } = JSON.parse(String(result.stdout)) as { findings: { level: string; check: string; message: string }[] };
		expect(findings).toContainEqual({
			level: 'ok',
			check: 'ld.lld on PATH',
			message: expect.stringMatching(
				new RegExp(`^${shims}/ld.lld is the shim; real linker /usr/bin/ld.lld \\(.*LLD 1\\d\\..*; tested: lld 14, 16, 19, 22\\)$`),
			),
		});
		expect(findings).toContainEqual({
			level: 'ok',
			check: 'ld.lld-23 on PATH',
			message: `${shims}/ld.lld-23 is the shim; real linker ${newer}/ld.lld-23 (Debian LLD 23.1.0 (compatible with GNU linkers); not tested: ltocache is tested with lld 14, 16, 19, 22)`,
		});
	});

	it('fails when the shim is in front but node, which runs it, is not on PATH', async () => {
		const shims = shimDir(scratch('shims'), staged);
		const lldOnly = scratch('lld-only');
		fs.symlinkSync('/usr/bin/ld.lld', path.join(lldOnly, 'ld.lld'));
		const result = await asNobody(process.execPath, [path.join(path.dirname(staged), 'ltocache'), 'doctor'], {
			PATH: `${shims}:${lldOnly}`,
			HOME: '/nonexistent',
			LTOCACHE_MODULES: modules,
		});
		expect(result.exitCode).toBe(1);
		expect(String(result.stdout)).toMatch(/^fail {2}node on PATH: the shim is first on PATH but node is not/m);
	});
});

describeIf(hasToolchain, 'clang and ld.lld (Debian: clang lld)')('ltocache demo', () => {
	it('shows the failure, the redirect and the reuse', async () => {
		const result = await cli(['demo']);
		expect(result.stderr).toBe('');
		expect(result.exitCode).toBe(0);
		expect(result.stdout).toMatch(/LLVM ERROR: (Permission denied|Read-only file system)/);
		expect(result.stdout).toMatch(/is not writable \((EACCES|EROFS)\); using .*\/6\.1\.0-demo\//);
		expect(result.stdout).toContain('no new entries: every module came from the cache');
		expect(result.stdout).toMatch(/^ {4}6\.1\.0-demo +no +2 /m);
	});

	it('names the packages to install when clang is missing', async () => {
		const result = await cli(['demo'], { PATH: scratch('empty') });
		expect(result.exitCode).toBe(1);
		expect(result.stderr).toMatch(
			/clang and ld\.lld not found on PATH .*apt install clang lld.*pacman -S clang lld.*dnf install clang lld/,
		);
	});
});

describeIf(isRoot && hasToolchain, 'root (for a private mount namespace), clang and ld.lld')(
	'a machine where ltocache is installed',
	() => {
		it('still gives the suite the real linkers, past this shim in /usr/local/bin and an older one', async () => {
			const staged = stagedShim(scratch('pkg'));
			// 0.1's shim: a Node script that loads the bundle.
			const old = scratch('old');
			fs.writeFileSync(path.join(old, 'ld.lld'), "#!/usr/bin/env node\nrequire('../dist/ld.lld.cjs').main();\n", { mode: 0o755 });
			const lookup = `import(${JSON.stringify(path.join(repo, 'dist/shared/pathsearch.js'))}).then((m) => {
			for (const name of ['ld.lld', 'ld.lld-16']) console.log(m.realLinker(name, process.env.PATH));
		})`;
			const script = `mount -t tmpfs tmpfs /usr/local/bin && ln -s "$0" /usr/local/bin/ld.lld && ln -s "$0" /usr/local/bin/ld.lld-16 &&
			PATH="/usr/local/bin:$1:/usr/bin:/bin" && export PATH && command -v ld.lld && exec "$2" -e "$3"`;
			const result = await execa('unshare', ['-m', 'sh', '-c', script, staged, old, process.execPath, lookup], { reject: false });
			expect(result).toMatchObject({ exitCode: 0, stderr: '' });
			// The build's ld.lld is the shim; what the tests take for the real one is lld.
			expect(result.stdout.split('\n')).toEqual(['/usr/local/bin/ld.lld', '/usr/bin/ld.lld', '/usr/bin/ld.lld-16']);
		});
	},
);

describeIf(isRoot && hasToolchain, 'root (for a private /usr/local/bin)')('ltocache uninstall, after install --system', () => {
	/** Runs `script` with a fresh, empty /usr/local/bin of its own; $0 is the staged ltocache. */
	const withSystemDir = (script: string, home: string) => {
		const staged = stagedShim(scratch('pkg'));
		const cli = path.join(path.dirname(staged), 'ltocache');
		const wrapped = `mount -t tmpfs tmpfs /usr/local/bin && chmod 755 /usr/local/bin && ${script}; status=$?; ls /usr/local/bin; exit $status`;
		return execa('unshare', ['-m', 'sh', '-c', wrapped, cli], {
			reject: false,
			env: { ...NO_CONFIG, PATH: `/usr/local/bin:${nodeDir}:/usr/sbin:/usr/bin:/sbin:/bin`, HOME: home },
			extendEnv: false,
		});
	};

	it("finds the links in /usr/local/bin without being told, and leaves none on root's PATH", async () => {
		const home = scratch('home');
		const result = await withSystemDir(
			`"${process.execPath}" "$0" install --system >/dev/null && "${process.execPath}" "$0" uninstall`,
			home,
		);
		expect(result.exitCode).toBe(0);
		expect(result.stdout).toContain('removed /usr/local/bin/ld.lld\n');
		expect(result.stdout).not.toMatch(/^ld\.lld/m); // nothing left in /usr/local/bin
	});

	it('says which links remain when it may not remove them, and fails', async () => {
		const home = scratch('home');
		fs.chmodSync(home, 0o777);
		const script = `"${process.execPath}" "$0" install --system >/dev/null &&
			runuser -u nobody -- env PATH="$PATH" HOME="$HOME" "${process.execPath}" "$0" uninstall`;
		const result = await withSystemDir(script, home);
		expect(result.exitCode).toBe(1);
		expect(result.stdout).toContain('left /usr/local/bin/ld.lld: cannot remove it (EACCES): sudo ltocache uninstall --system\n');
		expect(result.stdout).toMatch(/^ld\.lld$/m);
	});
});

describeIf(hasToolchain, 'clang and ld.lld')('the published package', () => {
	it('installs from its tarball with no install scripts and no npm warnings, and its shim links', async () => {
		const out = scratch('pack');
		const pack = await execa('npm', ['pack', '--pack-destination', out], { cwd: repo, reject: false });
		expect(pack.exitCode).toBe(0);
		const [tarball] = fs.readdirSync(out).filter((f) => f.endsWith('.tgz'));
		const prefix = scratch('prefix');
		const install = await execa(
			'npm',
			['install', '--global', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', path.join(out, tarball)],
			{
				reject: false,
			},
		);
		expect(install.exitCode).toBe(0);
		expect(install.stderr).not.toMatch(/warn/i);
		const installed = path.join(prefix, 'lib/node_modules/ltocache');
		expect(fs.existsSync(path.join(installed, 'dist/ld.lld.cjs'))).toBe(true);
		expect(fs.existsSync(path.join(installed, 'dist/ld.lld.meta.json'))).toBe(false);
		expect((await execa(path.join(prefix, 'bin/ltocache'), ['--version'])).stdout).toMatch(/^ltocache \d+\.\d+\.\d+$/);
		// Its shim, through both halves, runs the real linker.
		const shims = shimDir(scratch('shims'), path.join(installed, 'bin/ld.lld'), ['ld.lld']);
		for (const via of [{}, { LTOCACHE_NO_FAST_PATH: '1' }]) {
			const version = await execa(path.join(shims, 'ld.lld'), ['--version'], { env: { ...via, PATH: `${shims}:${process.env.PATH}` } });
			expect(version.stdout).toMatch(/LLD \d+/);
		}
	});
});

describeIf(hasToolchain, 'clang and ld.lld')('ltocache run', () => {
	/** `ltocache run ARGS` with its temporary directories in a scratch TMPDIR, to see that none is left. */
	const runVia = (args: string[], env: Record<string, string> = {}) => {
		const tmp = scratch('tmp');
		const child = execa(process.execPath, [CLI, 'run', ...args], {
			reject: false,
			env: { ...NO_CONFIG, PATH: `${nodeDir}:/usr/bin:/bin`, TMPDIR: tmp, ...env },
			extendEnv: false,
		});
		return { child, leftOver: () => fs.readdirSync(tmp) };
	};

	it('puts the shim first on PATH as ld.lld and every ld.lld-NN, and removes it afterwards', async () => {
		const { child, leftOver } = runVia([
			'--',
			'sh',
			'-c',
			'for n in ld.lld ld.lld-16; do readlink "$(command -v $n)"; done; echo "$LTOCACHE_MODE"',
		]);
		const result = await child;
		expect(result).toMatchObject({ exitCode: 0, stderr: '' });
		expect(result.stdout).toBe(`${SHIM}\n${SHIM}\n`);
		expect(leftOver()).toEqual([]);
		const drop = runVia(['--mode', 'drop', 'sh', '-c', 'echo "$LTOCACHE_MODE"']);
		expect((await drop.child).stdout).toBe('drop');
	});

	it("exits with the command's status, dies of its signal, and passes on the signals it gets", async () => {
		const status = runVia(['sh', '-c', 'exit 7']);
		expect((await status.child).exitCode).toBe(7);
		expect(status.leftOver()).toEqual([]);
		const killed = runVia(['sh', '-c', 'kill -SEGV $$']);
		expect((await killed.child).signal).toBe('SIGSEGV');
		expect(killed.leftOver()).toEqual([]);
		// SIGTERM sent to ltocache reaches the build, which ends of it; ltocache then does too.
		const dir = scratch('sig');
		const ready = path.join(dir, 'ready');
		const long = runVia(['sh', '-c', `trap 'echo got TERM; exit 143' TERM; touch ${ready}; while :; do sleep 0.05; done`]);
		while (!fs.existsSync(ready)) await new Promise((r) => setTimeout(r, 20));
		long.child.kill('SIGTERM');
		const ended = await long.child;
		expect(ended.stdout).toBe('got TERM');
		expect(ended.exitCode).toBe(143);
		expect(long.leftOver()).toEqual([]);
	});

	it('rejects a bad mode and a missing command in one line with status 2, and says when CMD is not there', async () => {
		for (const [args, message] of [
			[['--mode', 'fast', 'true'], "ltocache: --mode 'fast' is not one of redirect, drop, add; see 'ltocache run --help'"],
			[[], "ltocache: run needs a command: ltocache run -- CMD [ARGS...]; see 'ltocache run --help'"],
		] as const) {
			const { child, leftOver } = runVia([...args]);
			expect(await child).toMatchObject({ exitCode: 2, stderr: message });
			expect(leftOver()).toEqual([]);
		}
		const missing = await runVia(['no-such-command']).child;
		expect(missing).toMatchObject({ exitCode: 127, stderr: 'ltocache: cannot run no-such-command: not found on PATH' });
	});
});
