// bin/ld.lld's shell fast path against the Node shim, which defines the
// behaviour: generated argv, response files, cache directories, environment
// PATH and configuration files, each run through the fast path under dash, busybox sh and bash,
// and once with LTOCACHE_NO_FAST_PATH=1. A recording stand-in linker must
// receive the same argv bytes, argv[0], environment, and be the same file;
// stdout, stderr and exit status must match.
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import fc from 'fast-check';
import { beforeAll, expect, it } from 'vitest';
import {
	describeIf,
	fakeLinker,
	hasToolchain,
	isRoot,
	NO_CONFIG,
	NOBODY,
	nodeOnlyDir,
	nodeRuns,
	onPath,
	ranAsPid,
	ranFile,
	recorded,
	recordedEnv,
	scratchRoot,
	shimDir,
	stagedShim,
	withReadOnly,
} from '../helpers/tools.js';

const scratch = scratchRoot();
const RUNS = 2000;
// Absolute: the runs get a PATH of the situation's own.
const SHELLS = [['dash'], ['busybox', 'sh'], ['bash', '--posix']].map(([shell, ...args]) => [onPath(shell) ?? shell, ...args]);
const shellsThere = SHELLS.every(([shell]) => shell.startsWith('/'));

describeIf(hasToolchain && shellsThere, 'clang (for the stand-in linker), dash, busybox and bash')(
	'the fast path agrees with the Node shim',
	() => {
		let fake: string;
		let shims: string;
		let shims2: string;
		let otherCopy: string;
		let node: string;
		let work: string;
		let records: string;
		let cacheRoot: string;
		// As root, the shim runs as nobody, for whom a root-owned directory is unwritable.
		const asUser = isRoot ? [onPath('setpriv') ?? 'setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--'] : [];

		beforeAll(() => {
			fake = scratch('fake');
			fakeLinker(fake);
			const pkg = stagedShim(scratch('pkg'));
			shims = shimDir(scratch('shims'), pkg);
			shims2 = shimDir(scratch('shims2'), pkg);
			// Another installation of ltocache (root's, or a user's own): its shim is passed over too.
			otherCopy = shimDir(scratch('other-copy'), stagedShim(scratch('pkg2')));
			node = nodeOnlyDir(scratch('node'));
			records = scratch('records');
			cacheRoot = scratch('cache');
			work = scratch('work');
			for (const dir of [records, cacheRoot, work]) fs.chmodSync(dir, 0o777);
			const inWork = (name: string) => path.join(work, name);
			// Cache directories of every kind the decision distinguishes.
			for (const dir of ['w-ts', 'w-new', 'w-rots']) fs.mkdirSync(inWork(dir), { mode: 0o777 });
			for (const dir of ['w-ts', 'w-new', 'w-rots']) fs.chmodSync(inWork(dir), 0o777);
			fs.writeFileSync(inWork('w-ts/llvmcache.timestamp'), '', { mode: 0o666 });
			fs.chmodSync(inWork('w-ts/llvmcache.timestamp'), 0o666);
			fs.writeFileSync(inWork('w-rots/llvmcache.timestamp'), '', { mode: 0o444 });
			fs.mkdirSync(inWork('ro'), { mode: 0o755 });
			fs.writeFileSync(inWork('ro/llvmcache.timestamp'), '');
			if (!isRoot) fs.chmodSync(inWork('ro'), 0o555);
			fs.writeFileSync(inWork('file'), '');
			fs.symlinkSync('nowhere', inWork('dangling'));
			fs.symlinkSync('w-ts', inWork('link-ts'));
			// `jump/../ro` is w-new/ro to the kernel (usable) but ro to a path
			// resolved by its letters (not): the two halves must still agree.
			fs.mkdirSync(inWork('w-new/inner'), { recursive: true });
			fs.mkdirSync(inWork('w-new/ro'), { mode: 0o777 });
			fs.chmodSync(inWork('w-new/ro'), 0o777);
			fs.writeFileSync(inWork('w-new/ro/llvmcache.timestamp'), '', { mode: 0o666 });
			fs.chmodSync(inWork('w-new/ro/llvmcache.timestamp'), 0o666);
			fs.symlinkSync('w-new/inner', inWork('jump'));
			// Response files: plain words, the flag, quoting, nesting, no final newline.
			const rsp: Record<string, string> = {
				'plain.rsp': 'a.o b.o\n-r\n',
				'noeol.rsp': 'a.o',
				'flag.rsp': '--thinlto-cache-dir=ro a.o\n',
				'flag-ok.rsp': `--thinlto-cache-dir=${inWork('w-ts')}\n`,
				'quoted.rsp': "'a b.o' c.o\n",
				'escaped.rsp': '--thinlto-cache-\\dir=ro\n',
				'nested.rsp': '@flag.rsp x.o\n',
				'empty.rsp': '',
			};
			for (const [name, text] of Object.entries(rsp)) fs.writeFileSync(inWork(name), text);
			// Configuration files, as both halves must read them alike: blanks, comments, the last line winning.
			const conf: Record<string, string> = {
				'add.conf': 'mode = add\n',
				'drop.conf': '# mine\n\tmode=drop \r\n',
				'bad.conf': 'mode = fast\n',
				'last.conf': 'mode = add\nmode = redirect\n',
				'comment.conf': '# mode = add\nmodes = add\nmode x = add\n',
				'empty.conf': 'mode =\n',
				'noeol.conf': 'max-size = 1G\nmode = add',
			};
			for (const [name, text] of Object.entries(conf)) fs.writeFileSync(inWork(name), text);
		});

		type Situation = { args: string[]; env: Record<string, string>; name: string; path: string };
		/** Built once the fixture exists: the paths in it are only known then. */
		const situations = (): fc.Arbitrary<Situation> => {
			const dirs = [
				'w-ts',
				'w-new',
				'w-rots',
				'ro',
				'ro/sub',
				'w-new/a/b',
				'file',
				'file/x',
				'dangling',
				'link-ts',
				'./w-ts',
				'w-ts/',
				'../work/w-ts',
				'ro/../w-ts',
				'jump/../ro',
				'.thinlto-cache',
				'',
			];
			const arg = fc.oneof(
				{
					weight: 4,
					arbitrary: fc.constantFrom('-r', '-o', 'out.o', 'a.o', '-m', 'elf_x86_64', '-mllvm', '-import-instr-limit=5', '', ' ', 'a b'),
				},
				{ weight: 3, arbitrary: fc.constantFrom(...dirs).map((d) => `--thinlto-cache-dir=${d}`) },
				{ weight: 1, arbitrary: fc.constantFrom(...dirs).map((d) => `--thinlto-cache-dir=${d && path.join(work, d)}`) },
				{
					weight: 2,
					arbitrary: fc.constantFrom(
						'@plain.rsp',
						'@noeol.rsp',
						'@flag.rsp',
						'@flag-ok.rsp',
						'@quoted.rsp',
						'@escaped.rsp',
						'@nested.rsp',
						'@empty.rsp',
						'@missing.rsp',
						'@',
					),
				},
				{
					weight: 1,
					arbitrary: fc.constantFrom(
						'--rsp-quoting=posix',
						'--rsp-quoting',
						'--thinlto-cache-dir',
						'-thinlto-cache-dir=ro',
						'--thinlto-cache-policy=prune_after=1h',
					),
				},
			);
			const env = fc.record(
				{
					LTOCACHE_DISABLE: fc.constantFrom('1', '0'),
					LTOCACHE_MODE: fc.constantFrom('drop', 'redirect', 'add'),
					LTOCACHE_CHAIN: fc.constantFrom('/nonexistent', '/nonexistent\n/also-not', `${fake}/ld.lld`, `${fake}/ld.lld-16`),
					KBUILD_EXTMOD: fc.constantFrom('/src/mod', '/src/other'),
					LTOCACHE_CONFIG: fc
						.constantFrom('add', 'drop', 'bad', 'last', 'comment', 'empty', 'noeol', 'missing')
						.map((n) => path.join(work, `${n}.conf`)),
					LTOCACHE_SYSTEM_CONFIG: fc.constantFrom('add', 'drop', 'missing').map((n) => path.join(work, `${n}.conf`)),
					// The real linker, one of another name, a name, this shim, another copy's shim, nothing.
					// Mostly empty, as unset: most of what it sends goes to Node, and the fast path needs its share.
					LTOCACHE_LD: fc.oneof(
						{ weight: 3, arbitrary: fc.constant('') },
						{
							weight: 1,
							arbitrary: fc.constantFrom(
								`${fake}/ld.lld`,
								`${fake}/ld.lld-16`,
								`${fake}/fake-ld`,
								'fake-ld',
								`${shims}/ld.lld`,
								`${otherCopy}/ld.lld-16`,
								'/nonexistent/ld.lld',
							),
						},
					),
				},
				{ requiredKeys: [] },
			);
			return fc.record({
				args: fc.array(arg, { maxLength: 8 }),
				env,
				name: fc.constantFrom('ld.lld', 'ld.lld-16'),
				path: fc.constantFrom(
					`${shims}:${fake}`,
					`${shims}::${fake}`,
					`${shims}:${shims2}:${fake}`,
					`${shims}:${otherCopy}:${fake}`,
					`${fake}:${shims}`,
				),
			});
		};

		let serial = 0;
		type Seen = { linked: number; shellOnly: number; node: number };
		/** Run one situation through the shim under a shell; what the stand-in received, and how the shim ended. */
		async function through(shell: string[], s: Situation, extra: Record<string, string>, seen: Seen) {
			const record = path.join(records, String(serial++));
			const nodeRan = `${record}.node`;
			const [command, ...args] = [...asUser, ...shell, path.join(shims, s.name), ...s.args];
			const env = {
				PATH: `${s.path}:${node}`,
				FAKE_LD_RECORD: record,
				NODE_RAN: nodeRan,
				LTOCACHE_DIR: cacheRoot,
				LTOCACHE_AUTO_PRUNE: '0',
			};
			const subprocess = execa(command, args, {
				cwd: work,
				reject: false,
				extendEnv: false,
				env: { ...NO_CONFIG, ...env, KERNELRELEASE: '6.1.0-diff', ...s.env, ...extra },
			});
			const result = await subprocess;
			const ran = fs.existsSync(record);
			if (ran) seen.linked++;
			// The linker ran in the shim's own process, and no Node started: the fast path did it all.
			if (ran && ranAsPid(record) === subprocess.pid && nodeRuns(nodeRan) === 0) seen.shellOnly++;
			if (nodeRuns(nodeRan) > 0) seen.node++;
			return {
				exitCode: result.exitCode,
				stdout: result.stdout,
				stderr: result.stderr,
				argv: ran ? recorded(record).map((b) => b.toString('latin1')) : null,
				file: ran ? ranFile(record) : null,
				// In any order, and without what differs between the runs by design.
				env: ran
					? recordedEnv(record)
							.filter((v) => !/^(LTOCACHE_NO_FAST_PATH|FAKE_LD_RECORD|NODE_RAN)=/.test(v))
							.sort()
					: null,
			};
		}

		// Two halves with seeds of their own, run side by side. Every add-mode situation starts Node: on a loaded
		// machine (load 17 on 2 cores) a half took 430 s.
		it.concurrent.each([20261129, 20261130])(
			`gives the linker the same argv, argv[0], environment and file, for ${RUNS / 2} generated situations (seed %i)`,
			async (seed) => {
				const seen: Seen = { linked: 0, shellOnly: 0, node: 0 };
				const shellRuns = new Map<string, number>();
				await fc.assert(
					// Both runs under one shell: a shell may set variables of its own (SHLVL, _) for what it execs.
					fc.asyncProperty(situations(), fc.constantFrom(...SHELLS), async (s, shell) => {
						const byNode = await through(shell, s, { LTOCACHE_NO_FAST_PATH: '1' }, seen);
						const fast = await through(shell, s, {}, seen);
						expect(fast, `${shell.join(' ')} ${JSON.stringify(s)}`).toEqual(byNode);
						shellRuns.set(shell[0], (shellRuns.get(shell[0]) ?? 0) + 1);
					}),
					{ numRuns: RUNS / 2, seed },
				);
				// Every shell had its share, and both halves were exercised: most runs
				// reached the linker, every forced run started Node, and a good share
				// of the fast runs started nothing before the linker.
				expect([...shellRuns.values()].every((n) => n > RUNS / 10)).toBe(true);
				expect(seen.linked).toBeGreaterThan(RUNS / 2);
				expect(seen.node).toBeGreaterThanOrEqual(RUNS / 2);
				expect(seen.shellOnly).toBeGreaterThan(RUNS / 10);
			},
			900_000,
		);

		describeIf(isRoot, 'root (for a read-only bind mount)')('on a read-only mount', () => {
			// busybox answers `test -w` from mode bits, and root passes those
			// everywhere: only a real open() meets the read-only mount.
			it.each(SHELLS)('%s leaves a cache directory root cannot write to Node, which redirects it', async (...shell) => {
				const dir = scratch('ro-cache');
				fs.writeFileSync(path.join(dir, 'llvmcache.timestamp'), '');
				const record = path.join(records, `ro-${path.basename(shell[0])}`);
				const result = await withReadOnly(
					dir,
					shell[0],
					[...shell.slice(1), path.join(shims, 'ld.lld'), `--thinlto-cache-dir=${dir}`, '-r'],
					{
						extendEnv: false,
						env: {
							...NO_CONFIG,
							PATH: `${shims}:${fake}:${node}:/usr/bin:/bin`,
							FAKE_LD_RECORD: record,
							LTOCACHE_DIR: cacheRoot,
							LTOCACHE_AUTO_PRUNE: '0',
							KERNELRELEASE: `6.1.0-ro-${path.basename(shell[0])}`,
						},
					},
				);
				expect(result.exitCode).toBe(0);
				const release = path.join(cacheRoot, `6.1.0-ro-${path.basename(shell[0])}`);
				const [keyDir] = fs.readdirSync(release).map((k) => path.join(release, k));
				expect(recorded(record).map(String)).toEqual([`${fake}/ld.lld`, `--thinlto-cache-dir=${keyDir}`, '-r']);
			});
		});
	},
);
