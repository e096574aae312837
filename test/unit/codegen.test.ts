// The code-generation options that go into a directory's name
// (src/shim/codegen.ts): which options count, and that the contents of a
// file an option names count, not only its name.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { codegenKey, codegenOptions } from '../../src/shim/codegen.js';
import { scratchRoot } from '../helpers/tools.js';

const scratch = scratchRoot();

describe('code-generation options', () => {
	it('counts what reaches LTO, not the output kind, outputs, paths, inputs or the cache', () => {
		const words = [
			'-m',
			'elf_x86_64',
			'--thinlto-cache-dir=/c',
			'--thinlto-cache-policy',
			'prune_after=1h',
			'--thinlto-jobs=4',
			'-mllvm',
			'-import-instr-limit=5',
			'--plugin-opt=-align-all-functions=4',
			'--plugin-opt=jobs=2',
			'--lto-O2',
			'--lto-basic-block-sections=bb.txt',
			'-r',
			'-o',
			'out.o',
			'-L/lib',
			'-lc',
			'-Map',
			'x.map',
			'--threads=2',
			'a.o',
			'@list',
		];
		expect(codegenOptions(words)).toEqual([
			'mllvm=-import-instr-limit=5',
			'plugin-opt=-align-all-functions=4',
			'lto-O2',
			'lto-basic-block-sections=bb.txt',
		]);
		expect(codegenOptions(['-o', 'a', 'x.o', '--gc-sections'])).toEqual([]);
	});

	it('hashes the options, and the contents of the regular files they name', async () => {
		const cwd = scratch('cg');
		fs.writeFileSync(path.join(cwd, 'bb.txt'), '!main\n');
		const key = (...words: string[]) => codegenKey(words, cwd);
		expect(await key('-o', 'x', 'a.o')).toEqual({});
		const first = await key('--lto-basic-block-sections=bb.txt', '-mllvm', '-x=1');
		expect(first).toEqual({ hash: expect.stringMatching(/^[0-9a-f]{12}$/), identity: expect.stringMatching(/^\d+:\d+:6:\d+:\d+$/) });
		expect((await key('--lto-basic-block-sections=bb.txt', '-mllvm', '-x=2')).hash).not.toBe(first.hash);
		fs.writeFileSync(path.join(cwd, 'bb.txt'), '!other\n');
		expect((await key('--lto-basic-block-sections=bb.txt', '-mllvm', '-x=1')).hash).not.toBe(first.hash);
		// A name that is no file is only a value.
		expect(await key('-mllvm', '-x=missing')).toEqual({ hash: expect.stringMatching(/^[0-9a-f]{12}$/) });
	});
});
