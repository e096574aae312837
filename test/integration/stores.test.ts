// The remote stores (src/shared/remote/) at a size the link tests do not
// reach, against real nginx and redis-server: hundreds of entries of mixed
// sizes, uploaded in several batches (over HTTP, several packs), fetched
// whole and in part. Every entry must come back with exactly its bytes, over
// MGET batches split by count and by size, and over ranged GETs of packs.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type Sum, sha256, type Upload } from '../../src/shared/remote/index.js';
import { openStore, type Store } from '../../src/shared/remote/store.js';
import { type Server, startNginx, startRedis } from '../helpers/servers.js';
import { describeIf, onPath, scratchRoot } from '../helpers/tools.js';

const scratch = scratchRoot();
const servers: Server[] = [];
afterAll(async () => {
	for (const s of servers) await s.stop();
});

/** n entries: most small, every 50th of 300 KiB (so the MGET batches split by size as well as by count). */
function entries(n: number, seed: number): Upload[] {
	return Array.from({ length: n }, (_, i) => {
		const data = randomBytes(i % 50 === 7 ? 300 * 1024 : 1 + ((i * 7919 + seed) % 6000));
		const name = `llvmcache-${sha256(Buffer.from(`${seed}-${i}`))
			.slice(0, 40)
			.toUpperCase()}`;
		return { name, data, sum: sha256(data) };
	});
}

describeIf(Boolean(onPath('nginx') && onPath('redis-server')), 'nginx and redis-server (Debian: nginx-light redis-server)')(
	'the remote stores',
	() => {
		const urls: Record<string, string> = {};
		beforeAll(async () => {
			const nginx = await startNginx(scratch('nginx'));
			const redis = await startRedis(scratch('redis'));
			servers.push(nginx, redis);
			urls.http = nginx.url;
			urls.redis = redis.url;
		});

		it.each(['http', 'redis'])(
			'over %s, hand back hundreds of entries of mixed sizes whole, from several uploads, whole or in part',
			async (kind) => {
				const store: Store = openStore(new URL(urls[kind]), AbortSignal.timeout(60_000));
				const ns = `ltocache/2/test/stores-${kind}`;
				try {
					expect(await store.manifest(ns, 'a'.repeat(64))).toBeUndefined();
					// And one of 8 MiB, which arrives in many pieces.
					const large = randomBytes(8 * 1024 * 1024);
					const batches = [entries(400, 1), entries(250, 2), entries(3, 3), [{ name: 'llvmcache-B16', data: large, sum: sha256(large) }]];
					const where = new Map<string, Sum>();
					for (const batch of batches) for (const [name, r] of await store.upload(ns, batch)) where.set(name, r);
					const all = new Map(batches.flat().map((e) => [e.name, e]));
					await store.publish(ns, 'a'.repeat(64), where);
					const manifest = await store.manifest(ns, 'a'.repeat(64));
					expect(manifest?.exact).toBe(true);
					const index = manifest?.entries ?? new Map<string, Sum>();
					// Another link's inputs: the head, the same lines.
					expect(await store.manifest(ns, 'b'.repeat(64))).toEqual({ entries: index, exact: false });
					expect(index.size).toBe(all.size);
					for (const [name, r] of index) expect([r.sum, r.size]).toEqual([all.get(name)?.sum, all.get(name)?.data.length]);

					const fetch = async (wanted: string[]) => {
						const got = new Map<string, Buffer>();
						await store.fetch(
							ns,
							wanted.map((name) => [name, index.get(name)!]),
							(name, data) => {
								expect(got.has(name), name).toBe(false);
								got.set(name, Buffer.from(data));
							},
						);
						return got;
					};
					// Every third entry: over HTTP, ranges that start inside packs and skip what is not wanted.
					const some = [...all.keys()].filter((_, i) => i % 3 === 1);
					const part = await fetch(some);
					expect([...part.keys()].sort()).toEqual([...some].sort());
					for (const [name, data] of part) expect(data.equals(all.get(name)!.data), name).toBe(true);
					const whole = await fetch([...all.keys()]);
					expect(whole.size).toBe(all.size);
					for (const [name, data] of whole) expect(data.equals(all.get(name)!.data), name).toBe(true);
					// An entry the remote does not have (as if pruned there) is simply not handed back.
					const gone: string[] = [];
					await store.fetch(ns, [['llvmcache-0000', { sum: 'a'.repeat(64), size: 5 }]], (name) => gone.push(name));
					expect(gone).toEqual([]);
				} finally {
					store.close();
				}
			},
		);
	},
);
