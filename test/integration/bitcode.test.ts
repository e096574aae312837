// The bitcode reader against llvm-bcanalyzer -dump as the oracle: for
// generated C sources with module-level asm, inline asm in functions and
// data around them, compiled to ThinLTO objects by each tested clang (14,
// 16, 19, 22: Debian's /usr/lib/llvm-N), the reader finds every module, tells ThinLTO modules from others, and returns
// exactly the asm strings the dump shows, and the ones the source wrote.
// On bitstreams written here (BitWriter), what no compiler writes: a second
// BLOCKINFO, asm nested in one, one block read under two widths; the reader
// remembers a module's first BLOCKINFO, and each file must still read as if
// it were the first.
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TESTED_LLD } from '../../src/cli/commands/doctor.js';
import { BitcodeError, type BitcodeModule, IMMEDIATE, OPERAND, readBitcode } from '../../src/shim/bitcode.js';
import { describeIf, llvmBin, onPath, scratchRoot } from '../helpers/tools.js';

const scratch = scratchRoot();
const RUNS = 25;

/** Asm text that clang passes through as written: no %, $, {, |, } (operand and dialect syntax). */
const asmText = fc
	.array(fc.constantFrom(...'abcxyz019 .,:;#_-+*/()[]<>=!?@~^&\'\t\\"\n'.split('')), { minLength: 1, maxLength: 40 })
	.map((parts) => parts.join(''));
const cString = (s: string) =>
	`"${s
		.replace(/[\\"]/g, (c) => `\\${c}`)
		.replace(/\n/g, '\\n')
		.replace(/\t/g, '\\t')}"`;

/**
 * Asm text that clang 19 and later also accept as module asm, which they
 * assemble at compile time (for the symbol table) and fail on where 14 and
 * 16 only warn: every line an assembler comment.
 */
const commentText = asmText.map((text) => text.replace(/^/gm, '#'));

type Program = { moduleAsm: string[]; functions: { asm: string[]; data: number }[]; table: number[] };
const program = (moduleText: fc.Arbitrary<string>): fc.Arbitrary<Program> =>
	fc.record({
		moduleAsm: fc.array(moduleText, { maxLength: 3 }),
		functions: fc.array(fc.record({ asm: fc.array(asmText, { maxLength: 3 }), data: fc.nat(1000) }), { maxLength: 4 }),
		table: fc.array(fc.nat(), { maxLength: 20 }),
	});

function source(p: Program): string {
	return [
		...p.moduleAsm.map((a) => `__asm__(${cString(a)});`),
		`int table[] = { ${[...p.table, 0].join(', ')} };`,
		...p.functions.map(
			(f, i) =>
				`int f${i}(int x) { ${f.asm.map((a) => `__asm__ volatile(${cString(a)} ::: "memory");`).join(' ')} return x * ${f.data} + table[x & 3]; }`,
		),
	].join('\n');
}

/** Every ASM and INLINEASM record of the dump, as its operands. */
function dumped(dump: string): { asm: number[][]; inline: number[][]; modules: number; thin: number } {
	const ops = (line: string) => [...line.matchAll(/ op\d+=(-?\d+)/g)].map((m) => Number(m[1]));
	const lines = dump.split('\n');
	return {
		asm: lines.filter((l) => /^\s*<ASM[ />]/.test(l)).map(ops),
		inline: lines.filter((l) => /^\s*<INLINEASM[ />]/.test(l)).map(ops),
		modules: lines.filter((l) => /^<MODULE_BLOCK/.test(l)).length,
		thin: lines.filter((l) => /^\s{2}<GLOBALVAL_SUMMARY_BLOCK/.test(l)).length,
	};
}

/** A small source with module and inline asm, and what the reader finds in its object. */
const SMALL = 'asm(".globl g\\ng:"); int f(int x) { asm volatile("nop" ::: "memory"); return x + 1; }';
const SMALL_MODULES = [{ thin: true, asm: ['.globl g\ng:\n', 'nop'], inline: [false, true] }];

const codes = (s: string) => [...s].map((c) => c.charCodeAt(0));
/** Whether needle occurs in haystack as one run. */
const contains = (haystack: number[], needle: number[]) =>
	haystack.some((_, i) => needle.every((n, j) => haystack[i + j] === n) && i + needle.length <= haystack.length);

describeIf(Boolean(onPath('clang')), 'clang')('the bitcode reader on damaged files', () => {
	it('reads a file cut short as the modules before the cut or refuses it, and answers or throws BitcodeError for corrupted ones', async () => {
		const dir = scratch('damaged');
		fs.writeFileSync(path.join(dir, 'x.c'), SMALL);
		await execa('clang', ['-flto=thin', '-O2', '-c', path.join(dir, 'x.c'), '-o', path.join(dir, 'x.o')]);
		const good = fs.readFileSync(path.join(dir, 'x.o'));
		const whole = readBitcode(good);
		expect(whole).toEqual([{ ...SMALL_MODULES[0], source: path.join(dir, 'x.c') }]);
		expect(() => readBitcode(Buffer.from('not bitcode'))).toThrow(new BitcodeError('not bitcode'));
		// Cut short: the modules wholly before the cut, as the whole file has them, or a refusal; never half a module.
		for (let cut = 4; cut < good.length; cut++) {
			let read: BitcodeModule[];
			try {
				read = readBitcode(good.subarray(0, cut));
			} catch (error) {
				if (error instanceof BitcodeError) continue;
				throw error;
			}
			expect(read, `cut at ${cut}`).toEqual(whole.slice(0, read.length));
		}
		fc.assert(
			fc.property(fc.nat(good.length - 1), fc.array(fc.tuple(fc.nat(good.length - 1), fc.nat(255)), { maxLength: 8 }), (cut, flips) => {
				const bad = Buffer.from(good.subarray(0, Math.max(4, cut)));
				for (const [at, byte] of flips) if (at < bad.length) bad[at] = byte;
				try {
					readBitcode(bad);
				} catch (error) {
					// A block nested too deep for the stack is the only other way out; the shim then links without a cache.
					if (!(error instanceof BitcodeError || error instanceof RangeError)) throw error;
				}
			}),
			{ numRuns: 500 },
		);
	});
});

/** Writes a bitstream as LLVM's BitstreamWriter does: fields LSB first in 32-bit little-endian words. */
class BitWriter {
	private bits: number[] = [];
	private widths: number[] = [2];
	private starts: number[] = [];
	fixed(value: number, width: number) {
		for (let i = 0; i < width; i++) this.bits.push((value >>> i) & 1);
		return this;
	}
	vbr(value: number, width: number) {
		const high = 1 << (width - 1);
		while (value >= high) {
			this.fixed((value & (high - 1)) | high, width);
			value = Math.floor(value / high);
		}
		return this.fixed(value, width);
	}
	align() {
		while (this.bits.length % 32) this.bits.push(0);
		return this;
	}
	private get width() {
		return this.widths[this.widths.length - 1];
	}
	/** A block whose abbreviation ids are width bits wide; declared is what its header says (a lie, if it differs). */
	enter(id: number, width: number, declared = width) {
		this.fixed(1, this.width).vbr(id, 8).vbr(declared, 4).align();
		this.starts.push(this.bits.length);
		this.widths.push(width);
		return this.fixed(0, 32); // the length, filled in at end()
	}
	end() {
		this.fixed(0, this.width).align();
		this.widths.pop();
		const start = this.starts.pop() as number;
		const words = (this.bits.length - start - 32) / 32;
		for (let i = 0; i < 32; i++) this.bits[start + i] = (words >>> i) & 1;
		return this;
	}
	/** DEFINE_ABBREV: ops are ['lit', n], ['fixed', w], ['vbr', w], ['array'], ['char6'], ['blob']. */
	abbrev(ops: [string, number?][]) {
		this.fixed(2, this.width).vbr(ops.length, 5);
		for (const [kind, value] of ops) {
			if (kind === 'lit') this.fixed(1, 1).vbr(value as number, 8);
			else {
				const code = { fixed: 1, vbr: 2, array: 3, char6: 4, blob: 5 }[kind] as number;
				this.fixed(0, 1).fixed(code, 3);
				if (code <= 2) this.vbr(value as number, 5);
			}
		}
		return this;
	}
	record(code: number, ops: number[]) {
		this.fixed(3, this.width).vbr(code, 6).vbr(ops.length, 6);
		for (const op of ops) this.vbr(op, 6);
		return this;
	}
	/** A record laid out by abbreviation id: the fields are written by the caller. */
	abbreviated(id: number) {
		return this.fixed(id, this.width);
	}
	done(): Buffer {
		this.align();
		const out = Buffer.alloc(4 + this.bits.length / 8);
		out.write('BC\xc0\xde', 'latin1');
		for (let i = 0; i < this.bits.length; i++) out[4 + (i >>> 3)] |= this.bits[i] << (i & 7);
		return out;
	}
}

const MODULE = 8;
const CONSTANTS = 11;
const SETBID = 1;
const chars = (s: string) => [...s].map((c) => c.charCodeAt(0));
/** An abbreviation for CONSTANTS records of one code whose operands follow as an array of VBR6. */
const arrayOf = (code: number): [string, number?][] => [['lit', code], ['array'], ['vbr', 6]];
/** A module's writer, after a BLOCKINFO giving CONSTANTS blocks one such abbreviation (declared: the width its header says). */
const withInfo = (code: number, declared = 2) =>
	new BitWriter().enter(MODULE, 3).enter(0, 2, declared).record(SETBID, [CONSTANTS]).abbrev(arrayOf(code)).end();
/** A second BLOCKINFO, after the first: one more abbreviation for CONSTANTS blocks. */
const addInfo = (w: BitWriter, code: number) => w.enter(0, 2).record(SETBID, [CONSTANTS]).abbrev(arrayOf(code)).end();
/** A record by that abbreviation (id), its operands. */
const byAbbrev = (w: BitWriter, id: number, ops: number[]) => {
	w.abbreviated(id).vbr(ops.length, 6);
	for (const op of ops) w.vbr(op, 6);
	return w;
};

describe('the bitcode reader on BLOCKINFO blocks read once', () => {
	// CST_CODE_INLINEASM (30): [fnty, flags, length, chars..., constraints length]; _OLD3 (28): [flags, length, chars..., ...].
	const inline30 = (text: string) => [0, 0, text.length, ...chars(text), 0];
	const inline28 = (text: string) => [0, text.length, ...chars(text), 0];

	it('gives a module the abbreviations of its own BLOCKINFO blocks, the first or a later one, whatever was read before', () => {
		// A: one BLOCKINFO, abbreviation 4 of CONSTANTS for code 30.
		const a = withInfo(30);
		byAbbrev(a.enter(CONSTANTS, 4), 4, inline30('nop a')).end().end();
		// B: A's BLOCKINFO, then a second one adding abbreviation 5 for code 28.
		const b = addInfo(withInfo(30), 28);
		byAbbrev(byAbbrev(b.enter(CONSTANTS, 4), 5, inline28('nop b')), 4, inline30('nop c'))
			.end()
			.end();
		// C: B's second BLOCKINFO alone, first in its module: there abbreviation 4 is code 28.
		const c = withInfo(28);
		byAbbrev(c.enter(CONSTANTS, 4), 4, inline28('nop d')).end().end();
		// D: C's BLOCKINFO, then B's second one again: both abbreviations are code 28 here.
		const d = addInfo(withInfo(28), 28);
		byAbbrev(byAbbrev(d.enter(CONSTANTS, 4), 4, inline28('nop e')), 5, inline28('nop f'))
			.end()
			.end();
		const files = new Map([
			[a.done(), ['nop a']],
			[b.done(), ['nop b', 'nop c']],
			[c.done(), ['nop d']],
			[d.done(), ['nop e', 'nop f']],
		]);
		const [fileA, fileB, fileC, fileD] = files.keys();
		for (const order of [
			[fileA, fileB, fileC, fileD],
			[fileD, fileC, fileB, fileA],
			[fileB, fileC, fileA, fileD, fileB, fileC, fileD],
		])
			for (const file of order)
				expect(readBitcode(file)).toEqual([{ thin: false, asm: files.get(file), inline: files.get(file)!.map(() => true) }]);
	});

	it('reads the same BLOCKINFO bytes under another abbreviation width as what they are there', () => {
		const file = (declared: number) => {
			return byAbbrev(withInfo(30, declared).enter(CONSTANTS, 4), 4, inline30('nop')).end().end().done();
		};
		// Read with 3-bit ids, the first record's id is 7: no abbreviation has it.
		for (const declared of [2, 3, 2, 3])
			if (declared === 2) expect(readBitcode(file(2))).toEqual([{ thin: false, asm: ['nop'], inline: [true] }]);
			else expect(() => readBitcode(file(3))).toThrow(new BitcodeError('undefined abbreviation'));
	});

	it('answers the asm a block nested in BLOCKINFO holds each time the same BLOCKINFO is read', () => {
		const w = new BitWriter().enter(MODULE, 3).enter(0, 2).record(SETBID, [CONSTANTS]).abbrev(arrayOf(30));
		w.enter(CONSTANTS, 3).record(30, inline30('.incbin "x"')).end();
		const file = w.end().end().done();
		for (let i = 0; i < 3; i++) expect(readBitcode(file)).toEqual([{ thin: false, asm: ['.incbin "x"'], inline: [true] }]);
	});
});

for (const major of TESTED_LLD) {
	const clang = path.join(llvmBin(major), 'clang');
	const analyzer = path.join(llvmBin(major), 'llvm-bcanalyzer');
	describeIf(fs.existsSync(clang) && fs.existsSync(analyzer), `${clang} and ${analyzer} (Debian: clang-${major} llvm-${major})`)(
		`the bitcode reader on clang ${major} objects`,
		() => {
			it(`lists the modules and asm strings llvm-bcanalyzer shows, for ${RUNS} generated sources`, async () => {
				const dir = scratch('gen');
				let n = 0;
				const seen = { regular: 0, inline: 0, moduleAsm: 0 };
				await fc.assert(
					fc.asyncProperty(program(major >= 19 ? commentText : asmText), fc.boolean(), async (p, split) => {
						const src = path.join(dir, `s${n}.c`);
						const obj = path.join(dir, `s${n++}.o`);
						// C++ with a vtable and -fsplit-lto-unit: a second, regular LTO module in the same file.
						const vtable = 'struct S { virtual int v(); }; int S::v() { return 1; } int use(S *s) { return s->v(); }';
						fs.writeFileSync(src, split ? `${source(p)}\n${vtable}\n` : source(p));
						const extra = split ? ['-x', 'c++', '-fsplit-lto-unit', '-fwhole-program-vtables', '-fvisibility=hidden'] : [];
						await execa(clang, ['-flto=thin', '-O2', ...extra, '-c', src, '-o', obj]);
						const modules = readBitcode(fs.readFileSync(obj));
						const oracle = dumped((await execa(analyzer, ['-dump', obj])).stdout);
						seen.regular += modules.filter((m) => !m.thin).length;
						seen.inline += oracle.inline.length;
						seen.moduleAsm += oracle.asm.length;

						expect(modules.length).toBe(oracle.modules);
						expect(modules.filter((m) => m.thin).length).toBe(oracle.thin);
						const found = modules.flatMap((m) => m.asm);
						expect(found.length).toBe(oracle.asm.length + oracle.inline.length);
						for (const record of oracle.asm) expect(found).toContainEqual(String.fromCharCode(...record));
						// INLINEASM: [fnty,] flags, length, the string, then the constraints.
						const inline = found.filter((s) => !oracle.asm.some((r) => String.fromCharCode(...r) === s));
						expect(inline.length).toBe(oracle.inline.length);
						for (const [i, record] of oracle.inline.entries()) expect(contains(record, [inline[i].length, ...codes(inline[i])])).toBe(true);

						// And what the source wrote: module asm as LLVM appends it (a newline after each piece that lacks one), inline strings as they stand.
						const moduleAsm = p.moduleAsm.map((a) => (a.endsWith('\n') ? a : `${a}\n`)).join('');
						if (p.moduleAsm.length) expect(found).toContainEqual(moduleAsm);
						for (const f of p.functions) for (const a of f.asm) expect(found).toContainEqual(a);
					}),
					{ numRuns: RUNS },
				);
				// The generated cases did reach each kind of record.
				expect(seen.regular).toBeGreaterThan(0);
				expect(seen.inline).toBeGreaterThan(0);
				expect(seen.moduleAsm).toBeGreaterThan(0);
			});

			it('reads what small sources do not reach: long asm strings, a block over 256 KiB, the Darwin wrapper', async () => {
				const dir = scratch('large');
				// 42,000 characters of module asm (a VBR6 operand count of four pieces), 2,600 of inline asm (a length of three).
				const moduleAsm = Array.from({ length: 3000 }, (_, i) => `.ascii "m${String(i).padStart(5, '0')}"`).join('\n');
				const inline = Array.from({ length: 200 }, (_, i) => `nop # i${String(i).padStart(4, '0')}`).join('\n');
				// A function body of more than 65,535 words: its block length needs the high half, and the reader skips it by that length.
				const body = Array.from({ length: 12000 }, (_, i) => `v += ${i};`).join('\n');
				fs.writeFileSync(
					path.join(dir, 'big.c'),
					`__asm__(${cString(moduleAsm)});\nint big(int x) { volatile int v = x;\n${body}\nreturn v; }\n` +
						`int later(int x) { __asm__ volatile(${cString(inline)} ::: "memory"); return x; }\n`,
				);
				const obj = path.join(dir, 'big.o');
				await execa(clang, ['-flto=thin', '-O2', '-c', path.join(dir, 'big.c'), '-o', obj]);
				const words = [...(await execa(analyzer, ['-dump', obj])).stdout.matchAll(/<FUNCTION_BLOCK NumWords=(\d+)/g)].map((m) =>
					Number(m[1]),
				);
				expect(Math.max(...words)).toBeGreaterThan(0xffff);
				expect(readBitcode(fs.readFileSync(obj))).toEqual([
					{ thin: true, asm: [`${moduleAsm}\n`, inline], inline: [false, true], source: path.join(dir, 'big.c') },
				]);

				// Darwin targets wrap bitcode in a 0x0B17C0DE header; the module inside reads the same.
				const small = path.join(dir, 'small.c');
				fs.writeFileSync(small, SMALL);
				await execa(clang, ['-flto=thin', '-O2', '-target', 'x86_64-apple-macosx11', '-c', small, '-o', path.join(dir, 'darwin.o')]);
				const wrapped = fs.readFileSync(path.join(dir, 'darwin.o'));
				expect(wrapped.readUInt32LE(0)).toBe(0x0b17c0de);
				expect(readBitcode(wrapped)).toEqual([{ ...SMALL_MODULES[0], source: small }]);
				// The header's offset and size say where the module ends (the file may be padded past it).
				const end = wrapped.readUInt32LE(8) + wrapped.readUInt32LE(12);
				expect(() => readBitcode(wrapped.subarray(0, end - 1))).toThrow(new BitcodeError('wrapper runs past the end'));
			});

			it('reads bytes above 0x7F in asm strings, which LLVM stores as sign-extended chars', async () => {
				const dir = scratch('high');
				// A UTF-8 file name and Latin-1 bytes, in module asm and in inline asm, as C escapes; clang >= 19 reads the file when it compiles.
				fs.writeFileSync(path.join(dir, '\u00e9.bin'), ''); // the bytes C3 A9 the source names
				fs.writeFileSync(
					path.join(dir, 'high.c'),
					'asm(".incbin \\"\\xc3\\xa9.bin\\""); int f(int a) { asm volatile("nop # \\x80\\xff" ::: "memory"); return a; }\n',
				);
				await execa(clang, ['-flto=thin', '-O2', '-c', 'high.c', '-o', 'high.o'], { cwd: dir });
				expect(readBitcode(fs.readFileSync(path.join(dir, 'high.o')))).toEqual([
					{ thin: true, asm: ['.incbin "\xc3\xa9.bin"\n', 'nop # \x80\xff'], inline: [false, true], source: 'high.c' },
				]);
			});
		},
	);
}

const clangs = TESTED_LLD.map((major) => path.join(llvmBin(major), 'clang'));
describeIf(
	clangs.every((clang) => fs.existsSync(clang)),
	clangs.join(', '),
)('inline-asm operands, told by their constraints', () => {
	it('marks a reference to an operand that allows only immediates IMMEDIATE, whole, in AT&T syntax, and %= in any; any other OPERAND (clang 14, 16, 19, 22)', async () => {
		const dir = scratch('operands');
		const source =
			'int f(int x) { int r; asm("%c1: lea %c2(%3), %0\\n.long %c1b, %=\\nloop%=: jmp loop%=" : "=r"(r) : "i"(7), "n"(8), "r"(x)); return r; }\n' +
			'int g(int x) { asm("%c0: nop" :: "ir"(x)); return x; }\n';
		fs.writeFileSync(path.join(dir, 'x.c'), source);
		for (const clang of clangs) {
			await execa(clang, ['-flto=thin', '-O2', '-c', 'x.c', '-o', 'x.o'], { cwd: dir });
			const [module] = readBitcode(fs.readFileSync(path.join(dir, 'x.o')));
			// "i" and "n": the whole reference; "=r", "r" and "ir" (a register is possible): only the $.
			expect(module.asm.sort()).toEqual(
				[
					`${IMMEDIATE}: lea ${IMMEDIATE}(${OPERAND}3), ${OPERAND}0\n.long ${IMMEDIATE}b, ${IMMEDIATE}\nloop${IMMEDIATE}: jmp loop${IMMEDIATE}`,
					`${OPERAND}{0:c}: nop`,
				].sort(),
			);
			// Intel syntax prints operands its own way: no numbered operand is taken for an immediate there; %= is a number in both.
			await execa(clang, ['-flto=thin', '-O2', '-masm=intel', '-c', 'x.c', '-o', 'intel.o'], { cwd: dir });
			const [intel] = readBitcode(fs.readFileSync(path.join(dir, 'intel.o')));
			expect(intel.asm).toContain(
				`${OPERAND}{1:c}: lea ${OPERAND}{2:c}(${OPERAND}3), ${OPERAND}0\n.long ${OPERAND}{1:c}b, ${IMMEDIATE}\nloop${IMMEDIATE}: jmp loop${IMMEDIATE}`,
			);
		}
	});
});
