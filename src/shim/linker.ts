// Finding the real linker behind the shim.
//
// The shim is found on PATH under the name the build asked for (ld.lld,
// ld.lld-16, ...), so the real linker is the next executable of that name on
// PATH that is not a shim. "Not a shim" compares resolved files, not names,
// and LTOCACHE_CHAIN carries every file already passed through in this link
// to the child, so two wrappers that each skip only themselves cannot call
// each other forever.
import fs from 'node:fs';
import { isExecutableFile, searchPath } from '../shared/pathsearch.js';

export const CHAIN_VAR = 'LTOCACHE_CHAIN';

export type Linker = { file: string; real: string };
export type Located = { linker: Linker } | { error: string };

function realpath(file: string): string | undefined {
	try {
		return fs.realpathSync(file);
	} catch {
		return undefined;
	}
}

export function readChain(env: NodeJS.ProcessEnv): string[] {
	try {
		const chain: unknown = JSON.parse(env[CHAIN_VAR] ?? '[]');
		return Array.isArray(chain) ? chain.filter((entry): entry is string => typeof entry === 'string') : [];
	} catch {
		return [];
	}
}

/** The files to skip: this shim and everything earlier in the chain, passed on to the linker's environment. */
export function nextChain(env: NodeJS.ProcessEnv, self: string, linker: Linker): string {
	return JSON.stringify([...new Set([...readChain(env), self, linker.real])]);
}

/**
 * @param name the name the shim was invoked as (ld.lld, ld.lld-16)
 * @param self the shim's own resolved file
 */
export function locateLinker(name: string, self: string, env: NodeJS.ProcessEnv): Located {
	const skip = new Set([self, ...readChain(env)]);
	const explicit = env.LTOCACHE_LD;
	if (explicit?.includes('/')) {
		const real = realpath(explicit);
		if (real === undefined || !isExecutableFile(real)) return { error: `LTOCACHE_LD=${explicit} is not an executable file` };
		if (skip.has(real)) return { error: `LTOCACHE_LD=${explicit} is the ltocache shim itself, not a real linker` };
		return { linker: { file: explicit, real } };
	}
	const wanted = explicit || name;
	const skipped: string[] = [];
	for (const file of searchPath(wanted, env.PATH ?? '')) {
		const real = realpath(file) ?? file;
		if (skip.has(real)) {
			skipped.push(file);
			continue;
		}
		return { linker: { file, real } };
	}
	const what = explicit ? `LTOCACHE_LD=${explicit}` : wanted;
	const also = skipped.length > 0 ? `; skipped ${skipped.join(', ')} (the shim)` : '';
	return { error: `no real ${what} found on PATH=${env.PATH ?? ''}${also}` };
}
