// Deciding what the real linker gets: the same argv, or the same argv with an
// unwritable --thinlto-cache-dir moved to <root>/<release>/<key> (and, with
// LTOCACHE_MODE=add, one added to a ThinLTO link that has none, and a usable
// one moved when the link embeds files).
import { existsSync, readFileSync, readlinkSync, statfsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type Bytes, bytesToBuffer, bytesToText, inDir, toBytes } from '../shared/bytes.js';
import { badMode } from '../shared/config.js';
import { lastLinkBytes } from '../shared/counters.js';
import { claim, keyName, keyVariant, lastClaim, type Metadata, NO_KERNEL, notADirectory, releaseName } from '../shared/keydir.js';
import { openMemo } from '../shared/memo.js';
import { chooseRoot, describeSkipped, isShared, skippedSetting, unusableReason } from '../shared/root.js';
import { absoluteDir, CACHE_FLAG, scanArgs, withCacheDir } from './argv.js';
import { codegenKey, identitiesNow, readOptions } from './codegen.js';
import { concernsGuard, type Guard, incbinGuard, rehash } from './incbin.js';
import { readInputs } from './inputs.js';
import { lacksValue } from './options.js';
import { embedders, recordEmbedders, seedFromSibling } from './seed.js';

export type Plan = {
	args: Bytes[];
	/** The cache root and directory the flag was redirected into, when it was. */
	root?: string;
	/** With a directory: the link without ltocache's cache (the moved flag emptied, or none added), run if lld could not write it. */
	uncached?: Bytes[];
	/** With a directory: argv as lld reads it, response files expanded. */
	words?: Bytes[];
	/** With a directory: an option that asks the backends for more than the object (redirect mode caches such links, as lld would). */
	side?: string;
	dir?: string;
	/** Whether the root is shared by a group: entries are made group-readable after the link. */
	shared?: boolean;
	/** With a remote: the sha256 of the link's bitcode inputs in order, which names its manifest on the remote. */
	inputsHash?: string;
	/** For the directory's counters: the ThinLTO modules linked, and when the link claimed the directory (file-system clock). */
	count?: { modules: number; since: number };
	/**
	 * After the link: whether the files its name stands for (.incbin files,
	 * files named by code-generation options) are still what they were when
	 * they were hashed. If not, lld may have read other contents.
	 */
	unchanged?: () => Promise<boolean>;
	/** What was done and why, for LTOCACHE_VERBOSE. */
	note?: string;
	/** For the note: whether the directory was filled from its .incbin sibling (seed.ts), or why not. */
	seeded?: string;
	/** Said on stderr even when not verbose. */
	warning?: string;
};

/**
 * The kernel release a link belongs to: $KERNELRELEASE (Kbuild and DKMS set
 * it), the tree's include/config/kernel.release, or the <rel> of a
 * /lib/modules/<rel>/build working directory.
 */
export function kernelRelease(cwd: Bytes, env: NodeJS.ProcessEnv): string {
	if (env.KERNELRELEASE?.trim()) return env.KERNELRELEASE.trim();
	try {
		const release = readFileSync(bytesToBuffer(inDir(cwd, 'include/config/kernel.release')), 'utf8').trim();
		if (release) return release;
	} catch {}
	for (const dir of [env.PWD, bytesToText(cwd)]) {
		const match = dir && /^\/(?:usr\/)?lib\/modules\/([^/]+)\/build(?:\/|$)/.exec(dir);
		if (match) return match[1];
	}
	return NO_KERNEL;
}

/** The external module a link belongs to, if Kbuild says (KBUILD_EXTMOD, or M as given on make's command line). */
function externalModule(cwd: Bytes, env: NodeJS.ProcessEnv): Bytes | undefined {
	const name = env.KBUILD_EXTMOD ? 'KBUILD_EXTMOD' : env.M ? 'M' : undefined;
	return name ? resolve(cwd, rawEnv(name, env)) : undefined;
}

/**
 * An environment variable as the bytes the process got. Node decodes the
 * environment as UTF-8, replacing what is not; only then (a U+FFFD in the
 * value) is /proc/self/environ worth reading, so two module paths that
 * differ only in such bytes still get two cache directories.
 */
function rawEnv(name: string, env: NodeJS.ProcessEnv): Bytes {
	const value = env[name] ?? '';
	if (!value.includes('\uFFFD') || env !== process.env) return toBytes(value);
	try {
		const pair = readFileSync('/proc/self/environ', 'latin1')
			.split('\0')
			.find((p) => p.startsWith(`${name}=`));
		if (pair !== undefined) return pair.slice(name.length + 1);
	} catch {}
	return toBytes(value);
}

/**
 * Appended to a link's arguments in a shared root: lld prunes nothing there.
 * Its pruning writes llvmcache.timestamp through whatever is at that name,
 * so another member's symlink there had a link run by root create, or
 * truncate, the file it named (/etc/nologin, /etc/shadow); with every limit
 * 0 LLVM returns before it looks at the timestamp (lld 14 to 22). ltocache's
 * prune keeps the root bounded. The last policy given wins.
 */
export const NO_LLD_PRUNE = '--thinlto-cache-policy=prune_after=0s:cache_size=0%:cache_size_bytes=0:cache_size_files=0';

/**
 * lld aborts a link when it cannot write a cache entry (ENOSPC, EDQUOT, no
 * inode for its temporary file), so a file system that cannot take this
 * link's entries is not worth the risk: the link goes without a cache
 * instead. What it needs is estimated as this margin plus what the
 * directory's last link wrote (a rebuild writes at most that again, short
 * of a new configuration), and an inode for each module. Quotas do not
 * show in statfs: for those, and whatever the estimate misses, main.ts
 * links again without a cache when lld could not write it.
 */
export const MIN_FREE_BYTES = 32 * 1024 * 1024;
const MIN_FREE_INODES = 16;

/** Claim the redirected directory; returns why it cannot be used, or undefined if it can. */
function prepare(dir: string, meta: Metadata, shared: boolean, root: string, modules: number): string | undefined {
	const unusable = claim(dir, meta, shared, root);
	if (unusable) return unusable;
	try {
		const st = statfsSync(dir);
		const needed = MIN_FREE_BYTES + lastLinkBytes(dir);
		if (st.bavail * st.bsize < needed)
			return `${dir} is on a file system with ${formatMiB(st.bavail * st.bsize)} free, less than the ${formatMiB(needed)} this link may write`;
		// A file system without a fixed number of inodes (btrfs) says 0 of 0.
		if (st.files > 0 && st.ffree < modules + MIN_FREE_INODES)
			return `${dir} is on a file system with ${st.ffree} free inodes, fewer than this link's ${modules} modules may need`;
	} catch {} // cannot tell: let lld try
	return undefined;
}

/** The manifest's name for a link's inputs: their sums in order (the modules too, though the sums imply them). */
function inputsHash(sums: string[], modules: number): string {
	const crypto = process.getBuiltinModule?.('node:crypto') as typeof import('node:crypto');
	return crypto
		.createHash('sha256')
		.update(`${modules}\n${sums.join('\n')}`)
		.digest('hex');
}

const formatMiB = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

/**
 * The working directory as the bytes the kernel has (an absolute path):
 * Node decodes it as UTF-8 and replaces what is not with U+FFFD, a name
 * that opens another file or none; only then is /proc/self/cwd worth
 * reading. Undefined when that cannot be read.
 */
export function workingDir(cwd = process.cwd()): Bytes | undefined {
	if (!cwd.includes('\uFFFD')) return toBytes(cwd);
	try {
		return readlinkSync('/proc/self/cwd', { encoding: 'buffer' }).toString('latin1');
	} catch {
		return undefined;
	}
}

/**
 * What the real linker gets. A mode that is none of the modes is said on
 * every link, and redirect mode (the default) applies.
 * @param cwd the working directory, as bytes (workingDir)
 * @param mode the mode, and where it came from: LTOCACHE_MODE, or a configuration file's line
 * @param hashing a remote is configured: the plan names the link's manifest (inputsHash)
 */
export async function decide(
	args: Bytes[],
	cwd: Bytes,
	env: NodeJS.ProcessEnv,
	mode = { value: env.LTOCACHE_MODE ?? '', source: 'LTOCACHE_MODE' },
	hashing = false,
): Promise<Plan> {
	const named = mode.source === 'LTOCACHE_MODE' ? `LTOCACHE_MODE=${mode.value}` : `mode = ${mode.value} (${mode.source})`;
	const why = badMode(mode.value, named);
	if (why === undefined) return decideIn(args, cwd, env, mode.value, hashing);
	const plan = await decideIn(args, cwd, env, 'redirect', hashing);
	const bad = `${why}; using redirect`;
	plan.warning = plan.warning ? `${bad}; ${plan.warning}` : bad;
	plan.note ??= bad;
	return plan;
}

/** @param env the process's own, so that rawEnv can read what Node could not decode */
async function decideIn(args: Bytes[], cwd: Bytes, env: NodeJS.ProcessEnv, mode: string, hashing: boolean): Promise<Plan> {
	const pass = (note?: string, warning?: string): Plan => ({ args, note: note ?? warning, warning });
	if (env.LTOCACHE_DISABLE === '1') return pass('LTOCACHE_DISABLE=1: passing argv through');
	const adding = mode === 'add';

	// Most links have no cache flag and no response file: no file system work.
	if (!adding && !args.some((a) => a.startsWith('@') || a.includes('thinlto-cache-dir'))) return pass();

	const scan = scanArgs(args, cwd);
	if (scan.kind === 'unsure') return pass(`${scan.why}: passing argv through`);
	// What the shim would append becomes that option's value: lld's "missing argument" is the link's.
	const bare = lacksValue(scan.words);
	if (bare !== undefined) return pass(`${bytesToText(bare)} ends argv without its value: passing argv through`);
	if (scan.kind === 'none') {
		if (!adding) return pass();
		return choose(
			{ words: scan.words, cwd, env, hashing, key: resolve(cwd), added: true },
			(dir) => [...args, CACHE_FLAG + dir],
			args,
			(why, quiet) =>
				quiet
					? pass(`LTOCACHE_MODE=add: ${why}; passing argv through`)
					: pass(undefined, `LTOCACHE_MODE=add: ${why}; linking without a ThinLTO cache`),
		);
	}
	if (scan.flag.value === '') return pass();

	const { flag } = scan;
	const original = absoluteDir(flag.value, cwd);
	const reason = unusableReason(original);
	const shown = bytesToText(flag.value);
	if (reason === undefined) {
		if (!adding) return pass(`--thinlto-cache-dir=${shown} is usable: passing argv through`);
		// Add mode makes the shim's decisions for lld's own caches too: lld's key leaves out what .incbin pulls in, so
		// a link that embeds files gets the guarded directory; the others keep the directory they name.
		const named = `LTOCACHE_MODE=add: --thinlto-cache-dir=${shown} is usable`;
		const plan = await choose(
			{ words: scan.words, cwd, env, hashing, key: original, usable: true },
			(dir) => withCacheDir(args, flag, dir),
			withCacheDir(args, flag, ''),
			(why, quiet) => {
				if (quiet) return pass(`${named} (${why}): passing argv through`);
				const text = `${named}, but ${why}; linking without a ThinLTO cache`;
				return { args: withCacheDir(args, flag, ''), note: text, warning: text };
			},
		);
		if (plan.dir) plan.note = `${named}, but the link embeds files: ${plan.note}`;
		return plan;
	}

	const drop = (why: string, warn: boolean): Plan => {
		const text = `--thinlto-cache-dir=${shown} is not writable (${reason}); ${why}, linking without a ThinLTO cache`;
		return { args: withCacheDir(args, flag, ''), note: text, warning: warn ? text : undefined };
	};
	if (mode === 'drop') return drop('LTOCACHE_MODE=drop', false);
	const plan = await choose(
		{ words: scan.words, cwd, env, hashing, key: original },
		(dir) => withCacheDir(args, flag, dir),
		withCacheDir(args, flag, ''),
		(why) => drop(why, true),
	);
	if (plan.dir)
		plan.note = `--thinlto-cache-dir=${shown} is not writable (${reason}); using ${plan.dir}${plan.seeded ? `; ${plan.seeded}` : ''}`;
	return plan;
}

type Link = {
	/** argv as lld reads it. */
	words: Bytes[];
	cwd: Bytes;
	env: NodeJS.ProcessEnv;
	/** Whether the inputs are hashed for a remote's manifest. */
	hashing: boolean;
	/** What the directory stands for when Kbuild names no external module: the original cache directory, or (add mode) the working directory. */
	key: Bytes;
	added?: true;
	/** Add mode, a directory lld can use: it stays the link's unless the link embeds files. */
	usable?: true;
};

/**
 * The directory under the cache root for a link: <release>/<module or key>,
 * plus the .incbin guard's hash when the link's assembly pulls in files.
 */
async function choose(
	link: Link,
	rewrite: (dir: Bytes) => Bytes[],
	uncached: Bytes[],
	refuse: (why: string, quiet?: boolean) => Plan,
): Promise<Plan> {
	const { cwd, env } = link;
	const choice = chooseRoot(env);
	const { root } = choice;
	// A root the user set and the shim cannot use is said on every link it affects: the entries go elsewhere.
	const passed = skippedSetting(choice);
	const unsafe =
		root === undefined
			? `${passed ? `${describeSkipped(passed)}, and there is ` : ''}no safe cache root (see ltocache doctor)`
			: // lld names its temporary files DIR/Thin-%%%%%%.tmp.o and replaces every %, also one in DIR: the link would abort.
				root.includes('%')
				? `the cache root ${root} holds a %, which lld cannot use`
				: undefined;
	// A usable directory is left alone unless the link embeds files, which only its inputs tell.
	if (unsafe && !link.usable) return refuse(unsafe);
	const instead = passed && `${describeSkipped(passed)}; using ${root}`;

	// What the link asks of the backends besides the object: a hit would not give it. A usable directory is
	// lld's business unless the link embeds files: asked below.
	const opts = readOptions(link.words, cwd);
	if (opts.splitDwarf && !link.usable)
		return refuse(`${opts.splitDwarf}: a cached object would name the .dwo file of the task it was built in, not this link's`, link.added);
	if (link.added && opts.side)
		return refuse(`${opts.side} asks the ThinLTO backends for more than the object, which a cache hit skips`, true);
	// Without a cache the backends' objects are named lto.tmp (lld 22: out.lto.<module>); from one, each by its entry's path.
	if (link.added && opts.report) return refuse(`${opts.report} names the objects lld links, which a cache would name otherwise`, true);

	const shared = root !== undefined && isShared(root, env);
	const memo = root === undefined ? undefined : openMemo(root, cwd, link.words, shared);
	const inputs = readInputs(link.words, cwd, memo, concernsGuard, link.hashing);
	if (inputs.problem) return refuse(inputs.problem);
	if ((link.added || link.usable) && inputs.modules === 0) return refuse('no ThinLTO input', true);
	const codegen = await codegenKey(opts, memo);
	if (codegen.problem) return refuse(codegen.problem);
	const guard = await incbinGuard(inputs.asm, cwd);
	if (guard.problem) return refuse(guard.problem);
	if (link.usable) {
		if (guard.files.length === 0) return refuse('no file embedded with .incbin or .include', true);
		if (opts.splitDwarf)
			return refuse(`${opts.splitDwarf}: a cached object would name the .dwo file of the task it was built in, not this link's`);
		if (opts.side) return refuse(`${opts.side} asks the ThinLTO backends for more than the object, which a cache hit skips`);
	}
	if (unsafe || root === undefined || memo === undefined) return refuse(unsafe ?? '');
	const stamp = (g: Pick<Guard, 'hash' | 'identity'>) => `${g.hash}\n${g.identity}`;
	const unchanged = async () =>
		stamp(await rehash(guard.files)) === stamp(guard) && (!codegen.files || identitiesNow(codegen.files) === codegen.identity);

	const release = kernelRelease(cwd, env);
	const extmod = externalModule(cwd, env);
	const base = keyName(extmod ?? link.key);
	const name = keyVariant(base, { options: codegen.hash, incbin: guard.hash });
	const dir = join(root, releaseName(release), name);
	// The metadata is for display: UTF-8, with U+FFFD for bytes that are not.
	const meta: Metadata = {
		version: 1,
		release,
		extmod: extmod === undefined ? undefined : bytesToText(extmod),
		original: bytesToText(link.key),
		...(link.added ? { added: true } : {}),
		...(guard.files.length ? { incbin: guard.files.map(bytesToText), sums: guard.sums } : {}),
	};
	// A new .incbin variant starts with what its sibling holds that no changed file went into (seed.ts).
	const embedded = guard.hash ? embedders(guard, inputs.units) : undefined;
	// Before seeding, which makes a directory beside dir: the release directory must be the root's own.
	const planted = shared ? notADirectory(root, dir) : undefined;
	if (planted) return refuse(planted);
	const seeded = embedded && !existsSync(dir) ? seedFromSibling(dir, guard.sums, embedded, shared) : undefined;
	const unusable = prepare(dir, meta, shared, root, inputs.modules) ?? (embedded && recordEmbedders(dir, embedded, shared));
	if (unusable) return refuse(unusable);
	// Only once the root has room for this link: a memo must not take the space its entries need.
	memo.save();
	const since = lastClaim(dir) ?? Date.now();
	return {
		args: shared ? [...rewrite(toBytes(dir)), NO_LLD_PRUNE] : rewrite(toBytes(dir)),
		uncached,
		words: link.words,
		...(opts.side ? { side: opts.side } : {}),
		root,
		dir,
		shared,
		count: { modules: inputs.modules, since },
		...(inputs.sums ? { inputsHash: inputsHash(inputs.sums, inputs.modules) } : {}),
		unchanged: guard.identity || codegen.files ? unchanged : undefined,
		...(seeded ? { seeded } : {}),
		note: `${link.added ? 'LTOCACHE_MODE=add: ' : ''}using ${dir} (inputs read: ${memo.counts.read}, known unchanged: ${memo.counts.recalled}${codegen.files ? `; files named by options read: ${codegen.read} of ${codegen.files.length}` : ''})${seeded ? `; ${seeded}` : ''}`,
		...(instead ? { warning: instead } : {}),
	};
}
