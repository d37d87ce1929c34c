/** The event-bus envelope, checked at the door: what is visibly wrong gets a 400 here. */
import { z } from 'zod';

/**
 * A string that is well-formed Unicode. A lone UTF-16 surrogate has no UTF-8 form: Redis would
 * get U+FFFD instead, so ids differing only in one would collide as duplicates.
 */
const text = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine((s) => s.isWellFormed(), 'is not well-formed Unicode (a lone UTF-16 surrogate)');

export const envelopeSchema = z.object({
  event_id: text(128),
  event_type: text(128),
  source: text(256),
  timestamp: z.number().int().nonnegative(),
  version: z.number().int().positive(),
  payload: z.record(z.string(), z.unknown()),
});

export type Envelope = z.infer<typeof envelopeSchema>;

export interface FieldError {
  index?: number;
  field: string;
  message: string;
}

export function checkEnvelope(
  body: unknown,
  index?: number,
): { envelope: Envelope } | { errors: FieldError[] } {
  const result = envelopeSchema.safeParse(body);
  if (result.success) return { envelope: result.data };
  return {
    errors: result.error.issues.map((i) => ({
      ...(index === undefined ? {} : { index }),
      field: i.path.join('.') || '(body)',
      message: i.message,
    })),
  };
}
