// The shim's links on PATH, as install, uninstall, doctor and demo see them:
// where the shim is, which linker names it stands in for, which files are
// ltocache's (src/shared/pathsearch.ts answers that, for every copy).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { toBytes } from '../shared/bytes.js';
import { isShimLink } from '../shared/pathsearch.js';
import { unusableReason } from '../shared/root.js';
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

/**
 * What a file on PATH is to this copy of ltocache: its own link, another copy's (or a dangling one's), or
 * not ltocache's. A copy of a shim that is a file, not a link to one, is someone's (perhaps edited): not
 * ltocache's to replace or remove.
 */
export function linkKind(file: string, shim = shimFile()): 'this' | 'other' | undefined {
	if (!isShimLink(file)) return undefined;
	try {
		if (fs.realpathSync(file) === fs.realpathSync(shim)) return 'this';
	} catch {
		return 'other'; // dangling: into an install that is gone
	}
	return fs.lstatSync(file, { throwIfNoEntry: false })?.isSymbolicLink() ? 'other' : undefined;
}

/** Why root is needed, for a directory only root can write. */
const needsRoot = (dir: string, command: string) =>
	dir === SYSTEM_DIR && process.getuid?.() !== 0 ? `; --system needs root: sudo ltocache ${command} --system` : '';

/** Why this user cannot write dir (or create it), if not: what a dry run checks instead of writing. */
export const writeProblem = (dir: string) => unusableReason(toBytes(dir));

/** fs calls on a directory install writes, with a hint when it takes root. */
export function writing<T>(dir: string, command: string, fn: () => T): T {
	try {
		return fn();
	} catch (error) {
		const code = (error as NodeJS.ErrnoException).code;
		if (code !== 'EACCES' && code !== 'EPERM' && code !== 'EROFS') throw error;
		throw new Error(`cannot write ${dir} (${code})${needsRoot(dir, command)}`);
	}
}

/** The directory install and uninstall work on (~/.local/bin, --system or --dir), and how they report. */
export function target(values: { system?: boolean; dir?: string; 'dry-run'?: boolean }, command: string) {
	if (values.system && values.dir !== undefined) throw new UsageError('--system and --dir cannot be used together');
	const dir = path.resolve(values.dir ?? (values.system ? SYSTEM_DIR : path.join(os.homedir(), '.local/bin')));
	const st = fs.statSync(dir, { throwIfNoEntry: false });
	if (values.dir !== undefined && st && !st.isDirectory()) throw new UsageError(`invalid --dir '${values.dir}': not a directory`);
	const dryRun = Boolean(values['dry-run']);
	const say = (line: string) => process.stdout.write(`${dryRun ? '(dry run) ' : ''}${line}\n`);
	/** A dry run that would fail says so, as the real one would, instead of claiming success. */
	const check = () => {
		const problem = dryRun ? writeProblem(dir) : undefined;
		if (problem) throw new Error(`cannot write ${dir} (${problem})${needsRoot(dir, command)}`);
	};
	return { dir, dryRun, say, check };
}
