// npm run bench: what the shim adds to a link, and how fast the manager is,
// as ratios against baselines measured in the same run (these machines are
// shared and noisy, so absolute times mean little).
//
//   node bench/run.js [--runs N] [--entries N] [--objects N] [--only shim|module|wide|dtlto|kernel|manager|remote]
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { realLinker } from '../dist/shared/pathsearch.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
	options: {
		runs: { type: 'string', default: '40' },
		entries: { type: 'string', default: '100000' },
		objects: { type: 'string', default: '3000' },
		only: { type: 'string' },
	},
});
const RUNS = Number(values.runs);
const ENTRIES = Number(values.entries);

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ltocache-bench-'));
/** Servers the bench started: stopped when done with (a running child keeps Node from exiting), and before the directory goes. */
const servers = [];
const stopServers = () => {
	for (const child of servers.splice(0)) child.kill('SIGKILL');
};
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130));
process.on('exit', () => {
	stopServers();
	try {
		fs.rmSync(work, { recursive: true, force: true, maxRetries: 3 });
	} catch (error) {
		console.error(`bench: could not remove ${work}: ${error.message}`);
	}
});

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
		for (const [j, c] of commands.entries()) {
			c.before?.(); // untimed: emptying a cache for a cold run
			samples[j].push(time(...c.run));
		}
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

/** A directory with ld.lld -> bin/ld.lld, made once. */
function shimDir() {
	const shims = path.join(work, 'shims');
	if (!fs.existsSync(shims)) {
		fs.mkdirSync(shims);
		fs.symlinkSync(path.join(repo, 'bin/ld.lld'), path.join(shims, 'ld.lld'));
	}
	return shims;
}

const SPAWN_AND_WAIT =
	"const c = require('child_process').spawn(process.argv[1], process.argv.slice(2), { stdio: 'inherit' }); c.on('exit', (code) => process.exit(code))";

const fmt = (ms) => `${ms.toFixed(1).padStart(7)} ms`;

// --- the shim ---------------------------------------------------------------
function benchShim() {
	const objects = ['a', 'b'].map((n) => {
		const o = path.join(work, `${n}.o`);
		run('clang', ['-flto=thin', '-O2', '-c', path.join(repo, 'test/fixtures', `${n}.c`), '-o', o]);
		return o;
	});
	const real = realLinker('ld.lld', process.env.PATH);
	const shims = shimDir();
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
		{
			name: 'shim, Node path (pass-through)',
			run: [path.join(shims, 'ld.lld'), link(writable), { env: { ...env, LTOCACHE_NO_FAST_PATH: '1' } }],
		},
		{ name: 'shim -> ld.lld (redirected)', run: [path.join(shims, 'ld.lld'), link(`${blocker}/x`), { env }] },
		{
			name: 'shim, redirected, verified',
			run: [path.join(shims, 'ld.lld'), link(`${blocker}/x`), { env: { ...env, LTOCACHE_VERIFY: 'on' } }],
		},
		{ name: 'ld.lld (direct, no cache)', run: [real, link(''), { env }] },
		// The floor for any link Node must wait on: a script that only spawns the linker and waits.
		{ name: 'node spawns ld.lld, waits', run: [process.execPath, ['-e', SPAWN_AND_WAIT, real, ...link(writable)], { env }] },
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
	const verify = by['shim, redirected, verified'] - by['shim -> ld.lld (redirected)'];
	console.log(
		`  verifying a redirected link (LTOCACHE_VERIFY=on) adds ${verify.toFixed(1)} ms = ${(verify / by['ld.lld (direct, no cache)']).toFixed(2)}x the same link uncached, direct`,
	);
	const pass = by['shim -> ld.lld (pass-through)'] - direct;
	const passNode = by['shim, Node path (pass-through)'] - direct;
	console.log(
		`  added by the shim to a pass-through link: ${pass.toFixed(1)} ms = ${(pass / node).toFixed(2)}x node -e 0 (by the shell fast path)`,
	);
	console.log(`    the same link forced through the Node shim: ${passNode.toFixed(1)} ms = ${(passNode / node).toFixed(2)}x node -e 0`);
	const floor = by['node spawns ld.lld, waits'] - direct;
	console.log(
		`    a Node that only spawns the linker and waits on it adds ${floor.toFixed(1)} ms = ${(floor / node).toFixed(2)}x node -e 0` +
			`; the shim's own work in a redirected link: ${(added - floor).toFixed(1)} ms = ${((added - floor) / node).toFixed(2)}x`,
	);
	const counting = by['shim -> ld.lld (redirected)'] - by['shim, Node path (pass-through)'];
	console.log(
		`  a redirected link over the same link forced through Node (reading the inputs, claiming the directory, counting): ${counting.toFixed(1)} ms = ${(counting / node).toFixed(2)}x node -e 0`,
	);
	memory('per process', [
		['node -e 0', process.execPath, ['-e', '0'], { env }],
		['ld.lld (direct link)', real, link(writable), { env }],
		['shim (redirected link)', path.join(shims, 'ld.lld'), link(`${blocker}/x`), { env }],
		['shim --version (the shim itself)', path.join(shims, 'ld.lld'), ['--version'], { env }],
	]);
}

// --- a real module --------------------------------------------------------------
/**
 * A 12-object out-of-tree module built by Kbuild against the prepared Clang
 * ThinLTO tree (test/e2e, kept in /var/cache/ltocache-test), then its
 * prelink, the link Kbuild runs with the cache flag (`ld.lld -r ... @drv.mod`
 * in the tree), timed direct and through the shim, cold and warm.
 */
async function benchModule() {
	const cache = process.env.LTOCACHE_TEST_KERNEL_CACHE ?? '/var/cache/ltocache-test';
	const tree =
		fs.existsSync(cache) &&
		fs
			.readdirSync(cache)
			.map((d) => path.join(cache, d))
			.find((d) => fs.existsSync(path.join(d, '.ltocache-prepared')));
	console.log('\nA 12-object module, prelinked the way Kbuild does (ld.lld -r ... @drv.mod, in the kernel tree)');
	if (!tree) {
		console.log(`  skipped: no prepared kernel tree in ${cache} (npm test as root prepares one)`);
		return;
	}
	const shims = shimDir();
	// Built through the shim, the tree's own cache redirected (the tree is root's, but must stay as prepared).
	const env = {
		...process.env,
		PATH: `${shims}:${process.env.PATH}`,
		LTOCACHE_DIR: path.join(work, 'module-root'),
		LTOCACHE_AUTO_PRUNE: '0',
	};
	// Unwritable even for root: below a regular file (ENOTDIR).
	fs.writeFileSync(path.join(work, 'module-blocker'), '');
	const blocked = path.join(work, 'module-blocker', 'x');
	const mod = buildModule(tree, 'drv', 12, 20, env);
	const args = (dir) => prelinkArgs(mod, 'drv', path.join(work, 'drv-bench.o'), dir);
	const real = realLinker('ld.lld', process.env.PATH);
	const direct = path.join(work, 'module-cache');
	const redirected = path.join(work, 'module-root');
	const empty = (dir) => () => fs.rmSync(dir, { recursive: true, force: true });
	const opts = { env, cwd: tree };
	const results = compare(
		[
			{ name: 'node -e 0', run: [process.execPath, ['-e', '0'], opts] },
			{ name: 'ld.lld, no cache', run: [real, prelinkArgs(mod, 'drv', path.join(work, 'drv-bench.o')), opts] },
			{ name: 'ld.lld, cold cache', run: [real, args(direct), opts], before: empty(direct) },
			{ name: 'ld.lld, warm cache', run: [real, args(direct), opts] },
			{ name: 'shim, redirected, cold', run: [path.join(shims, 'ld.lld'), args(blocked), opts], before: empty(redirected) },
			{ name: 'shim, redirected, warm', run: [path.join(shims, 'ld.lld'), args(blocked), opts] },
			{ name: 'shim, pass-through, warm', run: [path.join(shims, 'ld.lld'), args(direct), opts] },
		],
		Math.max(5, Math.floor(RUNS / 4)),
	);
	const node = results[0].ms;
	for (const r of results) console.log(`  ${r.name.padEnd(32)} ${fmt(r.ms)}  ${(r.ms / node).toFixed(2)}x node`);
	const by = Object.fromEntries(results.map((r) => [r.name, r.ms]));
	const added = by['shim, redirected, warm'] - by['ld.lld, warm cache'];
	console.log(`  added by the shim to the warm redirected link: ${added.toFixed(1)} ms = ${(added / node).toFixed(2)}x node -e 0`);

	// What the shim does in Node for each redirected link, timed in-process: reading the
	// inputs' bitcode for modules and asm (the .incbin guard), and counting after the link.
	const { scanArgs } = await import('../dist/shim/argv.js');
	const { readInputs } = await import('../dist/shim/inputs.js');
	const { concernsGuard, incbinGuard } = await import('../dist/shim/incbin.js');
	const { recordLink } = await import('../dist/shared/counters.js');
	const keyDir = fs
		.readdirSync(redirected, { recursive: true })
		.map((f) => path.join(redirected, f))
		.find((f) => fs.existsSync(path.join(f, 'ltocache.json')));
	const scanMs = [];
	const countMs = [];
	let modules = 0;
	for (let i = 0; i < RUNS; i++) {
		const t = process.hrtime.bigint();
		const scan = scanArgs(args(blocked), tree);
		const inputs = readInputs(scan.words, tree, undefined, concernsGuard);
		await incbinGuard(inputs.asm, tree);
		modules = inputs.modules;
		scanMs.push(Number(process.hrtime.bigint() - t) / 1e6);
		const c = process.hrtime.bigint();
		recordLink(keyDir, Date.now(), 0, modules);
		countMs.push(Number(process.hrtime.bigint() - c) / 1e6);
	}
	// A link reads its inputs once, in a fresh process, before V8 has compiled
	// the reader: that first read, timed in fresh processes, is what a link pays.
	const first = `const { scanArgs } = await import(${JSON.stringify(path.join(repo, 'dist/shim/argv.js'))});
		const { readInputs } = await import(${JSON.stringify(path.join(repo, 'dist/shim/inputs.js'))});
		const { concernsGuard, incbinGuard } = await import(${JSON.stringify(path.join(repo, 'dist/shim/incbin.js'))});
		const s = process.hrtime.bigint();
		const inputs = readInputs(scanArgs(JSON.parse(process.argv[1]), process.cwd()).words, process.cwd(), undefined, concernsGuard);
		await incbinGuard(inputs.asm, process.cwd());
		console.log(Number(process.hrtime.bigint() - s) / 1e6);`;
	const coldMs = Array.from({ length: RUNS }, () =>
		Number(run(process.execPath, ['--input-type=module', '-e', first, JSON.stringify(args(blocked))], { cwd: tree }).stdout),
	);
	const [scan, cold, count] = [median(scanMs), median(coldMs), median(countMs)];
	console.log(
		`  reading the ${modules} modules' bitcode (asm for the .incbin guard, modules for the counters), as a link does (first read in a fresh process): ${cold.toFixed(1)} ms = ${(cold / node).toFixed(2)}x node -e 0, ${(cold / by['ld.lld, warm cache']).toFixed(2)}x the warm link; read again in-process: ${scan.toFixed(1)} ms`,
	);
	console.log(
		`  counting after the link (listing the directory, one appended line): ${count.toFixed(2)} ms = ${(count / node).toFixed(3)}x node -e 0`,
	);

	// Add mode: the same link without any cache flag, as Linux >= 6.10 makes it;
	// and the prelink of a module four times the size, where the link outweighs Node's start-up more.
	const big = buildModule(tree, 'big', 48, 40, env);
	for (const [label, dir, name] of [
		['12 objects', mod, 'drv'],
		['48 objects', big, 'big'],
	]) {
		const bare = prelinkArgs(dir, name, path.join(work, `${name}-add.o`));
		const addRoot = path.join(work, `add-root-${name}`);
		const addOpts = { env: { ...env, LTOCACHE_DIR: addRoot, LTOCACHE_MODE: 'add' }, cwd: tree };
		const add = compare(
			[
				{ name: 'node -e 0', run: [process.execPath, ['-e', '0'], opts] },
				{ name: 'ld.lld, no cache (as >= 6.10)', run: [real, bare, opts] },
				{ name: 'shim, LTOCACHE_MODE=add, cold', run: [path.join(shims, 'ld.lld'), bare, addOpts], before: empty(addRoot) },
				{ name: 'shim, LTOCACHE_MODE=add, warm', run: [path.join(shims, 'ld.lld'), bare, addOpts] },
			],
			Math.max(5, Math.floor(RUNS / 4)),
		);
		console.log(`  ${label}, linked with no cache flag, and with one added by LTOCACHE_MODE=add (ratios against no cache):`);
		for (const r of add) console.log(`    ${r.name.padEnd(30)} ${fmt(r.ms)}  ${(r.ms / add[1].ms).toFixed(2)}x no cache`);
	}
}

/** The prelink Kbuild runs in the tree for module name in dir, with the 5.12-6.9 cache flag when given a directory. */
function prelinkArgs(dir, name, out, cacheDir) {
	const flag = cacheDir === undefined ? [] : [`--thinlto-cache-dir=${cacheDir}`];
	return ['-m', 'elf_x86_64', ...flag, '-mllvm', '-import-instr-limit=5', '-z', 'noexecstack', '-r', '-o', out, `@${dir}/${name}.mod`];
}

/**
 * An out-of-tree module of n objects with fns small functions each, built by
 * Kbuild against the prepared tree (read-only, so it stays as prepared),
 * through the shim; returns its directory, which holds <name>.mod.
 */
function buildModule(tree, name, n, fns, env) {
	const mod = path.join(work, name);
	fs.mkdirSync(mod);
	for (let i = 0; i < n; i++) {
		const next = (i + 1) % n;
		const calls = Array.from({ length: fns }, (_, j) => `\tacc = ${name}${next}_f${j}(acc ^ ${j});`).join('\n');
		const bodies = Array.from(
			{ length: fns },
			(_, j) => `int ${name}${i}_f${j}(int x) { int s = x; for (int k = 0; k < ${j + 3}; k++) s = s * 31 + k; return s; }`,
		);
		const decls = Array.from({ length: fns }, (_, j) => `int ${name}${next}_f${j}(int);`).join('\n');
		fs.writeFileSync(
			path.join(mod, `f${i}.c`),
			`#include <linux/module.h>\n${decls}\n${bodies.join('\n')}\nint ${name}${i}_entry(int acc) {\n${calls}\n\treturn acc;\n}\n`,
		);
	}
	fs.appendFileSync(
		path.join(mod, 'f0.c'),
		`static int __init ${name}_init(void) { return ${name}0_entry(1) == 42; }\nmodule_init(${name}_init);\nMODULE_LICENSE("GPL");\n`,
	);
	fs.writeFileSync(
		path.join(mod, 'Kbuild'),
		`obj-m := ${name}.o\n${name}-y := ${Array.from({ length: n }, (_, i) => `f${i}.o`).join(' ')}\n`,
	);
	run(
		'unshare',
		['-m', 'sh', '-c', 'mount --bind -o ro "$0" "$0" && exec make -C "$0" "M=$1" LLVM=1 KBUILD_MODPOST_WARN=1 -j2 modules', tree, mod],
		{ env },
	);
	return mod;
}

// --- a whole-kernel-sized link ----------------------------------------------------
/**
 * A generated link of many ThinLTO objects through a thin archive, as
 * vmlinux.o is linked from vmlinux.a: the shim in add mode, warm, against
 * lld's own warm cache, with the inputs memo and without it (every object's
 * bitcode read again: what the guard costs when nothing is remembered).
 */
function benchWide() {
	const n = Number(values.objects);
	const dir = path.join(work, 'wide');
	fs.mkdirSync(dir);
	console.log(`\nA generated link of ${n} ThinLTO objects in a thin archive (ld.lld -r --whole-archive, as vmlinux.o is linked)`);
	const names = Array.from({ length: n }, (_, i) => `w${i}`);
	for (const [i, name] of names.entries()) {
		const next = names[(i + 1) % n];
		fs.writeFileSync(
			path.join(dir, `${name}.c`),
			`int ${next}_f(int);\nint ${name}_g(int x) { int r; asm("lea 1(%1), %0" : "=r"(r) : "r"(x)); return r; }\n` +
				`int ${name}_f(int x) { return x > ${i} ? ${name}_g(x) : ${next}_f(x + 1); }\n`,
		);
	}
	fs.writeFileSync(path.join(dir, 'list'), names.map((name) => `${name}.c`).join('\n'));
	run('sh', ['-c', 'xargs -P 2 -n 50 clang -flto=thin -O2 -c < list'], { cwd: dir });
	// Older than the memo's racy window, as a rebuilt kernel's unchanged objects are.
	spawnSync('sleep', ['2.1']);
	// As Kbuild builds vmlinux.a: thin, no symbol table.
	run('llvm-ar', ['cDPrST', 'all.a', ...names.map((name) => `${name}.o`)], { cwd: dir });
	const shims = shimDir();
	const real = realLinker('ld.lld', process.env.PATH);
	const args = (cache) => ['-r', '-o', 'out.o', ...(cache ? [`--thinlto-cache-dir=${cache}`] : []), '--whole-archive', 'all.a'];
	const root = path.join(work, 'wide-root');
	const env = { ...process.env, LTOCACHE_DIR: root, LTOCACHE_AUTO_PRUNE: '0', LTOCACHE_MODE: 'add' };
	const forget = () => fs.rmSync(path.join(root, 'ltocache.inputs'), { recursive: true, force: true });
	const runs = Math.max(3, Math.floor(RUNS / 8));
	const results = compare(
		[
			{ name: 'node -e 0', run: [process.execPath, ['-e', '0'], { cwd: dir }] },
			{ name: 'ld.lld, no cache', run: [real, args(), { cwd: dir }] },
			{ name: 'ld.lld, its own cache, warm', run: [real, args('own-cache'), { cwd: dir }] },
			{ name: 'shim, add mode, warm', run: [path.join(shims, 'ld.lld'), args(), { cwd: dir, env }] },
			{ name: 'shim, add mode, warm, no memo', run: [path.join(shims, 'ld.lld'), args(), { cwd: dir, env }], before: forget },
		],
		runs,
	);
	const by = Object.fromEntries(results.map((r) => [r.name, r.ms]));
	const node = by['node -e 0'];
	const warm = by['ld.lld, its own cache, warm'];
	for (const r of results)
		console.log(`  ${r.name.padEnd(32)} ${fmt(r.ms)}  ${(r.ms / warm).toFixed(2)}x lld's warm cache  ${(r.ms / node).toFixed(2)}x node`);
	const added = by['shim, add mode, warm'] - warm;
	const guard = by['shim, add mode, warm, no memo'] - by['shim, add mode, warm'];
	console.log(
		`  added by the shim, warm: ${added.toFixed(1)} ms = ${(added / node).toFixed(2)}x node -e 0 (${(added - node).toFixed(1)} ms beyond Node's start-up)`,
	);
	console.log(`  reading every object's bitcode again when nothing is remembered: ${guard.toFixed(1)} ms more`);
}

// --- DTLTO ---------------------------------------------------------------------
/**
 * A DTLTO link (lld 21 and later: the ThinLTO backends run as compiler jobs
 * that a distributor starts; here test/fixtures/distributor.mjs run by node,
 * as LLVM's example runs local.py by python3), warm: lld's own cache against
 * the shim in add mode and redirected. A warm link runs no backend, so what
 * remains is lld reading the inputs and the cache, and the shim's work: its
 * code-generation key names the distributor, its argument and the remote
 * compiler, whose files it hashes. The second pair starts the distributor
 * as an executable script instead, which leaves node's binary out of that.
 */
async function benchDtlto() {
	const { TESTED_LLD } = await import('../dist/cli/commands/doctor.js');
	const major = [...TESTED_LLD].reverse().find((v) => v >= 21 && fs.existsSync(`/usr/lib/llvm-${v}/bin/ld.lld`));
	console.log('\nA DTLTO link of two ThinLTO objects (ld.lld -r, --thinlto-distributor), warm');
	if (major === undefined)
		return console.log('  skipped: no tested LLVM of 21 or later in /usr/lib/llvm-N (Debian: clang-22 lld-22 llvm-22)');
	const bin = `/usr/lib/llvm-${major}/bin`;
	const dir = path.join(work, 'dtlto');
	fs.mkdirSync(dir);
	const objects = ['a', 'b'].map((n) => {
		run(path.join(bin, 'clang'), ['-flto=thin', '-O2', '-c', path.join(repo, 'test/fixtures', `${n}.c`), '-o', `${n}.o`], { cwd: dir });
		return `${n}.o`;
	});
	const script = path.join(repo, 'test/fixtures/distributor.mjs');
	const executable = path.join(dir, 'distribute');
	fs.writeFileSync(executable, `#!/bin/sh\nexec '${process.execPath}' '${script}' "$@"\n`, { mode: 0o755 });
	const viaNode = [`--thinlto-distributor=${process.execPath}`, `--thinlto-distributor-arg=${script}`];
	const remote = `--thinlto-remote-compiler=${path.join(bin, 'clang')}`;
	const real = path.join(bin, 'ld.lld');
	const shim = path.join(shimDir(), 'ld.lld');
	fs.writeFileSync(path.join(dir, 'blocker'), '');
	const env = (root, mode) => ({
		...process.env,
		PATH: `${shimDir()}:${bin}:${process.env.PATH}`,
		LTOCACHE_DIR: path.join(dir, root),
		LTOCACHE_AUTO_PRUNE: '0',
		LTOCACHE_MODE: mode,
	});
	const link = (distributor, out, cache) => [
		'-r',
		'-o',
		out,
		...distributor,
		remote,
		...(cache ? [`--thinlto-cache-dir=${cache}`] : []),
		...objects,
	];
	const viaScript = [`--thinlto-distributor=${executable}`];
	const results = compare([
		{ name: 'node -e 0', run: [process.execPath, ['-e', '0'], { cwd: dir }] },
		{ name: 'ld.lld, its own cache, warm', run: [real, link(viaNode, 'own.o', 'own'), { cwd: dir }] },
		{ name: 'shim, add mode, warm', run: [shim, link(viaNode, 'add.o'), { cwd: dir, env: env('add-root', 'add') }] },
		{
			name: 'shim, redirected, warm',
			run: [shim, link(viaNode, 'redirected.o', 'blocker/x'), { cwd: dir, env: env('redirect-root', 'redirect') }],
		},
		{ name: 'ld.lld, own cache, script distributor', run: [real, link(viaScript, 'own-s.o', 'own-s'), { cwd: dir }] },
		{ name: 'shim, add mode, script distributor', run: [shim, link(viaScript, 'add-s.o'), { cwd: dir, env: env('add-s-root', 'add') }] },
		// The same link without DTLTO: what the shim adds to any warm link, the floor for the rows above.
		{
			name: 'ld.lld, own cache, in-process ThinLTO',
			run: [real, ['-r', '-o', 'own-i.o', '--thinlto-cache-dir=own-i', ...objects], { cwd: dir }],
		},
		{
			name: 'shim, add mode, in-process ThinLTO',
			run: [shim, ['-r', '-o', 'add-i.o', ...objects], { cwd: dir, env: env('add-i-root', 'add') }],
		},
	]);
	const by = Object.fromEntries(results.map((r) => [r.name, r.ms]));
	const node = by['node -e 0'];
	for (const r of results) console.log(`  ${r.name.padEnd(38)} ${fmt(r.ms)}  ${(r.ms / node).toFixed(2)}x node`);
	for (const [label, shimRow, lldRow] of [
		['add mode', 'shim, add mode, warm', 'ld.lld, its own cache, warm'],
		['redirected', 'shim, redirected, warm', 'ld.lld, its own cache, warm'],
		['add mode, script distributor', 'shim, add mode, script distributor', 'ld.lld, own cache, script distributor'],
		['add mode, in-process ThinLTO', 'shim, add mode, in-process ThinLTO', 'ld.lld, own cache, in-process ThinLTO'],
	]) {
		const added = by[shimRow] - by[lldRow];
		console.log(
			`  added by the shim (${label}): ${added.toFixed(1)} ms = node -e 0 ${added - node >= 0 ? '+' : '-'} ${Math.abs(added - node).toFixed(1)} ms`,
		);
	}
	run(real, link(viaNode, 'uncached.o'), { cwd: dir });
	const same = ['own.o', 'add.o', 'redirected.o'].map((f) =>
		fs.readFileSync(path.join(dir, f)).equals(fs.readFileSync(path.join(dir, 'uncached.o'))),
	);
	console.log(`  byte-identical to the uncached DTLTO link: lld's own cache ${same[0]}, add mode ${same[1]}, redirected ${same[2]}`);
}

// --- a whole kernel ---------------------------------------------------------------
/**
 * The vmlinux.o link of a tinyconfig 6.12 Clang ThinLTO kernel (one with no
 * cache flag, as Linux >= 6.10 makes it) three ways: no cache, lld's own
 * cache warm, the shim in add mode warm. The tree is built by
 * bench/prepare-tinyconfig.sh, only with --only kernel (10-20 minutes once);
 * other runs use it if it is there.
 */
function benchKernel() {
	const cache = process.env.LTOCACHE_TEST_KERNEL_CACHE ?? '/var/cache/ltocache-test';
	console.log('\nThe vmlinux.o link of a tinyconfig 6.12 Clang ThinLTO kernel (441 objects in vmlinux.a)');
	const prepared =
		fs.existsSync(cache) &&
		fs
			.readdirSync(cache)
			.map((d) => path.join(cache, d))
			.find((d) => path.basename(d).startsWith('linux-tinyconfig-') && fs.existsSync(path.join(d, '.ltocache-prepared')));
	let tree = prepared;
	if (!tree && values.only === 'kernel') tree = run(path.join(repo, 'bench/prepare-tinyconfig.sh'), [cache]).stdout.toString().trim();
	if (!tree) return console.log(`  skipped: no prepared tree in ${cache} (npm run bench -- --only kernel builds one, 10-20 minutes)`);
	const saved = fs.readFileSync(path.join(tree, '.vmlinux.o.cmd'), 'utf8').match(/^savedcmd_vmlinux\.o := ld\.lld (.*?)(?:;|$)/m);
	if (!saved) return console.log('  skipped: no vmlinux.o command in the tree');
	const args = (out, extra = []) => [
		...extra,
		...saved[1]
			.trim()
			.split(/\s+/)
			.map((a) => (a === 'vmlinux.o' ? out : a)),
	];
	const real = realLinker('ld.lld', process.env.PATH);
	const shim = path.join(shimDir(), 'ld.lld');
	const own = path.join(work, 'kernel-own');
	const env = { ...process.env, LTOCACHE_DIR: path.join(work, 'kernel-root'), LTOCACHE_AUTO_PRUNE: '0', LTOCACHE_MODE: 'add' };
	const out = (name) => path.join(work, `vmlinux-${name}.o`);
	const once = (name, cmd, a, options) => ({ name, ms: time(cmd, a, { cwd: tree, ...options }) });
	const cold = [
		once('ld.lld, no cache', real, args(out('none'))),
		once('ld.lld, its own cache, cold', real, args(out('own'), [`--thinlto-cache-dir=${own}`])),
		once('shim, add mode, cold', shim, args(out('shim')), { env }),
	];
	const warm = compare(
		[
			{ name: 'node -e 0', run: [process.execPath, ['-e', '0'], { cwd: tree }] },
			{ name: 'ld.lld, its own cache, warm', run: [real, args(out('own'), [`--thinlto-cache-dir=${own}`]), { cwd: tree }] },
			{ name: 'shim, add mode, warm', run: [shim, args(out('shim')), { cwd: tree, env }] },
		],
		Math.max(3, Math.floor(RUNS / 8)),
	);
	const by = Object.fromEntries([...cold, ...warm].map((r) => [r.name, r.ms]));
	const base = by['ld.lld, its own cache, warm'];
	for (const r of [...cold, ...warm]) console.log(`  ${r.name.padEnd(32)} ${fmt(r.ms)}  ${(r.ms / base).toFixed(2)}x lld's warm cache`);
	const same = ['own', 'shim'].map((name) => fs.readFileSync(out(name)).equals(fs.readFileSync(out('none'))));
	console.log(`  byte-identical to the uncached link: lld's own cache ${same[0]}, the shim ${same[1]}`);
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
			// Last written a minute ago, as most of a cache is at any time.
			fs.utimesSync(dir, now - 60, now - 60);
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
			{
				name: 'the same, counting every entry',
				run: [process.execPath, [cli, 'stats', '--json'], { env }],
				before: () => fs.rmSync(path.join(root, 'ltocache.summary.json'), { force: true }),
			},
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
		pruneSamples.push(time(process.execPath, [cli, 'prune', '--max-size', `${half}B`], { env }));
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

// --- a remote cache ---------------------------------------------------------------
/** A server started for the bench: redis-server, or nginx with its WebDAV module; undefined if not installed. */
function startServer(kind, dir, port) {
	const which = spawnSync('sh', ['-c', `command -v ${kind === 'redis' ? 'redis-server' : 'nginx'}`]);
	if (which.status !== 0) return undefined;
	fs.mkdirSync(path.join(dir, 'www/cache'), { recursive: true });
	let child;
	if (kind === 'redis') {
		child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
			stdio: 'ignore',
		});
	} else {
		const conf = path.join(dir, 'nginx.conf');
		fs.writeFileSync(
			conf,
			`daemon off; master_process off; user root; pid ${dir}/pid; error_log ${dir}/error.log; events {}
http { access_log off; client_body_temp_path ${dir}/body; server { listen 127.0.0.1:${port}; root ${dir}/www; client_max_body_size 0;
location /cache/ { dav_methods PUT DELETE; create_full_put_path on; } } }`,
		);
		child = spawn('nginx', ['-c', conf, '-e', path.join(dir, 'error.log')], { stdio: 'ignore' });
	}
	spawnSync('sleep', ['0.5']);
	servers.push(child);
	return kind === 'redis' ? `redis://127.0.0.1:${port}/0` : `http://127.0.0.1:${port}/cache/`;
}

/**
 * The 12-object module and a generated 500-object link in add mode, three
 * ways: cold (no cache anywhere), local-warm (this machine linked it before),
 * remote-warm (another machine did: a fresh root, the remote holding every
 * entry); and local-warm with no remote configured, which must not change.
 */
async function benchRemote() {
	console.log('\nA cache shared across machines: a fresh machine linking from the remote against one linking from its own cache');
	for (const n of [12, 500]) {
		const dir = path.join(work, `remote-${n}`);
		fs.mkdirSync(dir);
		const names = Array.from({ length: n }, (_, i) => `r${i}`);
		for (const [i, name] of names.entries()) {
			const next = names[(i + 1) % n];
			fs.writeFileSync(
				path.join(dir, `${name}.c`),
				`int ${next}_f(int);\nint ${name}_f(int x) { return x > ${i} ? x * ${i + 3} : ${next}_f(x + 1); }\n`,
			);
		}
		fs.writeFileSync(path.join(dir, 'list'), names.map((name) => `${name}.c`).join('\n'));
		run('sh', ['-c', 'xargs -P 2 -n 50 clang -flto=thin -O2 -c < list'], { cwd: dir });
		spawnSync('sleep', ['2.1']); // older than the inputs memo's racy window
		const objects = names.map((name) => `${name}.o`);
		const link = [path.join(shimDir(), 'ld.lld'), ['-r', '-o', 'out.o', ...objects]];
		const runs = n > 100 ? Math.max(5, Math.floor(RUNS / 2)) : RUNS;
		for (const kind of ['http', 'redis']) {
			const url = startServer(kind, path.join(dir, kind), 20000 + Math.floor(Math.random() * 20000));
			if (!url) {
				console.log(`  ${n} objects, ${kind}: skipped (${kind === 'redis' ? 'redis-server' : 'nginx'} not installed)`);
				continue;
			}
			const env = (root, remote) => ({
				...process.env,
				LTOCACHE_DIR: root,
				LTOCACHE_MODE: 'add',
				LTOCACHE_AUTO_PRUNE: '0',
				LTOCACHE_REMOTE: remote ?? '',
				LTOCACHE_REMOTE_TIMEOUT: '10s',
				KBUILD_EXTMOD: `/bench/${n}-${kind}`,
			});
			const local = path.join(dir, `${kind}-local`);
			const fresh = path.join(dir, `${kind}-fresh`);
			const plain = path.join(dir, `${kind}-plain`);
			// The remote filled once, and the fresh machine's linker known (hashed once per machine, not per link).
			run(link[0], link[1], { cwd: dir, env: env(local, url) });
			run(link[0], link[1], { cwd: dir, env: env(fresh, url) });
			// Set aside, not deleted, and synced: creating 500 entries just after deleting 500 made ext4 here take
			// 0.7 ms a file instead of 0.1 (measured with strace), which a fresh machine does not pay.
			const graves = path.join(work, 'set-aside');
			const forget = (root) => () => {
				fs.mkdirSync(graves, { recursive: true });
				const grave = fs.mkdtempSync(path.join(graves, 'root-'));
				for (const name of fs.readdirSync(root))
					if (name !== 'ltocache.linkers.json') fs.renameSync(path.join(root, name), path.join(grave, name));
				spawnSync('sync');
			};
			// What a fresh machine pays whatever the remote: reading its inputs' bitcode once (the inputs memo set aside).
			const unread = path.join(dir, `${kind}-unread`);
			run(link[0], link[1], { cwd: dir, env: env(unread) });
			const forgetInputs = () => {
				fs.mkdirSync(graves, { recursive: true });
				fs.renameSync(path.join(unread, 'ltocache.inputs'), path.join(fs.mkdtempSync(path.join(graves, 'inputs-')), 'ltocache.inputs'));
			};
			const results = compare(
				[
					{ name: 'node -e 0', run: [process.execPath, ['-e', '0'], { cwd: dir }] },
					{ name: 'cold (nothing cached)', run: [link[0], link[1], { cwd: dir, env: env(plain) }], before: forget(plain) },
					{ name: 'local-warm, no remote', run: [link[0], link[1], { cwd: dir, env: env(local) }] },
					{ name: 'local-warm, remote set', run: [link[0], link[1], { cwd: dir, env: env(local, url) }] },
					{ name: 'local-warm, inputs not yet read', run: [link[0], link[1], { cwd: dir, env: env(unread) }], before: forgetInputs },
					{ name: 'remote-warm (a fresh machine)', run: [link[0], link[1], { cwd: dir, env: env(fresh, url) }], before: forget(fresh) },
				],
				runs,
			);
			stopServers();
			const by = Object.fromEntries(results.map((r) => [r.name, r.ms]));
			const base = by['local-warm, no remote'];
			console.log(`  ${n} objects over ${kind}:`);
			for (const r of results) console.log(`    ${r.name.padEnd(32)} ${fmt(r.ms)}  ${(r.ms / base).toFixed(2)}x local-warm`);
			const files = createFiles(local, graves);
			console.log(
				`    ${'creating the entries as files'.padEnd(32)} ${fmt(files.ms)}  (${files.count} files, written aside and renamed in, as a download does)`,
			);
			if (n > 100) {
				const used = await usedCost(local, n);
				console.log(
					`    ${'telling the entries a link used'.padEnd(32)} ${fmt(used.ms)}  (${used.count} entries read by a link: a stat each, and their times set again)`,
				);
			}
			const floor = by['local-warm, inputs not yet read'] + files.ms;
			console.log(
				`    remote-warm is ${(by['remote-warm (a fresh machine)'] / by['local-warm, remote set']).toFixed(2)}x local-warm with the remote set, ` +
					`${(by['remote-warm (a fresh machine)'] / floor).toFixed(2)}x a fresh machine's floor (inputs read + entries created: ${(floor / base).toFixed(2)}x local-warm)`,
			);
		}
	}
}

/**
 * Median time of the after-link work that tells which entries a link used
 * (src/shim/remote.ts usedEntries) in root's one key directory, every entry
 * read as a warm link reads it: a stat each, and each one's times set again.
 */
async function usedCost(root, modules) {
	const { usedEntries } = await import('../dist/shim/remote.js');
	let dir = root;
	while (!fs.readdirSync(dir).some((name) => name.startsWith('llvmcache-'))) {
		const sub = fs.readdirSync(dir, { withFileTypes: true }).find((e) => e.isDirectory() && e.name !== 'ltocache.inputs');
		dir = path.join(dir, sub.name);
	}
	const names = new Set(fs.readdirSync(dir));
	const samples = [];
	let count = 0;
	for (let i = 0; i < 9; i++) {
		for (const name of names) if (name.startsWith('llvmcache-')) fs.readFileSync(path.join(dir, name));
		const start = process.hrtime.bigint();
		count = usedEntries(dir, { before: names, startedNs: 0n, modules }).used.length;
		samples.push(Number(process.hrtime.bigint() - start) / 1e6);
	}
	return { ms: median(samples), count };
}

/** Median time to write a cache directory's entries anew, each to a temporary file renamed in; the directories are set aside, not deleted. */
function createFiles(root, graves) {
	const entries = [];
	const walk = (d) => {
		for (const e of fs.readdirSync(d, { withFileTypes: true }))
			if (e.isDirectory()) walk(path.join(d, e.name));
			else if (e.name.startsWith('llvmcache-')) entries.push([e.name, fs.readFileSync(path.join(d, e.name))]);
	};
	walk(root);
	const samples = [];
	for (let i = 0; i < 5; i++) {
		const into = fs.mkdtempSync(path.join(graves, 'files-'));
		const started = process.hrtime.bigint();
		for (const [name, data] of entries) {
			const temp = path.join(into, `Thin-bench-${name.slice(-12)}.tmp`);
			fs.writeFileSync(temp, data, { mode: 0o600 });
			fs.renameSync(temp, path.join(into, name));
		}
		samples.push(Number(process.hrtime.bigint() - started) / 1e6);
		spawnSync('sync');
	}
	return { ms: median(samples), count: entries.length };
}

function regenerate(root) {
	fs.rmSync(root, { recursive: true, force: true });
	generate(root, ENTRIES);
}

console.log(`ltocache bench on ${os.cpus().length} CPUs, Node ${process.version}`);
for (const [name, bench] of Object.entries({
	shim: benchShim,
	module: benchModule,
	wide: benchWide,
	dtlto: benchDtlto,
	kernel: benchKernel,
	manager: benchManager,
	remote: benchRemote,
})) {
	if (values.only === undefined || values.only === name) await bench();
}
