// A remote cache for a fleet (issue 34), against real nginx and
// redis-server: what a fresh machine downloads follows what its link needs,
// not what the namespace ever held; machines uploading at once lose
// nothing; what the remote lost comes back from the next machine that had
// to link it; a slow line converges; a Redis that evicts still links right.
// Every link's output is compared byte for byte with the real ld.lld's
// uncached link of the same objects.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execa, execaSync } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readCounters } from '../../src/shared/counters.js';
import { type Server, startNginx, startRedis, startThrottle } from '../helpers/servers.js';
import {
	describeIf,
	entriesBelow,
	hasToolchain,
	isRoot,
	LLD,
	NO_CONFIG,
	nodeOnlyDir,
	onPath,
	SHIM,
	scratchRoot,
	shimDir,
} from '../helpers/tools.js';

const scratch = scratchRoot();
const servers: Server[] = [];
afterAll(async () => {
	for (const s of servers) await s.stop();
});

const FILES = 9;

/**
 * A module of FILES sources, each calling the next (so ThinLTO imports
 * across them) and holding a table of tableBytes: commit k rewrites source
 * k % FILES, as a one-file commit does. seed: another module's contents.
 */
function moduleTree(dir: string, seed: string, tableBytes = 3000) {
	const objects = Array.from({ length: FILES }, (_, i) => path.join(dir, `f${i}.o`));
	const write = (i: number, version: number) => {
		const table = randomBytes(tableBytes).join(',');
		const next = (i + 1) % FILES;
		const source = `/* ${seed} */
extern int f${next}(int);
static const unsigned char t${i}[${tableBytes}] = { ${table} };
int f${i}(int x) { return t${i}[(unsigned)x % ${tableBytes}] + x * ${version + 1} + (x > ${1000 + i} ? f${next}(x - 1) : 0); }
`;
		const file = path.join(dir, `f${i}.c`);
		fs.writeFileSync(file, source);
		execaSync('clang', ['-flto=thin', '-O2', '-c', file, '-o', objects[i]]);
	};
	for (let i = 0; i < FILES; i++) write(i, 0);
	return {
		objects,
		commit: (k: number) => write(k % FILES, k),
		/** What the real ld.lld links the objects into now without any cache. */
		reference: () => {
			const out = path.join(dir, 'reference.o');
			execaSync(LLD, ['-r', '-o', out, ...objects]);
			return fs.readFileSync(out);
		},
	};
}

describeIf(
	hasToolchain && Boolean(onPath('nginx') && onPath('redis-server') && onPath('redis-cli')),
	'clang, ld.lld, nginx and redis-server (Debian: nginx-light redis-server)',
)('a remote shared by a fleet', () => {
	let shims: string;
	let node: string;
	let nginx: Server & { root: string };
	let redis: Server;
	beforeAll(async () => {
		shims = shimDir(scratch('shims'), SHIM, ['ld.lld']);
		node = nodeOnlyDir(scratch('node'));
		nginx = await startNginx(scratch('nginx'));
		redis = await startRedis(scratch('redis'));
		servers.push(nginx, redis);
	});
	const url = (kind: string) => (kind === 'http' ? nginx.url : redis.url);

	/** One machine's link (a cache root of its own) of the objects, in add mode, into its own output. */
	const link = async (
		root: string,
		remote: string,
		module: string,
		objects: string[],
		extra: Record<string, string> = {},
		wrap: string[] = [],
	) => {
		const out = path.join(scratch('out'), 'out.o');
		const command = [...wrap, path.join(shims, 'ld.lld'), '-r', '-o', out, ...objects];
		const result = await execa(command[0], command.slice(1), {
			cwd: scratch('cwd'),
			reject: false,
			extendEnv: false,
			env: {
				...NO_CONFIG,
				PATH: `${shims}:${node}:/usr/bin:/bin`,
				LTOCACHE_DIR: root,
				LTOCACHE_MODE: 'add',
				LTOCACHE_AUTO_PRUNE: '0',
				LTOCACHE_REMOTE: remote,
				LTOCACHE_REMOTE_TIMEOUT: '30s',
				KERNELRELEASE: '6.1.0-fleet',
				KBUILD_EXTMOD: module,
				...extra,
			},
		});
		return { ...result, output: fs.existsSync(out) ? fs.readFileSync(out) : Buffer.alloc(0) };
	};
	const counters = (root: string) => {
		const release = path.join(root, '6.1.0-fleet');
		const [key] = fs.readdirSync(release);
		return readCounters(path.join(release, key));
	};
	/** The bytes of the entries a cold link without a remote writes: what a link of these objects needs. */
	const needed = async (module: string, objects: string[]) => {
		const root = scratch('local');
		expect(await link(root, '', module, objects)).toMatchObject({ exitCode: 0, stderr: '' });
		return entriesBelow(root).reduce((sum, e) => sum + fs.statSync(path.join(root, e)).size, 0);
	};

	it.each(['http', 'redis'])(
		'over %s, after 20 one-file commits linked in turn on one machine, a fresh machine downloads what the last needs (at most 1.2x its bytes)',
		async (kind) => {
			const module = `/src/commits-${kind}`;
			const tree = moduleTree(scratch('tree'), kind);
			const a = scratch('machine-a');
			for (let k = 1; k <= 20; k++) {
				tree.commit(k);
				const result = await link(a, url(kind), module, tree.objects);
				expect(result).toMatchObject({ exitCode: 0, stderr: '' });
				expect(result.output).toEqual(tree.reference());
			}
			const need = await needed(module, tree.objects);
			// What the namespace holds by now is far more than one link needs.
			expect(counters(a).uploadBytes).toBeGreaterThan(2 * need);

			const fresh = scratch('machine-fresh');
			const last = await link(fresh, url(kind), module, tree.objects);
			expect(last).toMatchObject({ exitCode: 0, stderr: '' });
			expect(last.output).toEqual(tree.reference());
			const got = counters(fresh);
			expect(got).toMatchObject({ hits: FILES, misses: 0, downloads: FILES, uploads: 0 });
			expect(got.downloadBytes).toBeLessThanOrEqual(1.2 * need);

			// A commit no machine has linked: the head (the last link's manifest) brings what did not change.
			tree.commit(21);
			const other = scratch('machine-other');
			const next = await link(other, url(kind), module, tree.objects);
			expect(next).toMatchObject({ exitCode: 0, stderr: '' });
			expect(next.output).toEqual(tree.reference());
			const nextCounts = counters(other);
			expect(nextCounts.hits).toBeGreaterThan(0);
			expect(nextCounts.downloadBytes).toBeLessThanOrEqual(1.2 * need);
		},
	);

	it("a link whose remote is down still sets the times of what it read: the next link's manifest, the remote back, lists all it used", async () => {
		const module = '/src/down-between';
		const tree = moduleTree(scratch('tree'), 'down-between');
		const a = scratch('machine-a');
		const down = await startRedis(scratch('redis-down'));
		await down.stop();
		for (const [k, remote] of [
			[1, redis.url],
			[2, down.url],
			[3, redis.url],
		] as const) {
			tree.commit(k);
			const result = await link(a, remote, module, tree.objects);
			expect(result.exitCode).toBe(0);
			expect(result.stderr).toMatch(k === 2 ? /^ltocache: remote \S+: connection refused/ : /^$/);
			expect(result.output).toEqual(tree.reference());
		}
		const fresh = scratch('machine-fresh');
		const last = await link(fresh, redis.url, module, tree.objects);
		expect(last).toMatchObject({ exitCode: 0, stderr: '' });
		expect(last.output).toEqual(tree.reference());
		expect(counters(fresh)).toMatchObject({ hits: FILES, misses: 0, downloads: FILES, uploads: 0 });
	});

	it.each(['http', 'redis'])(
		'over %s, four machines uploading at once lose nothing: four fresh machines then get all their entries',
		async (kind) => {
			const module = `/src/at-once-${kind}`;
			const trees = Array.from({ length: 4 }, (_, i) => moduleTree(scratch('tree'), `${kind}-${i}`));
			const references = trees.map((t) => t.reference());
			const first = await Promise.all(trees.map((t) => link(scratch('machine'), url(kind), module, t.objects)));
			for (const [i, result] of first.entries()) {
				expect(result).toMatchObject({ exitCode: 0, stderr: '' });
				expect(result.output).toEqual(references[i]);
			}
			const fresh = trees.map(() => scratch('machine-fresh'));
			const second = await Promise.all(trees.map((t, i) => link(fresh[i], url(kind), module, t.objects)));
			for (const [i, result] of second.entries()) {
				expect(result).toMatchObject({ exitCode: 0, stderr: '' });
				expect(result.output).toEqual(references[i]);
				expect(counters(fresh[i])).toMatchObject({ hits: FILES, misses: 0, downloads: FILES, uploads: 0 });
			}
		},
	);

	describeIf(isRoot && Boolean(onPath('unshare')), 'root and unshare (a noatime mount)')('on a noatime mount', () => {
		it("no read shows, so a link's manifest lists the whole directory: a fresh machine gets more than it needs, never less", async () => {
			const module = '/src/noatime';
			const tree = moduleTree(scratch('tree'), 'noatime');
			const a = scratch('machine-a');
			// The root mounted noatime in a mount namespace of the link's own.
			const noatime = ['unshare', '-m', 'sh', '-c', 'mount --bind "$0" "$0" && mount -o remount,bind,noatime "$0" && exec "$@"', a];
			for (let k = 1; k <= 2; k++) {
				tree.commit(k);
				const result = await link(a, redis.url, module, tree.objects, {}, noatime);
				expect(result).toMatchObject({ exitCode: 0, stderr: '' });
				expect(result.output).toEqual(tree.reference());
			}
			// The second link hit some of the first's entries, and wrote the rest.
			const held = entriesBelow(a).length;
			expect(counters(a).hits).toBeGreaterThan(0);
			expect(held).toBeGreaterThan(FILES);
			const fresh = scratch('machine-fresh');
			const last = await link(fresh, redis.url, module, tree.objects);
			expect(last).toMatchObject({ exitCode: 0, stderr: '' });
			expect(last.output).toEqual(tree.reference());
			expect(counters(fresh)).toMatchObject({ hits: FILES, misses: 0, downloads: held });
		});
	});

	it.each(['http', 'redis'])(
		'over %s, a fresh machine behind a slow line keeps what came within its budget, uploads nothing the remote has, and its next link is all hits',
		async (kind) => {
			const module = `/src/throttled-${kind}`;
			const tree = moduleTree(scratch('tree'), `throttled-${kind}`, 20_000);
			const reference = tree.reference();
			const a = scratch('machine-a');
			expect(await link(a, url(kind), module, tree.objects)).toMatchObject({ exitCode: 0, stderr: '' });
			const total = counters(a).uploadBytes;
			// About half the entries' bytes a second, and a second to spend.
			const slow = await startThrottle(kind === 'http' ? nginx.port : redis.port, Math.round(total / 2), kind as 'http' | 'redis');
			servers.push(slow);
			const b = scratch('machine-b');
			const first = await link(b, slow.url, module, tree.objects, { LTOCACHE_REMOTE_TIMEOUT: '1s' });
			expect(first.exitCode).toBe(0);
			expect(first.output).toEqual(reference);
			expect(first.stderr).toMatch(
				/^ltocache: remote \S+: no answer within 1s \(\d+ of 9 entries came down\); linking with the local cache$/,
			);
			const once = counters(b);
			expect(once.downloads).toBeGreaterThan(0);
			expect(once.downloads).toBeLessThan(FILES);
			expect(once).toMatchObject({ hits: once.downloads, misses: FILES - once.downloads, uploads: 0 });
			// The slow line is used again at once (it answered), and has nothing more to carry.
			const second = await link(b, slow.url, module, tree.objects, { LTOCACHE_REMOTE_TIMEOUT: '1s' });
			expect(second).toMatchObject({ exitCode: 0, stderr: '' });
			expect(second.output).toEqual(reference);
			const twice = counters(b);
			expect(twice).toMatchObject({ links: 2, hits: once.hits + FILES, misses: once.misses, uploads: 0 });
		},
	);

	it('over redis bounded by maxmemory and allkeys-lru, evicted entries and manifests are linked and uploaded again, and the next fresh machine gets all', async () => {
		const bounded = await startRedis(scratch('redis-lru'));
		servers.push(bounded);
		const cli = (...args: string[]) => execa('redis-cli', ['-p', String(bounded.port), ...args]);
		const used = Number(/used_memory:(\d+)/.exec((await cli('INFO', 'memory')).stdout)?.[1]);
		await cli('CONFIG', 'SET', 'maxmemory', String(used + 400_000));
		await cli('CONFIG', 'SET', 'maxmemory-policy', 'allkeys-lru');
		const module = '/src/lru';
		const tree = moduleTree(scratch('tree'), 'lru');
		const a = scratch('machine-a');
		for (let k = 1; k <= 6; k++) {
			tree.commit(k);
			const result = await link(a, bounded.url, module, tree.objects);
			expect(result).toMatchObject({ exitCode: 0, stderr: '' });
			expect(result.output).toEqual(tree.reference());
		}
		// Others' keys, newer than all of the module's: most of what it had goes.
		for (let i = 0; i < 60; i++) await cli('SET', `other/${i}`, randomBytes(5000).toString('hex'));
		expect(Number(/evicted_keys:(\d+)/.exec((await cli('INFO', 'stats')).stdout)?.[1])).toBeGreaterThan(0);
		// Room again for what the next links put back: which keys Redis's approximate LRU (5 keys sampled, a
		// clock of a second) would take next is luck, on a loaded machine the module's own fresh uploads too.
		await cli('CONFIG', 'SET', 'maxmemory', '0');
		const reference = tree.reference();
		const b = scratch('machine-b');
		const second = await link(b, bounded.url, module, tree.objects);
		expect(second).toMatchObject({ exitCode: 0, stderr: '' });
		expect(second.output).toEqual(reference);
		const bCounts = counters(b);
		// What B had to link, it put back.
		expect(bCounts.misses).toBeGreaterThan(0);
		expect(bCounts.uploads).toBe(bCounts.misses);
		const c = scratch('machine-c');
		const third = await link(c, bounded.url, module, tree.objects);
		expect(third).toMatchObject({ exitCode: 0, stderr: '' });
		expect(third.output).toEqual(reference);
		expect(counters(c)).toMatchObject({ hits: FILES, misses: 0, downloads: FILES });
	});
});
