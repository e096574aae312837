// Verifying a cached link (the verify setting, LTOCACHE_VERIFY): after a link
// that used a cache of ltocache's making succeeds, the same link runs again
// without the cache into a private output beside the build's, and the two
// are compared byte for byte. A mismatch means the cache served something
// an uncached link would not have: the build gets the uncached output, the
// directory's entries go (which of them the link used cannot be told), and
// a report under the root says what was linked, for a bug report.
//
// Loaded only when a link is to be verified.
import { closeSync, mkdtempSync, openSync, readSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { type Bytes, bytesToBuffer, bytesToText } from '../shared/bytes.js';
import { META_FILE, readMeta, removeEntriesSince } from '../shared/keydir.js';
import { MISMATCH_PREFIX, uniqueTag, writeOwnFile } from '../shared/root.js';
import { parse } from './options.js';

/**
 * lld's own options that write a file besides its output, or make an output
 * that differs from run to run (a random build id, sections shuffled with
 * seed 0): comparing the output alone would not cover such a link, or
 * would always differ. What the backends write besides the object is the
 * options table's side role (the plan's side).
 */
function unverifiable(words: Bytes[]): string | undefined {
	for (const opt of parse(words)) {
		if ('file' in opt) continue;
		if (['M', 'Map', 'print-map', 'dependency-file', 'why-extract', 'reproduce'].includes(opt.id))
			return 'the link writes more than its output';
		if (opt.id === 'build-id' && opt.value === 'uuid') return 'its output differs from run to run (--build-id=uuid)';
		if (opt.id === 'shuffle-sections' && opt.value?.endsWith('=0'))
			return 'its output differs from run to run (--shuffle-sections with seed 0)';
	}
	return undefined;
}

/** Where argv names the output: its index and how it is spelled (the value is args[index] after prefix, or the next argument). */
type OutputAt = { index: number; prefix: string; separate: boolean };

function outputIn(args: Bytes[]): OutputAt[] {
	const found: OutputAt[] = [];
	for (let i = 0; i < args.length; i++) {
		const a = args[i];
		if (a === '-o' || a === '--output' || a === '-output') found.push({ index: i++, prefix: '', separate: true });
		else if (a.startsWith('--output=') || a.startsWith('-output='))
			found.push({ index: i, prefix: a.slice(0, a.indexOf('=') + 1), separate: false });
		else if (a.startsWith('-o') && !a.startsWith('-o-')) found.push({ index: i, prefix: '-o', separate: false });
	}
	return found;
}

export type Verdict = { kind: 'match' } | { kind: 'mismatch'; report: string; removed: number } | { kind: 'skipped'; why: string };

/**
 * @param args the uncached link's argv (plan.uncached)
 * @param words the link's argv as lld reads it, response files expanded
 * @param side an option that asks the backends for more than the object (the plan's), if any
 * @param run runs the linker with the given argv, its output not shown; resolves with its exit status
 */
export async function verifyLink(
	args: Bytes[],
	words: Bytes[],
	side: string | undefined,
	cwd: string,
	dir: string,
	root: string,
	run: (args: Bytes[]) => Promise<number | null>,
	describe: () => string,
): Promise<Verdict> {
	if (side) return { kind: 'skipped', why: `the link writes more than its output (${side})` };
	const why = unverifiable(words);
	if (why) return { kind: 'skipped', why };
	const outputs = outputIn(args);
	// One in a response file: argv cannot be pointed elsewhere without rewriting the file.
	if (outputIn(words).length !== outputs.length) return { kind: 'skipped', why: 'its output is named in a response file' };
	const last = outputs.at(-1);
	const at = last ? last.index + (last.separate ? 1 : 0) : -1;
	const named = last ? (last.separate ? args[at] : args[at].slice(last.prefix.length)) : 'a.out';
	if (named === undefined || named === '-' || named === '') return { kind: 'skipped', why: 'its output is not a file' };
	// Relative as the linker read it: this process runs in the link's directory, whose name Node may not be able to spell (not UTF-8).
	const output = named;
	// Bytes (src/shared/bytes.ts) name the file; the private copy's name is built as text, which only ASCII keeps alike.
	if (!/^[\x20-\x7e]*$/.test(output)) return { kind: 'skipped', why: 'its output path is not plain ASCII' };
	// A device or FIFO (-o /dev/null) is not an output to compare, and renaming a file over it would replace it.
	if (!statSync(output, { throwIfNoEntry: false })?.isFile()) return { kind: 'skipped', why: 'its output is not a regular file' };
	const scratch = mkdtempSync(join(dirname(output), '.ltocache-verify-'));
	try {
		const mine = join(scratch, basename(output));
		const rewritten = args.slice();
		if (!last) rewritten.push('-o', mine);
		else rewritten[at] = (last.separate ? '' : last.prefix) + mine;
		const status = await run(rewritten);
		if (status !== 0) return { kind: 'skipped', why: `the uncached link ended with ${status === null ? 'a signal' : `status ${status}`}` };
		if (sameBytes(output, mine)) return { kind: 'match' };
		// The build gets what an uncached link gives, and nothing in the directory is trusted any more.
		renameSync(mine, output);
		let removed = 0;
		try {
			removed = removeEntriesSince(dir, 0);
		} catch {}
		const report = join(root, `${MISMATCH_PREFIX}${new Date().toISOString().replace(/[:.]/g, '-')}.${uniqueTag()}.txt`);
		writeOwnFile(report, mismatchReport(args, words, cwd, dir, describe()), 0o644);
		return { kind: 'mismatch', report, removed };
	} finally {
		rmSync(scratch, { recursive: true, force: true });
	}
}

/** Whether two files hold the same bytes, read a piece at a time (a whole kernel's vmlinux.o is hundreds of MB). */
function sameBytes(a: string, b: string): boolean {
	if (statSync(a).size !== statSync(b).size) return false;
	const [fa, fb] = [openSync(a, 'r'), openSync(b, 'r')];
	try {
		const [ba, bb] = [Buffer.alloc(1 << 20), Buffer.alloc(1 << 20)];
		for (;;) {
			const n = readSync(fa, ba, 0, ba.length, null);
			const m = readSync(fb, bb, 0, bb.length, null);
			if (n !== m || !ba.subarray(0, n).equals(bb.subarray(0, m))) return false;
			if (n === 0) return true;
		}
	} finally {
		closeSync(fa);
		closeSync(fb);
	}
}

/** What a bug report needs: argv, working directory, each input's identity, the directory's metadata (the .incbin files), the linker. */
function mismatchReport(args: Bytes[], words: Bytes[], cwd: string, dir: string, linker: string): string {
	const lines = [
		'ltocache: a cached link differed from the same link without a cache',
		`linker: ${linker}`,
		`cwd: ${cwd}`,
		`cache directory: ${dir}`,
		`argv (uncached): ${JSON.stringify(args.map(bytesToText))}`,
		'inputs (name: device:inode size mtime):',
	];
	const outputs = new Set(outputIn(words).map((o) => o.index + (o.separate ? 1 : 0)));
	for (const [i, word] of words.entries()) {
		if (word.startsWith('-') || outputs.has(i)) continue;
		try {
			const st = statSync(bytesToBuffer(word));
			if (st.isFile()) lines.push(`  ${bytesToText(word)}: ${st.dev}:${st.ino} ${st.size} ${st.mtime.toISOString()}`);
		} catch {}
	}
	const meta = readMeta(dir);
	if (meta) lines.push(`${META_FILE}: ${JSON.stringify(meta)}`);
	return `${lines.join('\n')}\n`;
}
