// What the manager works on: the cache root the user named (never another
// one in its place), and the settings that come from the environment.
import { chooseRoot, describeSkipped, skippedSetting } from '../shared/root.js';
import { UsageError } from './command.js';

/**
 * The root the manager works on, or undefined when there is none yet. A root
 * the user set (LTOCACHE_DIR, XDG_CACHE_HOME) that cannot be used is an error,
 * never a reason to act on another: `LTOCACHE_DIR=/etc/passwd ltocache clear`
 * must not clear ~/.cache/ltocache.
 */
export function managedRoot(env: NodeJS.ProcessEnv): string | undefined {
	const choice = chooseRoot(env, false);
	const passed = skippedSetting(choice);
	if (passed?.problem === 'not an absolute path') {
		throw new UsageError(`${passed.variable}=${passed.value} is not an absolute path (set it to one, or unset it)`);
	}
	if (passed) {
		throw new Error(`${describeSkipped(passed)}; fix it or unset ${passed.variable} (see ltocache doctor)`);
	}
	return choice.root;
}

/** The root prune and clear work on; they never create one. */
export function existingRoot(env: NodeJS.ProcessEnv): string {
	const root = managedRoot(env);
	if (root === undefined) throw new Error('no usable cache root (set LTOCACHE_DIR, or see ltocache doctor)');
	return root;
}
