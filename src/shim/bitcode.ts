// Reading just enough of an LLVM bitcode file: how many modules it holds,
// which of them are ThinLTO modules (the ones lld looks up in its cache), each
// one's source file name, and every assembly string they carry, module-level
// (`asm(...)` at file scope) and inline (`asm` in a function), and which is
// which, where an `.incbin` would hide, with
// what each inline-asm operand's constraint says it prints; and whether a
// symbol name (the STRTAB block) could break out of its quotes there.
//
// The bitstream container, as LLVM's BitstreamReader reads it: a stream of
// abbreviation ids of the current block's width; blocks that say their
// length in 32-bit words (so anything uninteresting is skipped unread);
// records unabbreviated (VBR6 fields) or laid out by an abbreviation
// (literal, fixed, VBR, array, char6, blob), defined in the block or for
// every block of an id in BLOCKINFO. Written here rather than taken from a
// package: none reads bitstreams, and the shim's start-up pays for every
// module it loads.
import type { Bytes } from '../shared/bytes.js';

export type BitcodeModule = {
	thin: boolean;
	asm: Bytes[];
	/** For each of asm: whether it is inline asm (a constant a function calls), which ThinLTO may import into another module; module-level asm it never imports. */
	inline: boolean[];
	/** MODULE_CODE_SOURCE_FILENAME: the name the code generator gives the object's STT_FILE symbol. */
	source?: Bytes;
};

/**
 * Stands for an inline-asm operand (`$0`, `${1:c}`) in the asm strings the
 * reader returns: what it becomes is known only to the code generator. Not
 * a byte, so no file name or directive can hold it by accident.
 */
export const OPERAND = '\u0100';
/**
 * Stands for a whole operand reference (`${0:c}`, `$1`, `${:uid}`) that
 * prints an integer or a symbol (plus an offset), never a blank or a
 * statement separator: `${:uid}`, and in AT&T syntax an operand whose
 * constraint allows only immediates ("i", "n"). A symbol's name is printed
 * quoted if it needs to be; a file whose names could break out of the
 * quotes (below) is refused.
 */
export const IMMEDIATE = '\u0101';

const BLOCKINFO = 0;
const MODULE_BLOCK = 8;
const CONSTANTS_BLOCK = 11;
const FUNCTION_BLOCK = 12;
const THIN_SUMMARY_BLOCK = 20; // GLOBALVAL_SUMMARY_BLOCK: the module takes part in ThinLTO
const STRTAB_BLOCK = 23; // the symbol names of the modules before it
const MODULE_CODE_ASM = 4;
const MODULE_CODE_SOURCE_FILENAME = 16;
const FUNC_CODE_DECLAREBLOCKS = 1;
const BLOCKINFO_CODE_SETBID = 1;
/** CST_CODE_INLINEASM_OLD, _OLD2, _OLD3: [flags, asmstr, constraints]; CST_CODE_INLINEASM: [fnty, flags, ...]. */
const INLINEASM_AT: Record<number, number> = { 18: 1, 23: 1, 28: 1, 30: 2 };

const END_BLOCK = 0;
const ENTER_SUBBLOCK = 1;
const DEFINE_ABBREV = 2;
const UNABBREV_RECORD = 3;

// Operand encodings as small integers, and field reads that stay within
// 31-bit integers: the shim reads each input once, in a fresh process, so
// this code runs in V8's interpreter, where every float or object made per
// field is an allocation, and garbage collections show in a link's time.
const LITERAL = 0;
const FIXED = 1;
const VBR = 2;
const ARRAY = 3;
const CHAR6 = 4;
const BLOB = 5;
/** An abbreviation operand: its encoding, and the literal's value or the field's width. */
type Op = { kind: number; value: number };

const CHAR6_CODES = [...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._'].map((c) => c.charCodeAt(0));

export class BitcodeError extends Error {}

/** Whether a file's first bytes are bitcode: raw ('BC' 0xC0DE) or in the 0x0B17C0DE wrapper. */
export function isBitcode(head: Buffer): boolean {
	return head.length >= 4 && (head.readUInt32LE(0) === 0xdec04342 || head.readUInt32LE(0) === 0x0b17c0de);
}

class Bits {
	pos: number;
	readonly endBit: number;
	constructor(
		private readonly buf: Buffer,
		start: number,
		end: number,
	) {
		this.pos = start * 8;
		this.endBit = end * 8;
	}

	/** A field of up to 64 bits; past 2^53 it loses precision, which only the record's own contents would notice. */
	read(width: number): number {
		const pos = this.pos;
		if (pos + width > this.endBit) throw new BitcodeError('truncated bitcode');
		const offset = pos & 7;
		const b = this.buf;
		const at = pos >>> 3;
		this.pos = pos + width;
		if (width + offset <= 31) {
			// Most fields (abbreviation ids, VBR6 chunks, 8-bit chars) fit one 32-bit window; >> keeps it a small integer.
			return ((b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >> offset) & ((1 << width) - 1);
		}
		let value = 0;
		for (let got = 0, bit = pos; got < width; ) {
			const shift = bit & 7;
			const take = Math.min(8 - shift, width - got);
			value += ((b[bit >>> 3] >>> shift) & ((1 << take) - 1)) * 2 ** got;
			got += take;
			bit += take;
		}
		return value;
	}

	/**
	 * A VBR field. Past 2^53 a number cannot hold it exactly; then it comes
	 * back as 2^40 plus its exact low 32 bits: still too large for any count,
	 * and a character LLVM wrote sign-extended (a byte above 0x7F in an asm
	 * string is a negative char, 0xFFFFFFFFFFFFFFxx) keeps its low byte.
	 */
	vbr(width: number): number {
		const high = width < 32 ? 1 << (width - 1) : 2 ** (width - 1);
		let piece = this.read(width);
		if (piece < high) return piece; // most fields fit one piece
		let value = piece - high;
		let low = value;
		for (let shift = width - 1; ; shift += width - 1) {
			if (shift > 70) throw new BitcodeError('VBR field too long');
			piece = this.read(width);
			const part = (piece < high ? piece : piece - high) * 2 ** shift; // exact: a power of two times a small integer
			value += part;
			if (shift < 32) low = (low + (part % 2 ** 32)) % 2 ** 32;
			if (piece < high) return value < 2 ** 53 ? value : 2 ** 40 + low;
		}
	}

	/** Skips count VBR6 fields (an unabbreviated record's operands, most of what is read) in one loop, no call per field. */
	skipVbr6(count: number): void {
		const b = this.buf;
		let pos = this.pos;
		for (let i = 0; i < count; pos += 6) {
			if (pos + 6 > this.endBit) throw new BitcodeError('truncated bitcode');
			const at = pos >>> 3;
			if ((((b[at] | (b[at + 1] << 8)) >> (pos & 7)) & 32) === 0) i++; // no continuation bit: the field's last piece
		}
		this.pos = pos;
	}

	/** The bytes from here (a 32-bit boundary) to bit end, as a string to key on. */
	bytes(end: number): string {
		return this.buf.toString('latin1', this.pos >>> 3, end >>> 3);
	}

	skip(width: number): void {
		this.skipTo(this.pos + width);
	}

	align32(): void {
		this.pos += -this.pos & 31;
	}

	skipTo(bit: number): void {
		if (bit > this.endBit) throw new BitcodeError('block runs past the end');
		this.pos = bit;
	}
}

/** The modules of a bitcode file, in order. Throws BitcodeError on anything malformed. */
export function readBitcode(buf: Buffer): BitcodeModule[] {
	let start = 0;
	let end = buf.length;
	if (buf.length >= 20 && buf.readUInt32LE(0) === 0x0b17c0de) {
		start = buf.readUInt32LE(8);
		end = start + buf.readUInt32LE(12);
		if (end > buf.length) throw new BitcodeError('wrapper runs past the end');
	}
	if (end - start < 4 || buf.readUInt32LE(start) !== 0xdec04342) throw new BitcodeError('not bitcode');
	const bits = new Bits(buf, start + 4, end);
	const modules: BitcodeModule[] = [];
	let backslash = false;
	// Top-level blocks are padded to 32 bits; a file may end in zero words.
	while (bits.pos + 32 <= bits.endBit) {
		const id = bits.read(2);
		if (id !== ENTER_SUBBLOCK) {
			if (id === END_BLOCK && bits.read(30) === 0) continue;
			throw new BitcodeError(`abbreviation ${id} at the top level`);
		}
		const block = enter(bits);
		if (block.id === MODULE_BLOCK) {
			const module: BitcodeModule = { thin: false, asm: [], inline: [] };
			readBlock(bits, block, module, new Map());
			modules.push(module);
		} else if (block.id === STRTAB_BLOCK) {
			backslash ||= namesHoldBackslash(bits, block, buf);
		} else {
			bits.skipTo(block.end);
		}
	}
	// LLVM before 20 prints a quoted symbol name with its backslashes as they are (measured with 14, 16 and
	// 19): `x\` comes out as "x\", whose quote is then escaped, and the rest of the name is read as assembly.
	const operand = (text: Bytes) => text.includes(OPERAND) || text.includes(IMMEDIATE);
	if (backslash && modules.some((m) => m.asm.some(operand)))
		throw new BitcodeError('a symbol name holds a backslash, which an inline-asm operand may print as assembly');
	return modules;
}

/** Whether a STRTAB block's blob (the symbol names) holds a backslash; returns at the block's end. */
function namesHoldBackslash(bits: Bits, block: Block, buf: Buffer): boolean {
	const own: Op[][] = [];
	const ops: number[] = [];
	let found = false;
	const blob = (from: number, to: number) => {
		found ||= buf.subarray(from, to).includes(0x5c);
	};
	for (;;) {
		const id = bits.read(block.width);
		if (id === END_BLOCK) {
			bits.align32();
			if (bits.pos !== block.end) throw new BitcodeError('block length does not match its end');
			return found;
		}
		if (id === ENTER_SUBBLOCK) bits.skipTo(enter(bits).end);
		else if (id === DEFINE_ABBREV) own.push(defineAbbrev(bits));
		else if (id === UNABBREV_RECORD) {
			ops.length = 0;
			bits.vbr(6);
			for (let i = bits.vbr(6); i > 0; i--) ops.push(bits.vbr(6));
			found ||= ops.some((c) => (c & 0xff) === 0x5c);
		} else readAbbreviated(bits, own[id - 4], block.id, ops, blob);
	}
}

type Block = { id: number; width: number; end: number };

function enter(bits: Bits): Block {
	const id = bits.vbr(8);
	const width = bits.vbr(4);
	bits.align32();
	const words = bits.read(16) + bits.read(16) * 0x10000;
	if (width < 1 || width > 32) throw new BitcodeError(`abbreviation width ${width}`);
	return { id, width, end: bits.pos + words * 32 };
}

/** Reads a block whose header has been read; returns at its end. blockInfo holds BLOCKINFO's abbreviations by block id. */
function readBlock(bits: Bits, block: Block, module: BitcodeModule, blockInfo: Map<number, Op[][]>): void {
	// BLOCKINFO's abbreviations as the block was entered, then its own: LLVM's order of ids. BLOCKINFO replaces a
	// list when it adds to it (below), so a block already entered keeps the list it started with.
	const inherited = blockInfo.get(block.id) ?? NONE;
	const own: Op[][] = [];
	const ops: number[] = [];
	let infoFor: number | undefined;
	for (;;) {
		const id = bits.read(block.width);
		if (id === END_BLOCK) {
			bits.align32();
			if (bits.pos !== block.end) throw new BitcodeError('block length does not match its end');
			return;
		}
		if (id === ENTER_SUBBLOCK) {
			const sub = enter(bits);
			if (sub.id === THIN_SUMMARY_BLOCK && block.id === MODULE_BLOCK) module.thin = true;
			if (sub.id === BLOCKINFO && blockInfo.size === 0) readFirstBlockInfo(bits, sub, module, blockInfo);
			else if (sub.id === BLOCKINFO || sub.id === CONSTANTS_BLOCK || (sub.id === FUNCTION_BLOCK && block.id === MODULE_BLOCK)) {
				readBlock(bits, sub, module, blockInfo);
			} else {
				bits.skipTo(sub.end);
			}
			continue;
		}
		if (id === DEFINE_ABBREV) {
			const abbrev = defineAbbrev(bits);
			if (block.id !== BLOCKINFO) own.push(abbrev);
			else if (infoFor === undefined) throw new BitcodeError('abbreviation in BLOCKINFO before SETBID');
			else blockInfo.set(infoFor, [...(blockInfo.get(infoFor) ?? NONE), abbrev]);
			continue;
		}
		ops.length = 0;
		const code =
			id === UNABBREV_RECORD
				? readUnabbreviated(bits, block.id, ops)
				: readAbbreviated(bits, id - 4 < inherited.length ? inherited[id - 4] : own[id - 4 - inherited.length], block.id, ops);
		if (block.id === BLOCKINFO && code === BLOCKINFO_CODE_SETBID) infoFor = ops[0];
		else if (block.id === MODULE_BLOCK && code === MODULE_CODE_ASM) {
			module.asm.push(chars(ops, 0, ops.length));
			module.inline.push(false);
		} else if (block.id === MODULE_BLOCK && code === MODULE_CODE_SOURCE_FILENAME) module.source = chars(ops, 0, ops.length);
		else if (block.id === CONSTANTS_BLOCK && code in INLINEASM_AT) {
			const at = INLINEASM_AT[code];
			const text = chars(ops, at + 1, ops[at]);
			// [..., flags, asm length, asm..., constraints length, constraints...]; flags bit 2: Intel dialect (since code 23).
			const end = at + 1 + ops[at];
			const constraints = end < ops.length ? chars(ops, end + 1, ops[end]) : '';
			const att = code === 18 || (ops[at - 1] & 4) === 0;
			module.asm.push(inlineAsm(text, att ? immediates(constraints) : []));
			module.inline.push(true);
		} else if (block.id === FUNCTION_BLOCK && code !== FUNC_CODE_DECLAREBLOCKS) {
			// The function's constants come before its first instruction; the rest of it cannot hold asm.
			bits.skipTo(block.end);
			return;
		}
	}
}

const NONE: Op[][] = [];

/**
 * A module's first BLOCKINFO, read once per distinct block: files one
 * compiler wrote carry the same bytes, and its abbreviation definitions were
 * about half of what reading a small object took. With nothing defined before
 * it, what it yields (the abbreviations, and any asm a block nested in it
 * holds) follows from its bytes and width alone. At most 64 blocks of at most
 * 4 KiB are remembered (LLVM writes about 100 bytes); any other is read each time.
 */
const firstBlockInfos = new Map<string, { info: [number, Op[][]][]; asm: Bytes[]; inline: boolean[] }>();
const REMEMBERED_BITS = 4096 * 8;

function readFirstBlockInfo(bits: Bits, block: Block, module: BitcodeModule, blockInfo: Map<number, Op[][]>): void {
	if (block.end - bits.pos > REMEMBERED_BITS) {
		readBlock(bits, block, module, blockInfo);
		return;
	}
	const key = `${block.width}:${bits.bytes(block.end)}`;
	const known = firstBlockInfos.get(key);
	if (!known) {
		const asm = module.asm.length;
		readBlock(bits, block, module, blockInfo);
		if (firstBlockInfos.size < 64)
			firstBlockInfos.set(key, { info: [...blockInfo], asm: module.asm.slice(asm), inline: module.inline.slice(asm) });
		return;
	}
	bits.skipTo(block.end);
	for (const [id, list] of known.info) blockInfo.set(id, list);
	for (const text of known.asm) module.asm.push(text);
	for (const inline of known.inline) module.inline.push(inline);
}

/** The records whose operands matter; the others are read past without keeping them (most of what is read). */
const wanted = (blockId: number, code: number) =>
	(blockId === BLOCKINFO && code === BLOCKINFO_CODE_SETBID) ||
	(blockId === MODULE_BLOCK && (code === MODULE_CODE_ASM || code === MODULE_CODE_SOURCE_FILENAME)) ||
	(blockId === CONSTANTS_BLOCK && code in INLINEASM_AT);

/** Reads a record without an abbreviation; returns its code, and its operands in ops if wanted. */
function readUnabbreviated(bits: Bits, blockId: number, ops: number[]): number {
	const code = bits.vbr(6);
	const count = bits.vbr(6);
	if (!wanted(blockId, code)) bits.skipVbr6(count);
	else for (let i = 0; i < count; i++) ops.push(bits.vbr(6));
	return code;
}

function chars(ops: number[], from: number, count: number): Bytes {
	if (!(count >= 0) || from + count > ops.length) throw new BitcodeError('asm string runs past its record');
	let text = '';
	for (let i = from; i < from + count; i++) text += String.fromCharCode(ops[i] & 0xff);
	return text;
}

/**
 * Inline asm as the assembler will read it: IR spells a literal `$` as
 * `$$`; any other `$` starts an operand reference (LLVM's
 * EmitGCCInlineAsmStr): `$N`, `${N}`, `${N:m}` (one modifier letter),
 * `${:uid}` and other specials, `$(`, `$|`, `$)`. A reference to an operand
 * in `immediate` (and `${:uid}`) becomes IMMEDIATE, whole; any other `$`
 * becomes OPERAND, the rest of its reference kept.
 */
function inlineAsm(text: Bytes, immediate: boolean[]): Bytes {
	if (!text.includes('$')) return text;
	return text.replace(/\$(?:\$|\{(:uid)\}|(\d+)|\{(\d+)(?::[^}])?\})?/g, (ref: string, uid?: string, bare?: string, braced?: string) => {
		if (ref === '$$') return '$';
		if (uid || immediate[Number(bare ?? braced ?? -1)]) return IMMEDIATE;
		return OPERAND + ref.slice(1);
	});
}

/**
 * Which operands a constraint string allows only immediates: one entry per
 * operand (outputs, inputs, labels; clobbers `~{...}` last and not
 * numbered), `|` between alternatives.
 */
function immediates(constraints: Bytes): boolean[] {
	if (!constraints) return [];
	return constraints
		.split(',')
		.filter((entry) => !entry.startsWith('~'))
		.map((entry) => /^[in]+(?:\|[in]+)*$/.test(entry));
}

function defineAbbrev(bits: Bits): Op[] {
	const count = bits.vbr(5);
	const ops: Op[] = [];
	for (let i = 0; i < count; i++) {
		if (bits.read(1)) {
			ops.push({ kind: LITERAL, value: bits.vbr(8) });
			continue;
		}
		const encoding = bits.read(3);
		if (encoding === FIXED || encoding === VBR) {
			const width = bits.vbr(5);
			// LLVM's MaxChunkSize, 64 before LLVM 9 (32 since); a VBR field needs a continuation bit and one more.
			if (width > 64 || (encoding === VBR && width < 2 && width !== 0)) throw new BitcodeError(`field width ${width}`);
			ops.push({ kind: encoding, value: width });
		} else if (encoding === ARRAY || encoding === CHAR6 || encoding === BLOB) {
			ops.push({ kind: encoding, value: 0 });
		} else {
			throw new BitcodeError(`abbreviation encoding ${encoding}`);
		}
	}
	return ops;
}

function scalar(bits: Bits, op: Op): number {
	switch (op.kind) {
		case LITERAL:
			return op.value;
		case FIXED:
			return op.value === 0 ? 0 : bits.read(op.value);
		case VBR:
			return op.value === 0 ? 0 : bits.vbr(op.value);
		case CHAR6:
			return CHAR6_CODES[bits.read(6)];
		default:
			throw new BitcodeError(`${op.kind === ARRAY ? 'array' : 'blob'} where a scalar belongs`);
	}
}

/**
 * Reads a record laid out by an abbreviation; returns its code, and its
 * operands in ops if wanted: an array expands into its elements, a blob into
 * its bytes. An unwanted array of fixed-width elements, or blob, is skipped
 * in one step.
 */
function readAbbreviated(
	bits: Bits,
	abbrev: Op[] | undefined,
	blockId: number,
	ops: number[],
	blob?: (from: number, to: number) => void,
): number {
	if (!abbrev) throw new BitcodeError('undefined abbreviation');
	if (abbrev.length === 0) throw new BitcodeError('record without a code');
	const code = scalar(bits, abbrev[0]);
	const keep = wanted(blockId, code);
	for (let i = 1; i < abbrev.length; i++) {
		const op = abbrev[i];
		if (op.kind === ARRAY) {
			const element = abbrev[++i];
			if (!element || element.kind === ARRAY || element.kind === BLOB) throw new BitcodeError('array without an element type');
			const count = bits.vbr(6);
			if (!keep && (element.kind === FIXED || element.kind === CHAR6)) bits.skip(count * (element.kind === CHAR6 ? 6 : element.value));
			else if (!keep && element.kind === LITERAL) continue;
			else
				for (let j = 0; j < count; j++) {
					const value = scalar(bits, element);
					if (keep) ops.push(value);
				}
		} else if (op.kind === BLOB) {
			const count = bits.vbr(6);
			bits.align32();
			if (keep) for (let j = 0; j < count; j++) ops.push(bits.read(8));
			else {
				blob?.(bits.pos >>> 3, (bits.pos >>> 3) + count);
				bits.skip(count * 8);
			}
			bits.align32();
		} else {
			const value = scalar(bits, op);
			if (keep) ops.push(value);
		}
	}
	return code;
}
