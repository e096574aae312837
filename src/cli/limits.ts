// Prune's limits: one type, and the parsers for what users type. Every
// malformed value is a UsageError naming it: a typo must never turn into a
// silent default and a mass delete. A limit of 0 is no limit, for every
// limit and from every source, as LLVM's cache policy (lld's own test:
// "cache_size_files=0 should disable the limit, not delete everything") and
// ccache's max_size read it; `ltocache clear` empties a cache.
import { describeSource, readSettings, type Setting, type Value } from '../shared/config.js';
import { UsageError } from './command.js';

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

/**
 * Whether sizes are shown in powers of 1024 (KiB, MiB, GiB), as the size the
 * user gave (else the configured max-size) is written: all but KB, MB, GB,
 * TB are. `--max-size 10M` then reports `kept ... (10 MiB)`, not 10.5 MB.
 */
export function binaryUnits(given: string | undefined, env: NodeJS.ProcessEnv): boolean {
	const size = given ?? readSettings(env).values['max-size'].value;
	return !/\d\s*[kmgt]b$/i.test(size.trim());
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
	return Number(match[1]) * DURATION_UNITS[match[2]];
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

/** The limits that are set: 0 is none. */
function withoutZeros(limits: Limits): Limits {
	const out: Limits = { ...limits };
	for (const key of ['maxBytes', 'maxPercent', 'maxAge', 'maxFiles'] as const) if (out[key] === 0) delete out[key];
	return out;
}

/** Each limit of both, the stricter where both set one. */
function stricter(a: Limits, b: Limits): Limits {
	const out: Limits = { ...a };
	for (const key of ['maxBytes', 'maxPercent', 'maxAge', 'maxFiles'] as const) {
		if (b[key] !== undefined) out[key] = Math.min(a[key] ?? Infinity, b[key]);
	}
	if (b.staleKernels) out.staleKernels = true;
	return out;
}

export type LimitOptions = { 'max-size'?: string; 'max-age'?: string; 'max-files'?: string; 'stale-kernels'?: boolean; policy?: string };

/** How a setting is named in an error: the variable, the file and line, or the setting itself. */
export function settingName(key: Setting, value: Value): string {
	const source = describeSource(value.source);
	return 'env' in value.source ? source : 'file' in value.source ? `${key} (${source})` : key;
}

/**
 * The configured limits: the environment, else the configuration files,
 * else the defaults (5 GiB, 30 days). A configuration file that is not
 * right is bad input, named by file and line.
 */
export function configuredLimits(env: NodeJS.ProcessEnv): Limits {
	const { values, problems } = readSettings(env);
	if (problems.length > 0) throw new UsageError(problems[0]);
	const name = (key: Setting) => settingName(key, values[key]);
	const limits = withoutZeros({
		maxBytes: parseSize(values['max-size'].value, name('max-size')),
		maxAge: parseDuration(values['max-age'].value, name('max-age')),
		maxFiles: parseCount(values['max-files'].value, name('max-files')),
	});
	return stricter(limits, withoutZeros(parsePolicy(values.policy.value, name('policy'))));
}

/** Limits given on the command line, else the configured ones. */
export function limitsFrom(values: LimitOptions, env: NodeJS.ProcessEnv): Limits {
	const given: Limits = {};
	if (values['max-size'] !== undefined) given.maxBytes = parseSize(values['max-size'], '--max-size');
	if (values['max-age'] !== undefined) given.maxAge = parseDuration(values['max-age'], '--max-age');
	if (values['max-files'] !== undefined) given.maxFiles = parseCount(values['max-files'], '--max-files');
	if (values['stale-kernels']) given.staleKernels = true;
	const policy = values.policy === undefined ? undefined : parsePolicy(values.policy);
	// Anything given, a 0 included, replaces the configured limits.
	if (Object.keys(given).length > 0 || values.policy !== undefined) return stricter(withoutZeros(given), withoutZeros(policy ?? {}));
	return configuredLimits(env);
}
