// A changed .incbin file misses only the modules that embed it. The guard
// (incbin.ts) puts every embedded file's contents into the directory's name,
// so a changed file means a new directory; when that directory does not exist
// yet and a sibling does (the same module and options, other .incbin
// contents), the new one starts with the sibling's entries that cannot hold
// a changed file.
//
// lld's key for an entry covers the module's bitcode, what it imports and
// the code-generation options, not the files its asm reads. An entry built
// from a module whose asm reaches a changed file (directly, or through an
// .include'd file) must stay behind. Module-level asm is never imported into
// another module (IRMover appends a source's module asm only when it is not
// importing), so only the module that carries it reads its files; a
// function's inline asm may be imported anywhere, so a changed file that
// inline asm reaches means no seeding at all.
//
// Which module an entry was built from is told by its ELF symbol table: the
// code generator names the module's source file (source_filename, its last
// component with lld 14 to 22) in an STT_FILE symbol; module asm may add more
// `.file`s, never take that one away. An entry is carried only if it has such
// symbols and none names a module that embeds a changed file; two modules
// with one name both stay behind. An entry that cannot be read, or has no
// STT_FILE symbol, stays behind.
//
// The modules that embed a changed file are those of this link and those of
// every link that wrote into the sibling (a directory serves every link
// whose files are the same, and their modules may differ): each link records
// its own in an ltocache.embed-<hash> file before lld runs, and a seeded
// directory takes its sibling's records along with its entries. Without
// records, or with any doubt, there is no seeding, and the whole link misses.
//
// The directory is built aside and renamed into place, so a parallel link
// never sees half of it; entries are hard links to the sibling's (copies where
// that fails), the same bytes.
import {
	closeSync,
	constants,
	copyFileSync,
	existsSync,
	linkSync,
	lstatSync,
	mkdirSync,
	readdirSync,
	readSync,
	renameSync,
	rmSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Bytes } from '../shared/bytes.js';
import { classify, EMBED_PREFIX, incbinSiblings, lastClaim, readMeta, removeStaleSeeds, seedTemp, shortHash } from '../shared/keydir.js';
import type { Unit } from '../shared/memo.js';
import { openOwnFile, readOwnFile, tempName, writeOwnFile } from '../shared/root.js';
import type { Guard } from './incbin.js';

/** For each embedded file's sum (Guard.sums): the source names of the modules whose asm reaches it, and whether inline asm does. */
export type Embedders = Record<string, { names: Bytes[]; inline: boolean }>;

/** Which of a link's modules embed which file. */
export function embedders(guard: Pick<Guard, 'files' | 'sums' | 'reach'>, units: Unit[]): Embedders {
	const found: Embedders = {};
	const add = (text: Bytes, source: Bytes, inline: boolean) => {
		for (const file of guard.reach(text) ?? []) {
			const sum = guard.sums[guard.files.indexOf(file)];
			if (sum === undefined) continue; // a name the assembler rejects: no file is read
			found[sum] ??= { names: [], inline: false };
			const e = found[sum];
			if (!e.names.includes(source)) e.names.push(source);
			e.inline ||= inline;
		}
	};
	for (const unit of units) {
		for (const text of unit.top) add(text, unit.source, false);
		for (const text of unit.code) add(text, unit.source, true);
	}
	for (const e of Object.values(found)) e.names.sort();
	return found;
}

const serialize = (e: Embedders) =>
	JSON.stringify({
		v: 1,
		files: Object.fromEntries(
			Object.keys(e)
				.sort()
				.map((k) => [k, e[k]]),
		),
	});

/**
 * Record this link's embedders in its directory (once for each distinct
 * answer), before lld writes anything there. Returns why it cannot.
 */
export function recordEmbedders(dir: string, e: Embedders, shared: boolean): string | undefined {
	// Source names are bytes; JSON keeps chars up to 0xFF as they are, written as UTF-8 and read back as such.
	const text = serialize(e);
	const file = join(dir, `${EMBED_PREFIX}${shortHash(Buffer.from(text, 'utf8'))}`);
	if (existsSync(file)) return undefined;
	const tmp = tempName(file);
	try {
		writeOwnFile(tmp, text, shared ? 0o660 : 0o600);
		renameSync(tmp, file);
		return undefined;
	} catch (error) {
		rmSync(tmp, { force: true });
		return `cannot write ${file} (${(error as NodeJS.ErrnoException).code ?? String(error)})`;
	}
}

/** The names of a directory's records, as one string. */
const recordNames = (dir: string) =>
	readdirSync(dir)
		.filter((n) => n.startsWith(EMBED_PREFIX) && classify(n) === 'bookkeeping')
		.sort()
		.join('/');

/** Far above any record a link writes: a kernel's has a few embedding modules. */
const MAX_RECORD_BYTES = 4 * 1024 * 1024;

function readRecords(dir: string): Embedders[] | undefined {
	const records: Embedders[] = [];
	for (const name of readdirSync(dir)) {
		if (!name.startsWith(EMBED_PREFIX) || classify(name) !== 'bookkeeping') continue;
		const file = join(dir, name);
		const own = readOwnFile(file, MAX_RECORD_BYTES);
		if (!own) throw new Error(`${file} is not a regular file of at most ${MAX_RECORD_BYTES} bytes`);
		const stored = JSON.parse(own.data.toString('utf8')) as { v: number; files: Embedders };
		if (stored?.v !== 1 || typeof stored.files !== 'object' || stored.files === null) return undefined;
		for (const e of Object.values(stored.files)) {
			if (!Array.isArray(e?.names) || !e.names.every((n) => typeof n === 'string') || typeof e.inline !== 'boolean') return undefined;
		}
		records.push(stored.files);
	}
	return records;
}

/**
 * The names an entry's STT_FILE symbols give (latin1), read from its ELF
 * header, section headers, symbol table and string table; undefined if it
 * is not a regular ELF file this can read, or has not exactly one symbol table.
 */
export function fileSymbols(file: string): Bytes[] | undefined {
	// A FIFO or a symlink to one, named like an entry, would hold the link forever: openOwnFile refuses both.
	let fd: number;
	try {
		fd = openOwnFile(file, constants.O_RDONLY);
	} catch {
		return undefined; // gone meanwhile, a symlink, not a regular file, unreadable: it stays behind
	}
	try {
		const at = (offset: number, length: number): Buffer => {
			if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || length > 1 << 28) throw new RangeError('out of range');
			const buf = Buffer.alloc(length);
			if (readSync(fd, buf, 0, length, offset) !== length) throw new RangeError('past the end');
			return buf;
		};
		const head = at(0, 64);
		if (head.readUInt32BE(0) !== 0x7f454c46) return undefined;
		const wide = head[4] === 2;
		const le = head[5] === 1;
		if ((head[4] !== 1 && !wide) || (head[5] !== 1 && head[5] !== 2)) return undefined;
		const u16 = (b: Buffer, o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
		const u32 = (b: Buffer, o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
		const word = (b: Buffer, o: number) => (wide ? Number(le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o)) : u32(b, o));
		const shoff = word(head, wide ? 0x28 : 0x20);
		const shentsize = u16(head, wide ? 0x3a : 0x2e);
		let shnum = u16(head, wide ? 0x3c : 0x30);
		if (shentsize < (wide ? 64 : 40)) return undefined;
		const section = (i: number) => {
			const h = at(shoff + i * shentsize, shentsize);
			return wide
				? { type: u32(h, 4), offset: word(h, 0x18), size: word(h, 0x20), link: u32(h, 0x28), entsize: word(h, 0x38) }
				: { type: u32(h, 4), offset: u32(h, 0x10), size: u32(h, 0x14), link: u32(h, 0x18), entsize: u32(h, 0x24) };
		};
		if (shnum === 0 && shoff !== 0) shnum = section(0).size; // more sections than e_shnum holds
		const tables = [];
		for (let i = 0; i < shnum; i++) {
			const s = section(i);
			if (s.type === 2) tables.push(s); // SHT_SYMTAB
		}
		if (tables.length !== 1) return undefined;
		const [symtab] = tables;
		const entsize = wide ? 24 : 16;
		if (symtab.entsize !== entsize || symtab.link >= shnum) return undefined;
		const strtab = section(symtab.link);
		const strings = at(strtab.offset, strtab.size);
		const symbols = at(symtab.offset, symtab.size);
		const names: Bytes[] = [];
		for (let o = 0; o + entsize <= symbols.length; o += entsize) {
			const info = symbols[o + (wide ? 4 : 12)];
			if ((info & 0xf) !== 4) continue; // STT_FILE
			const start = u32(symbols, o);
			const end = strings.indexOf(0, start);
			if (start >= strings.length || end < 0) return undefined;
			names.push(strings.toString('latin1', start, end));
		}
		return names;
	} catch (error) {
		if (error instanceof RangeError) return undefined;
		throw error;
	} finally {
		closeSync(fd);
	}
}

/** Whether an entry's STT_FILE name may stand for a module: no name where the code generator's name is in doubt. */
const unsure = (source: Bytes) => source === '' || source.includes('\0') || source.endsWith('/');

/**
 * Build dir, which does not exist yet, from its most recently used .incbin
 * sibling. Returns what was done, for LTOCACHE_VERBOSE; never throws, and
 * when it does nothing the link fills dir as it would have anyway.
 * @param sums the sums of the files this link embeds (Guard.sums)
 * @param mine this link's embedders
 */
export function seedFromSibling(dir: string, sums: string[], mine: Embedders, shared: boolean): string | undefined {
	const temp = seedTemp(dir);
	try {
		const release = dirname(dir);
		if (!existsSync(release)) return undefined;
		removeStaleSeeds(release);
		let from: { dir: string; sums: string[]; used: number } | undefined;
		for (const sibling of incbinSiblings(dir)) {
			const meta = readMeta(sibling);
			const used = lastClaim(sibling) ?? 0;
			if (!Array.isArray(meta?.sums) || meta.sums.length !== meta.incbin?.length) continue;
			if (!from || used > from.used) from = { dir: sibling, sums: meta.sums, used };
		}
		if (!from) return undefined;
		const source = basename(from.dir);
		const no = (why: string) => `not seeded from ${source}: ${why}`;
		const known = recordNames(from.dir);
		const records = readRecords(from.dir);
		if (!records?.length) return no('it does not record which modules embed which file');

		// The changed files: on this link's side, and on the sibling's, under the names its links recorded.
		const old = new Set(from.sums);
		const current = new Set(sums);
		const excluded = new Set<Bytes>();
		const exclude = (e: { names: Bytes[]; inline: boolean }) => {
			if (e.inline) return 'a changed file is named by inline asm, which ThinLTO may import into any module';
			for (const name of e.names) {
				if (unsure(name)) return 'a module that embeds a changed file has no usable source file name';
				excluded.add(name);
				excluded.add(name.slice(name.lastIndexOf('/') + 1));
			}
			return undefined;
		};
		let added = 0;
		let gone = 0;
		for (const sum of sums) {
			if (old.has(sum)) continue;
			added++;
			const why = mine[sum] ? exclude(mine[sum]) : 'this link does not say which module embeds a changed file';
			if (why) return no(why);
		}
		for (const sum of from.sums) {
			if (current.has(sum)) continue;
			gone++;
			const recorded = records.filter((r) => r[sum]);
			if (recorded.length === 0) return no('no record says which module embedded a changed file');
			for (const r of recorded) {
				const why = exclude(r[sum]);
				if (why) return no(why);
			}
		}

		mkdirSync(temp, { mode: shared ? 0o2770 : 0o700 });
		/** Each carried entry's inode in the sibling, to see after the rename that it is still there. */
		const carried = new Map<string, number>();
		let left = 0;
		for (const name of readdirSync(from.dir)) {
			const kind = classify(name);
			const file = join(from.dir, name);
			if (kind === 'entry') {
				const names = fileSymbols(file);
				if (!names?.length || names.some((n) => excluded.has(n))) {
					left++;
					continue;
				}
			} else continue;
			try {
				const st = lstatSync(file);
				if (!st.isFile()) continue;
				carried.set(name, st.ino);
				try {
					linkSync(file, join(temp, name));
				} catch {
					copyFileSync(file, join(temp, name));
				}
			} catch (error) {
				if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
				carried.delete(name);
				left++; // pruned by lld meanwhile
			}
		}
		// A link into the sibling records its embedders before lld writes an entry: one that began while the entries
		// were carried shows here, and its modules were not excluded.
		if (recordNames(from.dir) !== known) throw new Error(`a link into ${source} recorded its modules meanwhile`);
		// The carried entries' modules may be no module of this link: what the sibling's links recorded comes
		// along, as far as it concerns the files this directory stands for.
		for (const record of records) {
			const kept = Object.fromEntries(Object.entries(record).filter(([sum]) => current.has(sum)));
			if (Object.keys(kept).length > 0 && recordEmbedders(temp, kept, shared)) throw new Error(`cannot write in ${temp}`);
		}
		try {
			renameSync(temp, dir);
		} catch {
			rmSync(temp, { recursive: true, force: true });
			return `not seeded: another link made ${basename(dir)} meanwhile`;
		}
		// A link into the sibling that failed, or saw a file change while lld ran, removes what it wrote there, and
		// then the same files from the siblings (removeEntriesSince): an entry carried before its removal and gone
		// from the sibling now goes here too; one removed after the rename was found here by that link.
		for (const [name, ino] of carried) {
			if (lstatSync(join(from.dir, name), { throwIfNoEntry: false })?.ino === ino) continue;
			rmSync(join(dir, name), { force: true });
			carried.delete(name);
			left++;
		}
		return `seeded from ${source} (${added} file contents new, ${gone} gone): carried ${carried.size} entries, left ${left} behind`;
	} catch (error) {
		rmSync(temp, { recursive: true, force: true });
		return `not seeded: ${String(error)}`;
	}
}
