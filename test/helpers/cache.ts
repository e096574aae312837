// Building cache roots laid out the way the shim and lld leave them, with
// chosen sizes and times, and running the manager against them.
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { toBytes } from '../../src/shared/bytes.js';
import { keyName, META_FILE } from '../../src/shared/keydir.js';
import { CLI } from './tools.js';

const DAY = 86_400_000;

export type EntrySpec = { bytes?: number; ageDays?: number; atimeAgeDays?: number };

let serial = 0;
/** An lld-style entry name: llvmcache- and 40 hex digits. */
const entryName = () => `llvmcache-${(serial++).toString(16).padStart(40, '0')}`;

/** A key directory for an external module, with its metadata, under root/release. */
export function makeKey(root: string, release: string, extmod: string, touchedAgeDays = 0): string {
	const dir = path.join(root, release, keyName(toBytes(extmod)));
	fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
	const meta = path.join(dir, META_FILE);
	fs.writeFileSync(meta, `${JSON.stringify({ version: 1, release, extmod, original: '/usr/src/linux/.thinlto-cache' })}\n`);
	const t = new Date(Date.now() - touchedAgeDays * DAY);
	fs.utimesSync(meta, t, t);
	return dir;
}

/** Write one entry; mtime is ageDays ago, atime atimeAgeDays ago (default the same). */
export function makeEntry(dir: string, spec: EntrySpec = {}): string {
	const file = path.join(dir, entryName());
	fs.writeFileSync(file, Buffer.alloc(spec.bytes ?? 100, 1));
	setAge(file, spec.ageDays ?? 0, spec.atimeAgeDays);
	return file;
}

export function setAge(file: string, ageDays: number, atimeAgeDays = ageDays): void {
	const now = Date.now();
	fs.utimesSync(file, new Date(now - atimeAgeDays * DAY), new Date(now - ageDays * DAY));
}

/** Run `ltocache ...` against a root; never throws on a non-zero exit. */
export function ltocache(root: string, args: string[], env: Record<string, string> = {}, options: { cwd?: string } = {}) {
	return execa('node', [CLI, ...args], { reject: false, env: { LTOCACHE_DIR: root, ...env }, ...options });
}

/** Every llvmcache-* regular file below dir with its size: the truth to compare stats with. */
export function onDisk(dir: string): Map<string, number> {
	const found = new Map<string, number>();
	const walk = (d: string) => {
		for (const dirent of fs.readdirSync(d, { withFileTypes: true })) {
			const file = path.join(d, dirent.name);
			if (dirent.isDirectory()) walk(file);
			else if (dirent.isFile() && dirent.name.startsWith('llvmcache-')) found.set(file, fs.lstatSync(file).size);
		}
	};
	if (fs.existsSync(dir)) walk(dir);
	return found;
}
