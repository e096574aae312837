// `ltocache demo`: the kernel-module failure in miniature, without a kernel.
// Two C files compiled with clang -flto=thin, linked the way Kbuild links a
// module (-r, --thinlto-cache-dir=.thinlto-cache, cwd an unwritable "tree"),
// first with the real ld.lld, then through the shim.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa, execaSync, type Options } from 'execa';
import { classify } from '../../shared/keydir.js';
import { realLinker, which } from '../../shared/pathsearch.js';
import { defineCommand } from '../command.js';
import { shimFile } from '../shimlinks.js';

export default defineCommand({
	usage: 'demo [--keep]',
	description: `Compiles two small C files with clang -flto=thin and links them like a kernel
module build, with --thinlto-cache-dir=.thinlto-cache in a read-only "kernel
tree": first with the real ld.lld (which fails), then twice through the shim
(which redirects the cache, then reuses it), and shows ltocache stats. Needs
clang and ld.lld; uses a temporary directory and its own cache root.`,
	options: { keep: { type: 'boolean', help: 'keep the temporary directory' } },
	run: demo,
});

const SOURCES: Record<string, string> = {
	'main.c': 'int helper(int);\nint module_init_demo(int x) { return helper(x) * 2; }\n',
	'helper.c': 'int helper(int x) { return x + 40; }\n',
};

const PACKAGES = 'Debian/Ubuntu: apt install clang lld; Arch: pacman -S clang lld; Fedora: dnf install clang lld';

async function demo(values: { keep?: boolean }, env: NodeJS.ProcessEnv): Promise<number> {
	// The real ld.lld even where the shim is installed first on PATH: the demo's first link shows the bug.
	const lld = realLinker('ld.lld', env.PATH ?? '');
	const missing = [!which('clang', env.PATH ?? '') && 'clang', !lld && 'ld.lld'].filter(Boolean);
	if (missing.length > 0) {
		process.stderr.write(`ltocache demo: ${missing.join(' and ')} not found on PATH (${PACKAGES})\n`);
		return 1;
	}
	const shim = shimFile();
	const cli = path.join(path.dirname(shim), 'ltocache');
	const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ltocache-demo-'));
	const tree = path.join(work, 'kernel-tree');
	const module = path.join(work, 'module');
	const root = path.join(work, 'cache');
	const say = (text: string) => process.stdout.write(`${text}\n`);
	const show = (result: { stdout?: unknown; stderr?: unknown }) => {
		for (const text of [result.stdout, result.stderr]) if (text) say(String(text).replace(/^/gm, '    '));
	};
	try {
		fs.mkdirSync(tree);
		fs.mkdirSync(module);
		const objects = [];
		for (const [name, code] of Object.entries(SOURCES)) {
			fs.writeFileSync(path.join(module, name), code);
			const object = path.join(module, name.replace(/\.c$/, '.o'));
			await execa('clang', ['-flto=thin', '-O2', '-c', path.join(module, name), '-o', object]);
			objects.push(object);
		}
		const linkArgs = ['--thinlto-cache-dir=.thinlto-cache', '-r', '-o', path.join(module, 'demo.ko'), ...objects];
		const readOnly = makeReadOnly(tree);
		const linkEnv = {
			...env,
			LTOCACHE_DIR: root,
			LTOCACHE_VERBOSE: '1',
			LTOCACHE_AUTO_PRUNE: '0',
			KERNELRELEASE: '6.1.0-demo',
			KBUILD_EXTMOD: module,
		};
		const link = (linker: string) => readOnly(linker, linkArgs, { cwd: tree, env: linkEnv, reject: false, all: false });

		say(`$ cd ${tree}   # ${readOnly.how}`);
		say(`$ ld.lld ${linkArgs.join(' ')}`);
		const bare = await link(lld!);
		show(bare);
		say(`    -> exit status ${bare.exitCode ?? bare.signal}${bare.exitCode === 0 ? '' : ': this is what breaks module builds'}\n`);

		say(`$ ${shim} ${linkArgs.join(' ')}   # the shim, as ld.lld first on PATH`);
		const first = await link(shim);
		show(first);
		const cached = countEntries(root);
		say(`    -> exit status ${first.exitCode}; ${cached} cache entries written\n`);

		say('$ ld.lld ...   # again: the cache is reused');
		const second = await link(shim);
		show(second);
		const reused = countEntries(root) === cached;
		say(
			`    -> exit status ${second.exitCode}; ${reused ? 'no new entries: every module came from the cache' : 'new entries were written'}\n`,
		);

		say(`$ LTOCACHE_DIR=${root} ltocache stats`);
		show(await execa(process.execPath, [cli, 'stats'], { env: { ...env, LTOCACHE_DIR: root }, reject: false }));
		const ok = first.exitCode === 0 && second.exitCode === 0 && cached > 0 && reused && !fs.existsSync(path.join(tree, '.thinlto-cache'));
		say(ok ? 'The shim linked both times; the read-only tree is untouched.' : 'The demo did not go as expected (see above).');
		return ok ? 0 : 1;
	} finally {
		if (values.keep) say(`kept ${work}`);
		else {
			fs.chmodSync(tree, 0o755);
			fs.rmSync(work, { recursive: true, force: true });
		}
	}
}

function countEntries(root: string): number {
	return (fs.readdirSync(root, { recursive: true }) as string[]).filter((f) => classify(path.basename(f)) === 'entry').length;
}

type Runner = ((file: string, args: string[], options: Options) => ReturnType<typeof execa>) & { how: string };

/**
 * A user cannot write a 0555 directory; root can, so as root the link runs
 * in a private mount namespace with the tree bind-mounted read-only.
 */
function makeReadOnly(tree: string): Runner {
	fs.chmodSync(tree, 0o555);
	if (process.getuid?.() !== 0) {
		return Object.assign((file: string, args: string[], options: Options) => execa(file, args, options), { how: 'mode 0555' });
	}
	const script = 'mount --bind -o ro "$0" "$0" && cd "$0" && exec "$@"';
	if (execaSync('unshare', ['-m', 'sh', '-c', script, tree, 'true'], { reject: false }).exitCode !== 0) {
		throw new Error('as root the demo needs a private read-only mount (unshare -m), which is not allowed here; run it as a normal user');
	}
	return Object.assign(
		(file: string, args: string[], options: Options) => execa('unshare', ['-m', 'sh', '-c', script, tree, file, ...args], options),
		{
			how: 'read-only bind mount',
		},
	);
}
