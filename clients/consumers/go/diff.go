package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"atlas-pipeline/clients/consumers/go/topologypb"
)

// A place is where a node sits: its parent (empty for the top of a tree), edge and topic.
type place struct{ parent, edge, topic string }

type attachment struct{ anchor, topic, member string }

// State is a graph as diffs describe it: the places of the root's own tree, those of each
// attached subtree (by member), and the attachments.
type State struct {
	root        string
	own         map[string]place
	regions     map[string]map[string]place
	attachments map[attachment]bool
}

// mismatch is a diff that does not fit the graph held, or whose result is not the one announced.
type mismatch struct{ why string }

func (m mismatch) Error() string { return m.why }

func topicOf(n *Node) string {
	if n.TopicID == nil {
		return ""
	}
	return *n.TopicID
}

func describe(g *Graph) *State {
	s := &State{
		root:        g.Tree.SpaceID,
		own:         map[string]place{g.Tree.SpaceID: {"", g.Tree.Edge, ""}},
		regions:     map[string]map[string]place{},
		attachments: map[attachment]bool{},
	}
	stack := []*Node{g.Tree}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, c := range n.Children {
			if c.Edge == "topic" {
				s.attachments[attachment{n.SpaceID, topicOf(c), c.SpaceID}] = true
				if _, ok := s.regions[c.SpaceID]; !ok {
					s.regions[c.SpaceID] = regionOf(c)
				}
				continue
			}
			s.own[c.SpaceID] = place{n.SpaceID, c.Edge, ""}
			stack = append(stack, c)
		}
	}
	return s
}

func regionOf(top *Node) map[string]place {
	places := map[string]place{top.SpaceID: {"", "topic", topicOf(top)}}
	stack := []*Node{top}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, c := range n.Children {
			places[c.SpaceID] = place{n.SpaceID, c.Edge, topicOf(c)}
			stack = append(stack, c)
		}
	}
	return places
}

func copyPlaces(m map[string]place) map[string]place {
	out := make(map[string]place, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// applyDiff returns a new state with the whole diff applied, or a mismatch.
func applyDiff(s *State, d *topologypb.CanonicalGraphDiff) (*State, error) {
	next := &State{root: s.root, own: copyPlaces(s.own), regions: map[string]map[string]place{}, attachments: map[attachment]bool{}}
	for m, p := range s.regions {
		next.regions[m] = p
	}
	copied := map[string]bool{}
	for _, c := range d.Changes {
		member := hex.EncodeToString(c.MemberSpaceId)
		places := next.own
		if member != "" {
			if !copied[member] {
				copied[member] = true
				next.regions[member] = copyPlaces(next.regions[member])
			}
			places = next.regions[member]
		}
		space := hex.EncodeToString(c.SpaceId)
		_, has := places[space]
		if has != (c.Type != topologypb.NodeChangeType_NODE_CHANGE_TYPE_ADDED) {
			return nil, mismatch{fmt.Sprintf("change %v of %s does not fit", c.Type, space)}
		}
		if c.Type == topologypb.NodeChangeType_NODE_CHANGE_TYPE_REMOVED {
			delete(places, space)
			continue
		}
		edge, ok := edges[c.EdgeType]
		if !ok {
			return nil, mismatch{fmt.Sprintf("change with edge type %v", c.EdgeType)}
		}
		places[space] = place{hex.EncodeToString(c.ParentSpaceId), edge, hex.EncodeToString(c.TopicId)}
	}
	for m, p := range next.regions {
		if len(p) == 0 {
			delete(next.regions, m)
		}
	}
	for a := range s.attachments {
		next.attachments[a] = true
	}
	for _, a := range d.AttachmentsRemoved {
		key := attachment{hex.EncodeToString(a.AnchorSpaceId), hex.EncodeToString(a.TopicId), hex.EncodeToString(a.MemberSpaceId)}
		if !next.attachments[key] {
			return nil, mismatch{fmt.Sprintf("no attachment %v", key)}
		}
		delete(next.attachments, key)
	}
	for _, a := range d.AttachmentsAdded {
		next.attachments[attachment{hex.EncodeToString(a.AnchorSpaceId), hex.EncodeToString(a.TopicId), hex.EncodeToString(a.MemberSpaceId)}] = true
	}
	return next, nil
}

func childrenOf(places map[string]place) map[string][]string {
	children := map[string][]string{}
	for space, p := range places {
		if p.parent != "" {
			children[p.parent] = append(children[p.parent], space)
		}
	}
	for _, kids := range children {
		sort.Strings(kids)
	}
	return children
}

// expand builds the tree a state describes. Children: in the own tree by space id, then the
// attachments by (topic, member); inside an attached subtree by space id.
func expand(s *State) (*Node, error) {
	keys := make([]attachment, 0, len(s.attachments))
	for a := range s.attachments {
		keys = append(keys, a)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		return a.anchor+a.topic+a.member < b.anchor+b.topic+b.member
	})
	anchored := map[string][]string{}
	for _, a := range keys {
		anchored[a.anchor] = append(anchored[a.anchor], a.member)
	}
	ownChildren := childrenOf(s.own)
	regionChildren := map[string]map[string][]string{}
	for m, p := range s.regions {
		regionChildren[m] = childrenOf(p)
	}
	node := func(space string, p place) *Node {
		n := &Node{SpaceID: space, Edge: p.edge, Children: []*Node{}}
		if p.topic != "" {
			topic := p.topic
			n.TopicID = &topic
		}
		return n
	}
	type pending struct {
		space    string
		view     *Node
		places   map[string]place
		children map[string][]string
		own      bool
	}
	tree := node(s.root, s.own[s.root])
	stack := []pending{{s.root, tree, s.own, ownChildren, true}}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, c := range p.children[p.space] {
			view := node(c, p.places[c])
			p.view.Children = append(p.view.Children, view)
			stack = append(stack, pending{c, view, p.places, p.children, p.own})
		}
		if !p.own {
			continue
		}
		for _, m := range anchored[p.space] {
			region, ok := s.regions[m]
			if !ok {
				return nil, mismatch{"no subtree of " + m}
			}
			view := node(m, region[m])
			p.view.Children = append(p.view.Children, view)
			stack = append(stack, pending{m, view, region, regionChildren[m], false})
		}
	}
	return tree, nil
}

// treeHash is the Merkle hash of a tree as the README's Kafka contract defines it: iterative,
// children before parents.
func treeHash(tree *Node) string {
	hashes := map[*Node]string{}
	type item struct {
		n     *Node
		ready bool
	}
	stack := []item{{tree, false}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if !it.ready {
			stack = append(stack, item{it.n, true})
			for _, c := range it.n.Children {
				stack = append(stack, item{c, false})
			}
			continue
		}
		var b strings.Builder
		b.WriteString(it.n.SpaceID + "|" + it.n.Edge + "|" + topicOf(it.n))
		for _, c := range it.n.Children {
			b.WriteString("|" + hashes[c])
		}
		sum := sha256.Sum256([]byte(b.String()))
		hashes[it.n] = hex.EncodeToString(sum[:])[:32]
	}
	return hashes[tree]
}

func canonicalIDs(s *State) []string {
	ids := make([]string, 0, len(s.own))
	for id := range s.own {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
