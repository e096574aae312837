// `ltocache stats`: what is cached, per kernel release and per module.
import prettyBytes from 'pretty-bytes';
import { NO_KERNEL } from '../../shared/keydir.js';
import { resolveRoot } from '../../shared/root.js';
import { defineCommand } from '../command.js';
import { type Kernel, type Scope, scanRoot, totals } from '../scan.js';

export default defineCommand({
	usage: 'stats [--json] [--kernel REL]',
	description: 'Shows what is cached, per kernel release and module: entries, size, last use.',
	options: {
		kernel: { type: 'string', arg: 'REL', help: 'only this kernel release' },
		json: { type: 'boolean', help: 'machine-readable output (schema in ltocache(1))' },
	},
	async run(values, env) {
		const stats = await collectStats(resolveRoot(env, false), { kernel: values.kernel });
		process.stdout.write(values.json ? `${JSON.stringify(stats, null, 2)}\n` : renderStats(stats));
		return 0;
	},
});

/** The --json schema (documented in ltocache(1)); fields are only ever added. */
export type StatsJson = {
	schema: 1;
	root: string | null;
	totalEntries: number;
	totalBytes: number;
	tempFiles: number;
	kernels: {
		release: string;
		installed: boolean;
		entries: number;
		bytes: number;
		lastUse: string | null;
		tempFiles: number;
		keys: {
			key: string;
			extmod: string | null;
			original: string | null;
			entries: number;
			bytes: number;
			lastUse: string | null;
			tempFiles: number;
			foreignFiles: number;
		}[];
	}[];
};

const iso = (ms: number | null) => (ms ? new Date(ms).toISOString() : null);

export async function collectStats(root: string | undefined, scope: Scope): Promise<StatsJson> {
	const kernels: Kernel[] = root ? await scanRoot(root, scope, false) : [];
	const all = totals(kernels.flatMap((k) => k.keys));
	return {
		schema: 1,
		root: root ?? null,
		totalEntries: all.entries,
		totalBytes: all.bytes,
		tempFiles: all.temps,
		kernels: kernels.map((kernel) => {
			const t = totals(kernel.keys);
			return {
				release: kernel.release,
				installed: kernel.installed,
				entries: t.entries,
				bytes: t.bytes,
				lastUse: iso(t.lastUse),
				tempFiles: t.temps,
				keys: kernel.keys.map((key) => {
					const k = totals([key]);
					return {
						key: key.name,
						extmod: key.meta?.extmod ?? null,
						original: key.meta?.original ?? null,
						entries: k.entries,
						bytes: k.bytes,
						lastUse: iso(k.lastUse),
						tempFiles: k.temps,
						foreignFiles: key.foreign,
					};
				}),
			};
		}),
	};
}

function when(isoDate: string | null): string {
	if (!isoDate) return '-';
	const d = new Date(isoDate);
	const pad = (n: number) => String(n).padStart(2, '0');
	return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** Columns: left-aligned text first, right-aligned numbers after. */
function table(rows: string[][], leftColumns = 1): string {
	const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
	return rows
		.map((r) =>
			r
				.map((cell, i) => (i < leftColumns ? cell.padEnd(widths[i]) : cell.padStart(widths[i])))
				.join('  ')
				.trimEnd(),
		)
		.join('\n');
}

function renderStats(stats: StatsJson): string {
	if (stats.root === null) return 'cache root: none usable (see ltocache doctor)\nnothing cached\n';
	const rows = [['KERNEL / MODULE', 'INSTALLED', 'ENTRIES', 'SIZE', 'LAST USE']];
	for (const kernel of stats.kernels) {
		const installed = kernel.release === NO_KERNEL ? '-' : kernel.installed ? 'yes' : 'no';
		rows.push([kernel.release, installed, String(kernel.entries), prettyBytes(kernel.bytes), when(kernel.lastUse)]);
		for (const key of kernel.keys) {
			rows.push([`  ${key.extmod ?? key.original ?? key.key}`, '', String(key.entries), prettyBytes(key.bytes), when(key.lastUse)]);
		}
	}
	rows.push(['total', '', String(stats.totalEntries), prettyBytes(stats.totalBytes), '']);
	const lines = [`cache root: ${stats.root}`, table(rows, 2)];
	if (stats.tempFiles > 0) lines.push(`in-flight temporary files: ${stats.tempFiles}`);
	return `${lines.join('\n')}\n`;
}
