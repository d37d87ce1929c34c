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
	Kind     string `json:"kind"` // "gap", "repeat", "no_base" or "mismatch"
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

// LatestGraphs keeps the latest graph per root, from snapshots and diffs, and checks the
// sequence_number contract (1, 2, 3… per root): a number at or below the one held is a repeat
// (skipped: what is held is newer or the same), a number past the next one is a gap. A snapshot
// past a gap is applied (it supersedes whatever was lost); a diff past a gap has no base
// (no_base): the root waits for a message carrying a tree. A diff is applied whole and its
// result checked against the diff's tree hash and, when it carries the tree, against that tree
// (verified); a result that differs is a mismatch.
type LatestGraphs struct {
	held      map[string]*held
	Counts    Counts
	onAnomaly func(Anomaly)
}

type Counts struct {
	Snapshots int `json:"snapshots"`
	Diffs     int `json:"diffs"`
	Verified  int `json:"verified"`
}

type held struct {
	seq   uint64
	state *State
	graph *Graph // nil after a diff: built from state when asked
}

func NewLatestGraphs(onAnomaly func(Anomaly)) *LatestGraphs {
	return &LatestGraphs{held: map[string]*held{}, onAnomaly: onAnomaly}
}

// Latest is the latest graph of every root.
func (l *LatestGraphs) Latest() (map[string]*Graph, error) {
	out := map[string]*Graph{}
	for root, h := range l.held {
		if h.graph != nil {
			out[root] = h.graph
			continue
		}
		tree, err := expand(h.state)
		if err != nil {
			return nil, err
		}
		out[root] = &Graph{root, h.seq, canonicalIDs(h.state), tree}
	}
	return out, nil
}

// inSequence is false for a repeat and flags a gap. The first update seen of a root may carry
// any number: on the compacted topic a consumer starting from the beginning finds only the
// root's latest update of the cleaned part.
func (l *LatestGraphs) inSequence(root string, got uint64) bool {
	h, ok := l.held[root]
	if !ok {
		return true
	}
	expected := h.seq + 1
	if got < expected {
		l.onAnomaly(Anomaly{"repeat", root, expected, got})
		return false
	}
	if got > expected {
		l.onAnomaly(Anomaly{"gap", root, expected, got})
	}
	return true
}

func (l *LatestGraphs) hold(g *Graph) {
	l.held[g.RootID] = &held{g.SequenceNumber, describe(g), g}
}

// Apply applies one snapshot; false when it was a repeat and skipped.
func (l *LatestGraphs) Apply(g *Graph) bool {
	if !l.inSequence(g.RootID, g.SequenceNumber) {
		return false
	}
	l.Counts.Snapshots++
	l.hold(g)
	return true
}

// ApplyDiff applies one diff; false when it was skipped (a repeat, or no base).
func (l *LatestGraphs) ApplyDiff(d *topologypb.CanonicalGraphDiff) (bool, error) {
	root, seq := hex.EncodeToString(d.RootId), d.SequenceNumber
	if !l.inSequence(root, seq) {
		return false, nil
	}
	l.Counts.Diffs++
	var carried *Graph
	if d.Tree != nil {
		var err error
		if carried, err = graphOf(&topologypb.CanonicalGraphUpdated{
			RootId: d.RootId, Tree: d.Tree, CanonicalSpaceIds: d.CanonicalSpaceIds, SequenceNumber: seq,
		}); err != nil {
			return false, err
		}
	}
	h, ok := l.held[root]
	if !ok || h.seq != d.BaseSequenceNumber {
		if carried == nil {
			var got uint64
			if ok {
				got = h.seq
			}
			l.onAnomaly(Anomaly{"no_base", root, d.BaseSequenceNumber, got})
			delete(l.held, root)
			return false, nil
		}
		l.hold(carried)
		return true, nil
	}
	state, err := verified(h.state, d, carried)
	if err != nil {
		l.onAnomaly(Anomaly{"mismatch", root, seq, seq})
		delete(l.held, root)
		if carried != nil {
			l.hold(carried)
		}
		return carried != nil, nil
	}
	if carried != nil {
		l.Counts.Verified++
	}
	l.held[root] = &held{seq, state, nil}
	return true, nil
}

// verified applies the diff and checks the result against the diff's hash and carried tree.
func verified(s *State, d *topologypb.CanonicalGraphDiff, carried *Graph) (*State, error) {
	state, err := applyDiff(s, d)
	if err != nil {
		return nil, err
	}
	tree, err := expand(state)
	if err != nil {
		return nil, err
	}
	result := treeHash(tree)
	if result != hex.EncodeToString(d.TreeHash) {
		return nil, mismatch{"tree hash differs"}
	}
	if carried != nil && result != treeHash(carried.Tree) {
		return nil, mismatch{"carried tree differs"}
	}
	return state, nil
}
