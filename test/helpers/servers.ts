// Real remote stores on localhost for the remote cache tests: nginx with its
// WebDAV module (plain GET and PUT), redis-server, and a server that accepts
// connections and never answers. Each on a free port, gone when stopped.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export type Server = { url: string; port: number; pid?: number; stop: () => Promise<void> };

async function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const server = net.createServer();
		server.listen(0, '127.0.0.1', () => {
			const { port } = server.address() as net.AddressInfo;
			server.close(() => resolve(port));
		});
		server.on('error', reject);
	});
}

/** Resolves once something listens on the port. */
async function listening(port: number, child: ChildProcess, log: () => string): Promise<void> {
	for (let i = 0; i < 100; i++) {
		if (child.exitCode !== null) throw new Error(`server exited: ${log()}`);
		const up = await new Promise<boolean>((resolve) => {
			const socket = net.connect(port, '127.0.0.1', () => {
				socket.destroy();
				resolve(true);
			});
			socket.on('error', () => resolve(false));
		});
		if (up) return;
		await new Promise((r) => setTimeout(r, 50));
	}
	throw new Error(`server did not listen on ${port}: ${log()}`);
}

const stopper = (child: ChildProcess) => () =>
	new Promise<void>((resolve) => {
		if (child.exitCode !== null || child.signalCode !== null) return resolve();
		child.on('exit', () => resolve());
		child.kill('SIGKILL');
	});

/** nginx serving dir: PUT and DELETE under /cache/ (and under /whole/, which ignores Range), PUT refused with 507 (full) under /full/, everything with 401 under /locked/. */
export async function startNginx(dir: string): Promise<Server & { root: string }> {
	const port = await freePort();
	const root = path.join(dir, 'www');
	fs.mkdirSync(path.join(root, 'cache'), { recursive: true });
	fs.mkdirSync(path.join(root, 'full'), { recursive: true });
	fs.mkdirSync(path.join(root, 'whole'), { recursive: true });
	const conf = path.join(dir, 'nginx.conf');
	fs.writeFileSync(
		conf,
		`daemon off;
master_process off;
user root;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events {}
http {
	access_log off;
	client_body_temp_path ${dir}/body;
	proxy_temp_path ${dir}/proxy;
	fastcgi_temp_path ${dir}/fastcgi;
	uwsgi_temp_path ${dir}/uwsgi;
	scgi_temp_path ${dir}/scgi;
	server {
		listen 127.0.0.1:${port};
		root ${root};
		client_max_body_size 0;
		location /cache/ { dav_methods PUT DELETE; create_full_put_path on; }
		location /full/ { if ($request_method = PUT) { return 507; } }
		location /locked/ { return 401; }
		location /whole/ { dav_methods PUT DELETE; create_full_put_path on; max_ranges 0; }
	}
}
`,
	);
	const child = spawn('nginx', ['-c', conf, '-e', path.join(dir, 'error.log')], { stdio: 'ignore' });
	await listening(port, child, () => fs.readFileSync(path.join(dir, 'error.log'), 'utf8'));
	return { url: `http://127.0.0.1:${port}/cache/`, port, pid: child.pid, root: path.join(root, 'cache'), stop: stopper(child) };
}

/** redis-server in memory; extra arguments as on its command line (--requirepass x, --maxmemory 1); on port, or a free one. */
export async function startRedis(dir: string, extra: string[] = [], port?: number): Promise<Server> {
	port ??= await freePort();
	let out = '';
	const child = spawn('redis-server', [
		'--port',
		String(port),
		'--bind',
		'127.0.0.1',
		'--save',
		'',
		'--appendonly',
		'no',
		'--dir',
		dir,
		...extra,
	]);
	child.stdout?.on('data', (d) => {
		out += d;
	});
	await listening(port, child, () => out);
	return { url: `redis://127.0.0.1:${port}/0`, port, pid: child.pid, stop: stopper(child) };
}

/** Accepts connections and never answers: a stalled remote, on port or a free one; connections() counts those it took. */
export async function startSilent(on = 0): Promise<Server & { connections: () => number }> {
	const sockets: net.Socket[] = [];
	const server = net.createServer((socket) => sockets.push(socket));
	await new Promise<void>((resolve) => server.listen(on, '127.0.0.1', resolve));
	const { port } = server.address() as net.AddressInfo;
	return {
		url: `http://127.0.0.1:${port}/cache/`,
		port,
		connections: () => sockets.length,
		stop: () =>
			new Promise<void>((resolve) => {
				for (const s of sockets) s.destroy();
				server.close(() => resolve());
			}),
	};
}

/** Cuts every connection: over HTTP after the start of a response it never finishes, over Redis at once. */
export async function startCutter(): Promise<Server> {
	const server = net.createServer((socket) => {
		socket.once('data', (request) => {
			if (request.toString('latin1').startsWith('*')) {
				socket.destroy();
				return;
			}
			socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nllvmcache-');
			setTimeout(() => socket.destroy(), 50);
		});
	});
	return onFreePort(server, (port) => `http://127.0.0.1:${port}/cache/`);
}

/** Answers every request 201 with an empty body: takes writes and stores nothing. */
export async function startBlackHole(): Promise<Server> {
	const http = await import('node:http');
	const server = http.createServer((req, res) => {
		req.resume();
		req.on('end', () => res.writeHead(req.method === 'GET' ? 200 : 201, { 'content-length': 0 }).end());
	});
	return onFreePort(server, (port) => `http://127.0.0.1:${port}/cache/`);
}

/** TLS in front of a local port, with a self-signed certificate for 127.0.0.1 and localhost made by openssl in dir; ca: its PEM file. */
export async function startTlsProxy(dir: string, target: number): Promise<Server & { ca: string }> {
	const { execFileSync } = await import('node:child_process');
	const tls = await import('node:tls');
	const key = path.join(dir, 'key.pem');
	const ca = path.join(dir, 'cert.pem');
	execFileSync(
		'openssl',
		[
			'req',
			'-x509',
			'-newkey',
			'rsa:2048',
			'-nodes',
			'-days',
			'2',
			'-subj',
			'/CN=localhost',
			'-addext',
			'subjectAltName=IP:127.0.0.1,DNS:localhost',
			'-keyout',
			key,
			'-out',
			ca,
		],
		{ stdio: 'ignore' },
	);
	const sockets: net.Socket[] = [];
	const server = tls.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(ca) }, (socket) => {
		const upstream = net.connect(target, '127.0.0.1');
		sockets.push(socket, upstream);
		socket.pipe(upstream).pipe(socket);
		socket.on('error', () => upstream.destroy());
		upstream.on('error', () => socket.destroy());
	});
	server.on('tlsClientError', () => {});
	return {
		...(await onFreePort(
			server,
			(port) => `rediss://127.0.0.1:${port}/0`,
			() => {
				for (const s of sockets) s.destroy();
			},
		)),
		ca,
	};
}

/**
 * In front of an HTTP server on port: passes everything through, except
 * that a pack's response stops after its first bytes of body and never
 * ends (a server that stalls mid-transfer).
 */
export async function startStaller(port: number, bytes: number): Promise<Server> {
	const http = await import('node:http');
	const held: import('node:http').ServerResponse[] = [];
	const server = http.createServer((req, res) => {
		const upstream = http.request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
			res.writeHead(answer.statusCode ?? 502, answer.headers);
			if (!req.url?.includes('/pack-')) {
				answer.pipe(res);
				return;
			}
			held.push(res);
			const chunks: Buffer[] = [];
			answer.on('data', (c: Buffer) => chunks.push(c));
			answer.on('end', () => res.write(Buffer.concat(chunks).subarray(0, bytes)));
		});
		req.pipe(upstream);
	});
	return onFreePort(
		server,
		(port) => `http://127.0.0.1:${port}/cache/`,
		() => {
			for (const res of held) res.destroy();
		},
	);
}

/**
 * A TCP proxy in front of port on localhost that passes the server's bytes
 * to the client at about rate bytes a second (a slow line), and the
 * client's through as they come; url is the server's under the proxy's port.
 */
export async function startThrottle(port: number, rate: number, scheme: 'http' | 'redis'): Promise<Server> {
	const sockets = new Set<net.Socket>();
	const TICK_MS = 50;
	const server = net.createServer((client) => {
		const upstream = net.connect(port, '127.0.0.1');
		sockets.add(client).add(upstream);
		const queue: Buffer[] = [];
		let ended = false;
		const timer = setInterval(() => {
			let budget = Math.max(1, Math.round((rate * TICK_MS) / 1000));
			while (budget > 0 && queue.length > 0) {
				const chunk = queue[0];
				const n = Math.min(budget, chunk.length);
				client.write(chunk.subarray(0, n));
				if (n === chunk.length) queue.shift();
				else queue[0] = chunk.subarray(n);
				budget -= n;
			}
			if (queue.length === 0 && ended) client.end();
		}, TICK_MS);
		upstream.on('data', (c: Buffer) => queue.push(c));
		upstream.on('end', () => {
			ended = true;
		});
		client.on('data', (c: Buffer) => upstream.write(c));
		const close = () => {
			clearInterval(timer);
			client.destroy();
			upstream.destroy();
			sockets.delete(client);
			sockets.delete(upstream);
		};
		client.on('close', close);
		client.on('error', close);
		upstream.on('error', close);
		upstream.on('close', () => {
			if (queue.length === 0) close();
		});
	});
	return onFreePort(
		server,
		(port) => (scheme === 'http' ? `http://127.0.0.1:${port}/cache/` : `redis://127.0.0.1:${port}/0`),
		() => {
			for (const s of sockets) s.destroy();
		},
	);
}

/**
 * In front of an HTTP server on port: of the GETs of entries stored alone
 * (<namespace>/llvmcache-...), the first is answered 500 at once and the
 * others are held until the file gate exists, then passed through;
 * everything else passes through.
 */
export async function startGate(port: number, gate: string): Promise<Server> {
	const http = await import('node:http');
	let failed = false;
	const timers = new Set<NodeJS.Timeout>();
	const server = http.createServer((req, res) => {
		const pass = () => {
			const upstream = http.request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
				res.writeHead(answer.statusCode ?? 502, answer.headers);
				answer.pipe(res);
			});
			upstream.on('error', () => res.destroy());
			req.pipe(upstream);
		};
		if (req.method !== 'GET' || !/\/llvmcache-[0-9A-Fa-f]+$/.test(req.url ?? '')) return pass();
		if (!failed) {
			failed = true;
			res.writeHead(500, { 'content-length': 0 }).end();
			return;
		}
		const wait = setInterval(() => {
			if (!fs.existsSync(gate)) return;
			clearInterval(wait);
			timers.delete(wait);
			pass();
		}, 10);
		timers.add(wait);
		res.on('close', () => {
			clearInterval(wait);
			timers.delete(wait);
		});
	});
	return onFreePort(
		server,
		(port) => `http://127.0.0.1:${port}/cache/`,
		() => {
			for (const t of timers) clearInterval(t);
		},
	);
}

/** A server of the tests' own on a free local port; end: what to let go of first (held responses, sockets, timers). */
async function onFreePort(server: net.Server, url: (port: number) => string, end: () => void = () => {}): Promise<Server> {
	await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
	const { port } = server.address() as net.AddressInfo;
	const stop = () =>
		new Promise<void>((resolve) => {
			end();
			// An HTTP server's keep-alive connections would hold close() open.
			if ('closeAllConnections' in server) (server as { closeAllConnections: () => void }).closeAllConnections();
			server.close(() => resolve());
		});
	return { url: url(port), port, stop };
}
