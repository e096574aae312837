// `ltocache doctor`: would a module build on this machine hit the ThinLTO
// cache error, and is the shim in place to prevent it? One line per finding.
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { shown, toBytes } from '../../shared/bytes.js';
import { readSettings, redacted, remoteSettings, withCacheDir } from '../../shared/config.js';
import { classify, isSeedTemp } from '../../shared/keydir.js';
import { isShimFile, which } from '../../shared/pathsearch.js';
import {
	chooseRoot,
	describeSkipped,
	fallbackRoot,
	isShared,
	MISMATCH_PREFIX,
	modulesDirs,
	skippedSetting,
	unusableReason,
} from '../../shared/root.js';
import { locateLinker } from '../../shim/linker.js';
import { defineCommand } from '../command.js';
import { isOurs } from '../scan.js';
import { isRootFile, settingsProblems } from '../settings.js';
import { linkerNames, linkKind, ROOT_PATH, SYSTEM_DIR, shimFile } from '../shimlinks.js';

export default defineCommand({
	usage: 'doctor [--json]',
	description: `Checks what ld.lld and each ld.lld-NN resolve to on your PATH and on root's
default PATH, the real linker behind the shim, the cache root, and every
installed kernel built with Clang ThinLTO: would its module builds fail
without the shim? One line per finding (ok, warn, fail); exit status 2 if the
configuration is not right, else 1 if
anything fails.`,
	options: { json: { type: 'boolean', help: 'machine-readable findings' } },
	async run(values, env) {
		const findings = await doctor(env);
		if (values.json) {
			process.stdout.write(`${JSON.stringify({ findings }, null, 2)}\n`);
		} else {
			for (const f of findings) process.stdout.write(`${f.level.padEnd(4)}  ${shown(f.check)}: ${shown(f.message)}\n`);
		}
		// A configuration that is not right is bad input, exit status 2, as in every command.
		if (findings.some((f) => f.check === 'configuration' && f.level === 'fail')) return 2;
		return findings.some((f) => f.level === 'fail') ? 1 : 0;
	},
});

export type Level = 'ok' | 'warn' | 'fail';
export type Finding = { level: Level; check: string; message: string };

/** The lld versions the test suite links with on every run (CI installs each: .ci/run, test/each-llvm.js). */
export const TESTED_LLD = [14, 16, 19, 22];

async function version(file: string): Promise<string> {
	const result = await execa(file, ['--version'], { reject: false, timeout: 10_000 });
	return result.exitCode === 0
		? String(result.stdout).split('\n')[0].trim()
		: `does not run (${String(result.stderr || result.exitCode).split('\n')[0]})`;
}

/** A real linker's version line, and whether ltocache is tested with that lld. */
async function linkerVersion(file: string): Promise<string> {
	const line = await version(file);
	const major = line.match(/\bLLD (\d+)\./)?.[1];
	if (major === undefined) return line;
	const tested = `lld ${TESTED_LLD.join(', ')}`;
	return TESTED_LLD.includes(Number(major)) ? `${line}; tested: ${tested}` : `${line}; not tested: ltocache is tested with ${tested}`;
}

/** What `name` runs on a PATH: the shim (and the real linker behind it), a real linker, or nothing. */
async function resolveLinker(
	name: string,
	pathValue: string,
	where: string,
	shim: string,
): Promise<{ finding: Finding; shimFirst: boolean }> {
	const check = `${name} on ${where}`;
	const first = which(name, pathValue);
	if (!first) return { finding: { level: 'warn', check, message: `${name} is not on ${where}` }, shimFirst: false };
	if (!isShimFile(first)) {
		const install =
			where === "root's default PATH" ? `${process.getuid?.() === 0 ? '' : 'sudo '}ltocache install --system` : 'ltocache install';
		return {
			finding: {
				level: 'warn',
				check,
				message: `${first} is the real linker (${await linkerVersion(first)}), not the shim: run ${install}`,
			},
			shimFirst: false,
		};
	}
	const copy = linkKind(first, shim) === 'this' ? 'the shim' : `the shim of another ltocache installation (${fs.realpathSync(first)})`;
	const located = locateLinker(name, shim, { PATH: pathValue });
	if ('error' in located)
		return { finding: { level: 'fail', check, message: `${first} is ${copy}, but ${located.error}` }, shimFirst: true };
	return {
		finding: {
			level: 'ok',
			check,
			message: `${first} is ${copy}; real linker ${located.linker.file} (${await linkerVersion(located.linker.file)})`,
		},
		shimFirst: true,
	};
}

/** Links into an ltocache install that is gone (npm uninstall before ltocache uninstall): harmless, but litter. */
function danglingFindings(pathDirs: string[]): Finding[] {
	const findings: Finding[] = [];
	for (const dir of new Set(pathDirs.filter(Boolean))) {
		for (const name of linkerNames([dir])) {
			const file = path.join(dir, name);
			if (linkKind(file) === 'other' && !fs.existsSync(file)) {
				findings.push({
					level: 'warn',
					check: file,
					message: `points into a removed ltocache install (${fs.readlinkSync(file)}): ltocache uninstall${dir === SYSTEM_DIR ? ' --system' : ` --dir ${dir}`} removes it`,
				});
			}
		}
	}
	return findings;
}

/** A group's name from /etc/group, else its number. */
function groupName(gid: number): string {
	try {
		const line = fs
			.readFileSync('/etc/group', 'utf8')
			.split('\n')
			.find((l) => l.split(':')[2] === String(gid));
		if (line) return line.split(':')[0];
	} catch {}
	return String(gid);
}

function cacheRootFinding(env: NodeJS.ProcessEnv): Finding {
	const check = 'cache root';
	const choice = chooseRoot(env, false);
	const { root } = choice;
	const passed = skippedSetting(choice);
	if (passed) {
		const links = root ? `links use ${root} instead` : 'links run without a cache';
		return {
			level: 'fail',
			check,
			message: `${describeSkipped(passed)}: ${links}, and the manager refuses to run until you fix or unset ${passed.variable}`,
		};
	}
	const from = {
		LTOCACHE_DIR: 'set by LTOCACHE_DIR',
		XDG_CACHE_HOME: 'from XDG_CACHE_HOME',
		HOME: 'the default under your home',
		fallback: '',
	}[choice.from];
	// lld names its temporaries DIR/Thin-%%%%%%.tmp.o and replaces every %, one in DIR too: the shim links without a cache.
	if (root?.includes('%')) {
		return {
			level: 'fail',
			check,
			message: `${root} holds a %, which lld takes for a placeholder: links run without a cache (choose another LTOCACHE_DIR)`,
		};
	}
	if (root && choice.from !== 'fallback') {
		if (isShared(root, env)) {
			const gid = fs.statSync(root).gid;
			return {
				level: 'ok',
				check,
				message: `${root} (${from}) is usable, shared with group ${groupName(gid)} (setgid, group-writable): its members reuse, prune and clear each other's entries`,
			};
		}
		return { level: 'ok', check, message: `${root} (${from}) is usable` };
	}
	const why = choice.skipped.map((s) => `${s.root} (${s.problem})`).join(', ') || 'no LTOCACHE_DIR, XDG_CACHE_HOME or HOME';
	const fallback = fallbackRoot();
	if (!fs.existsSync(fallback) || root === fallback) {
		return { level: 'warn', check, message: `not usable: ${why}; links will use ${fallback} (set LTOCACHE_DIR to choose)` };
	}
	return {
		level: 'fail',
		check,
		message: `not usable: ${why}, and ${fallback} is not a private directory of yours: links will run without a cache`,
	};
}

/**
 * The release and module directories under the root that this user cannot
 * list or change (a `sudo` link with the user's HOME leaves root's): stats,
 * prune and clear skip them.
 */
function rootContentsFindings(env: NodeJS.ProcessEnv): Finding[] {
	const { root } = chooseRoot(env, false);
	if (root === undefined || !fs.existsSync(root)) return [];
	const check = 'cache root contents';
	const bad: string[] = [];
	const foreign: string[] = [];
	const usable = (dir: string) => {
		try {
			fs.accessSync(dir, fs.constants.R_OK | fs.constants.W_OK | fs.constants.X_OK);
			return true;
		} catch (error) {
			bad.push(`${dir} (${(error as NodeJS.ErrnoException).code})`);
			return false;
		}
	};
	let releases: fs.Dirent[];
	try {
		releases = fs.readdirSync(root, { withFileTypes: true });
	} catch (error) {
		return [{ level: 'fail', check, message: `${root} cannot be read (${(error as NodeJS.ErrnoException).code})` }];
	}
	for (const release of releases) {
		const dir = path.join(root, release.name);
		if (isRootFile(release.name)) continue;
		if (!release.isDirectory()) {
			foreign.push(dir);
			continue;
		}
		if (!usable(dir)) continue;
		for (const key of fs.readdirSync(dir, { withFileTypes: true })) {
			const keyDir = path.join(dir, key.name);
			if (isSeedTemp(key.name)) continue; // a link filling a directory from its sibling (or one that died doing it: prune removes it)
			if (!key.isDirectory() || !isOurs(keyDir)) foreign.push(keyDir);
			else if (usable(keyDir))
				foreign.push(
					...fs
						.readdirSync(keyDir)
						.filter((name) => classify(name) === 'foreign')
						.map((name) => path.join(keyDir, name)),
				);
		}
	}
	const some = (list: string[]) => list.slice(0, 5).join(', ') + (list.length > 5 ? `, and ${list.length - 5} more` : '');
	const findings: Finding[] = [];
	if (bad.length > 0) {
		findings.push({
			level: 'fail',
			check,
			message: `${bad.length} ${bad.length === 1 ? 'directory' : 'directories'} you cannot list or change: ${some(bad)}; stats, prune and clear skip them (remove them as their owner)`,
		});
	}
	if (foreign.length > 0) {
		findings.push({
			level: 'fail',
			check,
			message: `${foreign.length} ${foreign.length === 1 ? 'file or directory' : 'files or directories'} that ltocache did not make: ${some(foreign)}; stats, prune and clear leave them (move them out of the cache root)`,
		});
	}
	return findings;
}

/** The configuration as the manager reads it: each problem fails (and doctor exits 2, as every command does); a key set twice is warned of. */
function configurationFindings(env: NodeJS.ProcessEnv): Finding[] {
	const check = 'configuration';
	const problems = settingsProblems(env);
	const { warnings } = readSettings(env);
	const findings: Finding[] = [
		...problems.map((message): Finding => ({ level: 'fail', check, message: `${message}; the manager refuses it, links pass over it` })),
		...warnings.map((message): Finding => ({ level: 'warn', check, message })),
	];
	return findings.length ? findings : [{ level: 'ok', check, message: 'every setting is valid (ltocache config lists them)' }];
}

/** The Makefile and what it includes by absolute path (Debian's headers packages split the tree). */
function makefileText(build: string): string {
	const read = (file: string) => {
		try {
			return fs.readFileSync(file, 'utf8');
		} catch {
			return '';
		}
	};
	const top = read(path.join(build, 'Makefile'));
	const included = [...top.matchAll(/^\s*-?include\s+(\/\S+)/gm)].map((m) => read(m[1]));
	return [top, ...included].join('\n');
}

function kernelFindings(env: NodeJS.ProcessEnv, shimFirst: boolean): Finding[] {
	const findings: Finding[] = [];
	// /lib is a link to usr/lib on merged-/usr systems: each tree once.
	const seen = new Set<string>();
	for (const base of modulesDirs(env)) {
		let real: string;
		try {
			real = fs.realpathSync(base);
		} catch {
			continue;
		}
		if (seen.has(real)) continue;
		seen.add(real);
		let releases: string[] = [];
		try {
			releases = fs.readdirSync(base).sort();
		} catch {}
		for (const release of releases) {
			const build = path.join(base, release, 'build');
			const check = `kernel ${release}`;
			let config: string;
			try {
				config = fs.readFileSync(path.join(build, '.config'), 'utf8');
			} catch {
				continue; // no build tree: no module builds
			}
			if (!/^CONFIG_LTO_CLANG_THIN=y$/m.test(config)) {
				findings.push({ level: 'ok', check, message: `${build} is not built with Clang ThinLTO` });
				continue;
			}
			if (!makefileText(build).includes('--thinlto-cache-dir')) {
				findings.push({ level: 'ok', check, message: `${build} uses ThinLTO without a cache directory (6.10 and later)` });
				continue;
			}
			const reason = unusableReason(toBytes(path.join(build, '.thinlto-cache')));
			if (reason === undefined) {
				findings.push({ level: 'ok', check, message: `${build} asks for .thinlto-cache in the tree, and you can write it` });
			} else if (shimFirst) {
				findings.push({ level: 'ok', check, message: `${build}/.thinlto-cache is not writable (${reason}); the shim redirects it` });
			} else {
				findings.push({
					level: 'fail',
					check,
					message: `${build}/.thinlto-cache is not writable (${reason}): module builds fail with "LLVM ERROR" unless the shim is first on PATH (ltocache install)`,
				});
			}
		}
	}
	if (findings.length === 0) {
		findings.push({ level: 'ok', check: 'kernels', message: `no installed kernel build trees in ${modulesDirs(env).join(', ')}` });
	}
	return findings;
}

/** The remote, if one is set: does it answer, how fast, and can this client write it. */
async function remoteFinding(env: NodeJS.ProcessEnv): Promise<Finding | undefined> {
	const { values } = readSettings(env);
	const value = remoteSettings(values).url;
	if (!value) return undefined;
	const check = 'remote';
	let url: URL;
	try {
		url = new URL(value);
	} catch {
		return { level: 'fail', check, message: `${redacted(value)} is not a URL (see ltocache config)` };
	}
	const { readOnly, budgetMs: budget } = remoteSettings(values);
	const { describeFailure, openStore, shownUrl, withinBudget } = await import('../../shared/remote/store.js');
	const wait = Math.max(budget, 5000);
	const signal = AbortSignal.timeout(wait);
	const started = performance.now();
	let store: ReturnType<typeof openStore> | undefined;
	try {
		store = openStore(url, signal);
		await withinBudget(store.manifest('ltocache-probe', undefined), signal, wait);
		const ms = Math.round(performance.now() - started);
		if (readOnly) return { level: 'ok', check, message: `${shownUrl(url)} answers (${ms} ms); read-only: links download, never upload` };
		await withinBudget(store.probe(), signal, wait);
		const slow = ms > budget / 4 ? `; slow against remote-timeout ${values['remote-timeout'].value}` : '';
		return { level: slow ? 'warn' : 'ok', check, message: `${shownUrl(url)} answers (${ms} ms) and takes writes${slow}` };
	} catch (error) {
		return {
			level: 'fail',
			check,
			message: `${shownUrl(url)}: ${describeFailure(error, signal.aborted, wait)}; links go on with the local cache`,
		};
	} finally {
		store?.close();
	}
}

/** clang -fuse-ld=lld runs the ld.lld beside clang before looking at PATH. */
function clangFinding(env: NodeJS.ProcessEnv): Finding | undefined {
	const clang = which('clang', env.PATH ?? '');
	if (!clang) return undefined;
	const beside = path.join(path.dirname(fs.realpathSync(clang)), 'ld.lld');
	if (!fs.existsSync(beside) || isShimFile(beside)) return undefined;
	return {
		level: 'warn',
		check: 'clang -fuse-ld=lld',
		message: `clang runs ${beside} (beside itself) before PATH; Kbuild calls ld.lld directly and is not affected, other builds need --ld-path=<the shim link>`,
	};
}

/** Verified links whose cached output differed: each left a report under the root until someone removes it. */
function mismatchFinding(env: NodeJS.ProcessEnv): Finding | undefined {
	const { root } = chooseRoot(env, false);
	let reports: string[] = [];
	try {
		if (root)
			reports = fs
				.readdirSync(root)
				.filter((f) => f.startsWith(MISMATCH_PREFIX))
				.sort();
	} catch {}
	if (reports.length === 0) return undefined;
	return {
		level: 'fail',
		check: 'verified links',
		message: `${reports.length} verified link${reports.length === 1 ? '' : 's'} got a cached output that differed from the uncached one (the build got the uncached one); report${reports.length === 1 ? '' : 's'}: ${reports.map((r) => path.join(root!, r)).join(', ')}: please attach to a bug report, then remove`,
	};
}

/** Whether the node the shim would run is one it can run on (package.json's engines); an older one links as without ltocache. */
function nodeFinding(node: string, running: string, where: string, shim: string): Finding {
	const check = `node on ${where}`;
	const engines: string = JSON.parse(fs.readFileSync(path.join(path.dirname(shim), '../package.json'), 'utf8')).engines.node;
	const needed = Number(/\d+/.exec(engines)?.[0]);
	const major = Number(/^v(\d+)\./.exec(running)?.[1]);
	if (major >= needed) return { level: 'ok', check, message: `${node} (${running}) runs the shim's redirects` };
	return {
		level: 'warn',
		check,
		message: `${node} (${running}) is older than the Node ${needed} the shim needs: links it would give a cache run as without ltocache (an unwritable cache flag dropped); put Node ${needed} or later first on ${where} (README: "Node.js")`,
	};
}

export async function doctor(given: NodeJS.ProcessEnv): Promise<Finding[]> {
	const env = withCacheDir(given, readSettings(given).values); // the root as the shim and the manager choose it
	const shim = shimFile();
	const findings: Finding[] = [];
	const userPath = env.PATH ?? '';
	let shimFirst = false;
	let rootShimFirst = false;
	for (const name of linkerNames([...userPath.split(':'), ...ROOT_PATH.split(':')])) {
		const mine = await resolveLinker(name, userPath, 'PATH', shim);
		const roots = await resolveLinker(name, ROOT_PATH, "root's default PATH", shim);
		if (name === 'ld.lld') [shimFirst, rootShimFirst] = [mine.shimFirst, roots.shimFirst];
		findings.push(mine.finding, roots.finding);
	}
	// The shim's shell fast path needs no node, but every redirect does: where the shim is in front, node must be found too.
	for (const [inFront, pathValue, where] of [
		[shimFirst, userPath, 'PATH'],
		[rootShimFirst, ROOT_PATH, "root's default PATH"],
	] as const) {
		const node = which('node', pathValue);
		if (inFront && !node) {
			findings.push({
				level: 'fail',
				check: `node on ${where}`,
				message: `the shim is first on ${where} but node is not: it cannot move an unwritable cache directory, so such links still fail`,
			});
		} else if (inFront && node) {
			findings.push(nodeFinding(node, await version(node), where, shim));
		}
	}
	findings.push(...danglingFindings([...userPath.split(':'), ...ROOT_PATH.split(':')]));
	findings.push(...configurationFindings(env), cacheRootFinding(env), ...rootContentsFindings(env));
	findings.push(...kernelFindings(env, shimFirst));
	const mismatches = mismatchFinding(env);
	if (mismatches) findings.push(mismatches);
	const remote = await remoteFinding(env);
	if (remote) findings.push(remote);
	const clang = clangFinding(env);
	if (clang) findings.push(clang);
	return findings;
}
