// The remote's settings and the linker identity its namespace holds,
// in-process: every spelling of "on" makes a client read-only, a budget is a
// time above 0 or the default, and the identity follows the linker's bytes
// and the LLVM libraries it would load, not their paths. Real links against
// real servers are in test/integration/remote.test.ts.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSettings, redacted, remoteSettings } from '../../src/shared/config.js';
import { keyName } from '../../src/shared/keydir.js';
import { formatIndex, isEntryName, parseIndex } from '../../src/shared/remote/index.js';
import { linkerIdentity } from '../../src/shim/identity.js';
import { remoteName, usedEntries } from '../../src/shim/remote.js';
import { scratchRoot } from '../helpers/tools.js';

const scratch = scratchRoot();
const settingsOf = (env: Record<string, string>) =>
	remoteSettings(readSettings({ LTOCACHE_SYSTEM_CONFIG: '/nonexistent/a', LTOCACHE_CONFIG: '/nonexistent/b', ...env }).values);

describe('remote settings', () => {
	it.each(['true', 'yes', '1', 'on', 'TRUE', 'Yes', 'ON', ' on '])('remote-read-only %j is read-only', (value) => {
		expect(settingsOf({ LTOCACHE_REMOTE_READ_ONLY: value }).readOnly).toBe(true);
	});

	it.each(['false', 'no', '0', 'off', 'OFF', ' off ', 'maybe', 'onn', 'noon', 'truely'])('remote-read-only %j is not', (value) => {
		expect(settingsOf({ LTOCACHE_REMOTE_READ_ONLY: value }).readOnly).toBe(false);
	});

	it('is not read-only by default', () => {
		expect(settingsOf({}).readOnly).toBe(false);
	});

	it.each([
		['500ms', 500],
		['2s', 2000],
		['1.5', 1500],
		['3', 3000],
		['0.25s', 250],
		[' 750ms ', 750],
	])('remote-timeout %j is %d ms', (value, ms) => {
		expect(settingsOf({ LTOCACHE_REMOTE_TIMEOUT: value }).budgetMs).toBe(ms);
	});

	it.each(['0', '0s', '0ms', '0.0', '-1', '-1s', 'abc', '2x', '2 s', 's', 'ms', '1e3', '.5', 'x2s', '2sx', '2m'])(
		'remote-timeout %j is no budget: the default 2 s',
		(value) => {
			expect(settingsOf({ LTOCACHE_REMOTE_TIMEOUT: value }).budgetMs).toBe(2000);
		},
	);
});

it.each([
	// User and password both: a token is often the user (https://TOKEN@host/).
	['redis://:secret@host:6379/0', 'redis://***@host:6379/0'],
	['https://user:p%40ss@cache.example/ltocache/', 'https://***@cache.example/ltocache/'],
	['REDISS://u:x@h', 'REDISS://***@h'],
	['http://host/path/', 'http://host/path/'],
	['http://user@host/', 'http://***@host/'],
	['https://ghp_TOKEN@cache.example/', 'https://***@cache.example/'],
	// A / or a raw @ in the password.
	['redis://:pa/ss@host/0', 'redis://***@host/0'],
	['redis://u:p@ss@host/0', 'redis://***@host/0'],
	['http://host/a:b@c', 'http://host/a:b@c'],
	['see http://u:p@h/', 'see http://u:p@h/'],
])('a remote URL %j is shown as %j', (url, shown) => {
	expect(redacted(url)).toBe(shown);
});

describe('linker identity', () => {
	const SONAME = 'libLLVM-ltocache-test.so.1';
	/** A "linker" that names the LLVM library it loads, as an ELF's dynamic string table does. */
	const linker = (dir: string, extra = '') => {
		const file = path.join(dir, 'ld.lld');
		fs.writeFileSync(file, `\x7fELF...\0${SONAME}\0libc.so.6\0${extra}`, { mode: 0o755 });
		return file;
	};
	const library = (dir: string, bytes: string) => {
		fs.writeFileSync(path.join(dir, SONAME), bytes);
		return dir;
	};

	it('follows the linker binary by content: one byte more is another linker, a copy elsewhere the same', () => {
		const root = scratch('root');
		const libs = library(scratch('lib'), 'llvm');
		const env = { LD_LIBRARY_PATH: libs };
		const one = linker(scratch('bin'));
		const copy = linker(scratch('bin'));
		const other = linker(scratch('bin'), 'x');
		const id = linkerIdentity(one, root, env);
		expect(id).toMatch(/^[0-9a-f]{32}$/);
		expect(linkerIdentity(copy, scratch('root'), env)).toBe(id);
		expect(linkerIdentity(other, root, env)).not.toBe(id);
		expect(linkerIdentity(other, scratch('root'), env)).not.toBe(id);
		// Remembered: the same answer again, from the same root.
		expect(linkerIdentity(one, root, env)).toBe(id);
	});

	it('follows the LLVM libraries it loads by content, found first along LD_LIBRARY_PATH, even once remembered', () => {
		const root = scratch('root');
		const file = linker(scratch('bin'));
		const a = library(scratch('lib'), 'llvm');
		const b = library(scratch('lib'), 'llvm, patched');
		const same = library(scratch('lib'), 'llvm');
		const withA = linkerIdentity(file, root, { LD_LIBRARY_PATH: a });
		const withB = linkerIdentity(file, root, { LD_LIBRARY_PATH: `${b}:${a}` });
		expect(withB).not.toBe(withA);
		expect(linkerIdentity(file, root, { LD_LIBRARY_PATH: `${a}:${b}` })).toBe(withA);
		expect(linkerIdentity(file, root, { LD_LIBRARY_PATH: same })).toBe(withA);
		// Without the library anywhere: another linker again (it would not even start).
		expect(linkerIdentity(file, root, {})).not.toBe(withA);
		// The library changed in place: hashed again.
		fs.appendFileSync(path.join(a, SONAME), '!');
		expect(linkerIdentity(file, root, { LD_LIBRARY_PATH: a })).not.toBe(withA);
	});

	it('is remembered under the root while the linker and its libraries keep their identity, and hashed again once one changes', () => {
		const root = scratch('root');
		const file = linker(scratch('bin'));
		const libs = library(scratch('lib'), 'llvm');
		const env = { LD_LIBRARY_PATH: libs };
		const id = linkerIdentity(file, root, env);
		const memo = path.join(root, 'ltocache.linkers.json');
		const known = JSON.parse(fs.readFileSync(memo, 'utf8')) as Record<string, { id: string; libs: { path: string }[] }>;
		expect(Object.values(known)).toEqual([{ id, libs: [{ path: fs.realpathSync(path.join(libs, SONAME)), stamp: expect.any(String) }] }]);
		expect(fs.readdirSync(root)).toEqual(['ltocache.linkers.json']);
		// What is remembered is what is answered: no hashing while nothing changed.
		const [key] = Object.keys(known);
		fs.writeFileSync(memo, JSON.stringify({ [key]: { ...known[key], id: 'remembered' } }));
		expect(linkerIdentity(file, root, env)).toBe('remembered');
		// The library rewritten (same bytes, a new mtime): hashed again, the same identity as before.
		fs.writeFileSync(path.join(libs, SONAME), 'llvm');
		fs.utimesSync(path.join(libs, SONAME), new Date(1000), new Date(1000));
		expect(linkerIdentity(file, root, env)).toBe(id);
		// A garbled file is no memory.
		fs.writeFileSync(memo, '{"torn');
		expect(linkerIdentity(file, root, env)).toBe(id);
	});

	it("finds the libraries along the linker's $ORIGIN run path", () => {
		const root = scratch('root');
		const bin = scratch('bin');
		fs.mkdirSync(path.join(bin, 'lib'));
		const file = linker(bin, '$ORIGIN/lib\0');
		library(path.join(bin, 'lib'), 'llvm');
		const found = linkerIdentity(file, root, {});
		fs.writeFileSync(path.join(bin, 'lib', SONAME), 'llvm, another');
		expect(linkerIdentity(file, scratch('root'), {})).not.toBe(found);
	});
});

describe("a directory's name in the remote namespace", () => {
	const keyDir = (name: string, meta?: object) => {
		const dir = path.join(scratch('release'), name);
		fs.mkdirSync(dir);
		if (meta) fs.writeFileSync(path.join(dir, 'ltocache.json'), JSON.stringify(meta));
		return dir;
	};

	it('is its own without base-dir, or when the module is below none of them', () => {
		const dir = keyDir('src-mod-0123456789ab+opt-aa11', { version: 1, release: 'r', extmod: '/src/mod', original: '/src/mod' });
		expect(remoteName(dir, [])).toBe('src-mod-0123456789ab+opt-aa11');
		expect(remoteName(dir, ['/home', '/sr', '/src/mod/sub'])).toBe('src-mod-0123456789ab+opt-aa11');
		expect(remoteName(keyDir('x-1'), ['/src'])).toBe('x-1');
		expect(remoteName(keyDir('x-2', { extmod: 'relative/mod' }), ['/src'])).toBe('x-2');
	});

	it('names the module by its path below the closest base-dir, keeping the variant', () => {
		const meta = { version: 1, release: 'r', extmod: '/home/alice/linux/drivers/net', original: '/x' };
		const dir = keyDir('home-alice-linux-drivers-net-0123456789ab+opt-aa11+incbin-bb22', meta);
		expect(remoteName(dir, ['/home/alice/linux'])).toBe(`${keyName('drivers/net')}+opt-aa11+incbin-bb22`);
		expect(remoteName(dir, ['/home', '/home/alice/linux/'])).toBe(`${keyName('drivers/net')}+opt-aa11+incbin-bb22`);
		expect(remoteName(dir, ['/home/alice/linux', '/home'])).toBe(`${keyName('drivers/net')}+opt-aa11+incbin-bb22`);
		expect(remoteName(dir, ['/home/alice/linux/drivers/net'])).toBe(`${keyName('.')}+opt-aa11+incbin-bb22`);
		// In add mode, without a module: the directory the link ran in.
		const added = keyDir('w-1', { version: 1, release: 'r', original: '/builds/7/linux', added: true });
		expect(remoteName(added, ['/builds/7'])).toBe(keyName('linux'));
		expect(keyName('linux')).not.toBe(keyName('/linux'));
	});
});

describe('manifest lines', () => {
	it('reads manifest lines with and without a pack, and nothing else', () => {
		const sum = 'a'.repeat(64);
		const pack = `pack-${'b'.repeat(64)}`;
		const index = parseIndex(
			[
				`llvmcache-0A1B ${sum} 12`,
				`llvmcache-0A1C ${sum} 7 ${pack} 12`,
				`llvmcache-0A1D ${sum} 7 ../../etc/passwd 12`,
				`llvmcache-0A1E ${sum} 7 ${pack}`,
				`../llvmcache-0A1F ${sum} 7`,
				`llvmcache-0A20 ${sum.slice(1)} 7`,
				// A name no file system takes, an entry larger than any lld writes, a size past 2^53: each line alone is passed over.
				`llvmcache-${'A'.repeat(129)} ${sum} 7`,
				`llvmcache-0A21 ${sum} ${64 * 1024 ** 2 + 1}`,
				`llvmcache-0A22 ${sum} 9007199254740993`,
				`llvmcache-0A23 ${sum} 7 ${pack} 9007199254740993`,
				`llvmcache-${'B'.repeat(128)} ${sum} ${64 * 1024 ** 2}`,
			].join('\n'),
		);
		expect([...index]).toEqual([
			['llvmcache-0A1B', { sum, size: 12 }],
			['llvmcache-0A1C', { sum, size: 7, pack, offset: 12 }],
			[`llvmcache-${'B'.repeat(128)}`, { sum, size: 64 * 1024 ** 2 }],
		]);
	});

	it('writes the lines it reads, and reads back what it wrote', () => {
		const sum = 'c'.repeat(64);
		const text = `llvmcache-0A ${sum} 0\nllvmcache-0B ${sum} 12 pack-${'d'.repeat(64)} 0\n`;
		expect(formatIndex(parseIndex(text))).toBe(text);
		expect(parseIndex(`  llvmcache-0A ${sum} 5  \r\n\nnot a line\n`).get('llvmcache-0A')).toEqual({ sum, size: 5 });
		expect(parseIndex(`llvmcache-0A ${sum} 5\nllvmcache-0A ${sum} 6`).get('llvmcache-0A')?.size).toBe(6);
	});

	it.each([
		['llvmcache-0123456789ABCDEF0123456789abcdef01234567', true],
		[`llvmcache-${'F'.repeat(128)}`, true],
		[`llvmcache-${'F'.repeat(129)}`, false],
		['llvmcache-', false],
		['llvmcache-XYZ', false],
		['llvmcache-0A/../x', false],
		['xllvmcache-0A', false],
		['llvmcache-0A\n', false],
		['llvmcache.timestamp', false],
	])('%j is an entry name: %s', (name, ok) => {
		expect(isEntryName(name)).toBe(ok);
	});
});

describe('the entries a link used, by atime (a relatime or strictatime mount: /tmp here and in CI)', () => {
	const tick = () => new Promise((resolve) => setTimeout(resolve, 30)); // past the file system's clock tick
	const entry = (dir: string, n: number) => {
		const file = path.join(dir, `llvmcache-${String(n).padStart(40, '0')}`);
		fs.writeFileSync(file, `entry ${n}`);
		return file;
	};
	const startedNs = () => BigInt(Date.now() - 10) * 1_000_000n;
	/** usedEntries, its names in order. */
	const used = (...args: Parameters<typeof usedEntries>) => {
		const { used: names, whole } = usedEntries(...args);
		return { used: [...names].sort(), whole };
	};

	it('are those it wrote and those it read; each read one gets its times again (ctime moves), so the next read shows too', async () => {
		const dir = scratch('used');
		const read = entry(dir, 1);
		entry(dir, 2); // never read
		const before = new Set(fs.readdirSync(dir));
		await tick();
		const run = { before, startedNs: startedNs(), modules: 2 };
		const written = entry(dir, 3);
		await tick();
		fs.readFileSync(read);
		fs.readFileSync(written); // lld reads back what it writes
		const times = fs.statSync(read, { bigint: true });
		expect(used(dir, run)).toEqual({ used: [read, written].map((f) => path.basename(f)).sort(), whole: false });
		const primed = fs.statSync(read, { bigint: true });
		// atime and mtime as they were (to a few microseconds: a double of seconds), ctime now: prune's last use is untouched.
		expect(Math.abs(Number(primed.atimeNs - times.atimeNs))).toBeLessThan(5000);
		expect(Math.abs(Number(primed.mtimeNs - times.mtimeNs))).toBeLessThan(5000);
		expect(primed.ctimeNs).toBeGreaterThan(primed.atimeNs);
		expect(fs.statSync(written, { bigint: true }).ctimeNs).toBeGreaterThan(fs.statSync(written, { bigint: true }).atimeNs);

		// The next link reads only what it wrote before: that read shows, though relatime moved its atime once already.
		await tick();
		const again = { before: new Set(fs.readdirSync(dir)), startedNs: startedNs(), modules: 3 };
		await tick();
		fs.readFileSync(written);
		// The entry never read is never used.
		expect(used(dir, again)).toEqual({ used: [path.basename(written)], whole: false });
	});

	it("show a read though another link in the directory set the entry's times after it; an entry this link downloaded only once lld read it", async () => {
		const dir = scratch('used');
		const read = entry(dir, 1);
		await tick();
		const started = startedNs();
		// Downloaded just now, before lld started: its atime is its making, within the start's slack.
		const fetched = entry(dir, 2);
		const run = { before: new Set(fs.readdirSync(dir)), startedNs: started, modules: 2 };
		await tick();
		fs.readFileSync(read);
		const st = fs.statSync(read);
		fs.utimesSync(read, (st.atimeMs - 0.002) / 1000, st.mtimeMs / 1000); // another link, done first, set its times
		expect(fs.statSync(read).ctimeMs).toBeGreaterThan(fs.statSync(read).atimeMs);
		const downloaded = new Set([path.basename(fetched)]);
		expect(used(dir, run, downloaded)).toEqual({ used: [path.basename(read)], whole: false });
		fs.readFileSync(fetched);
		expect(used(dir, run, downloaded)).toEqual({ used: [read, fetched].map((f) => path.basename(f)).sort(), whole: false });
	});

	it('pass over a symlink named like an entry (another member of a shared root may put one there) and set no times where it leads', async () => {
		const dir = scratch('used');
		const target = path.join(scratch('elsewhere'), 'precious');
		fs.writeFileSync(target, 'precious');
		fs.symlinkSync(target, path.join(dir, `llvmcache-${'f'.repeat(40)}`));
		const read = entry(dir, 1);
		const run = { before: new Set(fs.readdirSync(dir)), startedNs: startedNs(), modules: 2 };
		await tick();
		fs.readFileSync(target);
		fs.readFileSync(read);
		const times = fs.statSync(target, { bigint: true });
		expect(times.atimeNs).toBeGreaterThan(times.ctimeNs);
		expect(used(dir, run)).toEqual({ used: [path.basename(read)], whole: false });
		expect(fs.statSync(target, { bigint: true })).toEqual(times);
	});

	it('are the whole directory where no read showed and the link wrote fewer entries than it has modules (noatime), or the names before it are not known', async () => {
		const dir = scratch('used');
		const names = [entry(dir, 1), entry(dir, 2)].map((f) => path.basename(f));
		const before = new Set(fs.readdirSync(dir));
		await tick();
		const run = { before, startedNs: startedNs(), modules: 3 };
		names.push(path.basename(entry(dir, 3)));
		// Nothing read: as on a noatime mount, where the link's two hits would not show.
		names.sort();
		expect(used(dir, run)).toEqual({ used: names, whole: true });
		expect(used(dir, { ...run, modules: 1 })).toEqual({ used: [names[2]], whole: false });
		expect(used(dir, { ...run, before: undefined })).toEqual({ used: names, whole: true });
	});
});
