// The remote stores a cache can be shared through (LTOCACHE_REMOTE): what
// each must do, and the one table of URL schemes that names them. Each
// holds, per namespace (see src/shim/remote.ts), the cache entries, one
// manifest per link's inputs of the entries that link used, and a head: the
// last manifest written (src/shared/remote/index.ts). Every object is
// written whole by one writer and never merged: machines writing at once
// lose nothing, and two writers of one name write the same bytes (entries
// and packs are named by content; a manifest by its link's inputs).
import { httpStore } from './http.js';
import type { Manifest, Sum, Upload } from './index.js';
import { redisStore } from './redis.js';

export interface Store {
	/** The manifest named key (the link's inputs), or without one the namespace's head; undefined if neither is there. */
	manifest(ns: string, key: string | undefined): Promise<Manifest | undefined>;
	/** Fetch the wanted entries, handing take each one the remote has, as it arrives (unchecked: the caller verifies). */
	fetch(ns: string, wanted: [string, Sum][], take: (name: string, data: Buffer) => void): Promise<void>;
	/** Which of the listed entries the remote still holds, whole as far as their size tells, without reading them. */
	present(ns: string, listed: [string, Sum][]): Promise<Set<string>>;
	/** Store the entries; returns where each now is (over HTTP, its pack and offset). */
	upload(ns: string, entries: Upload[]): Promise<Map<string, Sum>>;
	/** Write a link's manifest under key (if any) and as the namespace's head. */
	publish(ns: string, key: string | undefined, entries: Map<string, Sum>): Promise<void>;
	/** Write and remove a probe (doctor: can this client write?). */
	probe(): Promise<void>;
	close(): void;
}

/** Every URL scheme a remote may have, and the store that speaks it. */
const SCHEMES = {
	'http:': httpStore,
	'https:': httpStore,
	'redis:': redisStore,
	'rediss:': redisStore,
} satisfies Record<string, (url: URL, signal: AbortSignal) => Store>;

const schemeNames = Object.keys(SCHEMES).map((s) => s.slice(0, -1));

/** Whether a value is a URL of a scheme ltocache knows, with a host. */
export const isRemoteUrl = (value: string) => new RegExp(`^(${schemeNames.join('|')})://[^/]`).test(value);

/** The store a URL names; throws on a URL of a scheme ltocache does not know. */
export function openStore(url: URL, signal: AbortSignal): Store {
	const open = Object.hasOwn(SCHEMES, url.protocol) ? SCHEMES[url.protocol as keyof typeof SCHEMES] : undefined;
	if (!open) throw new Error(`${url.protocol} is not a remote ltocache knows (${schemeNames.join(', ')})`);
	return open(url, signal);
}

/**
 * work, or once signal aborts a rejection saying that no answer came within
 * ms: a stalled server may never settle work, whatever the store does with
 * the signal.
 */
export function withinBudget<T>(work: Promise<T>, signal: AbortSignal, ms: number): Promise<T> {
	return Promise.race([
		work,
		new Promise<never>((_, reject) => {
			const stop = () => reject(new Error(`no answer within ${ms / 1000}s`));
			if (signal.aborted) stop();
			else signal.addEventListener('abort', stop, { once: true });
		}),
	]);
}

/**
 * What went wrong with a remote, in words that name the cause; timedOut:
 * the budget ran out (a connection cut short is not a timeout, whatever
 * the client's error calls it).
 */
export function describeFailure(error: unknown, timedOut: boolean, budgetMs: number): string {
	if (timedOut) return `no answer within ${budgetMs / 1000}s`;
	const code = String((error as NodeJS.ErrnoException)?.code ?? '');
	const message = String((error as Error)?.message ?? error);
	if (code === 'ECONNREFUSED') return `connection refused (${message})`;
	if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `unknown host (${message})`;
	if (/^E(HOST|NET)(UNREACH|DOWN)$|^ETIMEDOUT$/.test(code)) return `unreachable (${message})`;
	if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|^ERR_TLS|^ERR_SSL|^EPROTO$/.test(code))
		return `TLS: ${message} (${code}); a private CA is trusted with NODE_EXTRA_CA_CERTS=<its PEM file>`;
	if (/^(ECONNRESET|EPIPE|ECONNABORTED)$/.test(code) || /^(aborted|socket hang up|connection closed)$/.test(message))
		return `the connection was cut (${message})`;
	return message;
}

/** Whether a failure says the server could not be reached or did not answer in time (not what it answered). */
export function isUnreachable(error: unknown, timedOut: boolean): boolean {
	const code = String((error as NodeJS.ErrnoException)?.code ?? '');
	return (
		timedOut || /^(ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|EHOSTDOWN|ENETDOWN|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EPIPE)$/.test(code)
	);
}

/** A URL as it may be shown: never its user or password. */
export function shownUrl(url: URL): string {
	return `${url.protocol}//${url.host}${url.pathname}`;
}
