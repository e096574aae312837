// The ld.lld shim, top to bottom: read argv, decide on the cache directory,
// find the real linker, run it. Nothing here may make a link fail that would
// have succeeded without the shim.
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
import { readdirSync } from 'node:fs';
import { basename } from 'node:path';
import { describeSource, parsed, readSettings, remoteSettings, type Setting, type Value, withCacheDir } from '../shared/config.js';
import { recordLink } from '../shared/counters.js';
import { removeEntriesSince, shareEntries } from '../shared/keydir.js';
import { rawArgs } from './argv.js';
import { maybeStartPrune } from './autoprune.js';
import { decide, type Plan } from './decide.js';
import { CHAIN_VAR, locateLinker, nextChain } from './linker.js';
import { runLinker } from './run.js';

type Settings = Record<Setting, Value>;

async function main(): Promise<void> {
	const env = process.env;
	const self = process.argv[2];
	const name = basename(self);

	const args = rawArgs();
	// The configured mode and auto-prune (the environment overrides the files); a file's mistakes are the manager's to report.
	const { values: settings } = readSettings(env);
	let plan: Plan;
	try {
		const mode = { value: settings.mode.value, source: describeSource(settings.mode.source) };
		plan = await decide(args, process.cwd(), withCacheDir(env, settings), mode);
	} catch (error) {
		plan = { args, note: `unexpected ${String(error)}; passing argv through` };
	}

	const located = locateLinker(name, self, env);
	if ('error' in located) {
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
	const remote = dir && count && settings.remote.value ? await openRemote(settings, root!, dir, linker.file, env) : undefined;
	let before: Set<string> | undefined;
	try {
		if (dir && count) before = new Set(readdirSync(dir));
	} catch {} // then every entry's time is looked at
	const started = process.hrtime.bigint(); // not performance.now(): that global loads perf_hooks, ~2 ms a link
	const afterLink = async (succeeded: boolean) => {
		let kept = true;
		if (dir && count && plan.unchanged) {
			try {
				kept = await plan.unchanged();
			} catch {
				kept = false; // cannot tell: as if changed
			}
			if (!kept) {
				let removed = 0;
				try {
					removed = removeEntriesSince(dir, count.since);
				} catch {} // the link is done either way
				process.stderr.write(
					`ltocache: a file this link's cache directory stands for changed while lld ran; removed the ${removed} cache entries it wrote\n`,
				);
			}
		}
		if (remote && succeeded && kept) {
			const problem = await remote.after();
			if (problem) process.stderr.write(`ltocache: ${problem}\n`);
		}
		if (remote && env.LTOCACHE_VERBOSE === '1') process.stderr.write(`ltocache: ${remote.summary()}\n`);
		// A failed link may have stopped before its lookups: counting its modules as hits would invent them.
		if (dir && count && succeeded && kept)
			recordLink(dir, count.since, Number(process.hrtime.bigint() - started) / 1e6, count.modules, before, remote?.counts);
		try {
			if (shared && dir) shareEntries(dir);
		} catch {} // housekeeping never fails a link
		if (root) await maybeStartPrune(root, env, parsed(settings, 'auto-prune'));
	};
	const chain = nextChain(env, self, linker);
	await runLinker(linker.file, linker.argv0, plan.args, { ...env, [CHAIN_VAR]: chain }, root ? afterLink : undefined);
}

/** The remote for this link, its entries downloaded; loaded only when one is configured. */
async function openRemote(settings: Settings, root: string, dir: string, linker: string, env: NodeJS.ProcessEnv) {
	const { remoteFor } = await import('./remote.js');
	const remote = remoteFor(remoteSettings(settings), root, dir, linker, env);
	const problem = await remote.before();
	if (problem) process.stderr.write(`ltocache: ${problem}\n`);
	return remote;
}

void main();
