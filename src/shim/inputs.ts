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
import { sameFile } from '../shared/identity.js';
import { errorCode } from '../shared/keydir.js';
import type { Memo, Unit } from '../shared/memo.js';
import { type Members, readArchive } from './archive.js';
import { BitcodeError, isBitcode, readBitcode } from './bitcode.js';
import { parse } from './options.js';
import { scriptCommands } from './script.js';

export type Inputs = {
	/** ThinLTO modules: one cache lookup each. */
	modules: number;
	/** The assembly strings, module-level and inline, that the caller keeps (the .incbin guard: those it has something to say about), in order. */
	asm: Bytes[];
	/** The modules that carry any of asm, each with its source file name and its kept strings, module-level and inline apart. */
	units: Unit[];
	/** Why what the link reads cannot be known, so it gets no cache. */
	problem?: string;
	/** With hashing asked for: the sha256 of each bitcode file or member, in the order lld reads them (a remote's manifest key). */
	sums?: string[];
};

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
	keep: (asm: Bytes) => boolean;
	hash?: (data: Buffer) => string;
};

/**
 * What bitcode the link reads. words: argv with response files expanded.
 * Every archive member counts, also those of an archive lld searches
 * lazily and may not take: a member's bitcode is read either way (the asm
 * guard must not miss one), and the module count says so in its docs.
 */
export function readInputs(words: Bytes[], cwd: string, memo?: Memo, keep: (asm: Bytes) => boolean = () => true, hashing = false): Inputs {
	const inputs: Inputs = { modules: 0, asm: [], units: [] };
	// Only with a remote, and node:crypto only then (~3 ms a link otherwise): a Node without getBuiltinModule gets no sums.
	const crypto = hashing ? (process.getBuiltinModule?.('node:crypto') as typeof import('node:crypto') | undefined) : undefined;
	if (crypto) inputs.sums = [];
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
		keep,
		hash: crypto && ((data) => crypto.createHash('sha256').update(data).digest('hex')),
	};
	let fat = false;
	const scripts: Bytes[] = [];
	const defaultScripts: Bytes[] = [];
	// lld takes these before it reads any input, wherever they stand.
	for (const opt of parse(words)) {
		if ('file' in opt) continue;
		const value = opt.value ?? '';
		if (opt.role === 'search') r.searchDirs.push(value);
		else if (opt.role === 'sysroot') r.sysroot = value;
		else if (opt.role === 'chroot') r.chroot = value;
		else if (opt.role === 'nostdlib') r.nostdlib = true;
		else if (opt.role === 'fat') fat = opt.id === 'fat-lto-objects';
		else if (opt.role === 'refuse') inputs.problem ??= `--${opt.id} changes which files lld reads`;
		else if (opt.role === 'script') scripts.push(value);
		else if (opt.role === 'default-script') defaultScripts.push(value);
	}
	if (fat) inputs.problem ??= '--fat-lto-objects links bitcode held inside ELF objects';
	if (inputs.problem) return inputs;
	const saved: { isStatic: boolean; binary: boolean }[] = [];
	try {
		for (const opt of parse(words)) {
			if ('file' in opt) addFile(r, opt.file);
			else if (opt.role === 'library') addFile(r, findLibrary(r, opt.value ?? ''));
			else if (opt.role === 'script') readScriptFile(r, searchScript(r, opt.value ?? ''));
			else if (opt.role === 'format') r.binary = opt.value === 'binary';
			else if (opt.role === 'static') r.isStatic = true;
			else if (opt.role === 'dynamic') r.isStatic = false;
			else if (opt.role === 'push-state') saved.push({ isStatic: r.isStatic, binary: r.binary });
			else if (opt.role === 'pop-state') Object.assign(r, saved.pop() ?? {});
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
	const known = now?.isFile() && r.memo?.recall(file, now, Boolean(r.inputs.sums));
	if (known) {
		r.inputs.modules += known.modules;
		for (const text of known.asm) r.inputs.asm.push(text);
		for (const unit of known.units) r.inputs.units.push(unit);
		if (r.inputs.sums && known.sums) for (const sum of known.sums) r.inputs.sums.push(sum);
		return;
	}
	const fd = open(r, file, now || undefined);
	if (fd === undefined) return;
	try {
		// With a memo, the stat taken before the open stands for what is read: a small file is read whole in one
		// call of the size it gave, a larger one's bitcode after its first bytes (5 system calls a file where there
		// were 10: a fresh machine's first link of 500 objects). If the file changed in between, the fstat after
		// the read tells, and nothing is answered from it.
		const st = now || undefined;
		const small = st && st.size <= SMALL_FILE ? readWhole(fd, Number(st.size)) : undefined;
		const head = small ? small.subarray(0, 8) : readHead(fd);
		const magic = head.toString('latin1');
		const modules = r.inputs.modules;
		const asm = r.inputs.asm.length;
		const units = r.inputs.units.length;
		const sums = r.inputs.sums?.length ?? 0;
		const whole = st && isBitcode(head) ? (small ?? readWhole(fd, Number(st.size))) : undefined;
		if (isBitcode(head)) addBitcode(whole ?? readFileSync(fd), file, r);
		else if (magic === '!<arch>\n') readArchive(fd, file, false, members(r));
		else {
			if (magic === '!<thin>\n') readArchive(fd, file, true, members(r));
			else if (!magic.startsWith('\x7fELF')) readScript(r, readFileSync(fd, 'latin1'), file);
			return; // what these pull in is remembered file by file, if at all
		}
		// Remembered only if the file stayed as it was while it was read; what was read whole is used only then.
		const after = st && fstatSync(fd, { bigint: true });
		const same = st && after && sameFile(after, st);
		if (whole && !same) throw new Error(`${bytesToText(file)} changed while it was read`);
		if (st && same)
			r.memo?.learn(file, st, {
				modules: r.inputs.modules - modules,
				asm: r.inputs.asm.slice(asm),
				units: r.inputs.units.slice(units),
				...(r.inputs.sums ? { sums: r.inputs.sums.slice(sums) } : {}),
			});
	} catch (error) {
		if (error instanceof Error && !('code' in error)) throw error;
		throw new Error(`cannot read ${bytesToText(file)} (${errorCode(error)})`);
	} finally {
		closeSync(fd);
	}
}

/** Read whole on the first read: most inputs are bitcode, which is wanted whole; an ELF object this small costs a copy. */
const SMALL_FILE = 256n * 1024n;

function readHead(fd: number): Buffer {
	const head = Buffer.alloc(8);
	return head.subarray(0, readSync(fd, head, 0, 8, 0));
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

function addBitcode(data: Buffer, name: Bytes, r: Reader): void {
	const { inputs } = r;
	if (r.hash) inputs.sums?.push(r.hash(data));
	try {
		for (const module of readBitcode(data)) {
			if (module.thin) inputs.modules++;
			let unit: Unit | undefined;
			module.asm.forEach((text, i) => {
				if (!r.keep(text)) return;
				inputs.asm.push(text);
				unit ??= { source: module.source ?? '', top: [], code: [] };
				(module.inline[i] ? unit.code : unit.top).push(text);
			});
			if (unit) inputs.units.push(unit);
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
		const commands = scriptCommands(text);
		if (commands === undefined) throw new Error(`cannot read linker script ${bytesToText(file)} (unclosed comment or quote)`);
		const sysroot = underSysroot(r, file);
		for (const command of commands) {
			if ('include' in command) readScriptFile(r, searchScript(r, command.include));
			else if ('searchDir' in command) {
				if (!r.nostdlib) r.searchDirs.push(command.searchDir);
			} else addFile(r, scriptFile(r, command.input, file, sysroot));
		}
	} finally {
		r.depth--;
	}
}

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

/** What the inputs reader does with an archive's members: a thin archive's are read like inputs, but not under --chroot. */
const members = (r: Reader): Members => ({
	bitcode: (data, name) => addBitcode(data, name, r),
	member(file) {
		const saved = r.chroot;
		r.chroot = '';
		try {
			addFile(r, file);
		} finally {
			r.chroot = saved;
		}
	},
});
