// How a manager command is declared: its usage, its options with their help,
// and its run, together in one file under commands/. Parsed option values
// are typed from that declaration.
import { parseArgs } from 'node:util';

import { UsageError } from '../shared/values.js';

export { UsageError };

type OptionSpec = {
	type: 'string' | 'boolean';
	/** The argument's name in the help (SIZE, DIR); string options only. */
	arg?: string;
	help: string;
};
export type OptionSpecs = Record<string, OptionSpec>;

export type Values<O extends OptionSpecs> = { [K in keyof O]?: O[K]['type'] extends 'string' ? string : boolean };

export type Command<O extends OptionSpecs = OptionSpecs> = {
	/** After "Usage: ltocache ". */
	usage: string;
	description: string;
	options: O;
	/**
	 * What words other than options are: 'command', a command line of its own
	 * from the first such word on (`run -- make`), options after it included;
	 * 'words', the command's own (`config KEY VALUE`), options before or after.
	 */
	positionals?: 'command' | 'words';
	/** Whether it reads the settings: a configuration that is not right is then bad input (exit 2) before it does anything. */
	settings?: boolean;
	run(values: Values<O>, env: NodeJS.ProcessEnv, positionals: string[]): Promise<number>;
};

export const defineCommand = <O extends OptionSpecs>(command: Command<O>): Command<O> => command;

export function helpText(command: Command): string {
	const rows = Object.entries(command.options).map(([name, spec]) => [`--${name}${spec.arg ? ` ${spec.arg}` : ''}`, spec.help]);
	const width = Math.max(0, ...rows.map(([flag]) => flag.length)) + 3;
	const options = rows.map(([flag, help]) => `  ${flag.padEnd(width)}${help.replaceAll('\n', `\n  ${' '.repeat(width)}`)}\n`).join('');
	return `Usage: ltocache ${command.usage}\n\n${command.description}\n${options ? `\n${options}` : ''}`;
}

/**
 * A command that runs another (`run -- make ...`) takes options only up to
 * `--` or its first word that is not one: the rest belongs to that command,
 * its own --help included.
 */
export function splitAtCommand(command: Command, args: string[]): [string[], string[]] {
	if (command.positionals !== 'command') return [args, []];
	for (let i = 0; i < args.length; i++) {
		const arg = args[i];
		if (arg === '--') return [args.slice(0, i), args.slice(i + 1)];
		if (!arg.startsWith('-')) return [args.slice(0, i), args.slice(i)];
		if (command.options[arg.slice(2)]?.type === 'string') i++; // `--mode drop`: its value
	}
	return [args, []];
}

/**
 * A string option's value that begins with '-' (`--max-age -1d`): parseArgs
 * refuses it as ambiguous before any check of ours could name what is wrong
 * with it, so it is joined to its option (`--max-age=-1d`) and checked like
 * any other value. A known option is never taken as a value.
 */
function joinDashValues(command: Command, args: string[]): string[] {
	const out: string[] = [];
	for (let i = 0; i < args.length; i++) {
		const arg = args[i];
		const next = args[i + 1];
		const known = (word: string) =>
			word === '--' || word.replace(/=.*/, '').replace(/^--?/, '') in command.options || /^(-h|--help)$/.test(word);
		if (arg.startsWith('--') && command.options[arg.slice(2)]?.type === 'string' && next?.startsWith('-') && !known(next)) {
			out.push(`${arg}=${next}`);
			i++;
		} else out.push(arg);
	}
	return out;
}

/** parseArgs's errors in our words: one line, lower case, naming the bad word (its own go on to explain '--'). */
function ourWords(message: string): string {
	const first = message.split(/\. |\n/)[0].replace(/\.$/, '');
	const unknown = /^Unknown option '([^']+)'/.exec(first);
	if (unknown) return `unknown option '${unknown[1]}'`;
	const missing = /^Option '(--[\w-]+)[^']*' argument (missing|is ambiguous)/.exec(first);
	if (missing) return `${missing[1]} needs a value`;
	const unexpected = /^Unexpected argument '([^']*)'/.exec(first);
	if (unexpected) return `unexpected argument '${unexpected[1]}'`;
	return first.charAt(0).toLowerCase() + first.slice(1);
}

/** parseArgs with one-line errors. */
export function parseOptions<O extends OptionSpecs>(
	command: Command<O>,
	args: string[],
): { values: Values<O> & { help?: boolean }; positionals: string[] } {
	const options = Object.fromEntries(Object.entries(command.options).map(([name, spec]) => [name, { type: spec.type }]));
	const [own, rest] = splitAtCommand(command, args);
	let values: Values<O> & { help?: boolean };
	let positionals: string[];
	try {
		const parsed = parseArgs({
			args: joinDashValues(command, own),
			options: { ...options, help: { type: 'boolean', short: 'h' } },
			allowPositionals: command.positionals === 'words',
			strict: true,
		});
		values = parsed.values as Values<O> & { help?: boolean };
		positionals = [...parsed.positionals, ...rest];
	} catch (error) {
		throw new UsageError(ourWords((error as Error).message));
	}
	// No option takes an empty value for "none" (`--kernel ''` would match no release, or every one).
	const empty = Object.keys(command.options).find((name) => (values as Record<string, unknown>)[name] === '');
	if (empty !== undefined) throw new UsageError(`invalid --${empty} '' (empty)`);
	return { values, positionals };
}
