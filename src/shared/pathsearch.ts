// The one PATH lookup: the shim's search for the real linker, install,
// doctor, demo and the tests all walk PATH through here, the way a shell's
// execvp does (an empty entry is the current directory).
import { accessSync, closeSync, constants, openSync, readSync, statSync } from 'node:fs';

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

/**
 * Whether a file is an ltocache shim, this one or another installation's:
 * a script that names ltocache (or, as 0.1 did, its bundle) in its first
 * bytes. A real linker is an ELF file.
 */
export function isLtocacheShim(file: string): boolean {
	let fd: number | undefined;
	try {
		fd = openSync(file, 'r');
		const head = Buffer.alloc(512);
		const text = head.subarray(0, readSync(fd, head, 0, head.length, 0)).toString('latin1');
		return text.startsWith('#!') && (text.includes('ltocache') || text.includes('ld.lld.cjs'));
	} catch {
		return false;
	} finally {
		if (fd !== undefined) closeSync(fd);
	}
}

/** The first executable of that name on a PATH that is not an ltocache shim: what the build would run without ltocache. */
export function realLinker(name: string, pathValue: string): string | undefined {
	for (const file of searchPath(name, pathValue)) if (!isLtocacheShim(file)) return file;
	return undefined;
}
