// The root's lock, held by prune, clear and stats --zero: proper-lockfile's
// directory (made with mkdir, atomic on NFS too), refreshed every 2 s while
// the work runs and stale after a minute without. Inside it, owner.json says
// who holds it, so a waiter says whom it waits for and, on this machine, asks
// the kernel whether that process still runs: a live holder keeps the lock
// however long the work takes and however loaded the machine is, and a dead
// one's is taken over at once. A holder on another machine cannot be asked:
// its lock goes stale as proper-lockfile's does. Nor can one in another PID
// namespace (a container sharing the root, often with the host's name): its
// pid means another process here, or none.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import lockfile from 'proper-lockfile';
import { shown } from '../shared/bytes.js';
import { DEAD_LOCK_PREFIX, LOCK_NAME, readOwnFile, uniqueTag } from '../shared/root.js';

const OWNER_FILE = 'owner.json';
/** How often the holder refreshes the lock's mtime (proper-lockfile's `update`), for waiters on other machines. */
const REFRESH_MS = 2000;
/** A lock not refreshed for this long is stale (proper-lockfile's `stale`), unless its holder runs on this machine. */
const STALE_MS = 60_000;
/** A lock without an owner (its holder died between mkdir and writing it, or an older ltocache's) is taken over sooner. */
const STALE_UNOWNED_MS = 10_000;
/** A waiter says whom it waits for once it has waited this long. */
const SAY_AFTER_MS = 1000;

/** ns: the PID namespace its pid is of (absent in an older ltocache's owner: taken for this one). */
type Owner = { pid: number; host: string; ns?: string; command: string; start: string; since: number };

/** The PID namespace this process's pids are of ('pid:[4026531836]'), or '' where /proc does not say. */
function pidNamespace(): string {
	try {
		return fs.readlinkSync('/proc/self/ns/pid');
	} catch {
		return '';
	}
}

/** Whether the holder's pid can be asked about here: this machine, and this PID namespace as far as either knows. */
const askable = (owner: Owner) => owner.host === os.hostname() && (!owner.ns || !pidNamespace() || owner.ns === pidNamespace());

/** When a process started, in clock ticks since boot (/proc/PID/stat's 22nd field): a pid reused by another process has another. */
function startOf(pid: number): string {
	try {
		const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
		return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
	} catch {
		return '';
	}
}

function readOwner(lock: string): Owner | undefined {
	try {
		const owner = JSON.parse(readOwnFile(path.join(lock, OWNER_FILE), 64 * 1024)?.data.toString('utf8') ?? '') as Owner;
		return typeof owner.pid === 'number' && typeof owner.host === 'string' ? owner : undefined;
	} catch {
		return undefined;
	}
}

const same = (a: Owner | undefined, b: Owner | undefined) => a?.pid === b?.pid && a?.since === b?.since;

/** Whether the process that took the lock still runs: asked of the kernel on this machine, told by the lock's refreshes elsewhere. */
function holderAlive(stat: fs.Stats, owner: Owner | undefined): boolean {
	if (owner && askable(owner)) {
		try {
			process.kill(owner.pid, 0);
		} catch (error) {
			if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
		}
		const start = startOf(owner.pid);
		return start === '' || owner.start === '' || start === owner.start;
	}
	return Date.now() - stat.mtimeMs < (owner ? STALE_MS : STALE_UNOWNED_MS);
}

function describe(owner: Owner | undefined): string {
	if (!owner) return 'another process';
	const where = owner.host !== os.hostname() ? ` on ${owner.host}` : askable(owner) ? '' : ' in another PID namespace';
	return `pid ${owner.pid}${where} (${owner.command})`;
}

/**
 * Take over a dead holder's lock: renamed aside (of two waiters, one wins the
 * rename), then removed with what is in it (proper-lockfile's rmdir would
 * refuse the owner file). Right before, the lock is checked to be the very
 * one judged dead (same directory, same mtime, same owner), so one taken
 * meanwhile by a live process is left alone.
 */
function takeOver(lock: string, judged: fs.Stats, dead: Owner | undefined): void {
	const now = fs.statSync(lock, { throwIfNoEntry: false });
	if (now?.ino !== judged.ino || now.mtimeMs !== judged.mtimeMs || !same(readOwner(lock), dead)) return;
	const aside = path.join(path.dirname(lock), `${DEAD_LOCK_PREFIX}${uniqueTag()}`);
	try {
		fs.renameSync(lock, aside);
	} catch {
		return; // another waiter was first
	}
	try {
		fs.rmSync(aside, { recursive: true, force: true });
	} catch {} // another member's, in a shared root, whose owner file is not this user's to remove: the lock is free all the same
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Hold the root's lock while fn runs; fn is told whether the lock was lost
 * (proper-lockfile found it taken over: only a waiter on another machine
 * does that, after a minute without refreshes). Waits as long as the holder
 * lives.
 * @param say where a waiter says whom it waits for (stderr)
 */
export async function withLock<T>(
	root: string,
	fn: (lost: () => boolean) => Promise<T>,
	say: (text: string) => void = (text) => process.stderr.write(`ltocache: ${text}\n`),
): Promise<T> {
	const lock = path.join(root, LOCK_NAME);
	const me: Owner = {
		pid: process.pid,
		host: os.hostname(),
		ns: pidNamespace(),
		command: ['ltocache', ...process.argv.slice(2)].join(' '),
		start: startOf(process.pid),
		since: Date.now(),
	};
	const dropOwner = (dir: string) => {
		if (same(readOwner(dir), me)) fs.rmSync(path.join(dir, OWNER_FILE), { force: true });
	};
	let compromised = false;
	const options: lockfile.LockOptions = {
		lockfilePath: lock,
		realpath: false,
		stale: STALE_MS,
		update: REFRESH_MS,
		// Waiting is done here, to say whom for and to ask whether the holder lives;
		// proper-lockfile would also retry an error that no wait cures (EACCES, EROFS).
		retries: 0,
		// The owner is written as the directory is made, before proper-lockfile
		// takes the directory's mtime as its own: writing it after would change
		// that mtime and proper-lockfile's next refresh would call the lock lost.
		fs: {
			...fs,
			mkdir: (dir: string, done: (error: NodeJS.ErrnoException | null) => void) =>
				fs.mkdir(dir, (error) => {
					if (error) return done(error);
					fs.writeFile(path.join(dir, OWNER_FILE), JSON.stringify(me), (written) => {
						if (written) fs.rm(dir, { recursive: true, force: true }, () => done(written));
						else done(null);
					});
				}),
			// proper-lockfile removes the lock with rmdir, on release and from its exit
			// handler (a holder ended by SIGINT or SIGTERM too): this holder's owner goes
			// first. Another's stays, so a stale lock whose holder may still run is refused.
			rmdir: (dir: string, done: (error: NodeJS.ErrnoException | null) => void) => {
				dropOwner(dir);
				fs.rmdir(dir, done);
			},
			rmdirSync: (dir: string) => {
				dropOwner(dir);
				fs.rmdirSync(dir);
			},
		},
		onCompromised: () => {
			compromised = true;
		},
	};
	const waitStart = Date.now();
	let said: string | undefined;
	let release: () => Promise<void>;
	for (let delay = 50; ; delay = Math.min(delay * 2, 500)) {
		let code: string | undefined;
		try {
			release = await lockfile.lock(root, options);
			break;
		} catch (error) {
			code = (error as NodeJS.ErrnoException).code;
		}
		const stat = fs.statSync(lock, { throwIfNoEntry: false });
		if (stat && !stat.isDirectory()) {
			throw new Error(`cannot take the lock ${lock}: it is not a directory (remove it if no ltocache runs)`);
		}
		// ELOCKED: held and fresh. ENOTEMPTY: stale by its mtime, but proper-lockfile's
		// rmdir refused it for the owner inside, whose process may well still run.
		// ENOENT in a root that is there: another waiter removed the same stale lock
		// (proper-lockfile's rmdir) just after this one made it anew; try again.
		const raced = code === 'ENOENT' && fs.existsSync(root);
		if (code !== 'ELOCKED' && code !== 'ENOTEMPTY' && !raced) throw new Error(`cannot take the lock ${lock} (${code})`);
		if (!stat) continue; // released meanwhile
		const owner = readOwner(lock);
		if (!holderAlive(stat, owner)) {
			takeOver(lock, stat, owner);
			continue;
		}
		const who = describe(owner);
		if (Date.now() - waitStart >= SAY_AFTER_MS && who !== said) {
			say(`waiting for ${shown(who)} to release the lock on ${shown(root)}`);
			said = who;
		}
		await sleep(delay);
	}
	try {
		return await fn(() => compromised);
	} finally {
		if (!compromised) await release().catch(() => {});
	}
}
