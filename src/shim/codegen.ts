// The link's code-generation options, for the directory's name. lld's cache
// key leaves some of them out (measured with lld 14 and 16: any
// --plugin-opt=-<llvm option>, --lto-basic-block-sections= and the file it
// names, -mllvm with lld 14), so relinking with only those changed would be
// served the objects of the old options. Every option that reaches LTO's
// configuration (-mllvm, --plugin-opt, --lto-*, --thinlto-* but the cache's
// own) goes into the name, with the contents
// of every regular file such an option names: a changed option or profile
// means another directory. Options that only place, name or report things
// (-o, -L, -Map, --threads, ...) stay out, so a module keeps one directory.

import type { Hash } from 'node:crypto';
import { statSync } from 'node:fs';
import { type Bytes, bytesToBuffer, bytesToText, inDir } from '../shared/bytes.js';
import { shortHash } from '../shared/keydir.js';
import { readInto } from './incbin.js';
import { options } from './inputs.js';

export type Codegen = {
	/** Short hash of the options and the files they name; undefined when the link has none. */
	hash?: string;
	/** The files' identities when they were read, to tell after the link whether they changed. */
	identity?: string;
	problem?: string;
};

// The output kind (-r, -shared, -pie) reaches LTO as the relocation model and the target as the modules' triple, both in lld's key.
const KEYED = /^(mllvm|plugin-opt|lto|thinlto-|disable-verify|load-pass-plugin|emit-relocs|q$|icf|fat-lto-objects|no-fat-lto-objects)/;
const UNKEYED = /^(thinlto-cache-dir|thinlto-cache-policy|thinlto-jobs)/;

/** The options that matter, each as name=value (a joined value already is), or a flag's name. */
export function codegenOptions(words: Bytes[]): Bytes[] {
	const keyed: Bytes[] = [];
	for (const opt of options(words)) {
		if ('file' in opt || !KEYED.test(opt.name) || UNKEYED.test(opt.name)) continue;
		if (opt.name === 'plugin-opt' && opt.value?.startsWith('jobs=')) continue;
		keyed.push(opt.value === undefined ? opt.name : `${opt.name}=${opt.value}`);
	}
	return keyed;
}

/** Names of regular files an option value may stand for: the value, or what follows its first or last `=`. */
function namedFiles(keyed: Bytes[], cwd: string): Bytes[] {
	const files: Bytes[] = [];
	for (const word of keyed) {
		if (!word.includes('=')) continue;
		const value = word.slice(word.indexOf('=') + 1);
		for (const name of new Set([value, value.slice(value.indexOf('=') + 1), value.slice(value.lastIndexOf('=') + 1)])) {
			if (!name) continue;
			const file = inDir(cwd, name);
			if (!files.includes(file) && statSync(bytesToBuffer(file), { throwIfNoEntry: false })?.isFile()) files.push(file);
		}
	}
	return files;
}

export async function codegenKey(words: Bytes[], cwd: string): Promise<Codegen> {
	const keyed = codegenOptions(words);
	if (keyed.length === 0) return {};
	const files = namedFiles(keyed, cwd);
	let digests = '';
	const identities: string[] = [];
	if (files.length) {
		// Loaded only for the links whose options name files: node:crypto costs every link ~3 ms to load.
		const { createHash } = process.getBuiltinModule?.('node:crypto') ?? (await import('node:crypto'));
		for (const file of files) {
			const hash: Hash = createHash('sha256');
			try {
				identities.push(readInto(hash, file, false).identity);
			} catch (error) {
				return { problem: `cannot read ${bytesToText(file)}, named by a code-generation option (${(error as Error).message})` };
			}
			digests += `${file.length}:${file}:${hash.digest('hex')}\n`;
		}
	}
	const text = `${keyed.map((w) => `${w.length}:${w}`).join('\n')}\n${digests}`;
	return { hash: shortHash(Buffer.from(text, 'latin1')), identity: identities.join('\n') || undefined };
}
