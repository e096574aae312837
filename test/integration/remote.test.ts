// A cache shared across machines (issue 22), against real servers started on
// localhost: nginx with its WebDAV module and redis-server. Two machines are
// two cache roots; every link is compared byte for byte with an uncached
// link by the real ld.lld, and every fault must leave the link succeeding.
import fs from 'node:fs';
import path from 'node:path';
import { execa, execaSync } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatsJson } from '../../src/cli/commands/stats.js';
import { readCounters } from '../../src/shared/counters.js';
import { parseIndex, sha256 } from '../../src/shared/remote/index.js';
import { ltocache } from '../helpers/cache.js';
import {
	type Server,
	startBlackHole,
	startCutter,
	startGate,
	startNginx,
	startRedis,
	startSilent,
	startStaller,
	startTlsProxy,
} from '../helpers/servers.js';
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
/** A link's manifest on the WebDAV server (the head holds the same lines). */
const isManifest = (file: string) => /\/manifest-[0-9a-f]{64}$/.test(file);
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
	const link = async (root: string, remote: string, extra: Record<string, string> = {}, wrap: string[] = [], inputs = objects) => {
		const cwd = scratch('cwd');
		const out = path.join(cwd, 'out.o');
		const started = Date.now();
		const command = [...wrap, path.join(shims, 'ld.lld'), '-r', '-o', out, ...inputs];
		const result = await execa(command[0], command.slice(1), {
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
		const indexFile = files.find((f) => isManifest(f) && f.includes('whole'))!;
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
		for (const file of [indexFile, path.join(path.dirname(indexFile), 'head')]) fs.writeFileSync(file, lines);
		const c = scratch('machine-c');
		const third = await link(c, whole, extmod);
		expect(third).toMatchObject({ exitCode: 0, stderr: '' });
		expect(third.output).toEqual(reference);
		expect(counters(c)).toMatchObject({ hits: 2, misses: 0, downloads: 2 });
	});

	it('over http, a download whose one request failed writes nothing into the directory once lld runs: the requests still out end with it', async () => {
		const extmod = { KBUILD_EXTMOD: '/src/late-download' };
		// The "linker" (the same on both machines, so one namespace): given GATE, it opens the gate, waits a while for an
		// entry to appear in its cache directory, notes what is there, then runs lld.
		const listing = path.join(scratch('listing'), 'names');
		const wrapper = path.join(scratch('wrapper'), 'ld.lld');
		fs.writeFileSync(
			wrapper,
			`#!/bin/sh
if [ -n "$GATE" ]; then
	for a in "$@"; do case $a in --thinlto-cache-dir=*) dir=\${a#*=};; esac; done
	touch "$GATE"
	i=0
	while [ $i -lt 30 ] && ! ls "$dir" | grep -q '^llvmcache-'; do sleep 0.1; i=$((i + 1)); done
	ls "$dir" > '${listing}'
fi
exec '${LLD}' "$@"
`,
			{ mode: 0o755 },
		);
		const a = scratch('machine-a');
		expect(await link(a, nginx.url, { ...extmod, LTOCACHE_LD: wrapper })).toMatchObject({ exitCode: 0, stderr: '' });
		// The entries stored alone, one GET each: one is refused, the other held until the linker runs.
		const files = (fs.readdirSync(nginx.root, { recursive: true }) as string[]).map((f) => path.join(nginx.root, f));
		const indexFile = files.find((f) => isManifest(f) && f.includes('late-download'))!;
		const index = parseIndex(fs.readFileSync(indexFile, 'latin1'));
		expect(index.size).toBe(2);
		let lines = '';
		for (const [name, r] of index) {
			const pack = fs.readFileSync(path.join(path.dirname(indexFile), r.pack!));
			fs.writeFileSync(path.join(path.dirname(indexFile), name), pack.subarray(r.offset, (r.offset ?? 0) + r.size));
			lines += `${name} ${r.sum} ${r.size}\n`;
		}
		for (const file of [indexFile, path.join(path.dirname(indexFile), 'head')]) fs.writeFileSync(file, lines);
		const gate = path.join(scratch('gate'), 'open');
		const proxy = await startGate(nginx.port, gate);
		servers.push(proxy);
		const b = scratch('machine-b');
		const result = await link(b, proxy.url, { ...extmod, LTOCACHE_LD: wrapper, GATE: gate });
		expect(result.exitCode).toBe(0);
		expect(result.output).toEqual(reference);
		expect(result.stderr).toMatch(/^ltocache: remote \S+: llvmcache-[0-9A-F]+: HTTP 500; linking with the local cache$/);
		expect(fs.existsSync(gate)).toBe(true);
		expect(
			fs
				.readFileSync(listing, 'utf8')
				.split('\n')
				.filter((name) => name.startsWith('llvmcache-')),
		).toEqual([]);
	});

	it.each(['http', 'redis'])(
		'over %s, a corrupted or truncated (deleted) entry is dropped, never linked, and the next machine that links it uploads it again',
		async (kind) => {
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
				const manifest = files.find((f) => isManifest(f) && f.includes('corrupt-'))!;
				const index = parseIndex(fs.readFileSync(manifest, 'latin1'));
				[bad, short] = names.sort((x, y) => (index.get(x)?.offset ?? 0) - (index.get(y)?.offset ?? 0));
				// This namespace's: other tests' links of the same objects wrote a pack of the same name in theirs.
				const pack = path.join(path.dirname(manifest), index.get(bad)!.pack!);
				expect(index.get(short)?.pack).toBe(index.get(bad)?.pack);
				const data = fs.readFileSync(pack);
				const { offset = 0, size } = index.get(bad)!;
				data[offset + (size >> 1)] ^= 0xff;
				fs.writeFileSync(pack, data.subarray(0, (index.get(short)?.offset ?? 0) + 10));
			} else {
				const keys = (await execa('redis-cli', ['-p', String(redis.port), '--scan', '--pattern', '*corrupt-*'])).stdout.split('\n');
				const key = (name: string) => keys.find((k) => k.endsWith(`/${name}`))!;
				await execa('redis-cli', ['-p', String(redis.port), 'SETRANGE', key(bad), '100', 'garbage']);
				await execa('redis-cli', ['-p', String(redis.port), 'DEL', key(short)]);
			}
			const b = scratch('machine-b');
			const second = await link(b, remote, extmod);
			expect(second).toMatchObject({ exitCode: 0, stderr: '' });
			expect(second.output).toEqual(reference);
			// Neither came down: lld wrote both itself, and B put them back.
			expect(counters(b)).toMatchObject({ downloads: 0, misses: 2, uploads: 2 });
			const c = scratch('machine-c');
			const third = await link(c, remote, extmod);
			expect(third).toMatchObject({ exitCode: 0, stderr: '' });
			expect(third.output).toEqual(reference);
			expect(counters(c)).toMatchObject({ downloads: 2, hits: 2, misses: 0, uploads: 0 });
		},
	);

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
		expect(config.stdout).toContain('redis://***@');
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

	it('LTOCACHE_VERBOSE=1 says what the remote did', async () => {
		const extmod = { KBUILD_EXTMOD: '/src/verbose' };
		const first = await link(scratch('machine'), redis.url, { ...extmod, LTOCACHE_VERBOSE: '1' });
		expect(first.stderr.split('\n')).toContainEqual(
			expect.stringMatching(
				/^ltocache: remote redis:\/\/\S+: no manifest, 0 downloaded \(0 bytes\), 2 uploaded \(\d+ bytes\), manifest written$/,
			),
		);
		const second = await link(scratch('machine'), redis.url, { ...extmod, LTOCACHE_VERBOSE: '1' });
		expect(second.stderr.split('\n')).toContainEqual(
			expect.stringMatching(
				/^ltocache: remote redis:\/\/\S+: 2 entries listed \(this link's manifest\), 2 downloaded \(\d+ bytes\), 0 uploaded \(0 bytes\)$/,
			),
		);
		const quiet = await link(scratch('machine'), redis.url, extmod);
		expect(quiet).toMatchObject({ exitCode: 0, stderr: '' });
	});

	it('a read-only client downloads and never uploads', async () => {
		const extmod = { KBUILD_EXTMOD: '/src/read-only' };
		const reader = await link(scratch('machine'), redis.url, { ...extmod, LTOCACHE_REMOTE_READ_ONLY: 'true' });
		expect(reader).toMatchObject({ exitCode: 0, stderr: '' });
		const keys = await execa('redis-cli', ['-p', String(redis.port), '--scan', '--pattern', '*read-only*']);
		expect(keys.stdout).toBe('');
	});

	describe('what the namespace holds, and how entries come down (issue 36)', () => {
		/** A copy of the real lld, or of a file it loads, one byte longer: another build that behaves the same. */
		const oneByteMore = (from: string, to: string) => {
			fs.copyFileSync(from, to);
			fs.appendFileSync(to, Buffer.from([0]));
			fs.chmodSync(to, 0o755);
			return to;
		};

		it("a machine whose lld differs by one byte downloads none of the first machine's entries; one with the same lld all", async () => {
			const extmod = { KBUILD_EXTMOD: '/src/two-linkers' };
			const other = oneByteMore(fs.realpathSync(LLD), path.join(scratch('other-lld'), 'ld.lld'));
			const a = scratch('machine-a');
			expect(await link(a, redis.url, extmod)).toMatchObject({ exitCode: 0, stderr: '' });
			const b = scratch('machine-b');
			const second = await link(b, redis.url, { ...extmod, LTOCACHE_LD: other });
			expect(second).toMatchObject({ exitCode: 0, stderr: '' });
			expect(second.output).toEqual(reference);
			expect(counters(b)).toMatchObject({ downloads: 0, misses: 2, uploads: 2 });
			const c = scratch('machine-c');
			expect(await link(c, redis.url, extmod)).toMatchObject({ exitCode: 0, stderr: '' });
			expect(counters(c)).toMatchObject({ downloads: 2, misses: 0 });
		});

		it("a machine whose lld loads another libLLVM (first on LD_LIBRARY_PATH) downloads none of the first machine's entries, though its root knew the linker with the system's", async () => {
			const lld = fs.realpathSync(LLD);
			const loaded = /^\s*(libLLVM\S*\.so\S*) => (\S+)/m.exec((await execa('ldd', [lld])).stdout);
			expect(loaded, 'the real lld loads libLLVM as a shared library').not.toBeNull();
			const [, soname, file] = loaded as RegExpExecArray;
			const libs = scratch('libs');
			oneByteMore(file, path.join(libs, soname));
			const extmod = { KBUILD_EXTMOD: '/src/two-libllvms' };
			const a = scratch('machine-a');
			expect(await link(a, redis.url, extmod)).toMatchObject({ exitCode: 0, stderr: '' });
			const b = scratch('machine-b');
			// B has linked (another release) with the system's libLLVM: its root remembers that linker's identity.
			expect(await link(b, redis.url, { ...extmod, KERNELRELEASE: '6.1.0-other' })).toMatchObject({ exitCode: 0, stderr: '' });
			const second = await link(b, redis.url, { ...extmod, LD_LIBRARY_PATH: libs });
			expect(second).toMatchObject({ exitCode: 0, stderr: '' });
			expect(second.output).toEqual(reference);
			expect(counters(b)).toMatchObject({ downloads: 0, misses: 2, uploads: 2 });
			// Without the other libLLVM, B is A's linker again: A's entries come down.
			const c = scratch('machine-c');
			expect(await link(c, redis.url, { ...extmod, KERNELRELEASE: '6.1.0-other' })).toMatchObject({ exitCode: 0, stderr: '' });
			expect(await link(c, redis.url, extmod)).toMatchObject({ exitCode: 0, stderr: '' });
			expect(counters(c)).toMatchObject({ downloads: 2, misses: 0 });
		});

		it.each(['yes', '1', 'on', 'TRUE', 'true'])('remote-read-only %j never uploads, over http or redis', async (value) => {
			const extmod = { KBUILD_EXTMOD: `/src/reader-${value}` };
			const uploaded = async () => {
				const keys = (await execa('redis-cli', ['-p', String(redis.port), '--scan', '--pattern', `*reader-${value}*`])).stdout;
				const files = (fs.readdirSync(nginx.root, { recursive: true }) as string[]).filter((f) => f.includes(`reader-${value}`));
				return [keys !== '', files.length > 0];
			};
			for (const remote of [redis.url, nginx.url]) {
				const reader = await link(scratch('machine'), remote, { ...extmod, LTOCACHE_REMOTE_READ_ONLY: value });
				expect(reader).toMatchObject({ exitCode: 0, stderr: '' });
				expect(reader.output).toEqual(reference);
			}
			expect(await uploaded()).toEqual([false, false]);
			// The same links, not read-only, do upload: the check above looks where they land.
			for (const remote of [redis.url, nginx.url]) expect(await link(scratch('machine'), remote, extmod)).toMatchObject({ exitCode: 0 });
			expect(await uploaded()).toEqual([true, true]);
		});

		it.each(['redis', 'http'])(
			'over %s, a download that cannot be written (EFBIG: a file size limit) leaves no temporary file behind, and the link goes on',
			async (kind) => {
				const url = kind === 'http' ? nginx.url : redis.url;
				const extmod = { KBUILD_EXTMOD: `/src/file-size-limit-${kind}` };
				// The limit binds the shim only: the "linker" lifts it, then runs the real one.
				const wrapper = path.join(scratch('wrapper'), 'ld.lld');
				fs.writeFileSync(wrapper, `#!/bin/sh\nulimit -S -f unlimited\nexec '${LLD}' "$@"\n`, { mode: 0o755 });
				const a = scratch('machine-a');
				expect(await link(a, url, { ...extmod, LTOCACHE_LD: wrapper })).toMatchObject({ exitCode: 0, stderr: '' });
				expect(Math.min(...entriesBelow(a).map((e) => fs.statSync(path.join(a, e)).size))).toBeGreaterThan(512);
				const b = scratch('machine-b');
				const result = await link(b, url, { ...extmod, LTOCACHE_LD: wrapper }, ['prlimit', '--fsize=512:unlimited', '--']);
				expect(result.exitCode).toBe(0);
				expect(result.output).toEqual(reference);
				expect(result.stderr).toMatch(/^ltocache: remote \S+: EFBIG: file too large.*; linking with the local cache$/);
				expect(counters(b)).toMatchObject({ downloads: 0, misses: 2 });
				const left = (fs.readdirSync(b, { recursive: true }) as string[]).filter((f) => /tmp|Thin-/.test(path.basename(f)));
				expect(left).toEqual([]);
			},
		);

		describeIf(Boolean(onPath('strace')), 'strace (Debian: strace)')('written aside', () => {
			it("writes each download under a name of its own and renames it in: no process opens an entry's name for writing", async () => {
				const extmod = { KBUILD_EXTMOD: '/src/aside' };
				expect(await link(scratch('machine-a'), redis.url, extmod)).toMatchObject({ exitCode: 0, stderr: '' });
				const b = scratch('machine-b');
				const trace = path.join(scratch('trace'), 'calls');
				const calls = 'trace=open,openat,creat,rename,renameat,renameat2,link,linkat';
				const result = await link(b, redis.url, extmod, ['strace', '-f', '-qq', '-s', '4096', '-e', calls, '-o', trace]);
				expect(result).toMatchObject({ exitCode: 0, stderr: '' });
				expect(result.output).toEqual(reference);
				expect(counters(b)).toMatchObject({ downloads: 2, misses: 0 });
				const lines = fs.readFileSync(trace, 'utf8').split('\n');
				const paths = (line: string) => [...line.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]);
				const written = lines.filter((l) => /\b(open|openat)\(.*O_(WRONLY|RDWR)|\bcreat\(/.test(l)).flatMap((l) => paths(l).slice(0, 1));
				const renamed = lines.filter((l) => /\b(rename|renameat2?|link|linkat)\(/.test(l) && !/= -1 /.test(l)).map(paths);
				const entries = entriesBelow(b).map((e) => path.join(b, e));
				expect(entries).toHaveLength(2);
				for (const entry of entries) {
					expect(written.filter((w) => path.resolve(w) === entry)).toEqual([]);
					const into = renamed.filter((r) => r[1] === entry);
					expect(into).toHaveLength(1);
					const [from] = into[0];
					expect(path.dirname(from)).toBe(path.dirname(entry));
					expect(path.basename(from)).not.toMatch(/^llvmcache-/);
					expect(written).toContain(from);
				}
			});
		});

		it.each(['0', '0ms', 'abc', '-1s'])(
			'remote-timeout %j is no budget: the shim links with the remote within the default',
			async (value) => {
				const extmod = { KBUILD_EXTMOD: '/src/no-budget' };
				const a = scratch('machine-a');
				expect(await link(a, redis.url, extmod)).toMatchObject({ exitCode: 0, stderr: '' });
				const b = scratch('machine-b');
				const result = await link(b, redis.url, { ...extmod, LTOCACHE_REMOTE_TIMEOUT: value });
				expect(result).toMatchObject({ exitCode: 0, stderr: '' });
				expect(result.output).toEqual(reference);
				expect(counters(b)).toMatchObject({ downloads: 2, misses: 0 });
			},
		);

		it('config refuses a remote-timeout that is no time above 0: one line naming it, exit 2, nothing written', async () => {
			for (const value of ['0', '0s', '0ms', 'abc', '2x', '1e3']) {
				const conf = path.join(scratch('conf'), 'ltocache.conf');
				const result = await ltocache(scratch('root'), ['config', '--system', 'remote-timeout', value], {
					LTOCACHE_SYSTEM_CONFIG: conf,
				});
				expect(result).toMatchObject({ exitCode: 2, stdout: '' });
				expect(result.stderr, value).toMatch(new RegExp(`^ltocache: invalid remote-timeout .${value}. [^\\n]*$`));
				expect(fs.existsSync(conf)).toBe(false);
			}
			const conf = path.join(scratch('conf'), 'ltocache.conf');
			const good = await ltocache(scratch('root'), ['config', '--system', 'remote-timeout', '500ms'], { LTOCACHE_SYSTEM_CONFIG: conf });
			expect(good.exitCode).toBe(0);
			expect(fs.readFileSync(conf, 'utf8')).toBe('remote-timeout = 500ms\n');
		});
	});

	describe('base-dir (issue 34)', () => {
		/** The same objects in a checkout at another path, and their uncached link there. */
		const checkout = (where: string, module: string) => {
			const top = path.join(scratch('checkout'), where);
			const dir = path.join(top, module);
			fs.mkdirSync(dir, { recursive: true });
			const inputs = objects.map((o) => {
				const to = path.join(dir, path.basename(o));
				fs.copyFileSync(o, to);
				return to;
			});
			execaSync(LLD, ['-r', '-o', path.join(dir, 'uncached.o'), ...inputs]);
			return { top, dir, inputs, reference: fs.readFileSync(path.join(dir, 'uncached.o')) };
		};

		it.each(['http', 'redis'])('over %s, two checkouts of the same sources at different paths share every entry', async (kind) => {
			const remote = Object.fromEntries(backends())[kind];
			const module = `drivers/team-${kind}`;
			const alice = checkout('home/alice/linux', module);
			const runner = checkout('builds/runner/42/linux', module);
			const a = scratch('machine-a');
			const first = await link(a, remote, { KBUILD_EXTMOD: alice.dir, LTOCACHE_BASE_DIR: alice.top }, [], alice.inputs);
			expect(first).toMatchObject({ exitCode: 0, stderr: '' });
			expect(first.output).toEqual(alice.reference);
			expect(counters(a)).toMatchObject({ misses: 2, uploads: 2 });

			// Without base-dir the path is the module's name: nothing shared (what base-dir is for).
			const elsewhere = checkout('srv/ci/7/linux', module);
			const apart = scratch('machine-b');
			expect(await link(apart, remote, { KBUILD_EXTMOD: elsewhere.dir }, [], elsewhere.inputs)).toMatchObject({ exitCode: 0, stderr: '' });
			expect(counters(apart)).toMatchObject({ downloads: 0, misses: 2 });

			const b = scratch('machine-b');
			const env = { KBUILD_EXTMOD: runner.dir, LTOCACHE_BASE_DIR: `/nonexistent:${runner.top}` };
			const second = await link(b, remote, env, [], runner.inputs);
			expect(second).toMatchObject({ exitCode: 0, stderr: '' });
			expect(second.output).toEqual(runner.reference);
			expect(counters(b)).toMatchObject({ hits: 2, misses: 0, downloads: 2, uploads: 0 });
			expect(entriesBelow(b).map((e) => path.basename(e))).toEqual(entriesBelow(a).map((e) => path.basename(e)));
		});

		it('config takes absolute directories separated by colons, and refuses anything else with exit 2', async () => {
			const conf = path.join(scratch('conf'), 'ltocache.conf');
			const env = { LTOCACHE_SYSTEM_CONFIG: conf };
			expect(await ltocache(scratch('root'), ['config', '--system', 'base-dir', '/home/alice:/builds'], env)).toMatchObject({
				exitCode: 0,
			});
			expect(fs.readFileSync(conf, 'utf8')).toBe('base-dir = /home/alice:/builds\n');
			for (const value of ['home/alice', '/home/alice:builds', '/a::/b']) {
				const result = await ltocache(scratch('root'), ['config', '--system', 'base-dir', value], env);
				expect(result).toMatchObject({ exitCode: 2, stdout: '' });
				expect(result.stderr).toMatch(new RegExp(`^ltocache: invalid base-dir '${value}' [^\\n]*$`));
			}
			expect(fs.readFileSync(conf, 'utf8')).toBe('base-dir = /home/alice:/builds\n');
		});
	});

	describe('a server that stalls or is down (issue 34)', () => {
		const markers = (root: string) => fs.readdirSync(root).filter((f) => f.startsWith('ltocache.remote-down.'));

		it('costs the first link its budget; the links of the following minute do not connect, and say why once', async () => {
			const silent = await startSilent();
			servers.push(silent);
			for (const remote of [silent.url, silent.url.replace('http', 'redis')]) {
				const root = scratch('machine');
				const env = { LTOCACHE_REMOTE_TIMEOUT: '500ms', KBUILD_EXTMOD: '/src/stalled' };
				const first = await link(root, remote, env);
				expect(first).toMatchObject({ exitCode: 0 });
				expect(first.output).toEqual(reference);
				expect(first.stderr).toMatch(/^ltocache: remote \S+: no answer within 0\.5s; linking with the local cache$/);
				expect(markers(root)).toHaveLength(1);
				const connected = silent.connections();
				for (let i = 0; i < 3; i++) {
					const next = await link(root, remote, env);
					expect(next).toMatchObject({ exitCode: 0 });
					expect(next.output).toEqual(reference);
					expect(next.stderr).toMatch(
						/^ltocache: remote \S+: skipped for \d+s more \(no answer within 0\.5s \d+s ago\); linking with the local cache$/,
					);
				}
				expect(silent.connections()).toBe(connected);
				expect(counters(root)).toMatchObject({ links: 4, downloads: 0, uploads: 0, timeouts: 1, skipped: 3, unreachable: 0, errors: 0 });
				// A minute later the next link tries again (and pays again).
				const marker = path.join(root, markers(root)[0]);
				fs.utimesSync(marker, new Date(Date.now() - 61_000), new Date(Date.now() - 61_000));
				const later = await link(root, remote, env);
				expect(later.stderr).toMatch(/no answer within 0\.5s; linking with the local cache$/);
				expect(silent.connections()).toBeGreaterThan(connected);
			}
		});

		it.each(['http', 'redis'])('over %s, a refused connection is skipped too, and another URL is tried at once', async (kind) => {
			const gone = kind === 'http' ? await startNginx(scratch('nginx-down')) : await startRedis(scratch('redis-down'));
			await gone.stop();
			const root = scratch('machine');
			const extmod = { KBUILD_EXTMOD: `/src/down-${kind}` };
			expect((await link(root, gone.url, extmod)).stderr).toMatch(/ECONNREFUSED.*; linking with the local cache$/);
			expect((await link(root, gone.url, extmod)).stderr).toMatch(/: skipped for \d+s more \(.*ECONNREFUSED.* \d+s ago\); linking/);
			expect(counters(root)).toMatchObject({ links: 2, unreachable: 1, skipped: 1, timeouts: 0, errors: 0 });
			const other = await link(root, kind === 'http' ? nginx.url : redis.url, extmod);
			expect(other).toMatchObject({ exitCode: 0, stderr: '' });
			expect(counters(root)).toMatchObject({ links: 3, uploads: 2 });
		});

		it('stats counts the failures by kind, per directory and summed: a stopped server one unreachable, the next link one skipped, refused credentials one other error', async () => {
			const stopped = await startRedis(scratch('redis-stopped'));
			await stopped.stop();
			const locked = await startRedis(scratch('redis-locked'), ['--requirepass', 'right-pass']);
			servers.push(locked);
			const root = scratch('machine');
			const one = { KBUILD_EXTMOD: '/src/failures-one' };
			const two = { KBUILD_EXTMOD: '/src/failures-two' };
			const links = [
				await link(root, stopped.url, one),
				await link(root, stopped.url, two),
				await link(root, locked.url.replace('redis://', 'redis://:wrong@'), one),
				await link(root, locked.url.replace('redis://', 'redis://:right-pass@'), two),
			];
			for (const result of links) {
				expect(result.exitCode).toBe(0);
				expect(result.output).toEqual(reference);
			}
			expect(links[0].stderr).toMatch(/ECONNREFUSED/);
			expect(links[1].stderr).toMatch(/skipped for/);
			expect(links[2].stderr).toMatch(/authentication refused/);
			expect(links[3].stderr).toBe('');
			const stats = JSON.parse((await ltocache(root, ['stats', '--json'])).stdout) as StatsJson;
			const failures = (c: StatsJson['remote']) => [c.remoteTimeouts, c.remoteUnreachable, c.remoteErrors, c.remoteSkipped];
			expect(failures(stats.remote)).toEqual([0, 1, 1, 1]);
			const [kernel] = stats.kernels;
			expect(failures(kernel)).toEqual([0, 1, 1, 1]);
			const byModule = Object.fromEntries(kernel.keys.map((k) => [k.extmod, failures(k)]));
			expect(byModule).toEqual({ '/src/failures-one': [0, 1, 1, 0], '/src/failures-two': [0, 0, 0, 1] });
			expect((await ltocache(root, ['stats'])).stdout).toMatch(
				/^remote failures: 0 timed out, 1 unreachable, 1 other error; 1 link skipped it as down$/m,
			);
		});

		it('a server back after the minute is used again, and its mark goes', async () => {
			const first = await startRedis(scratch('redis-back'));
			await first.stop();
			const root = scratch('machine');
			expect((await link(root, first.url)).stderr).toMatch(/ECONNREFUSED/);
			expect(markers(root)).toHaveLength(1);
			const back = await startRedis(scratch('redis-back'), [], first.port);
			servers.push(back);
			// Within the minute it is still skipped, up or not.
			expect((await link(root, first.url)).stderr).toMatch(/skipped/);
			const marker = path.join(root, markers(root)[0]);
			fs.utimesSync(marker, new Date(Date.now() - 61_000), new Date(Date.now() - 61_000));
			const again = await link(root, first.url);
			expect(again).toMatchObject({ exitCode: 0, stderr: '' });
			expect(again.output).toEqual(reference);
			expect(markers(root)).toEqual([]);
			expect(counters(root)).toMatchObject({ uploads: 2 });
		});

		it('over http, what arrived within the budget is kept, and a server that sent something is not skipped', async () => {
			const extmod = { KBUILD_EXTMOD: '/src/partial' };
			expect(await link(scratch('machine-a'), nginx.url, extmod)).toMatchObject({ exitCode: 0, stderr: '' });
			const files = (fs.readdirSync(nginx.root, { recursive: true }) as string[]).map((f) => path.join(nginx.root, f));
			const index = parseIndex(fs.readFileSync(files.find((f) => isManifest(f) && f.includes('partial'))!, 'latin1'));
			const [first] = [...index.values()].sort((x, y) => (x.offset ?? 0) - (y.offset ?? 0));
			expect(index.size).toBe(2);
			// The pack's first entry and a byte of the second come through; then the server stalls.
			const staller = await startStaller(nginx.port, first.size + 1);
			servers.push(staller);
			const b = scratch('machine-b');
			const result = await link(b, staller.url, { ...extmod, LTOCACHE_REMOTE_TIMEOUT: '1s' });
			expect(result.exitCode).toBe(0);
			expect(result.output).toEqual(reference);
			expect(result.stderr).toMatch(
				/^ltocache: remote \S+: no answer within 1s \(1 of 2 entries came down\); linking with the local cache$/,
			);
			expect(counters(b)).toMatchObject({ downloads: 1, hits: 1, misses: 1 });
			expect(markers(b)).toEqual([]);
		});

		it('over http, a server that gives the manifest and then not one entry within the budget is skipped by the links of the following minute', async () => {
			const modules = ['/src/stall-entries-1', '/src/stall-entries-2'];
			for (const module of modules) {
				expect(await link(scratch('machine-a'), nginx.url, { KBUILD_EXTMOD: module })).toMatchObject({ exitCode: 0, stderr: '' });
			}
			// Manifests come through; a pack's response never sends a byte of its body.
			const staller = await startStaller(nginx.port, 0);
			servers.push(staller);
			const b = scratch('machine-b');
			const env = { LTOCACHE_REMOTE_TIMEOUT: '1s' };
			const first = await link(b, staller.url, { ...env, KBUILD_EXTMOD: modules[0] });
			expect(first.exitCode).toBe(0);
			expect(first.output).toEqual(reference);
			expect(first.stderr).toMatch(/^ltocache: remote \S+: no answer within 1s; linking with the local cache$/);
			expect(markers(b)).toHaveLength(1);
			const second = await link(b, staller.url, { ...env, KBUILD_EXTMOD: modules[1] });
			expect(second.exitCode).toBe(0);
			expect(second.output).toEqual(reference);
			expect(second.stderr).toMatch(
				/^ltocache: remote \S+: skipped for \d+s more \(no answer within 1s \d+s ago\); linking with the local cache$/,
			);
		});

		it('an answer that is not unreachability (a full server) is not skipped', async () => {
			const root = scratch('machine');
			const full = nginx.url.replace('/cache/', '/full/');
			for (let i = 0; i < 2; i++) {
				const result = await link(root, full, { KBUILD_EXTMOD: `/src/full-${i}` });
				expect(result.stderr).toMatch(/HTTP 507; the entries this link wrote are not shared$/);
			}
			expect(markers(root)).toEqual([]);
		});
	});

	describe('a hostile remote (issue 34)', () => {
		const MiB = 1024 ** 2;
		/** A "linker" that records the shim's peak memory (its parent's VmHWM, in kB: the download is over by then), then runs the real one. */
		const recorder = () => {
			const file = path.join(scratch('hwm'), 'ld.lld');
			fs.writeFileSync(file, `#!/bin/sh\ngrep VmHWM /proc/$PPID/status > "$0.hwm"\nexec '${LLD}' "$@"\n`, { mode: 0o755 });
			return { file, peak: () => Number(/(\d+) kB/.exec(fs.readFileSync(`${file}.hwm`, 'utf8'))?.[1]) * 1024 };
		};
		const sum = 'e'.repeat(64);
		const hex = (n: number) => n.toString(16).toUpperCase().padStart(40, '0');

		it('over http: entries claimed larger than any lld writes, names too long, 300 MB of packs, a 300 MB index: the link stays under 256 MiB', async () => {
			const linker = recorder();
			const extmod = { KBUILD_EXTMOD: '/src/hostile-http', LTOCACHE_LD: linker.file, LTOCACHE_REMOTE_TIMEOUT: '60s' };
			expect(await link(scratch('machine-a'), nginx.url, extmod)).toMatchObject({ exitCode: 0, stderr: '' });
			const files = (fs.readdirSync(nginx.root, { recursive: true }) as string[]).map((f) => path.join(nginx.root, f));
			const indexFile = files.find((f) => isManifest(f) && f.includes('hostile-http'))!;
			const honest = fs.readFileSync(indexFile, 'latin1');
			// A pack of 300 MB (sparse: zeros), five entries of 60 MB listed in it, and lines no entry may have.
			const pack = `pack-${'f'.repeat(64)}`;
			fs.closeSync(fs.openSync(path.join(path.dirname(indexFile), pack), 'w'));
			fs.truncateSync(path.join(path.dirname(indexFile), pack), 300 * 1000 * 1000);
			const hostile = [
				...Array.from({ length: 5 }, (_, i) => `llvmcache-${hex(i + 1)} ${sum} ${60 * 1000 * 1000} ${pack} ${i * 60 * 1000 * 1000}`),
				`llvmcache-${hex(9)} ${sum} 1900000000 ${pack} 0`,
				`llvmcache-${'A'.repeat(290)} ${sum} 10`,
			];
			fs.writeFileSync(indexFile, `${hostile.join('\n')}\n${honest}`);
			const b = scratch('machine-b');
			const second = await link(b, nginx.url, extmod);
			expect(second).toMatchObject({ exitCode: 0, stderr: '' });
			expect(second.output).toEqual(reference);
			expect(counters(b)).toMatchObject({ downloads: 2, misses: 0 });
			expect(entriesBelow(b)).toHaveLength(2);
			expect(linker.peak()).toBeGreaterThan(10 * MiB);
			expect(linker.peak()).toBeLessThan(256 * MiB);

			// The manifest itself 300 MB: refused at 16 MiB, the link goes on alone.
			fs.closeSync(fs.openSync(indexFile, 'w'));
			fs.truncateSync(indexFile, 300 * 1000 * 1000);
			const c = scratch('machine-c');
			const third = await link(c, nginx.url, extmod);
			expect(third.exitCode).toBe(0);
			expect(third.output).toEqual(reference);
			expect(third.stderr).toMatch(
				/^ltocache: remote \S+: manifest-[0-9a-f]{64}: a response of more than 16777216 bytes; linking with the local cache$/,
			);
			expect(linker.peak()).toBeLessThan(256 * MiB);
		});

		it('over redis: an entry of 300 MB under a name the manifest lists small, and bad manifest lines: refused, the link stays under 256 MiB', async () => {
			const linker = recorder();
			const extmod = { KBUILD_EXTMOD: '/src/hostile-redis', LTOCACHE_LD: linker.file, LTOCACHE_REMOTE_TIMEOUT: '60s' };
			expect(await link(scratch('machine-a'), redis.url, extmod)).toMatchObject({ exitCode: 0, stderr: '' });
			const cli = (...args: string[]) => execa('redis-cli', ['-p', String(redis.port), ...args]);
			const indexKey = (await cli('--scan', '--pattern', '*hostile-redis*/manifest-*')).stdout.trim();
			const ns = indexKey.slice(0, indexKey.lastIndexOf('/'));
			const prepend = async (lines: string[]) => cli('SET', indexKey, `${lines.join('\n')}\n${(await cli('GET', indexKey)).stdout}\n`);
			// Bad lines first: each is passed over, the honest ones still come down.
			await prepend([`llvmcache-${'A'.repeat(290)} ${sum} 10`, `llvmcache-${hex(9)} ${sum} 1900000000`]);
			const b = scratch('machine-b');
			const second = await link(b, redis.url, extmod);
			expect(second).toMatchObject({ exitCode: 0, stderr: '' });
			expect(counters(b)).toMatchObject({ downloads: 2, misses: 0 });

			// An entry the manifest lists at 10 bytes, 300 MB on the server.
			await prepend([`llvmcache-${hex(1)} ${sum} 10`]);
			await cli('SETRANGE', `${ns}/llvmcache-${hex(1)}`, String(300 * 1000 * 1000), 'x');
			const c = scratch('machine-c');
			const third = await link(c, redis.url, extmod);
			expect(third.exitCode).toBe(0);
			expect(third.output).toEqual(reference);
			expect(third.stderr).toMatch(
				/^ltocache: remote \S+: a Redis reply of more than \d+ bytes or \d+ items; linking with the local cache$/,
			);
			expect(linker.peak()).toBeLessThan(256 * MiB);
			await cli('DEL', `${ns}/llvmcache-${hex(1)}`);
		});
	});

	describe("the directory's own record", () => {
		it.each([
			['a FIFO', (file: string) => execaSync('mkfifo', [file])],
			['a symlink to /dev/zero', (file: string) => fs.symlinkSync('/dev/zero', file)],
			['a symlink to a file elsewhere', (file: string) => fs.symlinkSync(path.join(scratch('elsewhere'), 'x'), file)],
		])(
			'ltocache.remote that is %s is passed over: the link neither hangs nor reads without end, and is byte-identical',
			async (_, plant) => {
				const extmod = { KBUILD_EXTMOD: `/src/record-${Math.random().toString(36).slice(2)}` };
				const a = scratch('machine');
				expect(await link(a, redis.url, extmod)).toMatchObject({ exitCode: 0, stderr: '' });
				const release = path.join(a, '6.1.0-team');
				const [key] = fs.readdirSync(release);
				const record = path.join(release, key, 'ltocache.remote');
				fs.rmSync(record, { force: true });
				plant(record);
				// Other inputs: not this link's manifest, so the record is read for where its entries are.
				const result = await link(a, redis.url, extmod, [], [objects[0]]);
				expect(result).toMatchObject({ exitCode: 0, stderr: '' });
				const alone = path.join(scratch('alone'), 'out.o');
				execaSync(LLD, ['-r', '-o', alone, objects[0]]);
				expect(result.output).toEqual(fs.readFileSync(alone));
				// Replaced by a file of its own, never written through the link.
				expect(fs.lstatSync(record).isFile()).toBe(true);
				expect(fs.existsSync(path.join(scratch('elsewhere'), 'x'))).toBe(false);
			},
		);
	});

	describe('a manifest known here', () => {
		it('a warm link whose manifest this directory fetched or wrote, its entries all here, asks the remote nothing; one missing entry, and it asks again', async () => {
			const own = await startRedis(scratch('redis-known'));
			servers.push(own);
			const extmod = { KBUILD_EXTMOD: '/src/known-here' };
			const a = scratch('machine');
			expect(await link(a, own.url, extmod)).toMatchObject({ exitCode: 0, stderr: '' });
			const warm = await link(a, own.url, { ...extmod, LTOCACHE_VERBOSE: '1' });
			expect(warm.exitCode).toBe(0);
			expect(warm.output).toEqual(reference);
			expect(warm.stderr.split('\n')).toContainEqual(
				expect.stringMatching(
					/^ltocache: remote redis:\/\/\S+: 2 entries listed \(this link's manifest, known here: not asked\), 0 downloaded \(0 bytes\), 0 uploaded \(0 bytes\)$/,
				),
			);
			// Machine B fetched it: B knows it too.
			const b = scratch('machine');
			expect(await link(b, own.url, extmod)).toMatchObject({ exitCode: 0, stderr: '' });
			expect(counters(b)).toMatchObject({ downloads: 2, misses: 0 });

			// The server gone: a link that would connect says so; these do not.
			await own.stop();
			for (const root of [a, b]) {
				const result = await link(root, own.url, extmod);
				expect(result).toMatchObject({ exitCode: 0, stderr: '' });
				expect(result.output).toEqual(reference);
			}
			const [entry] = entriesBelow(b);
			fs.rmSync(path.join(b, entry));
			const asks = await link(b, own.url, extmod);
			expect(asks.exitCode).toBe(0);
			expect(asks.output).toEqual(reference);
			expect(asks.stderr).toMatch(/^ltocache: remote \S+: .*refused.*; linking with the local cache$/);
		});

		it('a manifest the remote lost (evicted) is written again by the machine that knows it, once what it knows is an hour old; a read-only machine then downloads', async () => {
			const own = await startRedis(scratch('redis-lost'));
			servers.push(own);
			const cli = (args: string[]) => execa('redis-cli', ['-p', String(own.port), ...args]);
			const extmod = { KBUILD_EXTMOD: '/src/known-lost' };
			const a = scratch('machine');
			expect(await link(a, own.url, extmod)).toMatchObject({ exitCode: 0, stderr: '' });
			const manifests = async () => (await cli(['--scan', '--pattern', '*/manifest-*'])).stdout.split('\n').filter(Boolean);
			const [manifest] = await manifests();
			expect(manifest).toBeDefined();
			// What an allkeys-lru Redis takes first: the manifest, which warm machines no longer read (the head, which
			// other inputs' links read, stays).
			await cli(['DEL', manifest]);
			// Within the hour the machine that knows the manifest takes it for the remote's word.
			const warm = await link(a, own.url, extmod);
			expect(warm).toMatchObject({ exitCode: 0, stderr: '' });
			expect(warm.output).toEqual(reference);
			expect(await manifests()).toEqual([]);
			const release = path.join(a, '6.1.0-team');
			const known = path.join(release, fs.readdirSync(release)[0], 'ltocache.manifest');
			const hourAgo = new Date(Date.now() - 61 * 60_000);
			fs.utimesSync(known, hourAgo, hourAgo);
			const later = await link(a, own.url, { ...extmod, LTOCACHE_VERBOSE: '1' });
			expect(later.exitCode).toBe(0);
			expect(later.output).toEqual(reference);
			expect(later.stderr).toMatch(
				/: 2 entries listed \(the latest manifest\), 0 downloaded \(0 bytes\), 0 uploaded \(0 bytes\), manifest written$/m,
			);
			expect(await manifests()).toEqual([manifest]);
			const b = scratch('machine');
			const reader = await link(b, own.url, { ...extmod, LTOCACHE_REMOTE_READ_ONLY: 'true' });
			expect(reader).toMatchObject({ exitCode: 0, stderr: '' });
			expect(reader.output).toEqual(reference);
			expect(counters(b)).toMatchObject({ downloads: 2, hits: 2, misses: 0 });
		});

		it.each(['http', 'redis'])(
			'over %s, an entry the remote lost while its manifest stayed is put back by the machine that has it, once it asks again; a read-only machine then downloads it',
			async (kind) => {
				const own = kind === 'http' ? await startNginx(scratch('nginx-lost-entry')) : await startRedis(scratch('redis-lost-entry'));
				servers.push(own);
				const extmod = { KBUILD_EXTMOD: `/src/lost-entry-${kind}` };
				const a = scratch('machine');
				expect(await link(a, own.url, extmod)).toMatchObject({ exitCode: 0, stderr: '' });
				expect(counters(a)).toMatchObject({ uploads: 2 });
				const release = path.join(a, '6.1.0-team');
				const dir = path.join(release, fs.readdirSync(release)[0]);
				const [lost] = [...parseIndex(fs.readFileSync(path.join(dir, 'ltocache.manifest'), 'latin1')).keys()];
				// Evicted (Redis) or cleaned up (its pack, over HTTP): the manifest still lists it, and the head.
				if (kind === 'http') {
					const root = (own as Server & { root: string }).root;
					for (const file of fs.readdirSync(root, { recursive: true }) as string[]) {
						if (path.basename(file).startsWith('pack-')) fs.rmSync(path.join(root, file));
					}
				} else {
					const keys = (await execa('redis-cli', ['-p', String(own.port), '--scan', '--pattern', `*/${lost}`])).stdout;
					expect(keys).not.toBe('');
					await execa('redis-cli', ['-p', String(own.port), 'DEL', keys]);
				}
				const hourAgo = new Date(Date.now() - 61 * 60_000);
				fs.utimesSync(path.join(dir, 'ltocache.manifest'), hourAgo, hourAgo);
				const again = await link(a, own.url, extmod);
				expect(again).toMatchObject({ exitCode: 0, stderr: '' });
				expect(again.output).toEqual(reference);
				expect(counters(a).uploads).toBe(kind === 'http' ? 4 : 3);
				const b = scratch('machine');
				const reader = await link(b, own.url, { ...extmod, LTOCACHE_REMOTE_READ_ONLY: 'true' });
				expect(reader).toMatchObject({ exitCode: 0, stderr: '' });
				expect(reader.output).toEqual(reference);
				expect(counters(b)).toMatchObject({ downloads: 2, hits: 2, misses: 0 });
			},
		);

		it('a Redis user that may not run STRLEN cannot tell what the remote lost: the link asks, says nothing, and knows the manifest again', async () => {
			const own = await startRedis(scratch('redis-acl'), [
				'--user',
				'default',
				'off',
				'--user',
				'builder',
				'on',
				'>pw',
				'~*',
				'&*',
				'+@all',
				'-strlen',
			]);
			servers.push(own);
			const url = own.url.replace('redis://', 'redis://builder:pw@');
			const extmod = { KBUILD_EXTMOD: '/src/acl-strlen' };
			const a = scratch('machine');
			expect(await link(a, url, extmod)).toMatchObject({ exitCode: 0, stderr: '' });
			const release = path.join(a, '6.1.0-team');
			const known = path.join(release, fs.readdirSync(release)[0], 'ltocache.manifest');
			const hourAgo = new Date(Date.now() - 61 * 60_000);
			fs.utimesSync(known, hourAgo, hourAgo);
			const again = await link(a, url, { ...extmod, LTOCACHE_VERBOSE: '1' });
			expect(again.exitCode).toBe(0);
			expect(again.output).toEqual(reference);
			expect(again.stderr).toMatch(/: 2 entries listed \(this link's manifest\), 0 downloaded \(0 bytes\), 0 uploaded \(0 bytes\)$/m);
			expect(again.stderr).not.toMatch(/NOPERM|given up/);
			expect(Date.now() - fs.statSync(known).mtimeMs).toBeLessThan(60 * 60_000);
		});

		it('a remote that lost everything (a Redis restarted without persistence) gets the entries back from the next machine that asks, though its record placed them; a read-only machine then downloads', async () => {
			const own = await startRedis(scratch('redis-reset'));
			servers.push(own);
			const extmod = { KBUILD_EXTMOD: '/src/reset' };
			const a = scratch('machine');
			expect(await link(a, own.url, extmod)).toMatchObject({ exitCode: 0, stderr: '' });
			expect(counters(a)).toMatchObject({ uploads: 2 });
			await execa('redis-cli', ['-p', String(own.port), 'FLUSHALL']);
			// An hour on, A's link asks again: no manifest, no head.
			const release = path.join(a, '6.1.0-team');
			const known = path.join(release, fs.readdirSync(release)[0], 'ltocache.manifest');
			const hourAgo = new Date(Date.now() - 61 * 60_000);
			fs.utimesSync(known, hourAgo, hourAgo);
			const again = await link(a, own.url, extmod);
			expect(again).toMatchObject({ exitCode: 0, stderr: '' });
			expect(again.output).toEqual(reference);
			expect(counters(a)).toMatchObject({ uploads: 4 });
			const b = scratch('machine');
			const reader = await link(b, own.url, { ...extmod, LTOCACHE_REMOTE_READ_ONLY: 'true' });
			expect(reader).toMatchObject({ exitCode: 0, stderr: '' });
			expect(reader.output).toEqual(reference);
			expect(counters(b)).toMatchObject({ downloads: 2, hits: 2, misses: 0 });
		});

		it('a link that asked nothing before it and must upload after it skips a remote the links of the last minute found down', async () => {
			const own = await startRedis(scratch('redis-known-down'));
			servers.push(own);
			const extmod = { KBUILD_EXTMOD: '/src/known-down' };
			const a = scratch('machine');
			// Another commit's link first: its entries are in the directory, and placed in the record.
			expect(await link(a, own.url, extmod, [], [objects[0]])).toMatchObject({ exitCode: 0, stderr: '' });
			expect(await link(a, own.url, extmod)).toMatchObject({ exitCode: 0, stderr: '' });
			const release = path.join(a, '6.1.0-team');
			const dir = path.join(release, fs.readdirSync(release)[0]);
			const known = path.join(dir, 'ltocache.manifest');
			const listed = parseIndex(fs.readFileSync(known, 'latin1'));
			const record = parseIndex(fs.readFileSync(path.join(dir, 'ltocache.remote'), 'latin1'));
			const others = [...record.keys()].filter((name) => !listed.has(name));
			expect(others.length).toBeGreaterThan(0);
			// What another machine's manifest for these inputs may list (one on a noatime mount lists its whole directory):
			// more than this link uses, all here, so the link asks nothing before it, and after it has a manifest to write.
			const { mtime } = fs.statSync(known);
			fs.appendFileSync(known, others.map((name) => `${name} ${record.get(name)?.sum} ${record.get(name)?.size}\n`).join(''));
			fs.utimesSync(known, mtime, mtime);
			// The server stalls: the first link pays its budget; the next ones, of the same minute, must not.
			await own.stop();
			const silent = await startSilent(own.port);
			servers.push(silent);
			const first = await link(a, own.url, extmod);
			expect(first.exitCode).toBe(0);
			expect(first.output).toEqual(reference);
			expect(first.stderr).toMatch(/^ltocache: remote \S+: no answer within 1s; the entries this link wrote are not shared$/);
			const connected = silent.connections();
			for (let i = 0; i < 2; i++) {
				const next = await link(a, own.url, extmod);
				expect(next.exitCode).toBe(0);
				expect(next.output).toEqual(reference);
				expect(next.stderr).toMatch(
					/^ltocache: remote \S+: skipped for \d+s more \(no answer within 1s \d+s ago\); the entries this link wrote are not shared$/,
				);
			}
			expect(silent.connections()).toBe(connected);
			expect(readCounters(dir)).toMatchObject({ timeouts: 1, skipped: 2 });
		});

		it.each([
			['a FIFO', (file: string) => execaSync('mkfifo', [file])],
			['a symlink to /dev/zero', (file: string) => fs.symlinkSync('/dev/zero', file)],
			['a symlink to a file elsewhere', (file: string) => fs.symlinkSync(path.join(scratch('elsewhere'), 'x'), file)],
		])('ltocache.manifest that is %s is passed over: the link asks the remote, and is byte-identical', async (_, plant) => {
			const extmod = { KBUILD_EXTMOD: `/src/known-${Math.random().toString(36).slice(2)}` };
			const a = scratch('machine');
			expect(await link(a, redis.url, extmod)).toMatchObject({ exitCode: 0, stderr: '' });
			const release = path.join(a, '6.1.0-team');
			const [key] = fs.readdirSync(release);
			const known = path.join(release, key, 'ltocache.manifest');
			expect(fs.lstatSync(known).isFile()).toBe(true);
			fs.rmSync(known);
			plant(known);
			const result = await link(a, redis.url, { ...extmod, LTOCACHE_VERBOSE: '1' });
			expect(result.exitCode).toBe(0);
			expect(result.output).toEqual(reference);
			expect(result.stderr).toMatch(/: 2 entries listed \(this link's manifest\), 0 downloaded/);
			expect(fs.existsSync(path.join(scratch('elsewhere'), 'x'))).toBe(false);
		});
	});

	const marker = (remote: string) => `ltocache.remote-down.${sha256(Buffer.from(remote)).slice(0, 16)}`;
	it.each([
		["the down-marker's, the remote answering", () => redis.url, marker],
		["the down-marker's, the remote refusing connections", () => 'redis://127.0.0.1:1', marker],
		["the linkers' list's, the remote answering", () => redis.url, () => 'ltocache.linkers.json'],
	])(
		"a FIFO at the root under %s name (a shared root's other member) neither hangs the link nor is written through",
		async (_, url, name) => {
			const remote = url();
			const root = scratch('machine');
			execaSync('mkfifo', [path.join(root, name(remote))]);
			const result = await link(root, remote, { KBUILD_EXTMOD: '/src/fifo-at-root' });
			expect(result.exitCode).toBe(0);
			expect(result.output).toEqual(reference);
			if (remote === redis.url) expect(result.stderr).toBe('');
			else expect(result.stderr).toMatch(/^ltocache: remote \S+: .*refused.*; linking with the local cache$/);
		},
	);

	describeIf(Boolean(onPath('redis-cli') && onPath('unshare')), 'redis-cli and unshare (Debian: redis-tools util-linux)')(
		'free space',
		() => {
			it('downloads leave the free space the link was promised: a manifest listing 36 MiB on a 40 MiB file system takes none of it', async () => {
				const extmod = { KBUILD_EXTMOD: `/src/reserve-${Math.random().toString(36).slice(2)}` };
				expect(await link(scratch('machine-a'), redis.url, extmod)).toMatchObject({ exitCode: 0, stderr: '' });
				const cli = (args: string[], input?: Buffer) => execa('redis-cli', ['-p', String(redis.port), ...args], { input });
				const pattern = `*${extmod.KBUILD_EXTMOD.split('/').pop()}*`;
				const manifests = (await cli(['--scan', '--pattern', `${pattern}/manifest-*`])).stdout.split('\n').filter(Boolean);
				expect(manifests).toHaveLength(1);
				const ns = manifests[0].replace(/\/manifest-[0-9a-f]+$/, '');
				// Entries lld never asks for, but whole and as listed: only the free space can keep them out.
				let lines = '';
				for (let i = 0; i < 4; i++) {
					const data = Buffer.alloc(9 * 1024 ** 2, i + 1);
					const name = `llvmcache-${'f'.repeat(39)}${i}`;
					await cli(['-x', 'SET', `${ns}/${name}`], data);
					lines += `${name} ${sha256(data)} ${data.length}\n`;
				}
				for (const key of [manifests[0], `${ns}/head`]) {
					const text = (await cli(['--raw', 'GET', key])).stdout;
					await cli(['-x', 'SET', key], Buffer.from(`${text.trim()}\n${lines}`));
				}
				const script =
					'mount -t tmpfs -o size=40m tmpfs "$LTOCACHE_DIR" && "$@"; status=$?; stat -f -c "%a %S" "$LTOCACHE_DIR"; exit $status';
				const result = await link(scratch('machine-b'), redis.url, extmod, ['unshare', '-m', 'sh', '-c', script, 'sh']);
				expect(result).toMatchObject({ exitCode: 0, stderr: '' });
				expect(result.output).toEqual(reference);
				const [blocks, size] = result.stdout.trim().split(' ').map(Number);
				expect(blocks * size).toBeGreaterThanOrEqual(32 * 1024 ** 2);
			});
		},
	);

	describe('what a failure is called (issue 34)', () => {
		it('a server that is down is said to refuse the connection, with a password in the URL too', async () => {
			const gone = await startRedis(scratch('redis-gone'), ['--requirepass', 'pw']);
			await gone.stop();
			const result = await link(scratch('machine'), gone.url.replace('redis://', 'redis://:pw@'));
			expect(result.exitCode).toBe(0);
			expect(result.stderr).toMatch(
				/^ltocache: remote redis:\/\/127\.0\.0\.1:\d+\/0: connection refused \(connect ECONNREFUSED [^)]*\); linking with the local cache$/,
			);
		});

		it('a connection cut short is said to be cut, not to have timed out', async () => {
			const cutter = await startCutter();
			servers.push(cutter);
			for (const remote of [cutter.url, cutter.url.replace('http', 'redis')]) {
				const result = await link(scratch('machine'), remote, { LTOCACHE_REMOTE_TIMEOUT: '30s' });
				expect(result.exitCode).toBe(0);
				expect(result.output).toEqual(reference);
				expect(result.stderr).toMatch(/^ltocache: remote \S+: the connection was cut \([^)]+\); linking with the local cache$/);
			}
		});

		it('credentials an HTTP server refuses are said to be refused', async () => {
			const result = await link(scratch('machine'), nginx.url.replace('http://', 'http://u:secret@').replace('/cache/', '/locked/'));
			expect(result.exitCode).toBe(0);
			expect(result.stderr).toMatch(/^ltocache: remote \S+: manifest: authentication refused \(HTTP 401\); linking with the local cache$/);
			expect(result.stderr).not.toContain('secret');
		});

		it('rediss: an untrusted certificate is said to be one, with how to trust it; trusted, the link shares, with no warning about the address', async () => {
			const proxy = await startTlsProxy(scratch('tls'), redis.port);
			servers.push(proxy);
			const remote = proxy.url.replace('rediss://', 'rediss://:pw@');
			const untrusted = await link(scratch('machine'), remote, { KBUILD_EXTMOD: '/src/tls' });
			expect(untrusted.exitCode).toBe(0);
			expect(untrusted.stderr).toMatch(
				/^ltocache: remote rediss:\S+: TLS: self[- ]signed certificate \(\w+\); a private CA is trusted with NODE_EXTRA_CA_CERTS=<its PEM file>; linking with the local cache$/,
			);
			const trusted = { KBUILD_EXTMOD: '/src/tls', NODE_EXTRA_CA_CERTS: proxy.ca };
			const a = scratch('machine-a');
			expect(await link(a, proxy.url, trusted)).toMatchObject({ exitCode: 0, stderr: '' });
			const b = scratch('machine-b');
			const second = await link(b, proxy.url, trusted);
			expect(second).toMatchObject({ exitCode: 0, stderr: '' });
			expect(second.output).toEqual(reference);
			expect(counters(b)).toMatchObject({ downloads: 2, misses: 0 });
		});
	});

	describe('doctor', () => {
		it('says the remote answers and takes writes', async () => {
			for (const [, remote] of backends()) {
				const result = await ltocache(scratch('root'), ['doctor'], { LTOCACHE_REMOTE: remote, LTOCACHE_MODULES: scratch('none') });
				expect(result.stdout).toMatch(/^(ok|warn) {2,4}remote: \S+ answers \(\d+ ms\) and takes writes/m);
			}
		});

		it('fails a server that takes writes and stores nothing', async () => {
			const hole = await startBlackHole();
			servers.push(hole);
			const result = await ltocache(scratch('root'), ['doctor'], { LTOCACHE_REMOTE: hole.url, LTOCACHE_MODULES: scratch('none') });
			expect(result.stdout).toMatch(
				/^fail {2,4}remote: \S+: took a write and gave back other bytes: it stores nothing; links go on with the local cache$/m,
			);
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
