// What the real linker is, by content: the lld binary and the LLVM
// libraries it loads, not its version string (distributions patch LLVM
// under one version), so two machines share a remote namespace only when
// both linkers would write the same entries alike.
import { readFileSync, realpathSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { identityOf } from '../shared/identity.js';
import { sha256 } from '../shared/remote/index.js';
import { LINKERS_NAME, readOwnFile, tempName, writeOwnFile } from '../shared/root.js';

/** The file and its identity: a cached hash holds while these hold. */
const stamp = (file: string): string => `${file}:${identityOf(statSync(file, { bigint: true }))}`;

const multiarch =
	process.arch === 'x64' ? 'x86_64-linux-gnu' : process.arch === 'arm64' ? 'aarch64-linux-gnu' : `${process.arch}-linux-gnu`;

/**
 * The LLVM libraries a linker loads: the sonames it names (libLLVM*, liblld*,
 * libclang-cpp*), found along its RUNPATH ($ORIGIN), LD_LIBRARY_PATH and
 * the system's library directories, as the dynamic loader would.
 */
function llvmLibraries(linker: string, bytes: Buffer, env: NodeJS.ProcessEnv): string[] {
	const text = bytes.toString('latin1');
	const sonames = [...new Set(text.match(/lib(?:LLVM|lld|clang-cpp)[\w.+-]*\.so(?:\.[\d.]+)?(?=\0)/g) ?? [])];
	const runpaths = (text.match(/\$ORIGIN[^\0]*(?=\0)/g) ?? [])
		.flatMap((r) => r.split(':'))
		.map((r) => r.replace('$ORIGIN', dirname(linker)));
	const dirs = [
		...(env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean),
		...runpaths,
		`/lib/${multiarch}`,
		`/usr/lib/${multiarch}`,
		'/lib64',
		'/usr/lib64',
		'/lib',
		'/usr/lib',
		'/usr/local/lib',
	];
	const found: string[] = [];
	for (const soname of sonames) {
		for (const dir of dirs) {
			try {
				found.push(realpathSync(join(dir, soname)));
				break;
			} catch {}
		}
	}
	return found.sort();
}

type LinkerCache = Record<string, { libs: { path: string; stamp: string }[]; id: string }>;

/**
 * What the real linker is, by content; remembered under the root by the
 * files' identities and the library search path, so the hashing (~0.5 s
 * for libLLVM) happens once.
 */
export function linkerIdentity(file: string, root: string, env: NodeJS.ProcessEnv): string {
	const linker = realpathSync(file);
	const cacheFile = join(root, LINKERS_NAME);
	let cache: LinkerCache = {};
	try {
		cache = JSON.parse(readOwnFile(cacheFile, 1024 ** 2)?.data.toString('utf8') ?? '{}') as LinkerCache;
	} catch {}
	// LD_LIBRARY_PATH chooses which libLLVM the linker loads: an identity is remembered for one search path.
	const own = `${stamp(linker)}:${env.LD_LIBRARY_PATH ?? ''}`;
	const known = cache[own];
	try {
		if (known?.libs.every((lib) => stamp(lib.path) === lib.stamp)) return known.id;
	} catch {} // a library gone: hash again
	const bytes = readFileSync(linker);
	const libs = llvmLibraries(linker, bytes, env);
	const parts = [sha256(bytes), ...libs.map((lib) => `${basename(lib)}:${sha256(readFileSync(lib))}`)];
	const id = sha256(Buffer.from(parts.join('\n'))).slice(0, 32);
	const temp = tempName(cacheFile);
	try {
		writeOwnFile(temp, JSON.stringify({ ...cache, [own]: { libs: libs.map((path) => ({ path, stamp: stamp(path) })), id } }));
		renameSync(temp, cacheFile);
	} catch {
		rmSync(temp, { force: true }); // remembering is an optimisation; a full disk keeps nothing half-written
	}
	return id;
}
