// Whether a failed link failed on its cache (src/shim/failure.ts), told from
// the directory as lld leaves it. lld's own ways of failing are in
// test/integration/failedlink.test.ts; these are the orders of events around
// a download the moment before lld starts, which a real link hits only by
// chance.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { cacheFailed } from '../../src/shim/failure.js';

const dirs: string[] = [];
afterAll(() => {
	for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});
const fresh = () => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ltocache-failure-'));
	dirs.push(dir);
	return dir;
};
const failed = { code: 1, signal: null };
/** An entry written aside and renamed in, as lld and a download do. */
const rename = (dir: string, name: string) => {
	fs.writeFileSync(path.join(dir, `${name}.tmp`), 'object');
	fs.renameSync(path.join(dir, `${name}.tmp`), path.join(dir, name));
};
const snapshot = (dir: string) => ({ names: new Set(fs.readdirSync(dir)), mtimeNs: fs.statSync(dir, { bigint: true }).mtimeNs });
const pause = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
const startedNs = () => BigInt(Date.now() - 10) * 1_000_000n;

it('a cache write that failed a few ms after an entry was downloaded is told apart from that download', () => {
	// What the case needs: the failed write within 20 ms of the download (a loaded machine may pause between; then again).
	let tried = 0;
	for (; tried < 20; tried++) {
		const dir = fresh();
		rename(dir, 'llvmcache-DOWNLOADED');
		const started = startedNs();
		const before = snapshot(dir);
		pause(3);
		// lld's write: its temporary file made, the write failing, the file removed.
		fs.writeFileSync(path.join(dir, 'Thin-lld.tmp.o'), '');
		fs.rmSync(path.join(dir, 'Thin-lld.tmp.o'));
		const changed = fs.statSync(dir, { bigint: true }).mtimeNs;
		const entry = fs.statSync(path.join(dir, 'llvmcache-DOWNLOADED'), { bigint: true });
		if (changed === before.mtimeNs || changed - entry.ctimeNs >= 20_000_000n) continue;
		expect(cacheFailed(failed, dir, started, 1, before)).toBe(true);
		// Without knowing what was there as lld started, the download's rename stood for lld's last change.
		expect(cacheFailed(failed, dir, started, 1)).toBe(false);
		break;
	}
	expect(tried).toBeLessThan(20);
});

it('a directory lld left as it was, a download renamed in just before it started: not the cache', () => {
	const dir = fresh();
	rename(dir, 'llvmcache-DOWNLOADED');
	const started = startedNs();
	const before = snapshot(dir);
	expect(cacheFailed(failed, dir, started, 1, before)).toBe(false);
});

it('an entry lld renamed in before the link failed on something else: not the cache', () => {
	const dir = fresh();
	rename(dir, 'llvmcache-DOWNLOADED');
	const started = startedNs();
	const before = snapshot(dir);
	pause(3);
	rename(dir, 'llvmcache-WRITTEN');
	expect(cacheFailed(failed, dir, started, 1, before)).toBe(false);
});

it('a temporary file made and removed, no entry renamed in: the cache', () => {
	const dir = fresh();
	const started = startedNs();
	const before = snapshot(dir);
	pause(3);
	fs.writeFileSync(path.join(dir, 'Thin-lld.tmp.o'), '');
	fs.rmSync(path.join(dir, 'Thin-lld.tmp.o'));
	expect(cacheFailed(failed, dir, started, 1, before)).toBe(true);
	// A signal other than lld 14's abort is the build's.
	expect(cacheFailed({ code: null, signal: 'SIGTERM' }, dir, started, 1, before)).toBe(false);
});
