package main

import (
	"encoding/hex"
	"errors"
	"fmt"

	"atlas-pipeline/clients/consumers/go/topologypb"
)

// Graph is one CanonicalGraphUpdated as JSON-ready data: hex ids, topic_id null unless the
// edge is topic.
type Graph struct {
	RootID            string   `json:"root_id"`
	SequenceNumber    uint64   `json:"sequence_number"`
	CanonicalSpaceIDs []string `json:"canonical_space_ids"`
	Tree              *Node    `json:"tree"`
}

type Node struct {
	SpaceID  string  `json:"space_id"`
	Edge     string  `json:"edge"`
	TopicID  *string `json:"topic_id"`
	Children []*Node `json:"children"`
}

type Anomaly struct {
	Kind     string `json:"kind"` // "gap" or "repeat"
	Root     string `json:"root"`
	Expected uint64 `json:"expected"`
	Got      uint64 `json:"got"`
}

var edges = map[topologypb.EdgeType]string{
	topologypb.EdgeType_EDGE_TYPE_ROOT:     "root",
	topologypb.EdgeType_EDGE_TYPE_VERIFIED: "verified",
	topologypb.EdgeType_EDGE_TYPE_RELATED:  "related",
	topologypb.EdgeType_EDGE_TYPE_TOPIC:    "topic",
}

func graphOf(u *topologypb.CanonicalGraphUpdated) (*Graph, error) {
	if u.Tree == nil {
		return nil, errors.New("CanonicalGraphUpdated without a tree")
	}
	ids := make([]string, len(u.CanonicalSpaceIds))
	for i, id := range u.CanonicalSpaceIds {
		ids[i] = hex.EncodeToString(id)
	}
	tree, err := nodeOf(u.Tree)
	if err != nil {
		return nil, err
	}
	// Iterative: a canonical tree may be far deeper than a recursive walk should go.
	type pending struct {
		from *topologypb.CanonicalTreeNode
		to   *Node
	}
	stack := []pending{{u.Tree, tree}}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, child := range p.from.Children {
			node, err := nodeOf(child)
			if err != nil {
				return nil, err
			}
			p.to.Children = append(p.to.Children, node)
			stack = append(stack, pending{child, node})
		}
	}
	return &Graph{hex.EncodeToString(u.RootId), u.SequenceNumber, ids, tree}, nil
}

func nodeOf(n *topologypb.CanonicalTreeNode) (*Node, error) {
	edge, ok := edges[n.GetEdgeType()]
	if !ok {
		return nil, fmt.Errorf("tree node with edge type %v", n.GetEdgeType())
	}
	node := &Node{SpaceID: hex.EncodeToString(n.GetSpaceId()), Edge: edge, Children: []*Node{}}
	if n.GetEdgeType() == topologypb.EdgeType_EDGE_TYPE_TOPIC {
		topic := hex.EncodeToString(n.TopicId)
		node.TopicID = &topic
	}
	return node, nil
}

// LatestGraphs keeps the latest graph per root and checks the sequence_number contract (1, 2,
// 3… per root): a number at or below the one held is a repeat (skipped: what is held is newer
// or the same), a number past the next one is a gap (flagged, and applied: each message is the
// root's full graph, so the newer one supersedes whatever was lost).
type LatestGraphs struct {
	Latest    map[string]*Graph
	onAnomaly func(Anomaly)
}

func NewLatestGraphs(onAnomaly func(Anomaly)) *LatestGraphs {
	return &LatestGraphs{Latest: map[string]*Graph{}, onAnomaly: onAnomaly}
}

// Apply applies one update; false when it was a repeat and skipped.
func (l *LatestGraphs) Apply(g *Graph) bool {
	// The first update seen of a root may carry any number: on the compacted topic a consumer
	// starting from the beginning finds only the root's latest update of the cleaned part.
	if held, ok := l.Latest[g.RootID]; ok {
		expected := held.SequenceNumber + 1
		if g.SequenceNumber < expected {
			l.onAnomaly(Anomaly{"repeat", g.RootID, expected, g.SequenceNumber})
			return false
		}
		if g.SequenceNumber > expected {
			l.onAnomaly(Anomaly{"gap", g.RootID, expected, g.SequenceNumber})
		}
	}
	l.Latest[g.RootID] = g
	return true
}
