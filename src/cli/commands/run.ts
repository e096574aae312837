// `ltocache run CMD...`: one build through the shim, nothing installed. A
// private directory of ld.lld and ld.lld-NN links goes first on CMD's PATH
// and is removed when CMD ends, however it ends; CMD's exit status and death
// signal become ltocache's, and the signals a terminal or make sends reach it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { toBytes } from '../../shared/bytes.js';
import { badMode } from '../../shared/config.js';
import { which } from '../../shared/pathsearch.js';
import { runLinker } from '../../shim/run.js';
import { defineCommand, UsageError } from '../command.js';
import { linkerNames, shimFile } from '../shimlinks.js';

export default defineCommand({
	usage: 'run [--mode MODE] [--verify] [--] CMD [ARGS...]',
	description: `Runs CMD with the shim first on its PATH, as ld.lld and every ld.lld-NN
found on PATH, from a private temporary directory that is gone afterwards;
nothing is installed. CMD's exit status (or death signal) is ltocache's.
  ltocache run -- make -C /lib/modules/$(uname -r)/build M=$PWD modules
  sudo ltocache run -- dkms build -m hello -v 1.0`,
	options: {
		mode: {
			type: 'string',
			arg: 'MODE',
			help: 'LTOCACHE_MODE for the build: redirect (default), drop, or add (a cache for ThinLTO links that have none)',
		},
		verify: { type: 'boolean', help: 'verify every link that uses the cache against the same link without it (LTOCACHE_VERIFY=on)' },
	},
	positionals: 'command',
	async run(values, env, command) {
		const bad = values.mode === undefined ? undefined : badMode(values.mode, `--mode '${values.mode}'`);
		if (bad) throw new UsageError(bad);
		if (command.length === 0 || command[0] === '') throw new UsageError('run needs a command: ltocache run -- CMD [ARGS...]');
		const pathValue = env.PATH ?? '';
		const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ltocache-run-'));
		try {
			const shim = shimFile();
			for (const name of linkerNames(pathValue.split(':'))) fs.symlinkSync(shim, path.join(dir, name));
			// The shim needs node for what it redirects; the build may not have it on PATH (sudo's secure_path).
			if (!which('node', pathValue)) fs.symlinkSync(process.execPath, path.join(dir, 'node'));
			const childEnv = {
				...env,
				PATH: `${dir}:${pathValue}`,
				...(values.mode ? { LTOCACHE_MODE: values.mode } : {}),
				...(values.verify ? { LTOCACHE_VERIFY: 'on' } : {}),
			};
			const [file, ...args] = command;
			// Exits (or dies) as CMD did, once the directory is gone.
			return await runLinker(file, file, args.map(toBytes), childEnv, async () => fs.rmSync(dir, { recursive: true, force: true }));
		} finally {
			fs.rmSync(dir, { recursive: true, force: true });
		}
	},
});
