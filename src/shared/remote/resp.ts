// RESP2, the protocol Redis speaks, over node:net (node:tls for rediss):
// a small client rather than node-redis (@redis/client), the maintained
// one: loading that takes ~200 ms (measured on this 2-core machine, Node
// 20), three times a whole warm 12-object link through the shim, and the
// shim needs seven commands.
import { isIP, connect as tcp } from 'node:net';

export type Reply = string | number | Buffer | null | Reply[] | Error;

/** An error reply: the server's answer, not a failure of the connection. */
export class RedisError extends Error {}

/**
 * The largest reply read: an MGET batch is about 64 KiB plus one entry
 * (at most 64 MiB, src/shared/remote/index.ts); a manifest of 20,000
 * entries is one string of ~2.6 MB.
 */
export const REPLY_LIMITS = { bytes: 80 * 1024 ** 2, items: 100_000 };

/**
 * A RESP2 reply reader fed a connection's chunks in order, handing each
 * whole reply to deliver. It resumes where the last chunk left off: what it
 * has read is dropped, an unfinished array waits on a stack, and a bulk
 * string's chunks are joined once it has them all. Parsing from the start of
 * the reply at every chunk cost a 500-entry MGET ~10 ms of copies and
 * garbage collection. Throws on bytes that are not RESP2.
 */
export function replyReader(deliver: (reply: Reply) => void, limits = REPLY_LIMITS): (chunk: Buffer) => void {
	let buffer: Buffer = Buffer.alloc(0);
	/** The bytes and the array items of the reply being read so far: a hostile server's reply is refused past the limits, never buffered. */
	let size = 0;
	let items = 0;
	const tooLarge = () => new Error(`a Redis reply of more than ${limits.bytes} bytes or ${limits.items} items`);
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
					reply = new RedisError(line);
					break;
				case 0x3a: // :
					if (!/^-?\d+$/.test(line)) throw new Error('not a Redis reply');
					reply = Number(line); // beyond 2^53 inexact: none of the commands here counts that far
					break;
				case 0x24: {
					// $
					const length = count(line);
					if (size + next - at + length > limits.bytes) throw tooLarge();
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
					items += Math.max(length, 0);
					if (items > limits.items) throw tooLarge();
					if (length > 0) {
						open.push({ items: [], left: length });
						size += next - at;
						at = next;
						continue;
					}
					reply = length < 0 ? null : [];
					break;
				}
				default:
					throw new Error('not a Redis reply');
			}
			size += next - at;
			at = next;
			// A finished reply fills its array; a filled array is itself a finished reply.
			for (;;) {
				const top = open[open.length - 1];
				if (!top) {
					size = 0;
					items = 0;
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
		// A line without its end: no reply of the commands here has one this long.
		if (need === 0 && buffer.length > 64 * 1024) throw new Error('not a Redis reply');
	};
}

/** A RESP2 connection: commands go out in order, replies come back in order. */
export function resp(url: URL, signal: AbortSignal) {
	const port = Number(url.port || 6379);
	// node:tls only for rediss: loading it costs a plain link ~10 ms.
	const tls = url.protocol === 'rediss:' ? (process.getBuiltinModule?.('node:tls') as typeof import('node:tls') | undefined) : undefined;
	if (url.protocol === 'rediss:' && !tls) throw new Error('rediss:// needs Node.js 20.16 or later');
	const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
	// SNI takes a host name only: Node warns (DEP0123) on every connection given an address.
	const socket = tls ? tls.connect({ host, port, servername: isIP(host) ? undefined : host }) : tcp({ host, port });
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
