"""A consumer of topology.canonical: keeps the latest canonical graph per root from snapshots
(CanonicalGraphUpdated) and diffs (CanonicalGraphDiff, told apart by the message-name header),
checks each applied diff against its tree hash and the tree it carries, and reports gaps,
repeats, diffs without a base and mismatches on stderr.

    python consume.py --broker 127.0.0.1:9092 [--topic topology.canonical] [--until-end]

It reads from the beginning every time (the topic is compacted: it holds every root's latest
graph) and joins no consumer group. --until-end stops once every partition is read to its end and
prints {latest, anomalies, counts} as JSON; without it, it follows the topic and prints each applied update
as a JSON line. topology_pb2 is generated from proto/ by ../setup (on PYTHONPATH).
"""

import argparse
import hashlib
import json
import sys

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from google.protobuf.internal import api_implementation
from google.protobuf.message import DecodeError

import topology_pb2

EDGES = {
    topology_pb2.EDGE_TYPE_ROOT: "root",
    topology_pb2.EDGE_TYPE_VERIFIED: "verified",
    topology_pb2.EDGE_TYPE_RELATED: "related",
    topology_pb2.EDGE_TYPE_TOPIC: "topic",
}


def allow_deep_trees():
    """protobuf refuses messages nested deeper than 100 by default, and a canonical tree may be
    deeper (a long chain of verified edges). The upb backend (the wheels' default) lifts its
    limit with the oversize switch; the pure-Python one has a recursion limit of its own."""
    if api_implementation.Type() == "upb":
        from google._upb import _message

        _message.SetAllowOversizeProtos(True)
    else:
        from google.protobuf.internal import decoder

        decoder.SetRecursionLimit(1_000_000)
        sys.setrecursionlimit(1_000_000)


def graph_of(update):
    """The update as JSON-ready data: hex ids, topic_id None unless the edge is topic."""

    def node(n):
        if n.edge_type not in EDGES:
            raise ValueError(f"tree node with edge type {n.edge_type}")
        return {
            "space_id": n.space_id.hex(),
            "edge": EDGES[n.edge_type],
            "topic_id": n.topic_id.hex() if n.edge_type == topology_pb2.EDGE_TYPE_TOPIC else None,
            "children": [],
        }

    if not update.HasField("tree"):
        raise ValueError(f"{update.DESCRIPTOR.name} without a tree")
    # Iterative: the tree may be deeper than Python's recursion limit.
    tree = node(update.tree)
    stack = [(update.tree, tree)]
    while stack:
        message, view = stack.pop()
        for child in message.children:
            child_view = node(child)
            view["children"].append(child_view)
            stack.append((child, child_view))
    return {
        "root_id": update.root_id.hex(),
        "sequence_number": update.sequence_number,
        "canonical_space_ids": [i.hex() for i in update.canonical_space_ids],
        "tree": tree,
    }


DIFF_MESSAGE = "topology.CanonicalGraphDiff"
ADDED, REMOVED, MOVED = (
    topology_pb2.NODE_CHANGE_TYPE_ADDED,
    topology_pb2.NODE_CHANGE_TYPE_REMOVED,
    topology_pb2.NODE_CHANGE_TYPE_MOVED,
)


class Mismatch(Exception):
    """A diff that does not fit the graph held, or whose result is not the graph announced."""


def describe(graph):
    """A graph as diffs describe it: the own tree's places, each attached subtree's places (by
    member), the attachments. A place is (parent, edge, topic)."""
    own, regions, attachments = {}, {}, set()
    tree = graph["tree"]
    own[tree["space_id"]] = ("", tree["edge"], "")
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in node["children"]:
            if child["edge"] == "topic":
                attachments.add((node["space_id"], child["topic_id"], child["space_id"]))
                if child["space_id"] not in regions:
                    regions[child["space_id"]] = region_of(child)
                continue
            own[child["space_id"]] = (node["space_id"], child["edge"], "")
            stack.append(child)
    return {"root": tree["space_id"], "own": own, "regions": regions, "attachments": attachments}


def region_of(top):
    places = {top["space_id"]: ("", "topic", top["topic_id"])}
    stack = [top]
    while stack:
        node = stack.pop()
        for child in node["children"]:
            places[child["space_id"]] = (node["space_id"], child["edge"], child["topic_id"] or "")
            stack.append(child)
    return places


def apply_diff(state, diff):
    """A new state with the diff applied whole; raises Mismatch when a change does not fit."""
    own = dict(state["own"])
    regions = dict(state["regions"])
    copied = set()
    for change in diff.changes:
        member = change.member_space_id.hex()
        if member == "":
            places = own
        else:
            if member not in copied:
                copied.add(member)
                regions[member] = dict(regions.get(member, {}))
            places = regions[member]
        space = change.space_id.hex()
        if (space in places) != (change.type != ADDED):
            raise Mismatch(f"change {change.type} of {space} does not fit")
        if change.type == REMOVED:
            del places[space]
        elif change.edge_type not in EDGES:
            raise Mismatch(f"change with edge type {change.edge_type}")
        else:
            places[space] = (change.parent_space_id.hex(), EDGES[change.edge_type], change.topic_id.hex())
    regions = {m: p for m, p in regions.items() if p}
    attachments = set(state["attachments"])
    for a in diff.attachments_removed:
        key = (a.anchor_space_id.hex(), a.topic_id.hex(), a.member_space_id.hex())
        if key not in attachments:
            raise Mismatch(f"no attachment {key}")
        attachments.discard(key)
    for a in diff.attachments_added:
        attachments.add((a.anchor_space_id.hex(), a.topic_id.hex(), a.member_space_id.hex()))
    return {"root": state["root"], "own": own, "regions": regions, "attachments": attachments}


def children_of(places):
    children = {}
    for space, (parent, _, _) in places.items():
        if parent:
            children.setdefault(parent, []).append(space)
    for kids in children.values():
        kids.sort()
    return children


def expand(state):
    """The tree a state describes, expanded (children: the own tree's by space id, then the
    attachments by (topic, member); inside an attached subtree by space id)."""
    anchored = {}
    for anchor, topic, member in sorted(state["attachments"]):
        anchored.setdefault(anchor, []).append(member)
    own_children = children_of(state["own"])
    region_children = {m: children_of(p) for m, p in state["regions"].items()}

    def node(space, place):
        _, edge, topic = place
        return {"space_id": space, "edge": edge, "topic_id": topic or None, "children": []}

    root = state["root"]
    tree = node(root, state["own"][root])
    # (space, view, places, children, in own tree)
    stack = [(root, tree, state["own"], own_children, True)]
    while stack:
        space, view, places, children, in_own = stack.pop()
        for child in children.get(space, []):
            if child not in places:
                raise Mismatch(f"{child} has no place")
            child_view = node(child, places[child])
            view["children"].append(child_view)
            stack.append((child, child_view, places, children, in_own))
        if not in_own:
            continue
        for member in anchored.get(space, []):
            if member not in state["regions"]:
                raise Mismatch(f"no subtree of {member}")
            region = state["regions"][member]
            child_view = node(member, region[member])
            view["children"].append(child_view)
            stack.append((member, child_view, region, region_children[member], False))
    return tree


def tree_hash(tree):
    """The Merkle hash of an expanded tree, as the README's Kafka contract defines it; iterative
    (children before parents), since a tree may be deeper than Python's recursion limit."""
    hashes = {}
    stack = [(tree, False)]
    while stack:
        node, ready = stack.pop()
        if not ready:
            stack.append((node, True))
            stack.extend((c, False) for c in node["children"])
            continue
        text = f'{node["space_id"]}|{node["edge"]}|{node["topic_id"] or ""}'
        text += "".join("|" + hashes[id(c)] for c in node["children"])
        hashes[id(node)] = hashlib.sha256(text.encode()).hexdigest()[:32]
    return hashes[id(tree)]


class LatestGraphs:
    """The latest graph per root, with the sequence_number contract (1, 2, 3… per root) checked:
    a number at or below the one held is a repeat (skipped: what is held is newer or the same),
    a number past the next one is a gap. A snapshot past a gap is applied (it supersedes whatever
    was lost); a diff past a gap has no base (no_base): the root waits for a message carrying a
    tree. A diff is applied whole and its result checked against the diff's tree hash and, when
    it carries the tree, against that tree (verified); a result that differs is a mismatch."""

    def __init__(self, on_anomaly):
        self.held = {}
        self.counts = {"snapshots": 0, "diffs": 0, "verified": 0}
        self.on_anomaly = on_anomaly

    @property
    def latest(self):
        return {root: h["graph"] or self.graph_of_state(h) for root, h in self.held.items()}

    @staticmethod
    def graph_of_state(held):
        state = held["state"]
        return {
            "root_id": state["root"],
            "sequence_number": held["sequence_number"],
            "canonical_space_ids": sorted(state["own"]),
            "tree": expand(state),
        }

    def in_sequence(self, root, got):
        held = self.held.get(root)
        # The first update seen of a root may carry any number: on the compacted topic a consumer
        # starting from the beginning finds only the root's latest update of the cleaned part.
        if held is None:
            return True
        expected = held["sequence_number"] + 1
        if got < expected:
            self.on_anomaly({"kind": "repeat", "root": root, "expected": expected, "got": got})
            return False
        if got > expected:
            self.on_anomaly({"kind": "gap", "root": root, "expected": expected, "got": got})
        return True

    def hold(self, graph):
        self.held[graph["root_id"]] = {
            "sequence_number": graph["sequence_number"],
            "state": describe(graph),
            "graph": graph,
        }

    def apply(self, graph):
        """Applies one snapshot; False when it was a repeat and skipped."""
        if not self.in_sequence(graph["root_id"], graph["sequence_number"]):
            return False
        self.counts["snapshots"] += 1
        self.hold(graph)
        return True

    def apply_diff(self, diff):
        """Applies one diff; False when it was skipped (a repeat, or no base)."""
        root, seq = diff.root_id.hex(), diff.sequence_number
        if not self.in_sequence(root, seq):
            return False
        self.counts["diffs"] += 1
        carried = graph_of(diff) if diff.HasField("tree") else None
        held = self.held.get(root)
        if held is None or held["sequence_number"] != diff.base_sequence_number:
            if carried is None:
                got = held["sequence_number"] if held else 0
                self.on_anomaly({"kind": "no_base", "root": root, "expected": diff.base_sequence_number, "got": got})
                self.held.pop(root, None)
                return False
            self.hold(carried)
            return True
        try:
            state = apply_diff(held["state"], diff)
            result = tree_hash(expand(state))
            if result != diff.tree_hash.hex():
                raise Mismatch("tree hash differs")
            if carried is not None and result != tree_hash(carried["tree"]):
                raise Mismatch("carried tree differs")
        except Mismatch:
            self.on_anomaly({"kind": "mismatch", "root": root, "expected": seq, "got": seq})
            self.held.pop(root, None)
            if carried is not None:
                self.hold(carried)
            return carried is not None
        if carried is not None:
            self.counts["verified"] += 1
        self.held[root] = {"sequence_number": seq, "state": state, "graph": None}
        return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    parser.add_argument("--topic", default="topology.canonical")
    parser.add_argument(
        "--until-end", action="store_true", help="stop at the end and print {latest, anomalies} as JSON"
    )
    args = parser.parse_args()
    allow_deep_trees()

    anomalies = []

    def report(anomaly):
        anomalies.append(anomaly)
        print(json.dumps({"anomaly": anomaly}), file=sys.stderr, flush=True)

    graphs = LatestGraphs(report)
    consumer = Consumer(
        {
            "bootstrap.servers": args.broker,
            # Required by the client even though assign() below joins no group.
            "group.id": "atlas-consumer-py",
            "enable.auto.commit": False,
            # The emit stage publishes in transactions: never see an aborted attempt's messages.
            "isolation.level": "read_committed",
            # --until-end: an event per partition when its end is reached.
            "enable.partition.eof": args.until_end,
        }
    )
    metadata = consumer.list_topics(args.topic, timeout=30).topics[args.topic]
    if metadata.error is not None:
        raise KafkaException(metadata.error)
    partitions = [TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
    consumer.assign(partitions)
    unfinished = {p.partition for p in partitions}
    try:
        while not args.until_end or unfinished:
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(message.error())
                unfinished.discard(message.partition())
                continue
            # A tombstone (no value) is not an update; the pipeline writes none, an operator might.
            if message.value() is None:
                continue
            headers = dict(message.headers() or [])
            try:
                if headers.get("message-name") == DIFF_MESSAGE.encode():
                    diff = topology_pb2.CanonicalGraphDiff.FromString(message.value())
                    applied = graphs.apply_diff(diff)
                    printed = {"root_id": diff.root_id.hex(), "sequence_number": diff.sequence_number}
                else:
                    printed = graph_of(topology_pb2.CanonicalGraphUpdated.FromString(message.value()))
                    applied = graphs.apply(printed)
            except (DecodeError, ValueError) as err:
                # Not a message of the contract: stop here rather than keep a graph that may be stale.
                sys.exit(f"partition {message.partition()} offset {message.offset()}: {err}")
            if applied and not args.until_end:
                print(json.dumps(printed), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    if args.until_end:
        print(json.dumps({"latest": graphs.latest, "anomalies": anomalies, "counts": graphs.counts}))


if __name__ == "__main__":
    main()
