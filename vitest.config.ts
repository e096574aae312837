import { defineConfig } from 'vitest/config';
import type { Reporter } from 'vitest/reporters';

// In CI every test must run: a skipped or todo test fails the run, so a
// missing tool or a forgotten `.skip` cannot pass silently.
const noSkipsInCI: Reporter = {
	onTestRunEnd(modules) {
		if (!['true', '1'].includes(process.env.CI ?? '')) return;
		const skipped = modules.flatMap((m) => [...m.children.allTests()]).filter((t) => ['skipped', 'pending'].includes(t.result().state));
		if (skipped.length === 0) return;
		for (const t of skipped) console.error(`CI: skipped test ${t.module.moduleId} > ${t.fullName}`);
		process.exitCode = 1;
	},
};

export default defineConfig({
	test: {
		include: ['test/**/*.test.ts'],
		testTimeout: 60_000,
		hookTimeout: 600_000,
		reporters: ['default', noSkipsInCI],
		// A detached prune outliving a test would race the removal of its
		// scratch directory; the tests of automatic pruning turn it back on.
		// The machine's and the user's configuration files stay out of it too.
		env: { LTOCACHE_AUTO_PRUNE: '0', LTOCACHE_SYSTEM_CONFIG: '/nonexistent/ltocache.conf', LTOCACHE_CONFIG: '/nonexistent/config' },
	},
});
