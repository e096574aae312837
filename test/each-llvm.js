// The second half of `npm test`: the tests that link with the real tools,
// once more with each LLVM ltocache is tested with (TESTED_LLD), each run
// with that version's clang objects, ld.lld and llvm-ar (LTOCACHE_TEST_LLVM,
// read by test/helpers/tools.ts). The version `vitest run` already used
// (PATH's clang and ld.lld) is not run twice. A version whose tools are
// missing fails in CI, as every missing prerequisite does (describeIf).
//
//   node test/each-llvm.js [MAJOR...]     (npm run test:llvm -- 19 22)
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TESTED_LLD } from '../dist/cli/commands/doctor.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The files whose tests depend on what clang writes and lld does. */
const FILES = ['link', 'incbin', 'seed', 'adversarial', 'memo', 'counters', 'inputs', 'oracle'].map(
	(name) => `test/integration/${name}.test.ts`,
);

const asked = process.argv.slice(2);
for (const v of asked) {
	if (!/^[1-9][0-9]*$/.test(v)) {
		console.error(`each-llvm: ${v} is not an LLVM major version (such as 19)`);
		process.exit(2);
	}
}

/** The major version of a tool's --version line, or undefined when it does not run. */
const major = (tool, pattern) => spawnSync(tool, ['--version'], { encoding: 'utf8' }).stdout?.match(pattern)?.[1];
// Unset LTOCACHE_TEST_LLVM, tests use PATH's tools: that run covered their version when clang and ld.lld agree on it.
const covered = major('clang', /clang version (\d+)\./);
const skipDefault = asked.length === 0 && covered !== undefined && covered === major('ld.lld', /LLD (\d+)\./);

const inCI = ['true', '1'].includes(process.env.CI ?? '');
const installed = (version) => ['clang', 'ld.lld', 'llvm-ar'].every((tool) => fs.existsSync(`/usr/lib/llvm-${version}/bin/${tool}`));

const results = [];
for (const version of asked.length > 0 ? asked : TESTED_LLD.map(String)) {
	if (skipDefault && version === covered) {
		results.push(`  LLVM ${version}: run above, as PATH's clang and ld.lld`);
		continue;
	}
	// Outside CI a missing version is said and passed over, as describeIf skips; in CI its run fails on it.
	if (!inCI && !installed(version)) {
		results.push(
			`  LLVM ${version}: not run, /usr/lib/llvm-${version}/bin lacks clang, ld.lld or llvm-ar (Debian: clang-${version} lld-${version} llvm-${version})`,
		);
		continue;
	}
	console.log(`\n=== LLVM ${version}: LTOCACHE_TEST_LLVM=${version} vitest run ${FILES.join(' ')}`);
	const started = process.hrtime.bigint();
	const run = spawnSync(path.join(repo, 'node_modules/.bin/vitest'), ['run', ...FILES], {
		cwd: repo,
		stdio: 'inherit',
		env: { ...process.env, LTOCACHE_TEST_LLVM: version },
	});
	const seconds = Number(process.hrtime.bigint() - started) / 1e9;
	const outcome = run.status === 0 ? 'passed' : `FAILED (${run.error?.message ?? run.signal ?? `exit status ${run.status}`})`;
	results.push(`  LLVM ${version}: ${outcome} in ${seconds.toFixed(0)} s`);
}
console.log(`\nThe linking tests with each LLVM (${FILES.length} files):\n${results.join('\n')}`);
if (results.some((line) => line.includes('FAILED'))) process.exitCode = 1;
