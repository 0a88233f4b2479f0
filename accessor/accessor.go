// Package accessor renders values of records through templates in the style of Fluent Bit's
// record accessor, and finds every value a set of templates needs in one pass per record.
package accessor

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/tinylib/msgp/msgp"

	"github.com/trailstack/trailstack/record"
)

// Template renders one value (a syslog header field, a log name) from a record:
//
//	literal text                 as written
//	$kubernetes['pod_name']      a value of the record (any depth; $log for a top-level key)
//	$TAG, $TAG[1]                the tag, or its n-th part split on dots (also ${tag[1]})
//	${NODE_NAME}                 an environment variable, read once at Init
//	a||b||c                      the first alternative that renders: an alternative fails
//	                             when any value it names is missing or empty
//
// Fluent Bit itself replaces ${VAR} in its configuration before the plugin sees it; the
// plugin does the same for hosts that do not (flbhost).
type Template struct {
	alts [][]part
}

// Field reports whether the template is a single value and nothing else, and its slot:
// such a value may be a map, which a caller can expand.
func (t *Template) Field() (slot int, ok bool) {
	if len(t.alts) == 1 && len(t.alts[0]) == 1 && t.alts[0][0].kind == field {
		return t.alts[0][0].slot, true
	}
	return 0, false
}

type partKind int

const (
	literal partKind = iota
	field
	tagWhole
	tagPart
)

type part struct {
	kind partKind
	text string // literal
	slot int    // field: index into the values the extractor found
	n    int    // tagPart
}

// Env looks up an environment variable, as os.LookupEnv does: templates read ${VAR} through
// it, once, when they are compiled.
type Env func(name string) (string, bool)

// Compile parses src, registering the record paths it reads with ex.
func Compile(src string, ex *Extractor, env Env) (*Template, error) {
	t := &Template{}
	for _, alt := range strings.Split(src, "||") {
		parts, err := compileAlt(strings.TrimSpace(alt), ex, env)
		if err != nil {
			return nil, err
		}
		t.alts = append(t.alts, parts)
	}
	return t, nil
}

// Keys is where a template key is read and its error kept: core.Parser is one.
type Keys interface {
	String(key, def string) string
	LookupEnv(name string) (string, bool)
	Fail(key, format string, args ...any)
}

// Key reads the template under key (def when unset) and compiles it against ex. A template
// that does not compile is p's error, and an empty one stands in for it.
func Key(p Keys, ex *Extractor, key, def string) *Template {
	t, err := Compile(p.String(key, def), ex, p.LookupEnv)
	if err != nil {
		p.Fail(key, "%v", err)
		t = &Template{alts: [][]part{nil}}
	}
	return t
}

func compileAlt(s string, ex *Extractor, env Env) ([]part, error) {
	var parts []part
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, part{kind: literal, text: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		if s[i] != '$' || i+1 == len(s) {
			lit.WriteByte(s[i])
			i++
			continue
		}
		rest := s[i+1:]
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				return nil, fmt.Errorf("unclosed ${ in %q", s)
			}
			name := rest[1:end]
			i += end + 2 // '$' and '{'...'}'
			if p, ok, err := tagRef(name, "tag"); ok || err != nil {
				if err != nil {
					return nil, err
				}
				flush()
				parts = append(parts, p)
				continue
			}
			v, set := env(name)
			if !set || v == "" {
				return nil, nil // this alternative can never render
			}
			lit.WriteString(v)
		case strings.HasPrefix(rest, "TAG"):
			n := 3
			if strings.HasPrefix(rest[3:], "[") {
				n = 3 + strings.IndexByte(rest[3:], ']') + 1
				if n < 5 {
					return nil, fmt.Errorf("unclosed $TAG[ in %q", s)
				}
			}
			p, _, err := tagRef(rest[:n], "TAG")
			if err != nil {
				return nil, err
			}
			flush()
			parts = append(parts, p)
			i += 1 + n
		default:
			path, n, err := accessor(rest)
			if err != nil {
				return nil, fmt.Errorf("%v in %q", err, s)
			}
			if len(path) == 0 {
				lit.WriteByte('$')
				i++
				continue
			}
			flush()
			parts = append(parts, part{kind: field, slot: ex.Add(path)})
			i += 1 + n
		}
	}
	flush()
	if len(parts) == 0 {
		parts = []part{{kind: literal}}
	}
	return parts, nil
}

// tagRef reads "TAG" or "TAG[n]" (name spelled as given).
func tagRef(s, name string) (part, bool, error) {
	if s == name {
		return part{kind: tagWhole}, true, nil
	}
	if !strings.HasPrefix(s, name+"[") || !strings.HasSuffix(s, "]") {
		return part{}, false, nil
	}
	n, err := strconv.Atoi(s[len(name)+1 : len(s)-1])
	if err != nil || n < 0 {
		return part{}, true, fmt.Errorf("bad tag index in %q", s)
	}
	return part{kind: tagPart, n: n}, true, nil
}

// accessor reads name['key']["key"]... and returns the path and how many bytes it took.
func accessor(s string) ([]string, int, error) {
	i := 0
	for i < len(s) && (isWordByte(s[i])) {
		i++
	}
	if i == 0 {
		return nil, 0, nil
	}
	path := []string{s[:i]}
	for i < len(s) && s[i] == '[' {
		if i+1 >= len(s) || (s[i+1] != '\'' && s[i+1] != '"') {
			return nil, 0, fmt.Errorf("want a quoted key after [")
		}
		q := s[i+1]
		end := strings.IndexByte(s[i+2:], q)
		if end < 0 || i+2+end+1 >= len(s) || s[i+2+end+1] != ']' {
			return nil, 0, fmt.Errorf("unclosed [ key")
		}
		path = append(path, s[i+2:i+2+end])
		i += 2 + end + 2
	}
	return path, i, nil
}

func isWordByte(c byte) bool {
	return c == '_' || c == '-' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// Render appends the first alternative that renders; ok is false if none did. vals are
// what the Extractor found in the record.
func (t *Template) Render(dst []byte, vals []record.Value, tag string) ([]byte, bool) {
	for _, alt := range t.alts {
		if alt == nil {
			continue
		}
		out, ok := renderAlt(dst, alt, vals, tag)
		if ok && len(out) > len(dst) {
			return out, true
		}
	}
	return dst, false
}

func renderAlt(dst []byte, alt []part, vals []record.Value, tag string) ([]byte, bool) {
	for i := range alt {
		p := &alt[i]
		start := len(dst)
		switch p.kind {
		case literal:
			dst = append(dst, p.text...)
		case tagWhole:
			dst = append(dst, tag...)
		case tagPart:
			dst = append(dst, tagField(tag, p.n)...)
		case field:
			dst = AppendScalar(dst, vals[p.slot])
		}
		if p.kind != literal && len(dst) == start {
			return dst[:start], false
		}
	}
	return dst, true
}

func tagField(tag string, n int) string {
	for i := 0; i < n; i++ {
		dot := strings.IndexByte(tag, '.')
		if dot < 0 {
			return ""
		}
		tag = tag[dot+1:]
	}
	if dot := strings.IndexByte(tag, '.'); dot >= 0 {
		return tag[:dot]
	}
	return tag
}

// AppendScalar appends a str, bin, integer, float or bool value; maps, arrays and nil append
// nothing.
func AppendScalar(dst []byte, v record.Value) []byte {
	if len(v) == 0 {
		return dst
	}
	switch v.Type() {
	case msgp.StrType, msgp.BinType:
		b, _ := v.Bytes()
		return append(dst, b...)
	case msgp.IntType:
		n, _, err := msgp.ReadInt64Bytes(v)
		if err == nil {
			return strconv.AppendInt(dst, n, 10)
		}
	case msgp.UintType:
		n, _, err := msgp.ReadUint64Bytes(v)
		if err == nil {
			return strconv.AppendUint(dst, n, 10)
		}
	case msgp.Float64Type, msgp.Float32Type:
		f, _, err := msgp.ReadFloat64Bytes(v)
		if err == nil {
			return strconv.AppendFloat(dst, f, 'g', -1, 64)
		}
	case msgp.BoolType:
		b, _, err := msgp.ReadBoolBytes(v)
		if err == nil {
			return strconv.AppendBool(dst, b)
		}
	}
	return dst
}

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
}

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
	next int // the entry the next new map replaces
}

const memoMaps = 8 // containers a chunk's records commonly alternate between, and then some

type memoMap struct {
	raw   []byte
	spans []span // by slot: where the value was in raw (n 0: absent)
}

type span struct{ off, n int }

// Extract fills vals (len Slots) from body; values not found are left nil. memo, when not
// nil, is the caller's (see Memo).
//
// A record may hold a key twice: with Merge_Log the kubernetes filter merges an
// application's JSON after the keys the engine wrote (stream, _p, time) and appends its own
// kubernetes map last. So at the top level the first occurrence of a key counts, but for
// kubernetes the last; and that map counts only if it names the container of the tag (id).
// The namespace, pod and container are the tag's whenever it names them, filter or not.
// An application can therefore name no other container than its own.
func (e *Extractor) Extract(id *Identity, body record.Value, vals []record.Value, memo *Memo) {
	clear(vals)
	var seen uint64
	walk(body, &e.root, vals, false, e.kube, &seen, memo)
	if id == nil || !id.OK || !vals[e.kubeNS].Equal(id.Namespace) || !vals[e.kubePod].Equal(id.Pod) || !vals[e.kubeC].Equal(id.Container) {
		clearSubtree(e.kube, vals) // not the filter's map for this container, or no way to tell
	}
	if id != nil && id.OK {
		vals[e.kubeNS], vals[e.kubePod], vals[e.kubeC] = id.ns, id.pod, id.container
	}
}

// fill sets the values of n's subtree from the map at the start of m, which n stands for,
// and returns the map's length: from the memo when the map is one it remembers (msgpack
// delimits itself, so bytes equal to a whole remembered map are that map), else by
// walking it and remembering it.
func (memo *Memo) fill(m []byte, n *node, vals []record.Value) int {
	for i := range memo.maps {
		mm := &memo.maps[i]
		if len(mm.raw) > 0 && len(mm.spans) == len(vals) && bytes.HasPrefix(m, mm.raw) {
			mm.recall(m[:len(mm.raw)], n, vals)
			return len(mm.raw)
		}
	}
	l := walk(m, n, vals, true, nil, nil, nil)
	if l <= 0 || l > len(m) {
		return l
	}
	mm := &memo.maps[memo.next]
	memo.next = (memo.next + 1) % memoMaps
	mm.raw = append(mm.raw[:0], m[:l]...)
	if len(mm.spans) != len(vals) {
		mm.spans = make([]span, len(vals))
	}
	mm.remember(m[:l], n, vals)
	return l
}

func (mm *memoMap) remember(raw []byte, n *node, vals []record.Value) {
	if n.slot >= 0 {
		sp := span{}
		if v := vals[n.slot]; len(v) > 0 {
			// v lies in raw: its offset is how much shorter its capacity is.
			sp = span{cap(raw) - cap(v), len(v)}
		}
		mm.spans[n.slot] = sp
	}
	for _, c := range n.children {
		mm.remember(raw, c, vals)
	}
}

func (mm *memoMap) recall(raw []byte, n *node, vals []record.Value) {
	if n.slot >= 0 {
		if sp := mm.spans[n.slot]; sp.n > 0 {
			vals[n.slot] = record.Value(raw[sp.off : sp.off+sp.n])
		}
	}
	for _, c := range n.children {
		mm.recall(raw, c, vals)
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

// walk reads the map at the start of m in one pass, storing the values n wants and
// descending into the maps it wants values of. When needEnd is set it returns the map's
// size, skipping what follows the last wanted entry in one go; otherwise it stops there.
// At the top level (seen non-nil) it reads every key: the first occurrence of a key counts,
// but of last (the kubernetes map) the last occurrence.
func walk(m []byte, n *node, vals []record.Value, needEnd bool, last *node, seen *uint64, memo *Memo) int {
	it, err := record.Value(m).Iter()
	if err != nil {
		return len(m)
	}
	found := 0
	for it.Len() > 0 {
		if found >= len(n.children) && seen == nil {
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
			if ch.key == string(key) {
				c = ch
				found++
				if seen != nil && j < 64 {
					switch {
					case *seen&(1<<j) == 0:
						*seen |= 1 << j
					case ch == last:
						clearSubtree(ch, vals) // a later map replaces the earlier
					default:
						c = nil // the engine's key came first: later ones are the application's
					}
				}
				break
			}
		}
		if val != nil { // measured already: a string or a scalar
			if c != nil && c.slot >= 0 {
				vals[c.slot] = val
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
				vals[c.slot] = v
			}
			continue
		case c == last && memo != nil:
			vl = memo.fill(rest, c, vals)
		default:
			// The nested map's end matters only if something may follow it: Fluent Bit's
			// kubernetes filter appends its map last, so usually nothing does.
			stop := it.Len() == 0 && !needEnd && c.slot < 0
			vl = walk(rest, c, vals, !stop, nil, nil, nil)
			if stop {
				return it.Offset()
			}
		}
		if vl > len(rest) {
			return len(m)
		}
		if c.slot >= 0 {
			vals[c.slot] = record.Value(rest[:vl])
		}
		it.Advance(vl)
	}
	return it.Offset()
}
