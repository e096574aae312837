// A link that fails in the ThinLTO backend fails every time, as it does
// without ltocache. lld caches a module's object before the link fails on
// another module (a call to a function declared with the error attribute,
// as the kernel's BUILD_BUG_ON makes; --fatal-warnings over a backend
// warning): left in the directory, those entries would let the same link
// succeed the next time, from a cache ltocache gave it.
import fs from 'node:fs';
import path from 'node:path';
import { execa, execaSync } from 'execa';
import { beforeAll, expect, it } from 'vitest';
import { describeIf, entriesBelow, hasToolchain, LLD, NO_CONFIG, SHIM, scratchRoot } from '../helpers/tools.js';

const scratch = scratchRoot();

describeIf(hasToolchain, 'clang and ld.lld')('a link that fails in the backend', () => {
	let dir: string;
	beforeAll(() => {
		dir = scratch('src');
		fs.writeFileSync(path.join(dir, 'ok.c'), 'int fine(int x) { return x * 3; }\n');
		fs.writeFileSync(
			path.join(dir, 'bad.c'),
			'extern void bad(void) __attribute__((error("boom")));\nint fe(int x) { if (x > 100000) bad(); return x; }\n',
		);
		fs.writeFileSync(path.join(dir, 'big.c'), 'int use(char *);\nint big(void) { char b[4096]; return use(b); }\n');
		for (const name of ['ok', 'bad'])
			execaSync('clang', ['-flto=thin', '-O2', '-c', path.join(dir, `${name}.c`), '-o', path.join(dir, `${name}.o`)]);
		execaSync('clang', ['-flto=thin', '-O2', '-Wframe-larger-than=1024', '-c', path.join(dir, 'big.c'), '-o', path.join(dir, 'big.o')]);
	});

	const link = (file: string, args: string[], env: Record<string, string> = {}) =>
		execa(file, ['-r', ...args], { cwd: dir, reject: false, env: { ...NO_CONFIG, LTOCACHE_AUTO_PRUNE: '0', ...env } });

	for (const { what, args } of [
		{ what: 'an error attribute reached', args: ['ok.o', 'bad.o', '-o', 'out.o'] },
		{ what: '--fatal-warnings over a frame-size warning', args: ['--fatal-warnings', 'ok.o', 'big.o', '-o', 'out.o'] },
	]) {
		it(`fails again in add mode, as without ltocache: ${what}`, async () => {
			const plain = await link(LLD, args);
			expect(plain.exitCode).not.toBe(0);
			const root = scratch('root');
			for (const attempt of [1, 2, 3]) {
				const shimmed = await link(SHIM, args, { LTOCACHE_MODE: 'add', LTOCACHE_DIR: root });
				expect({ attempt, status: shimmed.exitCode }).toEqual({ attempt, status: plain.exitCode });
				expect(entriesBelow(root)).toEqual([]);
			}
		});
	}

	it('keeps the entries of a link that succeeds (control)', async () => {
		const root = scratch('root');
		expect((await link(SHIM, ['ok.o', '-o', 'ok-out.o'], { LTOCACHE_MODE: 'add', LTOCACHE_DIR: root })).exitCode).toBe(0);
		expect(entriesBelow(root).length).toBe(1);
	});
});
