// Shared test plumbing: real tools (clang, ld.lld), a recording stand-in
// linker, temporary trees, and ways to make a directory really unwritable
// (an unprivileged user, a read-only bind mount) even when tests run as root.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, execaSync, type Options } from 'execa';
import { afterAll, describe, it } from 'vitest';
import { realLinker, which } from '../../src/shared/pathsearch.js';

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const SHIM = path.join(repo, 'bin/ld.lld');
export const CLI = path.join(repo, 'bin/ltocache');
export const fixtures = path.join(repo, 'test/fixtures');

export const isRoot = process.getuid?.() === 0;
export const inCI = ['true', '1'].includes(process.env.CI ?? '');

/**
 * The LLVM under test. LTOCACHE_TEST_LLVM=19 puts /usr/lib/llvm-19/bin
 * (Debian's layout) first on PATH before anything here looks a tool up, so
 * clang, ld.lld and llvm-ar, in the tests and behind the shim, are version
 * 19's; test/each-llvm.js runs the linking tests so for every tested
 * version. Unset: whatever PATH finds.
 */
export const TEST_LLVM = process.env.LTOCACHE_TEST_LLVM || undefined;
if (TEST_LLVM !== undefined && !/^[1-9][0-9]*$/.test(TEST_LLVM))
	throw new Error(`LTOCACHE_TEST_LLVM=${TEST_LLVM} is not an LLVM major version (such as 19)`);
/** Where Debian installs LLVM version, major: clang, ld.lld, llvm-ar and the rest. */
export const llvmBin = (major: string | number) => `/usr/lib/llvm-${major}/bin`;
if (TEST_LLVM !== undefined) {
	const dir = llvmBin(TEST_LLVM);
	process.env.PATH = [dir, ...(process.env.PATH ?? '').split(':').filter((d) => d !== dir)].join(':');
}
/** The PATH a test builds from nothing (as nobody, `env -i`) gets beside its shims: the system's, the LLVM under test first. */
export const SYSTEM_PATH = `${TEST_LLVM === undefined ? '' : `${llvmBin(TEST_LLVM)}:`}/usr/bin:/bin`;

export const onPath = (name: string) => which(name, process.env.PATH ?? '');

/**
 * The real linker of that name, found the way a build without ltocache would:
 * the first on PATH that is no ltocache shim, so the suite means the same on
 * a machine where ltocache is installed in /usr/local/bin.
 */
export const realLd = (name = 'ld.lld') => realLinker(name, process.env.PATH ?? '');
/** The real ld.lld: the oracle, the reference links, the bug without the shim. */
export const LLD = realLd() ?? 'ld.lld';

/**
 * describe, or a skip with the reason when a prerequisite is missing. In CI
 * (CI=true) a missing prerequisite is a failing test, never a silent skip.
 */
export function describeIf(ok: boolean, needs: string): (name: string, body: () => void) => void {
	if (ok) return describe;
	if (inCI)
		return (name) =>
			describe(name, () =>
				it(`has ${needs}`, () => {
					throw new Error(`CI must run this suite, but it lacks ${needs}`);
				}),
			);
	return (name, body) => describe.skip(`${name} [skipped: needs ${needs}]`, body);
}

/**
 * clang, ld.lld and llvm-ar (archives are built as Kbuild builds them: GNU ar
 * loads whatever LLVMgold plugin the machine has, and LLVM >= 19's aborts on
 * bitcode that `.incbin`s a file it cannot find); with LTOCACHE_TEST_LLVM,
 * all three of that version.
 */
export const hasToolchain =
	TEST_LLVM === undefined
		? Boolean(onPath('clang') && realLd() && onPath('llvm-ar'))
		: ['clang', 'ld.lld', 'llvm-ar'].every((tool) => onPath(tool) === path.join(llvmBin(TEST_LLVM), tool)) && realLd() !== undefined;
/** What a describeIf(hasToolchain, ...) says it lacks. */
export const TOOLCHAIN = TEST_LLVM === undefined ? 'clang, ld.lld and llvm-ar' : `clang, ld.lld and llvm-ar in ${llvmBin(TEST_LLVM)}`;

/**
 * A fresh directory under one per-file root, world-readable so an
 * unprivileged user can reach it. The root is made on first use, so a file
 * whose tests are all skipped leaves nothing behind.
 */
export function scratchRoot(): (name?: string) => string {
	let root: string | undefined;
	afterAll(() => {
		if (root) fs.rmSync(root, { recursive: true, force: true });
	});
	let n = 0;
	return (name = 'd') => {
		if (root === undefined) {
			root = fs.mkdtempSync(path.join(os.tmpdir(), 'ltocache-test-'));
			fs.chmodSync(root, 0o755);
		}
		const dir = path.join(root, `${name}-${n++}`);
		fs.mkdirSync(dir, { mode: 0o755 });
		fs.chmodSync(dir, 0o755);
		return dir;
	};
}

/** Compile the two fixture sources to ThinLTO bitcode objects with the real clang. */
export function compileThin(dir: string, clang = 'clang'): string[] {
	const objects = ['a', 'b'].map((n) => path.join(dir, `${n}.o`));
	for (const [i, n] of ['a', 'b'].entries()) {
		execaSync(clang, ['-flto=thin', '-O2', '-c', path.join(fixtures, `${n}.c`), '-o', objects[i]]);
	}
	for (const o of objects) fs.chmodSync(o, 0o644);
	return objects;
}

/** The fixture objects, and what the real ld.lld links them into without any cache (-r): what every cached link must equal. */
export function uncachedReference(dir: string): { objects: string[]; reference: Buffer } {
	const objects = compileThin(dir);
	const out = path.join(dir, 'reference.o');
	execaSync(LLD, ['-r', '-o', out, ...objects]);
	return { objects, reference: fs.readFileSync(out) };
}

/** Build the recording stand-in linker into dir, one separate file under each of the given names. */
export function fakeLinker(dir: string, names = ['ld.lld', 'ld.lld-16']): string {
	const binary = path.join(dir, 'fake-ld');
	execaSync('clang', ['-O1', '-o', binary, path.join(fixtures, 'fake-ld.c')]);
	for (const name of names) fs.copyFileSync(binary, path.join(dir, name));
	for (const name of names) fs.chmodSync(path.join(dir, name), 0o755);
	return binary;
}

/**
 * A directory holding only `node`: the Node.js running the tests, behind a
 * wrapper that appends a line to $NODE_RAN (when set) each time it starts,
 * so a test can count how many Node processes a link took.
 */
export function nodeOnlyDir(dir: string): string {
	fs.writeFileSync(path.join(dir, 'node'), `#!/bin/sh\n[ -z "$NODE_RAN" ] || echo >>"$NODE_RAN"\nexec '${process.execPath}' "$@"\n`, {
		mode: 0o755,
	});
	return dir;
}

/** How many times Node started with NODE_RAN=file (see nodeOnlyDir). */
export const nodeRuns = (file: string) => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').length : 0);

/** A directory of symlinks to the shim, the way `ltocache install` lays them out. */
export function shimDir(dir: string, shim = SHIM, names = ['ld.lld', 'ld.lld-16']): string {
	for (const name of names) fs.symlinkSync(shim, path.join(dir, name));
	return dir;
}

/**
 * A copy of the built package an unprivileged user can read (the checkout
 * may sit under a directory only root can enter), like an installed one.
 */
export function stagedShim(dir: string): string {
	for (const part of ['package.json', 'bin', 'dist', ...runtimeModules()]) {
		fs.cpSync(path.join(repo, part), path.join(dir, part), { recursive: true });
	}
	execaSync('chmod', ['-R', 'a+rX', dir]);
	return path.join(dir, 'bin/ld.lld');
}

let runtime: string[] | undefined;
/** node_modules/* that the package needs at run time (its dependencies, not the test tools). */
function runtimeModules(): string[] {
	runtime ??= execaSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: repo, reject: false })
		.stdout.split('\n')
		.map((line) => path.relative(repo, line))
		.filter((rel) => rel.startsWith('node_modules/') && !rel.slice('node_modules/'.length).includes('/node_modules/'));
	return runtime;
}

export const NOBODY = 65534;

/**
 * For a test that builds its environment from nothing: the machine's
 * configuration file (/etc/ltocache.conf) kept out, as vitest's own
 * environment keeps it out of the rest. The user's file needs HOME or
 * XDG_CONFIG_HOME, which such a test sets only when it means to.
 */
export const NO_CONFIG = { LTOCACHE_SYSTEM_CONFIG: '/nonexistent/ltocache.conf' };

/**
 * Run a command as the unprivileged user nobody with exactly the given
 * environment (plus LTOCACHE_AUTO_PRUNE=0 unless given: a detached prune
 * outliving the test would race the removal of its scratch directory; and
 * NO_CONFIG).
 */
export function asNobody(command: string, args: string[], env: Record<string, string>, options: Options = {}) {
	const pairs = Object.entries({ LTOCACHE_AUTO_PRUNE: '0', ...NO_CONFIG, ...env }).map(([k, v]) => `${k}=${v}`);
	return execa('runuser', ['-u', 'nobody', '--', 'env', '-i', ...pairs, command, ...args], { reject: false, ...options });
}

/** Run a command (as root) with dir mounted read-only in a private mount namespace. */
export function withReadOnly(dir: string, command: string, args: string[], options: Options = {}) {
	return execa('unshare', ['-m', 'sh', '-c', 'mount --bind -o ro "$0" "$0" && exec "$@"', dir, command, ...args], {
		reject: false,
		...options,
	});
}

/** The cache entries lld wrote into a directory. */
export function entries(dir: string): string[] {
	try {
		return fs
			.readdirSync(dir)
			.filter((f) => f.startsWith('llvmcache-') && f !== 'llvmcache.timestamp')
			.sort();
	} catch {
		return [];
	}
}

/**
 * Each entry of a cache directory with its inode and mtime: lld writes an
 * entry to a temporary file and renames it in, so an entry written again
 * (a miss) changes here even when its name and content do not.
 */
export function identities(dir: string): string[] {
	return entries(dir).map((name) => {
		const st = fs.statSync(path.join(dir, name));
		return `${name} ${st.ino} ${st.mtimeMs}`;
	});
}

/** Every llvmcache entry anywhere below dir, as paths relative to it. */
export function entriesBelow(dir: string): string[] {
	if (!fs.existsSync(dir)) return [];
	return (fs.readdirSync(dir, { recursive: true }) as string[])
		.filter((f) => path.basename(f).startsWith('llvmcache-') && path.basename(f) !== 'llvmcache.timestamp')
		.sort();
}

/** The file that ran, as the stand-in linker recorded it (its /proc/self/exe). */
export const ranFile = (record: string) => fs.readFileSync(`${record}.exe`, 'utf8').replace(/\0$/, '');

/** The process id the stand-in linker ran as: the shim's own when the shim exec-ed it. */
export const ranAsPid = (record: string) => Number(fs.readFileSync(`${record}.pid`, 'utf8'));

/** The environment the stand-in linker recorded, as name=value strings. */
export const recordedEnv = (record: string) => recorded(`${record}.env`).map(String);

/** The NUL-separated argv a fake linker recorded. */
export function recorded(file: string): Buffer[] {
	const data = fs.readFileSync(file);
	const out: Buffer[] = [];
	let start = 0;
	for (let i = 0; i < data.length; i++) {
		if (data[i] === 0) {
			out.push(data.subarray(start, i));
			start = i + 1;
		}
	}
	return out;
}
