/**
 * A TCP fault proxy for tests and the chaos runner: it sits between pipeline processes and Redis
 * (or Kafka) and injects network faults on command.
 *
 *   in a test:   const proxy = await FaultProxy.start({ target: '127.0.0.1:6379' });
 *                REDIS_URL = proxy.redisUrl; proxy.dropReplyTo('XREADGROUP', { nonEmpty: true })
 *   standalone:  node test/support/fault-proxy.ts --listen 7001 --target 127.0.0.1:6379
 *                  [--control 7002] [--raw]
 *                then POST JSON to the control port, e.g. {"fault":"dropReplyTo","command":"XREADGROUP"}
 *                (see `controlCommand` for the rest); GET /stats answers what happened so far.
 *
 * Faults: pass-through; dropReplyTo (swallow the server's reply to the next command of a name,
 * optionally only a reply that carries data, then reset both sides of that connection); reset of
 * every connection; refusal of new connections; latency per chunk; a blackhole (accept, read,
 * never answer); a bandwidth limit.
 *
 * Why not Toxiproxy: its toxics act on bytes and time (latency, bandwidth, slicer, timeout,
 * reset_peer), never on protocol messages, so it cannot target "the reply to one XREADGROUP that
 * carried entries" — the fault behind a consumer's entries staying pending after ioredis re-sends
 * the command on a new connection. That needs the RESP request→reply pairing of each connection
 * (replies come in the order of the commands, pipelined or not), which this proxy keeps.
 *
 * RESP mode (the default) parses both directions of a connection just enough to pair each reply
 * with its command; it holds a reply until it is complete (so it can be dropped whole) and
 * forwards client bytes at once. It assumes RESP2/RESP3 request/reply traffic: no pub/sub or
 * MONITOR on a proxied connection (the pipeline uses neither).
 *
 * Raw mode (`protocol: 'raw'`, for Kafka) forwards bytes without parsing: latency, bandwidth,
 * blackhole, refusal and resets work, dropReplyTo does not. A Kafka client connects to the
 * bootstrap address for metadata, then to the address the broker advertises (its own listener),
 * so a proxy on the bootstrap address carries only part of the traffic unless the broker
 * advertises the proxy's address (docs/FAULTS.md). The chaos runner therefore takes the broker
 * away for real (`ops/services down kafka`) rather than through a proxy.
 */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { parseArgs } from 'node:util';

export type Protocol = 'resp' | 'raw';

export interface ProxyOptions {
  /** host:port of the server behind the proxy. */
  target: string;
  /** Port to listen on (0 = any free port). */
  listen?: number;
  protocol?: Protocol;
}

export interface DropOptions {
  /** Only a reply that carries data: not a null, not an empty array, no stream read without entries. */
  nonEmpty?: boolean;
}

/** What a dropReplyTo swallowed. */
export interface DroppedReply {
  command: string;
  /** The command's arguments (bulk strings as text), for the test's messages. */
  args: string[];
  /** Size of the swallowed reply in bytes. */
  bytes: number;
  /** Stream entries the swallowed reply carried (stream reads only; 0 otherwise). */
  entries: number;
}

export interface ProxyStats {
  connections: number;
  open: number;
  dropped: DroppedReply[];
  resets: number;
  refused: number;
}

/** A fault this proxy cannot inject in its mode (dropReplyTo on a raw proxy). */
export class ProxyModeError extends Error {
  override name = 'ProxyModeError';
}

/** A RESP stream the proxy cannot parse: the connection is reset, never forwarded half-understood. */
export class RespParseError extends Error {
  override name = 'RespParseError';
}

// ---------------------------------------------------------------------------------------------
// RESP, just enough to find where each message ends and what a reply carries

/** A parsed RESP value: simple/bulk strings as text, integers as numbers, errors as RespError. */
export type RespValue = string | number | null | RespValue[] | RespError;

export class RespError {
  readonly message: string;
  constructor(message: string) {
    this.message = message;
  }
}

const CRLF = 0x0d;

/** The end of the line starting at `at` (index of its \r), or -1 when not all there yet. */
function lineEnd(buf: Buffer, at: number): number {
  const i = buf.indexOf(CRLF, at);
  return i === -1 || i + 1 >= buf.length ? -1 : i;
}

/**
 * Parses one RESP message at `at`: its value (when `build`) and where it ends; null when the
 * buffer does not hold all of it yet. Bulk payloads are skipped by length, so the cost follows
 * the number of elements, not the bytes.
 */
export function parseResp(buf: Buffer, at: number, build: boolean): { end: number; value: RespValue } | null {
  if (at >= buf.length) return null;
  const type = String.fromCharCode(buf[at]!);
  const eol = lineEnd(buf, at + 1);
  if (eol === -1) return null;
  const line = buf.toString('latin1', at + 1, eol);
  const next = eol + 2;
  switch (type) {
    case '+':
    case '(':
    case ',':
    case '#':
      return { end: next, value: line };
    case '_':
      return { end: next, value: null };
    case ':':
      return { end: next, value: Number(line) };
    case '-':
      return { end: next, value: new RespError(line) };
    case '$':
    case '!':
    case '=': {
      const len = Number(line);
      if (len < 0) return { end: next, value: null };
      if (next + len + 2 > buf.length) return null;
      const text = build ? buf.toString('utf8', next, next + len) : '';
      return { end: next + len + 2, value: type === '!' ? new RespError(text) : text };
    }
    case '*':
    case '~':
    case '>':
    case '%':
    case '|': {
      const n = Number(line);
      if (n < 0) return { end: next, value: null };
      const count = type === '%' || type === '|' ? 2 * n : n;
      const items: RespValue[] = [];
      let pos = next;
      for (let i = 0; i < count; i++) {
        const item = parseResp(buf, pos, build);
        if (!item) return null;
        if (build) items.push(item.value);
        pos = item.end;
      }
      // An attribute (|) decorates the value after it; the pair is one message.
      if (type === '|') return parseResp(buf, pos, build);
      return { end: pos, value: items };
    }
    default:
      throw new RespParseError(`unexpected RESP type byte 0x${buf[at]!.toString(16)} at ${at}`);
  }
}

/**
 * One command from a client at `at`: its arguments and where it ends; null when incomplete.
 * Clients send arrays of bulk strings; a line not starting with `*` is an inline command.
 */
function parseCommand(buf: Buffer, at: number): { end: number; args: string[] } | null {
  if (buf[at] !== 0x2a) {
    const eol = lineEnd(buf, at);
    if (eol === -1) return null;
    return { end: eol + 2, args: buf.toString('utf8', at, eol).trim().split(/\s+/) };
  }
  const parsed = parseResp(buf, at, true);
  if (!parsed) return null;
  const args = (parsed.value as RespValue[]).map((a) => String(a));
  return { end: parsed.end, args };
}

/**
 * Stream entries in an XREAD/XREADGROUP reply: RESP2 [[stream, [entries]], …] or a RESP3 map
 * stream → entries. 0 for a null reply (timeout) or streams without entries.
 */
export function streamEntries(reply: RespValue): number {
  if (!Array.isArray(reply)) return 0;
  let total = 0;
  // RESP2: pairs as 2-element arrays; RESP3 map: flat [k, v, k, v]
  const pairs = reply.every((r) => Array.isArray(r))
    ? (reply as RespValue[][])
    : Array.from({ length: reply.length / 2 }, (_, i) => [reply[2 * i]!, reply[2 * i + 1]!]);
  for (const pair of pairs) {
    const entries = pair[1];
    if (Array.isArray(entries)) total += entries.length;
  }
  return total;
}

const STREAM_READS = new Set(['XREAD', 'XREADGROUP']);

/** Whether a reply carries data: for stream reads, entries; otherwise not null, empty or an error. */
function carriesData(command: string, reply: RespValue): boolean {
  if (STREAM_READS.has(command)) return streamEntries(reply) > 0;
  if (reply === null || reply instanceof RespError) return false;
  return !Array.isArray(reply) || reply.length > 0;
}

// ---------------------------------------------------------------------------------------------
// Pacing: latency and bandwidth, order kept per direction

/** Largest piece sent at once under a bandwidth limit, so a big chunk is spread over time. */
const PIECE_BYTES = 16 * 1024;

class Pacer {
  private nextFree = 0;
  private pending = 0;

  /** Delivers `chunk` through `write` after the latency and within the bandwidth, in order. */
  send(chunk: Buffer, latencyMs: number, bytesPerS: number, write: (b: Buffer) => void): void {
    if (latencyMs === 0 && bytesPerS === 0 && this.pending === 0) {
      write(chunk);
      return;
    }
    const pieces = bytesPerS > 0 ? split(chunk, Math.max(1, Math.min(PIECE_BYTES, bytesPerS / 10))) : [chunk];
    for (const piece of pieces) {
      const now = performance.now();
      const at = Math.max(now + latencyMs, this.nextFree);
      this.nextFree = bytesPerS > 0 ? at + (piece.length * 1000) / bytesPerS : at;
      this.pending++;
      setTimeout(() => {
        this.pending--;
        write(piece);
      }, at - now).unref();
    }
  }
}

function split(chunk: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < chunk.length; i += size) out.push(chunk.subarray(i, i + size));
  return out;
}

// ---------------------------------------------------------------------------------------------
// The proxy

interface ArmedDrop {
  command: string;
  nonEmpty: boolean;
  fired: (d: DroppedReply) => void;
}

/** One client connection and its upstream twin. */
class Link {
  readonly client: Socket;
  readonly upstream: Socket | null;
  /** Command names sent on this connection whose replies have not come yet, in order. */
  private readonly awaiting: Array<{ name: string; args: string[] }> = [];
  private fromClient: Buffer = Buffer.alloc(0);
  private fromServer: Buffer = Buffer.alloc(0);
  private readonly up = new Pacer();
  private readonly down = new Pacer();
  private readonly proxy: FaultProxy;
  /** Set once anything was swallowed by a blackhole: the byte streams are no longer in step. */
  swallowed = false;
  closed = false;

  constructor(proxy: FaultProxy, client: Socket) {
    this.proxy = proxy;
    this.client = client;
    this.upstream = proxy.blackholed ? null : createConnection(proxy.targetPort, proxy.targetHost);
    client.on('data', (d: Buffer) => this.onClient(d));
    client.on('error', () => this.close());
    client.on('close', () => this.close());
    this.upstream?.on('data', (d: Buffer) => this.onServer(d));
    this.upstream?.on('error', () => this.close());
    this.upstream?.on('close', () => this.close());
  }

  private onClient(chunk: Buffer): void {
    if (this.proxy.blackholed || !this.upstream) {
      this.swallowed = true;
      return;
    }
    if (this.proxy.protocol === 'resp' && !this.track(chunk)) return;
    this.up.send(chunk, this.proxy.latencyMs, this.proxy.bytesPerS, (b) => this.upstream?.write(b));
  }

  /** Records the commands completed by this chunk; false (and a reset) when it is not RESP. */
  private track(chunk: Buffer): boolean {
    this.fromClient = this.fromClient.length ? Buffer.concat([this.fromClient, chunk]) : chunk;
    let at = 0;
    try {
      for (let cmd = parseCommand(this.fromClient, at); cmd; cmd = parseCommand(this.fromClient, at)) {
        this.awaiting.push({ name: (cmd.args[0] ?? '').toUpperCase(), args: cmd.args });
        at = cmd.end;
      }
    } catch {
      this.reset();
      return false;
    }
    this.fromClient = this.fromClient.subarray(at);
    return true;
  }

  private onServer(chunk: Buffer): void {
    if (this.proxy.blackholed) {
      this.swallowed = true;
      return;
    }
    if (this.proxy.protocol === 'raw') {
      this.forwardDown(chunk);
      return;
    }
    this.fromServer = this.fromServer.length ? Buffer.concat([this.fromServer, chunk]) : chunk;
    let at = 0;
    try {
      while (!this.closed) {
        const armed = this.proxy.armedFor(this.awaiting[0]?.name);
        const reply = parseResp(this.fromServer, at, armed !== undefined);
        if (!reply) break;
        const command = this.awaiting.shift();
        const bytes = this.fromServer.subarray(at, reply.end);
        at = reply.end;
        if (armed && command && (!armed.nonEmpty || carriesData(command.name, reply.value))) {
          this.proxy.fire(armed, {
            command: command.name,
            args: command.args,
            bytes: bytes.length,
            entries: STREAM_READS.has(command.name) ? streamEntries(reply.value) : 0,
          });
          this.reset();
          return;
        }
        this.forwardDown(bytes);
      }
    } catch {
      this.reset();
      return;
    }
    this.fromServer = this.fromServer.subarray(at);
  }

  private forwardDown(bytes: Buffer): void {
    this.down.send(bytes, this.proxy.latencyMs, this.proxy.bytesPerS, (b) => {
      if (!this.client.destroyed) this.client.write(b);
    });
  }

  /** Cuts both sides at once: an RST to the client (ECONNRESET), and the upstream closed. */
  reset(): void {
    if (this.closed) return;
    this.proxy.countReset();
    this.client.resetAndDestroy();
    this.upstream?.destroy();
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.destroy();
    this.upstream?.destroy();
    this.proxy.forget(this);
  }
}

export class FaultProxy {
  readonly protocol: Protocol;
  readonly targetHost: string;
  readonly targetPort: number;
  latencyMs = 0;
  bytesPerS = 0;
  blackholed = false;
  refusing = false;
  private readonly server: Server;
  private readonly links = new Set<Link>();
  private armed: ArmedDrop[] = [];
  private readonly stats: ProxyStats = { connections: 0, open: 0, dropped: [], resets: 0, refused: 0 };

  private constructor(opts: ProxyOptions) {
    const [host, port] = splitHostPort(opts.target);
    this.targetHost = host;
    this.targetPort = port;
    this.protocol = opts.protocol ?? 'resp';
    this.server = createServer({ noDelay: true }, (socket) => this.accept(socket));
  }

  static async start(opts: ProxyOptions): Promise<FaultProxy> {
    const proxy = new FaultProxy(opts);
    await new Promise<void>((resolve, reject) => {
      proxy.server.once('error', reject);
      proxy.server.listen(opts.listen ?? 0, '127.0.0.1', () => resolve());
    });
    return proxy;
  }

  get port(): number {
    return (this.server.address() as { port: number }).port;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get redisUrl(): string {
    return `redis://${this.address}`;
  }

  private accept(socket: Socket): void {
    if (this.refusing) {
      this.stats.refused++;
      socket.resetAndDestroy();
      return;
    }
    socket.setNoDelay(true);
    this.stats.connections++;
    this.links.add(new Link(this, socket));
  }

  /**
   * Swallows the reply to the next command named `command` (any connection) — with `nonEmpty`,
   * the next such reply that carries data — and resets that connection. Resolves with what was
   * swallowed once it happened.
   */
  dropReplyTo(command: string, opts: DropOptions = {}): Promise<DroppedReply> {
    if (this.protocol !== 'resp') throw new ProxyModeError('dropReplyTo needs a RESP proxy');
    return new Promise((fired) => {
      this.armed.push({ command: command.toUpperCase(), nonEmpty: opts.nonEmpty ?? false, fired });
    });
  }

  /** The first armed drop for a command name (undefined when none). */
  armedFor(name: string | undefined): ArmedDrop | undefined {
    return name === undefined ? undefined : this.armed.find((a) => a.command === name);
  }

  /** Records a drop that happened and tells whoever armed it. */
  fire(drop: ArmedDrop, what: DroppedReply): void {
    this.armed = this.armed.filter((a) => a !== drop);
    this.stats.dropped.push(what);
    drop.fired(what);
  }

  /** Forgets the drops armed and not yet fired (their promises never resolve). */
  disarm(): void {
    this.armed = [];
  }

  /** Resets every open connection (clients see ECONNRESET and reconnect). */
  resetAll(): number {
    const open = [...this.links];
    for (const link of open) link.reset();
    return open.length;
  }

  /** While on, new connections are reset at once (the server looks down). */
  refuse(on: boolean): void {
    this.refusing = on;
  }

  /** Delay of every chunk in both directions. */
  setLatency(ms: number): void {
    this.latencyMs = ms;
  }

  /** Bytes per second in each direction of each connection (0 = unlimited). */
  setBandwidth(bytesPerS: number): void {
    this.bytesPerS = bytesPerS;
  }

  /**
   * While on, connections are accepted and read but nothing is forwarded either way (a hung
   * server or a dead route). Turned off, the connections that swallowed bytes are reset: their
   * byte streams are out of step with the server's.
   */
  blackhole(on: boolean): void {
    this.blackholed = on;
    if (!on) for (const link of [...this.links]) if (link.swallowed || !link.upstream) link.reset();
  }

  /** Back to pass-through: no latency, limit, blackhole, refusal or armed drop. */
  clear(): void {
    this.setLatency(0);
    this.setBandwidth(0);
    this.refuse(false);
    this.blackhole(false);
    this.disarm();
  }

  snapshot(): ProxyStats {
    return { ...this.stats, open: this.links.size, dropped: [...this.stats.dropped] };
  }

  countReset(): void {
    this.stats.resets++;
  }

  forget(link: Link): void {
    this.links.delete(link);
  }

  async stop(): Promise<void> {
    for (const link of [...this.links]) link.close();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

function splitHostPort(target: string): [string, number] {
  const i = target.lastIndexOf(':');
  const port = Number(target.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port <= 0) throw new Error(`target ${target} is not host:port`);
  return [target.slice(0, i), port];
}

// ---------------------------------------------------------------------------------------------
// Standalone process with an HTTP control port

export type ControlCommand =
  | { fault: 'dropReplyTo'; command: string; nonEmpty?: boolean }
  | { fault: 'resetAll' }
  | { fault: 'refuse'; on: boolean }
  | { fault: 'latency'; ms: number }
  | { fault: 'bandwidth'; bytesPerS: number }
  | { fault: 'blackhole'; on: boolean }
  | { fault: 'clear' };

/** Applies one control command; answers what the caller needs to know. */
export function controlCommand(proxy: FaultProxy, cmd: ControlCommand): Record<string, unknown> {
  switch (cmd.fault) {
    case 'dropReplyTo':
      // The drop shows in GET /stats once it happened.
      void proxy.dropReplyTo(cmd.command, { nonEmpty: cmd.nonEmpty ?? false });
      return { armed: cmd.command };
    case 'resetAll':
      return { reset: proxy.resetAll() };
    case 'refuse':
      proxy.refuse(cmd.on);
      return { refusing: cmd.on };
    case 'latency':
      proxy.setLatency(cmd.ms);
      return { latencyMs: cmd.ms };
    case 'bandwidth':
      proxy.setBandwidth(cmd.bytesPerS);
      return { bytesPerS: cmd.bytesPerS };
    case 'blackhole':
      proxy.blackhole(cmd.on);
      return { blackholed: cmd.on };
    case 'clear':
      proxy.clear();
      return { cleared: true };
    default:
      throw new Error(`unknown fault ${JSON.stringify(cmd)}`);
  }
}

async function body(req: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of req) text += chunk;
  return text;
}

function answer(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(`${JSON.stringify(value)}\n`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      listen: { type: 'string', default: '0' },
      target: { type: 'string' },
      control: { type: 'string', default: '0' },
      raw: { type: 'boolean', default: false },
    },
  });
  if (!values.target)
    throw new Error('usage: fault-proxy.ts --listen P --target host:port [--control P] [--raw]');
  const proxy = await FaultProxy.start({
    target: values.target,
    listen: Number(values.listen),
    protocol: values.raw ? 'raw' : 'resp',
  });
  const control = createHttpServer((req, res) => {
    if (req.method === 'GET' && req.url === '/stats') return answer(res, 200, proxy.snapshot());
    if (req.method !== 'POST') return answer(res, 405, { error: 'GET /stats or POST a fault' });
    body(req)
      .then((text) => answer(res, 200, controlCommand(proxy, JSON.parse(text) as ControlCommand)))
      .catch((err: Error) => answer(res, 400, { error: err.message }));
  });
  await new Promise<void>((resolve) => control.listen(Number(values.control), '127.0.0.1', () => resolve()));
  const controlPort = (control.address() as { port: number }).port;
  // One line a parent process can wait for and parse.
  process.stdout.write(
    `${JSON.stringify({ msg: 'fault proxy listening', port: proxy.port, control: controlPort, target: values.target })}\n`,
  );
  const stop = () => void proxy.stop().then(() => control.close(() => process.exit(0)));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
