/** The producer's errors: a refusal the door gave, or an answer it never gave in time. */
import type { FieldError } from '../../stages/ingest/envelope.ts';

export type { FieldError };

export class AtlasError extends Error {
  override name = 'AtlasError';
}

/**
 * The door answered and refused (4xx other than 429, or a 5xx other than 503): sending the same
 * event again would be refused again. `fieldErrors` are the door's, one per invalid field.
 */
export class AtlasRequestError extends AtlasError {
  override name = 'AtlasRequestError';
  readonly status: number;
  /** The door's `error` field: invalid_envelope, unauthorized, body_too_large, … */
  readonly code: string;
  readonly fieldErrors: FieldError[];
  readonly requestId: string | undefined;

  constructor(
    status: number,
    code: string,
    message: string,
    fieldErrors: FieldError[] = [],
    requestId?: string,
  ) {
    const fields = fieldErrors.map((e) => `${e.field}: ${e.message}`).join('; ');
    super(`${status} ${code}: ${message}${fields ? ` (${fields})` : ''}`);
    this.status = status;
    this.code = code;
    this.fieldErrors = fieldErrors;
    this.requestId = requestId;
  }
}

/**
 * Every attempt met a 429, a 503 or no answer at all. The events may have been accepted by an
 * attempt whose answer was lost: sending them again with the same event_id is safe.
 */
export class AtlasUnavailableError extends AtlasError {
  override name = 'AtlasUnavailableError';
  readonly attempts: number;
  /** The last answer's status; undefined when the last attempt got no answer. */
  readonly status: number | undefined;

  constructor(attempts: number, status: number | undefined, message: string, options?: ErrorOptions) {
    super(`gave up after ${attempts} attempts: ${message}`, options);
    this.attempts = attempts;
    this.status = status;
  }
}
