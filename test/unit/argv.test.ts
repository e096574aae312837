import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { toBytes } from '../../src/shared/bytes.js';
import { CACHE_FLAG, scanArgs, tokenizeGnu, withCacheDir } from '../../src/shim/argv.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ltocache-argv-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const write = (name: string, content: string | Buffer) => {
	const file = path.join(dir, name);
	fs.mkdirSync(path.dirname(file), { recursive: true });
	fs.writeFileSync(file, content);
	return file;
};

describe('tokenizeGnu (LLVM GNU response-file quoting)', () => {
	it.each([
		['a b\tc\r\nd', ['a', 'b', 'c', 'd']],
		['  leading and trailing  ', ['leading', 'and', 'trailing']],
		[`'single quoted' "double quoted"`, ['single quoted', 'double quoted']],
		[`a'b c'd`, ['ab cd']],
		['back\\ slash \\"q\\" \\\\', ['back slash', '"q"', '\\']],
		[`"in \\" quotes" 'in \\' single'`, ['in " quotes', "in ' single"]],
		[`'' "" x`, ['x']],
		[`'unterminated here`, ['unterminated here']],
		['trailing\\', ['trailing\\']],
		[`"ends in backslash\\`, ['ends in backslash\\']],
		['line\\\nbreak', ['line\nbreak']],
		['\xff\xfe bytes', ['\xff\xfe', 'bytes']],
	])('%j', (input, expected) => {
		expect(tokenizeGnu(input)).toEqual(expected);
	});
});

describe('scanArgs', () => {
	it('finds nothing when there is no cache flag', () => {
		expect(scanArgs(['-r', '-o', 'x.o', 'a.o'], dir)).toEqual({ kind: 'none', words: ['-r', '-o', 'x.o', 'a.o'] });
	});

	it('takes the last flag, and only the joined --thinlto-cache-dir= spelling', () => {
		const scan = scanArgs(
			['--thinlto-cache-dir=one', '-thinlto-cache-dir=x', '--thinlto-cache-dir', 'y', '--thinlto-cache-dir=two', '-r'],
			dir,
		);
		expect(scan).toMatchObject({ kind: 'flag', flag: { value: 'two', index: 4, inResponseFile: false } });
	});

	it('looks into nested response files, resolved against the cwd like lld', () => {
		write('sub/outer.rsp', `--thinlto-cache-dir=outer @inner.rsp a.o`);
		write('inner.rsp', `"--thinlto-cache-dir=in ner"`);
		write('sub/inner.rsp', `--thinlto-cache-dir=wrong`);
		const scan = scanArgs(['--thinlto-cache-dir=direct', '-r', '@sub/outer.rsp', '-o', 'x'], dir);
		expect(scan).toEqual({
			kind: 'flag',
			flag: { value: 'in ner', index: 2, inResponseFile: true },
			// argv as lld reads it: each response file replaced by its words, an unreadable one left as it is.
			words: ['--thinlto-cache-dir=direct', '-r', '--thinlto-cache-dir=outer', '--thinlto-cache-dir=in ner', 'a.o', '-o', 'x'],
		});
		expect(scanArgs(['@missing.rsp', 'b.o'], dir)).toEqual({ kind: 'none', words: ['@missing.rsp', 'b.o'] });
	});

	it('lets a later direct flag win over one in a response file', () => {
		write('f.rsp', '--thinlto-cache-dir=file');
		expect(scanArgs(['@f.rsp', '--thinlto-cache-dir=direct'], dir)).toMatchObject({ flag: { value: 'direct', index: 1 } });
	});

	it('keeps an unreadable @file as a literal argument', () => {
		expect(scanArgs(['--thinlto-cache-dir=x', '@missing.rsp', '@'], dir)).toMatchObject({ kind: 'flag', flag: { value: 'x' } });
	});

	it('is unsure about a response file that includes itself', () => {
		write('self.rsp', '--thinlto-cache-dir=x @self.rsp');
		expect(scanArgs(['@self.rsp'], dir)).toMatchObject({ kind: 'unsure' });
	});

	it('skips a UTF-8 byte order mark and is unsure about UTF-16', () => {
		write('bom.rsp', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('--thinlto-cache-dir=bom')]));
		expect(scanArgs(['@bom.rsp'], dir)).toMatchObject({ flag: { value: 'bom' } });
		write('utf16.rsp', Buffer.from('\ufeff--thinlto-cache-dir=x', 'utf16le'));
		expect(scanArgs(['@utf16.rsp'], dir)).toMatchObject({ kind: 'unsure', why: 'UTF-16 response file @utf16.rsp' });
		write('utf16be.rsp', Buffer.from('\ufeff--thinlto-cache-dir=x', 'utf16le').swap16());
		expect(scanArgs(['@utf16be.rsp'], dir)).toMatchObject({ kind: 'unsure', why: 'UTF-16 response file @utf16be.rsp' });
	});

	it('is unsure about response files nested deeper than lld would follow, and reads them up to there', () => {
		for (let i = 0; i < 70; i++) write(`deep${i}.rsp`, `@deep${i + 1}.rsp`);
		write('deep70.rsp', '--thinlto-cache-dir=bottom');
		expect(scanArgs(['@deep0.rsp'], dir)).toMatchObject({ kind: 'unsure', why: 'response files nested deeper than 64' });
		expect(scanArgs(['@deep7.rsp'], dir)).toMatchObject({ kind: 'flag', flag: { value: 'bottom' } });
	});

	it('keeps non-UTF-8 bytes of a response file as bytes', () => {
		write('bytes.rsp', Buffer.concat([Buffer.from('--thinlto-cache-dir=d'), Buffer.from([0xff, 0x80])]));
		expect(scanArgs(['@bytes.rsp'], dir)).toMatchObject({ flag: { value: 'd\xff\x80' } });
	});

	it('is unsure with Windows quoting for response files', () => {
		write('w.rsp', '--thinlto-cache-dir=w');
		expect(scanArgs(['--rsp-quoting=windows', '@w.rsp'], dir)).toMatchObject({ kind: 'unsure', why: 'Windows response-file quoting' });
		expect(scanArgs(['--rsp-quoting=windows', '--thinlto-cache-dir=d'], dir)).toMatchObject({ kind: 'flag', flag: { value: 'd' } });
		expect(scanArgs(['--rsp-quoting=posix', '@w.rsp'], dir)).toMatchObject({ kind: 'flag', flag: { value: 'w' } });
		// The separate spelling too (EEq in lld's Options.td).
		expect(scanArgs(['--rsp-quoting', 'windows', '@w.rsp'], dir)).toMatchObject({ kind: 'unsure', why: 'Windows response-file quoting' });
		expect(scanArgs(['--rsp-quoting', 'posix', '@w.rsp'], dir)).toMatchObject({ kind: 'flag', flag: { value: 'w' } });
	});
});

describe('withCacheDir', () => {
	it('replaces a direct flag in place', () => {
		const args = ['-r', '--thinlto-cache-dir=.thinlto-cache', '-o', 'x'];
		expect(withCacheDir(args, { value: '.thinlto-cache', index: 1, inResponseFile: false }, '/new')).toEqual([
			'-r',
			`${CACHE_FLAG}/new`,
			'-o',
			'x',
		]);
		expect(args[1]).toBe('--thinlto-cache-dir=.thinlto-cache');
	});

	it('adds the flag right after the @file that held the effective one', () => {
		const args = ['-r', '@x.mod', '-o', 'x'];
		expect(withCacheDir(args, { value: 'c', index: 1, inResponseFile: true }, '')).toEqual(['-r', '@x.mod', CACHE_FLAG, '-o', 'x']);
	});
});

describe('toBytes', () => {
	it('turns text into one char per UTF-8 byte', () => {
		expect(toBytes('é')).toBe('\xc3\xa9');
	});
});
