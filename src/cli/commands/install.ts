// `ltocache install`: symlinks named ld.lld and ld.lld-NN, pointing at the
// shim, in a directory that comes before the real linker on the PATH the
// build uses. Only ever creates its own symlinks.
import fs from 'node:fs';
import path from 'node:path';
import { isShimFile, which } from '../../shared/pathsearch.js';
import { uniqueTag } from '../../shared/root.js';
import { defineCommand } from '../command.js';
import { linkerNames, linkKind, ROOT_PATH, shimFile, target, writing } from '../shimlinks.js';

export default defineCommand({
	usage: 'install [--system | --dir DIR] [--dry-run]',
	description: `Creates symlinks named ld.lld and ld.lld-NN (one per versioned lld on PATH)
pointing at the shim: in ~/.local/bin, in /usr/local/bin with --system (root's
default PATH, which DKMS uses), or in DIR. Replaces only ltocache's own links
(of any installation, dangling ones included), never another file. Running it
again changes nothing.`,
	options: {
		system: { type: 'boolean', help: 'install into /usr/local/bin' },
		dir: { type: 'string', arg: 'DIR', help: 'install into DIR' },
		'dry-run': { type: 'boolean', help: 'say what would be done, do nothing' },
	},
	async run(values, env) {
		const { dir, dryRun, say, check } = target(values, 'install');
		check();
		const shim = shimFile();
		// The PATH the build will use: root's default for a system install, else ours.
		const buildPath = values.system ? ROOT_PATH : (env.PATH ?? '');

		const names = linkerNames([...buildPath.split(':'), ...(env.PATH ?? '').split(':')].filter((d) => path.resolve(d || '.') !== dir));
		if (!dryRun) writing(dir, 'install', () => fs.mkdirSync(dir, { recursive: true }));
		let refused = 0;
		for (const name of names) {
			const file = path.join(dir, name);
			const kind = linkKind(file, shim);
			if (kind === 'this') {
				say(`${file} already points at the shim`);
			} else if (kind === 'other') {
				// Another copy's link (or one into a removed install): ltocache's own, so replaced, in one rename.
				const was = fs.readlinkSync(file);
				if (!dryRun) {
					const temp = `${file}.ltocache-${uniqueTag()}`;
					writing(dir, 'install', () => {
						fs.rmSync(temp, { force: true });
						fs.symlinkSync(shim, temp);
						fs.renameSync(temp, file);
					});
				}
				say(`linked ${file} -> ${shim} (it pointed at another ltocache: ${was})`);
			} else if (fs.lstatSync(file, { throwIfNoEntry: false })) {
				say(`left ${file} alone: it exists and is not ltocache's (remove it yourself to put the shim there)`);
				refused++;
			} else {
				if (!dryRun) writing(dir, 'install', () => fs.symlinkSync(shim, file));
				say(`linked ${file} -> ${shim}`);
			}
		}

		// Is the directory early enough on the build's PATH?
		const dirs = buildPath.split(':').map((d) => path.resolve(d || '.'));
		const at = dirs.indexOf(dir);
		const realAt = dirs.findIndex((d, i) => i !== at && which('ld.lld', d) !== undefined && !isShimFile(path.join(d, 'ld.lld')));
		const where = values.system ? "root's default PATH" : 'your PATH';
		if (at < 0) {
			say(`${dir} is not on ${where}: add it in front, e.g. export PATH="${dir}:$PATH"`);
		} else if (realAt >= 0 && realAt < at) {
			say(`${dir} comes after ${dirs[realAt]} on PATH, so builds still find the real ld.lld first: put ${dir} in front`);
		}
		if (!which('node', buildPath)) {
			say(
				`warning: no node on ${values.system ? "root's default PATH" : 'PATH'} (${buildPath}); the shim needs node to move an unwritable cache directory`,
			);
		}
		return refused > 0 ? 1 : 0;
	},
});
