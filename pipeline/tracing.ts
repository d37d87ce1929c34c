/**
 * Tracing (OpenTelemetry), configured by the standard OTEL_* variables and off unless an OTLP
 * endpoint is given: then no SDK is loaded and every helper here is a no-op, so an untraced
 * pipeline pays a branch per batch for it.
 *
 * The span model: one span per entry per stage, parented by the entry's `traceparent` field.
 * The worker opens the spans of a batch before handling it and ends them after its commit, and
 * rewrites the `traceparent` of the outputs to the span of the input they came from, so each
 * stage's span is the child of the previous stage's: ingest → validate → transitive → canonical
 * → serialize → emit → publish.
 */
import {
  type Attributes,
  type Context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';
import type { Entry, Fields } from './entry.ts';
import { entryLog, type Logger } from './log.ts';
import { redactUrl } from './secrets.ts';

const TRACER = 'atlas-pipeline';

/** The SDK, once started (undefined: tracing is off). */
let provider: { shutdown(): Promise<void> } | undefined;

/** OTLP export is asked for (and not disabled) by the standard variables. */
function tracingWanted(env: NodeJS.ProcessEnv): boolean {
  if (env.OTEL_SDK_DISABLED === 'true' || env.OTEL_TRACES_EXPORTER === 'none') return false;
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

/**
 * Starts the SDK when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set. The SDK is imported only
 * then. `serviceName` applies when OTEL_SERVICE_NAME does not say otherwise.
 */
export async function startTracing(serviceName: string, log: Logger): Promise<void> {
  if (provider || !tracingWanted(process.env)) return;
  // No context manager: every span is given its parent explicitly, none is ever "active".
  const [{ TracerProvider, BatchSpanProcessor }, { OTLPTraceExporter }, resources, core] = await Promise.all([
    import('@opentelemetry/sdk-trace'),
    import('@opentelemetry/exporter-trace-otlp-proto'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/core'),
  ]);
  const { samplerFromEnv } = await import('./tracing-sampler.ts');
  // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over our default (merge: the argument wins).
  const resource = resources
    .resourceFromAttributes({ 'service.name': serviceName })
    .merge(resources.detectResources({ detectors: [resources.envDetector] }));
  const scheduleDelay = Number(process.env.OTEL_BSP_SCHEDULE_DELAY);
  const sdk = new TracerProvider({
    resource,
    sampler: samplerFromEnv(process.env),
    // The exporter reads OTEL_EXPORTER_OTLP_* (endpoint, headers, timeout, compression) itself;
    // the processor no longer reads OTEL_BSP_SCHEDULE_DELAY, so it is passed on here.
    spanProcessors: [
      new BatchSpanProcessor({
        exporter: new OTLPTraceExporter(),
        ...(scheduleDelay > 0 ? { scheduledDelayMillis: scheduleDelay } : {}),
      }),
    ],
  });
  propagation.setGlobalPropagator(new core.W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(sdk);
  provider = sdk;
  log.info(
    {
      endpoint: redactUrl(
        process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? process.env.OTEL_EXPORTER_OTLP_ENDPOINT ?? '',
      ),
      service: resource.attributes['service.name'],
      sampler: process.env.OTEL_TRACES_SAMPLER ?? 'parentbased_always_on',
    },
    'tracing: exporting spans over OTLP',
  );
}

/** Exports what is buffered and stops the SDK (at shutdown; spans ended before are not lost). */
export async function stopTracing(log: Logger): Promise<void> {
  const sdk = provider;
  if (!sdk) return;
  provider = undefined;
  await sdk.shutdown().catch((err: unknown) => log.warn({ err }, 'tracing: final export failed'));
  trace.disable();
  propagation.disable();
}

const getter = {
  keys: (carrier: Record<string, string>) => Object.keys(carrier),
  get: (carrier: Record<string, string>, key: string) => carrier[key],
};

/** The context a W3C traceparent names (the root context when there is none, or it is invalid). */
function parentOf(traceparent: string | undefined): Context {
  return traceparent ? propagation.extract(ROOT_CONTEXT, { traceparent }, getter) : ROOT_CONTEXT;
}

/** A span as a W3C traceparent, for the entries and messages downstream of it. */
function traceparentOfSpan(span: Span): string {
  const { traceId, spanId, traceFlags } = span.spanContext();
  return `00-${traceId}-${spanId}-${traceFlags.toString(16).padStart(2, '0')}`;
}

/** A span of its own for one piece of work (the door's request, the emit's send). */
export interface WorkSpan {
  /** What to hand downstream: this span's traceparent, or the given one when tracing is off. */
  readonly traceparent: string;
  fail(error: unknown): void;
  end(): void;
}

/**
 * Starts a span under `parent` (a traceparent; none or an invalid one starts a trace). Off:
 * `untraced()` is what is handed on, and nothing is recorded.
 */
export function startWork(
  name: string,
  kind: SpanKind,
  parent: string | undefined,
  attributes: Attributes,
  untraced: () => string,
): WorkSpan {
  if (!provider) return { traceparent: untraced(), fail: noop, end: noop };
  const span = trace.getTracer(TRACER).startSpan(name, { kind, attributes }, parentOf(parent));
  return {
    traceparent: traceparentOfSpan(span),
    fail: (error) => failSpan(span, error),
    end: () => span.end(),
  };
}

function failSpan(span: Span, error: unknown): void {
  span.setStatus({
    code: SpanStatusCode.ERROR,
    message: error instanceof Error ? error.message : String(error),
  });
  if (error instanceof Error) span.recordException(error);
}

const noop = (): void => {};

/**
 * The spans of one batch of a stage, one per entry. All of them cover the same interval (the
 * batch's handling and commit): a span per batch with links would be cheaper, but would leave
 * each trace without its stages, and the entries of a batch do share that time.
 */
export interface EntrySpans {
  /** Output fields with their traceparent pointing at the span of the input they came from. */
  carry(fields: Fields): Fields;
  deadLettered(entry: Entry, reason: string, error: unknown): void;
  end(): void;
}

/** Outside a batch, and with tracing off. */
export const noSpans: EntrySpans = {
  carry: (fields) => fields,
  deadLettered: noop,
  end: noop,
};

/** Spans of the current batch per entry, for stages that open child spans (emit). */
const live = new WeakMap<Entry, Span>();

export function entrySpans(stage: string, stream: string, entries: readonly Entry[]): EntrySpans {
  if (!provider) return noSpans;
  const tracer = trace.getTracer(TRACER);
  const byEntry = new Map<Entry, Span>();
  /** Output traceparent → span. Events of one batch request share a traceparent: the first wins. */
  const byParent = new Map<string, string>();
  for (const entry of entries) {
    const parent = entry.optionalText('traceparent');
    const span = tracer.startSpan(
      stage,
      { kind: SpanKind.CONSUMER, attributes: entryAttributes(stage, stream, entry) },
      parentOf(parent),
    );
    byEntry.set(entry, span);
    live.set(entry, span);
    if (parent !== undefined && !byParent.has(parent)) byParent.set(parent, traceparentOfSpan(span));
  }
  return {
    carry(fields) {
      const given = fields.traceparent;
      const mine = typeof given === 'string' ? byParent.get(given) : undefined;
      return mine ? { ...fields, traceparent: mine } : fields;
    },
    deadLettered(entry, reason, error) {
      const span = byEntry.get(entry);
      if (!span) return;
      span.setAttribute('atlas.dead_letter.reason', reason);
      failSpan(span, error);
    },
    end() {
      for (const [entry, span] of byEntry) {
        span.end();
        live.delete(entry);
      }
    },
  };
}

/**
 * Starts a producer span per entry under that entry's stage span (the worker's), for a send
 * to the outside (Kafka). Off: the entries' own traceparents are handed on.
 */
export function sendSpans(name: string, entries: readonly Entry[], attributes: Attributes): WorkSpan[] {
  return entries.map((entry) => {
    const given = entry.optionalText('traceparent');
    if (!provider) return { traceparent: given ?? '', fail: noop, end: noop };
    const stageSpan = live.get(entry);
    const parent = stageSpan ? trace.setSpan(ROOT_CONTEXT, stageSpan) : parentOf(given);
    const span = trace
      .getTracer(TRACER)
      .startSpan(
        name,
        { kind: SpanKind.PRODUCER, attributes: { ...attributes, ...fieldAttributes(entry) } },
        parent,
      );
    return {
      traceparent: traceparentOfSpan(span),
      fail: (error) => failSpan(span, error),
      end: () => span.end(),
    };
  });
}

function entryAttributes(stage: string, stream: string, entry: Entry): Attributes {
  return {
    'atlas.stage': stage,
    'messaging.system': 'redis',
    'messaging.operation.type': 'process',
    'messaging.destination.name': stream,
    'messaging.message.id': entry.id,
    ...fieldAttributes(entry),
  };
}

/** The fields that identify an entry in its log lines, as span attributes (`atlas.event_id`…). */
function fieldAttributes(entry: Entry): Attributes {
  const attributes: Attributes = {};
  for (const [key, value] of Object.entries(entryLog(entry)))
    if (key !== 'id' && key !== 'trace_id') attributes[`atlas.${key}`] = value;
  return attributes;
}
