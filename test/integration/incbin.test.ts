// The .incbin guard with real clang and lld, as the user nobody on a cache
// directory nobody can write: lld's own cache hands back a stale object when
// a file pulled in with .incbin changes (the reason Linux dropped its cache);
// through the shim, in redirect mode and in add mode, the program carries the
// new contents, and an unchanged rebuild is still served from the cache.
import fs from 'node:fs';
import path from 'node:path';
import { execa, execaSync } from 'execa';
import { beforeAll, expect, it } from 'vitest';
import {
	asNobody,
	describeIf,
	entries,
	entriesBelow,
	hasToolchain,
	identities,
	isRoot,
	LLD,
	SYSTEM_PATH,
	scratchRoot,
	shimDir,
	stagedShim,
	TOOLCHAIN,
} from '../helpers/tools.js';

const scratch = scratchRoot();

/** Module-level asm: the reproduction from Linux's removal of its cache. */
const MODULE_ASM = `
asm(".section .rodata\\n.global blob\\nblob:\\n.incbin \\"blob.bin\\"\\n.byte 0\\n.previous\\n");
extern const char blob[];
const char *get(void) { return blob; }
`;
/** Inline asm in a function, with skip and count, and a second file. */
const FUNCTION_ASM = `
const char *get(void) {
	const char *p;
	asm(".pushsection .rodata\\n1: .incbin \\"parts/head.bin\\", 2, 3\\n.incbin \\"tail.bin\\"\\n.byte 0\\n.popsection\\nlea 1b(%%rip), %0" : "=r"(p));
	return p;
}
`;
const MAIN = `
#include <stdio.h>
const char *get(void);
int other(int);
int main(void) { printf("%s %d\\n", get(), other(2)); return 0; }
`;
const OTHER = 'int other(int x) { return x * 21; }\n';
const PLAIN = 'const char *get(void) { return "plain"; }\n';

/**
 * A kernel module as Linux 5.12-5.16 builds it on x86-64 with objtool:
 * every BUG() ends in annotate_unreachable(), and instrumentation_begin()
 * is one too, each a label made of an "i" operand (`%c0:`). Another object
 * embeds a file, as kernel/configs.c does.
 */
const KERNEL_STYLE = `
#define instrumentation_begin() ({ asm volatile("%c0: nop\\n\\t.pushsection .discard.instr_begin\\n\\t.long %c0b - .\\n\\t.popsection\\n\\t" : : "i" (__COUNTER__)); })
#define annotate_unreachable() ({ asm volatile("%c0:\\n\\t.pushsection .discard.unreachable\\n\\t.long %c0b - .\\n\\t.popsection\\n\\t" : : "i" (__COUNTER__)); })
#define BUG() do { instrumentation_begin(); asm volatile("ud2"); annotate_unreachable(); __builtin_unreachable(); } while (0)
int mod_check(int x) { if (x > 100) BUG(); return x * 2; }
int mod_other(int x) { if (x < -100) BUG(); return x - 1; }
`;
const KERNEL_CONFIG = `asm(".pushsection .rodata, \\"a\\"\\n.global kernel_config_data\\nkernel_config_data:\\n.incbin \\"config_data.gz\\"\\n.popsection\\n");
extern const char kernel_config_data[];
const char *config(void) { return kernel_config_data; }
`;
/** C++ with a userland label operand (loop%=:), templates and exceptions. */
const CXX = `
#include <stdexcept>
#include <vector>
template <typename T> T spin(T n) { T r = n; asm("loop%=: dec %0\\n\\tjnz loop%=" : "+r"(r)); return r + n; }
int other(int x) { std::vector<int> v{x, 21}; if (v.empty()) throw std::runtime_error("empty"); return spin(v[0]) * v[1]; }
`;

describeIf(hasToolchain && isRoot, `${TOOLCHAIN}, and root (for nobody)`)('the .incbin guard', () => {
	let shims: string;
	let cli: string;
	let objects: Record<string, string>;

	beforeAll(() => {
		const pkg = stagedShim(scratch('pkg'));
		cli = path.join(path.dirname(pkg), 'ltocache');
		shims = shimDir(scratch('shims'), pkg);
		const obj = scratch('obj');
		objects = {};
		// clang >= 19 assembles module asm at compile time too, and fails on an .incbin file it cannot find (14 and 16 only say so).
		write(obj, 'blob.bin', 'compile-time');
		for (const [name, text] of Object.entries({ module: MODULE_ASM, function: FUNCTION_ASM, main: MAIN, other: OTHER, plain: PLAIN })) {
			fs.writeFileSync(path.join(obj, `${name}.c`), text);
			objects[name] = path.join(obj, `${name}.o`);
			execaSync('clang', ['-flto=thin', '-O2', '-c', `${name}.c`, '-o', objects[name]], { cwd: obj });
		}
		execaSync('chmod', ['-R', 'a+rX', obj]);
	});

	/** A working directory nobody writes the blobs and the program into, a cache directory nobody cannot write, and a cache home. */
	function setup() {
		const cwd = scratch('cwd');
		fs.chmodSync(cwd, 0o777);
		const xdg = scratch('xdg');
		fs.chmodSync(xdg, 0o777);
		const readOnly = scratch('tree'); // root's, 0755
		return { cwd, xdg, cacheDir: path.join(readOnly, '.thinlto-cache') };
	}
	const write = (cwd: string, file: string, text: string) => {
		fs.mkdirSync(path.dirname(path.join(cwd, file)), { recursive: true, mode: 0o755 });
		fs.writeFileSync(path.join(cwd, file), text, { mode: 0o644 });
	};

	/** clang links the program with the shim as its ld.lld, as nobody, in cwd; returns what the program prints. */
	async function build(cwd: string, xdg: string, inputs: string[], extra: string[] = [], env: Record<string, string> = {}) {
		const link = await asNobody(
			'sh',
			[
				'-c',
				'cd "$0" && exec "$@"',
				cwd,
				'clang',
				'-flto=thin',
				'-fuse-ld=lld',
				`--ld-path=${shims}/ld.lld`,
				...inputs,
				...extra,
				'-o',
				'prog',
			],
			{ PATH: `${shims}:${SYSTEM_PATH}`, HOME: '/nonexistent', XDG_CACHE_HOME: xdg, ...env },
		);
		if (link.exitCode !== 0) return { link, printed: undefined };
		const run = await execa(path.join(cwd, 'prog'), { reject: false });
		return { link, printed: run.stdout };
	}
	const cacheFlag = (dir: string) => [`-Wl,--thinlto-cache-dir=${dir}`];

	it('lld alone serves a stale object from its cache after the .incbin file changes (the bug)', async () => {
		const { cwd, xdg } = setup();
		const own = path.join(cwd, 'own-cache');
		const inputs = [objects.module, objects.main, objects.other];
		write(cwd, 'blob.bin', 'hello-v1');
		expect((await build(cwd, xdg, inputs, cacheFlag(own), { LTOCACHE_DISABLE: '1' })).printed).toBe('hello-v1 42');
		write(cwd, 'blob.bin', 'hello-v2');
		expect((await build(cwd, xdg, inputs, cacheFlag(own), { LTOCACHE_DISABLE: '1' })).printed).toBe('hello-v1 42');
	});

	for (const mode of ['redirect', 'add'] as const) {
		it(`${mode} mode: a changed .incbin file gets a fresh directory; unchanged rebuilds and the old contents stay cached`, async () => {
			const { cwd, xdg, cacheDir } = setup();
			const inputs = [objects.module, objects.main, objects.other];
			const [extra, env] = mode === 'redirect' ? [cacheFlag(cacheDir), {}] : [[], { LTOCACHE_MODE: 'add' }];
			const root = path.join(xdg, 'ltocache');
			const b = () => build(cwd, xdg, inputs, extra, env);

			write(cwd, 'blob.bin', 'hello-v1');
			const first = await b();
			expect(first.link).toMatchObject({ exitCode: 0, stderr: '' });
			expect(first.printed).toBe('hello-v1 42');
			const v1 = identities(cacheDirOf(root));
			expect(v1.length).toBe(3);

			write(cwd, 'blob.bin', 'hello-v2');
			expect((await b()).printed).toBe('hello-v2 42');
			const dirs = keyDirs(root);
			expect(dirs.length).toBe(2);
			const snapshot = dirs.map(identities);

			// Unchanged: warm, nothing written anywhere. Back to v1: its directory is still there, also warm.
			expect((await b()).printed).toBe('hello-v2 42');
			write(cwd, 'blob.bin', 'hello-v1');
			expect((await b()).printed).toBe('hello-v1 42');
			expect(keyDirs(root).map(identities)).toEqual(snapshot);
			expect(fs.existsSync(cacheDir)).toBe(false);
		});
	}

	it('add mode guards a usable cache directory too: a link that embeds files moves to a keyed directory, one that embeds none keeps its own', async () => {
		const { cwd, xdg } = setup();
		const own = path.join(cwd, 'own-cache');
		const root = path.join(xdg, 'ltocache');
		const env = { LTOCACHE_MODE: 'add' };
		const inputs = [objects.module, objects.main, objects.other];
		// Built before without the shim, as a kernel tree its owner can write is: lld's directory, which the fast path knew usable.
		write(cwd, 'blob.bin', 'hello-v1');
		expect((await build(cwd, xdg, inputs, cacheFlag(own), { LTOCACHE_DISABLE: '1' })).printed).toBe('hello-v1 42');
		const before = identities(own);
		expect(before.length).toBe(3);
		write(cwd, 'blob.bin', 'hello-v2');
		expect(await build(cwd, xdg, inputs, cacheFlag(own), env)).toMatchObject({
			link: { exitCode: 0, stderr: '' },
			printed: 'hello-v2 42',
		});
		write(cwd, 'blob.bin', 'hello-v1');
		expect((await build(cwd, xdg, inputs, cacheFlag(own), env)).printed).toBe('hello-v1 42');
		expect(keyDirs(root).length).toBe(2);
		expect(identities(own)).toEqual(before);

		// Nothing embedded: lld's own directory, as the build named it, and nothing under the root.
		const plain = setup();
		const plainOwn = path.join(plain.cwd, 'own-cache');
		const result = await build(plain.cwd, plain.xdg, [objects.plain, objects.main, objects.other], cacheFlag(plainOwn), env);
		expect(result).toMatchObject({ link: { exitCode: 0, stderr: '' }, printed: 'plain 42' });
		expect(entries(plainOwn).length).toBe(3);
		expect(entriesBelow(plain.xdg)).toEqual([]);
	});

	// Linux 5.12-5.16 passes --thinlto-cache-dir to every link; modules link with -r.
	for (const mode of ['redirect', 'add'] as const) {
		it(`${mode} mode caches a kernel-style module whose BUG()s label an operand (annotate_unreachable), the second link all hits`, async () => {
			const { cwd, xdg, cacheDir } = setup();
			const kernelFlags = ['-flto=thin', '-O2', '-fno-pic', '-mcmodel=kernel', '-ffreestanding', '-mno-red-zone', '-c'];
			write(cwd, 'config_data.gz', 'CONFIG_X=y'); // clang >= 19 reads it when it compiles
			for (const [name, text] of Object.entries({ bug: KERNEL_STYLE, configs: KERNEL_CONFIG })) {
				fs.writeFileSync(path.join(cwd, `${name}.c`), text);
				execaSync('clang', [...kernelFlags, `${name}.c`, '-o', `${name}.o`], { cwd });
			}
			const args = ['-m', 'elf_x86_64', '-r', ...(mode === 'redirect' ? [`--thinlto-cache-dir=${cacheDir}`] : []), 'bug.o', 'configs.o'];
			const env = {
				PATH: SYSTEM_PATH,
				HOME: '/nonexistent',
				XDG_CACHE_HOME: xdg,
				...(mode === 'add' ? { LTOCACHE_MODE: 'add' } : {}),
			};
			const link = () => asNobody('sh', ['-c', 'cd "$0" && exec "$@"', cwd, `${shims}/ld.lld`, ...args, '-o', 'mod.ko'], env);
			await execa(LLD, [...args.filter((a) => !a.startsWith('--thinlto-cache-dir')), '-o', 'uncached.ko'], { cwd });
			const uncached = fs.readFileSync(path.join(cwd, 'uncached.ko'));

			expect(await link()).toMatchObject({ exitCode: 0, stderr: '' });
			expect(fs.readFileSync(path.join(cwd, 'mod.ko')).equals(uncached)).toBe(true);
			const dir = cacheDirOf(path.join(xdg, 'ltocache'));
			const cold = identities(dir);
			expect(cold.length).toBe(2);
			expect(await link()).toMatchObject({ exitCode: 0, stderr: '' });
			expect(fs.readFileSync(path.join(cwd, 'mod.ko')).equals(uncached)).toBe(true);
			expect(identities(dir)).toEqual(cold);
		});
	}

	it('keeps C++ cached, a loop%=: label included; a warm link writes nothing', async () => {
		const { cwd, xdg, cacheDir } = setup();
		fs.writeFileSync(path.join(cwd, 'other.cc'), CXX);
		fs.writeFileSync(path.join(cwd, 'main.cc'), '#include <cstdio>\nint other(int);\nint main() { std::printf("%d\\n", other(2)); }\n');
		for (const name of ['other', 'main']) execaSync('clang++', ['-flto=thin', '-O2', '-c', `${name}.cc`, '-o', `${name}.o`], { cwd });
		const link = (ld: string, out: string, user = true) => {
			const argv = ['clang++', '-flto=thin', '-fuse-ld=lld', `--ld-path=${ld}`, 'other.o', 'main.o', ...cacheFlag(cacheDir), '-o', out];
			const env = { PATH: `${shims}:${SYSTEM_PATH}`, HOME: '/nonexistent', XDG_CACHE_HOME: xdg };
			return user
				? asNobody('sh', ['-c', 'cd "$0" && exec "$@"', cwd, ...argv], env)
				: execa(argv[0], argv.slice(1), { cwd, reject: false });
		};
		expect(await link(`${shims}/ld.lld`, 'prog')).toMatchObject({ exitCode: 0, stderr: '' });
		const dir = cacheDirOf(path.join(xdg, 'ltocache'));
		const cold = identities(dir);
		expect(cold.length).toBe(2);
		expect(await link(`${shims}/ld.lld`, 'prog')).toMatchObject({ exitCode: 0, stderr: '' });
		expect(identities(dir)).toEqual(cold);
		expect(await link(LLD, 'uncached', false)).toMatchObject({ exitCode: 0 });
		expect(fs.readFileSync(path.join(cwd, 'prog')).equals(fs.readFileSync(path.join(cwd, 'uncached')))).toBe(true);
		expect((await execa(path.join(cwd, 'prog'))).stdout).toBe('42');
	});

	it('covers inline asm in functions, skip and count, several files, archives, thin archives and response files', async () => {
		const { cwd, xdg, cacheDir } = setup();
		const lib = scratch('lib');
		execaSync('llvm-ar', ['rcs', path.join(lib, 'libget.a'), objects.function]);
		execaSync('llvm-ar', ['rcsT', path.join(lib, 'thin.a'), objects.main, objects.other]);
		execaSync('chmod', ['-R', 'a+rX', lib]);
		write(cwd, 'objs.rsp', `${path.join(lib, 'thin.a')}\n`);
		const root = path.join(xdg, 'ltocache');
		// -Wl,--whole-archive: the function object comes from -lget through -L; main and other from a thin archive named in a response file.
		const link = () =>
			build(cwd, xdg, ['-Wl,@objs.rsp'], [`-L${lib}`, '-Wl,--whole-archive', '-lget', '-Wl,--no-whole-archive', ...cacheFlag(cacheDir)]);

		write(cwd, 'parts/head.bin', 'xxABCyy');
		write(cwd, 'tail.bin', '-1');
		expect((await link()).printed).toBe('ABC-1 42');
		write(cwd, 'parts/head.bin', 'xxDEFyy');
		expect((await link()).printed).toBe('DEF-1 42');
		write(cwd, 'tail.bin', '-2');
		expect((await link()).printed).toBe('DEF-2 42');
		expect(keyDirs(root).length).toBe(3);
	});

	it('links without a cache, saying so once, when a named file cannot be read, and fails only where lld fails', async () => {
		const { cwd, xdg, cacheDir } = setup();
		const inputs = [objects.module, objects.main, objects.other];
		// Unreadable to nobody: lld cannot read it either, and fails the same way with or without the shim.
		write(cwd, 'blob.bin', 'secret');
		fs.chmodSync(path.join(cwd, 'blob.bin'), 0o000);
		const { link } = await build(cwd, xdg, inputs, cacheFlag(cacheDir));
		expect(link.exitCode).not.toBe(0);
		const said = String(link.stderr)
			.split('\n')
			.filter((l) => l.startsWith('ltocache:'));
		expect(said).toEqual([
			expect.stringMatching(/^ltocache: .*cannot read .*blob\.bin, named by \.incbin \(EACCES\), linking without a ThinLTO cache$/),
		]);
		expect(link.stderr).toMatch(/blob\.bin/);
		expect(entriesBelow(xdg)).toEqual([]);
	});

	it('says in stats which directories are .incbin variants', async () => {
		const { cwd, xdg, cacheDir } = setup();
		write(cwd, 'blob.bin', 'v');
		expect((await build(cwd, xdg, [objects.module, objects.main, objects.other], cacheFlag(cacheDir))).printed).toBe('v 42');
		const stats = await asNobody(cli, ['stats'], { PATH: SYSTEM_PATH, HOME: '/nonexistent', XDG_CACHE_HOME: xdg });
		expect(stats.stdout).toContain(`${cacheDir} (options, .incbin variant)`); // clang passes -plugin-opt=mcpu=..., a code-generation option
	});

	function keyDirs(root: string): string[] {
		return fs
			.readdirSync(root, { recursive: true, withFileTypes: true })
			.filter((d) => d.isDirectory() && fs.existsSync(path.join(d.parentPath, d.name, 'ltocache.json')))
			.map((d) => path.join(d.parentPath, d.name))
			.sort();
	}
	function cacheDirOf(root: string): string {
		const dirs = keyDirs(root);
		expect(dirs.length).toBe(1);
		return dirs[0];
	}
});
