// `ltocache stats`: what is cached, per kernel release and per module.
import prettyBytes from 'pretty-bytes';
import { shown } from '../../shared/bytes.js';
import { addCounters, type Counters, readCounters, zeroCounters } from '../../shared/counters.js';
import { isIncbinVariant, isOptionsVariant, NO_KERNEL } from '../../shared/keydir.js';
import { defineCommand } from '../command.js';
import { binaryUnits, configuredLimits, type Limits } from '../limits.js';
import {
	type Kernel,
	type Key,
	listReleases,
	plural,
	type Scope,
	type Skip,
	scanRoot,
	skippedText,
	totals,
	unknownKernel,
} from '../scan.js';
import { managedRoot } from '../settings.js';

export default defineCommand({
	usage: 'stats [--json] [--kernel REL] [--zero]',
	description: `Shows what is cached, per kernel release and module: links, cache hits and
misses, hit rate, entries, size, last use. --zero resets the counters and
nothing else.`,
	settings: true,
	options: {
		kernel: { type: 'string', arg: 'REL', help: 'only this kernel release' },
		json: { type: 'boolean', help: 'machine-readable output (schema in ltocache(1))' },
		zero: { type: 'boolean', help: 'reset the links, hits and misses counted so far (of --kernel only, if given)' },
	},
	async run(values, env) {
		const root = managedRoot(env);
		const scope = { kernel: values.kernel };
		if (values.kernel !== undefined && !(root && listReleases(root).includes(values.kernel))) throw unknownKernel(root, values.kernel);
		if (values.zero) {
			const zeroed = root ? await zero(root, scope) : 0;
			process.stdout.write(
				values.json
					? `${JSON.stringify({ root: root ?? null, zeroed })}\n`
					: `zeroed the counters of ${plural(zeroed, 'module directory', 'module directories')}${root ? ` in ${shown(root)}` : ''}\n`,
			);
			return 0;
		}
		const stats = await collectStats(root, scope, env);
		process.stdout.write(values.json ? `${JSON.stringify(stats, null, 2)}\n` : renderStats(stats, binaryUnits(undefined, env)));
		process.stderr.write(skippedText(stats.skipped));
		return stats.skipped.length > 0 ? 1 : 0;
	},
});

/** Under the root's lock, so a prune compacting the counters meanwhile cannot bring them back. */
async function zero(root: string, scope: Scope): Promise<number> {
	const { withLock } = await import('../lock.js'); // only --zero needs it
	return withLock(root, async () => {
		const keys = (await scanRoot(root, scope, false)).flatMap((k) => k.keys);
		for (const key of keys) zeroCounters(key.dir);
		return keys.length;
	});
}

type Counted = {
	links: number;
	hits: number;
	misses: number;
	bytesWritten: number;
	linkMs: number;
	/** With a remote: the entries downloaded before links (remote hits) and uploaded after, and their bytes. */
	remoteDownloads: number;
	remoteDownloadBytes: number;
	remoteUploads: number;
	remoteUploadBytes: number;
	/** With a remote: the links whose use of it failed, by how (at most one a link): no answer within remote-timeout, not reached (refused, unknown host, unreachable), any other error, and not tried because a link shortly before found it down. */
	remoteTimeouts: number;
	remoteUnreachable: number;
	remoteErrors: number;
	remoteSkipped: number;
	/** Links checked against the same link without a cache (the verify setting), and those whose output differed. */
	verifiedLinks: number;
	verifyMismatches: number;
};
const counted = (c: Counters): Counted => ({
	links: c.links,
	hits: c.hits,
	misses: c.misses,
	bytesWritten: c.bytes,
	linkMs: c.ms,
	remoteDownloads: c.downloads,
	remoteDownloadBytes: c.downloadBytes,
	remoteUploads: c.uploads,
	remoteUploadBytes: c.uploadBytes,
	remoteTimeouts: c.timeouts,
	remoteUnreachable: c.unreachable,
	remoteErrors: c.errors,
	remoteSkipped: c.skipped,
	verifiedLinks: c.verified,
	verifyMismatches: c.mismatches,
});

/** The --json schema (documented in ltocache(1)); fields are only ever added. */
export type StatsJson = {
	schema: 2;
	root: string | null;
	totalLinks: number;
	totalHits: number;
	totalMisses: number;
	remote: Pick<
		Counted,
		| 'remoteDownloads'
		| 'remoteDownloadBytes'
		| 'remoteUploads'
		| 'remoteUploadBytes'
		| 'remoteTimeouts'
		| 'remoteUnreachable'
		| 'remoteErrors'
		| 'remoteSkipped'
	>;
	verified: Pick<Counted, 'verifiedLinks' | 'verifyMismatches'>;
	totalEntries: number;
	totalBytes: number;
	tempFiles: number;
	/** What prune (and the daily auto-prune) keeps the cache within, null where none; null if the configuration is not right. */
	limits: { maxBytes: number | null; maxAge: number | null; maxFiles: number | null; usedPercent: number | null } | null;
	/** Directories it could not read, and why (an errno name): not in the counts; the exit status is then 1. */
	skipped: Skip[];
	kernels: (Counted & {
		release: string;
		installed: boolean;
		entries: number;
		bytes: number;
		lastUse: string | null;
		tempFiles: number;
		keys: (Counted & {
			key: string;
			extmod: string | null;
			original: string | null;
			entries: number;
			bytes: number;
			lastUse: string | null;
			tempFiles: number;
			foreignFiles: number;
		})[];
	})[];
};

const iso = (ms: number | null) => (ms ? new Date(ms).toISOString() : null);

/** The configured limits, and how full the cache is against the tighter of size and count. */
function limitsOf(all: { entries: number; bytes: number }, env: NodeJS.ProcessEnv): StatsJson['limits'] {
	const limits: Limits = configuredLimits(env); // bad configuration: exit status 2, as in every command
	const shares = [limits.maxBytes && all.bytes / limits.maxBytes, limits.maxFiles && all.entries / limits.maxFiles].filter(
		(x): x is number => typeof x === 'number',
	);
	return {
		maxBytes: limits.maxBytes ?? null,
		maxAge: limits.maxAge ?? null,
		maxFiles: limits.maxFiles ?? null,
		usedPercent: shares.length ? Math.round(1000 * Math.max(...shares)) / 10 : null,
	};
}

export async function collectStats(root: string | undefined, scope: Scope, env: NodeJS.ProcessEnv = process.env): Promise<StatsJson> {
	const skipped: Skip[] = [];
	const kernels: Kernel[] = root ? await scanRoot(root, scope, false, undefined, skipped) : [];
	const all = totals(kernels.flatMap((k) => k.keys));
	// Read afresh on every run: the shim appends to them without touching what the summaries go by.
	const counters = new Map<Key, Counters>(kernels.flatMap((k) => k.keys.map((key) => [key, readCounters(key.dir)] as const)));
	const sum = (keys: Key[]) => addCounters(keys.map((key) => counters.get(key)!));
	const grand = sum(kernels.flatMap((k) => k.keys));
	return {
		schema: 2,
		root: root ?? null,
		totalLinks: grand.links,
		totalHits: grand.hits,
		totalMisses: grand.misses,
		remote: {
			remoteDownloads: grand.downloads,
			remoteDownloadBytes: grand.downloadBytes,
			remoteUploads: grand.uploads,
			remoteUploadBytes: grand.uploadBytes,
			remoteTimeouts: grand.timeouts,
			remoteUnreachable: grand.unreachable,
			remoteErrors: grand.errors,
			remoteSkipped: grand.skipped,
		},
		verified: { verifiedLinks: grand.verified, verifyMismatches: grand.mismatches },
		totalEntries: all.entries,
		totalBytes: all.bytes,
		tempFiles: all.temps,
		limits: limitsOf(all, env),
		skipped,
		kernels: kernels.map((kernel) => {
			const t = totals(kernel.keys);
			return {
				release: kernel.release,
				installed: kernel.installed,
				...counted(sum(kernel.keys)),
				entries: t.entries,
				bytes: t.bytes,
				lastUse: iso(t.lastUse),
				tempFiles: t.temps,
				keys: kernel.keys.map((key) => {
					const k = totals([key]);
					return {
						key: key.name,
						...counted(counters.get(key)!),
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

/** Hits over lookups, as ccache shows it; '-' before the first lookup. */
function rate(c: { hits: number; misses: number }): string {
	const lookups = c.hits + c.misses;
	return lookups ? `${((100 * c.hits) / lookups).toFixed(1)}%` : '-';
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

function limitsLine(limits: StatsJson['limits'], binary: boolean): string {
	if (limits === null) return 'limits: the configuration is not right (see ltocache config)';
	const days = (ms: number) => `${+(ms / 86_400_000).toFixed(1)}d`;
	const parts = [
		`max-size ${limits.maxBytes === null ? 'none' : prettyBytes(limits.maxBytes, { binary })}`,
		`max-age ${limits.maxAge === null ? 'none' : days(limits.maxAge)}`,
		...(limits.maxFiles === null ? [] : [`max-files ${limits.maxFiles}`]),
	];
	const full = limits.usedPercent === null ? '' : `; ${limits.usedPercent}% full`;
	return `limits: ${parts.join(', ')}${full} (ltocache config)`;
}

/** @param binary sizes in KiB, MiB, GiB (else kB, MB, GB), as max-size is written */
function renderStats(stats: StatsJson, binary: boolean): string {
	const size = (bytes: number) => prettyBytes(bytes, { binary });
	if (stats.root === null) return 'cache root: none usable (see ltocache doctor)\nnothing cached\n';
	const rows = [['KERNEL / MODULE', 'INSTALLED', 'LINKS', 'HITS', 'MISSES', 'HIT RATE', 'ENTRIES', 'SIZE', 'LAST USE']];
	const counts = (c: { links: number; hits: number; misses: number }) => [String(c.links), String(c.hits), String(c.misses), rate(c)];
	for (const kernel of stats.kernels) {
		const installed = kernel.release === NO_KERNEL ? '-' : kernel.installed ? 'yes' : 'no';
		rows.push([shown(kernel.release), installed, ...counts(kernel), String(kernel.entries), size(kernel.bytes), when(kernel.lastUse)]);
		for (const key of kernel.keys) {
			// Two rows of one module differ by what their directory's name holds beside it: options, .incbin files.
			const variants = [isOptionsVariant(key.key) && 'options', isIncbinVariant(key.key) && '.incbin'].filter(Boolean);
			const name = `  ${shown(key.extmod ?? key.original ?? key.key)}${variants.length ? ` (${variants.join(', ')} variant)` : ''}`;
			rows.push([name, '', ...counts(key), String(key.entries), size(key.bytes), when(key.lastUse)]);
		}
	}
	const total = { links: stats.totalLinks, hits: stats.totalHits, misses: stats.totalMisses };
	rows.push(['total', '', ...counts(total), String(stats.totalEntries), size(stats.totalBytes), '']);
	const lines = [`cache root: ${shown(stats.root)}`, table(rows, 2)];
	if (stats.tempFiles > 0) lines.push(`in-flight temporary files: ${stats.tempFiles}`);
	const r = stats.remote;
	if (r.remoteDownloads || r.remoteUploads) {
		lines.push(
			`remote: ${plural(r.remoteDownloads, 'entry', 'entries')} downloaded (${size(r.remoteDownloadBytes)}), ${r.remoteUploads} uploaded (${size(r.remoteUploadBytes)})`,
		);
	}
	if (r.remoteTimeouts || r.remoteUnreachable || r.remoteErrors || r.remoteSkipped) {
		lines.push(
			`remote failures: ${r.remoteTimeouts} timed out, ${r.remoteUnreachable} unreachable, ${plural(r.remoteErrors, 'other error')}; ${plural(r.remoteSkipped, 'link')} skipped it as down`,
		);
	}
	const v = stats.verified;
	if (v.verifiedLinks)
		lines.push(
			`verified: ${plural(v.verifiedLinks, 'link')} against the uncached link, ${plural(v.verifyMismatches, 'mismatch', 'mismatches')}`,
		);
	lines.push(limitsLine(stats.limits, binary));
	return `${lines.join('\n')}\n`;
}
