// A file's identity: device, inode, size, and mtime and ctime in
// nanoseconds. While it holds, the file holds what it held: a write moves
// ctime, which no one can set back. What the shim learned from a file (the
// inputs memo's facts, a code-generation file's digest, the .incbin
// guard's hash) stands for that file only while its identity is the same.

import type { Hash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { closeSync, constants, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { type Bytes, bytesToBuffer } from './bytes.js';

export const identityOf = (st: BigIntStats): string => `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;

/** Whether two stats show the same file, unchanged. */
export const sameFile = (a: BigIntStats, b: BigIntStats): boolean => identityOf(a) === identityOf(b);

/** The identity of the file a path names now (symbolic links followed); undefined if there is none. */
export function identityOfPath(file: Bytes): string | undefined {
	const st = statSync(bytesToBuffer(file), { bigint: true, throwIfNoEntry: false });
	return st && identityOf(st);
}

const CHUNK = 1024 * 1024;

export type Read = { identity: string; size: number; text?: Bytes };

/**
 * Hash a regular file's contents as they are read, and its identity then;
 * keep the contents as text if asked, up to limit bytes. Throws with a
 * reason, also when the file changed while it was read.
 */
export function readInto(hash: Hash, file: Bytes, keep: boolean, limit = Number.POSITIVE_INFINITY): Read {
	// Only a regular file is read: a FIFO's data would be taken from lld (which then waits forever), and a
	// device's may never end. Looked at before the open, and again after an open that cannot block.
	const path = bytesToBuffer(file);
	if (!statSync(path).isFile()) throw new Error('not a regular file');
	const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
	try {
		const st = fstatSync(fd, { bigint: true });
		if (!st.isFile()) throw new Error('not a regular file');
		const before = identityOf(st);
		const chunks: Buffer[] = [];
		let size = 0;
		const buffer = Buffer.alloc(CHUNK);
		for (;;) {
			const n = readSync(fd, buffer, 0, CHUNK, null);
			if (n === 0) break;
			hash.update(buffer.subarray(0, n));
			size += n;
			if (!keep) continue;
			if (size > limit) throw new Error(`larger than ${limit} bytes`);
			chunks.push(Buffer.from(buffer.subarray(0, n)));
		}
		if (identityOf(fstatSync(fd, { bigint: true })) !== before || before.split(':')[2] !== String(size))
			throw new Error('changed while being read');
		return { identity: before, size, text: keep ? Buffer.concat(chunks).toString('latin1') : undefined };
	} finally {
		closeSync(fd);
	}
}
