// The shim's code cache (src/shim/start.ts), on a staged copy of the package:
// the first link through Node writes dist/shim.code-cache and the next run
// from it; a changed bundle, a torn or foreign file, bytes V8 refuses, a
// directory that cannot be written or a crowd of parallel first links cost a
// compile, never a link. Every output equals the uncached link's.
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { beforeAll, expect, it } from 'vitest';
import { asNobody, describeIf, hasToolchain, isRoot, NOBODY, scratchRoot, stagedShim, uncachedReference } from '../helpers/tools.js';

const scratch = scratchRoot();

describeIf(hasToolchain, 'clang and ld.lld')('the code cache', () => {
	let objects: string[];
	let reference: Buffer;
	beforeAll(() => {
		({ objects, reference } = uncachedReference(scratch('objects')));
	});

	/** A staged package without a code cache: its shim, and where its cache goes. */
	function staged() {
		const pkg = scratch('pkg');
		const shim = stagedShim(pkg);
		const cache = path.join(pkg, 'dist/shim.code-cache');
		fs.rmSync(cache, { force: true });
		return { shim, cache, bundle: path.join(pkg, 'dist/shim.cjs') };
	}

	/** A link in add mode, which Node serves (the sh fast path never adds a cache), checked against the uncached output. */
	async function link(shim: string, env: Record<string, string> = {}) {
		const dir = scratch('link');
		const out = path.join(dir, 'out.o');
		const result = await execa(shim, ['-r', '-o', out, ...objects], {
			env: { LTOCACHE_DIR: path.join(dir, 'root'), LTOCACHE_MODE: 'add', LTOCACHE_VERBOSE: '1', ...env },
			reject: false,
		});
		expect(result.exitCode, result.stderr).toBe(0);
		expect(fs.readFileSync(out).equals(reference)).toBe(true);
		return result.stderr.split('\n').filter((line) => line.includes('code cache'));
	}
	const said = (lines: string[]) => lines.map((line) => line.replace(/^.*: /, ''));

	// A link run from the cache says nothing of it; one that is not says so, and writes one at its end.
	it('is written by the first link through Node, and the next links run from it', async () => {
		const { shim, cache } = staged();
		expect(said(await link(shim))).toEqual(['none for this bundle and Node', 'written']);
		const written = fs.statSync(cache, { bigint: true });
		expect(written.size).toBeGreaterThan(10_000n);
		expect(said(await link(shim))).toEqual([]);
		const after = fs.statSync(cache, { bigint: true });
		expect([after.ino, after.mtimeNs]).toEqual([written.ino, written.mtimeNs]);
		expect(said(await link(shim))).toEqual([]);
	});

	it('runs the bundle as it is now, not as cached, after any change to its file (same size and mtime included)', async () => {
		const { shim, cache, bundle } = staged();
		// An mtime of a whole second, which utimes can set again exactly.
		const second = new Date('2026-01-01T00:00:00Z');
		fs.utimesSync(bundle, second, second);
		await link(shim);
		const before = fs.statSync(bundle, { bigint: true });
		// Rewritten in place to the same length and the same mtime: only the ctime tells, and V8's own check (the source's length) passes.
		const text = fs.readFileSync(bundle, 'utf8');
		expect(text).toContain('ltocache: running ');
		fs.writeFileSync(bundle, text.replace('ltocache: running ', 'ltocache: RUNNING '));
		fs.utimesSync(bundle, second, second);
		const after = fs.statSync(bundle, { bigint: true });
		expect([after.ino, after.size, after.mtimeNs]).toEqual([before.ino, before.size, before.mtimeNs]);
		const dir = scratch('link');
		const result = await execa(shim, ['-r', '-o', path.join(dir, 'out.o'), ...objects], {
			env: { LTOCACHE_DIR: path.join(dir, 'root'), LTOCACHE_MODE: 'add', LTOCACHE_VERBOSE: '1' },
		});
		expect(result.stderr).toContain('ltocache: RUNNING ');
		expect(result.stderr).toContain(`code cache ${cache}: none for this bundle and Node`);
		expect(fs.readFileSync(path.join(dir, 'out.o')).equals(reference)).toBe(true);
		expect(said(await link(shim))).toEqual([]);
	});

	it('compiles afresh over a torn, empty, foreign or refused cache file, and replaces it', async () => {
		const { shim, cache } = staged();
		await link(shim);
		const good = fs.readFileSync(cache);
		const newline = good.indexOf(10);
		const header = good.subarray(0, newline + 1);
		const damaged: [string, Buffer, string][] = [
			['torn', good.subarray(0, good.length - 1000), 'none for this bundle and Node'],
			['empty', Buffer.alloc(0), 'none for this bundle and Node'],
			[
				'another bundle',
				Buffer.concat([Buffer.from(header.toString().replace(/:\d+ /, ':1 ')), good.subarray(newline + 1)]),
				'none for this bundle and Node',
			],
			// The header is right, the bytes are not V8's: V8's own checks refuse them.
			['garbage', Buffer.concat([header, Buffer.alloc(good.length - header.length, 0x5a)]), 'rejected by V8'],
		];
		for (const [what, bytes, state] of damaged) {
			fs.writeFileSync(cache, bytes);
			expect(said(await link(shim)), what).toEqual([state, 'written']);
			expect(said(await link(shim)), what).toEqual([]);
		}
	});

	it('leaves a package directory it cannot write alone, and says nothing of it without LTOCACHE_VERBOSE', async () => {
		if (!isRoot) throw new Error('needs root, to link as nobody');
		const { shim, cache } = staged();
		const dir = scratch('nobody');
		fs.chownSync(dir, NOBODY, NOBODY);
		const out = path.join(dir, 'out.o');
		const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', LTOCACHE_DIR: path.join(dir, 'root'), LTOCACHE_MODE: 'add' };
		const quiet = await asNobody(shim, ['-r', '-o', out, ...objects], env);
		expect(quiet.exitCode, String(quiet.stderr)).toBe(0);
		expect(quiet.stderr).toBe('');
		expect(fs.readFileSync(out).equals(reference)).toBe(true);
		const verbose = await asNobody(shim, ['-r', '-o', out, ...objects], { ...env, LTOCACHE_VERBOSE: '1' });
		expect(verbose.stderr).toContain(`code cache ${cache}: not writable`);
		expect(fs.existsSync(cache)).toBe(false);
		expect(fs.readdirSync(path.dirname(cache)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
	});

	it('takes one whole cache from a crowd of parallel first links', async () => {
		const { shim, cache } = staged();
		const links = await Promise.all(Array.from({ length: 8 }, () => link(shim)));
		// A link that starts once another has finished runs from that one's cache.
		for (const lines of links) expect([['none for this bundle and Node', 'written'], []]).toContainEqual(said(lines));
		expect(links.filter((lines) => said(lines).includes('written')).length).toBeGreaterThan(0);
		expect(fs.readdirSync(path.dirname(cache)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
		expect(said(await link(shim))).toEqual([]);
	});
});
