// Prune and clear: deciding what goes, then deleting it under a lock.
//
// Rules (each has a test): only llvmcache-* regular files are evicted;
// temporaries of links in flight go only once stale; foreign files and
// symlinks are never touched; a key directory is removed only when it is
// empty of everything but bookkeeping and no link has used it for an hour,
// and only with rmdir, which refuses a directory a link has just written to.
import fs from 'node:fs';
import path from 'node:path';
import lockfile from 'proper-lockfile';
import { LOCK_NAME, META_FILE, NO_KERNEL, keyName } from '../shared/layout.js';
import { IDLE_DIR_MS, STALE_TEMP_MS, scanRoot, totals, yieldToTimers, type Entry, type Kernel, type Key, type Scope, type Temp } from './scan.js';

export type Limits = {
	maxBytes?: number;
	/** A percentage of free space plus the cache's own size (LLVM's cache_size). */
	maxPercent?: number;
	/** Milliseconds since last use. */
	maxAge?: number;
	maxFiles?: number;
	staleKernels?: boolean;
};

export type Report = {
	root: string;
	dryRun: boolean;
	removed: { entries: number; bytes: number; tempFiles: number; directories: number };
	remaining: { entries: number; bytes: number };
};

/**
 * Hold the root's lock while fn runs. A lock whose holder was killed goes
 * stale after a few seconds without updates and is taken over; the retries
 * outlast that.
 */
export async function withLock<T>(root: string, fn: (lost: () => boolean) => Promise<T>): Promise<T> {
	let compromised = false;
	const release = await lockfile.lock(root, {
		lockfilePath: path.join(root, LOCK_NAME),
		realpath: false,
		stale: 5000,
		retries: { retries: 40, minTimeout: 100, maxTimeout: 400 },
		onCompromised: () => {
			compromised = true;
		},
	});
	try {
		return await fn(() => compromised);
	} finally {
		await release().catch(() => {});
	}
}

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
	let bytes = keep.reduce((sum, e) => sum + e.bytes, 0);
	let maxBytes = limits.maxBytes ?? Infinity;
	if (limits.maxPercent !== undefined) {
		maxBytes = Math.min(maxBytes, Math.floor(((freeBytes + bytes) * limits.maxPercent) / 100));
	}
	const maxFiles = limits.maxFiles ?? Infinity;
	if (bytes > maxBytes || keep.length > maxFiles) {
		keep = keep.sort((a, b) => a.lastUse - b.lastUse);
		let i = 0;
		while (i < keep.length && (bytes > maxBytes || keep.length - i > maxFiles)) {
			bytes -= keep[i].bytes;
			evict.push(keep[i++]);
		}
	}
	return evict;
}

function unlink(file: string): boolean {
	try {
		fs.unlinkSync(file);
		return true;
	} catch (error) {
		if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false; // lld pruned it first
		throw error;
	}
}

function rmdir(dir: string): boolean {
	try {
		fs.rmdirSync(dir);
		return true;
	} catch (error) {
		if (['ENOTEMPTY', 'EEXIST', 'ENOENT'].includes((error as NodeJS.ErrnoException).code ?? '')) return false;
		throw error;
	}
}

/** Remove a key directory that holds nothing but bookkeeping and has been idle for an hour. */
function removeIfIdle(key: Key, evicted: Set<string>): boolean {
	if (key.foreign > 0 || key.temps.length > 0 || key.entries.some((e) => !evicted.has(e.file))) return false;
	const meta = path.join(key.dir, META_FILE);
	// Looked at again now, not at scan time: the shim touches the metadata
	// before it runs lld, and lld needs milliseconds to start writing, so a
	// link that starts after this check finds no directory and creates it.
	const touched = fs.lstatSync(meta, { throwIfNoEntry: false })?.mtimeMs ?? fs.lstatSync(key.dir, { throwIfNoEntry: false })?.mtimeMs ?? Date.now();
	if (Date.now() - touched < IDLE_DIR_MS) return false;
	unlink(path.join(key.dir, 'llvmcache.timestamp'));
	unlink(meta);
	return rmdir(key.dir);
}

/**
 * Delete the given entries, stale temporaries and idle empty directories
 * under the scanned kernels. With dryRun, only count.
 */
async function carryOut(root: string, kernels: Kernel[], evict: Entry[], dryRun: boolean, lost: () => boolean, now: number): Promise<Report> {
	const report = emptyReport(root, dryRun);
	const evicted = new Set<string>();
	for (const [i, entry] of evict.entries()) {
		if (i % 1000 === 999) await yieldToTimers();
		if (lost()) throw new Error(`lost the lock on ${root}; stopped`);
		if (dryRun || unlink(entry.file)) {
			report.removed.entries++;
			report.removed.bytes += entry.bytes;
		}
		evicted.add(entry.file);
	}
	const staleTemps: Temp[] = kernels.flatMap((k) => k.keys.flatMap((key) => key.temps.filter((t) => now - t.mtime > STALE_TEMP_MS)));
	for (const temp of staleTemps) {
		if (dryRun || unlink(temp.file)) report.removed.tempFiles++;
	}
	for (const kernel of kernels) {
		let removedKeys = 0;
		for (const key of kernel.keys) {
			key.temps = key.temps.filter((t) => !staleTemps.includes(t));
			if (!dryRun && removeIfIdle(key, evicted)) removedKeys++;
		}
		report.removed.directories += removedKeys;
		if (!dryRun && removedKeys === kernel.keys.length && rmdir(kernel.dir)) report.removed.directories++;
	}
	const left = totals(kernels.flatMap((k) => k.keys));
	const evictedBytes = evict.reduce((sum, e) => sum + e.bytes, 0);
	report.remaining = { entries: left.entries - evicted.size, bytes: left.bytes - evictedBytes };
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

function emptyReport(root: string, dryRun: boolean): Report {
	return { root, dryRun, removed: { entries: 0, bytes: 0, tempFiles: 0, directories: 0 }, remaining: { entries: 0, bytes: 0 } };
}

export async function prune(root: string, limits: Limits, scope: Scope, dryRun: boolean): Promise<Report> {
	if (!fs.existsSync(root)) return emptyReport(root, dryRun);
	return withLock(root, async (lost) => {
		const now = Date.now();
		const kernels = await scanRoot(root, scope);
		const evict = planPrune(kernels, limits, now, limits.maxPercent === undefined ? 0 : freeSpace(root));
		return carryOut(root, kernels, evict, dryRun, lost, now);
	});
}

/** Whether a key directory belongs to the external module (or original cache path) at dir. */
export function keyMatches(key: Key, dir: string): boolean {
	return key.name === keyName(dir) || key.meta?.extmod === dir || key.meta?.original === dir;
}

export async function clear(root: string, scope: Scope & { extmod?: string }, dryRun: boolean): Promise<Report> {
	if (!fs.existsSync(root)) return emptyReport(root, dryRun);
	return withLock(root, async (lost) => {
		const now = Date.now();
		const kernels = await scanRoot(root, scope);
		if (scope.extmod !== undefined) {
			for (const kernel of kernels) kernel.keys = kernel.keys.filter((key) => keyMatches(key, scope.extmod!));
		}
		const evict = kernels.flatMap((k) => k.keys.flatMap((key) => key.entries));
		return carryOut(root, kernels, evict, dryRun, lost, now);
	});
}
