// What the shim reads of a link's inputs, with real clang objects and llvm-ar
// archives: which files lld would read (arguments, response files, -l
// through -L), which of their modules are ThinLTO, and their asm.
import fs from 'node:fs';
import path from 'node:path';
import { execaSync } from 'execa';
import { beforeAll, expect, it } from 'vitest';
import { scanArgs } from '../../src/shim/argv.js';
import { concernsGuard } from '../../src/shim/incbin.js';
import { readInputs } from '../../src/shim/inputs.js';
import { describeIf, hasToolchain, scratchRoot, TOOLCHAIN } from '../helpers/tools.js';

const scratch = scratchRoot();
/** The module asm of one.c below, as the reader returns it. */
const ONE_ASM = '.globl one_marker\none_marker: # not an .include\n';
/** The inline asm of two.c: a comment naming the directive is enough for the guard to want it. */
const TWO_ASM = 'nop # two, no .incbin';

describeIf(hasToolchain, TOOLCHAIN)('reading a link inputs', () => {
	let dir: string;
	const obj = (name: string) => path.join(dir, `${name}.o`);

	beforeAll(() => {
		dir = scratch('objs');
		const sources: Record<string, string> = {
			one: 'asm(".globl one_marker\\none_marker: # not an .include"); int one(int x) { return x + 1; }',
			two: 'int two(int x) { asm volatile("nop # two, no .incbin" ::: "memory"); asm volatile("nop" ::: "memory"); return x * 2; }',
			three: 'int three(int x) { return x * 3; }',
		};
		for (const [name, text] of Object.entries(sources)) {
			fs.writeFileSync(path.join(dir, `${name}.c`), text);
			execaSync('clang', ['-flto=thin', '-O2', '-c', path.join(dir, `${name}.c`), '-o', obj(name)]);
		}
		execaSync('clang', ['-O2', '-c', path.join(dir, 'three.c'), '-o', obj('elf')]);
		fs.writeFileSync(path.join(dir, 'v.cpp'), 'struct S { virtual int v(); }; int S::v() { return 1; } int use(S *s) { return s->v(); }');
		execaSync('clang++', [
			'-flto=thin',
			'-fsplit-lto-unit',
			'-fwhole-program-vtables',
			'-fvisibility=hidden',
			'-c',
			path.join(dir, 'v.cpp'),
			'-o',
			obj('split'),
		]);
	});

	const read = (args: string[], cwd = dir) => {
		const scan = scanArgs(args, cwd);
		if (scan.kind === 'unsure') throw new Error(scan.why);
		// The modules that carry asm, as the seeding of a directory needs them, are looked at in their own test.
		const { units: _, ...inputs } = readInputs(scan.words, cwd, undefined, concernsGuard);
		return inputs;
	};

	it('counts ThinLTO modules and lists the asm the guard needs (a plain nop is not) of objects and response files, not of option values', () => {
		fs.writeFileSync(path.join(dir, 'list.rsp'), `"${obj('two')}" three.o\n`);
		fs.writeFileSync(path.join(dir, 'layout.lds'), 'SECTIONS { .text : { *(.text) } }\n');
		const inputs = read([
			'-r',
			'-o',
			obj('three'),
			'-T',
			'layout.lds',
			'-m',
			'elf_x86_64',
			obj('one'),
			'@list.rsp',
			obj('elf'),
			'-mllvm',
			'-x',
		]);
		expect(inputs).toEqual({ modules: 3, asm: [ONE_ASM, TWO_ASM] });
		// A C++ object with -fsplit-lto-unit: one ThinLTO module and one regular LTO module, which lld does not cache.
		expect(read([obj('split')]).modules).toBe(1);
	});

	it('reads archives, regular and thin, members resolved against the thin archive', () => {
		const lib = scratch('lib');
		execaSync('llvm-ar', ['rcs', path.join(lib, 'libreg.a'), obj('one'), obj('elf')]);
		fs.mkdirSync(path.join(lib, 'sub'));
		fs.copyFileSync(obj('two'), path.join(lib, 'sub', 'a-rather-long-member-name-two.o'));
		execaSync('llvm-ar', ['rcsT', path.join(lib, 'thin.a'), 'sub/a-rather-long-member-name-two.o', obj('three')], { cwd: lib });
		expect(read([path.join(lib, 'libreg.a')])).toEqual({ modules: 1, asm: [ONE_ASM] });
		expect(read(['thin.a'], lib)).toEqual({ modules: 2, asm: [TWO_ASM] });
	});

	it('reads BSD archives (names inline after #1/), thin archives with a 64-bit symbol table, and odd-sized members', () => {
		const lib = scratch('lib');
		fs.copyFileSync(obj('two'), path.join(lib, 'a-rather-long-member-name-two.o'));
		fs.writeFileSync(path.join(lib, 'odd.txt'), 'odd'); // padded to an even size in the archive
		fs.writeFileSync(path.join(lib, 'z'), 'z'); // shorter than a bitcode magic, and last
		fs.writeFileSync(path.join(lib, 'empty'), '');
		execaSync('llvm-ar', ['rcs', '--format=bsd', 'bsd.a', obj('one'), 'a-rather-long-member-name-two.o'], { cwd: lib });
		expect(read(['bsd.a'], lib)).toEqual({ modules: 2, asm: [ONE_ASM, TWO_ASM] });
		execaSync('llvm-ar', ['rcsT', 'thin64.a', obj('one'), obj('two')], { cwd: lib, env: { SYM64_THRESHOLD: '0' } });
		expect(fs.readFileSync(path.join(lib, 'thin64.a'), 'latin1')).toContain('/SYM64/');
		expect(read(['thin64.a'], lib).modules).toBe(2);
		execaSync('llvm-ar', ['rc', 'odd.a', 'odd.txt', 'empty', obj('one'), 'z'], { cwd: lib });
		expect(read(['odd.a'], lib)).toEqual({ modules: 1, asm: [ONE_ASM] });
	});

	it('says an archive it cannot read through is damaged: a bad header, a bad size, a member cut short, a bad member', () => {
		const lib = scratch('lib');
		execaSync('llvm-ar', ['rc', path.join(lib, 'good.a'), obj('three'), obj('one')]);
		const good = fs.readFileSync(path.join(lib, 'good.a'));
		const damaged = (name: string, bytes: Buffer) => {
			fs.writeFileSync(path.join(lib, name), bytes);
			return read([path.join(lib, name)]).problem;
		};
		const edited = (at: number, text: string) => {
			const copy = Buffer.from(good);
			copy.write(text, at, 'latin1');
			return copy;
		};
		expect(damaged('header.a', edited(8 + 58, 'xx'))).toBe(
			`cannot read ${path.join(lib, 'header.a')} (Error: bad archive member header at 8)`,
		);
		expect(damaged('size.a', edited(8 + 48, '-12       '))).toMatch(/\(Error: bad archive member size at 8\)$/);
		expect(damaged('nan.a', edited(8 + 48, 'twelve    '))).toMatch(/\(Error: bad archive member size at 8\)$/);
		expect(damaged('short.a', good.subarray(0, good.length - 100))).toMatch(/\(Error: archive ends inside a member\)$/);
		const bitcode = good.indexOf('BC\xc0\xde', 0, 'latin1');
		expect(damaged('member.a', edited(bitcode + 4, '\xff'.repeat(60)))).toMatch(/^cannot read the bitcode of .*member\.a\(three\.o\/\) \(/);
	});

	it('finds -l libraries the way lld does: every -L, .so before .a unless static, -l:file, sysroot', () => {
		const lib = scratch('lib');
		const sys = scratch('sys');
		fs.mkdirSync(path.join(sys, 'usr'));
		execaSync('llvm-ar', ['rcs', path.join(lib, 'libx.a'), obj('one')]);
		execaSync('llvm-ar', ['rcs', path.join(sys, 'usr', 'libs.a'), obj('two')]);
		fs.writeFileSync(path.join(lib, 'libx.so'), 'OUTPUT_FORMAT(elf64-x86-64)\n'); // a linker script, as libc.so is
		expect(read(['-lx', `-L${lib}`]).modules).toBe(0);
		expect(read(['-Bstatic', '-lx', '-Bdynamic', `-L${lib}`]).modules).toBe(1);
		expect(read(['-static', '-l', 'x', '-L', lib]).modules).toBe(1);
		expect(read(['-l:libx.a', `--library-path=${lib}`]).modules).toBe(1);
		expect(read(['--library=x', '--library-path', lib, '-Bstatic']).modules).toBe(0);
		expect(read([`--sysroot=${sys}`, '-L=/usr', '-ls']).modules).toBe(1);
		expect(read(['-lmissing', `-L${lib}`]).problem).toBe('-lmissing is not found on the library path');
		// Every spelling of static and dynamic, each holding for the -l after it.
		for (const on of ['-Bstatic', '-static', '-dn', '-non_shared']) expect(read([on, '-lx', `-L${lib}`]).modules).toBe(1);
		for (const off of ['-Bdynamic', '-dy', '-call_shared']) expect(read(['-Bstatic', off, '-lx', `-L${lib}`]).modules).toBe(0);
		expect(read(['-Bstatic', '--library=x', '-L', lib]).modules).toBe(1);
		expect(read(['-Bstatic', '--library', 'x', '-L', lib]).modules).toBe(1);
		expect(read(['-Bstatic', '-lx', `-L=${lib}`]).modules).toBe(1); // = with no sysroot: the directory itself
		expect(read(['-Bstatic', '--gc-sections', '-lx', `-L${lib}`]).modules).toBe(1); // other options leave it static
		expect(read(['-Bstatic', '-o', 'x', '-e', 'x', `-L${lib}`]).modules).toBe(0); // only -l names a library
	});

	it('takes the value of an option for the option, not for an input, and a file named - for a file', () => {
		const one = obj('one');
		const valued = ['-plugin-opt', '--plugin-opt', '--mllvm', '--symbol-ordering-file', '--dependency-file', '--error-limit', '-Map'];
		for (const opt of valued) expect(read([opt, one]).modules).toBe(0);
		expect(read(['-m', one, '--section-start', one, '-Ttext', one, '-Ttext-segment', one]).modules).toBe(0);
		// Joined only (JJ in lld's Options.td): lld rejects the separate spelling, and the next word is an input.
		expect(read(['--why-extract', one, '--package-metadata', one]).modules).toBe(2);
		const cwd = scratch('dash');
		fs.copyFileSync(one, path.join(cwd, '-'));
		expect(read(['-'], cwd).modules).toBe(1);
	});

	/** A directory holding the given files (text), and one.o and two.o wherever asked: each read shows in asm. */
	const tree = (files: Record<string, string>, objects: Record<string, 'one' | 'two'> = {}) => {
		const cwd = scratch('tree');
		for (const [name, text] of Object.entries(files)) {
			fs.mkdirSync(path.dirname(path.join(cwd, name)), { recursive: true });
			fs.writeFileSync(path.join(cwd, name), text);
		}
		for (const [name, which] of Object.entries(objects)) {
			fs.mkdirSync(path.dirname(path.join(cwd, name)), { recursive: true });
			if (name.endsWith('.a')) execaSync('llvm-ar', ['rcs', path.join(cwd, name), obj(which)]);
			else fs.copyFileSync(obj(which), path.join(cwd, name));
		}
		return cwd;
	};
	const ONE = { modules: 1, asm: [ONE_ASM] };
	const BOTH = { modules: 2, asm: [ONE_ASM, TWO_ASM] };

	it('follows linker scripts as lld does: INPUT and GROUP with AS_NEEDED, quotes and commas, beside the script, -l in a script', () => {
		const objects = { 'one.o': 'one', 'lib/two.o': 'two', 'lib/libq.a': 'two' } as const;
		expect(read(['s.lds'], tree({ 's.lds': 'INPUT(one.o)' }, objects))).toEqual(ONE);
		expect(read(['s.lds'], tree({ 's.lds': '/* c */ GROUP ( one.o AS_NEEDED ( lib/two.o ) ) # end' }, objects))).toEqual(BOTH);
		expect(read(['s.lds'], tree({ 's.lds': 'INPUT("one.o",lib/two.o)' }, objects))).toEqual(BOTH);
		// A name beside the script wins over one in the working directory; a script found by -l is read as one.
		expect(read(['-Llib', '-lz'], tree({ 'lib/libz.so': 'INPUT(two.o)', 'two.o': '' }, { ...objects }))).toEqual({
			modules: 1,
			asm: [TWO_ASM],
		});
		expect(read(['s.lds', '-Llib'], tree({ 's.lds': 'INPUT(-lq)' }, objects))).toEqual({ modules: 1, asm: [TWO_ASM] });
		// Then the working directory, then the search path; none of them: said.
		expect(read(['s.lds', '-Llib'], tree({ 's.lds': 'INPUT(two.o)' }, objects))).toEqual({ modules: 1, asm: [TWO_ASM] });
		expect(read(['s.lds'], tree({ 's.lds': 'INPUT(nowhere.o)' }, objects)).problem).toBe('nowhere.o, named by s.lds, is not found');
		// Words that only look like names are not inputs.
		expect(read(['s.lds'], tree({ 's.lds': 'SECTIONS { .text : { one.o(.text) } } OUTPUT(one.o)' }, objects))).toEqual({
			modules: 0,
			asm: [],
		});
	});

	it('follows -T, INCLUDE and SEARCH_DIR, a default script only without -T, and says what it cannot read', () => {
		const objects = { 'one.o': 'one', 'lib/libq.a': 'two' } as const;
		expect(read(['-T', 't.lds'], tree({ 't.lds': 'INPUT(one.o)' }, objects))).toEqual(ONE);
		expect(read(['--script=t.lds'], tree({ 't.lds': 'INPUT(one.o)' }, objects))).toEqual(ONE);
		expect(read(['-Tt.lds', '-Llib'], tree({ 't.lds': 'INCLUDE inner.lds', 'inner.lds': 'INPUT(-lq)' }, objects))).toEqual({
			modules: 1,
			asm: [TWO_ASM],
		});
		expect(read(['d.lds', '-lq'], tree({ 'd.lds': 'SEARCH_DIR(lib)' }, objects)).modules).toBe(1);
		expect(read(['-nostdlib', 'd.lds', '-lq'], tree({ 'd.lds': 'SEARCH_DIR(lib)' }, objects)).problem).toBe(
			'-lq is not found on the library path',
		);
		// -T is looked for on the search path too.
		expect(read(['-Llib', '-T', 'in-lib.lds'], tree({ 'lib/in-lib.lds': 'INPUT(one.o)' }, objects))).toEqual(ONE);
		expect(read(['-dT', 'd.lds'], tree({ 'd.lds': 'INPUT(one.o)' }, objects))).toEqual(ONE);
		expect(read(['--default-script=d.lds', '-T', 't.lds'], tree({ 'd.lds': 'INPUT(one.o)', 't.lds': '' }, objects))).toEqual({
			modules: 0,
			asm: [],
		});
		expect(read(['-T', 'missing.lds'], tree({}, objects)).problem).toBe('linker script missing.lds is not found');
		expect(read(['s.lds'], tree({ 's.lds': 'INPUT(one.o) /* open' }, objects)).problem).toBe(
			'cannot read linker script s.lds (unclosed comment or quote)',
		);
		expect(read(['s.lds'], tree({ 's.lds': 'INCLUDE s.lds' }, objects)).problem).toMatch(/^linker scripts nested deeper than \d+$/);
	});

	it('reads absolute names of a script under the sysroot inside it, = names against it, and everything under --chroot', () => {
		const sys = tree({ 'usr/lib/s.lds': 'INPUT(/usr/lib/one.o =/usr/lib/two.o)' }, { 'usr/lib/one.o': 'one', 'usr/lib/two.o': 'two' });
		expect(read([`--sysroot=${sys}`, path.join(sys, 'usr/lib/s.lds')])).toEqual(BOTH);
		// A script outside the sysroot: its absolute names are taken as they are.
		const outside = tree({ 's.lds': `INPUT(${path.join(sys, 'usr/lib/one.o')})` });
		expect(read([`--sysroot=${sys}`, 's.lds'], outside)).toEqual(ONE);
		expect(read([`--sysroot=${sys}`, path.join(sys, 'usr/lib/s.lds')], tree({})).modules).toBe(2);
		const missing = tree({ 'usr/lib/s.lds': 'INPUT(/usr/lib/gone.o)' });
		expect(read([`--sysroot=${missing}`, path.join(missing, 'usr/lib/s.lds')]).problem).toBe(
			`/usr/lib/gone.o, named by ${path.join(missing, 'usr/lib/s.lds')}, is not found in the sysroot`,
		);
		// Under --chroot an absolute name is read inside the jail (here it exists nowhere else); a relative one as it is.
		const jail = tree({}, { 'jail/nonexistent-ltocache/only.o': 'one', 'two.o': 'two' });
		expect(read(['--chroot', 'jail', '/nonexistent-ltocache/only.o', 'two.o'], jail)).toEqual(BOTH);
		expect(read(['--chroot', path.join(jail, 'jail'), '/nonexistent-ltocache/only.o'], tree({}))).toEqual(ONE);
		expect(read(['/nonexistent-ltocache/only.o'], jail)).toEqual({ modules: 0, asm: [] });
	});

	it('passes over -b binary inputs until the format changes back, --push-state and --pop-state included; refuses --remap-inputs and fat LTO objects', () => {
		expect(read(['-b', 'binary', obj('one'), '-b', 'default', obj('two')])).toEqual({ modules: 1, asm: [TWO_ASM] });
		expect(read(['--format=binary', obj('one'), '--format', 'elf64-x86-64', obj('two')])).toEqual({ modules: 1, asm: [TWO_ASM] });
		expect(read(['--push-state', '-b', 'binary', obj('one'), '--pop-state', obj('two')])).toEqual({ modules: 1, asm: [TWO_ASM] });
		expect(read(['-Bstatic', '--push-state', '-Bdynamic', '--pop-state', '-lq', `-L${path.dirname(obj('one'))}`]).problem).toBe(
			'-lq is not found on the library path',
		);
		expect(read(['--remap-inputs=a.o=b.o', obj('one')]).problem).toBe('--remap-inputs changes which files lld reads');
		expect(read(['--remap-inputs-file=map', obj('one')]).problem).toBe('--remap-inputs-file changes which files lld reads');
		// `--remap-inputs-file map` is no option of lld's (JJ in Options.td): lld fails on it, and map is an input.
		expect(read(['--remap-inputs-file', 'map', obj('one')])).toEqual({ modules: 1, asm: [ONE_ASM] });
		expect(read(['--fat-lto-objects', obj('one')]).problem).toBe('--fat-lto-objects links bitcode held inside ELF objects');
		expect(read(['--fat-lto-objects', '--no-fat-lto-objects', obj('one')])).toEqual(ONE);
	});

	it('refuses a FIFO, which it cannot read without taking it from lld, and reads /dev/null as nothing', () => {
		const cwd = tree({});
		execaSync('mkfifo', [path.join(cwd, 'in.o')]);
		expect(read(['in.o'], cwd).problem).toBe('in.o is not a regular file');
		expect(read(['/dev/null', obj('one')], cwd)).toEqual(ONE);
	});

	it('says which input it could not read through, and passes over what is not a regular file', () => {
		const bad = path.join(scratch('bad'), 'bad.o');
		fs.writeFileSync(bad, Buffer.concat([Buffer.from('BC\xc0\xde', 'latin1'), Buffer.from([0x35, 0x14, 0, 0, 5, 0, 0, 0, 0xff, 0xff])]));
		expect(read([obj('one'), bad]).problem).toMatch(/^cannot read the bitcode of .*bad\.o \(/);
		expect(read([dir, '/dev/null', path.join(dir, 'missing.o'), ''])).toEqual({ modules: 0, asm: [] });
	});
});
