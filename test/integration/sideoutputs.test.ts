// What the ThinLTO backends write or print besides the object (issues 37
// and 30, items 1 and 4), with the real clang 22 and ld.lld 22: a cache hit
// skips the backend, so in add mode a link that asks for any of it gets no
// cache, and leaves the same files and prints the same lines as the plain
// linker, on a first link and on a repeat. Each case links in two
// directories holding the same objects: the plain ld.lld-22 in one, the
// shim in the other; the directories' files, stdout, stderr and status are
// compared.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execa, execaSync } from 'execa';
import { beforeAll, expect, it } from 'vitest';
import { describeIf, entriesBelow, fixtures, NO_CONFIG, onPath, SHIM, scratchRoot } from '../helpers/tools.js';

const LLD = onPath('ld.lld-22');
const CLANG = onPath('clang-22');
const scratch = scratchRoot();

describeIf(Boolean(LLD && CLANG), 'clang-22 and ld.lld-22 (Debian: clang-22, lld-22)')('side outputs of the ThinLTO backends', () => {
	let objects: string;
	beforeAll(() => {
		objects = scratch('objects');
		fs.writeFileSync(path.join(objects, 'c.c'), 'int third(int x) { return x - 1; }\n');
		for (const n of ['a', 'b', 'c']) {
			const src = n === 'c' ? path.join(objects, 'c.c') : path.join(fixtures, `${n}.c`);
			execaSync(CLANG!, ['-flto=thin', '-O2', '-c', src, '-o', path.join(objects, `${n}.o`)]);
			execaSync(CLANG!, ['-flto=thin', '-O2', '-g', '-gsplit-dwarf', '-c', src, '-o', path.join(objects, `d${n}.o`)]);
		}
	});

	/** A working directory holding the objects (and these files). */
	const tree = (files: Record<string, string> = {}) => {
		const cwd = scratch('cwd');
		for (const name of fs.readdirSync(objects)) fs.copyFileSync(path.join(objects, name), path.join(cwd, name));
		for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(cwd, name), text);
		return cwd;
	};

	/** Every file below dir (the cache root's .xdg aside), by relative path: its bytes' hash, or only that it exists. */
	const snapshot = (dir: string, existsOnly: RegExp = /$^/) => {
		const out: Record<string, string> = {};
		for (const rel of (fs.readdirSync(dir, { recursive: true }) as string[]).sort()) {
			if (rel === '.xdg' || rel.startsWith('.xdg/')) continue;
			const file = path.join(dir, rel);
			if (!fs.statSync(file).isFile()) continue;
			out[rel] = existsOnly.test(rel) ? 'exists' : createHash('sha256').update(fs.readFileSync(file)).digest('hex');
		}
		return out;
	};

	const plain = (cwd: string, args: string[]) => execa(LLD!, args, { cwd, reject: false, argv0: 'ld.lld' });
	const shim = (cwd: string, args: string[], env: Record<string, string> = {}) =>
		execa(SHIM, args, {
			cwd,
			reject: false,
			env: {
				...NO_CONFIG,
				LTOCACHE_LD: LLD!,
				LTOCACHE_MODE: 'add',
				LTOCACHE_AUTO_PRUNE: '0',
				LTOCACHE_DIR: '',
				XDG_CACHE_HOME: path.join(cwd, '.xdg'),
				...env,
			},
		});

	/**
	 * Link in two fresh trees, plain and through the shim, twice (between the
	 * links, before() runs in both); each time the same status, stdout,
	 * stderr and files. Returns the shim's tree.
	 */
	async function alike(
		args: string[],
		options: { files?: Record<string, string>; existsOnly?: RegExp; before?: (cwd: string) => void } = {},
	) {
		const a = tree(options.files);
		const b = tree(options.files);
		for (const round of ['first link', 'repeat']) {
			if (round === 'repeat') for (const cwd of [a, b]) options.before?.(cwd);
			const p = await plain(a, args);
			const s = await shim(b, args);
			expect(p.exitCode, p.stderr).toBe(0);
			expect({ round, status: s.exitCode, stdout: s.stdout, stderr: s.stderr }).toEqual({
				round,
				status: p.exitCode,
				stdout: p.stdout,
				stderr: p.stderr,
			});
			expect({ round, files: snapshot(b, options.existsOnly) }).toEqual({ round, files: snapshot(a, options.existsOnly) });
		}
		return b;
	}

	it('keeps an ordinary link cached in add mode: the repeat is answered from the cache, the object the same', async () => {
		const cwd = await alike(['-r', '-o', 'out.o', 'a.o', 'b.o']);
		expect(entriesBelow(path.join(cwd, '.xdg')).length).toBe(2);
		const verbose = await shim(cwd, ['-r', '-o', 'out.o', 'a.o', 'b.o'], { LTOCACHE_VERBOSE: '1' });
		expect(verbose.stderr).toMatch(/^ltocache: LTOCACHE_MODE=add: using \S+/m);
	});

	it('--save-temps: every temporary file, also on the repeat, where a hit would have skipped the backend', async () => {
		const cwd = await alike(['-r', '-o', 'out.o', 'a.o', 'b.o', '--save-temps']);
		expect(fs.existsSync(path.join(cwd, 'a.o.5.precodegen.bc'))).toBe(true);
		expect(entriesBelow(path.join(cwd, '.xdg'))).toEqual([]);
		const verbose = await shim(cwd, ['-r', '-o', 'out.o', 'a.o', 'b.o', '--save-temps'], { LTOCACHE_VERBOSE: '1' });
		expect(verbose.stderr.split('\n').filter((l) => l.startsWith('ltocache:') && !l.includes('running'))).toEqual([
			'ltocache: LTOCACHE_MODE=add: --save-temps asks the ThinLTO backends for more than the object, which a cache hit skips; passing argv through',
		]);
	});

	it('remarks (lld prints them on stdout), asked with -mllvm, --mllvm= or --plugin-opt=-, every time', async () => {
		for (const ask of [['-mllvm', '-pass-remarks=inline'], ['--plugin-opt=-pass-remarks=inline'], ['--mllvm=-pass-remarks=.']]) {
			const cwd = await alike(['-r', '-o', 'out.o', 'a.o', 'b.o', ...ask]);
			expect(entriesBelow(path.join(cwd, '.xdg'))).toEqual([]);
		}
		const p = await plain(tree(), ['-r', '-o', 'out.o', 'a.o', 'b.o', '-mllvm', '-pass-remarks=inline']);
		expect(p.stdout).toContain("'helper' inlined into 'entry'"); // lld prints remarks on stdout
	});

	it('remarks asked inside an LLVM response file (--mllvm=@FILE)', async () => {
		const cwd = await alike(['-r', '-o', 'out.o', 'a.o', 'b.o', '--mllvm=@opts'], { files: { opts: '-pass-remarks=inline\n' } });
		expect(entriesBelow(path.join(cwd, '.xdg'))).toEqual([]);
	});

	it('--lto-obj-path=F: the task objects hold what they hold without a cache, also when F exists; no false alarm', async () => {
		const cwd = await alike(['-r', '-o', 'out.o', 'a.o', 'b.o', '--lto-obj-path=objs'], { files: { objs: 'stale\n' } });
		expect(fs.statSync(path.join(cwd, 'objs1')).size).toBeGreaterThan(0);
		await alike(['-r', '-o', 'out.o', 'a.o', 'b.o', '--plugin-opt=obj-path=objs']);
	});

	it('split DWARF (--plugin-opt=dwo_dir=D): the .dwo files come back after D is removed', async () => {
		const cwd = await alike(['-r', '-o', 'out.o', 'da.o', 'db.o', '--plugin-opt=dwo_dir=dwo'], {
			before: (dir) => fs.rmSync(path.join(dir, 'dwo'), { recursive: true }),
		});
		expect(fs.readdirSync(path.join(cwd, 'dwo')).sort()).toEqual(['1.dwo', '2.dwo']);
	});

	it('time traces, statistics and the imports files are written every time', async () => {
		await alike(['-r', '-o', 'out.o', 'a.o', 'b.o', '--time-trace'], { existsOnly: /time-trace/ });
		await alike(['-r', '-o', 'out.o', 'a.o', 'b.o', '--plugin-opt=stats-file=stats.json'], { existsOnly: /stats/ });
		await alike(['-r', '-o', 'out.o', 'a.o', 'b.o', '--thinlto-emit-imports-files']);
		await alike(['-r', '-o', 'out.o', 'a.o', 'b.o', '--lto-emit-asm']);
	});

	it('a map, a cross-reference table and the sections --gc-sections removed name the objects as without a cache, every time', async () => {
		const link = ['-e', 'entry', '-o', 'out', 'a.o', 'b.o', 'c.o'];
		for (const ask of [['-Map=out.map'], ['-M'], ['--print-map', '--cref'], ['--gc-sections', '--print-gc-sections']]) {
			const cwd = await alike([...link, ...ask]);
			expect(entriesBelow(path.join(cwd, '.xdg'))).toEqual([]);
		}
		const p = await plain(tree(), [...link, '--gc-sections', '--print-gc-sections']);
		// lld 22 names an uncached object after the output and its module (lld 14: lto.tmp); a cached one by its entry.
		expect(p.stdout).toMatch(/^removing unused section out\.lto\.a\.o:/m);
		// Asked for, then not: the link stays cached.
		const cwd = tree();
		expect((await shim(cwd, [...link, '--print-gc-sections', '--no-print-gc-sections'])).exitCode).toBe(0);
		expect(entriesBelow(path.join(cwd, '.xdg')).length).toBe(3);
	});

	it("redirect mode: a split-DWARF link gets no cache (a hit would name another task's .dwo), said once", async () => {
		// A cache directory that cannot be made (its parent is a file), so the shim redirects it.
		const flag = '--thinlto-cache-dir=blocker/cache';
		const cwd = tree({ blocker: '' });
		const reference = tree({ blocker: '' });
		await plain(reference, ['-r', '-o', 'out.o', 'da.o', 'db.o', '--plugin-opt=dwo_dir=dwo']);
		const s = await shim(cwd, ['-r', '-o', 'out.o', 'da.o', 'db.o', '--plugin-opt=dwo_dir=dwo', flag], { LTOCACHE_MODE: 'redirect' });
		expect(s.exitCode, s.stderr).toBe(0);
		expect(s.stderr).toMatch(
			/^ltocache: --thinlto-cache-dir=blocker\/cache is not writable \(ENOTDIR\); --plugin-opt=dwo_dir=dwo: a cached object would name the \.dwo file of the task it was built in, not this link's, linking without a ThinLTO cache$/,
		);
		expect(snapshot(cwd)).toEqual(snapshot(reference));
		expect(entriesBelow(path.join(cwd, '.xdg'))).toEqual([]);
		// A module added in front: its task numbers move, and each object names its own task's file.
		const more = ['-r', '-o', 'out.o', 'dc.o', 'da.o', 'db.o', '--plugin-opt=dwo_dir=dwo'];
		for (const dir of [cwd, reference]) fs.rmSync(path.join(dir, 'dwo'), { recursive: true });
		await plain(reference, more);
		expect((await shim(cwd, [...more, flag], { LTOCACHE_MODE: 'redirect' })).exitCode).toBe(0);
		expect(snapshot(cwd)).toEqual(snapshot(reference));
	});

	it('redirect mode: --lto-obj-path=F names an output, and relinking when F exists raises no alarm about changed inputs', async () => {
		const flag = '--thinlto-cache-dir=blocker/cache';
		const cwd = tree({ blocker: '', objs: 'stale\n' });
		for (let i = 0; i < 2; i++) {
			const again = await shim(cwd, ['-r', '-o', 'out.o', 'a.o', 'b.o', '--lto-obj-path=objs', flag], { LTOCACHE_MODE: 'redirect' });
			expect(again).toMatchObject({ exitCode: 0, stderr: '' });
		}
		expect(entriesBelow(path.join(cwd, '.xdg')).length).toBe(2);
	});

	it('--mllvm=@FILE: a changed FILE gives the objects of its new options, as an uncached link does', async () => {
		// The inlining threshold changes only what the backend does with the module it has (the imports, in lld's key, stay).
		const cwd = tree();
		const reference = tree();
		const args = ['-r', '-o', 'out.o', 'a.o', 'b.o', '--mllvm=@opts'];
		for (const threshold of ['-100', '225', '-100']) {
			for (const dir of [cwd, reference]) fs.writeFileSync(path.join(dir, 'opts'), `-inline-threshold=${threshold}\n`);
			expect((await plain(reference, args)).exitCode).toBe(0);
			expect(await shim(cwd, args)).toMatchObject({ exitCode: 0, stderr: '' });
			expect(fs.readFileSync(path.join(cwd, 'out.o'))).toEqual(fs.readFileSync(path.join(reference, 'out.o')));
		}
		// Cached: two directories, one per contents of opts.
		expect(entriesBelow(path.join(cwd, '.xdg')).length).toBe(4);
	});

	it('DTLTO (lld 22): cached in add mode, byte for byte the uncached DTLTO link, the remote compiler and distributor read once per identity', async () => {
		// A local distributor: runs each job of lld's JSON job file (common.args + job.args).
		const distributor = [
			"import { readFileSync } from 'node:fs';",
			"import { spawnSync } from 'node:child_process';",
			"const { common, jobs } = JSON.parse(readFileSync(process.argv.at(-1), 'utf8'));",
			'for (const job of jobs) {',
			'\tconst [cmd, ...args] = [...common.args, ...job.args];',
			"\tconst r = spawnSync(cmd, args, { stdio: 'inherit' });",
			'\tif (r.status !== 0) process.exit(r.status ?? 1);',
			'}',
		].join('\n');
		const args = [
			'-r',
			'-o',
			'out.o',
			'a.o',
			'b.o',
			`--thinlto-distributor=${process.execPath}`,
			'--thinlto-distributor-arg=dist.mjs',
			`--thinlto-remote-compiler=${CLANG}`,
		];
		const reference = tree({ 'dist.mjs': distributor });
		expect((await plain(reference, args)).exitCode).toBe(0);
		const cwd = tree({ 'dist.mjs': distributor });
		for (const read of [2, 0]) {
			const s = await shim(cwd, args, { LTOCACHE_VERBOSE: '1' });
			expect(s.exitCode, s.stderr).toBe(0);
			expect(s.stderr).toMatch(new RegExp(`^ltocache: LTOCACHE_MODE=add: using .*; files named by options read: ${read} of 2\\)$`, 'm'));
			expect(fs.readFileSync(path.join(cwd, 'out.o'))).toEqual(fs.readFileSync(path.join(reference, 'out.o')));
		}
		expect(entriesBelow(path.join(cwd, '.xdg')).length).toBe(2);
	});
});
