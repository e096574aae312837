// Where caches live: the cache root, the rule that makes a directory usable,
// and the kernels installed on this machine.
//
// On the shim's hot path: node built-ins and xdg-basedir only (importing
// xdg-basedir costs nothing measurable).
import {
	accessSync,
	closeSync,
	constants,
	existsSync,
	fchmodSync,
	fstatSync,
	lstatSync,
	mkdirSync,
	openSync,
	readSync,
	rmSync,
	statSync,
	writeFileSync,
} from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { xdgCache } from 'xdg-basedir';
import { type Bytes, bytesToBuffer, toBytes } from './bytes.js';

/** The lock prune and clear take, a directory under the root. */
export const LOCK_NAME = 'ltocache.lock';
/** A dead holder's lock, renamed aside to be removed (src/cli/lock.ts); it stays where its owner file is not this user's to remove. */
export const DEAD_LOCK_PREFIX = `${LOCK_NAME}.dead-`;
/** Touched when the shim starts the daily prune. */
export const PRUNE_STAMP = 'ltocache.last-prune';
/** What stats last counted in each key directory (src/cli/scan.ts). */
export const SUMMARY_NAME = 'ltocache.summary.json';
/**
 * What makes a directory a cache root of ltocache's: a cache directory tag
 * (https://bford.info/cachedir/), so backup tools skip it, whose comment
 * names ltocache, so another tool's tagged cache (ccache's) is not taken for
 * one. Written when a root is created; the manager refuses to count or
 * delete in a directory the user named that lacks it (src/cli/settings.ts).
 */
export const TAG_NAME = 'CACHEDIR.TAG';
const TAG_SIGNATURE = 'Signature: 8a477f597d28d172789f06886806bc55';
const TAG_TEXT = `${TAG_SIGNATURE}\n# This file is a cache directory tag created by ltocache.\n# For information about cache directory tags, see https://bford.info/cachedir/\n`;

/**
 * What tells this process's temporary names from every other's: its pid, a
 * random token drawn once, and a count of the names it made. The pid alone
 * is not enough: processes in different PID namespaces (containers
 * bind-mounting one cache, a common CI setup) can share a root and a pid,
 * and writeOwnFile, which removes whatever is at the name first, would then
 * remove the other's half-written file and rename its own name onto the
 * other's half. Math.random, seeded by V8 from the system's entropy in every
 * process, is enough for a token; node:crypto would cost every link its load.
 */
export function uniqueTag(): string {
	token ??= Math.random().toString(36).slice(2, 10).padEnd(8, '0');
	return `${process.pid}-${token}-${++made}`;
}
let token: string | undefined;
let made = 0;

/** Where to write a file before renaming it onto file: beside it, named as nothing else's (see uniqueTag). */
export const tempName = (file: string) => `${file}.${uniqueTag()}.tmp`;

/** What uniqueTag makes, as a pattern (without anchors); also the bare pid, which names made before it carry. */
export const UNIQUE_TAG_PATTERN = '\\d+(?:-[0-9a-z]{8}-\\d+)?';

/**
 * Write one of ltocache's own files in a root afresh, with exactly mode:
 * created exclusively, and if something is at the name, that goes first
 * and the file is created exclusively again, so a symlink another member
 * of a shared root put there is never written through (a link run by root
 * would write, or chmod, where it points). Removing only on EEXIST: a
 * fresh machine's download creates 500 entries, and a removal before each
 * was a fifth of it. Throws as writeFileSync does.
 */
export function writeOwnFile(file: string, data: string | Buffer, mode = 0o600): void {
	let fd: number;
	try {
		fd = openSync(file, 'wx', mode);
	} catch (error) {
		if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
		rmSync(file, { force: true });
		fd = openSync(file, 'wx', mode);
	}
	try {
		fchmodSync(fd, mode);
		writeFileSync(fd, data);
	} finally {
		closeSync(fd);
	}
}

/** Tag a root as ltocache's; best effort (a root that cannot take it is told apart by its layout). */
export function writeTag(root: string): boolean {
	try {
		writeOwnFile(join(root, TAG_NAME), TAG_TEXT, 0o644);
		return true;
	} catch {
		return false;
	}
}

/** Whose cache directory tag a root carries: ltocache's, another tool's, or none. */
export function tagOf(root: string): 'ours' | 'theirs' | undefined {
	const text = readOwnFile(join(root, TAG_NAME), 64 * 1024)?.data.toString('latin1') ?? '';
	if (!text.startsWith(TAG_SIGNATURE)) return undefined;
	return text.includes('created by ltocache') ? 'ours' : 'theirs';
}

// Also at the root: ltocache.inputs/, what the shim remembers of each link's inputs (src/shared/memo.ts).
// And ltocache.linkers.json, what each real linker is by content, for a remote's namespace (src/shim/remote.ts),
// written aside as ltocache.linkers.json.<tag>.tmp.
export const LINKERS_NAME = 'ltocache.linkers.json';
// And ltocache.mismatch.<time>.<tag>.txt, a verified link's report of a cached output that differed (src/shim/verify.ts).
export const MISMATCH_PREFIX = 'ltocache.mismatch.';
// And ltocache.remote-down.<hash of the URL>, the marker of a remote the links of the next minute skip (src/shim/remote.ts).
export const REMOTE_DOWN_PREFIX = 'ltocache.remote-down.';
// Everything else at the root is a kernel release (src/shared/keydir.ts has the map below it).

/** A place the root may come from, in the order they are tried. */
export type Candidate = {
	/** What chose it: a variable the user set (LTOCACHE_DIR, XDG_CACHE_HOME), or HOME for the XDG default. */
	variable: 'LTOCACHE_DIR' | 'XDG_CACHE_HOME' | 'HOME';
	/** The variable's value, as set. */
	value: string;
	root: string;
};

/**
 * Cache roots to try, in order: $LTOCACHE_DIR, then $XDG_CACHE_HOME/ltocache
 * (xdg-basedir's ~/.cache when it is unset). A relative value is kept as
 * given: it names a different place in every directory a build links in,
 * so it is refused (see problemWith), never resolved against the cwd.
 */
export function rootCandidates(env: NodeJS.ProcessEnv = process.env): Candidate[] {
	const roots: Candidate[] = [];
	if (env.LTOCACHE_DIR) roots.push({ variable: 'LTOCACHE_DIR', value: env.LTOCACHE_DIR, root: env.LTOCACHE_DIR });
	if (env.XDG_CACHE_HOME) {
		roots.push({ variable: 'XDG_CACHE_HOME', value: env.XDG_CACHE_HOME, root: join(env.XDG_CACHE_HOME, 'ltocache') });
	} else if (xdgCache) {
		roots.push({ variable: 'HOME', value: env.HOME ?? '', root: join(xdgCache, 'ltocache') });
	}
	return roots;
}

/** Why a candidate cannot be the root (an errno code, or words), or undefined if it can. */
export function problemWith(candidate: Candidate): string | undefined {
	if (!isAbsolute(candidate.root)) return 'not an absolute path';
	return unusableReason(toBytes(candidate.root));
}

export type RootChoice = {
	/** The root to use, or undefined if there is no safe one. */
	root?: string;
	/** What chose it; 'fallback' for /var/tmp/ltocache-<uid>. */
	from: Candidate['variable'] | 'fallback';
	/** The candidates passed over, and why: one the user set is worth saying. */
	skipped: (Candidate & { problem: string })[];
};

/**
 * The cache root to use, what chose it, and what was passed over on the way.
 * The shim creates the fallback; the manager (create = false) only looks at it.
 */
export function chooseRoot(env: NodeJS.ProcessEnv = process.env, create = true): RootChoice {
	const skipped: RootChoice['skipped'] = [];
	for (const candidate of rootCandidates(env)) {
		const problem = problemWith(candidate);
		if (problem === undefined) return { root: resolve(candidate.root), from: candidate.variable, skipped };
		skipped.push({ ...candidate, problem });
	}
	const fallback = fallbackRoot();
	return { root: ensurePrivateDir(fallback, create) ? fallback : undefined, from: 'fallback', skipped };
}

/** The variable the user set whose root could not be used, if one was passed over. */
export const skippedSetting = (choice: RootChoice) => choice.skipped.find((s) => s.variable !== 'HOME');

/** One line on a root passed over: the variable, its value, the path and why. */
export function describeSkipped(s: RootChoice['skipped'][number]): string {
	const path = s.root === s.value ? '' : ` (${s.root})`;
	return `${s.variable}=${s.value}${path} is not usable: ${s.problem}`;
}

/**
 * Whether the root is one a group shares: $LTOCACHE_DIR itself (never a
 * root chosen implicitly), setgid and writable by its group. What the shim
 * creates in it is then made usable by every member (see keydir's claim).
 */
export function isShared(root: string, env: NodeJS.ProcessEnv = process.env): boolean {
	if (!env.LTOCACHE_DIR || !isAbsolute(env.LTOCACHE_DIR) || resolve(env.LTOCACHE_DIR) !== root) return false;
	try {
		const { mode } = statSync(root);
		return (mode & 0o2000) !== 0 && (mode & 0o070) === 0o070;
	} catch {
		return false;
	}
}

/** Where installed kernels keep their modules (and build trees): $LTOCACHE_MODULES (colon-separated) or the usual two. */
export function modulesDirs(env: NodeJS.ProcessEnv = process.env): string[] {
	return env.LTOCACHE_MODULES ? env.LTOCACHE_MODULES.split(':').filter(Boolean) : ['/lib/modules', '/usr/lib/modules'];
}

/** Whether a kernel release has modules installed on this machine. */
export function isInstalled(release: string, env: NodeJS.ProcessEnv = process.env): boolean {
	return modulesDirs(env).some((base) => existsSync(join(base, release)));
}

/** The last resort when no configured root is usable; trusted only if private (see ensurePrivateDir). */
export function fallbackRoot(uid = process.getuid?.() ?? 0): string {
	return `/var/tmp/ltocache-${uid}`;
}

/**
 * Whether a directory can be used as (or created as) a cache directory.
 * Returns undefined if usable, or the error code that makes it unusable.
 * access(W_OK) is what the linker will meet: it fails with EROFS on a
 * read-only mount and EACCES for a user, but succeeds for root on mode 0555.
 */
export function unusableReason(dir: Bytes): string | undefined {
	let probe = dir;
	for (;;) {
		const file = bytesToBuffer(probe);
		try {
			if (!statSync(file).isDirectory()) return 'ENOTDIR';
			accessSync(file, constants.W_OK | constants.X_OK);
			return undefined;
		} catch (error) {
			const code = (error as NodeJS.ErrnoException).code ?? 'EIO';
			if (code !== 'ENOENT') return code;
		}
		// A missing directory is fine if lld can create it: look at the parent.
		const parent = dirname(probe);
		if (parent.length === probe.length) return 'ENOENT';
		probe = parent;
	}
}

/**
 * Create (if needed) a 0700 directory and accept it only if it is a real
 * directory, owned by us, with no group or other access: /var/tmp is shared,
 * so anyone could have planted a symlink or an open directory there first.
 */
export function ensurePrivateDir(dir: string, create = true): boolean {
	try {
		if (create) {
			mkdirSync(dir, { mode: 0o700 });
			writeTag(dir);
		}
	} catch (error) {
		if ((error as NodeJS.ErrnoException).code !== 'EEXIST') return false;
	}
	try {
		const st = lstatSync(dir);
		return st.isDirectory() && st.uid === process.getuid?.() && (st.mode & 0o077) === 0 && unusableReason(toBytes(dir)) === undefined;
	} catch {
		return false;
	}
}

/**
 * Open one of ltocache's own files in a root (flags as openSync's, numeric):
 * never through a symlink and never blocking, and only a regular file. In a
 * shared root another member may put a FIFO, a device or a symlink under the
 * name: a FIFO would hang every link, /dev/zero fill its memory, a symlink
 * have a root-run link write where it points. Throws otherwise.
 */
export function openOwnFile(file: string, flags: number, mode = 0o600): number {
	const fd = openSync(file, flags | constants.O_NOFOLLOW | constants.O_NONBLOCK, mode);
	if (fstatSync(fd).isFile()) return fd;
	closeSync(fd);
	throw Object.assign(new Error(`${file} is not a regular file`), { code: 'EFTYPE' });
}

/** One of ltocache's own files (see openOwnFile): its bytes if it is a regular file of at most max bytes, else undefined. mtimeMs: when it last changed. */
export function readOwnFile(file: string, max: number): { data: Buffer; mtimeMs: number } | undefined {
	let fd: number | undefined;
	try {
		fd = openOwnFile(file, constants.O_RDONLY);
		return readOwnFd(fd, max);
	} catch {
		return undefined;
	} finally {
		if (fd !== undefined) closeSync(fd);
	}
}

/** What readOwnFile gives, from a descriptor openOwnFile opened; throws as readSync does. */
export function readOwnFd(fd: number, max: number): { data: Buffer; mtimeMs: number } | undefined {
	const st = fstatSync(fd);
	if (st.size > max) return undefined;
	const data = Buffer.alloc(st.size);
	let done = 0;
	for (let n = 1; n > 0 && done < data.length; done += n) n = readSync(fd, data, done, data.length - done, done);
	return { data: data.subarray(0, done), mtimeMs: st.mtimeMs };
}
