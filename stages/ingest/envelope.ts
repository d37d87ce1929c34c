/** The event-bus envelope, checked at the door: what is visibly wrong gets a 400 here. */
import { z } from 'zod';

export const envelopeSchema = z.object({
  event_id: z.string().min(1).max(128),
  event_type: z.string().min(1).max(128),
  source: z.string().min(1).max(256),
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
