// Reading argv the way ld.lld does, to find the --thinlto-cache-dir that will
// take effect.
//
// Arguments are Bytes (src/shared/bytes.ts): file names that are not UTF-8
// survive untouched from /proc/self/cmdline or a response file to the
// linker's argv.
import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { type Bytes, bytesToBuffer, bytesToText, toBytes } from '../shared/bytes.js';
import { match, SPELLINGS } from './options.js';

/** The cache flag's one spelling (options.ts): two dashes, the value joined. */
const cache = SPELLINGS.find((s) => s.role === 'cache')!;
export const CACHE_FLAG = cache.prefix + cache.name;

/**
 * The linker's arguments (after node, the script and SELF), as the bytes the
 * kernel passed. Node decodes process.argv as UTF-8 and replaces what is not;
 * /proc/self/cmdline has the original bytes, read only when a U+FFFD says
 * something was replaced. Falls back to process.argv where that is
 * unavailable or does not line up.
 */
export function rawArgs(argv = process.argv): Bytes[] {
	const wanted = argv.length - 3;
	const decoded = argv.slice(3).map(toBytes);
	if (!argv.some((arg, i) => i >= 3 && arg.includes('\uFFFD'))) return decoded;
	let cmdline: string;
	try {
		cmdline = readFileSync('/proc/self/cmdline', 'latin1');
	} catch {
		return decoded;
	}
	const all = cmdline.split('\0');
	all.pop(); // the terminating NUL
	const raw = wanted === 0 ? [] : all.slice(-wanted);
	if (raw.length !== wanted) return decoded;
	for (let i = 0; i < wanted; i++) {
		if (bytesToText(raw[i]) !== argv[i + 3]) return decoded;
	}
	return raw;
}

const isSpace = (c: string) => c === ' ' || c === '\t' || c === '\r' || c === '\n';

/**
 * LLVM's cl::TokenizeGNUCommandLine, which lld uses for response files on
 * Linux: whitespace separates, ' and " quote, backslash escapes the next
 * byte (also inside quotes). An empty token ('') is dropped; an unterminated
 * quote keeps what it collected.
 */
export function tokenizeGnu(src: Bytes): Bytes[] {
	const out: Bytes[] = [];
	let token = '';
	const n = src.length;
	for (let i = 0; i < n; i++) {
		const c = src[i];
		if (c === '\\' && i + 1 < n) {
			token += src[++i];
		} else if (c === '"' || c === "'") {
			for (i++; i < n && src[i] !== c; i++) {
				if (src[i] === '\\' && i + 1 < n) i++;
				token += src[i];
			}
		} else if (isSpace(c)) {
			if (token !== '') out.push(token);
			token = '';
		} else {
			token += c;
		}
	}
	if (token !== '') out.push(token);
	return out;
}

export type CacheFlag = {
	/** The directory, as bytes, as the linker will see it (maybe relative). */
	value: Bytes;
	/** Index in the top-level argv: the flag itself, or the @file that holds it. */
	index: number;
	inResponseFile: boolean;
};

export type Scan =
	/** words: argv as lld reads it, response files expanded. */
	| { kind: 'none'; words: Bytes[] }
	| { kind: 'flag'; flag: CacheFlag; words: Bytes[] }
	/** Something lld would handle in a way we do not model; leave argv alone. */
	| { kind: 'unsure'; why: string };

const MAX_DEPTH = 64;

/**
 * Find the --thinlto-cache-dir that lld will use: the last one, counting
 * those inside @response files (expanded like lld: read relative to the cwd,
 * nested files allowed; an unreadable one stays a literal argument).
 */
export function scanArgs(args: Bytes[], cwd: Bytes): Scan {
	let found: CacheFlag | undefined;
	let unsure: string | undefined;
	let windowsQuoting = false;
	const words: Bytes[] = [];

	const visit = (list: Bytes[], top: number | undefined, stack: string[]) => {
		for (let i = 0; i < list.length && unsure === undefined; i++) {
			const arg = list[i];
			const index = top ?? i;
			if (!arg.startsWith('@') || arg.length === 1) words.push(arg);
			if (arg.startsWith(CACHE_FLAG)) {
				found = { value: arg.slice(CACHE_FLAG.length), index, inResponseFile: top !== undefined };
			} else if (arg.startsWith('-') && match(arg)?.role === 'rsp-quoting') {
				// --rsp-quoting=STYLE or --rsp-quoting STYLE
				windowsQuoting = (arg.includes('=') ? arg.slice(arg.indexOf('=') + 1) : list[i + 1]) !== 'posix';
			} else if (arg.startsWith('@') && arg.length > 1) {
				const file = bytesToBuffer(resolve(cwd, arg.slice(1)));
				let content: Bytes;
				let identity: string;
				try {
					const st = statSync(file);
					identity = `${st.dev}:${st.ino}`;
					content = readFileSync(file, 'latin1');
				} catch {
					words.push(arg);
					continue; // lld keeps it as a literal argument and reports it
				}
				if (stack.includes(identity)) {
					unsure = `recursive response file ${arg}`;
				} else if (stack.length >= MAX_DEPTH) {
					unsure = `response files nested deeper than ${MAX_DEPTH}`;
				} else {
					if (content.startsWith('\xEF\xBB\xBF')) content = content.slice(3);
					else if (content.startsWith('\xFF\xFE') || content.startsWith('\xFE\xFF')) {
						unsure = `UTF-16 response file ${arg}`;
						return;
					}
					visit(tokenizeGnu(content), index, [...stack, identity]);
				}
			}
		}
	};

	visit(args, undefined, []);
	if (unsure !== undefined) return { kind: 'unsure', why: unsure };
	// lld reads --rsp-quoting before expanding; with Windows quoting our GNU
	// reading of any response file could be wrong.
	if (windowsQuoting && args.some((a) => a.startsWith('@'))) return { kind: 'unsure', why: 'Windows response-file quoting' };
	return found ? { kind: 'flag', flag: found, words } : { kind: 'none', words };
}

/** The flag's directory as an absolute path (bytes), relative to the cwd like lld. */
export function absoluteDir(value: Bytes, cwd: Bytes): Bytes {
	return resolve(cwd, value);
}

/** argv with the effective flag set to a new value: in place, or right after the @file that held it. */
export function withCacheDir(args: Bytes[], flag: CacheFlag, dir: Bytes): Bytes[] {
	const out = args.slice();
	if (flag.inResponseFile) out.splice(flag.index + 1, 0, CACHE_FLAG + dir);
	else out[flag.index] = CACHE_FLAG + dir;
	return out;
}
