// The counters file of a key directory, in-process: what one line per link
// adds up to, how entries seen by several links count once, and what prune's
// compaction keeps. Real links through the shim are in counters.test.ts.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { addCounters, compactCounters, readCounters, recordLink, zeroCounters } from '../../src/shared/counters.js';
import { classify } from '../../src/shared/keydir.js';
import { scratchRoot } from '../helpers/tools.js';

/** No remote: nothing downloaded or uploaded. */
const NO_FAILURE = { timeouts: 0, unreachable: 0, errors: 0, skipped: 0 };
const NOTHING_SHARED = { downloads: 0, downloadBytes: 0, uploads: 0, uploadBytes: 0, ...NO_FAILURE };
const NOT_VERIFIED = { verified: 0, mismatches: 0 };

const scratch = scratchRoot();
const HOUR = 3600_000;
const file = (dir: string) => path.join(dir, 'ltocache.counts');
const line = (t: number, m: number, w: [string, number, number][], ms = 10) => `${JSON.stringify({ t, ms, m, w })}\n`;

describe('counters', () => {
	it('sums what a remote moved, and keeps it through compaction', () => {
		const dir = scratch('key');
		recordLink(dir, Date.now() - 2 * 3600_000, 5, 2, new Set(), {
			...NO_FAILURE,
			downloads: 2,
			downloadBytes: 200,
			uploads: 0,
			uploadBytes: 0,
		});
		recordLink(dir, Date.now(), 5, 2, new Set(), { ...NO_FAILURE, downloads: 0, downloadBytes: 0, uploads: 1, uploadBytes: 50 });
		recordLink(dir, Date.now(), 5, 2, new Set());
		const sums = { downloads: 2, downloadBytes: 200, uploads: 1, uploadBytes: 50 };
		expect(readCounters(dir)).toMatchObject({ links: 3, ...sums });
		compactCounters(dir);
		expect(readCounters(dir)).toMatchObject({ links: 3, ...sums });
	});

	it('sums the failures of a remote by kind, keeps them through compaction, and reads lines written before they were counted', () => {
		const dir = scratch('key');
		const failed = (kind: keyof typeof NO_FAILURE) => ({ ...NOTHING_SHARED, [kind]: 1 });
		recordLink(dir, Date.now() - 2 * HOUR, 5, 2, new Set(), failed('timeouts'));
		recordLink(dir, Date.now() - 2 * HOUR, 5, 2, new Set(), failed('skipped'));
		recordLink(dir, Date.now(), 5, 2, new Set(), failed('unreachable'));
		recordLink(dir, Date.now(), 5, 2, new Set(), { ...failed('errors'), downloads: 1, downloadBytes: 10 });
		// As 0.3.0 wrote a link that moved entries: four numbers.
		fs.appendFileSync(file(dir), `${JSON.stringify({ t: Date.now(), ms: 5, m: 2, w: [], r: [2, 20, 1, 5] })}\n`);
		const sums = {
			links: 5,
			timeouts: 1,
			skipped: 1,
			unreachable: 1,
			errors: 1,
			downloads: 3,
			downloadBytes: 30,
			uploads: 1,
			uploadBytes: 5,
		};
		expect(readCounters(dir)).toMatchObject(sums);
		compactCounters(dir);
		expect(readCounters(dir)).toMatchObject(sums);
		expect(addCounters([readCounters(dir), readCounters(dir)])).toMatchObject({ timeouts: 2, skipped: 2, unreachable: 2, errors: 2 });
	});

	it('counts verified links and their mismatches, and keeps them through compaction', () => {
		const dir = scratch('key');
		recordLink(dir, Date.now() - 2 * HOUR, 5, 2, new Set(), undefined, 'match');
		recordLink(dir, Date.now(), 5, 0, new Set(), undefined, 'mismatch');
		recordLink(dir, Date.now(), 5, 2, new Set());
		expect(readCounters(dir)).toMatchObject({ links: 3, modules: 4, verified: 2, mismatches: 1 });
		compactCounters(dir);
		expect(readCounters(dir)).toMatchObject({ links: 3, modules: 4, verified: 2, mismatches: 1 });
	});

	it('records the entries written since the claim, and only those', () => {
		const dir = scratch('key');
		fs.writeFileSync(path.join(dir, 'llvmcache-OLD'), 'x');
		fs.utimesSync(path.join(dir, 'llvmcache-OLD'), new Date(1000), new Date(1000));
		fs.writeFileSync(path.join(dir, 'llvmcache-NEW'), 'xyz');
		fs.writeFileSync(path.join(dir, 'Thin-123.tmp.o'), 'in flight');
		fs.writeFileSync(path.join(dir, 'foreign'), 'not ours');
		recordLink(dir, 5000, 12.4, 3);
		const [recorded] = fs
			.readFileSync(file(dir), 'utf8')
			.trim()
			.split('\n')
			.map((l) => JSON.parse(l));
		expect(recorded).toEqual({ t: 5000, ms: 12, m: 3, w: [['NEW', fs.statSync(path.join(dir, 'llvmcache-NEW')).mtimeMs, 3]] });
		expect(readCounters(dir)).toEqual({ links: 1, modules: 3, misses: 1, hits: 2, bytes: 3, ms: 12, ...NOTHING_SHARED, ...NOT_VERIFIED });
		expect(classify('ltocache.counts')).toBe('bookkeeping');
		expect(classify('ltocache.counts.123.tmp')).toBe('temp');
		expect(classify('ltocache.remote')).toBe('bookkeeping');
		expect(classify('ltocache.remote.123.tmp')).toBe('temp');
	});

	it('counts an entry written in the millisecond the link claimed its directory as a miss, one a millisecond older as none', () => {
		// lld can write an entry within the millisecond of the claim: the file system's clock gives both the same time.
		const dir = scratch('key');
		fs.writeFileSync(path.join(dir, 'llvmcache-SAME'), 'abcd');
		fs.utimesSync(path.join(dir, 'llvmcache-SAME'), new Date(1_700_000_000_123), new Date(1_700_000_000_123));
		// The claim's time as the shim reads it: an mtime, through the same conversion.
		const since = fs.statSync(path.join(dir, 'llvmcache-SAME')).mtimeMs;
		fs.writeFileSync(path.join(dir, 'llvmcache-OLDER'), 'ab');
		fs.utimesSync(path.join(dir, 'llvmcache-OLDER'), new Date(1_700_000_000_122), new Date(1_700_000_000_122));
		expect(fs.statSync(path.join(dir, 'llvmcache-OLDER')).mtimeMs).toBeLessThan(since);
		recordLink(dir, since, 3, 2, new Set());
		expect(JSON.parse(fs.readFileSync(file(dir), 'utf8')).w).toEqual([['SAME', since, 4]]);
		expect(readCounters(dir)).toMatchObject({ modules: 2, misses: 1, hits: 1 });
	});

	it('looks only at names that were not there when the link started, when it knows them', () => {
		const dir = scratch('key');
		for (const name of ['llvmcache-THERE', 'llvmcache-NEW']) fs.writeFileSync(path.join(dir, name), 'xy');
		recordLink(dir, 5000, 1, 2, new Set(['llvmcache-THERE', 'ltocache.json']));
		expect(JSON.parse(fs.readFileSync(file(dir), 'utf8')).w).toEqual([['NEW', fs.statSync(path.join(dir, 'llvmcache-NEW')).mtimeMs, 2]]);
	});

	it('ends a torn last line before its own, adds nothing between whole lines, and stops at 4 MiB', () => {
		const dir = scratch('key');
		recordLink(dir, 1, 1, 1);
		const first = fs.readFileSync(file(dir), 'utf8');
		expect(first).toBe(line(1, 1, [], 1));
		recordLink(dir, 2, 1, 2);
		expect(fs.readFileSync(file(dir), 'utf8')).toBe(first + line(2, 2, [], 1));

		fs.writeFileSync(file(dir), '{"t":1,"m":9,"w":[["to');
		recordLink(dir, 3, 1, 3);
		expect(fs.readFileSync(file(dir), 'utf8')).toBe(`{"t":1,"m":9,"w":[["to\n${line(3, 3, [], 1)}`);
		expect(readCounters(dir)).toMatchObject({ links: 1, modules: 3 });

		const cap = 4 * 1024 * 1024;
		fs.writeFileSync(file(dir), `${'x'.repeat(cap - 1)}\n`);
		recordLink(dir, 4, 1, 4);
		expect(fs.statSync(file(dir)).size).toBeGreaterThan(cap);
		const full = fs.statSync(file(dir)).size;
		recordLink(dir, 5, 1, 5);
		expect(fs.statSync(file(dir)).size).toBe(full);
	});

	it('counts an entry seen by several links once, an entry written again (new mtime) again', () => {
		const dir = scratch('key');
		fs.writeFileSync(
			file(dir),
			line(1, 2, [
				['A', 10, 100],
				['B', 11, 200],
			]) +
				line(2, 2, [
					['A', 10, 100],
					['B', 11, 200],
				]) +
				line(3, 2, [['A', 20, 100]]),
		);
		expect(readCounters(dir)).toEqual({ links: 3, modules: 6, misses: 3, hits: 3, bytes: 400, ms: 30, ...NOTHING_SHARED, ...NOT_VERIFIED });
	});

	it('never reports more misses than lookups as negative hits, and skips what it cannot parse', () => {
		const dir = scratch('key');
		fs.writeFileSync(
			file(dir),
			`garbage\n${line(1, 1, [
				['A', 1, 1],
				['B', 2, 1],
			])}{"t":\n{"folded":{"links":2,"modules":5,"misses":1,"bytes":7,"ms":3}}\n`,
		);
		expect(readCounters(dir)).toEqual({ links: 3, modules: 6, misses: 3, hits: 3, bytes: 9, ms: 13, ...NOTHING_SHARED, ...NOT_VERIFIED });
		// Lines of another shape (a field missing, or of another type) are not links.
		const foreign = ['{"m":1,"w":[]}', '{"t":1,"w":[]}', '{"t":1,"m":1}', '{"t":"1","m":1,"w":[]}', '{"folded":{"modules":3}}', '[]', '""'];
		fs.writeFileSync(file(dir), `${foreign.join('\n')}\n${line(1, 2, [])}`);
		expect(readCounters(dir)).toMatchObject({ links: 1, modules: 2, misses: 0 });
		fs.writeFileSync(
			file(dir),
			line(1, 1, [
				['A', 1, 1],
				['B', 2, 1],
			]),
		);
		expect(readCounters(dir).hits).toBe(0);
		expect(addCounters([readCounters(dir), readCounters(scratch('empty'))])).toMatchObject({ links: 1, misses: 2, hits: 0 });
	});

	it('compacts lines older than an hour into one, keeps the recent ones, and the totals stay', () => {
		const dir = scratch('key');
		const now = Date.now();
		const old = now - 2 * HOUR;
		fs.writeFileSync(
			file(dir),
			line(old, 3, [['A', old, 10]]) +
				line(old + 1, 3, [['B', old + 5, 10]]) +
				// A recent link saw B too (it ran alongside): B must still count once after compaction.
				line(now - 1000, 3, [['B', old + 5, 10]]) +
				line(now, 3, []),
		);
		const before = readCounters(dir);
		expect(before).toMatchObject({ links: 4, misses: 2, hits: 10 });
		compactCounters(dir, now);
		const lines = fs.readFileSync(file(dir), 'utf8').trim().split('\n');
		expect(lines).toHaveLength(3);
		expect(JSON.parse(lines[0])).toEqual({
			folded: { links: 2, modules: 6, misses: 1, bytes: 10, ms: 20, ...NOTHING_SHARED, ...NOT_VERIFIED },
		});
		expect(readCounters(dir)).toEqual(before);
		expect(fs.readdirSync(dir)).toEqual(['ltocache.counts']);

		compactCounters(dir, now + 2 * HOUR);
		expect(fs.readFileSync(file(dir), 'utf8').trim().split('\n')).toHaveLength(1);
		expect(readCounters(dir)).toEqual(before);
		zeroCounters(dir);
		expect(readCounters(dir)).toEqual({ links: 0, modules: 0, misses: 0, hits: 0, bytes: 0, ms: 0, ...NOTHING_SHARED, ...NOT_VERIFIED });
		compactCounters(dir, now); // nothing to compact
		expect(fs.existsSync(file(dir))).toBe(false);
	});
});
