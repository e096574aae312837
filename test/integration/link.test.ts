// Real ThinLTO links (clang -flto=thin objects, the real ld.lld) through the
// shim, with cache directories that are really unwritable: as the user
// nobody, or on a read-only bind mount.
import fs from 'node:fs';
import path from 'node:path';
import { execa, execaSync } from 'execa';
import { beforeAll, expect, it } from 'vitest';
import { toBytes } from '../../src/shared/bytes.js';
import { keyName } from '../../src/shared/keydir.js';
import {
	asNobody,
	compileThin,
	describeIf,
	entries,
	entriesBelow,
	hasToolchain,
	identities,
	isRoot,
	LLD,
	NO_CONFIG,
	onPath,
	realLd,
	SYSTEM_PATH,
	scratchRoot,
	shimDir,
	stagedShim,
	TEST_LLVM,
	TOOLCHAIN,
	withReadOnly,
} from '../helpers/tools.js';

const scratch = scratchRoot();

describeIf(hasToolchain && isRoot, `${TOOLCHAIN}, and root (for nobody and read-only mounts)`)(
	'real ThinLTO links through the shim',
	() => {
		let objects: string[];
		let shims: string;
		let reference: Buffer; // the same link made directly, without any cache
		let work: string;
		let cli: string;

		beforeAll(() => {
			const pkg = stagedShim(scratch('pkg'));
			cli = path.join(path.dirname(pkg), 'ltocache');
			shims = shimDir(scratch('shims'), pkg);
			objects = compileThin(scratch('obj'));
			work = scratch('work');
			fs.chmodSync(work, 0o777);
			execaSync(LLD, ['-r', '-o', path.join(work, 'reference.o'), ...objects]);
			reference = fs.readFileSync(path.join(work, 'reference.o'));
		});

		/** An unwritable "kernel tree": root-owned, 0755. */
		const tree = () => scratch('tree');
		/** A cache home nobody can write. */
		const cacheHome = () => {
			const dir = scratch('xdg');
			fs.chmodSync(dir, 0o777);
			return dir;
		};
		const userEnv = (xdg: string, extra: Record<string, string> = {}) => ({
			PATH: `${shims}:${SYSTEM_PATH}`,
			HOME: '/nonexistent',
			XDG_CACHE_HOME: xdg,
			...extra,
		});
		const linkAsNobody = (cwd: string, args: string[], env: Record<string, string>, name = 'ld.lld') =>
			asNobody('sh', ['-c', `cd "$0" && exec ${name} "$@"`, cwd, ...args], env);

		it('runs the LLVM under test behind the shim, as nobody with the PATH the tests give, and compiles with its clang', async () => {
			const env = userEnv(cacheHome());
			const viaShim = await linkAsNobody(tree(), ['--version'], env);
			const direct = await asNobody(LLD, ['--version'], env);
			expect(viaShim).toMatchObject({ exitCode: 0, stdout: direct.stdout });
			const major = TEST_LLVM ?? String(direct.stdout).match(/LLD (\d+)\./)?.[1];
			expect(direct.stdout).toMatch(new RegExp(`^(Debian )?LLD ${major}\\.`));
			expect(execaSync('clang', ['--version']).stdout).toMatch(new RegExp(`^(Debian )?clang version ${major}\\.`));
		});

		it('leaves a writable cache directory alone, and the link uses it', async () => {
			const cwd = scratch('writable');
			const out = path.join(cwd, 'out.o');
			const result = await execa(path.join(shims, 'ld.lld'), ['--thinlto-cache-dir=.thinlto-cache', '-r', '-o', out, ...objects], {
				cwd,
				reject: false,
			});
			expect(result).toMatchObject({ exitCode: 0, stderr: '' });
			expect(entries(path.join(cwd, '.thinlto-cache')).length).toBeGreaterThan(0);
			expect(fs.readFileSync(out)).toEqual(reference);
		});

		it('fails without the shim (the bug), and succeeds through it with the cache in XDG_CACHE_HOME, reused', async () => {
			const kernel = tree();
			const xdg = cacheHome();
			const out = path.join(work, 'nobody.o');
			const args = ['--thinlto-cache-dir=.thinlto-cache', '-r', '-o', out, ...objects];
			const env = userEnv(xdg, { KERNELRELEASE: '6.1.99-test', KBUILD_EXTMOD: '/src/mod' });

			const bare = await asNobody('sh', ['-c', 'cd "$0" && exec "$@"', kernel, LLD, ...args], env);
			expect(bare.exitCode).not.toBe(0);
			expect(bare.stderr).toMatch(/Permission denied/);

			const first = await linkAsNobody(kernel, args, env);
			expect(first).toMatchObject({ exitCode: 0, stderr: '' });
			expect(fs.readFileSync(out)).toEqual(reference);
			const [key] = fs.readdirSync(path.join(xdg, 'ltocache/6.1.99-test'));
			const cacheDir = path.join(xdg, 'ltocache/6.1.99-test', key);
			expect(key).toMatch(/^src-mod-[0-9a-f]{12}$/);
			const filled = identities(cacheDir);
			expect(filled.length).toBeGreaterThan(0);
			expect(fs.existsSync(path.join(kernel, '.thinlto-cache'))).toBe(false);

			const again = await linkAsNobody(kernel, args, env);
			expect(again.exitCode).toBe(0);
			// Every module came from the cache: a miss would write each entry anew (a new inode, renamed in).
			expect(identities(cacheDir)).toEqual(filled);
			expect(fs.readFileSync(out)).toEqual(reference);
		});

		it('redirects a cache directory on a read-only mount (as root)', async () => {
			const kernel = tree();
			const root = scratch('root');
			const out = path.join(work, 'ro.o');
			const args = ['--thinlto-cache-dir=.thinlto-cache', '-r', '-o', out, ...objects];
			const env = { PATH: `${shims}:${SYSTEM_PATH}`, LTOCACHE_DIR: root, KERNELRELEASE: '6.1.0-ro', LTOCACHE_AUTO_PRUNE: '0' };

			const bare = await withReadOnly(kernel, 'sh', ['-c', 'cd "$0" && exec "$@"', kernel, LLD, ...args], { env });
			expect(bare.stderr).toMatch(/Read-only file system/);
			const result = await withReadOnly(kernel, 'sh', ['-c', 'cd "$0" && exec ld.lld "$@"', kernel, ...args], { env });
			expect(result).toMatchObject({ exitCode: 0, stderr: '' });
			expect(entriesBelow(path.join(root, '6.1.0-ro')).length).toBeGreaterThan(0);
			expect(fs.readFileSync(out)).toEqual(reference);
		});

		it('redirects a flag inside nested response files, without touching them', async () => {
			const kernel = tree();
			const xdg = cacheHome();
			fs.writeFileSync(path.join(kernel, 'outer.rsp'), `-r @inner.rsp ${objects[0]}\n`);
			fs.writeFileSync(path.join(kernel, 'inner.rsp'), `'--thinlto-cache-dir=.thinlto-cache' ${objects[1]}\n`);
			const before = [fs.readFileSync(path.join(kernel, 'outer.rsp')), fs.readFileSync(path.join(kernel, 'inner.rsp'))];
			const out = path.join(work, 'rsp.o');
			const result = await linkAsNobody(kernel, ['@outer.rsp', '-o', out], userEnv(xdg, { KERNELRELEASE: '6.1.0-rsp' }));
			expect(result).toMatchObject({ exitCode: 0, stderr: '' });
			expect(entriesBelow(path.join(xdg, 'ltocache/6.1.0-rsp')).length).toBeGreaterThan(0);
			expect([fs.readFileSync(path.join(kernel, 'outer.rsp')), fs.readFileSync(path.join(kernel, 'inner.rsp'))]).toEqual(before);
			expect(fs.readdirSync(kernel).sort()).toEqual(['inner.rsp', 'outer.rsp']);
		});

		it('looks only at the last flag', async () => {
			const kernel = tree();
			const writable = scratch('mine');
			fs.chmodSync(writable, 0o777);
			const xdg = cacheHome();
			const env = userEnv(xdg, { KERNELRELEASE: '6.1.0-last' });
			const out = path.join(work, 'last.o');

			const lastWritable = await linkAsNobody(
				kernel,
				['--thinlto-cache-dir=.thinlto-cache', `--thinlto-cache-dir=${writable}/c`, '-r', '-o', out, ...objects],
				env,
			);
			expect(lastWritable.exitCode).toBe(0);
			expect(entries(path.join(writable, 'c')).length).toBeGreaterThan(0);
			expect(fs.existsSync(path.join(xdg, 'ltocache'))).toBe(false);

			const lastUnwritable = await linkAsNobody(
				kernel,
				[`--thinlto-cache-dir=${writable}/d`, '--thinlto-cache-dir=.thinlto-cache', '-r', '-o', out, ...objects],
				env,
			);
			expect(lastUnwritable.exitCode).toBe(0);
			expect(fs.existsSync(path.join(writable, 'd'))).toBe(false);
			expect(entriesBelow(path.join(xdg, 'ltocache/6.1.0-last')).length).toBeGreaterThan(0);
		});

		it('falls back to a private /var/tmp/ltocache-<uid> when there is no usable cache home', async () => {
			const kernel = tree();
			const out = path.join(work, 'fallback.o');
			const result = await privateVarTmp('true', kernel, ['--thinlto-cache-dir=.thinlto-cache', '-r', '-o', out, ...objects]);
			expect(result.stdout).toMatch(/^drwx------ nobody\n/);
			expect(Number(result.stdout.split('\n')[1])).toBeGreaterThan(0);
			expect(result.stderr).toBe('');
		});

		it.each([
			['a symlink', 'ln -s /tmp /var/tmp/ltocache-65534'],
			['owned by someone else', 'mkdir -m 700 /var/tmp/ltocache-65534'],
			['open to others', 'mkdir -m 777 /var/tmp/ltocache-65534 && chown nobody /var/tmp/ltocache-65534'],
			['open to its group', 'mkdir -m 770 /var/tmp/ltocache-65534 && chown nobody /var/tmp/ltocache-65534'],
		])('links without a cache, saying so once, when the fallback is %s', async (_, plant) => {
			const kernel = tree();
			const out = path.join(work, 'nocache.o');
			fs.rmSync(out, { force: true });
			const result = await privateVarTmp(plant, kernel, ['--thinlto-cache-dir=.thinlto-cache', '-r', '-o', out, ...objects]);
			expect(result.exitCode).toBe(0);
			expect(result.stderr.split('\n')).toEqual([
				expect.stringMatching(
					/^ltocache: --thinlto-cache-dir=\.thinlto-cache is not writable \(EACCES\); no safe cache root .*linking without a ThinLTO cache$/,
				),
			]);
			expect(fs.readFileSync(out)).toEqual(reference);
		});

		it('as root, does not take a fallback that is not its own, though root could write it', async () => {
			const kernel = tree();
			const xdg = scratch('xdg-ro');
			const out = path.join(work, 'root-fallback.o');
			fs.rmSync(out, { force: true });
			// Root's cache home and the tree on read-only mounts; the fallback planted, private, but nobody's.
			const script = `mount -t tmpfs tmpfs /var/tmp && mkdir -m 700 /var/tmp/ltocache-0 && chown nobody /var/tmp/ltocache-0 &&
				mount --bind -o ro "$XDG" "$XDG" && mount --bind -o ro "$0" "$0" && cd "$0" &&
				env -i LTOCACHE_AUTO_PRUNE=0 LTOCACHE_SYSTEM_CONFIG=/nonexistent/ltocache.conf PATH="${shims}:${SYSTEM_PATH}" HOME=/nonexistent XDG_CACHE_HOME="$XDG" ld.lld "$@" || exit $?
				find /var/tmp/ltocache-0 -type f | wc -l`;
			const result = await execa(
				'unshare',
				['-m', 'sh', '-c', script, kernel, '--thinlto-cache-dir=.thinlto-cache', '-r', '-o', out, ...objects],
				{
					reject: false,
					env: { XDG: xdg },
				},
			);
			expect(result.exitCode).toBe(0);
			// XDG_CACHE_HOME was set, so its being unusable is said too (issue 21, item 1).
			expect(result.stderr).toMatch(
				/^ltocache: --thinlto-cache-dir=\.thinlto-cache is not writable \(EROFS\); XDG_CACHE_HOME=\S+ \(\S+\/ltocache\) is not usable: EROFS, and there is no safe cache root .*linking without a ThinLTO cache$/,
			);
			expect(result.stdout).toBe('0');
			expect(fs.readFileSync(out)).toEqual(reference);
		});

		it('redirects a cache directory below a regular file (ENOTDIR)', async () => {
			const dir = scratch('enotdir');
			fs.writeFileSync(path.join(dir, 'file'), '');
			const root = scratch('root');
			const out = path.join(work, 'enotdir.o');
			const result = await execa(path.join(shims, 'ld.lld'), [`--thinlto-cache-dir=${dir}/file/cache`, '-r', '-o', out, ...objects], {
				reject: false,
				env: { LTOCACHE_DIR: root, KERNELRELEASE: '6.1.0-enotdir', LTOCACHE_AUTO_PRUNE: '0' },
			});
			expect(result).toMatchObject({ exitCode: 0, stderr: '' });
			expect(entriesBelow(path.join(root, '6.1.0-enotdir')).length).toBeGreaterThan(0);
			expect(fs.readFileSync(out)).toEqual(reference);
		});

		it('keys a link without an external module by its original cache directory', async () => {
			const kernel = tree();
			const xdg = cacheHome();
			const out = path.join(work, 'original.o');
			const result = await linkAsNobody(
				kernel,
				['--thinlto-cache-dir=.thinlto-cache', '-r', '-o', out, ...objects],
				userEnv(xdg, { KERNELRELEASE: '6.1.0-orig' }),
			);
			expect(result).toMatchObject({ exitCode: 0, stderr: '' });
			const original = path.join(kernel, '.thinlto-cache');
			const release = path.join(xdg, 'ltocache/6.1.0-orig');
			expect(fs.readdirSync(release)).toEqual([keyName(toBytes(original))]);
			expect(JSON.parse(fs.readFileSync(path.join(release, keyName(toBytes(original)), 'ltocache.json'), 'utf8'))).toEqual({
				version: 1,
				release: '6.1.0-orig',
				original,
			});
		});

		it('sees a cache hit of the real lld move only atime, the half of last use prune needs', async () => {
			const cwd = scratch('hit');
			const link = () => execa(LLD, ['--thinlto-cache-dir=cache', '-r', '-o', 'out.o', ...objects], { cwd });
			await link();
			const cache = path.join(cwd, 'cache');
			const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000);
			for (const name of entries(cache)) fs.utimesSync(path.join(cache, name), twoDaysAgo, twoDaysAgo);
			const before = identities(cache);
			await link();
			expect(identities(cache)).toEqual(before);
			for (const name of entries(cache)) {
				const st = fs.statSync(path.join(cache, name));
				expect(Math.round(st.mtimeMs)).toBe(twoDaysAgo.getTime());
				expect(st.atimeMs).toBeGreaterThan(Date.now() - 60_000);
			}
		});

		it('shares a setgid, group-writable LTOCACHE_DIR between two users of its group: reuse, prune, clear', async () => {
			const kernel = tree();
			const shared = scratch('shared');
			fs.chownSync(shared, 0, 60000);
			fs.chmodSync(shared, 0o2770);
			// Two users with no account, one group; their umask would keep the group out.
			const as = (uid: number, args: string[]) =>
				execa('setpriv', [`--reuid=${uid}`, '--regid=60000', '--clear-groups', '--', 'sh', '-c', 'umask 022 && exec "$@"', 'sh', ...args], {
					cwd: kernel,
					reject: false,
					extendEnv: false,
					env: {
						...NO_CONFIG,
						PATH: `${shims}:${SYSTEM_PATH}`,
						HOME: '/nonexistent',
						LTOCACHE_DIR: shared,
						LTOCACHE_AUTO_PRUNE: '0',
						KERNELRELEASE: '6.1.0-team',
						KBUILD_EXTMOD: '/src/team',
					},
				});
			const link = (uid: number) =>
				as(uid, ['ld.lld', '--thinlto-cache-dir=.thinlto-cache', '-r', '-o', path.join(work, `team-${uid}.o`), ...objects]);

			expect(await link(60001)).toMatchObject({ exitCode: 0, stderr: '' });
			const release = path.join(shared, '6.1.0-team');
			const [key] = fs.readdirSync(release);
			const dir = path.join(release, key);
			const written = identities(dir);
			expect(written.length).toBeGreaterThan(0);
			for (const d of [release, dir]) expect(fs.statSync(d).mode & 0o7777).toBe(0o2770);
			for (const entry of entries(dir)) expect(fs.statSync(path.join(dir, entry)).mode & 0o777).toBe(0o640);

			// The other member reuses every entry (none written anew) and refreshes the directory's last use.
			const metaBefore = fs.statSync(path.join(dir, 'ltocache.json')).mtimeMs;
			await new Promise((r) => setTimeout(r, 20));
			expect(await link(60002)).toMatchObject({ exitCode: 0, stderr: '' });
			expect(identities(dir)).toEqual(written);
			expect(fs.statSync(path.join(dir, 'ltocache.json')).mtimeMs).toBeGreaterThan(metaBefore);
			expect(fs.readFileSync(path.join(work, 'team-60002.o'))).toEqual(reference);

			// Either member prunes and clears what the other wrote.
			const prune = await as(60002, [process.execPath, cli, 'prune', '--max-size', '1B', '--json']);
			expect(prune).toMatchObject({ exitCode: 0, stderr: '' });
			expect(entries(dir)).toEqual([]);
			expect(await link(60002)).toMatchObject({ exitCode: 0, stderr: '' });
			const clear = await as(60001, [process.execPath, cli, 'clear', '--json']);
			expect(clear).toMatchObject({ exitCode: 0, stderr: '' });
			expect(JSON.parse(clear.stdout).removed.entries).toBe(written.length);
			const doctor = await as(60002, [process.execPath, cli, 'doctor', '--json']);
			expect(JSON.parse(doctor.stdout).findings).toContainEqual({
				level: 'ok',
				check: 'cache root',
				message: expect.stringMatching(/ is usable, shared with group 60000 \(setgid, group-writable\)/),
			});
		});

		it('a link run by root in a shared root follows no symlink a member put where a release or module directory, the metadata, the prune timestamp or the memos go', async () => {
			const kernel = tree();
			const shared = scratch('shared-planted');
			fs.chownSync(shared, 0, 60000);
			fs.chmodSync(shared, 0o2770);
			// Where a member's symlinks lead: a directory of root's that no link may chmod or write in.
			const outside = scratch('outside');
			fs.chmodSync(outside, 0o755);
			const precious = path.join(outside, 'precious');
			fs.writeFileSync(precious, 'precious\n');
			const old = new Date(Date.now() - 3 * 86_400_000);
			fs.utimesSync(precious, old, old);
			const preciousTime = fs.statSync(precious).mtimeMs;
			const untouched = () => {
				expect(fs.readdirSync(outside)).toEqual(['precious']);
				expect(fs.statSync(outside).mode & 0o7777).toBe(0o755);
				expect(fs.statSync(precious).mtimeMs).toBe(preciousTime);
				expect(fs.readFileSync(precious, 'utf8')).toBe('precious\n');
			};
			const plant = (target: string, name: string) => {
				fs.symlinkSync(target, name);
				fs.lchownSync(name, 60001, 60000);
			};
			const env = {
				...NO_CONFIG,
				PATH: `${shims}:${SYSTEM_PATH}`,
				HOME: '/nonexistent',
				LTOCACHE_DIR: shared,
				LTOCACHE_AUTO_PRUNE: '0',
				// Root can write the tree: the links are given the root's cache instead.
				LTOCACHE_MODE: 'add',
				KERNELRELEASE: '6.1.0-planted',
				KBUILD_EXTMOD: '/src/planted',
			};
			const out = path.join(work, 'planted-shared.o');
			const link = async () => {
				fs.rmSync(out, { force: true });
				const result = await execa('sh', ['-c', 'exec ld.lld "$@"', 'sh', '-r', '-o', out, ...objects], {
					cwd: kernel,
					env,
					extendEnv: false,
					reject: false,
				});
				expect(result.exitCode).toBe(0);
				expect(fs.readFileSync(out)).toEqual(reference);
				return result.stderr;
			};
			const release = path.join(shared, '6.1.0-planted');

			// The release directory a symlink: made there, chmod-ed 2770 and filled by lld, were it followed.
			plant(outside, release);
			expect(await link()).toMatch(/^ltocache: .*\/6\.1\.0-planted is not a directory \(a symlink\); linking without a ThinLTO cache$/);
			untouched();
			fs.rmSync(release);

			// The memos' directory a symlink: a cold link writes its memo there, were it followed.
			plant(outside, path.join(shared, 'ltocache.inputs'));
			expect(await link()).toBe('');
			untouched();
			const [key] = fs.readdirSync(release);
			const dir = path.join(release, key);
			const written = identities(dir);
			expect(written.length).toBeGreaterThan(0);

			// The metadata a symlink: its times set where it leads, were it followed; the entries are reused.
			// LLVM's prune timestamp a symlink: lld, pruning, would truncate what it names (older than 20 minutes).
			for (const name of ['ltocache.json', 'llvmcache.timestamp']) {
				fs.rmSync(path.join(dir, name), { force: true });
				plant(precious, path.join(dir, name));
			}
			expect(await link()).toBe('');
			untouched();
			expect(identities(dir)).toEqual(written);
			expect(fs.lstatSync(path.join(dir, 'ltocache.json')).isFile()).toBe(true);

			// The module directory a symlink.
			fs.renameSync(dir, `${dir}.aside`);
			plant(outside, dir);
			expect(await link()).toMatch(/^ltocache: .* is not a directory \(a symlink\); linking without a ThinLTO cache$/);
			untouched();

			// Entries that are a directory and a symlink to what is no object: lld fails on them, and prune leaves them.
			fs.rmSync(dir);
			fs.renameSync(`${dir}.aside`, dir);
			const [first, second] = entries(dir);
			for (const name of [first, second]) fs.rmSync(path.join(dir, name));
			fs.mkdirSync(path.join(dir, first));
			plant(precious, path.join(dir, second));
			expect(await link()).toMatch(
				/\nltocache: \S+ failed where \S+ holds llvmcache-\w+, not a regular file, and 1 more; linking again without a cache$/,
			);
			untouched();
		});

		it('leaves an input that is not a regular file to lld: a process substitution reaches it whole, and the link goes without a cache', async () => {
			const kernel = tree();
			const xdg = cacheHome();
			const out = path.join(work, 'fifo.o');
			const env = userEnv(xdg, { KERNELRELEASE: '6.1.0-fifo' });
			// bash hands lld a pipe (/dev/fd/N) for <(...): reading it first would leave lld nothing, and not reading it leaves its asm unknown.
			const script = `cd "$0" && exec ld.lld --thinlto-cache-dir=.thinlto-cache -r -o "$1" <(cat "$2") "$3"`;
			const result = await asNobody('bash', ['-c', script, kernel, out, objects[0], objects[1]], env);
			expect(result.exitCode).toBe(0);
			expect(result.stderr).toMatch(/^ltocache: .* \/dev\/fd\/\d+ is not a regular file, linking without a ThinLTO cache$/);
			expect(fs.readFileSync(out)).toEqual(reference);
			expect(entriesBelow(xdg)).toEqual([]);
		});

		it('links when the build closes its stderr early (`2>&1 | head -c 1`): what the shim says is lost, never the link', async () => {
			const root = scratch('closed-stderr');
			const out = path.join(work, 'closed-stderr.o');
			// Each link says several lines under LTOCACHE_VERBOSE; head takes a byte and closes the pipe.
			const script = `timeout 50 ld.lld -r -o "$0" "$@" 2>&1 | head -c 1 >/dev/null; exit \${PIPESTATUS[0]}`;
			const env = {
				...NO_CONFIG,
				PATH: `${shims}:${SYSTEM_PATH}`,
				LTOCACHE_MODE: 'add',
				LTOCACHE_VERBOSE: '1',
				LTOCACHE_DIR: root,
				LTOCACHE_AUTO_PRUNE: '0',
			};
			for (const round of ['cold', 'warm']) {
				fs.rmSync(out, { force: true });
				const result = await execa('bash', ['-c', script, out, ...objects], { env, extendEnv: false, reject: false, cwd: work });
				expect({ round, exitCode: result.exitCode }).toEqual({ round, exitCode: 0 });
				expect(fs.readFileSync(out)).toEqual(reference);
			}
			expect(entriesBelow(root).length).toBeGreaterThan(0);
		});

		it('links without a cache with LTOCACHE_MODE=drop when the flag is inside a response file', async () => {
			const kernel = tree();
			const xdg = cacheHome();
			const out = path.join(work, 'drop-rsp.o');
			const rsp = path.join(scratch('rsp'), 'flags.rsp');
			fs.writeFileSync(rsp, '--thinlto-cache-dir=.thinlto-cache -r\n', { mode: 0o644 });
			const result = await linkAsNobody(kernel, [`@${rsp}`, '-o', out, ...objects], userEnv(xdg, { LTOCACHE_MODE: 'drop' }));
			expect(result).toMatchObject({ exitCode: 0, stderr: '' });
			expect(fs.readFileSync(out)).toEqual(reference);
			expect(fs.readdirSync(xdg)).toEqual([]);
		});

		it('links without a cache with LTOCACHE_MODE=drop', async () => {
			const kernel = tree();
			const xdg = cacheHome();
			const out = path.join(work, 'drop.o');
			const result = await linkAsNobody(
				kernel,
				['--thinlto-cache-dir=.thinlto-cache', '-r', '-o', out, ...objects],
				userEnv(xdg, { LTOCACHE_MODE: 'drop' }),
			);
			expect(result).toMatchObject({ exitCode: 0, stderr: '' });
			expect(fs.readFileSync(out)).toEqual(reference);
			expect(fs.readdirSync(xdg)).toEqual([]);
		});

		describeIf(Boolean(realLd('ld.lld-16') && onPath('clang-16')), 'clang-16 and ld.lld-16')('versioned linkers', () => {
			it('runs ld.lld-16 for ld.lld-16, redirected', async () => {
				const kernel = tree();
				const xdg = cacheHome();
				const objects16 = compileThin(scratch('obj16'), 'clang-16');
				const out = path.join(work, 'v16.o');
				const result = await linkAsNobody(
					kernel,
					['--thinlto-cache-dir=.thinlto-cache', '-r', '-o', out, ...objects16, '--version'],
					userEnv(xdg, { KERNELRELEASE: '6.1.0-v16' }),
					'ld.lld-16',
				);
				expect(result.stdout).toMatch(/^(Debian )?LLD 16\./);
				const link = await linkAsNobody(
					kernel,
					['--thinlto-cache-dir=.thinlto-cache', '-r', '-o', out, ...objects16],
					userEnv(xdg, { KERNELRELEASE: '6.1.0-v16' }),
					'ld.lld-16',
				);
				expect(link).toMatchObject({ exitCode: 0, stderr: '' });
				expect(entriesBelow(path.join(xdg, 'ltocache/6.1.0-v16')).length).toBeGreaterThan(0);
			});
		});

		/**
		 * Link as nobody, with no usable cache home (HOME=/nonexistent, and no
		 * variable set that names one: the fallback is then silent), in a mount namespace whose
		 * /var/tmp is a fresh tmpfs prepared by `plant`; prints the fallback's
		 * mode and owner and its entry count on stdout.
		 */
		function privateVarTmp(plant: string, cwd: string, args: string[]) {
			const script = `mount -t tmpfs tmpfs /var/tmp && ${plant} && cd "$0" &&
			runuser -u nobody -- env -i LTOCACHE_AUTO_PRUNE=0 LTOCACHE_SYSTEM_CONFIG=/nonexistent/ltocache.conf PATH="${shims}:${SYSTEM_PATH}" HOME=/nonexistent ld.lld "$@" || exit $?
			[ -d /var/tmp/ltocache-65534 ] && ! [ -L /var/tmp/ltocache-65534 ] && stat -c '%A %U' /var/tmp/ltocache-65534 && find /var/tmp/ltocache-65534 -name 'llvmcache-*' -type f | wc -l; exit 0`;
			return execa('unshare', ['-m', 'sh', '-c', script, cwd, ...args], { reject: false });
		}
	},
);
