// Root and DKMS: `ltocache run -- dkms build` builds through the shim without
// installing anything; `ltocache install --system` puts the shim in /usr/local/bin,
// which comes before /usr/bin on root's default PATH, and a DKMS build
// against a read-only ThinLTO tree goes through; `ltocache doctor` says so
// before and after. Runs in a private mount namespace: the tree read-only,
// and /usr/local/bin, /usr/src and /var/lib/dkms replaced by scratch copies.
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { beforeAll, expect, it } from 'vitest';
import type { StatsJson } from '../../src/cli/commands/stats.js';
import { CLI, describeIf, entriesBelow, onPath, scratchRoot } from '../helpers/tools.js';
import { kernelNeeds, kernelReady, kernelTree, writeModule } from './kernel-tree.js';

const SCRIPT = `set -eu
tree=$1 src=$2 bin=$3 home=$4 cli=$5 release=$6
mount --bind -o ro "$tree" "$tree"
mount --bind "$src" /usr/src
mount --bind "$bin" /usr/local/bin
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME="$home" LTOCACHE_AUTO_PRUNE=0 LTOCACHE_VERIFY=on
build() {
	mount -t tmpfs tmpfs /var/lib/dkms
	dkms add -m hello -v 1.0 >/dev/null
	if "$@" dkms build -m hello -v 1.0 -k "$release" --kernelsourcedir "$tree" >/dev/null 2>&1; then
		echo "built $(ls /var/lib/dkms/hello/1.0/$release/*/module/)"
	else
		echo "failed: $(grep -m1 'LLVM ERROR' /var/lib/dkms/hello/1.0/build/make.log)"
	fi
	umount /var/lib/dkms
}
echo "== doctor before"; node "$cli" doctor || echo "doctor exit $?"
echo "== build before"; build
echo "== build with run"; export TMPDIR="$home/tmp"; mkdir "$TMPDIR"; build node "$cli" run --; ls -A "$TMPDIR" /usr/local/bin
echo "== install"; node "$cli" install --system
echo "== doctor after"; node "$cli" doctor || echo "doctor exit $?"
echo "== build after"; build
echo "== stats"; node "$cli" stats --json
`;

describeIf(kernelReady && Boolean(onPath('dkms')), `${kernelNeeds} dkms`)('DKMS as root, after ltocache install --system', () => {
	const scratch = scratchRoot();
	let output = '';
	let home = '';
	let release = '';

	beforeAll(async () => {
		const kernel = await kernelTree();
		release = kernel.release;
		const src = scratch('usr-src');
		const moddir = path.join(src, 'hello-1.0');
		fs.mkdirSync(moddir);
		writeModule(moddir);
		fs.writeFileSync(
			path.join(moddir, 'dkms.conf'),
			'PACKAGE_NAME=hello\nPACKAGE_VERSION=1.0\nBUILT_MODULE_NAME[0]=hello\nDEST_MODULE_LOCATION[0]=/updates\n',
		);
		// doctor reads installed kernels from /lib/modules; here, from a fixture pointing at the tree.
		const modules = scratch('modules');
		fs.mkdirSync(path.join(modules, release));
		fs.symlinkSync(kernel.tree, path.join(modules, release, 'build'));
		home = scratch('root-home');
		const result = await execa(
			'unshare',
			['-m', 'sh', '-c', SCRIPT, 'sh', kernel.tree, src, scratch('usr-local-bin'), home, CLI, release],
			{
				env: { LTOCACHE_MODULES: modules },
				reject: false,
			},
		);
		expect(result.stderr).toBe('');
		output = result.stdout;
	});

	const section = (name: string) => output.split(`== ${name}\n`)[1]?.split('\n== ')[0] ?? '';

	it('fails before, with doctor saying why', () => {
		expect(section('build before')).toMatch(/^failed: LLVM ERROR: Read-only file system/);
		const doctor = section('doctor before');
		expect(doctor).toMatch(
			new RegExp(`^fail  kernel ${release.replaceAll('.', '\\.')}: .*not writable \\(EROFS\\).*ltocache install`, 'm'),
		);
		expect(doctor).toMatch(/^warn {2}ld\.lld on root's default PATH: \/usr\/bin\/ld\.lld is the real linker .*install --system$/m);
		expect(doctor).toMatch(/^doctor exit 1$/m);
	});

	it('builds with ltocache run, leaving nothing installed and no temporary directory', () => {
		expect(section('build with run')).toMatch(/^built hello\.ko\n/);
		expect(section('build with run')).not.toMatch(/ld\.lld|ltocache-run/);
	});

	it("installs links in /usr/local/bin, then DKMS builds the module with the cache in root's XDG cache", () => {
		expect(section('install')).toMatch(/^linked \/usr\/local\/bin\/ld\.lld -> .*bin\/ld\.lld$/m);
		expect(section('build after')).toMatch(/^built hello\.ko/);
		expect(entriesBelow(path.join(home, '.cache/ltocache', release)).length).toBeGreaterThan(0);
		const doctor = section('doctor after');
		expect(doctor).toMatch(
			/^ok {4}ld\.lld on root's default PATH: \/usr\/local\/bin\/ld\.lld is the shim; real linker \/usr\/bin\/ld\.lld/m,
		);
		expect(doctor).toMatch(new RegExp(`^ok    kernel ${release.replaceAll('.', '\\.')}: .*the shim redirects it$`, 'm'));
		expect(doctor).not.toMatch(/^fail|doctor exit/m);
	});

	it('verifies every link DKMS made through the shim against the uncached link: none was served a stale object', () => {
		const stats = JSON.parse(section('stats')) as StatsJson;
		const keys = stats.kernels.flatMap((k) => k.keys);
		expect(keys.length).toBeGreaterThan(0);
		for (const key of keys) {
			console.log(
				`DKMS: ${key.verifiedLinks} of ${key.links} links verified against the uncached link, ${key.verifyMismatches} mismatches`,
			);
			expect(key.links).toBeGreaterThan(0);
			expect(key.verifiedLinks).toBe(key.links);
			expect(key.verifyMismatches).toBe(0);
		}
	});
});
