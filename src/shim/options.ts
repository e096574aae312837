// lld's options, the one place the shim knows them: how each takes its
// value and what it means to the shim. Transcribed from lld/ELF/Options.td
// of lld 14 through 22 (the union: an option one version lacks makes that
// version fail the link, so reading it as a later version costs nothing),
// with TableGen's own classes: F and J take one dash or two, FF and JJ two;
// Eq is `-name value`, `--name value`, `-name=value` and `--name=value`;
// EEq the same with two dashes; B and BB add `no-name`. One-letter options
// are spelled out with their kind.
//
// words are read as lld's OptTable reads them: a word that starts with a
// prefix is the option with the longest prefix+name it begins with (a
// Flag or a Separate only if the word is exactly that), so `-omagic` is
// `-o magic` (omagic takes two dashes) and `-lfoo` is `-l foo`. A word
// that matches no option is an unknown option, which fails the link: it is
// taken as a flag that means nothing.
import type { Bytes } from '../shared/bytes.js';

export type Role =
	/** -l: a library found on the search path, read as an input. */
	| 'library'
	/** -L: a directory -l and scripts are looked for in. */
	| 'search'
	| 'script'
	/** -dT: read when no -T is given. */
	| 'default-script'
	| 'sysroot'
	| 'chroot'
	| 'nostdlib'
	/** State switches, taken in order with the inputs. */
	| 'static'
	| 'dynamic'
	| 'push-state'
	| 'pop-state'
	| 'format'
	/** --fat-lto-objects and its no-: the last says whether bitcode inside ELF objects is linked. */
	| 'fat'
	/** Part of the code-generation key: its spelling and value. */
	| 'codegen'
	/** Part of the key with the contents of the file its value names, when it names one. */
	| 'codegen-file'
	/** An option for LLVM's own parser (-mllvm, --plugin-opt=-), or DTLTO's remote compiler's: keyed, followed into response files, and it may name files or ask for side outputs (see llvmSideOutput). */
	| 'llvm'
	/** Asks the backends for something besides the object (files, lines on stderr); the value, if any, is an output. */
	| 'side'
	/** The split-DWARF directory: the backends write task-numbered .dwo files there, and the object names its task's file. */
	| 'split-dwarf'
	/** Prints or writes the objects lld links by their file names (a map, the sections it removed): an uncached object is named lto.tmp (lld 22: after the output and its module), a cached one by its entry. */
	| 'report'
	/** Changes which files lld reads in a way the inputs reader does not follow. */
	| 'refuse'
	/** --thinlto-cache-dir=, the flag the shim moves or adds. */
	| 'cache'
	/** --rsp-quoting: how lld reads response files. */
	| 'rsp-quoting';

export type Kind = 'flag' | 'joined' | 'separate' | 'joined-or-separate';

export type Spelling = { prefix: '-' | '--'; name: string; kind: Kind; id: string; role?: Role };

const table: Spelling[] = [];
const add = (prefixes: ('-' | '--')[], name: string, kind: Kind, id = name, role?: Role) => {
	for (const prefix of prefixes) table.push({ prefix, name, kind, id, role });
};
const both: ('-' | '--')[] = ['--', '-'];
const two: ('-' | '--')[] = ['--'];
const one: ('-' | '--')[] = ['-'];
const words = (list: string) => list.split(/\s+/).filter(Boolean);

// Options the shim has no role for, by class; `name:role` gives one.
const CLASSES: Record<string, string> = {
	F: `be8 Bno-symbolic Bsymbolic Bsymbolic-non-weak Bsymbolic-functions Bsymbolic-non-weak-functions Bdynamic:dynamic Bstatic:static
		build-id icf=all:codegen icf=safe:codegen icf=none:codegen disable-new-dtags discard-all discard-locals discard-none EB EL
		emit-relocs:codegen enable-new-dtags end-group end-lib error-unresolved-symbols fix-cortex-a53-843419 fix-cortex-a8 help
		nmagic:static nostdlib:nostdlib no-dynamic-linker noinhibit-exec no-warn-mismatch no-nmagic no-omagic no-undefined pic-veneer
		pop-state:pop-state push-state:push-state print-map:report print-memory-usage relocatable shared start-group start-lib strip-all
		strip-debug target1-rel target1-abs trace unique verbose version warn-unresolved-symbols call_shared:dynamic dy:dynamic
		dn:static non_shared:static static:static pic-executable Bshareable disable-verify:codegen save-temps:side long-plt
		no-copy-dt-needed-entries no-ctors-in-init-array no-keep-memory secure-plt sort-common stats warn-execstack warn-once
		warn-shared-textrel dc dp define-common no-define-common time-trace:side plugin-opt=debug-pass-manager:side plugin-opt=disable-verify:codegen
		plugin-opt=emit-asm:side plugin-opt=emit-llvm:side plugin-opt=cs-profile-generate:codegen plugin-opt=opt-remarks-with-hotness
		plugin-opt=save-temps:side plugin-opt=thinlto-emit-imports-files:side plugin-opt=thinlto-index-only:side
		plugin-opt=legacy-pass-manager:codegen plugin-opt=new-pass-manager:codegen plugin-opt=opaque-pointers:codegen
		plugin-opt=no-opaque-pointers:codegen`,
	FF: `cmse-implib cref:report enable-non-contiguous-regions force-group-allocation ignore-function-address-equality
		ignore-data-address-equality no-warnings omagic:static verbose-bp-section-orderer vs-diagnostics color-diagnostics
		no-color-diagnostics no-call-graph-profile-sort call-graph-profile-sort power10-stubs no-power10-stubs
		no-add-needed lto-debug-pass-manager:side lto-emit-asm:side lto-emit-llvm:side lto-cs-profile-generate:codegen
		opt-remarks-with-hotness thinlto-emit-imports-files:side thinlto-emit-index-files:side thinlto-index-only:side
		lto-legacy-pass-manager:codegen no-lto-legacy-pass-manager:codegen lto-new-pass-manager:codegen`,
	J: `build-id= print-archive-stats= plugin-opt=O:codegen plugin-opt=dwo_dir=:split-dwarf plugin-opt=jobs=
		plugin-opt=lto-partitions=:codegen plugin-opt=mcpu=:codegen plugin-opt=cs-profile-path=:codegen-file plugin-opt=obj-path=:side
		plugin-opt=opt-remarks-filename=:side plugin-opt=opt-remarks-passes= plugin-opt=opt-remarks-format=
		plugin-opt=opt-remarks-hotness-threshold= plugin-opt=sample-profile=:codegen-file plugin-opt=stats-file=:side
		plugin-opt=time-trace=:side plugin-opt=thinlto-index-only=:side plugin-opt=thinlto-object-suffix-replace=:codegen
		plugin-opt=thinlto-prefix-replace=:codegen plugin-opt=-:llvm plugin-opt=thinlto:codegen plugin-opt=-fresolution=
		plugin-opt=-pass-through=:codegen plugin-opt=:codegen rpath-link= time-trace-file=:side library=:library library-path=:search Ttext-segment=`,
	JJ: `call-graph-profile-sort= bp-compression-sort= bp-startup-sort= color-diagnostics= randomize-section-padding=
		remap-inputs-file=:refuse time-trace=:side power10-stubs= why-extract= package-metadata= lto=:codegen
		lto-aa-pipeline=:codegen lto-newpm-passes=:codegen lto-O:codegen lto-CGO:codegen lto-partitions=:codegen
		lto-cs-profile-file=:codegen-file lto-obj-path=:side lto-sample-profile=:codegen-file save-temps=:side
		lto-basic-block-sections=:codegen-file thinlto-cache-dir=:cache thinlto-index-only=:side thinlto-jobs=
		thinlto-object-suffix-replace=:codegen thinlto-prefix-replace=:codegen thinlto-single-module=:side print-gc-sections=:report
		thinlto-distributor=:codegen-file thinlto-distributor-arg=:codegen thinlto-remote-compiler=:codegen-file
		thinlto-remote-compiler-arg=:llvm thinlto-remote-compiler-prepend-arg=:llvm`,
	Eq: `auxiliary compress-debug-sections defsym split-stack-adjust-size Tbss Tdata Ttext call-graph-ordering-file dynamic-linker
		dynamic-list entry exclude-libs filter fini format:format hash-style init just-symbols keep-unique Map:report orphan-handling
		print-symbol-order rpath retain-symbols-file script:script section-start soname sort-section sysroot:sysroot target2
		trace-symbol undefined unresolved-symbols version-script wrap mllvm:llvm plugin mips-got-size library:library
		library-path:search`,
	EEq: `compress-sections in-implib out-implib irpgo-profile default-script:default-script dependency-file error-limit
		error-handling-script export-dynamic-symbol export-dynamic-symbol-list image-base oformat pack-dyn-relocs
		remap-inputs:refuse reproduce symbol-ordering-file threads time-trace-granularity undefined-glob rsp-quoting:rsp-quoting
		warn-backrefs-exclude why-live:report lto-known-safe-vtables:codegen opt-remarks-hotness-threshold shuffle-sections
		thinlto-cache-policy load-pass-plugin:codegen-file android-memtag-mode output`,
	B: `allow-multiple-definition allow-shlib-undefined as-needed demangle eh-frame-hdr export-dynamic fatal-warnings gc-sections
		merge-exidx-entries pie print-gc-sections:report print-icf-sections:report undefined-version warn-common whole-archive check-sections`,
	BB: `optimize-bb-jumps fortran-common apply-dynamic-relocs dependent-libraries debug-names execute-only gdb-index gnu-unique
		mmap-output-file relax relax-gp rosegment xosegment toc-optimize pcrel-optimize use-android-relr-tags warn-backrefs
		warn-ifunc-textrel warn-symbol-ordering lto-pgo-warn-mismatch:codegen lto-validate-all-vtables-have-type-infos:codegen
		lto-whole-program-visibility:codegen lto-basic-block-address-map:codegen lto-unique-basic-block-section-names:codegen
		fat-lto-objects:fat check-dynamic-relocations android-memtag-stack android-memtag-heap bp-compression-sort-startup-functions
		branch-to-branch`,
	// Two dashes, the value in the next word only.
	SS: `chroot:chroot opt-remarks-filename:side opt-remarks-passes opt-remarks-format`,
	// One dash.
	f1: `v x X q:codegen ) E n:static N:static M:report r ( s S t V w d g`,
	js1: `O l:library L:search m o e R T:script h y u z G`,
	s1: `dT:default-script f F b:format`,
	s12: `Ttext-segment rpath-link`,
};
// Aliases whose id is another option's (roles are the target's).
const ALIAS: Record<string, string> = {
	call_shared: 'Bdynamic',
	dy: 'Bdynamic',
	dn: 'Bstatic',
	non_shared: 'Bstatic',
	static: 'Bstatic',
	N: 'omagic',
	n: 'nmagic',
	'library=': 'library',
	l: 'library',
	'library-path=': 'library-path',
	L: 'library-path',
	T: 'script',
	dT: 'default-script',
	b: 'format',
	q: 'emit-relocs',
	o: 'output',
	'output=': 'output',
	'plugin-opt=save-temps': 'save-temps',
};

for (const [cls, list] of Object.entries(CLASSES)) {
	for (const entry of words(list)) {
		const [name, role] = entry.split(':') as [string, Role | undefined];
		const id = ALIAS[name] ?? name.replace(/=$/, '');
		switch (cls) {
			case 'F':
				add(both, name, 'flag', id, role);
				break;
			case 'FF':
				add(two, name, 'flag', id, role);
				break;
			case 'J':
				add(both, name, 'joined', id, role);
				break;
			case 'JJ':
				add(two, name, 'joined', id, role);
				break;
			case 'Eq':
			case 'EEq': {
				const prefixes = cls === 'Eq' ? both : two;
				add(prefixes, name, 'separate', id, role);
				add(prefixes, `${name}=`, 'joined', id, role);
				break;
			}
			case 'B':
			case 'BB': {
				const prefixes = cls === 'B' ? both : two;
				add(prefixes, name, 'flag', id, role);
				add(prefixes, `no-${name}`, 'flag', `no-${id}`, role);
				break;
			}
			case 'SS':
				add(two, name, 'separate', id, role);
				break;
			case 'f1':
				add(one, name, 'flag', id, role);
				break;
			case 'js1':
				add(one, name, 'joined-or-separate', ALIAS[name] ?? name, role);
				break;
			case 's1':
				add(one, name, 'separate', ALIAS[name] ?? name, role);
				break;
			case 's12':
				add(both, name, 'separate', id, role);
				break;
		}
	}
}

/** Every spelling lld 14 to 22 accepts, for the tests that hold other readers (bin/ld.lld) to it. */
export const SPELLINGS: readonly Spelling[] = table;

// By first letter after the prefix, for the longest-match search.
const byStart = new Map<string, Spelling[]>();
for (const s of table) {
	const key = s.prefix + s.name[0];
	const list = byStart.get(key) ?? [];
	list.push(s);
	byStart.set(key, list);
}
for (const list of byStart.values()) list.sort((a, b) => b.name.length - a.name.length);

export type Option = {
	/** The option's own name (an alias gives its target's); the word without its dashes for an unknown option. */
	id: string;
	role?: Role;
	/** Its value, joined or the next word; undefined for a flag. */
	value?: Bytes;
	/** How the key spells it: the word without its dashes, with `=value` after a separate value. */
	text: Bytes;
	/** The last word, an option whose value should follow: lld fails the link ("missing argument"). */
	missing?: true;
};

/**
 * The last word, when it is an option whose value lld would take from the
 * next word: a word appended after it (a cache flag, --thinlto-cache-policy)
 * would become that value, and a link that fails ("missing argument") might
 * succeed. Undefined otherwise.
 */
export function lacksValue(words: Bytes[]): Bytes | undefined {
	let last: Option | { file: Bytes } | undefined;
	for (const opt of parse(words)) last = opt;
	return last && 'missing' in last ? words[words.length - 1] : undefined;
}

/** The option a word starts (its value maybe the next word), as lld's OptTable matches it; undefined for an input. */
export function match(word: Bytes): Spelling | undefined {
	if (!word.startsWith('-') || word === '-') return undefined;
	for (const prefix of ['--', '-'] as const) {
		if (!word.startsWith(prefix) || word.length === prefix.length) continue;
		const rest = word.slice(prefix.length);
		for (const s of byStart.get(prefix + rest[0]) ?? []) {
			if (!rest.startsWith(s.name)) continue;
			if ((s.kind === 'flag' || s.kind === 'separate') && rest.length !== s.name.length) continue;
			return s;
		}
	}
	return undefined;
}

/** argv (response files expanded) as options and input files, in order. */
export function* parse(words: Bytes[]): Generator<Option | { file: Bytes }> {
	// lld's concatLTOPluginOptions: `--plugin-opt X` (gold's spelling) is `--plugin-opt=X`, whatever stands before it.
	const argv: Bytes[] = [];
	for (let i = 0; i < words.length; i++) {
		const w = words[i];
		argv.push((w === '-plugin-opt' || w === '--plugin-opt') && i + 1 < words.length ? `${w}=${words[++i]}` : w);
	}
	for (let i = 0; i < argv.length; i++) {
		const word = argv[i];
		if (!word.startsWith('-') || word === '-') {
			yield { file: word };
			continue;
		}
		const s = match(word);
		const bare = word.replace(/^--?/, '');
		if (!s) {
			// gold's `--plugin-opt X` with no X: lld joins whatever is appended after it.
			yield { id: bare, text: bare, ...(word === '-plugin-opt' || word === '--plugin-opt' ? { missing: true as const } : {}) };
			continue;
		}
		const joined = word.slice(s.prefix.length + s.name.length);
		const takesNext = s.kind === 'separate' || (s.kind === 'joined-or-separate' && joined === '');
		if (takesNext) {
			// A missing value fails the link; nothing to read.
			const value = i + 1 < argv.length ? argv[++i] : undefined;
			if (value === undefined) yield { id: s.id, role: s.role, text: bare, missing: true };
			else yield { id: s.id, role: s.role, value, text: `${bare}=${value}` };
		} else {
			yield { id: s.id, role: s.role, value: s.kind === 'flag' ? undefined : joined, text: bare };
		}
	}
}

/**
 * LLVM options (-mllvm, --plugin-opt=-) and remote compiler options (DTLTO)
 * that make the backends print or write something besides the object:
 * remarks, statistics, timers, traces, IR dumps, debug output, split DWARF.
 * A cache hit skips the backend, so these would go unsaid or unwritten.
 */
const LLVM_SIDE =
	/^--?(Rpass|fsave-optimization-record|foptimization-record-file|ftime-trace|ftime-report|gsplit-dwarf|save-stats|print-stats|fproc-stat-report|pass-remarks|lto-pass-remarks|remarks-|stats|info-output-file|time-passes|time-trace|time-report|print-|debug(?:$|=|-only|-pass|-counter|-buffer)|view-|opt-bisect-limit|filter-print-funcs|track-memory|save-temps|dot-|dump-)/;

export const llvmSideOutput = (value: Bytes): boolean => LLVM_SIDE.test(value);
