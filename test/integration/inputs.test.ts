// What the shim reads of a link's inputs, with real clang objects and ar
// archives: which files lld would read (arguments, response files, -l
// through -L), which of their modules are ThinLTO, and their asm.
import fs from 'node:fs';
import path from 'node:path';
import { execaSync } from 'execa';
import { beforeAll, expect, it } from 'vitest';
import { scanArgs } from '../../src/shim/argv.js';
import { readInputs } from '../../src/shim/inputs.js';
import { describeIf, hasToolchain, onPath, scratchRoot } from '../helpers/tools.js';

const scratch = scratchRoot();

describeIf(hasToolchain && Boolean(onPath('ar')), 'clang, ld.lld and ar')('reading a link inputs', () => {
	let dir: string;
	const obj = (name: string) => path.join(dir, `${name}.o`);

	beforeAll(() => {
		dir = scratch('objs');
		const sources: Record<string, string> = {
			one: 'asm(".globl one_marker\\none_marker:"); int one(int x) { return x + 1; }',
			two: 'int two(int x) { asm volatile("nop # two" ::: "memory"); return x * 2; }',
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
		return readInputs(scan.words, cwd);
	};

	it('counts ThinLTO modules and lists asm of objects and response files, not of option values', () => {
		fs.writeFileSync(path.join(dir, 'list.rsp'), `"${obj('two')}" three.o\n`);
		const inputs = read([
			'-r',
			'-o',
			obj('three'),
			'-T',
			obj('three'),
			'-m',
			'elf_x86_64',
			obj('one'),
			'@list.rsp',
			obj('elf'),
			'-mllvm',
			'-x',
		]);
		expect(inputs).toEqual({ modules: 3, asm: ['.globl one_marker\none_marker:\n', 'nop # two'] });
		// A C++ object with -fsplit-lto-unit: one ThinLTO module and one regular LTO module, which lld does not cache.
		expect(read([obj('split')]).modules).toBe(1);
	});

	it('reads archives, regular and thin, members resolved against the thin archive', () => {
		const lib = scratch('lib');
		execaSync('ar', ['rcs', path.join(lib, 'libreg.a'), obj('one'), obj('elf')]);
		fs.mkdirSync(path.join(lib, 'sub'));
		fs.copyFileSync(obj('two'), path.join(lib, 'sub', 'a-rather-long-member-name-two.o'));
		execaSync('ar', ['rcsT', path.join(lib, 'thin.a'), 'sub/a-rather-long-member-name-two.o', obj('three')], { cwd: lib });
		expect(read([path.join(lib, 'libreg.a')])).toEqual({ modules: 1, asm: ['.globl one_marker\none_marker:\n'] });
		expect(read(['thin.a'], lib)).toEqual({ modules: 2, asm: ['nop # two'] });
	});

	it('finds -l libraries the way lld does: every -L, .so before .a unless static, -l:file, sysroot', () => {
		const lib = scratch('lib');
		const sys = scratch('sys');
		fs.mkdirSync(path.join(sys, 'usr'));
		execaSync('ar', ['rcs', path.join(lib, 'libx.a'), obj('one')]);
		execaSync('ar', ['rcs', path.join(sys, 'usr', 'libs.a'), obj('two')]);
		fs.writeFileSync(path.join(lib, 'libx.so'), 'INPUT(-lc)\n'); // a linker script, as libc.so is
		expect(read(['-lx', `-L${lib}`]).modules).toBe(0);
		expect(read(['-Bstatic', '-lx', '-Bdynamic', `-L${lib}`]).modules).toBe(1);
		expect(read(['-static', '-l', 'x', '-L', lib]).modules).toBe(1);
		expect(read(['-l:libx.a', `--library-path=${lib}`]).modules).toBe(1);
		expect(read(['--library=x', '--library-path', lib, '-Bstatic']).modules).toBe(0);
		expect(read([`--sysroot=${sys}`, '-L=/usr', '-ls']).modules).toBe(1);
		expect(read(['-lmissing', `-L${lib}`]).modules).toBe(0);
	});

	it('says which input it could not read through, and passes over what is not a regular file', () => {
		const bad = path.join(scratch('bad'), 'bad.o');
		fs.writeFileSync(bad, Buffer.concat([Buffer.from('BC\xc0\xde', 'latin1'), Buffer.from([0x35, 0x14, 0, 0, 5, 0, 0, 0, 0xff, 0xff])]));
		expect(read([obj('one'), bad]).problem).toMatch(/^cannot read the bitcode of .*bad\.o \(/);
		expect(read([dir, '/dev/null', path.join(dir, 'missing.o'), ''])).toEqual({ modules: 0, asm: [] });
	});
});
