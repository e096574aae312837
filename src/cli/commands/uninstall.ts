// `ltocache uninstall`: removes the shim's own symlinks, nothing else.
import fs from 'node:fs';
import path from 'node:path';
import { defineCommand } from '../command.js';
import { isOurLink, linkerNames, shimFile, target, writing } from '../shimlinks.js';

export default defineCommand({
	usage: 'uninstall [--system | --dir DIR] [--dry-run]',
	description: `Removes the ld.lld and ld.lld-NN symlinks that point at this shim from
~/.local/bin, /usr/local/bin (--system) or DIR. Other files are left alone.`,
	options: {
		system: { type: 'boolean', help: 'uninstall from /usr/local/bin' },
		dir: { type: 'string', arg: 'DIR', help: 'uninstall from DIR' },
		'dry-run': { type: 'boolean', help: 'say what would be done, do nothing' },
	},
	async run(values) {
		const { dir, dryRun, say } = target(values);
		const shim = shimFile();
		let removed = 0;
		for (const name of linkerNames([dir])) {
			const file = path.join(dir, name);
			if (!isOurLink(file, shim)) continue;
			if (!dryRun) writing(dir, () => fs.unlinkSync(file));
			say(`removed ${file}`);
			removed++;
		}
		if (removed === 0) say(`nothing of ltocache's in ${dir}`);
		return 0;
	},
});
