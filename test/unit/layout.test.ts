import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { keyName, NO_KERNEL, releaseName, shortHash } from '../../src/shared/keydir.js';
import { unusableReason } from '../../src/shared/root.js';
import { kernelRelease } from '../../src/shim/decide.js';

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
