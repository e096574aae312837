// The real ld.lld as the oracle for the response-file parser: for generated
// cache directory names, quoted at random in a response file, lld creates
// its cache exactly where the shim's parser says it will.
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import fc from 'fast-check';
import { beforeAll, expect, it } from 'vitest';
import { CACHE_FLAG, scanArgs } from '../../src/shim/argv.js';
import { compileThin, describeIf, hasToolchain, LLD, scratchRoot, TOOLCHAIN } from '../helpers/tools.js';

const scratch = scratchRoot();
const RUNS = 100;

describeIf(hasToolchain, TOOLCHAIN)('ld.lld agrees with the shim on response files', () => {
	let objects: string[] = [];
	beforeAll(() => {
		objects = compileThin(scratch('obj'));
	});

	// One path component of bytes that mean something to GNU quoting (no '/' and no NUL).
	const name = fc
		.array(
			fc.oneof(
				fc.constantFrom(' ', '\t', "'", '"', '\\', '#', '$', '\xe9', '\xff', '@', '='),
				fc.constantFrom('a', 'b', 'Z', '0', '.', '-'),
			),
			{ minLength: 1, maxLength: 12 },
		)
		.map((parts) => parts.join(''))
		.filter((s) => s !== '.' && s !== '..' && s.trim() === s && !s.startsWith('@'));
	const quote = [
		(a: string) => a.replace(/[\s\S]/g, (c) => `\\${c}`),
		(a: string) => `'${a.replace(/['\\]/g, (c) => `\\${c}`)}'`,
		(a: string) => `"${a.replace(/["\\]/g, (c) => `\\${c}`)}"`,
	];

	it(`puts the cache where the parser says, for ${RUNS} generated names and quotings`, async () => {
		await fc.assert(
			fc.asyncProperty(name, name, fc.nat(2), fc.nat(2), fc.boolean(), async (first, last, q1, q2, nested) => {
				const cwd = scratch('cwd');
				const rsp = `${quote[q1](CACHE_FLAG + first)}\n-r ${quote[q2](CACHE_FLAG + last)} ${objects.join(' ')}\n`;
				fs.writeFileSync(path.join(cwd, 'inner.rsp'), Buffer.from(rsp, 'latin1'));
				fs.writeFileSync(path.join(cwd, 'outer.rsp'), '@inner.rsp');
				const top = nested ? '@outer.rsp' : '@inner.rsp';
				const scan = scanArgs([top, '-o', 'out.o'], cwd);
				expect(scan.kind).toBe('flag');
				const parsed = scan.kind === 'flag' ? Buffer.from(scan.flag.value, 'latin1') : Buffer.alloc(0);

				const result = await execa(LLD, [top, '-o', 'out.o'], { cwd, reject: false });
				expect(result.stderr).toBe('');
				const made = (fs.readdirSync(cwd, { encoding: 'buffer' }) as Buffer[]).filter(
					(f) => !['inner.rsp', 'outer.rsp', 'out.o'].includes(f.toString('latin1')),
				);
				expect(made).toEqual([parsed]);
				expect(parsed.equals(Buffer.from(last, 'latin1'))).toBe(true);
			}),
			{ numRuns: RUNS },
		);
	});
});
