// Package record decodes the chunks that Fluent Bit hands to an output plugin.
//
// A chunk is a sequence of msgpack events, each [[time, metadata], body] (Fluent Bit 2.1 and
// later) or [time, body] (older). The decoder works on the chunk where it lies: a Record's
// Meta and Body are slices of the chunk, so a Record is only valid while the chunk is, which
// for a plugin means during the FlushCtx call that passed it.
package record

import (
	"time"

	"github.com/tinylib/msgp/msgp"
)

// Record is one log event of a chunk. Meta and Body are raw msgpack maps that point into the
// chunk; Meta is nil for events in the legacy form.
type Record struct {
	Sec  int64
	Nsec int64
	Meta []byte
	Body []byte
}

// Time is the event's timestamp.
func (r *Record) Time() time.Time { return time.Unix(r.Sec, r.Nsec) }

// Lookup finds the value at a path of keys in the body, such as ("kubernetes", "pod_name").
func (r *Record) Lookup(path ...string) (Value, bool) {
	return Value(r.Body).Lookup(path...)
}

// Value is the raw msgpack encoding of one value, pointing into the chunk.
type Value []byte

// Type is the msgpack type of the value.
func (v Value) Type() msgp.Type { return msgp.NextType(v) }

// Bytes gives the contents of a str or bin value without copying.
func (v Value) Bytes() ([]byte, bool) {
	switch msgp.NextType(v) {
	case msgp.StrType:
		s, _, err := msgp.ReadStringZC(v)
		return s, err == nil
	case msgp.BinType:
		s, _, err := msgp.ReadBytesZC(v)
		return s, err == nil
	}
	return nil, false
}

// Lookup walks nested maps by key. Keys may be str or bin in the chunk.
func (v Value) Lookup(path ...string) (Value, bool) {
	cur := v
	for _, key := range path {
		next, ok := cur.get(key)
		if !ok {
			return nil, false
		}
		cur = next
	}
	return cur, true
}

func (v Value) get(key string) (Value, bool) {
	n, b, err := msgp.ReadMapHeaderBytes(v)
	if err != nil {
		return nil, false
	}
	for i := uint32(0); i < n; i++ {
		kn, err := objectLen(b)
		if err != nil {
			return nil, false
		}
		k := b[:kn]
		b = b[kn:]
		vn, err := objectLen(b)
		if err != nil {
			return nil, false
		}
		if keyEqual(k, key) {
			return Value(b[:vn]), true
		}
		b = b[vn:]
	}
	return nil, false
}

// keyEqual compares a raw str or bin key with key without decoding it.
func keyEqual(raw []byte, key string) bool {
	switch c := raw[0]; {
	case c >= 0xa0 && c <= 0xbf:
		return string(raw[1:]) == key
	case c == 0xd9 || c == 0xc4:
		return string(raw[2:]) == key
	case c == 0xda || c == 0xc5:
		return string(raw[3:]) == key
	case c == 0xdb || c == 0xc6:
		return string(raw[5:]) == key
	}
	return false
}

// Range calls fn for each entry of a map value, in chunk order, until fn returns false.
// Keys that are neither str nor bin are passed as nil.
func (v Value) Range(fn func(key []byte, val Value) bool) error {
	n, b, err := msgp.ReadMapHeaderBytes(v)
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		var key []byte
		switch msgp.NextType(b) {
		case msgp.StrType, msgp.BinType:
			key, b, err = msgp.ReadMapKeyZC(b)
		default:
			var n int
			n, err = objectLen(b)
			b = b[min(n, len(b)):]
		}
		if err != nil {
			return err
		}
		n, err := objectLen(b)
		if err != nil {
			return err
		}
		if !fn(key, Value(b[:n])) {
			return nil
		}
		b = b[n:]
	}
	return nil
}

// Equal reports whether a str or bin value holds s.
func (v Value) Equal(s string) bool {
	b, ok := v.Bytes()
	return ok && string(b) == s
}
