package stackdriver

import (
	"math"
	"strings"
	"unicode/utf8"

	"github.com/tinylib/msgp/msgp"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trailstack/trailstack/record"
)

// toStruct converts a msgpack map to a protobuf Struct, leaving out the keys skip says to.
// It reads the chunk in place; strings are copied (the chunk does not outlive the flush) and
// repaired to valid UTF-8, which protobuf requires.
func toStruct(m record.Value, skip func(key string) bool) *structpb.Struct {
	return toStructDepth(m, skip, 0)
}

func toStructDepth(m record.Value, skip func(key string) bool, depth int) *structpb.Struct {
	it, err := m.Iter()
	if err != nil {
		return &structpb.Struct{}
	}
	s := &structpb.Struct{Fields: make(map[string]*structpb.Value)}
	for {
		k, v, ok := it.Next()
		if !ok {
			return s
		}
		if k == nil {
			continue // a key that is not a string has no place in JSON
		}
		key := validString(k)
		if skip != nil && skip(key) {
			continue
		}
		s.Fields[key] = toValue(v, depth+1)
	}
}

const maxDepth = 64

func toValue(v record.Value, depth int) *structpb.Value {
	switch v.Type() {
	case msgp.StrType, msgp.BinType:
		b, _ := v.Bytes()
		return structpb.NewStringValue(validString(b))
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
			return structpb.NewNullValue()
		}
		return structpb.NewStructValue(toStructDepth(v, nil, depth+1))
	case msgp.ArrayType:
		if depth >= maxDepth {
			return structpb.NewNullValue()
		}
		n, b, err := msgp.ReadArrayHeaderBytes(v)
		if err != nil {
			return structpb.NewNullValue()
		}
		l := &structpb.ListValue{Values: make([]*structpb.Value, 0, n)}
		for i := uint32(0); i < n; i++ {
			sz, err := record.SkipObjects(b, 1)
			if err != nil {
				break
			}
			l.Values = append(l.Values, toValue(record.Value(b[:sz]), depth+1))
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
