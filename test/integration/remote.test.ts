// A cache shared across machines (issue 22), against real servers started on
// localhost: nginx with its WebDAV module and redis-server. Two machines are
// two cache roots; every link is compared byte for byte with an uncached
// link by the real ld.lld, and every fault must leave the link succeeding.
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatsJson } from '../../src/cli/commands/stats.js';
import { readCounters } from '../../src/shared/counters.js';
import { parseIndex } from '../../src/shared/remote.js';
import { ltocache } from '../helpers/cache.js';
import { type Server, startNginx, startRedis, startSilent } from '../helpers/servers.js';
import {
	describeIf,
	entriesBelow,
	hasToolchain,
	LLD,
	NO_CONFIG,
	nodeOnlyDir,
	onPath,
	SHIM,
	scratchRoot,
	shimDir,
	uncachedReference,
} from '../helpers/tools.js';

const scratch = scratchRoot();
const servers: Server[] = [];
afterAll(async () => {
	for (const s of servers) await s.stop();
});

describeIf(
	hasToolchain && Boolean(onPath('nginx') && onPath('redis-server')),
	'clang, ld.lld, nginx and redis-server (Debian: nginx-light redis-server)',
)('a remote cache', () => {
	let objects: string[];
	let reference: Buffer;
	let shims: string;
	let node: string;
	let nginx: Server & { root: string };
	let redis: Server;
	beforeAll(async () => {
		({ objects, reference } = uncachedReference(scratch('objects')));
		shims = shimDir(scratch('shims'), SHIM, ['ld.lld']);
		node = nodeOnlyDir(scratch('node'));
		nginx = await startNginx(scratch('nginx'));
		redis = await startRedis(scratch('redis'));
		servers.push(nginx, redis);
	});

	/** One "machine": a cache root of its own. A link in add mode (no flag needed), into its own output. */
	const link = async (root: string, remote: string, extra: Record<string, string> = {}) => {
		const cwd = scratch('cwd');
		const out = path.join(cwd, 'out.o');
		const started = Date.now();
		const result = await execa(path.join(shims, 'ld.lld'), ['-r', '-o', out, ...objects], {
			cwd: scratch('module'),
			reject: false,
			extendEnv: false,
			env: {
				...NO_CONFIG,
				PATH: `${shims}:${node}:/usr/bin:/bin`,
				LTOCACHE_DIR: root,
				LTOCACHE_MODE: 'add',
				LTOCACHE_AUTO_PRUNE: '0',
				LTOCACHE_REMOTE: remote,
				LTOCACHE_REMOTE_TIMEOUT: '1s',
				KERNELRELEASE: '6.1.0-team',
				KBUILD_EXTMOD: '/src/team-module',
				...extra,
			},
		});
		const output = fs.existsSync(out) ? fs.readFileSync(out) : Buffer.alloc(0);
		return { ...result, output, ms: Date.now() - started };
	};
	/** The counters of a machine's one module directory. */
	const counters = (root: string) => {
		const release = path.join(root, '6.1.0-team');
		const [key] = fs.readdirSync(release);
		return readCounters(path.join(release, key));
	};

	const backends = () => [
		['http', nginx.url],
		['redis', redis.url],
	];

	it.each(['http', 'redis'])("over %s, machine B's first link of what A built is all remote hits, byte-identical", async (kind) => {
		const remote = Object.fromEntries(backends())[kind];
		// A fresh namespace: the module path is part of it.
		const extmod = { KBUILD_EXTMOD: `/src/two-machines-${kind}` };
		const a = scratch('machine-a');
		const b = scratch('machine-b');
		const first = await link(a, remote, extmod);
		expect(first).toMatchObject({ exitCode: 0, stderr: '' });
		expect(first.output).toEqual(reference);
		expect(counters(a)).toMatchObject({ misses: 2, uploads: 2, downloads: 0 });

		const second = await link(b, remote, extmod);
		expect(second).toMatchObject({ exitCode: 0, stderr: '' });
		expect(second.output).toEqual(reference);
		expect(counters(b)).toMatchObject({ links: 1, hits: 2, misses: 0, downloads: 2, uploads: 0 });
		expect(
			entriesBelow(b)
				.map((e) => path.basename(e))
				.sort(),
		).toEqual(
			entriesBelow(a)
				.map((e) => path.basename(e))
				.sort(),
		);

		const stats = JSON.parse((await ltocache(b, ['stats', '--json'])).stdout) as StatsJson;
		expect(stats.remote).toMatchObject({ remoteDownloads: 2, remoteUploads: 0 });
		expect((await ltocache(b, ['stats'])).stdout).toMatch(/^remote: 2 entries downloaded \(.+\), 0 uploaded \(0 B\)$/m);
	});

	it('over http, takes whole packs from a server that ignores Range, and entries stored alone (as 0.3.0 uploaded them)', async () => {
		const whole = nginx.url.replace('/cache/', '/whole/');
		const extmod = { KBUILD_EXTMOD: '/src/whole' };
		const a = scratch('machine-a');
		expect(await link(a, whole, extmod)).toMatchObject({ exitCode: 0, stderr: '' });
		const files = (fs.readdirSync(path.join(nginx.root, '../whole'), { recursive: true }) as string[]).map((f) =>
			path.join(nginx.root, '../whole', f),
		);
		const indexFile = files.find((f) => f.endsWith('/index') && f.includes('whole'))!;
		const index = parseIndex(fs.readFileSync(indexFile, 'latin1'));
		expect(index.size).toBe(2);
		// B has the pack's first entry already: it asks for the range of the second, and gets the whole pack.
		const b = scratch('machine-b');
		fs.cpSync(a, b, { recursive: true });
		const [later] = [...index].sort((x, y) => (y[1].offset ?? 0) - (x[1].offset ?? 0))[0];
		expect(index.get(later)?.offset).toBeGreaterThan(0);
		fs.rmSync(path.join(b, entriesBelow(b).find((e) => e.endsWith(`/${later}`))!));
		const had = counters(b);
		const second = await link(b, whole, extmod);
		expect(second).toMatchObject({ exitCode: 0, stderr: '' });
		expect(second.output).toEqual(reference);
		const now = counters(b);
		expect([now.hits - had.hits, now.misses - had.misses, now.downloads - had.downloads]).toEqual([2, 0, 1]);

		// The same entries as files of their own, listed without a pack.
		let lines = '';
		for (const [name, r] of index) {
			const pack = fs.readFileSync(path.join(path.dirname(indexFile), r.pack!));
			fs.writeFileSync(path.join(path.dirname(indexFile), name), pack.subarray(r.offset, (r.offset ?? 0) + r.size));
			lines += `${name} ${r.sum} ${r.size}\n`;
		}
		for (const r of index.values()) fs.rmSync(path.join(path.dirname(indexFile), r.pack!), { force: true });
		fs.writeFileSync(indexFile, lines);
		const c = scratch('machine-c');
		const third = await link(c, whole, extmod);
		expect(third).toMatchObject({ exitCode: 0, stderr: '' });
		expect(third.output).toEqual(reference);
		expect(counters(c)).toMatchObject({ hits: 2, misses: 0, downloads: 2 });
	});

	it.each(['http', 'redis'])('over %s, a corrupted or truncated entry is dropped, never linked', async (kind) => {
		const remote = Object.fromEntries(backends())[kind];
		const extmod = { KBUILD_EXTMOD: `/src/corrupt-${kind}` };
		const a = scratch('machine-a');
		expect(await link(a, remote, extmod)).toMatchObject({ exitCode: 0, stderr: '' });
		const names = entriesBelow(a)
			.map((e) => path.basename(e))
			.sort();
		expect(names).toHaveLength(2);
		// The bytes of one entry garbled (same size), the other cut short, on the server itself.
		let [bad, short] = names;
		if (kind === 'http') {
			// Both in the one pack A uploaded: the one further in is cut short, the other garbled.
			const files = (fs.readdirSync(nginx.root, { recursive: true }) as string[]).map((f) => path.join(nginx.root, f));
			const index = parseIndex(fs.readFileSync(files.find((f) => f.endsWith('/index') && f.includes('corrupt-'))!, 'latin1'));
			[bad, short] = names.sort((x, y) => (index.get(x)?.offset ?? 0) - (index.get(y)?.offset ?? 0));
			const pack = files.find((f) => f.endsWith(`/${index.get(bad)?.pack}`))!;
			expect(index.get(short)?.pack).toBe(index.get(bad)?.pack);
			const data = fs.readFileSync(pack);
			const { offset = 0, size } = index.get(bad)!;
			data[offset + (size >> 1)] ^= 0xff;
			fs.writeFileSync(pack, data.subarray(0, (index.get(short)?.offset ?? 0) + 10));
		} else {
			const keys = (await execa('redis-cli', ['-p', String(redis.port), '--scan', '--pattern', '*corrupt-*'])).stdout.split('\n');
			const key = (name: string) => keys.find((k) => k.endsWith(`/${name}`))!;
			await execa('redis-cli', ['-p', String(redis.port), 'SETRANGE', key(bad), '100', 'garbage']);
			await execa('redis-cli', ['-p', String(redis.port), 'SET', key(short), 'cut']);
		}
		const b = scratch('machine-b');
		const second = await link(b, remote, extmod);
		expect(second).toMatchObject({ exitCode: 0, stderr: '' });
		expect(second.output).toEqual(reference);
		// Neither came down: lld wrote both itself.
		expect(counters(b)).toMatchObject({ downloads: 0, misses: 2 });
	});

	it.each(['http', 'redis'])('over %s, a server that is gone leaves the link to the local cache, said once', async (kind) => {
		const server = kind === 'http' ? await startNginx(scratch('nginx-gone')) : await startRedis(scratch('redis-gone'));
		await server.stop();
		const root = scratch('machine');
		const result = await link(root, server.url);
		expect(result.exitCode).toBe(0);
		expect(result.output).toEqual(reference);
		expect(result.stderr.split('\n')).toEqual([expect.stringMatching(/^ltocache: remote .*ECONNREFUSED.*; linking with the local cache$/)]);
		expect(counters(root)).toMatchObject({ misses: 2, downloads: 0, uploads: 0 });
	});

	it.each(['http', 'redis'])(
		'over %s, a server killed while lld runs leaves the link succeeding, its entries unshared, said once',
		async (kind) => {
			const server = kind === 'http' ? await startNginx(scratch('nginx-killed')) : await startRedis(scratch('redis-killed'));
			servers.push(server);
			// The "linker" kills the server, then runs the real one: the download went well, the upload meets a dead server.
			const wrapper = path.join(scratch('wrapper'), 'ld.lld');
			fs.writeFileSync(wrapper, `#!/bin/sh\nkill -9 ${server.pid}\nexec '${LLD}' "$@"\n`, { mode: 0o755 });
			const root = scratch('machine');
			const result = await link(root, server.url, { LTOCACHE_LD: wrapper });
			expect(result.exitCode).toBe(0);
			expect(result.output).toEqual(reference);
			expect(result.stderr.split('\n')).toEqual([
				expect.stringMatching(/^ltocache: remote \S+: .*; the entries this link wrote are not shared$/),
			]);
			expect(counters(root)).toMatchObject({ links: 1, misses: 2, uploads: 0 });
		},
	);

	it('a stalled server costs at most the time budget, said once', async () => {
		const silent = await startSilent();
		servers.push(silent);
		for (const remote of [silent.url, silent.url.replace('http', 'redis')]) {
			const result = await link(scratch('machine'), remote, { LTOCACHE_REMOTE_TIMEOUT: '500ms' });
			expect(result.exitCode).toBe(0);
			expect(result.output).toEqual(reference);
			expect(result.stderr).toMatch(/^ltocache: remote \S+: no answer within 0\.5s; linking with the local cache$/);
			expect(result.ms).toBeLessThan(20_000); // a guard against hanging, not a timing claim
		}
	});

	it('a full server refuses the upload: the link succeeds and says its entries are not shared', async () => {
		const full = await startRedis(scratch('redis-full'), ['--maxmemory', '1', '--maxmemory-policy', 'noeviction']);
		servers.push(full);
		for (const remote of [full.url, nginx.url.replace('/cache/', '/full/')]) {
			const root = scratch('machine');
			const result = await link(root, remote);
			expect(result.exitCode).toBe(0);
			expect(result.output).toEqual(reference);
			expect(result.stderr).toMatch(/^ltocache: remote \S+: .*; the entries this link wrote are not shared$/);
		}
	});

	it('refused credentials are said without the password, in messages, stats and doctor', async () => {
		const locked = await startRedis(scratch('redis-auth'), ['--requirepass', 'right-pass']);
		servers.push(locked);
		const wrong = locked.url.replace('redis://', 'redis://:wrong-secret@');
		const root = scratch('machine');
		const result = await link(root, wrong);
		expect(result.exitCode).toBe(0);
		expect(result.output).toEqual(reference);
		expect(result.stderr).toBe(`ltocache: remote redis://127.0.0.1:${locked.port}/0: authentication refused; linking with the local cache`);
		const doctor = await ltocache(root, ['doctor'], { LTOCACHE_REMOTE: wrong, LTOCACHE_MODULES: scratch('none') });
		const config = await ltocache(root, ['config'], { LTOCACHE_REMOTE: wrong });
		for (const text of [result.stderr, (await ltocache(root, ['stats', '--json'])).stdout, doctor.stdout, config.stdout]) {
			expect(text).not.toContain('wrong-secret');
		}
		expect(config.stdout).toContain(':***@');
		// The right password works.
		const right = await link(scratch('machine'), locked.url.replace('redis://', 'redis://:right-pass@'));
		expect(right).toMatchObject({ exitCode: 0, stderr: '' });
	});

	it('a database the server does not have is said, and nothing of the link lands in another', async () => {
		const extmod = { KBUILD_EXTMOD: '/src/no-such-db' };
		const wrongDb = redis.url.replace(/\/\d*$/, '/99');
		const result = await link(scratch('machine'), wrongDb, extmod);
		expect(result.exitCode).toBe(0);
		expect(result.output).toEqual(reference);
		expect(result.stderr).toBe(
			`ltocache: remote redis://127.0.0.1:${redis.port}/99: ERR DB index is out of range; linking with the local cache`,
		);
		const keys = await execa('redis-cli', ['-p', String(redis.port), '--scan', '--pattern', '*no-such-db*']);
		expect(keys.stdout).toBe('');
	});

	it.each(['http', 'redis'])(
		'over %s, 16 machines uploading the same entries at once all succeed, and a 17th gets every entry',
		async (kind) => {
			const remote = Object.fromEntries(backends())[kind];
			const extmod = { KBUILD_EXTMOD: `/src/sixteen-${kind}` };
			const results = await Promise.all(Array.from({ length: 16 }, () => link(scratch('machine'), remote, extmod)));
			for (const r of results) {
				expect(r).toMatchObject({ exitCode: 0, stderr: '' });
				expect(r.output).toEqual(reference);
			}
			const last = scratch('machine');
			const result = await link(last, remote, extmod);
			expect(result).toMatchObject({ exitCode: 0, stderr: '' });
			expect(result.output).toEqual(reference);
			expect(counters(last)).toMatchObject({ downloads: 2, misses: 0 });
		},
	);

	it('a read-only client downloads and never uploads', async () => {
		const extmod = { KBUILD_EXTMOD: '/src/read-only' };
		const reader = await link(scratch('machine'), redis.url, { ...extmod, LTOCACHE_REMOTE_READ_ONLY: 'true' });
		expect(reader).toMatchObject({ exitCode: 0, stderr: '' });
		const keys = await execa('redis-cli', ['-p', String(redis.port), '--scan', '--pattern', '*read-only*']);
		expect(keys.stdout).toBe('');
	});

	describe('doctor', () => {
		it('says the remote answers and takes writes', async () => {
			for (const [, remote] of backends()) {
				const result = await ltocache(scratch('root'), ['doctor'], { LTOCACHE_REMOTE: remote, LTOCACHE_MODULES: scratch('none') });
				expect(result.stdout).toMatch(/^(ok|warn) {2,4}remote: \S+ answers \(\d+ ms\) and takes writes/m);
			}
		});

		it('says how long it waited on a server that never answers (at least 5 s, whatever remote-timeout says)', async () => {
			const silent = await startSilent();
			servers.push(silent);
			const results = await Promise.all(
				[silent.url, silent.url.replace('http', 'redis')].map((remote) =>
					ltocache(scratch('root'), ['doctor'], {
						LTOCACHE_REMOTE: remote,
						LTOCACHE_REMOTE_TIMEOUT: '500ms',
						LTOCACHE_MODULES: scratch('none'),
					}),
				),
			);
			for (const result of results)
				expect(result.stdout).toMatch(/^fail {2,4}remote: \S+: no answer within 5s; links go on with the local cache$/m);
		});
	});
});
