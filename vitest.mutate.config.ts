import { defineConfig } from 'vitest/config';

// What `npm run mutate` runs against each mutant: the tests that call the
// shim's decisions and the manager's rules in-process, and the three that read
// real clang objects in-process (inputs, bitcode, the inputs memo; they need
// the toolchain).
// The other integration tests run the code through child processes, where a
// mutant is not switched on.
export default defineConfig({
	test: {
		include: [
			'test/unit/**/*.test.ts',
			'test/integration/inputs.test.ts',
			'test/integration/bitcode.test.ts',
			'test/integration/memo.test.ts',
		],
		exclude: ['test/unit/structure.test.ts', 'test/unit/docs.test.ts'],
		testTimeout: 60_000,
		env: { LTOCACHE_AUTO_PRUNE: '0' },
	},
});
