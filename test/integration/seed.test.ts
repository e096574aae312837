// A changed .incbin file misses only the modules that embed it: a new
// .incbin variant of a directory starts with its sibling's entries that no
// changed file went into (src/shim/seed.ts). With real clang and ld.lld in
// add mode, -r links as the kernel's vmlinux.o; every cached output is
// compared byte for byte with the same link without a cache.
import fs from 'node:fs';
import path from 'node:path';
import { execa, execaSync } from 'execa';
import { expect, it } from 'vitest';
import { fileSymbols } from '../../src/shim/seed.js';
import {
	asNobody,
	CLI,
	describeIf,
	entries,
	hasToolchain,
	isRoot,
	NO_CONFIG,
	SHIM,
	SYSTEM_PATH,
	scratchRoot,
	stagedShim,
	TOOLCHAIN,
} from '../helpers/tools.js';

const scratch = scratchRoot();

/** Module-level asm that embeds blob.bin, and a small function that ThinLTO imports into main.c. */
const CONF = `asm(".pushsection .rodata, \\"a\\"\\n.global conf_data\\nconf_data:\\n.incbin \\"blob.bin\\"\\n.byte 0\\n.popsection\\n");
extern const char conf_data[];
const char *conf(void) { return conf_data; }
int helper(int x) { return x * 3 + 1; }
`;
const MAIN = 'int helper(int);\nint entry(int x) { return helper(x) + 2; }\n';
const UTIL = 'int util(int x) { return x - 7; }\n';
/** The file named by a function's inline asm: the function is small, and ThinLTO imports it into main.c. */
const INLINE = `const char *getp(void) {
	const char *p;
	asm(".pushsection .rodata\\n1: .incbin \\"blob.bin\\"\\n.byte 0\\n.popsection\\nlea 1b(%%rip), %0" : "=r"(p));
	return p;
}
`;
const CALLS_INLINE = 'const char *getp(void);\nconst char *entry(void) { return getp() + 1; }\n';

describeIf(hasToolchain, TOOLCHAIN)('a changed .incbin file misses only the modules that embed it', () => {
	/** A working directory with blob.bin and the sources compiled to ThinLTO objects (clang >= 19 reads blob.bin as it compiles). */
	function project(sources: Record<string, string>) {
		const cwd = scratch('p');
		fs.writeFileSync(path.join(cwd, 'blob.bin'), 'blob-v1');
		const objects: string[] = [];
		for (const [file, text] of Object.entries(sources)) {
			fs.mkdirSync(path.dirname(path.join(cwd, file)), { recursive: true });
			fs.writeFileSync(path.join(cwd, file), text);
			if (!file.endsWith('.c')) continue;
			const object = file.replace(/\.c$/, '.o');
			execaSync('clang', ['-flto=thin', '-O2', '-c', file, '-o', object], { cwd, env: { PATH: SYSTEM_PATH } });
			objects.push(object);
		}
		return { cwd, xdg: scratch('xdg'), objects };
	}
	type Project = ReturnType<typeof project>;

	/** Link through the shim in add mode; returns lld's output and what the shim said. */
	async function link(p: Project, objects = p.objects, out = 'out.o') {
		const result = await execa(SHIM, ['-r', '-o', out, ...objects], {
			cwd: p.cwd,
			env: {
				...NO_CONFIG,
				PATH: SYSTEM_PATH,
				HOME: '/nonexistent',
				XDG_CACHE_HOME: p.xdg,
				LTOCACHE_MODE: 'add',
				LTOCACHE_VERBOSE: '1',
				LTOCACHE_AUTO_PRUNE: '0',
			},
			extendEnv: false,
			reject: false,
		});
		expect(result.exitCode).toBe(0);
		const output = fs.readFileSync(path.join(p.cwd, out));
		// The same link without any cache.
		const plain = `${out}.uncached`;
		execaSync('ld.lld', ['-r', '-o', plain, ...objects], { cwd: p.cwd, env: { PATH: SYSTEM_PATH } });
		expect(output.equals(fs.readFileSync(path.join(p.cwd, plain)))).toBe(true);
		return { output, said: result.stderr };
	}

	const release = (p: Project) => path.join(p.xdg, 'ltocache', '_no-kernel');
	const keyDirs = (p: Project) =>
		fs
			.readdirSync(release(p))
			.map((n) => path.join(release(p), n))
			.sort((a, b) => fs.statSync(a).mtimeMs - fs.statSync(b).mtimeMs);
	/** The directory the shim said it used. */
	const usedDir = (said: string) => /using (\S+)/.exec(said)![1];
	/** Entries lld wrote itself: those carried over are hard links to the sibling's. */
	const written = (dir: string) => entries(dir).filter((e) => fs.statSync(path.join(dir, e)).nlink === 1).length;
	const seeded = (said: string) => {
		const m = /seeded from \S+ \(\d+ file contents new, \d+ gone\): carried (\d+) entries, left (\d+) behind/.exec(said);
		return m ? { carried: Number(m[1]), left: Number(m[2]) } : undefined;
	};
	const change = (p: Project, text = 'blob-v2-longer') => fs.writeFileSync(path.join(p.cwd, 'blob.bin'), text);

	it('only the module whose file-scope asm embeds the file is built again; a module importing its function is not', async () => {
		const p = project({ 'conf.c': CONF, 'main.c': MAIN, 'sub/util.c': UTIL });
		const first = await link(p);
		const old = usedDir(first.said);
		expect(entries(old).length).toBe(3);
		expect(first.output.includes('blob-v1')).toBe(true);
		// main.c's object calls no helper: ThinLTO imported it from conf.c (and inlined it), without conf.c's module asm.
		const symbols = entries(old).map((e) => execaSync('llvm-readelf', ['-s', path.join(old, e)], { env: { PATH: SYSTEM_PATH } }).stdout);
		const main = symbols.filter((s) => / FILE .* main\.c$/m.test(s));
		expect(main.length).toBe(1);
		expect(main[0]).toMatch(/ entry$/m);
		expect(main[0]).not.toMatch(/ helper$/m);

		change(p);
		const second = await link(p);
		const dir = usedDir(second.said);
		expect(seeded(second.said)).toEqual({ carried: 2, left: 1 });
		expect(entries(dir).length).toBe(3);
		expect(written(dir)).toBe(1);
		expect(second.output.includes('blob-v2-longer')).toBe(true);

		// Unchanged: every entry a hit, nothing written.
		const before = entries(dir).map((e) => fs.statSync(path.join(dir, e)).ino);
		const third = await link(p);
		expect(seeded(third.said)).toBeUndefined();
		expect(entries(dir).map((e) => fs.statSync(path.join(dir, e)).ino)).toEqual(before);

		// Stats sees each directory whole, and nothing foreign; no directory is left half-built.
		const stats = JSON.parse(
			execaSync(CLI, ['stats', '--json'], { env: { ...NO_CONFIG, PATH: SYSTEM_PATH, XDG_CACHE_HOME: p.xdg }, extendEnv: false }).stdout,
		);
		const keys = stats.kernels.flatMap((k: { keys: { entries: number; foreignFiles: number }[] }) => k.keys);
		expect(keys.map((k: { entries: number }) => k.entries)).toEqual([3, 3]);
		expect(keys.every((k: { foreignFiles: number }) => k.foreignFiles === 0)).toBe(true);
		expect(fs.readdirSync(release(p)).filter((n) => n.includes('.seed-'))).toEqual([]);
	});

	it("a file an .include'd file embeds counts for the module that includes it", async () => {
		const p = project({
			'x.s': '.pushsection .rodata, "a"\n.incbin "blob.bin"\n.popsection\n',
			'conf.c': `asm(".include \\"x.s\\"");\n${MAIN.replace('entry', 'conf_entry')}int helper(int x) { return x * 3 + 1; }\n`,
			'main.c': MAIN,
			'sub/util.c': UTIL,
		});
		const first = await link(p, ['conf.o', 'main.o', 'sub/util.o']);
		expect(first.output.includes('blob-v1')).toBe(true);
		change(p);
		const second = await link(p, ['conf.o', 'main.o', 'sub/util.o']);
		expect(seeded(second.said)).toEqual({ carried: 2, left: 1 });
		expect(second.output.includes('blob-v2-longer')).toBe(true);
	});

	describeIf(isRoot, 'root (for nobody)')('in redirect mode', () => {
		it('redirect mode, as nobody on a cache directory nobody can write: only the embedding module is built again', async () => {
			const shim = stagedShim(scratch('pkg'));
			const p = project({ 'conf.c': CONF, 'main.c': MAIN, 'sub/util.c': UTIL });
			for (const dir of [p.cwd, p.xdg]) fs.chmodSync(dir, 0o777);
			const cacheDir = path.join(scratch('tree'), '.thinlto-cache'); // root's, 0755
			const run = async () => {
				const result = await asNobody(
					'sh',
					['-c', 'cd "$0" && exec "$@"', p.cwd, shim, '-r', `--thinlto-cache-dir=${cacheDir}`, '-o', 'out.o', ...p.objects],
					{ PATH: SYSTEM_PATH, HOME: '/nonexistent', XDG_CACHE_HOME: p.xdg, LTOCACHE_VERBOSE: '1' },
				);
				expect(result.exitCode).toBe(0);
				execaSync('ld.lld', ['-r', '-o', 'plain.o', ...p.objects], { cwd: p.cwd, env: { PATH: SYSTEM_PATH } });
				expect(fs.readFileSync(path.join(p.cwd, 'out.o')).equals(fs.readFileSync(path.join(p.cwd, 'plain.o')))).toBe(true);
				return String(result.stderr);
			};
			await run();
			change(p);
			const said = await run();
			expect(seeded(said)).toEqual({ carried: 2, left: 1 });
			expect(fs.readFileSync(path.join(p.cwd, 'out.o')).includes('blob-v2-longer')).toBe(true);
			expect(fs.existsSync(cacheDir)).toBe(false);
		});
	});

	it('a file named by inline asm in a function that another module imports: the whole link misses', async () => {
		const p = project({ 'getp.c': INLINE, 'main.c': CALLS_INLINE, 'sub/util.c': UTIL });
		await link(p);
		change(p);
		const second = await link(p);
		expect(second.said).toMatch(/not seeded from \S+: a changed file is named by inline asm/);
		expect(written(usedDir(second.said))).toBe(3);
		expect(second.output.includes('blob-v2-longer')).toBe(true);
	});

	it('two modules with one source file name: both stay behind', async () => {
		const p = project({ 'conf.c': CONF, 'sub/conf.c': UTIL, 'main.c': MAIN });
		await link(p);
		change(p);
		const second = await link(p);
		expect(seeded(second.said)).toEqual({ carried: 1, left: 2 });
		expect(written(usedDir(second.said))).toBe(2);
	});

	it('an entry whose symbol table was stripped stays behind', async () => {
		const p = project({ 'conf.c': CONF, 'main.c': MAIN, 'sub/util.c': UTIL });
		const first = await link(p);
		const old = usedDir(first.said);
		const mainEntry = entries(old).find((e) =>
			execaSync('llvm-readelf', ['-s', path.join(old, e)], { env: { PATH: SYSTEM_PATH } }).stdout.includes('main.c'),
		);
		expect(mainEntry).toBeDefined();
		execaSync('llvm-objcopy', ['--strip-all', path.join(old, mainEntry!)], { env: { PATH: SYSTEM_PATH } });
		change(p);
		const second = await link(p);
		expect(seeded(second.said)).toEqual({ carried: 1, left: 2 });
		expect(written(usedDir(second.said))).toBe(2);
	});

	it('module asm that adds .file names: the embedding module keeps its own, and a module naming it too stays behind', async () => {
		const p = project({
			'conf.c': `asm(".file \\"main.c\\"");\n${CONF}`,
			'main.c': MAIN,
			'sub/util.c': `asm(".file \\"conf.c\\"");\n${UTIL}`,
		});
		const first = await link(p);
		const old = usedDir(first.said);
		const names = entries(old).map((e) =>
			execaSync('llvm-readelf', ['-s', path.join(old, e)], { env: { PATH: SYSTEM_PATH } })
				.stdout.split('\n')
				.filter((l) => / FILE /.test(l))
				.map((l) => l.trim().split(/\s+/).pop())
				.join(' '),
		);
		expect(names.sort()).toEqual(['conf.c main.c', 'main.c', 'util.c conf.c']);
		change(p);
		const second = await link(p);
		expect(seeded(second.said)).toEqual({ carried: 1, left: 2 });
		expect(written(usedDir(second.said))).toBe(2);
	});

	it('a module that embedded the file in an earlier link, and not in this one, stays behind (the links record their embedders)', async () => {
		const zed = CONF.replaceAll('conf', 'zed').replace('helper', 'zhelper');
		const p = project({ 'conf.c': CONF, 'zed.c': zed, 'main.c': MAIN });
		await link(p);
		change(p);
		const without = await link(p, ['conf.o', 'main.o']);
		expect(seeded(without.said)).toEqual({ carried: 1, left: 2 });
		const dir = usedDir(without.said);
		const before = new Set(entries(dir));
		const again = await link(p);
		expect(usedDir(again.said)).toBe(dir);
		expect(entries(dir).filter((e) => !before.has(e)).length).toBe(1); // zed.c's, built anew
		expect(again.output.includes('blob-v2-longer')).toBe(true);
	});

	it('parallel links racing to seed the same directory all succeed, and one directory results, whole', async () => {
		const p = project({ 'conf.c': CONF, 'main.c': MAIN, 'sub/util.c': UTIL });
		await link(p);
		change(p);
		const results = await Promise.all([0, 1, 2, 3].map((i) => link(p, p.objects, `out${i}.o`)));
		for (const r of results) expect(r.output.includes('blob-v2-longer')).toBe(true);
		const dirs = keyDirs(p);
		expect(dirs.length).toBe(2);
		expect(entries(dirs[1]).length).toBe(3);
		expect(results.filter((r) => seeded(r.said)).length).toBeGreaterThanOrEqual(1);
		expect(fs.readdirSync(release(p)).filter((n) => n.includes('.seed-'))).toEqual([]);
	});

	it("a directory a link that died left half-seeded is no module's: stats leaves it out, prune removes it once stale", async () => {
		const p = project({ 'conf.c': CONF, 'main.c': MAIN });
		const first = await link(p);
		const dir = usedDir(first.said);
		const [stale, fresh] = [`${dir}.seed-999999.tmp`, `${dir}.seed-999998.tmp`];
		for (const temp of [stale, fresh]) {
			fs.mkdirSync(temp);
			fs.copyFileSync(path.join(dir, entries(dir)[0]), path.join(temp, entries(dir)[0]));
		}
		const hoursAgo = new Date(Date.now() - 2 * 3600_000);
		fs.utimesSync(stale, hoursAgo, hoursAgo);
		const cli = (args: string[]) =>
			execaSync(CLI, args, { env: { ...NO_CONFIG, PATH: SYSTEM_PATH, XDG_CACHE_HOME: p.xdg }, extendEnv: false, reject: false });
		const stats = JSON.parse(cli(['stats', '--json']).stdout);
		expect(stats.totalEntries).toBe(2);
		expect(cli(['prune']).exitCode).toBe(0);
		expect([fs.existsSync(stale), fs.existsSync(fresh), entries(dir).length]).toEqual([false, true, 2]);
	});

	it("reads an object's STT_FILE names, 64- and 32-bit, little- and big-endian, and nothing of a file it cannot read whole", () => {
		const dir = scratch('elf');
		fs.writeFileSync(path.join(dir, 'one.c'), 'asm(".file \\"two.c\\""); int f(int x) { return x; }\n');
		const names: Record<string, string[] | undefined> = {};
		for (const target of ['x86_64-linux-gnu', 'i386-linux-gnu', 'powerpc-linux-gnu', 'aarch64-linux-gnu']) {
			execaSync('clang', [`--target=${target}`, '-O2', '-c', 'one.c', '-o', `${target}.o`], { cwd: dir, env: { PATH: SYSTEM_PATH } });
			names[target] = fileSymbols(path.join(dir, `${target}.o`));
		}
		for (const found of Object.values(names)) expect(found).toEqual(['one.c', 'two.c']);
		const object = fs.readFileSync(path.join(dir, 'x86_64-linux-gnu.o'));
		for (const [name, bytes] of [
			['cut.o', object.subarray(0, object.length - 8)],
			['text.o', Buffer.from('not an object at all, but longer than an ELF header is: 64 bytes and more')],
			['empty.o', Buffer.alloc(0)],
		] as const) {
			fs.writeFileSync(path.join(dir, name), bytes);
			expect(fileSymbols(path.join(dir, name))).toBeUndefined();
		}
		execaSync('llvm-objcopy', ['--strip-all', 'x86_64-linux-gnu.o', 'stripped.o'], { cwd: dir, env: { PATH: SYSTEM_PATH } });
		expect(fileSymbols(path.join(dir, 'stripped.o'))).toBeUndefined();
	});
});
