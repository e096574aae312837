// The product's reason to exist, end to end: an unprivileged user builds an
// out-of-tree module against a real Clang ThinLTO kernel tree they cannot
// write. Needs root (to prepare the tree and to run as nobody) and Debian's
// linux-source-6.1, clang, lld, llvm, clang-16, lld-16 (.ci/run installs them).
import fs from 'node:fs';
import path from 'node:path';
import { execaSync } from 'execa';
import { beforeAll, expect, it } from 'vitest';
import type { StatsJson } from '../../src/cli/commands/stats.js';
import { asNobody, describeIf, entriesBelow, identities, scratchRoot, shimDir, stagedShim } from '../helpers/tools.js';
import { kernelNeeds, kernelReady, kernelTree, writeBlobModule, writeModule } from './kernel-tree.js';

describeIf(kernelReady, kernelNeeds)('building an out-of-tree module against a read-only Clang ThinLTO kernel tree', () => {
	const scratch = scratchRoot();
	let tree = '';
	let release = '';
	let shims = '';
	let cli = '';

	beforeAll(async () => {
		({ tree, release } = await kernelTree());
		const staged = stagedShim(scratch('package'));
		cli = path.join(path.dirname(staged), 'ltocache');
		shims = shimDir(scratch('shims'), staged);
	});

	/** The two-file module, owned by nobody. */
	function moduleSource(): string {
		const dir = writeModule(scratch('module'));
		execaSync('chown', ['-R', 'nobody', dir]);
		return dir;
	}

	function cacheHome(): string {
		const dir = scratch('xdg');
		execaSync('chown', ['nobody', dir]);
		return dir;
	}

	// The tree is configured by clang 14, which passes a flag clang 16 warns
	// about (and -Werror turns fatal); a kernel built by clang 16 would not.
	const make = (moddir: string, target: string, env: Record<string, string>, llvm = '1') =>
		asNobody(
			'make',
			[
				'-C',
				tree,
				`M=${moddir}`,
				`LLVM=${llvm}`,
				'KBUILD_MODPOST_WARN=1',
				...(llvm === '1' ? [] : ['KCFLAGS=-Wno-unused-command-line-argument']),
				target,
			],
			{ HOME: '/nonexistent', ...env },
		);

	it('fails without the shim: the bug this project exists for', async () => {
		const moddir = moduleSource();
		const result = await make(moddir, 'modules', { PATH: '/usr/bin:/bin' });
		expect(result.exitCode).not.toBe(0);
		expect(result.stderr).toMatch(/LLVM ERROR: Permission denied/);
		expect(fs.existsSync(path.join(tree, '.thinlto-cache'))).toBe(false);
	});

	/**
	 * Every link of a cached build is verified (LTOCACHE_VERIFY=on: run again
	 * without a cache and compared byte for byte), so each run of the suite
	 * shows that no link was served a stale object; the count is printed.
	 */
	function expectVerified(key: StatsJson['kernels'][number]['keys'][number], what: string) {
		console.log(
			`${what}: ${key.verifiedLinks} of ${key.links} links verified against the uncached link, ${key.verifyMismatches} mismatches`,
		);
		expect(key.verifiedLinks).toBe(key.links);
		expect(key.verifyMismatches).toBe(0);
	}

	it("builds through the shim, caches under the user's XDG cache by kernel release, and reuses the cache", async () => {
		const moddir = moduleSource();
		const xdg = cacheHome();
		const env = { PATH: `${shims}:/usr/bin:/bin`, XDG_CACHE_HOME: xdg, LTOCACHE_VERIFY: 'on' };
		const build = await make(moddir, 'modules', env);
		expect(build.stderr).not.toMatch(/LLVM ERROR|ltocache:/);
		expect(build.exitCode).toBe(0);
		expect(fs.existsSync(path.join(moddir, 'hello.ko'))).toBe(true);
		// Linked through a response file: proves the shim passes @files on.
		expect(fs.readFileSync(path.join(moddir, 'hello.mod'), 'utf8')).toMatch(/main\.o.*helper\.o/s);
		expect(fs.existsSync(path.join(tree, '.thinlto-cache'))).toBe(false);

		const cached = entriesBelow(path.join(xdg, 'ltocache', release));
		expect(cached.length).toBeGreaterThan(0);
		const [key] = fs.readdirSync(path.join(xdg, 'ltocache', release));
		const written = identities(path.join(xdg, 'ltocache', release, key));
		const stats = await asNobody('node', [cli, 'stats', '--json'], { ...env, HOME: '/nonexistent' });
		expect(stats.exitCode).toBe(0);
		const json = JSON.parse(String(stats.stdout)) as StatsJson;
		expect(json.root).toBe(path.join(xdg, 'ltocache'));
		expect(json.kernels.map((k) => k.release)).toEqual([release]);
		expect(json.kernels[0].keys[0].extmod).toBe(moddir);
		expect(json.totalEntries).toBe(cached.length);
		const cold = json.kernels[0].keys[0];
		expect(cold.misses).toBe(cached.length);
		expect(cold.links).toBeGreaterThan(0);

		expect((await make(moddir, 'clean', env)).exitCode).toBe(0);
		expect(fs.existsSync(path.join(moddir, 'hello.ko'))).toBe(false);
		const rebuild = await make(moddir, 'modules', env);
		expect(rebuild.exitCode).toBe(0);
		expect(fs.existsSync(path.join(moddir, 'hello.ko'))).toBe(true);
		// Every module came from the cache: no entry was written anew (same inodes, same mtimes).
		expect(identities(path.join(xdg, 'ltocache', release, key))).toEqual(written);
		// And the counters say so: the same links again, every module a hit.
		const again = JSON.parse(
			String((await asNobody('node', [cli, 'stats', '--json'], { ...env, HOME: '/nonexistent' })).stdout),
		) as StatsJson;
		expect(again.kernels[0].keys[0]).toMatchObject({ links: 2 * cold.links, misses: cold.misses, hits: 2 * cold.hits + cold.misses });
		expectVerified(again.kernels[0].keys[0], 'kernel 6.1 module, built twice');
	});

	it('rebuilds a module that embeds a file with .incbin with the new contents, never a stale object', async () => {
		const moddir = writeBlobModule(scratch('blob'), 'blob-v1');
		execaSync('chown', ['-R', 'nobody', moddir]);
		const xdg = cacheHome();
		const env = { PATH: `${shims}:/usr/bin:/bin`, XDG_CACHE_HOME: xdg, LTOCACHE_VERIFY: 'on' };
		const ko = path.join(moddir, 'blob.ko');
		const build = async () => {
			expect((await make(moddir, 'clean', env)).exitCode).toBe(0);
			const result = await make(moddir, 'modules', env);
			expect(result.stderr).not.toMatch(/LLVM ERROR|ltocache:/);
			expect(result.exitCode).toBe(0);
			return fs.readFileSync(ko);
		};
		expect((await build()).includes('blob-v1\0')).toBe(true);
		const first = entriesBelow(path.join(xdg, 'ltocache', release));
		expect(first.length).toBeGreaterThan(0);
		fs.writeFileSync(path.join(moddir, 'blob.bin'), 'blob-v2');
		const rebuilt = await build();
		expect(rebuilt.includes('blob-v2\0')).toBe(true);
		expect(rebuilt.includes('blob-v1')).toBe(false);
		// The old contents' directory stays, next to the new one.
		expect(fs.readdirSync(path.join(xdg, 'ltocache', release)).filter((d) => d.includes('+incbin-')).length).toBe(2);
		const stats = JSON.parse(
			String((await asNobody('node', [cli, 'stats', '--json'], { ...env, HOME: '/nonexistent' })).stdout),
		) as StatsJson;
		const keys = stats.kernels.flatMap((k) => k.keys);
		expect(keys.length).toBeGreaterThanOrEqual(2);
		for (const key of keys) expectVerified(key, `kernel 6.1 module embedding a blob, ${key.key}`);
	});

	it('builds with ltocache run as a user, installing nothing', async () => {
		const moddir = moduleSource();
		const xdg = cacheHome();
		const tmp = cacheHome();
		const env = { PATH: '/usr/bin:/bin', XDG_CACHE_HOME: xdg, TMPDIR: tmp, HOME: '/nonexistent' };
		const build = await asNobody(
			'node',
			[cli, 'run', '--', 'make', '-C', tree, `M=${moddir}`, 'LLVM=1', 'KBUILD_MODPOST_WARN=1', 'modules'],
			env,
		);
		expect(build.stderr).not.toMatch(/LLVM ERROR|ltocache:/);
		expect(build.exitCode).toBe(0);
		expect(fs.existsSync(path.join(moddir, 'hello.ko'))).toBe(true);
		expect(entriesBelow(path.join(xdg, 'ltocache', release)).length).toBeGreaterThan(0);
		expect(fs.readdirSync(tmp)).toEqual([]);
		expect(fs.existsSync(path.join(tree, '.thinlto-cache'))).toBe(false);
	});

	it('builds with LLVM=-16, where Kbuild calls ld.lld-16', async () => {
		const moddir = moduleSource();
		const xdg = cacheHome();
		const bare = await make(moduleSource(), 'modules', { PATH: '/usr/bin:/bin' }, '-16');
		expect(bare.stderr).toMatch(/LLVM ERROR: Permission denied/);

		const env = { PATH: `${shims}:/usr/bin:/bin`, XDG_CACHE_HOME: xdg, LTOCACHE_VERBOSE: '1' };
		const build = await make(moddir, 'modules', env, '-16');
		expect(build.exitCode).toBe(0);
		expect(build.stderr).toMatch(/ltocache: running \/usr\/bin\/ld\.lld-16/);
		expect(fs.existsSync(path.join(moddir, 'hello.ko'))).toBe(true);
		expect(entriesBelow(path.join(xdg, 'ltocache', release)).length).toBeGreaterThan(0);
		expect(fs.existsSync(path.join(tree, '.thinlto-cache'))).toBe(false);
	});
});
