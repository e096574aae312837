// The shim's links on PATH, as install, uninstall, doctor and demo see them:
// where the shim is, which linker names it stands in for, which symlinks
// are its own.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from './command.js';

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

/** fs calls on a directory install writes, with a hint when it takes root. */
export function writing<T>(dir: string, fn: () => T): T {
	try {
		return fn();
	} catch (error) {
		const code = (error as NodeJS.ErrnoException).code;
		if (code !== 'EACCES' && code !== 'EPERM' && code !== 'EROFS') throw error;
		throw new Error(`cannot write ${dir} (${code})${dir === SYSTEM_DIR ? '; --system needs root: sudo ltocache install --system' : ''}`);
	}
}

/** The directory install and uninstall work on (~/.local/bin, --system or --dir), and how they report. */
export function target(values: { system?: boolean; dir?: string; 'dry-run'?: boolean }) {
	if (values.system && values.dir !== undefined) throw new UsageError('--system and --dir cannot be used together');
	const dir = path.resolve(values.dir ?? (values.system ? SYSTEM_DIR : path.join(os.homedir(), '.local/bin')));
	const dryRun = Boolean(values['dry-run']);
	const say = (line: string) => process.stdout.write(`${dryRun ? '(dry run) ' : ''}${line}\n`);
	return { dir, dryRun, say };
}
