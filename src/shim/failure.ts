// After a cached link failed: whether the cache made it fail, so that the
// same link without a cache, the one the build would have run, runs instead.
// Told from the cache directory alone: lld's diagnostics go to the build's
// stderr untouched (read through a pipe, they would lose their colours).
import { closeSync, constants, fstatSync, lstatSync, readdirSync, readSync, statfsSync, statSync, unlinkSync } from 'node:fs';
import { classify } from '../shared/keydir.js';
import { openOwnFile } from '../shared/root.js';
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
 * The entries in dir that lld cannot link, if any, said as `NAME, why`
 * (the first, and how many more): lld
 * fails a link on a directory under an entry's name, on a symlink to one
 * that is not an object (another member's, in a shared root), and on a
 * regular file that is not a whole object: empty or cut short, as an entry
 * renamed in just before the machine went down is left on a file system
 * that had not written its data yet, or something else. lld takes any
 * file under the name for a hit, so every link of that module failed for
 * good. Prune leaves the first two, and such a link runs again without a
 * cache; each such regular file is removed, so the next link writes the
 * entry afresh. Looked for only after a failed link. asm: the link's entries
 * are assembly (--lto-emit-asm), not objects.
 */
export function strayEntry(dir: string, asm = false): string | undefined {
	const found: string[] = [];
	try {
		for (const name of readdirSync(dir)) {
			if (classify(name) !== 'entry') continue;
			const path = `${dir}/${name}`;
			const st = lstatSync(path, { throwIfNoEntry: false });
			if (!st) continue;
			if (!st.isFile()) {
				found.push(`${name}, not a regular file`);
				continue;
			}
			const broken = brokenObject(path, asm);
			if (broken === undefined) continue;
			try {
				unlinkSync(path);
				found.push(`${name}, ${broken} (removed)`);
			} catch {
				found.push(`${name}, ${broken}`);
			}
		}
	} catch {} // gone: nothing there failed it
	if (found.length === 0) return undefined;
	return found.length === 1 ? found[0] : `${found[0]}, and ${found.length - 1} more`;
}

/** Why a regular file under an entry's name is no object lld can link: empty, not ELF, or shorter than its section headers say. */
function brokenObject(path: string, asm: boolean): string | undefined {
	let fd: number;
	try {
		fd = openOwnFile(path, constants.O_RDONLY);
	} catch {
		return undefined; // unreadable, or no regular file since the lstat: nothing to tell
	}
	try {
		const size = fstatSync(fd).size;
		if (size === 0) return 'empty';
		const head = Buffer.alloc(64);
		const got = readSync(fd, head, 0, 64, 0);
		if (head.toString('latin1', 0, 4) !== '\x7fELF') return asm ? undefined : 'not an object';
		const wide = head[4] === 2;
		const big = head[5] === 2;
		if (got < (wide ? 64 : 52)) return 'cut short';
		const shoff = wide
			? big
				? head.readBigUInt64BE(0x28)
				: head.readBigUInt64LE(0x28)
			: BigInt(big ? head.readUInt32BE(0x20) : head.readUInt32LE(0x20));
		const at = wide ? 0x3a : 0x2e;
		const entsize = big ? head.readUInt16BE(at) : head.readUInt16LE(at);
		const count = big ? head.readUInt16BE(at + 2) : head.readUInt16LE(at + 2);
		return shoff + BigInt(entsize * count) > BigInt(size) ? 'cut short' : undefined;
	} catch {
		return undefined;
	} finally {
		closeSync(fd);
	}
}
