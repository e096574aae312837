// Finding the real linker behind the shim.
//
// The shim is found on PATH under the name the build asked for (ld.lld,
// ld.lld-16, ...), so the real linker is the next executable of that name on
// PATH that is not a shim. "Not a shim" is any copy of ltocache's shim, known
// by its contents (isShimFile: another user's or root's install is passed
// over, not run as a second hop), or any file already passed through in
// this link: LTOCACHE_CHAIN carries those to the child, compared as files
// (device and inode, like `test -ef`), so two wrappers that each skip only
// themselves cannot call each other forever. bin/ld.lld's fast path does
// the same with shell built-ins; both spell the linker and the chain byte
// for byte alike.
import { statSync } from 'node:fs';
import { basename } from 'node:path';
import { isExecutableFile, isShimFile, searchPath } from '../shared/pathsearch.js';

export const CHAIN_VAR = 'LTOCACHE_CHAIN';

/** The file to run, and the argv[0] to run it with. */
export type Linker = { file: string; argv0: string };
export type Located = { linker: Linker } | { error: string };

function identity(file: string): string | undefined {
	try {
		const st = statSync(file);
		return `${st.dev}:${st.ino}`;
	} catch {
		return undefined;
	}
}

/** The chain: one path a line, as `${chain}\n${self}\n${linker}` in sh. */
export function nextChain(env: NodeJS.ProcessEnv, self: string, linker: Linker): string {
	const before = env[CHAIN_VAR];
	return `${before ? `${before}\n` : ''}${self}\n${linker.file}`;
}

/**
 * @param name the name the shim was invoked as (ld.lld, ld.lld-16)
 * @param self the shim's file as it was invoked
 */
export function locateLinker(name: string, self: string, env: NodeJS.ProcessEnv): Located {
	const skip = new Set([self, ...(env[CHAIN_VAR] ?? '').split('\n')].map(identity));
	skip.delete(undefined);
	const isShim = (file: string) => skip.has(identity(file)) || isShimFile(file);
	// argv[0] is the linker's path, as a shell's exec gives it; a linker of
	// another name (LTOCACHE_LD) gets the name the build called, from which
	// lld takes its flavour.
	const argv0 = (file: string) => (basename(file) === name ? file : name);
	const explicit = env.LTOCACHE_LD;
	if (explicit?.includes('/')) {
		if (!isExecutableFile(explicit)) return { error: `LTOCACHE_LD=${explicit} is not an executable file` };
		if (isShim(explicit)) return { error: `LTOCACHE_LD=${explicit} is the ltocache shim itself, not a real linker` };
		return { linker: { file: explicit, argv0: argv0(explicit) } };
	}
	const wanted = explicit || name;
	const skipped: string[] = [];
	for (const file of searchPath(wanted, env.PATH ?? '')) {
		if (!isShim(file)) return { linker: { file, argv0: argv0(file) } };
		skipped.push(file);
	}
	const what = explicit ? `LTOCACHE_LD=${explicit}` : wanted;
	const also = skipped.length > 0 ? `; skipped ${skipped.join(', ')} (the shim)` : '';
	return { error: `no real ${what} found on PATH=${env.PATH ?? ''}${also}` };
}
