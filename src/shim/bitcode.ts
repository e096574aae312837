// Reading just enough of an LLVM bitcode file: how many modules it holds,
// which of them are ThinLTO modules (the ones lld looks up in its cache), and
// every assembly string they carry, module-level (`asm(...)` at file scope)
// and inline (`asm` in a function), where an `.incbin` would hide.
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

export type BitcodeModule = { thin: boolean; asm: Bytes[] };

const BLOCKINFO = 0;
const MODULE_BLOCK = 8;
const CONSTANTS_BLOCK = 11;
const FUNCTION_BLOCK = 12;
const THIN_SUMMARY_BLOCK = 20; // GLOBALVAL_SUMMARY_BLOCK: the module takes part in ThinLTO
const MODULE_CODE_ASM = 4;
const FUNC_CODE_DECLAREBLOCKS = 1;
const BLOCKINFO_CODE_SETBID = 1;
/** CST_CODE_INLINEASM_OLD, _OLD2, _OLD3: [flags, asmstr, constraints]; CST_CODE_INLINEASM: [fnty, flags, ...]. */
const INLINEASM_AT: Record<number, number> = { 18: 1, 23: 1, 28: 1, 30: 2 };

const END_BLOCK = 0;
const ENTER_SUBBLOCK = 1;
const DEFINE_ABBREV = 2;
const UNABBREV_RECORD = 3;

type Op = { kind: 'literal'; value: number } | { kind: 'fixed' | 'vbr'; width: number } | { kind: 'array' | 'char6' | 'blob' };

const CHAR6 = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._';

export class BitcodeError extends Error {}

/** Whether a file's first bytes are bitcode: raw ('BC' 0xC0DE) or in the 0x0B17C0DE wrapper. */
export function isBitcode(head: Buffer): boolean {
	return head.length >= 4 && (head.readUInt32LE(0) === 0xdec04342 || head.readUInt32LE(0) === 0x0b17c0de);
}

class Bits {
	pos: number;
	constructor(
		private readonly buf: Buffer,
		start: number,
		readonly end: number,
	) {
		this.pos = start * 8;
	}

	read(width: number): number {
		if (this.pos + width > this.end * 8) throw new BitcodeError('truncated bitcode');
		const offset = this.pos & 7;
		if (width + offset <= 31) {
			// Most fields (abbreviation ids, VBR6 chunks, 8-bit chars) fit one 32-bit window: integer ops only.
			const at = this.pos >>> 3;
			const b = this.buf;
			const window = b[at] | 0 | ((b[at + 1] | 0) << 8) | ((b[at + 2] | 0) << 16) | ((b[at + 3] | 0) << 24);
			this.pos += width;
			return (window >>> offset) & ((1 << width) - 1);
		}
		let value = 0;
		for (let got = 0; got < width; ) {
			const bit = this.pos & 7;
			const take = Math.min(8 - bit, width - got);
			value += ((this.buf[this.pos >>> 3] >>> bit) & ((1 << take) - 1)) * 2 ** got;
			got += take;
			this.pos += take;
		}
		return value;
	}

	/** A VBR field; values past 2^53 lose precision, which only the record's own contents would notice. */
	vbr(width: number): number {
		const high = 2 ** (width - 1);
		let piece = this.read(width);
		if (piece < high) return piece; // most fields fit one piece
		let value = piece - high;
		for (let shift = width - 1; ; shift += width - 1) {
			if (shift > 70) throw new BitcodeError('VBR field too long');
			piece = this.read(width);
			value += (piece < high ? piece : piece - high) * 2 ** shift;
			if (piece < high) return value;
		}
	}

	align32(): void {
		this.pos = Math.ceil(this.pos / 32) * 32;
	}

	skipTo(bit: number): void {
		if (bit > this.end * 8) throw new BitcodeError('block runs past the end');
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
	// Top-level blocks are padded to 32 bits; a file may end in zero words.
	while (bits.pos + 32 <= bits.end * 8) {
		const id = bits.read(2);
		if (id !== ENTER_SUBBLOCK) {
			if (id === END_BLOCK && bits.read(30) === 0) continue;
			throw new BitcodeError(`abbreviation ${id} at the top level`);
		}
		const block = enter(bits);
		if (block.id === MODULE_BLOCK) {
			const module: BitcodeModule = { thin: false, asm: [] };
			readBlock(bits, block, module, new Map());
			modules.push(module);
		} else {
			bits.skipTo(block.end);
		}
	}
	return modules;
}

type Block = { id: number; width: number; end: number };

function enter(bits: Bits): Block {
	const id = bits.vbr(8);
	const width = bits.vbr(4);
	bits.align32();
	const words = bits.read(32);
	if (width < 1 || width > 32) throw new BitcodeError(`abbreviation width ${width}`);
	return { id, width, end: bits.pos + words * 32 };
}

/** Reads a block whose header has been read; returns at its end. blockInfo holds BLOCKINFO's abbreviations by block id. */
function readBlock(bits: Bits, block: Block, module: BitcodeModule, blockInfo: Map<number, Op[][]>): void {
	const abbrevs: Op[][] = [...(blockInfo.get(block.id) ?? [])];
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
			if (sub.id === BLOCKINFO || sub.id === CONSTANTS_BLOCK || (sub.id === FUNCTION_BLOCK && block.id === MODULE_BLOCK)) {
				readBlock(bits, sub, module, blockInfo);
			} else {
				bits.skipTo(sub.end);
			}
			continue;
		}
		if (id === DEFINE_ABBREV) {
			const abbrev = defineAbbrev(bits);
			if (block.id !== BLOCKINFO) abbrevs.push(abbrev);
			else if (infoFor === undefined) throw new BitcodeError('abbreviation in BLOCKINFO before SETBID');
			else blockInfo.set(infoFor, [...(blockInfo.get(infoFor) ?? []), abbrev]);
			continue;
		}
		const record = id === UNABBREV_RECORD ? readUnabbreviated(bits, block.id) : readAbbreviated(bits, abbrevs[id - 4], block.id);
		const { code, ops } = record;
		if (block.id === BLOCKINFO && code === BLOCKINFO_CODE_SETBID) infoFor = ops?.[0];
		else if (block.id === MODULE_BLOCK && code === MODULE_CODE_ASM && ops) module.asm.push(chars(ops, 0, ops.length));
		else if (block.id === CONSTANTS_BLOCK && code in INLINEASM_AT && ops) {
			const at = INLINEASM_AT[code];
			module.asm.push(chars(ops, at + 1, ops[at]));
		} else if (block.id === FUNCTION_BLOCK && code !== FUNC_CODE_DECLAREBLOCKS) {
			// The function's constants come before its first instruction; the rest of it cannot hold asm.
			bits.skipTo(block.end);
			return;
		}
	}
}

/** The records whose operands matter; the others are read past without keeping them (most of what is read). */
const wanted = (blockId: number, code: number) =>
	(blockId === BLOCKINFO && code === BLOCKINFO_CODE_SETBID) ||
	(blockId === MODULE_BLOCK && code === MODULE_CODE_ASM) ||
	(blockId === CONSTANTS_BLOCK && code in INLINEASM_AT);

type RecordRead = { code: number; ops?: number[] };

function readUnabbreviated(bits: Bits, blockId: number): RecordRead {
	const code = bits.vbr(6);
	const count = bits.vbr(6);
	if (!wanted(blockId, code)) {
		for (let i = 0; i < count; i++) bits.vbr(6);
		return { code };
	}
	const ops: number[] = [];
	for (let i = 0; i < count; i++) ops.push(bits.vbr(6));
	return { code, ops };
}

function chars(ops: number[], from: number, count: number): Bytes {
	if (!(count >= 0) || from + count > ops.length) throw new BitcodeError('asm string runs past its record');
	let text = '';
	for (let i = from; i < from + count; i++) text += String.fromCharCode(ops[i] & 0xff);
	return text;
}

function defineAbbrev(bits: Bits): Op[] {
	const count = bits.vbr(5);
	const ops: Op[] = [];
	for (let i = 0; i < count; i++) {
		if (bits.read(1)) {
			ops.push({ kind: 'literal', value: bits.vbr(8) });
			continue;
		}
		const encoding = bits.read(3);
		if (encoding === 1 || encoding === 2) {
			const width = bits.vbr(5);
			if (width > 64 || (encoding === 2 && width < 2 && width !== 0)) throw new BitcodeError(`field width ${width}`);
			ops.push({ kind: encoding === 1 ? 'fixed' : 'vbr', width });
		} else if (encoding >= 3 && encoding <= 5) {
			ops.push({ kind: (['array', 'char6', 'blob'] as const)[encoding - 3] });
		} else {
			throw new BitcodeError(`abbreviation encoding ${encoding}`);
		}
	}
	return ops;
}

function scalar(bits: Bits, op: Op): number {
	switch (op.kind) {
		case 'literal':
			return op.value;
		case 'fixed':
			return op.width > 32 ? bits.read(32) + bits.read(op.width - 32) * 2 ** 32 : bits.read(op.width);
		case 'vbr':
			return op.width === 0 ? 0 : bits.vbr(op.width);
		case 'char6':
			return CHAR6.charCodeAt(bits.read(6));
		default:
			throw new BitcodeError(`${op.kind} where a scalar belongs`);
	}
}

/** The record's code and, if wanted, operands; an array expands into its elements, a blob into its bytes. */
function readAbbreviated(bits: Bits, abbrev: Op[] | undefined, blockId: number): RecordRead {
	if (!abbrev) throw new BitcodeError('undefined abbreviation');
	let code: number | undefined;
	let ops: number[] | undefined;
	const add = (value: number) => {
		if (code === undefined) {
			code = value;
			if (wanted(blockId, code)) ops = [];
		} else {
			ops?.push(value);
		}
	};
	for (let i = 0; i < abbrev.length; i++) {
		const op = abbrev[i];
		if (op.kind === 'array') {
			const element = abbrev[++i];
			if (!element || element.kind === 'array' || element.kind === 'blob') throw new BitcodeError('array without an element type');
			const count = bits.vbr(6);
			for (let j = 0; j < count; j++) add(scalar(bits, element));
		} else if (op.kind === 'blob') {
			const count = bits.vbr(6);
			bits.align32();
			for (let j = 0; j < count; j++) add(bits.read(8));
			bits.align32();
		} else {
			add(scalar(bits, op));
		}
	}
	if (code === undefined) throw new BitcodeError('record without a code');
	return { code, ops };
}
