// After a cached link failed: whether the cache made it fail, so that the
// same link without a cache, the one the build would have run, runs instead.
// Told from the cache directory alone: lld's diagnostics go to the build's
// stderr untouched (read through a pipe, they would lose their colours).
import { lstatSync, readdirSync, statfsSync, statSync } from 'node:fs';
import { classify } from '../shared/keydir.js';
import type { Outcome } from './run.js';

/**
 * How far apart two times set by one change may be: a file's ctime may be
 * the clock's last tick where its directory's mtime is exact (Linux's
 * multigrain timestamps), a few ms at most.
 */
const CLOCK_SLACK_NS = 20_000_000n;
/**
 * lld and the remote's downloads rename an entry in right after writing it:
 * its ctime is within this of its mtime, however loaded the disk. An entry
 * whose ctime is later was not renamed in then: a link with a remote set
 * its times again after lld read it (src/shim/remote.ts), which says
 * nothing of this directory's writes. (Only an entry written less than
 * this before another link read it and set its times could still count.)
 */
const RENAMED_NS = 2_000_000_000n;

/**
 * Whether a failed link failed on its cache, not on its inputs: then the
 * same link without a cache is the one the build would have run. lld 14
 * aborts (SIGABRT) when it cannot write an entry, lld 16 and later exit 1
 * with "LLVM ERROR"; an ordinary link error also exits 1, and must not be
 * run (and said) twice. lld writes an entry to a temporary file in the
 * directory and renames it in, and removes the temporary file when the
 * write fails: so a cache write failed if the directory changed last by
 * something other than an entry renamed in during the link (the temporary
 * file's removal, at least CLOCK_SLACK_NS after the last such rename), or
 * if its file system has no inode left to create one. An ordinary error
 * either leaves the directory untouched (before ThinLTO), last changed by
 * the rename of an entry it wrote, or pruned by lld after its writes (the
 * timestamp rewritten during the link; another link's prune in that moment
 * would pass for this one's). before: the directory as lld started,
 * its names and mtime. A name there is none of this link's lld's renames,
 * though it may have been renamed in a moment before (a download): it is
 * passed over, or a write that failed right after would pass for the
 * download's rename.
 */
export function cacheFailed(
	outcome: Outcome,
	dir: string,
	startedNs: bigint,
	modules: number,
	before?: { names: ReadonlySet<string>; mtimeNs: bigint },
): boolean {
	// Another signal is the build's, or a crash the cache did not cause.
	if (outcome.signal !== null && outcome.signal !== 'SIGABRT') return false;
	try {
		const st = statfsSync(dir);
		if (st.files > 0 && st.ffree < modules + 1) return true;
		const changed = statSync(dir, { bigint: true }).mtimeNs;
		// Untouched by this link: whatever failed, it was not a write into the cache.
		if (changed < startedNs || changed === before?.mtimeNs) return false;
		// lld prunes once every entry is written, and its pruning rewrites the timestamp: a link that got that far
		// failed after its writes, whatever the entries it pruned did to the directory's mtime.
		const stamp = lstatSync(`${dir}/llvmcache.timestamp`, { bigint: true, throwIfNoEntry: false });
		if (stamp?.isFile() && stamp.mtimeNs >= startedNs) return false;
		for (const file of readdirSync(dir)) {
			if (before?.names.has(file)) continue;
			const entry = lstatSync(`${dir}/${file}`, { bigint: true, throwIfNoEntry: false });
			if (entry && entry.ctimeNs + CLOCK_SLACK_NS >= changed && entry.ctimeNs - entry.mtimeNs < RENAMED_NS) return false;
		}
		return true;
	} catch {
		return false;
	}
}

/**
 * The name of an entry in dir that is not a regular file, if any: lld fails
 * a link on a directory under an entry's name, and on a symlink to one that
 * is not an object (another member's, in a shared root), and prune leaves
 * both; such a link runs again without a cache. Looked for only after a
 * failed link.
 */
export function strayEntry(dir: string): string | undefined {
	try {
		for (const name of readdirSync(dir)) {
			if (classify(name) !== 'entry') continue;
			const st = lstatSync(`${dir}/${name}`, { throwIfNoEntry: false });
			if (st && !st.isFile()) return name;
		}
	} catch {} // gone: nothing there failed it
	return undefined;
}
