// Issue 21: the manager never acts on a root the user did not name, knows
// every copy of ltocache's shim, says when a filter matches nothing, and
// reads a configuration file; the shim says which root it used instead of
// one that was set. One describe per item of the issue; real links (clang,
// ld.lld) compared byte for byte with an uncached link where the shim links.
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { ltocache, makeEntry, makeKey, onDisk } from '../helpers/cache.js';
import {
	asNobody,
	CLI,
	describeIf,
	entriesBelow,
	fakeLinker,
	hasToolchain,
	isRoot,
	NO_CONFIG,
	nodeOnlyDir,
	nodeRuns,
	recorded,
	recordedEnv,
	SHIM,
	scratchRoot,
	shimDir,
	stagedShim,
	uncachedReference,
	withReadOnly,
} from '../helpers/tools.js';

const scratch = scratchRoot();

/** `ltocache ARGS` with exactly this environment (no LTOCACHE_DIR unless given). */
const cli = (args: string[], env: Record<string, string>, cwd?: string) =>
	execa(process.execPath, [CLI, ...args], { reject: false, extendEnv: false, env: { ...NO_CONFIG, PATH: process.env.PATH, ...env }, cwd });

describeIf(hasToolchain && isRoot, 'clang, ld.lld and root (for nobody and read-only mounts)')('issue 21', () => {
	let objects: string[];
	let reference: Buffer;
	let shims: string;
	let node: string;
	beforeAll(async () => {
		({ objects, reference } = uncachedReference(scratch('objects')));
		shims = shimDir(scratch('shims'), stagedShim(scratch('pkg')), ['ld.lld']);
		node = nodeOnlyDir(scratch('node'));
	});

	/** A tree nobody cannot write, and a link in it through the shim as nobody, asking for .thinlto-cache there. */
	const linkAsNobody = (env: Record<string, string>) => {
		const tree = scratch('tree');
		const out = path.join(scratch('out'), 'out.o');
		fs.chmodSync(path.dirname(out), 0o777);
		const run = asNobody(
			'sh',
			['-c', 'cd "$0" && exec ld.lld "$@"', tree, '--thinlto-cache-dir=.thinlto-cache', '-r', '-o', out, ...objects],
			{
				PATH: `${shims}:${node}:/usr/bin:/bin`,
				HOME: '/nonexistent',
				KERNELRELEASE: '6.1.0-item',
				...env,
			},
		);
		return { run, out };
	};

	describe('1: a root the user set that cannot be used', () => {
		/** A cache home with entries that a command acting on the wrong root would touch. */
		function homeWithEntries() {
			const home = scratch('home');
			const root = path.join(home, '.cache/ltocache');
			const key = makeKey(root, '6.1.0-1', '/src/one');
			for (let i = 0; i < 3; i++) makeEntry(key, { ageDays: 100 });
			return { home, root };
		}

		it.each([
			['a file', () => '/etc/passwd', 'ENOTDIR'],
			[
				'a symlink loop',
				() => {
					const dir = scratch('loop');
					fs.symlinkSync('b', path.join(dir, 'a'));
					fs.symlinkSync('a', path.join(dir, 'b'));
					return path.join(dir, 'a');
				},
				'ELOOP',
			],
		])('is an error for stats, prune and clear when LTOCACHE_DIR is %s, and the default root is untouched', async (_, make, code) => {
			const { home, root } = homeWithEntries();
			const before = onDisk(root);
			const bad = make();
			for (const args of [['clear'], ['prune', '--max-size', '1B'], ['stats'], ['stats', '--zero']]) {
				const result = await cli(args, { HOME: home, LTOCACHE_DIR: bad });
				expect(result.exitCode, args.join(' ')).toBe(1);
				expect(result.stdout).toBe('');
				expect(result.stderr).toBe(
					`ltocache: LTOCACHE_DIR=${bad} is not usable: ${code}; fix it or unset LTOCACHE_DIR (see ltocache doctor)`,
				);
			}
			expect(onDisk(root)).toEqual(before);
		});

		it('is an error when a read-only LTOCACHE_DIR cannot be written, as nobody; XDG_CACHE_HOME likewise', async () => {
			const readOnly = scratch('ro-root');
			fs.chmodSync(readOnly, 0o555);
			for (const [variable, value, shown] of [
				['LTOCACHE_DIR', readOnly, `LTOCACHE_DIR=${readOnly}`],
				['XDG_CACHE_HOME', readOnly, `XDG_CACHE_HOME=${readOnly} (${readOnly}/ltocache)`],
			]) {
				const result = await asNobody(process.execPath, [CLI, 'clear'], { PATH: '/usr/bin:/bin', HOME: '/nonexistent', [variable]: value });
				expect(result).toMatchObject({ exitCode: 1, stdout: '' });
				expect(result.stderr).toBe(`ltocache: ${shown} is not usable: EACCES; fix it or unset ${variable} (see ltocache doctor)`);
			}
		});

		it('refuses a relative LTOCACHE_DIR with exit status 2: it would name another place in every directory', async () => {
			const result = await cli(['stats'], { HOME: scratch('home'), LTOCACHE_DIR: 'cache' });
			expect(result).toMatchObject({ exitCode: 2, stdout: '' });
			expect(result.stderr).toBe("ltocache: invalid LTOCACHE_DIR 'cache' (an absolute path)");
		});

		it('the shim still links, byte-identical, and says once which root it used instead and why', async () => {
			const home = scratch('home');
			fs.chmodSync(home, 0o777);
			const xdg = path.join(home, 'xdg');
			fs.mkdirSync(xdg, { mode: 0o777 });
			fs.chmodSync(xdg, 0o777);
			const { run, out } = linkAsNobody({ LTOCACHE_DIR: '/etc/passwd', XDG_CACHE_HOME: xdg });
			const result = await run;
			expect(result.exitCode).toBe(0);
			expect(result.stderr).toBe(`ltocache: LTOCACHE_DIR=/etc/passwd is not usable: ENOTDIR; using ${xdg}/ltocache`);
			expect(fs.readFileSync(out)).toEqual(reference);
			expect(entriesBelow(path.join(xdg, 'ltocache')).length).toBeGreaterThan(0);
		});

		it('the shim says so for XDG_CACHE_HOME falling back to /var/tmp too; with neither set the fallback stays quiet', async () => {
			const script = `mount -t tmpfs tmpfs /var/tmp && cd "$0" &&
				runuser -u nobody -- env -i LTOCACHE_AUTO_PRUNE=0 LTOCACHE_SYSTEM_CONFIG=/nonexistent/ltocache.conf PATH="$1" HOME=/nonexistent $2 ld.lld --thinlto-cache-dir=.thinlto-cache -r -o "$3" "$4" "$5"`;
			const tree = scratch('tree');
			const outDir = scratch('out');
			fs.chmodSync(outDir, 0o777);
			const out = path.join(outDir, 'out.o');
			const link = (assignment: string) =>
				execa('unshare', ['-m', 'sh', '-c', script, tree, `${shims}:${node}:/usr/bin:/bin`, assignment, out, ...objects], {
					reject: false,
				});
			const set = await link('XDG_CACHE_HOME=/nonexistent');
			expect(set).toMatchObject({
				exitCode: 0,
				stderr: 'ltocache: XDG_CACHE_HOME=/nonexistent (/nonexistent/ltocache) is not usable: EACCES; using /var/tmp/ltocache-65534',
			});
			expect(fs.readFileSync(out)).toEqual(reference);
			const unset = await link('LTOCACHE_QUIET_CHECK=1');
			expect(unset).toMatchObject({ exitCode: 0, stderr: '' });
			expect(fs.readFileSync(out)).toEqual(reference);
		});

		it('doctor names the variable that chose the root, and fails on one that is set and unusable', async () => {
			const root = scratch('named');
			const ok = await cli(['doctor', '--json'], { HOME: scratch('home'), LTOCACHE_DIR: root, LTOCACHE_MODULES: scratch('none') });
			const findings = (r: typeof ok) =>
				(JSON.parse(r.stdout) as { findings: { level: string; check: string; message: string }[] }).findings;
			expect(findings(ok)).toContainEqual({ level: 'ok', check: 'cache root', message: `${root} (set by LTOCACHE_DIR) is usable` });
			const bad = await cli(['doctor', '--json'], {
				HOME: scratch('home'),
				LTOCACHE_DIR: '/etc/passwd',
				LTOCACHE_MODULES: scratch('none'),
			});
			expect(bad.exitCode).toBe(1);
			expect(findings(bad).find((f) => f.check === 'cache root')).toMatchObject({
				level: 'fail',
				message: expect.stringMatching(/^LTOCACHE_DIR=\/etc\/passwd is not usable: ENOTDIR: links use .* instead, and the manager refuses/),
			});
		});
	});

	describe('2: every copy of the shim is ltocache', () => {
		it("a user's shim in front of another copy's runs the real linker, not the other shim", async () => {
			const fake = scratch('fake');
			fakeLinker(fake, ['ld.lld']);
			const other = shimDir(scratch('other'), stagedShim(scratch('pkg2')), ['ld.lld']);
			const record = path.join(scratch('rec'), 'r');
			for (const via of [{}, { LTOCACHE_NO_FAST_PATH: '1' }]) {
				fs.rmSync(record, { force: true });
				const result = await execa(path.join(shims, 'ld.lld'), ['-r'], {
					reject: false,
					extendEnv: false,
					env: { ...NO_CONFIG, PATH: `${shims}:${other}:${fake}:${node}`, FAKE_LD_RECORD: record, ...via },
				});
				expect(result.exitCode).toBe(0);
				// One hop: the chain holds this shim and the linker, never the other copy.
				expect(recordedEnv(record)).toContain(`LTOCACHE_CHAIN=${shims}/ld.lld\n${fake}/ld.lld`);
				expect(recorded(record).map(String)).toEqual([`${fake}/ld.lld`, '-r']);
			}
		});

		it("install replaces another copy's links and dangling ones into a removed install, never another file; uninstall removes them all", async () => {
			const dir = scratch('bin');
			const other = stagedShim(scratch('pkg3'));
			fs.symlinkSync(other, path.join(dir, 'ld.lld'));
			// npm uninstall -g before ltocache uninstall: a link into node_modules/ltocache that is gone.
			fs.symlinkSync('/usr/lib/node_modules/ltocache/bin/ld.lld', path.join(dir, 'ld.lld-16'));
			// Dangling, but not into ltocache: somebody else's.
			fs.symlinkSync('/opt/llvm/bin/lld', path.join(dir, 'ld.lld-15'));
			const env = { PATH: `${dir}:/usr/bin:/bin`, HOME: scratch('home') };
			const install = await cli(['install', '--dir', dir], env);
			expect(install.stdout).toContain(`linked ${dir}/ld.lld -> ${SHIM} (it pointed at another ltocache: ${other})`);
			expect(install.stdout).toContain(
				`linked ${dir}/ld.lld-16 -> ${SHIM} (it pointed at another ltocache: /usr/lib/node_modules/ltocache/bin/ld.lld)`,
			);
			// Not a linker on PATH, and not ltocache's: never touched.
			expect(install.exitCode).toBe(0);
			expect(fs.readlinkSync(path.join(dir, 'ld.lld-15'))).toBe('/opt/llvm/bin/lld');
			expect(fs.readlinkSync(path.join(dir, 'ld.lld'))).toBe(SHIM);
			expect(fs.readlinkSync(path.join(dir, 'ld.lld-16'))).toBe(SHIM);

			// Back to other copies' links, then uninstall from this copy: all of ltocache's go.
			fs.rmSync(path.join(dir, 'ld.lld'));
			fs.symlinkSync(other, path.join(dir, 'ld.lld'));
			fs.rmSync(path.join(dir, 'ld.lld-16'));
			fs.symlinkSync('/usr/lib/node_modules/ltocache/bin/ld.lld', path.join(dir, 'ld.lld-16'));
			const doctor = await cli(['doctor'], { ...env, LTOCACHE_MODULES: scratch('none') });
			expect(doctor.stdout).toContain(`warn  ${dir}/ld.lld-16: points into a removed ltocache install`);
			expect(doctor.stdout).toMatch(new RegExp(`ld\\.lld on PATH: ${dir}/ld\\.lld is the shim of another ltocache installation`));
			const uninstall = await cli(['uninstall', '--dir', dir], env);
			expect(uninstall.exitCode).toBe(0);
			for (const name of ['ld.lld', 'ld.lld-16']) expect(uninstall.stdout.split('\n')).toContain(`removed ${dir}/${name}`);
			expect(fs.readdirSync(dir)).toEqual(['ld.lld-15']);
		});
	});

	describe('3: filters that match nothing', () => {
		it('fail for clear, prune and stats, listing the releases there are, and remove nothing', async () => {
			const root = scratch('root');
			const key = makeKey(root, '6.1.0-13-amd64', '/src/one');
			makeEntry(key);
			makeKey(root, '6.12.9', '/src/two');
			const before = onDisk(root);
			for (const args of [
				['clear', '--kernel', '6.1'],
				['prune', '--kernel', 'nope'],
				['stats', '--kernel', 'nope'],
			]) {
				const result = await ltocache(root, args);
				expect(result.exitCode, args.join(' ')).toBe(1);
				expect(result.stderr).toBe(`ltocache: --kernel ${args[2]} matches nothing in ${root} (releases cached: 6.1.0-13-amd64, 6.12.9)`);
				expect(result.stdout).toBe('');
			}
			expect(onDisk(root)).toEqual(before);
		});

		it('"kept" says which set it counts', async () => {
			const root = scratch('root');
			for (const release of ['6.1.0-1', '6.1.0-2']) makeEntry(makeKey(root, release, '/src/one'));
			const result = await ltocache(root, ['prune', '--kernel', '6.1.0-1', '--max-size', '1G']);
			expect(result.stdout).toBe(`removed 0 entries (0 B)\nkept 1 entry (100 B) of kernel 6.1.0-1 in ${root}`);
			const json = JSON.parse((await ltocache(root, ['prune', '--kernel', '6.1.0-1', '--max-size', '1G', '--json'])).stdout);
			expect(json).toMatchObject({ scope: 'kernel 6.1.0-1', remaining: { entries: 1, bytes: 100 } });
		});
	});

	describe('4: small wrongs', () => {
		it('stats --zero --json prints JSON', async () => {
			const root = scratch('root');
			makeKey(root, '6.1.0-1', '/src/one');
			const result = await ltocache(root, ['stats', '--zero', '--json']);
			expect(JSON.parse(result.stdout)).toEqual({ root, zeroed: 1 });
		});

		it('install --system --dry-run as a user says it would fail; install --dir FILE is one line, exit 2', async () => {
			const dry = await asNobody(process.execPath, [CLI, 'install', '--system', '--dry-run'], {
				PATH: '/usr/bin:/bin',
				HOME: '/nonexistent',
			});
			expect(dry).toMatchObject({
				exitCode: 1,
				stdout: '',
				stderr: 'ltocache: cannot write /usr/local/bin (EACCES); --system needs root: sudo ltocache install --system',
			});
			const file = await cli(['install', '--dir', '/etc/passwd'], { HOME: scratch('home') });
			expect(file).toMatchObject({
				exitCode: 2,
				stdout: '',
				stderr: "ltocache: invalid --dir '/etc/passwd': not a directory; see 'ltocache install --help'",
			});
		});

		it('prune --max-size 0 and --max-age 0 are no limit, as in LLVM and ccache, not an emptied cache', async () => {
			const root = scratch('root');
			const key = makeKey(root, '6.1.0-1', '/src/one');
			for (let i = 0; i < 3; i++) makeEntry(key, { ageDays: 400 });
			const before = onDisk(root);
			for (const args of [
				['prune', '--max-size', '0'],
				['prune', '--max-age', '0'],
				['prune', '--policy', 'cache_size_files=0'],
			]) {
				expect(await ltocache(root, args)).toMatchObject({ exitCode: 0, stderr: '' });
				expect(onDisk(root)).toEqual(before);
			}
		});
	});

	describe('5: doctor and messages', () => {
		it('lists a kernel once where one modules directory links to the other, and says node is fine', async () => {
			const modules = scratch('modules');
			const build = path.join(modules, '6.1.0-lto/build');
			fs.mkdirSync(build, { recursive: true });
			fs.writeFileSync(path.join(build, '.config'), 'CONFIG_LTO_CLANG_THIN=y\n');
			fs.writeFileSync(path.join(build, 'Makefile'), 'KBUILD_LDFLAGS += --thinlto-cache-dir=.thinlto-cache\n');
			const alias = path.join(scratch('usr'), 'modules');
			fs.symlinkSync(modules, alias);
			const result = await cli(['doctor'], {
				HOME: scratch('home'),
				PATH: `${shims}:${node}:/usr/bin:/bin`,
				LTOCACHE_MODULES: `${modules}:${alias}`,
			});
			expect(result.stdout.split('\n').filter((l) => l.includes('kernel 6.1.0-lto'))).toHaveLength(1);
			expect(result.stdout).toMatch(new RegExp(`^ok {4}node on PATH: ${node}/node \\(v\\d+`, 'm'));
		});

		it('tells a user to use sudo for a system install', async () => {
			const result = await asNobody(process.execPath, [CLI, 'doctor'], { PATH: '/usr/bin:/bin', HOME: '/nonexistent' });
			expect(result.stdout).toMatch(/root's default PATH: .* not the shim: run sudo ltocache install --system/);
		});

		it('counts in words: 1 entry, 1 module directory', async () => {
			const root = scratch('root');
			makeEntry(makeKey(root, '6.1.0-1', '/src/one'), { bytes: 100 });
			expect((await ltocache(root, ['clear'])).stdout).toBe(`removed 1 entry (100 B)\nkept 0 entries (0 B) in ${root}`);
			expect((await ltocache(root, ['stats', '--zero'])).stdout).toBe(`zeroed the counters of 1 module directory in ${root}`);
		});
	});

	describe('6: a configuration file', () => {
		/** A user's configuration file and the machine's, both in scratch space. */
		function configs(user: string, system = '') {
			const dir = scratch('conf');
			const files = { LTOCACHE_CONFIG: path.join(dir, 'config'), LTOCACHE_SYSTEM_CONFIG: path.join(dir, 'ltocache.conf') };
			if (user) fs.writeFileSync(files.LTOCACHE_CONFIG, user);
			if (system) fs.writeFileSync(files.LTOCACHE_SYSTEM_CONFIG, system);
			return files;
		}

		it('prune reads the limits from it, the user file over the machine one and the environment over both', async () => {
			const root = scratch('root');
			const key = makeKey(root, '6.1.0-1', '/src/one');
			for (let i = 0; i < 4; i++) makeEntry(key, { bytes: 1000, ageDays: i });
			const files = configs('# mine\nmax-files = 3\n', 'max-files = 1\nmax-size = 1G\n');
			expect((await ltocache(root, ['prune', '--json'], files)).exitCode).toBe(0);
			expect(onDisk(root).size).toBe(3);
			expect((await ltocache(root, ['prune'], { ...files, LTOCACHE_MAX_FILES: '2' })).exitCode).toBe(0);
			expect(onDisk(root).size).toBe(2);
		});

		it('config shows each value and where it comes from, sets one keeping the other lines, and unsets it', async () => {
			const files = configs('# kept\nmode = add\n', 'max-size = 2G\n');
			const env = { ...files, LTOCACHE_MAX_AGE: '3d', HOME: scratch('home') };
			const shown = await cli(['config'], env);
			expect(shown.exitCode).toBe(0);
			const lines = shown.stdout.split('\n');
			expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^max-size +2G +${files.LTOCACHE_SYSTEM_CONFIG}:1$`)));
			expect(lines).toContainEqual(expect.stringMatching(/^max-age +3d +LTOCACHE_MAX_AGE$/));
			expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^mode +add +${files.LTOCACHE_CONFIG}:2$`)));
			expect(lines).toContainEqual(expect.stringMatching(/^max-files +0 +default$/));
			// Root writes the machine's file; --system says so explicitly for anyone.
			const set = await cli(['config', '--system', 'max-size', '10G'], env);
			expect(set).toMatchObject({ exitCode: 0, stdout: `max-size = 10G in ${files.LTOCACHE_SYSTEM_CONFIG}` });
			expect(fs.readFileSync(files.LTOCACHE_SYSTEM_CONFIG, 'utf8')).toBe('max-size = 10G\n');
			expect((await cli(['config', 'max-size'], env)).stdout).toBe('10G');
			// Options go before KEY or after it.
			const age = await cli(['config', 'max-age', '7d', '--system'], env);
			expect(age.stdout).toBe(
				`max-age = 7d in ${files.LTOCACHE_SYSTEM_CONFIG}\nnote: LTOCACHE_MAX_AGE=3d in this environment overrides it`,
			);
			expect(await cli(['config', '--unset', 'max-size', '--system'], env)).toMatchObject({ exitCode: 0 });
			expect(fs.readFileSync(files.LTOCACHE_SYSTEM_CONFIG, 'utf8')).toBe('max-age = 7d\n');
			expect(fs.readFileSync(files.LTOCACHE_CONFIG, 'utf8')).toBe('# kept\nmode = add\n');
		});

		it('a user writes their own file', async () => {
			const home = scratch('home');
			fs.chmodSync(home, 0o777);
			const result = await asNobody(process.execPath, [CLI, 'config', 'max-size', '1G'], {
				PATH: '/usr/bin:/bin',
				HOME: home,
				LTOCACHE_SYSTEM_CONFIG: '/nonexistent/ltocache.conf',
			});
			expect(result).toMatchObject({ exitCode: 0, stdout: `max-size = 1G in ${home}/.config/ltocache/config` });
			expect(fs.readFileSync(path.join(home, '.config/ltocache/config'), 'utf8')).toBe('max-size = 1G\n');
		});

		it('rejects bad values and bad lines with exit 2, naming the file and line, changing nothing', async () => {
			const files = configs('max-size = lots\n');
			const root = scratch('root');
			makeEntry(makeKey(root, '6.1.0-1', '/src/one'), { ageDays: 400 });
			const before = onDisk(root);
			const prune = await ltocache(root, ['prune'], files);
			expect(prune).toMatchObject({ exitCode: 2, stdout: '' });
			expect(prune.stderr).toMatch(new RegExp(`^ltocache: invalid max-size \\(${files.LTOCACHE_CONFIG}:1\\) 'lots' \\(expected`));
			fs.writeFileSync(files.LTOCACHE_CONFIG, 'max_size 5G\n');
			const line = await ltocache(root, ['prune'], files);
			expect(line).toMatchObject({
				exitCode: 2,
				stderr: `ltocache: ${files.LTOCACHE_CONFIG}:1: 'max_size 5G' is not key = value`,
			});
			expect(onDisk(root)).toEqual(before);
			const set = await cli(['config', '--system', 'mode', 'fast'], files);
			expect(set).toMatchObject({
				exitCode: 2,
				stderr: "ltocache: mode 'fast' is not one of redirect, drop, add; see 'ltocache config --help'",
			});
			expect(fs.existsSync(files.LTOCACHE_SYSTEM_CONFIG)).toBe(false);
		});

		it('stats shows the limits and how full the cache is', async () => {
			const root = scratch('root');
			makeEntry(makeKey(root, '6.1.0-1', '/src/one'), { bytes: 512 });
			const files = configs('max-size = 1K\nmax-age = 2w\n');
			const text = await ltocache(root, ['stats'], files);
			expect(text.stdout.split('\n').at(-1)).toBe('limits: max-size 1 KiB, max-age 14d; 50% full (ltocache config)');
			const json = JSON.parse((await ltocache(root, ['stats', '--json'], files)).stdout);
			expect(json.limits).toEqual({ maxBytes: 1024, maxAge: 14 * 86_400_000, maxFiles: null, usedPercent: 50 });
		});

		it("mode = add in the file gives a link with no cache flag a cache, through both of the shim's halves, byte-identical", async () => {
			const files = configs('mode = add\n');
			for (const via of [{}, { LTOCACHE_NO_FAST_PATH: '1' }]) {
				const xdg = scratch('xdg');
				const cwd = scratch('cwd');
				const out = path.join(cwd, 'out.o');
				const result = await execa(path.join(shims, 'ld.lld'), ['-r', '-o', out, ...objects], {
					cwd,
					reject: false,
					extendEnv: false,
					env: { ...NO_CONFIG, PATH: `${shims}:${node}:/usr/bin:/bin`, XDG_CACHE_HOME: xdg, ...files, ...via },
				});
				expect(result).toMatchObject({ exitCode: 0, stderr: '' });
				expect(fs.readFileSync(out)).toEqual(reference);
				expect(entriesBelow(path.join(xdg, 'ltocache')).length).toBeGreaterThan(0);
			}
		});

		it("the shim's daily prune honours auto-prune = false", async () => {
			const root = scratch('root');
			const files = configs('auto-prune = false\n');
			const { run } = linkAsNobody({ ...files, LTOCACHE_DIR: root, LTOCACHE_AUTO_PRUNE: '' });
			fs.chmodSync(root, 0o777);
			expect(await run).toMatchObject({ exitCode: 0, stderr: '' });
			expect(entriesBelow(root).length).toBeGreaterThan(0);
			expect(fs.existsSync(path.join(root, 'ltocache.last-prune'))).toBe(false);
			const on = linkAsNobody({ ...configs('auto-prune = true\n'), LTOCACHE_DIR: root, LTOCACHE_AUTO_PRUNE: '' });
			expect(await on.run).toMatchObject({ exitCode: 0, stderr: '' });
			expect(fs.existsSync(path.join(root, 'ltocache.last-prune'))).toBe(true);
		});
	});

	describe('7: the link path', () => {
		it('a flag inside a response file that must be redirected starts Node once', async () => {
			const tree = scratch('tree');
			const rsp = path.join(scratch('rsp'), 'args.rsp');
			fs.writeFileSync(rsp, `"--thinlto-cache-dir=.thinlto-cache" -r ${objects.join(' ')}\n`);
			const out = path.join(scratch('out'), 'out.o');
			const ran = path.join(scratch('ran'), 'log');
			const root = scratch('root');
			const result = await withReadOnly(
				tree,
				'sh',
				['-c', 'cd "$0" && exec "$@"', tree, path.join(shims, 'ld.lld'), `@${rsp}`, '-o', out],
				{
					extendEnv: false,
					env: { ...NO_CONFIG, PATH: `${shims}:${node}:/usr/bin:/bin`, NODE_RAN: ran, LTOCACHE_DIR: root, LTOCACHE_AUTO_PRUNE: '0' },
				},
			);
			expect(result).toMatchObject({ exitCode: 0, stderr: '' });
			expect(nodeRuns(ran)).toBe(1);
			expect(fs.readFileSync(out)).toEqual(reference);
			expect(entriesBelow(root).length).toBeGreaterThan(0);
		});
	});

	describe('8: a per-user install', () => {
		it('works as the README says, without root, and man finds the page', async () => {
			const readme = fs.readFileSync(path.resolve(CLI, '../../README.md'), 'utf8');
			expect(readme).toContain('npm i -g --prefix ~/.local ./ltocache-*.tgz');
			// dist/ is built (npm test builds first); packing without prepack keeps another test's pack from racing this one's build.
			const out = scratch('pack');
			expect(
				(await execa('npm', ['pack', '--ignore-scripts', '--pack-destination', out], { cwd: path.resolve(CLI, '../..'), reject: false }))
					.exitCode,
			).toBe(0);
			const [tarball] = fs.readdirSync(out).filter((f) => f.endsWith('.tgz'));
			const home = scratch('home');
			fs.chmodSync(home, 0o777);
			// The registry as root reaches it (a proxy's CA, from root's npm configuration), and no retries to wait out.
			const cafile = (await execa('npm', ['config', 'get', 'cafile'])).stdout.trim();
			const env = {
				PATH: `${node}:/usr/bin:/bin`,
				HOME: home,
				npm_config_cache: path.join(home, '.npm'),
				npm_config_fetch_retries: '0',
				npm_config_update_notifier: 'false',
				...(cafile && cafile !== 'null' ? { npm_config_cafile: cafile } : {}),
				...(process.env.NODE_EXTRA_CA_CERTS ? { NODE_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS } : {}),
			};
			const install = await asNobody(
				'npm',
				['i', '-g', '--prefix', `${home}/.local`, '--no-audit', '--no-fund', path.join(out, tarball)],
				env,
			);
			expect(install.exitCode, String(install.stderr)).toBe(0);
			const version = await asNobody(`${home}/.local/bin/ltocache`, ['--version'], env);
			expect(version.stdout).toMatch(/^ltocache \d+\.\d+\.\d+$/);
			const man = await asNobody('man', ['-w', 'ltocache'], { ...env, PATH: `${home}/.local/bin:${env.PATH}` });
			expect(man.exitCode).toBe(0);
			expect(man.stdout).toMatch(new RegExp(`^${home}/\\.local/.*/ltocache\\.1$`));
		}, 180_000);
	});
});
