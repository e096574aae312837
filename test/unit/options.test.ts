// lld's options table (src/shim/options.ts): every option each installed
// lld lists in --help is in it, with the way it takes its value; words are
// matched as lld's OptTable matches them; and bin/ld.lld's patterns, the
// shell's reading of the same options, are held to the table.
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { CACHE_FLAG } from '../../src/shim/argv.js';
import { lacksValue, match, parse, SPELLINGS } from '../../src/shim/options.js';
import { describeIf, onPath, repo } from '../helpers/tools.js';

const versions = [14, 16, 19, 22].filter((v) => onPath(`ld.lld-${v}`));

describeIf(versions.length > 0, 'ld.lld-N (Debian: lld-14, lld-16, lld-19 or lld-22)')('the table against lld --help', () => {
	for (const version of versions) {
		it(`holds every option ld.lld-${version} lists, taking its value the same way`, async () => {
			const { stdout } = await execa(`ld.lld-${version}`, ['--help']);
			const listed = [...stdout.matchAll(/^ {2}(-\S+)( <[^>]*>)?/gm)];
			expect(listed.length).toBeGreaterThan(250);
			const wrong: string[] = [];
			for (const [, spelled, separate] of listed) {
				let name = spelled.split(/[<[]/)[0];
				let joined = name !== spelled;
				// A metavariable without brackets (--export-dynamic-symbol=glob): the flag it looks like is no option.
				if (!joined && !separate && match(name)?.kind !== 'flag' && name.includes('=')) {
					name = name.slice(0, name.lastIndexOf('=') + 1);
					joined = true;
				}
				const s = match(joined ? `${name}x` : name);
				const kinds = joined ? ['joined', 'joined-or-separate'] : separate ? ['separate', 'joined-or-separate'] : ['flag'];
				if (!s || s.prefix + s.name !== name || !kinds.includes(s.kind)) wrong.push(`${spelled}${separate ?? ''}: ${JSON.stringify(s)}`);
			}
			expect(wrong).toEqual([]);
		});
	}
});

describe('reading words as lld does', () => {
	const read = (...words: string[]) => [...parse(words)].map((o) => ('file' in o ? `file:${o.file}` : `${o.id}=${o.value ?? ''}`));

	it('takes the longest option a word begins with, and a value where the option has one', () => {
		expect(read('-omagic', '--omagic', '-lfoo', '-l', 'bar', '--library=baz', '-Lx', '--library-path', 'y')).toEqual([
			'output=magic',
			'omagic=',
			'library=foo',
			'library=bar',
			'library=baz',
			'library-path=x',
			'library-path=y',
		]);
		expect(read('-mllvm', '-a', '-mllvm=-b', '--mllvm=-c', '-memulation', '-m', 'elf_x86_64')).toEqual([
			'mllvm=-a',
			'mllvm=-b',
			'mllvm=-c',
			'm=emulation',
			'm=elf_x86_64',
		]);
		expect(read('-T', 's.lds', '-Ts2.lds', '--script=s3', '-dT', 'd.lds', '--default-script', 'e', '-z', 'now', 'a.o', '-')).toEqual([
			'script=s.lds',
			'script=s2.lds',
			'script=s3',
			'default-script=d.lds',
			'default-script=e',
			'z=now',
			'file:a.o',
			'file:-',
		]);
		// Ttext-segment before T; a Flag only as the whole word; an unknown option is a flag of its own.
		expect(read('-Ttext-segment', '0x1000', '--static', '-static', '--staticx', '--as-needed')).toEqual([
			'Ttext-segment=0x1000',
			'Bstatic=',
			'Bstatic=',
			'staticx=',
			'as-needed=',
		]);
	});

	it("joins gold's --plugin-opt X into --plugin-opt=X as lld does, and leaves a value missing at the end missing", () => {
		const texts = (...words: string[]) => [...parse(words)].map((o) => ('file' in o ? `file:${o.file}` : `${o.id}:${o.text}`));
		expect(texts('-plugin-opt', '-x', '--plugin-opt', 'save-temps', '--plugin-opt')).toEqual([
			'plugin-opt=-:plugin-opt=-x',
			'save-temps:plugin-opt=save-temps',
			'plugin-opt:plugin-opt',
		]);
		expect([...parse(['a.o', '-o'])]).toEqual([{ file: 'a.o' }, { id: 'output', role: undefined, text: 'o', missing: true }]);
		expect([...parse(['-L'])]).toEqual([{ id: 'library-path', role: 'search', text: 'L', missing: true }]);
	});

	it('tells an argv that ends with an option lacking its value, which a word appended after it would become', () => {
		expect(lacksValue(['a.o', '-u'])).toBe('-u');
		expect(lacksValue(['a.o', '--thinlto-cache-policy'])).toBe('--thinlto-cache-policy');
		expect(lacksValue(['a.o', '--plugin-opt'])).toBe('--plugin-opt');
		expect(lacksValue(['a.o', '-T'])).toBe('-T');
		// A value given, a flag, a joined option, an input, or the option's spelling taken as another's value.
		for (const words of [
			['-u', 'sym'],
			['a.o', '-r'],
			['a.o', '-usym'],
			['a.o', '--thinlto-cache-policy=prune_after=1h'],
			['a.o'],
			['-o', '-u'],
			[],
		])
			expect(lacksValue(words)).toBeUndefined();
	});

	it('gives the roles the readers act on', () => {
		const role = (word: string) => match(word)?.role;
		expect(['-Bstatic', '-dn', '-static', '--non_shared', '-N', '-n'].map(role)).toEqual(Array(6).fill('static'));
		expect(['--Bdynamic', '-dy', '-call_shared'].map(role)).toEqual(Array(3).fill('dynamic'));
		expect(['--plugin-opt=dwo_dir=x', '-plugin-opt=dwo_dir=x'].map(role)).toEqual(['split-dwarf', 'split-dwarf']);
		expect(['--plugin-opt=-x', '--plugin-opt=O2', '--plugin-opt=jobs=2', '--thinlto-jobs=2'].map(role)).toEqual([
			'llvm',
			'codegen',
			undefined,
			undefined,
		]);
		expect(['--thinlto-remote-compiler=c', '--thinlto-distributor=d', '--thinlto-remote-compiler-arg=-O2'].map(role)).toEqual([
			'codegen-file',
			'codegen-file',
			'llvm',
		]);
		expect(['--save-temps', '--save-temps=preopt', '--lto-obj-path=o', '--plugin-opt=obj-path=o', '--time-trace'].map(role)).toEqual(
			Array(5).fill('side'),
		);
	});

	it('spells the cache flag one way only, the way argv.ts looks for it', () => {
		const cache = SPELLINGS.filter((s) => s.role === 'cache');
		expect(cache).toEqual([{ prefix: '--', name: 'thinlto-cache-dir=', kind: 'joined', id: 'thinlto-cache-dir', role: 'cache' }]);
		expect(CACHE_FLAG).toBe('--thinlto-cache-dir=');
		expect(match('-thinlto-cache-dir=x')?.role).toBeUndefined();
	});
});

it("holds bin/ld.lld's argument patterns to the table: the cache flag and --rsp-quoting in every spelling, and no other option", async () => {
	const shim = fs.readFileSync(path.join(repo, 'bin/ld.lld'), 'utf8');
	// The fast path's scan, and the one of the routes without Node (which find an unsure argv where the fast path leaves it to Node).
	const blocks = [...shim.matchAll(/\tfor arg do\n\t\tcase \$arg in\n([\s\S]*?)\n\t\tesac/g)];
	expect(blocks).toHaveLength(2);
	for (const block of blocks) await holdsToTable(block[1]);
});

async function holdsToTable(block: string) {
	const branches = block.split('\n').map((line) => {
		const m = /^\t\t(.+?)\) (.*);;$/.exec(line);
		expect(m, line).not.toBeNull();
		return { pattern: m![1], body: m![2] };
	});
	// Sample words: every spelling, with a value joined where it takes one.
	const samples = SPELLINGS.map((s) => ({ word: s.prefix + s.name + (s.kind === 'joined' ? 'v' : ''), role: s.role }));
	const script = `for arg do case $arg in\n${branches.map((b, i) => `${b.pattern}) echo ${i} ;;`).join('\n')}\n*) echo - ;;\nesac; done`;
	const { stdout } = await execa('sh', ['-c', script, 'sh', ...samples.map((s) => s.word)]);
	const hits = stdout.split('\n');
	expect(hits).toHaveLength(samples.length);
	const wrong: string[] = [];
	samples.forEach(({ word, role }, i) => {
		const body = hits[i] === '-' ? '' : branches[Number(hits[i])].body;
		const expected =
			role === 'cache' ? /^flag=\$\{arg#--thinlto-cache-dir=\} $/ : role === 'rsp-quoting' ? /^(fast= && break|return 0) $/ : /^$/;
		if (!expected.test(body)) wrong.push(`${word} (${role ?? 'no role'}) -> ${body || 'no branch'}`);
	});
	expect(wrong).toEqual([]);
	expect(samples.filter((s) => s.role === 'rsp-quoting').length).toBe(2);
}
