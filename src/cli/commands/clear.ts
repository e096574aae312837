// `ltocache clear`: remove every entry, or one kernel's, or one module's.
import path from 'node:path';
import { defineCommand } from '../command.js';
import { binaryUnits } from '../limits.js';
import { clear, renderReport, terminalProgress } from '../maintain.js';
import { skippedText } from '../scan.js';
import { existingRoot } from '../settings.js';

export default defineCommand({
	usage: 'clear [--kernel REL] [--extmod PATH] [--dry-run] [--json]',
	description: `Removes every cache entry, or only one kernel release's, or one module's
(the M= / KBUILD_EXTMOD directory, or the original cache directory).
Links running meanwhile still succeed.`,
	settings: true,
	options: {
		kernel: { type: 'string', arg: 'REL', help: 'only this kernel release' },
		extmod: { type: 'string', arg: 'PATH', help: 'only this external module' },
		'dry-run': { type: 'boolean', help: 'report what would be removed, remove nothing' },
		json: { type: 'boolean', help: 'machine-readable report' },
	},
	async run(values, env) {
		const extmod = values.extmod === undefined ? undefined : path.resolve(values.extmod);
		const progress = terminalProgress(Boolean(values.json));
		const scope = { kernel: values.kernel, extmod };
		const report = await clear(existingRoot(env), scope, Boolean(values['dry-run']), progress?.update).finally(progress?.done);
		process.stdout.write(renderReport(report, Boolean(values.json), binaryUnits(undefined, env)));
		process.stderr.write(skippedText(report.skipped));
		return report.skipped.length > 0 ? 1 : 0;
	},
});
