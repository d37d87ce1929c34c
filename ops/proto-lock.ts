#!/usr/bin/env node
/**
 * The protobuf contract's lock (proto/schema.lock.json): every message field's number, type and
 * label and every enum value of every proto/*.proto. test/families/proto-compat.test.ts checks the
 * .proto files against it with buf-style wire rules, so that consumers of an older version can
 * still read a newer one: no field renumbered, no type or label changed, no field or enum value
 * removed without reserving its number. New fields and values are fine: add them, then
 *
 *   node ops/proto-lock.ts --write
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import protobuf from 'protobufjs';

const PROTO = resolve(import.meta.dirname, '..', 'proto');
export const LOCK_FILE = join(PROTO, 'schema.lock.json');

export interface FieldLock {
  id: number;
  type: string;
  rule: 'repeated' | 'optional' | 'singular';
}
export interface Lock {
  messages: Record<string, { fields: Record<string, FieldLock>; reserved: number[] }>;
  enums: Record<string, { values: Record<string, number>; reserved: number[] }>;
}

function reservedNumbers(reserved: Array<number[] | string> | undefined): number[] {
  const out: number[] = [];
  for (const r of reserved ?? []) if (Array.isArray(r)) for (let n = r[0]!; n <= r[1]!; n++) out.push(n);
  return out;
}

export function lockOf(root: protobuf.Root): Lock {
  const lock: Lock = { messages: {}, enums: {} };
  const visit = (ns: protobuf.NamespaceBase): void => {
    for (const nested of ns.nestedArray) {
      if (nested instanceof protobuf.Type) {
        const fields: Record<string, FieldLock> = {};
        for (const f of nested.fieldsArray) {
          const rule = f.repeated ? 'repeated' : f.options?.proto3_optional ? 'optional' : 'singular';
          // The resolved full name: a type moved to another package is a different type on the wire.
          const type = f.resolvedType ? f.resolvedType.fullName.slice(1) : f.type;
          fields[f.name] = { id: f.id, type, rule };
        }
        lock.messages[nested.fullName.slice(1)] = { fields, reserved: reservedNumbers(nested.reserved) };
      } else if (nested instanceof protobuf.Enum) {
        lock.enums[nested.fullName.slice(1)] = {
          values: { ...nested.values },
          reserved: reservedNumbers(nested.reserved),
        };
      }
      if (nested instanceof protobuf.Namespace || nested instanceof protobuf.Type) visit(nested);
    }
  };
  visit(root);
  return lock;
}

/**
 * The contract's roots, as proto/generate.sh bundles them: bus.proto carries the vendored Hermes
 * messages, whose package and names overlap ours, so it is a root of its own. The bus root's
 * names are locked with a `bus:` prefix; the topology root's keep their plain names.
 */
const roots: Array<{ prefix: string; files: (dir: string) => string[] }> = [
  { prefix: '', files: (dir) => readdirSync(dir).filter((f) => f.endsWith('.proto') && f !== 'bus.proto') },
  { prefix: 'bus:', files: () => ['bus.proto'] },
];

export function currentLock(dir = PROTO): Lock {
  const lock: Lock = { messages: {}, enums: {} };
  for (const { prefix, files } of roots) {
    const root = new protobuf.Root();
    // an import is relative to the importing file (hermes/space.proto imports its neighbour)
    root.resolvePath = (origin, target) => {
      if (!origin || target.startsWith(dir)) return target;
      const beside = join(dirname(origin), target);
      return existsSync(beside) ? beside : join(dir, target);
    };
    root.loadSync(
      files(dir)
        .sort()
        .map((f) => join(dir, f)),
      { keepCase: true },
    );
    root.resolveAll();
    const part = lockOf(root);
    for (const [name, m] of Object.entries(part.messages)) lock.messages[prefix + name] = m;
    for (const [name, e] of Object.entries(part.enums)) lock.enums[prefix + name] = e;
  }
  return lock;
}

/** What breaks readers of `locked` in `now`, one line each; empty when compatible. */
export function breakingChanges(locked: Lock, now: Lock): string[] {
  const problems: string[] = [];
  for (const [name, was] of Object.entries(locked.messages)) {
    const is = now.messages[name];
    if (!is) {
      problems.push(`message ${name} was removed`);
      continue;
    }
    const byId = new Map(Object.entries(is.fields).map(([f, l]) => [l.id, { name: f, ...l }]));
    for (const [field, w] of Object.entries(was.fields)) {
      const sameName = is.fields[field];
      if (sameName && sameName.id !== w.id) {
        problems.push(`${name}.${field} was renumbered ${w.id} → ${sameName.id}`);
        continue;
      }
      const same = byId.get(w.id);
      if (!same) {
        if (!is.reserved.includes(w.id))
          problems.push(`${name}.${field} (${w.id}) was removed without reserving ${w.id}`);
        continue;
      }
      if (same.type !== w.type) problems.push(`${name} field ${w.id} changed type ${w.type} → ${same.type}`);
      if (same.rule !== w.rule) problems.push(`${name} field ${w.id} changed label ${w.rule} → ${same.rule}`);
    }
  }
  for (const [name, was] of Object.entries(locked.enums)) {
    const is = now.enums[name];
    if (!is) {
      problems.push(`enum ${name} was removed`);
      continue;
    }
    const numbers = new Set(Object.values(is.values));
    for (const [value, n] of Object.entries(was.values)) {
      if (!numbers.has(n) && !is.reserved.includes(n))
        problems.push(`${name}.${value} (${n}) was removed without reserving it`);
      if (is.values[value] !== undefined && is.values[value] !== n)
        problems.push(`${name}.${value} was renumbered ${n} → ${is.values[value]}`);
    }
  }
  return problems;
}

export function readLock(): Lock {
  return JSON.parse(readFileSync(LOCK_FILE, 'utf8')) as Lock;
}

if (import.meta.main) {
  const now = currentLock();
  if (process.argv.includes('--write')) {
    writeFileSync(LOCK_FILE, `${JSON.stringify(now, null, 2)}\n`);
    console.log(`wrote ${LOCK_FILE}`);
  } else {
    const problems = breakingChanges(readLock(), now);
    for (const p of problems) console.log(p);
    process.exit(problems.length > 0 ? 1 : 0);
  }
}
