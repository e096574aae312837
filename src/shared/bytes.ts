// Paths and arguments as "byte strings": one char per byte (latin1), so file
// names that are not UTF-8 survive from /proc/self/cmdline, a response file
// or the environment to the linker's argv and the file system untouched.
// Everything on the shim side that holds a path or an argument holds Bytes;
// Buffers appear only at the fs boundary.

/** A string whose chars are bytes (latin1). */
export type Bytes = string;

export const toBytes = (text: string): Bytes => Buffer.from(text, 'utf8').toString('latin1');
export const bytesToBuffer = (bytes: Bytes): Buffer => Buffer.from(bytes, 'latin1');
/** For display and JSON: UTF-8, with U+FFFD for bytes that are not. */
export const bytesToText = (bytes: Bytes): string => bytesToBuffer(bytes).toString('utf8');
export const isUtf8 = (bytes: Bytes): boolean => toBytes(bytesToText(bytes)) === bytes;

/**
 * Text for a terminal that ltocache did not write itself (names and metadata
 * read from a cache root, another member's lock owner or marker), with every
 * C0 and C1 control character and DEL as an escape (\x1b): a member of a
 * shared root could otherwise plant sequences that the terminal of whoever
 * runs stats or doctor, or links, acts on. JSON needs none: it escapes them.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it replaces
export const shown = (text: string) => text.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);

/**
 * A name as a process in cwd opens it: joined, not normalized, so the file
 * system resolves `link/..` where the symlink points, as lld and its
 * assembler do (path.resolve would drop both on paper).
 */
export const inDir = (cwd: string, name: Bytes): Bytes => (name.startsWith('/') ? name : `${cwd}/${name}`);
