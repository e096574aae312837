// After a link it redirected, the shim starts `ltocache prune` detached, at
// most once a day: the build never waits for it.
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { LOCK_NAME, PRUNE_STAMP } from '../../src/shared/root.js';
import { makeEntry, makeKey } from '../helpers/cache.js';
import { compileThin, describeIf, hasToolchain, isRoot, SHIM, scratchRoot, withReadOnly } from '../helpers/tools.js';

const scratch = scratchRoot();

async function eventually(check: () => boolean, ms = 15_000): Promise<boolean> {
	const end = Date.now() + ms;
	while (Date.now() < end) {
		if (check()) return true;
		await new Promise((r) => setTimeout(r, 50));
	}
	return check();
}

/** A process's session id, from /proc/<pid>/stat. */
function session(pid: string | number): number {
	const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
	return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3]);
}

/** Processes running `ltocache prune` against root, with their session ids. */
function prunes(root: string): { pid: number; sid: number }[] {
	const found = [];
	for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
		try {
			const environ = fs.readFileSync(`/proc/${pid}/environ`, 'latin1');
			const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1');
			if (!cmdline.includes('ltocache\0prune') || !environ.includes(`LTOCACHE_DIR=${root}\0`)) continue;
			found.push({ pid: Number(pid), sid: session(pid) });
		} catch {}
	}
	return found;
}

describeIf(hasToolchain && isRoot, 'clang, ld.lld and root (for a read-only mount)')('automatic pruning', () => {
	let objects: string[];
	beforeAll(() => {
		objects = compileThin(scratch('obj'));
	});

	/** A redirected link: the tree is read-only, the cache root writable. */
	const link = (root: string, extra: Record<string, string> = {}) => {
		const tree = scratch('tree');
		const args = ['--thinlto-cache-dir=.thinlto-cache', '-r', '-o', path.join(scratch('out'), 'out.o'), ...objects];
		return withReadOnly(tree, 'sh', ['-c', 'cd "$0" && exec "$@"', tree, SHIM, ...args], {
			env: { LTOCACHE_DIR: root, KERNELRELEASE: '6.1.0-auto', LTOCACHE_AUTO_PRUNE: '1', ...extra },
		});
	};

	it('starts a detached prune after a redirected link, and not again the same day', async () => {
		const root = scratch('root');
		const oldKey = makeKey(root, '5.10.0-old', '/src/old', 40);
		const old = makeEntry(oldKey, { ageDays: 40 });
		// Hold the lock (kept fresh) so the prune has to wait: the link must not.
		const lock = path.join(root, LOCK_NAME);
		fs.mkdirSync(lock);
		const keepFresh = setInterval(() => fs.utimesSync(lock, new Date(), new Date()), 500);
		try {
			const result = await link(root);
			expect(result).toMatchObject({ exitCode: 0, stderr: '' });
			expect(fs.existsSync(path.join(root, PRUNE_STAMP))).toBe(true);
			// The link has returned (its stdout and stderr closed) while the prune still waits, in a session of its own.
			const waiting = prunes(root);
			expect(waiting).toHaveLength(1);
			// A session leader, outside the session the build (here, this test) runs in.
			expect(waiting[0].sid).toBe(waiting[0].pid);
			expect(waiting[0].sid).not.toBe(session(process.pid));
			expect(fs.existsSync(old)).toBe(true);
		} finally {
			clearInterval(keepFresh);
			fs.rmdirSync(lock);
		}
		expect(await eventually(() => !fs.existsSync(old))).toBe(true);
		expect(await eventually(() => prunes(root).length === 0)).toBe(true);

		// Within the day: no second prune.
		const older = makeEntry(makeKey(root, '5.10.0-old', '/src/old', 40), { ageDays: 40 });
		expect((await link(root)).exitCode).toBe(0);
		await new Promise((r) => setTimeout(r, 1500));
		expect(prunes(root)).toEqual([]);
		expect(fs.existsSync(older)).toBe(true);
	});

	it("runs the prune without the build's variables for its own Node: no coverage written into the build's directory", async () => {
		const root = scratch('root');
		const old = makeEntry(makeKey(root, '5.10.0-old', '/src/old', 40), { ageDays: 40 });
		const coverage = scratch('coverage');
		const result = await link(root, { NODE_V8_COVERAGE: coverage, NODE_DEBUG: 'module' });
		expect(result).toMatchObject({ exitCode: 0, stderr: '' });
		expect(await eventually(() => !fs.existsSync(old))).toBe(true);
		expect(await eventually(() => prunes(root).length === 0)).toBe(true);
		expect(fs.readdirSync(coverage)).toEqual([]);
	});

	it('never starts one with LTOCACHE_AUTO_PRUNE=0', async () => {
		const root = scratch('root');
		const old = makeEntry(makeKey(root, '5.10.0-old', '/src/old', 40), { ageDays: 40 });
		expect((await link(root, { LTOCACHE_AUTO_PRUNE: '0' })).exitCode).toBe(0);
		await new Promise((r) => setTimeout(r, 1500));
		expect(fs.existsSync(path.join(root, PRUNE_STAMP))).toBe(false);
		expect(fs.existsSync(old)).toBe(true);
	});
});
