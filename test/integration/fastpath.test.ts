// bin/ld.lld's shell fast path against the Node shim, which defines the
// behaviour: generated argv, response files, cache directories, environment
// and PATH, each run through the fast path under dash, busybox sh and bash,
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
	NOBODY,
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
const RUNS = 1000;
const SHELLS = [['dash'], ['busybox', 'sh'], ['bash', '--posix']];
const shellsThere = SHELLS.every(([shell]) => onPath(shell));

describeIf(hasToolchain && shellsThere, 'clang (for the stand-in linker), dash, busybox and bash')(
	'the fast path agrees with the Node shim',
	() => {
		let fake: string;
		let shims: string;
		let shims2: string;
		let node: string;
		let work: string;
		let records: string;
		let cacheRoot: string;
		// As root, the shim runs as nobody, for whom a root-owned directory is unwritable.
		const asUser = isRoot ? ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--'] : [];

		beforeAll(() => {
			fake = scratch('fake');
			fakeLinker(fake);
			const pkg = stagedShim(scratch('pkg'));
			shims = shimDir(scratch('shims'), pkg);
			shims2 = shimDir(scratch('shims2'), pkg);
			node = scratch('node');
			fs.symlinkSync(process.execPath, path.join(node, 'node'));
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
		});

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
					'--thinlto-cache-dir',
					'-thinlto-cache-dir=ro',
					'--thinlto-cache-policy=prune_after=1h',
				),
			},
		);
		const env = fc.record(
			{
				LTOCACHE_DISABLE: fc.constantFrom('1', '0'),
				LTOCACHE_MODE: fc.constantFrom('drop', 'redirect'),
				LTOCACHE_CHAIN: fc.constantFrom('/nonexistent', '/nonexistent\n/also-not', `${fake}/ld.lld`, `${fake}/ld.lld-16`),
				KBUILD_EXTMOD: fc.constantFrom('/src/mod', '/src/other'),
			},
			{ requiredKeys: [] },
		);
		type Situation = { args: string[]; env: Record<string, string>; name: string; path: string };
		const situation: fc.Arbitrary<Situation> = fc.record({
			args: fc.array(arg, { maxLength: 8 }),
			env,
			name: fc.constantFrom('ld.lld', 'ld.lld-16'),
			path: fc.constantFrom(`${shims}:${fake}`, `${shims}::${fake}`, `${shims}:${shims2}:${fake}`, `${fake}:${shims}`),
		});

		let serial = 0;
		let direct = 0;
		/** Run one situation through the shim; what the stand-in received, and how the shim ended. */
		async function through(shell: string[], s: Situation, extra: Record<string, string>) {
			const record = path.join(records, String(serial++));
			const result = await execa(
				asUser[0] ?? shell[0],
				[...asUser.slice(1), ...(asUser.length ? shell : shell.slice(1)), path.join(shims, s.name), ...s.args],
				{
					cwd: work,
					reject: false,
					extendEnv: false,
					env: {
						PATH: `${s.path}:${node}`,
						FAKE_LD_RECORD: record,
						LTOCACHE_DIR: cacheRoot,
						LTOCACHE_AUTO_PRUNE: '0',
						KERNELRELEASE: '6.1.0-diff',
						...s.env,
						...extra,
					},
				},
			);
			const ran = fs.existsSync(record);
			// The shim exec-ed the linker itself: no process was started on the way.
			if (ran && ranAsPid(record) === result.pid) direct++;
			return {
				exitCode: result.exitCode,
				stdout: result.stdout,
				stderr: result.stderr,
				argv: ran ? recorded(record).map((b) => b.toString('latin1')) : null,
				file: ran ? ranFile(record) : null,
				// `_` is set by bash for whatever it execs (node or the linker); the test's own switch is not the shim's.
				env: ran ? recordedEnv(record).filter((v) => !v.startsWith('_=') && !v.startsWith('LTOCACHE_NO_FAST_PATH=')) : null,
			};
		}

		it(`gives the linker the same argv, argv[0], environment and file, for ${RUNS} generated situations under each shell`, async () => {
			await fc.assert(
				fc.asyncProperty(situation, async (s) => {
					const byNode = await through(['dash'], s, { LTOCACHE_NO_FAST_PATH: '1' });
					for (const shell of SHELLS) {
						const fast = await through(shell, s, {});
						expect(fast, `${shell.join(' ')} ${JSON.stringify(s)}`).toEqual(byNode);
					}
				}),
				{ numRuns: RUNS, seed: 20261129 },
			);
			// Both halves were exercised: a good share of links went straight to the
			// linker from the shell (never from the Node runs, forced to Node).
			expect(direct).toBeGreaterThan(RUNS / 2);
			expect(direct).toBeLessThan(RUNS * SHELLS.length);
		});
	},
);
