// The .incbin guard in-process, from the asm strings the bitcode reader
// returns: which files it names, how their names are spelled and resolved,
// and that the hash follows every file's name and contents. Real links
// through the shim, with clang and lld, are in test/integration/incbin.test.ts.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readInto } from '../../src/shared/identity.js';
import { IMMEDIATE, OPERAND } from '../../src/shim/bitcode.js';
import { asmString, incbinGuard, rehash } from '../../src/shim/incbin.js';
import { scratchRoot } from '../helpers/tools.js';

const scratch = scratchRoot();

/** A working directory holding these files. */
function tree(files: Record<string, string>): string {
	const dir = scratch('cwd');
	for (const [name, text] of Object.entries(files)) {
		fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
		fs.writeFileSync(path.join(dir, name), text, 'latin1');
	}
	return dir;
}

describe('the .incbin guard', () => {
	it('names nothing and hashes nothing for asm without the directives', async () => {
		const cwd = tree({ 'blob.bin': 'x' });
		expect(await incbinGuard([], cwd)).toEqual({ files: [], sums: [], reach: expect.any(Function) });
		const none = await incbinGuard(['.globl f\nf: ret', 'nop # incbin in a comment, but no dot'], cwd);
		expect(none).toEqual({ files: [], sums: [], reach: expect.any(Function) });
		expect(none.reach('.globl f\nf: ret')).toBeUndefined();
	});

	it('resolves names against the working directory, absolute names as they are, each file once, in order', async () => {
		const cwd = tree({ 'a.bin': 'A', 'sub/b.bin': 'B' });
		const abs = path.join(cwd, 'sub/b.bin');
		const guard = await incbinGuard(['.incbin "a.bin"', `.section .rodata\n\t.incbin "${abs}", 0, 1\n.incbin "a.bin"`], cwd);
		expect(guard.files).toEqual([path.join(cwd, 'a.bin'), abs]);
		expect(guard.hash).toMatch(/^[0-9a-f]{16}$/);
		expect(guard.problem).toBeUndefined();
	});

	it('reads directives in any case, as LLVM does, and follows an .INCLUDE in capitals', async () => {
		const cwd = tree({ 'a.bin': 'A', 'x.s': '.incbin "a.bin"\n' });
		expect((await incbinGuard(['.INCBIN "a.bin"'], cwd)).files).toEqual([path.join(cwd, 'a.bin')]);
		expect((await incbinGuard(['.Include "a.bin"'], cwd)).files).toEqual([path.join(cwd, 'a.bin')]);
		expect((await incbinGuard(['.INCLUDE "x.s"'], cwd)).files).toEqual([path.join(cwd, 'x.s'), path.join(cwd, 'a.bin')]);
	});

	it('refuses a directive a macro argument, a join or an operand spells, wherever the statement starts', async () => {
		const cwd = tree({ 'a.bin': 'A' });
		const problem = async (asm: string) => (await incbinGuard([asm], cwd)).problem;
		for (const asm of [
			'.macro e f\n.inc\\()bin "a.bin"\n.endm',
			'.irp d,incbin\n.\\d "a.bin"\n.endr',
			'.macro r w\n  \\w "a.bin"\n.endm',
			'nop; .\\d "a.bin"',
			'lbl: .\\d "a.bin"',
			'\\x: nop',
			`.\u0100 "a.bin"`,
		]) {
			expect(await problem(asm)).toMatch(/^a directive spelled by a macro argument or an operand \(/);
		}
		expect(await problem('.altmacro\n.macro m\n.endm')).toBe('the assembler is put in alternate macro mode (.altmacro)');
	});

	it("keeps the kernel's macros cached: arguments as operands, \\@ and \\() in labels", async () => {
		const cwd = tree({ 'a.bin': 'A' });
		const extable =
			'.macro extable_type_reg type:req reg:req\n.set .Lfound, 0\n.irp rs,rax,rcx\n.ifc \\reg, %\\rs\n.long \\type + (.Lregnr << 8)\n.endif\n.endr\n.endm\n' +
			'extable_type_reg reg=%eax, type=3\n.purgem extable_type_reg\n.Lhere_\\@: nop\nl\\()x\\@: .incbin "a.bin"\nmov \u0100, %eax';
		const guard = await incbinGuard([extable], cwd);
		expect(guard.problem).toBeUndefined();
		expect(guard.files).toEqual([path.join(cwd, 'a.bin')]);
	});

	it('refuses a name with a backslash once the link defines a macro anywhere, and a name holding an operand', async () => {
		const cwd = tree({ 'a.bin': 'A', image: 'decoy', 'A.bin': 'x' });
		expect((await incbinGuard(['.incbin "\\image"', '.macro emb image\n.endm'], cwd)).problem).toBe(
			'a macro argument may name the file of .incbin "\\image"',
		);
		expect((await incbinGuard(['.incbin "\\101.bin"'], cwd)).problem).toBeUndefined();
		expect((await incbinGuard(['.incbin "\\101.bin"', '.rept 1\n.endr'], cwd)).problem).toMatch(/^a macro argument may name/);
		expect((await incbinGuard(['.incbin "a\u0100.bin"'], cwd)).problem).toBe('an .incbin whose file names an inline-asm operand');
	});

	it('names a file the way the file system finds it: through a symlink, then ..', async () => {
		const cwd = tree({ 'real/sub/.keep': '', 'real/blob.bin': 'real', 'blob.bin': 'decoy' });
		fs.symlinkSync('real/sub', path.join(cwd, 'link'));
		const [through, decoy] = await Promise.all(['link/../blob.bin', 'real/blob.bin'].map((f) => incbinGuard([`.incbin "${f}"`], cwd)));
		expect(through.files).toEqual([`${cwd}/link/../blob.bin`]);
		expect(through.identity?.split(':').slice(0, 2)).toEqual(decoy.identity?.split(':').slice(0, 2));
	});

	it('decodes the string escapes of the assembler: \\\\, \\", \\b \\f \\n \\r \\t, octal and hex', async () => {
		const cwd = tree({ 'q"b\\s.bin': '1', 'AB.bin': '2', 'tab\t.bin': '3' });
		const guard = await incbinGuard(['.incbin "q\\"b\\\\s.bin"\n.incbin "\\101\\x42.bin"\n.incbin "tab\\t.bin"'], cwd);
		expect(guard.problem).toBeUndefined();
		expect(guard.files).toEqual(['q"b\\s.bin', 'AB.bin', 'tab\t.bin'].map((f) => path.join(cwd, f)));
		const controls = tree({ 'b\bf\fn\nr\r.bin': '4' });
		expect((await incbinGuard(['.incbin "b\\bf\\fn\\nr\\r.bin"'], controls)).files).toEqual([path.join(controls, 'b\bf\fn\nr\r.bin')]);
	});

	it("decodes as LLVM's AsmParser does: \\X, a \\x run of any length (its low byte), and no file where LLVM rejects the escape", async () => {
		const cwd = tree({ 'A.bin': 'A', 'B.bin': 'B', 'x41.bin': 'decoy', 'X41.bin': 'decoy', '\x01.bin': 'decoy' });
		const files = async (asm: string) => (await incbinGuard([asm], cwd)).files;
		expect(await files('.incbin "\\X41.bin"')).toEqual([path.join(cwd, 'A.bin')]);
		// 29 hex digits: a number would round; LLVM keeps the low byte of its 32-bit sum, the last two digits.
		expect(await files('.incbin "\\x123456789abcdef0123456789ab42.bin"')).toEqual([path.join(cwd, 'B.bin')]);
		expect(await files('.incbin "\\xfffffffffffffff41.bin"')).toEqual([path.join(cwd, 'A.bin')]);
		// \q, \8, a bare \x, octal above 255: the assembler errors and reads nothing; nor does the guard.
		for (const bad of ['\\q', '\\8', '\\x', '\\X', '\\400', '\\e']) {
			const guard = await incbinGuard([`.incbin "${bad}z.bin"`], cwd);
			expect([guard.files, guard.sums, guard.hash, guard.problem]).toEqual([[], [], undefined, undefined]);
		}
		// Three octal digits at most: \0101 is \010 and a 1.
		expect(asmString('\\0101')).toBe('\b1');
		expect(asmString('\\18')).toBe('\x018');
	});

	it('reads only regular files: a FIFO named by .incbin or .include is never opened for reading, nor a device', async () => {
		const cwd = tree({});
		execFileSync('mkfifo', [path.join(cwd, 'pipe')]);
		for (const directive of ['.incbin', '.include']) {
			expect((await incbinGuard([`${directive} "pipe"`], cwd)).problem).toBe(
				`cannot read ${path.join(cwd, 'pipe')}, named by ${directive} (not a regular file)`,
			);
		}
		expect((await incbinGuard(['.incbin "/dev/zero"'], cwd)).problem).toBe('cannot read /dev/zero, named by .incbin (not a regular file)');
		expect(() => readInto(createHash('sha256'), path.join(cwd, 'pipe'), false)).toThrow('not a regular file');
	});

	it('accepts an operand that prints an integer or a symbol in a label, and nowhere else a directive may stand', async () => {
		const cwd = tree({ 'a.bin': 'A' });
		const guard = async (asm: string) => incbinGuard([asm], cwd);
		// Linux 5.12-5.16's annotate_unreachable() and a userland loop%=, as the bitcode reader returns them.
		for (const asm of [
			`${IMMEDIATE}:\n\t.pushsection .discard.unreachable\n\t.long ${IMMEDIATE}b - .\n\t.popsection\n\t`,
			`loop${IMMEDIATE}: dec ${OPERAND}0\n jnz loop${IMMEDIATE}`,
			`a${IMMEDIATE}b: ${IMMEDIATE}: .incbin "a.bin"`,
		]) {
			expect((await guard(asm)).problem).toBeUndefined();
		}
		expect((await guard(`${IMMEDIATE}: .incbin "a.bin"`)).files).toEqual([path.join(cwd, 'a.bin')]);
		// Where a directive stands, an immediate may be a symbol named .incbin; in a name, any file.
		expect((await guard(`${IMMEDIATE} "a.bin"`)).problem).toBe('a directive spelled by a macro argument or an operand ($)');
		expect((await guard(`x: ${IMMEDIATE} "a.bin"`)).problem).toMatch(/^a directive spelled by/);
		expect((await guard(`.incbin "a${IMMEDIATE}.bin"`)).problem).toBe('an .incbin whose file names an inline-asm operand');
		// Any other operand in a label may print blanks and more (a register, a memory reference): still refused.
		expect((await guard(`${OPERAND}0: nop`)).problem).toBe('a directive spelled by a macro argument or an operand ($0:)');
	});

	it('takes the string right after the directive, after any blanks', async () => {
		const cwd = tree({ 'a.bin': 'A' });
		expect((await incbinGuard(['.incbin \t  "a.bin"'], cwd)).files).toEqual([path.join(cwd, 'a.bin')]);
		expect((await incbinGuard(['.incbin"a.bin"'], cwd)).files).toEqual([path.join(cwd, 'a.bin')]);
		expect((await incbinGuard(['.incbin sym, "a.bin"'], cwd)).problem).toBe('an .incbin whose file is not a plain string (sym, "a.bin")');
	});

	it('follows .include into the included file, and hashes what it names too', async () => {
		const cwd = tree({ 'x.s': '.incbin "blob.bin"\n', 'blob.bin': 'one', 'c.bin': 'C' });
		const before = await incbinGuard(['.include "x.s"'], cwd);
		expect(before.files).toEqual([path.join(cwd, 'x.s'), path.join(cwd, 'blob.bin')]);
		expect((await incbinGuard(['.include "x.s"\n.incbin "c.bin"'], cwd)).files).toEqual(
			['x.s', 'blob.bin', 'c.bin'].map((f) => path.join(cwd, f)),
		);
		fs.writeFileSync(path.join(cwd, 'blob.bin'), 'two');
		expect((await incbinGuard(['.include "x.s"'], cwd)).hash).not.toBe(before.hash);
	});

	it("tells each file's own sum, and which files each asm string reaches, through .include too", async () => {
		const cwd = tree({ 'x.s': '.incbin "blob.bin"\n', 'blob.bin': 'one', 'c.bin': 'C' });
		const [inc, direct, other] = ['.include "x.s"', '.incbin "c.bin"', '.incbin "blob.bin"'];
		const guard = await incbinGuard([inc, direct, other, 'nop'], cwd);
		const at = (f: string) => path.join(cwd, f);
		expect(guard.files).toEqual([at('x.s'), at('blob.bin'), at('c.bin')]);
		expect(guard.reach(inc)).toEqual([at('x.s'), at('blob.bin')]);
		expect(guard.reach(direct)).toEqual([at('c.bin')]);
		expect(guard.reach(other)).toEqual([at('blob.bin')]);
		expect(guard.reach('nop')).toBeUndefined();
		fs.writeFileSync(at('blob.bin'), 'two');
		const after = await incbinGuard([inc, direct, other], cwd);
		expect(after.sums.map((s, i) => s === guard.sums[i])).toEqual([true, false, true]);
		// The name is part of a file's sum: c.bin's contents under another name are another sum.
		fs.writeFileSync(at('d.bin'), 'C');
		expect((await incbinGuard(['.incbin "d.bin"'], cwd)).sums[0]).not.toBe(guard.sums[2]);
	});

	it('follows an .include of a file it hashed as .incbin data before', async () => {
		const cwd = tree({ 'x.s': '.incbin "y.bin"\n', 'y.bin': 'Y' });
		const guard = await incbinGuard(['.incbin "x.s"', '.include "x.s"'], cwd);
		expect(guard.files).toEqual([path.join(cwd, 'x.s'), path.join(cwd, 'y.bin')]);
		expect(guard.reach('.include "x.s"')).toEqual([path.join(cwd, 'x.s'), path.join(cwd, 'y.bin')]);
		// Read twice, hashed once: after the link, the files read again give the same hash, or every link would
		// be taken for one during which a file changed, and lose its entries.
		expect((await rehash(guard.files)).hash).toBe(guard.hash);
		fs.writeFileSync(path.join(cwd, 'y.bin'), 'Z');
		expect((await incbinGuard(['.incbin "x.s"', '.include "x.s"'], cwd)).hash).not.toBe(guard.hash);
	});

	it('reads an .incbin file as data: directives in it mean nothing', async () => {
		const cwd = tree({ 'blob.bin': '.include "missing.s"\n' });
		expect(await incbinGuard(['.incbin "blob.bin"'], cwd)).toEqual({
			files: [path.join(cwd, 'blob.bin')],
			sums: [expect.stringMatching(/^[0-9a-f]{16}$/)],
			reach: expect.any(Function),
			hash: expect.stringMatching(/^[0-9a-f]{16}$/),
			identity: expect.stringMatching(/^\d+:\d+:21:\d+:\d+$/),
		});
		expect((await incbinGuard(['.include "blob.bin"'], cwd)).problem).toMatch(/^cannot read .*missing\.s/);
	});

	it('follows .include 16 deep, and stops at one nested deeper or one that includes itself', async () => {
		const chain = (n: number) => {
			const files: Record<string, string> = {};
			for (let i = 0; i < n; i++) files[`n${i}.s`] = i < n - 1 ? `.include "n${i + 1}.s"\n` : '';
			return tree(files);
		};
		const deep = await incbinGuard(['.include "n0.s"'], chain(16));
		expect(deep.problem).toBeUndefined();
		expect(deep.files).toHaveLength(16);
		expect((await incbinGuard(['.include "n0.s"'], chain(17))).problem).toBe('.include nested deeper than 16');
		const loop = tree({ 'self.s': '.include "self.s"\n' });
		const guard = await incbinGuard(['.include "self.s"'], loop);
		expect(guard.problem).toBeUndefined();
		expect(guard.files).toEqual([path.join(loop, 'self.s')]);
	});

	it("changes the hash with a file's contents, its name, or the order, and only then", async () => {
		const cwd = tree({ 'a.bin': 'A', 'b.bin': 'B', 'c.bin': 'A' });
		const hash = async (...asm: string[]) => (await incbinGuard(asm, cwd)).hash;
		const ab = await hash('.incbin "a.bin"', '.incbin "b.bin"');
		expect(await hash('.incbin "a.bin"', '.incbin "b.bin"')).toBe(ab);
		expect(await hash('.incbin "b.bin"', '.incbin "a.bin"')).not.toBe(ab);
		expect(await hash('.incbin "a.bin"')).not.toBe(await hash('.incbin "c.bin"')); // same contents, another file
		fs.writeFileSync(path.join(cwd, 'b.bin'), 'B2');
		expect(await hash('.incbin "a.bin"', '.incbin "b.bin"')).not.toBe(ab);
		// Names and contents are delimited: moving a byte from one to the other is a change.
		const split = tree({ ab: 'c', a: 'bc' });
		expect((await incbinGuard(['.incbin "ab"'], split)).hash).not.toBe((await incbinGuard(['.incbin "a"'], split)).hash);
	});

	it('gives up, naming why, on a file it cannot read or a name that is not a plain string', async () => {
		const cwd = tree({ 'a.bin': 'A', 'dir/.keep': '' });
		expect((await incbinGuard(['.incbin "missing.bin"'], cwd)).problem).toBe(
			`cannot read ${path.join(cwd, 'missing.bin')}, named by .incbin (ENOENT)`,
		);
		expect((await incbinGuard(['.incbin "dir"'], cwd)).problem).toMatch(/^cannot read .*dir, named by \.incbin \(not a regular file\)$/);
		expect((await incbinGuard(['.incbin "a.bin"\n.incbin BLOB\n'], cwd)).problem).toBe(
			'an .incbin whose file is not a plain string (BLOB)',
		);
		expect((await incbinGuard(['.macro m f\n.incbin \\f\n.endm'], cwd)).problem).toMatch(/not a plain string \(\\f\)/);
		expect((await incbinGuard(['.include "big.s"'], tree({ 'big.s': ' '.repeat(16 * 1024 * 1024 + 1) }))).problem).toMatch(
			/^cannot read .*big\.s, named by \.include \(larger than 16777216 bytes\)$/,
		);
		expect((await incbinGuard(['.incbin "a.bin\n"'], cwd)).problem).toMatch(/not a plain string/);
	});
	// After the link, the shim reads the guard's files again: what they are must equal what the directory's name stands for.
	it('reads the named files again after the link to the same hash and identity, and to another after any change', async () => {
		const cwd = tree({ 'a.bin': 'AAAA', 'b.bin': 'BBBB' });
		const guard = await incbinGuard(['.incbin "a.bin"\n.incbin "b.bin"'], cwd);
		expect(guard.files).toHaveLength(2);
		expect(await rehash(guard.files)).toEqual({ hash: guard.hash, identity: guard.identity });
		// The same size, other bytes.
		fs.writeFileSync(path.join(cwd, 'b.bin'), 'BBBC');
		const changed = await rehash(guard.files);
		expect(changed.hash).toMatch(/^[0-9a-f]{16}$/);
		expect(changed.hash).not.toBe(guard.hash);
		expect(changed.identity).not.toBe(guard.identity);
		expect(changed.identity?.split('\n')[0]).toBe(guard.identity?.split('\n')[0]);
		fs.rmSync(path.join(cwd, 'a.bin'));
		expect(await rehash(guard.files)).toEqual({});
		expect(await rehash([])).toEqual({});
	});

	it('keeps an .include of up to 16 MiB, refuses a larger one, and hashes a file of any size', () => {
		const cwd = tree({});
		const file = path.join(cwd, 'big.s');
		fs.writeFileSync(file, Buffer.alloc(16 * 1024 * 1024, 0x20));
		const read = readInto(createHash('sha256'), file, true, 16 * 1024 * 1024);
		expect([read.size, read.text?.length]).toEqual([16 * 1024 * 1024, 16 * 1024 * 1024]);
		fs.appendFileSync(file, ' ');
		expect(() => readInto(createHash('sha256'), file, true, 16 * 1024 * 1024)).toThrow(`larger than ${16 * 1024 * 1024} bytes`);
		const hashed = readInto(createHash('sha256'), file, false);
		expect([hashed.size, hashed.text]).toEqual([16 * 1024 * 1024 + 1, undefined]);
		expect(hashed.identity.split(':')[2]).toBe(String(16 * 1024 * 1024 + 1));
	});
});
