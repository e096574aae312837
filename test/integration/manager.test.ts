// ltocache stats, prune and clear on real directory trees, run as a child
// process the way users run it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa, execaSync } from 'execa';
import { describe, expect, it } from 'vitest';
import type { StatsJson } from '../../src/cli/commands/stats.js';
import type { Report } from '../../src/cli/maintain.js';
import { LOCK_NAME, SUMMARY_NAME, TAG_NAME, writeTag } from '../../src/shared/root.js';
import { ltocache, makeEntry, makeKey, onDisk, setAge } from '../helpers/cache.js';
import { asNobody, CLI, describeIf, isRoot, NOBODY, onPath, repo, scratchRoot } from '../helpers/tools.js';

const scratch = scratchRoot();

async function stats(root: string, args: string[] = [], env: Record<string, string> = {}): Promise<StatsJson> {
	const result = await ltocache(root, ['stats', '--json', ...args], env);
	expect(result).toMatchObject({ exitCode: 0, stderr: '' });
	return JSON.parse(result.stdout) as StatsJson;
}

async function run(root: string, args: string[], env: Record<string, string> = {}): Promise<Report> {
	const result = await ltocache(root, [...args, '--json'], env);
	expect(result).toMatchObject({ exitCode: 0, stderr: '' });
	return JSON.parse(result.stdout) as Report;
}

const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

describe('ltocache stats', () => {
	it('counts exactly the llvmcache-* regular files, per kernel and module', async () => {
		const root = scratch('root');
		const outside = scratch('outside');
		const big = path.join(outside, 'llvmcache-big');
		fs.writeFileSync(big, Buffer.alloc(50_000));
		const k1 = makeKey(root, '6.1.0-1', '/src/one');
		const k2 = makeKey(root, '6.1.0-1', '/src/two');
		const k3 = makeKey(root, '5.15.0-9', '/var/lib/dkms/hello/1.0/build');
		for (let i = 0; i < 30; i++) makeEntry([k1, k2, k3][i % 3], { bytes: 1000 + i * 37 });
		// Not entries: a symlink to a file outside, a directory named like an entry,
		// an in-flight temporary, LLVM's timestamp, a foreign file.
		fs.symlinkSync(big, path.join(k1, 'llvmcache-symlink'));
		fs.mkdirSync(path.join(k2, 'llvmcache-dir'));
		fs.writeFileSync(path.join(k2, 'Thin-abc123.tmp.o'), 'partial');
		fs.writeFileSync(path.join(k3, 'llvmcache.timestamp'), '');
		fs.writeFileSync(path.join(k3, 'notes.txt'), 'mine');
		// A symlinked release directory pointing outside is not followed.
		fs.symlinkSync(outside, path.join(root, '9.9.9-link'));

		const truth = onDisk(root);
		const s = await stats(root, [], { LTOCACHE_MODULES: scratch('modules') });
		expect(s.root).toBe(root);
		expect(s.totalEntries).toBe(30);
		expect(s.totalEntries).toBe(truth.size);
		expect(s.totalBytes).toBe(sum(truth));
		expect(s.tempFiles).toBe(1);
		expect(s.kernels.map((k) => k.release)).toEqual(['5.15.0-9', '6.1.0-1']);
		const [old, cur] = s.kernels;
		expect(old).toMatchObject({ installed: false, entries: 10 });
		expect(cur.keys.map((k) => k.extmod).sort()).toEqual(['/src/one', '/src/two']);
		expect(cur.entries + old.entries).toBe(30);
		expect(old.keys[0]).toMatchObject({
			extmod: '/var/lib/dkms/hello/1.0/build',
			original: '/usr/src/linux/.thinlto-cache',
			foreignFiles: 1,
		});
		expect(Date.parse(cur.lastUse!)).toBeGreaterThan(Date.now() - 60_000);
	});

	it('tells installed kernels from the rest, limits to --kernel, and prints an aligned table', async () => {
		const root = scratch('root');
		const modules = scratch('modules');
		fs.mkdirSync(path.join(modules, '6.1.0-1'));
		makeEntry(makeKey(root, '6.1.0-1', '/src/one'), { bytes: 2048 });
		makeEntry(makeKey(root, '5.10.0-old', '/src/one'), { bytes: 10 });
		const env = { LTOCACHE_MODULES: modules };

		const s = await stats(root, [], env);
		expect(s.kernels.map((k) => [k.release, k.installed])).toEqual([
			['5.10.0-old', false],
			['6.1.0-1', true],
		]);
		expect((await stats(root, ['--kernel', '6.1.0-1'], env)).kernels.map((k) => k.release)).toEqual(['6.1.0-1']);

		const human = await ltocache(root, ['stats'], env);
		expect(human.exitCode).toBe(0);
		const lines = human.stdout.split('\n');
		expect(lines[0]).toBe(`cache root: ${root}`);
		// LINKS HITS MISSES HIT RATE: nothing counted yet.
		expect(human.stdout).toMatch(/^6\.1\.0-1 +yes +0 +0 +0 +- +1 +2 KiB +\d{4}-\d\d-\d\d \d\d:\d\d$/m);
		expect(human.stdout).toMatch(/^ {2}\/src\/one +0 +0 +0 +- +1 +2 KiB/m);
		expect(human.stdout).toMatch(/^total +0 +0 +0 +- +2 +2\.01 KiB$/m);
		// Aligned: every row's SIZE column ends at the same place.
		const sizeEnd = lines[1].indexOf('SIZE') + 4;
		for (const line of lines.slice(2, -1)) expect(line.slice(0, sizeEnd)).toMatch(/B$/);
	});

	it('is exact on 100,000 entries', async () => {
		const root = scratch('root');
		const keys = Array.from({ length: 40 }, (_, i) => makeKey(root, `6.${i % 4}.0-big`, `/src/m${i}`));
		for (let i = 0; i < 100_000; i++)
			fs.writeFileSync(`${keys[i % 40]}/llvmcache-${i.toString(16).padStart(40, '0')}`, Buffer.alloc(i % 997));
		const truth = onDisk(root);
		expect(truth.size).toBe(100_000);
		const s = await stats(root);
		expect(s.totalEntries).toBe(100_000);
		expect(s.totalBytes).toBe(sum(truth));
		expect(s.kernels.map((k) => k.entries)).toEqual([25_000, 25_000, 25_000, 25_000]);
	});

	it('stays exact from summaries while lld adds entries and prune removes them', async () => {
		const root = scratch('root');
		const keys = [1, 2, 3].map((n) => makeKey(root, '6.1.0-1', `/src/m${n}`, 1));
		for (const key of keys) for (let i = 0; i < 5; i++) makeEntry(key, { bytes: 100 * (i + 1), ageDays: i + 1 });
		const hourAgo = new Date(Date.now() - 3600_000);
		const age = () => {
			for (const key of keys) fs.utimesSync(key, hourAgo, hourAgo);
		};
		age();
		const exact = async () => {
			const s = await stats(root);
			const truth = onDisk(root);
			expect(s.totalEntries).toBe(truth.size);
			expect(s.totalBytes).toBe(sum(truth));
			return s;
		};
		const summaryFile = path.join(root, SUMMARY_NAME);
		const summarized = () => Object.keys((JSON.parse(fs.readFileSync(summaryFile, 'utf8')) as { dirs: object }).dirs).length;

		await exact();
		expect(summarized()).toBe(3);
		const written = fs.statSync(summaryFile).mtimeMs;
		await exact();
		expect(fs.statSync(summaryFile).mtimeMs).toBe(written); // nothing changed, nothing counted again

		// lld's way: a temporary file, renamed in.
		const tmp = path.join(keys[0], 'Thin-1234.tmp.o');
		fs.writeFileSync(tmp, Buffer.alloc(777));
		expect((await exact()).tempFiles).toBe(1);
		fs.renameSync(tmp, path.join(keys[0], `llvmcache-${'f'.repeat(40)}`));
		expect((await exact()).tempFiles).toBe(0);
		// Changed just now: counted, but not summarized until it has been still for a while.
		expect(summarized()).toBe(2);
		age();
		await exact();
		expect(summarized()).toBe(3);

		await run(root, ['prune', '--max-files', '7']);
		expect((await exact()).totalEntries).toBe(7);
		await run(root, ['clear', '--extmod', '/src/m2']);
		await exact();
	});

	it('reports an empty or missing root as empty', async () => {
		const root = path.join(scratch('root'), 'not-yet');
		expect(await stats(root)).toMatchObject({ root, totalEntries: 0, totalBytes: 0, kernels: [] });
		expect(fs.existsSync(root)).toBe(false);
	});
});

describe('entries hard-linked into an .incbin sibling', () => {
	it('are counted once in the bytes stats shows and prune holds to the limits, as on disk', async () => {
		const root = scratch('root');
		const base = makeKey(root, '6.1.0-1', '/src/fw');
		// Two .incbin variants of one module: the newer seeded from the older with hard links (src/shim/seed.ts).
		const [older, newer] = ['+incbin-aaaa', '+incbin-bbbb'].map((variant) => {
			const dir = `${base}${variant}`;
			fs.mkdirSync(dir);
			fs.copyFileSync(path.join(base, 'ltocache.json'), path.join(dir, 'ltocache.json'));
			return dir;
		});
		fs.rmSync(base, { recursive: true });
		const files = [2, 1].map((ageDays) => makeEntry(older, { bytes: 100, ageDays }));
		// Counted once, and summarized (directories changed over two seconds before).
		const past = new Date(Date.now() - 3600_000);
		for (const dir of [older, newer]) fs.utimesSync(dir, past, past);
		expect((await stats(root)).totalBytes).toBe(200);
		for (const file of files) fs.linkSync(file, path.join(newer, path.basename(file)));
		// Four names, 200 bytes on disk (as du counts them: each file once).
		const s = await stats(root);
		expect(s.totalEntries).toBe(4);
		expect(s.totalBytes).toBe(200);
		expect(s.kernels[0].bytes).toBe(200);
		// Under a 300-byte cap nothing needs to go: the four names take 200 bytes.
		const report = await run(root, ['prune', '--max-size', '300B']);
		expect(report.removed.entries).toBe(0);
		expect(onDisk(root).size).toBe(4);
		// Under 150 bytes both names of one entry go, which frees its 100 bytes; the other entry stays under both.
		const pruned = await run(root, ['prune', '--max-size', '150B']);
		expect(pruned.removed).toMatchObject({ entries: 2, bytes: 100 });
		expect(pruned.remaining).toEqual({ entries: 2, bytes: 100 });
		expect([...onDisk(root).keys()].map((f) => path.basename(f)).sort()).toEqual([path.basename(files[1]), path.basename(files[1])]);
	});
});

describe('ltocache prune', () => {
	it('evicts least recently used first, where last use is the later of atime and mtime', async () => {
		const root = scratch('root');
		const key = makeKey(root, '6.1.0-1', '/src/one');
		// mtime ages 1..10 days; entry 9 (old mtime) was read yesterday: a cache hit moves atime only.
		const files = Array.from({ length: 10 }, (_, i) => makeEntry(key, { bytes: 1000, ageDays: i + 1 }));
		setAge(files[9], 10, 0.5);

		const report = await run(root, ['prune', '--max-size', '4000B']);
		expect(report.removed).toMatchObject({ entries: 6, bytes: 6000 });
		expect(report.remaining).toEqual({ entries: 4, bytes: 4000 });
		const kept = files.filter((f) => fs.existsSync(f));
		expect(kept).toEqual([files[0], files[1], files[2], files[9]]);
	});

	it('honours --max-age, --max-files, --policy and --kernel', async () => {
		const root = scratch('root');
		const a = makeKey(root, '6.1.0-1', '/src/one');
		const b = makeKey(root, '6.6.0-2', '/src/one');
		const aFiles = [1, 5, 20, 40].map((age) => makeEntry(a, { ageDays: age }));
		const bFiles = [1, 5, 20, 40].map((age) => makeEntry(b, { ageDays: age }));
		const exists = (files: string[]) => files.map((f) => fs.existsSync(f));

		expect((await run(root, ['prune', '--max-age', '30d', '--kernel', '6.6.0-2'])).removed.entries).toBe(1);
		expect(exists(aFiles)).toEqual([true, true, true, true]);
		expect(exists(bFiles)).toEqual([true, true, true, false]);

		expect((await run(root, ['prune', '--max-age', '2w'])).removed.entries).toBe(3);
		expect(exists(aFiles)).toEqual([true, true, false, false]);
		expect(exists(bFiles)).toEqual([true, true, false, false]);

		expect((await run(root, ['prune', '--max-files', '3'])).removed.entries).toBe(1);
		expect(exists([...aFiles, ...bFiles]).filter(Boolean)).toHaveLength(3);

		// LLVM's policy syntax: 48 hours, and at most one file.
		const report = await run(root, ['prune', '--policy', 'prune_after=48h:cache_size_files=1']);
		expect(report.remaining.entries).toBe(1);
		expect(onDisk(root).size).toBe(1);
	});

	it('drops kernels that are no longer installed with --stale-kernels', async () => {
		const root = scratch('root');
		const modules = scratch('modules');
		fs.mkdirSync(path.join(modules, '6.1.0-1'));
		const kept = makeEntry(makeKey(root, '6.1.0-1', '/src/one'));
		const gone = makeEntry(makeKey(root, '5.10.0-old', '/src/one'));
		const report = await run(root, ['prune', '--stale-kernels'], { LTOCACHE_MODULES: modules });
		expect(report.removed.entries).toBe(1);
		expect([fs.existsSync(kept), fs.existsSync(gone)]).toEqual([true, false]);
	});

	it('applies 5 GiB and 30 days by default, overridable from the environment', async () => {
		const root = scratch('root');
		const key = makeKey(root, '6.1.0-1', '/src/one');
		const fresh = makeEntry(key, { ageDays: 1 });
		const old = makeEntry(key, { ageDays: 31 });
		expect((await run(root, ['prune'])).removed.entries).toBe(1);
		expect([fs.existsSync(fresh), fs.existsSync(old)]).toEqual([true, false]);
		makeEntry(key, { ageDays: 2, bytes: 300 });
		const report = await run(root, ['prune'], { LTOCACHE_MAX_SIZE: '200B', LTOCACHE_MAX_AGE: '90d' });
		expect(report.removed.entries).toBe(1);
		expect(report.remaining).toEqual({ entries: 1, bytes: 100 });
	});

	it('reads sizes as ccache does: a bare number is GiB, nothing rounds to no limit, output in the units of the input', async () => {
		const root = scratch('root');
		const key = makeKey(root, '6.1.0-1', '/src/one');
		const files = Array.from({ length: 4 }, (_, i) => makeEntry(key, { bytes: 600, ageDays: i + 1 }));
		// `ccache -M 5` is 5 GB: the next prune must not empty the cache.
		expect((await run(root, ['prune', '--max-size', '5'])).removed.entries).toBe(0);
		expect((await run(root, ['prune'], { LTOCACHE_MAX_SIZE: '5' })).removed.entries).toBe(0);
		// Less than a byte is refused, never rounded to 0 (no limit).
		for (const size of ['0.1B', '0.0000000001']) {
			const refused = await ltocache(root, ['prune', '--max-size', size]);
			expect(refused).toMatchObject({ exitCode: 2, stdout: '' });
			expect(refused.stderr).toMatch(new RegExp(`^ltocache: invalid --max-size '${size.replace('.', '\\.')}': less than a byte`));
		}
		expect(files.every((f) => fs.existsSync(f))).toBe(true);
		// A fraction of a unit is that much, not 0 (no limit): 0.000001 GiB is 1,073 bytes, one entry's room.
		const dry = await ltocache(root, ['prune', '--max-size', '0.000001', '--dry-run']);
		expect(dry.stdout).toContain('would remove 3 entries');
		// Binary in, binary out; decimal in, decimal out.
		const binary = await ltocache(root, ['prune', '--max-size', '2K', '--dry-run']);
		expect(binary.stdout).toBe(`would remove 1 entry (600 B)\nwould keep 3 entries (1.76 KiB) in ${root}`);
		const decimal = await ltocache(root, ['prune', '--max-size', '2KB', '--dry-run']);
		expect(decimal.stdout).toBe(`would remove 1 entry (600 B)\nwould keep 3 entries (1.8 kB) in ${root}`);
		const half = await ltocache(root, ['prune', '--max-size', '1.5K']);
		expect(half.stdout).toBe(`removed 2 entries (1.17 KiB)\nkept 2 entries (1.17 KiB) in ${root}`);
	});

	it('--dry-run reports the same and deletes nothing', async () => {
		const root = scratch('root');
		const key = makeKey(root, '6.1.0-1', '/src/one');
		for (let i = 0; i < 8; i++) makeEntry(key, { ageDays: i });
		const before = onDisk(root);
		const dry = await run(root, ['prune', '--max-files', '3', '--dry-run']);
		expect(dry).toMatchObject({ dryRun: true, removed: { entries: 5, bytes: 500 }, remaining: { entries: 3, bytes: 300 } });
		expect(onDisk(root)).toEqual(before);
		const human = await ltocache(root, ['prune', '--max-files', '3', '--dry-run']);
		expect(human.stdout).toBe(`would remove 5 entries (500 B)\nwould keep 3 entries (300 B) in ${root}`);
		const real = await run(root, ['prune', '--max-files', '3']);
		expect(real.removed).toEqual(dry.removed);
		expect(onDisk(root).size).toBe(3);
	});
});

describe('ltocache clear', () => {
	it('removes only one kernel release with --kernel, only one module with --extmod', async () => {
		const root = scratch('root');
		const modRoot = scratch('mods');
		const one = path.join(modRoot, 'one');
		const two = path.join(modRoot, 'two');
		const keys = {
			oldOne: makeKey(root, '5.15.0-1', one, 2),
			newOne: makeKey(root, '6.1.0-1', one, 2),
			newTwo: makeKey(root, '6.1.0-1', two, 2),
		};
		const files = Object.fromEntries(Object.entries(keys).map(([name, dir]) => [name, [makeEntry(dir), makeEntry(dir)]]));
		const left = () => Object.fromEntries(Object.entries(files).map(([name, list]) => [name, list.filter((f) => fs.existsSync(f)).length]));

		expect((await run(root, ['clear', '--kernel', '5.15.0-1'])).removed.entries).toBe(2);
		expect(left()).toEqual({ oldOne: 0, newOne: 2, newTwo: 2 });

		// Relative to the working directory, like M=.
		const result = await ltocache(root, ['clear', '--extmod', 'two', '--json'], {}, { cwd: modRoot });
		expect(result).toMatchObject({ exitCode: 0, stderr: '' });
		expect((JSON.parse(result.stdout) as Report).removed.entries).toBe(2);
		expect(left()).toEqual({ oldOne: 0, newOne: 2, newTwo: 0 });

		// A module that has no entries is an error, not `removed 0` (issue 21, item 3).
		const none = await ltocache(root, ['clear', '--extmod', path.join(modRoot, 'three')]);
		expect(none).toMatchObject({
			exitCode: 1,
			stdout: '',
			stderr: `ltocache: --extmod ${path.join(modRoot, 'three')} matches nothing in ${root} (ltocache stats lists the modules)`,
		});
		expect(left()).toEqual({ oldOne: 0, newOne: 2, newTwo: 0 });

		// A module whose path starts with another's is another module.
		const longer = makeKey(root, '6.1.0-1', `${one}ne`, 2);
		const kept = [makeEntry(longer), makeEntry(longer)];
		expect((await run(root, ['clear', '--extmod', one])).removed.entries).toBe(2);
		expect(left()).toEqual({ oldOne: 0, newOne: 0, newTwo: 0 });
		expect(kept.every((f) => fs.existsSync(f))).toBe(true);
	});
});

describe('safety', () => {
	it('shows what another member planted in a root with its control characters escaped: no escape reaches the terminal', async () => {
		const root = scratch('root');
		const ESC = '\x1b';
		// A title and a clear screen in the metadata, a colour in a release's name, a clear in a file's and a report's.
		const extmod = `/src/${ESC}]0;owned\x07${ESC}[2Jone\x9b`;
		const key = makeKey(root, '6.1.0-1', '/src/one');
		fs.writeFileSync(path.join(key, 'ltocache.json'), `${JSON.stringify({ version: 1, release: '6.1.0-1', extmod, original: '/o' })}\n`);
		makeEntry(key);
		makeEntry(makeKey(root, `6.1.0-${ESC}[31mred`, '/src/two'));
		fs.writeFileSync(path.join(key, `notes${ESC}[2J`), 'planted');
		fs.writeFileSync(path.join(root, `ltocache.mismatch.${ESC}[2J.txt`), 'planted');
		// biome-ignore lint/suspicious/noControlCharactersInRegex: raw control characters (a newline ends each line) are what must not be there
		const raw = /[\x00-\x09\x0b-\x1f\x7f-\x9f]/;
		const escaped = (text: string) => text.replaceAll(ESC, '\\x1b').replaceAll('\x07', '\\x07').replaceAll('\x9b', '\\x9b');

		const stats = await ltocache(root, ['stats']);
		expect(stats).toMatchObject({ exitCode: 0, stderr: '' });
		expect(stats.stdout).not.toMatch(raw);
		expect(stats.stdout).toContain(`  ${escaped(extmod)}  `);
		expect(stats.stdout).toContain(escaped(`6.1.0-${ESC}[31mred`));
		// --json keeps the value as it is (JSON escapes it).
		const json = await ltocache(root, ['stats', '--json']);
		expect(json.stdout).not.toContain(ESC);
		const kernel = (JSON.parse(json.stdout) as StatsJson).kernels.find((k) => k.release === '6.1.0-1');
		expect(kernel?.keys[0].extmod).toBe(extmod);

		const doctor = await ltocache(root, ['doctor'], { LTOCACHE_MODULES: scratch('modules') });
		expect(doctor.stdout).not.toMatch(raw);
		expect(doctor.stdout).toContain(escaped(path.join(key, `notes${ESC}[2J`)));
		expect(doctor.stdout).toContain(escaped(path.join(root, `ltocache.mismatch.${ESC}[2J.txt`)));

		// A prune waits for the lock's holder, named by the owner file another member may have written.
		const lock = path.join(root, LOCK_NAME);
		fs.mkdirSync(lock);
		const owner = { pid: process.pid, host: `else${ESC}[2Jwhere`, command: `ltocache ${ESC}]0;x\x07clear`, start: '', since: Date.now() };
		fs.writeFileSync(path.join(lock, 'owner.json'), JSON.stringify(owner));
		const prune = ltocache(root, ['prune', '--max-age', '1d']);
		const seen = await new Promise<string>((resolve) => {
			let text = '';
			prune.stderr?.on('data', (chunk: Buffer) => {
				text += chunk.toString();
				if (text.includes('\n')) resolve(text);
			});
		});
		prune.kill();
		await prune;
		expect(seen).toBe(
			`ltocache: waiting for pid ${process.pid} on ${escaped(owner.host)} (${escaped(owner.command)}) to release the lock on ${root}\n`,
		);
	});

	it('shows a module whose metadata another member wrote with fields of the wrong types by its directory, and goes on', async () => {
		const root = scratch('root');
		const keys = ['/src/one', '/src/two', '/src/three'].map((m) => makeKey(root, '6.1.0-1', m));
		for (const key of keys) makeEntry(key);
		const planted = [{ extmod: { a: 1 } }, { extmod: 7, incbin: 5 }, { extmod: ['/src/x'], sums: 'x' }];
		keys.forEach((key, i) => {
			fs.writeFileSync(path.join(key, 'ltocache.json'), JSON.stringify({ version: 1, release: '6.1.0-1', original: '/o', ...planted[i] }));
		});
		const result = await ltocache(root, ['stats']);
		expect(result).toMatchObject({ exitCode: 0, stderr: '' });
		for (const key of keys) expect(result.stdout).toContain(`  ${path.basename(key)}  `);
		const json = (JSON.parse((await ltocache(root, ['stats', '--json'])).stdout) as StatsJson).kernels[0].keys;
		expect(json.map((k) => k.extmod)).toEqual([null, null, null]);
		const cleared = await ltocache(root, ['clear', '--extmod', '/src/two']);
		expect(cleared).toMatchObject({ exitCode: 0, stderr: '' });
		expect(onDisk(root).size).toBe(2);
	});

	it('counts the links of a counts file with lines of the wrong types planted among them, and skips those', async () => {
		const root = scratch('root');
		const key = makeKey(root, '6.1.0-1', '/src/one');
		makeEntry(key);
		const good = { t: Date.now(), ms: 5, m: 3, w: [['0'.repeat(40), 1, 100]] };
		const planted = [
			{ t: 1, m: 1, w: [5] },
			{ t: 1, m: 1, w: [null] },
			{ t: 1, m: 1, w: [[1, 'x', 3]] },
			{ t: 1, m: '1', w: [] },
		];
		fs.writeFileSync(path.join(key, 'ltocache.counts'), [good, ...planted].map((l) => `${JSON.stringify(l)}\n`).join(''));
		expect(await stats(root)).toMatchObject({ totalLinks: 1, totalHits: 2, totalMisses: 1 });
	});

	it('never deletes foreign files, never follows symlinks, never leaves the root', async () => {
		const root = scratch('root');
		const outside = scratch('outside');
		const victims = [0, 1, 2].map(() => makeEntry(outside, { ageDays: 100 }));
		const key = makeKey(root, '6.1.0-1', '/src/one', 2);
		fs.symlinkSync(victims[0], path.join(key, 'llvmcache-0000000000000000000000000000000000000fff'));
		fs.symlinkSync(outside, path.join(key, 'llvmcache-dir-link'));
		fs.symlinkSync(outside, path.join(root, '6.1.0-1', 'key-link'));
		fs.symlinkSync(outside, path.join(root, '5.0.0-link'));
		// Where the shims' memos go: prune would remove what it leads to, unused for a week, and clear all of it.
		fs.symlinkSync(outside, path.join(root, 'ltocache.inputs'));
		const foreign = path.join(key, 'README');
		fs.writeFileSync(foreign, 'kept');
		setAge(foreign, 100);
		const foreignTmp = path.join(key, 'notes.tmp');
		fs.writeFileSync(foreignTmp, 'kept too');
		setAge(foreignTmp, 100);
		makeEntry(key, { ageDays: 100 });

		for (const args of [['prune', '--max-size', '1B'], ['clear']]) {
			await run(root, args);
			expect(victims.every((v) => fs.existsSync(v))).toBe(true);
			expect(fs.existsSync(foreign)).toBe(true);
			expect(fs.existsSync(foreignTmp)).toBe(true);
			expect(fs.readlinkSync(path.join(key, 'llvmcache-dir-link'))).toBe(outside);
			expect(fs.readlinkSync(path.join(root, '5.0.0-link'))).toBe(outside);
			expect(fs.readlinkSync(path.join(root, 'ltocache.inputs'))).toBe(outside);
		}
		expect(onDisk(key).size).toBe(0);
	});

	it('leaves temporaries of links in flight alone until they are an hour old', async () => {
		const root = scratch('root');
		const key = makeKey(root, '6.1.0-1', '/src/one');
		const fresh = path.join(key, 'Thin-fresh.tmp.o');
		const halfHour = path.join(key, 'Thin-half-hour.tmp.o');
		const stale = path.join(key, 'Thin-stale.tmp.o');
		const staleMeta = path.join(key, 'ltocache.json.4242.tmp');
		for (const file of [fresh, halfHour, stale, staleMeta]) fs.writeFileSync(file, 'x');
		setAge(halfHour, 0.5 / 24);
		setAge(stale, 2 / 24);
		setAge(staleMeta, 2 / 24);
		const report = await run(root, ['clear']);
		expect(report.removed.tempFiles).toBe(2);
		expect([fresh, halfHour, stale, staleMeta].map((f) => fs.existsSync(f))).toEqual([true, true, false, false]);
	});

	it('removes a key directory only when empty and idle for an hour', async () => {
		const root = scratch('root');
		const idle = makeKey(root, '6.1.0-1', '/src/idle', 1);
		const busy = makeKey(root, '6.1.0-1', '/src/busy', 0.5 / 24); // claimed half an hour ago: a link may still run
		makeEntry(idle, { ageDays: 1 });
		makeEntry(busy, { ageDays: 1 });
		fs.writeFileSync(path.join(idle, 'llvmcache.timestamp'), '');
		// With a remote: where its entries are there, bookkeeping that goes with the directory.
		fs.writeFileSync(path.join(idle, 'ltocache.remote'), 'ltocache-remote 1 0\n');
		const report = await run(root, ['clear']);
		expect(report.removed).toMatchObject({ entries: 2, directories: 1 });
		expect(fs.existsSync(idle)).toBe(false);
		expect(fs.readdirSync(busy)).toEqual(['ltocache.json']);
		// Once nothing is left in a release, it goes too.
		setAge(path.join(busy, 'ltocache.json'), 1);
		expect((await run(root, ['clear'])).removed.directories).toBe(2);
		expect(fs.readdirSync(root).filter((f) => f !== LOCK_NAME && f !== TAG_NAME)).toEqual([]);
	});

	it('rejects bad input with one line and exit status 2, deleting nothing', async () => {
		const root = scratch('root');
		const key = makeKey(root, '6.1.0-1', '/src/one');
		for (let i = 0; i < 3; i++) makeEntry(key, { ageDays: 100 });
		const before = onDisk(root);
		const cases: [string[], string, Record<string, string>?][] = [
			[['prune', '--max-size', '10Q'], "invalid --max-size '10Q'"],
			// A value that starts with '-' gets the same hint as any other (issue 21, item 5).
			[['prune', '--max-age', '-1d'], "invalid --max-age '-1d' (expected a number and a unit"],
			[['prune', '--max-files', 'many'], "invalid --max-files 'many'"],
			[['prune', '--policy', 'cache_size=lots'], "invalid --policy 'cache_size=lots'"],
			// One style: ours, lower case, ending with where the usage is.
			[['prune', '--max-age=1d', '--bogus'], "ltocache: unknown option '--bogus'; see 'ltocache prune --help'"],
			[['prune', '--max-age', '--dry-run'], "ltocache: --max-age needs a value; see 'ltocache prune --help'"],
			[['prune'], "invalid LTOCACHE_MAX_AGE '30'", { LTOCACHE_MAX_AGE: '30' }],
			[['clear', 'everything'], "ltocache: unexpected argument 'everything'; see 'ltocache clear --help'"],
			[['frobnicate'], "unknown command 'frobnicate'"],
			[['stats', '--kernel'], "ltocache: --kernel needs a value; see 'ltocache stats --help'"],
			// Relative: a different place in every directory a build links in.
			[['stats'], "ltocache: invalid LTOCACHE_DIR 'cache' (an absolute path)", { LTOCACHE_DIR: 'cache' }],
		];
		for (const [args, message, env] of cases) {
			const result = await ltocache(root, args, env);
			expect(result.exitCode, args.join(' ')).toBe(2);
			expect(result.stderr).toContain(message);
			expect(result.stderr.trim().split('\n')).toHaveLength(1);
			expect(result.stdout).toBe('');
		}
		expect(onDisk(root)).toEqual(before);
	});

	it('has --help for every command and --version', async () => {
		const root = scratch('root');
		for (const command of ['stats', 'prune', 'clear', 'install', 'uninstall', 'doctor', 'demo']) {
			const result = await ltocache(root, [command, '--help']);
			expect(result, command).toMatchObject({ exitCode: 0 });
			expect(result.stdout).toMatch(new RegExp(`^Usage: ltocache ${command}`));
		}
		const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
		expect((await ltocache(root, ['--version'])).stdout).toBe(`ltocache ${pkg.version}`);
		expect((await ltocache(root, ['--help'])).stdout).toMatch(/^Usage: ltocache <command>/);
	});
});

describe('on a terminal', () => {
	const ERASE = '\r\u001b[K';
	it('shows progress when prune or clear takes longer than a second, and none with --json', async () => {
		const root = scratch('root');
		const keys = Array.from({ length: 20 }, (_, i) => makeKey(root, '6.1.0-1', `/src/m${i}`, 2));
		for (let i = 0; i < 4_000; i++) fs.writeFileSync(`${keys[i % 20]}/llvmcache-${i.toString(16).padStart(40, '0')}`, '');
		// script(1) gives the command a terminal and copies what it writes there.
		const onTerminal = (args: string) =>
			execa('script', ['-qec', `node ${CLI} ${args}`, '/dev/null'], { env: { LTOCACHE_DIR: root }, reject: false });
		const json = await onTerminal('clear --dry-run --json');
		expect(json.exitCode).toBe(0);
		expect(json.stdout).not.toContain(ERASE);
		// Another prune's lock, held until the clear has been running for 1.5 s:
		// it waits for the lock, so it takes longer than a second however fast
		// this machine removes 4,000 files.
		const lock = path.join(root, LOCK_NAME);
		fs.mkdirSync(lock);
		const keepFresh = setInterval(() => fs.utimesSync(lock, new Date(), new Date()), 500);
		const clearing = onTerminal('clear');
		const started = (pid: number) => {
			const children = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
			return children !== '' && fs.readFileSync(`/proc/${children.split(' ')[0]}/cmdline`, 'utf8').includes(CLI);
		};
		try {
			while (clearing.pid !== undefined && !started(clearing.pid)) await new Promise((r) => setTimeout(r, 20));
			await new Promise((r) => setTimeout(r, 1500));
		} finally {
			clearInterval(keepFresh);
			fs.rmdirSync(lock);
		}
		const shown = await clearing;
		expect(shown.exitCode).toBe(0);
		const lines = shown.stdout.split(ERASE);
		expect(lines.some((line) => /^(scanned \d+ module director(y|ies), \d+ entries|removed \d+ of 4000 entries)$/.test(line))).toBe(true);
		// The progress line is erased before the report.
		expect(lines.at(-1)).toMatch(/^removed 4000 entries \(0 B\)/);
		expect(onDisk(root).size).toBe(0);
	});
});

describe('locking', () => {
	/** A report's stderr less the lines that say whom a command waited for. */
	const notWaiting = (stderr: string) => stderr.split('\n').filter((l) => l !== '' && !/^ltocache: waiting for /.test(l));

	it('runs concurrent prunes and clears one at a time, without errors', async () => {
		const root = scratch('root');
		const keys = [1, 2, 3, 4].map((n) => makeKey(root, `6.1.0-${n}`, '/src/one', 1));
		for (let i = 0; i < 2000; i++) makeEntry(keys[i % 4], { ageDays: (i % 50) + 1 });
		const results = await Promise.all([
			ltocache(root, ['prune', '--max-files', '1500', '--json']),
			ltocache(root, ['prune', '--max-files', '1000', '--json']),
			ltocache(root, ['clear', '--kernel', '6.1.0-4', '--json']),
			ltocache(root, ['prune', '--max-age', '40d', '--json']),
		]);
		for (const r of results) {
			expect(r.exitCode).toBe(0);
			expect(notWaiting(r.stderr)).toEqual([]);
		}
		const removed = results.reduce((n, r) => n + (JSON.parse(r.stdout) as Report).removed.entries, 0);
		expect(2000 - removed).toBe(onDisk(root).size);
		expect(onDisk(root).size).toBeLessThanOrEqual(1000);
		expect(fs.existsSync(path.join(root, LOCK_NAME))).toBe(false);
	});

	it('waits as long as the holder lives, says whom it waits for, and goes on once it is released', async () => {
		const root = scratch('root');
		const files = [1, 2, 3].map(() => makeEntry(makeKey(root, '6.1.0-1', '/src/one'), { ageDays: 100 }));
		// A lock held by a live process (a sleep standing in for another prune), never refreshed: it lives as long as its holder.
		const holder = execa('sleep', ['600']);
		const lock = path.join(root, LOCK_NAME);
		fs.mkdirSync(lock);
		const owner = { pid: holder.pid, host: os.hostname(), command: 'ltocache prune --max-size 1G', start: '', since: Date.now() };
		fs.writeFileSync(path.join(lock, 'owner.json'), JSON.stringify(owner));
		const old = new Date(Date.now() - 3600_000);
		fs.utimesSync(lock, old, old);
		let finished = false;
		const prune = ltocache(root, ['prune', '--max-age', '1d', '--json']);
		void prune.finally(() => {
			finished = true;
		});
		try {
			// Until it has said whom it waits for: then it has looked at the lock and found its holder alive.
			const seen = await new Promise<string>((resolve) => {
				let text = '';
				prune.stderr?.on('data', (chunk: Buffer) => {
					text += chunk.toString();
					if (text.includes('\n')) resolve(text);
				});
			});
			expect(seen).toBe(`ltocache: waiting for pid ${holder.pid} (ltocache prune --max-size 1G) to release the lock on ${root}\n`);
			expect(finished).toBe(false);
			expect(files.every((f) => fs.existsSync(f))).toBe(true);
		} finally {
			holder.kill('SIGKILL');
			await holder.catch(() => {});
		}
		// Its holder gone, the lock is taken over.
		const result = await prune;
		expect(result.exitCode).toBe(0);
		expect((JSON.parse(result.stdout) as Report).removed.entries).toBe(3);
		expect(files.some((f) => fs.existsSync(f))).toBe(false);
		expect(fs.existsSync(lock)).toBe(false);
	});

	it('recovers a lock left by a killed process, and one of an older ltocache left unrefreshed', async () => {
		const root = scratch('root');
		const lock = path.join(root, LOCK_NAME);
		const dead = execa('true');
		await dead;
		for (const owner of [{ pid: dead.pid, host: os.hostname(), command: 'ltocache prune', start: '', since: 1 }, undefined]) {
			makeEntry(makeKey(root, '6.1.0-1', '/src/one'), { ageDays: 100 });
			fs.mkdirSync(lock);
			if (owner) fs.writeFileSync(path.join(lock, 'owner.json'), JSON.stringify(owner));
			else fs.utimesSync(lock, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
			const result = await ltocache(root, ['prune', '--max-age', '1d', '--json']);
			expect(result).toMatchObject({ exitCode: 0, stderr: '' });
			expect((JSON.parse(result.stdout) as Report).removed.entries).toBe(1);
			expect(fs.existsSync(lock)).toBe(false);
			expect(fs.readdirSync(root).filter((f) => f.startsWith(LOCK_NAME))).toEqual([]);
		}
	});

	describeIf(isRoot, 'root (for another member of a shared root)')('in a shared root', () => {
		it("takes over a dead holder's lock that another member made, whose owner file it cannot remove", async () => {
			const root = scratch('root');
			fs.chownSync(root, 0, 60000);
			fs.chmodSync(root, 0o2770);
			writeTag(root);
			const file = makeEntry(makeKey(root, '6.1.0-1', '/src/one'), { ageDays: 100 });
			execaSync('chown', ['-R', '0:60000', root]);
			execaSync('chmod', ['-R', 'g+rwX', root]);
			// Root's prune, killed: its lock 0755, as mkdir under umask 022 makes it.
			const lock = path.join(root, LOCK_NAME);
			fs.mkdirSync(lock, { mode: 0o755 });
			const dead = execa('true');
			await dead;
			fs.writeFileSync(
				path.join(lock, 'owner.json'),
				JSON.stringify({ pid: dead.pid, host: os.hostname(), command: 'ltocache prune', start: '', since: 1 }),
			);
			const result = await execa(
				'setpriv',
				['--reuid=60001', '--regid=60000', '--clear-groups', '--', 'node', CLI, 'prune', '--max-age', '1d', '--json'],
				{
					reject: false,
					extendEnv: false,
					env: { PATH: process.env.PATH, HOME: '/nonexistent', LTOCACHE_DIR: root, LTOCACHE_SYSTEM_CONFIG: '/nonexistent/ltocache.conf' },
				},
			);
			expect(result).toMatchObject({ exitCode: 0, stderr: '' });
			expect((JSON.parse(result.stdout) as Report).removed.entries).toBe(1);
			expect(fs.existsSync(file)).toBe(false);
			expect(fs.existsSync(lock)).toBe(false);
		});
	});

	it('waits for a holder on another machine while its lock is refreshed, and takes it over once it has not been for a minute', async () => {
		const root = scratch('root');
		const files = [1, 2].map(() => makeEntry(makeKey(root, '6.1.0-1', '/src/one'), { ageDays: 100 }));
		const lock = path.join(root, LOCK_NAME);
		fs.mkdirSync(lock);
		// A pid that runs here, so only the host tells it is not this machine's process.
		const owner = { pid: process.pid, host: 'elsewhere.example', command: 'ltocache clear', start: '', since: Date.now() };
		fs.writeFileSync(path.join(lock, 'owner.json'), JSON.stringify(owner));
		const keepFresh = setInterval(() => fs.utimesSync(lock, new Date(), new Date()), 500);
		const prune = ltocache(root, ['prune', '--max-age', '1d', '--json']);
		try {
			const seen = await new Promise<string>((resolve) => {
				let text = '';
				prune.stderr?.on('data', (chunk: Buffer) => {
					text += chunk.toString();
					if (text.includes('\n')) resolve(text);
				});
			});
			expect(seen).toBe(`ltocache: waiting for pid ${process.pid} on elsewhere.example (ltocache clear) to release the lock on ${root}\n`);
			expect(files.every((f) => fs.existsSync(f))).toBe(true);
		} finally {
			clearInterval(keepFresh);
		}
		// Its refreshes stop: a minute on, the lock is stale and taken over.
		const old = new Date(Date.now() - 61_000);
		fs.utimesSync(lock, old, old);
		const result = await prune;
		expect(result.exitCode).toBe(0);
		expect((JSON.parse(result.stdout) as Report).removed.entries).toBe(2);
		expect(fs.existsSync(lock)).toBe(false);
		expect(fs.readdirSync(root).filter((f) => f.startsWith(LOCK_NAME))).toEqual([]);
	});

	it('a holder ended by SIGINT or SIGTERM leaves no lock behind', async () => {
		const lockJs = path.join(repo, 'dist/cli/lock.js');
		for (const signal of ['SIGINT', 'SIGTERM'] as const) {
			const root = scratch('root');
			const script = `const { withLock } = await import(${JSON.stringify(lockJs)});
await withLock(${JSON.stringify(root)}, async () => { console.log('held'); await new Promise((r) => setTimeout(r, 600_000)); });`;
			const holder = execa(process.execPath, ['--input-type=module', '-e', script], { reject: false });
			await new Promise<void>((resolve) => holder.stdout?.once('data', () => resolve()));
			const owner = JSON.parse(fs.readFileSync(path.join(root, LOCK_NAME, 'owner.json'), 'utf8')) as { pid: number };
			expect(owner.pid).toBe(holder.pid);
			holder.kill(signal);
			expect((await holder).signal).toBe(signal);
			expect(fs.readdirSync(root)).toEqual([]);
		}
	});

	it('a prune of tens of thousands of entries under CPU load and a clear started behind it both finish, nothing half done', async () => {
		const root = scratch('root');
		const keys = Array.from({ length: 8 }, (_, i) => makeKey(root, `6.${i % 2}.0-load`, `/src/m${i}`, 1));
		for (let i = 0; i < 30_000; i++) fs.writeFileSync(`${keys[i % 8]}/llvmcache-${i.toString(16).padStart(40, '0')}`, 'x');
		// Busy children: four spinning processes per CPU.
		const load = Array.from({ length: 4 * os.availableParallelism() }, () => execa('sh', ['-c', 'while :; do :; done']));
		try {
			const prune = ltocache(root, ['prune', '--max-files', '1000', '--json']);
			// The clear starts once the prune holds the lock.
			while (!fs.existsSync(path.join(root, LOCK_NAME, 'owner.json'))) await new Promise((r) => setTimeout(r, 20));
			const clear = ltocache(root, ['clear', '--json']);
			const [p, c] = await Promise.all([prune, clear]);
			expect(p.exitCode).toBe(0);
			expect(notWaiting(p.stderr)).toEqual([]);
			expect(c.exitCode).toBe(0);
			expect(notWaiting(c.stderr)).toEqual([]);
			// One after the other, each whole: the prune left 1,000, the clear took them.
			expect((JSON.parse(p.stdout) as Report).removed.entries).toBe(29_000);
			expect((JSON.parse(c.stdout) as Report).removed.entries).toBe(1000);
			expect(onDisk(root).size).toBe(0);
			expect(fs.readdirSync(root).filter((f) => f.startsWith(LOCK_NAME))).toEqual([]);
		} finally {
			for (const child of load) child.kill('SIGKILL');
			await Promise.allSettled(load);
		}
	});
});

/** Every path below dir with its type and size: a tree's state, to show nothing changed. */
function tree(dir: string): string[] {
	const out: string[] = [];
	const walk = (d: string) => {
		for (const dirent of fs.readdirSync(d, { withFileTypes: true })) {
			const file = path.join(d, dirent.name);
			out.push(`${path.relative(dir, file)} ${dirent.isDirectory() ? 'dir' : fs.lstatSync(file).size}`);
			if (dirent.isDirectory()) walk(file);
		}
	};
	walk(dir);
	return out.sort();
}

describe("a root is ltocache's only when it says so", () => {
	it('is tagged CACHEDIR.TAG-style when the shim creates it, and not when it already exists', async () => {
		const { claim } = await import('../../src/shared/keydir.js');
		const meta = { version: 1 as const, release: '6.1.0-1', original: '/src/m' };
		const root = path.join(scratch('parent'), 'new-root');
		expect(claim(path.join(root, '6.1.0-1', 'm-1'), meta, false, root)).toBeUndefined();
		const tag = fs.readFileSync(path.join(root, TAG_NAME), 'utf8');
		expect(tag.split('\n')[0]).toBe('Signature: 8a477f597d28d172789f06886806bc55');
		expect(tag).toContain('ltocache');
		// An existing root costs nothing more: no tag written into it.
		fs.rmSync(path.join(root, TAG_NAME));
		expect(claim(path.join(root, '6.1.0-1', 'm-2'), meta, false, root)).toBeUndefined();
		expect(fs.existsSync(path.join(root, TAG_NAME))).toBe(false);
	});

	it('recognises an untagged root by its layout and tags it once', async () => {
		const root = scratch('root');
		makeEntry(makeKey(root, '6.1.0-1', '/src/one'), { bytes: 10 });
		expect(fs.existsSync(path.join(root, TAG_NAME))).toBe(false);
		expect((await stats(root)).totalEntries).toBe(1);
		expect(fs.readFileSync(path.join(root, TAG_NAME), 'utf8')).toMatch(/^Signature: 8a477f597d28d172789f06886806bc55\n/);
	});

	it('refuses a directory it did not make (a home with a plain lld cache and an empty directory), touching nothing', async () => {
		const home = scratch('home');
		fs.writeFileSync(path.join(home, '.bashrc'), 'export PATH\n');
		const lldCache = path.join(home, 'proj', '.thinlto-cache');
		fs.mkdirSync(lldCache, { recursive: true });
		fs.writeFileSync(path.join(lldCache, `llvmcache-${'0'.repeat(40)}`), 'entry');
		fs.writeFileSync(path.join(lldCache, 'llvmcache.timestamp'), '');
		fs.mkdirSync(path.join(home, 'empty'));
		// Even with a module directory of ltocache's inside: the home itself is not a root.
		makeEntry(makeKey(home, '6.1.0-1', '/src/one'), { bytes: 10 });
		const before = tree(home);
		for (const args of [
			['stats'],
			['stats', '--json'],
			['prune', '--max-size', '1B'],
			['clear'],
			['clear', '--dry-run'],
			['stats', '--zero'],
		]) {
			const result = await ltocache(home, args);
			expect(result.exitCode, args.join(' ')).toBe(2);
			expect(result.stdout).toBe('');
			expect(result.stderr.trim().split('\n')).toEqual([expect.stringContaining(`LTOCACHE_DIR=${home} is not an ltocache cache root`)]);
		}
		expect(tree(home)).toEqual(before);
	});

	/** stats, clear and prune each refuse dir as a root, exit 2, and leave every file in it as it was. */
	const expectRefused = async (dir: string) => {
		const before = tree(dir);
		for (const args of [['stats'], ['clear'], ['prune', '--max-size', '1B']]) {
			const result = await ltocache(dir, args);
			expect(result.exitCode, args.join(' ')).toBe(2);
			expect(result.stderr).toContain(`LTOCACHE_DIR=${dir} is not an ltocache cache root`);
		}
		expect(tree(dir)).toEqual(before);
	};

	it('refuses, and does not tag, a directory of other things that one shim link wrote into (/var/cache-like)', async () => {
		const dir = scratch('var-cache');
		fs.mkdirSync(path.join(dir, 'apt', 'archives'), { recursive: true });
		fs.writeFileSync(path.join(dir, 'apt', 'archives', 'lock'), '');
		fs.mkdirSync(path.join(dir, 'man', 'cat1'), { recursive: true });
		makeEntry(makeKey(dir, '_no-kernel', '/src/one'), { bytes: 10 });
		await expectRefused(dir);
		expect(fs.existsSync(path.join(dir, TAG_NAME))).toBe(false);
	});

	it("refuses a directory another tool tagged as its cache, however ltocache's its layout, and leaves its tag as it is", async () => {
		const dir = scratch('other-cache');
		const theirs = 'Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by ccache.\n';
		fs.writeFileSync(path.join(dir, TAG_NAME), theirs);
		// A shim link whose LTOCACHE_DIR named it wrote a module directory of ltocache's into it.
		makeEntry(makeKey(dir, '6.1.0-1', '/src/one'), { bytes: 10 });
		await expectRefused(dir);
		expect(fs.readFileSync(path.join(dir, TAG_NAME), 'utf8')).toBe(theirs);
	});

	it('refuses / as root: lists nothing, writes nothing', async () => {
		const result = await ltocache('/', ['stats']);
		expect(result).toMatchObject({ exitCode: 2, stdout: '' });
		expect(result.stderr).toMatch(/^ltocache: LTOCACHE_DIR=\/ is not an ltocache cache root/);
		expect(fs.existsSync(path.join('/', SUMMARY_NAME))).toBe(false);
		expect(fs.existsSync(path.join('/', TAG_NAME))).toBe(false);
	});

	it('in a tagged root, deletes only its own: a plain lld cache and an unrelated directory stay', async () => {
		const root = scratch('root');
		const key = makeKey(root, '6.1.0-1', '/src/one');
		makeEntry(key, { bytes: 10 });
		const lldCache = path.join(root, 'proj', '.thinlto-cache');
		fs.mkdirSync(lldCache, { recursive: true });
		const theirs = path.join(lldCache, `llvmcache-${'1'.repeat(40)}`);
		fs.writeFileSync(theirs, 'entry');
		fs.mkdirSync(path.join(root, 'unrelated'));
		fs.mkdirSync(path.join(root, '6.1.0-1', 'no-metadata'));
		writeTag(root); // as the shim tags a root it creates (with other things in it, the layout alone would not say it is ltocache's)
		expect((await stats(root)).totalEntries).toBe(1);
		const report = await run(root, ['clear']);
		expect(report.removed.entries).toBe(1);
		expect(fs.readFileSync(theirs, 'utf8')).toBe('entry');
		expect(fs.existsSync(path.join(root, 'unrelated'))).toBe(true);
		expect(fs.existsSync(path.join(root, '6.1.0-1', 'no-metadata'))).toBe(true);
	});

	it('takes an empty directory the user named as an empty root', async () => {
		const root = scratch('root');
		expect((await stats(root)).totalEntries).toBe(0);
		expect((await run(root, ['prune'])).removed.entries).toBe(0);
	});
});

describeIf(isRoot, 'root, to write a file as another user')('a summary stats did not write', () => {
	it('is not taken for what is on disk: one of another user, or one whose fields are not numbers and lists', async () => {
		const root = scratch('root');
		const key = makeKey(root, '6.1.0-1', '/src/one');
		makeEntry(key, { bytes: 10 });
		const past = new Date(Date.now() - 3600_000);
		fs.utimesSync(key, past, past);
		const st = fs.lstatSync(key, { bigint: true });
		const id = `${st.dev}:${st.ino}:${st.mtimeNs}`;
		const file = path.join(root, SUMMARY_NAME);
		const plant = (summary: object, uid: number) => {
			fs.rmSync(file, { force: true });
			fs.writeFileSync(file, JSON.stringify({ version: 1, dirs: { [path.relative(root, key)]: { id, ...summary } } }));
			fs.chownSync(file, uid, uid);
		};
		// Another member of a shared root may replace the file: a summary that lies, with the directory's very id.
		plant({ count: 1000, bytes: 1e9, lastUse: 0, temps: [], foreign: 0 }, NOBODY);
		expect(await stats(root)).toMatchObject({ totalEntries: 1, totalBytes: 10 });
		for (const wrong of [
			{ temps: 5 },
			{ count: 'x', bytes: 1, lastUse: 0, temps: [], foreign: 0 },
			{ count: 1, bytes: 10, lastUse: 0, temps: [], foreign: 0, linked: 5 },
		]) {
			plant(wrong, 0);
			expect(await stats(root)).toMatchObject({ totalEntries: 1, totalBytes: 10 });
		}
	});
});

describeIf(isRoot, 'root, to make directories nobody cannot read')('what it cannot read or remove', () => {
	it('is skipped, named and counted; the rest is done, then exit status 1; doctor names it', async () => {
		const root = scratch('root');
		const mine = [makeKey(root, '6.1.0-1', '/src/one'), makeKey(root, '6.1.0-1', '/src/two')];
		for (const key of mine) for (let i = 0; i < 3; i++) makeEntry(key, { bytes: 100 });
		fs.writeFileSync(path.join(root, TAG_NAME), 'Signature: 8a477f597d28d172789f06886806bc55\n# created by ltocache\n');
		execaSync('chown', ['-R', `${NOBODY}:${NOBODY}`, root]);
		// What a `sudo` link with the user's HOME leaves: a release directory of root's, 0700.
		const sudoKey = makeKey(root, '6.9.0-sudo', '/src/one');
		makeEntry(sudoKey, { bytes: 100 });
		fs.chmodSync(path.dirname(sudoKey), 0o700);
		// And a module directory of root's, readable, whose entries nobody cannot remove.
		const rootsKey = makeKey(root, '6.1.0-1', '/src/roots');
		for (let i = 0; i < 2; i++) makeEntry(rootsKey, { bytes: 100 });
		fs.chmodSync(rootsKey, 0o755);
		const env = { LTOCACHE_DIR: root, PATH: '/usr/bin:/bin', HOME: '/nonexistent', LTOCACHE_MODULES: scratch('modules') };

		const stats = await asNobody('node', [CLI, 'stats', '--json'], env);
		expect(stats.exitCode).toBe(1);
		const s = JSON.parse(String(stats.stdout)) as StatsJson;
		expect(s.totalEntries).toBe(8);
		expect(s.skipped).toEqual([{ path: path.dirname(sudoKey), error: 'EACCES' }]);
		expect(String(stats.stderr)).toContain(`skipped ${path.dirname(sudoKey)} (EACCES)`);

		const dry = await asNobody('node', [CLI, 'prune', '--max-size', '1B', '--dry-run'], env);
		expect(dry.exitCode).toBe(1);
		expect(String(dry.stderr)).toContain(path.dirname(sudoKey));

		const cleared = await asNobody('node', [CLI, 'clear', '--json'], env);
		expect(cleared.exitCode).toBe(1);
		const report = JSON.parse(String(cleared.stdout)) as Report;
		expect(report.removed.entries).toBe(6);
		expect(report.skipped.map((k) => k.path).sort()).toEqual([path.dirname(sudoKey), ...onDisk(rootsKey).keys()].sort());
		expect(String(cleared.stderr)).toContain(`skipped 2 files in ${rootsKey} (EACCES): cannot remove them`);
		for (const key of mine) expect(onDisk(key).size).toBe(0);
		expect(onDisk(rootsKey).size).toBe(2);
		expect(onDisk(path.dirname(sudoKey)).size).toBe(1);

		const doctor = await asNobody('node', [CLI, 'doctor', '--json'], env);
		expect(doctor.exitCode).toBe(1);
		const findings = (JSON.parse(String(doctor.stdout)) as { findings: { level: string; check: string; message: string }[] }).findings;
		const contents = findings.find((f) => f.check === 'cache root contents');
		expect(contents?.level).toBe('fail');
		expect(contents?.message).toContain(`${path.dirname(sudoKey)} (EACCES)`);
		expect(contents?.message).toContain(`${rootsKey} (EACCES)`);
	});
});

describeIf(isRoot && Boolean(onPath('unshare')), 'root and unshare (PID namespaces)')('a lock held from another PID namespace', () => {
	it('is waited for while its holder refreshes it, though its pid here is another process, and taken once released', async () => {
		const root = scratch('root');
		const files = [1, 2].map(() => makeEntry(makeKey(root, '6.1.0-1', '/src/one'), { ageDays: 100 }));
		const lockJs = path.join(repo, 'dist/cli/lock.js');
		const script = `const { withLock } = await import(${JSON.stringify(lockJs)});
await withLock(${JSON.stringify(root)}, async () => { console.log('held'); await new Promise((r) => setTimeout(r, 600_000)); });`;
		// As a container sharing the root and the host's name: the holder is PID 1 of a namespace of its own.
		const holder = execa('unshare', ['-pf', '--mount-proc', process.execPath, '--input-type=module', '-e', script], { reject: false });
		let node: number | undefined;
		try {
			await new Promise<void>((resolve) => holder.stdout?.once('data', () => resolve()));
			// Ended below as a container's process would be: its node, not unshare, which would leave it running.
			node = Number(fs.readFileSync(`/proc/${holder.pid}/task/${holder.pid}/children`, 'utf8').trim());
			const owner = JSON.parse(fs.readFileSync(path.join(root, LOCK_NAME, 'owner.json'), 'utf8')) as { pid: number; host: string };
			// Pid 1 here is this machine's init, alive and started at another time: asked here, the holder would look dead.
			expect(owner).toMatchObject({ pid: 1, host: os.hostname() });
			const prune = ltocache(root, ['prune', '--max-age', '1d', '--json']);
			const seen = await new Promise<string>((resolve) => {
				let text = '';
				prune.stderr?.on('data', (chunk: Buffer) => {
					text += chunk.toString();
					if (text.includes('\n')) resolve(text);
				});
				void prune.then(() => resolve(text)); // took the lock: it did not wait
			});
			expect(seen).toBe(`ltocache: waiting for pid 1 in another PID namespace (ltocache) to release the lock on ${root}\n`);
			expect(files.every((f) => fs.existsSync(f))).toBe(true);
			process.kill(node, 'SIGTERM');
			const result = await prune;
			expect(result.exitCode).toBe(0);
			expect((JSON.parse(result.stdout) as Report).removed.entries).toBe(2);
			expect(fs.existsSync(path.join(root, LOCK_NAME))).toBe(false);
		} finally {
			if (node) process.kill(node, 'SIGKILL');
			holder.kill('SIGKILL');
		}
	});
});
