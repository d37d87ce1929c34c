/**
 * The CLI's one error catalogue. Every failure an operator can see is one of these classes, and
 * the class decides the exit code (documented in docs/OPERATIONS.md):
 *
 * | code | meaning                                                        |
 * | ---- | -------------------------------------------------------------- |
 * | 0    | done                                                           |
 * | 1    | failed (a dependency down, an operation that did not complete) |
 * | 2    | usage or configuration (a bad argument, a bad setting)         |
 * | 3    | not found (an id, a root, a stream, a job that does not exist) |
 * | 4    | refused as unsafe (a destructive action without --yes, ...)    |
 */
export const exitCodes = { ok: 0, failed: 1, usage: 2, notFound: 3, refused: 4 } as const;

export class CliError extends Error {
  readonly exitCode: number = exitCodes.failed;
}

/** A bad argument or setting: nothing was touched. */
export class UsageError extends CliError {
  override readonly exitCode = exitCodes.usage;
}

/** What was named does not exist. */
export class NotFoundError extends CliError {
  override readonly exitCode = exitCodes.notFound;
}

/** Refused as unsafe (needs --yes, or would break a guarantee); nothing was touched. */
export class RefusedError extends CliError {
  override readonly exitCode = exitCodes.refused;
}
