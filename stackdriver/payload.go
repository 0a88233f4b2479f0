package stackdriver

import (
	"math"
	"strings"
	"unicode/utf8"

	"github.com/tinylib/msgp/msgp"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trailstack/trailstack/record"
)

// Memory: a protobuf Value costs tens of bytes where msgpack spends one on a small number,
// so a body that is one long array grows about 80 times. A flush converts at most
// maxFlushValues values (about 16 MB); payloads beyond that, and any larger than an entry
// may be, go as their JSON text, cut to size and marked, as shrink would have cut them.
const maxFlushValues = 200_000

// converter turns msgpack into protobuf values within a flush's budget.
type converter struct {
	budget  int // values the flush may still convert
	tooDeep int // values nested deeper than maxDepth, written as null
	// bound grows with every value converted by at least what it adds to the encoded
	// size: measuring a large Struct with proto.Size cost as much as encoding it.
	bound int
}

// valueOverhead bounds the bytes protobuf spends on one value besides its key's and its
// string's: a map entry's or list element's tag and length, the key's tag and length, the
// Value's tag and length, and the widest scalar (a double's 8 bytes).
const valueOverhead = 32

// toStruct converts a msgpack map to a protobuf Struct (a record's body, when body is set:
// without the keys the engine added, see engineKey); nil when the flush's budget ran out.
// It reads the chunk in place; strings are copied (the chunk does not outlive the flush)
// and repaired to valid UTF-8, which protobuf requires.
func (c *converter) toStruct(m record.Value, body bool) *structpb.Struct {
	s := c.toStructDepth(m, body, 0)
	if c.budget < 0 {
		c.budget = 0
		return nil
	}
	return s
}

func (c *converter) toStructDepth(m record.Value, body bool, depth int) *structpb.Struct {
	it, err := m.Iter()
	if err != nil {
		return &structpb.Struct{}
	}
	s := &structpb.Struct{Fields: make(map[string]*structpb.Value)}
	var seen uint8
	for c.budget >= 0 {
		k, v, ok := it.Next()
		if !ok {
			return s
		}
		if k == nil {
			continue // a key that is not a string has no place in JSON
		}
		if body && skipEngineKey(k, &seen) {
			continue
		}
		c.bound += len(k)
		s.Fields[validString(k)] = c.toValue(v, depth+1)
	}
	return s
}

// skipEngineKey tells the keys of a body that describe the record rather than the
// application's log: the kubernetes filter's map, and the first time, stream, _p and logtag
// (tail's parsers write them first; the same keys later are the application's own, merged
// by Merge_Log, and stay in its payload).
func skipEngineKey(k []byte, seen *uint8) bool {
	var bit uint8
	switch string(k) {
	case "kubernetes":
		return true
	case "time":
		bit = 1
	case "stream":
		bit = 2
	case "_p":
		bit = 4
	case "logtag":
		bit = 8
	default:
		return false
	}
	first := *seen&bit == 0
	*seen |= bit
	return first
}

// maxDepth counts both steps of each level (a map's value, then the map): 32 levels of JSON.
const maxDepth = 64

func (c *converter) toValue(v record.Value, depth int) *structpb.Value {
	if c.budget--; c.budget < 0 {
		return nil
	}
	c.bound += valueOverhead
	switch v.Type() {
	case msgp.StrType, msgp.BinType:
		b, _ := v.Bytes()
		str := validString(b)
		c.bound += len(str)
		return structpb.NewStringValue(str)
	case msgp.IntType:
		n, _, _ := msgp.ReadInt64Bytes(v)
		return structpb.NewNumberValue(float64(n))
	case msgp.UintType:
		n, _, _ := msgp.ReadUint64Bytes(v)
		return structpb.NewNumberValue(float64(n))
	case msgp.Float64Type, msgp.Float32Type:
		f, _, _ := msgp.ReadFloat64Bytes(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return structpb.NewStringValue(strings.ToLower(fmtFloat(f)))
		}
		return structpb.NewNumberValue(f)
	case msgp.BoolType:
		b, _, _ := msgp.ReadBoolBytes(v)
		return structpb.NewBoolValue(b)
	case msgp.MapType:
		if depth >= maxDepth {
			c.tooDeep++
			return structpb.NewNullValue()
		}
		return structpb.NewStructValue(c.toStructDepth(v, false, depth+1))
	case msgp.ArrayType:
		if depth >= maxDepth {
			c.tooDeep++
			return structpb.NewNullValue()
		}
		n, b, err := msgp.ReadArrayHeaderBytes(v)
		if err != nil {
			return structpb.NewNullValue()
		}
		l := &structpb.ListValue{Values: make([]*structpb.Value, 0, n)}
		for i := uint32(0); i < n && c.budget >= 0; i++ {
			sz, err := record.SkipObjects(b, 1)
			if err != nil {
				break
			}
			l.Values = append(l.Values, c.toValue(record.Value(b[:sz]), depth+1))
			b = b[sz:]
		}
		return structpb.NewListValue(l)
	}
	return structpb.NewNullValue()
}

func fmtFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case f > 0:
		return "Infinity"
	}
	return "-Infinity"
}

// validString copies b, replacing invalid UTF-8.
func validString(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// jsonValues bounds from above how many values a JSON text holds, without parsing it.
func jsonValues(t string) int {
	n := 1
	for i := 0; i < len(t); i++ {
		switch t[i] {
		case ',', ':', '[', '{':
			n++
		}
	}
	return n
}

// jsonText renders a record's body as JSON text without the keys the engine added, cut to
// max bytes and marked when longer.
func jsonText(m record.Value, max int) string {
	var w sliceWriter
	w.b = append(w.b, '{')
	it, err := m.Iter()
	var seen uint8
	for first := true; err == nil && len(w.b) <= max; {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		if k == nil || skipEngineKey(k, &seen) {
			continue
		}
		if !first {
			w.b = append(w.b, ',')
		}
		first = false
		_, _ = msgp.UnmarshalAsJSON(&w, msgp.AppendString(nil, validString(k)))
		w.b = append(w.b, ':')
		_, _ = msgp.UnmarshalAsJSON(&w, v)
	}
	w.b = append(w.b, '}')
	return truncateUTF8(string(w.b), max)
}

// sliceWriter lets msgp's JSON writer append to a slice.
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
