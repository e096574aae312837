// A remote in Redis: <namespace>/<entry> strings, and the manifests
// <namespace>/manifest-<inputs> and <namespace>/head, strings of lines
// `name sum size` (src/shared/remote/index.ts). Nothing expires by itself:
// a server bounded with maxmemory and maxmemory-policy allkeys-lru evicts
// what was least recently read, and what a link misses is linked and
// uploaded again.

import { uniqueTag } from '../root.js';
import { formatIndex, type Manifest, parseIndex, probeBytes, type Sum, type Upload } from './index.js';
import { RedisError, resp } from './resp.js';

export function redisStore(url: URL, signal: AbortSignal) {
	const conn = resp(url, signal);
	// AUTH and SELECT go first, and reads are sent right behind them without waiting (one round trip where there
	// were three: what a far server costs a link is round trips). A read's reply is used only once AUTH and SELECT
	// have succeeded; writes wait for them, so that a refused SELECT never lets a SET into database 0.
	const ready = (async () => {
		const user = decodeURIComponent(url.username);
		const pass = decodeURIComponent(url.password);
		const auth = url.password ? conn.command('AUTH', ...(user ? [user, pass] : [pass])) : undefined;
		const db = url.pathname.replace(/^\//, '');
		const select = db ? conn.command('SELECT', db) : undefined;
		select?.catch(() => {});
		await auth?.catch((error) => {
			// The server's refusal, never its words (which may echo the user); a connection that failed says why.
			throw error instanceof RedisError ? new Error('authentication refused') : error;
		});
		await select;
	})();
	ready.catch(() => {});
	const read = (...args: (string | Buffer)[]) => {
		const reply = conn.command(...args);
		reply.catch(() => {}); // an error before ready settles is ready's to tell
		return ready.then(() => reply);
	};
	const run = async (...args: (string | Buffer)[]) => {
		await ready;
		return conn.command(...args);
	};
	const key = (ns: string, name: string) => `${ns}/${name}`;
	return {
		async manifest(ns: string, name: string | undefined): Promise<Manifest | undefined> {
			// Both in one round trip: the head is one link's lines, and a new commit's link wants it.
			const reply = await read('MGET', key(ns, name === undefined ? 'head' : `manifest-${name}`), key(ns, 'head'));
			if (!Array.isArray(reply)) throw new Error('MGET: not a Redis array');
			const [exact, head] = reply;
			if (name !== undefined && Buffer.isBuffer(exact)) return { entries: parseIndex(exact.toString('latin1')), exact: true };
			return Buffer.isBuffer(head) ? { entries: parseIndex(head.toString('latin1')), exact: false } : undefined;
		},
		async fetch(ns: string, wanted: [string, Sum][], take: (name: string, data: Buffer) => void) {
			// MGET in batches of about 64 KiB (the manifest knows the sizes), all sent at once: one round trip
			// for the lot, where a GET an entry cost a socket write each (~30 ms for 500 entries). A batch is
			// taken whole or not at all, so over a slow line a small one keeps what came within the budget.
			const batches: [string, Sum][][] = [[]];
			let bytes = 0;
			for (const entry of wanted) {
				if (batches[batches.length - 1].length >= 64 || bytes >= 64 * 1024) {
					batches.push([]);
					bytes = 0;
				}
				batches[batches.length - 1].push(entry);
				bytes += entry[1].size;
			}
			await Promise.all(
				batches.map(async (batch) => {
					if (batch.length === 0) return;
					const reply = await read('MGET', ...batch.map(([name]) => key(ns, name)));
					if (!Array.isArray(reply)) throw new Error('MGET: not a Redis array');
					for (const [i, [name]] of batch.entries()) if (Buffer.isBuffer(reply[i])) take(name, reply[i] as Buffer);
				}),
			);
		},
		async present(ns: string, listed: [string, Sum][]) {
			// STRLEN, all sent at once: 0 for a key that is gone (evicted), less than listed for one cut short. Refused
			// (an ACL user without it): cannot tell, so there, as before anything was asked.
			const length = (name: string) =>
				read('STRLEN', key(ns, name)).catch((error) => {
					if (error instanceof RedisError) return undefined;
					throw error;
				});
			const lengths = await Promise.all(listed.map(([name]) => length(name)));
			return new Set(listed.filter(([, r], i) => lengths[i] === undefined || lengths[i] === r.size).map(([name]) => name));
		},
		async upload(ns: string, entries: Upload[]) {
			// Sent at once, as MGET fetches them: the replies come back in order on the one connection.
			await Promise.all(entries.map((e) => run('SET', key(ns, e.name), e.data)));
			return new Map<string, Sum>(entries.map((e) => [e.name, { sum: e.sum, size: e.data.length }]));
		},
		async publish(ns: string, name: string | undefined, entries: Map<string, Sum>) {
			const text = Buffer.from(formatIndex(entries), 'latin1');
			await run('MSET', ...(name === undefined ? [] : [key(ns, `manifest-${name}`), text]), key(ns, 'head'), text);
		},
		async probe() {
			const probe = key('ltocache-probe', `probe-${uniqueTag()}`);
			const data = probeBytes();
			await run('SET', probe, data);
			const back = await run('GET', probe);
			await run('DEL', probe);
			if (!Buffer.isBuffer(back) || !back.equals(data))
				throw new Error(`took a write and gave back ${Buffer.isBuffer(back) ? 'other bytes' : 'nothing'}: it stores nothing`);
		},
		close: conn.close,
	};
}
