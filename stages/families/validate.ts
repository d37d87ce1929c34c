/**
 * Validation of a generic family's event: the payload is parsed with the schema of the
 * envelope's version, upcast step by step to the current version and parsed again with the
 * current schema, so everything downstream sees one shape per event type.
 */
import type { z } from 'zod';
import {
  currentVersion,
  type EventTypeSpec,
  keyOf,
  renderTemplate,
  TopicError,
  upcastToCurrent,
} from './family.ts';

export interface Resolved {
  payload: Record<string, unknown>;
  version: number;
  topic: string;
  key: string;
}

export type FamilyValidation =
  | { ok: true; event: Resolved }
  | { ok: false; reason: 'invalid_payload' | 'unsupported_version'; message: string; issues?: unknown };

export function validateFamilyEvent(
  spec: EventTypeSpec,
  version: number,
  payload: unknown,
): FamilyValidation {
  const schema = spec.versions[version];
  if (!schema) {
    const known = Object.keys(spec.versions).join(', ');
    return { ok: false, reason: 'unsupported_version', message: `version ${version} is not one of ${known}` };
  }
  const parsed = parse(schema, payload);
  if (!parsed.ok) return parsed;
  const current = currentVersion(spec);
  let data = parsed.data;
  if (version < current) {
    const again = parse(spec.versions[current]!, upcastToCurrent(spec, version, data));
    if (!again.ok) return { ...again, message: `after upcasting to version ${current}: ${again.message}` };
    data = again.data;
  }
  try {
    return {
      ok: true,
      event: {
        payload: data,
        version: current,
        topic: renderTemplate(spec.topic, data),
        key: keyOf(spec, data),
      },
    };
  } catch (err) {
    if (err instanceof TopicError) return { ok: false, reason: 'invalid_payload', message: err.message };
    throw err;
  }
}

type Parsed =
  | { ok: true; data: Record<string, unknown> }
  | { ok: false; reason: 'invalid_payload'; message: string; issues: unknown };

function parse(schema: z.ZodType, payload: unknown): Parsed {
  const result = schema.safeParse(payload);
  if (result.success) return { ok: true, data: result.data as Record<string, unknown> };
  const issues = result.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
  const message = issues.map((i) => `${i.path || '(payload)'}: ${i.message}`).join('; ');
  return { ok: false, reason: 'invalid_payload', message, issues };
}
