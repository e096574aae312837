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
import { join } from 'node:path';

/** What the shim does with a ThinLTO link (ltocache-ld.lld(1)): redirect, the default, is the first. */
export const MODES = ['redirect', 'drop', 'add'];

export const SETTINGS = {
	'max-size': { env: 'LTOCACHE_MAX_SIZE', default: '5GiB' },
	'max-age': { env: 'LTOCACHE_MAX_AGE', default: '30d' },
	'max-files': { env: 'LTOCACHE_MAX_FILES', default: '0' },
	policy: { env: 'LTOCACHE_POLICY', default: '' },
	'auto-prune': { env: 'LTOCACHE_AUTO_PRUNE', default: 'true' },
	mode: { env: 'LTOCACHE_MODE', default: 'redirect' },
	remote: { env: 'LTOCACHE_REMOTE', default: '' },
	'remote-read-only': { env: 'LTOCACHE_REMOTE_READ_ONLY', default: 'false' },
	'remote-timeout': { env: 'LTOCACHE_REMOTE_TIMEOUT', default: '2s' },
	'base-dir': { env: 'LTOCACHE_BASE_DIR', default: '' },
	verify: { env: 'LTOCACHE_VERIFY', default: 'off' },
} as const;

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

/** One file's settings; a line that is not `key = value`, or names no setting, is a problem (the manager refuses it, the shim passes over it). */
export function parseConfig(text: string, file: string): { values: Map<Setting, Value>; problems: string[] } {
	const values = new Map<Setting, Value>();
	const problems: string[] = [];
	for (const [i, raw] of text.split('\n').entries()) {
		// ASCII blanks only, as the shell's [:space:] trims them.
		const line = raw.replace(/^[ \t\v\f\r]+|[ \t\v\f\r]+$/g, '');
		if (line === '' || line.startsWith('#')) continue;
		const match = /^([^= \t\v\f\r]+)[ \t\v\f\r]*=[ \t\v\f\r]*(.*)$/.exec(line);
		const where = `${file}:${i + 1}`;
		if (!match) problems.push(`${where}: '${line}' is not key = value`);
		else if (!isSetting(match[1])) problems.push(`${where}: unknown setting '${match[1]}' (${Object.keys(SETTINGS).join(', ')})`);
		else values.set(match[1], { value: match[2], source: { file, line: i + 1 } });
	}
	return { values, problems };
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
export function readSettings(env: NodeJS.ProcessEnv): { values: Record<Setting, Value>; problems: string[] } {
	const files = configFiles(env);
	const problems: string[] = [];
	const layers = [files.system, files.user].map((file) => parseConfig(readText(file, problems), file ?? ''));
	const values = {} as Record<Setting, Value>;
	for (const key of Object.keys(SETTINGS) as Setting[]) {
		const fromEnv = env[SETTINGS[key].env];
		const fromFile = layers[1].values.get(key) ?? layers[0].values.get(key);
		values[key] = fromEnv
			? { value: fromEnv, source: { env: SETTINGS[key].env } }
			: (fromFile ?? { value: SETTINGS[key].default, source: { default: true } });
	}
	return { values, problems: [...problems, ...layers.flatMap((l) => l.problems)] };
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

/** A remote URL as it may be shown anywhere: the password replaced. */
export const redacted = (value: string) => value.replace(/^([a-z]+:\/\/[^/@]*?:)[^/@]*@/i, '$1***@');

/** base-dir: absolute directories, separated by colons; anything else in the list is none. */
export const baseDirs = (value: string) => value.split(':').filter((dir) => dir.startsWith('/'));

/** The remote's settings as a link uses them; read-only only for a value that says on, the budget 2 s unless set right. */
export type RemoteSettings = { url: string; readOnly: boolean; budgetMs: number; baseDirs: string[] };
export function remoteSettings(values: Record<Setting, Value>): RemoteSettings {
	const readOnly = values['remote-read-only'].value;
	return {
		url: values.remote.value,
		readOnly: isOnOrOff(readOnly) && !isOff(readOnly),
		budgetMs: parseBudget(values['remote-timeout'].value) ?? 2000,
		baseDirs: baseDirs(values['base-dir'].value),
	};
}
