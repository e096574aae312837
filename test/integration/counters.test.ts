// Hits and misses, with the real lld through the shim as nobody, on a cache
// directory nobody cannot write: what a link counts, what parallel links
// count together, and that no state of the counters file can fail a link.
import fs from 'node:fs';
import path from 'node:path';
import { execaSync } from 'execa';
import { beforeAll, expect, it } from 'vitest';
import {
	asNobody,
	describeIf,
	entries,
	hasToolchain,
	isRoot,
	LLD,
	NOBODY,
	SYSTEM_PATH,
	scratchRoot,
	shimDir,
	stagedShim,
	TOOLCHAIN,
} from '../helpers/tools.js';

const scratch = scratchRoot();
const N = 6;

type KeyStats = { key: string; links: number; hits: number; misses: number; entries: number; bytesWritten: number; linkMs: number };
type Stats = { schema: number; totalLinks: number; totalHits: number; totalMisses: number; kernels: (KeyStats & { keys: KeyStats[] })[] };

describeIf(hasToolchain && isRoot, `${TOOLCHAIN}, and root (for nobody)`)('hit and miss accounting', () => {
	let shims: string;
	let cli: string;
	let objects: string[];
	let reference: Buffer;
	let work: string;

	beforeAll(() => {
		const pkg = stagedShim(scratch('pkg'));
		cli = path.join(path.dirname(pkg), 'ltocache');
		shims = shimDir(scratch('shims'), pkg);
		const obj = scratch('obj');
		objects = [];
		for (let i = 0; i < N; i++) {
			const src = path.join(obj, `m${i}.c`);
			fs.writeFileSync(
				src,
				`int f${(i + 1) % N}(int);\nint f${i}(int x) { return x * ${i + 3} + ${i}; }\nint g${i}(int x) { return f${i}(x) + f${(i + 1) % N}(x); }\n`,
			);
			objects.push(path.join(obj, `m${i}.o`));
			execaSync('clang', ['-flto=thin', '-O2', '-c', src, '-o', objects[i]]);
		}
		execaSync('chmod', ['-R', 'a+rX', obj]);
		work = scratch('work');
		fs.chmodSync(work, 0o777);
		execaSync(LLD, ['-r', '-o', path.join(work, 'reference.o'), ...objects]);
		reference = fs.readFileSync(path.join(work, 'reference.o'));
	});

	function home() {
		const xdg = scratch('xdg');
		fs.chmodSync(xdg, 0o777);
		return xdg;
	}
	const env = (xdg: string, extmod: string) => ({
		PATH: `${shims}:${SYSTEM_PATH}`,
		HOME: '/nonexistent',
		XDG_CACHE_HOME: xdg,
		KERNELRELEASE: '6.1.0-count',
		KBUILD_EXTMOD: extmod,
	});
	/** A kernel module link as Kbuild makes it, in a tree nobody cannot write. */
	const link = (xdg: string, extmod: string, out = path.join(work, `${path.basename(extmod)}.o`)) =>
		asNobody(
			'sh',
			['-c', 'cd "$0" && exec ld.lld "$@"', scratch('tree'), '--thinlto-cache-dir=.thinlto-cache', '-r', '-o', out, ...objects],
			env(xdg, extmod),
		);
	async function stats(xdg: string): Promise<Stats> {
		const result = await asNobody(cli, ['stats', '--json'], { PATH: SYSTEM_PATH, HOME: '/nonexistent', XDG_CACHE_HOME: xdg });
		expect(result.exitCode).toBe(0);
		return JSON.parse(String(result.stdout)) as Stats;
	}
	const keyOf = async (xdg: string) => {
		const s = await stats(xdg);
		expect(s.kernels.flatMap((k) => k.keys).length).toBe(1);
		return s.kernels[0].keys[0];
	};
	const keyDir = (xdg: string) => {
		const release = path.join(xdg, 'ltocache/6.1.0-count');
		return path.join(release, fs.readdirSync(release)[0]);
	};

	it(`counts a cold link of ${N} modules as ${N} misses, the same link again as ${N} hits`, async () => {
		const xdg = home();
		expect((await link(xdg, '/src/one')).exitCode).toBe(0);
		expect(await keyOf(xdg)).toMatchObject({ links: 1, hits: 0, misses: N, entries: N });
		const cold = await keyOf(xdg);
		expect(cold.bytesWritten).toBeGreaterThan(0);
		expect(cold.linkMs).toBeGreaterThan(0);

		expect((await link(xdg, '/src/one')).exitCode).toBe(0);
		expect(await keyOf(xdg)).toMatchObject({ links: 2, hits: N, misses: N, entries: N, bytesWritten: cold.bytesWritten });
		const s = await stats(xdg);
		expect(s).toMatchObject({ schema: 2, totalLinks: 2, totalHits: N, totalMisses: N });
		expect(s.kernels[0]).toMatchObject({ links: 2, hits: N, misses: N });

		const text = await asNobody(cli, ['stats'], { PATH: SYSTEM_PATH, HOME: '/nonexistent', XDG_CACHE_HOME: xdg });
		expect(text.stdout).toMatch(new RegExp(`^  /src/one +2 +${N} +${N} +50\\.0% +${N} `, 'm'));
	});

	it('does not count a link that fails', async () => {
		const xdg = home();
		const failed = await asNobody(
			'sh',
			[
				'-c',
				'cd "$0" && exec ld.lld "$@"',
				scratch('tree'),
				'--thinlto-cache-dir=.thinlto-cache',
				'-r',
				'-o',
				path.join(work, 'failed.o'),
				...objects,
				'/nonexistent.o',
			],
			env(xdg, '/src/failing'),
		);
		expect(failed.exitCode).not.toBe(0);
		expect(await keyOf(xdg)).toMatchObject({ links: 0, hits: 0, misses: 0 });
	});

	it("writes nothing through a symlink another member put under ltocache's own names, and is not held by a FIFO there", async () => {
		const xdg = home();
		const out = path.join(work, 'planted.o');
		expect((await link(xdg, '/src/planted', out)).exitCode).toBe(0);
		const dir = keyDir(xdg);
		// Files the link's user may write, as a root-run link may write anything: a symlink must not lead there.
		const precious = (name: string) => {
			const file = path.join(scratch('target'), name);
			fs.writeFileSync(file, 'precious\n', { mode: 0o666 });
			fs.chmodSync(file, 0o666);
			const old = new Date(Date.now() - 3 * 86_400_000);
			fs.utimesSync(file, old, old);
			return file;
		};
		const counts = precious('counts');
		const stamp = precious('stamp');
		fs.rmSync(path.join(dir, 'ltocache.counts'));
		fs.symlinkSync(counts, path.join(dir, 'ltocache.counts'));
		fs.symlinkSync(stamp, path.join(xdg, 'ltocache', 'ltocache.last-prune'));
		const env2 = { ...env(xdg, '/src/planted'), LTOCACHE_AUTO_PRUNE: '1' };
		const viaSymlinks = await asNobody(
			'sh',
			['-c', 'cd "$0" && exec ld.lld "$@"', scratch('tree'), '--thinlto-cache-dir=.thinlto-cache', '-r', '-o', out, ...objects],
			env2,
		);
		expect(viaSymlinks.exitCode).toBe(0);
		expect(fs.readFileSync(out)).toEqual(reference);
		expect(fs.readFileSync(counts, 'utf8')).toBe('precious\n');
		expect(fs.readFileSync(stamp, 'utf8')).toBe('precious\n');

		// A FIFO where the counts are: read before the link (the last link's bytes) and appended to after.
		fs.rmSync(path.join(dir, 'ltocache.counts'), { force: true });
		execaSync('mkfifo', ['-m', '666', path.join(dir, 'ltocache.counts')]);
		const viaFifo = await link(xdg, '/src/planted', out);
		expect(viaFifo.exitCode).toBe(0);
		expect(fs.readFileSync(out)).toEqual(reference);
		expect((await asNobody(cli, ['stats'], { PATH: SYSTEM_PATH, HOME: '/nonexistent', XDG_CACHE_HOME: xdg })).exitCode).toBe(0);
	});

	it('keeps hits + misses = modules linked for 8 parallel links into one directory, each entry counted once', async () => {
		const xdg = home();
		const results = await Promise.all(Array.from({ length: 8 }, (_, i) => link(xdg, '/src/par', path.join(work, `par-${i}.o`))));
		for (const [i, r] of results.entries()) {
			expect(r).toMatchObject({ exitCode: 0, stderr: '' });
			expect(fs.readFileSync(path.join(work, `par-${i}.o`))).toEqual(reference);
		}
		const key = await keyOf(xdg);
		expect(key.links).toBe(8);
		expect(key.hits + key.misses).toBe(8 * N);
		// Every entry in the directory was written by one of them and seen by its writer at least.
		expect(key.misses).toBeGreaterThanOrEqual(entries(keyDir(xdg)).length);
		expect(entries(keyDir(xdg)).length).toBe(N);
	});

	it.each([
		[
			'garbage and a torn line',
			(file: string) => {
				fs.writeFileSync(file, 'not json\n{"t":1,"m":3,"w":[["ab\n\0\0\0');
				fs.chownSync(file, NOBODY, NOBODY);
			},
		],
		['a directory', (file: string) => fs.mkdirSync(file)],
		['full (4 MiB)', (file: string) => fs.writeFileSync(file, `${'x'.repeat(4 * 1024 * 1024)}\n`)],
		['owned by root, 0444', (file: string) => fs.writeFileSync(file, '', { mode: 0o444 })],
	])('never fails a link when the counters file is %s', async (what, plant) => {
		const xdg = home();
		expect((await link(xdg, '/src/bad')).exitCode).toBe(0);
		const file = path.join(keyDir(xdg), 'ltocache.counts');
		fs.rmSync(file, { recursive: true, force: true });
		plant(file);
		const out = path.join(work, 'bad.o');
		fs.rmSync(out, { force: true });
		const result = await link(xdg, '/src/bad', out);
		expect(result).toMatchObject({ exitCode: 0, stderr: '' });
		expect(fs.readFileSync(out)).toEqual(reference);
		const key = await keyOf(xdg);
		// A file it can append to takes the line after what it cannot parse; the rest count nothing.
		expect(key).toMatchObject(what.startsWith('garbage') ? { links: 1, hits: N, misses: 0 } : { links: 0, hits: 0, misses: 0 });
		expect(key.entries).toBe(N);
	});

	it('stats --zero resets the counters and nothing else; clear resets what it clears; prune compacts and keeps the totals', async () => {
		const xdg = home();
		const user = { PATH: SYSTEM_PATH, HOME: '/nonexistent', XDG_CACHE_HOME: xdg };
		await link(xdg, '/src/z');
		await link(xdg, '/src/z');
		const zero = await asNobody(cli, ['stats', '--zero'], user);
		expect(zero).toMatchObject({ exitCode: 0, stdout: expect.stringMatching(/^zeroed the counters of 1 module directory in /) });
		expect(await keyOf(xdg)).toMatchObject({ links: 0, hits: 0, misses: 0, entries: N });

		await link(xdg, '/src/z');
		// Lines of links that started over an hour ago are folded by prune: backdate them.
		const file = path.join(keyDir(xdg), 'ltocache.counts');
		const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
		fs.writeFileSync(file, `${lines.map((l) => JSON.stringify({ ...JSON.parse(l), t: Date.now() - 7200_000 })).join('\n')}\n`);
		await link(xdg, '/src/z');
		const before = await keyOf(xdg);
		expect(before).toMatchObject({ links: 2, hits: 2 * N, misses: 0 });
		expect((await asNobody(cli, ['prune'], user)).exitCode).toBe(0);
		const compacted = fs.readFileSync(file, 'utf8').trim().split('\n');
		expect(compacted.length).toBe(2);
		expect(JSON.parse(compacted[0])).toHaveProperty('folded');
		expect(await keyOf(xdg)).toMatchObject({ links: 2, hits: 2 * N, misses: 0 });

		expect((await asNobody(cli, ['clear'], user)).exitCode).toBe(0);
		const after = await stats(xdg);
		expect(after).toMatchObject({ totalLinks: 0, totalHits: 0, totalMisses: 0 });
	});
});
