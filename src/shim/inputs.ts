// The bitcode a link reads, found the way lld finds it: its input files,
// the members of its archives (regular and thin, like the built-in.a Kbuild
// links vmlinux from), libraries named with -l through every -L, and what
// linker scripts pull in (INPUT, GROUP, AS_NEEDED, INCLUDE, SEARCH_DIR; a
// -T script, or a file lld reads as one, like libc.so). Paths are resolved
// by the file system, not on paper, and --chroot applies where lld applies
// it. What is not bitcode (ELF objects, shared libraries) is passed over
// unread beyond its first bytes.
//
// Where lld would read what this cannot know (a FIFO, --remap-inputs, the
// bitcode inside fat ELF objects) or would fail to find a file, the link
// gets no cache: `problem` says why.
import { type BigIntStats, closeSync, fstatSync, openSync, readFileSync, readSync, type Stats, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { type Bytes, bytesToBuffer, bytesToText, inDir } from '../shared/bytes.js';
import { errorCode } from '../shared/keydir.js';
import type { Memo } from '../shared/memo.js';
import { BitcodeError, isBitcode, readBitcode } from './bitcode.js';
import { concernsGuard } from './incbin.js';

export type Inputs = {
	/** ThinLTO modules: one cache lookup each. */
	modules: number;
	/** The assembly strings, module-level and inline, that the .incbin guard has something to say about (see concernsGuard), in order. */
	asm: Bytes[];
	/** Why what the link reads cannot be known, so it gets no cache. */
	problem?: string;
};

/** Options whose value may be the next word (lld's Separate, Eq, EEq and JoinedOrSeparate, lld 14 to 20); their values are not inputs. */
export const SEPARATE = new Set(
	(
		'o output m T script L library-path l library e entry u undefined y trace-symbol z F filter f auxiliary h soname R rpath ' +
		'just-symbols b format dynamic-linker I sysroot version-script dynamic-list Map defsym wrap exclude-libs hash-style plugin ' +
		'plugin-opt mllvm image-base init fini retain-symbols-file symbol-ordering-file call-graph-ordering-file dependency-file ' +
		'error-limit oformat undefined-glob export-dynamic-symbol export-dynamic-symbol-list require-defined why-extract reproduce ' +
		'print-archive-stats Ttext Tdata Tbss Ttext-segment section-start package-metadata emulation O G dT default-script chroot ' +
		'compress-debug-sections compress-sections split-stack-adjust-size in-implib out-implib irpgo-profile error-handling-script ' +
		'keep-unique orphan-handling pack-dyn-relocs print-symbol-order remap-inputs remap-inputs-file sort-section target2 threads ' +
		'time-trace-granularity unresolved-symbols rsp-quoting warn-backrefs-exclude why-live lto-known-safe-vtables ' +
		'opt-remarks-filename opt-remarks-hotness-threshold opt-remarks-passes opt-remarks-format shuffle-sections ' +
		'thinlto-cache-policy rpath-link mips-got-size load-pass-plugin android-memtag-mode'
	).split(' '),
);
/** One-letter options that also take their value joined (-lfoo, -L/dir). */
const JOINED = new Set('oTLlmeuyzFfhRbIOG'.split(''));

export type Option = { name: string; value?: Bytes };

/** Splits one word of argv into an option and its joined value; undefined for an input file. */
export function option(word: Bytes): Option | undefined {
	if (!word.startsWith('-') || word === '-') return undefined;
	const bare = word.replace(/^--?/, '');
	const eq = bare.indexOf('=');
	// name=value for long options only: for a one-letter one the = belongs to the value (-L=/usr is sysroot-relative).
	if (eq > 1 && SEPARATE.has(bare.slice(0, eq))) return { name: bare.slice(0, eq), value: bare.slice(eq + 1) };
	if (SEPARATE.has(bare) || word.startsWith('--')) return { name: bare };
	if (JOINED.has(bare[0])) return { name: bare[0], value: bare.slice(1) };
	return { name: bare };
}

/** argv as options with their values and input files, in order. */
export function* options(words: Bytes[]): Generator<Option | { file: Bytes }> {
	for (let i = 0; i < words.length; i++) {
		const opt = option(words[i]);
		if (!opt) {
			yield { file: words[i] };
			continue;
		}
		if (opt.value === undefined && SEPARATE.has(opt.name) && i + 1 < words.length) opt.value = words[++i];
		yield opt;
	}
}

const STATIC = ['Bstatic', 'static', 'dn', 'non_shared', 'omagic', 'N', 'nmagic', 'n'];
const DYNAMIC = ['Bdynamic', 'dy', 'call_shared'];
const MAX_SCRIPT_DEPTH = 32;

/** The state of one read of a link's inputs, as lld's driver keeps it. */
type Reader = {
	inputs: Inputs;
	cwd: string;
	searchDirs: Bytes[];
	sysroot: Bytes;
	chroot: Bytes;
	nostdlib: boolean;
	isStatic: boolean;
	binary: boolean;
	depth: number;
	memo?: Memo;
};

/**
 * What bitcode the link reads. words: argv with response files expanded.
 * Every archive member counts, also those of an archive lld searches
 * lazily and may not take: a member's bitcode is read either way (the asm
 * guard must not miss one), and the module count says so in its docs.
 */
export function readInputs(words: Bytes[], cwd: string, memo?: Memo): Inputs {
	const inputs: Inputs = { modules: 0, asm: [] };
	const r: Reader = {
		inputs,
		cwd,
		searchDirs: [],
		sysroot: '',
		chroot: '',
		nostdlib: false,
		isStatic: false,
		binary: false,
		depth: 0,
		memo,
	};
	let fat = false;
	const scripts: Bytes[] = [];
	const defaultScripts: Bytes[] = [];
	// lld takes these before it reads any input, wherever they stand.
	for (const opt of options(words)) {
		if ('file' in opt) continue;
		if (opt.name === 'L' || opt.name === 'library-path') r.searchDirs.push(opt.value ?? '');
		else if (opt.name === 'sysroot') r.sysroot = opt.value ?? '';
		else if (opt.name === 'chroot') r.chroot = opt.value ?? '';
		else if (opt.name === 'nostdlib') r.nostdlib = true;
		else if (opt.name === 'fat-lto-objects' || opt.name === 'no-fat-lto-objects') fat = opt.name === 'fat-lto-objects';
		else if (opt.name === 'remap-inputs' || opt.name === 'remap-inputs-file')
			inputs.problem ??= `--${opt.name} changes which files lld reads`;
		else if (opt.name === 'T' || opt.name === 'script') scripts.push(opt.value ?? '');
		else if (opt.name === 'dT' || opt.name === 'default-script') defaultScripts.push(opt.value ?? '');
	}
	if (fat) inputs.problem ??= '--fat-lto-objects links bitcode held inside ELF objects';
	if (inputs.problem) return inputs;
	const saved: { isStatic: boolean; binary: boolean }[] = [];
	try {
		for (const opt of options(words)) {
			if ('file' in opt) addFile(r, opt.file);
			else if (opt.name === 'l' || opt.name === 'library') addFile(r, findLibrary(r, opt.value ?? ''));
			else if (opt.name === 'T' || opt.name === 'script') readScriptFile(r, searchScript(r, opt.value ?? ''));
			else if (opt.name === 'format' || opt.name === 'b') r.binary = opt.value === 'binary';
			else if (STATIC.includes(opt.name)) r.isStatic = true;
			else if (DYNAMIC.includes(opt.name)) r.isStatic = false;
			else if (opt.name === 'push-state') saved.push({ isStatic: r.isStatic, binary: r.binary });
			else if (opt.name === 'pop-state') Object.assign(r, saved.pop() ?? {});
			if (inputs.problem) return inputs;
		}
		if (scripts.length === 0) for (const script of defaultScripts) readScriptFile(r, searchScript(r, script));
	} catch (error) {
		inputs.problem ??= error instanceof Error ? error.message : String(error);
	}
	return inputs;
}

const onDisk = (r: Reader, file: Bytes): Buffer => bytesToBuffer(inDir(r.cwd, file));
const exists = (r: Reader, file: Bytes) => statSync(onDisk(r, file), { throwIfNoEntry: false }) !== undefined;

/** lld's findFile: dir/name, a leading = in dir standing for the sysroot. */
function findFile(r: Reader, dir: Bytes, name: Bytes): Bytes | undefined {
	const base = dir.startsWith('=') ? `${r.sysroot}/${dir.slice(1)}` : dir;
	const file = base === '' ? name : `${base}/${name}`;
	return exists(r, file) ? file : undefined;
}

function findFromSearchPaths(r: Reader, name: Bytes): Bytes | undefined {
	for (const dir of r.searchDirs) {
		const found = findFile(r, dir, name);
		if (found) return found;
	}
	return undefined;
}

function findLibrary(r: Reader, name: Bytes): Bytes {
	let found: Bytes | undefined;
	if (name.startsWith(':')) found = findFromSearchPaths(r, name.slice(1));
	else
		for (const dir of r.searchDirs) {
			found = (r.isStatic ? undefined : findFile(r, dir, `lib${name}.so`)) ?? findFile(r, dir, `lib${name}.a`);
			if (found) break;
		}
	if (found === undefined) throw new Error(`-l${bytesToText(name)} is not found on the library path`);
	return found;
}

function searchScript(r: Reader, name: Bytes): Bytes {
	const found = exists(r, name) ? name : findFromSearchPaths(r, name);
	if (found === undefined) throw new Error(`linker script ${bytesToText(name)} is not found`);
	return found;
}

/** lld's readFile: --chroot moves absolute paths under it. */
const chrooted = (r: Reader, file: Bytes): Bytes => (r.chroot && file.startsWith('/') ? r.chroot + file : file);

/** Open a file lld will read (st: its stat, if taken already); undefined where lld will fail (missing, a directory). Throws for what cannot be read without taking it from lld. */
function open(
	r: Reader,
	file: Bytes,
	st: Stats | BigIntStats | undefined = statSync(onDisk(r, file), { throwIfNoEntry: false }),
): number | undefined {
	const path = onDisk(r, file);
	if (!st || st.isDirectory()) return undefined;
	if (!st.isFile()) {
		if (bytesToText(file) === '/dev/null') return undefined; // reads as nothing, which lld takes for an empty script
		// Reading a FIFO (a process substitution) would take lld's input.
		throw new Error(`${bytesToText(file)} is not a regular file`);
	}
	try {
		return openSync(path, 'r');
	} catch (error) {
		throw new Error(`cannot read ${bytesToText(file)} (${errorCode(error)})`);
	}
}

function addFile(r: Reader, given: Bytes): void {
	if (r.binary) return; // raw data, placed as it is
	const file = chrooted(r, given);
	// A bitcode file or a regular archive is remembered whole; a thin archive's members each by themselves.
	const now = r.memo && statSync(onDisk(r, file), { bigint: true, throwIfNoEntry: false });
	const known = now?.isFile() && r.memo?.recall(file, now);
	if (known) {
		r.inputs.modules += known.modules;
		for (const text of known.asm) r.inputs.asm.push(text);
		return;
	}
	const fd = open(r, file, now || undefined);
	if (fd === undefined) return;
	try {
		// With a memo, the stat taken before the open stands for what is read, and bitcode is read whole in one
		// call of the size it gave (6 system calls a file where there were 10: a fresh machine's first link of
		// 500 objects). If the file changed in between, the fstat after the read tells, and nothing is answered from it.
		const st = now || undefined;
		const head = Buffer.alloc(8);
		readSync(fd, head, 0, 8, 0);
		const magic = head.toString('latin1');
		const modules = r.inputs.modules;
		const asm = r.inputs.asm.length;
		const whole = st && isBitcode(head) ? readWhole(fd, Number(st.size)) : undefined;
		if (isBitcode(head)) addBitcode(whole ?? readFileSync(fd), file, r.inputs);
		else if (magic === '!<arch>\n') readArchive(r, fd, file, false);
		else {
			if (magic === '!<thin>\n') readArchive(r, fd, file, true);
			else if (!magic.startsWith('\x7fELF')) readScript(r, readFileSync(fd, 'latin1'), file);
			return; // what these pull in is remembered file by file, if at all
		}
		// Remembered only if the file stayed as it was while it was read; what was read whole is used only then.
		const after = st && fstatSync(fd, { bigint: true });
		const same =
			st &&
			after &&
			after.dev === st.dev &&
			after.ino === st.ino &&
			after.size === st.size &&
			after.mtimeNs === st.mtimeNs &&
			after.ctimeNs === st.ctimeNs;
		if (whole && !same) throw new Error(`${bytesToText(file)} changed while it was read`);
		if (st && same) r.memo?.learn(file, st, { modules: r.inputs.modules - modules, asm: r.inputs.asm.slice(asm) });
	} catch (error) {
		if (error instanceof Error && !('code' in error)) throw error;
		throw new Error(`cannot read ${bytesToText(file)} (${errorCode(error)})`);
	} finally {
		closeSync(fd);
	}
}

/** size bytes from the start of fd (fewer if it ends sooner). */
function readWhole(fd: number, size: number): Buffer {
	const data = Buffer.allocUnsafe(size);
	let done = 0;
	while (done < size) {
		const n = readSync(fd, data, done, size - done, done);
		if (n === 0) break;
		done += n;
	}
	return data.subarray(0, done);
}

function addBitcode(data: Buffer, name: Bytes, inputs: Inputs): void {
	try {
		for (const module of readBitcode(data)) {
			if (module.thin) inputs.modules++;
			for (const text of module.asm) if (concernsGuard(text)) inputs.asm.push(text);
		}
	} catch (error) {
		if (!(error instanceof BitcodeError)) throw error;
		throw new Error(`cannot read the bitcode of ${bytesToText(name)} (${error.message})`);
	}
}

function readScriptFile(r: Reader, given: Bytes): void {
	const file = chrooted(r, given);
	const fd = open(r, file);
	if (fd === undefined) throw new Error(`cannot read linker script ${bytesToText(file)}`);
	try {
		readScript(r, readFileSync(fd, 'latin1'), file);
	} finally {
		closeSync(fd);
	}
}

/** lld's ScriptLexer: comments, quoted tokens (quotes kept), two-character operators, runs of word characters, single characters. */
export function scriptTokens(text: Bytes): Bytes[] | undefined {
	const tokens: Bytes[] = [];
	let s = 0;
	const n = text.length;
	while (s < n) {
		if (text.startsWith('/*', s)) {
			const e = text.indexOf('*/', s + 2);
			if (e < 0) return undefined;
			s = e + 2;
			continue;
		}
		if (text[s] === '#') {
			const e = text.indexOf('\n', s + 1);
			s = e < 0 ? n : e + 1;
			continue;
		}
		if (/\s/.test(text[s])) {
			s++;
			continue;
		}
		if (text[s] === '"') {
			const e = text.indexOf('"', s + 1);
			if (e < 0) return undefined;
			tokens.push(text.slice(s, e + 1));
			s = e + 1;
			continue;
		}
		const two = text.slice(s, s + 3);
		if (two === '<<=' || two === '>>=') {
			tokens.push(two);
			s += 3;
			continue;
		}
		if (s + 1 < n && ((text[s + 1] === '=' && '*/+-<>&|'.includes(text[s])) || (text[s] === text[s + 1] && '<>&|'.includes(text[s])))) {
			tokens.push(text.slice(s, s + 2));
			s += 2;
			continue;
		}
		const word = /^[A-Za-z0-9_.$/\\~=+[\]*?\-!^:]+/.exec(text.slice(s, s + 4096));
		const length = word ? word[0].length : 1;
		tokens.push(text.slice(s, s + length));
		s += length;
	}
	return tokens;
}

const unquote = (token: Bytes) => (token.startsWith('"') ? token.slice(1, -1) : token);

/** Whether the script sits under the sysroot, where lld reads its absolute names inside the sysroot. */
function underSysroot(r: Reader, script: Bytes): boolean {
	if (!r.sysroot) return false;
	const root = statSync(onDisk(r, r.sysroot), { throwIfNoEntry: false });
	if (!root) return false;
	for (let dir = script; dir !== '' && dir !== '.'; ) {
		const st = statSync(onDisk(r, dir), { throwIfNoEntry: false });
		if (st && st.dev === root.dev && st.ino === root.ino) return true;
		const parent = dirname(dir);
		if (parent === dir) break;
		dir = parent;
	}
	return false;
}

/** The files, libraries and search directories a linker script adds, taken as lld takes them, in order. */
function readScript(r: Reader, text: Bytes, file: Bytes): void {
	if (++r.depth > MAX_SCRIPT_DEPTH) throw new Error(`linker scripts nested deeper than ${MAX_SCRIPT_DEPTH}`);
	try {
		const tokens = scriptTokens(text);
		if (tokens === undefined) throw new Error(`cannot read linker script ${bytesToText(file)} (unclosed comment or quote)`);
		const sysroot = underSysroot(r, file);
		const add = (name: Bytes) => addFile(r, scriptFile(r, name, file, sysroot));
		for (let i = 0; i < tokens.length; i++) {
			const token = tokens[i];
			if (token === 'INCLUDE' && i + 1 < tokens.length) readScriptFile(r, searchScript(r, unquote(tokens[++i])));
			else if (token === 'SEARCH_DIR' && tokens[i + 1] === '(' && i + 2 < tokens.length) {
				if (!r.nostdlib) r.searchDirs.push(unquote(tokens[i + 2]));
				i += 2;
			} else if ((token === 'INPUT' || token === 'GROUP') && tokens[i + 1] === '(') {
				let depth = 0;
				for (i += 1; i < tokens.length; i++) {
					const t = tokens[i];
					if (t === '(') depth++;
					else if (t === ')') {
						if (--depth === 0) break;
					} else if (t !== ',' && t !== 'AS_NEEDED') add(unquote(t));
				}
			}
		}
	} finally {
		r.depth--;
	}
}

/** lld's ScriptParser::addFile: a name from INPUT or GROUP. */
/** Where lld's ScriptParser::addFile finds a name from INPUT or GROUP (a library: where findLibrary does). */
function scriptFile(r: Reader, name: Bytes, script: Bytes, sysroot: boolean): Bytes {
	const missing = (where: string) => new Error(`${bytesToText(name)}, named by ${bytesToText(script)}, is not found${where}`);
	if (sysroot && name.startsWith('/')) {
		if (!exists(r, r.sysroot + name)) throw missing(' in the sysroot');
		return r.sysroot + name;
	}
	if (name.startsWith('/')) return name;
	if (name.startsWith('=')) return r.sysroot ? `${r.sysroot}/${name.slice(1)}` : name.slice(1);
	if (name.startsWith('-l')) return findLibrary(r, name.slice(2));
	const beside = `${dirname(script)}/${name}`;
	if (script.includes('/') && exists(r, beside)) return beside;
	if (exists(r, name)) return name;
	const found = findFromSearchPaths(r, name);
	if (found === undefined) throw missing('');
	return found;
}

/**
 * A System V (GNU) archive: 60-byte member headers, "//" holding long names
 * ("/<offset>"), "/" and "/SYM64/" symbol tables; BSD "#1/<n>" names inline.
 * A thin archive stores only those tables; its members are files named
 * relative to the archive's directory, as its path spells it.
 */
function readArchive(r: Reader, fd: number, file: Bytes, thin: boolean): void {
	// A thin archive holds only headers and tables, read in one go; a regular one is read member by member.
	const whole = thin ? readFileSync(fd) : undefined;
	const size = whole ? whole.length : fstatSync(fd).size;
	let header = Buffer.alloc(60);
	let longNames = '';
	for (let at = 8; at + 60 <= size; ) {
		if (whole) header = whole.subarray(at, at + 60);
		else readSync(fd, header, 0, 60, at);
		if (header.toString('latin1', 58, 60) !== '`\n')
			throw new Error(`cannot read ${bytesToText(file)} (Error: bad archive member header at ${at})`);
		const raw = header.toString('latin1', 0, 16).trimEnd();
		const length = Number.parseInt(header.toString('latin1', 48, 58).trim(), 10);
		if (!Number.isSafeInteger(length) || length < 0)
			throw new Error(`cannot read ${bytesToText(file)} (Error: bad archive member size at ${at})`);
		const data = at + 60;
		const tables = raw === '/' || raw === '/SYM64/' || raw === '//';
		const stored = !thin || tables; // a thin archive's members are elsewhere
		at = data + (stored ? length + (length % 2) : 0);
		if (raw === '//') {
			if (whole && data + length > whole.length) throw new Error(`cannot read ${bytesToText(file)} (Error: archive ends inside a member)`);
			longNames = (whole ? whole.subarray(data, data + length) : read(fd, data, length, file)).toString('latin1');
			continue;
		}
		if (tables) continue;
		if (!thin) {
			let offset = data;
			let length2 = length;
			if (raw.startsWith('#1/')) {
				const n = Number.parseInt(raw.slice(3), 10);
				offset += n;
				length2 -= n;
			}
			if (isBitcode(read(fd, offset, Math.min(4, length2), file))) addBitcode(read(fd, offset, length2, file), `${file}(${raw})`, r.inputs);
			continue;
		}
		let name = raw;
		if (raw.startsWith('/') && /^\/\d+$/.test(raw)) {
			const start = Number(raw.slice(1));
			const end = longNames.indexOf('\n', start);
			name = longNames.slice(start, end < 0 ? undefined : end);
		}
		if (name.endsWith('/')) name = name.slice(0, -1);
		// LLVM's thin member: parent_path(archive) joined with the name, resolved by the file system; not chrooted.
		const member = name.startsWith('/') ? name : file.includes('/') ? `${dirname(file)}/${name}` : name;
		const saved = r.chroot;
		r.chroot = '';
		try {
			addFile(r, member);
		} finally {
			r.chroot = saved;
		}
	}
}

function read(fd: number, position: number, length: number, file: Bytes): Buffer {
	const buf = Buffer.alloc(length);
	for (let done = 0; done < length; ) {
		const n = readSync(fd, buf, done, length - done, position + done);
		if (n === 0) throw new Error(`cannot read ${bytesToText(file)} (Error: archive ends inside a member)`);
		done += n;
	}
	return buf;
}
