// The `.incbin` guard. lld's cache key covers a module's bitcode, not the
// files its assembly pulls in with `.incbin` (or `.include`), so a changed
// blob would come back stale from the cache: the reason Linux dropped its
// cache. The contents of every such file go into the name of the directory
// ltocache chooses, so a changed file means a fresh directory.
//
// The assembler of lld's code generator resolves those names against the
// link's working directory (measured with lld 14 and 16), and so does this,
// through the file system (`link/../x` is where the symlink points, not
// `x`). It errs on the safe side: a directive in a comment or a disabled
// .if still counts. Where it cannot know what the assembler will read, the
// link gets no cache:
// - a file that cannot be read, that is not a regular file (a FIFO's data
//   would be lld's), or that changes while it is read;
// - a statement whose directive a macro or an inline-asm operand spells
//   (`.inc\()bin`, `.\d` inside `.irp d,incbin`, `${0}`): only the
//   directive position matters, so the kernel's macros, whose arguments
//   are operands, stay cached, and so do labels made of operands that print
//   an integer or a symbol (`%c0:`, `loop%=:`);
// - a name with a backslash while the link defines macros (`"\image"` is a
//   macro argument), or with an inline-asm operand in it;
// - `.altmacro`, under which a macro argument needs no backslash.
//
// The contents are hashed as they are read, in bounded memory; an
// `.include`d file, which the assembler parses, is also scanned.

import type { Hash } from 'node:crypto';
import { type Bytes, bytesToText, inDir } from '../shared/bytes.js';
import { type Read, readInto } from '../shared/identity.js';
import { errorCode } from '../shared/keydir.js';
import { IMMEDIATE, OPERAND } from './bitcode.js';

export type Guard = {
	/** Short hash of every file's name and contents, in order; undefined when there are none. */
	hash?: string;
	files: Bytes[];
	/** For each of files: a short hash of its name and contents, which the directory's metadata records so a later link can tell which files changed. */
	sums: string[];
	/** The files an asm string names, and those the files it .includes name in turn; undefined for one that names none. */
	reach: (text: Bytes) => Bytes[] | undefined;
	/** Each file's identity (device, inode, size, nanosecond mtime and ctime) when it was read, to tell after the link whether it changed. */
	identity?: string;
	/** Why the link cannot have a cache. */
	problem?: string;
};

const DIRECTIVE = /\.(incbin|include)\b/gi;
const MAX_INCLUDE_DEPTH = 16;
/** An .include'd file is assembly the guard must scan whole; past this it is not worth the memory. */
const MAX_INCLUDE_BYTES = 16 * 1024 * 1024;
/** Constructs that substitute text into the statements they expand. */
const MACRO = /\.(macro|irpc?|rept)\b/i;
const ALTMACRO = /\.altmacro\b/i;

/**
 * A string's contents as LLVM's AsmParser::parseEscapedString decodes them
 * (the same in LLVM 14 to 22, measured with llvm-mc): \b \f \n \r \t \" \\,
 * one to three octal digits (above 255 an error), and \x or \X with every
 * hex digit that follows, of which the low byte counts. Any other escape is
 * an error; undefined then: the assembler reads no file for that directive.
 */
export function asmString(text: Bytes): Bytes | undefined {
	if (!text.includes('\\')) return text;
	let out = '';
	for (let i = 0; i < text.length; i++) {
		if (text[i] !== '\\') {
			out += text[i];
			continue;
		}
		const e = text[++i];
		if (e === 'x' || e === 'X') {
			const digits = /^[0-9a-fA-F]+/.exec(text.slice(i + 1))?.[0];
			if (!digits) return undefined;
			i += digits.length;
			out += String.fromCharCode(Number.parseInt(digits.slice(-2), 16));
		} else if (e >= '0' && e <= '7') {
			const digits = /^[0-7]{1,3}/.exec(text.slice(i))![0];
			i += digits.length - 1;
			const value = Number.parseInt(digits, 8);
			if (value > 0xff) return undefined;
			out += String.fromCharCode(value);
		} else {
			const plain = ESCAPES[e];
			if (plain === undefined) return undefined;
			out += plain;
		}
	}
	return out;
}
const ESCAPES: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', '"': '"', '\\': '\\' };

/**
 * The first token of a statement that is not a label, where a directive
 * stands, if a macro argument or an operand helps spell it (or a label
 * before it). `\@` (the expansion counter) is digits, and `\()` only joins
 * what stands either side, so in a label neither can make a directive; nor
 * can an operand the bitcode reader marked IMMEDIATE (an integer, or a
 * symbol with its offset: `%c0:` in Linux's annotate_unreachable(),
 * `loop%=:`), which prints no blank or separator, so the statement stays a
 * label. Anywhere else such an operand could print a symbol named `.incbin`.
 */
function spelledDirective(text: Bytes): string | undefined {
	if (!text.includes('\\') && !text.includes(OPERAND) && !text.includes(IMMEDIATE)) return undefined; // most asm: nothing can spell anything
	for (const statement of text.split(/[\n;]/)) {
		let rest = statement;
		for (;;) {
			const match = /^[ \t\r\f\v]*([^ \t\r\f\v"]*)/.exec(rest)!;
			const token = match[1];
			const label = token.length > 1 && token.endsWith(':');
			let spelled = token.replaceAll('\\@', '');
			if (label) spelled = spelled.replaceAll('\\()', '').replaceAll(IMMEDIATE, '');
			if (spelled.includes('\\') || spelled.includes(OPERAND) || spelled.includes(IMMEDIATE)) return shown(token);
			if (!label) break;
			rest = rest.slice(match[0].length);
		}
	}
	return undefined;
}

/** Asm text for a message: operands as `$`. */
const shown = (text: Bytes) => bytesToText(text.replaceAll(OPERAND, '$').replaceAll(IMMEDIATE, '$'));

/** One file's part of the guard's hash: its name and contents, delimited. */
function hashFile(hash: Hash, file: Bytes, keep: boolean): Read {
	hash.update(`${file.length}:${file}:`, 'latin1');
	const read = readInto(hash, file, keep, MAX_INCLUDE_BYTES);
	hash.update(`:${read.size};`, 'latin1');
	return read;
}

/** Feeds two hashes at once: the guard's, and the file's own. */
function both(a: Hash, b: Hash): Hash {
	const tee = {
		update(data: Buffer | string, encoding?: BufferEncoding) {
			a.update(data as string, encoding!);
			b.update(data as string, encoding!);
			return tee;
		},
	};
	return tee as unknown as Hash;
}

/**
 * The guard's hash and identity of the files it named, read again: after
 * the link, whether they are still what the directory's name stands for.
 * Empty if one cannot be read.
 */
export async function rehash(files: Bytes[]): Promise<Pick<Guard, 'hash' | 'identity'>> {
	if (files.length === 0) return {};
	const hash = (process.getBuiltinModule?.('node:crypto') ?? (await import('node:crypto'))).createHash('sha256');
	try {
		const identity = files.map((file) => hashFile(hash, file, false).identity).join('\n');
		return { hash: hash.digest('hex').slice(0, 16), identity };
	} catch {
		return {};
	}
}

/**
 * Whether the guard has anything to say about an asm string. The others
 * name no file, spell no directive and define no macro: the inputs reader
 * keeps only these (a kernel's vmlinux.o carries thousands of asm strings,
 * a few dozen of them macros).
 */
export const concernsGuard = (text: Bytes): boolean =>
	/inc(?:bin|lude)|macro|\.irp|\.rept/i.test(text) || spelledDirective(text) !== undefined;

export async function incbinGuard(asm: Bytes[], cwd: Bytes): Promise<Guard> {
	const files: Bytes[] = [];
	const sums: string[] = [];
	/** The files each asm string, and each .include'd file, names itself. */
	const byText = new Map<Bytes, Bytes[]>();
	const byInclude = new Map<Bytes, Bytes[]>();
	const listed = (map: Map<Bytes, Bytes[]>, key: Bytes) => map.get(key) ?? map.set(key, []).get(key)!;
	const reach = (text: Bytes) => {
		const direct = byText.get(text);
		if (!direct?.length) return undefined;
		const seen = new Set<Bytes>();
		const walk = (list: Bytes[]) => {
			for (const file of list) {
				if (seen.has(file)) continue;
				seen.add(file);
				walk(byInclude.get(file) ?? []);
			}
		};
		walk(direct);
		return [...seen];
	};
	const refuse = (problem: string): Guard => ({ files, sums, reach, problem });
	// Loaded only when there is something to hash: node:crypto costs every link ~3 ms to load.
	let crypto: typeof import('node:crypto') | undefined;
	let hash: Hash | undefined;
	const identities: string[] = [];
	const included = new Set<Bytes>();
	let macros = false;
	let backslashName: string | undefined;

	/** @param names where the files text names go */
	const visit = async (text: Bytes, depth: number, names: Bytes[]): Promise<string | undefined> => {
		if (ALTMACRO.test(text)) return 'the assembler is put in alternate macro mode (.altmacro)';
		macros ||= MACRO.test(text);
		const spelled = spelledDirective(text);
		if (spelled !== undefined) return `a directive spelled by a macro argument or an operand (${spelled})`;
		for (const match of text.matchAll(DIRECTIVE)) {
			const rest = text.slice(match.index + match[0].length);
			const quoted = /^[ \t]*"((?:[^"\\\n]|\\.)*)"/s.exec(rest);
			if (!quoted) return `an ${match[0]} whose file is not a plain string (${bytesToText(rest.split('\n')[0].trim())})`;
			if (quoted[1].includes(OPERAND) || quoted[1].includes(IMMEDIATE)) return `an ${match[0]} whose file names an inline-asm operand`;
			if (quoted[1].includes('\\')) backslashName ??= `${match[0]} "${bytesToText(quoted[1])}"`;
			const name = asmString(quoted[1]);
			if (name === undefined) continue; // an escape the assembler rejects: it reads no file there
			const file = inDir(cwd, name);
			if (!names.includes(file)) names.push(file);
			const include = match[1].toLowerCase() === 'include';
			// A file hashed as .incbin data and .include'd too is scanned once more: what it names is read as well.
			const again = files.includes(file);
			if (again && (!include || included.has(file))) continue;
			if (include) included.add(file);
			crypto ??= process.getBuiltinModule?.('node:crypto') ?? (await import('node:crypto'));
			hash ??= crypto.createHash('sha256');
			const own = crypto.createHash('sha256');
			let read: Read;
			try {
				// Read again only to be scanned: its contents are in the guard's hash once, as rehash puts them after the link.
				read = hashFile(again ? own : both(hash, own), file, include);
			} catch (error) {
				const why = error instanceof Error && !('code' in error) ? error.message : errorCode(error);
				return `cannot read ${bytesToText(file)}, named by ${match[0]} (${why})`;
			}
			if (!again) {
				files.push(file);
				sums.push(own.digest('hex').slice(0, 16));
				identities.push(read.identity);
			} else if (identities[files.indexOf(file)] !== read.identity) return `${bytesToText(file)} changed while it was read`;
			if (read.text !== undefined) {
				if (depth >= MAX_INCLUDE_DEPTH) return `.include nested deeper than ${MAX_INCLUDE_DEPTH}`;
				const inner = await visit(read.text, depth + 1, listed(byInclude, file));
				if (inner) return inner;
			}
		}
		return undefined;
	};
	for (const text of asm) {
		const problem = await visit(text, 0, listed(byText, text));
		if (problem) return refuse(problem);
	}
	// A macro may be defined after the statement that uses it is read here, so this waits for every text.
	if (macros && backslashName) return refuse(`a macro argument may name the file of ${backslashName}`);
	if (!hash) return { files, sums, reach };
	return { files, sums, reach, hash: hash.digest('hex').slice(0, 16), identity: identities.join('\n') };
}
