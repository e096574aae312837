// The one PATH lookup, and the one answer to "is this file an ltocache
// shim?": the shim's search for the real linker, install, uninstall,
// doctor, demo and the tests all come here. PATH is walked the way a
// shell's execvp does (an empty entry is the current directory).
import { accessSync, closeSync, constants, lstatSync, openSync, readlinkSync, readSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

export function isExecutableFile(file: string | Buffer): boolean {
	try {
		if (!statSync(file).isFile()) return false;
		accessSync(file, constants.X_OK);
		return true;
	} catch {
		return false;
	}
}

/**
 * Every executable named `name` on a PATH, in order, spelled `<dir>/<name>`
 * exactly as a POSIX sh loop over the PATH would spell it (bin/ld.lld's fast
 * path does), so both halves of the shim name a linker identically.
 */
export function* searchPath(name: string, pathValue: string): Generator<string> {
	for (const dir of pathValue.split(':')) {
		const file = `${dir || '.'}/${name}`;
		if (isExecutableFile(file)) yield file;
	}
}

/** The first executable of that name on a PATH. */
export function which(name: string, pathValue: string): string | undefined {
	for (const file of searchPath(name, pathValue)) return file;
	return undefined;
}

/** The second line of every copy's bin/ld.lld; bin/ld.lld's is_shim reads the same two lines. */
export const SHIM_MARK = "# ltocache's ld.lld";

/**
 * Whether a file is an ltocache shim, of this copy or of any other (a
 * global install, a user's own, a checkout): a script whose first line is
 * a #! line and whose second begins with SHIM_MARK (or, as 0.1's did,
 * loads ld.lld.cjs). Known by what the file is, not by where this copy
 * lives. A real linker is an ELF file.
 */
export function isShimFile(file: string): boolean {
	let fd: number | undefined;
	try {
		fd = openSync(file, 'r');
		const head = Buffer.alloc(4096); // two lines of any script
		const [first, second = ''] = head
			.subarray(0, readSync(fd, head, 0, head.length, 0))
			.toString('latin1')
			.split('\n');
		return first.startsWith('#!') && (second.startsWith(SHIM_MARK) || second.includes('ld.lld.cjs'));
	} catch {
		return false;
	} finally {
		if (fd !== undefined) closeSync(fd);
	}
}

/** Where an npm install of ltocache keeps the shim: what a link into a removed install still names. */
const INSTALLED_SHIM = /(^|\/)node_modules\/ltocache\/bin\/ld\.lld$/;

/**
 * Whether a file on PATH is ltocache's: a shim, a link that leads to one,
 * or a dangling link into an npm install of ltocache that has since been
 * removed (`npm uninstall -g` before `ltocache uninstall`).
 */
export function isShimLink(file: string): boolean {
	if (isShimFile(file)) return true;
	try {
		if (!lstatSync(file).isSymbolicLink()) return false;
		const target = resolve(dirname(file), readlinkSync(file));
		return !statSync(file, { throwIfNoEntry: false }) && INSTALLED_SHIM.test(target);
	} catch {
		return false;
	}
}

/** The first executable of that name on a PATH that is not an ltocache shim: what the build would run without ltocache. */
export function realLinker(name: string, pathValue: string): string | undefined {
	for (const file of searchPath(name, pathValue)) if (!isShimFile(file)) return file;
	return undefined;
}
