package accessor

import (
	"bytes"

	"github.com/tinylib/msgp/msgp"

	"github.com/trailstack/trailstack/record"
)

// Extractor finds every value the templates need in one pass over each map level of a
// record, instead of one scan of the body per field.
type Extractor struct {
	root  node
	slots int
	// The kubernetes filter's map, and in it the identity that must agree with the tag.
	kube                   *node
	kubeNS, kubePod, kubeC int
}

type node struct {
	key      string
	slot     int // -1 when only a parent of wanted values
	children []*node
	lens     uint64 // bit l set: a child's key is l bytes long (l < 64), or l is 63 or more
}

// mayHave is a quick no for most keys a record holds but nobody wants.
func (n *node) mayHave(key []byte) bool { return n.lens&(1<<min(len(key), 63)) != 0 }

// NewExtractor starts a set of wanted paths with the kubernetes filter's identity fields,
// which Extract checks against the tag.
func NewExtractor() *Extractor {
	e := &Extractor{root: node{slot: -1}}
	e.kubeNS = e.Add([]string{"kubernetes", "namespace_name"})
	e.kubePod = e.Add([]string{"kubernetes", "pod_name"})
	e.kubeC = e.Add([]string{"kubernetes", "container_name"})
	e.kube = e.root.children[0]
	return e
}

// Slots is how many values Extract fills.
func (e *Extractor) Slots() int { return e.slots }

// Add registers a path and returns the slot its value will be found in.
func (e *Extractor) Add(path []string) int {
	n := &e.root
	for _, k := range path {
		var next *node
		for _, c := range n.children {
			if c.key == k {
				next = c
				break
			}
		}
		if next == nil {
			next = &node{key: k, slot: -1}
			n.children = append(n.children, next)
			n.lens |= 1 << min(len(k), 63)
		}
		n = next
	}
	if n.slot < 0 {
		n.slot = e.slots
		e.slots++
	}
	return n.slot
}

// Memo remembers the last few kubernetes maps one caller's Extract read: the records of a
// chunk nearly all carry one of a few maps (their pod's), and comparing bytes with one
// costs less than finding the wanted values in it again. A memo serves one Extractor on
// one goroutine; it keeps copies of the maps, never pointers into a chunk.
type Memo struct {
	maps [memoMaps]memoMap
	next int    // the entry the next new map replaces
	gens uint64 // the last entry's generation (see Stamp)
}

const memoMaps = 8 // containers a chunk's records commonly alternate between, and then some

type memoMap struct {
	raw    []byte
	gen    uint64     // this filling of the entry: its Stamp
	found  []slotSpan // the values found in raw
	nslots int        // the Extractor's slots when it was filled

	// The identity the map was last checked against, and whether it names that container:
	// the same for every record that carries the map.
	checked          bool
	ns, pod, c       string
	namesTheTagsPods bool
}

// slotSpan is where a slot's value lies in a remembered map.
type slotSpan struct{ slot, off, n int }

// Extract fills vals (len Slots) from body; values not found are left nil. memo, when not
// nil, is the caller's (see Memo).
//
// A record may hold a key twice: with Merge_Log the kubernetes filter merges an
// application's JSON after the keys the engine wrote (stream, _p, time) and appends its own
// kubernetes map last. So at the top level the first occurrence of a key counts, but for
// kubernetes the last; and that map counts only if it names the container of the tag (id).
// The namespace, pod and container are the tag's whenever it names them, filter or not.
// An application can therefore name no other container than its own.
func (e *Extractor) Extract(id *Identity, body record.Value, vals []record.Value, memo *Memo) Stamp {
	w := walker{vals: vals, kube: e.kube, memo: memo}
	clear(vals)
	w.walk(body, &e.root, false, true)
	stamp := stampNone
	switch {
	case w.kubeMaps > 0 && (id == nil || !id.OK || !e.names(id, vals, w.hit)):
		clearSubtree(e.kube, vals) // not the filter's map for this container, or no way to tell
	case w.kubeMaps > 0 && w.hit != nil:
		stamp = Stamp(w.hit.gen)
	case w.kubeMaps > 0:
		stamp = 0 // read from a map the memo does not hold
	}
	if id != nil && id.OK {
		vals[e.kubeNS], vals[e.kubePod], vals[e.kubeC] = id.ns, id.pod, id.container
	}
	return stamp
}

// Stamp tells, without comparing them, that two Extracts with one memo and one Identity
// left the same values in the kubernetes subtree (the slots InKube names): when it is not 0
// and they returned the same. Any other slot may differ.
type Stamp uint64

// stampNone: no kubernetes values but the tag's.
const stampNone Stamp = 1 << 63

// InKube tells whether a slot is a value of the kubernetes map, which a Stamp vouches for.
func (e *Extractor) InKube(slot int) bool { return e.kube.holds(slot) }

func (n *node) holds(slot int) bool {
	if n.slot == slot {
		return true
	}
	for _, c := range n.children {
		if c.holds(slot) {
			return true
		}
	}
	return false
}

// names tells whether the kubernetes map's identity is id's; mm, the map's memo entry if it
// has one, keeps the answer for the map's next record.
func (e *Extractor) names(id *Identity, vals []record.Value, mm *memoMap) bool {
	if mm != nil && mm.checked && mm.ns == id.Namespace && mm.pod == id.Pod && mm.c == id.Container {
		return mm.namesTheTagsPods
	}
	ok := vals[e.kubeNS].Equal(id.Namespace) && vals[e.kubePod].Equal(id.Pod) && vals[e.kubeC].Equal(id.Container)
	if mm != nil {
		mm.checked, mm.ns, mm.pod, mm.c, mm.namesTheTagsPods = true, id.Namespace, id.Pod, id.Container, ok
	}
	return ok
}

// fill sets the values of n's subtree from the map at the start of m, which n stands for,
// and returns the map's length and its memo entry: from the memo when the map is one it
// remembers (msgpack delimits itself, so bytes equal to a whole remembered map are that
// map), else by walking it and remembering it.
func (memo *Memo) fill(m []byte, n *node, vals []record.Value) (int, *memoMap) {
	for i := range memo.maps {
		mm := &memo.maps[i]
		if len(mm.raw) > 0 && mm.nslots == len(vals) && bytes.HasPrefix(m, mm.raw) {
			for _, f := range mm.found {
				vals[f.slot] = record.Value(m[f.off : f.off+f.n])
			}
			return len(mm.raw), mm
		}
	}
	w := walker{vals: vals}
	l := w.walk(m, n, true, false)
	if l <= 0 || l > len(m) {
		return l, nil
	}
	// A walk that met malformed bytes ends at the end of m: such a map is not one object,
	// and another body may go on from its bytes differently.
	if rest, err := msgp.Skip(m[:l]); err != nil || len(rest) != 0 {
		return l, nil
	}
	mm := &memo.maps[memo.next]
	memo.next = (memo.next + 1) % memoMaps
	mm.raw = append(mm.raw[:0], m[:l]...)
	memo.gens++
	mm.nslots, mm.found, mm.checked, mm.gen = len(vals), mm.found[:0], false, memo.gens
	mm.remember(m[:l], n, vals)
	return l, mm
}

func (mm *memoMap) remember(raw []byte, n *node, vals []record.Value) {
	if n.slot >= 0 {
		if v := vals[n.slot]; len(v) > 0 {
			// v lies in raw: its offset is how much shorter its capacity is.
			mm.found = append(mm.found, slotSpan{n.slot, cap(raw) - cap(v), len(v)})
		}
	}
	for _, c := range n.children {
		mm.remember(raw, c, vals)
	}
}

func clearSubtree(n *node, vals []record.Value) {
	if n.slot >= 0 {
		vals[n.slot] = nil
	}
	for _, c := range n.children {
		clearSubtree(c, vals)
	}
}

// walker is one Extract's reading of a record: where the values go, and for the record's
// body, its kubernetes map and the memo that may hold it.
type walker struct {
	vals []record.Value
	kube *node
	memo *Memo    // nil: none
	hit  *memoMap // the memo's entry for the kubernetes map that counts, if any
	// kubernetes maps met at the top: without one, the slots under it are still clear
	kubeMaps int
}

// walk reads the map at the start of m in one pass, storing the values n wants and
// descending into the maps it wants values of. When needEnd is set it returns the map's
// size, skipping what follows the last wanted entry in one go; otherwise it stops there.
// The record's body (top) is read to its end, since a key may come twice: the first
// occurrence of a key counts, but of the kubernetes map the last.
func (w *walker) walk(m []byte, n *node, needEnd, top bool) int {
	var seen uint64 // at the top: the wanted keys met so far, by their index in n.children
	it, err := record.Value(m).Iter()
	if err != nil {
		return len(m)
	}
	found := 0
	for it.Len() > 0 {
		if found >= len(n.children) && !top {
			if !needEnd {
				return it.Offset()
			}
			if !it.SkipRest() {
				return len(m)
			}
			return it.Offset()
		}
		key, val, ok := it.Entry()
		if !ok {
			return len(m)
		}
		var c *node
		for j, ch := range n.children {
			if !n.mayHave(key) {
				break
			}
			if ch.key == string(key) {
				c = ch
				found++
				if top && ch == w.kube {
					w.kubeMaps++
				}
				if top && j < 64 {
					switch {
					case seen&(1<<j) == 0:
						seen |= 1 << j
					case ch == w.kube:
						clearSubtree(ch, w.vals) // a later map replaces the earlier
						w.hit = nil
					default:
						c = nil // the engine's key came first: later ones are the application's
					}
				}
				break
			}
		}
		if val != nil { // measured already: a string or a scalar
			if c != nil && c.slot >= 0 {
				w.vals[c.slot] = val
			}
			continue
		}
		rest := it.Rest()
		var vl int
		switch {
		case len(rest) == 0:
			return len(m)
		case c == nil || len(c.children) == 0 || msgp.NextType(rest) != msgp.MapType:
			v, ok := it.Value()
			if !ok {
				return len(m)
			}
			if c != nil && c.slot >= 0 {
				w.vals[c.slot] = v
			}
			continue
		case top && c == w.kube && w.memo != nil:
			vl, w.hit = w.memo.fill(rest, c, w.vals)
		default:
			// The nested map's end matters only if something may follow it: Fluent Bit's
			// kubernetes filter appends its map last, so usually nothing does.
			stop := it.Len() == 0 && !needEnd && c.slot < 0
			vl = w.walk(rest, c, !stop, false)
			if stop {
				return it.Offset()
			}
		}
		if vl > len(rest) {
			return len(m)
		}
		if c.slot >= 0 {
			w.vals[c.slot] = record.Value(rest[:vl])
		}
		it.Advance(vl)
	}
	return it.Offset()
}
