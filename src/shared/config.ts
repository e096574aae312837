// The configuration files, read the same way by the shim (mode, auto-prune, remote)
// and the manager (everything): /etc/ltocache.conf for the whole machine
// (root's and DKMS's), then the user's $XDG_CONFIG_HOME/ltocache/config, then
// the environment, each overriding what came before; a default last.
//
// A file is lines of `key = value`; blank lines and lines starting with #
// are skipped; the last line for a key wins. bin/ld.lld reads `mode` from the
// same files with shell built-ins, trimming blanks the same way.
//
// On the shim's hot path: two small reads, and nothing is parsed beyond the
// lines. The user's file is found from XDG_CONFIG_HOME or HOME, not with
// xdg-basedir, whose os.homedir() reads /etc/passwd when HOME is unset: the
// shell cannot, and both halves of the shim must read the same file.
import { readFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { parseCount, parseDuration, parsePolicy, parseSize, UsageError } from './values.js';

/** What the shim does with a ThinLTO link (ltocache-ld.lld(1)): redirect, the default, is the first. bin/ld.lld lists them too (a test holds it to this). */
export const MODES = ['redirect', 'drop', 'add'];

/** Why a mode is none of the modes, after what names it (`invalid --mode 'x'`, `LTOCACHE_MODE=x`); undefined for a mode ('' is the default). The one check and message for every reader. */
export const badMode = (value: string, named: string): string | undefined =>
	value === '' || MODES.includes(value) ? undefined : `${named} is not one of ${MODES.join(', ')}`;

/** Whether a switch is on: true, 1, yes, on; false, 0, no, off turn it off. */
function onOff(text: string, what: string): boolean {
	if (!isOnOrOff(text)) throw new UsageError(`invalid ${what} '${text}' (true or false)`);
	return !isOff(text);
}

/** An absolute path, or '' for none. */
function absolutePath(text: string, what: string): string {
	if (text !== '' && !isAbsolute(text)) throw new UsageError(`invalid ${what} '${text}' (an absolute path)`);
	return text;
}

/**
 * Every setting: its variable, its default, and its parser, which returns
 * the value as its readers use it or throws a UsageError naming it. Every
 * reader goes through here: the manager refuses a value that is not right
 * (exit 2), the shim passes over it to the default (see parsed).
 */
export const SETTINGS = {
	'max-size': { env: 'LTOCACHE_MAX_SIZE', default: '5GiB', parse: parseSize },
	'max-age': { env: 'LTOCACHE_MAX_AGE', default: '30d', parse: parseDuration },
	'max-files': { env: 'LTOCACHE_MAX_FILES', default: '0', parse: parseCount },
	policy: { env: 'LTOCACHE_POLICY', default: '', parse: parsePolicy },
	'auto-prune': { env: 'LTOCACHE_AUTO_PRUNE', default: 'true', parse: onOff },
	mode: {
		env: 'LTOCACHE_MODE',
		default: 'redirect',
		parse(text: string, what: string): string {
			const bad = badMode(text, `${what} '${text}'`);
			if (bad) throw new UsageError(bad);
			return text || 'redirect';
		},
	},
	remote: {
		env: 'LTOCACHE_REMOTE',
		default: '',
		parse(text: string, what: string): string {
			// The schemes ltocache knows are src/shared/remote/store.ts's, which the shim loads only with a remote: config checks them.
			if (text !== '' && !/^[a-z][a-z0-9+.-]*:\/\/[^/]/i.test(text)) {
				throw new UsageError(`invalid ${what} (expected http(s)://host/path/ or redis(s)://[user:pass@]host[:port][/db])`);
			}
			return text;
		},
	},
	'remote-read-only': { env: 'LTOCACHE_REMOTE_READ_ONLY', default: 'false', parse: onOff },
	'remote-timeout': {
		env: 'LTOCACHE_REMOTE_TIMEOUT',
		default: '2s',
		parse(text: string, what: string): number {
			const ms = parseBudget(text);
			if (ms === undefined) throw new UsageError(`invalid ${what} '${text}' (a time above 0: 500ms, 2s)`);
			return ms;
		},
	},
	/** The cache root, as LTOCACHE_DIR names it: /etc/ltocache.conf can point every user's and root's DKMS links at a shared root. */
	'cache-dir': { env: 'LTOCACHE_DIR', default: '', parse: absolutePath },
	'base-dir': {
		env: 'LTOCACHE_BASE_DIR',
		default: '',
		parse(text: string, what: string): string[] {
			if (text !== '' && text.split(':').some((dir) => !dir.startsWith('/')))
				throw new UsageError(`invalid ${what} '${text}' (absolute directories, separated by ':')`);
			return baseDirs(text);
		},
	},
	/** A file holding the remote's password (its first line), for a URL without one: the secret then lives apart from the settings. */
	'remote-password-file': { env: 'LTOCACHE_REMOTE_PASSWORD_FILE', default: '', parse: absolutePath },
	/** The share of cached links run again without a cache and compared (ltocache-ld.lld(1), VERIFY): off, on, or a percentage. */
	verify: {
		env: 'LTOCACHE_VERIFY',
		default: 'off',
		parse(text: string, what: string): number {
			const share = parseVerify(text);
			if (share === undefined) throw new UsageError(`invalid ${what} '${text}' (off, on, or a share of links: 1%)`);
			return share;
		},
	},
} as const;

/** A setting's value as its parser reads it; the default's where it is not right (the shim never fails a link over a setting). */
export function parsed<K extends Setting>(values: Record<Setting, Value>, key: K): ReturnType<(typeof SETTINGS)[K]['parse']> {
	const parse = SETTINGS[key].parse as (text: string, what: string) => ReturnType<(typeof SETTINGS)[K]['parse']>;
	try {
		return parse(values[key].value, key);
	} catch {
		return parse(SETTINGS[key].default, key);
	}
}

export type Setting = keyof typeof SETTINGS;
export const isSetting = (key: string): key is Setting => Object.hasOwn(SETTINGS, key);

/** Where a value came from: a file and line, a variable, or the default. */
export type Source = { file: string; line: number } | { env: string } | { default: true };
export type Value = { value: string; source: Source };

/** The files, lowest first: the machine's, then the user's (undefined without XDG_CONFIG_HOME or HOME). */
export function configFiles(env: NodeJS.ProcessEnv): { system: string; user: string | undefined } {
	const base = env.XDG_CONFIG_HOME || (env.HOME ? join(env.HOME, '.config') : undefined);
	return {
		system: env.LTOCACHE_SYSTEM_CONFIG || '/etc/ltocache.conf',
		user: env.LTOCACHE_CONFIG || (base ? join(base, 'ltocache', 'config') : undefined),
	};
}

/**
 * Whether a value may hold a control character: only a path from the
 * environment (a root whose name holds a newline is a root); a line of a
 * file never, where a newline would write a second setting.
 */
export const controlAllowed = (key: string, source: Source) => 'env' in source && (key === 'cache-dir' || key === 'remote-password-file');

/** A control character (a newline would write a second setting): refused in every value but controlAllowed's. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it looks for
export const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;

/**
 * One file's settings; a line that is not `key = value`, names no setting,
 * or holds a control character is a problem (the manager refuses it, the
 * shim passes over it); a key set twice is a warning (the last line wins).
 */
export function parseConfig(text: string, file: string): { values: Map<Setting, Value>; problems: string[]; warnings: string[] } {
	const values = new Map<Setting, Value>();
	const problems: string[] = [];
	const warnings: string[] = [];
	for (const [i, raw] of text.split('\n').entries()) {
		// ASCII blanks only, as the shell's [:space:] trims them.
		const line = raw.replace(/^[ \t\v\f\r]+|[ \t\v\f\r]+$/g, '');
		if (line === '' || line.startsWith('#')) continue;
		const match = /^([^= \t\v\f\r]+)[ \t\v\f\r]*=[ \t\v\f\r]*(.*)$/.exec(line);
		const where = `${file}:${i + 1}`;
		if (!match) problems.push(`${where}: '${line}' is not key = value`);
		else if (!isSetting(match[1])) problems.push(`${where}: unknown setting '${match[1]}' (${Object.keys(SETTINGS).join(', ')})`);
		else if (CONTROL.test(match[2])) problems.push(`${where}: ${match[1]} holds a control character`);
		else {
			const before = values.get(match[1]);
			if (before && 'file' in before.source) warnings.push(`${where}: ${match[1]} is set again (line ${before.source.line} is ignored)`);
			values.set(match[1], { value: match[2], source: { file, line: i + 1 } });
		}
	}
	return { values, problems, warnings };
}

/** A file's text, or '' when there is none (a missing file is no configuration). */
function readText(file: string | undefined, problems: string[]): string {
	if (!file) return '';
	try {
		return readFileSync(file, 'utf8');
	} catch (error) {
		const code = (error as NodeJS.ErrnoException).code;
		if (code !== 'ENOENT' && code !== 'ENOTDIR') problems.push(`${file}: cannot read it (${code})`);
		return '';
	}
}

/** Every setting's effective value and where it came from, and what was wrong on the way. */
export function readSettings(env: NodeJS.ProcessEnv): { values: Record<Setting, Value>; problems: string[]; warnings: string[] } {
	const files = configFiles(env);
	const problems: string[] = [];
	const layers = [files.system, files.user].map((file) => parseConfig(readText(file, problems), file ?? ''));
	const values = {} as Record<Setting, Value>;
	for (const key of Object.keys(SETTINGS) as Setting[]) {
		const fromEnv = env[SETTINGS[key].env];
		if (fromEnv && CONTROL.test(fromEnv) && !controlAllowed(key, { env: SETTINGS[key].env })) {
			problems.push(`${SETTINGS[key].env} holds a control character`);
		}
		const fromFile = layers[1].values.get(key) ?? layers[0].values.get(key);
		values[key] = fromEnv
			? { value: fromEnv, source: { env: SETTINGS[key].env } }
			: (fromFile ?? { value: SETTINGS[key].default, source: { default: true } });
	}
	return { values, problems: [...problems, ...layers.flatMap((l) => l.problems)], warnings: layers.flatMap((l) => l.warnings) };
}

/** How a source reads in messages and in `ltocache config`. */
export function describeSource(source: Source): string {
	if ('file' in source) return `${source.file}:${source.line}`;
	if ('env' in source) return source.env;
	return 'default';
}

/** auto-prune (and LTOCACHE_AUTO_PRUNE): these turn it off; true, 1, yes and on turn it on. */
export const isOff = (value: string) => /^(0|false|no|off)$/i.test(value.trim());
export const isOnOrOff = (value: string) => /^(0|1|false|true|no|yes|off|on)$/i.test(value.trim());

/** The share of cached links to verify, from 0 to 1: off (the default), on or all, or a percentage; undefined for anything else. */
export function parseVerify(value: string): number | undefined {
	const v = value.trim().toLowerCase();
	if (v === '' || isOff(v)) return 0;
	if (/^(1|true|yes|on|all)$/.test(v)) return 1;
	const m = /^(\d+(?:\.\d+)?)%$/.exec(v);
	return m && Number(m[1]) <= 100 ? Number(m[1]) / 100 : undefined;
}

/** remote-timeout in milliseconds: `500ms`, `2s`, `1.5` (seconds); undefined if it is not a time above 0. */
export function parseBudget(value: string): number | undefined {
	const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(value.trim());
	const ms = m ? Number(m[1]) * (m[2] === 'ms' ? 1 : 1000) : 0;
	return ms > 0 ? ms : undefined;
}

/**
 * Where a URL's user and password end (at its last @), or -1 if it has none:
 * a / before that @ is the password's (redis://:pa/ss@host) when what
 * precedes the first / holds a colon, else the path's (http://host/a:b@c).
 * Where in doubt, more is taken for the password, never less.
 */
function userinfoEnd(value: string): number {
	const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(value);
	const at = value.lastIndexOf('@');
	if (!scheme || at < scheme[0].length) return -1;
	const userinfo = value.slice(scheme[0].length, at);
	const slash = userinfo.indexOf('/');
	return slash < 0 || userinfo.slice(0, slash).includes(':') ? at : -1;
}

/** A remote URL as it may be shown anywhere: its user and password (a token as the user, a password holding / or @) replaced. */
export function redacted(value: string): string {
	const end = userinfoEnd(value);
	return end < 0 ? value : `${value.slice(0, value.indexOf('//') + 2)}***${value.slice(end)}`;
}

/** Whether a remote URL carries a user or password, a secret to keep in a file only its owner reads. */
export const hasCredentials = (value: string) => userinfoEnd(value.trim()) >= 0;

/** base-dir: absolute directories, separated by colons; anything else in the list is none. */
export const baseDirs = (value: string) => value.split(':').filter((dir) => dir.startsWith('/'));

/** The remote's settings as a link uses them; read-only only for a value that says on, the budget 2 s unless set right. */
export type RemoteSettings = { url: string; readOnly: boolean; budgetMs: number; baseDirs: string[] };
export function remoteSettings(values: Record<Setting, Value>): RemoteSettings {
	return {
		url: withPassword(values.remote.value, values['remote-password-file'].value),
		readOnly: parsed(values, 'remote-read-only'),
		budgetMs: parsed(values, 'remote-timeout'),
		baseDirs: baseDirs(values['base-dir'].value),
	};
}

/** The URL with the password from the file (its first line) when it has none; as it is if the file cannot be read. */
function withPassword(url: string, file: string): string {
	if (url === '' || file === '') return url;
	try {
		const parsed = new URL(url);
		if (parsed.password !== '') return url;
		parsed.password = encodeURIComponent(readFileSync(file, 'utf8').split('\n')[0]);
		return parsed.href;
	} catch {
		return url;
	}
}

/**
 * The environment a root is chosen from (src/shared/root.ts): LTOCACHE_DIR
 * as the cache-dir setting gives it, from the variable or a configuration
 * file. The same object when there is nothing to add.
 */
export function withCacheDir(env: NodeJS.ProcessEnv, values: Record<Setting, Value>): NodeJS.ProcessEnv {
	const dir = values['cache-dir'].value;
	return dir === '' || env.LTOCACHE_DIR === dir ? env : { ...env, LTOCACHE_DIR: dir };
}
