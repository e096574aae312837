// The Redis reply reader: what a connection delivers, in whatever chunks
// the socket hands over, must come out as the same replies in the same
// order, and bytes that are not RESP2 must be refused, never read as a reply.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Reply, replyReader } from '../../src/shared/remote/resp.js';

/** A reply as Redis writes it. */
function encode(reply: Reply): string {
	if (reply === null) return '$-1\r\n';
	if (reply instanceof Error) return `-${reply.message}\r\n`;
	if (typeof reply === 'number') return `:${reply}\r\n`;
	if (typeof reply === 'string') return `+${reply}\r\n`;
	if (Buffer.isBuffer(reply)) return `$${reply.length}\r\n${reply.toString('latin1')}\r\n`;
	return `*${reply.length}\r\n${reply.map(encode).join('')}`;
}

/** Replies as comparable values: bulk strings as their bytes. */
const plain = (reply: Reply): unknown =>
	Buffer.isBuffer(reply)
		? { bulk: reply.toString('latin1') }
		: reply instanceof Error
			? { error: reply.message }
			: Array.isArray(reply)
				? reply.map(plain)
				: reply;

/** Feeds the stream in the given chunks; the replies delivered. */
function read(stream: Buffer, cuts: number[]): Reply[] {
	const out: Reply[] = [];
	const feed = replyReader((r) => out.push(r));
	let at = 0;
	for (const cut of [...new Set(cuts)].sort((a, b) => a - b)) {
		if (cut <= at || cut >= stream.length) continue;
		feed(stream.subarray(at, cut));
		at = cut;
	}
	feed(stream.subarray(at));
	return out;
}

const line = fc.stringMatching(/^[ -~]{0,12}$/).filter((s) => !s.includes('\r'));
const bytes = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a));
const reply: fc.Arbitrary<Reply> = fc.letrec<{ reply: Reply }>((tie) => ({
	reply: fc.oneof(
		{ depthSize: 'small', withCrossShrink: true },
		line,
		line.map((m) => new Error(m)),
		fc.integer({ min: -1e9, max: 1e9 }),
		bytes,
		fc.constant(null),
		fc.array(tie('reply'), { maxLength: 5 }),
	),
})).reply;

describe('the Redis reply reader', () => {
	it('delivers the same replies however the stream is cut into chunks', () => {
		fc.assert(
			fc.property(fc.array(reply, { minLength: 1, maxLength: 6 }), fc.array(fc.nat(4000), { maxLength: 30 }), (replies, cuts) => {
				const stream = Buffer.from(replies.map(encode).join(''), 'latin1');
				expect(read(stream, cuts).map(plain)).toEqual(replies.map(plain));
			}),
			{ numRuns: 300 },
		);
	});

	it('delivers a reply cut at every byte, and a large bulk string joined once from many chunks', () => {
		const replies: Reply[] = [
			'OK',
			new Error('ERR wrong'),
			42,
			Buffer.from('a\r\nb'),
			Buffer.alloc(0),
			null,
			[],
			[Buffer.from('x'), null, [7, 'y']],
			Buffer.alloc(200_000, 7),
		];
		const stream = Buffer.from(replies.map(encode).join(''), 'latin1');
		const whole = read(stream, []).map(plain);
		expect(whole).toEqual(replies.map(plain));
		for (const size of [1, 2, 3, 7, 64, 65_536]) {
			const cuts = Array.from({ length: Math.ceil(stream.length / size) }, (_, i) => i * size);
			expect(read(stream, cuts).map(plain), `chunks of ${size}`).toEqual(whole);
		}
		// A null array is a reply too.
		expect(read(Buffer.from('*-1\r\n:1\r\n'), [])).toEqual([null, 1]);
	});

	it('waits for the rest of a reply, and delivers nothing of it before', () => {
		const out: Reply[] = [];
		const feed = replyReader((r) => out.push(r));
		feed(Buffer.from('*2\r\n$3\r\nab'));
		expect(out).toEqual([]);
		feed(Buffer.from('c\r\n'));
		expect(out).toEqual([]);
		feed(Buffer.from(':5\r\n+O'));
		expect(out.map(plain)).toEqual([[{ bulk: 'abc' }, 5]]);
		feed(Buffer.from('K\r\n'));
		expect(out.map(plain)).toEqual([[{ bulk: 'abc' }, 5], 'OK']);
	});

	it('delivers a bulk string that ends in the next chunk, after a reply that came whole before it', () => {
		const out: Reply[] = [];
		const feed = replyReader((r) => out.push(r));
		feed(Buffer.from('+OK\r\n:7\r\n$3\r\nab'));
		expect(out).toEqual(['OK', 7]);
		feed(Buffer.from('c\r\n'));
		expect(out.map(plain)).toEqual(['OK', 7, { bulk: 'abc' }]);
	});

	it('refuses what is not RESP2: an unknown type, a length or count that is not a number', () => {
		for (const bad of [
			'!3\r\nabc\r\n',
			'$x\r\nabc\r\n',
			'$\r\n\r\n',
			'*1.5\r\n',
			':\r\n',
			':4x\r\n',
			':x4\r\n',
			'$3.5\r\nabc\r\n',
			'hello\r\n',
		]) {
			const feed = replyReader(() => {});
			expect(() => feed(Buffer.from(bad)), JSON.stringify(bad)).toThrow('not a Redis reply');
		}
	});

	describe('refuses what a hostile server could make it hold', () => {
		const limits = { bytes: 1000, items: 20 };
		const reader = () => {
			const out: Reply[] = [];
			return { out, feed: replyReader((r) => out.push(r), limits) };
		};

		it('a bulk string longer than the limit, from its header, before its bytes arrive', () => {
			const { out, feed } = reader();
			expect(() => feed(Buffer.from('$1001\r\n'))).toThrow('a Redis reply of more than 1000 bytes or 20 items');
			expect(out).toEqual([]);
			const nested = reader();
			expect(() => nested.feed(Buffer.from(`*2\r\n$600\r\n${'x'.repeat(600)}\r\n$400\r\n`))).toThrow('more than 1000 bytes');
		});

		it('takes a reply of exactly the limits', () => {
			const { out, feed } = reader();
			feed(Buffer.from(`$994\r\n${'x'.repeat(994)}\r\n`));
			feed(Buffer.from(`*20\r\n${':1\r\n'.repeat(20)}`));
			expect(out.map((r) => (Buffer.isBuffer(r) ? r.length : (r as Reply[]).length))).toEqual([994, 20]);
		});

		it('an array of more items than the limit, nested ones counted too', () => {
			expect(() => reader().feed(Buffer.from('*21\r\n'))).toThrow('20 items');
			expect(() => reader().feed(Buffer.from('*10\r\n*11\r\n'))).toThrow('20 items');
		});

		it('a line that never ends', () => {
			expect(() => reader().feed(Buffer.from(`+${'x'.repeat(70_000)}`))).toThrow('not a Redis reply');
		});

		it('counts each reply alone: many replies within the limits all arrive', () => {
			const { out, feed } = reader();
			const one = `*2\r\n$500\r\n${'y'.repeat(500)}\r\n$400\r\n${'z'.repeat(400)}\r\n`;
			feed(Buffer.from(one.repeat(5)));
			for (let i = 0; i < 15; i++) feed(Buffer.from(`*19\r\n${':1\r\n'.repeat(19)}`));
			expect(out).toHaveLength(20);
			expect((out[4] as Buffer[]).map((b) => b.length)).toEqual([500, 400]);
		});
	});
});
