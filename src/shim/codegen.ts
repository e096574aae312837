// The link's code-generation options, for the directory's name. lld's cache
// key leaves some of them out (measured with lld 14 and 16: any
// --plugin-opt=-<llvm option>, --lto-basic-block-sections= and the file it
// names, -mllvm with lld 14), so relinking with only those changed would be
// served the objects of the old options. Every option whose role in the
// options table (options.ts) is code generation goes into the name, with
// the contents of the files some of them name (a profile, a pass plugin,
// DTLTO's remote compiler and distributor; for an LLVM option, any regular
// file its value or what follows an `=` names): a changed option or file
// means another directory. A file is hashed once per identity (the inputs
// memo's rule), so a DTLTO link does not read the compiler every time.
// Options that only place, name or report things (-o, -L, -Map, --threads,
// ...) stay out, so a module keeps one directory.
//
// The same reading says what the backends are asked for besides the object
// (side outputs, options.ts), which a cache hit would not give, and follows
// an LLVM option's response file (`--mllvm=@FILE`, which LLVM's parser
// expands and lld's key holds only as the literal string).

import type { Hash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { type Bytes, bytesToBuffer, bytesToText, inDir } from '../shared/bytes.js';
import { identityOf, identityOfPath, readInto } from '../shared/identity.js';
import { shortHash } from '../shared/keydir.js';
import type { Memo } from '../shared/memo.js';
import { tokenizeGnu } from './argv.js';
import { llvmSideOutput, parse } from './options.js';

export type Options = {
	/** The keyed options, as the key spells them. */
	keyed: Bytes[];
	/** Files whose contents go into the key (absolute), in order. */
	files: Bytes[];
	/** The first option that asks the backends for a side output. */
	side?: string;
	/** The split-DWARF option, if any. */
	splitDwarf?: string;
	/** The first option in effect that has lld name the objects it links (options.ts's report role). */
	report?: string;
	problem?: string;
};

export type Codegen = {
	/** Short hash of the options and the files they name; undefined when the link has none. */
	hash?: string;
	/** The files hashed, and their identities when they were, to tell after the link whether they changed. */
	files?: Bytes[];
	identity?: string;
	/** How many of the files were read (the others' digests came from the memo). */
	read?: number;
	problem?: string;
};

const KEYED = new Set(['codegen', 'codegen-file', 'llvm', 'fat', 'side', 'split-dwarf']);
const MAX_RESPONSE_DEPTH = 32;

/** The options that matter, each as the key spells it (`name=value`, or a flag's name), the files to hash, and the side outputs asked for. */
export function readOptions(words: Bytes[], cwd: string): Options {
	const out: Options = { keyed: [], files: [] };
	const file = (name: Bytes) => {
		if (!name) return;
		const path = inDir(cwd, name);
		if (!out.files.includes(path) && statSync(bytesToBuffer(path), { throwIfNoEntry: false })?.isFile()) out.files.push(path);
	};
	// An LLVM option's value: a side output it asks for, or the files it may name.
	const llvm = (value: Bytes, shown: string, depth: number, stack: Bytes[]) => {
		if (value.startsWith('@') && value.length > 1) {
			// LLVM's parser reads a response file relative to the working directory, nested ones too, GNU-quoted.
			const path = inDir(cwd, value.slice(1));
			if (depth >= MAX_RESPONSE_DEPTH || stack.includes(path)) {
				out.problem ??= `LLVM response files nested too deep or in a circle (${bytesToText(value)})`;
				return;
			}
			let text: Bytes;
			try {
				// A FIFO's data would be taken from lld, which reads it too.
				if (!statSync(bytesToBuffer(path)).isFile()) throw Object.assign(new Error(), { code: 'not a regular file' });
				text = readFileSync(bytesToBuffer(path), 'latin1');
			} catch (error) {
				out.problem ??= `cannot read ${bytesToText(value.slice(1))}, the response file of ${shown} (${(error as NodeJS.ErrnoException).code ?? error})`;
				return;
			}
			if (!out.files.includes(path)) out.files.push(path);
			for (const token of tokenizeGnu(text)) llvm(token, shown, depth + 1, [...stack, path]);
			return;
		}
		if (llvmSideOutput(value)) {
			out.side ??= `${shown}${value === shown.slice(-value.length) ? '' : ` (${bytesToText(value)})`}`;
			return; // what it names is written, not read
		}
		const eq = value.indexOf('=');
		if (eq < 0) return;
		const v = value.slice(eq + 1);
		for (const name of new Set([v, v.slice(v.indexOf('=') + 1), v.slice(v.lastIndexOf('=') + 1)])) file(name);
	};
	// By id, the last of an option and its no- form deciding.
	const reports = new Map<string, string>();
	for (const opt of parse(words)) {
		if ('file' in opt || !opt.role) continue;
		const shown = `-${opt.text.length > 1 ? '-' : ''}${bytesToText(opt.text)}`;
		if (opt.role === 'report') {
			if (opt.id.startsWith('no-')) reports.delete(opt.id.slice(3));
			else if (!reports.has(opt.id)) reports.set(opt.id, shown);
		}
		if (!KEYED.has(opt.role)) continue;
		out.keyed.push(opt.text);
		if (opt.role === 'side') out.side ??= shown;
		else if (opt.role === 'split-dwarf') out.splitDwarf ??= shown;
		else if (opt.role === 'codegen-file' && opt.value !== undefined) file(opt.value);
		// lld gives LLVM `-` and the value of --plugin-opt=-.
		else if (opt.role === 'llvm' && opt.value !== undefined) llvm(opt.id === 'plugin-opt=-' ? `-${opt.value}` : opt.value, shown, 0, []);
	}
	out.report = reports.values().next().value;
	return out;
}

/** The keyed options' spellings alone (for tests and the README's examples). */
export const codegenOptions = (words: Bytes[]): Bytes[] => readOptions(words, '/').keyed;

/** The key of what readOptions found: the options, and each file's name and contents (a digest the memo may remember). */
export async function codegenKey(opts: Options, memo?: Memo): Promise<Codegen> {
	if (opts.problem) return { problem: opts.problem };
	if (opts.keyed.length === 0 && opts.files.length === 0) return {};
	let digests = '';
	const identities: string[] = [];
	let createHash: ((algorithm: string) => Hash) | undefined;
	let read = 0;
	for (const file of opts.files) {
		const st = statSync(bytesToBuffer(file), { bigint: true, throwIfNoEntry: false });
		let digest = st && memo?.recallDigest(file, st);
		let identity = st && identityOf(st);
		if (!digest) {
			// Loaded only for the links whose options name files: node:crypto costs every link ~3 ms to load.
			createHash ??= (process.getBuiltinModule?.('node:crypto') ?? (await import('node:crypto'))).createHash;
			const hash = createHash('sha256');
			try {
				identity = readInto(hash, file, false).identity;
			} catch (error) {
				return { problem: `cannot read ${bytesToText(file)}, named by a code-generation option (${(error as Error).message})` };
			}
			digest = hash.digest('hex');
			read++;
			// Remembered under the identity it was read with (readInto saw it unchanged throughout).
			if (st && identity === identityOf(st)) memo?.learnDigest(file, st, digest);
		}
		identities.push(identity!);
		digests += `${file.length}:${file}:${digest}\n`;
	}
	const text = `${opts.keyed.map((w) => `${w.length}:${w}`).join('\n')}\n${digests}`;
	return {
		hash: shortHash(Buffer.from(text, 'latin1')),
		...(opts.files.length ? { files: opts.files, identity: identities.join('\n'), read } : {}),
	};
}

/** The identities of these files now, as codegenKey joins them: equal to its identity while none changed. */
export const identitiesNow = (files: Bytes[]): string => files.map((f) => identityOfPath(f) ?? 'missing').join('\n');
