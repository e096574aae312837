// The root's lock, held by prune, clear and stats --zero: a directory made
// with mkdir (atomic, on NFS too) holding who made it. It lives as long as
// the process holding it: a waiter takes it over once that process is gone
// (on this machine: its pid no longer runs the process that took it), however
// long the work takes and however loaded the machine is. A holder on another
// machine cannot be asked; its lock is refreshed every few seconds and taken
// over once it has not been for a minute. A waiter says whom it waits for.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LOCK_NAME } from '../shared/root.js';

const OWNER_FILE = 'owner.json';
/** How often the holder refreshes the lock's mtime, for waiters on other machines. */
const REFRESH_MS = 2000;
/** A lock of another machine's not refreshed for this long is taken over. */
const STALE_MS = 60_000;
/** A lock without an owner (its holder died between mkdir and writing it, or an older ltocache's) is taken over sooner. */
const STALE_UNOWNED_MS = 10_000;
/** A waiter says whom it waits for once it has waited this long. */
const SAY_AFTER_MS = 1000;

type Owner = { pid: number; host: string; command: string; start: string; since: number };

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
		const owner = JSON.parse(fs.readFileSync(path.join(lock, OWNER_FILE), 'utf8')) as Owner;
		return typeof owner.pid === 'number' && typeof owner.host === 'string' ? owner : undefined;
	} catch {
		return undefined;
	}
}

/** Whether the process that took the lock still runs: asked of the kernel on this machine, told by the lock's refreshes elsewhere. */
function holderAlive(lock: string, owner: Owner | undefined): boolean {
	if (owner && owner.host === os.hostname()) {
		try {
			process.kill(owner.pid, 0);
		} catch (error) {
			if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
		}
		const start = startOf(owner.pid);
		return start === '' || owner.start === '' || start === owner.start;
	}
	const mtime = fs.statSync(lock, { throwIfNoEntry: false })?.mtimeMs;
	if (mtime === undefined) return false;
	return Date.now() - mtime < (owner ? STALE_MS : STALE_UNOWNED_MS);
}

const describe = (owner: Owner | undefined) =>
	owner ? `pid ${owner.pid}${owner.host === os.hostname() ? '' : ` on ${owner.host}`} (${owner.command})` : 'another process';

/**
 * Take over a dead holder's lock: renamed aside first (one waiter wins the
 * rename), then removed. The owner is read again right before, so a lock
 * taken meanwhile by a live process is left alone.
 */
function takeOver(lock: string, dead: Owner | undefined): void {
	const now = readOwner(lock);
	if (now?.pid !== dead?.pid || now?.since !== dead?.since) return;
	const aside = `${lock}.dead-${process.pid}-${Date.now()}`;
	try {
		fs.renameSync(lock, aside);
	} catch {
		return; // another waiter was first
	}
	fs.rmSync(aside, { recursive: true, force: true });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Hold the root's lock while fn runs; fn is told whether the lock was lost
 * (taken over by a waiter that judged this process gone: only from another
 * machine, after a minute without refreshes). Waits as long as the holder
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
		command: ['ltocache', ...process.argv.slice(2)].join(' '),
		start: startOf(process.pid),
		since: Date.now(),
	};
	const waitStart = Date.now();
	let said: string | undefined;
	for (let delay = 50; ; delay = Math.min(delay * 2, 500)) {
		try {
			fs.mkdirSync(lock);
			break;
		} catch (error) {
			if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
				throw new Error(`cannot take the lock ${lock} (${(error as NodeJS.ErrnoException).code})`);
			}
		}
		if (!fs.statSync(lock, { throwIfNoEntry: false })?.isDirectory()) {
			throw new Error(`cannot take the lock ${lock}: it is not a directory (remove it if no ltocache runs)`);
		}
		const owner = readOwner(lock);
		if (!holderAlive(lock, owner)) {
			takeOver(lock, owner);
			continue;
		}
		const who = describe(owner);
		if (Date.now() - waitStart >= SAY_AFTER_MS && who !== said) {
			say(`waiting for ${who} to release the lock on ${root}`);
			said = who;
		}
		await sleep(delay);
	}
	const ownerFile = path.join(lock, OWNER_FILE);
	fs.writeFileSync(`${ownerFile}.tmp`, JSON.stringify(me));
	fs.renameSync(`${ownerFile}.tmp`, ownerFile);
	let compromised = false;
	const refresh = setInterval(() => {
		const owner = readOwner(lock);
		if (owner?.pid !== me.pid || owner.since !== me.since) {
			compromised = true;
			return;
		}
		const now = new Date();
		try {
			fs.utimesSync(lock, now, now);
		} catch {}
	}, REFRESH_MS);
	refresh.unref();
	try {
		return await fn(() => compromised);
	} finally {
		clearInterval(refresh);
		const owner = readOwner(lock);
		if (owner?.pid === me.pid && owner.since === me.since) fs.rmSync(lock, { recursive: true, force: true });
	}
}
