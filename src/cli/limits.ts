// Prune's limits: one type, and the parsers for what users type. Every
// malformed value is a UsageError naming it: a typo must never turn into a
// silent default and a mass delete. A limit of 0 is no limit, for every
// limit and from every source, as LLVM's cache policy (lld's own test:
// "cache_size_files=0 should disable the limit, not delete everything") and
// ccache's max_size read it; `ltocache clear` empties a cache.
import { describeSource, readSettings, SETTINGS, type Setting, type Value } from '../shared/config.js';
import { type Limits, parseCount, parseDuration, parsePolicy, parseSize, UsageError } from '../shared/values.js';

export { type Limits, parseCount, parseDuration, parsePolicy, parseSize };

/**
 * Whether sizes are shown in powers of 1024 (KiB, MiB, GiB), as the size the
 * user gave (else the configured max-size) is written: all but KB, MB, GB,
 * TB are. `--max-size 10M` then reports `kept ... (10 MiB)`, not 10.5 MB.
 */
export function binaryUnits(given: string | undefined, env: NodeJS.ProcessEnv): boolean {
	const size = given ?? readSettings(env).values['max-size'].value;
	return !/\d\s*[kmgt]b$/i.test(size.trim());
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
		maxBytes: SETTINGS['max-size'].parse(values['max-size'].value, name('max-size')),
		maxAge: SETTINGS['max-age'].parse(values['max-age'].value, name('max-age')),
		maxFiles: SETTINGS['max-files'].parse(values['max-files'].value, name('max-files')),
	});
	return stricter(limits, withoutZeros(SETTINGS.policy.parse(values.policy.value, name('policy'))));
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
