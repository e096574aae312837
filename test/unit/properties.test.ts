// Property-based tests: generated input for the argv and response-file
// parser and for the limits users type. The real lld is the oracle in
// test/integration/oracle.test.ts; here the properties are internal.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../src/cli/command.js';
import { parseDuration, parsePolicy, parseSize } from '../../src/cli/limits.js';
import { shown } from '../../src/shared/bytes.js';
import { CACHE_FLAG, scanArgs, tokenizeGnu } from '../../src/shim/argv.js';

const RUNS = 500;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ltocache-prop-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A byte string (one char per byte) without NUL, the only byte argv cannot hold. */
const byteString = (min = 0) =>
	fc.array(fc.integer({ min: 1, max: 255 }), { minLength: min, maxLength: 24 }).map((bytes) => String.fromCharCode(...bytes));
/** Bytes that mean something to the GNU tokenizer, mixed in often. */
const tricky = fc.constantFrom(' ', '\t', '\n', '\r', "'", '"', '\\', '@', '=', '\xff', '\xe9');
const arg = (min = 0) => fc.array(fc.oneof(byteString(1), tricky), { minLength: min, maxLength: 6 }).map((parts) => parts.join(''));

/** GNU quoting three ways: every byte escaped, single quotes, double quotes. */
const quoters: ((a: string) => string)[] = [
	(a) => a.replace(/[\s\S]/g, (c) => `\\${c}`),
	(a) => `'${a.replace(/['\\]/g, (c) => `\\${c}`)}'`,
	(a) => `"${a.replace(/["\\]/g, (c) => `\\${c}`)}"`,
];
const serialize = (args: string[], quoting: number[]) => args.map((a, i) => quoters[quoting[i % quoting.length]](a)).join(' \n\t');

let files = 0;
const writeRsp = (content: string) => {
	const file = path.join(dir, `r${files++}.rsp`);
	fs.writeFileSync(file, Buffer.from(content, 'latin1'));
	return file;
};

describe('tokenizeGnu', () => {
	it('reads back any non-empty arguments, however they are quoted', () => {
		fc.assert(
			fc.property(
				fc.array(arg(1), { maxLength: 12 }),
				fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 1, maxLength: 4 }),
				(args, quoting) => {
					expect(tokenizeGnu(serialize(args, quoting))).toEqual(args);
				},
			),
			{ numRuns: RUNS },
		);
	});

	it('never throws, and never yields an empty token, on any bytes (unterminated quotes included)', () => {
		fc.assert(
			fc.property(
				fc.array(fc.oneof(byteString(), tricky)).map((p) => p.join('')),
				(src) => {
					const tokens = tokenizeGnu(src);
					expect(tokens.every((t) => t.length > 0)).toBe(true);
				},
			),
			{ numRuns: RUNS },
		);
	});
});

describe('scanArgs', () => {
	const flagged = fc.array(
		fc.oneof(
			arg(),
			arg().map((a) => CACHE_FLAG + a),
		),
		{ maxLength: 12 },
	);
	const lastFlag = (args: string[]) =>
		args
			.filter((a) => a.startsWith(CACHE_FLAG))
			.pop()
			?.slice(CACHE_FLAG.length);
	const scanned = (args: string[]) => {
		const scan = scanArgs(args, dir);
		return scan.kind === 'flag' ? scan.flag.value : scan.kind === 'none' ? undefined : scan;
	};
	const noAt = (args: string[]) => args.filter((a) => !a.startsWith('@') && !a.startsWith('--rsp-quoting='));

	it('takes the last --thinlto-cache-dir= on the command line', () => {
		fc.assert(
			fc.property(flagged.map(noAt), (args) => {
				expect(scanned(args)).toBe(lastFlag(args));
			}),
			{ numRuns: RUNS },
		);
	});

	it('finds the same flag when the arguments sit in a response file, nested or not', () => {
		fc.assert(
			fc.property(flagged.map(noAt), flagged.map(noAt), fc.integer({ min: 0, max: 2 }), (before, inside, quoting) => {
				const nonEmpty = inside.filter((a) => a !== '');
				const inner = writeRsp(serialize(nonEmpty, [quoting]));
				const outer = writeRsp(`@${inner}\n`);
				const expected = lastFlag([...before, ...nonEmpty]);
				expect(scanned([...before, `@${inner}`])).toBe(expected);
				expect(scanned([...before, `@${outer}`])).toBe(expected);
			}),
			{ numRuns: 200 },
		);
	});

	it('copes with a huge argv', () => {
		const args = Array.from({ length: 200_000 }, (_, i) => (i % 1000 === 0 ? `${CACHE_FLAG}/c${i}` : `/obj/file${i}.o`));
		expect(scanned(args)).toBe('/c199000');
	});

	it('is unsure, never looping, about response files that include each other', () => {
		const a = path.join(dir, 'loop-a.rsp');
		const b = path.join(dir, 'loop-b.rsp');
		fs.writeFileSync(a, `-r @${b}`);
		fs.writeFileSync(b, `@${a} ${CACHE_FLAG}x`);
		expect(scanArgs([`@${a}`], dir)).toMatchObject({ kind: 'unsure', why: expect.stringContaining('recursive') });
	});
});

describe('limits', () => {
	// The units as documented: sizes in powers of 1024 (K..T, Ki..Ti, KiB..TiB) or 1000 (KB..TB), GiB without a unit, as ccache; durations s..w.
	const SIZE: Record<string, number> = { '': 1024 ** 3, b: 1, k: 1024, ki: 1024, kib: 1024, kb: 1e3, m: 1024 ** 2, mi: 1024 ** 2 };
	Object.assign(SIZE, { mib: 1024 ** 2, mb: 1e6, g: 1024 ** 3, gi: 1024 ** 3, gib: 1024 ** 3, gb: 1e9 });
	Object.assign(SIZE, { t: 1024 ** 4, ti: 1024 ** 4, tib: 1024 ** 4, tb: 1e12 });
	const DURATION: Record<string, number> = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 };
	const bySpec = (units: Record<string, number>, unitCase: (u: string) => string) => (text: string) => {
		const [, n, unit] = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$/.exec(text) ?? [];
		if (n === undefined || units[unitCase(unit)] === undefined) return undefined;
		const value = Math.floor(Number(n) * units[unitCase(unit)]);
		// Never rounded to 0, which is no limit: less than one is refused.
		return value === 0 && Number(n) !== 0 ? undefined : value;
	};

	/** The value the documented units give, or a UsageError naming the input; never anything else. */
	const total = (parse: (text: string) => number, spec: (text: string) => number | undefined) => (text: string) => {
		try {
			expect(parse(text)).toBe(spec(text));
		} catch (error) {
			if (!(error instanceof UsageError)) throw error;
			expect(spec(text)).toBeUndefined();
			expect((error as Error).message).toContain(`'${text}'`);
			expect((error as Error).message).not.toContain('\n');
		}
	};
	const text = fc.oneof(fc.string(), fc.stringMatching(/^-?[0-9.]{0,6}[A-Za-z%]{0,4}$/));

	it('parseSize and parseDuration return what the documented units give, or a clear error, for any input', () => {
		fc.assert(
			fc.property(
				text,
				total(
					parseSize,
					bySpec(SIZE, (u) => u.toLowerCase()),
				),
			),
			{ numRuns: RUNS },
		);
		// A duration takes its unit right after the number, and needs one, but for a bare 0 (no limit).
		const durationSpec = (t: string) =>
			t.trim() === '0' ? 0 : /^\s*\d+(\.\d+)?[smhdw]\s*$/.test(t) ? bySpec(DURATION, (u) => u)(t) : undefined;
		fc.assert(fc.property(text, total(parseDuration, durationSpec)), { numRuns: RUNS });
	});

	it('parseSize agrees with the arithmetic for every well-formed size', () => {
		const units = { '': 1024 ** 3, B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, KiB: 1024, GiB: 1024 ** 3, KB: 1000, MB: 1e6 };
		fc.assert(
			fc.property(fc.integer({ min: 0, max: 1e6 }), fc.constantFrom(...Object.keys(units)), (n, unit) => {
				expect(parseSize(`${n}${unit}`)).toBe(n * units[unit as keyof typeof units]);
			}),
			{ numRuns: RUNS },
		);
	});

	it('parsePolicy accepts what LLVM accepts and rejects the rest by name', () => {
		const pair = fc.oneof(
			fc
				.tuple(fc.constantFrom('prune_after', 'prune_interval'), fc.nat(1000), fc.constantFrom('s', 'm', 'h'))
				.map(([k, n, u]) => `${k}=${n}${u}`),
			fc.nat(100).map((n) => `cache_size=${n}%`),
			fc.tuple(fc.nat(1e6), fc.constantFrom('', 'k', 'm', 'g')).map(([n, u]) => `cache_size_bytes=${n}${u}`),
			fc.nat(1e6).map((n) => `cache_size_files=${n}`),
		);
		fc.assert(
			fc.property(fc.array(pair, { minLength: 1, maxLength: 5 }), (pairs) => {
				expect(() => parsePolicy(pairs.join(':'))).not.toThrow();
			}),
			{ numRuns: RUNS },
		);
		fc.assert(
			fc.property(fc.string(), (policy) => {
				try {
					parsePolicy(policy);
				} catch (error) {
					expect(error).toBeInstanceOf(UsageError);
					expect((error as Error).message).toContain(`'${policy}'`);
				}
			}),
			{ numRuns: RUNS },
		);
	});
});

describe('shown', () => {
	it('leaves no C0 or C1 control character or DEL, keeps all else, and each escape names the character it replaced', () => {
		const isControl = (c: string) => c.charCodeAt(0) <= 0x1f || (c.charCodeAt(0) >= 0x7f && c.charCodeAt(0) <= 0x9f);
		fc.assert(
			fc.property(
				fc.string({
					unit: fc.oneof(
						fc.integer({ min: 0, max: 0xa0 }).map((n) => String.fromCharCode(n)),
						fc.constantFrom('é', '\u202e', '日'),
					),
				}),
				(text) => {
					const out = shown(text);
					expect([...out].some(isControl)).toBe(false);
					const back = out.replace(/\\x([0-9a-f]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
					if (!text.includes('\\x')) expect(back).toBe(text);
				},
			),
			{ numRuns: RUNS },
		);
		expect(shown('a\x1b]0;t\x07\x1b[2J\x7f\x9b\n b/é')).toBe('a\\x1b]0;t\\x07\\x1b[2J\\x7f\\x9b\\x0a b/é');
	});
});
