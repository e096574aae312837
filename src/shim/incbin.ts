// The `.incbin` guard. lld's cache key covers a module's bitcode, not the
// files its assembly pulls in with `.incbin` (or `.include`), so a changed
// blob would come back stale from the cache: the reason Linux dropped its
// cache. The contents of every such file go into the name of the directory
// ltocache chooses, so a changed file means a fresh directory.
//
// The assembler of lld's code generator resolves those names against the
// link's working directory (measured with lld 14 and 16), and so does this.
// It errs on the safe side: a directive in a comment or a disabled .if still
// counts, and one whose file cannot be named or read means no cache.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { type Bytes, bytesToBuffer, bytesToText } from '../shared/bytes.js';
import { errorCode } from '../shared/keydir.js';

export type Guard = {
	/** Short hash of every file's name and contents, in order; undefined when there are none. */
	hash?: string;
	files: Bytes[];
	/** Why the link cannot have a cache. */
	problem?: string;
};

const DIRECTIVE = /\.(incbin|include)\b/gi;
const MAX_INCLUDE_DEPTH = 16;

/** The GNU as string escapes LLVM's parser knows: \b \f \n \r \t \" \\, octal and \x hex. */
function asmString(text: Bytes): Bytes {
	return text.replace(/\\(x[0-9a-fA-F]+|[0-7]{1,3}|.)/gs, (_, e: string) => {
		if (e[0] === 'x') return String.fromCharCode(Number.parseInt(e.slice(1), 16) & 0xff);
		if (/^[0-7]/.test(e)) return String.fromCharCode(Number.parseInt(e, 8) & 0xff);
		return { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' }[e] ?? e;
	});
}

/** The files named by .incbin and .include in the asm strings, each once, in order; or what stops that. */
function namedFiles(asm: Bytes[], cwd: string): { files: Bytes[]; contents: Buffer[]; problem?: string } {
	const files: Bytes[] = [];
	const contents: Buffer[] = [];
	const visit = (text: Bytes, depth: number): string | undefined => {
		for (const match of text.matchAll(DIRECTIVE)) {
			const rest = text.slice(match.index + match[0].length);
			const quoted = /^[ \t]*"((?:[^"\\\n]|\\.)*)"/s.exec(rest);
			if (!quoted) return `an ${match[0]} whose file is not a plain string (${bytesToText(rest.split('\n')[0].trim())})`;
			const file = resolve(cwd, asmString(quoted[1]));
			if (files.includes(file)) continue;
			let data: Buffer;
			try {
				data = readFileSync(bytesToBuffer(file));
			} catch (error) {
				return `cannot read ${bytesToText(file)}, named by ${match[0]} (${errorCode(error)})`;
			}
			files.push(file);
			contents.push(data);
			if (match[1].toLowerCase() === 'include') {
				if (depth >= MAX_INCLUDE_DEPTH) return `.include nested deeper than ${MAX_INCLUDE_DEPTH}`;
				const inner = visit(data.toString('latin1'), depth + 1);
				if (inner) return inner;
			}
		}
		return undefined;
	};
	for (const text of asm) {
		const problem = visit(text, 0);
		if (problem) return { files, contents, problem };
	}
	return { files, contents };
}

export async function incbinGuard(asm: Bytes[], cwd: string): Promise<Guard> {
	if (!asm.some((text) => /\.(incbin|include)/i.test(text))) return { files: [] };
	const { files, contents, problem } = namedFiles(asm, cwd);
	if (problem) return { files, problem };
	// Loaded only here, for the few links that include files: node:crypto costs every link ~3 ms to load.
	const { createHash } = await import('node:crypto');
	const hash = createHash('sha256');
	files.forEach((file, i) => {
		hash.update(`${file.length}:${file}:${contents[i].length}:`, 'latin1');
		hash.update(contents[i]);
	});
	return { files, hash: hash.digest('hex').slice(0, 16) };
}
