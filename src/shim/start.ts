// Where Node's half of the shim starts: bin/ld.lld requires this (bundled as
// dist/ld.lld.cjs), and this runs the shim's bundle (dist/shim.cjs, from
// main.ts) compiled with V8's code cache. Compiling the bundle afresh costs
// every link Node runs ~8 ms on a 2-CPU machine, a tenth of Node's own
// start-up; from the cache it is deserialized in ~2 ms.
//
// The cache is kept beside the bundle, the way Python keeps __pycache__
// beside its code: only whoever may change the bundle may change the
// bytecode run in its place (a cache under a shared cache root would let any
// member of its group run code in everyone's links). Where the bundle's
// directory cannot be written (a user's link against root's install) links
// compile as before, until root's first link (a DKMS build) writes it.
//
// Node 22's module.enableCompileCache would do this, but Node 20 has none; its
// vm.Script takes and makes V8 cached data. Any doubt about the cache (the
// bundle's file changed in any way, another Node, a torn or foreign file, V8
// rejecting it) means compiling afresh and writing a new one after the link:
// the cache may only save time, never change what runs.
import { accessSync, closeSync, constants, fstatSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Script } from 'node:vm';

// Bundled as CommonJS: __dirname is dist/, and require the module's own.
const bundle = join(__dirname, 'shim.cjs');
const CACHE_FILE = join(__dirname, 'shim.code-cache');
const MAGIC = 'ltocache code cache 1';

/** The cached data written for this bundle file by this Node, if the cache file holds it whole. */
function readCache(identity: string): Buffer | undefined {
	let file: Buffer;
	try {
		file = readFileSync(CACHE_FILE);
	} catch {
		return undefined;
	}
	const newline = file.indexOf(10);
	if (newline < 0) return undefined;
	const data = file.subarray(newline + 1);
	return file.toString('latin1', 0, newline) === `${identity} ${data.length}` ? data : undefined;
}

/** The cache for the next link, written whole or not at all (parallel links each rename their own). */
function writeCache(script: Script, identity: string): 'written' | 'not writable' {
	const temporary = `${CACHE_FILE}.${process.pid}.tmp`;
	try {
		accessSync(__dirname, constants.W_OK); // before the work of serializing: most unwritable installs stay so
		const data = script.createCachedData();
		writeFileSync(temporary, Buffer.concat([Buffer.from(`${identity} ${data.length}\n`, 'latin1'), data]), { mode: 0o644 });
		renameSync(temporary, CACHE_FILE);
		return 'written';
	} catch {
		rmSync(temporary, { force: true });
		return 'not writable';
	}
}

function start(): void {
	// Below Node 20.16 the bundle's lazy built-ins fall back to import(), which a vm.Script cannot run.
	if (!process.getBuiltinModule) {
		require(bundle);
		return;
	}
	const fd = openSync(bundle, 'r');
	const stat = fstatSync(fd, { bigint: true });
	const source = readFileSync(fd, 'utf8');
	closeSync(fd);
	// Every field of the file's identity, ctime included, which no one can set back: a rebuild always shows.
	const identity = `${MAGIC} ${process.version} ${process.arch} ${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}`;
	const cachedData = readCache(identity);
	// Node's own module wrapper, on the first line, so stack traces keep their line numbers.
	const script = new Script(`(function (exports, require, module, __filename, __dirname) { ${source}\n})`, {
		filename: bundle,
		cachedData,
	});
	// LTOCACHE_VERBOSE tells of a cache only when there is none to use: a link run from it says nothing.
	if (cachedData === undefined || script.cachedDataRejected) {
		const verbose = process.env.LTOCACHE_VERBOSE === '1';
		if (verbose)
			process.stderr.write(`ltocache: code cache ${CACHE_FILE}: ${cachedData ? 'rejected by V8' : 'none for this bundle and Node'}\n`);
		process.once('exit', () => {
			const outcome = writeCache(script, identity);
			if (verbose) process.stderr.write(`ltocache: code cache ${CACHE_FILE}: ${outcome}\n`);
		});
	}
	const module = { exports: {} };
	script.runInThisContext()(module.exports, require, module, bundle, __dirname);
}

start();
