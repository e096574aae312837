// npm run bench: what the shim adds to a link, and how fast the manager is,
// as ratios against baselines measured in the same run (these machines are
// shared and noisy, so absolute times mean little).
//
//   node bench/run.js [--runs N] [--entries N]
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({ options: { runs: { type: 'string', default: '40' }, entries: { type: 'string', default: '100000' } } });
const RUNS = Number(values.runs);
const ENTRIES = Number(values.entries);

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ltocache-bench-'));
process.on('exit', () => fs.rmSync(work, { recursive: true, force: true }));

function run(cmd, args, options = {}) {
	const result = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
	if (result.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${result.stderr}`);
	return result;
}

function time(cmd, args, options) {
	const start = process.hrtime.bigint();
	run(cmd, args, options);
	return Number(process.hrtime.bigint() - start) / 1e6;
}

const median = (xs) => {
	const s = [...xs].sort((a, b) => a - b);
	return s[Math.floor(s.length / 2)];
};

/** Interleave the commands, run after run, so drifting machine load hits them all alike. */
function compare(commands, runs = RUNS) {
	const samples = commands.map(() => []);
	for (const c of commands) time(...c.run); // warm up
	for (let i = 0; i < runs; i++) {
		for (const [j, c] of commands.entries()) samples[j].push(time(...c.run));
	}
	return commands.map((c, j) => ({ name: c.name, ms: median(samples[j]) }));
}

/** Peak RSS in KiB of the command or its largest descendant, from GNU time (Debian package time) when it is there. */
function peakRss(cmd, args, options = {}) {
	if (!fs.existsSync('/usr/bin/time')) return undefined;
	const result = spawnSync('/usr/bin/time', ['-f', '%M', cmd, ...args], { stdio: ['ignore', 'ignore', 'pipe'], ...options });
	return Number(result.stderr.toString().trim().split('\n').pop());
}

function memory(title, commands) {
	const rows = commands.map(([name, ...run]) => [name, peakRss(...run)]);
	if (rows.some(([, kib]) => !kib)) return console.log(`  (${title}: install GNU time for peak memory)`);
	const base = rows[0][1];
	console.log(`  peak memory, ${title}:`);
	for (const [name, kib] of rows)
		console.log(`    ${name.padEnd(34)} ${String(Math.round(kib / 1024)).padStart(5)} MiB  ${(kib / base).toFixed(2)}x ${rows[0][0]}`);
}

const fmt = (ms) => `${ms.toFixed(1).padStart(7)} ms`;

// --- the shim ---------------------------------------------------------------
function benchShim() {
	const objects = ['a', 'b'].map((n) => {
		const o = path.join(work, `${n}.o`);
		run('clang', ['-flto=thin', '-O2', '-c', path.join(repo, 'test/fixtures', `${n}.c`), '-o', o]);
		return o;
	});
	const real = run('sh', ['-c', 'command -v ld.lld']).stdout.toString().trim();
	const shims = path.join(work, 'shims');
	fs.mkdirSync(shims);
	fs.symlinkSync(path.join(repo, 'bin/ld.lld'), path.join(shims, 'ld.lld'));
	// The floor a wrapper can be compared with: a shell script that only rewrites the flag and execs.
	const sh = path.join(work, 'sh-wrapper');
	fs.writeFileSync(
		sh,
		`#!/bin/sh\nfor a do\n\tshift\n\tcase $a in --thinlto-cache-dir=*) a=--thinlto-cache-dir=${work}/sh-cache;; esac\n\tset -- "$@" "$a"\ndone\nexec ${real} "$@"\n`,
		{ mode: 0o755 },
	);
	// Unwritable even for root: below a regular file (ENOTDIR).
	const blocker = path.join(work, 'blocker');
	fs.writeFileSync(blocker, '');
	const env = {
		...process.env,
		PATH: `${shims}:${process.env.PATH}`,
		LTOCACHE_DIR: path.join(work, 'root'),
		LTOCACHE_AUTO_PRUNE: '0',
		KERNELRELEASE: 'bench',
	};
	const link = (cache) => ['-r', '-o', path.join(work, 'out.o'), `--thinlto-cache-dir=${cache}`, ...objects];
	const writable = path.join(work, 'cache');
	const results = compare([
		{ name: 'node -e 0', run: [process.execPath, ['-e', '0'], { env }] },
		{ name: 'ld.lld (direct, cached link)', run: [real, link(writable), { env }] },
		{ name: 'sh wrapper -> ld.lld', run: [sh, link(`${blocker}/x`), { env }] },
		{ name: 'shim -> ld.lld (pass-through)', run: [path.join(shims, 'ld.lld'), link(writable), { env }] },
		{ name: 'shim -> ld.lld (redirected)', run: [path.join(shims, 'ld.lld'), link(`${blocker}/x`), { env }] },
		{ name: 'shim --version', run: [path.join(shims, 'ld.lld'), ['--version'], { env }] },
		{ name: 'ld.lld --version', run: [real, ['--version'], { env }] },
	]);
	const by = Object.fromEntries(results.map((r) => [r.name, r.ms]));
	const node = by['node -e 0'];
	const direct = by['ld.lld (direct, cached link)'];
	console.log(`\nThe shim, per link (median of ${RUNS} interleaved runs; ratios against node -e 0)`);
	for (const r of results) console.log(`  ${r.name.padEnd(32)} ${fmt(r.ms)}  ${(r.ms / node).toFixed(2)}x node`);
	const added = by['shim -> ld.lld (redirected)'] - direct;
	console.log(
		`  added by the shim to a redirected link: ${added.toFixed(1)} ms = ${(added / node).toFixed(2)}x node -e 0` +
			`; the sh wrapper adds ${(by['sh wrapper -> ld.lld'] - direct).toFixed(1)} ms`,
	);
	console.log(`  added by the shim to a pass-through link: ${(by['shim -> ld.lld (pass-through)'] - direct).toFixed(1)} ms`);
	memory('per process', [
		['node -e 0', process.execPath, ['-e', '0'], { env }],
		['ld.lld (direct link)', real, link(writable), { env }],
		['shim (redirected link)', path.join(shims, 'ld.lld'), link(`${blocker}/x`), { env }],
		['shim --version (the shim itself)', path.join(shims, 'ld.lld'), ['--version'], { env }],
	]);
}

// --- the manager --------------------------------------------------------------
function generate(root, entries) {
	const kernels = ['5.15.0-91', '6.1.0-18', '6.6.13', '6.8.0-31'];
	const perKey = Math.ceil(entries / (kernels.length * 25));
	let n = 0;
	const now = Date.now() / 1000;
	for (const k of kernels) {
		for (let m = 0; m < 25 && n < entries; m++) {
			const dir = path.join(root, k, `var-lib-dkms-mod${m}-1.0-build-${m.toString(16).padStart(12, '0')}`);
			fs.mkdirSync(dir, { recursive: true });
			fs.writeFileSync(
				path.join(dir, 'ltocache.json'),
				JSON.stringify({ version: 1, release: k, extmod: `/var/lib/dkms/mod${m}/1.0/build`, original: '.thinlto-cache' }),
			);
			for (let i = 0; i < perKey && n < entries; i++, n++) {
				const file = path.join(dir, `llvmcache-${n.toString(16).padStart(40, '0')}`);
				fs.writeFileSync(file, Buffer.alloc(100 + (n % 4000)));
				const t = now - (n % 10_000) * 60;
				fs.utimesSync(file, t, t);
			}
		}
	}
}

function benchManager() {
	const root = path.join(work, 'big');
	const t0 = Date.now();
	generate(root, ENTRIES);
	const cli = path.join(repo, 'bin/ltocache');
	const env = { ...process.env, LTOCACHE_DIR: root, LTOCACHE_MODULES: path.join(work, 'none') };
	console.log(
		`\nThe manager, on ${ENTRIES} entries across 4 kernels and 100 modules (generated in ${((Date.now() - t0) / 1000).toFixed(1)} s)`,
	);
	const stats = compare(
		[
			{ name: 'du -sb', run: ['du', ['-sb', root]] },
			{ name: 'ltocache stats --json', run: [process.execPath, [cli, 'stats', '--json'], { env }] },
			{ name: 'node -e 0', run: [process.execPath, ['-e', '0']] },
		],
		5,
	);
	const du = stats[0].ms;
	for (const r of stats) console.log(`  ${r.name.padEnd(32)} ${fmt(r.ms)}  ${(r.ms / du).toFixed(2)}x du -sb`);

	memory('stats', [
		['du -sb', 'du', ['-sb', root]],
		['node -e 0', process.execPath, ['-e', '0']],
		['ltocache stats --json', process.execPath, [cli, 'stats', '--json'], { env }],
	]);

	// Deleting is one-shot: each sample gets a freshly generated tree, prune and find taking turns.
	const half = Math.floor(JSON.parse(run(process.execPath, [cli, 'stats', '--json'], { env }).stdout).totalBytes / 2);
	const pruneSamples = [];
	const findSamples = [];
	let removed = 0;
	for (let i = 0; i < 3; i++) {
		if (i > 0) regenerate(root);
		pruneSamples.push(time(process.execPath, [cli, 'prune', '--max-size', String(half)], { env }));
		removed = ENTRIES - JSON.parse(run(process.execPath, [cli, 'stats', '--json'], { env }).stdout).totalEntries;
		regenerate(root);
		findSamples.push(time('find', [root, '-name', 'llvmcache-*[02468ace]', '-type', 'f', '-delete']));
	}
	const [pruneMs, findMs] = [median(pruneSamples), median(findSamples)];
	console.log(
		`  ${'ltocache prune to half the size'.padEnd(32)} ${fmt(pruneMs)}  ${(pruneMs / findMs).toFixed(2)}x find -delete (${removed} entries removed; median of 3)`,
	);
	console.log(`  ${"find -name '*[02468ace]' -delete".padEnd(32)} ${fmt(findMs)}  (about half the entries)`);
}

function regenerate(root) {
	fs.rmSync(root, { recursive: true, force: true });
	generate(root, ENTRIES);
}

console.log(`ltocache bench on ${os.cpus().length} CPUs, Node ${process.version}`);
benchShim();
benchManager();
