// What the shim and the manager agree on: where the cache root is, how a
// redirected cache directory is named, and what it records about itself.
//
//   <root>/<kernel release>/<extmod key>/llvmcache-*      lld's entries
//                                       /ltocache.json    our metadata
//
// This module is on the shim's hot path: node built-ins and xdg-basedir only
// (importing xdg-basedir costs nothing measurable).
import fs from 'node:fs';
import path from 'node:path';
import { xdgCache } from 'xdg-basedir';

export const META_FILE = 'ltocache.json';
export const ENTRY_PREFIX = 'llvmcache-';
export const LOCK_NAME = 'ltocache.lock';
export const PRUNE_STAMP = 'ltocache.last-prune';
/** The release directory used when a link cannot be tied to a kernel. */
export const NO_KERNEL = '_no-kernel';

export type Metadata = {
	version: 1;
	release: string;
	/** The external module directory (KBUILD_EXTMOD or M), if the link had one. */
	extmod?: string;
	/** The cache directory the linker was asked to use, made absolute. */
	original: string;
};

/** Cache roots to try, in order: $LTOCACHE_DIR, then $XDG_CACHE_HOME/ltocache (xdg-basedir falls back to ~/.cache). */
export function rootCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
	const roots: string[] = [];
	if (env.LTOCACHE_DIR) roots.push(path.resolve(env.LTOCACHE_DIR));
	if (xdgCache) roots.push(path.join(xdgCache, 'ltocache'));
	return roots;
}

/** Where installed kernels keep their modules (and build trees): $LTOCACHE_MODULES (colon-separated) or the usual two. */
export function modulesDirs(env: NodeJS.ProcessEnv = process.env): string[] {
	return env.LTOCACHE_MODULES ? env.LTOCACHE_MODULES.split(':').filter(Boolean) : ['/lib/modules', '/usr/lib/modules'];
}

/** The last resort when no configured root is usable; trusted only if private (see ensurePrivateDir). */
export function fallbackRoot(uid = process.getuid?.() ?? 0): string {
	return `/var/tmp/ltocache-${uid}`;
}

/**
 * Whether a directory can be used as (or created as) a cache directory.
 * Returns undefined if usable, or the error code that makes it unusable.
 * access(W_OK) is what the linker will meet: it fails with EROFS on a
 * read-only mount and EACCES for a user, but succeeds for root on mode 0555.
 */
export function unusableReason(dir: string | Buffer): string | undefined {
	let probe = dir;
	for (;;) {
		try {
			const st = fs.statSync(probe);
			if (!st.isDirectory()) return 'ENOTDIR';
			fs.accessSync(probe, fs.constants.W_OK | fs.constants.X_OK);
			return undefined;
		} catch (error) {
			const code = (error as NodeJS.ErrnoException).code ?? 'EIO';
			if (code !== 'ENOENT') return code;
		}
		// A missing directory is fine if lld can create it: look at the parent.
		const parent = typeof probe === 'string' ? path.dirname(probe) : Buffer.from(path.dirname(probe.toString('latin1')), 'latin1');
		if (parent.length === probe.length) return 'ENOENT';
		probe = parent;
	}
}

/**
 * Create (if needed) a 0700 directory and accept it only if it is a real
 * directory, owned by us, with no group or other access: /var/tmp is shared,
 * so anyone could have planted a symlink or an open directory there first.
 */
export function ensurePrivateDir(dir: string, create = true): boolean {
	try {
		if (create) fs.mkdirSync(dir, { mode: 0o700 });
	} catch (error) {
		if ((error as NodeJS.ErrnoException).code !== 'EEXIST') return false;
	}
	try {
		const st = fs.lstatSync(dir);
		return st.isDirectory() && st.uid === process.getuid?.() && (st.mode & 0o077) === 0 && unusableReason(dir) === undefined;
	} catch {
		return false;
	}
}

/**
 * The cache root to use, or undefined if there is no safe one. The shim
 * creates the fallback; the manager (create = false) only looks at it.
 */
export function resolveRoot(env: NodeJS.ProcessEnv = process.env, create = true): string | undefined {
	for (const root of rootCandidates(env)) {
		if (unusableReason(root) === undefined) return root;
	}
	const fallback = fallbackRoot();
	return ensurePrivateDir(fallback, create) ? fallback : undefined;
}

// node:crypto adds ~3 ms to every link (measured with hyperfine against
// `node -e 0`); 64-bit FNV-1a is plenty to tell cache directories apart.
export function shortHash(bytes: Buffer): string {
	let hash = 0xcbf29ce484222325n;
	for (const byte of bytes) {
		hash = BigInt.asUintN(64, (hash ^ BigInt(byte)) * 0x100000001b3n);
	}
	return hash.toString(16).padStart(16, '0').slice(0, 12);
}

function slug(text: string, max: number): string {
	const s = text.replace(/[^A-Za-z0-9._+-]+/g, '-').replace(/^[-.]+|-+$/g, '');
	return s.length > max ? s.slice(s.length - max).replace(/^[-.]+/, '') : s;
}

/**
 * The directory name for one external module (or one original cache path):
 * a readable tail of the path plus a hash of its bytes, so two modules never
 * share and the same module always lands in the same place.
 */
export function keyName(absolutePath: string | Buffer): string {
	const bytes = typeof absolutePath === 'string' ? Buffer.from(absolutePath) : absolutePath;
	const readable = slug(bytes.toString('utf8'), 48);
	return `${readable || 'root'}-${shortHash(bytes)}`;
}

/** A kernel release made safe as one path component; ordinary releases pass unchanged. */
export function releaseName(release: string): string {
	if (/^[A-Za-z0-9][A-Za-z0-9._+~-]{0,127}$/.test(release)) return release;
	return `${slug(release, 48) || 'release'}-${shortHash(Buffer.from(release))}`;
}
