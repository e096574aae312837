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
		fs.writeFileSync(path.join(dir, 'undef.c'), 'extern int missing_sym;\nint fe(int x) { return x + missing_sym; }\n');
		for (const name of ['ok', 'bad', 'undef'])
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

	it('runs once a link that fails after lld pruned its directory, as without ltocache', async () => {
		// The module's directory as a link of a week ago leaves it: an entry last used 10 days ago, the timestamp of
		// lld's last prune 2 hours old. The next link prunes that entry, changing the directory after its last write,
		// and then fails on an undefined symbol, the link's own error.
		const root = scratch('root');
		const env = { ...NO_CONFIG, LTOCACHE_AUTO_PRUNE: '0', LTOCACHE_MODE: 'add', LTOCACHE_DIR: root };
		const shared = (file: string, extra: string[]) =>
			execa(file, ['-shared', ...extra, 'undef.o', '-o', 'undef.so'], { cwd: dir, reject: false, env });
		expect((await shared(SHIM, [])).exitCode).toBe(0);
		const entry = path.join(root, entriesBelow(root)[0]);
		const moduleDir = path.dirname(entry);
		const old = path.join(moduleDir, `llvmcache-${'0'.repeat(40)}`);
		fs.copyFileSync(entry, old);
		const week = new Date(Date.now() - 10 * 86_400_000);
		fs.utimesSync(old, week, week);
		const hours = new Date(Date.now() - 2 * 3_600_000);
		fs.utimesSync(path.join(moduleDir, 'llvmcache.timestamp'), hours, hours);

		const plain = await shared(LLD, ['--no-undefined']);
		const shimmed = await shared(SHIM, ['--no-undefined']);
		expect(fs.existsSync(old)).toBe(false); // lld pruned it: the case this is about
		expect(shimmed.exitCode).toBe(plain.exitCode);
		expect(plain.exitCode).not.toBe(0);
		const errors = (text: string) => text.split('\n').filter((line) => line.includes('undefined symbol: missing_sym'));
		expect(errors(plain.stderr).length).toBe(1);
		expect(errors(shimmed.stderr)).toEqual(errors(plain.stderr));
		expect(shimmed.stderr).not.toContain('ltocache:');
	});

	it('links, byte-identical, where an entry is empty, cut short or no object, and the next link writes them afresh', async () => {
		// What a machine that went down just after lld renamed entries in can leave (the data not yet written), or
		// anything else under an entry's name: lld takes the file for a hit and fails on it, every link.
		const args = ['ok.o', 'big.o', 'undef.o', '-o', 'out.o'];
		const plain = await link(LLD, args);
		expect(plain.exitCode).toBe(0);
		const reference = fs.readFileSync(path.join(dir, 'out.o'));
		const root = scratch('root');
		const env = { LTOCACHE_MODE: 'add', LTOCACHE_DIR: root };
		expect((await link(SHIM, args, env)).exitCode).toBe(0);
		const entries = entriesBelow(root).map((e) => path.join(root, e));
		expect(entries.length).toBe(3);
		const whole = entries.map((e) => fs.readFileSync(e));
		fs.truncateSync(entries[0], 0);
		fs.truncateSync(entries[1], Math.floor(whole[1].length / 2));
		fs.writeFileSync(entries[2], 'not an object\n');

		const broken = await link(SHIM, args, env);
		expect(broken.exitCode).toBe(0);
		expect(fs.readFileSync(path.join(dir, 'out.o'))).toEqual(reference);
		expect(broken.stderr).toMatch(
			/^ltocache: \S+ failed where \S+ holds llvmcache-\w+, (empty|cut short|not an object) \(removed\), and 2 more; linking again without a cache$/m,
		);
		expect(broken.stderr.match(/^ltocache: /gm)).toHaveLength(1);
		expect(entries.filter((e) => fs.existsSync(e))).toEqual([]);

		const again = await link(SHIM, args, env);
		expect({ status: again.exitCode, said: again.stderr }).toEqual({ status: 0, said: plain.stderr });
		expect(fs.readFileSync(path.join(dir, 'out.o'))).toEqual(reference);
		expect(entries.map((e) => fs.readFileSync(e))).toEqual(whole);
	});

	it('dies of the signal that killed the linker, the directory holding a broken entry: a link the build stopped is not run again', async () => {
		const args = ['ok.o', '-o', 'out.o'];
		const root = scratch('root');
		const env = { LTOCACHE_MODE: 'add', LTOCACHE_DIR: root };
		expect((await link(SHIM, args, env)).exitCode).toBe(0);
		const [entry] = entriesBelow(root);
		fs.truncateSync(path.join(root, entry), 0);
		// The real ld.lld, stopped by SIGTERM the first time it is run (the build's kill, as make sends it).
		const bin = scratch('bin');
		const stop = path.join(bin, 'stop');
		fs.writeFileSync(stop, '');
		fs.writeFileSync(
			path.join(bin, 'ld.lld'),
			`#!/bin/sh\nif [ -e '${stop}' ]; then rm '${stop}'; kill -TERM $$; fi\nexec '${LLD}' "$@"\n`,
			{ mode: 0o755 },
		);
		const stopped = await link(SHIM, args, { ...env, LTOCACHE_LD: path.join(bin, 'ld.lld') });
		expect(fs.existsSync(stop)).toBe(false);
		expect({ signal: stopped.signal, status: stopped.exitCode, said: stopped.stderr }).toEqual({
			signal: 'SIGTERM',
			status: undefined,
			said: '',
		});
	});

	it('fails as without ltocache where argv ends with an option lacking its value: what the shim appends is not taken for it', async () => {
		fs.writeFileSync(path.join(dir, 'ends.rsp'), 'ok.o -o out.o -u\n');
		for (const args of [
			['ok.o', '-o', 'out.o', '-u'],
			['ok.o', '-o', 'out.o', '--thinlto-cache-policy'],
			['ok.o', '-o', 'out.o', '-plugin-opt'],
			['@ends.rsp'],
		]) {
			const plain = await link(LLD, args);
			expect(plain.exitCode).not.toBe(0);
			const root = scratch('root');
			const shimmed = await link(SHIM, args, { LTOCACHE_MODE: 'add', LTOCACHE_DIR: root });
			expect({ args, status: shimmed.exitCode, said: shimmed.stderr }).toEqual({ args, status: plain.exitCode, said: plain.stderr });
			expect(entriesBelow(root)).toEqual([]);
			expect(fs.readdirSync(dir).filter((name) => name.startsWith('-'))).toEqual([]);
		}
	});

	it('keeps the entries of a link that succeeds (control)', async () => {
		const root = scratch('root');
		expect((await link(SHIM, ['ok.o', '-o', 'ok-out.o'], { LTOCACHE_MODE: 'add', LTOCACHE_DIR: root })).exitCode).toBe(0);
		expect(entriesBelow(root).length).toBe(1);
	});
});
