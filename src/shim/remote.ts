// A cache directory shared with other machines through a remote store
// (src/shared/remote/), in three phases a link:
//
//  before  the manifest of a link with the same bitcode inputs (the plan's
//          inputsHash), or else the namespace's head (the last manifest
//          written: a nearby commit's), is fetched, and the entries it lists
//          that the directory lacks are downloaded, each checked against the
//          sha256 and size its uploader recorded, and renamed in only if they
//          match;
//  link    lld runs;
//  after   the entries the link used (those it wrote, and those it read,
//          told by their atime) are its manifest. Those with no known place
//          on the remote, or that the remote listed and could not give, are
//          uploaded (so a remote that lost an entry gets it back from the
//          next machine that needed it), and the manifest is written unless
//          the remote has it already, as is.
//
// So a fresh machine downloads what its link needs, not everything the
// namespace ever held, and machines writing at once never merge anything.
// Where an entry is on the remote is kept in the directory's ltocache.remote
// (lines as a manifest's, for this URL and namespace).
//
// The remote namespace is ltocache/2/<linker>/<release>/<directory>: the
// directory's name carries the module, the .incbin guard's hash and the
// code-generation options (src/shared/keydir.ts), and <linker> is what the
// real linker is by content (src/shim/identity.ts).
//
// Fail-open: each phase has a time budget (remote-timeout); a remote that is
// down, slow, full, refusing or answering garbage is said once on stderr and
// the link goes on with what the directory has. Nothing here is loaded
// unless a remote is configured.
import { closeSync, constants, fstatSync, lstatSync, readdirSync, renameSync, rmSync, statfsSync, utimesSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative } from 'node:path';
import { shown, toBytes } from '../shared/bytes.js';
import type { RemoteSettings } from '../shared/config.js';
import { lastLinkBytes, noRemoteCounts, type RemoteCounts } from '../shared/counters.js';
import { baseKeyName, classify, KNOWN_FILE, keyName, REMOTE_FILE, readMeta } from '../shared/keydir.js';
import {
	formatIndex,
	isEntryName,
	MAX_ENTRY_BYTES,
	MAX_INDEX_BYTES,
	type Manifest,
	parseIndex,
	type Sum,
	sha256,
	type Upload,
} from '../shared/remote/index.js';
import { describeFailure, isUnreachable, openStore, type Store, shownUrl, withinBudget } from '../shared/remote/store.js';
import { openOwnFile, REMOTE_DOWN_PREFIX, readOwnFd, readOwnFile, tempName, uniqueTag, writeOwnFile } from '../shared/root.js';
import { MIN_FREE_BYTES } from './decide.js';
import { linkerIdentity } from './identity.js';

/** At most this many entries and bytes move in one phase of one link. */
const MAX_ENTRIES = 20_000;
const MAX_BYTES = 2 * 1024 ** 3;
/** At most this many bytes of entries are read into memory for one upload. */
const BATCH_BYTES = 64 * 1024 ** 2;

/** What the shim knows of the link that ran: the directory's names when lld started, when that was (ns since the epoch, a tick early for the file system's clock), and its modules. */
export type LinkRun = { before?: Set<string>; startedNs: bigint; modules: number };

export type Remote = {
	/** Download what the manifest lists and the directory lacks; returns a line for stderr if the remote could not be used. */
	before(): Promise<string | undefined>;
	/** Upload what the link used and the remote lacks, and its manifest (nothing if read-only or the remote failed before). */
	after(run: LinkRun): Promise<string | undefined>;
	/** After a link that shares nothing (it failed, or its entries went): set the times of what it read, so that the next link's reads show. */
	settle(run: LinkRun): void;
	counts: RemoteCounts;
	/** What the remote did for this link, for LTOCACHE_VERBOSE. */
	summary(): string;
};

/**
 * The entry's bytes as they are now; undefined if it is gone (a prune) or
 * changed while being read (lld never rewrites one, but be sure). Read
 * without moving its atime where the owner may (O_NOATIME): an upload is
 * no use, and would hide the next link's read of it (usedEntries).
 */
function readEntry(file: string): Buffer | undefined {
	let fd: number;
	try {
		fd = openOwnFile(file, constants.O_RDONLY | constants.O_NOATIME);
	} catch {
		try {
			fd = openOwnFile(file, constants.O_RDONLY); // another user's entry in a shared root: EPERM
		} catch {
			return undefined; // gone, or not a regular file (a FIFO named like an entry would hold the link forever)
		}
	}
	try {
		const read = readOwnFd(fd, MAX_ENTRY_BYTES);
		// Cut short or rewritten while read: its mtime moved.
		return read && fstatSync(fd).mtimeMs === read.mtimeMs ? read.data : undefined;
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
	const own = readOwnFile(marker, 200);
	if (!own) return undefined;
	const ago = Date.now() - own.mtimeMs;
	if (ago < 0 || ago >= SKIP_MS) return undefined;
	const why = shown(own.data.toString('utf8').split('\n')[0]);
	return `skipped for ${Math.ceil((SKIP_MS - ago) / 1000)}s more (${why} ${Math.round(ago / 1000)}s ago)`;
}

/** Say the remote is down (written aside and renamed in: never opened through whatever is at the marker's name); never throws. */
function markDown(marker: string, why: string): void {
	const temp = tempName(marker);
	try {
		writeOwnFile(temp, `${why}\n`);
		renameSync(temp, marker);
	} catch {
		rmSync(temp, { force: true }); // then the next link tries again
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
	const meta = readMeta(dir);
	const module = meta?.extmod ?? meta?.original;
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
 * The entries a link used: those it wrote (names that were not there when
 * it started) and those it read. lld reads a hit and never touches it; on a
 * relatime mount a read moves atime only if atime is not after mtime or
 * ctime. So after each link every entry read since it last changed (lld
 * reads back what it writes, too) gets its own times set again (utimes):
 * its ctime moves to now and the next read shows. A read is this link's if
 * atime is past its start; for an entry this link downloaded (fetched: made
 * just before the start, its atime its making) past its ctime too. Another
 * link's setting the times of an entry this one read moves only its ctime:
 * links running at once in one directory still see their reads (and each
 * other's, which costs downloads, never misses). A mount that never moves
 * atime (noatime) shows no read: a link that wrote fewer entries than it
 * has modules and read none it could tell used the whole directory, as far
 * as anyone can say (more to download, never less). whole: that was the case.
 */
export function usedEntries(dir: string, run: LinkRun, fetched: ReadonlySet<string> = new Set()): { used: string[]; whole: boolean } {
	const names = readdirSync(dir).filter((name) => classify(name) === 'entry' && isEntryName(name));
	const { before } = run;
	if (!before) return { used: names, whole: true };
	const used: string[] = [];
	let hits = 0;
	let written = 0;
	let had = 0;
	// In ms as doubles (a fraction of a microsecond off at worst): a bigint stat of 500 entries costs a third more.
	const started = Number(run.startedNs) / 1e6;
	for (const name of names) {
		const file = `${dir}/${name}`;
		// Never through a symlink (another member's, in a shared root): a root-run link would set the times where it leads.
		const st = lstatSync(file, { throwIfNoEntry: false });
		if (!st?.isFile()) continue; // pruned meanwhile, or not lld's
		if (!before.has(name)) {
			used.push(name);
			written++;
		} else {
			had++;
			if (st.atimeMs >= started && (st.atimeMs > st.ctimeMs || !fetched.has(name))) {
				used.push(name);
				hits++;
			}
		}
		// lld reads back what it wrote, so an entry this link wrote needs its times set again too.
		if (st.atimeMs > st.ctimeMs && st.atimeMs > st.mtimeMs) {
			try {
				// In seconds as doubles, which move a time by a fraction of a microsecond either way: atime set 2 µs
				// back, so that a read in the microsecond before stays before the ctime this sets (nothing reads finer).
				utimesSync(file, (st.atimeMs - 0.002) / 1000, st.mtimeMs / 1000);
			} catch {} // another user's entry in a shared root: its next read goes unseen
		}
	}
	if (hits === 0 && had > 0 && written < run.modules) return { used: names, whole: true };
	return { used, whole: false };
}

/** The first line of a directory's record: which remote and namespace its locations are of. */
const recordHead = (tag: string) => `ltocache-remote 1 ${tag}`;

/** One of the directory's remote files (the record, the known manifest): a first line saying whose it is, then manifest lines; undefined if absent or another's. */
function readIndexFile(dir: string, name: string, head: string): { entries: Map<string, Sum>; mtimeMs: number } | undefined {
	const own = readOwnFile(join(dir, name), MAX_INDEX_BYTES);
	const text = own?.data.toString('latin1') ?? '';
	const eol = text.indexOf('\n');
	if (!own || eol < 0 || text.slice(0, eol) !== head) return undefined;
	return { entries: parseIndex(text.slice(eol + 1)), mtimeMs: own.mtimeMs };
}

/** Where the directory's entries are on the remote, as this directory last learned it; empty for another remote or namespace. */
const readRecord = (dir: string, tag: string) => readIndexFile(dir, REMOTE_FILE, recordHead(tag))?.entries ?? new Map<string, Sum>();

/** Replace one of the directory's remote files read by readIndexFile (written aside and renamed in: a parallel link reads it whole or not at all); never throws. */
function writeIndexFile(dir: string, name: string, head: string, entries: Map<string, Sum>): void {
	const temp = tempName(join(dir, name));
	try {
		writeOwnFile(temp, `${head}\n${formatIndex(entries)}`);
		renameSync(temp, join(dir, name));
	} catch {
		rmSync(temp, { force: true }); // then the next link asks the remote, or uploads what it cannot place
	}
}

/**
 * The manifest the remote holds for a link's inputs, as this directory last
 * fetched or wrote it (ltocache.manifest: the last one only). A link with
 * those inputs whose entries are all here would download nothing: it asks
 * the remote nothing either, and its after phase connects only if the link
 * used other entries. The remote's manifest for given inputs changes only
 * when a link with them uses other entries, which this link's after phase
 * tells as it would have; an entry pruned here means asking the remote again.
 * But a remote loses manifests (an evicting Redis, a nightly cleanup by
 * atime, a restart), and only a link that asks sees one gone and writes it
 * again: so what is known is taken for the remote's word for KNOWN_MS after
 * the remote last said it (the file's mtime), then asked again.
 */
const knownHead = (tag: string, inputs: string) => `ltocache-manifest 1 ${tag} ${inputs}`;
const KNOWN_MS = 3600_000;

function readKnown(dir: string, tag: string, inputs: string): Map<string, Sum> | undefined {
	const known = readIndexFile(dir, KNOWN_FILE, knownHead(tag, inputs));
	const age = Date.now() - (known?.mtimeMs ?? 0);
	return known && age >= 0 && age < KNOWN_MS ? known.entries : undefined;
}

const sameSum = (a: Sum | undefined, b: Sum) => a?.sum === b.sum && a.size === b.size && a.pack === b.pack && a.offset === b.offset;

/**
 * The remote for one link into dir (root/<release>/<key>); linkerFile is the
 * real linker that will run; inputs: the hash of the link's bitcode inputs,
 * which names its manifest (without one, only the head is read and written).
 */
export function remoteFor(
	settings: RemoteSettings,
	root: string,
	dir: string,
	linkerFile: string,
	env: NodeJS.ProcessEnv,
	inputs?: string,
): Remote {
	const counts = noRemoteCounts();
	let url: URL;
	let shown = 'remote';
	/** What the remote gave: undefined until it answered; null if it had no manifest for this link. */
	let manifest: Manifest | null | undefined;
	/** Entries the manifest listed that the remote could not give, whole and as listed: the next upload puts them back. */
	const refused = new Set<string>();
	/** Entries this link downloaded. */
	const fetched = new Set<string>();
	let failed = false;
	let published = false;
	/** The manifest came from the directory's own copy (readKnown): the remote was not asked. */
	let known = false;
	// Named by a hash of the whole URL: another URL (a fixed password, another server) is tried at once.
	const marker = join(root, `${REMOTE_DOWN_PREFIX}${sha256(Buffer.from(settings.url)).slice(0, 16)}`);
	let signal: AbortSignal | undefined;
	let wantedCount = 0;
	/** The line for stderr; answered: the server sent something first (a slow server is not skipped, a stalled one is); progress: what came through. */
	const say = (what: string, error: unknown, answered = false, progress = '') => {
		failed = true;
		const timedOut = Boolean(signal?.aborted);
		const why = describeFailure(error, timedOut, settings.budgetMs) + (progress && ` (${progress})`);
		const unreachable = isUnreachable(error, timedOut) && !answered;
		counts[timedOut ? 'timeouts' : unreachable ? 'unreachable' : 'errors']++;
		if (unreachable) markDown(marker, why);
		return `remote ${shown}: ${why}; ${what}`;
	};
	let ns: string | undefined;
	const namespace = () => {
		ns ??= `ltocache/2/${linkerIdentity(linkerFile, root, env)}/${basename(dirname(dir))}/${remoteName(dir, settings.baseDirs)}`;
		return ns;
	};
	/** The record's tag: the remote (never its password) and the namespace. */
	const tag = () => sha256(Buffer.from(`${shownUrl(new URL(settings.url))}\n${namespace()}`)).slice(0, 32);
	/** One phase: a fresh store, bound to the phase's budget (which the local hashing of the linker does not count against). */
	const phase = async (fn: (store: Store, ns: string) => Promise<void>) => {
		url = new URL(settings.url);
		shown = shownUrl(url);
		const name = namespace();
		signal = AbortSignal.timeout(settings.budgetMs);
		const store = openStore(url, signal);
		try {
			await withinBudget(fn(store, name), signal, settings.budgetMs);
		} finally {
			store.close();
		}
	};
	const listed = () => manifest?.entries.size ?? 0;
	/** What the remote holds for this link's inputs, kept here (readKnown): a link with them and its entries here then asks nothing. */
	const keep = (entries: Map<string, Sum>) => {
		if (inputs !== undefined && entries.size > 0) writeIndexFile(dir, KNOWN_FILE, knownHead(tag(), inputs), entries);
	};
	return {
		counts,
		summary: () =>
			`remote ${shownUrl(new URL(settings.url))}: ${
				manifest
					? `${listed()} entries listed (${known ? "this link's manifest, known here: not asked" : manifest.exact ? "this link's manifest" : 'the latest manifest'})`
					: 'no manifest'
			}, ${counts.downloads} downloaded (${counts.downloadBytes} bytes), ${counts.uploads} uploaded (${counts.uploadBytes} bytes)${
				published ? ', manifest written' : ''
			}${failed ? ', then given up' : ''}`,
		async before() {
			const own = inputs === undefined ? undefined : readKnown(dir, tag(), inputs);
			if (own && own.size > 0) {
				const here = new Set(readdirSync(dir));
				if ([...own.keys()].every((name) => here.has(name))) {
					manifest = { entries: own, exact: true };
					known = true;
					return undefined;
				}
			}
			const skip = skipping(marker);
			if (skip) {
				failed = true;
				counts.skipped++;
				return `remote ${shownUrl(new URL(settings.url))}: ${skip}; linking with the local cache`;
			}
			try {
				await phase(async (store, ns) => {
					manifest = (await store.manifest(ns, inputs)) ?? null;
					const entries = manifest?.entries ?? new Map<string, Sum>();
					const have = new Set(readdirSync(dir));
					// Downloads never take the free space the link was let use the cache with (decide.ts): a manifest
					// listing more than the disk holds would leave lld none, and the next links no cache.
					let room = MAX_BYTES;
					try {
						const st = statfsSync(dir);
						room = Math.min(room, st.bavail * st.bsize - MIN_FREE_BYTES - lastLinkBytes(dir));
					} catch {} // cannot tell: as decide.ts, let it try
					const block = (size: number) => Math.ceil(size / 4096) * 4096;
					let bytes = 0;
					const wanted = [...entries].filter(([name, r]) => {
						if (!isEntryName(name) || have.has(name) || bytes + block(r.size) > room) return false;
						bytes += block(r.size);
						return true;
					});
					wantedCount = Math.min(wanted.length, MAX_ENTRIES);
					// A writer with entries of its own inputs' manifest here asks whether the remote still holds them: one
					// it lost (evicted, cleaned up) goes up again after the link, as one it could not give does. No other
					// machine would put it back: those that have it never need it, read-only ones cannot.
					const here = manifest?.exact && !settings.readOnly ? [...entries].filter(([name]) => isEntryName(name) && have.has(name)) : [];
					const held = here.length > 0 ? store.present(ns, here.slice(0, MAX_ENTRIES)) : undefined;
					held?.catch(() => {}); // awaited below, once the fetch is over: a failure of both is the fetch's to tell
					const given = new Set<string>();
					await store.fetch(ns, wanted.slice(0, MAX_ENTRIES), (name, data) => {
						const r = entries.get(name);
						given.add(name);
						// Corrupt, truncated or not what was uploaded under this name: never linked.
						if (!r || data.length !== r.size || sha256(data) !== r.sum) {
							refused.add(name);
							return;
						}
						// Written aside and renamed in: a parallel link's lld must never read half an entry.
						// Synchronously: fs/promises cost ~0.15 ms more a file in promises and handles than the write itself.
						const temp = join(dir, `Thin-remote-${uniqueTag()}.tmp`);
						try {
							writeOwnFile(temp, data);
							renameSync(temp, join(dir, name));
						} catch (error) {
							rmSync(temp, { force: true }); // a full disk: nothing half-written left behind
							throw error;
						}
						fetched.add(name);
						counts.downloads++;
						counts.downloadBytes += data.length;
					});
					// The fetch is over, and these never came: gone from the remote (an eviction, a cleanup).
					for (const [name] of wanted.slice(0, MAX_ENTRIES)) if (!given.has(name)) refused.add(name);
					const still = await held;
					if (still) for (const [name] of here.slice(0, MAX_ENTRIES)) if (!still.has(name)) refused.add(name);
					// Not with an entry refused: the next link asks again, and uploads it if this one could not.
					if (manifest?.exact && refused.size === 0) keep(manifest.entries);
				});
				try {
					rmSync(marker, { force: true });
				} catch {} // another user's marker in a shared root: it expires
				return undefined;
			} catch (error) {
				const progress = counts.downloads ? `${counts.downloads} of ${wantedCount} entries came down` : '';
				// A server that gave the manifest and then not one entry of those wanted is as stalled as a silent one:
				// not skipped, it would cost every link its budget.
				const answered = manifest !== undefined && (counts.downloads > 0 || wantedCount === 0);
				return say('linking with the local cache', error, answered, progress);
			}
		},
		settle(run) {
			// A read-only client lists nothing, and never looks at its entries' times.
			if (!settings.readOnly) usedEntries(dir, run, fetched);
		},
		async after(run) {
			if (settings.readOnly) return undefined;
			// Also when the remote failed: the next link's reads must show, once it is back.
			const { used } = usedEntries(dir, run, fetched);
			if (failed || manifest === undefined) return undefined;
			const listedNow = manifest?.entries ?? new Map<string, Sum>();
			// Read only for an entry the manifest does not place: a warm link's manifest places them all. A remote with
			// neither this link's manifest nor a head (every manifest written is the head too) lost what the record
			// places there (a restart, an eviction): nothing is taken as placed, and what the link used goes up again.
			let record: Map<string, Sum> | undefined;
			const recorded = () => {
				record ??= manifest === null ? new Map() : readRecord(dir, tag());
				return record;
			};
			const next = new Map<string, Sum>();
			const fresh: string[] = [];
			for (const name of used.slice(0, MAX_ENTRIES)) {
				// The remote's own word first: its manifest is the latest on where an entry is.
				const known = refused.has(name) ? undefined : (listedNow.get(name) ?? recorded().get(name));
				if (known) next.set(name, known);
				else fresh.push(name);
			}
			/** Keep what is known of where the directory's entries are: what it knew, and what this link learned, of those still here. */
			const remember = () => {
				const old = recorded();
				const here = new Set(readdirSync(dir));
				const learned = new Map([...old, ...listedNow].filter(([name]) => here.has(name) && !refused.has(name)));
				for (const [name, r] of next) learned.set(name, r);
				if (learned.size !== old.size || [...learned].some(([name, r]) => !sameSum(old.get(name), r)))
					writeIndexFile(dir, REMOTE_FILE, recordHead(tag()), learned);
			};
			const exact = manifest?.exact ? manifest.entries : undefined;
			const unchanged = () => exact?.size === next.size && [...next].every(([name, r]) => sameSum(exact.get(name), r));
			// A warm link whose manifest the remote has as it is: no connection at all.
			if (fresh.length === 0 && unchanged()) {
				if (counts.downloads > 0) remember();
				return undefined;
			}
			// Nothing was asked before the link (a manifest known here), so the down-marker was not looked at either:
			// a stalled server would cost every such link its budget, not one link a minute.
			const skip = known ? skipping(marker) : undefined;
			if (skip) {
				failed = true;
				counts.skipped++;
				return `remote ${shownUrl(new URL(settings.url))}: ${skip}; the entries this link wrote are not shared`;
			}
			try {
				await phase(async (store, ns) => {
					// In batches of at most BATCH_BYTES held in memory at once (over HTTP, a pack each).
					let batch: Upload[] = [];
					let batchBytes = 0;
					let total = 0;
					const send = async () => {
						if (batch.length === 0) return;
						for (const [name, r] of await store.upload(ns, batch)) next.set(name, r);
						counts.uploads += batch.length;
						counts.uploadBytes += batchBytes;
						batch = [];
						batchBytes = 0;
					};
					for (const name of fresh) {
						const data = readEntry(join(dir, name));
						if (!data || total + data.length > MAX_BYTES) continue;
						if (batchBytes + data.length > BATCH_BYTES) await send();
						batch.push({ name, data, sum: sha256(data) });
						batchBytes += data.length;
						total += data.length;
					}
					await send();
					// Written after what it lists, and again whenever entries went up: a Redis that evicts to take them may
					// have taken the manifest.
					if (counts.uploads > 0 || !unchanged()) {
						await store.publish(ns, inputs, next);
						published = true;
						keep(next);
					}
				});
				return undefined;
			} catch (error) {
				const progress = counts.uploads ? `${counts.uploads} of ${fresh.length} entries went up` : '';
				return say('the entries this link wrote are not shared', error, counts.uploads > 0, progress);
			} finally {
				remember();
			}
		},
	};
}
