// `ltocache uninstall`: removes the shim's own symlinks, nothing else.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defineCommand } from '../command.js';
import { linkerNames, linkKind, SYSTEM_DIR, target, writeProblem } from '../shimlinks.js';

export default defineCommand({
	usage: 'uninstall [--system | --dir DIR] [--dry-run]',
	description: `Removes the ld.lld and ld.lld-NN symlinks of ltocache's shim (of this or any
other installation, dangling ones into a removed install included), from
everywhere install puts them (~/.local/bin and /usr/local/bin), or only from
/usr/local/bin (--system) or DIR. Other files are left alone. Exit status 1
if links remain that it could not remove.`,
	options: {
		system: { type: 'boolean', help: 'uninstall from /usr/local/bin only' },
		dir: { type: 'string', arg: 'DIR', help: 'uninstall from DIR only' },
		'dry-run': { type: 'boolean', help: 'say what would be done, do nothing' },
	},
	async run(values) {
		const { dir, dryRun, say } = target(values, 'uninstall');
		const dirs = values.system || values.dir !== undefined ? [dir] : [dir, SYSTEM_DIR].filter((d, i, all) => all.indexOf(d) === i);
		let removed = 0;
		let left = 0;
		for (const where of dirs) {
			for (const name of linkerNames([where])) {
				const file = path.join(where, name);
				if (!linkKind(file)) continue;
				try {
					const problem = dryRun ? writeProblem(where) : undefined;
					if (problem) throw Object.assign(new Error(problem), { code: problem });
					if (!dryRun) fs.unlinkSync(file);
					say(`removed ${file}`);
					removed++;
				} catch (error) {
					const code = (error as NodeJS.ErrnoException).code;
					const hint = where === SYSTEM_DIR && os.userInfo().uid !== 0 ? ': sudo ltocache uninstall --system' : '';
					say(`left ${file}: cannot remove it (${code})${hint}`);
					left++;
				}
			}
		}
		if (removed === 0 && left === 0) say(`nothing of ltocache's in ${dirs.join(' or ')}`);
		return left > 0 ? 1 : 0;
	},
});
