// The ld.lld shim, top to bottom: read argv, decide on the cache directory,
// find the real linker, run it. Nothing here may make a link fail that would
// have succeeded without the shim.
//
// That promise is kept by shape, not case by case. Every step of ltocache's
// own work runs as a named stage (see STAGES); an error in a stage before the
// linker runs falls open (start.ts re-enters bin/ld.lld, which links as
// without ltocache), one after it is said and the linker's exit stands. A
// link whose cache lld could not write is run again without it. Tests throw
// in each stage in turn (LTOCACHE_TEST_FAULT, test/integration/failopen.test.ts),
// and test/unit/structure.test.ts holds the stages here and STAGES alike.
//
// bin/ld.lld starts Node (src/shim/start.ts) only for what its shell fast
// path leaves over, and that runs this, bundled as dist/shim.cjs, with
// process.argv = [node, $0, SELF, ARGS...]: SELF is the shim's path as the
// build invoked it, made absolute. There are
// two routes to the linker: the shell execs it (fast path), or this runs it
// as its child and exits as it did.
//
// src/shim and src/shared import Node's built-ins by name: the bundle then
// requires them as they are, where a default import (`import fs from`) is
// wrapped in a copy of the module's every property, ~3 ms of each start-up.
import { readdirSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import {
	describeSource,
	parsed,
	parseVerify,
	readSettings,
	remoteSettings,
	type Setting,
	type Value,
	withCacheDir,
} from '../shared/config.js';
import { recordLink } from '../shared/counters.js';
import { removeEntriesSince, shareEntries } from '../shared/keydir.js';
import { rawArgs } from './argv.js';
import { maybeStartPrune } from './autoprune.js';
import { decide, workingDir } from './decide.js';
import { cacheFailed, strayEntry } from './failure.js';
import { CHAIN_VAR, locateLinker, nextChain } from './linker.js';
import { exitAs, type Outcome, spawnLinker } from './run.js';
import type { Shim } from './start.js';

type Settings = Record<Setting, Value>;

/** The stages before the linker runs: an error in one falls open. */
const BEFORE = ['settings', 'decide', 'locate', 'remote', 'snapshot'] as const;
/** The stages after it: an error in one is said, and the link stands. */
const AFTER = ['recheck', 'verify', 'upload', 'count', 'share', 'prune'] as const;
export const STAGES: readonly string[] = [...BEFORE, ...AFTER];
type Stage = (typeof BEFORE)[number] | (typeof AFTER)[number];

/** Run one stage; LTOCACHE_TEST_FAULT=<stage> makes it throw, for the tests that prove each one fails open. */
function stage<T>(name: Stage, work: () => T): T {
	if (process.env.LTOCACHE_TEST_FAULT === name) throw new Error(`fault injected into the ${name} stage (LTOCACHE_TEST_FAULT)`);
	return work();
}

/** A stage after the link: its error is one line, never the link's failure. */
async function after(name: (typeof AFTER)[number], work: () => unknown): Promise<void> {
	try {
		await stage(name, work);
	} catch (error) {
		process.stderr.write(`ltocache: after the link, ${name}: ${String(error)}\n`);
	}
}

export async function main(shim: Shim): Promise<void> {
	const env = process.env;
	const self = process.argv[2];
	const name = basename(self);

	const args = rawArgs();
	// The configured mode and auto-prune (the environment overrides the files); a file's mistakes are the manager's to report.
	const { values: settings } = stage('settings', () => readSettings(env));
	const plan = await stage('decide', () => {
		const cwd = workingDir();
		// Node could not decode the directory's name and /proc/self/cwd cannot be read: no relative path can be followed.
		if (cwd === undefined) throw new Error('the working directory is not UTF-8 and /proc/self/cwd cannot be read');
		const mode = { value: settings.mode.value, source: describeSource(settings.mode.source) };
		return decide(args, cwd, withCacheDir(env, settings), mode, Boolean(settings.remote.value));
	});

	const located = stage('locate', () => locateLinker(name, self, env));
	if ('error' in located) {
		shim.decided();
		process.stderr.write(`ltocache: ${located.error}; set LTOCACHE_LD to the real linker\n`);
		process.exit(127);
	}
	const { linker } = located;
	const { root, dir, shared, count } = plan;

	if (env.LTOCACHE_VERBOSE === '1') {
		process.stderr.write(`ltocache: running ${linker.file}\n`);
		if (plan.note) process.stderr.write(`ltocache: ${plan.note}\n`);
		if (plan.warning && plan.warning !== plan.note) process.stderr.write(`ltocache: ${plan.warning}\n`);
	} else if (plan.warning) {
		process.stderr.write(`ltocache: ${plan.warning}\n`);
	}
	// A remote (LTOCACHE_REMOTE, or the remote setting) fills the directory before the link, and hears of its entries after.
	const remote = await stage('remote', () =>
		dir && count && settings.remote.value ? openRemote(settings, root!, dir, linker.file, env, plan.inputsHash) : undefined,
	);
	const snapshot = stage('snapshot', () => {
		try {
			return dir && count ? { names: new Set(readdirSync(dir)), mtimeNs: statSync(dir, { bigint: true }).mtimeNs } : undefined;
		} catch {
			return undefined; // then every entry's time is looked at
		}
	});
	const before = snapshot?.names;

	const started = process.hrtime.bigint(); // not performance.now(): that global loads perf_hooks, ~2 ms a link
	// The file system's clock may lag Date.now() by a tick: what changed a few ms before counts as during the link.
	const startedNs = BigInt(Date.now() - 10) * 1_000_000n;
	const chain = nextChain(env, self, linker);
	const linkEnv = { ...env, [CHAIN_VAR]: chain };
	shim.decided();
	shim.linking = true;
	const exit = (how: Outcome) => {
		if (how.signal) shim.diesOf(how.signal);
		return exitAs(how);
	};
	let outcome = await spawnLinker(linker.file, linker.argv0, plan.args, linkEnv, shim.stdio);
	let cached = true;
	// A death by a signal other than lld 14's abort is the build's (its Ctrl-C, make's kill) or a crash the cache did
	// not cause: that link is not run again, whatever the directory holds.
	if (dir && plan.uncached && !linked(outcome) && (outcome.signal === null || outcome.signal === 'SIGABRT')) {
		const stray = strayEntry(
			dir,
			plan.words?.some((w) => w.endsWith('emit-asm')),
		);
		if (stray !== undefined || cacheFailed(outcome, dir, startedNs, count?.modules ?? 0, snapshot)) {
			const why = stray === undefined ? `could not write the ThinLTO cache in ${dir}` : `failed where ${dir} holds ${stray}`;
			process.stderr.write(`ltocache: ${linker.file} ${why}; linking again without a cache\n`);
			outcome = await spawnLinker(linker.file, linker.argv0, plan.uncached, linkEnv, shim.stdio);
			cached = false;
		}
	}
	if (root) {
		try {
			await afterLink(linked(outcome) && cached);
		} finally {
			await exit(outcome);
		}
	}
	await exit(outcome);

	async function afterLink(succeeded: boolean): Promise<void> {
		let kept = true;
		let verified: 'match' | 'mismatch' | undefined;
		if (dir && count) {
			// Whether the files the directory's name stands for are as hashed; an error in this check counts as changed.
			let problem: string | undefined;
			try {
				kept = await stage('recheck', () => (plan.unchanged ? plan.unchanged() : true));
			} catch (error) {
				kept = false;
				problem = `after the link, recheck: ${String(error)}`;
			}
			if (!kept) {
				let removed = 0;
				try {
					removed = removeEntriesSince(dir, count.since);
				} catch {} // the link is done either way
				const why = problem ?? "a file this link's cache directory stands for changed while lld ran";
				process.stderr.write(`ltocache: ${why}; removed the ${removed} cache entries it wrote\n`);
			} else if (!succeeded) {
				// lld caches a module's object before the link fails on it (a backend error such as the kernel's
				// BUILD_BUG_ON, --fatal-warnings): kept, they would let the same link succeed the next time.
				try {
					removeEntriesSince(dir, count.since);
				} catch {} // the link has failed either way
			}
		}
		// A verified link that differed from its uncached self: the build has the uncached output, and the entries are gone.
		await after('verify', async () => {
			if (!dir || !plan.uncached || !plan.words || !succeeded || !kept) return;
			const share = parseVerify(settings.verify.value);
			if (share === undefined) {
				process.stderr.write(
					`ltocache: verify = ${settings.verify.value} (${describeSource(settings.verify.source)}) is not off, on or a share like 1%; not verifying\n`,
				);
				return;
			}
			if (!(Math.random() < share)) return;
			const { verifyLink } = await import('./verify.js');
			const quiet = async (argv: typeof args) => (await spawnLinker(linker.file, linker.argv0, argv, linkEnv, 'ignore')).code;
			const verdict = await verifyLink(plan.uncached, plan.words, plan.side, process.cwd(), dir, root!, quiet, () => linker.file);
			if (verdict.kind !== 'skipped') verified = verdict.kind;
			if (verdict.kind === 'skipped') process.stderr.write(`ltocache: verify: not verified: ${verdict.why}\n`);
			if (verdict.kind === 'mismatch') {
				kept = false;
				process.stderr.write(
					`ltocache: VERIFY MISMATCH: this link's cached output differed from the same link without a cache; the uncached output is in place, the ${verdict.removed} entries of ${dir} are removed, report: ${verdict.report}\n`,
				);
			}
		});
		await after('upload', async () => {
			const run = { before, startedNs, modules: count?.modules ?? 0 };
			if (remote && succeeded && kept) {
				const problem = await remote.after(run);
				if (problem) process.stderr.write(`ltocache: ${problem}\n`);
			} else remote?.settle(run);
			if (remote && env.LTOCACHE_VERBOSE === '1') process.stderr.write(`ltocache: ${remote.summary()}\n`);
		});
		// A failed link may have stopped before its lookups: counting its modules as hits would invent them.
		await after('count', () => {
			// A mismatch is counted as a link of no modules: its entries are gone.
			if (dir && count && succeeded && (kept || verified === 'mismatch')) {
				const modules = kept ? count.modules : 0;
				recordLink(dir, count.since, Number(process.hrtime.bigint() - started) / 1e6, modules, before, remote?.counts, verified);
			}
		});
		await after('share', () => {
			if (shared && dir) shareEntries(dir);
		});
		await after('prune', () => maybeStartPrune(root!, env, parsed(settings, 'auto-prune')));
	}
}

const linked = (outcome: Outcome) => outcome.code === 0 && outcome.signal === null;

/** The remote for this link, its entries downloaded; loaded only when one is configured. */
async function openRemote(settings: Settings, root: string, dir: string, linker: string, env: NodeJS.ProcessEnv, inputs?: string) {
	const { remoteFor } = await import('./remote.js');
	const remote = remoteFor(remoteSettings(settings), root, dir, linker, env, inputs);
	const problem = await remote.before();
	if (problem) process.stderr.write(`ltocache: ${problem}\n`);
	return remote;
}
