// The inputs memo: what the shim learned from an input's bitcode (its
// ThinLTO modules and asm strings), kept under the cache root so that a
// link reads again only the inputs that changed. A whole kernel relinks
// hundreds of unchanged objects; reading their bitcode is most of what the
// shim costs there.
//
//   <root>/ltocache.inputs/<hash of device and inode>   one input's facts, JSON:
//                                                       { v, id, modules, asm }
//   <root>/ltocache.inputs/<...>.<pid>.tmp              one being written
//
// The memo may only save work, never change an answer. A fact holds while
// the file's identity is what it was when it was read: device, inode, size,
// and mtime and ctime in nanoseconds (ctime moves on every write and cannot
// be set back). A file written within two seconds of being read is not
// remembered at all: file times tick coarsely, so a second write in the
// same tick could keep them (git's "racily clean" rule). Anything else that
// is off (another format, a torn or foreign file) means the input is read
// again. Writes go to a temporary file renamed in, so parallel links never
// see half a fact; the last writer wins.
//
// On the shim's hot path: node built-ins only.

import type { BigIntStats } from 'node:fs';
import { closeSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Bytes } from './bytes.js';
import { shortHash } from './keydir.js';

export const MEMO_DIR = 'ltocache.inputs';
/** Bumped whenever what the bitcode reader returns changes. */
const FORMAT = 1;
const RACY_NS = 2_000_000_000n;
/** Facts about inputs no link has used for this long go at the next prune. */
export const MEMO_MAX_AGE_MS = 7 * 86400_000;
/** At most this many inputs are remembered; prune drops the least recently used beyond. */
export const MEMO_MAX_FILES = 100_000;

export type Facts = { modules: number; asm: Bytes[] };
type Stored = Facts & { v: number; id: string };

const identity = (st: BigIntStats) => `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;

export type Memo = {
	/** The facts of the file open at fd, if remembered for exactly this identity. */
	recall(st: BigIntStats): Facts | undefined;
	/** Remember the facts of a file whose identity was st when it was read. */
	learn(st: BigIntStats, facts: Facts): void;
	/** Inputs answered from the memo, and read. */
	readonly counts: { recalled: number; read: number };
};

/** The memo under a cache root; shared: a root a group shares, whose members read each other's facts. */
export function openMemo(root: string, shared = false): Memo {
	const dir = join(root, MEMO_DIR);
	const file = (st: BigIntStats) => join(dir, shortHash(Buffer.from(`${st.dev}:${st.ino}`)));
	const counts = { recalled: 0, read: 0 };
	let made = false;
	return {
		counts,
		recall(st) {
			try {
				const stored = JSON.parse(readFileSync(file(st), 'utf8')) as Stored;
				if (stored.v !== FORMAT || stored.id !== identity(st) || !Number.isInteger(stored.modules) || !Array.isArray(stored.asm))
					return undefined;
				if (!stored.asm.every((a) => typeof a === 'string')) return undefined;
				counts.recalled++;
				return { modules: stored.modules, asm: stored.asm };
			} catch {
				return undefined;
			}
		},
		learn(st, facts) {
			counts.read++;
			const target = file(st);
			const tmp = `${target}.${process.pid}.tmp`;
			let fd: number | undefined;
			try {
				if (!made) mkdirSync(dir, { recursive: true, mode: shared ? 0o2770 : 0o700 });
				made = true;
				fd = openSync(tmp, 'w', shared ? 0o660 : 0o600);
				// UTF-8: asm strings hold bytes up to 0xFF and the reader's operand mark, U+0100.
				writeSync(fd, JSON.stringify({ v: FORMAT, id: identity(st), ...facts } satisfies Stored), null, 'utf8');
				// The memo's own mtime is the file system's "now": too close to the input's last change, and the change may not show.
				const now = fstatSync(fd, { bigint: true }).mtimeNs;
				closeSync(fd);
				fd = undefined;
				if (now - st.ctimeNs < RACY_NS || now - st.mtimeNs < RACY_NS) rmSync(tmp, { force: true });
				else renameSync(tmp, target);
			} catch {
				if (fd !== undefined) closeSync(fd);
				rmSync(tmp, { force: true });
			} // the memo only saves work: a link never fails for it
		},
	};
}

/**
 * For prune and clear: remove remembered facts no link has used for maxAge
 * (last use: the later of atime and mtime), then the least recently used
 * beyond MEMO_MAX_FILES; all of them with maxAge 0. Temporary files of
 * links that died go once an hour old. Returns how many went.
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
