// Linker scripts, as far as they name files: lld's ScriptLexer's tokens,
// and the commands that add inputs or search directories (INPUT, GROUP,
// AS_NEEDED, INCLUDE, SEARCH_DIR), in order. Where the names lead is the
// inputs reader's (inputs.ts), which finds them the way lld's
// ScriptParser::addFile does.
import type { Bytes } from '../shared/bytes.js';

/** lld's ScriptLexer: comments, quoted tokens (quotes kept), two-character operators, runs of word characters, single characters. */
export function scriptTokens(text: Bytes): Bytes[] | undefined {
	const tokens: Bytes[] = [];
	let s = 0;
	const n = text.length;
	while (s < n) {
		if (text.startsWith('/*', s)) {
			const e = text.indexOf('*/', s + 2);
			if (e < 0) return undefined;
			s = e + 2;
			continue;
		}
		if (text[s] === '#') {
			const e = text.indexOf('\n', s + 1);
			s = e < 0 ? n : e + 1;
			continue;
		}
		if (/\s/.test(text[s])) {
			s++;
			continue;
		}
		if (text[s] === '"') {
			const e = text.indexOf('"', s + 1);
			if (e < 0) return undefined;
			tokens.push(text.slice(s, e + 1));
			s = e + 1;
			continue;
		}
		const two = text.slice(s, s + 3);
		if (two === '<<=' || two === '>>=') {
			tokens.push(two);
			s += 3;
			continue;
		}
		if (s + 1 < n && ((text[s + 1] === '=' && '*/+-<>&|'.includes(text[s])) || (text[s] === text[s + 1] && '<>&|'.includes(text[s])))) {
			tokens.push(text.slice(s, s + 2));
			s += 2;
			continue;
		}
		const word = /^[A-Za-z0-9_.$/\\~=+[\]*?\-!^:]+/.exec(text.slice(s, s + 4096));
		const length = word ? word[0].length : 1;
		tokens.push(text.slice(s, s + length));
		s += length;
	}
	return tokens;
}

const unquote = (token: Bytes) => (token.startsWith('"') ? token.slice(1, -1) : token);

export type ScriptCommand =
	/** INCLUDE: another script, found like -T. */
	| { include: Bytes }
	/** SEARCH_DIR: a directory -l and scripts are looked for in. */
	| { searchDir: Bytes }
	/** A name from INPUT or GROUP (AS_NEEDED's included). */
	| { input: Bytes };

/** The commands of a script that name files, in order; undefined if it cannot be read (an unclosed comment or quote). */
export function scriptCommands(text: Bytes): ScriptCommand[] | undefined {
	const tokens = scriptTokens(text);
	if (tokens === undefined) return undefined;
	const out: ScriptCommand[] = [];
	for (let i = 0; i < tokens.length; i++) {
		const token = tokens[i];
		if (token === 'INCLUDE' && i + 1 < tokens.length) out.push({ include: unquote(tokens[++i]) });
		else if (token === 'SEARCH_DIR' && tokens[i + 1] === '(' && i + 2 < tokens.length) {
			out.push({ searchDir: unquote(tokens[i + 2]) });
			i += 2;
		} else if ((token === 'INPUT' || token === 'GROUP') && tokens[i + 1] === '(') {
			let depth = 0;
			for (i += 1; i < tokens.length; i++) {
				const t = tokens[i];
				if (t === '(') depth++;
				else if (t === ')') {
					if (--depth === 0) break;
				} else if (t !== ',' && t !== 'AS_NEEDED') out.push({ input: unquote(t) });
			}
		}
	}
	return out;
}
