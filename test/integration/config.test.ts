// Issue 32: settings as one table, values that cannot smuggle a second
// setting, secrets kept apart and never shown; doctor and the exit statuses
// alike in every command; the README's table of bad input, run.
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { MODES, parseBudget, parsed, readSettings, remoteSettings, SETTINGS } from '../../src/shared/config.js';
import {
	asNobody,
	CLI,
	describeIf,
	entriesBelow,
	hasToolchain,
	isRoot,
	NO_CONFIG,
	SHIM,
	scratchRoot,
	shimDir,
	stagedShim,
	uncachedReference,
} from '../helpers/tools.js';

const scratch = scratchRoot();

/** `ltocache ARGS` with exactly this environment. */
const cli = (args: string[], env: Record<string, string>) =>
	execa(process.execPath, [CLI, ...args], { reject: false, extendEnv: false, env: { ...NO_CONFIG, PATH: process.env.PATH, ...env } });

/** A machine file and a user file with this text, as the environment that names them. */
function configs(user: string, system = '') {
	const dir = scratch('conf');
	const files = { LTOCACHE_CONFIG: path.join(dir, 'user.conf'), LTOCACHE_SYSTEM_CONFIG: path.join(dir, 'system.conf') };
	fs.writeFileSync(files.LTOCACHE_CONFIG, user);
	fs.writeFileSync(files.LTOCACHE_SYSTEM_CONFIG, system);
	return files;
}

describe('settings: values, duplicates, secrets', () => {
	it('refuses a value with a control character (a newline would write a second setting), changing nothing', async () => {
		const files = configs('max-size = 1G\n');
		const result = await cli(['config', '--system', 'remote', 'http://a/\nmode = drop'], files);
		expect(result).toMatchObject({ exitCode: 2, stdout: '' });
		expect(result.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^ltocache: invalid remote: it holds a control character/)]);
		expect(fs.readFileSync(files.LTOCACHE_SYSTEM_CONFIG, 'utf8')).toBe('');
		// In a file, or the environment, too.
		const inFile = configs('mode = add\x01\n');
		const listed = await cli(['config'], inFile);
		expect(listed.exitCode).toBe(2);
		expect(listed.stderr).toContain(`${inFile.LTOCACHE_CONFIG}:1: mode holds a control character`);
		const fromEnv = await cli(['prune', '--dry-run'], { ...files, LTOCACHE_MAX_AGE: '7d\n', LTOCACHE_DIR: scratch('root') });
		expect(fromEnv.exitCode).toBe(2);
		expect(fromEnv.stderr).toMatch(/^ltocache: LTOCACHE_MAX_AGE holds a control character/);
	});

	it('warns of a key set twice in one file; the last line wins', async () => {
		const files = configs('max-size = 1G\nmax-age = 2d\nmax-size = 3G\n');
		const result = await cli(['config'], files);
		expect(result.exitCode).toBe(0);
		expect(result.stderr).toBe(`ltocache: warning: ${files.LTOCACHE_CONFIG}:3: max-size is set again (line 1 is ignored)`);
		expect(result.stdout).toMatch(new RegExp(`^max-size +3G +${files.LTOCACHE_CONFIG}:3$`, 'm'));
		// Every command that reads the settings says so.
		const stats = await cli(['stats'], { ...files, LTOCACHE_DIR: scratch('root') });
		expect(stats.exitCode).toBe(0);
		expect(stats.stderr).toBe(`ltocache: warning: ${files.LTOCACHE_CONFIG}:3: max-size is set again (line 1 is ignored)`);
	});

	it('masks user and password in every URL it shows: a token as the user, a / or raw @ in the password', async () => {
		for (const [url, shown] of [
			['https://TOKEN@cache.example/ltocache/', 'https://***@cache.example/ltocache/'],
			['redis://:pa/ss@127.0.0.1:6379/0', 'redis://***@127.0.0.1:6379/0'],
			['redis://alice:p@ss@127.0.0.1/1', 'redis://***@127.0.0.1/1'],
			['http://127.0.0.1:8080/cache/', 'http://127.0.0.1:8080/cache/'],
		]) {
			const result = await cli(['config'], { ...configs(''), LTOCACHE_REMOTE: url });
			expect(result.stdout).toMatch(new RegExp(`^remote +${shown.replace(/[.*?/]/g, '\\$&')} +LTOCACHE_REMOTE$`, 'm'));
			for (const secret of ['TOKEN', 'pa/ss', 'p@ss', 'alice']) expect(result.stdout + result.stderr).not.toContain(secret);
		}
	});

	describeIf(isRoot, 'root, to run as nobody')('a secret', () => {
		it("goes into the user's file 0600; root putting one in the machine's file is warned", async () => {
			const home = scratch('home');
			fs.chownSync(home, 65534, 65534);
			const set = await asNobody(process.execPath, [CLI, 'config', 'remote', 'redis://:secret@127.0.0.1/'], { HOME: home });
			expect(set).toMatchObject({ exitCode: 0, stderr: '' });
			const file = path.join(home, '.config/ltocache/config');
			expect(fs.statSync(file).mode & 0o777).toBe(0o600);
			expect(set.stdout).not.toContain('secret');

			const files = configs('');
			fs.chmodSync(files.LTOCACHE_SYSTEM_CONFIG, 0o644);
			const machine = await cli(['config', '--system', 'remote', 'redis://:secret@127.0.0.1/'], files);
			expect(machine.exitCode).toBe(0);
			expect(machine.stderr).toMatch(
				/^ltocache: warning: .* is readable by every user, and so is the remote's password in it: .*remote-password-file$/,
			);
		});
	});

	it("remote-password-file gives a URL without a password the file's first line", () => {
		const secret = path.join(scratch('secret'), 'password');
		fs.writeFileSync(secret, 'p@ss/word\n', { mode: 0o600 });
		const env = {
			...NO_CONFIG,
			LTOCACHE_CONFIG: '/nonexistent',
			LTOCACHE_REMOTE: 'redis://127.0.0.1:6379/0',
			LTOCACHE_REMOTE_PASSWORD_FILE: secret,
		};
		const url = new URL(remoteSettings(readSettings(env).values).url);
		expect(decodeURIComponent(url.password)).toBe('p@ss/word');
		expect(url.host).toBe('127.0.0.1:6379');
		// A URL with its own password keeps it.
		const own = remoteSettings(readSettings({ ...env, LTOCACHE_REMOTE: 'redis://:mine@127.0.0.1/' }).values).url;
		expect(new URL(own).password).toBe('mine');
	});
});

describe('doctor and exit statuses', () => {
	type Finding = { level: string; check: string; message: string };
	const doctor = async (env: Record<string, string>) => {
		const result = await cli(['doctor', '--json'], { LTOCACHE_MODULES: scratch('modules'), ...env });
		return { exitCode: result.exitCode, findings: (JSON.parse(result.stdout) as { findings: Finding[] }).findings };
	};

	it('fails on a root whose path holds a % (every link would go uncached) and on what ltocache did not make', async () => {
		const percent = path.join(scratch('parent'), 'cache%d');
		fs.mkdirSync(percent);
		const pct = await doctor({ ...configs(''), LTOCACHE_DIR: percent });
		expect(pct.exitCode).toBe(1);
		expect(pct.findings).toContainEqual({ level: 'fail', check: 'cache root', message: expect.stringContaining('holds a %') });

		const root = scratch('root');
		fs.mkdirSync(path.join(root, '6.1.0-1', 'mod-0123456789ab'), { recursive: true });
		fs.writeFileSync(path.join(root, '6.1.0-1', 'mod-0123456789ab', 'notes.txt'), 'mine');
		fs.mkdirSync(path.join(root, '6.1.0-1', '.thinlto-cache'));
		const foreign = await doctor({ ...configs(''), LTOCACHE_DIR: root });
		expect(foreign.exitCode).toBe(1);
		const found = foreign.findings.find((f) => f.check === 'cache root contents');
		expect(found).toMatchObject({ level: 'fail', message: expect.stringMatching(/^2 files or directories that ltocache did not make: /) });
	});

	it('takes what ltocache itself leaves at the top of a root for its own: a dead lock it could not remove, a linkers file being written', async () => {
		const root = scratch('root');
		const key = path.join(root, '6.1.0-1', 'mod-0123456789ab');
		fs.mkdirSync(key, { recursive: true });
		fs.writeFileSync(path.join(key, 'llvmcache-0'), 'x');
		// What a prune leaves when it takes over another member's dead lock whose owner file it may not remove
		// (src/cli/lock.ts), and the linkers' identities a link is writing (src/shim/identity.ts).
		const dead = path.join(root, 'ltocache.lock.dead-123-abcdefgh-1');
		fs.mkdirSync(dead);
		fs.writeFileSync(path.join(dead, 'owner.json'), '{}');
		fs.writeFileSync(path.join(root, 'ltocache.linkers.json.123-abcdefgh-2.tmp'), '{}');
		const result = await doctor({ ...configs(''), LTOCACHE_DIR: root });
		expect(result.findings.map((f) => f.check)).toContain('cache root');
		expect(result.findings.filter((f) => f.check === 'cache root contents')).toEqual([]);
		// Nor is the dead lock a kernel release.
		const wrong = await cli(['clear', '--kernel', '5.10'], { ...configs(''), LTOCACHE_DIR: root });
		expect(wrong.exitCode).toBe(1);
		expect(wrong.stderr).toContain('(releases cached: 6.1.0-1)');
		expect(fs.existsSync(path.join(key, 'llvmcache-0'))).toBe(true);
	});

	it('a configuration that is not right is exit status 2 in every command that reads it, doctor included', async () => {
		const files = configs('max-size = lots\n');
		const root = scratch('root');
		for (const args of [['stats'], ['stats', '--json'], ['prune'], ['clear'], ['clear', '--dry-run'], ['config']]) {
			const result = await cli(args, { ...files, LTOCACHE_DIR: root });
			expect(result.exitCode, args.join(' ')).toBe(2);
			expect(result.stderr).toContain(`invalid max-size (${files.LTOCACHE_CONFIG}:1) 'lots'`);
		}
		const doc = await doctor({ ...files, LTOCACHE_DIR: root });
		expect(doc.exitCode).toBe(2);
		expect(doc.findings).toContainEqual({ level: 'fail', check: 'configuration', message: expect.stringContaining("'lots'") });
	});

	it('no raw Node error reaches the user: an empty command, a lock path that is a file, a counts file that is a directory', async () => {
		const empty = await cli(['run', '--', ''], {});
		expect(empty).toMatchObject({ exitCode: 2, stdout: '' });
		expect(empty.stderr).toMatch(/^ltocache: run needs a command/);

		const root = scratch('root');
		const key = path.join(root, '6.1.0-1', 'mod-0123456789ab');
		fs.mkdirSync(path.join(key, 'ltocache.counts'), { recursive: true });
		fs.writeFileSync(path.join(key, 'ltocache.json'), JSON.stringify({ version: 1, release: '6.1.0-1', original: '/src/mod' }));
		const stats = await cli(['stats'], { ...configs(''), LTOCACHE_DIR: root });
		expect(stats).toMatchObject({ exitCode: 0, stderr: '' });
		fs.writeFileSync(path.join(root, 'ltocache.lock'), '');
		for (const args of [['prune'], ['clear'], ['stats', '--zero']]) {
			const locked = await cli(args, { ...configs(''), LTOCACHE_DIR: root });
			expect(locked.exitCode, args.join(' ')).toBe(1);
			expect(locked.stderr.split('\n')).toEqual([
				`ltocache: cannot take the lock ${root}/ltocache.lock: it is not a directory (remove it if no ltocache runs)`,
			]);
		}
	});

	it("stats tells a module's rows with and without an options variant apart", async () => {
		const root = scratch('root');
		const meta = JSON.stringify({ version: 1, release: '6.1.0-1', extmod: '/src/mod', original: '/src/mod' });
		for (const name of ['src-mod-0123456789ab', 'src-mod-0123456789ab+opt-00112233445566778899']) {
			fs.mkdirSync(path.join(root, '6.1.0-1', name), { recursive: true });
			fs.writeFileSync(path.join(root, '6.1.0-1', name, 'ltocache.json'), meta);
		}
		const stats = await cli(['stats'], { ...configs(''), LTOCACHE_DIR: root });
		const rows = stats.stdout.split('\n').filter((l) => l.startsWith('  /src/mod'));
		expect(rows.map((r) => r.replace(/(\S) {2,}.*/, '$1'))).toEqual(['  /src/mod', '  /src/mod (options variant)']);
	});
});

describe("the README's table of bad input", () => {
	const readme = fs.readFileSync(path.join(path.dirname(CLI), '..', 'README.md'), 'utf8');
	const section = readme.slice(readme.indexOf('### Bad input'));
	const rows = section
		.slice(0, section.indexOf('\n#'))
		.split('\n')
		.map((line) => /^\| `(.+)` \| `(.+)` \|$/.exec(line))
		.filter((m): m is RegExpExecArray => m !== null);

	it('has rows', () => {
		expect(rows.length).toBeGreaterThan(15);
	});

	it.each(rows.map((m) => [m[1], m[2]]))('%s: one line, exit status 2, nothing changed', async (command, says) => {
		const home = scratch('home');
		fs.writeFileSync(path.join(home, '.bashrc'), 'export PATH\n');
		const root = scratch('root');
		fs.mkdirSync(path.join(root, '6.1.0-1', 'mod-0123456789ab'), { recursive: true });
		fs.writeFileSync(path.join(root, '6.1.0-1', 'mod-0123456789ab', `llvmcache-${'0'.repeat(40)}`), 'entry');
		const files = configs('');
		// The words as a shell would split them: VAR=value assignments, then ltocache and its arguments.
		const words = command
			.replaceAll('$HOME', home)
			.split(' ')
			.map((w) => (w === "''" ? '' : w));
		const env: Record<string, string> = { ...files, LTOCACHE_DIR: root, HOME: home };
		while (/^[A-Z_]+=/.test(words[0])) {
			const [name, ...value] = words.shift()!.split('=');
			env[name] = value.join('=');
		}
		expect(words.shift()).toBe('ltocache');
		const result = await cli(words, env);
		expect(result.exitCode).toBe(2);
		expect(result.stdout).toBe('');
		expect(result.stderr.split('\n')).toEqual([expect.stringContaining(`ltocache: ${says.replaceAll('$HOME', home)}`)]);
		expect(fs.readFileSync(files.LTOCACHE_CONFIG, 'utf8') + fs.readFileSync(files.LTOCACHE_SYSTEM_CONFIG, 'utf8')).toBe('');
		expect(fs.existsSync(path.join(root, '6.1.0-1', 'mod-0123456789ab', `llvmcache-${'0'.repeat(40)}`))).toBe(true);
	});
});

describe('one table of settings', () => {
	it('has a parser for every setting, which reads its default, and the README lists each with its variable', () => {
		const readme = fs.readFileSync(path.join(path.dirname(CLI), '..', 'README.md'), 'utf8');
		for (const [key, spec] of Object.entries(SETTINGS)) {
			expect(() => spec.parse(spec.default, key), key).not.toThrow();
			expect(readme, key).toMatch(new RegExp(`^\\| \`${key}\` \\| \`${spec.env}\` \\|`, 'm'));
		}
		// The shim's readers go through the same parsers, and pass over a bad value to the default.
		const values = readSettings({ ...NO_CONFIG, LTOCACHE_CONFIG: '/nonexistent', LTOCACHE_AUTO_PRUNE: 'sometimes' }).values;
		expect(parsed(values, 'auto-prune')).toBe(true);
		expect(parsed(readSettings({ ...NO_CONFIG, LTOCACHE_CONFIG: '/nonexistent', LTOCACHE_AUTO_PRUNE: 'off' }).values, 'auto-prune')).toBe(
			false,
		);
	});

	it("bin/ld.lld's list of modes is the table's", () => {
		const sh = fs.readFileSync(SHIM, 'utf8');
		const arm = /^case \$mode in (.+)\) ;; \*\) fast= ;; esac$/m.exec(sh);
		expect(arm).not.toBeNull();
		const listed = arm![1].split('|').map((m) => m.trim().replace(/^''$/, ''));
		expect(new Set(listed)).toEqual(new Set(['', ...MODES]));
		expect(listed).toHaveLength(MODES.length + 1);
	});

	it("writes remote-timeout's default once: the table's is the budget of a value that is not right", () => {
		const values = readSettings({ ...NO_CONFIG, LTOCACHE_CONFIG: '/nonexistent', LTOCACHE_REMOTE_TIMEOUT: 'soon' }).values;
		expect(remoteSettings(values).budgetMs).toBe(parseBudget(SETTINGS['remote-timeout'].default));
	});

	it('cache-dir in /etc/ltocache.conf names the root for the manager', async () => {
		const root = scratch('root');
		fs.mkdirSync(path.join(root, '6.1.0-1', 'mod-0123456789ab'), { recursive: true });
		fs.writeFileSync(path.join(root, '6.1.0-1', 'mod-0123456789ab', `llvmcache-${'0'.repeat(40)}`), 'entry');
		fs.writeFileSync(path.join(root, '6.1.0-1', 'mod-0123456789ab', 'ltocache.json'), '{}');
		const files = configs('', `cache-dir = ${root}\n`);
		const env = { ...files, HOME: scratch('home') };
		const stats = await cli(['stats', '--json'], env);
		expect(stats.exitCode).toBe(0);
		expect(JSON.parse(stats.stdout)).toMatchObject({ root, totalEntries: 1 });
		expect((await cli(['config', 'cache-dir'], env)).stdout).toBe(root);
	});

	describeIf(hasToolchain, 'clang and ld.lld')('the shim', () => {
		it('links into the root cache-dir names (both halves), byte-identical', async () => {
			const { objects, reference } = uncachedReference(scratch('objects'));
			const shims = shimDir(scratch('shims'), stagedShim(scratch('pkg')), ['ld.lld']);
			for (const via of [{}, { LTOCACHE_NO_FAST_PATH: '1' }]) {
				const root = path.join(scratch('shared'), 'root');
				const files = configs('', `cache-dir = ${root}\nmode = add\n`);
				const cwd = scratch('cwd');
				const out = path.join(cwd, 'out.o');
				const result = await execa(path.join(shims, 'ld.lld'), ['-r', '-o', out, ...objects], {
					cwd,
					reject: false,
					extendEnv: false,
					env: { ...files, PATH: process.env.PATH, HOME: scratch('home'), LTOCACHE_AUTO_PRUNE: '0', ...via },
				});
				expect(result).toMatchObject({ exitCode: 0, stderr: '' });
				expect(fs.readFileSync(out)).toEqual(reference);
				expect(entriesBelow(root).length).toBeGreaterThan(0);
				expect(fs.existsSync(path.join(root, 'CACHEDIR.TAG'))).toBe(true);
			}
		});
	});
});
