// Links built to make the cache stale, each linked through the shim in add
// mode (the same choice of directory as redirect mode) and compared byte for
// byte with an uncached link of the same inputs by the real ld.lld: the
// cached answer must be the uncached one, or the link goes without a cache
// and says so once. Each case changes what the link depends on between two
// links, the way a rebuild would, and keeps the objects.
import fs from 'node:fs';
import path from 'node:path';
import { execa, execaSync } from 'execa';
import fc from 'fast-check';
import { beforeAll, expect, it } from 'vitest';
import { describeIf, entriesBelow, hasToolchain, LLD, onPath, SHIM, scratchRoot, shimDir, TOOLCHAIN } from '../helpers/tools.js';

const scratch = scratchRoot();

const MAIN = '#include <stdio.h>\nconst char *get(void);\nint main(void) { puts(get()); return 0; }\n';
/** Module asm that embeds a file, the name spelled as given, in a rodata blob get() returns. */
const blobSource = (asm: string) =>
	`asm(".section .rodata\\n.global blob\\nblob:\\n${asm.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n')}\\n.byte 0\\n.previous\\n");\n` +
	'extern const char blob[];\nconst char *get(void) { return blob; }\n';

describeIf(hasToolchain && Boolean(onPath('mkfifo')), `${TOOLCHAIN}, and mkfifo`)('links built to make the cache stale', () => {
	let shims: string;
	beforeAll(() => {
		shims = shimDir(scratch('shims'), SHIM, ['ld.lld']);
	});

	/** A working directory with these files (parents made). */
	function tree(files: Record<string, string>): string {
		const cwd = scratch('cwd');
		write(cwd, files);
		return cwd;
	}
	function write(cwd: string, files: Record<string, string>): void {
		for (const [name, text] of Object.entries(files)) {
			fs.mkdirSync(path.dirname(path.join(cwd, name)), { recursive: true });
			fs.writeFileSync(path.join(cwd, name), text);
		}
	}
	const compile = (cwd: string, name: string, source: string, flags: string[] = []) => {
		fs.writeFileSync(path.join(cwd, `${name}.c`), source);
		execaSync('clang', ['-flto=thin', '-O2', ...flags, '-c', `${name}.c`, '-o', `${name}.o`], { cwd, reject: false });
		return `${name}.o`;
	};

	/**
	 * Link through the shim (add mode, a cache root of the test's) and with the
	 * real ld.lld and no cache; both programs' bytes, the shim's stderr lines
	 * and how many entries the cache holds.
	 */
	async function both(cwd: string, args: string[], env: Record<string, string> = {}) {
		const xdg = path.join(cwd, '.xdg');
		const viaShim = await execa('clang', ['-flto=thin', '-fuse-ld=lld', `--ld-path=${shims}/ld.lld`, ...args, '-o', 'cached'], {
			cwd,
			reject: false,
			env: { LTOCACHE_MODE: 'add', XDG_CACHE_HOME: xdg, LTOCACHE_DIR: '', ...env },
		});
		const direct = await execa('clang', ['-flto=thin', '-fuse-ld=lld', `--ld-path=${LLD}`, ...args, '-o', 'uncached'], {
			cwd,
			reject: false,
		});
		expect(direct.exitCode, direct.stderr).toBe(0);
		expect(viaShim.exitCode, viaShim.stderr).toBe(0);
		return {
			same: fs.readFileSync(path.join(cwd, 'cached')).equals(fs.readFileSync(path.join(cwd, 'uncached'))),
			said: viaShim.stderr.split('\n').filter((l) => l.startsWith('ltocache:')),
			entries: entriesBelow(xdg).length,
			printed: (await execa(path.join(cwd, 'cached'), { reject: false })).stdout,
		};
	}

	/** Link, change files, link again: both times the cached program equals the uncached one; returns the second link. */
	async function twice(cwd: string, args: string[], change: Record<string, string>, env: Record<string, string> = {}) {
		const first = await both(cwd, args, env);
		expect(first.same).toBe(true);
		write(cwd, change);
		const second = await both(cwd, args, env);
		expect(second.same).toBe(true);
		return { first, second };
	}
	const refused = (said: string[], why: RegExp) => {
		expect(said).toEqual([expect.stringMatching(why)]);
		expect(said[0]).toMatch(/linking without a ThinLTO cache$/);
	};

	it('keeps ordinary code cached: a rebuild with nothing changed writes nothing', async () => {
		const cwd = tree({ 'blob.bin': 'plain' });
		const objs = [compile(cwd, 'blob', blobSource('.incbin "blob.bin"')), compile(cwd, 'main', MAIN)];
		const first = await both(cwd, objs);
		expect(first).toMatchObject({ same: true, said: [], printed: 'plain', entries: 2 });
		const again = await both(cwd, objs);
		expect(again).toMatchObject({ same: true, said: [], entries: 2 });
	});

	it('refuses directives that macros spell: .inc\\()bin in a .macro, .irp d,incbin then .\\d, a directive passed whole', async () => {
		const spellings = [
			'.macro emb f\n.inc\\()bin "\\f"\n.endm\nemb blob.bin',
			'.irp d,incbin\n.\\d "blob.bin"\n.endr',
			'.macro run what\n\\what "blob.bin"\n.endm\nrun .incbin',
			'.rept 1\n.inc\\()bin "blob.bin"\n.endr',
		];
		for (const asm of spellings) {
			const cwd = tree({ 'blob.bin': 'old' });
			const objs = [compile(cwd, 'blob', blobSource(asm)), compile(cwd, 'main', MAIN)];
			const { second } = await twice(cwd, objs, { 'blob.bin': 'new' });
			expect(second.printed).toBe('new');
			refused(second.said, /a directive spelled by a macro argument or an operand/);
			expect(second.entries).toBe(0);
		}
	});

	it('refuses a file named by a macro argument, even when a file of the literal name exists; and .altmacro', async () => {
		const cwd = tree({ 'blob.bin': 'old', image: 'decoy' });
		const objs = [compile(cwd, 'blob', blobSource('.macro emb image\n.incbin "\\image"\n.endm\nemb blob.bin')), compile(cwd, 'main', MAIN)];
		const { second } = await twice(cwd, objs, { 'blob.bin': 'new' });
		expect(second.printed).toBe('new');
		refused(second.said, /a macro argument may name the file of \.incbin "\\image"/);

		const alt = tree({ 'blob.bin': 'old' });
		const altObjs = [
			compile(alt, 'blob', blobSource('.altmacro\n.macro emb f\n.incbin "blob.bin"\n.endm\nemb x')),
			compile(alt, 'main', MAIN),
		];
		refused((await twice(alt, altObjs, { 'blob.bin': 'new' })).second.said, /alternate macro mode/);
	});

	it('reads $ in an inline-asm name as lld does ($$ in IR), and refuses an operand in a name', async () => {
		const dollar =
			'const char *get(void) { const char *p; asm(".pushsection .rodata\\n1: .incbin \\"a$b.bin\\"\\n.byte 0\\n.popsection\\nlea 1b(%%rip), %0" : "=r"(p)); return p; }\n';
		const cwd = tree({ 'a$b.bin': 'one', 'a$$b.bin': 'decoy' });
		const objs = [compile(cwd, 'get', dollar), compile(cwd, 'main', MAIN)];
		const { first, second } = await twice(cwd, objs, { 'a$b.bin': 'two' });
		expect([first.printed, second.printed]).toEqual(['one', 'two']);
		expect(second.said).toEqual([]);
		expect(second.entries).toBe(4); // cached, in two directories

		const operand =
			'const char *get(void) { const char *p; asm(".pushsection .rodata\\n1: .incbin \\"%c1\\"\\n.byte 0\\n.popsection\\nlea 1b(%%rip), %0" : "=r"(p) : "i"(7)); return p; }\n';
		const op = tree({ '7': 'seven' });
		const opObjs = [compile(op, 'get', operand), compile(op, 'main', MAIN)];
		refused((await twice(op, opObjs, { '7': 'eight' })).second.said, /names an inline-asm operand/);
	});

	it("resolves names against the link's working directory through the file system, whatever $PWD spells", async () => {
		// $PWD names the working directory through a symlink (a shell keeps such a $PWD): ../blob.bin is real/blob.bin, not the decoy beside the symlink.
		const base = tree({ 'real/sub/.keep': '', 'real/blob.bin': 'real-old', 'blob.bin': 'decoy' });
		fs.symlinkSync('real/sub', path.join(base, 'alias'));
		const cwd = path.join(base, 'real/sub');
		const objs = [compile(cwd, 'blob', blobSource('.incbin "../blob.bin"')), compile(cwd, 'main', MAIN)];
		const { second } = await twice(cwd, objs, { '../blob.bin': 'real-new' }, { PWD: path.join(base, 'alias') });
		expect([second.printed, second.said]).toEqual(['real-new', []]);
	});

	it('resolves link/../blob.bin where the symlink points, as the assembler does, not on paper', async () => {
		const cwd = tree({ 'real/sub/x': '', 'real/blob.bin': 'real-old', 'blob.bin': 'decoy' });
		fs.symlinkSync('real/sub', path.join(cwd, 'link'));
		const objs = [compile(cwd, 'blob', blobSource('.incbin "link/../blob.bin"')), compile(cwd, 'main', MAIN)];
		const { second } = await twice(cwd, objs, { 'real/blob.bin': 'real-new' });
		expect(second.printed).toBe('real-new');
		expect(second.said).toEqual([]);
		// And an input object reached the same way.
		const other = tree({ 'real/sub/x': '', 'blob.bin': 'obj-old' });
		fs.symlinkSync('real/sub', path.join(other, 'link'));
		compile(other, 'main', MAIN);
		fs.writeFileSync(path.join(other, 'real/blob.c'), blobSource('.incbin "blob.bin"'));
		execaSync('clang', ['-flto=thin', '-O2', '-c', 'real/blob.c', '-o', 'real/blob.o'], { cwd: other });
		fs.writeFileSync(path.join(other, 'blob.o'), 'not this one');
		const { second: via } = await twice(other, ['link/../blob.o', 'main.o'], { 'blob.bin': 'obj-new' });
		expect(via.printed).toBe('obj-new');
	});

	it('follows linker scripts: INPUT, GROUP with AS_NEEDED, a -l that finds a script, -T with INPUT, INCLUDE, SEARCH_DIR', async () => {
		const cases: [Record<string, string>, string[]][] = [
			[{ 's.lds': 'INPUT(lib/blob.o)' }, ['s.lds', 'main.o']],
			[{ 's.lds': '/* c */ GROUP ( main.o AS_NEEDED ( lib/blob.o ) )' }, ['s.lds']],
			[{ 'lib/libz.so': 'INPUT(blob.o) # beside the script' }, ['main.o', '-Llib', '-lz']],
			[{ 'lib/libz.so': 'INPUT(blob.o)' }, ['main.o', '-Wl,-T,t.lds', '-Llib']],
			[{ 'i.lds': 'INCLUDE inner.lds', 'inner.lds': 'INPUT(-lq)', 'lib/libq.a': '' }, ['main.o', 'i.lds', '-Llib']],
			[{ 'd.lds': 'SEARCH_DIR(lib)', 'lib/libq.a': '' }, ['main.o', 'd.lds', '-Wl,-lq']],
		];
		for (const [files, args] of cases) {
			const cwd = tree({ 'blob.bin': 'old', 't.lds': 'INPUT(lib/blob.o)', ...files });
			fs.writeFileSync(path.join(cwd, 'blob.c'), blobSource('.incbin "blob.bin"'));
			fs.mkdirSync(path.join(cwd, 'lib'), { recursive: true });
			execaSync('clang', ['-flto=thin', '-O2', '-c', 'blob.c', '-o', 'lib/blob.o'], { cwd });
			if (files['lib/libq.a'] !== undefined) {
				fs.rmSync(path.join(cwd, 'lib/libq.a'));
				execaSync('llvm-ar', ['rcs', 'lib/libq.a', 'lib/blob.o'], { cwd });
			}
			compile(cwd, 'main', MAIN);
			const { second } = await twice(cwd, args, { 'blob.bin': 'new' });
			expect([args, second.printed, second.said]).toEqual([args, 'new', []]);
		}
	});

	it('follows --chroot, and refuses a FIFO input, which it cannot read without taking it from lld', async () => {
		// lld -r, as Kbuild links: a whole program under --chroot would need its C library there too.
		const cwd = tree({ 'jail/blob.bin': 'old' });
		fs.writeFileSync(path.join(cwd, 'blob.c'), blobSource('.incbin "jail/blob.bin"'));
		fs.mkdirSync(path.join(cwd, 'jail', cwd), { recursive: true });
		execaSync('clang', ['-flto=thin', '-O2', '-c', 'blob.c', '-o', path.join('jail', cwd, 'blob.o')], { cwd });
		fs.writeFileSync(path.join(cwd, 'blob.o'), 'outside the chroot');
		const args = ['--chroot', 'jail', '-r', path.join(cwd, 'blob.o')];
		const env = { LTOCACHE_MODE: 'add', XDG_CACHE_HOME: path.join(cwd, '.xdg') };
		for (const contents of ['old', 'new']) {
			fs.writeFileSync(path.join(cwd, 'jail/blob.bin'), contents);
			const viaShim = await execa(`${shims}/ld.lld`, [...args, '-o', 'cached.o'], { cwd, env, reject: false });
			await execa(LLD, [...args, '-o', 'uncached.o'], { cwd });
			expect([viaShim.exitCode, viaShim.stderr]).toEqual([0, '']);
			expect(fs.readFileSync(path.join(cwd, 'cached.o')).equals(fs.readFileSync(path.join(cwd, 'uncached.o')))).toBe(true);
		}
		expect(entriesBelow(path.join(cwd, '.xdg')).length).toBe(2);

		const fifo = tree({ 'blob.bin': 'fifo' });
		compile(fifo, 'blob', blobSource('.incbin "blob.bin"'));
		compile(fifo, 'main', MAIN);
		const shimmed = await execa(
			'sh',
			['-c', `mkfifo in.o; cat blob.o > in.o & exec clang -flto=thin -fuse-ld=lld --ld-path=${shims}/ld.lld in.o main.o -o cached`],
			{ cwd: fifo, reject: false, env: { LTOCACHE_MODE: 'add', XDG_CACHE_HOME: path.join(fifo, '.xdg') } },
		);
		expect(shimmed.exitCode, shimmed.stderr).toBe(0);
		refused(
			shimmed.stderr.split('\n').filter((l) => l.startsWith('ltocache:')),
			/in\.o is not a regular file/,
		);
		expect((await execa(path.join(fifo, 'cached'))).stdout).toBe('fifo');
	});

	it('decodes escapes in a name as LLVM does: \\X41, and a \\x run longer than 13 digits keeps its low byte', async () => {
		// The decoys are the files an escape decoded otherwise names: X41.bin for \X41 read as X, @.bin for a 56-bit number rounded.
		for (const name of ['\\X41.bin', '\\x80000000000041.bin']) {
			const cwd = tree({ 'A.bin': 'old', 'X41.bin': 'decoy', '@.bin': 'decoy' });
			const objs = [compile(cwd, 'blob', blobSource(`.incbin "${name}"`)), compile(cwd, 'main', MAIN)];
			const { first, second } = await twice(cwd, objs, { 'A.bin': 'new' });
			expect([first.printed, second.printed, second.said]).toEqual(['old', 'new', []]);
			expect(second.entries).toBe(4); // one directory for each of A.bin's contents
		}
	});

	it('reads no FIFO named by .incbin: lld gets its data, the link goes without a cache, said once', { timeout: 60_000 }, async () => {
		// One writer a link, as a build would have: a guard that drained the FIFO would leave lld waiting forever (the test's timeout).
		const cwd = tree({ pipe: 'compile-time stand-in' });
		compile(cwd, 'blob', blobSource('.incbin "pipe"'));
		fs.rmSync(path.join(cwd, 'pipe'));
		execaSync('mkfifo', [path.join(cwd, 'pipe')]);
		const link = (ld: string, out: string, env: Record<string, string> = {}) =>
			execa('sh', ['-c', 'printf fifo-data >pipe & exec "$@"', 'sh', ld, '-r', 'blob.o', '-o', out], { cwd, reject: false, env });
		const viaShim = await link(`${shims}/ld.lld`, 'cached.o', { LTOCACHE_MODE: 'add', XDG_CACHE_HOME: path.join(cwd, '.xdg') });
		const direct = await link(LLD, 'uncached.o');
		expect([viaShim.exitCode, direct.exitCode]).toEqual([0, 0]);
		refused(
			viaShim.stderr.split('\n').filter((l) => l.startsWith('ltocache:')),
			/cannot read .*pipe, named by \.incbin \(not a regular file\)/,
		);
		expect(fs.readFileSync(path.join(cwd, 'cached.o')).equals(fs.readFileSync(path.join(cwd, 'uncached.o')))).toBe(true);
		expect(fs.readFileSync(path.join(cwd, 'cached.o')).includes('fifo-data')).toBe(true);
	});

	it('refuses a file whose symbol names hold a backslash when its inline asm has operands: LLVM before 20 prints them unescaped', async () => {
		// "x\\" + "\": .incbin " would end the quotes and read the rest as assembly; here the name is harmless, the rule the same.
		const cwd = tree({});
		const source =
			'int weird __asm__("x\\\\y") = 5;\nvoid mark(void) { asm volatile(".pushsection .rodata\\n.long %c0\\n.popsection" :: "i"(&weird)); }\n';
		compile(cwd, 'weird', source, ['-fno-pic']);
		const env = { LTOCACHE_MODE: 'add', XDG_CACHE_HOME: path.join(cwd, '.xdg') };
		const viaShim = await execa(`${shims}/ld.lld`, ['-r', 'weird.o', '-o', 'cached.o'], { cwd, env, reject: false });
		await execa(LLD, ['-r', 'weird.o', '-o', 'uncached.o'], { cwd });
		expect(viaShim.exitCode, viaShim.stderr).toBe(0);
		refused(
			viaShim.stderr.split('\n').filter((l) => l.startsWith('ltocache:')),
			/weird\.o \(a symbol name holds a backslash, which an inline-asm operand may print as assembly\)/,
		);
		expect(fs.readFileSync(path.join(cwd, 'cached.o')).equals(fs.readFileSync(path.join(cwd, 'uncached.o')))).toBe(true);
	});

	it('reads a working directory whose path is not UTF-8, or is but not ASCII, byte for byte: inputs, response files, .incbin names', async () => {
		for (const name of [Buffer.from([0x62, 0xff, 0x2d]), Buffer.from('café', 'utf8')]) {
			const base = tree({ 'blob.bin': 'x', 'not-a-dir': '' });
			const objs = [compile(base, 'blob', blobSource('.incbin "blob.bin"')), compile(base, 'main', MAIN)];
			const dir = Buffer.concat([Buffer.from(`${base}/`), name]);
			const inDir = (file: string) => Buffer.concat([dir, Buffer.from(`/${file}`)]);
			fs.mkdirSync(dir);
			for (const obj of objs) fs.copyFileSync(path.join(base, obj), inDir(obj));
			fs.writeFileSync(inDir('objs.rsp'), 'blob.o\n');
			// The directory as printf(1) reads it back: every byte outside [A-Za-z0-9/._-] in octal.
			const spelled = [...dir]
				.map((b) => (/[A-Za-z0-9/._-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `\\${b.toString(8).padStart(3, '0')}`))
				.join('');
			const env = { XDG_CACHE_HOME: path.join(base, '.xdg'), LTOCACHE_DIR: '' };
			// A cache directory below a file (ENOTDIR) is unusable to root too: redirect mode moves it.
			const link = (ld: string, out: string, flags: string[]) =>
				execa(
					'sh',
					[
						'-c',
						'cd "$(printf "$0")" && exec "$@"',
						spelled,
						'clang',
						'-flto=thin',
						'-fuse-ld=lld',
						`--ld-path=${ld}`,
						'-Wl,@objs.rsp',
						'main.o',
						...flags,
						'-o',
						out,
					],
					{
						env,
						reject: false,
					},
				);
			for (const contents of ['old', 'new']) {
				fs.writeFileSync(inDir('blob.bin'), contents);
				const viaShim = await link(`${shims}/ld.lld`, 'cached', [`-Wl,--thinlto-cache-dir=${base}/not-a-dir/cache`]);
				const direct = await link(LLD, 'uncached', []);
				expect([viaShim.exitCode, viaShim.stderr, direct.exitCode]).toEqual([0, '', 0]);
				expect(fs.readFileSync(inDir('cached')).equals(fs.readFileSync(inDir('uncached')))).toBe(true);
				expect(fs.readFileSync(inDir('cached')).includes(`${contents}\0`)).toBe(true);
			}
			expect(entriesBelow(path.join(base, '.xdg')).length).toBe(4); // cached, one directory for each contents
		}
	});

	it('keys the options lld leaves out of its key: --plugin-opt=-<llvm option>', async () => {
		const cwd = tree({ 'o.c': 'int other(int x) { return x * 21; }\nconst char *get(void) { return other(2) == 42 ? "ok" : "no"; }\n' });
		const objs = [compile(cwd, 'o', fs.readFileSync(path.join(cwd, 'o.c'), 'utf8')), compile(cwd, 'main', MAIN)];
		const aligned = (n: number) => [...objs, `-Wl,--plugin-opt=-align-all-functions=${n}`];
		expect(await both(cwd, aligned(4))).toMatchObject({ same: true, said: [] });
		const eight = await both(cwd, aligned(8));
		expect(eight).toMatchObject({ same: true, said: [] });
		expect(fs.readdirSync(path.join(cwd, '.xdg/ltocache/_no-kernel')).filter((d) => d.includes('+opt-')).length).toBe(2);
	});

	it('refuses a cache root whose path holds a %, which lld would take for a placeholder', async () => {
		const cwd = tree({ 'blob.bin': 'pct' });
		const objs = [compile(cwd, 'blob', blobSource('.incbin "blob.bin"')), compile(cwd, 'main', MAIN)];
		const result = await both(cwd, objs, { LTOCACHE_DIR: path.join(cwd, '100%') });
		expect(result.same).toBe(true);
		refused(result.said, /the cache root .*100% holds a %, which lld cannot use/);
	});

	it('removes what a link wrote when an .incbin file changed while lld ran, so no later link is served it', async () => {
		const cwd = tree({ 'blob.bin': 'before' });
		const objs = [compile(cwd, 'blob', blobSource('.incbin "blob.bin"')), compile(cwd, 'main', MAIN)];
		// The real linker behind a wrapper that changes the file first: the shim hashed "before", lld reads "during".
		const wrapper = path.join(cwd, 'racing-ld');
		fs.writeFileSync(wrapper, `#!/bin/sh\nprintf during > "${cwd}/blob.bin"\nexec "${LLD}" "$@"\n`, { mode: 0o755 });
		fs.writeFileSync(path.join(cwd, 'blob.bin'), 'before');
		const raced = await execa('clang', ['-flto=thin', '-fuse-ld=lld', `--ld-path=${shims}/ld.lld`, ...objs, '-o', 'raced'], {
			cwd,
			reject: false,
			env: { LTOCACHE_MODE: 'add', XDG_CACHE_HOME: path.join(cwd, '.xdg'), LTOCACHE_LD: wrapper },
		});
		expect(raced.exitCode, raced.stderr).toBe(0);
		expect(raced.stderr).toMatch(
			/^ltocache: a file this link's cache directory stands for changed while lld ran; removed the 2 cache entries it wrote$/m,
		);
		expect(entriesBelow(path.join(cwd, '.xdg'))).toEqual([]);
		// Back to the contents the directory's name stands for: the program carries them, not the raced ones.
		fs.writeFileSync(path.join(cwd, 'blob.bin'), 'before');
		const after = await both(cwd, objs);
		expect([after.same, after.printed]).toEqual([true, 'before']);
	});

	it('matches an uncached link for generated asm built from the directive set (macros, .irp, .rept, .if, .include, escapes)', async () => {
		const pieces = fc.constantFrom(
			'.incbin "blob.bin"',
			'.incbin "bl\\157b.bin"',
			'.incbin "blob.bin", 1, 2',
			'.include "inc.s"',
			'.if 0\n.incbin "blob.bin"\n.endif',
			'.rept 2\n.incbin "blob.bin"\n.endr',
			'.irp f,blob.bin\n.incbin "\\f"\n.endr',
			'.irp d,incbin\n.\\d "blob.bin"\n.endr',
			'.macro m\\@x a\n.\\a "blob.bin"\n.endm',
			'.macro inc_\\@ n\n.byte \\n\n.endm',
			'.ascii "incbin ; \\\\"',
			'.byte 65',
		);
		let n = 0;
		await fc.assert(
			fc.asyncProperty(fc.array(pieces, { minLength: 1, maxLength: 4 }), fc.string({ minLength: 1, maxLength: 6 }), async (asm, text) => {
				const blob = text.replace(/[^A-Za-z0-9]/g, 'x') || 'x';
				const cwd = tree({ 'blob.bin': blob, 'inc.s': '.incbin "blob.bin"\n' });
				// Each macro piece gets names of its own: the same piece twice would define a macro twice, which no link accepts.
				const source = blobSource(asm.map((piece) => piece.replaceAll('\\@', String(n++))).join('\n'));
				if (!fs.existsSync(path.join(cwd, compile(cwd, 'blob', source)))) return; // the assembler refused the piece
				compile(cwd, 'main', MAIN);
				const { second } = await twice(cwd, ['blob.o', 'main.o'], { 'blob.bin': `${blob}2` });
				expect(second.said.length).toBeLessThanOrEqual(1);
			}),
			{ numRuns: 12 },
		);
	});
});
