// The layout's rules, checked on the code itself: the shim's bundle holds
// only the shim, the shared modules and xdg-basedir, and needs nothing but
// Node built-ins; the import graph of src/ has no circle; the shim never
// reaches into the manager; no command imports another.
import fs from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { execa } from 'execa';
import { expect, it } from 'vitest';
import { describeIf, onPath, repo } from '../helpers/tools.js';

type Metafile = {
	inputs: Record<string, unknown>;
	outputs: Record<string, { inputs: Record<string, unknown>; imports: { path: string; external?: boolean }[] }>;
};

it('bundles the shim from src/shim, src/shared and xdg-basedir only, importing Node built-ins only', () => {
	const meta = JSON.parse(fs.readFileSync(path.join(repo, 'dist/ld.lld.meta.json'), 'utf8')) as Metafile;
	const inputs = Object.keys(meta.inputs);
	expect(inputs.some((input) => input.startsWith('dist/shim/'))).toBe(true);
	for (const input of inputs) expect(input).toMatch(/^(dist\/(shim|shared)\/([\w-]+\/)?[\w-]+\.js|node_modules\/xdg-basedir\/index\.js)$/);
	const builtins = new Set(builtinModules);
	for (const output of Object.values(meta.outputs)) {
		for (const imported of output.imports) {
			expect(imported.external).toBe(true);
			expect(builtins.has(imported.path.replace(/^node:/, '')), imported.path).toBe(true);
		}
	}
});

it('starts Node from a file of its own, which holds only start.ts: the bundle it runs from the code cache is apart', () => {
	const meta = JSON.parse(fs.readFileSync(path.join(repo, 'dist/ld.lld.meta.json'), 'utf8')) as Metafile;
	expect(Object.keys(meta.outputs).sort()).toEqual(['dist/ld.lld.cjs', 'dist/shim.cjs']);
	expect(Object.keys(meta.outputs['dist/ld.lld.cjs'].inputs)).toEqual(['dist/shim/start.js']);
	expect(Object.keys(meta.outputs['dist/shim.cjs'].inputs)).not.toContain('dist/shim/start.js');
});

it('keeps built-ins in the shim bundle unwrapped: src/shim and src/shared import them by name', () => {
	const bundle = fs.readFileSync(path.join(repo, 'dist/shim.cjs'), 'utf8');
	expect(bundle).toMatch(/ = require\("node:fs"\);/);
	expect(bundle).not.toMatch(/__toESM\(require\("node:/);
});

it('loads built-ins lazily through process.getBuiltinModule, never import() alone: the bundle runs as a vm.Script, which cannot import', () => {
	const bundle = fs.readFileSync(path.join(repo, 'dist/shim.cjs'), 'utf8');
	const imports = bundle.split('\n').filter((line) => /\bimport\(/.test(line));
	expect(imports.length).toBeGreaterThan(3);
	for (const line of imports) expect(line).toMatch(/process\.getBuiltinModule\?\.\([^)]*\) \?\? await import\(/);
});

/** src/ file -> the src/ files it imports (static and dynamic), as paths relative to src/. */
function importGraph(): Map<string, string[]> {
	const src = path.join(repo, 'src');
	const files = (fs.readdirSync(src, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts'));
	const graph = new Map<string, string[]>();
	for (const file of files) {
		const text = fs.readFileSync(path.join(src, file), 'utf8');
		const specifiers = [...text.matchAll(/(?:from|import\(?)\s*'(\.{1,2}\/[^']+)'/g)].map((m) => m[1]);
		graph.set(
			file,
			specifiers.map((s) => path.normalize(path.join(path.dirname(file), s)).replace(/\.js$/, '.ts')),
		);
	}
	return graph;
}

it('has an import graph without circles', () => {
	const graph = importGraph();
	expect(graph.size).toBeGreaterThan(10);
	const state = new Map<string, 'open' | 'done'>();
	const circles: string[] = [];
	const visit = (file: string, trail: string[]) => {
		if (state.get(file) === 'done') return;
		if (state.get(file) === 'open') {
			circles.push([...trail.slice(trail.indexOf(file)), file].join(' -> '));
			return;
		}
		state.set(file, 'open');
		for (const next of graph.get(file) ?? []) visit(next, [...trail, file]);
		state.set(file, 'done');
	};
	for (const file of graph.keys()) visit(file, []);
	expect(circles).toEqual([]);
});

it('keeps the shim and the shared modules out of the manager, and every command to itself', () => {
	for (const [file, imports] of importGraph()) {
		for (const target of imports) {
			expect(fs.existsSync(path.join(repo, 'src', target)), `${file} imports ${target}`).toBe(true);
			if (file.startsWith('shim/') || file.startsWith('shared/')) expect(target, file).not.toMatch(/^cli\//);
			if (file.startsWith('shared/')) expect(target, file).toMatch(/^shared\//);
			if (file.startsWith('cli/commands/')) expect(target, file).not.toMatch(/^cli\/commands\//);
		}
	}
});

describeIf(Boolean(onPath('shellcheck')), 'shellcheck (Debian: shellcheck)')('bin/ld.lld', () => {
	it('is POSIX sh that shellcheck passes', async () => {
		const result = await execa('shellcheck', ['-s', 'sh', path.join(repo, 'bin/ld.lld')], { reject: false });
		expect(result.stdout + result.stderr).toBe('');
		expect(result.exitCode).toBe(0);
		expect(fs.readFileSync(path.join(repo, 'bin/ld.lld'), 'utf8')).toMatch(/^#!\/bin\/sh\n/);
	});
});

it('answers "is this file an ltocache shim?" in one place, which bin/ld.lld reads the same way', async () => {
	const { isShimFile, SHIM_MARK } = await import('../../src/shared/pathsearch.js');
	const shim = fs.readFileSync(path.join(repo, 'bin/ld.lld'), 'utf8');
	expect(shim.split('\n')[1].startsWith(SHIM_MARK)).toBe(true);
	expect(shim).toContain(`case $l2 in "${SHIM_MARK}"*`);
	expect(isShimFile(path.join(repo, 'bin/ld.lld'))).toBe(true);
	// Everything else asks pathsearch: no second reading of a file's head.
	for (const [file] of importGraph()) {
		if (file === 'shared/pathsearch.ts') continue;
		const text = fs.readFileSync(path.join(repo, 'src', file), 'utf8');
		expect(text, file).not.toMatch(/SHIM_MARK|'#!'|ld\.lld\.cjs'\)/);
	}
});

it('keeps the code-generation key and the inputs reader apart: each depends on the options table and the file identity, not on the other or the guard', () => {
	const graph = importGraph();
	const reach = (file: string) => {
		const seen = new Set<string>();
		const visit = (f: string) => {
			for (const next of graph.get(f) ?? []) if (!seen.has(next)) seen.add(next) && visit(next);
		};
		visit(file);
		return seen;
	};
	for (const [file, other] of [
		['shim/codegen.ts', 'shim/inputs.ts'],
		['shim/inputs.ts', 'shim/codegen.ts'],
	]) {
		const reached = reach(file);
		expect(reached.has('shim/options.ts'), file).toBe(true);
		expect(reached.has('shared/identity.ts'), file).toBe(true);
		expect(reached.has(other), file).toBe(false);
		expect(reached.has('shim/incbin.ts'), file).toBe(false);
	}
});

it("spells a file's identity (dev, ino, size, mtime, ctime) in one place, src/shared/identity.ts", () => {
	for (const [file] of importGraph()) {
		// start.ts is bundled alone (dist/ld.lld.cjs) and can import nothing of the shim's.
		if (file === 'shared/identity.ts' || file === 'shim/start.ts') continue;
		expect(fs.readFileSync(path.join(repo, 'src', file), 'utf8'), file).not.toMatch(
			/mtimeNs\}?:\$?\{?\w*\.?ctimeNs|\.ctimeNs\s*&&|ctimeNs ===/,
		);
	}
});

it('runs the Node half as named stages, each named once and each given a fault test by test/integration/failopen.test.ts', async () => {
	const { STAGES } = await import('../../src/shim/main.js');
	const main = fs.readFileSync(path.join(repo, 'src/shim/main.ts'), 'utf8');
	const named = [...main.matchAll(/\b(?:stage|after)\('([a-z-]+)'/g)].map((m) => m[1]);
	expect(named.length).toBeGreaterThan(5);
	expect([...named].sort()).toEqual([...STAGES].sort());
	// Only main.ts runs stages: a step elsewhere in src/shim is called from one of them.
	for (const file of fs.readdirSync(path.join(repo, 'src/shim'))) {
		if (file !== 'main.ts') expect(fs.readFileSync(path.join(repo, 'src/shim', file), 'utf8'), file).not.toMatch(/\bstage\('/);
	}
	// The fault tests are generated from STAGES, one each: a new stage is tested without anyone writing it.
	const faults = fs.readFileSync(path.join(repo, 'test/integration/failopen.test.ts'), 'utf8');
	expect(faults).toMatch(/for \(const stage of STAGES\) \{\n\t\tit\(/);
	expect(faults).toContain('LTOCACHE_TEST_FAULT: stage');
	// The linker starts once the start script knows not to fall open any more.
	expect(main.indexOf('shim.linking = true')).toBeGreaterThan(0);
	expect(main.indexOf('shim.linking = true')).toBeLessThan(main.indexOf('spawnLinker('));
	// And the shell that waits for Node (bin/ld.lld) knows not to link itself: before the linker, and before the exit that says there is none.
	expect(main.indexOf('shim.decided()')).toBeGreaterThan(0);
	expect(main.indexOf('shim.decided()')).toBeLessThan(main.indexOf('process.exit(127)'));
	expect(main.lastIndexOf('shim.decided()')).toBeLessThan(main.indexOf('spawnLinker('));
});

it("keeps the same Node.js variables from the shim's Node in bin/ld.lld and from the auto-prune's in autoprune.ts", async () => {
	const { NODE_VARS } = await import('../../src/shim/autoprune.js');
	const script = fs.readFileSync(path.join(repo, 'bin/ld.lld'), 'utf8');
	const listed = /^node_vars='([^']*)'/m.exec(script);
	expect(listed).not.toBeNull();
	expect((listed as RegExpExecArray)[1].split(/\s+/)).toEqual(NODE_VARS);
});

it('checks for the Node that package.json names, in a start script that any Node from 12 on can parse', () => {
	const start = fs.readFileSync(path.join(repo, 'src/shim/start.ts'), 'utf8');
	const engines = JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8')).engines.node as string;
	expect(`>=${/const NODE_MAJOR = (\d+);/.exec(start)?.[1]}`).toBe(engines);
	const bundled = fs.readFileSync(path.join(repo, 'dist/ld.lld.cjs'), 'utf8');
	// Syntax and specifiers Node 12 lacks (test/integration/failopen.test.ts runs it under Node 12 too).
	expect(bundled).not.toMatch(/\?\?|\?\.[\w([]|require\("node:|\|\|=|&&=/);
});

it("reads and writes a root's own files only through src/shared/root.ts: never through a symlink, a FIFO or a device another member of a shared root put under the name", () => {
	// Files that read only what is not the root's: inputs, options' files, the linker, /proc, configuration, the bundle.
	const elsewhere = new Set([
		'shared/config.ts',
		'shim/archive.ts',
		'shim/argv.ts',
		'shim/codegen.ts',
		'shim/decide.ts',
		'shim/identity.ts',
		'shim/inputs.ts',
		'shim/start.ts',
	]);
	const direct = /\b(readFileSync|writeFileSync|appendFileSync)\(/;
	for (const dir of ['shim', 'shared', 'shared/remote']) {
		for (const name of fs.readdirSync(path.join(repo, 'src', dir)).filter((n) => n.endsWith('.ts'))) {
			const file = `${dir}/${name}`;
			const text = fs.readFileSync(path.join(repo, 'src', file), 'utf8');
			if (file === 'shared/root.ts') {
				// One read (the bytes of a file opened by openOwnFile) and one write (of a file created exclusively).
				expect(text.match(new RegExp(direct, 'g'))).toEqual(['writeFileSync(']);
				continue;
			}
			if (!elsewhere.has(file)) expect(text, file).not.toMatch(direct);
		}
	}
	// identity.ts reads the linker and its libraries with readFileSync; its own list under the root goes through readOwnFile.
	expect(fs.readFileSync(path.join(repo, 'src/shim/identity.ts'), 'utf8')).toMatch(/readOwnFile\(cacheFile/);
});

it("names every temporary file by root.ts's uniqueTag, never by the pid alone: processes in other PID namespaces share pids", () => {
	const offenders: string[] = [];
	for (const [file] of importGraph()) {
		// start.ts is bundled alone and draws a token of its own.
		if (file === 'shared/root.ts' || file === 'shim/start.ts') continue;
		const text = fs.readFileSync(path.join(repo, 'src', file), 'utf8');
		if (/\$\{process\.pid\}/.test(text)) offenders.push(file);
	}
	expect(offenders).toEqual([]);
	const start = fs.readFileSync(path.join(repo, 'src/shim/start.ts'), 'utf8');
	expect(start).toMatch(/`\$\{CACHE_FILE\}\.\$\{process\.pid\}-\$\{Math\.random\(\)[^`]*\}\.tmp`/);
});
