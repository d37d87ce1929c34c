/**
 * Subscribe over HTTP as Server-Sent Events: `GET /subscribe?group=&consumer=&type=&topic=`
 * streams the group's events (`id:` = the event's stream id, `event:` = its type, `data:` = the
 * delivery as JSON); `POST /subscribe/ack` acknowledges ids. A reconnect with `Last-Event-ID`
 * (what EventSource sends) and a `consumer` acknowledges that member's events up to that id and
 * receives the rest of its unacknowledged ones again.
 */
import { once } from 'node:events';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { invalidEnvelope, retryLater, TooManySubscribersError } from '../ingest/errors.ts';
import { type Delivery, SubscribeError, type Subscriptions } from './subscriptions.ts';

interface SubscribeQuery {
  group?: string;
  consumer?: string;
  type?: string | string[];
  topic?: string;
}

interface AckBody {
  group?: unknown;
  ids?: unknown;
}

export function registerSubscribe(
  app: FastifyInstance,
  subscriptions: Subscriptions,
  keepAliveMs: number,
): void {
  app.get('/subscribe', (req, reply) => serveEvents(req, reply, subscriptions, keepAliveMs));

  app.post('/subscribe/ack', async (req) => {
    const body = (req.body ?? {}) as AckBody;
    const ids = body.ids;
    if (typeof body.group !== 'string' || !Array.isArray(ids) || !ids.every((i) => typeof i === 'string'))
      throw invalidEnvelope([{ field: '(body)', message: 'expected {"group": string, "ids": [string]}' }]);
    const acknowledged = await subscriptions.ack(body.group, ids as string[]).catch(refuse);
    return { acknowledged, request_id: req.id };
  });
}

/** A subscribe request the door refuses is a 400 (or a 429 when it serves too many). */
function refuse(err: unknown): never {
  if (!(err instanceof SubscribeError)) throw err;
  if (err.code === 'too_many_subscribers') throw retryLater(new TooManySubscribersError(err.message), 1);
  throw invalidEnvelope([{ field: '(query)', message: err.message }]);
}

async function serveEvents(
  req: FastifyRequest,
  reply: FastifyReply,
  subscriptions: Subscriptions,
  keepAliveMs: number,
): Promise<void> {
  const q = req.query as SubscribeQuery;
  const types = (Array.isArray(q.type) ? q.type : q.type ? [q.type] : []).flatMap((t) => t.split(','));
  const request = {
    group: q.group ?? '',
    ...(q.consumer ? { consumer: q.consumer } : {}),
    types: types.filter((t) => t.length > 0),
    topic: q.topic ?? '',
  };
  const lastId = req.headers['last-event-id'];
  if (typeof lastId === 'string' && q.consumer)
    await subscriptions.ackThrough(request.group, q.consumer, lastId).catch(refuse);
  const raw = reply.raw;
  const send = async (text: string) => {
    if (!raw.write(text)) await Promise.race([once(raw, 'drain'), once(raw, 'close')]);
  };
  const subscription = await subscriptions.open(request, (d) => send(frame(d))).catch(refuse);
  reply.hijack();
  raw.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    'x-request-id': req.id,
  });
  raw.write(`event: subscribed\ndata: ${JSON.stringify({ consumer: subscription.consumer })}\n\n`);
  // Comments keep an idle stream alive through the door's idle-connection timeout and proxies.
  const keepAlive = setInterval(() => raw.write(': keep-alive\n\n'), keepAliveMs);
  raw.once('close', () => void subscription.stop());
  await subscription.ended.catch((err: unknown) => {
    req.log.error({ err }, 'subscriber stream failed');
    raw.write(`event: error\ndata: ${JSON.stringify({ message: 'the subscription failed; reconnect' })}\n\n`);
  });
  clearInterval(keepAlive);
  raw.end();
}

function frame(d: Delivery): string {
  const data = JSON.stringify({
    id: d.id,
    seq: d.seq,
    topic: d.topic,
    redelivered: d.redelivered,
    envelope: { ...d.envelope, payload: JSON.parse(d.envelope.payload) },
  });
  // A line break in a type would end the field early and corrupt the frame.
  return `id: ${d.id}\nevent: ${d.envelope.event_type.replace(/[\r\n]/g, ' ')}\ndata: ${data}\n\n`;
}
