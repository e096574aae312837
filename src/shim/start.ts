// Where Node's half of the shim starts: bin/ld.lld requires this (bundled as
// dist/ld.lld.cjs), and this runs the shim's bundle (dist/shim.cjs, from
// main.ts) compiled with V8's code cache. Compiling the bundle afresh costs
// every link Node runs ~8 ms on a 2-CPU machine, a tenth of Node's own
// start-up; from the cache it is deserialized in ~2 ms.
//
// The cache is kept beside the bundle, the way Python keeps __pycache__
// beside its code: only whoever may change the bundle may change the
// bytecode run in its place (a cache under a shared cache root would let any
// member of its group run code in everyone's links). Where the bundle's
// directory cannot be written (a user's link against root's install) links
// compile as before, until root's first link (a DKMS build) writes it.
//
// Node 22's module.enableCompileCache would do this, but Node 20 has none; its
// vm.Script takes and makes V8 cached data. Any doubt about the cache (the
// bundle's file changed in any way, another Node, a torn or foreign file, V8
// rejecting it) means compiling afresh and writing a new one after the link:
// the cache may only save time, never change what runs.
//
// This file is also where failing open lives. Whatever Node is first on PATH
// runs it, so it is written for any Node from 12 on (no `?.`, `??`, `node:`
// specifiers) and checks the version before it loads anything else. On too
// old a Node, or on any error before the linker has started (here, in the
// bundle, thrown or rejected), it says so in one line and re-enters bin/ld.lld
// with LTOCACHE_FALLBACK set: the shell then runs the link the build would
// have run without ltocache. The bundle reports through `shim` when the
// linker has started; from then on nothing links again.
// biome-ignore-start lint/style/useNodejsImportProtocol: Node 12 has no node: specifiers, and must get far enough to fall back
import { spawn } from 'child_process';
import { accessSync, closeSync, constants, fstatSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'fs';
import { constants as osConstants } from 'os';
import { join } from 'path';
import { Script } from 'vm';

// biome-ignore-end lint/style/useNodejsImportProtocol: see above

// Bundled as CommonJS: __dirname is dist/, and require the module's own.
const bundle = join(__dirname, 'shim.cjs');
const CACHE_FILE = join(__dirname, 'shim.code-cache');
const MAGIC = 'ltocache code cache 1';

/** The cached data written for this bundle file by this Node, if the cache file holds it whole. */
function readCache(identity: string): Buffer | undefined {
	let file: Buffer;
	try {
		file = readFileSync(CACHE_FILE);
	} catch {
		return undefined;
	}
	const newline = file.indexOf(10);
	if (newline < 0) return undefined;
	const data = file.subarray(newline + 1);
	return file.toString('latin1', 0, newline) === `${identity} ${data.length}` ? data : undefined;
}

/** The cache for the next link, written whole or not at all (parallel links each rename their own). */
function writeCache(script: Script, identity: string): 'written' | 'not writable' {
	// Not the pid alone: links in containers sharing one install can share a pid too (src/shared/root.ts's
	// uniqueTag, which this file, bundled alone, cannot import).
	const temporary = `${CACHE_FILE}.${process.pid}-${Math.random().toString(36).slice(2, 10)}.tmp`;
	try {
		accessSync(__dirname, constants.W_OK); // before the work of serializing: most unwritable installs stay so
		const data = script.createCachedData();
		writeFileSync(temporary, Buffer.concat([Buffer.from(`${identity} ${data.length}\n`, 'latin1'), data]), { mode: 0o644 });
		renameSync(temporary, CACHE_FILE);
		return 'written';
	} catch {
		rmSync(temporary, { force: true });
		return 'not writable';
	}
}

/** The oldest Node that runs the shim's bundle: package.json's engines (test/unit/structure.test.ts holds them alike). */
const NODE_MAJOR = 20;

/**
 * What the bundle's main gets: how to fail open, where to say the linker has
 * started, and decided(), to call before the link's outcome becomes Node's
 * (the linker about to run, or no linker to run): bin/ld.lld then never links
 * itself. diesOf(signal), before this Node dies of the signal the linker
 * died of: the waiting shell dies of it too (from the status alone it could
 * not tell a death by signal n from a linker's exit status 128+n).
 */
export type Shim = {
	linking: boolean;
	fallBack: (why: string) => void;
	decided: () => void;
	diesOf: (signal: NodeJS.Signals) => void;
	stdio: Stdio;
};

function start(shim: Shim): void {
	const major = Number(process.versions.node.split('.')[0]);
	if (!(major >= NODE_MAJOR)) {
		shim.fallBack(`${process.execPath} is Node ${process.version}; the shim needs ${NODE_MAJOR} or later`);
		return;
	}
	// Below Node 20.16 the bundle's lazy built-ins fall back to import(), which a vm.Script cannot run.
	if (!process.getBuiltinModule) {
		require(bundle).main(shim).catch(failed);
		return;
	}
	const fd = openSync(bundle, 'r');
	const stat = fstatSync(fd, { bigint: true });
	const source = readFileSync(fd, 'utf8');
	closeSync(fd);
	// Every field of the file's identity, ctime included, which no one can set back: a rebuild always shows.
	const identity = `${MAGIC} ${process.version} ${process.arch} ${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}`;
	const cachedData = readCache(identity);
	// Node's own module wrapper, on the first line, so stack traces keep their line numbers.
	const script = new Script(`(function (exports, require, module, __filename, __dirname) { ${source}\n})`, {
		filename: bundle,
		cachedData,
	});
	// LTOCACHE_VERBOSE tells of a cache only when there is none to use: a link run from it says nothing.
	if (cachedData === undefined || script.cachedDataRejected) {
		const verbose = process.env.LTOCACHE_VERBOSE === '1';
		if (verbose)
			process.stderr.write(`ltocache: code cache ${CACHE_FILE}: ${cachedData ? 'rejected by V8' : 'none for this bundle and Node'}\n`);
		process.once('exit', () => {
			const outcome = writeCache(script, identity);
			if (verbose) process.stderr.write(`ltocache: code cache ${CACHE_FILE}: ${outcome}\n`);
		});
	}
	const module = { exports: {} as { main: (shim: Shim) => Promise<void> } };
	script.runInThisContext()(module.exports, require, module, bundle, __dirname);
	module.exports.main(shim).catch(failed);
}

// make's jobserver: the two ends of a pipe, named in MAKEFLAGS
// (--jobserver-auth=R,W; --jobserver-fds=R,W before make 4.2) and open in
// every recipe marked `+` or running $(MAKE). A linker exec-ed from the shell
// has them, as the build meant; a child of Node's gets only what its stdio
// names (Node has them close-on-exec). Written for Node 12 as the rest of
// this file is.
export type Stdio = Array<'inherit' | 'ignore' | number>;

/**
 * The stdio for a child that should have what an exec would have given it:
 * 0-2, and the jobserver's two descriptors when MAKEFLAGS names them and
 * they are open here as one pipe's ends (not descriptors of Node's own that
 * took their numbers after make closed them).
 */
function stdioFor(env: NodeJS.ProcessEnv): Stdio {
	const stdio: Stdio = ['inherit', 'inherit', 'inherit'];
	const flags = env.MAKEFLAGS;
	if (!flags || flags.indexOf('--jobserver-') < 0) return stdio;
	const all = flags.match(/--jobserver-(?:auth|fds)=(\d+),(\d+)/g);
	if (!all) return stdio;
	const last = /=(\d+),(\d+)/.exec(all[all.length - 1]);
	if (!last) return stdio;
	const read = Number(last[1]);
	const write = Number(last[2]);
	if (!(read > 2 && write > 2 && read !== write && read < 1024 && write < 1024)) return stdio;
	try {
		const r = fstatSync(read);
		const w = fstatSync(write);
		if (!r.isFIFO() || r.dev !== w.dev || r.ino !== w.ino) return stdio;
	} catch {
		return stdio;
	}
	for (let fd = 3; fd <= Math.max(read, write); fd++) stdio.push(fd === read || fd === write ? fd : 'ignore');
	return stdio;
}

/** What bin/ld.lld kept from this Node's environment, each as LTOCACHE_NODE_ENV_<name>. */
const KEPT_PREFIX = 'LTOCACHE_NODE_ENV_';

/**
 * The build's NODE_OPTIONS and the other variables of Node's that bin/ld.lld
 * kept from this Node (LTOCACHE_NODE_OPTIONS: "+value", or empty for unset;
 * LTOCACHE_NODE_ENV_<name>: the value of each that was set), back in the
 * environment every child gets. Returns the pid of the shell waiting to hear
 * that the outcome is Node's (LTOCACHE_SHELL_PID), if one is.
 */
function restoreEnvironment(env: NodeJS.ProcessEnv): number | undefined {
	const saved = env.LTOCACHE_NODE_OPTIONS;
	if (saved !== undefined) {
		delete env.LTOCACHE_NODE_OPTIONS;
		if (saved.charAt(0) === '+') env.NODE_OPTIONS = saved.slice(1);
		else delete env.NODE_OPTIONS;
	}
	for (const name of Object.keys(env)) {
		if (name.indexOf(KEPT_PREFIX) !== 0) continue;
		env[name.slice(KEPT_PREFIX.length)] = env[name];
		delete env[name];
	}
	// bin/ld.lld sets it to its own pid ($$), which is this Node's parent or, where `node` on PATH is a wrapper that
	// runs the real one as its child (a version manager's shim), its grandparent. Pid 1 only as the parent: the
	// shell as a container's entrypoint, never init by mistake.
	const shell = Number(env.LTOCACHE_SHELL_PID);
	delete env.LTOCACHE_SHELL_PID;
	return shell > 1 || (shell === 1 && process.ppid === 1) ? shell : undefined;
}

const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];

/**
 * Run bin/ld.lld again (process.argv[2], the shim as the build invoked it)
 * with the same arguments and LTOCACHE_FALLBACK set, and exit as it does.
 * Arguments that are not UTF-8 reach it byte for byte from
 * /proc/self/cmdline, rebuilt by a shell from octal escapes.
 */
function fallBack(why: string): void {
	process.stderr.write(`ltocache: ${why}; linking as without ltocache\n`);
	const self = process.argv[2];
	const args = process.argv.slice(3);
	let file = self;
	let argv = args;
	if (process.argv.some((a) => a.indexOf('\uFFFD') >= 0)) {
		const all = readFileSync('/proc/self/cmdline', 'latin1').split('\0').slice(0, -1);
		const octal = (bytes: string) => bytes.replace(/[^A-Za-z0-9_./=]/g, (c) => `\\${`00${c.charCodeAt(0).toString(8)}`.slice(-3)}`);
		file = '/bin/sh';
		argv = [
			'-c',
			`for a do shift; b=$(printf "\${a}x"); set -- "$@" "\${b%x}"; done; exec "$@"`,
			'sh',
			...all.slice(-(args.length + 1)).map(octal),
		];
	}
	shim.decided(); // the shell run from here links
	// Listening first: a signal as the shell starts must reach it, not end this process by default.
	let started: ReturnType<typeof spawn> | undefined;
	const forward = (signal: NodeJS.Signals) => {
		if (started) started.kill(signal);
	};
	for (const signal of FORWARDED) process.on(signal, forward);
	const child = spawn(file, argv, {
		env: Object.assign({}, process.env, { LTOCACHE_FALLBACK: '1' }),
		stdio: shim.stdio,
	});
	started = child;
	child.on('error', (error) => {
		process.stderr.write(`ltocache: cannot run ${file}: ${error.message}\n`);
		process.exit(126);
	});
	child.on('exit', (code, signal) => {
		for (const s of FORWARDED) process.removeListener(s, forward);
		if (signal) {
			shim.diesOf(signal);
			process.kill(process.pid, signal);
			process.exit(128 + ((osConstants.signals as Record<string, number>)[signal] || 0));
		}
		process.exit(code === null ? 1 : code);
	});
}

const shell = restoreEnvironment(process.env);
const shim: Shim = {
	linking: false,
	fallBack: once(fallBack),
	decided: once(tellShell),
	diesOf: once(killShell),
	stdio: stdioFor(process.env),
};

/** SIGALRM to the shell that waits for this Node (bin/ld.lld's to_node): the link's outcome is Node's from here. */
function tellShell(): void {
	if (shell === undefined) return;
	try {
		process.kill(shell, 'SIGALRM');
	} catch {} // the shell is gone: no one to link twice
}

/** The linker's death signal to the shell that waits for this Node: one it passes on (INT, TERM...) it dies of after Node; any other at once. */
function killShell(signal: NodeJS.Signals): void {
	if (shell === undefined) return;
	try {
		process.kill(shell, signal);
	} catch {}
}

/** The last net: an error no stage caught. Before the linker starts, the link falls open; after, it is said and the linker's exit stands. */
function failed(error: unknown): void {
	const what = `unexpected ${error instanceof Error && error.stack ? error.stack.split('\n')[0] : String(error)}`;
	if (shim.linking) process.stderr.write(`ltocache: ${what}\n`);
	else shim.fallBack(what);
}

function once<A extends unknown[]>(f: (...args: A) => void): (...args: A) => void {
	let done = false;
	return (...args) => {
		if (!done) f(...args);
		done = true;
	};
}

// The shim's own words on stderr are never worth a link: a build that pipes
// stderr into `head` closes it, and an EPIPE said through the last net would
// be said again, failing again, forever (the link hung at full CPU).
process.stderr.on('error', () => {});
process.on('uncaughtException', failed);
process.on('unhandledRejection', failed);
try {
	start(shim);
} catch (error) {
	failed(error);
}
