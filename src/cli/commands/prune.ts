// `ltocache prune`: evict least recently used entries beyond the limits.

import { SETTINGS } from '../../shared/config.js';
import { defineCommand } from '../command.js';
import { binaryUnits, limitsFrom } from '../limits.js';
import { prune, renderReport, terminalProgress } from '../maintain.js';
import { skippedText } from '../scan.js';
import { existingRoot } from '../settings.js';

export default defineCommand({
	usage: 'prune [limits] [--kernel REL] [--dry-run] [--json]',
	description: `Evicts least recently used entries (last use = later of atime and mtime)
until every limit holds. With no limits given: the configured ones (ltocache
config shows them and where each comes from; by default max-size ${SETTINGS['max-size'].default}, max-age
${SETTINGS['max-age'].default}). A limit of 0 is no limit, as in LLVM's cache policy.`,
	settings: true,
	options: {
		'max-size': { type: 'string', arg: 'SIZE', help: 'cap on the whole root (or --kernel): 5 (GiB, as ccache), 500K, 10M, 1.5G, 123B' },
		'max-age': { type: 'string', arg: 'DURATION', help: 'evict entries unused for longer: 90s, 12h, 7d, 2w' },
		'max-files': { type: 'string', arg: 'N', help: 'cap on the number of entries' },
		'stale-kernels': { type: 'boolean', help: 'evict every release that is not installed' },
		policy: {
			type: 'string',
			arg: 'STRING',
			help: "LLVM's --thinlto-cache-policy syntax, over the whole root:\nprune_after=168h:cache_size_bytes=1g:cache_size_files=1000",
		},
		kernel: { type: 'string', arg: 'REL', help: 'only this kernel release' },
		'dry-run': { type: 'boolean', help: 'report what would be removed, remove nothing' },
		json: { type: 'boolean', help: 'machine-readable report' },
	},
	async run(values, env) {
		const limits = limitsFrom(values, env);
		const progress = terminalProgress(Boolean(values.json));
		const scope = { kernel: values.kernel };
		const report = await prune(existingRoot(env), limits, scope, Boolean(values['dry-run']), progress?.update).finally(progress?.done);
		process.stdout.write(renderReport(report, Boolean(values.json), binaryUnits(values['max-size'], env)));
		process.stderr.write(skippedText(report.skipped));
		return report.skipped.length > 0 ? 1 : 0;
	},
});
