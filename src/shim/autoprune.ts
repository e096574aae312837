// After a redirected link: start `ltocache prune` with its defaults (the
// configured limits), at most once a day, detached so that make and DKMS
// never wait for it. On every other link this costs one stat of the stamp
// file.
import { realpathSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { PRUNE_STAMP, writeOwnFile } from '../shared/root.js';

const DAY_MS = 86400_000;

/**
 * The build's variables for its own Node programs that bin/ld.lld keeps
 * from the shim's Node (its node_vars; test/unit/structure.test.ts holds
 * the two alike): the prune's Node runs without them too, or it would write
 * coverage or warnings into the build's directories.
 */
export const NODE_VARS = [
	'NODE_V8_COVERAGE',
	'NODE_COMPILE_CACHE',
	'NODE_REDIRECT_WARNINGS',
	'NODE_DEBUG',
	'NODE_DEBUG_NATIVE',
	'NODE_PENDING_DEPRECATION',
	'NODE_ICU_DATA',
	'NODE_CHANNEL_FD',
	'NODE_CHANNEL_SERIALIZATION_MODE',
	'NODE_UNIQUE_ID',
];

/** @param enabled the auto-prune setting (LTOCACHE_AUTO_PRUNE, or the configuration files) */
export async function maybeStartPrune(root: string, env: NodeJS.ProcessEnv, enabled: boolean): Promise<void> {
	if (!enabled) return;
	const stamp = join(root, PRUNE_STAMP);
	try {
		const last = statSync(stamp, { throwIfNoEntry: false })?.mtimeMs ?? 0;
		if (Date.now() - last < DAY_MS) return;
		// Stamp first: the other links of a parallel build then skip.
		writeOwnFile(stamp, '');
		// process.argv[1] is bin/ld.lld as invoked; the manager is beside its real file.
		const cli = join(dirname(realpathSync(process.argv[1])), 'ltocache');
		// Loaded here, once a day, not on every link.
		const { spawn } = process.getBuiltinModule?.('node:child_process') ?? (await import('node:child_process'));
		// The build's NODE_OPTIONS and the rest are for its own Node, not ltocache's (see bin/ld.lld).
		const ours: NodeJS.ProcessEnv = { ...env, LTOCACHE_DIR: root, NODE_OPTIONS: '' };
		// Undefined, not deleted: spawn copies NODE_V8_COVERAGE from process.env into an environment without the name.
		for (const name of NODE_VARS) ours[name] = undefined;
		const child = spawn(process.execPath, [cli, 'prune'], { detached: true, stdio: 'ignore', env: ours });
		child.on('error', () => {});
		child.unref();
	} catch {} // housekeeping never fails a link
}
