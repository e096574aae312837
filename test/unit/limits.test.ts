import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/cli/command.js';
import { limitsFrom, parseCount, parseDuration, parsePolicy, parseSize } from '../../src/cli/limits.js';
import { planPrune } from '../../src/cli/maintain.js';
import type { Entry, Kernel } from '../../src/cli/scan.js';
import { NO_CONFIG } from '../helpers/tools.js';

describe('parseSize', () => {
	it.each([
		['123B', 123],
		['5', 5 * 1024 ** 3],
		['0.5', 0.5 * 1024 ** 3],
		['0.5K', 512],
		['2Gi', 2 * 1024 ** 3],
		['500K', 500 * 1024],
		['10M', 10 * 1024 ** 2],
		['1.5G', 1.5 * 1024 ** 3],
		['2GiB', 2 * 1024 ** 3],
		['2gib', 2 * 1024 ** 3],
		['3MB', 3e6],
		['0', 0],
		['7B', 7],
	])('%s is %d bytes', (text, bytes) => {
		expect(parseSize(text)).toBe(bytes);
	});

	it.each(['10Q', '-1', '', 'G', '1.G', '1e3', '5 GiBs', '0x10', '0.1B', '0.5b'])('rejects %j, naming it', (text) => {
		expect(() => parseSize(text, '--max-size')).toThrow(UsageError);
		expect(() => parseSize(text, '--max-size')).toThrow(`invalid --max-size '${text}'`);
	});
});

describe('parseDuration', () => {
	it.each([
		['90s', 90_000],
		['30m', 1_800_000],
		['12h', 43_200_000],
		['7d', 604_800_000],
		['2w', 1_209_600_000],
		['1.5d', 129_600_000],
		['0', 0],
		['0d', 0],
	])('%s is %d ms', (text, ms) => {
		expect(parseDuration(text)).toBe(ms);
	});

	it.each(['-1d', '7', 'd', '7y', '7 d', '', '1dd'])('rejects %j, naming it', (text) => {
		expect(() => parseDuration(text, '--max-age')).toThrow(`invalid --max-age '${text}'`);
	});
});

describe('parseCount', () => {
	it('takes whole numbers only', () => {
		expect(parseCount('100')).toBe(100);
		for (const bad of ['-1', '1.5', 'ten', '']) expect(() => parseCount(bad, '--max-files')).toThrow(`'${bad}'`);
	});
});

describe('parsePolicy (LLVM --thinlto-cache-policy syntax)', () => {
	it('reads every key LLVM reads', () => {
		expect(parsePolicy('prune_after=2h:cache_size_bytes=1g:cache_size_files=10:cache_size=50%:prune_interval=20m')).toEqual({
			maxAge: 7_200_000,
			maxBytes: 1024 ** 3,
			maxFiles: 10,
			maxPercent: 50,
		});
		expect(parsePolicy('cache_size_bytes=4096')).toEqual({ maxBytes: 4096 });
		expect(parsePolicy('cache_size_bytes=8k')).toEqual({ maxBytes: 8192 });
		expect(parsePolicy('')).toEqual({});
	});

	it.each([
		['prune_after=1d', "prune_after='1d' must end with one of 's', 'm' or 'h'"],
		['cache_size=50', 'must be a percentage'],
		['cache_size=150%', 'between 0% and 100%'],
		['cache_size_files=-3', "'-3'"],
		['cache_size_bytes=1t', "'1t'"],
		['bogus=1', "unknown key 'bogus'"],
		['prune_after', "'prune_after' is not key=value"],
		['prune_after=1h:', "'' is not key=value"],
	])('rejects %j', (text, why) => {
		expect(() => parsePolicy(text)).toThrow(UsageError);
		expect(() => parsePolicy(text)).toThrow(`invalid --policy '${text}'`);
		expect(() => parsePolicy(text)).toThrow(why);
	});
});

describe('limitsFrom', () => {
	it('applies the defaults only when no limit is given, from the environment if set', () => {
		expect(limitsFrom({}, NO_CONFIG)).toEqual({ maxBytes: 5 * 1024 ** 3, maxAge: 30 * 86_400_000 });
		expect(limitsFrom({}, { ...NO_CONFIG, LTOCACHE_MAX_SIZE: '1G', LTOCACHE_MAX_AGE: '2w' })).toEqual({
			maxBytes: 1024 ** 3,
			maxAge: 14 * 86_400_000,
		});
		expect(limitsFrom({ 'max-files': '5' }, { ...NO_CONFIG, LTOCACHE_MAX_SIZE: '1G' })).toEqual({ maxFiles: 5 });
		expect(limitsFrom({ 'stale-kernels': true }, NO_CONFIG)).toEqual({ staleKernels: true });
	});

	it('rejects a bad environment value by name', () => {
		expect(() => limitsFrom({}, { ...NO_CONFIG, LTOCACHE_MAX_SIZE: 'lots' })).toThrow("invalid LTOCACHE_MAX_SIZE 'lots'");
		expect(() => limitsFrom({}, { ...NO_CONFIG, LTOCACHE_MAX_AGE: '-1d' })).toThrow("invalid LTOCACHE_MAX_AGE '-1d'");
	});

	// As LLVM reads its policy (lld's test: cache_size_files=0 "should disable the limit, not delete everything") and ccache max_size (issue 21, item 4).
	it('reads 0 as no limit, for every limit and from every source, and still leaves the defaults out', () => {
		expect(limitsFrom({ 'max-size': '0' }, NO_CONFIG)).toEqual({});
		expect(limitsFrom({ 'max-age': '0' }, NO_CONFIG)).toEqual({});
		expect(limitsFrom({ 'max-files': '0', 'max-size': '1M' }, NO_CONFIG)).toEqual({ maxBytes: 1024 ** 2 });
		expect(limitsFrom({ policy: 'cache_size_files=0:cache_size_bytes=0:prune_after=0s:cache_size=0%' }, NO_CONFIG)).toEqual({});
		expect(limitsFrom({ 'max-size': '1M', policy: 'cache_size_bytes=0' }, NO_CONFIG)).toEqual({ maxBytes: 1024 ** 2 });
		expect(limitsFrom({}, { ...NO_CONFIG, LTOCACHE_MAX_SIZE: '0', LTOCACHE_MAX_AGE: '0' })).toEqual({});
	});

	it('combines --policy with explicit limits, the stricter winning', () => {
		expect(limitsFrom({ 'max-size': '1M', policy: 'cache_size_bytes=2m:prune_after=1h' }, NO_CONFIG)).toEqual({
			maxBytes: 1024 ** 2,
			maxAge: 3_600_000,
		});
	});
});

describe('planPrune', () => {
	const day = 86_400_000;
	const now = 100 * day;
	const entry = (name: string, bytes: number, ageDays: number): Entry => ({ file: name, bytes, lastUse: now - ageDays * day });
	const kernel = (release: string, installed: boolean, entries: Entry[]): Kernel => ({
		release,
		dir: release,
		installed,
		keys: [{ name: 'k', dir: 'k', touched: 0, count: entries.length, bytes: 0, lastUse: 0, entries, temps: [], foreign: 0 }],
	});
	const names = (entries: Entry[]) => entries.map((e) => e.file).sort();

	const a = kernel('6.1.0', true, [entry('a-new', 100, 1), entry('a-old', 100, 10), entry('a-mid', 100, 5)]);
	const b = kernel('5.15.0', false, [entry('b-new', 100, 2), entry('b-ancient', 100, 40)]);

	it('evicts least recently used first, across kernels, until the size fits', () => {
		expect(names(planPrune([a, b], { maxBytes: 250 }, now))).toEqual(['a-mid', 'a-old', 'b-ancient']);
		expect(names(planPrune([a, b], { maxBytes: 500 }, now))).toEqual([]);
		expect(names(planPrune([a, b], { maxBytes: 0 }, now))).toHaveLength(5);
	});

	it('honours age, count, stale kernels and a share of free space', () => {
		expect(names(planPrune([a, b], { maxAge: 7 * day }, now))).toEqual(['a-old', 'b-ancient']);
		expect(names(planPrune([a, b], { maxFiles: 2 }, now))).toEqual(['a-mid', 'a-old', 'b-ancient']);
		expect(names(planPrune([a, b], { staleKernels: true }, now))).toEqual(['b-ancient', 'b-new']);
		// 50% of (free 300 + cache 500) = 400 bytes: the oldest entry goes.
		expect(names(planPrune([a, b], { maxPercent: 50 }, now, 300))).toEqual(['b-ancient']);
	});

	it('never treats the no-kernel directory as a stale kernel', () => {
		const none = kernel('_no-kernel', false, [entry('n', 1, 0)]);
		expect(planPrune([none], { staleKernels: true }, now)).toEqual([]);
	});
});
