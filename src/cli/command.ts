// How a manager command is declared: its usage, its options with their help,
// and its run, together in one file under commands/. Parsed option values
// are typed from that declaration.
import { parseArgs } from 'node:util';

/** Bad input: one line naming the bad value, exit status 2, nothing done. */
export class UsageError extends Error {}

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
	/** Whether words after the options belong to the command (`run -- make`). */
	positionals?: boolean;
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
	if (!command.positionals) return [args, []];
	for (let i = 0; i < args.length; i++) {
		const arg = args[i];
		if (arg === '--') return [args.slice(0, i), args.slice(i + 1)];
		if (!arg.startsWith('-')) return [args.slice(0, i), args.slice(i)];
		if (command.options[arg.slice(2)]?.type === 'string') i++; // `--mode drop`: its value
	}
	return [args, []];
}

/** parseArgs with one-line errors: its own messages go on to explain '--' usage. */
export function parseOptions<O extends OptionSpecs>(
	command: Command<O>,
	args: string[],
): { values: Values<O> & { help?: boolean }; positionals: string[] } {
	const options = Object.fromEntries(Object.entries(command.options).map(([name, spec]) => [name, { type: spec.type }]));
	const [own, positionals] = splitAtCommand(command, args);
	try {
		const parsed = parseArgs({ args: own, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true });
		return { values: parsed.values as Values<O> & { help?: boolean }, positionals };
	} catch (error) {
		const message = (error as Error).message;
		// `--max-age -1d`: name the value, not just the option.
		const ambiguous = /^Option '(--[\w-]+)' argument is ambiguous/.exec(message);
		const value = ambiguous && args[args.indexOf(ambiguous[1]) + 1];
		if (value) throw new UsageError(`invalid ${ambiguous[1]} '${value}'`);
		throw new UsageError(message.split(/\. |\n/)[0].replace(/\.$/, ''));
	}
}
