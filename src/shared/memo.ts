// The inputs memo: what the shim learned from a link's bitcode inputs
// (their ThinLTO modules and asm strings), kept under the cache root so that
// a relink reads again only the inputs that changed. A whole kernel relinks
// hundreds of unchanged objects; reading their bitcode would be most of what
// the shim costs there.
//
//   <root>/ltocache.inputs/<hash of cwd and argv>   one link's inputs, JSON:
//                                                  { v, files: { <path>: { id, modules, asm } } }
//   <root>/ltocache.inputs/<...>.<tag>.tmp         one being written
//
// One file a link (a kernel's vmlinux.o, a module's prelink), read once and
// written back only when something was read anew: a link stats its inputs
// instead of opening them.
//
// The memo may only save work, never change an answer. A fact holds while
// the file's identity is what it was when it was read: device, inode, size,
// and mtime and ctime in nanoseconds (ctime moves on every write and cannot
// be set back). That holds only where the kernel keeps ctime: the local file
// systems below, told by statfs's f_type, once per device. Elsewhere ctime
// may be mtime or a server's (sshfs and other FUSE file systems, vfat and
// exFAT, NFS and SMB clients), so a file rewritten with its times restored
// (cp -p, rsync -t, tar, touch -r) looks unchanged: there, inputs are read
// on every link and never remembered. A file changed within two seconds of
// the memo's writing is not remembered: file times tick coarsely, so a
// second write in the same tick could keep them (git's "racily clean" rule). Anything else that is
// off (another format, a torn or foreign file) means the inputs are read
// again. Writes go to a temporary file renamed in, so parallel links never
// see half a memo; the last writer wins.
//
// On the shim's hot path: node built-ins only.
import type { BigIntStats } from 'node:fs';
import {
	closeSync,
	fstatSync,
	lstatSync,
	mkdirSync,
	openSync,
	readdirSync,
	renameSync,
	rmSync,
	statfsSync,
	statSync,
	writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { type Bytes, bytesToBuffer, inDir } from './bytes.js';
import { identityOf as identity } from './identity.js';
import { shortHash } from './keydir.js';
import { readOwnFile, tempName } from './root.js';

export const MEMO_DIR = 'ltocache.inputs';
/** Bumped whenever what the bitcode reader returns changes. */
const FORMAT = 4;
const RACY_NS = 2_000_000_000n;
/** Memos no link has used for this long go at the next prune. */
export const MEMO_MAX_AGE_MS = 7 * 86400_000;
/** At most this many links are remembered; prune drops the least recently used beyond. */
export const MEMO_MAX_FILES = 10_000;

/** A module's source file name and the asm strings it carries, module-level (top) and inline (code). */
export type Unit = { source: Bytes; top: Bytes[]; code: Bytes[] };
/** sums: the sha256 of each bitcode file or member, when a link with a remote read it (src/shim/inputs.ts). */
export type Facts = { modules: number; asm: Bytes[]; units: Unit[]; sums?: string[] };
/** A file's facts, or (a name that begins with NUL, which no path holds) the digest of a file a code-generation option names. */
type Fact = Facts & { id: string; digest?: string };
type Stored = { v: number; files: Record<string, Fact> };

/**
 * statfs f_type (linux/magic.h) of the file systems whose ctime the kernel
 * sets on every change, in nanoseconds: ext2/3/4, XFS, Btrfs, tmpfs, F2FS,
 * overlayfs, ZFS, bcachefs. Measured with ext4, XFS, Btrfs, tmpfs and
 * overlayfs: a file rewritten in place and its times set back has another
 * ctime; on vfat through FUSE, the same.
 */
const KEPT_CTIME = new Set([0xef53, 0x58465342, 0x9123683e, 0x01021994, 0xf2f52010, 0x794c7630, 0x2fc12fc1, 0xca451a4e]);
const keptByDevice = new Map<bigint, boolean>();

/** Whether the kernel keeps the ctime of the file system file lives on, whose device is dev. */
function keepsCtime(file: Bytes, dev: bigint): boolean {
	let kept = keptByDevice.get(dev);
	if (kept === undefined) {
		try {
			kept = KEPT_CTIME.has(statfsSync(bytesToBuffer(file)).type);
		} catch {
			kept = false;
		}
		keptByDevice.set(dev, kept);
	}
	return kept;
}

const isFact = (f: Fact | undefined): f is Fact =>
	typeof f === 'object' &&
	f !== null &&
	typeof f.id === 'string' &&
	Number.isInteger(f.modules) &&
	Array.isArray(f.asm) &&
	f.asm.every((a) => typeof a === 'string') &&
	Array.isArray(f.units) &&
	f.units.every(
		(u) =>
			typeof u === 'object' &&
			u !== null &&
			typeof u.source === 'string' &&
			[u.top, u.code].every((list) => Array.isArray(list) && list.every((a) => typeof a === 'string')),
	) &&
	(f.digest === undefined || typeof f.digest === 'string') &&
	(f.sums === undefined || (Array.isArray(f.sums) && f.sums.every((s) => typeof s === 'string')));

export type Memo = {
	/** The facts of a file (a name as the link gives it) whose identity is st now, if remembered for exactly this identity (and with sums, if asked). */
	recall(file: Bytes, st: BigIntStats, sums?: boolean): Facts | undefined;
	/** Remember the facts of a file whose identity was st while it was read. */
	learn(file: Bytes, st: BigIntStats, facts: Facts): void;
	/** The digest of a file whose identity is st now, if remembered for exactly this identity. */
	recallDigest(file: Bytes, st: BigIntStats): string | undefined;
	/** Remember the digest of a file whose identity was st while it was read. */
	learnDigest(file: Bytes, st: BigIntStats, digest: string): void;
	/** Write the memo back if anything was read anew; never throws. */
	save(): void;
	/** Inputs answered from the memo, and read. */
	readonly counts: { recalled: number; read: number };
};

/**
 * The memo of one link under a cache root: the link is its working
 * directory (bytes) and argv (response files expanded), which name it;
 * shared: a root a group shares, whose members read each other's memos.
 */
export function openMemo(root: string, cwd: Bytes, words: Bytes[], shared = false): Memo {
	const key = `${cwd}\0${words.join('\0')}`;
	const dir = join(root, MEMO_DIR);
	const file = join(dir, shortHash(Buffer.from(key, 'latin1')));
	const counts = { recalled: 0, read: 0 };
	let old: Record<string, Fact> | undefined;
	const now: Record<string, Fact> = {};
	const learned: Record<string, BigIntStats> = {};
	/** Whether facts about name may be remembered or recalled: only where ctime tells a change. */
	const steady = (name: Bytes, st: BigIntStats) => keepsCtime(inDir(cwd, name), st.dev);
	const load = () => {
		if (old) return old;
		old = {};
		try {
			// Within a size, never a FIFO or through a symlink (another member's, in a shared root): see readOwnFile.
			const stored = JSON.parse(readOwnFile(file, 64 * 1024 ** 2)?.data.toString('utf8') ?? '') as Stored;
			if (stored?.v === FORMAT && typeof stored.files === 'object' && stored.files !== null) old = stored.files;
		} catch {} // none yet, or damaged: read every input
		return old;
	};
	return {
		counts,
		recall(name, st, sums = false) {
			if (!steady(name, st)) return undefined;
			const fact = load()[name];
			// Remembered by a link without a remote: without its sums, which only a read gives.
			if (!isFact(fact) || fact.id !== identity(st) || (sums && !fact.sums)) return undefined;
			now[name] = fact;
			counts.recalled++;
			return fact;
		},
		learn(name, st, facts) {
			counts.read++;
			if (!steady(name, st)) return;
			now[name] = { id: identity(st), ...facts };
			learned[name] = st;
		},
		recallDigest(name, st) {
			if (!steady(name, st)) return undefined;
			const fact = load()[`\0${name}`];
			if (!isFact(fact) || fact.id !== identity(st) || fact.digest === undefined) return undefined;
			now[`\0${name}`] = fact;
			return fact.digest;
		},
		learnDigest(name, st, digest) {
			if (!steady(name, st)) return;
			now[`\0${name}`] = { id: identity(st), modules: 0, asm: [], units: [], digest };
			learned[`\0${name}`] = st;
		},
		save() {
			if (Object.keys(learned).length === 0) return; // nothing read anew, or only where ctime tells nothing
			const tmp = tempName(file);
			let fd: number | undefined;
			try {
				mkdirSync(dir, { recursive: true, mode: shared ? 0o2770 : 0o700 });
				// Another member's symlink there would have a root-run link write memos where it leads.
				if (!lstatSync(dir).isDirectory()) return;
				rmSync(tmp, { force: true }); // exclusively, never through a symlink another member put there
				fd = openSync(tmp, 'wx', shared ? 0o660 : 0o600);
				// The temporary file's mtime is the file system's "now": an input changed too close to it may not show its change.
				const clock = fstatSync(fd, { bigint: true }).mtimeNs;
				for (const [name, st] of Object.entries(learned)) {
					if (clock - st.ctimeNs < RACY_NS || clock - st.mtimeNs < RACY_NS) delete now[name];
				}
				// UTF-8: asm strings hold bytes up to 0xFF and the reader's operand marks, U+0100 and U+0101.
				writeSync(fd, JSON.stringify({ v: FORMAT, files: now } satisfies Stored), null, 'utf8');
				closeSync(fd);
				fd = undefined;
				renameSync(tmp, file);
			} catch {
				if (fd !== undefined) closeSync(fd);
				rmSync(tmp, { force: true });
			} // the memo only saves work: a link never fails for it
		},
	};
}

/**
 * For prune and clear: remove memos no link has used for maxAge (last use:
 * the later of atime and mtime), then the least recently used beyond
 * MEMO_MAX_FILES; all of them with maxAge 0. Temporary files of links that
 * died go once an hour old. Returns how many went.
 */
export function pruneMemo(root: string, now: number, maxAge = MEMO_MAX_AGE_MS): number {
	const dir = join(root, MEMO_DIR);
	const cwd = process.cwd();
	try {
		// Another member's symlink there would have prune remove what is in the directory it leads to (/etc, as
		// root). Looked at from inside, with bare names: a symlink renamed in after a look at the path would be
		// followed by every call that names the path.
		process.chdir(dir);
		const here = statSync('.');
		const named = lstatSync(dir);
		if (!named.isDirectory() || named.dev !== here.dev || named.ino !== here.ino) return 0;
		return pruneHere(now, maxAge);
	} catch {
		return 0;
	} finally {
		process.chdir(cwd);
	}
}

/** pruneMemo's work, in the memo directory. */
function pruneHere(now: number, maxAge: number): number {
	const dir = '.';
	const names = readdirSync(dir);
	const kept: { file: string; lastUse: number }[] = [];
	let removed = 0;
	const remove = (file: string) => {
		rmSync(file, { force: true });
		removed++;
	};
	for (const name of names) {
		const file = join(dir, name);
		const st = lstatSync(file, { throwIfNoEntry: false });
		if (!st?.isFile()) continue;
		const lastUse = Math.max(st.atimeMs, st.mtimeMs);
		if (name.endsWith('.tmp')) {
			if (now - st.mtimeMs > 3600_000) remove(file);
		} else if (maxAge === 0 || now - lastUse > maxAge) remove(file);
		else kept.push({ file, lastUse });
	}
	if (kept.length > MEMO_MAX_FILES) {
		kept.sort((a, b) => a.lastUse - b.lastUse);
		for (const { file } of kept.slice(0, kept.length - MEMO_MAX_FILES)) remove(file);
	}
	return removed;
}
