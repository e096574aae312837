// Archives, as lld reads them for their members: System V (GNU) archives,
// regular and thin (like the built-in.a Kbuild links vmlinux from), with
// BSD names too. A regular archive's bitcode members are handed over as
// their bytes; a thin archive's members are files of their own, handed over
// by name for the inputs reader (inputs.ts) to read like any input.
import { fstatSync, readFileSync, readSync } from 'node:fs';
import { dirname } from 'node:path';
import { type Bytes, bytesToText } from '../shared/bytes.js';
import { isBitcode } from './bitcode.js';

export type Members = {
	/** A regular archive's member that is bitcode: its bytes, and a name to show (`archive(member)`). */
	bitcode(data: Buffer, name: Bytes): void;
	/** A thin archive's member: the file, relative to the working directory as the archive's path is. */
	member(file: Bytes): void;
};

/**
 * A System V (GNU) archive: 60-byte member headers, "//" holding long names
 * ("/<offset>"), "/" and "/SYM64/" symbol tables; BSD "#1/<n>" names inline.
 * A thin archive stores only those tables; its members are files named
 * relative to the archive's directory, as its path spells it.
 */
export function readArchive(fd: number, file: Bytes, thin: boolean, on: Members): void {
	// A thin archive holds only headers and tables, read in one go; a regular one is read member by member.
	const whole = thin ? readFileSync(fd) : undefined;
	const size = whole ? whole.length : fstatSync(fd).size;
	let header = Buffer.alloc(60);
	let longNames = '';
	for (let at = 8; at + 60 <= size; ) {
		if (whole) header = whole.subarray(at, at + 60);
		else readSync(fd, header, 0, 60, at);
		if (header.toString('latin1', 58, 60) !== '`\n')
			throw new Error(`cannot read ${bytesToText(file)} (Error: bad archive member header at ${at})`);
		const raw = header.toString('latin1', 0, 16).trimEnd();
		const length = Number.parseInt(header.toString('latin1', 48, 58).trim(), 10);
		if (!Number.isSafeInteger(length) || length < 0)
			throw new Error(`cannot read ${bytesToText(file)} (Error: bad archive member size at ${at})`);
		const data = at + 60;
		const tables = raw === '/' || raw === '/SYM64/' || raw === '//';
		const stored = !thin || tables; // a thin archive's members are elsewhere
		at = data + (stored ? length + (length % 2) : 0);
		if (raw === '//') {
			if (whole && data + length > whole.length) throw new Error(`cannot read ${bytesToText(file)} (Error: archive ends inside a member)`);
			longNames = (whole ? whole.subarray(data, data + length) : read(fd, data, length, file)).toString('latin1');
			continue;
		}
		if (tables) continue;
		if (!thin) {
			let offset = data;
			let length2 = length;
			if (raw.startsWith('#1/')) {
				const n = Number.parseInt(raw.slice(3), 10);
				offset += n;
				length2 -= n;
			}
			if (isBitcode(read(fd, offset, Math.min(4, length2), file))) on.bitcode(read(fd, offset, length2, file), `${file}(${raw})`);
			continue;
		}
		let name = raw;
		if (raw.startsWith('/') && /^\/\d+$/.test(raw)) {
			const start = Number(raw.slice(1));
			const end = longNames.indexOf('\n', start);
			name = longNames.slice(start, end < 0 ? undefined : end);
		}
		if (name.endsWith('/')) name = name.slice(0, -1);
		// LLVM's thin member: parent_path(archive) joined with the name, resolved by the file system.
		on.member(name.startsWith('/') ? name : file.includes('/') ? `${dirname(file)}/${name}` : name);
	}
}

function read(fd: number, position: number, length: number, file: Bytes): Buffer {
	const buf = Buffer.alloc(length);
	for (let done = 0; done < length; ) {
		const n = readSync(fd, buf, done, length - done, position + done);
		if (n === 0) throw new Error(`cannot read ${bytesToText(file)} (Error: archive ends inside a member)`);
		done += n;
	}
	return buf;
}
