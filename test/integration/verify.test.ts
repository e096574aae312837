// Verified links (the verify setting, LTOCACHE_VERIFY): a cached link run
// again without the cache into a private output and compared. A tampered
// entry (a valid object for another source, under the name lld's key gives
// the real one) is what a stale cache looks like: without verify the build
// gets the wrong program; with it, the uncached one, the entries go and a
// report is written. A matching link is left as it was.
import fs from 'node:fs';
import path from 'node:path';
import { execa, execaSync } from 'execa';
import { beforeAll, expect, it } from 'vitest';
import type { StatsJson } from '../../src/cli/commands/stats.js';
import { CLI, describeIf, entries, hasToolchain, identities, NO_CONFIG, SHIM, scratchRoot, uncachedReference } from '../helpers/tools.js';

const scratch = scratchRoot();
const said = (stderr: string) => stderr.split('\n').filter((line) => line.startsWith('ltocache:'));

describeIf(hasToolchain, 'clang and ld.lld')('verified links', () => {
	let objects: string[];
	let reference: Buffer;
	let blocker: string;
	/** A valid cache entry for `helper` that returns x * 5 where b.c's returns x * 3. */
	let otherHelper: Buffer;
	beforeAll(async () => {
		({ objects, reference } = uncachedReference(scratch('obj')));
		blocker = path.join(scratch('blocker'), 'file');
		fs.writeFileSync(blocker, '');
		const dir = scratch('other');
		fs.writeFileSync(path.join(dir, 'b5.c'), 'int helper(int x) { return x * 5; }\n');
		const b5 = path.join(dir, 'b5.o');
		execaSync('clang', ['-flto=thin', '-O2', '-c', path.join(dir, 'b5.c'), '-o', b5]);
		const root = scratch('root');
		expect((await link(root, path.join(dir, 'out.o'), [objects[0], b5])).exitCode).toBe(0);
		otherHelper = fs.readFileSync(helperEntry(keyDir(root)));
	});

	const link = (root: string, out: string, inputs = objects, env: Record<string, string> = {}) =>
		execa(SHIM, [`--thinlto-cache-dir=${blocker}/x`, '-r', '-o', out, ...inputs], {
			reject: false,
			env: { ...NO_CONFIG, LTOCACHE_DIR: root, LTOCACHE_AUTO_PRUNE: '0', KERNELRELEASE: '6.1.0-verify', ...env },
		});
	const keyDir = (root: string) => {
		const release = path.join(root, '6.1.0-verify');
		const [key] = fs.readdirSync(release);
		return path.join(release, key);
	};
	/** The entry whose object defines helper (b.c's module). */
	const helperEntry = (dir: string) => {
		const found = entries(dir).filter((e) => execaSync('llvm-nm', ['--defined-only', path.join(dir, e)]).stdout.includes(' T helper'));
		expect(found).toHaveLength(1);
		return path.join(dir, found[0]);
	};
	/** What stats --json counts of verified links: for the root, and for the one key directory. */
	const verifiedCounts = async (root: string) => {
		const stats = await execa(process.execPath, [CLI, 'stats', '--json'], { env: { ...NO_CONFIG, LTOCACHE_DIR: root } });
		const json = JSON.parse(stats.stdout) as StatsJson;
		const [key] = json.kernels[0].keys;
		return { root: json.verified, key: [key.verifiedLinks, key.verifyMismatches] };
	};
	const reports = (root: string) => fs.readdirSync(root).filter((f) => f.startsWith('ltocache.mismatch.'));

	it('gives the build the uncached output, removes the entries and writes a report when the cache served a stale object', async () => {
		const root = scratch('root');
		const out = path.join(scratch('out'), 'out.o');
		expect((await link(root, out)).exitCode).toBe(0);
		expect(fs.readFileSync(out).equals(reference)).toBe(true);
		fs.writeFileSync(helperEntry(keyDir(root)), otherHelper);
		// Unverified, the stale entry is linked in: the program differs from the uncached link.
		const stale = await link(root, out);
		expect(stale).toMatchObject({ exitCode: 0, stderr: '' });
		expect(fs.readFileSync(out).equals(reference)).toBe(false);

		const verified = await link(root, out, objects, { LTOCACHE_VERIFY: 'on' });
		expect(verified.exitCode).toBe(0);
		expect(fs.readFileSync(out).equals(reference)).toBe(true);
		expect(said(verified.stderr)).toEqual([
			expect.stringMatching(/^ltocache: VERIFY MISMATCH: .* the 2 entries of .* are removed, report: /),
		]);
		expect(entries(keyDir(root))).toEqual([]);
		const [report] = reports(root);
		const text = fs.readFileSync(path.join(root, report), 'utf8');
		expect(text).toContain(`cwd: ${process.cwd()}`);
		expect(text).toContain('"--thinlto-cache-dir="');
		for (const object of objects) expect(text).toContain(`  ${object}: `);
		expect(text).not.toContain(`  ${out}: `);
		// No private output left beside the build's.
		expect(fs.readdirSync(path.dirname(out))).toEqual(['out.o']);
		// Counted: stats --json shows the verified link and its mismatch, for the root and the key.
		expect(await verifiedCounts(root)).toEqual({ root: { verifiedLinks: 1, verifyMismatches: 1 }, key: [1, 1] });
		// doctor tells of it until the report is removed.
		const doctor = await execa(process.execPath, [CLI, 'doctor', '--json'], { reject: false, env: { ...NO_CONFIG, LTOCACHE_DIR: root } });
		const { findings } = JSON.parse(doctor.stdout) as { findings: { level: string; check: string; message: string }[] };
		expect(findings.find((f) => f.check === 'verified links')).toMatchObject({
			level: 'fail',
			message: expect.stringContaining(path.join(root, report)),
		});
		// The next link is cold, and right.
		const next = await link(root, out, objects, { LTOCACHE_VERIFY: 'on' });
		expect(next).toMatchObject({ exitCode: 0, stderr: '' });
		expect(fs.readFileSync(out).equals(reference)).toBe(true);
	});

	it('leaves the output and the cache as they were when the link matches', async () => {
		const root = scratch('root');
		const out = path.join(scratch('out'), 'out.o');
		expect((await link(root, out)).exitCode).toBe(0);
		const before = identities(keyDir(root));
		const verified = await link(root, out, objects, { LTOCACHE_VERIFY: '100%' });
		expect(verified).toMatchObject({ exitCode: 0, stderr: '' });
		expect(fs.readFileSync(out).equals(reference)).toBe(true);
		expect(identities(keyDir(root))).toEqual(before);
		expect(reports(root)).toEqual([]);
		expect(fs.readdirSync(path.dirname(out))).toEqual(['out.o']);
		expect(await verifiedCounts(root)).toEqual({ root: { verifiedLinks: 1, verifyMismatches: 0 }, key: [1, 0] });
	});

	it('says so and links when verify cannot run, or has a value it does not know', async () => {
		const root = scratch('root');
		const dir = scratch('rsp');
		const out = path.join(dir, 'out.o');
		fs.writeFileSync(path.join(dir, 'out.rsp'), `-o ${out}\n`);
		// Through `ltocache run --verify`, which sets LTOCACHE_VERIFY for the build.
		const inRsp = await execa(
			process.execPath,
			[CLI, 'run', '--verify', '--', 'ld.lld', `--thinlto-cache-dir=${blocker}/x`, '-r', `@${path.join(dir, 'out.rsp')}`, ...objects],
			{ reject: false, env: { ...NO_CONFIG, LTOCACHE_DIR: root, LTOCACHE_AUTO_PRUNE: '0' } },
		);
		expect(inRsp.exitCode).toBe(0);
		expect(said(inRsp.stderr)).toEqual(['ltocache: verify: not verified: its output is named in a response file']);
		expect(fs.readFileSync(out).equals(reference)).toBe(true);
		const bad = await link(root, path.join(dir, 'out2.o'), objects, { LTOCACHE_VERIFY: 'sometimes' });
		expect(bad.exitCode).toBe(0);
		expect(said(bad.stderr)).toEqual(['ltocache: verify = sometimes (LTOCACHE_VERIFY) is not off, on or a share like 1%; not verifying']);
		expect(fs.readFileSync(path.join(dir, 'out2.o')).equals(reference)).toBe(true);
	});

	it('verifies a link run in a directory whose name is not UTF-8, its output and inputs relative, and catches a stale entry there', async () => {
		const root = scratch('root');
		// The directory's name ends in byte 0xff: Node reads the working directory as U+FFFD.
		const parent = scratch('cwd');
		const cwd = Buffer.concat([Buffer.from(`${parent}/m`), Buffer.from([0xff])]);
		fs.mkdirSync(cwd);
		const names = objects.map((o) => path.basename(o));
		for (const [i, object] of objects.entries()) fs.copyFileSync(object, Buffer.concat([cwd, Buffer.from(`/${names[i]}`)]));
		const out = Buffer.concat([cwd, Buffer.from('/out.o')]);
		const linkThere = (env: Record<string, string> = {}) =>
			execa(
				'sh',
				[
					'-c',
					'cd "$(printf "$0\\377")" && exec "$@"',
					`${parent}/m`,
					SHIM,
					`--thinlto-cache-dir=${blocker}/x`,
					'-r',
					'-o',
					'out.o',
					...names,
				],
				{
					reject: false,
					env: { ...NO_CONFIG, LTOCACHE_DIR: root, LTOCACHE_AUTO_PRUNE: '0', KERNELRELEASE: '6.1.0-verify', ...env },
				},
			);
		expect(await linkThere()).toMatchObject({ exitCode: 0, stderr: '' });
		expect(fs.readFileSync(out).equals(reference)).toBe(true);
		const matched = await linkThere({ LTOCACHE_VERIFY: 'on' });
		expect(matched).toMatchObject({ exitCode: 0, stderr: '' });
		expect(fs.readFileSync(out).equals(reference)).toBe(true);
		fs.writeFileSync(helperEntry(keyDir(root)), otherHelper);
		const verified = await linkThere({ LTOCACHE_VERIFY: 'on' });
		expect(verified.exitCode).toBe(0);
		expect(said(verified.stderr)).toEqual([
			expect.stringMatching(/^ltocache: VERIFY MISMATCH: .* the 2 entries of .* are removed, report: /),
		]);
		expect(fs.readFileSync(out).equals(reference)).toBe(true);
		const [report] = reports(root);
		for (const name of names) expect(fs.readFileSync(path.join(root, report), 'utf8')).toContain(`  ${name}: `);
		expect(fs.readdirSync(cwd).map(String).sort()).toEqual([...names, 'out.o'].sort());
		expect(await verifiedCounts(root)).toEqual({ root: { verifiedLinks: 2, verifyMismatches: 1 }, key: [2, 1] });
	});

	it('never compares with, or renames over, an output that is not a regular file (-o /dev/null)', async () => {
		const root = scratch('root');
		// A null device of the test's own (as root), so that a regression replaces it and not the machine's /dev/null.
		const dev = scratch('dev');
		const nul = path.join(dev, 'null');
		execaSync('mknod', ['-m', '666', nul, 'c', '1', '3']);
		const verified = await link(root, nul, objects, { LTOCACHE_VERIFY: 'on' });
		expect(verified.exitCode).toBe(0);
		expect(said(verified.stderr)).toEqual(['ltocache: verify: not verified: its output is not a regular file']);
		expect(fs.statSync(nul).isCharacterDevice()).toBe(true);
		expect(fs.readdirSync(dev)).toEqual(['null']);
		expect(reports(root)).toEqual([]);
	});

	it("does not verify a link that writes more than its output: a map of lld's, or what it asks of the backends", async () => {
		const dir = scratch('sides');
		for (const [extra, why] of [
			[`-Map=${path.join(dir, 'out.map')}`, 'the link writes more than its output'],
			['--save-temps', 'the link writes more than its output (--save-temps)'],
		]) {
			const root = scratch('root');
			const out = path.join(dir, 'out.o');
			const verified = await execa(SHIM, [`--thinlto-cache-dir=${blocker}/x`, '-r', extra, '-o', out, ...objects], {
				cwd: dir,
				reject: false,
				env: { ...NO_CONFIG, LTOCACHE_DIR: root, LTOCACHE_AUTO_PRUNE: '0', KERNELRELEASE: '6.1.0-verify', LTOCACHE_VERIFY: 'on' },
			});
			expect(verified.exitCode).toBe(0);
			expect(said(verified.stderr)).toEqual([`ltocache: verify: not verified: ${why}`]);
			expect(reports(root)).toEqual([]);
		}
	});

	it('does not verify a link whose output differs from run to run (--shuffle-sections with seed 0): no false mismatch', async () => {
		const dir = scratch('shuffle');
		const source = Array.from({ length: 30 }, (_, i) => `int f${i}(int x) { return x * ${i + 7} + ${i}; }`).join('\n');
		fs.writeFileSync(path.join(dir, 'many.c'), `${source}\n`);
		const many = path.join(dir, 'many.o');
		execaSync('clang', ['-flto=thin', '-O1', '-ffunction-sections', '-c', path.join(dir, 'many.c'), '-o', many]);
		const root = scratch('root');
		const out = path.join(dir, 'out.o');
		const run = (env: Record<string, string> = {}) =>
			execa(SHIM, [`--thinlto-cache-dir=${blocker}/x`, '-r', '--shuffle-sections=.text*=0', '-o', out, many], {
				reject: false,
				env: { ...NO_CONFIG, LTOCACHE_DIR: root, LTOCACHE_AUTO_PRUNE: '0', KERNELRELEASE: '6.1.0-verify', ...env },
			});
		expect((await run()).exitCode).toBe(0);
		const verified = await run({ LTOCACHE_VERIFY: 'on' });
		expect(verified.exitCode).toBe(0);
		expect(said(verified.stderr)).toEqual([
			'ltocache: verify: not verified: its output differs from run to run (--shuffle-sections with seed 0)',
		]);
		expect(reports(root)).toEqual([]);
	});

	it('verifies none of the links at 0% and every one at 100% (the share is per link)', async () => {
		const { parseVerify } = await import('../../src/shared/config.js');
		expect(['off', '0', '', 'no', '0%'].map(parseVerify)).toEqual([0, 0, 0, 0, 0]);
		expect(['on', 'all', '1', '100%', '1%', '2.5%'].map(parseVerify)).toEqual([1, 1, 1, 1, 0.01, 0.025]);
		expect(['sometimes', '101%', '-1%', '1/100'].map(parseVerify)).toEqual([undefined, undefined, undefined, undefined]);
	});
});
