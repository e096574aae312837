// The inputs memo (src/shared/memo.ts) with real clang objects, in-process:
// an unchanged input is answered from the memo, anything that changed is
// read again (in place, same size, same mtime included), a file written
// moments ago is not remembered, and a damaged memo only costs a read.
// Through the shim: a warm link reads no input again.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execa, execaSync } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { MEMO_DIR, openMemo, pruneMemo } from '../../src/shared/memo.js';
import { writeTag } from '../../src/shared/root.js';
import { OPERAND } from '../../src/shim/bitcode.js';
import { concernsGuard } from '../../src/shim/incbin.js';
import { readInputs } from '../../src/shim/inputs.js';
import { describeIf, hasToolchain, isRoot, LLD, onPath, SHIM, scratchRoot, shimDir, TOOLCHAIN } from '../helpers/tools.js';

const scratch = scratchRoot();
const WHOLE_SECOND = new Date('2026-01-01T00:00:00Z');
/** What the reader returns for x.o below (y.o: y.bin). */
const X_ASM = ['.incbin "x.bin"\n', `lea 1(${OPERAND}1), ${OPERAND}0 # macro \xe9`];

describeIf(hasToolchain, TOOLCHAIN)('the inputs memo', () => {
	let dir: string;
	/** Two objects of one size whose asm differs: x.bin against y.bin. */
	const objects: Record<string, Buffer> = {};

	beforeAll(async () => {
		dir = scratch('objs');
		for (const name of ['x', 'y']) {
			// clang >= 19 assembles module asm at compile time too, and fails on an .incbin file it cannot find.
			fs.writeFileSync(path.join(dir, `${name}.bin`), name);
			// Inline asm with operands and a byte above 0x7F too (a comment naming a macro makes the guard keep it): the memo must keep every character the reader returns.
			fs.writeFileSync(
				path.join(dir, `${name}.c`),
				`asm(".incbin \\"${name}.bin\\""); int f_${name}(int a) { int r; asm("lea 1(%1), %0 # macro \\xe9" : "=r"(r) : "r"(a)); return r; }\n`,
			);
			execaSync('clang', ['-flto=thin', '-O2', '-c', `${name}.c`, '-o', `${name}.o`], { cwd: dir });
			objects[name] = fs.readFileSync(path.join(dir, `${name}.o`));
		}
		// Trailing zero words are allowed after bitcode: pad both to one size.
		const size = Math.ceil(Math.max(objects.x.length, objects.y.length) / 4) * 4;
		for (const name of ['x', 'y']) objects[name] = Buffer.concat([objects[name], Buffer.alloc(size - objects[name].length)]);
		// Files the memo may remember must be older than its racy window.
		await new Promise((r) => setTimeout(r, 2100));
	});

	/** An input file written long enough ago, with an mtime of a whole second. */
	function input(cwd: string, name: string, bytes: Buffer): string {
		const file = path.join(cwd, name);
		fs.writeFileSync(file, bytes);
		fs.utimesSync(file, WHOLE_SECOND, WHOLE_SECOND);
		return file;
	}
	/** Read a link's inputs with its memo, as the shim does (the memo named by the link), and save the memo. */
	const read = (cwd: string, root: string, words: string[]) => {
		const memo = openMemo(root, cwd, words);
		const inputs = readInputs(words, cwd, memo, concernsGuard);
		memo.save();
		return { inputs, ...memo.counts };
	};
	const stored = (root: string) =>
		fs.readdirSync(path.join(root, MEMO_DIR)).map((f) => JSON.parse(fs.readFileSync(path.join(root, MEMO_DIR, f), 'utf8')));

	it('answers an unchanged input from the memo, and reads one changed in place (same size, same mtime) again', async () => {
		const cwd = scratch('cwd');
		const root = scratch('root');
		const file = input(cwd, 'in.o', objects.x);
		await new Promise((r) => setTimeout(r, 2100)); // past the racy window of its ctime
		const first = read(cwd, root, ['in.o']);
		expect(first).toMatchObject({
			read: 1,
			recalled: 0,
			inputs: { modules: 1, asm: X_ASM, units: [{ source: 'x.c', top: [X_ASM[0]], code: [X_ASM[1]] }] },
		});
		expect(fs.readdirSync(path.join(root, MEMO_DIR)).length).toBe(1);
		expect(read(cwd, root, ['in.o'])).toEqual({ ...first, read: 0, recalled: 1 });

		// Rewritten in place: same inode, same size, mtime set back to the same second. Only ctime tells.
		const fd = fs.openSync(file, 'r+');
		fs.writeSync(fd, objects.y, 0, objects.y.length, 0);
		fs.closeSync(fd);
		fs.utimesSync(file, WHOLE_SECOND, WHOLE_SECOND);
		const st = fs.statSync(file, { bigint: true });
		expect([st.size, st.mtimeNs]).toEqual([BigInt(objects.x.length), BigInt(WHOLE_SECOND.getTime()) * 1_000_000n]);
		expect(read(cwd, root, ['in.o'])).toMatchObject({
			read: 1,
			recalled: 0,
			inputs: { asm: ['.incbin "y.bin"\n', `lea 1(${OPERAND}1), ${OPERAND}0 # macro \xe9`] },
		});
	});

	it("with a remote, remembers each input's sha256 too (its manifest's name): a warm link reads nothing again, and one remembered without them is read", async () => {
		const cwd = scratch('cwd');
		const root = scratch('root');
		input(cwd, 'a.o', objects.x);
		input(cwd, 'b.o', objects.y);
		execaSync('llvm-ar', ['cDPrST', 'thin.a', 'b.o'], { cwd });
		await new Promise((r) => setTimeout(r, 2100));
		const words = ['a.o', 'thin.a'];
		const hashed = (hashing: boolean) => {
			const memo = openMemo(root, cwd, words);
			const inputs = readInputs(words, cwd, memo, concernsGuard, hashing);
			memo.save();
			return { sums: inputs.sums, ...memo.counts };
		};
		const sha = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
		// Remembered by a link without a remote: no sums, so read again once they are wanted.
		expect(hashed(false)).toEqual({ sums: undefined, read: 2, recalled: 0 });
		const sums = [sha(objects.x), sha(objects.y)];
		expect(hashed(true)).toEqual({ sums, read: 2, recalled: 0 });
		expect(hashed(true)).toEqual({ sums, read: 0, recalled: 2 });
	});

	it('does not remember a file written less than two seconds before it was read', () => {
		const cwd = scratch('cwd');
		const root = scratch('root');
		fs.writeFileSync(path.join(cwd, 'fresh.o'), objects.x);
		expect(read(cwd, root, ['fresh.o'])).toMatchObject({ read: 1, recalled: 0 });
		expect(read(cwd, root, ['fresh.o'])).toMatchObject({ read: 1, recalled: 0 });
		expect(stored(root)).toEqual([{ v: 4, files: {} }]);
	});

	it("remembers a thin archive's members one by one, and reads again only the one that changed", async () => {
		const cwd = scratch('cwd');
		const root = scratch('root');
		input(cwd, 'a.o', objects.x);
		input(cwd, 'b.o', objects.y);
		// As Kbuild builds built-in.a and vmlinux.a: thin, no symbol table (which llvm-ar >= 19 would build by assembling x.bin in).
		execaSync('llvm-ar', ['cDPrST', 'thin.a', 'a.o', 'b.o'], { cwd });
		await new Promise((r) => setTimeout(r, 2100));
		expect(read(cwd, root, ['thin.a'])).toMatchObject({ read: 2, recalled: 0, inputs: { modules: 2 } });
		fs.writeFileSync(path.join(cwd, 'b.o'), objects.x);
		expect(read(cwd, root, ['thin.a'])).toMatchObject({
			read: 1,
			recalled: 1,
			inputs: { asm: [...X_ASM, ...X_ASM] },
		});
	});

	it('reads an input again when its memo is torn, foreign or of another format', async () => {
		const cwd = scratch('cwd');
		const root = scratch('root');
		input(cwd, 'in.o', objects.x);
		await new Promise((r) => setTimeout(r, 2100));
		const first = read(cwd, root, ['in.o']);
		const [name] = fs.readdirSync(path.join(root, MEMO_DIR));
		const memoFile = path.join(root, MEMO_DIR, name);
		const good = fs.readFileSync(memoFile, 'latin1');
		for (const bad of [
			good.slice(0, -5),
			'{}',
			good.replace('"v":4', '"v":3'),
			good.replace('"modules":1', '"modules":"1"'),
			good.replace('"units":', '"unitz":'),
			'null',
		]) {
			fs.writeFileSync(memoFile, bad);
			expect(read(cwd, root, ['in.o'])).toEqual(first);
		}
	});

	it('is pruned by last use and cleared whole, and stats never takes it for a kernel', async () => {
		const root = scratch('root');
		writeTag(root); // as the shim tags a root it creates: the manager touches no other
		const memoDir = path.join(root, MEMO_DIR);
		fs.mkdirSync(memoDir);
		for (const name of ['old', 'new', 'dead.42.tmp']) fs.writeFileSync(path.join(memoDir, name), '{}');
		const eightDays = new Date(Date.now() - 8 * 86400_000);
		for (const name of ['old', 'dead.42.tmp']) fs.utimesSync(path.join(memoDir, name), eightDays, eightDays);
		expect(pruneMemo(root, Date.now())).toBe(2);
		expect(fs.readdirSync(memoDir)).toEqual(['new']);
		const stats = await execa('node', [path.join(path.dirname(SHIM), 'ltocache'), 'stats', '--json'], { env: { LTOCACHE_DIR: root } });
		expect(JSON.parse(stats.stdout).kernels).toEqual([]);
		await execa('node', [path.join(path.dirname(SHIM), 'ltocache'), 'clear'], { env: { LTOCACHE_DIR: root } });
		expect(fs.readdirSync(memoDir)).toEqual([]);
	});

	it('through the shim: a warm link reads none of its unchanged inputs, and its output is the uncached one', async () => {
		const cwd = scratch('cwd');
		const shims = shimDir(scratch('shims'), SHIM, ['ld.lld']);
		for (const name of ['x', 'y']) fs.writeFileSync(path.join(cwd, `${name}.bin`), name);
		input(cwd, 'a.o', objects.x);
		input(cwd, 'b.o', objects.y);
		await new Promise((r) => setTimeout(r, 2100));
		const env = { LTOCACHE_MODE: 'add', LTOCACHE_DIR: path.join(cwd, 'root'), LTOCACHE_VERBOSE: '1' };
		const link = () => execa(`${shims}/ld.lld`, ['-r', 'a.o', 'b.o', '-o', 'out.o'], { cwd, env });
		expect((await link()).stderr).toMatch(/\(inputs read: 2, known unchanged: 0\)/);
		expect((await link()).stderr).toMatch(/\(inputs read: 0, known unchanged: 2\)/);
		const cached = fs.readFileSync(path.join(cwd, 'out.o'));
		await execa(LLD, ['-r', 'a.o', 'b.o', '-o', 'direct.o'], { cwd });
		expect(cached.equals(fs.readFileSync(path.join(cwd, 'direct.o')))).toBe(true);
		// A FIFO under the memo's name (a shared root's other member): passed over, never waited on.
		const memos = fs.readdirSync(path.join(cwd, 'root', MEMO_DIR));
		expect(memos).toHaveLength(1);
		fs.rmSync(path.join(cwd, 'root', MEMO_DIR, memos[0]));
		execaSync('mkfifo', [path.join(cwd, 'root', MEMO_DIR, memos[0])]);
		expect((await link()).stderr).toMatch(/\(inputs read: 2, known unchanged: 0\)/);
		expect(fs.readFileSync(path.join(cwd, 'out.o')).equals(cached)).toBe(true);
	});
});

// vfat keeps no ctime: Linux (here through FUSE, on a real vfat image made by
// mkfs.vfat) reports mtime for it, and a file rewritten in place keeps its
// slot, so its inode. sshfs, exFAT and some network file systems alike.
const onVfat = isRoot && Boolean(onPath('mkfs.vfat') && onPath('fusefat')) && fs.existsSync('/dev/fuse');
describeIf(hasToolchain && onVfat, `${TOOLCHAIN}, root, mkfs.vfat (dosfstools), fusefat and /dev/fuse`)(
	'the inputs memo on a file system whose ctime the kernel does not keep (vfat)',
	() => {
		let mnt: string;
		const objects: Record<string, Buffer> = {};
		let main: string;
		/** Where the objects' .incbin files are: not on vfat, whose FUSE driver sometimes reads a file just written there as zeros. */
		let blobs: string;

		beforeAll(async () => {
			const dir = scratch('vfat');
			const image = path.join(dir, 'fat.img');
			fs.writeFileSync(image, '');
			fs.truncateSync(image, 32 * 1024 * 1024);
			execaSync('mkfs.vfat', [image]);
			mnt = path.join(dir, 'mnt');
			fs.mkdirSync(mnt);
			execaSync('fusefat', ['-o', 'rw+', image, mnt]);
			// Two objects of one size: a.bin and b.bin embedded, get() returning them.
			const obj = scratch('objs');
			blobs = scratch('blobs');
			for (const name of ['a', 'b']) {
				const source = `asm(".section .rodata\\n.global blob\\nblob:\\n.incbin \\"${blobs}/${name}.bin\\"\\n.byte 0\\n.previous\\n");\nextern const char blob[];\nconst char *get(void) { return blob; }\n`;
				fs.writeFileSync(path.join(obj, `${name}.c`), source);
				fs.writeFileSync(path.join(blobs, `${name}.bin`), name); // clang >= 19 reads it when it compiles
				execaSync('clang', ['-flto=thin', '-O2', '-c', `${name}.c`, '-o', `${name}.o`], { cwd: obj });
				objects[name] = fs.readFileSync(path.join(obj, `${name}.o`));
			}
			const size = Math.ceil(Math.max(objects.a.length, objects.b.length) / 4) * 4;
			for (const name of ['a', 'b']) objects[name] = Buffer.concat([objects[name], Buffer.alloc(size - objects[name].length)]);
			fs.writeFileSync(path.join(obj, 'main.c'), '#include <stdio.h>\nconst char *get(void);\nint main(void) { puts(get()); return 0; }\n');
			execaSync('clang', ['-flto=thin', '-O2', '-c', 'main.c', '-o', 'main.o'], { cwd: obj });
			main = path.join(obj, 'main.o');
		});
		afterAll(() => {
			// Lazily: a process the test started may still be leaving it; the scratch directory goes next.
			if (mnt) execaSync('umount', ['-l', mnt], { reject: false });
		});

		/** A fresh directory on the vfat file system. */
		const onFat = (() => {
			let n = 0;
			return () => {
				const dir = path.join(mnt, `w${n++}`);
				fs.mkdirSync(dir);
				return dir;
			};
		})();
		/** Rewrite a file in place and set its times back, as cp -p, rsync -t or touch -r leave it. */
		function rewrite(file: string, bytes: Buffer) {
			const fd = fs.openSync(file, 'r+');
			fs.writeSync(fd, bytes, 0, bytes.length, 0);
			fs.closeSync(fd);
			fs.utimesSync(file, WHOLE_SECOND, WHOLE_SECOND);
		}

		it('never answers from the memo there: a rewrite with its times restored shows in nothing but the contents', () => {
			const cwd = onFat();
			const root = scratch('root');
			const file = path.join(cwd, 'in.o');
			fs.writeFileSync(file, objects.a);
			fs.utimesSync(file, WHOLE_SECOND, WHOLE_SECOND);
			const before = fs.statSync(file, { bigint: true });
			const read = () => {
				const memo = openMemo(root, cwd, ['in.o']);
				const inputs = readInputs(['in.o'], cwd, memo);
				memo.save();
				return { inputs, ...memo.counts };
			};
			expect(read()).toMatchObject({
				read: 1,
				recalled: 0,
				inputs: { asm: [`.section .rodata\n.global blob\nblob:\n.incbin "${blobs}/a.bin"\n.byte 0\n.previous\n`] },
			});
			expect(read()).toMatchObject({ read: 1, recalled: 0 });
			rewrite(file, objects.b);
			const after = fs.statSync(file, { bigint: true });
			// What the memo would have keyed on is all the same here.
			expect([after.dev, after.ino, after.size, after.mtimeNs, after.ctimeNs]).toEqual([
				before.dev,
				before.ino,
				before.size,
				before.mtimeNs,
				before.ctimeNs,
			]);
			expect(read()).toMatchObject({ read: 1, recalled: 0, inputs: { asm: [expect.stringContaining(`.incbin "${blobs}/b.bin"`)] } });
			expect(fs.existsSync(path.join(root, MEMO_DIR))).toBe(false); // nothing to remember, nothing written
		});

		it('through the shim: an object rewritten with its times restored, then its .incbin file changed, links as lld does uncached', async () => {
			const cwd = onFat();
			const out = scratch('out');
			const shims = shimDir(scratch('shims'), SHIM, ['ld.lld']);
			const env = { LTOCACHE_MODE: 'add', LTOCACHE_DIR: path.join(out, 'root') };
			const link = async () => {
				const args = ['-flto=thin', '-fuse-ld=lld', 'in.o', main];
				const cached = await execa('clang', [...args, `--ld-path=${shims}/ld.lld`, '-o', path.join(out, 'cached')], {
					cwd,
					env,
					reject: false,
				});
				const direct = await execa('clang', [...args, `--ld-path=${LLD}`, '-o', path.join(out, 'uncached')], { cwd, reject: false });
				expect([cached.exitCode, cached.stderr, direct.exitCode]).toEqual([0, '', 0]);
				expect(fs.readFileSync(path.join(out, 'cached')).equals(fs.readFileSync(path.join(out, 'uncached')))).toBe(true);
				return (await execa(path.join(out, 'cached'))).stdout;
			};
			fs.writeFileSync(path.join(blobs, 'a.bin'), 'a-1');
			fs.writeFileSync(path.join(blobs, 'b.bin'), 'b-1');
			const file = path.join(cwd, 'in.o');
			fs.writeFileSync(file, objects.a);
			fs.utimesSync(file, WHOLE_SECOND, WHOLE_SECOND);
			expect(await link()).toBe('a-1');
			rewrite(file, objects.b);
			expect(await link()).toBe('b-1');
			// A memo that had answered for in.o would still say a.bin: the directory of a-1, where b-1 is cached.
			fs.writeFileSync(path.join(blobs, 'b.bin'), 'b-2');
			expect(await link()).toBe('b-2');
		});
	},
);
