// Prune and clear: deciding what goes, then deleting it under a lock.
//
// Rules (each has a test): only llvmcache-* regular files are evicted;
// temporaries of links in flight go only once stale; foreign files and
// symlinks are never touched; a key directory is removed only when it is
// empty of everything but bookkeeping and no link has used it for an hour,
// and only with rmdir, which refuses a directory a link has just written to.
import fs from 'node:fs';
import prettyBytes from 'pretty-bytes';
import { shown, toBytes } from '../shared/bytes.js';
import { compactCounters, zeroCounters } from '../shared/counters.js';
import { baseKeyName, IN_FLIGHT_MS, keyName, lastClaim, NO_KERNEL, removeDir, removeKeyDir, removeStaleSeeds } from '../shared/keydir.js';
import { pruneMemo } from '../shared/memo.js';
import type { Limits } from './limits.js';
import { withLock } from './lock.js';
import {
	diskBytes,
	type Entry,
	enterDir,
	type Kernel,
	type Key,
	type Progress,
	plural,
	type Scope,
	type Skip,
	SWAPPED,
	scanRoot,
	type Temp,
	totals,
	unknownKernel,
	yieldToTimers,
} from './scan.js';

export type Report = {
	root: string;
	/** What the command was limited to ('kernel 6.1.0-13-amd64', 'module /src/mod'); null for the whole root. remaining counts this set. */
	scope: string | null;
	dryRun: boolean;
	removed: { entries: number; bytes: number; tempFiles: number; directories: number };
	remaining: { entries: number; bytes: number };
	/** The directories and entries it could not read or remove, and why: the rest was done; the exit status is then 1. */
	skipped: Skip[];
};

/** Which entries go, in order: stale kernels, too old, then least recently used beyond the caps. */
export function planPrune(kernels: Kernel[], limits: Limits, now: number, freeBytes = 0): Entry[] {
	const evict: Entry[] = [];
	let keep: Entry[] = [];
	for (const kernel of kernels) {
		const stale = limits.staleKernels && !kernel.installed && kernel.release !== NO_KERNEL;
		for (const key of kernel.keys) {
			for (const entry of key.entries) {
				if (stale || (limits.maxAge !== undefined && entry.lastUse < now - limits.maxAge)) evict.push(entry);
				else keep.push(entry);
			}
		}
	}
	// A file with several names (src/cli/scan.ts's Entry) takes its bytes once, and frees them with its last name.
	const names = new Map<string, number>();
	for (const e of keep) if (e.link !== undefined) names.set(e.link, (names.get(e.link) ?? 0) + 1);
	let bytes = diskBytes(keep);
	let maxBytes = limits.maxBytes ?? Infinity;
	if (limits.maxPercent !== undefined) {
		maxBytes = Math.min(maxBytes, Math.floor(((freeBytes + bytes) * limits.maxPercent) / 100));
	}
	const maxFiles = limits.maxFiles ?? Infinity;
	if (bytes > maxBytes || keep.length > maxFiles) {
		keep = keep.sort((a, b) => a.lastUse - b.lastUse);
		let i = 0;
		while (i < keep.length && (bytes > maxBytes || keep.length - i > maxFiles)) {
			const e = keep[i++];
			const left = e.link === undefined ? 0 : names.get(e.link)! - 1;
			if (e.link !== undefined) names.set(e.link, left);
			if (left === 0) bytes -= e.bytes;
			evict.push(e);
		}
	}
	return evict;
}

/** The entries grouped by their directory, each group in the order given, the groups in the order they first appear. */
function byDirectory(entries: Entry[]): Map<string, Entry[]> {
	const groups = new Map<string, Entry[]>();
	for (const entry of entries) {
		const dir = entry.file.slice(0, entry.file.lastIndexOf('/'));
		const group = groups.get(dir);
		if (group) group.push(entry);
		else groups.set(dir, [entry]);
	}
	return groups;
}

/**
 * Remove a file; false if it was gone already or cannot be removed (then added to skipped).
 * @param name the file's name, when the process is in its directory
 */
function unlink(file: string, skipped: Skip[], name?: string): boolean {
	try {
		fs.unlinkSync(name ?? file);
		return true;
	} catch (error) {
		const code = (error as NodeJS.ErrnoException).code ?? String(error);
		if (code !== 'ENOENT') skipped.push({ path: file, error: code }); // ENOENT: lld pruned it first
		return false;
	}
}

/**
 * Remove a key directory that holds nothing but bookkeeping and has been idle for an hour.
 * @param back the working directory to return to from inside it
 */
function removeIfIdle(key: Key, evicted: Set<string>, skipped: Skip[], back: string): boolean {
	if (key.foreign > 0 || key.temps.length > 0 || key.entries.some((e) => !evicted.has(e.file))) return false;
	// Looked at again now, not at scan time: the shim claims the directory
	// before it runs lld, and lld needs milliseconds to start writing, so a
	// link that starts after this check finds no directory and creates it.
	if (Date.now() - (lastClaim(key.dir) ?? Date.now()) < IN_FLIGHT_MS) return false;
	const where = enterDir(key.dir, key.id);
	if (where === undefined) {
		skipped.push({ path: key.dir, error: SWAPPED });
		return false;
	}
	try {
		return removeKeyDir(key.dir, where === 'elsewhere' ? undefined : back);
	} catch (error) {
		skipped.push({ path: key.dir, error: (error as NodeJS.ErrnoException).code ?? String(error) });
		return false;
	}
}

function removeRelease(dir: string, skipped: Skip[]): boolean {
	try {
		return removeDir(dir);
	} catch (error) {
		skipped.push({ path: dir, error: (error as NodeJS.ErrnoException).code ?? String(error) });
		return false;
	}
}

/**
 * Delete the given entries, stale temporaries and idle empty directories
 * under the scanned kernels. With dryRun, only count.
 */
async function carryOut(
	root: string,
	kernels: Kernel[],
	evict: Entry[],
	dryRun: boolean,
	lost: () => boolean,
	now: number,
	scope: Scope & { extmod?: string },
	skipped: Skip[],
	progress?: Progress,
): Promise<Report> {
	const report = emptyReport(root, dryRun, scope);
	report.skipped = skipped;
	const evicted = new Set<string>();
	const all = kernels.flatMap((k) => k.keys.flatMap((key) => key.entries));
	/** How many names each file with several has (src/cli/scan.ts's Entry): its bytes are freed with the last. */
	const names = new Map<string, number>();
	for (const e of all) if (e.link !== undefined) names.set(e.link, (names.get(e.link) ?? 0) + 1);
	let yielded = Date.now();
	let i = 0;
	const cwd = process.cwd();
	const keys = new Map(kernels.flatMap((k) => k.keys.map((key) => [key.dir, key])));
	try {
		// A directory at a time, from inside it with bare names: the kernel then resolves one component per
		// unlink instead of the whole path, and never follows a symlink put at the directory's name since
		// the scan. The set is decided; only its order within a directory is kept.
		for (const [dir, entries] of byDirectory(evict)) {
			const where = dryRun ? 'elsewhere' : enterDir(dir, keys.get(dir)?.id);
			if (where === undefined) {
				skipped.push({ path: dir, error: SWAPPED });
				continue;
			}
			const inside = where !== 'elsewhere';
			for (const entry of entries) {
				// Timers (the lock's refresh) and progress run every tenth of a second, however slow the unlinks are.
				if (++i % 64 === 0 && Date.now() - yielded > 100) {
					progress?.(`${dryRun ? 'counted' : 'removed'} ${i} of ${plural(evict.length, 'entry', 'entries')}`);
					await yieldToTimers();
					yielded = Date.now();
				}
				if (lost()) throw new Error(`lost the lock on ${root}; stopped`);
				if (dryRun || unlink(entry.file, skipped, inside ? entry.file.slice(dir.length + 1) : undefined)) {
					report.removed.entries++;
					const left = entry.link === undefined ? 0 : names.get(entry.link)! - 1;
					if (entry.link !== undefined) names.set(entry.link, left);
					if (left === 0) report.removed.bytes += entry.bytes;
				}
				evicted.add(entry.file);
			}
		}
		for (const key of keys.values()) {
			const stale: Temp[] = key.temps.filter((t) => now - t.mtime > IN_FLIGHT_MS);
			if (stale.length === 0) continue;
			const where = dryRun ? 'elsewhere' : enterDir(key.dir, key.id);
			if (where === undefined) {
				skipped.push({ path: key.dir, error: SWAPPED });
				continue;
			}
			for (const temp of stale) {
				if (dryRun || unlink(temp.file, skipped, where === 'elsewhere' ? undefined : temp.file.slice(key.dir.length + 1)))
					report.removed.tempFiles++;
			}
			key.temps = key.temps.filter((t) => !stale.includes(t));
		}
		for (const kernel of kernels) {
			let removedKeys = 0;
			if (!dryRun) {
				try {
					removeStaleSeeds(kernel.dir, now);
				} catch {} // the release directory is read again below, and what cannot be removed is said there
			}
			for (const key of kernel.keys) if (!dryRun && removeIfIdle(key, evicted, skipped, cwd)) removedKeys++;
			report.removed.directories += removedKeys;
			if (!dryRun && removedKeys > 0 && removedKeys === kernel.keys.length && removeRelease(kernel.dir, skipped))
				report.removed.directories++;
		}
	} finally {
		if (process.cwd() !== cwd) process.chdir(cwd);
	}
	const left = totals(kernels.flatMap((k) => k.keys));
	report.remaining = { entries: left.entries - evicted.size, bytes: diskBytes(all.filter((e) => !evicted.has(e.file))) };
	return report;
}

function freeSpace(root: string): number {
	try {
		const st = fs.statfsSync(root);
		return st.bavail * st.bsize;
	} catch {
		return 0;
	}
}

/** The set a scoped command works on, in words; null for the whole root. */
function scopeText(scope: Scope & { extmod?: string }): string | null {
	const parts = [scope.kernel !== undefined && `kernel ${scope.kernel}`, scope.extmod !== undefined && `module ${scope.extmod}`];
	return parts.filter(Boolean).join(', ') || null;
}

/**
 * A --kernel or --extmod that names nothing in the root is an error, listing
 * what there is: `clear --kernel 6.1` that removed 0 entries and exited 0
 * would leave the user thinking 6.1's cache was gone.
 */
function checkMatched(root: string, scope: Scope & { extmod?: string }, kernels: Kernel[]): void {
	if (scope.kernel !== undefined && kernels.length === 0) throw unknownKernel(root, scope.kernel);
	if (scope.extmod !== undefined && kernels.every((k) => k.keys.length === 0)) {
		throw new Error(
			`--extmod ${scope.extmod} matches nothing in ${root}${scope.kernel ? ` for kernel ${scope.kernel}` : ''} (ltocache stats lists the modules)`,
		);
	}
}

function emptyReport(root: string, dryRun: boolean, scope: Scope & { extmod?: string } = {}): Report {
	return {
		root,
		scope: scopeText(scope),
		dryRun,
		removed: { entries: 0, bytes: 0, tempFiles: 0, directories: 0 },
		remaining: { entries: 0, bytes: 0 },
		skipped: [],
	};
}

export async function prune(root: string, limits: Limits, scope: Scope, dryRun: boolean, progress?: Progress): Promise<Report> {
	if (!fs.existsSync(root)) {
		checkMatched(root, scope, []);
		return emptyReport(root, dryRun);
	}
	return withLock(root, async (lost) => {
		const now = Date.now();
		const skipped: Skip[] = [];
		const kernels = await scanRoot(root, scope, true, progress, skipped);
		checkMatched(root, scope, kernels);
		const evict = planPrune(kernels, limits, now, limits.maxPercent === undefined ? 0 : freeSpace(root));
		const report = await carryOut(root, kernels, evict, dryRun, lost, now, scope, skipped, progress);
		if (!dryRun) {
			forEachKey(kernels, (dir) => compactCounters(dir, now));
			pruneMemo(root, now);
		}
		return report;
	});
}

/** Whether a key directory belongs to the external module (or original cache path) at dir. */
export function keyMatches(key: Key, dir: string): boolean {
	return baseKeyName(key.name) === keyName(toBytes(dir)) || key.meta?.extmod === dir || key.meta?.original === dir;
}

export async function clear(root: string, scope: Scope & { extmod?: string }, dryRun: boolean, progress?: Progress): Promise<Report> {
	if (!fs.existsSync(root)) {
		checkMatched(root, scope, []);
		return emptyReport(root, dryRun);
	}
	return withLock(root, async (lost) => {
		const now = Date.now();
		const skipped: Skip[] = [];
		const kernels = await scanRoot(root, scope, true, progress, skipped);
		if (scope.extmod !== undefined) {
			for (const kernel of kernels) kernel.keys = kernel.keys.filter((key) => keyMatches(key, scope.extmod!));
		}
		checkMatched(root, scope, kernels);
		const evict = kernels.flatMap((k) => k.keys.flatMap((key) => key.entries));
		const report = await carryOut(root, kernels, evict, dryRun, lost, now, scope, skipped, progress);
		// A cleared module starts counting again; `stats --zero` resets counters alone.
		if (!dryRun) forEachKey(kernels, zeroCounters);
		// What the shim remembers of inputs is no one module's: only a clear of everything forgets it.
		if (!dryRun && scope.kernel === undefined && scope.extmod === undefined) pruneMemo(root, now, 0);
		return report;
	});
}

/** For the key directories that are still there, each as the scan read it (fn is given '.' inside it); one that fails is left as it is. */
function forEachKey(kernels: Kernel[], fn: (dir: string) => void): void {
	const cwd = process.cwd();
	try {
		for (const key of kernels.flatMap((k) => k.keys)) {
			try {
				const where = enterDir(key.dir, key.id);
				if (where === 'elsewhere' ? fs.existsSync(key.dir) : where !== undefined) fn(where === 'elsewhere' ? key.dir : '.');
			} catch {}
		}
	} finally {
		if (process.cwd() !== cwd) process.chdir(cwd);
	}
}

/** @param binary sizes in KiB, MiB, GiB (else kB, MB, GB), as the user writes them (binaryUnits) */
export function renderReport(report: Report, json: boolean, binary = true): string {
	if (json) return `${JSON.stringify(report, null, 2)}\n`;
	const verb = report.dryRun ? 'would remove' : 'removed';
	const r = report.removed;
	const extra = [
		r.tempFiles && plural(r.tempFiles, 'stale temporary file'),
		r.directories && plural(r.directories, 'idle directory', 'idle directories'),
	].filter(Boolean);
	const set = report.scope ? ` of ${shown(report.scope)}` : '';
	return (
		`${verb} ${plural(r.entries, 'entry', 'entries')} (${prettyBytes(r.bytes, { binary })})${extra.length ? `, ${extra.join(', ')}` : ''}\n` +
		`${report.dryRun ? 'would keep' : 'kept'} ${plural(report.remaining.entries, 'entry', 'entries')} (${prettyBytes(report.remaining.bytes, { binary })})${set} in ${shown(report.root)}\n`
	);
}

/**
 * One line of progress on a terminal, for a prune or clear that runs longer
 * than a second: rewritten in place at most ten times a second, and erased
 * at the end. Nothing on a pipe or with --json.
 */
export function terminalProgress(json: boolean): { update: Progress; done: () => void } | undefined {
	if (json || !process.stderr.isTTY) return undefined;
	const start = Date.now();
	let last = 0;
	let shown = false;
	return {
		update(text) {
			const now = Date.now();
			if (now - start < 1000 || now - last < 100) return;
			last = now;
			shown = true;
			process.stderr.write(`\r\x1b[K${text}`);
		},
		done() {
			if (shown) process.stderr.write('\r\x1b[K');
		},
	};
}
