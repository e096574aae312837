// The shim's decision and the manager's deletion rules, called in-process
// (fast enough to run under mutation testing); the integration tests run
// the same rules through the real commands.
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { clear, prune } from '../../src/cli/maintain.js';
import { toBytes } from '../../src/shared/bytes.js';
import { keyName } from '../../src/shared/keydir.js';
import { MEMO_DIR, pruneMemo } from '../../src/shared/memo.js';
import { isShared } from '../../src/shared/root.js';
import { decide, type Plan } from '../../src/shim/decide.js';
import { makeEntry, makeKey, onDisk, setAge } from '../helpers/cache.js';
import { scratchRoot } from '../helpers/tools.js';

const scratch = scratchRoot();
const HOUR = 3600_000;

/** argv as given, no root to prune, nothing said unasked. */
function expectPlan(plan: Plan, args: string[]) {
	expect(plan.args).toEqual(args);
	expect(plan.root).toBeUndefined();
	expect(plan.warning).toBeUndefined();
}

describe('decide', () => {
	/** A cache directory no one can use, root included: below a regular file. */
	const blocked = () => {
		const dir = scratch('blocked');
		fs.writeFileSync(path.join(dir, 'file'), '');
		return path.join(dir, 'file', 'cache');
	};

	it('passes argv through without a flag, with a usable one, an empty one, or when disabled', async () => {
		const cwd = scratch('cwd');
		const env = { LTOCACHE_DIR: scratch('root') };
		for (const args of [
			['-r', 'a.o'],
			[`--thinlto-cache-dir=${cwd}/c`, '-r'],
			[`--thinlto-cache-dir=${blocked()}`, '--thinlto-cache-dir='],
		]) {
			expectPlan(await decide(args, cwd, env), args);
		}
		const flag = [`--thinlto-cache-dir=${blocked()}`];
		expectPlan(await decide(flag, cwd, { ...env, LTOCACHE_DISABLE: '1' }), flag);
	});

	it('moves an unusable flag to root/release/key, in place or after its @file', async () => {
		const cwd = scratch('cwd');
		const root = scratch('root');
		const original = blocked();
		const env = { LTOCACHE_DIR: root, KERNELRELEASE: '6.1.0-x', KBUILD_EXTMOD: '/src/mod' };
		const dir = path.join(root, '6.1.0-x', keyName(toBytes('/src/mod')));
		expect(await decide(['--gc-sections', `--thinlto-cache-dir=${original}`, 'a.o'], cwd, env)).toMatchObject({
			args: ['--gc-sections', `--thinlto-cache-dir=${dir}`, 'a.o'],
			root,
		});
		expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
		expect(JSON.parse(fs.readFileSync(path.join(dir, 'ltocache.json'), 'utf8'))).toEqual({
			version: 1,
			release: '6.1.0-x',
			extmod: '/src/mod',
			original,
		});

		fs.writeFileSync(path.join(cwd, 'x.mod'), `--thinlto-cache-dir=${original} a.o\n`);
		expect((await decide(['@x.mod', '-o', 'x.o'], cwd, env)).args).toEqual(['@x.mod', `--thinlto-cache-dir=${dir}`, '-o', 'x.o']);
	});

	it('keys by M when there is no KBUILD_EXTMOD, and by the original directory when there is neither', async () => {
		const cwd = scratch('cwd');
		const root = scratch('root');
		const original = blocked();
		const byM = await decide([`--thinlto-cache-dir=${original}`], cwd, { LTOCACHE_DIR: root, KERNELRELEASE: 'r', M: 'mod' });
		expect(byM.args).toEqual([`--thinlto-cache-dir=${path.join(root, 'r', keyName(toBytes(path.join(cwd, 'mod'))))}`]);
		const byOriginal = await decide([`--thinlto-cache-dir=${original}`], cwd, { LTOCACHE_DIR: root, KERNELRELEASE: 'r' });
		expect(byOriginal.args).toEqual([`--thinlto-cache-dir=${path.join(root, 'r', keyName(toBytes(original)))}`]);
	});

	it('drops the flag with LTOCACHE_MODE=drop, quietly, and with a warning when the root cannot take it', async () => {
		const cwd = scratch('cwd');
		const original = blocked();
		const drop = await decide(['-r', `--thinlto-cache-dir=${original}`], cwd, { LTOCACHE_DIR: scratch('root'), LTOCACHE_MODE: 'drop' });
		expectPlan(drop, ['-r', '--thinlto-cache-dir=']);
		expect(drop.note).toContain('ENOTDIR');
		// A root whose key directory cannot be made (it is a file where the release should be).
		const root = scratch('root');
		fs.writeFileSync(path.join(root, 'r'), '');
		const full = await decide([`--thinlto-cache-dir=${original}`], cwd, { LTOCACHE_DIR: root, KERNELRELEASE: 'r' });
		expect(full.args).toEqual(['--thinlto-cache-dir=']);
		expect(full.root).toBeUndefined();
		expect(full.warning).toMatch(
			/^--thinlto-cache-dir=.* is not writable \(ENOTDIR\); cannot create .* \(ENOTDIR\), linking without a ThinLTO cache$/,
		);
	});
});

describe('a shared root', () => {
	it('is only the one LTOCACHE_DIR names, setgid and writable by its group; never the XDG cache or the fallback', () => {
		const root = scratch('shared');
		fs.chmodSync(root, 0o2770);
		expect(isShared(root, { LTOCACHE_DIR: root })).toBe(true);
		expect(isShared(root, { LTOCACHE_DIR: `${root}/` })).toBe(true);
		expect(isShared(root, {})).toBe(false);
		expect(isShared(root, { XDG_CACHE_HOME: path.dirname(root) })).toBe(false);
		expect(isShared(root, { LTOCACHE_DIR: scratch('other') })).toBe(false);
		fs.chmodSync(root, 0o770);
		expect(isShared(root, { LTOCACHE_DIR: root })).toBe(false);
		fs.chmodSync(root, 0o2750);
		expect(isShared(root, { LTOCACHE_DIR: root })).toBe(false);
	});
});

describe('the deletion rules', () => {
	it('clear a module by its directory: the key name, or what its metadata says it stands for', async () => {
		const root = scratch('root');
		const byName = makeKey(root, 'r', '/src/named', 2);
		fs.rmSync(path.join(byName, 'ltocache.json')); // metadata lost: the name still tells
		const byOriginal = path.join(root, 'r', 'some-key');
		fs.mkdirSync(byOriginal);
		fs.writeFileSync(
			path.join(byOriginal, 'ltocache.json'),
			JSON.stringify({ version: 1, release: 'r', original: '/tree/.thinlto-cache' }),
		);
		const other = makeKey(root, 'r', '/src/other', 2);
		for (const key of [byName, byOriginal, other]) makeEntry(key);
		expect((await clear(root, { extmod: '/src/named' }, false)).removed.entries).toBe(1);
		expect((await clear(root, { extmod: '/tree/.thinlto-cache' }, false)).removed.entries).toBe(1);
		expect(onDisk(root).size).toBe(1);
		expect([...onDisk(root).keys()][0].startsWith(other)).toBe(true);
	});

	it('evict only llvmcache-* regular files, least recently used first, and never touch foreign files or follow symlinks', async () => {
		const root = scratch('root');
		const outside = scratch('outside');
		const target = path.join(outside, 'llvmcache-outside');
		fs.writeFileSync(target, Buffer.alloc(1000));
		const key = makeKey(root, '6.1.0-1', '/src/one', 2);
		const files = [1, 2, 3, 4].map((age) => makeEntry(key, { bytes: 100, ageDays: age }));
		setAge(files[3], 4, 0.5); // read yesterday: a hit moved its atime
		fs.symlinkSync(target, path.join(key, 'llvmcache-link'));
		// Foreign files stay whatever their age; so do LLVM's timestamp and the metadata.
		for (const name of ['notes.txt', 'ltocache.json.bak', 'llvmcache.timestamp']) {
			fs.writeFileSync(path.join(key, name), 'mine');
			setAge(path.join(key, name), 2);
		}
		const report = await prune(root, { maxBytes: 200 }, {}, false);
		expect(report.removed).toEqual({ entries: 2, bytes: 200, tempFiles: 0, directories: 0 });
		expect(report.remaining).toEqual({ entries: 2, bytes: 200 });
		expect(files.map((f) => fs.existsSync(f))).toEqual([true, false, false, true]);
		expect(fs.readdirSync(key).sort()).toEqual(
			[
				path.basename(files[0]),
				path.basename(files[3]),
				'llvmcache-link',
				'llvmcache.timestamp',
				'ltocache.json',
				'ltocache.json.bak',
				'notes.txt',
			].sort(),
		);
		expect(fs.existsSync(target)).toBe(true);
	});

	it('never count or delete through a module directory another member swapped for a symlink, before or after it was read', async () => {
		const root = scratch('root');
		const keys = ['/src/a', '/src/b'].map((m) => makeKey(root, '6.1.0-1', m, 2));
		const day30 = { ageDays: 30 };
		for (const key of keys) {
			makeEntry(key, day30);
			fs.writeFileSync(path.join(key, 'Thin-1.tmp.o'), 'x');
			fs.writeFileSync(path.join(key, 'ltocache.counts'), '');
			for (const name of ['Thin-1.tmp.o', 'ltocache.counts']) setAge(path.join(key, name), 1);
		}
		// Where the symlinks lead: directories of someone else's holding files of the same names, all old.
		const targets = keys.map((key) => {
			const dir = scratch('elsewhere');
			for (const name of fs.readdirSync(key)) fs.writeFileSync(path.join(dir, name), 'not ltocache');
			fs.writeFileSync(path.join(dir, 'llvmcache-theirs'), 'not ltocache');
			for (const name of fs.readdirSync(dir)) setAge(path.join(dir, name), 30);
			return dir;
		});
		const before = targets.map((dir) => fs.readdirSync(dir).sort());
		let swapped = false;
		// Told after the first module directory is read: it is swapped after its scan, the other before its own.
		const report = await prune(root, { maxAge: 86_400_000 }, {}, false, () => {
			if (swapped) return;
			swapped = true;
			keys.forEach((key, i) => {
				fs.renameSync(key, `${key}.moved`);
				fs.symlinkSync(targets[i], key);
			});
		});
		expect(swapped).toBe(true);
		expect(targets.map((dir) => fs.readdirSync(dir).sort())).toEqual(before);
		expect(report.removed).toEqual({ entries: 0, bytes: 0, tempFiles: 0, directories: 0 });
		expect(report.skipped.map((s) => s.error)).toContain('ELOOP');
	});

	it('never count or delete in another root through a release directory swapped for a symlink before it was read', async () => {
		const root = scratch('root');
		makeEntry(makeKey(root, '6.1.0-1', '/src/a', 2), { ageDays: 30 });
		makeEntry(makeKey(root, '6.1.0-2', '/src/b', 2), { ageDays: 30 });
		// Another root (root's own, say), with a module directory of ltocache's under a release of the same name.
		const other = scratch('other-root');
		const theirs = makeEntry(makeKey(other, '6.1.0-2', '/src/theirs', 2), { ageDays: 30 });
		let swapped = false;
		// Told after 6.1.0-1's module directory is read (releases are read in order): 6.1.0-2 is swapped before its turn.
		const report = await prune(root, { maxAge: 86_400_000 }, {}, false, () => {
			if (swapped) return;
			swapped = true;
			fs.renameSync(path.join(root, '6.1.0-2'), path.join(root, 'moved'));
			fs.symlinkSync(path.join(other, '6.1.0-2'), path.join(root, '6.1.0-2'));
		});
		expect(swapped).toBe(true);
		expect(fs.existsSync(theirs)).toBe(true);
		expect(fs.readdirSync(path.dirname(theirs)).sort()).toEqual([path.basename(theirs), 'ltocache.json']);
		expect(report.removed.entries).toBe(1); // 6.1.0-1's
		expect(report.skipped.map((s) => s.error)).toContain('ELOOP');
	});

	it('forget the inputs memo only inside its own directory, while another member swaps a symlink in and out of its place', async () => {
		const root = scratch('root');
		const memo = path.join(root, MEMO_DIR);
		fs.mkdirSync(memo);
		const victim = scratch('victim');
		const files = Array.from({ length: 20 }, (_, i) => path.join(victim, `file-${i}`));
		for (const file of files) fs.writeFileSync(file, 'not ltocache');
		// Renames the directory aside and a symlink to the victim into its place, and back, as fast as it can.
		const swapper = execa(process.execPath, [
			'-e',
			`const fs = require('fs'); const [memo, victim] = process.argv.slice(1); console.log('swapping');
			for (;;) { fs.renameSync(memo, memo + '.real'); fs.symlinkSync(victim, memo); fs.unlinkSync(memo); fs.renameSync(memo + '.real', memo); }`,
			memo,
			victim,
		]);
		await new Promise((resolve) => swapper.stdout?.once('data', resolve));
		try {
			// What clear does with the memo (maxAge 0: every file goes), many times over, each time in a window of microseconds.
			for (let i = 0; i < 20_000 && files.every((f) => fs.existsSync(f)); i++) {
				try {
					pruneMemo(root, Date.now(), 0);
				} catch {} // the directory renamed away at that moment
			}
		} finally {
			swapper.kill();
			await swapper.catch(() => {});
		}
		expect(files.filter((f) => !fs.existsSync(f))).toEqual([]);
	});

	it('remove temporaries only once stale, and a key directory only when empty and idle for an hour', async () => {
		const root = scratch('root');
		const idle = makeKey(root, '6.1.0-1', '/src/idle', 1);
		const busy = makeKey(root, '6.1.0-1', '/src/busy', 0);
		for (const key of [idle, busy]) makeEntry(key);
		fs.writeFileSync(path.join(idle, 'llvmcache.timestamp'), '');
		const fresh = path.join(busy, 'Thin-1.tmp.o');
		const stale = path.join(busy, 'Thin-2.tmp.o');
		const metaTemp = path.join(busy, 'ltocache.json.99.tmp');
		for (const f of [fresh, stale, metaTemp]) fs.writeFileSync(f, 'x');
		for (const f of [stale, metaTemp]) fs.utimesSync(f, new Date(Date.now() - 2 * HOUR), new Date(Date.now() - 2 * HOUR));

		const dry = await clear(root, {}, true);
		expect(dry).toMatchObject({ dryRun: true, removed: { entries: 2, tempFiles: 2, directories: 0 } });
		expect(onDisk(root).size).toBe(2);

		const report = await clear(root, {}, false);
		expect(report.removed).toEqual({ entries: 2, bytes: 200, tempFiles: 2, directories: 1 });
		expect(fs.existsSync(idle)).toBe(false);
		expect(fs.readdirSync(busy).sort()).toEqual(['Thin-1.tmp.o', 'ltocache.json']);

		// Empty now, but claimed by a link a moment ago: it stays.
		fs.rmSync(fresh);
		expect((await clear(root, {}, false)).removed.directories).toBe(0);
		// Idle, but holding a temporary of a link in flight: it stays.
		fs.writeFileSync(fresh, 'x');
		fs.utimesSync(path.join(busy, 'ltocache.json'), new Date(Date.now() - 2 * HOUR), new Date(Date.now() - 2 * HOUR));
		expect((await clear(root, {}, false)).removed.directories).toBe(0);
		fs.rmSync(fresh);
		expect((await clear(root, {}, false)).removed.directories).toBe(2); // the key and its now empty release
		expect(fs.readdirSync(root)).toEqual([]);
	});

	it('clear only the kernel or the module asked for, and prune by age, count, stale kernel and share of free space', async () => {
		const root = scratch('root');
		const a = makeKey(root, '6.1.0-1', '/src/a', 2);
		const b = makeKey(root, '5.4.0-old', '/src/b', 2);
		const aFiles = [1, 10, 40].map((age) => makeEntry(a, { ageDays: age }));
		const bFiles = [2, 9].map((age) => makeEntry(b, { ageDays: age }));
		const left = () => [...aFiles, ...bFiles].map((f) => fs.existsSync(f));
		expect((await prune(root, { maxAge: 30 * 86_400_000 }, {}, false)).removed.entries).toBe(1);
		expect(left()).toEqual([true, true, false, true, true]);
		expect((await prune(root, { maxFiles: 3 }, { kernel: '6.1.0-1' }, false)).removed.entries).toBe(0);
		expect((await prune(root, { maxFiles: 3 }, {}, false)).removed.entries).toBe(1);
		expect(left()).toEqual([true, false, false, true, true]);
		expect((await clear(root, { extmod: '/src/a' }, false)).removed.entries).toBe(1);
		expect(left()).toEqual([false, false, false, true, true]);
		const c = makeKey(root, '6.1.0-1', '/src/c', 2);
		const cFile = makeEntry(c);
		expect((await clear(root, { kernel: '5.4.0-old' }, false)).removed.entries).toBe(2);
		expect(fs.existsSync(cFile)).toBe(true);
		expect((await prune(root, { maxPercent: 0 }, {}, false)).removed.entries).toBe(1);
		expect(fs.existsSync(cFile)).toBe(false);
	});
});
