// The inputs memo: what the shim learned from a link's bitcode inputs
// (their ThinLTO modules and asm strings), kept under the cache root so that
// a relink reads again only the inputs that changed. A whole kernel relinks
// hundreds of unchanged objects; reading their bitcode would be most of what
// the shim costs there.
//
//   <root>/ltocache.inputs/<hash of cwd and argv>   one link's inputs, JSON:
//                                                  { v, files: { <path>: { id, modules, asm } } }
//   <root>/ltocache.inputs/<...>.<pid>.tmp         one being written
//
// One file a link (a kernel's vmlinux.o, a module's prelink), read once and
// written back only when something was read anew: a link stats its inputs
// instead of opening them.
//
// The memo may only save work, never change an answer. A fact holds while
// the file's identity is what it was when it was read: device, inode, size,
// and mtime and ctime in nanoseconds (ctime moves on every write and cannot
// be set back). A file changed within two seconds of the memo's writing is
// not remembered: file times tick coarsely, so a second write in the same
// tick could keep them (git's "racily clean" rule). Anything else that is
// off (another format, a torn or foreign file) means the inputs are read
// again. Writes go to a temporary file renamed in, so parallel links never
// see half a memo; the last writer wins.
//
// On the shim's hot path: node built-ins only.
import type { BigIntStats } from 'node:fs';
import { closeSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Bytes } from './bytes.js';
import { identityOf as identity } from './identity.js';
import { shortHash } from './keydir.js';

export const MEMO_DIR = 'ltocache.inputs';
/** Bumped whenever what the bitcode reader returns changes. */
const FORMAT = 2;
const RACY_NS = 2_000_000_000n;
/** Memos no link has used for this long go at the next prune. */
export const MEMO_MAX_AGE_MS = 7 * 86400_000;
/** At most this many links are remembered; prune drops the least recently used beyond. */
export const MEMO_MAX_FILES = 10_000;

export type Facts = { modules: number; asm: Bytes[] };
/** A file's facts, or (a name that begins with NUL, which no path holds) the digest of a file a code-generation option names. */
type Fact = Facts & { id: string; digest?: string };
type Stored = { v: number; files: Record<string, Fact> };

const isFact = (f: Fact | undefined): f is Fact =>
	typeof f === 'object' &&
	f !== null &&
	typeof f.id === 'string' &&
	Number.isInteger(f.modules) &&
	Array.isArray(f.asm) &&
	f.asm.every((a) => typeof a === 'string') &&
	(f.digest === undefined || typeof f.digest === 'string');

export type Memo = {
	/** The facts of a file whose identity is st now, if remembered for exactly this identity. */
	recall(file: Bytes, st: BigIntStats): Facts | undefined;
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
 * The memo of one link under a cache root: key names the link (its working
 * directory and argv); shared: a root a group shares, whose members read
 * each other's memos.
 */
export function openMemo(root: string, key: Bytes, shared = false): Memo {
	const dir = join(root, MEMO_DIR);
	const file = join(dir, shortHash(Buffer.from(key, 'latin1')));
	const counts = { recalled: 0, read: 0 };
	let old: Record<string, Fact> | undefined;
	const now: Record<string, Fact> = {};
	const learned: Record<string, BigIntStats> = {};
	let digests = 0;
	const load = () => {
		if (old) return old;
		old = {};
		try {
			const stored = JSON.parse(readFileSync(file, 'utf8')) as Stored;
			if (stored?.v === FORMAT && typeof stored.files === 'object' && stored.files !== null) old = stored.files;
		} catch {} // none yet, or damaged: read every input
		return old;
	};
	return {
		counts,
		recall(name, st) {
			const fact = load()[name];
			if (!isFact(fact) || fact.id !== identity(st)) return undefined;
			now[name] = fact;
			counts.recalled++;
			return fact;
		},
		learn(name, st, facts) {
			counts.read++;
			now[name] = { id: identity(st), ...facts };
			learned[name] = st;
		},
		recallDigest(name, st) {
			const fact = load()[`\0${name}`];
			if (!isFact(fact) || fact.id !== identity(st) || fact.digest === undefined) return undefined;
			now[`\0${name}`] = fact;
			return fact.digest;
		},
		learnDigest(name, st, digest) {
			digests++;
			now[`\0${name}`] = { id: identity(st), modules: 0, asm: [], digest };
			learned[`\0${name}`] = st;
		},
		save() {
			if (counts.read === 0 && digests === 0) return;
			const tmp = `${file}.${process.pid}.tmp`;
			let fd: number | undefined;
			try {
				mkdirSync(dir, { recursive: true, mode: shared ? 0o2770 : 0o700 });
				fd = openSync(tmp, 'w', shared ? 0o660 : 0o600);
				// The temporary file's mtime is the file system's "now": an input changed too close to it may not show its change.
				const clock = fstatSync(fd, { bigint: true }).mtimeNs;
				for (const [name, st] of Object.entries(learned)) {
					if (clock - st.ctimeNs < RACY_NS || clock - st.mtimeNs < RACY_NS) delete now[name];
				}
				// UTF-8: asm strings hold bytes up to 0xFF and the reader's operand mark, U+0100.
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
	let names: string[];
	try {
		names = readdirSync(dir);
	} catch {
		return 0;
	}
	const kept: { file: string; lastUse: number }[] = [];
	let removed = 0;
	const remove = (file: string) => {
		rmSync(file, { force: true });
		removed++;
	};
	for (const name of names) {
		const file = join(dir, name);
		const st = statSync(file, { throwIfNoEntry: false });
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
