// What the manager works on: the cache root the user named (never another
// one in its place), only when it is ltocache's, and the settings that come
// from the environment.
import fs from 'node:fs';
import path from 'node:path';
import { readSettings, withCacheDir } from '../shared/config.js';
import { isKeyName, isSeedTemp, META_FILE } from '../shared/keydir.js';
import { MEMO_DIR } from '../shared/memo.js';
import {
	chooseRoot,
	DEAD_LOCK_PREFIX,
	describeSkipped,
	LINKERS_NAME,
	LOCK_NAME,
	MISMATCH_PREFIX,
	PRUNE_STAMP,
	REMOTE_DOWN_PREFIX,
	SUMMARY_NAME,
	skippedSetting,
	TAG_NAME,
	tagOf,
	writeTag,
} from '../shared/root.js';
import { UsageError } from './command.js';
import { invalidValues } from './commands/config.js';

/**
 * The root the manager works on, or undefined when there is none yet. A root
 * the user set (LTOCACHE_DIR, XDG_CACHE_HOME) that cannot be used is an error,
 * never a reason to act on another: `LTOCACHE_DIR=/etc/passwd ltocache clear`
 * must not clear ~/.cache/ltocache. Nor is a directory that is not
 * ltocache's taken for a root (see checkOwned).
 */
export function managedRoot(given: NodeJS.ProcessEnv): string | undefined {
	const env = withCacheDir(given, readSettings(given).values); // the cache-dir setting, as the shim reads it
	const choice = chooseRoot(env, false);
	const passed = skippedSetting(choice);
	if (passed?.problem === 'not an absolute path') {
		throw new UsageError(`${passed.variable}=${passed.value} is not an absolute path (set it to one, or unset it)`);
	}
	if (passed) {
		throw new Error(`${describeSkipped(passed)}; fix it or unset ${passed.variable} (see ltocache doctor)`);
	}
	if (choice.root !== undefined && fs.existsSync(choice.root)) {
		const problem = ownership(choice.root, choice.from === 'LTOCACHE_DIR');
		if (problem)
			throw new UsageError(`${choice.from === 'LTOCACHE_DIR' ? `LTOCACHE_DIR=${env.LTOCACHE_DIR}` : choice.root} ${problem}`, false);
	}
	return choice.root;
}

/** The root prune and clear work on; they never create one. */
export function existingRoot(env: NodeJS.ProcessEnv): string {
	const root = managedRoot(env);
	if (root === undefined) throw new Error('no usable cache root (set LTOCACHE_DIR, or see ltocache doctor)');
	return root;
}

/** What ltocache keeps at the top of a root, beside the kernel releases. */
const ROOT_FILES = new Set([TAG_NAME, LOCK_NAME, PRUNE_STAMP, SUMMARY_NAME, MEMO_DIR, LINKERS_NAME]);
/**
 * The files of ltocache's own that live by name at the top of a root: the summary's and the linkers' temporaries,
 * a verified link's reports, a down remote's markers, and a dead lock a prune took over but could not remove.
 */
const ROOT_PREFIXES = [`${SUMMARY_NAME}.`, `${LINKERS_NAME}.`, MISMATCH_PREFIX, REMOTE_DOWN_PREFIX, DEAD_LOCK_PREFIX];
export const isRootFile = (name: string) => ROOT_FILES.has(name) || ROOT_PREFIXES.some((prefix) => name.startsWith(prefix));

/**
 * Whether an untagged directory is laid out as a root that ltocache made
 * before it tagged roots: nothing at the top but release directories and
 * ltocache's own files (and symlinks, never followed), nothing in a release
 * directory but ltocache's module directories (isOurs in scan.ts), and at
 * least one of those. $HOME, / or a project directory fail the first;
 * /var/cache with one shim link's directory in it the second (its other
 * directories hold other things); an empty directory or a tree of plain lld
 * caches the third.
 */
export function looksLikeRoot(root: string): boolean {
	let found = false;
	for (const top of fs.readdirSync(root, { withFileTypes: true })) {
		if (isRootFile(top.name)) continue;
		// A symlink is never followed, so never at risk; a file of someone else's says the directory is theirs.
		if (top.isSymbolicLink()) continue;
		if (!top.isDirectory()) return false;
		try {
			for (const key of fs.readdirSync(path.join(root, top.name), { withFileTypes: true })) {
				if (key.isSymbolicLink()) continue;
				if (!key.isDirectory()) return false;
				if (isSeedTemp(key.name)) continue; // a module directory being filled from its sibling (src/shim/seed.ts)
				// A module directory is ltocache's as scan.ts's isOurs tells: by its metadata, or by its name, which a
				// link claiming it right now has made and not yet written the metadata into.
				if (!isKeyName(key.name) && !fs.existsSync(path.join(root, top.name, key.name, META_FILE))) return false;
				found = true;
			}
		} catch {
			return false; // what cannot be read cannot be told to be ltocache's
		}
	}
	return found;
}

/**
 * Why a root is not one the manager may count and delete in, or undefined
 * if it may: tagged by ltocache, or laid out as its roots are (then tagged
 * now, once). An empty directory holds nothing to lose. A root the user did
 * not name (under XDG_CACHE_HOME or ~/.cache, named ltocache) is ltocache's
 * by its name.
 * @param named whether the user named the directory itself (LTOCACHE_DIR)
 */
export function ownership(root: string, named: boolean): string | undefined {
	const tag = tagOf(root);
	if (tag === 'ours') return undefined;
	// Another tool's cache (the tag names it), whatever a shim link pointed at it wrote there; nor is its tag ours to replace.
	if (tag === 'theirs' && named)
		return `is not an ltocache cache root: its ${TAG_NAME} is another tool's; refusing to touch it (point LTOCACHE_DIR at a directory of its own)`;
	let empty: boolean;
	try {
		empty = fs.readdirSync(root).length === 0;
	} catch (error) {
		return `cannot be read (${(error as NodeJS.ErrnoException).code})`;
	}
	if (!named || looksLikeRoot(root)) {
		if (tag === undefined) writeTag(root);
		return undefined;
	}
	if (empty) return undefined;
	return `is not an ltocache cache root: it has no ${TAG_NAME} of ltocache's and holds other things; refusing to touch it (point LTOCACHE_DIR at a directory of its own)`;
}

/** What is wrong with the configuration (files, lines, values), for doctor; empty when it is right. */
export function settingsProblems(env: NodeJS.ProcessEnv): string[] {
	const { values, problems } = readSettings(env);
	return [...problems, ...invalidValues(values)];
}

/** A configuration that is not right is bad input, named by file and line or variable: exit status 2 in every command that reads it. */
export function checkSettings(env: NodeJS.ProcessEnv): void {
	const [problem] = settingsProblems(env);
	if (problem !== undefined) throw new UsageError(problem, false);
	for (const warning of readSettings(env).warnings) process.stderr.write(`ltocache: warning: ${warning}\n`);
}
