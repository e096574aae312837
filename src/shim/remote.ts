// A cache directory shared with other machines through a remote store
// (src/shared/remote/). Before a link into a directory ltocache chose,
// the entries the remote's index lists and the directory lacks are
// downloaded, each checked against the sha256 and size its uploader
// recorded, and renamed in only if they match; after the link, the entries
// the directory holds and the index lacks are uploaded, then listed.
//
// The remote namespace is ltocache/1/<linker>/<release>/<directory>: the
// directory's name carries the module, the .incbin guard's hash and the
// code-generation options (src/shared/keydir.ts), and <linker> is what the
// real linker is by content (src/shim/identity.ts).
//
// Fail-open: each phase has a time budget (remote-timeout); a remote that is
// down, slow, full, refusing or answering garbage is said once on stderr and
// the link goes on with what the directory has. Nothing here is loaded
// unless a remote is configured.
import { closeSync, fstatSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative } from 'node:path';
import { toBytes } from '../shared/bytes.js';
import type { RemoteSettings } from '../shared/config.js';
import type { RemoteCounts } from '../shared/counters.js';
import { baseKeyName, classify, keyName, META_FILE, type Metadata } from '../shared/keydir.js';
import { isEntryName, type Sum, sha256, type Upload } from '../shared/remote/index.js';
import { describeFailure, isUnreachable, openStore, type Store, shownUrl, withinBudget } from '../shared/remote/store.js';
import { REMOTE_DOWN_PREFIX } from '../shared/root.js';
import { linkerIdentity } from './identity.js';

/** At most this many entries and bytes move in one phase of one link. */
const MAX_ENTRIES = 20_000;
const MAX_BYTES = 2 * 1024 ** 3;
/** At most this many bytes of entries are read into memory for one upload. */
const BATCH_BYTES = 64 * 1024 ** 2;

export type Remote = {
	/** Download what the directory lacks; returns a line for stderr if the remote could not be used. */
	before(): Promise<string | undefined>;
	/** Upload what the remote lacks (nothing if read-only or the remote failed before). */
	after(): Promise<string | undefined>;
	counts: RemoteCounts;
	/** What the remote did for this link, for LTOCACHE_VERBOSE. */
	summary(): string;
};

/** The entry's bytes as they are now; undefined if it is gone (a prune) or changed while being read (lld never rewrites one, but be sure). */
function readEntry(file: string): Buffer | undefined {
	let fd: number;
	try {
		fd = openSync(file, 'r');
	} catch {
		return undefined;
	}
	try {
		const st = fstatSync(fd);
		const data = Buffer.alloc(st.size);
		let done = 0;
		while (done < data.length) {
			const n = readSync(fd, data, done, data.length - done, done);
			if (n === 0) return undefined;
			done += n;
		}
		return fstatSync(fd).mtimeMs === st.mtimeMs ? data : undefined;
	} finally {
		closeSync(fd);
	}
}

/**
 * After a remote timed out or could not be reached, the links that follow
 * skip it for a minute: a stalled server costs one link its budget, not
 * every link. A marker under the root says so: its mtime is when, its text
 * why. The first link after the minute tries again.
 */
const SKIP_MS = 60_000;

/** Why the remote is skipped now, or undefined. */
function skipping(marker: string): string | undefined {
	try {
		const st = statSync(marker);
		const ago = Date.now() - st.mtimeMs;
		if (ago < 0 || ago >= SKIP_MS) return undefined;
		const why = readFileSync(marker, 'utf8').split('\n')[0].slice(0, 200);
		return `skipped for ${Math.ceil((SKIP_MS - ago) / 1000)}s more (${why} ${Math.round(ago / 1000)}s ago)`;
	} catch {
		return undefined;
	}
}

/**
 * The directory's name in the remote namespace: its own, or with base-dir
 * set and the module (or in add mode the directory it was linked in) below
 * one of them, the module named by its path below it, so that checkouts at
 * different paths share entries. lld's entry names are content keys: two
 * modules that share a name share only entries both would write alike.
 */
export function remoteName(dir: string, bases: string[]): string {
	const name = basename(dir);
	if (bases.length === 0) return name;
	let module: string | undefined;
	try {
		const meta = JSON.parse(readFileSync(join(dir, META_FILE), 'utf8')) as Metadata;
		module = meta.extmod ?? meta.original;
	} catch {}
	if (typeof module !== 'string' || !isAbsolute(module)) return name;
	let below: string | undefined;
	for (const base of bases) {
		const rel = relative(base, module);
		if (rel === '..' || rel.startsWith('../') || isAbsolute(rel)) continue;
		if (below === undefined || rel.length < below.length) below = rel;
	}
	if (below === undefined) return name;
	// Relative, so never the name of a module at an absolute path; the variant (options, .incbin guard) kept.
	return keyName(toBytes(below || '.')) + name.slice(baseKeyName(name).length);
}

/**
 * The remote for one link into dir (root/<release>/<key>); linkerFile is the
 * real linker that will run.
 */
export function remoteFor(settings: RemoteSettings, root: string, dir: string, linkerFile: string, env: NodeJS.ProcessEnv): Remote {
	const counts: RemoteCounts = { downloads: 0, downloadBytes: 0, uploads: 0, uploadBytes: 0 };
	let url: URL;
	let shown = 'remote';
	let index: Map<string, Sum> | undefined;
	let failed = false;
	// Named by a hash of the whole URL: another URL (a fixed password, another server) is tried at once.
	const marker = join(root, `${REMOTE_DOWN_PREFIX}${sha256(Buffer.from(settings.url)).slice(0, 16)}`);
	let signal: AbortSignal | undefined;
	let wantedCount = 0;
	/** The line for stderr; answered: the server sent something first (a slow server is not skipped, a stalled one is); progress: what came through. */
	const say = (what: string, error: unknown, answered = false, progress = '') => {
		failed = true;
		const timedOut = Boolean(signal?.aborted);
		const why = describeFailure(error, timedOut, settings.budgetMs) + (progress && ` (${progress})`);
		if (isUnreachable(error, timedOut) && !answered) {
			try {
				writeFileSync(marker, `${why}\n`);
			} catch {} // then the next link tries again
		}
		return `remote ${shown}: ${why}; ${what}`;
	};
	let ns: string | undefined;
	/** One phase: a fresh store, bound to the phase's budget (which the local hashing of the linker does not count against). */
	const phase = async (fn: (store: Store, ns: string) => Promise<void>) => {
		url = new URL(settings.url);
		shown = shownUrl(url);
		ns ??= `ltocache/1/${linkerIdentity(linkerFile, root, env)}/${basename(dirname(dir))}/${remoteName(dir, settings.baseDirs)}`;
		signal = AbortSignal.timeout(settings.budgetMs);
		const store = openStore(url, signal);
		try {
			await withinBudget(fn(store, ns as string), signal, settings.budgetMs);
		} finally {
			store.close();
		}
	};
	return {
		counts,
		summary: () =>
			`remote ${shownUrl(new URL(settings.url))}: ${index ? `${index.size} entries listed` : 'no index'}, ${counts.downloads} downloaded (${counts.downloadBytes} bytes), ${counts.uploads} uploaded (${counts.uploadBytes} bytes)${failed ? ', then given up' : ''}`,
		async before() {
			const skip = skipping(marker);
			if (skip) {
				failed = true;
				return `remote ${shownUrl(new URL(settings.url))}: ${skip}; linking with the local cache`;
			}
			try {
				await phase(async (store, ns) => {
					index = await store.index(ns);
					const have = new Set(readdirSync(dir));
					let bytes = 0;
					const wanted = [...index].filter(([name, r]) => {
						if (!isEntryName(name) || have.has(name) || bytes + r.size > MAX_BYTES) return false;
						bytes += r.size;
						return true;
					});
					wantedCount = Math.min(wanted.length, MAX_ENTRIES);
					await store.fetch(ns, wanted.slice(0, MAX_ENTRIES), (name, data) => {
						const r = index?.get(name);
						// Corrupt, truncated or not what was uploaded under this name: never linked.
						if (!r || data.length !== r.size || sha256(data) !== r.sum) return;
						// Written aside and renamed in: a parallel link's lld must never read half an entry.
						// Synchronously: fs/promises cost ~0.15 ms more a file in promises and handles than the write itself.
						const temp = join(dir, `Thin-remote-${process.pid}-${name.slice(-12)}.tmp`);
						try {
							writeFileSync(temp, data, { mode: 0o600 });
							renameSync(temp, join(dir, name));
						} catch (error) {
							rmSync(temp, { force: true }); // a full disk: nothing half-written left behind
							throw error;
						}
						counts.downloads++;
						counts.downloadBytes += data.length;
					});
				});
				try {
					rmSync(marker, { force: true });
				} catch {} // another user's marker in a shared root: it expires
				return undefined;
			} catch (error) {
				const progress = counts.downloads ? `${counts.downloads} of ${wantedCount} entries came down` : '';
				return say('linking with the local cache', error, index !== undefined, progress);
			}
		},
		async after() {
			if (settings.readOnly || failed || !index) return undefined;
			const known = index;
			// Nothing the remote lacks (a warm link): no connection at all.
			const fresh = readdirSync(dir).filter((name) => classify(name) === 'entry' && isEntryName(name) && !known.has(name));
			if (fresh.length === 0) return undefined;
			try {
				await phase(async (store, ns) => {
					// In batches of at most BATCH_BYTES held in memory at once (over HTTP, a pack each).
					let batch: Upload[] = [];
					let batchBytes = 0;
					let total = 0;
					const send = async () => {
						if (batch.length === 0) return;
						await store.upload(ns, batch);
						counts.uploads += batch.length;
						counts.uploadBytes += batchBytes;
						batch = [];
						batchBytes = 0;
					};
					for (const name of fresh.slice(0, MAX_ENTRIES)) {
						const data = readEntry(join(dir, name));
						if (!data || total + data.length > MAX_BYTES) continue;
						if (batchBytes + data.length > BATCH_BYTES) await send();
						batch.push({ name, data, sum: sha256(data) });
						batchBytes += data.length;
						total += data.length;
					}
					await send();
				});
				return undefined;
			} catch (error) {
				const progress = counts.uploads ? `${counts.uploads} of ${fresh.length} entries went up` : '';
				return say('the entries this link wrote are not shared', error, counts.uploads > 0, progress);
			}
		},
	};
}
