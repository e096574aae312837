// `ltocache`: the cache manager. Never on a link's path (the shim starts it
// detached for automatic pruning), so it may use what it likes.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import prettyBytes from 'pretty-bytes';
import { resolveRoot } from '../shared/layout.js';
import type { Limits, Report } from './maintain.js';
import { collectStats, renderStats } from './stats.js';
import { UsageError, parseCount, parseDuration, parsePolicy, parseSize } from './units.js';

export const DEFAULT_MAX_SIZE = '5GiB';
export const DEFAULT_MAX_AGE = '30d';

const HELP: Record<string, string> = {
	'': `Usage: ltocache <command> [options]

Keeps the ThinLTO caches that the ld.lld shim redirects visible and bounded.

Commands:
  stats      show what is cached, per kernel release and module
  prune      evict least recently used entries beyond size, age or count limits
  clear      remove all entries, or one kernel's, or one module's
  install    put ld.lld shim links first on PATH (uninstall removes them)
  doctor     check PATH, the real linkers, the cache root and installed kernels
  demo       link two ThinLTO objects through the shim into a read-only place

Run 'ltocache <command> --help' for a command's options; man ltocache for more.
  -h, --help       show help
  -V, --version    show the version
`,
	stats: `Usage: ltocache stats [--json] [--kernel REL]

  --kernel REL   only this kernel release
  --json         machine-readable output (schema in ltocache(1))
`,
	prune: `Usage: ltocache prune [limits] [--kernel REL] [--dry-run] [--json]

Evicts least recently used entries (last use = later of atime and mtime)
until every limit holds. With no limits: --max-size \${LTOCACHE_MAX_SIZE:-${DEFAULT_MAX_SIZE}}
--max-age \${LTOCACHE_MAX_AGE:-${DEFAULT_MAX_AGE}}.

  --max-size SIZE      cap on the whole root (or --kernel): 123, 500K, 10M, 1.5G, 2GiB
  --max-age DURATION   evict entries unused for longer: 90s, 12h, 7d, 2w
  --max-files N        cap on the number of entries
  --stale-kernels      evict every release that is not installed
  --policy STRING      LLVM's --thinlto-cache-policy syntax, over the whole root:
                       prune_after=168h:cache_size_bytes=1g:cache_size_files=1000
  --kernel REL         only this kernel release
  --dry-run            report what would be removed, remove nothing
  --json               machine-readable report
`,
	clear: `Usage: ltocache clear [--kernel REL] [--extmod PATH] [--dry-run] [--json]

Removes every cache entry, or only one kernel release's, or one module's
(the M= / KBUILD_EXTMOD directory, or the original cache directory).
Links running meanwhile still succeed.

  --kernel REL    only this kernel release
  --extmod PATH   only this external module
  --dry-run       report what would be removed, remove nothing
  --json          machine-readable report
`,
};

type Options = NonNullable<ParseArgsConfig['options']>;
const common: Options = { help: { type: 'boolean', short: 'h' }, json: { type: 'boolean' } };

/** parseArgs with one-line errors: its own messages go on to explain '--' usage. */
function parse(args: string[], options: Options) {
	try {
		return parseArgs({ args, options: { ...common, ...options }, allowPositionals: false, strict: true }).values;
	} catch (error) {
		const message = (error as Error).message;
		// `--max-age -1d`: name the value, not just the option.
		const ambiguous = /^Option '(--[\w-]+)' argument is ambiguous/.exec(message);
		const value = ambiguous && args[args.indexOf(ambiguous[1]) + 1];
		if (value) throw new UsageError(`invalid ${ambiguous[1]} '${value}'`);
		throw new UsageError(message.split(/\. |\n/)[0].replace(/\.$/, ''));
	}
}

function root(env: NodeJS.ProcessEnv): string {
	const found = resolveRoot(env, false);
	if (found === undefined) throw new Error('no usable cache root (set LTOCACHE_DIR, or see ltocache doctor)');
	return found;
}

function out(text: string): void {
	process.stdout.write(text);
}

function renderReport(report: Report, json: boolean): string {
	if (json) return JSON.stringify(report, null, 2) + '\n';
	const verb = report.dryRun ? 'would remove' : 'removed';
	const r = report.removed;
	const extra = [r.tempFiles && `${r.tempFiles} stale temporary files`, r.directories && `${r.directories} idle directories`].filter(Boolean);
	return (
		`${verb} ${r.entries} entries (${prettyBytes(r.bytes)})${extra.length ? ', ' + extra.join(', ') : ''}\n` +
		`${report.dryRun ? 'would keep' : 'kept'} ${report.remaining.entries} entries (${prettyBytes(report.remaining.bytes)}) in ${report.root}\n`
	);
}

/** Limits given on the command line, else the defaults (themselves overridable from the environment). */
export function limitsFrom(values: Record<string, unknown>, env: NodeJS.ProcessEnv): Limits {
	const limits: Limits = {};
	if (typeof values['max-size'] === 'string') limits.maxBytes = parseSize(values['max-size'], '--max-size');
	if (typeof values['max-age'] === 'string') limits.maxAge = parseDuration(values['max-age'], '--max-age');
	if (typeof values['max-files'] === 'string') limits.maxFiles = parseCount(values['max-files'], '--max-files');
	if (values['stale-kernels']) limits.staleKernels = true;
	if (typeof values.policy === 'string') {
		const policy = parsePolicy(values.policy);
		limits.maxAge = Math.min(limits.maxAge ?? Infinity, policy.pruneAfter ?? Infinity);
		limits.maxBytes = Math.min(limits.maxBytes ?? Infinity, policy.maxBytes ?? Infinity);
		limits.maxFiles = Math.min(limits.maxFiles ?? Infinity, policy.maxFiles ?? Infinity);
		limits.maxPercent = policy.maxPercent;
	}
	if (Object.keys(limits).length > 0) return limits;
	return {
		maxBytes: parseSize(env.LTOCACHE_MAX_SIZE || DEFAULT_MAX_SIZE, 'LTOCACHE_MAX_SIZE'),
		maxAge: parseDuration(env.LTOCACHE_MAX_AGE || DEFAULT_MAX_AGE, 'LTOCACHE_MAX_AGE'),
	};
}

function version(): string {
	const pkg = fileURLToPath(new URL('../../package.json', import.meta.url));
	return (JSON.parse(fs.readFileSync(pkg, 'utf8')) as { version: string }).version;
}

type Subcommand = {
	HELP: Record<string, string>;
	run: (command: string, args: string[], env: NodeJS.ProcessEnv, parse: typeof parseOptions) => Promise<number>;
};
// Loaded on demand: stats and prune need none of it (doctor and demo load execa).
const LOADERS: Record<string, () => Promise<Subcommand>> = {
	install: () => import('./install.js'),
	uninstall: () => import('./install.js'),
	doctor: () => import('./doctor.js'),
	demo: () => import('./demo.js'),
};

async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
	const [command = '', ...rest] = argv;
	if (command === '') {
		process.stderr.write(HELP['']);
		return 2;
	}
	if (command === '-h' || command === '--help' || command === 'help') {
		const topic = rest[0] ?? '';
		out(HELP[topic] ?? (LOADERS[topic] ? (await LOADERS[topic]()).HELP[topic] : HELP['']));
		return 0;
	}
	if (command === '-V' || command === '--version') {
		out(`ltocache ${version()}\n`);
		return 0;
	}
	const wantsHelp = rest.includes('--help') || rest.includes('-h');
	if (wantsHelp && HELP[command]) {
		out(HELP[command]);
		return 0;
	}
	switch (command) {
		case 'stats': {
			const v = parse(rest, { kernel: { type: 'string' } });
			const stats = await collectStats(resolveRoot(env, false), { kernel: v.kernel as string | undefined });
			out(v.json ? JSON.stringify(stats, null, 2) + '\n' : renderStats(stats));
			return 0;
		}
		case 'prune': {
			const v = parse(rest, {
				'max-size': { type: 'string' },
				'max-age': { type: 'string' },
				'max-files': { type: 'string' },
				'stale-kernels': { type: 'boolean' },
				policy: { type: 'string' },
				kernel: { type: 'string' },
				'dry-run': { type: 'boolean' },
			});
			const limits = limitsFrom(v, env);
			const { prune } = await import('./maintain.js'); // proper-lockfile: ~13 ms that stats does without
			const report = await prune(root(env), limits, { kernel: v.kernel as string | undefined }, Boolean(v['dry-run']));
			out(renderReport(report, Boolean(v.json)));
			return 0;
		}
		case 'clear': {
			const v = parse(rest, { kernel: { type: 'string' }, extmod: { type: 'string' }, 'dry-run': { type: 'boolean' } });
			const extmod = typeof v.extmod === 'string' ? path.resolve(v.extmod) : undefined;
			const { clear } = await import('./maintain.js');
			const report = await clear(root(env), { kernel: v.kernel as string | undefined, extmod }, Boolean(v['dry-run']));
			out(renderReport(report, Boolean(v.json)));
			return 0;
		}
		case 'install':
		case 'uninstall':
		case 'doctor':
		case 'demo': {
			const module = await LOADERS[command]();
			if (wantsHelp) {
				out(module.HELP[command]);
				return 0;
			}
			return module.run(command, rest, env, parseOptions);
		}
		default:
			throw new UsageError(`unknown command '${command}' (stats, prune, clear, install, uninstall, doctor, demo)`);
	}
}

/** For the subcommand modules: the same one-line option parsing. */
export const parseOptions = parse;

export async function main(argv = process.argv.slice(2), env = process.env): Promise<void> {
	// `ltocache doctor | head`: a closed pipe ends the output, not with a stack trace.
	process.stdout.on('error', (error: NodeJS.ErrnoException) => {
		if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
		throw error;
	});
	try {
		process.exitCode = await run(argv, env);
	} catch (error) {
		const usage = error instanceof UsageError;
		process.stderr.write(`ltocache: ${usage ? error.message : (error as Error).message ?? String(error)}\n`);
		process.exitCode = usage ? 2 : 1;
	}
}
