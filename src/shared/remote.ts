// The remote stores a cache can be shared through (LTOCACHE_REMOTE): an HTTP
// server that serves plain GET and PUT of <base>/<name> (nginx's WebDAV
// module, ccache's HTTP servers, an S3-style gateway), or Redis. Each holds,
// per namespace (see src/shim/remote.ts), the cache entries and an index of
// them: entry name -> sha256 and size, recorded by the machine that uploaded
// the entry, so a downloaded entry is checked before lld may read it.
//
// HTTP: <base>/<namespace>/pack-<sha256> (the entries one link uploaded, end
// to end) and <base>/<namespace>/index (one line an entry: name, sha256,
// size, pack, offset). A machine downloads a pack's wanted entries with one
// ranged GET, where one GET an entry cost ~0.4 ms of Node's HTTP client each
// (500 entries: 3x the local-warm link). Lines without a pack name an entry
// stored alone, <base>/<namespace>/<entry>. Updating the index is read,
// merge, write: two machines writing at once may lose each other's lines,
// which costs misses, never a wrong entry.
// Redis: <namespace>/<entry> strings and the hash <namespace>/index.
//
// Redis is spoken here with a small RESP2 client over node:net rather than
// with node-redis (@redis/client), the maintained client: loading it takes
// ~200 ms (measured on this 2-core machine, Node 20), three times a whole
// warm 12-object link through the shim, and the shim needs seven commands.
import { createHash } from 'node:crypto';
import { connect as tcp } from 'node:net';

/** What the index holds of an entry: its sha256 and size at upload, and over HTTP the pack it is in, at which offset. */
export type Sum = { sum: string; size: number; pack?: string; offset?: number };

/** An entry to upload, with its sha256. */
export type Upload = { name: string; data: Buffer; sum: string };

export interface Store {
	/** The entries the remote holds for a namespace. */
	index(ns: string): Promise<Map<string, Sum>>;
	/** Fetch the wanted entries, handing take each one the remote has, as it arrives (unchecked: the caller verifies). */
	fetch(ns: string, wanted: [string, Sum][], take: (name: string, data: Buffer) => void): Promise<void>;
	/** Store the entries, then list them in the namespace's index. */
	upload(ns: string, entries: Upload[]): Promise<void>;
	/** Write and remove a probe (doctor: can this client write?). */
	probe(): Promise<void>;
	close(): void;
}

export const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** Requests in flight at once. */
const PARALLEL = 16;

/** Run fn over items, PARALLEL at a time; the first error stops the rest. */
async function pool<T>(items: T[], fn: (item: T) => Promise<void>): Promise<void> {
	let next = 0;
	const worker = async () => {
		while (next < items.length) await fn(items[next++]);
	};
	await Promise.all(Array.from({ length: Math.min(PARALLEL, items.length) }, worker));
}

/**
 * work, or once signal aborts a rejection saying that no answer came within
 * ms: a stalled server may never settle work, whatever the store does with
 * the signal.
 */
export function withinBudget<T>(work: Promise<T>, signal: AbortSignal, ms: number): Promise<T> {
	return Promise.race([
		work,
		new Promise<never>((_, reject) => {
			const stop = () => reject(new Error(`no answer within ${ms / 1000}s`));
			if (signal.aborted) stop();
			else signal.addEventListener('abort', stop, { once: true });
		}),
	]);
}

/** A URL as it may be shown: never its user or password. */
export function shownUrl(url: URL): string {
	return `${url.protocol}//${url.host}${url.pathname}`;
}

/** The store a URL names; throws on a URL that is neither http(s) nor redis(s). */
export function openStore(url: URL, signal: AbortSignal): Store {
	if (url.protocol === 'http:' || url.protocol === 'https:') return httpStore(url, signal);
	if (url.protocol === 'redis:' || url.protocol === 'rediss:') return redisStore(url, signal);
	throw new Error(`${url.protocol} is not a remote ltocache knows (http, https, redis, rediss)`);
}

/** Index lines: `name sum size [pack offset]`, one an entry; a line that does not parse is no entry. */
export function parseIndex(text: string): Map<string, Sum> {
	const index = new Map<string, Sum>();
	for (const line of text.split('\n')) addIndexLine(index, line);
	return index;
}

const INDEX_LINE = /^(llvmcache-[0-9A-Fa-f]+) ([0-9a-f]{64}) (\d+)(?: (pack-[0-9a-f]{64}) (\d+))?$/;

function addIndexLine(index: Map<string, Sum>, line: string): void {
	const m = INDEX_LINE.exec(line.trim());
	if (!m) return;
	const sum: Sum = { sum: m[2], size: Number(m[3]) };
	if (m[4]) Object.assign(sum, { pack: m[4], offset: Number(m[5]) });
	index.set(m[1], sum);
}

const formatIndex = (index: Map<string, Sum>) =>
	[...index].map(([name, r]) => `${name} ${r.sum} ${r.size}${r.pack ? ` ${r.pack} ${r.offset}` : ''}\n`).join('');

/** Whether a name may be used as an entry's file name and a remote key. */
export const isEntryName = (name: string) => /^llvmcache-[0-9A-Fa-f]+$/.test(name);

function httpStore(base: URL, signal: AbortSignal): Store {
	const root = base.href.endsWith('/') ? base.href : `${base.href}/`;
	const auth = base.username
		? `Basic ${Buffer.from(`${decodeURIComponent(base.username)}:${decodeURIComponent(base.password)}`).toString('base64')}`
		: undefined;
	const at = (ns: string, name: string) => {
		const url = new URL(`${ns.split('/').map(encodeURIComponent).join('/')}/${encodeURIComponent(name)}`, root);
		url.username = '';
		url.password = '';
		return url;
	};
	type Response = { status: number; body: Buffer; headers: Record<string, string | string[] | undefined> };
	const request = async (method: string, url: URL, body?: Buffer, headers: Record<string, string> = {}): Promise<Response> => {
		// getBuiltinModule (Node >= 20.16): import() would start the ES module loader on the link path.
		const name = url.protocol === 'https:' ? 'node:https' : 'node:http';
		const { request: send } = (process.getBuiltinModule?.(name) ?? (await import(name))) as typeof import('node:http');
		return new Promise((resolve, reject) => {
			const req = send(
				url,
				{
					method,
					signal,
					headers: { ...headers, ...(auth ? { authorization: auth } : {}), ...(body ? { 'content-length': body.length } : {}) },
				},
				(res) => {
					const chunks: Buffer[] = [];
					res.on('data', (c: Buffer) => chunks.push(c));
					res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), headers: res.headers }));
					res.on('error', reject);
				},
			);
			req.on('error', reject);
			req.end(body);
		});
	};
	const check = (what: string, status: number, ok: (s: number) => boolean) => {
		if (!ok(status)) throw new Error(`${what}: HTTP ${status}`);
	};
	return {
		async index(ns) {
			const res = await request('GET', at(ns, 'index'));
			if (res.status === 404) return new Map();
			check('index', res.status, (s) => s === 200);
			return parseIndex(res.body.toString('latin1'));
		},
		async fetch(ns, wanted, take) {
			const packs = new Map<string, [string, Sum][]>();
			const alone: [string, Sum][][] = [];
			for (const entry of wanted) {
				const pack = entry[1].pack;
				if (pack === undefined) alone.push([entry]);
				else if (packs.has(pack)) packs.get(pack)?.push(entry);
				else packs.set(pack, [entry]);
			}
			await pool([...packs.values(), ...alone], async (entries) => {
				const pack = entries[0][1].pack;
				if (pack === undefined) {
					const [name] = entries[0];
					const res = await request('GET', at(ns, name));
					if (res.status === 404) return;
					check(name, res.status, (s) => s === 200);
					return take(name, res.body);
				}
				// One range from the first wanted entry to the end of the last; a server without ranges sends the whole pack.
				const from = Math.min(...entries.map(([, r]) => r.offset ?? 0));
				const to = Math.max(...entries.map(([, r]) => (r.offset ?? 0) + r.size));
				const res = await request('GET', at(ns, pack), undefined, { range: `bytes=${from}-${to - 1}` });
				if (res.status === 404 || res.status === 416) return;
				check(pack, res.status, (s) => s === 200 || s === 206);
				const range = /^bytes (\d+)-/.exec(String(res.headers['content-range'] ?? ''));
				if (res.status === 206 && !range) return;
				const base = res.status === 206 ? Number(range?.[1]) : 0;
				for (const [name, r] of entries) {
					const start = (r.offset ?? 0) - base;
					if (start >= 0) take(name, res.body.subarray(start, start + r.size));
				}
			});
		},
		async upload(ns, entries) {
			// In name order: machines uploading the same entries write the same pack.
			const sorted = [...entries].sort((a, b) => (a.name < b.name ? -1 : 1));
			const data = Buffer.concat(sorted.map((e) => e.data));
			const pack = `pack-${sha256(data)}`;
			const put = await request('PUT', at(ns, pack), data);
			check(pack, put.status, (s) => s >= 200 && s < 300);
			const merged = await this.index(ns);
			let offset = 0;
			for (const e of sorted) {
				merged.set(e.name, { sum: e.sum, size: e.data.length, pack, offset });
				offset += e.data.length;
			}
			const res = await request('PUT', at(ns, 'index'), Buffer.from(formatIndex(merged), 'latin1'));
			check('index', res.status, (s) => s >= 200 && s < 300);
		},
		async probe() {
			const url = at('ltocache-probe', `probe-${process.pid}`);
			check('probe', (await request('PUT', url, Buffer.from('probe'))).status, (s) => s >= 200 && s < 300);
			await request('DELETE', url);
		},
		close() {},
	};
}

export type Reply = string | number | Buffer | null | Reply[] | Error;

/**
 * A RESP2 reply reader fed a connection's chunks in order, handing each
 * whole reply to deliver. It resumes where the last chunk left off: what it
 * has read is dropped, an unfinished array waits on a stack, and a bulk
 * string's chunks are joined once it has them all. Parsing from the start of
 * the reply at every chunk cost a 500-entry MGET ~10 ms of copies and
 * garbage collection. Throws on bytes that are not RESP2.
 */
export function replyReader(deliver: (reply: Reply) => void): (chunk: Buffer) => void {
	let buffer: Buffer = Buffer.alloc(0);
	let pending: Buffer[] = [];
	let pendingBytes = 0;
	/** How many bytes the buffer must hold before reading can go on (a bulk string's header, body and CRLF). */
	let need = 0;
	const open: { items: Reply[]; left: number }[] = [];
	const count = (line: string) => {
		const n = Number(line);
		if (line === '' || !Number.isSafeInteger(n)) throw new Error('not a Redis reply');
		return n;
	};
	return (chunk) => {
		pending.push(chunk);
		pendingBytes += chunk.length;
		if (buffer.length + pendingBytes < need) return;
		buffer = buffer.length || pending.length > 1 ? Buffer.concat([buffer, ...pending]) : chunk;
		pending = [];
		pendingBytes = 0;
		need = 0;
		let at = 0;
		read: for (;;) {
			const eol = buffer.indexOf('\r\n', at);
			if (eol < 0) break;
			const line = buffer.toString('latin1', at + 1, eol);
			let next = eol + 2;
			let reply: Reply;
			switch (buffer[at]) {
				case 0x2b: // +
					reply = line;
					break;
				case 0x2d: // -
					reply = new Error(line);
					break;
				case 0x3a: // :
					if (!/^-?\d+$/.test(line)) throw new Error('not a Redis reply');
					reply = Number(line); // beyond 2^53 inexact: none of the commands here counts that far
					break;
				case 0x24: {
					// $
					const length = count(line);
					if (length >= 0 && buffer.length < next + length + 2) {
						need = next + length + 2 - at;
						break read;
					}
					reply = length < 0 ? null : buffer.subarray(next, next + length);
					if (length >= 0) next += length + 2;
					break;
				}
				case 0x2a: {
					// *
					const length = count(line);
					if (length > 0) {
						open.push({ items: [], left: length });
						at = next;
						continue;
					}
					reply = length < 0 ? null : [];
					break;
				}
				default:
					throw new Error('not a Redis reply');
			}
			at = next;
			// A finished reply fills its array; a filled array is itself a finished reply.
			for (;;) {
				const top = open[open.length - 1];
				if (!top) {
					deliver(reply);
					break;
				}
				top.items.push(reply);
				if (--top.left > 0) break;
				open.pop();
				reply = top.items;
			}
		}
		buffer = buffer.subarray(at);
	};
}

/** A RESP2 connection: commands go out in order, replies come back in order. */
function resp(url: URL, signal: AbortSignal) {
	const port = Number(url.port || 6379);
	// node:tls only for rediss: loading it costs a plain link ~10 ms.
	const tls = url.protocol === 'rediss:' ? (process.getBuiltinModule?.('node:tls') as typeof import('node:tls') | undefined) : undefined;
	if (url.protocol === 'rediss:' && !tls) throw new Error('rediss:// needs Node.js 20.16 or later');
	const socket = tls ? tls.connect({ host: url.hostname, port, servername: url.hostname }) : tcp({ host: url.hostname, port });
	socket.setNoDelay(true);
	const waiting: { resolve: (r: Reply) => void; reject: (e: Error) => void }[] = [];
	let failed: Error | undefined;
	const fail = (error: Error) => {
		failed ??= error;
		for (const w of waiting.splice(0)) w.reject(failed);
		socket.destroy();
	};
	const onAbort = () => fail(new Error('timed out'));
	signal.addEventListener('abort', onAbort, { once: true });
	socket.on('error', fail);
	socket.on('close', () => fail(new Error('connection closed')));
	const feed = replyReader((reply) => {
		const w = waiting.shift();
		if (!w) throw new Error('a reply nobody asked for');
		if (reply instanceof Error) w.reject(reply);
		else w.resolve(reply);
	});
	socket.on('data', (chunk: Buffer) => {
		try {
			feed(chunk);
		} catch (error) {
			fail(error as Error);
		}
	});

	const command = (...args: (string | Buffer)[]): Promise<Reply> => {
		if (failed) return Promise.reject(failed);
		const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
		for (const arg of args) {
			const bytes = typeof arg === 'string' ? Buffer.from(arg, 'utf8') : arg;
			parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'));
		}
		socket.write(Buffer.concat(parts));
		return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
	};
	const close = () => {
		signal.removeEventListener('abort', onAbort);
		failed ??= new Error('closed');
		socket.destroy();
	};
	return { command, close };
}

function redisStore(url: URL, signal: AbortSignal): Store {
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
		await auth?.catch(() => {
			throw new Error('authentication refused'); // never the server's words, which may echo the user
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
		async index(ns) {
			const reply = await read('HGETALL', key(ns, 'index'));
			const index = new Map<string, Sum>();
			if (!Array.isArray(reply)) return index;
			for (let i = 0; i + 1 < reply.length; i += 2) addIndexLine(index, `${String(reply[i])} ${String(reply[i + 1])}`);
			return index;
		},
		async fetch(ns, wanted, take) {
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
		async upload(ns, entries) {
			if (entries.length === 0) return;
			// Sent at once, as MGET fetches them: the replies come back in order on the one connection.
			await Promise.all(entries.map((e) => run('SET', key(ns, e.name), e.data)));
			await run('HSET', key(ns, 'index'), ...entries.flatMap((e) => [e.name, `${e.sum} ${e.data.length}`]));
		},
		async probe() {
			const probe = key('ltocache-probe', `probe-${process.pid}`);
			await run('SET', probe, 'probe');
			await run('DEL', probe);
		},
		close: conn.close,
	};
}
