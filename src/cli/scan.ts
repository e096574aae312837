// Reading a cache root into memory: every kernel release, every key
// directory, every file in it, classified. Nothing here deletes anything.
//
// Symlinks are never followed: entries are read with lstat and only real
// directories are descended into, so nothing outside the root is ever seen.
import fs from 'node:fs';
import path from 'node:path';
import { shown } from '../shared/bytes.js';
import { classify, isIncbinVariant, isKeyName, META_FILE, type Metadata, NO_KERNEL, readMeta } from '../shared/keydir.js';
import { isInstalled, openOwnFile, readOwnFd, SUMMARY_NAME, tempName, writeOwnFile } from '../shared/root.js';
import { isRootFile } from './settings.js';

/** link: the file's device and inode when it has more than one name (an .incbin sibling seeded with hard links, src/shim/seed.ts). */
export type Entry = { file: string; bytes: number; lastUse: number; link?: string };
export type Temp = { file: string; bytes: number; mtime: number };

export type Key = {
	name: string;
	dir: string;
	/** The directory as it was read (see enterDir): prune and clear act only in that one. */
	id?: DirId;
	meta?: Metadata;
	/** When a link last used the directory (the shim touches the metadata on each link). */
	touched: number;
	/** Count, apparent bytes and latest last use of the entries. */
	count: number;
	bytes: number;
	lastUse: number;
	/** The entries with more than one name, as link and size (see Entry): counted once in totals. */
	linked?: [string, number][];
	/** Each entry; only collected when asked for (prune and clear), stats needs the sums. */
	entries: Entry[];
	temps: Temp[];
	/** Files that are neither entries, temporaries nor ours: never deleted. */
	foreign: number;
};

export type Kernel = { release: string; dir: string; installed: boolean; keys: Key[] };

export type Scope = { kernel?: string };

/** A directory or entry a command could not read or remove, and why (an errno name): skipped, named and counted, never fatal. */
export type Skip = { path: string; error: string };

const codeOf = (error: unknown) => (error as NodeJS.ErrnoException).code ?? String(error);

/**
 * A directory listing; a directory that vanished (a concurrent prune or
 * clear) lists as empty, and so does one that cannot be read, which is
 * added to skipped.
 */
function listing<T>(read: () => T[], dir: string, skipped: Skip[]): T[] {
	try {
		return read();
	} catch (error) {
		const code = codeOf(error);
		if (code !== 'ENOENT' && code !== 'ENOTDIR') skipped.push({ path: dir, error: code });
		return [];
	}
}

const dirents = (dir: string, skipped: Skip[]) => listing(() => fs.readdirSync(dir, { withFileTypes: true }), dir, skipped);
/** Names only in key directories: every one is lstat-ed anyway, so file types from readdir would be paid for twice. */
const names = (dir: string, skipped: Skip[]) => listing(() => fs.readdirSync(dir), dir, skipped);

/** Which directory a path named when it was read: another put at the name later is not it. */
export type DirId = { dev: number; ino: number };

/**
 * Change into a module directory, and only if it is the one meant: a real
 * directory in a real release directory, neither a symlink another member
 * of a shared root renamed into its place (chdir follows it, and prune run
 * by root would count and delete where it leads, another root of
 * ltocache's included), and, given id, the very one read before. Checked
 * from inside, so the bare names used there stay in it whatever is renamed
 * meanwhile. Returns its id; 'elsewhere' where chdir fails (not allowed in
 * a worker thread; a directory gone or unsearchable, which its listing
 * tells), and paths are then used whole; undefined for another directory.
 */
export function enterDir(dir: string, id?: DirId): DirId | 'elsewhere' | undefined {
	try {
		process.chdir(dir);
	} catch {
		return 'elsewhere';
	}
	const same = (name: string, st: fs.Stats) => {
		const named = fs.lstatSync(name, { throwIfNoEntry: false });
		return named?.isDirectory() && named.dev === st.dev && named.ino === st.ino;
	};
	const here = fs.statSync('.');
	if (!same(dir, here) || !same(path.dirname(dir), fs.statSync('..'))) return undefined;
	if (id && (id.dev !== here.dev || id.ino !== here.ino)) return undefined;
	return { dev: here.dev, ino: here.ino };
}

/** What a directory that enterDir refused is skipped for: the errno of opening a symlink with O_NOFOLLOW. */
export const SWAPPED = 'ELOOP';

/**
 * Reads one key directory. It runs lstat once per entry, 100,000s of times:
 * from inside the directory with the bare name (the kernel then resolves one
 * component instead of the whole path: ~20% faster, measured), and with
 * concatenation rather than path.join.
 */
export function scanKey(dir: string, name: string, collect = true, skipped: Skip[] = []): Key | undefined {
	const key: Key = { name, dir, touched: 0, count: 0, bytes: 0, lastUse: 0, entries: [], temps: [], foreign: 0 };
	const id = enterDir(dir);
	if (id === undefined) {
		skipped.push({ path: dir, error: SWAPPED });
		return undefined;
	}
	const inside = id !== 'elsewhere';
	if (inside) key.id = id;
	const before = skipped.length;
	for (const entry of names(dir, skipped)) {
		// Only regular files are ours to count; lstat (not stat) so a symlink is never followed.
		let st: fs.Stats | undefined;
		try {
			st = fs.lstatSync(inside ? entry : `${dir}/${entry}`, { throwIfNoEntry: false });
		} catch (error) {
			skipped.push({ path: dir, error: codeOf(error) }); // a directory that can be listed but not searched
			return undefined;
		}
		const kind = st?.isFile() ? classify(entry) : 'foreign';
		if (kind === 'entry') {
			const lastUse = Math.max(st!.atimeMs, st!.mtimeMs);
			const link = st!.nlink > 1 ? `${st!.dev}:${st!.ino}` : undefined;
			key.count++;
			key.bytes += st!.size;
			if (lastUse > key.lastUse) key.lastUse = lastUse;
			if (link !== undefined) {
				key.linked ??= [];
				key.linked.push([link, st!.size]);
			}
			if (collect) key.entries.push({ file: `${dir}/${entry}`, bytes: st!.size, lastUse, ...(link === undefined ? {} : { link }) });
		} else if (kind === 'meta') {
			key.meta = readMeta(inside ? '.' : dir);
			key.touched = st!.mtimeMs;
		} else if (kind === 'temp') {
			key.temps.push({ file: `${dir}/${entry}`, bytes: st!.size, mtime: st!.mtimeMs });
		} else if (kind === 'foreign') {
			key.foreign++;
		}
	}
	return skipped.length > before ? undefined : key;
}

/**
 * What was skipped, for stderr: one line a directory (an entry's own
 * directory stands for its entries), ten at most, then how many more.
 */
export function skippedText(skipped: Skip[]): string {
	if (skipped.length === 0) return '';
	const byDir = new Map<string, { error: string; n: number; entries: boolean }>();
	for (const s of skipped) {
		const isEntry = /\/(llvmcache-|Thin-|ltocache\.)[^/]*$/.test(s.path);
		const dir = isEntry ? path.dirname(s.path) : s.path;
		const seen = byDir.get(dir);
		if (seen) seen.n++;
		else byDir.set(dir, { error: s.error, n: 1, entries: isEntry });
	}
	const lines = [...byDir]
		.slice(0, 10)
		.map(([dir, { error, n, entries }]) =>
			entries
				? `ltocache: skipped ${plural(n, 'file')} in ${shown(dir)} (${error}): cannot remove them`
				: `ltocache: skipped ${shown(dir)} (${error}): cannot read it`,
		);
	if (byDir.size > 10) lines.push(`ltocache: ... and ${plural(byDir.size - 10, 'directory', 'directories')} more (--json lists each)`);
	lines.push(
		`ltocache: did the rest; ${plural(skipped.length, 'directory or file', 'directories or files')} skipped (ltocache doctor names them)`,
	);
	return `${lines.join('\n')}\n`;
}

/** `1 entry`, `2 entries`: a count and its noun. */
export const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** The kernel releases a root holds, sorted as stats shows them: not foreign files, nor ltocache's own at the top (the lock, a dead one, the inputs memo). */
export function listReleases(root: string, skipped: Skip[] = []): string[] {
	return dirents(root, skipped)
		.filter((d) => d.isDirectory() && !isRootFile(d.name))
		.map((d) => d.name)
		.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
}

/** A --kernel that names no release in the root: an error that lists those there are. */
export function unknownKernel(root: string | undefined, kernel: string): Error {
	const releases = root ? listReleases(root) : [];
	const there = releases.length ? `releases cached: ${releases.join(', ')}` : 'nothing is cached';
	return new Error(`--kernel ${kernel} matches nothing in ${root ?? 'the cache'} (${there})`);
}

/** Lets timers run: proper-lockfile's refresh of the lock (src/cli/lock.ts) and the progress line. */
export const yieldToTimers = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Told what a long scan or deletion has got through so far. */
export type Progress = (text: string) => void;

/**
 * @param collect whether to list each entry (prune and clear) or only sum them up (stats, from summaries where they hold)
 * @param skipped where the directories that cannot be read go; they are left out of what is returned
 */
export async function scanRoot(
	root: string,
	scope: Scope = {},
	collect = true,
	progress?: Progress,
	skipped: Skip[] = [],
): Promise<Kernel[]> {
	const cwd = process.cwd(); // scanKey changes directory
	const summaries = collect ? undefined : new Summaries(root, skipped);
	try {
		return await scanReleases(root, scope, collect, skipped, summaries, progress);
	} finally {
		// Where chdir is not allowed (a worker thread) scanKey went without it.
		if (process.cwd() !== cwd) process.chdir(cwd);
		summaries?.save();
	}
}

/** Whether a module directory is ltocache's (named as ltocache names them, or holding its metadata); undefined, and added to skipped, if that cannot be told. */
export function isOurs(dir: string, skipped: Skip[] = []): boolean | undefined {
	if (isKeyName(path.basename(dir))) return true;
	try {
		return fs.lstatSync(path.join(dir, META_FILE), { throwIfNoEntry: false }) !== undefined;
	} catch (error) {
		skipped.push({ path: dir, error: codeOf(error) });
		return undefined;
	}
}

async function scanReleases(
	root: string,
	scope: Scope,
	collect: boolean,
	skipped: Skip[],
	summaries?: Summaries,
	progress?: Progress,
): Promise<Kernel[]> {
	const kernels: Kernel[] = [];
	let entries = 0;
	let dirs = 0;
	for (const release of listReleases(root, skipped)) {
		if (scope.kernel !== undefined && release !== scope.kernel) continue;
		const dir = path.join(root, release);
		const keys: Key[] = [];
		for (const d of dirents(dir, skipped)) {
			if (!d.isDirectory()) continue;
			const keyDir = path.join(dir, d.name);
			// A directory that is not ltocache's (a plain lld cache, anything else) is not ours to count or delete in.
			if (!isOurs(keyDir, skipped)) continue;
			const key = summaries ? summaries.key(keyDir, d.name) : scanKey(keyDir, d.name, collect, skipped);
			if (!key) continue;
			keys.push(key);
			entries += key.count;
			progress?.(`scanned ${plural(++dirs, 'module directory', 'module directories')}, ${plural(entries, 'entry', 'entries')}`);
			await yieldToTimers();
		}
		if (keys.length === 0) continue;
		kernels.push({ release, dir, installed: release !== NO_KERNEL && isInstalled(release), keys });
	}
	return kernels;
}

type Summary = Pick<Key, 'count' | 'bytes' | 'lastUse' | 'temps' | 'foreign' | 'linked'> & { id: string };

const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isTemp = (t: unknown) =>
	typeof t === 'object' && t !== null && typeof (t as Temp).file === 'string' && isNumber((t as Temp).bytes) && isNumber((t as Temp).mtime);
const isLinked = (l: unknown) => Array.isArray(l) && l.every((e) => Array.isArray(e) && typeof e[0] === 'string' && isNumber(e[1]));

function isSummary(value: unknown): value is Summary {
	if (typeof value !== 'object' || value === null) return false;
	const s = value as Summary;
	return (
		typeof s.id === 'string' &&
		[s.count, s.bytes, s.lastUse, s.foreign].every(isNumber) &&
		Array.isArray(s.temps) &&
		s.temps.every(isTemp) &&
		(s.linked === undefined || isLinked(s.linked))
	);
}

/**
 * What stats counted in each key directory, kept in <root>/ltocache.summary.json
 * so that stats reads only the directories that changed since: a summary
 * holds while the directory's device, inode and mtime (in nanoseconds) are
 * what they were before it was counted. Every way lld and prune change what
 * a directory holds changes its mtime: lld creates a temporary file and
 * renames it in, prune unlinks, a link's metadata is written by rename.
 * What does not change it is read afresh each time: the metadata the shim
 * touches on every link (the directory's last use), and its content. A hit
 * that moved only an entry's atime shows through that touch; lld never
 * rewrites an entry in place. File times come from a clock that ticks
 * coarsely, so a change made right after the directory was counted could
 * keep its mtime: a directory changed less than two seconds before the count
 * began is counted again next time rather than summarized (git's "racily
 * clean" rule).
 */
class Summaries {
	private readonly file: string;
	private readonly started = Date.now();
	private readonly old: Record<string, Summary>;
	private readonly fresh: Record<string, Summary> = {};
	private readonly visited = new Set<string>();
	private changed = false;

	constructor(
		private readonly root: string,
		private readonly skipped: Skip[],
	) {
		this.file = path.join(root, SUMMARY_NAME);
		this.old = this.load();
	}

	/**
	 * The summaries this user's stats wrote: another member of a shared root may replace the file (the
	 * root is theirs to write in too), and one of theirs would be taken for what is on disk. Each is taken
	 * only with the fields it must have, of their types (a count that is a string would be added as text).
	 */
	private load(): Record<string, Summary> {
		let fd: number | undefined;
		try {
			fd = openOwnFile(this.file, fs.constants.O_RDONLY);
			if (fs.fstatSync(fd).uid !== process.getuid?.()) return {};
			const { dirs } = JSON.parse(readOwnFd(fd, 64 * 1024 ** 2)?.data.toString('utf8') ?? '') as { dirs?: unknown };
			return Object.fromEntries(Object.entries(dirs ?? {}).filter(([, summary]) => isSummary(summary)));
		} catch {
			return {};
		} finally {
			if (fd !== undefined) fs.closeSync(fd);
		}
	}

	key(dir: string, name: string): Key | undefined {
		const st = fs.lstatSync(dir, { bigint: true, throwIfNoEntry: false });
		// An .incbin variant shares its entries' files with siblings seeded from it or it from them: a seeding
		// adds names to them without changing this directory, so which have more than one is read each time.
		if (!st || isIncbinVariant(name)) return scanKey(dir, name, false, this.skipped);
		const id = `${st.dev}:${st.ino}:${st.mtimeNs}`;
		const rel = path.relative(this.root, dir);
		this.visited.add(rel);
		const known = this.old[rel];
		if (known?.id === id) {
			this.fresh[rel] = known;
			const meta = fs.lstatSync(path.join(dir, META_FILE), { throwIfNoEntry: false });
			const { count, bytes, lastUse, temps, foreign, linked } = known;
			return {
				name,
				dir,
				count,
				bytes,
				lastUse,
				temps,
				foreign,
				...(linked ? { linked } : {}),
				entries: [],
				...(meta?.isFile() ? { meta: readMeta(dir), touched: meta.mtimeMs } : { touched: 0 }),
			};
		}
		const key = scanKey(dir, name, false, this.skipped);
		if (!key) return undefined;
		if (Number(st.mtimeNs / 1_000_000n) < this.started - 2000) {
			const { count, bytes, lastUse, temps, foreign, linked } = key;
			this.fresh[rel] = { id, count, bytes, lastUse, temps, foreign, ...(linked ? { linked } : {}) };
			this.changed = true;
		}
		return key;
	}

	/** Best effort: a root stats cannot write is counted in full every time. */
	save(): void {
		// Summaries of directories this scan did not visit (another --kernel) are kept; vanished ones go.
		for (const [rel, summary] of Object.entries(this.old)) {
			if (this.visited.has(rel)) this.changed ||= !(rel in this.fresh);
			else if (fs.existsSync(path.join(this.root, rel))) this.fresh[rel] = summary;
			else this.changed = true;
		}
		if (!this.changed) return;
		const tmp = tempName(this.file);
		try {
			writeOwnFile(tmp, JSON.stringify({ version: 1, dirs: this.fresh }), 0o644);
			fs.renameSync(tmp, this.file);
		} catch {
			fs.rmSync(tmp, { force: true });
		}
	}
}

export type Totals = { entries: number; bytes: number; lastUse: number | null; temps: number };

/** Entries are names; bytes are what they take on disk, a file with several names (in several keys) once. */
export function totals(keys: Key[]): Totals {
	let entries = 0;
	let bytes = 0;
	let lastUse = 0;
	let temps = 0;
	const seen = new Set<string>();
	for (const key of keys) {
		entries += key.count;
		bytes += key.bytes;
		temps += key.temps.length;
		lastUse = Math.max(lastUse, key.touched, key.lastUse);
		for (const [link, size] of key.linked ?? []) {
			if (seen.has(link)) bytes -= size;
			else seen.add(link);
		}
	}
	return { entries, bytes, lastUse: lastUse || null, temps };
}

/** What entries take on disk: a file with several names once. */
export function diskBytes(entries: Entry[]): number {
	const seen = new Set<string>();
	let bytes = 0;
	for (const e of entries) {
		if (e.link !== undefined) {
			if (seen.has(e.link)) continue;
			seen.add(e.link);
		}
		bytes += e.bytes;
	}
	return bytes;
}
