/**
 * Renderings of an emitted canonical graph for `atlas canonical show`: an indented tree for
 * people, and the `--json` view. Both walk the shared-subtree table iteratively, so neither
 * a 100K-deep chain nor a 1M-node expansion overflows the stack.
 */
import type { GraphWire, WireNode } from '../topology/graph-wire.ts';

export function jsonView(graph: GraphWire, sequenceNumber: number): string {
  const head = `{"root_id":${JSON.stringify(graph.root_id)},"sequence_number":${sequenceNumber},"canonical_space_ids":${JSON.stringify(graph.canonical_space_ids)},"tree":`;
  return `${head}${treeJson(graph.nodes)}}`;
}

/** The tree as JSON: `{space_id, edge, topic_id (topic edges only), children}` per node. */
export function treeJson(nodes: WireNode[]): string {
  const parts: string[] = [];
  const stack: Array<{ node: WireNode; next: number }> = [{ node: nodes[nodes.length - 1]!, next: 0 }];
  open(stack[0]!.node);
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const childIndex = top.node[3][top.next++];
    if (childIndex === undefined) {
      parts.push(']}');
      stack.pop();
      continue;
    }
    if (top.next > 1) parts.push(',');
    const child = nodes[childIndex]!;
    open(child);
    stack.push({ node: child, next: 0 });
  }
  return parts.join('');

  function open([space, edge, topic]: WireNode): void {
    const topicPart = edge === 'topic' ? `,"topic_id":"${topic}"` : '';
    parts.push(`{"space_id":"${space}","edge":"${edge}"${topicPart},"children":[`);
  }
}

export function textView(
  graph: GraphWire,
  sequenceNumber: number,
  names: Record<string, string> = {},
): string {
  const label = (id: string) => (names[id] ? `${names[id]} (${id})` : id);
  const lines = [
    `root ${label(graph.root_id)}  sequence_number=${sequenceNumber}  block=${graph.meta.block_number}`,
    `canonical spaces (${graph.canonical_space_ids.length}): ${graph.canonical_space_ids.map(label).join(', ')}`,
    `tree (${graph.expanded_nodes} nodes, ${graph.nodes.length} distinct):`,
  ];
  const stack: Array<{ index: number; depth: number }> = [{ index: graph.nodes.length - 1, depth: 0 }];
  while (stack.length > 0) {
    const { index, depth } = stack.pop()!;
    const [space, edge, topic, children] = graph.nodes[index]!;
    const via = edge === 'topic' ? `topic ${label(topic)}` : edge;
    lines.push(`${'  '.repeat(depth + 1)}${label(space)}  [${via}]`);
    for (let i = children.length - 1; i >= 0; i--) stack.push({ index: children[i]!, depth: depth + 1 });
  }
  return lines.join('\n');
}
