// The code-generation options that go into a directory's name
// (src/shim/codegen.ts): which options count, and that the contents of a
// file an option names count, not only its name.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openMemo } from '../../src/shared/memo.js';
import { codegenKey, codegenOptions, identitiesNow, readOptions } from '../../src/shim/codegen.js';
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
		const key = (...words: string[]) => codegenKey(readOptions(words, cwd));
		expect(await key('-o', 'x', 'a.o')).toEqual({});
		const first = await key('--lto-basic-block-sections=bb.txt', '-mllvm', '-x=1');
		expect(first).toEqual({
			hash: expect.stringMatching(/^[0-9a-f]{12}$/),
			files: [path.join(cwd, 'bb.txt')],
			identity: expect.stringMatching(/^\d+:\d+:6:\d+:\d+$/),
			read: 1,
		});
		expect(identitiesNow(first.files!)).toBe(first.identity);
		expect((await key('--lto-basic-block-sections=bb.txt', '-mllvm', '-x=2')).hash).not.toBe(first.hash);
		fs.writeFileSync(path.join(cwd, 'bb.txt'), '!other\n');
		expect((await key('--lto-basic-block-sections=bb.txt', '-mllvm', '-x=1')).hash).not.toBe(first.hash);
		// A name that is no file is only a value.
		expect(await key('-mllvm', '-x=missing')).toEqual({ hash: expect.stringMatching(/^[0-9a-f]{12}$/) });
	});

	it('hashes a file once per identity with a memo: unchanged, the digest is remembered; changed, read again', async () => {
		const cwd = scratch('cg-memo');
		const root = scratch('cg-root');
		const compiler = path.join(cwd, 'clang');
		fs.writeFileSync(compiler, 'compiler one\n');
		await new Promise((r) => setTimeout(r, 2100)); // past the memo's racy window of its ctime
		const words = ['--thinlto-distributor=/bin/true', `--thinlto-remote-compiler=${compiler}`, '--thinlto-remote-compiler-arg=-O2'];
		const opts = readOptions(words, cwd);
		expect(opts.files).toEqual(['/bin/true', compiler]);
		const memo = openMemo(root, cwd, ['link']);
		const first = await codegenKey(opts, memo);
		memo.save();
		// The remembered digest is used: a memo that says otherwise for the same identity is believed.
		const memo2 = openMemo(root, cwd, ['link']);
		const st = fs.statSync(compiler, { bigint: true });
		expect(memo2.recallDigest(compiler, st)).toMatch(/^[0-9a-f]{64}$/);
		memo2.learnDigest(compiler, st, '0'.repeat(64));
		memo2.save();
		expect((await codegenKey(opts, openMemo(root, cwd, ['link']))).hash).not.toBe(first.hash);
		expect((await codegenKey(opts)).hash).toBe(first.hash);
		// A changed file has another identity: read again, whatever the memo holds.
		fs.writeFileSync(compiler, 'compiler two\n');
		const changed = await codegenKey(opts, openMemo(root, cwd, ['link']));
		expect(changed.hash).not.toBe(first.hash);
		expect(changed.identity).not.toBe(first.identity);
		expect(identitiesNow(first.files!)).not.toBe(first.identity);
	});

	it('follows an LLVM option response file (--mllvm=@FILE) into the key, and sees side outputs inside it', async () => {
		const cwd = scratch('cg-rsp');
		fs.writeFileSync(path.join(cwd, 'opts'), '-import-instr-limit=5\n');
		const key = async () => (await codegenKey(readOptions(['--mllvm=@opts'], cwd))).hash;
		const first = await key();
		fs.writeFileSync(path.join(cwd, 'opts'), '-import-instr-limit=9\n');
		expect(await key()).not.toBe(first);
		fs.writeFileSync(path.join(cwd, 'opts'), '@inner\n');
		fs.writeFileSync(path.join(cwd, 'inner'), '-pass-remarks=.\n');
		expect(readOptions(['-mllvm=@opts'], cwd).side).toBe('--mllvm=@opts (-pass-remarks=.)');
		expect(readOptions(['--mllvm=@opts'], cwd).files).toEqual([path.join(cwd, 'opts'), path.join(cwd, 'inner')]);
		fs.writeFileSync(path.join(cwd, 'inner'), '@opts\n');
		expect(readOptions(['--mllvm=@opts'], cwd).problem).toMatch(/circle/);
		expect(readOptions(['--mllvm=@missing'], cwd).problem).toMatch(/^cannot read missing, the response file of --mllvm=@missing/);
		expect(readOptions(['--mllvm=@.'], cwd).problem).toBe('cannot read ., the response file of --mllvm=@. (not a regular file)');
	});

	it('names the options that ask the backends for side outputs, and takes no file they name for an input', () => {
		const side = (...words: string[]) => readOptions(words, '/').side;
		expect(side('-o', 'a', 'x.o', '-mllvm', '-import-instr-limit=5', '--lto-O2')).toBeUndefined();
		expect(side('--save-temps')).toBe('--save-temps');
		expect(side('-save-temps')).toBe('--save-temps');
		expect(side('--plugin-opt=save-temps')).toBe('--plugin-opt=save-temps');
		expect(side('--lto-obj-path=/etc/passwd')).toBe('--lto-obj-path=/etc/passwd');
		expect(side('-mllvm', '-pass-remarks=.')).toBe('--mllvm=-pass-remarks=.');
		expect(side('--plugin-opt=-pass-remarks-missed=inline')).toBe('--plugin-opt=-pass-remarks-missed=inline');
		expect(side('--opt-remarks-filename', 'r.yaml')).toBe('--opt-remarks-filename=r.yaml');
		expect(side('--time-trace')).toBe('--time-trace');
		expect(side('--thinlto-emit-imports-files')).toBe('--thinlto-emit-imports-files');
		expect(side('--plugin-opt=stats-file=s')).toBe('--plugin-opt=stats-file=s');
		expect(readOptions(['--plugin-opt=dwo_dir=d'], '/').splitDwarf).toBe('--plugin-opt=dwo_dir=d');
		// DTLTO's remote compiler: what it is asked to write or print besides the object, too.
		expect(side('--thinlto-remote-compiler-arg=-gsplit-dwarf')).toBe('--thinlto-remote-compiler-arg=-gsplit-dwarf');
		expect(side('--thinlto-remote-compiler-arg=-Rpass=inline')).toBe('--thinlto-remote-compiler-arg=-Rpass=inline');
		expect(side('--thinlto-remote-compiler-arg=-O2', '-mllvm', '-debug-entry-values')).toBeUndefined();
		// An output is never hashed as if it were read: /etc/passwd exists.
		expect(readOptions(['--lto-obj-path=/etc/passwd', '-mllvm', '-lto-pass-remarks-output=/etc/passwd'], '/').files).toEqual([]);
	});
});
