import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execaSync } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { classify, isKeyName, isSeedTemp, keyName, NO_KERNEL, releaseName, seedTemp, shortHash } from '../../src/shared/keydir.js';
import { tempName, uniqueTag, unusableReason } from '../../src/shared/root.js';
import { kernelRelease } from '../../src/shim/decide.js';
import { describeIf, isRoot, onPath, repo } from '../helpers/tools.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ltocache-layout-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('keyName', () => {
	it('is readable, stable and distinct', () => {
		expect(keyName('/var/lib/dkms/hello/1.0/build')).toMatch(/^var-lib-dkms-hello-1\.0-build-[0-9a-f]{12}$/);
		expect(keyName('/var/lib/dkms/hello/1.0/build')).toBe(keyName('/var/lib/dkms/hello/1.0/build'));
		expect(keyName('/a/b c')).not.toBe(keyName('/a/b-c'));
	});

	it('keeps long paths to a readable tail and makes odd bytes safe', () => {
		const key = keyName(`/${'x'.repeat(300)}/..\n/\xff`);
		expect(key.length).toBeLessThanOrEqual(61);
		expect(key).toMatch(/^[A-Za-z0-9._+-]+$/);
		expect(keyName('/')).toMatch(/^root-[0-9a-f]{12}$/);
	});
});

describe('shortHash', () => {
	it('is 64-bit FNV-1a (first 12 hex digits)', () => {
		// Known FNV-1a 64 values: "" = cbf29ce484222325, "a" = af63dc4c8601ec8c.
		expect(shortHash(Buffer.from(''))).toBe('cbf29ce48422');
		expect(shortHash(Buffer.from('a'))).toBe('af63dc4c8601');
	});
});

describe('releaseName', () => {
	it('passes ordinary releases and makes others one safe component', () => {
		expect(releaseName('6.1.0-28-amd64')).toBe('6.1.0-28-amd64');
		expect(releaseName('5.15.0+custom~1')).toBe('5.15.0+custom~1');
		expect(releaseName(NO_KERNEL)).toBe(NO_KERNEL); // stats and prune --stale-kernels know it by name
		for (const odd of ['..', '.', '../../etc', 'a/b', '']) {
			const name = releaseName(odd);
			expect(name).not.toContain('/');
			expect(['.', '..']).not.toContain(name);
			expect(name.length).toBeGreaterThan(0);
		}
	});
});

describe('kernelRelease', () => {
	it('prefers $KERNELRELEASE, then include/config/kernel.release, then a /lib/modules/<rel>/build cwd', () => {
		fs.mkdirSync(path.join(dir, 'include/config'), { recursive: true });
		fs.writeFileSync(path.join(dir, 'include/config/kernel.release'), '6.1.192\n');
		expect(kernelRelease(dir, { KERNELRELEASE: '6.8.0-1' })).toBe('6.8.0-1');
		expect(kernelRelease(dir, {})).toBe('6.1.192');
		expect(kernelRelease('/nonexistent', { PWD: '/lib/modules/5.15.0-9/build' })).toBe('5.15.0-9');
		expect(kernelRelease('/usr/lib/modules/6.6.1/build/sub', {})).toBe('6.6.1');
		expect(kernelRelease('/nonexistent', {})).toBe(NO_KERNEL);
	});
});

describe('unusableReason', () => {
	it('accepts an existing writable directory and a creatable one', () => {
		expect(unusableReason(dir)).toBeUndefined();
		expect(unusableReason(path.join(dir, 'not/yet/there'))).toBeUndefined();
	});

	it('rejects a path below a file', () => {
		fs.writeFileSync(path.join(dir, 'file'), '');
		expect(unusableReason(path.join(dir, 'file'))).toBe('ENOTDIR');
		expect(unusableReason(path.join(dir, 'file/below'))).toBe('ENOTDIR');
	});
});

describe('temporary names', () => {
	it('carry the pid, a token drawn once per process and a count: no two from one process are alike', () => {
		const tags = Array.from({ length: 3 }, () => uniqueTag());
		const [pid, token] = tags[0].split('-');
		expect(pid).toBe(String(process.pid));
		for (const tag of tags) expect(tag).toMatch(new RegExp(`^${process.pid}-${token}-\\d+$`));
		expect(new Set(tags).size).toBe(3);
		expect(tempName('/r/k/ltocache.json')).not.toBe(tempName('/r/k/ltocache.json'));
	});

	it("are what the manager takes for temporaries: in a key directory, and a seed directory's beside it", () => {
		for (const file of ['ltocache.json', 'ltocache.counts', 'ltocache.remote', 'ltocache.embed-0123456789ab'])
			expect(classify(path.basename(tempName(path.join(dir, file))))).toBe('temp');
		const key = keyName('/src/m');
		const seed = path.basename(seedTemp(path.join(dir, key)));
		expect(isSeedTemp(seed)).toBe(true);
		expect(isKeyName(seed)).toBe(false);
		// What links of earlier versions left (the pid alone) is still known, and a key directory is none.
		expect(isSeedTemp(`${key}.seed-4242.tmp`)).toBe(true);
		expect(isSeedTemp(key)).toBe(false);
		expect(isSeedTemp(`${key}.seed-x.tmp`)).toBe(false);
	});
});

describeIf(isRoot && Boolean(onPath('unshare')), 'root and unshare (PID namespaces)')('temporary names in PID namespaces', () => {
	it('differ between two processes with one pid, each in a PID namespace of its own', () => {
		const root = path.join(repo, 'dist/shared/root.js');
		// PID 1 in each: the node unshare forks into its new namespace.
		const script = `import(${JSON.stringify(root)}).then((r) => console.log(r.tempName('ltocache.json')))`;
		const names = [0, 1].map(() => execaSync('unshare', ['-pf', '--mount-proc', process.execPath, '-e', script]).stdout);
		for (const name of names) expect(name).toMatch(/^ltocache\.json\.1-[0-9a-z]{8}-1\.tmp$/);
		expect(names[0]).not.toBe(names[1]);
	});
});
