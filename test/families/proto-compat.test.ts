/**
 * The protobuf contract stays readable by consumers of its older versions: every proto/*.proto is
 * checked against the committed lock (proto/schema.lock.json, written by `node ops/proto-lock.ts
 * --write`) with buf-style wire rules — no field renumbered, no type or label changed, nothing
 * removed without reserving its number. The checker itself is shown to catch each kind of break.
 */
import { describe, expect, it } from 'vitest';
import { breakingChanges, currentLock, type Lock, readLock } from '../../ops/proto-lock.ts';

const clone = (lock: Lock): Lock => structuredClone(lock);

describe('protobuf compatibility', () => {
  it('the .proto files are compatible with the committed lock', () => {
    expect(breakingChanges(readLock(), currentLock())).toEqual([]);
  });

  it('the lock holds every message and enum of the contract', () => {
    const lock = readLock();
    expect(Object.keys(lock.messages)).toEqual(
      expect.arrayContaining([
        'topology.CanonicalGraphUpdated',
        'topology.CanonicalTreeNode',
        'blockchain_metadata.BlockchainMetadata',
      ]),
    );
    expect(lock.enums['topology.EdgeType']?.values.EDGE_TYPE_TOPIC).toBe(4);
  });

  it('catches a renumbered field, a changed type or label, a removal, a renumbered enum value', () => {
    const locked = readLock();
    const msg = 'topology.CanonicalGraphUpdated';

    const renumbered = clone(locked);
    renumbered.messages[msg]!.fields.sequence_number!.id = 9;
    expect(breakingChanges(locked, renumbered)).toContain(`${msg}.sequence_number was renumbered 4 → 9`);

    const retyped = clone(locked);
    retyped.messages[msg]!.fields.sequence_number!.type = 'string';
    expect(breakingChanges(locked, retyped)).toContain(`${msg} field 4 changed type uint64 → string`);

    const relabelled = clone(locked);
    relabelled.messages[msg]!.fields.canonical_space_ids!.rule = 'singular';
    expect(breakingChanges(locked, relabelled)).toContain(`${msg} field 3 changed label repeated → singular`);

    const removed = clone(locked);
    delete removed.messages[msg]!.fields.meta;
    expect(breakingChanges(locked, removed)).toContain(`${msg}.meta (5) was removed without reserving 5`);
    removed.messages[msg]!.reserved.push(5);
    expect(breakingChanges(locked, removed)).toEqual([]);

    const enumChanged = clone(locked);
    enumChanged.enums['topology.EdgeType']!.values.EDGE_TYPE_TOPIC = 7;
    expect(breakingChanges(locked, enumChanged)).toContain(
      'topology.EdgeType.EDGE_TYPE_TOPIC was renumbered 4 → 7',
    );

    const added = clone(locked);
    added.messages[msg]!.fields.extra = { id: 6, type: 'string', rule: 'singular' };
    expect(breakingChanges(locked, added)).toEqual([]);
  });
});
