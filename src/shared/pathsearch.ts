// The one PATH lookup: the shim's search for the real linker, install,
// doctor, demo and the tests all walk PATH through here, the way a shell's
// execvp does (an empty entry is the current directory).
import fs from 'node:fs';

export function isExecutableFile(file: string | Buffer): boolean {
	try {
		if (!fs.statSync(file).isFile()) return false;
		fs.accessSync(file, fs.constants.X_OK);
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
