// The bitcode a link reads: its input files, the members of its archives
// (regular and thin, like the built-in.a Kbuild links vmlinux from), and
// libraries named with -l, found the way lld searches -L. What is not bitcode
// (ELF objects, shared libraries, linker scripts) is passed over unread
// beyond its first bytes.
import { closeSync, fstatSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { type Bytes, bytesToBuffer, bytesToText } from '../shared/bytes.js';
import { errorCode } from '../shared/keydir.js';
import { BitcodeError, isBitcode, readBitcode } from './bitcode.js';

export type Inputs = {
	/** ThinLTO modules: one cache lookup each. */
	modules: number;
	/** Every assembly string in every module, module-level and inline. */
	asm: Bytes[];
	/** A bitcode input that could not be read through, so what it holds is unknown. */
	problem?: string;
};

/** Options whose value is the next word (lld accepts one or two dashes); their values are not inputs. */
const SEPARATE = new Set(
	(
		'o output m T script L library-path l library e entry u undefined y trace-symbol z F filter f auxiliary h soname R rpath ' +
		'just-symbols b format dynamic-linker I sysroot version-script dynamic-list Map defsym wrap exclude-libs hash-style plugin ' +
		'plugin-opt mllvm image-base init fini retain-symbols-file symbol-ordering-file call-graph-ordering-file dependency-file ' +
		'error-limit oformat undefined-glob export-dynamic-symbol export-dynamic-symbol-list require-defined why-extract reproduce ' +
		'print-archive-stats Ttext Tdata Tbss Ttext-segment section-start package-metadata emulation'
	).split(' '),
);
/** One-letter options that also take their value joined (-lfoo, -L/dir). */
const JOINED = new Set('oTLlmeuyzFfhRbI'.split(''));

type Option = { name: string; value?: Bytes };

/** Splits one word of argv into an option and its joined value; undefined for an input file. */
function option(word: Bytes): Option | undefined {
	if (!word.startsWith('-') || word === '-') return undefined;
	const bare = word.replace(/^--?/, '');
	const eq = bare.indexOf('=');
	// name=value for long options only: for a one-letter one the = belongs to the value (-L=/usr is sysroot-relative).
	if (eq > 1 && SEPARATE.has(bare.slice(0, eq))) return { name: bare.slice(0, eq), value: bare.slice(eq + 1) };
	if (SEPARATE.has(bare) || word.startsWith('--')) return { name: bare };
	if (JOINED.has(bare[0])) return { name: bare[0], value: bare.slice(1) };
	return { name: bare };
}

/**
 * What bitcode the link reads. words: argv with response files expanded.
 * Every archive member counts, also those of an archive lld searches
 * lazily and may not take: a member's bitcode is read either way (the asm
 * guard must not miss one), and the module count says so in its docs.
 */
export function readInputs(words: Bytes[], cwd: string): Inputs {
	const inputs: Inputs = { modules: 0, asm: [] };
	const files: Bytes[] = [];
	const libDirs: Bytes[] = [];
	let sysroot: Bytes = '';
	const libraries: { name: Bytes; isStatic: boolean }[] = [];
	let isStatic = false;
	for (let i = 0; i < words.length; i++) {
		const opt = option(words[i]);
		if (!opt) {
			files.push(words[i]);
			continue;
		}
		let value = opt.value;
		if (value === undefined && SEPARATE.has(opt.name)) value = words[++i];
		if (value === undefined) {
			if (['Bstatic', 'static', 'dn', 'non_shared'].includes(opt.name)) isStatic = true;
			else if (['Bdynamic', 'dy', 'call_shared'].includes(opt.name)) isStatic = false;
			continue;
		}
		if (opt.name === 'L' || opt.name === 'library-path') libDirs.push(value);
		else if (opt.name === 'sysroot') sysroot = value;
		else if (opt.name === 'l' || opt.name === 'library') libraries.push({ name: value, isStatic });
	}
	// lld searches every -L for every -l, wherever they stand on the command line.
	const dirs = libDirs.map((d) => (d.startsWith('=') ? sysroot + d.slice(1) : d));
	for (const lib of libraries) {
		const found = findLibrary(lib.name, lib.isStatic, dirs, cwd);
		if (found) files.push(found);
	}
	for (const file of files) readInput(resolve(cwd, file), inputs);
	return inputs;
}

function findLibrary(name: Bytes, isStatic: boolean, dirs: Bytes[], cwd: string): Bytes | undefined {
	const candidates = name.startsWith(':') ? [name.slice(1)] : [...(isStatic ? [] : [`lib${name}.so`]), `lib${name}.a`];
	for (const dir of dirs) {
		for (const candidate of candidates) {
			const file = resolve(cwd, dir, candidate);
			if (statSync(bytesToBuffer(file), { throwIfNoEntry: false })?.isFile()) return file;
		}
	}
	return undefined;
}

function readInput(file: Bytes, inputs: Inputs): void {
	let fd: number;
	try {
		// Only regular files: opening a FIFO (a process substitution) could block, and reading it would take lld's input.
		if (!statSync(bytesToBuffer(file)).isFile()) return;
		fd = openSync(bytesToBuffer(file), 'r');
	} catch {
		return; // lld says what is wrong with it
	}
	try {
		const head = Buffer.alloc(8);
		readSync(fd, head, 0, 8, 0);
		const magic = head.toString('latin1');
		if (isBitcode(head)) addBitcode(readFileSync(fd), file, inputs);
		else if (magic === '!<arch>\n' || magic === '!<thin>\n') readArchive(fd, file, magic === '!<thin>\n', inputs);
	} catch (error) {
		inputs.problem ??= `cannot read ${bytesToText(file)} (${errorCode(error)})`;
	} finally {
		closeSync(fd);
	}
}

function addBitcode(data: Buffer, name: Bytes, inputs: Inputs): void {
	try {
		for (const module of readBitcode(data)) {
			if (module.thin) inputs.modules++;
			inputs.asm.push(...module.asm);
		}
	} catch (error) {
		if (!(error instanceof BitcodeError)) throw error;
		inputs.problem ??= `cannot read the bitcode of ${bytesToText(name)} (${error.message})`;
	}
}

/**
 * A System V (GNU) archive: 60-byte member headers, "//" holding long names
 * ("/<offset>"), "/" and "/SYM64/" symbol tables; BSD "#1/<n>" names inline.
 * A thin archive stores only those tables; its members are files named
 * relative to the archive.
 */
function readArchive(fd: number, file: Bytes, thin: boolean, inputs: Inputs): void {
	const size = fstatSync(fd).size;
	const header = Buffer.alloc(60);
	let longNames = '';
	for (let at = 8; at + 60 <= size; ) {
		readSync(fd, header, 0, 60, at);
		if (header.toString('latin1', 58, 60) !== '`\n') throw new Error(`bad archive member header at ${at}`);
		const raw = header.toString('latin1', 0, 16).trimEnd();
		const length = Number.parseInt(header.toString('latin1', 48, 58).trim(), 10);
		if (!Number.isSafeInteger(length) || length < 0) throw new Error(`bad archive member size at ${at}`);
		const data = at + 60;
		const tables = raw === '/' || raw === '/SYM64/' || raw === '//';
		const stored = !thin || tables; // a thin archive's members are elsewhere
		at = data + (stored ? length + (length % 2) : 0);
		if (raw === '//') {
			longNames = read(fd, data, length).toString('latin1');
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
			if (isBitcode(read(fd, offset, Math.min(4, length2)))) addBitcode(read(fd, offset, length2), `${file}(${raw})`, inputs);
			continue;
		}
		let name = raw;
		if (raw.startsWith('/') && /^\/\d+$/.test(raw)) {
			const start = Number(raw.slice(1));
			const end = longNames.indexOf('\n', start);
			name = longNames.slice(start, end < 0 ? undefined : end);
		}
		if (name.endsWith('/')) name = name.slice(0, -1);
		readInput(resolve(dirname(file), name), inputs);
	}
}

function read(fd: number, position: number, length: number): Buffer {
	const buf = Buffer.alloc(length);
	for (let done = 0; done < length; ) {
		const n = readSync(fd, buf, done, length - done, position + done);
		if (n === 0) throw new Error('archive ends inside a member');
		done += n;
	}
	return buf;
}
