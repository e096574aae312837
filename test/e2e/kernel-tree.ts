// What the end-to-end tests share: the prepared Clang ThinLTO kernel tree
// (see prepare-kernel.sh) and a small two-file module.
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { isRoot, onPath, realLd, repo } from '../helpers/tools.js';

const KERNEL_CACHE = process.env.LTOCACHE_TEST_KERNEL_CACHE ?? '/var/cache/ltocache-test';

export const kernelReady =
	isRoot && fs.existsSync('/usr/src/linux-source-6.1.tar.xz') && Boolean(onPath('clang') && realLd('ld.lld') && realLd('ld.lld-16'));
export const kernelNeeds =
	'root, and Debian packages linux-source-6.1 clang lld llvm clang-16 lld-16 llvm-16 bc flex bison libelf-dev libssl-dev (run: sudo .ci/run)';

/** The prepared tree (made once per package version, then reused) and its release. */
export async function kernelTree(): Promise<{ tree: string; release: string }> {
	const prepared = await execa(path.join(repo, 'test/e2e/prepare-kernel.sh'), [KERNEL_CACHE]);
	const tree = prepared.stdout.trim().split('\n').pop()!;
	return { tree, release: fs.readFileSync(path.join(tree, 'include/config/kernel.release'), 'utf8').trim() };
}

/** Writes a module of two source files, so Kbuild links it through an @hello.mod response file. */
export function writeModule(dir: string): string {
	fs.writeFileSync(
		path.join(dir, 'main.c'),
		'#include <linux/module.h>\nint hello_helper(int);\n' +
			'static int __init hello_init(void) { pr_info("hello %d\\n", hello_helper(1)); return 0; }\n' +
			'static void __exit hello_exit(void) {}\nmodule_init(hello_init);\nmodule_exit(hello_exit);\nMODULE_LICENSE("GPL");\n',
	);
	fs.writeFileSync(path.join(dir, 'helper.c'), 'int hello_helper(int x) { return x + 41; }\n');
	fs.writeFileSync(path.join(dir, 'Kbuild'), 'obj-m := hello.o\nhello-y := main.o helper.o\n');
	return dir;
}

/**
 * A module that embeds blob.bin with .incbin from module-level asm, the
 * file named by an absolute path ($(src)) as Kbuild modules must: the
 * assembler runs in the kernel tree, at compile time or, with LTO, at link time.
 */
export function writeBlobModule(dir: string, blob: string): string {
	fs.writeFileSync(
		path.join(dir, 'blob.c'),
		'#include <linux/module.h>\n' +
			'asm(".section .rodata\\n.global blob_data\\nblob_data:\\n.incbin \\"" BLOB_PATH "\\"\\n.byte 0\\n.previous\\n");\n' +
			'extern const char blob_data[];\n' +
			'static int __init blob_init(void) { pr_info("%s\\n", blob_data); return 0; }\n' +
			'module_init(blob_init);\nMODULE_LICENSE("GPL");\n',
	);
	fs.writeFileSync(path.join(dir, 'Kbuild'), `obj-m := blob.o\nccflags-y := -DBLOB_PATH='"$(src)/blob.bin"'\n`);
	fs.writeFileSync(path.join(dir, 'blob.bin'), blob);
	return dir;
}
