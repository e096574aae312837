// `ltocache`: the cache manager. Never on a link's path (the shim starts it
// detached for automatic pruning), so it may use what it likes; each command
// is loaded only when asked for (doctor and demo load execa, prune and
// clear proper-lockfile: stats needs neither, but for --zero).
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { shown } from '../shared/bytes.js';
import { type Command, helpText, parseOptions, splitAtCommand, UsageError } from './command.js';
import { checkSettings } from './settings.js';

const COMMANDS: Record<string, { summary: string; load: () => Promise<{ default: Command }> }> = {
	stats: { summary: 'show what is cached and how often it hits, per kernel release and module', load: () => import('./commands/stats.js') },
	prune: { summary: 'evict least recently used entries beyond size, age or count limits', load: () => import('./commands/prune.js') },
	clear: { summary: "remove all entries, or one kernel's, or one module's", load: () => import('./commands/clear.js') },
	install: { summary: 'put ld.lld shim links first on PATH', load: () => import('./commands/install.js') },
	uninstall: { summary: "remove the shim's links", load: () => import('./commands/uninstall.js') },
	doctor: { summary: 'check PATH, the real linkers, the cache root and installed kernels', load: () => import('./commands/doctor.js') },
	demo: { summary: 'link two ThinLTO objects through the shim into a read-only place', load: () => import('./commands/demo.js') },
	run: { summary: 'run a build with the shim first on its PATH, installing nothing', load: () => import('./commands/run.js') },
	config: { summary: 'show the settings and where each comes from, or set one', load: () => import('./commands/config.js') },
};

function overview(): string {
	const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length)) + 3;
	const rows = Object.entries(COMMANDS).map(([name, { summary }]) => `  ${name.padEnd(width)}${summary}\n`);
	return `Usage: ltocache <command> [options]

Keeps the ThinLTO caches that the ld.lld shim redirects visible and bounded.

Commands:
${rows.join('')}
Run 'ltocache <command> --help' for a command's options; man ltocache for more.
  -h, --help       show help
  -V, --version    show the version
`;
}

function version(): string {
	const pkg = fileURLToPath(new URL('../../package.json', import.meta.url));
	return (JSON.parse(fs.readFileSync(pkg, 'utf8')) as { version: string }).version;
}

async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
	const [name = '', ...rest] = argv;
	const out = (text: string) => process.stdout.write(text);
	if (name === '') {
		process.stderr.write(overview());
		return 2;
	}
	if (name === '-h' || name === '--help' || name === 'help') {
		const topic = COMMANDS[rest[0] ?? ''];
		out(topic ? helpText((await topic.load()).default) : overview());
		return 0;
	}
	if (name === '-V' || name === '--version') {
		out(`ltocache ${version()}\n`);
		return 0;
	}
	if (!Object.hasOwn(COMMANDS, name)) {
		throw new UsageError(`unknown command '${name}' (${Object.keys(COMMANDS).join(', ')}); see 'ltocache --help'`);
	}
	const command = (await COMMANDS[name].load()).default;
	try {
		return await runCommand(command, rest, env);
	} catch (error) {
		// Every usage error ends with where the usage is.
		if (error instanceof UsageError && error.help) throw new UsageError(`${error.message}; see 'ltocache ${name} --help'`);
		throw error;
	}
}

async function runCommand(command: Command, rest: string[], env: NodeJS.ProcessEnv): Promise<number> {
	const out = (text: string) => process.stdout.write(text);
	// --help wins over bad options, as it did before parsing: `ltocache prune --max-size x --help`.
	const help = () => {
		out(helpText(command));
		return 0;
	};
	let parsed: ReturnType<typeof parseOptions>;
	try {
		parsed = parseOptions(command, rest);
	} catch (error) {
		const [own] = splitAtCommand(command, rest); // not the --help of `run`'s command
		if (own.includes('--help') || own.includes('-h')) return help();
		throw error;
	}
	if (parsed.values.help) return help();
	if (command.settings) checkSettings(env);
	return command.run(parsed.values, env, parsed.positionals);
}

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
		process.stderr.write(`ltocache: ${shown(usage ? error.message : inOurWords(error))}\n`);
		process.exitCode = usage ? 2 : 1;
	}
}

/** An error as one line of ours: a system call's (ENOENT: no such file or directory, open '/x') as what could not be done to what, and why. */
function inOurWords(error: unknown): string {
	const e = error as NodeJS.ErrnoException & { dest?: string };
	if (typeof e?.code === 'string' && typeof e.syscall === 'string') {
		return `cannot ${e.syscall}${e.path ? ` ${e.path}` : ''}${e.dest ? ` to ${e.dest}` : ''} (${e.code})`;
	}
	return (e?.message ?? String(error)).split('\n')[0];
}
