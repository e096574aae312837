// Attacks on the seeding of a new .incbin variant from its sibling
// (src/shim/seed.ts): what a hostile or unlucky sibling holds, contents that
// move between files, a file both embedded and .include'd, full LTO modules
// beside ThinLTO ones, and every tested lld with debug info. Real clang and
// ld.lld in add mode, -r links as the kernel's vmlinux.o; every output is
// compared byte for byte with the same link without a cache.
import fs from 'node:fs';
import path from 'node:path';
import { execa, execaSync } from 'execa';
import { expect, it } from 'vitest';
import { TESTED_LLD } from '../../src/cli/commands/doctor.js';
import { removeEntriesSince } from '../../src/shared/keydir.js';
import {
	asNobody,
	describeIf,
	entries,
	hasToolchain,
	isRoot,
	llvmBin,
	NO_CONFIG,
	SHIM,
	SYSTEM_PATH,
	scratchRoot,
	stagedShim,
	TOOLCHAIN,
	withReadOnly,
} from '../helpers/tools.js';

const scratch = scratchRoot();

/** Module-level asm that embeds a file, and a small function that ThinLTO imports elsewhere. */
const embeds = (name: string, file: string) =>
	`asm(".pushsection .rodata, \\"a\\"\\n.global ${name}_data\\n${name}_data:\\n.incbin \\"${file}\\"\\n.byte 0\\n.popsection\\n");
extern const char ${name}_data[];
const char *${name}(void) { return ${name}_data; }
int ${name}_helper(int x) { return x * 3 + 1; }
`;
const MAIN = 'int conf_helper(int);\nint entry(int x) { return conf_helper(x) + 2; }\n';
const UTIL = 'static int total;\nint util(int x) { return total += x - 7; }\n';

type Project = { cwd: string; xdg: string; objects: string[]; path: string };

/** A working directory with the given files, the .c ones compiled to ThinLTO objects (full LTO where flags say). */
function project(files: Record<string, string>, flags: Record<string, string[]> = {}, bin?: string): Project {
	const cwd = scratch('p');
	const PATH = bin ? `${bin}:${SYSTEM_PATH}` : SYSTEM_PATH;
	const objects: string[] = [];
	for (const [file, text] of Object.entries(files)) {
		fs.mkdirSync(path.dirname(path.join(cwd, file)), { recursive: true });
		fs.writeFileSync(path.join(cwd, file), text);
	}
	// After every file is there: clang >= 19 reads what module asm embeds as it compiles.
	for (const file of Object.keys(files)) {
		if (!file.endsWith('.c')) continue;
		const object = file.replace(/\.c$/, '.o');
		execaSync('clang', [...(flags[file] ?? ['-flto=thin']), '-O2', '-c', file, '-o', object], { cwd, env: { PATH } });
		objects.push(object);
	}
	return { cwd, xdg: scratch('xdg'), objects, path: PATH };
}

/** Link through the shim in add mode and without a cache; the outputs must be the same bytes. */
async function link(p: Project) {
	const result = await execa(SHIM, ['-r', '-o', 'out.o', ...p.objects], {
		cwd: p.cwd,
		env: {
			...NO_CONFIG,
			PATH: p.path,
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
	const output = fs.readFileSync(path.join(p.cwd, 'out.o'));
	execaSync('ld.lld', ['-r', '-o', 'plain.o', ...p.objects], { cwd: p.cwd, env: { PATH: p.path } });
	expect(output.equals(fs.readFileSync(path.join(p.cwd, 'plain.o')))).toBe(true);
	// Nothing was taken for a file changed while lld ran: that would remove the entries the link wrote.
	expect(result.stderr).not.toMatch(/changed while lld ran/);
	return { output, said: result.stderr };
}

const usedDir = (said: string) => /using (\S+)/.exec(said)![1];
const seeded = (said: string) => {
	const m = /seeded from (\S+) \(\d+ file contents new, \d+ gone\): carried (\d+) entries, left (\d+) behind/.exec(said);
	return m ? { from: m[1], carried: Number(m[2]), left: Number(m[3]) } : undefined;
};
const write = (p: Project, file: string, text: string) => fs.writeFileSync(path.join(p.cwd, file), text);
const inodes = (dir: string) => entries(dir).map((e) => fs.statSync(path.join(dir, e)).ino);

describeIf(hasToolchain, TOOLCHAIN)('seeding a new .incbin variant, attacked', () => {
	it('FIFOs and symlinks named like entries, records or metadata in a sibling hold no link, and are never carried', async () => {
		const p = project({ 'conf.c': embeds('conf', 'blob.bin'), 'main.c': MAIN, 'sub/util.c': UTIL, 'blob.bin': 'blob-v1' });
		const a = usedDir((await link(p)).said);
		execaSync('mkfifo', [path.join(a, 'llvmcache-00000000000000000000000000000000000000AA')]);
		fs.symlinkSync(
			path.join(a, 'llvmcache-00000000000000000000000000000000000000AA'),
			path.join(a, 'llvmcache-00000000000000000000000000000000000000BB'),
		);
		write(p, 'blob.bin', 'blob-v2');
		const second = await link(p);
		const b = usedDir(second.said);
		// main.c's and util.c's entries; conf.c's stays behind, and so do the FIFO and the symlink.
		expect(seeded(second.said)).toMatchObject({ carried: 2, left: 3 });
		expect(fs.readdirSync(b).filter((n) => n.endsWith('AA') || n.endsWith('BB'))).toEqual([]);
		expect(second.output.includes('blob-v2')).toBe(true);

		// A record that is a FIFO: no seeding, the whole link misses.
		const record = path.join(b, 'ltocache.embed-0123456789ab');
		execaSync('mkfifo', [record]);
		write(p, 'blob.bin', 'blob-v3');
		const third = await link(p);
		expect(third.said).toMatch(/not seeded: .*is not a regular file/);
		fs.rmSync(record);

		// Metadata that is a FIFO: that sibling is passed over for the next most recent one.
		const c = usedDir(third.said);
		fs.rmSync(path.join(c, 'ltocache.json'));
		execaSync('mkfifo', [path.join(c, 'ltocache.json')]);
		write(p, 'blob.bin', 'blob-v4');
		const fourth = await link(p);
		expect(seeded(fourth.said)?.from).toBe(path.basename(b));
		expect(fourth.output.includes('blob-v4')).toBe(true);
	});

	it('a sibling that is a symlink (to a module directory outside the root) is neither seeded from nor removed from', async () => {
		const p = project({ 'conf.c': embeds('conf', 'blob.bin'), 'main.c': MAIN, 'sub/util.c': UTIL, 'blob.bin': 'blob-v1' });
		const a = usedDir((await link(p)).said);
		const outside = path.join(scratch('outside'), 'dir');
		fs.renameSync(a, outside);
		fs.symlinkSync(outside, a);
		const before = inodes(outside);
		expect(before.length).toBeGreaterThan(0);
		write(p, 'blob.bin', 'blob-v2');
		const second = await link(p);
		expect(seeded(second.said)).toBeUndefined();
		expect(second.output.includes('blob-v2')).toBe(true);
		// The entries this link wrote, were they removed, would go from the sibling too: never through the symlink.
		removeEntriesSince(usedDir(second.said), 0);
		expect(inodes(outside)).toEqual(before);
	});

	describeIf(isRoot, 'root (for nobody)')('in a root another user shares', () => {
		it("another user's leftover from a link that died while seeding, which this user cannot remove, does not stop the seeding", async () => {
			const shim = stagedShim(scratch('pkg'));
			const p = project({ 'conf.c': embeds('conf', 'blob.bin'), 'main.c': MAIN, 'sub/util.c': UTIL, 'blob.bin': 'blob-v1' });
			for (const dir of [p.cwd, p.xdg]) fs.chmodSync(dir, 0o777);
			const run = async () => {
				const result = await asNobody('sh', ['-c', 'cd "$0" && exec "$@"', p.cwd, shim, '-r', '-o', 'out.o', ...p.objects], {
					PATH: SYSTEM_PATH,
					HOME: '/nonexistent',
					XDG_CACHE_HOME: p.xdg,
					LTOCACHE_MODE: 'add',
					LTOCACHE_VERBOSE: '1',
				});
				expect(result.exitCode).toBe(0);
				execaSync('ld.lld', ['-r', '-o', 'plain.o', ...p.objects], { cwd: p.cwd, env: { PATH: SYSTEM_PATH } });
				expect(fs.readFileSync(path.join(p.cwd, 'out.o')).equals(fs.readFileSync(path.join(p.cwd, 'plain.o')))).toBe(true);
				return String(result.stderr);
			};
			const release = path.dirname(usedDir(await run()));
			// Root's, as a died link of another member leaves it (2750 under umask 022), and two hours old.
			const leftover = path.join(release, 'other-0123456789ab+incbin-00.seed-4242.tmp');
			fs.mkdirSync(leftover, { mode: 0o755 });
			fs.writeFileSync(path.join(leftover, 'llvmcache-0'), '');
			const hoursAgo = new Date(Date.now() - 2 * 3600_000);
			fs.utimesSync(leftover, hoursAgo, hoursAgo);
			write(p, 'blob.bin', 'blob-v2-longer');
			const said = await run();
			expect(seeded(said)).toMatchObject({ carried: 2, left: 1 });
			expect(fs.existsSync(leftover)).toBe(true);
		});
	});

	it('what a link into the sibling removes after it (it failed, or a file changed while lld ran) goes from a directory seeded meanwhile too', async () => {
		const p = project({ 'conf.c': embeds('conf', 'blob.bin'), 'main.c': MAIN, 'sub/util.c': UTIL, 'blob.bin': 'blob-v1' });
		const since = Date.now() - 1000;
		const a = usedDir((await link(p)).said);
		write(p, 'blob.bin', 'blob-v2-longer');
		const second = await link(p);
		const b = usedDir(second.said);
		expect(seeded(second.said)).toMatchObject({ carried: 2, left: 1 });
		const carried = entries(b).filter((e) => fs.statSync(path.join(b, e)).nlink === 2);
		expect(carried.length).toBe(2);
		// As a link into the sibling that began before the seeding removes what it wrote when it ends.
		expect(removeEntriesSince(a, since)).toBe(3);
		expect(entries(b).filter((e) => carried.includes(e))).toEqual([]);
		// An entry of the seeded directory's own, written before that link began, stays.
		const own = path.join(b, 'llvmcache-00000000000000000000000000000000000000CC');
		fs.writeFileSync(own, 'own');
		fs.utimesSync(own, new Date(since - 60_000), new Date(since - 60_000));
		fs.writeFileSync(path.join(a, path.basename(own)), 'theirs');
		removeEntriesSince(a, since);
		expect(fs.existsSync(own)).toBe(true);
		fs.rmSync(own);
		// The next link of the new contents links what went, and equals the uncached link.
		const third = await link(p);
		expect(third.output.includes('blob-v2-longer')).toBe(true);
	});

	it('a sibling on another mount (read-only, bound onto itself): its entries are copied, not linked', async () => {
		const p = project({ 'conf.c': embeds('conf', 'blob.bin'), 'main.c': MAIN, 'sub/util.c': UTIL, 'blob.bin': 'blob-v1' });
		const a = usedDir((await link(p)).said);
		write(p, 'blob.bin', 'blob-v2-longer');
		const result = await withReadOnly(a, SHIM, ['-r', '-o', 'out.o', ...p.objects], {
			cwd: p.cwd,
			env: { ...NO_CONFIG, PATH: p.path, HOME: '/nonexistent', XDG_CACHE_HOME: p.xdg, LTOCACHE_MODE: 'add', LTOCACHE_VERBOSE: '1' },
			extendEnv: false,
		});
		expect(result.exitCode).toBe(0);
		expect(seeded(String(result.stderr))).toMatchObject({ carried: 2, left: 1 });
		const b = usedDir(String(result.stderr));
		expect(entries(b).map((e) => fs.statSync(path.join(b, e)).nlink)).toEqual([1, 1, 1]);
		// The copies serve the next link, which writes nothing.
		const before = inodes(b);
		const again = await link(p);
		expect(usedDir(again.said)).toBe(b);
		expect(inodes(b)).toEqual(before);
		expect(again.output.includes('blob-v2-longer')).toBe(true);
	});

	it('two modules whose module asm is the same text both stay behind', async () => {
		const same = 'asm(".pushsection .rodata, \\"a\\"\\n.incbin \\"blob.bin\\"\\n.popsection\\n");\n';
		const p = project({
			'one.c': `${same}int one(void) { return 1; }\n`,
			'two.c': `${same}int two(void) { return 2; }\n`,
			'main.c': 'int entry(int x) { return x + 2; }\n',
			'blob.bin': 'blob-v1',
		});
		await link(p);
		write(p, 'blob.bin', 'blob-v2-longer');
		const second = await link(p);
		expect(seeded(second.said)).toMatchObject({ carried: 1, left: 2 });
	});

	it('two files swap their contents: the sums name the file, so both embedding modules stay behind; swapped back, the first directory serves whole', async () => {
		const p = project({
			'conf.c': embeds('conf', 'a.bin'),
			'other.c': embeds('other', 'b.bin'),
			'main.c': MAIN,
			'a.bin': 'contents-one',
			'b.bin': 'contents-two',
		});
		const first = await link(p);
		const a = usedDir(first.said);
		const before = inodes(a);
		write(p, 'a.bin', 'contents-two');
		write(p, 'b.bin', 'contents-one');
		const second = await link(p);
		expect(seeded(second.said)).toMatchObject({ carried: 1, left: 2 });
		// A -> B -> A: the directory for A exists, and every entry in it is a hit.
		write(p, 'a.bin', 'contents-one');
		write(p, 'b.bin', 'contents-two');
		const third = await link(p);
		expect(usedDir(third.said)).toBe(a);
		expect(seeded(third.said)).toBeUndefined();
		expect(inodes(a)).toEqual(before);
	});

	it("a file one module embeds and another .include's: cached like any other, and both modules stay behind when it changes", async () => {
		const p = project({
			'conf.c': embeds('conf', 'data.s'),
			'inc.c': 'asm(".pushsection .rodata, \\"a\\"\\n.include \\"data.s\\"\\n.popsection\\n");\nint inc(void) { return 4; }\n',
			'main.c': MAIN,
			'data.s': '.byte 1\n',
		});
		const first = await link(p);
		const dir = usedDir(first.said);
		expect(entries(dir).length).toBe(3);
		const before = inodes(dir);
		await link(p);
		expect(inodes(dir)).toEqual(before);
		write(p, 'data.s', '.byte 2\n');
		const third = await link(p);
		expect(seeded(third.said)).toMatchObject({ carried: 1, left: 2 });
	});

	it('a full LTO module embeds the file beside ThinLTO modules that import nothing of it', async () => {
		const p = project(
			{ 'conf.c': embeds('conf', 'blob.bin'), 'main.c': 'int entry(int x) { return x + 2; }\n', 'sub/util.c': UTIL, 'blob.bin': 'blob-v1' },
			{ 'conf.c': ['-flto'] },
		);
		const first = await link(p);
		expect(entries(usedDir(first.said)).length).toBe(2);
		write(p, 'blob.bin', 'blob-v2-longer');
		const second = await link(p);
		expect(seeded(second.said)).toMatchObject({ carried: 2, left: 0 });
		expect(second.output.includes('blob-v2-longer')).toBe(true);
	});

	for (const major of TESTED_LLD) {
		const bin = llvmBin(major);
		describeIf(fs.existsSync(path.join(bin, 'clang')) && fs.existsSync(path.join(bin, 'ld.lld')), `clang and ld.lld in ${bin}`)(
			`LLVM ${major}`,
			() => {
				it('with debug info and module asm that names other files, only the embedding module is built again', async () => {
					const debug = ['-flto=thin', '-g'];
					const p = project(
						{
							'conf.c': `asm(".file \\"elsewhere.c\\"");\n${embeds('conf', 'blob.bin')}`,
							'main.c': MAIN,
							'sub/util.c': UTIL,
							'blob.bin': 'blob-v1',
						},
						{ 'conf.c': debug, 'main.c': debug, 'sub/util.c': debug },
						bin,
					);
					const old = usedDir((await link(p)).said);
					// main.c's entry calls no conf_helper: ThinLTO imported it (and inlined it), without conf.c's module asm.
					const symbols = entries(old).map((e) => execaSync('llvm-readelf', ['-s', path.join(old, e)], { env: { PATH: p.path } }).stdout);
					const main = symbols.filter((text) => / FILE .* main\.c$/m.test(text));
					expect(main.length).toBe(1);
					expect(main[0]).toMatch(/ entry$/m);
					expect(main[0]).not.toMatch(/conf_helper/);
					write(p, 'blob.bin', 'blob-v2-longer');
					const second = await link(p);
					expect(seeded(second.said)).toMatchObject({ carried: 2, left: 1 });
					expect(second.output.includes('blob-v2-longer')).toBe(true);
				});
			},
		);
	}
});
