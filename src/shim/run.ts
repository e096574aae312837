// Running the real linker from Node, for the links bin/ld.lld leaves to Node
// (a cache directory to move or count, an argv[0] a shell cannot give, any
// doubt), as if the build had run it: inherited
// stdio, its exit status, its death signal, and the build's signals passed on.
// `ltocache run` runs its command the same way.
//
// node:child_process rather than execa: importing execa costs ~100 ms, more
// than Node's own start-up, on every link; the shim needs only spawn, and
// loads even that only here (and node:os only for a death by signal), with
// process.getBuiltinModule (Node >= 20.16): import() would first start the
// ES module loader, ~4 ms more on every link Node runs.
import { existsSync } from 'node:fs';
import { type Bytes, bytesToText, isUtf8 } from '../shared/bytes.js';
import type { Stdio } from './start.js';

const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const;

/**
 * spawn() takes strings and encodes them as UTF-8, so an argument that is not
 * UTF-8 cannot pass through it intact. For those (rare) links a shell
 * rebuilds each argument from octal escapes with printf and execs the linker
 * (bash, for `exec -a` to keep argv[0]; else POSIX sh, with the path as argv[0]).
 */
function command(file: string, argv0: string, args: Bytes[]): { file: string; args: string[]; argv0?: string } {
	if (args.every(isUtf8)) return { file, argv0, args: args.map(bytesToText) };
	const octal = (bytes: Bytes) =>
		[...bytes].map((c) => (/[A-Za-z0-9_./=]/.test(c) ? c : `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`)).join('');
	const bash = existsSync('/bin/bash');
	// `for a` expands the escaped list once; each step drops one escaped
	// argument from the front and appends its decoded bytes (the trailing x
	// keeps trailing newlines from being eaten by $(...)).
	const script = `real=$1; name=$2; shift 2; for a do shift; b=$(printf "\${a}x"); set -- "$@" "\${b%x}"; done; exec ${bash ? '-a "$name" ' : ''}"$real" "$@"`;
	return { file: bash ? '/bin/bash' : '/bin/sh', args: ['-c', script, 'sh', file, argv0, ...args.map(octal)] };
}

/** How the linker ended: its exit status, or the signal it died of. */
export type Outcome = { code: number | null; signal: NodeJS.Signals | null };

/**
 * Run the linker (or `ltocache run`'s command) with inherited stdio, the
 * build's signals passed on while it runs, and resolve with how it ended.
 * A command that cannot be started is said, and ends as a shell says it
 * (127 not found, 126 otherwise).
 */
export async function spawnLinker(
	file: string,
	argv0: string,
	args: Bytes[],
	env: NodeJS.ProcessEnv,
	stdio: 'inherit' | 'ignore' | Stdio = 'inherit',
): Promise<Outcome> {
	const { spawn } = process.getBuiltinModule?.('node:child_process') ?? (await import('node:child_process'));
	const cmd = command(file, argv0, args);
	// Listening before the spawn: a signal that comes as the linker starts
	// (the build's Ctrl-C) would otherwise end this process by default and
	// leave the linker running; a listener runs after this code, the child known.
	let child: ReturnType<typeof spawn> | undefined;
	const forward = (signal: NodeJS.Signals) => child?.kill(signal);
	for (const signal of FORWARDED) process.on(signal, forward);
	child = spawn(cmd.file, cmd.args, { argv0: cmd.argv0, env, stdio });
	const started = child;
	return new Promise<Outcome>((done) => {
		started.on('error', (error: NodeJS.ErrnoException) => {
			for (const s of FORWARDED) process.off(s, forward);
			const missing = error.code === 'ENOENT';
			process.stderr.write(
				`ltocache: cannot run ${file}: ${missing ? `not found${file.includes('/') ? '' : ' on PATH'}` : error.message}\n`,
			);
			done({ code: missing ? 127 : 126, signal: null });
		});
		started.on('exit', (code, signal) => {
			for (const s of FORWARDED) process.off(s, forward);
			done({ code, signal });
		});
	});
}

/** Exit (or die) the way the linker did; never returns. */
export async function exitAs({ code, signal }: Outcome): Promise<never> {
	if (signal) {
		// Die of the same signal, so make and shells see 128+n, core dumps and all;
		// SIGUSR1 would start Node's inspector (its lines on stderr) instead.
		if (signal !== 'SIGUSR1') process.kill(process.pid, signal);
		// Still here: the signal is ignored by Node (SIGPIPE) or by inheritance.
		const { constants } = process.getBuiltinModule?.('node:os') ?? (await import('node:os'));
		process.exit(128 + (constants.signals[signal] ?? 0));
	}
	process.exit(code ?? 1);
}

/**
 * Run the linker (or `ltocache run`'s command), and exit (or die) the way it
 * did, once onExit has run (told whether the command succeeded); the promise
 * never settles.
 */
export async function runLinker(
	file: string,
	argv0: string,
	args: Bytes[],
	env: NodeJS.ProcessEnv,
	onExit?: (succeeded: boolean) => Promise<void>,
): Promise<never> {
	const outcome = await spawnLinker(file, argv0, args, env);
	await onExit?.(outcome.code === 0);
	return exitAs(outcome);
}
