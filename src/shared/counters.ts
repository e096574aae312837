// Hits and misses of one cache directory, kept in its ltocache.counts.
//
// After each link it chose the directory for, the shim appends one line:
// when the link started, how long it took, how many ThinLTO modules it
// linked (one cache lookup each), and every entry whose mtime is not older
// than the link's start: the entries lld had to write, its misses. An
// append is one write(2) with O_APPEND: no lock on the link path, and
// concurrent links never interleave inside a line.
//
// Links of one directory may run in parallel, and each then also sees what
// the others wrote while it ran. So no link's hits are worked out alone:
// misses are the distinct entries (name and mtime) across all lines, each
// counted once however many links saw it, and hits are the modules linked
// less the misses. Totals therefore always hold hits + misses = modules
// linked. (Two links that both wrote one entry, racing, count once if
// either rename hid the other's file from both, twice if not: twice is
// what lld did.)
//
// Prune compacts the lines older than an hour into one "folded" line; a
// line that cannot be parsed (a torn or foreign write) is skipped.
import { closeSync, constants, fstatSync, lstatSync, readdirSync, readSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { COUNTS_FILE, classify, entryKey, IN_FLIGHT_MS } from './keydir.js';
import { openOwnFile, readOwnFile, tempName } from './root.js';

/** [entry name without its prefix, mtime in ms, bytes] */
type Written = [string, number, number];
/** The order a line stores RemoteCounts in; lines written before the failures were counted hold the first four. */
const SHARED = ['downloads', 'downloadBytes', 'uploads', 'uploadBytes', 'timeouts', 'unreachable', 'errors', 'skipped'] as const;
/**
 * What a link moved through a remote (src/shim/remote.ts): entries and their
 * bytes, each way; and how its use of the remote failed, if it did (at most
 * one of the four a link): no answer within the budget, the server not
 * reached (refused, unknown host, unreachable), any other error (an answer
 * it could not use, refused credentials, a full server), or not tried
 * because a link shortly before found the server down.
 */
export type RemoteCounts = Record<(typeof SHARED)[number], number>;
/** A link's remote counts before it has done anything. */
export const noRemoteCounts = (): RemoteCounts => Object.fromEntries(SHARED.map((k) => [k, 0])) as RemoteCounts;
type Shared = number[];
/** v: the link was verified (the verify setting): 1 its output matched the uncached link's, 2 it did not. */
type LinkLine = { t: number; ms: number; m: number; w: Written[]; r?: Shared; v?: 1 | 2 };
type Folded = RemoteCounts & {
	links: number;
	modules: number;
	misses: number;
	bytes: number;
	ms: number;
	verified: number;
	mismatches: number;
};
type FoldedLine = { folded: Folded };

export type Counters = Folded & { hits: number };

/** Past this size a counts file is not read: links stop appending at MAX_BYTES, and prune compacts it. */
const MAX_READ_BYTES = 64 * 1024 * 1024;
/** Past this size a directory's lines wait for the next prune to compact them rather than grow further. */
const MAX_BYTES = 4 * 1024 * 1024;

/**
 * After a link into dir: append its line. since is the directory's claim
 * time, as the file system's clock put it (lld's entries get theirs from
 * the same clock); before, the directory's names when the link started:
 * lld writes an entry only when it has none of that name, so only new
 * names need a look at their times (a whole kernel's directory holds
 * thousands). Never throws.
 */
export function recordLink(
	dir: string,
	since: number,
	wallMs: number,
	modules: number,
	before?: Set<string>,
	remote?: RemoteCounts,
	verified?: 'match' | 'mismatch',
): void {
	let fd: number | undefined;
	try {
		const written: Written[] = [];
		for (const name of readdirSync(dir)) {
			if (classify(name) !== 'entry' || before?.has(name)) continue;
			const st = lstatSync(join(dir, name), { throwIfNoEntry: false });
			if (st?.isFile() && st.mtimeMs >= since) written.push([entryKey(name), st.mtimeMs, st.size]);
		}
		const r: Shared | undefined = remote && SHARED.map((k) => remote[k]);
		const line: LinkLine = {
			t: since,
			ms: Math.round(wallMs),
			m: modules,
			w: written,
			...(r?.some(Boolean) ? { r } : {}),
			...(verified ? { v: verified === 'match' ? 1 : 2 } : {}),
		};
		fd = openOwnFile(join(dir, COUNTS_FILE), constants.O_RDWR | constants.O_APPEND | constants.O_CREAT);
		const size = fstatSync(fd).size;
		if (size > MAX_BYTES) return;
		// A line left torn (a full disk, a killed writer) is ended first, or this one would be lost with it.
		const last = Buffer.alloc(1);
		const torn = size > 0 && readSync(fd, last, 0, 1, size - 1) === 1 && last[0] !== 0x0a;
		writeSync(fd, `${torn ? '\n' : ''}${JSON.stringify(line)}\n`);
	} catch {
		// counting never fails a link, nor delays it with a retry
	} finally {
		if (fd !== undefined) closeSync(fd);
	}
}

/** How much of the file's end lastLinkBytes reads: a whole kernel's line (~470 entries) is ~30 KB. */
const TAIL_BYTES = 256 * 1024;

/** The bytes of the entries the directory's last recorded link wrote; 0 when none is recorded. Never throws. */
export function lastLinkBytes(dir: string): number {
	let fd: number | undefined;
	try {
		fd = openOwnFile(join(dir, COUNTS_FILE), constants.O_RDONLY);
		const size = fstatSync(fd).size;
		const tail = Buffer.alloc(Math.min(size, TAIL_BYTES));
		readSync(fd, tail, 0, tail.length, size - tail.length);
		const lines = parse(tail.toString('utf8'));
		const last = lines[lines.length - 1];
		return last && 'w' in last ? last.w.reduce((sum, [, , bytes]) => sum + (Number(bytes) || 0), 0) : 0;
	} catch {
		return 0;
	} finally {
		if (fd !== undefined) closeSync(fd);
	}
}

const isWritten = (w: unknown) => Array.isArray(w) && typeof w[0] === 'string' && typeof w[1] === 'number' && Number.isFinite(w[2]);

/** The lines as written; one of other types (another member's, in a shared root) is skipped as a torn one is: it would throw where its entries are taken apart. */
function parse(text: string): (LinkLine | FoldedLine)[] {
	const lines: (LinkLine | FoldedLine)[] = [];
	for (const raw of text.split('\n')) {
		if (!raw) continue;
		try {
			const v = JSON.parse(raw) as LinkLine & FoldedLine;
			if (v.folded && typeof v.folded.links === 'number') lines.push({ folded: v.folded });
			else if (typeof v.t === 'number' && typeof v.m === 'number' && Array.isArray(v.w) && v.w.every(isWritten)) lines.push(v);
		} catch {}
	}
	return lines;
}

/** What makes a written entry one miss, however many lines list it: its name and mtime. */
const writtenId = ([name, mtime]: Written) => `${name}:${mtime}`;

const zero = (): Folded => ({ links: 0, modules: 0, misses: 0, bytes: 0, ms: 0, ...noRemoteCounts(), verified: 0, mismatches: 0 });

/** Sums lines, each written entry once; `except` holds entries counted elsewhere. */
function fold(lines: (LinkLine | FoldedLine)[], except = new Set<string>()): Folded {
	const sum = zero();
	const seen = new Set(except);
	for (const line of lines) {
		if ('folded' in line) {
			for (const k of Object.keys(sum) as (keyof Folded)[]) sum[k] += Number(line.folded[k]) || 0;
			continue;
		}
		sum.links++;
		sum.modules += line.m;
		sum.ms += line.ms || 0;
		if (line.v === 1 || line.v === 2) sum.verified++;
		if (line.v === 2) sum.mismatches++;
		const r = line.r;
		if (Array.isArray(r)) for (const [i, k] of SHARED.entries()) sum[k] += Number(r[i]) || 0;
		for (const written of line.w) {
			const id = writtenId(written);
			if (seen.has(id)) continue;
			seen.add(id);
			sum.misses++;
			sum.bytes += written[2];
		}
	}
	return sum;
}

export function withHits(sum: Folded): Counters {
	return { ...sum, hits: Math.max(0, sum.modules - sum.misses) };
}

export function readCounters(dir: string): Counters {
	const text = readOwnFile(join(dir, COUNTS_FILE), MAX_READ_BYTES)?.data.toString('utf8') ?? '';
	return withHits(fold(parse(text)));
}

export function addCounters(all: Counters[]): Counters {
	const sum = zero();
	for (const c of all) for (const k of Object.keys(sum) as (keyof Folded)[]) sum[k] += c[k];
	return withHits(sum);
}

/**
 * Prune's compaction (under the root's lock): lines of links that started
 * over an hour ago become one folded line; the rest stay as they are, so a
 * link still running can be matched against them. The file is renamed
 * away first, so links that finish meanwhile start a new one; lines are
 * moved back with appends.
 */
export function compactCounters(dir: string, now = Date.now()): void {
	const file = join(dir, COUNTS_FILE);
	const moving = tempName(file);
	try {
		renameSync(file, moving);
	} catch {
		return; // none yet
	}
	const own = readOwnFile(moving, MAX_READ_BYTES);
	if (!own) {
		rmSync(moving, { force: true }); // not ltocache's counts (a FIFO, a symlink, a file of no use): gone with its name
		return;
	}
	let text = own.data.toString('utf8');
	const lines = parse(text);
	const recent: LinkLine[] = [];
	const old: (LinkLine | FoldedLine)[] = [];
	for (const line of lines) {
		if (!('folded' in line) && line.t >= now - IN_FLIGHT_MS) recent.push(line);
		else old.push(line);
	}
	const recentIds = new Set(recent.flatMap((l) => l.w.map(writtenId)));
	const kept = [...(old.length ? [{ folded: fold(old, recentIds) }] : []), ...recent];
	// A link that opened the file before the rename may have appended since it was read.
	const late = (readOwnFile(moving, MAX_READ_BYTES)?.data.toString('utf8') ?? text).slice(text.length);
	text = kept.map((l) => `${JSON.stringify(l)}\n`).join('') + late;
	if (text) {
		const fd = openOwnFile(file, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, statSync(moving).mode & 0o777);
		try {
			writeSync(fd, text);
		} finally {
			closeSync(fd);
		}
	}
	rmSync(moving, { force: true });
}

/** `stats --zero`, and `clear` for what it clears: the directory's counters start again. */
export function zeroCounters(dir: string): void {
	rmSync(join(dir, COUNTS_FILE), { force: true });
}
