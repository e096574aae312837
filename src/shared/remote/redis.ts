// A remote in Redis: <namespace>/<entry> strings, and the hash
// <namespace>/index of name -> `sum size` (src/shared/remote/index.ts).
import { addIndexLine, probeBytes, type Sum, type Upload } from './index.js';
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
		async index(ns: string) {
			const reply = await read('HGETALL', key(ns, 'index'));
			const index = new Map<string, Sum>();
			if (!Array.isArray(reply)) return index;
			for (let i = 0; i + 1 < reply.length; i += 2) addIndexLine(index, `${String(reply[i])} ${String(reply[i + 1])}`);
			return index;
		},
		async fetch(ns: string, wanted: [string, Sum][], take: (name: string, data: Buffer) => void) {
			// MGET in batches of about a megabyte (the index knows the sizes), all sent at once: one round
			// trip for the lot, where a GET an entry cost a socket write each (~30 ms for 500 entries).
			const batches: [string, Sum][][] = [[]];
			let bytes = 0;
			for (const entry of wanted) {
				if (batches[batches.length - 1].length >= 256 || bytes >= 1 << 20) {
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
		async upload(ns: string, entries: Upload[]) {
			if (entries.length === 0) return;
			// Sent at once, as MGET fetches them: the replies come back in order on the one connection.
			await Promise.all(entries.map((e) => run('SET', key(ns, e.name), e.data)));
			await run('HSET', key(ns, 'index'), ...entries.flatMap((e) => [e.name, `${e.sum} ${e.data.length}`]));
		},
		async probe() {
			const probe = key('ltocache-probe', `probe-${process.pid}`);
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
