// How settings' values read: sizes, durations, counts and LLVM's cache
// policy. Every malformed value is a UsageError naming it: a typo must never
// turn into a silent default and a mass delete. The settings' table
// (src/shared/config.ts) parses with these; so do prune's options.

/** Bad input: one line naming the bad value, exit status 2, nothing done. */
export class UsageError extends Error {
	/** @param help whether the command's --help is where to look (not for a configuration file's line or a root that is not ltocache's) */
	constructor(
		message: string,
		readonly help = true,
	) {
		super(message);
	}
}

/** What prune enforces; an absent field is no limit. */
export type Limits = {
	maxBytes?: number;
	/** A percentage of the space the cache could use: free space plus its own size (LLVM's cache_size). */
	maxPercent?: number;
	/** Milliseconds since last use. */
	maxAge?: number;
	maxFiles?: number;
	/** Evict every release that is not installed. */
	staleKernels?: boolean;
};

const KIB = 1024;
const SIZE_UNITS: Record<string, number> = {
	b: 1,
	k: KIB,
	ki: KIB,
	kib: KIB,
	kb: 1e3,
	m: KIB ** 2,
	mi: KIB ** 2,
	mib: KIB ** 2,
	mb: 1e6,
	g: KIB ** 3,
	gi: KIB ** 3,
	gib: KIB ** 3,
	gb: 1e9,
	t: KIB ** 4,
	ti: KIB ** 4,
	tib: KIB ** 4,
	tb: 1e12,
};

/**
 * A byte size as ccache reads one: a bare number is gigabytes (`ccache -M 5`,
 * `--max-size 5`: 5 GiB here), B is bytes; K, M, G, T (and Ki.., KiB..) are
 * powers of 1024 (like du and LLVM's cache_size_bytes), KB, MB, GB, TB
 * powers of 1000. 0 is no limit; any other value that comes to less than a
 * byte is refused, never rounded to 0.
 */
export function parseSize(text: string, what = 'size'): number {
	const match = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/.exec(text.trim());
	const unit = match ? (match[2] === '' ? KIB ** 3 : SIZE_UNITS[match[2].toLowerCase()]) : undefined;
	if (!match || unit === undefined) {
		throw new UsageError(
			`invalid ${what} '${text}' (expected a number with an optional unit B, K, M, G, T, KiB.., KB..: 5 (GiB), 500K, 1.5G, 123B; 0 for no limit)`,
		);
	}
	const bytes = Math.floor(Number(match[1]) * unit);
	if (bytes === 0 && Number(match[1]) !== 0) throw new UsageError(`invalid ${what} '${text}': less than a byte (0 is no limit)`);
	return bytes;
}

const SECOND = 1000;
const DURATION_UNITS: Record<string, number> = {
	s: SECOND,
	m: 60 * SECOND,
	h: 3600 * SECOND,
	d: 86400 * SECOND,
	w: 7 * 86400 * SECOND,
};

/** A duration in milliseconds: `90s`, `30m`, `12h`, `7d`, `2w`. A unit is required, but for 0 (no limit). */
export function parseDuration(text: string, what = 'duration'): number {
	if (text.trim() === '0') return 0;
	const match = /^(\d+(?:\.\d+)?)([smhdw])$/.exec(text.trim());
	if (!match)
		throw new UsageError(`invalid ${what} '${text}' (expected a number and a unit s, m, h, d or w: 90s, 12h, 7d, 2w; 0 for no limit)`);
	// Whole milliseconds, as sizes are whole bytes (0.7d is not 60479999.99999999 ms); never rounded to 0, which is no limit.
	const ms = Math.floor(Number(match[1]) * DURATION_UNITS[match[2]]);
	if (ms === 0 && Number(match[1]) !== 0) throw new UsageError(`invalid ${what} '${text}': less than a millisecond (0 is no limit)`);
	return ms;
}

/** A count such as --max-files: a non-negative integer. */
export function parseCount(text: string, what = 'count'): number {
	if (!/^\d+$/.test(text.trim())) throw new UsageError(`invalid ${what} '${text}' (expected a whole number)`);
	return Number(text.trim());
}

/**
 * LLVM's --thinlto-cache-policy syntax, as llvm/lib/Support/CachePruning.cpp
 * parses it: `key=value` pairs joined by `:`; durations end in s, m or h;
 * cache_size is a percentage; cache_size_bytes takes k, m or g (powers of
 * 1024). prune_interval is valid there and means nothing to a one-shot prune.
 */
export function parsePolicy(text: string, what = '--policy'): Limits {
	const policy: Limits = {};
	if (text === '') return policy;
	const bad = (why: string): never => {
		throw new UsageError(`invalid ${what} '${text}': ${why}`);
	};
	const integer = (value: string, key: string) =>
		/^\d+$/.test(value) ? Number(value) : bad(`${key} needs a whole number, got '${value}'`);
	const duration = (value: string, key: string) => {
		const unit = { s: 1000, m: 60_000, h: 3_600_000 }[value.slice(-1)];
		if (unit === undefined) bad(`${key}='${value}' must end with one of 's', 'm' or 'h'`);
		return integer(value.slice(0, -1), key) * unit!;
	};
	for (const pair of text.split(':')) {
		const eq = pair.indexOf('=');
		if (eq < 0) bad(`'${pair}' is not key=value`);
		const key = pair.slice(0, eq);
		const value = pair.slice(eq + 1);
		switch (key) {
			case 'prune_interval':
				duration(value, key);
				break;
			case 'prune_after':
				policy.maxAge = duration(value, key);
				break;
			case 'cache_size': {
				if (!value.endsWith('%')) bad(`cache_size='${value}' must be a percentage`);
				const percent = integer(value.slice(0, -1), key);
				if (percent > 100) bad(`cache_size='${value}' must be between 0% and 100%`);
				policy.maxPercent = percent;
				break;
			}
			case 'cache_size_bytes': {
				const mult = { k: KIB, m: KIB ** 2, g: KIB ** 3 }[value.slice(-1).toLowerCase()];
				policy.maxBytes = mult ? integer(value.slice(0, -1), key) * mult : integer(value, key);
				break;
			}
			case 'cache_size_files':
				policy.maxFiles = integer(value, key);
				break;
			default:
				bad(`unknown key '${key}' (prune_interval, prune_after, cache_size, cache_size_bytes, cache_size_files)`);
		}
	}
	return policy;
}
