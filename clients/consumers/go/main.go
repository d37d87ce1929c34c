// Command atlas-consumer consumes topology.canonical: it keeps the latest canonical graph per
// root from snapshots (CanonicalGraphUpdated) and diffs (CanonicalGraphDiff, told apart by the
// message-name header), checks each applied diff against its tree hash and the tree it carries,
// and reports gaps, repeats, diffs without a base and mismatches on stderr.
//
//	atlas-consumer --broker 127.0.0.1:9092 [--topic topology.canonical] [--until-end]
//
// It reads from the beginning every time (the topic is compacted: it holds every root's latest
// graph) and joins no consumer group. --until-end stops at the last stable offsets seen at start
// and prints {latest, anomalies, counts} as JSON; without it, it follows the topic and prints each
// applied update as a JSON line.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"atlas-pipeline/clients/consumers/go/topologypb"
)

// Protobuf-go stops at 10,000 nested messages by default; a canonical tree is legal at any
// depth (a long chain of verified edges). The decoder recurses on the goroutine stack, which
// grows as needed, so the real bound is the message size.
var unmarshal = proto.UnmarshalOptions{RecursionLimit: 1 << 30}

func main() {
	broker := flag.String("broker", "127.0.0.1:9092", "Kafka bootstrap servers, comma-separated")
	topic := flag.String("topic", "topology.canonical", "topic to read")
	untilEnd := flag.Bool("until-end", false, "stop at the end and print {latest, anomalies} as JSON")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, strings.Split(*broker, ","), *topic, *untilEnd); err != nil {
		fmt.Fprintln(os.Stderr, "atlas-consumer:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, brokers []string, topic string, untilEnd bool) error {
	client, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// The emit stage publishes in transactions: never see an aborted attempt's messages
		// (franz-go reads uncommitted unless told).
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// The transaction markers, so the offset reached is known even when a marker is last.
		kgo.KeepControlRecords(),
	)
	if err != nil {
		return err
	}
	defer client.Close()

	var pending map[int32]int64
	if untilEnd {
		if pending, err = endOffsets(ctx, kadm.NewClient(client), topic); err != nil {
			return err
		}
	}
	anomalies := []Anomaly{}
	graphs := NewLatestGraphs(func(a Anomaly) {
		anomalies = append(anomalies, a)
		line, _ := json.Marshal(map[string]Anomaly{"anomaly": a})
		fmt.Fprintln(os.Stderr, string(line))
	})
	out := json.NewEncoder(os.Stdout)

	for !untilEnd || len(pending) > 0 {
		fetches := client.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err := fetches.Err(); err != nil {
			return err
		}
		for iter := fetches.RecordIter(); !iter.Done(); {
			record := iter.Next()
			if untilEnd && record.Offset+1 >= pending[record.Partition] {
				delete(pending, record.Partition)
			}
			// Neither a marker nor a tombstone (no value: the pipeline writes none, an operator
			// might) is an update.
			if record.Attrs.IsControl() || record.Value == nil {
				continue
			}
			// Not a message of the contract: stop here rather than keep a graph that may be stale.
			printed, applied, err := apply(graphs, record)
			if err != nil {
				return fmt.Errorf("partition %d offset %d: %w", record.Partition, record.Offset, err)
			}
			if applied && !untilEnd {
				if err := out.Encode(printed); err != nil {
					return err
				}
			}
		}
	}
	latest, err := graphs.Latest()
	if err != nil {
		return err
	}
	return out.Encode(map[string]any{"latest": latest, "anomalies": anomalies, "counts": graphs.Counts})
}

// apply decodes one record by its message-name header and applies it; it returns what to print.
func apply(graphs *LatestGraphs, record *kgo.Record) (any, bool, error) {
	for _, h := range record.Headers {
		if h.Key != "message-name" || string(h.Value) != diffMessage {
			continue
		}
		var diff topologypb.CanonicalGraphDiff
		if err := unmarshal.Unmarshal(record.Value, &diff); err != nil {
			return nil, false, err
		}
		applied, err := graphs.ApplyDiff(&diff)
		printed := map[string]any{"root_id": hex.EncodeToString(diff.RootId), "sequence_number": diff.SequenceNumber}
		return printed, applied, err
	}
	graph, err := decode(record.Value)
	if err != nil {
		return nil, false, err
	}
	return graph, graphs.Apply(graph), nil
}

const diffMessage = "topology.CanonicalGraphDiff"

func decode(value []byte) (*Graph, error) {
	var update topologypb.CanonicalGraphUpdated
	if err := unmarshal.Unmarshal(value, &update); err != nil {
		return nil, err
	}
	return graphOf(&update)
}

// endOffsets gives the last stable offset of each partition that has records below it: read
// committed, the consumer cannot go past it, and all before it is decided.
func endOffsets(ctx context.Context, admin *kadm.Client, topic string) (map[int32]int64, error) {
	starts, err := admin.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, err
	}
	ends, err := admin.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, err
	}
	pending := map[int32]int64{}
	ends.Each(func(end kadm.ListedOffset) {
		if start, ok := starts.Lookup(topic, end.Partition); !ok || start.Offset < end.Offset {
			pending[end.Partition] = end.Offset
		}
	})
	return pending, nil
}
