package stackdriver

import (
	"encoding/binary"
	"math"
	"strings"
	"unicode/utf8"

	"cloud.google.com/go/logging/apiv2/loggingpb"
	"github.com/tinylib/msgp/msgp"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trailstack/trailstack/record"
)

// Memory: a protobuf Value costs tens of bytes where msgpack spends one on a small number,
// so a body that is one long array grows about 80 times. A flush converts at most
// maxFlushValues values (about 16 MB); payloads beyond that, and any larger than an entry
// may be, go as their JSON text, split into entries where it is longer than one may be.
const maxFlushValues = 200_000

// maxTextBytes bounds a payload's JSON text: a body longer than that (a chunk is a few MB)
// is cut there and marked.
const maxTextBytes = 16 << 20

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
// without the keys the engine added, see record.EngineKeys); nil when the flush's budget ran out.
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
	var engine record.EngineKeys
	for c.budget >= 0 {
		k, v, ok := it.Next()
		if !ok {
			return s
		}
		if k == nil {
			continue // a key that is not a string has no place in JSON
		}
		if body && engine.Is(k) {
			continue
		}
		c.bound += len(k)
		s.Fields[validString(k)] = c.toValue(v, depth+1)
	}
	return s
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
		it, err := v.Elems()
		if err != nil {
			return structpb.NewNullValue()
		}
		l := &structpb.ListValue{Values: make([]*structpb.Value, 0, it.Len())}
		for c.budget >= 0 {
			elem, ok := it.Next()
			if !ok {
				break
			}
			l.Values = append(l.Values, c.toValue(elem, depth+1))
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

// bodyText is a record's body as JSON text without the engine's keys, cut to max bytes and
// marked when longer.
func bodyText(body record.Value, max int) string {
	var w record.JSON
	_ = w.Body(body, max)
	return truncateUTF8(string(w.B), max)
}

// jsonPayloadField is LogEntry.json_payload's field number, for a payload encoded here.
var jsonPayloadField = (&loggingpb.LogEntry{}).ProtoReflect().Descriptor().Fields().ByName("json_payload").Number()

// appendBody appends a record's body (without the engine's keys) to dst as a LogEntry's
// encoded json_payload field, straight from msgpack, when none of its keys is one that
// lift takes out of the payload (lift works on a Struct). Building the Struct and sizing
// its maps cost most of a JSON entry's mapping (BenchmarkShapes, json); protowire's encoding of the same values is what
// the Struct would have been encoded to. ok is false, and nothing spent, when a key is
// special, the flush's budget ran out, or the payload is too large to send whole.
func (c *converter) appendBody(dst []byte, body record.Value) (out []byte, ok bool) {
	it, err := body.Iter()
	if err != nil {
		return dst, false
	}
	var engine record.EngineKeys
	for {
		k, _, more := it.Next()
		if !more {
			break
		}
		if k != nil && !engine.Is(k) && liftedKey(k) {
			return dst, false
		}
	}
	budget, tooDeep := c.budget, c.tooDeep
	start := len(dst)
	dst = protowire.AppendTag(dst, jsonPayloadField, protowire.BytesType)
	dst, mark := openLen(dst)
	dst = c.appendFields(dst, body, true, 0)
	dst = closeLen(dst, mark)
	if c.budget < 0 || len(dst)-start > entryBudget/2 {
		c.budget, c.tooDeep = budget, tooDeep
		return dst[:start], false
	}
	return dst, true
}

// liftedKey tells the keys lift reads out of a JSON payload.
func liftedKey(k []byte) bool {
	switch string(k) {
	case "severity", "time", "timestamp", "timestampSeconds", "timestampNanos", "httpRequest":
		return true
	}
	return strings.HasPrefix(string(k), specialPrefix)
}

// appendFields encodes a msgpack map as a Struct's fields, as toStructDepth converts it.
func (c *converter) appendFields(dst []byte, m record.Value, body bool, depth int) []byte {
	it, err := m.Iter()
	if err != nil {
		return dst
	}
	var engine record.EngineKeys
	for c.budget >= 0 {
		k, v, ok := it.Next()
		if !ok {
			return dst
		}
		if k == nil || body && engine.Is(k) {
			continue
		}
		dst = protowire.AppendTag(dst, 1, protowire.BytesType) // Struct.fields: one map entry
		var entry, val int
		dst, entry = openLen(dst)
		dst = protowire.AppendTag(dst, 1, protowire.BytesType) // its key
		dst = appendValidString(dst, k)
		dst = protowire.AppendTag(dst, 2, protowire.BytesType) // its Value
		dst, val = openLen(dst)
		dst = c.appendValue(dst, v, depth+1)
		dst = closeLen(dst, val)
		dst = closeLen(dst, entry)
	}
	return dst
}

// appendValue encodes a msgpack value as a Value's fields, as toValue converts it.
func (c *converter) appendValue(dst []byte, v record.Value, depth int) []byte {
	if c.budget--; c.budget < 0 {
		return dst
	}
	null := func() []byte {
		dst = protowire.AppendTag(dst, 1, protowire.VarintType)
		return protowire.AppendVarint(dst, 0)
	}
	number := func(f float64) []byte {
		dst = protowire.AppendTag(dst, 2, protowire.Fixed64Type)
		return protowire.AppendFixed64(dst, math.Float64bits(f))
	}
	switch v.Type() {
	case msgp.StrType, msgp.BinType:
		b, _ := v.Bytes()
		dst = protowire.AppendTag(dst, 3, protowire.BytesType)
		return appendValidString(dst, b)
	case msgp.IntType:
		n, _, _ := msgp.ReadInt64Bytes(v)
		return number(float64(n))
	case msgp.UintType:
		n, _, _ := msgp.ReadUint64Bytes(v)
		return number(float64(n))
	case msgp.Float64Type, msgp.Float32Type:
		f, _, _ := msgp.ReadFloat64Bytes(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			dst = protowire.AppendTag(dst, 3, protowire.BytesType)
			return protowire.AppendString(dst, strings.ToLower(fmtFloat(f)))
		}
		return number(f)
	case msgp.BoolType:
		b, _, _ := msgp.ReadBoolBytes(v)
		dst = protowire.AppendTag(dst, 4, protowire.VarintType)
		return protowire.AppendVarint(dst, protowire.EncodeBool(b))
	case msgp.MapType:
		if depth >= maxDepth {
			c.tooDeep++
			return null()
		}
		dst = protowire.AppendTag(dst, 5, protowire.BytesType)
		dst, mark := openLen(dst)
		dst = c.appendFields(dst, v, false, depth+1)
		return closeLen(dst, mark)
	case msgp.ArrayType:
		if depth >= maxDepth {
			c.tooDeep++
			return null()
		}
		it, err := v.Elems()
		if err != nil {
			return null()
		}
		dst = protowire.AppendTag(dst, 6, protowire.BytesType)
		dst, list := openLen(dst)
		for c.budget >= 0 {
			elem, ok := it.Next()
			if !ok {
				break
			}
			dst = protowire.AppendTag(dst, 1, protowire.BytesType) // ListValue.values
			var mark int
			dst, mark = openLen(dst)
			dst = c.appendValue(dst, elem, depth+1)
			dst = closeLen(dst, mark)
		}
		return closeLen(dst, list)
	}
	return null()
}

// appendValidString appends b as a length-delimited string, repaired to valid UTF-8 as
// validString repairs it.
func appendValidString(dst, b []byte) []byte {
	if utf8.Valid(b) {
		return protowire.AppendBytes(dst, b)
	}
	return protowire.AppendString(dst, strings.ToValidUTF8(string(b), "\uFFFD"))
}

// openLen starts a length-delimited field whose length is not known yet: one byte is
// kept for it, which is enough below 128 bytes; closeLen writes it, moving the contents
// when the length needs more.
func openLen(dst []byte) ([]byte, int) {
	return append(dst, 0), len(dst) + 1
}

func closeLen(dst []byte, start int) []byte {
	n := len(dst) - start
	if n < 0x80 {
		dst[start-1] = byte(n)
		return dst
	}
	var l [binary.MaxVarintLen64]byte
	w := len(protowire.AppendVarint(l[:0], uint64(n)))
	dst = append(dst, l[:w-1]...)
	copy(dst[start+w-1:], dst[start:start+n])
	protowire.AppendVarint(dst[start-1:start-1], uint64(n))
	return dst
}
