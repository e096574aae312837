// Hostile conditions: links racing prune and clear, prunes killed mid-way, a
// full disk, and paths with spaces, newlines, `..` and bytes that are not
// UTF-8. The bar: a cache problem never breaks a link, and the manager never
// loses track of what it owns.
import fs from 'node:fs';
import path from 'node:path';
import { execa, execaSync } from 'execa';
import { beforeAll, expect, it } from 'vitest';
import type { StatsJson } from '../../src/cli/commands/stats.js';
import { LOCK_NAME } from '../../src/shared/root.js';
import { ltocache, makeEntry, makeKey, onDisk } from '../helpers/cache.js';
import { describeIf, entriesBelow, fixtures, hasToolchain, isRoot, LLD, SHIM, scratchRoot, withReadOnly } from '../helpers/tools.js';

const scratch = scratchRoot();

/** A small deterministic generator, so a failing run can be repeated. */
function random(seed: number): () => number {
	return () => {
		seed = (seed * 1103515245 + 12345) % 2 ** 31;
		return seed / 2 ** 31;
	};
}

describeIf(hasToolchain && isRoot, 'clang, ld.lld and root (read-only mounts)')('hostile conditions', () => {
	// Four different pairs of ThinLTO objects, and each linked directly without a cache.
	const variants: { objects: string[]; reference: Buffer }[] = [];
	beforeAll(() => {
		for (const opt of ['-O1', '-O2', '-O3', '-Os']) {
			const dir = scratch('obj');
			const objects = ['a', 'b'].map((n) => {
				const object = path.join(dir, `${n}.o`);
				execaSync('clang', ['-flto=thin', opt, '-c', path.join(fixtures, `${n}.c`), '-o', object]);
				return object;
			});
			execaSync(LLD, ['-r', '-o', path.join(dir, 'reference.o'), ...objects]);
			variants.push({ objects, reference: fs.readFileSync(path.join(dir, 'reference.o')) });
		}
	});

	/** A link through the shim with the kernel tree on a read-only mount, so the cache is redirected. */
	function link(
		tree: string,
		out: string,
		objects: string[],
		env: Record<string, string>,
		cacheFlag = '--thinlto-cache-dir=.thinlto-cache',
	) {
		return withReadOnly(tree, 'sh', ['-c', 'cd "$0" && exec "$@"', tree, SHIM, cacheFlag, '-r', '-o', out, ...objects], {
			env: { LTOCACHE_AUTO_PRUNE: '0', ...env },
		});
	}

	it('keeps 24 concurrent links into one cache directory correct while prune and clear run in a loop', async () => {
		const root = scratch('root');
		const tree = scratch('tree');
		const outDir = scratch('out');
		const env = { LTOCACHE_DIR: root, KERNELRELEASE: '6.1.0-race', KBUILD_EXTMOD: '/src/race' };
		let linking = true;
		const manager = (async () => {
			const runs = [];
			for (let i = 0; linking; i++) {
				const args = i % 2 === 0 ? ['prune', '--max-size', '1K'] : ['clear'];
				runs.push(await ltocache(root, args));
			}
			return runs;
		})();
		const links: { variant: (typeof variants)[number]; out: string; result: Awaited<ReturnType<typeof link>> }[] = [];
		const queue = Array.from({ length: 24 }, (_, i) => i);
		const worker = async () => {
			for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
				const variant = variants[i % variants.length];
				const out = path.join(outDir, `${i}.o`);
				links.push({ variant, out, result: await link(tree, out, variant.objects, env) });
			}
		};
		await Promise.all([worker(), worker(), worker(), worker()]);
		linking = false;
		const runs = await manager;

		expect(links).toHaveLength(24);
		for (const { variant, out, result } of links) {
			expect(result).toMatchObject({ exitCode: 0, stderr: '' });
			expect(fs.readFileSync(out).equals(variant.reference)).toBe(true);
		}
		expect(runs.length).toBeGreaterThan(2);
		for (const run of runs) expect(run).toMatchObject({ exitCode: 0, stderr: '' });
		// Every link went into the one directory.
		expect(fs.readdirSync(path.join(root, '6.1.0-race'))).toHaveLength(1);
	});

	it('recovers from prunes of 40,000 entries killed with SIGKILL midway: lock taken over, stats exact', async () => {
		const root = scratch('root');
		const keys = [1, 2, 3, 4].map((n) => makeKey(root, `6.1.0-${n}`, `/src/m${n}`, 2));
		for (let i = 0; i < 40_000; i++) makeEntry(keys[i % 4], { bytes: 10 + (i % 100), ageDays: (i % 300) / 10 });
		const next = random(42);
		/** Entries on disk, counted cheaply enough to poll: the four key directories' listings. */
		const count = () => keys.reduce((n, key) => n + fs.readdirSync(key).filter((f) => f.startsWith('llvmcache-')).length, 0);
		let midway = 0;
		for (const files of [30_000, 20_000, 10_000, 5000, 2000]) {
			const before = count();
			const child = execa('node', [path.join(path.dirname(SHIM), 'ltocache'), 'prune', '--max-files', String(files)], {
				env: { LTOCACHE_DIR: root },
				reject: false,
			});
			// Kill it once it has started deleting, at a random point after that.
			while (count() === before && child.exitCode === null) await new Promise((r) => setTimeout(r, 5));
			await new Promise((r) => setTimeout(r, next() * 100));
			child.kill('SIGKILL');
			const { signal } = await child;
			const after = count();
			// Killed with deletions done and deletions left: the abandoned state under test.
			if (signal === 'SIGKILL' && after < before && after > files) midway++;
			const stats = JSON.parse((await ltocache(root, ['stats', '--json'])).stdout) as StatsJson;
			const truth = onDisk(root);
			expect(stats.totalEntries).toBe(truth.size);
			expect(stats.totalBytes).toBe([...truth.values()].reduce((a, b) => a + b, 0));
		}
		expect(midway).toBeGreaterThan(0);
		const final = await ltocache(root, ['prune', '--max-files', '1000', '--json']);
		expect(final).toMatchObject({ exitCode: 0, stderr: '' });
		expect(onDisk(root).size).toBe(1000);
		expect(fs.existsSync(path.join(root, LOCK_NAME))).toBe(false);
	});

	it('leaves the temporary file of a link killed mid-way to prune, once it is stale', async () => {
		const root = scratch('root');
		const key = makeKey(root, '6.1.0-killed', '/src/killed');
		// A module big enough that lld is still writing when it is killed.
		const dir = scratch('big');
		const source = Array.from(
			{ length: 400 },
			(_, i) => `int f${i}(int x) { int s = 0; for (int j = 0; j < x; j++) s += (j * ${i}) ^ (s >> 3); return s; }`,
		).join('\n');
		fs.writeFileSync(path.join(dir, 'big.c'), source);
		execaSync('clang', ['-flto=thin', '-O2', '-c', path.join(dir, 'big.c'), '-o', path.join(dir, 'big.o')]);
		/** Runs lld and kills it the moment a temporary file appears; undefined if lld finished first. */
		const killMidWrite = async (): Promise<string | undefined> => {
			const lld = execa(
				LLD,
				[`--thinlto-cache-dir=${key}`, '-r', '-o', path.join(dir, 'out.o'), path.join(dir, 'big.o'), ...variants[0].objects],
				{ reject: false },
			);
			const found = await new Promise<string | undefined>((resolve) => {
				const poll = setInterval(() => {
					const name = fs.readdirSync(key).find((n) => n.startsWith('Thin-'));
					if (name) {
						lld.kill('SIGKILL');
						clearInterval(poll);
						resolve(name);
					}
				}, 0);
				void lld.then(() => {
					clearInterval(poll);
					resolve(undefined);
				});
			});
			const { signal } = await lld;
			return found && signal === 'SIGKILL' ? found : undefined;
		};
		let temp: string | undefined;
		// A fast machine can finish a write between two polls: clear and try again.
		for (let attempt = 0; attempt < 10 && temp === undefined; attempt++) {
			for (const f of fs.readdirSync(key)) if (f !== 'ltocache.json') fs.rmSync(path.join(key, f));
			temp = await killMidWrite();
		}
		expect(temp).toMatch(/^Thin-.*\.tmp\.o$/);
		// lld writes modules in parallel: one or more temporaries were left.
		const temps = fs
			.readdirSync(key)
			.filter((n) => n.startsWith('Thin-'))
			.map((n) => path.join(key, n));
		expect(temps).toContain(path.join(key, temp!));

		const stats = JSON.parse((await ltocache(root, ['stats', '--json'])).stdout) as StatsJson;
		expect(stats.tempFiles).toBe(temps.length);
		expect(stats.totalEntries).toBe(onDisk(root).size);
		await ltocache(root, ['prune', '--max-size', '1B']);
		expect(temps.every((t) => fs.existsSync(t))).toBe(true);
		for (const t of temps) fs.utimesSync(t, new Date(Date.now() - 2 * 3600_000), new Date(Date.now() - 2 * 3600_000));
		const report = JSON.parse((await ltocache(root, ['prune', '--max-size', '1B', '--json'])).stdout) as { removed: { tempFiles: number } };
		expect(report.removed.tempFiles).toBe(temps.length);
		expect(temps.some((t) => fs.existsSync(t))).toBe(false);
	});

	it('gives links with one pid, in PID namespaces of their own sharing one root, temporary names of their own', async () => {
		const root = scratch('root');
		const tree = scratch('tree');
		const out = path.join(scratch('out'), 'ns.o');
		const { objects, reference } = variants[2];
		const env = { LTOCACHE_DIR: root, KERNELRELEASE: '6.1.0-ns', KBUILD_EXTMOD: '/src/ns' };
		/**
		 * A link whose shim runs in a PID namespace of its own, as in a container: its pids are that namespace's.
		 * Below a shell as PID 1, as a build's shim is (make starts it; it is never the namespace's init).
		 */
		const linkInNamespace = () =>
			withReadOnly(
				tree,
				'unshare',
				[
					'-pf',
					'--mount-proc',
					'sh',
					'-c',
					'cd "$0" && "$@"; exit $?',
					tree,
					SHIM,
					'--thinlto-cache-dir=.thinlto-cache',
					'-r',
					'-o',
					out,
					...objects,
				],
				{ env: { LTOCACHE_AUTO_PRUNE: '0', ...env } },
			);
		const first = await linkInNamespace();
		expect(first).toMatchObject({ exitCode: 0, stderr: '' });
		const [key] = fs.readdirSync(path.join(root, '6.1.0-ns'));
		const watched = [path.join(root, '6.1.0-ns', key), path.join(root, 'ltocache.inputs')];
		/** The names a link in a namespace of its own writes aside and renames in, from the same state of the root each time. */
		const tempsOfOneLink = async () => {
			for (const dir of watched) for (const name of fs.readdirSync(dir)) fs.rmSync(path.join(dir, name));
			const seen = new Set<string>();
			const watchers = watched.map((dir) =>
				fs.watch(dir, (_, name) => {
					if (name?.endsWith('.tmp')) seen.add(name);
				}),
			);
			const result = await linkInNamespace();
			expect(result).toMatchObject({ exitCode: 0, stderr: '' });
			expect(fs.readFileSync(out).equals(reference)).toBe(true);
			// inotify queued the events as they happened; they reach this process's loop a turn or more later.
			for (let turns = 0; turns < 500 && ![...seen].some((n) => n.startsWith('ltocache.json.')); turns++)
				await new Promise((r) => setTimeout(r, 10));
			for (const watcher of watchers) watcher.close();
			return [...seen];
		};
		const [a, b] = [await tempsOfOneLink(), await tempsOfOneLink()];
		/** The pid in a temporary name: before <token>-<n>, or alone, as earlier versions named them. */
		const pidOf = (name: string) => name.match(/\.(\d+)(?:-[0-9a-z]{8}-\d+)?\.tmp$/)?.[1];
		for (const names of [a, b]) {
			expect(names.filter((n) => n.startsWith('ltocache.json.'))).toHaveLength(1);
			expect(names.length).toBeGreaterThan(1); // the memo's too
		}
		// The same pid in both (what each namespace gave the shim), and yet no name the two links share.
		const pids = new Set([...a, ...b].map(pidOf));
		expect([...pids]).toEqual([expect.stringMatching(/^\d+$/)]);
		expect(a.filter((name) => b.includes(name))).toEqual([]);
	});

	/** A link through the shim, the tree read-only and the cache root a 1 MiB tmpfs with `free` 4 KiB pages left. */
	function linkNearlyFull(free: number) {
		const tree = scratch('tree');
		const root = scratch('full');
		const out = path.join(scratch('out'), 'full.o');
		const script = `mount -t tmpfs -o size=1m tmpfs "$1" && (dd if=/dev/zero of="$1/filler" bs=4k count=${256 - free} 2>/dev/null; true) &&
			mount --bind -o ro "$0" "$0" && cd "$0" && shift && "$@"; status=$?; find "$1" -name 'llvmcache-*' | wc -l; exit $status`;
		const args = ['--thinlto-cache-dir=.thinlto-cache', '-r', '-o', out, ...variants[0].objects];
		return execa('unshare', ['-m', 'sh', '-c', script, tree, root, SHIM, ...args], {
			reject: false,
			env: { LTOCACHE_DIR: root, LTOCACHE_AUTO_PRUNE: '0', KERNELRELEASE: '6.1.0-full' },
		}).then((result) => ({ result, output: fs.readFileSync(out) }));
	}

	it('links without a cache when the cache root cannot take even the metadata', async () => {
		const { result, output } = await linkNearlyFull(0);
		expect(result).toMatchObject({ exitCode: 0, stdout: '0' });
		expect(result.stderr).toMatch(
			/^ltocache: --thinlto-cache-dir=\.thinlto-cache is not writable \(EROFS\); cannot write in .* \(ENOSPC\), linking without a ThinLTO cache$/,
		);
		expect(output.equals(variants[0].reference)).toBe(true);
	});

	it('links without a cache when the metadata fits but lld would abort writing an entry', async () => {
		// One page left: the metadata takes it. Measured: lld then aborts with
		// "LLVM ERROR: IO failure on output stream: No space left on device".
		const { result, output } = await linkNearlyFull(1);
		expect(result).toMatchObject({ exitCode: 0, stdout: '0' });
		expect(result.stderr).toMatch(
			/^ltocache: --thinlto-cache-dir=\.thinlto-cache is not writable \(EROFS\); .* is on a file system with [\d.]+ MiB free, less than the 32\.0 MiB this link may write, linking without a ThinLTO cache$/,
		);
		expect(output.equals(variants[0].reference)).toBe(true);
	});

	it('links without a cache when the cache root has less than 32 MiB free, though it could take this link', async () => {
		// 1 MiB free holds this link's entries; a larger link would make lld abort half-way.
		const { result, output } = await linkNearlyFull(256);
		expect(result).toMatchObject({ exitCode: 0, stdout: '0' });
		expect(result.stderr).toMatch(
			/ is on a file system with [\d.]+ MiB free, less than the 32\.0 MiB this link may write, linking without a ThinLTO cache$/,
		);
		expect(output.equals(variants[0].reference)).toBe(true);
	});

	it('handles roots and module paths with spaces, newlines, .. and bytes that are not UTF-8', async () => {
		const base = scratch('hostile');
		const tree = path.join(base, 'kernel tree\nwith newline');
		fs.mkdirSync(tree);
		const root = path.join(base, 'cache root', '..', 'cache  root\n2');
		const { objects, reference } = variants[1];
		const cases: [string, Record<string, string>, string?][] = [
			['spaces and newline in the root', { LTOCACHE_DIR: root, KBUILD_EXTMOD: '/src/a b\nc' }],
			['.. in the module path', { LTOCACHE_DIR: root, KBUILD_EXTMOD: '/src/x/../../etc' }],
			['relative module path', { LTOCACHE_DIR: root, M: '../mod' }],
		];
		for (const [what, env] of cases) {
			const out = path.join(base, 'out.o');
			const result = await link(tree, out, objects, { KERNELRELEASE: '6.1.0-odd', ...env });
			expect(result, what).toMatchObject({ exitCode: 0, stderr: '' });
			expect(fs.readFileSync(out).equals(reference)).toBe(true);
		}
		const keys = fs.readdirSync(path.join(path.resolve(root), '6.1.0-odd'));
		expect(keys).toHaveLength(3);
		for (const key of keys) expect(key).toMatch(/^[A-Za-z0-9._+-]+-[0-9a-f]{12}$/);
		// `..` is resolved, never used to climb out of the root: every entry
		// written below the scratch directory is in a key directory of the root.
		const resolvedRoot = path.relative(base, path.resolve(root));
		const written = entriesBelow(base);
		expect(written.length).toBeGreaterThan(0);
		for (const entry of written) expect(path.dirname(path.dirname(path.dirname(entry)))).toBe(resolvedRoot);

		// An original cache path with bytes that are not UTF-8, passed as bytes.
		const out = path.join(base, 'bytes.o');
		const shell = await withReadOnly(
			tree,
			'sh',
			['-c', `cd "$0" && exec "$1" "$(printf -- '--thinlto-cache-dir=caf\\351\\377')" -r -o "$2" "$3" "$4"`, tree, SHIM, out, ...objects],
			{
				env: { LTOCACHE_DIR: root, LTOCACHE_AUTO_PRUNE: '0', KERNELRELEASE: '6.1.0-bytes' },
			},
		);
		expect(shell).toMatchObject({ exitCode: 0, stderr: '' });
		expect(fs.readFileSync(out).equals(reference)).toBe(true);
		const [key] = fs.readdirSync(path.join(path.resolve(root), '6.1.0-bytes'));
		expect(key).toMatch(/^[A-Za-z0-9._+-]+-[0-9a-f]{12}$/);
		// Module paths that differ only in bytes that are not UTF-8 (Node would decode both to U+FFFD) stay apart.
		for (const byte of ['\\376', '\\377']) {
			const result = await withReadOnly(
				tree,
				'sh',
				[
					'-c',
					`cd "$0" && KBUILD_EXTMOD="$(printf '/src/mod${byte}')" exec "$@"`,
					tree,
					SHIM,
					'--thinlto-cache-dir=.thinlto-cache',
					'-r',
					'-o',
					out,
					...objects,
				],
				{
					env: { LTOCACHE_DIR: root, LTOCACHE_AUTO_PRUNE: '0', KERNELRELEASE: '6.1.0-envbytes' },
				},
			);
			expect(result).toMatchObject({ exitCode: 0, stderr: '' });
		}
		expect(fs.readdirSync(path.join(path.resolve(root), '6.1.0-envbytes'))).toHaveLength(2);

		const stats = JSON.parse((await ltocache(path.resolve(root), ['stats', '--json'])).stdout) as StatsJson;
		expect(stats.kernels.map((k) => k.release)).toEqual(['6.1.0-bytes', '6.1.0-envbytes', '6.1.0-odd']);
		expect(stats.kernels[1].keys.map((k) => k.extmod)).toEqual(['/src/mod\uFFFD', '/src/mod\uFFFD']);
		expect(stats.totalEntries).toBe(onDisk(path.resolve(root)).size);
	});
});
