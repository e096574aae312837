// `ltocache install | uninstall`: symlinks named ld.lld and ld.lld-NN,
// pointing at the shim, in a directory that comes before the real linker on
// the PATH the build uses. Only ever creates or removes its own symlinks.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isExecutableFile } from '../shim/linker.js';
import type { parseOptions } from './main.js';
import { UsageError } from './units.js';

export const HELP: Record<string, string> = {
	install: `Usage: ltocache install [--system | --dir DIR] [--dry-run]

Creates symlinks named ld.lld and ld.lld-NN (one per versioned lld on PATH)
pointing at the shim: in ~/.local/bin, in /usr/local/bin with --system (root's
default PATH, which DKMS uses), or in DIR. Never replaces a file that is not
its own symlink. Running it again changes nothing.

  --system    install into /usr/local/bin
  --dir DIR   install into DIR
  --dry-run   say what would be done, do nothing
`,
	uninstall: `Usage: ltocache uninstall [--system | --dir DIR] [--dry-run]

Removes the ld.lld and ld.lld-NN symlinks that point at this shim from
~/.local/bin, /usr/local/bin (--system) or DIR. Other files are left alone.

  --system    uninstall from /usr/local/bin
  --dir DIR   uninstall from DIR
  --dry-run   say what would be done, do nothing
`,
};

/** Root's PATH under sudo (secure_path) and Debian's login.defs ENV_SUPATH: what a DKMS hook run by apt sees. */
export const ROOT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const SYSTEM_DIR = '/usr/local/bin';

export const shimFile = () => fileURLToPath(new URL('../../bin/ld.lld', import.meta.url));

const LINKER_NAME = /^ld\.lld(-\d+)?$/;

/** ld.lld plus every ld.lld-NN in the given PATH directories. */
export function linkerNames(pathDirs: string[]): string[] {
	const names = new Set(['ld.lld']);
	for (const dir of pathDirs) {
		let list: string[] = [];
		try {
			list = fs.readdirSync(dir || '.');
		} catch {}
		for (const name of list) if (LINKER_NAME.test(name)) names.add(name);
	}
	return [...names].sort();
}

/** Whether file is a symlink to this shim (by its target, so a dangling or relative link still counts). */
export function isOurLink(file: string, shim = shimFile()): boolean {
	try {
		const target = fs.readlinkSync(file);
		if (path.resolve(path.dirname(file), target) === shim) return true;
		return fs.realpathSync(file) === fs.realpathSync(shim);
	} catch {
		return false;
	}
}

/** The first directory on a PATH holding an executable of that name. */
export function which(name: string, pathValue: string): string | undefined {
	return pathValue
		.split(':')
		.map((dir) => path.join(dir || '.', name))
		.find(isExecutableFile);
}

type Parse = typeof parseOptions;

/** fs calls on the target directory, with a hint when it takes root. */
function writing<T>(dir: string, fn: () => T): T {
	try {
		return fn();
	} catch (error) {
		const code = (error as NodeJS.ErrnoException).code;
		if (code !== 'EACCES' && code !== 'EPERM' && code !== 'EROFS') throw error;
		throw new Error(`cannot write ${dir} (${code})${dir === SYSTEM_DIR ? '; --system needs root: sudo ltocache install --system' : ''}`);
	}
}

export async function run(command: string, args: string[], env: NodeJS.ProcessEnv, parse: Parse): Promise<number> {
	const v = parse(args, { system: { type: 'boolean' }, dir: { type: 'string' }, 'dry-run': { type: 'boolean' } });
	if (v.system && v.dir !== undefined) throw new UsageError('--system and --dir cannot be used together');
	const dir = path.resolve(typeof v.dir === 'string' ? v.dir : v.system ? SYSTEM_DIR : path.join(os.homedir(), '.local/bin'));
	const dryRun = Boolean(v['dry-run']);
	const say = (line: string) => process.stdout.write(`${dryRun ? '(dry run) ' : ''}${line}\n`);
	const shim = shimFile();
	// The PATH the build will use: root's default for a system install, else ours.
	const buildPath = v.system ? ROOT_PATH : env.PATH ?? '';

	if (command === 'uninstall') {
		let removed = 0;
		for (const name of linkerNames([dir])) {
			const file = path.join(dir, name);
			if (!isOurLink(file, shim)) continue;
			if (!dryRun) writing(dir, () => fs.unlinkSync(file));
			say(`removed ${file}`);
			removed++;
		}
		if (removed === 0) say(`nothing of ltocache's in ${dir}`);
		return 0;
	}

	const names = linkerNames([...buildPath.split(':'), ...(env.PATH ?? '').split(':')].filter((d) => path.resolve(d || '.') !== dir));
	if (!dryRun) writing(dir, () => fs.mkdirSync(dir, { recursive: true }));
	let refused = 0;
	for (const name of names) {
		const file = path.join(dir, name);
		if (isOurLink(file, shim)) {
			say(`${file} already points at the shim`);
		} else if (fs.lstatSync(file, { throwIfNoEntry: false })) {
			say(`left ${file} alone: it exists and is not ltocache's (remove it yourself to put the shim there)`);
			refused++;
		} else {
			if (!dryRun) writing(dir, () => fs.symlinkSync(shim, file));
			say(`linked ${file} -> ${shim}`);
		}
	}

	// Is the directory early enough on the build's PATH?
	const dirs = buildPath.split(':').map((d) => path.resolve(d || '.'));
	const at = dirs.indexOf(dir);
	const realAt = dirs.findIndex((d, i) => i !== at && which('ld.lld', d) !== undefined && !isOurLink(path.join(d, 'ld.lld'), shim));
	if (at < 0) {
		say(`${dir} is not on ${v.system ? "root's default PATH" : 'your PATH'}: add it in front, e.g. export PATH="${dir}:$PATH"`);
	} else if (realAt >= 0 && realAt < at) {
		say(`${dir} comes after ${dirs[realAt]} on PATH, so builds still find the real ld.lld first: put ${dir} in front`);
	}
	if (!which('node', buildPath)) {
		say(`warning: no node on ${v.system ? "root's default PATH" : 'PATH'} (${buildPath}); the shim runs with /usr/bin/env node`);
	}
	return refused > 0 ? 1 : 0;
}
