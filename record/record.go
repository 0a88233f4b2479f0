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
	it, err := v.Iter()
	if err != nil {
		return nil, false
	}
	for {
		k, val, ok := it.Next()
		if !ok {
			return nil, false
		}
		if string(k) == key {
			return val, true
		}
	}
}

// MapIter walks the entries of a map value in place.
type MapIter struct {
	rest []byte
	n    uint32
	err  error
}

// Iter starts a walk over a map value.
func (v Value) Iter() (MapIter, error) {
	n, b, err := msgp.ReadMapHeaderBytes(v)
	return MapIter{rest: b, n: n}, err
}

// Next returns the next entry: the key's contents if it is a str or bin (else nil) and the
// raw value. It returns false at the end of the map or at a malformed entry (see Err).
func (it *MapIter) Next() (key []byte, val Value, ok bool) {
	if it.n == 0 || it.err != nil {
		return nil, nil, false
	}
	kn, err := objectLen(it.rest)
	if err != nil {
		it.err = err
		return nil, nil, false
	}
	vn, err := objectLen(it.rest[kn:])
	if err != nil {
		it.err = err
		return nil, nil, false
	}
	key = KeyContents(it.rest[:kn])
	val = Value(it.rest[kn : kn+vn])
	it.rest = it.rest[kn+vn:]
	it.n--
	return key, val, true
}

// Err is the error that ended the walk early, if any.
func (it *MapIter) Err() error { return it.err }

// KeyContents returns the bytes of a raw str or bin object, nil for other types.
func KeyContents(raw []byte) []byte {
	switch c := raw[0]; {
	case c >= 0xa0 && c <= 0xbf:
		return raw[1:]
	case c == 0xd9 || c == 0xc4:
		return raw[2:]
	case c == 0xda || c == 0xc5:
		return raw[3:]
	case c == 0xdb || c == 0xc6:
		return raw[5:]
	}
	return nil
}

// Range calls fn for each entry of a map value, in chunk order, until fn returns false.
// Keys that are neither str nor bin are passed as nil.
func (v Value) Range(fn func(key []byte, val Value) bool) error {
	it, err := v.Iter()
	if err != nil {
		return err
	}
	for {
		k, val, ok := it.Next()
		if !ok {
			return it.Err()
		}
		if !fn(k, val) {
			return nil
		}
	}
}

// Equal reports whether a str or bin value holds s.
func (v Value) Equal(s string) bool {
	b, ok := v.Bytes()
	return ok && string(b) == s
}
