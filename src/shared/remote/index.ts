// What a manifest lists of the entries one link used: entry name -> the
// sha256 and size its uploader recorded, so that a downloaded entry is
// checked before lld may read it, and over HTTP the pack the entry is in,
// at which offset. The same lines are a cache directory's record of where
// its entries are on the remote (src/shim/remote.ts).
//
// A manifest is text, one line an entry: `name sum size [pack offset]`,
// over HTTP an object and in Redis a string.
import { createHash } from 'node:crypto';
import { uniqueTag } from '../root.js';

/** What the index holds of an entry: its sha256 and size at upload, and over HTTP the pack it is in, at which offset. */
export type Sum = { sum: string; size: number; pack?: string; offset?: number };

/** An entry to upload, with its sha256. */
export type Upload = { name: string; data: Buffer; sum: string };

export const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** The most an entry may be (lld's entries are one module's object code: a kernel's largest is a few MiB); a line claiming more is no entry. */
export const MAX_ENTRY_BYTES = 64 * 1024 ** 2;
/** The most a manifest may be: 20,000 lines of ~130 bytes are 2.6 MB. */
export const MAX_INDEX_BYTES = 16 * 1024 ** 2;

/**
 * What a remote gave for a link: the manifest of a link with the same
 * inputs (exact), or else the namespace's head, the last manifest any
 * machine wrote there (a hint: the entries of a nearby commit).
 */
export type Manifest = { entries: Map<string, Sum>; exact: boolean };

/** What doctor writes and reads back: bytes no server makes up. */
export const probeBytes = () => Buffer.from(`ltocache probe ${uniqueTag()} ${Date.now()} ${Math.random()}`);

/** Whether a name may be used as an entry's file name and a remote key (lld's are 40 hex digits; a file name has at most 255 bytes). */
export const isEntryName = (name: string) => /^llvmcache-[0-9A-Fa-f]{1,128}$/.test(name);

/** Manifest lines: `name sum size [pack offset]`, one an entry; a line that does not parse is no entry. */
export function parseIndex(text: string): Map<string, Sum> {
	const index = new Map<string, Sum>();
	for (const line of text.split('\n')) addIndexLine(index, line);
	return index;
}

const INDEX_LINE = /^(llvmcache-[0-9A-Fa-f]{1,128}) ([0-9a-f]{64}) (\d{1,15})(?: (pack-[0-9a-f]{64}) (\d{1,15}))?$/;

/** One line into the manifest, if it is one: a line that is not (a name too long, an entry too large) is passed over, the rest read. */
export function addIndexLine(index: Map<string, Sum>, line: string): void {
	const m = INDEX_LINE.exec(line.trim());
	if (!m || Number(m[3]) > MAX_ENTRY_BYTES) return;
	const sum: Sum = { sum: m[2], size: Number(m[3]) };
	if (m[4]) Object.assign(sum, { pack: m[4], offset: Number(m[5]) });
	index.set(m[1], sum);
}

export const formatIndex = (index: Map<string, Sum>) =>
	[...index].map(([name, r]) => `${name} ${r.sum} ${r.size}${r.pack ? ` ${r.pack} ${r.offset}` : ''}\n`).join('');
