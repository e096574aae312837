// A remote over HTTP: any server that serves plain GET and PUT of
// <base>/<name> (nginx's WebDAV module, ccache's HTTP servers, an S3-style
// gateway).
//
// <base>/<namespace>/pack-<sha256> holds the entries one link uploaded, end
// to end; <base>/<namespace>/manifest-<inputs> lists the entries one link
// used, each with its pack and offset, and <base>/<namespace>/head is the
// last manifest written (src/shared/remote/index.ts). A machine downloads a
// pack's wanted entries with one ranged GET, where one GET an entry cost
// ~0.4 ms of Node's HTTP client each (500 entries: 3x the local-warm link).
// Lines without a pack name an entry stored alone, <base>/<namespace>/<entry>.
// Every object is written whole with one PUT and never read back to be
// merged: a server needs no If-Match (nginx's WebDAV ignores it).
import { uniqueTag } from '../root.js';
import { formatIndex, MAX_INDEX_BYTES, type Manifest, parseIndex, probeBytes, type Sum, sha256, type Upload } from './index.js';

/** Requests in flight at once. */
const PARALLEL = 16;
/** Bytes of responses in flight at once (one larger entry may go alone): a link's memory stays bounded whatever the index says. */
const IN_FLIGHT_BYTES = 48 * 1024 ** 2;
/** The longest ranged GET: a pack's wanted entries go in ranges of at most this many bytes. */
const RANGE_BYTES = 8 * 1024 ** 2;

/** Run fn over items, at most PARALLEL and IN_FLIGHT_BYTES (by weight) at a time; the first error stops the rest. */
function pool<T>(items: T[], weight: (item: T) => number, fn: (item: T) => Promise<void>): Promise<void> {
	let next = 0;
	let running = 0;
	let bytes = 0;
	let failed = false;
	return new Promise((resolve, reject) => {
		const pump = () => {
			if (failed) return;
			if (next >= items.length && running === 0) return resolve();
			while (next < items.length && running < PARALLEL && (running === 0 || bytes + weight(items[next]) <= IN_FLIGHT_BYTES)) {
				const item = items[next++];
				const w = weight(item);
				running++;
				bytes += w;
				fn(item).then(
					() => {
						running--;
						bytes -= w;
						pump();
					},
					(error) => {
						failed = true;
						reject(error);
					},
				);
			}
		};
		pump();
	});
}

/**
 * A sink for a pack's bytes from offset base on: each wanted entry (by
 * offset) is copied as it arrives into a buffer of its size and handed to
 * take once whole, so what arrived within the budget is kept, and no more
 * than the entry arriving is held (a response's chunks joined would be
 * twice that).
 */
function entriesOf(entries: [string, Sum][], base: number, take: (name: string, data: Buffer) => void): (chunk: Buffer) => void {
	let next = 0;
	let at = base;
	let current: Buffer | undefined;
	return (chunk) => {
		let pos = 0;
		while (next < entries.length) {
			const [name, r] = entries[next];
			const start = r.offset ?? 0;
			const end = start + r.size;
			const here = at + pos;
			if (!current && start < here) {
				next++; // begins before what the server sent: never handed on
				continue;
			}
			if (here < start) {
				pos += Math.min(start - here, chunk.length - pos);
				if (pos === chunk.length) break;
				continue;
			}
			current ??= Buffer.allocUnsafe(r.size);
			const n = Math.min(end - here, chunk.length - pos);
			chunk.copy(current, here - start, pos, pos + n);
			pos += n;
			if (here + n < end) break;
			take(name, current);
			current = undefined;
			next++;
		}
		at += chunk.length;
	};
}

/** A pack's wanted entries, by offset, in runs that span at most RANGE_BYTES each (an entry larger goes alone). */
function ranges(entries: [string, Sum][]): [string, Sum][][] {
	const sorted = [...entries].sort((x, y) => (x[1].offset ?? 0) - (y[1].offset ?? 0));
	const runs: [string, Sum][][] = [];
	let start = 0;
	for (const entry of sorted) {
		const run = runs[runs.length - 1];
		const end = (entry[1].offset ?? 0) + entry[1].size;
		if (run && end - start <= RANGE_BYTES) run.push(entry);
		else {
			runs.push([entry]);
			start = entry[1].offset ?? 0;
		}
	}
	return runs;
}

export function httpStore(base: URL, signal: AbortSignal) {
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
	/** The requests not yet over: close() ends them, so that none writes a download once the phase is over (lld running). */
	const open = new Set<import('node:http').ClientRequest>();
	/**
	 * One request, its response body read up to limit bytes: beyond, either
	 * cut there (a server that sends a whole pack for a range: only its start
	 * is wanted) or, for what must fit (an index), refused.
	 */
	const request = async (
		method: string,
		url: URL,
		body?: Buffer,
		headers: Record<string, string> = {},
		limit = MAX_INDEX_BYTES,
		cut = false,
		stream?: (status: number, headers: Response['headers']) => ((chunk: Buffer) => void) | undefined,
	): Promise<Response> => {
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
					const sink = stream?.(res.statusCode ?? 0, res.headers);
					let got = 0;
					const stop = () => {
						res.destroy();
						req.destroy();
					};
					// What the sink throws (a download that cannot be written: a full disk, a quota) fails this request,
					// where thrown out of a 'data' listener it would be no one's to catch.
					const keep = (c: Buffer) => {
						try {
							if (sink) sink(c);
							else chunks.push(c);
							return true;
						} catch (error) {
							stop();
							reject(error);
							return false;
						}
					};
					const done = () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), headers: res.headers });
					res.on('data', (c: Buffer) => {
						if (got + c.length <= limit) {
							got += c.length;
							keep(c);
							return;
						}
						stop();
						if (!cut) return reject(new Error(`${url.pathname.split('/').pop()}: a response of more than ${limit} bytes`));
						if (!keep(c.subarray(0, limit - got))) return;
						got = limit;
						done();
					});
					res.on('end', done);
					res.on('error', reject);
				},
			);
			open.add(req);
			req.on('close', () => open.delete(req));
			req.on('error', reject);
			req.end(body);
		});
	};
	const check = (what: string, status: number, ok: (s: number) => boolean) => {
		if (ok(status)) return;
		throw new Error(status === 401 || status === 403 ? `${what}: authentication refused (HTTP ${status})` : `${what}: HTTP ${status}`);
	};
	const get = async (ns: string, name: string): Promise<Map<string, Sum> | undefined> => {
		const res = await request('GET', at(ns, name));
		if (res.status === 404) return undefined;
		check(name.startsWith('manifest-') ? 'manifest' : name, res.status, (s) => s === 200);
		return parseIndex(res.body.toString('latin1'));
	};
	const put = async (ns: string, name: string, data: Buffer) => {
		const res = await request('PUT', at(ns, name), data);
		check(name.startsWith('manifest-') ? 'manifest' : name, res.status, (s) => s >= 200 && s < 300);
	};
	return {
		async manifest(ns: string, name: string | undefined): Promise<Manifest | undefined> {
			// One after the other: the head costs a round trip only where no link with these inputs was shared.
			const exact = name === undefined ? undefined : await get(ns, `manifest-${name}`);
			if (exact) return { entries: exact, exact: true };
			const head = await get(ns, 'head');
			return head && { entries: head, exact: false };
		},
		async fetch(ns: string, wanted: [string, Sum][], take: (name: string, data: Buffer) => void) {
			const packs = new Map<string, [string, Sum][]>();
			const alone: [string, Sum][][] = [];
			for (const entry of wanted) {
				const pack = entry[1].pack;
				if (pack === undefined) alone.push([entry]);
				else if (packs.has(pack)) packs.get(pack)?.push(entry);
				else packs.set(pack, [entry]);
			}
			const runs = [...[...packs.values()].flatMap(ranges), ...alone];
			const span = (entries: [string, Sum][]) =>
				Math.max(...entries.map(([, r]) => (r.offset ?? 0) + r.size)) - Math.min(...entries.map(([, r]) => r.offset ?? 0));
			await pool(runs, span, async (entries) => {
				const pack = entries[0][1].pack;
				if (pack === undefined) {
					const [name, r] = entries[0];
					const one: [string, Sum][] = [[name, { ...r, offset: 0 }]];
					const res = await request('GET', at(ns, name), undefined, {}, r.size, true, (status) =>
						status === 200 ? entriesOf(one, 0, take) : undefined,
					);
					if (res.status === 404) return;
					return check(name, res.status, (s) => s === 200);
				}
				// One range from the first wanted entry to the end of the last; a server without ranges sends the whole pack.
				// Each entry is handed on as soon as its last byte is in: what arrived within the budget is kept.
				const from = entries[0][1].offset ?? 0;
				const to = Math.max(...entries.map(([, r]) => (r.offset ?? 0) + r.size));
				const res = await request('GET', at(ns, pack), undefined, { range: `bytes=${from}-${to - 1}` }, to, true, (status, headers) => {
					const range = /^bytes (\d+)-/.exec(String(headers['content-range'] ?? ''));
					if (status === 200 || (status === 206 && range)) return entriesOf(entries, status === 206 ? Number(range?.[1]) : 0, take);
					return undefined;
				});
				if (res.status === 404 || res.status === 416) return;
				check(pack, res.status, (s) => s === 200 || s === 206);
			});
		},
		async present(ns: string, listed: [string, Sum][]) {
			// A HEAD of each pack (or entry stored alone) they are in: gone, or too short to hold one, and it is not there.
			const objects = new Map<string, [string, Sum][]>();
			for (const entry of listed) {
				const object = entry[1].pack ?? entry[0];
				const group = objects.get(object);
				if (group) group.push(entry);
				else objects.set(object, [entry]);
			}
			const held = new Set<string>();
			await pool(
				[...objects],
				() => 0,
				async ([object, entries]) => {
					const res = await request('HEAD', at(ns, object));
					if (res.status === 404) return;
					// Another answer (a server that takes no HEAD), or one without a length, cannot tell: there, as before.
					const length = Number((res.status === 200 && res.headers['content-length']) || Number.POSITIVE_INFINITY);
					for (const [name, r] of entries) if (length >= (r.offset ?? 0) + r.size) held.add(name);
				},
			);
			return held;
		},
		async upload(ns: string, entries: Upload[]) {
			// In name order: machines uploading the same entries write the same pack.
			const sorted = [...entries].sort((a, b) => (a.name < b.name ? -1 : 1));
			const data = Buffer.concat(sorted.map((e) => e.data));
			const pack = `pack-${sha256(data)}`;
			const where = new Map<string, Sum>();
			if (sorted.length === 0) return where;
			await put(ns, pack, data);
			let offset = 0;
			for (const e of sorted) {
				where.set(e.name, { sum: e.sum, size: e.data.length, pack, offset });
				offset += e.data.length;
			}
			return where;
		},
		async publish(ns: string, name: string | undefined, entries: Map<string, Sum>) {
			const text = Buffer.from(formatIndex(entries), 'latin1');
			await Promise.all([...(name === undefined ? [] : [put(ns, `manifest-${name}`, text)]), put(ns, 'head', text)]);
		},
		async probe() {
			const url = at('ltocache-probe', `probe-${uniqueTag()}`);
			const data = probeBytes();
			check('probe', (await request('PUT', url, data)).status, (s) => s >= 200 && s < 300);
			const back = await request('GET', url, undefined, {}, data.length + 1, true);
			await request('DELETE', url);
			if (back.status !== 200 || !back.body.equals(data)) {
				throw new Error(`took a write and gave back ${back.status === 200 ? 'other bytes' : `HTTP ${back.status}`}: it stores nothing`);
			}
		},
		close() {
			for (const req of open) req.destroy();
		},
	};
}
