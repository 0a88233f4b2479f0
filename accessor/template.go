// Package accessor renders values of records through templates in the style of Fluent Bit's
// record accessor, and finds every value a set of templates needs in one pass per record.
package accessor

import (
	"fmt"
	"slices"
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

// Slots appends the slots of the values the template reads: with the tag, they are all its
// rendering depends on.
func (t *Template) Slots(dst []int) []int {
	for _, alt := range t.alts {
		for _, p := range alt {
			if p.kind == field && !slices.Contains(dst, p.slot) {
				dst = append(dst, p.slot)
			}
		}
	}
	return dst
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
