// `ltocache config`: the effective settings and where each comes from, or
// one setting written to the configuration file (src/shared/config.ts).
import fs from 'node:fs';
import path from 'node:path';
import {
	CONTROL,
	configFiles,
	controlAllowed,
	describeSource,
	hasCredentials,
	isSetting,
	readSettings,
	redacted,
	SETTINGS,
	type Setting,
	type Source,
} from '../../shared/config.js';
import { isRemoteUrl } from '../../shared/remote/store.js';
import { tempName } from '../../shared/root.js';
import { defineCommand, UsageError } from '../command.js';
import { settingName } from '../limits.js';

export default defineCommand({
	usage: 'config [--json] | config [--system] KEY [VALUE] | config [--system] --unset KEY',
	description: `Shows every setting, its value and where it comes from: the environment
(LTOCACHE_MAX_SIZE, ...), a configuration file and line, or the default.
With KEY, shows that value; with KEY VALUE, writes it to your configuration
file: $XDG_CONFIG_HOME/ltocache/config (~/.config/ltocache/config), or for
root /etc/ltocache.conf, which every user, DKMS and the daily prune read
first. The environment overrides your file, your file the machine's.
  ltocache config max-size 10G
  sudo ltocache config mode add
Settings: ${Object.keys(SETTINGS).join(', ')}.`,
	options: {
		unset: { type: 'boolean', help: 'remove KEY from the configuration file' },
		system: { type: 'boolean', help: 'the machine-wide file, /etc/ltocache.conf (root only)' },
		json: { type: 'boolean', help: 'machine-readable output' },
	},
	positionals: 'words',
	async run(values, env, words) {
		if (words.length > 2) throw new UsageError(`unexpected argument '${words[2]}'`);
		const [key, value] = words;
		if (key !== undefined && !isSetting(key)) throw new UsageError(`unknown setting '${key}' (${Object.keys(SETTINGS).join(', ')})`);
		if (values.unset && (key === undefined || value !== undefined))
			throw new UsageError('--unset takes one KEY: ltocache config --unset KEY');
		if (values.unset || value !== undefined) return write(key as Setting, values.unset ? undefined : value, env, Boolean(values.system));
		const { values: settings, problems, warnings } = readSettings(env);
		for (const warning of warnings) process.stderr.write(`ltocache: warning: ${warning}\n`);
		// A remote's password is never shown.
		for (const v of Object.values(settings)) v.value = redacted(v.value);
		if (key !== undefined) {
			process.stdout.write(`${settings[key].value}\n`);
			return 0;
		}
		problems.push(...invalidValues(settings));
		if (values.json) {
			const files = configFiles(env);
			process.stdout.write(`${JSON.stringify({ files, settings, problems }, null, 2)}\n`);
		} else {
			const rows = Object.entries(settings).map(([k, v]) => [k, v.value === '' ? '(none)' : v.value, describeSource(v.source)]);
			const widths = [0, 1].map((i) => Math.max(...rows.map((r) => r[i].length)));
			for (const [k, v, from] of rows) process.stdout.write(`${k.padEnd(widths[0])}  ${v.padEnd(widths[1])}  ${from}\n`);
			const { system, user } = configFiles(env);
			const state = (file?: string) => (file ? `${file}${fs.existsSync(file) ? '' : ' (none)'}` : '(no HOME)');
			process.stdout.write(`files: ${state(system)}, then ${state(user)}\n`);
		}
		for (const problem of problems) process.stderr.write(`ltocache: ${problem}\n`);
		return problems.length > 0 ? 2 : 0;
	},
});

/** A value as its setting reads it; throws a UsageError naming it. */
export function checkSetting(key: Setting, value: string, what: string, source: Source = { default: true }): void {
	if (CONTROL.test(value) && !controlAllowed(key, source)) throw new UsageError(`invalid ${what}: it holds a control character`);
	SETTINGS[key].parse(value, what);
	if (key === 'remote' && value !== '' && !isRemoteUrl(value)) {
		throw new UsageError(`invalid ${what} (expected http(s)://host/path/ or redis(s)://[user:pass@]host[:port][/db])`);
	}
}

export function invalidValues(settings: ReturnType<typeof readSettings>['values']): string[] {
	const problems: string[] = [];
	for (const [key, value] of Object.entries(settings) as [Setting, (typeof settings)[Setting]][]) {
		try {
			checkSetting(key, value.value, settingName(key, value), value.source);
		} catch (error) {
			problems.push((error as Error).message);
		}
	}
	return problems;
}

/** The file `config KEY VALUE` writes: root's is the machine's, anyone else's their own. */
function ownFile(env: NodeJS.ProcessEnv, system: boolean): string {
	const files = configFiles(env);
	if (system || process.getuid?.() === 0) return files.system;
	if (!files.user) throw new Error('no configuration file of yours: set HOME or XDG_CONFIG_HOME (or use --system as root)');
	return files.user;
}

/** Set (or, with value undefined, remove) one setting in the file, keeping every other line; replaced in one rename. */
function write(key: Setting, value: string | undefined, env: NodeJS.ProcessEnv, system: boolean): number {
	if (value !== undefined) checkSetting(key, value, key);
	const shown = value === undefined ? undefined : redacted(value);
	const file = ownFile(env, system);
	let text = '';
	let mode = 0o644;
	const machine = file === configFiles(env).system;
	try {
		text = fs.readFileSync(file, 'utf8');
		mode = fs.statSync(file).mode & 0o777;
	} catch (error) {
		if ((error as NodeJS.ErrnoException).code !== 'ENOENT')
			throw new Error(`cannot read ${file} (${(error as NodeJS.ErrnoException).code})`);
	}
	const lines = text === '' ? [] : text.replace(/\n$/, '').split('\n');
	const ours = (line: string) => new RegExp(`^[ \\t\\v\\f\\r]*${key}[ \\t\\v\\f\\r]*=`).test(line);
	const at = lines.findIndex(ours);
	const kept = lines.filter((line) => !ours(line));
	if (value !== undefined) kept.splice(at < 0 ? kept.length : at, 0, `${key} = ${value}`);
	// A credential is its owner's alone: the user's file goes 0600. The machine's file every user's builds must read.
	const secret = kept.some((line) => /^[ \t]*remote[ \t]*=/.test(line) && hasCredentials(line.replace(/^[^=]*=/, '')));
	if (secret && !machine) mode &= 0o600;
	const temp = tempName(file);
	try {
		fs.mkdirSync(path.dirname(file), { recursive: true });
		fs.writeFileSync(temp, kept.length ? `${kept.join('\n')}\n` : '', { mode });
		fs.chmodSync(temp, mode); // not the umask's
		fs.renameSync(temp, file);
	} catch (error) {
		fs.rmSync(temp, { force: true });
		const code = (error as NodeJS.ErrnoException).code;
		throw new Error(
			`cannot write ${file} (${code})${file === configFiles(env).system && process.getuid?.() !== 0 ? '; the machine-wide file needs root: sudo ltocache config ... --system' : ''}`,
		);
	}
	const overridden = env[SETTINGS[key].env];
	process.stdout.write(`${shown === undefined ? `removed ${key} from` : `${key} = ${shown} in`} ${file}\n`);
	if (overridden) process.stdout.write(`note: ${SETTINGS[key].env}=${redacted(overridden)} in this environment overrides it\n`);
	if (secret && machine && (mode & 0o044) !== 0) {
		process.stderr.write(
			`ltocache: warning: ${file} is readable by every user, and so is the remote's password in it: keep it in a file only root reads and name that with remote-password-file\n`,
		);
	}
	return 0;
}
