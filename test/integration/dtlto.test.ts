// DTLTO (lld 21 and later: the ThinLTO backends run as separate compiler
// jobs, started by a distributor program) through the shim, with the newest
// tested lld and the local distributor in test/fixtures: in add mode and in
// redirect mode the program is the uncached DTLTO link's byte for byte, a
// second link runs no backend and is counted as hits, and a changed .incbin
// file gives the new bytes, where lld's own DTLTO cache gives the old ones.
import fs from 'node:fs';
import path from 'node:path';
import { execa, execaSync } from 'execa';
import { beforeAll, expect, it } from 'vitest';
import { TESTED_LLD } from '../../src/cli/commands/doctor.js';
import {
	asNobody,
	CLI,
	describeIf,
	entriesBelow,
	fixtures,
	identities,
	isRoot,
	llvmBin,
	scratchRoot,
	shimDir,
	stagedShim,
	TEST_LLVM,
} from '../helpers/tools.js';

const scratch = scratchRoot();

/** The LLVM under test when it has DTLTO, else the newest tested one. */
const MAJOR = TEST_LLVM !== undefined && Number(TEST_LLVM) >= 21 ? TEST_LLVM : String(Math.max(...TESTED_LLD));
const BIN = llvmBin(MAJOR);
const CLANG = path.join(BIN, 'clang');
const LLD = path.join(BIN, 'ld.lld');
const hasDtlto = Number(MAJOR) >= 21 && fs.existsSync(CLANG) && fs.existsSync(LLD);

const MODULE_ASM = `
asm(".section .rodata\\n.global blob\\nblob:\\n.incbin \\"blob.bin\\"\\n.byte 0\\n.previous\\n");
extern const char blob[];
const char *get(void) { return blob; }
`;
const MAIN = `
#include <stdio.h>
const char *get(void);
int other(int);
int main(void) { printf("%s %d\\n", get(), other(2)); return 0; }
`;
const OTHER = 'int other(int x) { return x * 21; }\n';

describeIf(hasDtlto && isRoot, `clang and ld.lld in ${BIN} (DTLTO needs LLVM 21 or later), and root (for nobody)`)(
	`DTLTO links through the shim (LLVM ${MAJOR})`,
	() => {
		let objects: string[];
		let distributor: string;
		let shims: string;
		let staged: string;

		beforeAll(() => {
			const obj = scratch('obj');
			// clang >= 19 assembles module asm at compile time too, and fails on an .incbin file it cannot find.
			fs.writeFileSync(path.join(obj, 'blob.bin'), 'compile-time');
			objects = Object.entries({ module: MODULE_ASM, main: MAIN, other: OTHER }).map(([name, text]) => {
				fs.writeFileSync(path.join(obj, `${name}.c`), text);
				execaSync(CLANG, ['-flto=thin', '-O2', '-c', `${name}.c`, '-o', `${name}.o`], { cwd: obj });
				return path.join(obj, `${name}.o`);
			});
			// Where nobody can read it: the checkout may sit below a directory only root enters.
			distributor = path.join(scratch('dist'), 'distributor.mjs');
			fs.copyFileSync(path.join(fixtures, 'distributor.mjs'), distributor);
			execaSync('chmod', ['-R', 'a+rX', path.dirname(objects[0]), path.dirname(distributor)]);
			shims = shimDir(scratch('shims'), undefined, ['ld.lld']);
			staged = stagedShim(scratch('pkg'));
		});

		/** clang's link of the program, DTLTO through the local distributor, with ld-path as its linker. */
		const linkArgs = (ldPath: string, out: string, extra: string[] = []) => [
			'-flto=thin',
			'-fuse-ld=lld',
			`--ld-path=${ldPath}`,
			...objects,
			`-Wl,--thinlto-distributor=${process.execPath}`,
			`-Wl,--thinlto-distributor-arg=${distributor}`,
			`-Wl,--thinlto-remote-compiler=${CLANG}`,
			...extra,
			'-o',
			out,
		];
		/** A working directory nobody may write (the program, the job files), with blob.bin in it, and the jobs log. */
		function workDir(blob: string) {
			const cwd = scratch('cwd');
			fs.chmodSync(cwd, 0o777);
			fs.writeFileSync(path.join(cwd, 'blob.bin'), blob, { mode: 0o644 });
			return { cwd, log: path.join(cwd, 'jobs.log') };
		}
		/** Backend jobs lld handed the distributor since the last call: one number per distributor run. */
		const jobsRun = (log: string) => {
			const runs = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).map(Number) : [];
			fs.rmSync(log, { force: true });
			return runs;
		};
		/** The uncached DTLTO link, lld directly: its bytes and what the program prints. */
		async function uncached(cwd: string) {
			const result = await execa(CLANG, linkArgs(LLD, 'uncached'), { cwd, reject: false });
			expect(result, result.stderr).toMatchObject({ exitCode: 0 });
			return { bytes: fs.readFileSync(path.join(cwd, 'uncached')), printed: (await execa(path.join(cwd, 'uncached'))).stdout };
		}
		const keyDirs = (root: string) =>
			fs
				.readdirSync(root, { recursive: true, withFileTypes: true })
				.filter((d) => d.isDirectory() && fs.existsSync(path.join(d.parentPath, d.name, 'ltocache.json')))
				.map((d) => path.join(d.parentPath, d.name))
				.sort();

		it("lld's own DTLTO cache serves the old object after the .incbin file changes (what the shim guards against)", async () => {
			const { cwd, log } = workDir('hello-v1');
			const link = () => execa(CLANG, linkArgs(LLD, 'prog', ['-Wl,--thinlto-cache-dir=own']), { cwd, env: { DTLTO_JOBS_LOG: log } });
			await link();
			expect(jobsRun(log)).toEqual([3]);
			expect((await execa(path.join(cwd, 'prog'))).stdout).toBe('hello-v1 42');
			fs.writeFileSync(path.join(cwd, 'blob.bin'), 'hello-v2');
			await link();
			expect(jobsRun(log)).toEqual([]);
			expect((await execa(path.join(cwd, 'prog'))).stdout).toBe('hello-v1 42');
			expect((await uncached(cwd)).printed).toBe('hello-v2 42');
		});

		it('add mode: the uncached DTLTO link byte for byte, then served from the cache and counted; a changed .incbin file gives the new bytes', async () => {
			const { cwd, log } = workDir('hello-v1');
			const root = path.join(cwd, 'root');
			const env = { PATH: `${shims}:${BIN}:${process.env.PATH}`, LTOCACHE_MODE: 'add', LTOCACHE_DIR: root, DTLTO_JOBS_LOG: log };
			const viaShim = async () => {
				const result = await execa(CLANG, linkArgs(`${shims}/ld.lld`, 'cached'), { cwd, env, reject: false });
				expect(result).toMatchObject({ exitCode: 0, stderr: '' });
				return { bytes: fs.readFileSync(path.join(cwd, 'cached')), printed: (await execa(path.join(cwd, 'cached'))).stdout };
			};

			const cold = await viaShim();
			expect(jobsRun(log)).toEqual([3]);
			const reference = await uncached(cwd);
			expect(cold.printed).toBe('hello-v1 42');
			expect(cold.bytes.equals(reference.bytes)).toBe(true);
			const [dir] = keyDirs(root);
			const written = identities(dir);
			expect(written.length).toBe(3);

			const warm = await viaShim();
			expect(jobsRun(log)).toEqual([]); // every backend came from the cache
			expect(warm.bytes.equals(reference.bytes)).toBe(true);
			expect(identities(dir)).toEqual(written);
			const stats = await execa(process.execPath, [CLI, 'stats', '--json'], { env: { LTOCACHE_DIR: root } });
			expect(JSON.parse(stats.stdout)).toMatchObject({ totalLinks: 2, totalHits: 3, totalMisses: 3 });

			fs.writeFileSync(path.join(cwd, 'blob.bin'), 'hello-v2');
			const changed = await viaShim();
			expect(changed.printed).toBe('hello-v2 42');
			expect(changed.bytes.equals((await uncached(cwd)).bytes)).toBe(true);
			expect(keyDirs(root).length).toBe(2);
		});

		it("redirect mode, as nobody: an unwritable --thinlto-cache-dir moves into the user's cache, byte-identical, warm, and fresh after an .incbin change", async () => {
			const { cwd, log } = workDir('hello-v1');
			const xdg = scratch('xdg');
			fs.chmodSync(xdg, 0o777);
			const tree = scratch('tree'); // root's, 0755
			const stagedShims = path.dirname(staged);
			const viaShim = async () => {
				const args = linkArgs(path.join(stagedShims, 'ld.lld'), 'cached', [`-Wl,--thinlto-cache-dir=${tree}/.thinlto-cache`]);
				const result = await asNobody('sh', ['-c', 'cd "$0" && exec "$@"', cwd, CLANG, ...args], {
					PATH: `${BIN}:/usr/bin:/bin`,
					HOME: '/nonexistent',
					XDG_CACHE_HOME: xdg,
					KERNELRELEASE: '6.1.0-dtlto',
					DTLTO_JOBS_LOG: log,
				});
				expect(result).toMatchObject({ exitCode: 0, stderr: '' });
				return { bytes: fs.readFileSync(path.join(cwd, 'cached')), printed: (await execa(path.join(cwd, 'cached'))).stdout };
			};
			const bare = await asNobody(
				'sh',
				['-c', 'cd "$0" && exec "$@"', cwd, CLANG, ...linkArgs(LLD, 'bare', [`-Wl,--thinlto-cache-dir=${tree}/.thinlto-cache`])],
				{
					PATH: `${BIN}:/usr/bin:/bin`,
					HOME: '/nonexistent',
				},
			);
			expect(bare.exitCode).not.toBe(0); // the failure this project exists for, with DTLTO too

			const cold = await viaShim();
			expect(jobsRun(log)).toEqual([3]);
			expect(cold.bytes.equals((await uncached(cwd)).bytes)).toBe(true);
			const cached = entriesBelow(path.join(xdg, 'ltocache/6.1.0-dtlto'));
			expect(cached.length).toBe(3);
			const warm = await viaShim();
			expect(jobsRun(log)).toEqual([]);
			expect(warm.bytes.equals(cold.bytes)).toBe(true);

			fs.writeFileSync(path.join(cwd, 'blob.bin'), 'hello-v2');
			const changed = await viaShim();
			expect(changed.printed).toBe('hello-v2 42');
			expect(changed.bytes.equals((await uncached(cwd)).bytes)).toBe(true);
			expect(fs.existsSync(path.join(tree, '.thinlto-cache'))).toBe(false);
		});
	},
);
