"""A consumer of topology.canonical: keeps the latest canonical graph per root and reports gaps
and repeats in each root's sequence_number on stderr.

    python consume.py --broker 127.0.0.1:9092 [--topic topology.canonical] [--until-end]

It reads from the beginning every time (the topic is compacted: it holds every root's latest
graph) and joins no consumer group. --until-end stops once every partition is read to its end and
prints {latest, anomalies} as JSON; without it, it follows the topic and prints each applied update
as a JSON line. topology_pb2 is generated from proto/ by ../setup (on PYTHONPATH).
"""

import argparse
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
        raise ValueError("CanonicalGraphUpdated without a tree")
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


class LatestGraphs:
    """The latest graph per root, with the sequence_number contract (1, 2, 3… per root) checked:
    a number at or below the one held is a repeat (skipped: what is held is newer or the same),
    a number past the next one is a gap (flagged, and applied: each message is the root's full
    graph, so the newer one supersedes whatever was lost)."""

    def __init__(self, on_anomaly):
        self.latest = {}
        self.on_anomaly = on_anomaly

    def apply(self, graph):
        """Applies one update; False when it was a repeat and skipped."""
        root, got = graph["root_id"], graph["sequence_number"]
        held = self.latest.get(root)
        # The first update seen of a root may carry any number: on the compacted topic a consumer
        # starting from the beginning finds only the root's latest update of the cleaned part.
        if held is not None:
            expected = held["sequence_number"] + 1
            if got < expected:
                self.on_anomaly({"kind": "repeat", "root": root, "expected": expected, "got": got})
                return False
            if got > expected:
                self.on_anomaly({"kind": "gap", "root": root, "expected": expected, "got": got})
        self.latest[root] = graph
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
            try:
                graph = graph_of(topology_pb2.CanonicalGraphUpdated.FromString(message.value()))
            except (DecodeError, ValueError) as err:
                # Not a CanonicalGraphUpdated: stop here rather than keep a graph that may be stale.
                sys.exit(f"partition {message.partition()} offset {message.offset()}: {err}")
            if graphs.apply(graph) and not args.until_end:
                print(json.dumps(graph), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    if args.until_end:
        print(json.dumps({"latest": graphs.latest, "anomalies": anomalies}))


if __name__ == "__main__":
    main()
