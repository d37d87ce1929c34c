/** A stream entry as a stage sees it: fields as bytes, with readers for text and JSON. */
export type Fields = Record<string, string | Buffer>;

export class Entry {
  readonly id: string;
  readonly fields: Map<string, Buffer>;
  /** Times Redis has delivered it (1 on first read). */
  deliveries: number;

  constructor(id: string, fields: Map<string, Buffer>, deliveries = 1) {
    this.id = id;
    this.fields = fields;
    this.deliveries = deliveries;
  }

  has(name: string): boolean {
    return this.fields.has(name);
  }

  text(name: string): string {
    const value = this.fields.get(name);
    if (value === undefined) throw new MissingFieldError(this.id, name);
    return value.toString('utf8');
  }

  optionalText(name: string): string | undefined {
    return this.fields.get(name)?.toString('utf8');
  }

  bytes(name: string): Buffer {
    const value = this.fields.get(name);
    if (value === undefined) throw new MissingFieldError(this.id, name);
    return value;
  }

  json<T = unknown>(name: string): T {
    return JSON.parse(this.text(name)) as T;
  }

  /** Fields as a plain object of strings (binary fields in base64), for logs and the DLQ view. */
  toJSON(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of this.fields)
      out[k] = isText(v) ? v.toString('utf8') : `base64:${v.toString('base64')}`;
    return out;
  }
}

export class MissingFieldError extends Error {
  constructor(id: string, name: string) {
    super(`entry ${id} has no field ${name}`);
  }
}

function isText(b: Buffer): boolean {
  return Buffer.from(b.toString('utf8'), 'utf8').equals(b);
}

type RawEntry = [Buffer, Buffer[]];

/** Parses the entries part of XRANGE / XREADGROUP / XCLAIM buffer replies. */
export function parseEntries(raw: RawEntry[] | null): Entry[] {
  if (!raw) return [];
  const out: Entry[] = [];
  for (const item of raw) {
    if (!item?.[1]) continue; // XCLAIM and XRANGE of our PEL report deleted entries as nil
    const fields = new Map<string, Buffer>();
    const flat = item[1];
    for (let i = 0; i < flat.length; i += 2) fields.set(flat[i]!.toString('utf8'), flat[i + 1]!);
    out.push(new Entry(item[0].toString('utf8'), fields));
  }
  return out;
}
