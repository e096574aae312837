// The on-disk protocol of one cache directory, owned here and nowhere else:
// the shim claims a directory before each link it redirects, the manager
// reads, counts and removes. Nothing outside this file spells these names.
//
//   <root>/<release>/<key>/llvmcache-<40 hex>        lld's entries
//                         /llvmcache.timestamp       LLVM's prune-interval marker
//                         /Thin-*.tmp.o              an entry lld is writing right now
//                         /ltocache.json             what the directory stands for;
//                                                    its mtime is the last link's start
//                         /ltocache.json.<tag>.tmp   that metadata being written
//                         /ltocache.counts           one line per link: modules, entries written
//                                                    (src/shared/counters.ts)
//                         /ltocache.counts.<tag>.tmp those lines being compacted by prune
//                         /ltocache.embed-<hash>     which modules' asm names which .incbin file,
//                                                    one file for each distinct answer (src/shim/seed.ts)
//                         /ltocache.remote           with a remote: where its entries are there
//                                                    (src/shim/remote.ts)
//                         /ltocache.remote.<tag>.tmp that record being written
//   <root>/<release>/<key>.seed-<tag>.tmp            a directory being filled from a sibling's entries,
//                                                    renamed to <key> when done
//
// <tag> is the writer's pid, a token of its own and a count (uniqueTag in
// src/shared/root.ts); names from before it carry the pid alone.
//
// bin/ld.lld, in sh, relies on one name too: a directory holding
// llvmcache.timestamp is one lld has linked into before.
//
// On the shim's hot path: node built-ins only.
import {
	closeSync,
	constants,
	fchmodSync,
	fstatSync,
	ftruncateSync,
	futimesSync,
	lstatSync,
	mkdirSync,
	openSync,
	readdirSync,
	renameSync,
	rmdirSync,
	rmSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { openOwnFile, readOwnFile, tempName, UNIQUE_TAG_PATTERN, uniqueTag, writeOwnFile, writeTag } from './root.js';

export const META_FILE = 'ltocache.json';
export const COUNTS_FILE = 'ltocache.counts';
export const REMOTE_FILE = 'ltocache.remote';
/** The last manifest of this directory's links the remote is known to hold as it is (src/shim/remote.ts). */
export const KNOWN_FILE = 'ltocache.manifest';
const ENTRY_PREFIX = 'llvmcache-';
const TIMESTAMP_FILE = 'llvmcache.timestamp';
export const EMBED_PREFIX = 'ltocache.embed-';
/** The release directory used when a link cannot be tied to a kernel. */
export const NO_KERNEL = '_no-kernel';

export type Metadata = {
	version: 1;
	release: string;
	/** The external module directory (KBUILD_EXTMOD or M), if the link had one. */
	extmod?: string;
	/** The cache directory the linker was asked to use, made absolute; in add mode, the link's working directory. */
	original: string;
	/** Set when LTOCACHE_MODE=add gave a link without a cache this directory. */
	added?: true;
	/** The files pulled in with .incbin or .include whose contents are part of this directory's name. */
	incbin?: string[];
	/** For each of incbin: a short hash of its name (as bytes) and contents. */
	sums?: string[];
};

/**
 * What a regular file in a key directory is. Only entries are ever evicted;
 * temporaries belong to a running link (lld's Thin-* or our metadata being
 * written) until they are stale; bookkeeping goes only with its directory;
 * anything else is foreign and stays.
 */
export type FileKind = 'entry' | 'meta' | 'bookkeeping' | 'temp' | 'foreign';

/** An entry's name without the prefix every entry shares: its key, as lld hashed it. */
export const entryKey = (name: string) => name.slice(ENTRY_PREFIX.length);

export function classify(name: string): FileKind {
	if (name.startsWith(ENTRY_PREFIX)) return 'entry';
	if (name === META_FILE) return 'meta';
	if (
		name.startsWith('Thin-') ||
		([META_FILE, COUNTS_FILE, REMOTE_FILE, KNOWN_FILE, EMBED_PREFIX].some((n) => name.startsWith(n)) && name.endsWith('.tmp'))
	)
		return 'temp';
	if (name === TIMESTAMP_FILE || name === COUNTS_FILE || name === REMOTE_FILE || name === KNOWN_FILE || name.startsWith(EMBED_PREFIX))
		return 'bookkeeping';
	return 'foreign';
}

/**
 * Make the directory (0700; 2770 in a root a group shares) and mark it in
 * use: the metadata is written the first time and touched on every later
 * link, so the manager can tell a directory in use from an idle one. A root
 * this creates is tagged as ltocache's (src/shared/root.ts); one that exists
 * costs nothing more. Returns why the directory cannot take a link's
 * entries, or undefined if it can.
 * @param root the cache root dir is under
 */
export function claim(dir: string, meta: Metadata, shared = false, root?: string): string | undefined {
	const planted = shared && root !== undefined ? notADirectory(root, dir) : undefined;
	if (planted) return planted;
	try {
		// The first directory made, if any: the root among them when it is no longer than the root.
		const made = mkdirSync(dir, { recursive: true, mode: shared ? 0o2770 : 0o700 });
		if (made !== undefined && root !== undefined && made.length <= root.length) writeTag(root);
		// The umask may have taken the group's bits; whoever made a directory may give them back.
		if (shared) for (const d of [dirname(dir), dir]) tryChmod(d, 0o2770, true);
	} catch (error) {
		return `cannot create ${dir} (${errorCode(error)})`;
	}
	const file = join(dir, META_FILE);
	if (touch(file)) return undefined;
	const tmp = tempName(file);
	try {
		writeOwnFile(tmp, `${JSON.stringify(meta)}\n`, shared ? 0o660 : 0o600);
		renameSync(tmp, file);
	} catch (error) {
		rmSync(tmp, { force: true });
		// The metadata is only for display, but a disk that cannot take it cannot take lld's entries either.
		if (['ENOSPC', 'EDQUOT', 'EIO', 'EROFS'].includes(errorCode(error))) return `cannot write in ${dir} (${errorCode(error)})`;
	}
	return undefined;
}

/**
 * Set a file's mtime to now, never through a symlink (another member's, in a
 * shared root, would have a root-run link set the times of where it points).
 * futimes with a time needs the file's owner; in a shared root another
 * member's metadata is touched by truncating it to its own length, which
 * needs only write permission and changes nothing else.
 */
function touch(file: string): boolean {
	const now = new Date();
	for (const flags of [constants.O_RDONLY, constants.O_WRONLY]) {
		let fd: number | undefined;
		try {
			fd = openOwnFile(file, flags);
			if (flags === constants.O_RDONLY) futimesSync(fd, now, now);
			else ftruncateSync(fd, fstatSync(fd).size);
			return true;
		} catch (error) {
			if (errorCode(error) !== 'EPERM') return false;
		} finally {
			if (fd !== undefined) closeSync(fd);
		}
	}
	return false;
}

/**
 * chmod, never through a symlink: what lstat showed a member of a shared
 * root may have swapped for a symlink since, and a root-run link would
 * chmod where it leads. O_PATH is not enough (fchmod refuses it).
 */
function tryChmod(file: string, mode: number, directory = false): void {
	let fd: number | undefined;
	try {
		fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | (directory ? constants.O_DIRECTORY : 0));
		if (directory || fstatSync(fd).isFile()) fchmodSync(fd, mode);
	} catch {
		// not ours: its owner made it right
	} finally {
		if (fd !== undefined) closeSync(fd);
	}
}

/**
 * Why dir cannot be a module directory of root's: another member of a
 * shared root may put a symlink (or a file) where a release or module
 * directory goes, and a link run by root would then make the directory
 * where it leads, chmod that, and have lld write its entries there.
 * Undefined when each is a real directory or not there yet.
 */
export function notADirectory(root: string, dir: string): string | undefined {
	for (let d = dir; d.length > root.length && d.startsWith(`${root}/`); d = dirname(d)) {
		const st = lstatSync(d, { throwIfNoEntry: false });
		if (st && !st.isDirectory()) return `${d} is not a directory (${st.isSymbolicLink() ? 'a symlink' : 'another kind of file'})`;
	}
	return undefined;
}

/**
 * After a link in a shared root: lld writes every entry 0600 whatever the
 * umask, so the entries this user owns are made readable by the group, and
 * LLVM's timestamp writable, or no other member could reuse or refresh them.
 */
export function shareEntries(dir: string): void {
	const uid = process.getuid?.();
	for (const name of readdirSync(dir)) {
		const file = join(dir, name);
		const st = lstatSync(file, { throwIfNoEntry: false });
		if (!st?.isFile() || st.uid !== uid) continue;
		const kind = classify(name);
		if (kind === 'entry' && (st.mode & 0o040) === 0) tryChmod(file, 0o640);
		else if (kind === 'bookkeeping' && (st.mode & 0o060) !== 0o060) tryChmod(file, 0o660);
	}
}

/**
 * How long a link may be in flight: a temporary file older than this
 * belongs to a link that died, and a directory claimed more recently than
 * this may have a link running in it.
 */
export const IN_FLIGHT_MS = 3600_000;

/** When a link last claimed the directory, looked up now (not from an earlier scan). */
export function lastClaim(dir: string): number | undefined {
	return lstatSync(join(dir, META_FILE), { throwIfNoEntry: false })?.mtimeMs ?? lstatSync(dir, { throwIfNoEntry: false })?.mtimeMs;
}

/** Far above any metadata ltocache writes (a few KiB, the .incbin files' names and sums). */
const MAX_META_BYTES = 1024 * 1024;

const isStrings = (value: unknown) => Array.isArray(value) && value.every((v) => typeof v === 'string');

/**
 * A directory's metadata, or undefined when it is not as ltocache writes it: in a shared root another
 * member may write any JSON there, and a field of another type (an extmod that is an object) would
 * throw wherever it is used as text, in every stats of the root.
 */
export function readMeta(dir: string): Metadata | undefined {
	try {
		const meta = JSON.parse(readOwnFile(join(dir, META_FILE), MAX_META_BYTES)?.data.toString('utf8') ?? '') as Metadata;
		if (typeof meta !== 'object' || meta === null || typeof meta.original !== 'string') return undefined;
		const optional = (value: unknown, ok: boolean) => value === undefined || ok;
		return optional(meta.release, typeof meta.release === 'string') &&
			optional(meta.extmod, typeof meta.extmod === 'string') &&
			optional(meta.added, meta.added === true) &&
			optional(meta.incbin, isStrings(meta.incbin)) &&
			optional(meta.sums, isStrings(meta.sums))
			? meta
			: undefined;
	} catch {
		return undefined;
	}
}

/**
 * Remove a directory that holds nothing but bookkeeping. Only rmdir, which
 * refuses a directory a link has written to meanwhile; returns whether it went.
 * @param back given when the process is in it (see enterDir in src/cli/scan.ts): its files are removed by bare
 * name, then the process goes back there, or its working directory would be gone
 */
export function removeKeyDir(dir: string, back?: string): boolean {
	const here = back === undefined ? dir : '.';
	for (const name of [TIMESTAMP_FILE, COUNTS_FILE, REMOTE_FILE, KNOWN_FILE, META_FILE]) rmSync(join(here, name), { force: true });
	try {
		for (const name of readdirSync(here)) if (name.startsWith(EMBED_PREFIX)) rmSync(join(here, name), { force: true });
	} catch {} // gone already, or unreadable: rmdir says
	if (back !== undefined) process.chdir(back);
	return removeDir(dir);
}

/** Where a link builds a module directory from a sibling's entries before renaming it into place. */
export const seedTemp = (dir: string) => `${dir}.seed-${uniqueTag()}.tmp`;

/** Whether a name in a release directory is such a directory being built (or left by a link that died). */
const SEED_TEMP = new RegExp(`\\.seed-${UNIQUE_TAG_PATTERN}\\.tmp$`);
export const isSeedTemp = (name: string) => SEED_TEMP.test(name);

/** Remove what links that died while seeding left in a release directory: no link is in flight that long. */
export function removeStaleSeeds(release: string, now = Date.now()): void {
	for (const name of readdirSync(release)) {
		if (!isSeedTemp(name)) continue;
		const st = lstatSync(join(release, name), { throwIfNoEntry: false });
		if (!st?.isDirectory() || now - st.mtimeMs <= IN_FLIGHT_MS) continue;
		try {
			rmSync(join(release, name), { recursive: true, force: true });
		} catch {} // another user's, in a shared root: theirs to prune; the others still go
	}
}

/** The key directories beside dir that differ from it only in their .incbin variant. */
export function incbinSiblings(dir: string): string[] {
	const name = dir.slice(dir.lastIndexOf('/') + 1);
	const at = name.lastIndexOf(INCBIN_MARK);
	if (at < 0) return [];
	const prefix = name.slice(0, at + INCBIN_MARK.length);
	const release = dirname(dir);
	return readdirSync(release)
		.filter((n) => n !== name && n.startsWith(prefix) && /^[0-9a-f]+$/.test(n.slice(prefix.length)))
		.map((n) => join(release, n))
		.filter((d) => lstatSync(d, { throwIfNoEntry: false })?.isDirectory()); // a symlink leads out of the root
}

/** rmdir that answers false for a directory that is not empty or already gone. */
export function removeDir(dir: string): boolean {
	try {
		rmdirSync(dir);
		return true;
	} catch (error) {
		if (['ENOTEMPTY', 'EEXIST', 'ENOENT'].includes(errorCode(error))) return false;
		throw error;
	}
}

/** An error's errno name (ENOENT, EACCES, ...), or the error itself as text. */
export const errorCode = (error: unknown) => (error as NodeJS.ErrnoException).code ?? String(error);

// node:crypto adds ~3 ms to every link (measured with hyperfine against
// `node -e 0`); 64-bit FNV-1a is plenty to tell cache directories apart.
export function shortHash(bytes: Buffer): string {
	let hash = 0xcbf29ce484222325n;
	for (const byte of bytes) {
		hash = BigInt.asUintN(64, (hash ^ BigInt(byte)) * 0x100000001b3n);
	}
	return hash.toString(16).padStart(16, '0').slice(0, 12);
}

function slug(text: string, max: number): string {
	const s = text.replace(/[^A-Za-z0-9._+-]+/g, '-').replace(/^[-.]+|-+$/g, '');
	return s.length > max ? s.slice(s.length - max).replace(/^[-.]+/, '') : s;
}

/**
 * The directory name for one external module (or one original cache path),
 * given as bytes (latin1): a readable tail of the path plus a hash of its
 * bytes, so two modules never share and the same module always lands in the
 * same place.
 */
export function keyName(absolutePath: string): string {
	const bytes = Buffer.from(absolutePath, 'latin1');
	const readable = slug(bytes.toString('utf8'), 48);
	return `${readable || 'root'}-${shortHash(bytes)}`;
}

const OPTIONS_MARK = '+opt-';
const INCBIN_MARK = '+incbin-';

/**
 * The directory for one module's links with given code-generation options
 * (src/shim/codegen.ts) and files pulled in with .incbin (src/shim/incbin.ts):
 * the module's name plus a hash of each, so other options or new contents
 * mean another directory.
 */
export function keyVariant(name: string, variant: { options?: string; incbin?: string }): string {
	return `${name}${variant.options ? OPTIONS_MARK + variant.options : ''}${variant.incbin ? INCBIN_MARK + variant.incbin : ''}`;
}

/** Whether a directory's name is one keyName and keyVariant make: with its metadata lost, such a directory is still ltocache's. */
export const isKeyName = (name: string) => /^[A-Za-z0-9._+-]*-[0-9a-f]{12}(?:\+(?:opt|incbin)-[0-9a-f]+)*$/.test(name);

/** The module's own key name, without the variant a link's options or .incbin files add. */
export const baseKeyName = (name: string) => name.split(/\+(?:opt|incbin)-(?=[0-9a-f]+(?:\+|$))/)[0];

/** Whether a directory is the variant of a module for files pulled in with .incbin. */
export const isIncbinVariant = (name: string) => name.includes(INCBIN_MARK);

/** Whether a directory is the variant of a module for links with code-generation options of their own. */
export const isOptionsVariant = (name: string) => name.includes(OPTIONS_MARK);

/**
 * After a link whose .incbin files or option files changed while lld ran, or
 * that failed: remove every entry written since the link claimed its
 * directory, since any of them may hold what the old name does not stand
 * for. A link seeding an .incbin sibling meanwhile (src/shim/seed.ts) may
 * have carried them: the same names there go too when they are the same
 * file (a hard link) or were written since (a copy). Removing from dir
 * first, then from the siblings, while a seeding renames first and then
 * checks its sources, leaves no order in which one is kept. Returns how
 * many went from dir.
 */
export function removeEntriesSince(dir: string, since: number): number {
	const gone = new Map<string, number>();
	for (const name of readdirSync(dir)) {
		if (classify(name) !== 'entry') continue;
		const file = join(dir, name);
		const st = lstatSync(file, { throwIfNoEntry: false });
		if (!st?.isFile() || st.mtimeMs < since) continue;
		rmSync(file, { force: true });
		gone.set(name, st.ino);
	}
	if (gone.size === 0) return 0;
	for (const sibling of incbinSiblings(dir)) {
		for (const [name, ino] of gone) {
			const file = join(sibling, name);
			const st = lstatSync(file, { throwIfNoEntry: false });
			if (st?.isFile() && (st.ino === ino || st.mtimeMs >= since)) rmSync(file, { force: true });
		}
	}
	return gone.size;
}

/** A kernel release made safe as one path component; ordinary releases pass unchanged. */
export function releaseName(release: string): string {
	if (release === NO_KERNEL || /^[A-Za-z0-9][A-Za-z0-9._+~-]{0,127}$/.test(release)) return release;
	return `${slug(release, 48) || 'release'}-${shortHash(Buffer.from(release))}`;
}
