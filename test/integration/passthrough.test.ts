// The shim in front of a recording stand-in linker: argv byte for byte,
// names, PATH search, exit status, signals. Real links are in link.test.ts.
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { toBytes } from '../../src/shared/bytes.js';
import { keyName } from '../../src/shared/keydir.js';
import {
	asNobody,
	compileThin,
	describeIf,
	fakeLinker,
	hasToolchain,
	isRoot,
	LLD,
	NO_CONFIG,
	nodeOnlyDir,
	nodeRuns,
	ranAsPid,
	ranFile,
	recorded,
	recordedEnv,
	SHIM,
	scratchRoot,
	shimDir,
	stagedShim,
	uncachedReference,
} from '../helpers/tools.js';

const scratch = scratchRoot();

describeIf(hasToolchain, 'clang (to build the stand-in linker)')('shim in front of a stand-in linker', () => {
	let fakeDir: string;
	let shims: string;
	let record: string;
	let node: string; // a directory with node and nothing else, for the shim's #!/usr/bin/env node
	const run = (args: string[], env: Record<string, string | undefined> = {}, name = 'ld.lld', cwd = scratch('cwd')) =>
		execa(path.join(shims, name), args, {
			cwd,
			reject: false,
			stripFinalNewline: false,
			env: { ...NO_CONFIG, FAKE_LD_RECORD: record, ...env, PATH: `${env.PATH ?? `${shims}:${fakeDir}`}:${node}` },
			extendEnv: false,
		});

	beforeAll(() => {
		fakeDir = scratch('fake');
		fakeLinker(fakeDir);
		shims = shimDir(scratch('shims'));
		record = path.join(scratch('rec'), 'argv');
		node = nodeOnlyDir(scratch('node'));
	});

	it('with LTOCACHE_MODE=add, adds a cache flag to a ThinLTO link without one, and only to such a link', async () => {
		const cwd = scratch('add');
		const [thin] = compileThin(scratch('thin'));
		fs.writeFileSync(path.join(cwd, 'plain.o'), '\x7fELF not bitcode');
		const root = scratch('root');
		const nodeRan = path.join(cwd, 'node-ran');
		const env = { LTOCACHE_MODE: 'add', LTOCACHE_DIR: root, LTOCACHE_AUTO_PRUNE: '0', NODE_RAN: nodeRan };
		const lld = `${fakeDir}/ld.lld`;

		expect((await run(['-r', 'plain.o'], env, 'ld.lld', cwd)).exitCode).toBe(0);
		expect(recorded(record).map(String)).toEqual([lld, '-r', 'plain.o']);
		expect(fs.readdirSync(root)).toEqual([]);

		expect((await run(['-r', thin, '-o', 'x.o'], env, 'ld.lld', cwd)).exitCode).toBe(0);
		const dir = path.join(root, '_no-kernel', keyName(toBytes(cwd)));
		expect(recorded(record).map(String)).toEqual([lld, '-r', thin, '-o', 'x.o', `--thinlto-cache-dir=${dir}`]);
		expect(JSON.parse(fs.readFileSync(path.join(dir, 'ltocache.json'), 'utf8'))).toMatchObject({ original: cwd, added: true });
		expect(nodeRuns(nodeRan)).toBe(2);

		// A link with a cache directory of its own that it can use goes to Node, which reads its inputs: embedding no file, it keeps the directory, untouched.
		const own = path.join(cwd, 'own');
		fs.mkdirSync(own);
		fs.writeFileSync(path.join(own, 'llvmcache.timestamp'), '');
		expect((await run([`--thinlto-cache-dir=${own}`, '-r', thin], env, 'ld.lld', cwd)).exitCode).toBe(0);
		expect(recorded(record).map(String)).toEqual([lld, `--thinlto-cache-dir=${own}`, '-r', thin]);
		expect(nodeRuns(nodeRan)).toBe(3);
	});

	it('passes argv byte for byte, with argv[0] the path of the linker it runs', async () => {
		const tree = scratch('tree');
		const odd = ['', ' ', 'two  spaces', 'tab\there', 'new\nline', '"quotes\'', '\\', 'é', `--thinlto-cache-dir=${tree}`];
		const result = await run(['-r', ...odd, '-o', 'out.o']);
		expect(result.exitCode).toBe(0);
		expect(recorded(record).map(String)).toEqual([`${fakeDir}/ld.lld`, '-r', ...odd, '-o', 'out.o']);
		expect(result.stdout).toBe('fake-ld stdout\n');
		expect(result.stderr).toBe('fake-ld stderr\n');
	});

	it('passes bytes that are not UTF-8 intact', async () => {
		// execa takes strings: hand the bytes over through a shell's printf.
		const result = await execa(
			'sh',
			['-c', `exec "$0" -r "$(printf '\\377\\376\\200')" '' "$(printf 'a\\200b')x" @none`, path.join(shims, 'ld.lld')],
			{
				reject: false,
				stripFinalNewline: false,
				env: { ...NO_CONFIG, PATH: `${shims}:${fakeDir}:${node}:/bin`, FAKE_LD_RECORD: record },
				extendEnv: false,
			},
		);
		expect(result.exitCode).toBe(0);
		expect(recorded(record)).toEqual([
			Buffer.from(`${fakeDir}/ld.lld`),
			Buffer.from('-r'),
			Buffer.from([0xff, 0xfe, 0x80]),
			Buffer.from(''),
			Buffer.from([0x61, 0x80, 0x62, 0x78]),
			Buffer.from('@none'),
		]);
	});

	it('runs the real linker of the name it was called by', async () => {
		const result = await run(['--version'], {}, 'ld.lld-16');
		expect(result.exitCode).toBe(0);
		expect(ranFile(record)).toBe(`${fakeDir}/ld.lld-16`);
		expect(recorded(record).map(String)).toEqual([`${fakeDir}/ld.lld-16`, '--version']);
		await run(['--version']);
		expect(ranFile(record)).toBe(`${fakeDir}/ld.lld`);
	});

	it('skips every PATH entry that resolves to the shim, under any name or directory', async () => {
		const again = shimDir(scratch('again'));
		const viaLink = scratch('vialink');
		fs.symlinkSync(path.join(again, 'ld.lld'), path.join(viaLink, 'ld.lld'));
		const result = await run(['x'], { PATH: `${shims}:${again}:${viaLink}:${fakeDir}` });
		expect(result.exitCode).toBe(0);
		expect(recorded(record).map(String)).toEqual([`${fakeDir}/ld.lld`, 'x']);
		expect(ranFile(record)).toBe(`${fakeDir}/ld.lld`);
	});

	it('says what it searched and exits 127 when there is no real linker', async () => {
		const result = await run(['x'], { PATH: `${shims}:/nonexistent` });
		expect(result.exitCode).toBe(127);
		const lines = result.stderr.trim().split('\n');
		expect(lines).toHaveLength(1);
		expect(lines[0]).toContain(`no real ld.lld found on PATH=${shims}:/nonexistent`);
		expect(lines[0]).toContain(path.join(shims, 'ld.lld'));
	});

	it('uses LTOCACHE_LD, and refuses one that is the shim itself', async () => {
		const other = scratch('other');
		const binary = fakeLinker(other, []);
		expect((await run(['y'], { PATH: shims, LTOCACHE_LD: binary })).exitCode).toBe(0);
		expect(recorded(record).map(String)).toEqual(['ld.lld', 'y']);
		const self = await run(['y'], { PATH: shims, LTOCACHE_LD: SHIM });
		expect(self.exitCode).toBe(127);
		expect(self.stderr).toContain('is the ltocache shim itself');
	});

	it('cannot loop with another wrapper that skips only itself', async () => {
		// A ccache-style wrapper: runs the first ld.lld on PATH that is not itself.
		const wrapperDir = scratch('wrapper');
		const wrapper = path.join(wrapperDir, 'ld.lld');
		fs.writeFileSync(
			wrapper,
			`#!/bin/sh
echo wrapper >> "$FAKE_LD_RECORD.trail"
IFS=:; for d in $PATH; do
  [ "$(/usr/bin/readlink -f "$d/ld.lld")" = "$(/usr/bin/readlink -f "$0")" ] && continue
  [ -x "$d/ld.lld" ] && exec "$d/ld.lld" "$@"
done
exit 99
`,
			{ mode: 0o755 },
		);
		const result = await run(['z'], { PATH: `${shims}:${wrapperDir}:${fakeDir}` });
		expect(result.exitCode).toBe(0);
		expect(recorded(record).map(String)).toEqual([`${fakeDir}/ld.lld`, 'z']);
		expect(fs.readFileSync(`${record}.trail`, 'utf8')).toBe('wrapper\n');
	});

	// Both ways the shim can run a linker: the shell execs it (so the linker
	// runs in the shim's own process) on the fast path; the Node shim runs it
	// as its child for everything else (a link whose cache directory it
	// chose, a linker of another name, any forced run), with one Node start,
	// and must pass signals in and status out itself.
	describe.each([
		['by the shell fast path', {}, false, { direct: true, nodes: 0 }],
		['by the shell fast path, LTOCACHE_LD of the same name', { LTOCACHE_LD: 'FAKE/ld.lld' }, false, { direct: true, nodes: 0 }],
		['by the Node shim, forced', { LTOCACHE_NO_FAST_PATH: '1' }, false, { direct: false, nodes: 1 }],
		['by the Node shim, a redirected link it counts', {}, true, { direct: false, nodes: 1 }],
		['by the Node shim, a linker of another name', { LTOCACHE_LD: 'fake-ld' }, false, { direct: false, nodes: 1 }],
	] as const)('run %s', (_, via, redirected, expected) => {
		const viaHere = () => Object.fromEntries(Object.entries(via).map(([k, v]) => [k, v.replace('FAKE', fakeDir)]));
		/** Runs the shim and checks which way it ran the linker: by process id, and by Node starts. */
		const start = (env: Record<string, string>) => {
			// Below a regular file: unusable even for root.
			const blocked = path.join(scratch('blocked'), 'file');
			fs.writeFileSync(blocked, '');
			const args = redirected ? [`--thinlto-cache-dir=${blocked}/cache`] : [];
			return run(args, { ...viaHere(), ...(redirected ? { LTOCACHE_DIR: scratch('root') } : {}), ...env });
		};
		const runVia = async (env: Record<string, string>) => {
			const nodeRan = path.join(scratch('node-ran'), 'log');
			const child = start({ ...env, NODE_RAN: nodeRan });
			const result = await child;
			expect({ direct: ranAsPid(record) === child.pid, nodes: nodeRuns(nodeRan) }).toEqual(expected);
			if (redirected) expect(String(recorded(record)[1])).toMatch(/^--thinlto-cache-dir=.*\/root-\d+\//);
			return result;
		};

		it('exits with the linker status', async () => {
			// 129-192 too, which a shell waiting for Node reads as 128 + a signal: an exit status stays one.
			for (const status of [1, 3, 255, 129, 130, 139, 143]) {
				const result = await runVia({ FAKE_LD_MODE: `exit:${status}` });
				expect({ exitCode: result.exitCode, signal: result.signal }).toEqual({ exitCode: status, signal: undefined });
			}
		});

		it('dies of the signal the linker died of', async () => {
			for (const [n, name] of [
				[6, 'SIGABRT'],
				[11, 'SIGSEGV'],
				[15, 'SIGTERM'],
				[10, 'SIGUSR1'], // Node's inspector's signal: no inspector starts
				[14, 'SIGALRM'], // what Node tells a waiting shell with
			] as const) {
				const result = await runVia({ FAKE_LD_MODE: `signal:${n}` });
				expect({ signal: result.signal, stderr: String(result.stderr).trim() }).toEqual({ signal: name, stderr: 'fake-ld stderr' });
			}
			const shell = await execa('sh', ['-c', '"$0"; echo "status $?"', path.join(shims, 'ld.lld')], {
				reject: false,
				env: { ...NO_CONFIG, PATH: `${shims}:${fakeDir}:${node}:/bin`, FAKE_LD_MODE: 'signal:6', ...viaHere() },
				extendEnv: false,
			});
			expect(shell.stdout).toContain('status 134');
		});

		it.each(['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT'] as const)('passes %s on to the linker', async (signal) => {
			const dir = scratch('sig');
			const ready = path.join(dir, 'ready');
			const got = path.join(dir, 'got');
			const nodeRan = path.join(dir, 'node-ran');
			const child = start({ FAKE_LD_MODE: 'wait', FAKE_LD_READY: ready, FAKE_LD_GOT: got, NODE_RAN: nodeRan });
			const deadline = Date.now() + 10_000;
			while (!fs.existsSync(ready) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
			child.kill(signal);
			const result = await child;
			expect(fs.readFileSync(got, 'utf8')).toBe(String({ SIGTERM: 15, SIGINT: 2, SIGHUP: 1, SIGQUIT: 3 }[signal]));
			expect(result.signal).toBe(signal);
			expect({ direct: ranAsPid(record) === child.pid, nodes: nodeRuns(nodeRan) }).toEqual(expected);
		});

		it("gives the linker make's jobserver descriptors, as make -j gives a `+` recipe", async () => {
			const dir = scratch('make');
			const fds = path.join(dir, 'fds');
			const blocked = path.join(scratch('blocked'), 'file');
			fs.writeFileSync(blocked, '');
			const args = redirected ? ` --thinlto-cache-dir=${blocked}/cache` : '';
			fs.writeFileSync(path.join(dir, 'Makefile'), `all:\n\t+${path.join(shims, 'ld.lld')}${args}\n`);
			const env = { ...viaHere(), ...(redirected ? { LTOCACHE_DIR: scratch('root') } : {}), FAKE_LD_FDS: fds };
			// make 4.4 and later pass a named FIFO by default: the pipe is asked for.
			const [, major, minor] = /Make (\d+)\.(\d+)/.exec((await execa('make', ['--version'])).stdout) ?? [];
			const style = Number(major) * 100 + Number(minor) >= 404 ? ['--jobserver-style=pipe'] : [];
			const result = await execa('make', ['-s', '-j2', ...style, '-C', dir], {
				reject: false,
				env: { ...NO_CONFIG, FAKE_LD_RECORD: record, ...env, PATH: `${shims}:${fakeDir}:${node}:/usr/bin:/bin` },
				extendEnv: false,
			});
			expect(result.exitCode).toBe(0);
			const makeflags = recordedEnv(record).find((v) => v.startsWith('MAKEFLAGS=')) ?? '';
			const [, r, w] = /--jobserver-auth=(\d+),(\d+)/.exec(makeflags) ?? [];
			const open = Object.fromEntries(
				fs
					.readFileSync(fds, 'utf8')
					.split('\n')
					.filter(Boolean)
					.map((line) => line.split(' ')),
			);
			// Both ends of one pipe, at the numbers MAKEFLAGS gives.
			expect(open[r]).toMatch(/^pipe:\[\d+\]$/);
			expect(open[w]).toBe(open[r]);
		});
	});

	it('links as without ltocache, the unusable flag emptied, when deciding fails unexpectedly (here: its directory is gone)', async () => {
		const gone = scratch('gone');
		const args = ['--thinlto-cache-dir=/proc/no/such/dir', '-r', 'a.o'];
		const child = execa('sh', ['-c', 'cd "$0" && rmdir "$0" && exec "$@"', gone, path.join(shims, 'ld.lld'), ...args], {
			reject: false,
			env: { ...NO_CONFIG, PATH: `${shims}:${fakeDir}:${node}:/bin:/usr/bin`, FAKE_LD_RECORD: record, LTOCACHE_VERBOSE: '1' },
			extendEnv: false,
		});
		const result = await child;
		expect(result.exitCode).toBe(0);
		expect(recorded(record).map(String)).toEqual([`${fakeDir}/ld.lld`, ...args, '--thinlto-cache-dir=']);
		expect(result.stderr).toMatch(/^ltocache: unexpected .*ENOENT.*; linking as without ltocache$/m);
	});

	it('links as without ltocache, an unusable cache flag disabled, saying so once, when a link needs Node.js and there is none', async () => {
		const args = ['--thinlto-cache-dir=/proc/no/such/dir', '-r'];
		const result = await execa(path.join(shims, 'ld.lld'), args, {
			reject: false,
			env: { ...NO_CONFIG, PATH: `${shims}:${fakeDir}`, FAKE_LD_RECORD: record },
			extendEnv: false,
		});
		expect(result.exitCode).toBe(0);
		expect(result.stderr).toBe('ltocache: node not found on PATH; linking as without ltocache\nfake-ld stderr');
		expect(recorded(record).map(String)).toEqual([`${fakeDir}/ld.lld`, ...args, '--thinlto-cache-dir=']);
	});

	it("links with lld's generic driver as LTOCACHE_LD when Node.js is missing: the flavour argv[0] gives on the Node route is given as -flavor gnu", async () => {
		const { objects, reference } = uncachedReference(scratch('generic'));
		const generic = path.join(path.dirname(fs.realpathSync(LLD)), 'lld');
		expect(path.basename(fs.realpathSync(generic))).toBe('lld');
		const out = path.join(scratch('out'), 'out.o');
		const result = await execa(path.join(shims, 'ld.lld'), ['-r', '-o', out, ...objects], {
			reject: false,
			env: { ...NO_CONFIG, PATH: `${shims}:${fakeDir}`, LTOCACHE_LD: generic },
			extendEnv: false,
		});
		expect(result).toMatchObject({ exitCode: 0, stderr: 'ltocache: node not found on PATH; linking as without ltocache' });
		expect(fs.readFileSync(out).equals(reference)).toBe(true);
	});

	it('stops, rather than exec itself forever, when Node.js is missing and LTOCACHE_LD names the shim', async () => {
		const alias = path.join(scratch('alias'), 'my-ld');
		fs.symlinkSync(path.join(shims, 'ld.lld'), alias);
		const ran = path.join(scratch('rec'), 'argv');
		const result = await execa(path.join(shims, 'ld.lld'), ['-r'], {
			reject: false,
			timeout: 10_000,
			env: { ...NO_CONFIG, PATH: `${shims}:${fakeDir}`, FAKE_LD_RECORD: ran, LTOCACHE_LD: alias },
			extendEnv: false,
		});
		expect(result).toMatchObject({ exitCode: 127, timedOut: false });
		expect(result.stderr).toBe(
			`ltocache: node not found on PATH; linking as without ltocache\nltocache: LTOCACHE_LD=${alias} is the ltocache shim itself, not a real linker; set LTOCACHE_LD to the real linker`,
		);
		expect(fs.existsSync(ran)).toBe(false);
	});

	it('says on every link that an LTOCACHE_MODE it does not know is none of the modes, and redirects as by default', async () => {
		const blocker = path.join(scratch('blocked'), 'file');
		fs.writeFileSync(blocker, ''); // below a regular file: unusable even for root
		for (const args of [['-r'], [`--thinlto-cache-dir=${blocker}/cache`, '-r']]) {
			const result = await run(args, { LTOCACHE_MODE: 'ad', LTOCACHE_DIR: scratch('root') });
			expect(result.exitCode).toBe(0);
			expect(result.stderr).toBe('ltocache: LTOCACHE_MODE=ad is not one of redirect, drop, add; using redirect\nfake-ld stderr\n');
			const argv = recorded(record).map(String).slice(1);
			expect(argv).toEqual(args.length === 1 ? ['-r'] : [expect.stringMatching(/^--thinlto-cache-dir=\/.*root-\d+\//), '-r']);
		}
	});

	it('passes an empty --thinlto-cache-dir= through untouched', async () => {
		for (const via of [{}, { LTOCACHE_NO_FAST_PATH: '1' }]) {
			const result = await run(['--thinlto-cache-dir=/proc/unwritable', '--thinlto-cache-dir=', '-r'], via);
			expect(result.exitCode).toBe(0);
			expect(recorded(record).map(String)).toEqual([
				`${fakeDir}/ld.lld`,
				'--thinlto-cache-dir=/proc/unwritable',
				'--thinlto-cache-dir=',
				'-r',
			]);
		}
	});

	it('is silent on a normal link and explains itself with LTOCACHE_VERBOSE=1', async () => {
		const tree = scratch('tree');
		const quiet = await run([`--thinlto-cache-dir=${tree}/.thinlto-cache`]);
		expect(quiet.stderr).toBe('fake-ld stderr\n');
		const verbose = await run([`--thinlto-cache-dir=${tree}/.thinlto-cache`], { LTOCACHE_VERBOSE: '1' });
		expect(verbose.stderr).toMatch(/^ltocache: running .*fake.*\/ld\.lld\nltocache: .*is usable: passing argv through\n/);
	});

	describeIf(isRoot, 'root (to run as nobody)')('as an unprivileged user', () => {
		it('rewrites only the effective flag, in place or after its @file, and leaves @files alone', async () => {
			const staged = stagedShim(scratch('pkg'));
			const stagedShims = shimDir(scratch('staged-shims'), staged);
			const tree = scratch('tree'); // root-owned 0755: nobody cannot write it
			const cache = scratch('xdg');
			fs.chmodSync(cache, 0o777);
			const out = scratch('out');
			fs.chmodSync(out, 0o777);
			const rec = path.join(out, 'argv');
			const rsp = path.join(tree, 'x.mod');
			fs.writeFileSync(rsp, '--thinlto-cache-dir=.thinlto-cache a.o\n');
			const before = fs.readFileSync(rsp);
			const env = {
				PATH: `${stagedShims}:${fakeDir}:/usr/bin:/bin`,
				FAKE_LD_RECORD: rec,
				XDG_CACHE_HOME: cache,
				HOME: '/nonexistent',
				KERNELRELEASE: '6.1.0-test',
				KBUILD_EXTMOD: '/src/hello',
			};
			const direct = await asNobody(
				'sh',
				['-c', `cd "${tree}" && exec ld.lld --thinlto-cache-dir=keep -r --thinlto-cache-dir=.thinlto-cache '' -o x.o`],
				env,
			);
			expect(direct.exitCode).toBe(0);
			const target = fs.readdirSync(path.join(cache, 'ltocache/6.1.0-test')).map((k) => path.join(cache, 'ltocache/6.1.0-test', k));
			expect(target).toHaveLength(1);
			const lld = `${fakeDir}/ld.lld`;
			expect(recorded(rec).map(String)).toEqual([
				lld,
				'--thinlto-cache-dir=keep',
				'-r',
				`--thinlto-cache-dir=${target[0]}`,
				'',
				'-o',
				'x.o',
			]);
			expect(fs.statSync(target[0]).mode & 0o777).toBe(0o700);
			expect(JSON.parse(fs.readFileSync(path.join(target[0], 'ltocache.json'), 'utf8'))).toEqual({
				version: 1,
				release: '6.1.0-test',
				extmod: '/src/hello',
				original: path.join(tree, '.thinlto-cache'),
			});

			const viaFile = await asNobody('sh', ['-c', `cd "${tree}" && exec ld.lld -r @x.mod -o x.o`], env);
			expect(viaFile.exitCode).toBe(0);
			expect(recorded(rec).map(String)).toEqual([lld, '-r', '@x.mod', `--thinlto-cache-dir=${target[0]}`, '-o', 'x.o']);
			expect(fs.readFileSync(rsp)).toEqual(before);

			const disabled = await asNobody('sh', ['-c', `cd "${tree}" && exec ld.lld --thinlto-cache-dir=.thinlto-cache`], {
				...env,
				LTOCACHE_DISABLE: '1',
			});
			expect(disabled.exitCode).toBe(0);
			expect(recorded(rec).map(String)).toEqual([lld, '--thinlto-cache-dir=.thinlto-cache']);
		});
	});
});
