// The ld.lld shim, top to bottom: read argv, decide on the cache directory,
// find the real linker, run it. Nothing here may make a link fail that would
// have succeeded without the shim.
//
// bin/ld.lld loads this (bundled as dist/ld.lld.cjs) only for what its shell
// fast path leaves over, with process.argv = [node, $0, SELF, ARGS...]:
// SELF is the shim's path as the build invoked it, made absolute.
import path from 'node:path';
import { shareEntries } from '../shared/keydir.js';
import { rawArgs } from './argv.js';
import { maybeStartPrune } from './autoprune.js';
import { decide, type Plan } from './decide.js';
import { CHAIN_VAR, locateLinker, nextChain } from './linker.js';
import { runLinker } from './run.js';

function main(): void {
	const env = process.env;
	const self = process.argv[2];
	const name = path.basename(self);

	const args = rawArgs();
	let plan: Plan;
	try {
		plan = decide(args, process.cwd(), env);
	} catch (error) {
		plan = { args, note: `unexpected ${String(error)}; passing argv through` };
	}

	const located = locateLinker(name, self, env);
	if ('error' in located) {
		process.stderr.write(`ltocache: ${located.error}; set LTOCACHE_LD to the real linker\n`);
		process.exit(127);
	}
	const { linker } = located;

	if (env.LTOCACHE_VERBOSE === '1') {
		process.stderr.write(`ltocache: running ${linker.file}\n`);
		if (plan.note) process.stderr.write(`ltocache: ${plan.note}\n`);
	} else if (plan.warning) {
		process.stderr.write(`ltocache: ${plan.warning}\n`);
	}
	const { root, dir, shared } = plan;
	const afterLink = () => {
		try {
			if (shared && dir) shareEntries(dir);
		} catch {} // housekeeping never fails a link
		if (root) maybeStartPrune(root, env);
	};
	const childEnv = { ...env, [CHAIN_VAR]: nextChain(env, self, linker) };
	runLinker(linker.file, linker.argv0, plan.args, childEnv, root ? afterLink : undefined);
}

main();
