// The manuals and the README are part of the product: they lint clean and
// mention every environment variable the code reads.
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { expect, it } from 'vitest';
import { TESTED_LLD } from '../../src/cli/commands/doctor.js';
import { describeIf, onPath, repo } from '../helpers/tools.js';

const read = (file: string) => fs.readFileSync(path.join(repo, file), 'utf8');
const pkg = JSON.parse(read('package.json')) as { man: string[]; version: string; scripts: Record<string, string> };

function sources(dir: string): string[] {
	return (fs.readdirSync(path.join(repo, dir), { recursive: true }) as string[])
		.filter((f) => f.endsWith('.ts'))
		.map((f) => read(path.join(dir, f)));
}

describeIf(Boolean(onPath('mandoc')), 'mandoc (Debian: mandoc)')('man pages', () => {
	it.each(pkg.man)('%s lints clean with mandoc -Tlint', async (page) => {
		const result = await execa('mandoc', ['-Tlint', '-W', 'warning', path.join(repo, page)], { reject: false });
		expect(result.stdout + result.stderr).toBe('');
		expect(result.exitCode).toBe(0);
	});
});

it('documents every LTOCACHE_* variable the code reads, in the man pages and the README', () => {
	const used = new Set(sources('src').flatMap((text) => text.match(/LTOCACHE_[A-Z_]+/g) ?? []));
	expect(used.size).toBeGreaterThan(5);
	const man = pkg.man
		.map((page) => read(page))
		.join('\n')
		.replaceAll('\\_', '_');
	const readme = read('README.md');
	for (const name of used) {
		expect(man, name).toContain(name);
		expect(readme, name).toContain(name);
	}
});

it('names the tested lld versions in the README, and CI installs each', () => {
	const list = `${TESTED_LLD.slice(0, -1).join(', ')} and ${TESTED_LLD.at(-1)}`;
	expect(read('README.md').replaceAll('\n', ' ')).toContain(`the test suite links with lld ${list} `);
	expect(read('man/ltocache.1')).toContain(`tested with that lld: ${list})`);
	const pkgs =
		read('.ci/run')
			.match(/^pkgs="([^"]*)"/m)?.[1]
			.split(/\s+/) ?? [];
	for (const major of TESTED_LLD) expect(pkgs).toEqual(expect.arrayContaining([`clang-${major}`, `lld-${major}`, `llvm-${major}`]));
	// npm test, which CI runs, runs the linking tests with each of them.
	expect(pkg.scripts.test).toMatch(/ && node test\/each-llvm\.js$/);
});

it('carries the package version in the man pages', () => {
	for (const page of pkg.man) expect(read(page)).toContain(`"ltocache ${pkg.version}"`);
});
