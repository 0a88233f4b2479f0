// Package record decodes the chunks that Fluent Bit hands to an output plugin.
//
// A chunk is a sequence of msgpack events, each [[time, metadata], body] (Fluent Bit 2.1 and
// later) or [time, body] (older). The decoder works on the chunk where it lies: a Record's
// Meta and Body are slices of the chunk, so a Record is only valid while the chunk is, which
// for a plugin means during the FlushCtx call that passed it.
package record

import (
	"encoding/binary"
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
	// Trace is set on a record the core joined from the lines of one stack trace: its log
	// holds them all, one per line.
	Trace bool

	// What the decoder found in Body while measuring it (see LogAndStream); indexed is the
	// body they belong to, so that a Body replaced since is read again.
	indexed             []byte
	log, stream, offset Value
}

// Time is the event's timestamp.
func (r *Record) Time() time.Time { return time.Unix(r.Sec, r.Nsec) }

// OffsetKey is the key the tail input's offset_key is set to where the plugin accounts for
// every line: the byte offset in the container's log at which the record's last line
// starts. It describes the record, so no destination is sent it (EngineKeys).
const OffsetKey = "trailstack_offset"

// FileOffset is the record's OffsetKey: as the decoder found it, or for a body set since (or
// a record the slow path read), by reading it.
func (r *Record) FileOffset() (int64, bool) {
	v := r.offset
	if len(r.Body) == 0 || len(r.indexed) != len(r.Body) || &r.indexed[0] != &r.Body[0] {
		var ok bool
		if v, ok = Value(r.Body).Lookup(OffsetKey); !ok {
			return 0, false
		}
	} else if v == nil {
		return 0, false
	}
	switch msgp.NextType(v) {
	case msgp.IntType:
		n, _, err := msgp.ReadInt64Bytes(v)
		return n, err == nil && n >= 0
	case msgp.UintType:
		n, _, err := msgp.ReadUint64Bytes(v)
		return int64(n), err == nil && n < 1<<62
	}
	return 0, false
}

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
	// fixstr and str8, nearly every string, inline.
	if len(v) > 0 && v[0]&0xe0 == 0xa0 && len(v) == 1+int(v[0]&0x1f) {
		return v[1:], true
	}
	if len(v) > 1 && v[0] == 0xd9 && len(v) == 2+int(v[1]) {
		return v[2:], true
	}
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

// MapIter walks the entries of a map value in place. Next reads an entry whole; a walk that
// wants less reads the key alone (Key) and then the value (Value), or takes the bytes from
// the value on (Rest) to read them its own way and Advance past them.
type MapIter struct {
	b   []byte // the map value
	pos int    // where the next key starts; after Key, where its value starts
	key int    // where the last key read starts
	val int    // where its value starts
	n   int    // entries whose key is not read yet
	err error
}

// Iter starts a walk over a map value.
func (v Value) Iter() (MapIter, error) {
	// fixmap and map32 (which Fluent Bit writes for every map), inline.
	if len(v) > 0 && v[0]&0xf0 == 0x80 {
		return MapIter{b: v, pos: 1, n: int(v[0] & 0x0f)}, nil
	}
	if len(v) >= 5 && v[0] == 0xdf {
		return MapIter{b: v, pos: 5, n: int(binary.BigEndian.Uint32(v[1:]))}, nil
	}
	n, rest, err := msgp.ReadMapHeaderBytes(v)
	return MapIter{b: v, pos: len(v) - len(rest), n: int(n)}, err
}

// Len is the number of entries whose key is not read yet.
func (it *MapIter) Len() int { return it.n }

// Offset is how far into the map the walk is, its header included: after the last entry,
// the map's length.
func (it *MapIter) Offset() int { return it.pos }

// Key reads the next entry's key: its contents if it is a str or bin, else nil. It returns
// false at the end of the map or at a malformed key (see Err). The value must be read next
// (Value, or Rest and Advance).
func (it *MapIter) Key() ([]byte, bool) {
	// A fixstr, nearly every key: read in place, small enough to be inlined into the walks.
	if p := it.pos; it.n > 0 && p < len(it.b) && it.b[p]&0xe0 == 0xa0 {
		if end := p + 1 + int(it.b[p]&0x1f); end <= len(it.b) {
			it.key, it.val, it.pos = p, end, end
			it.n--
			return it.b[p+1 : end], true
		}
	}
	return it.anyKey()
}

func (it *MapIter) anyKey() ([]byte, bool) {
	if it.n == 0 || it.err != nil {
		return nil, false
	}
	it.key = it.pos
	kn, err := objectLen(it.b[it.pos:])
	if err != nil {
		it.err, it.n = err, 0 // no entry is read after a malformed one
		return nil, false
	}
	it.pos += kn
	it.val = it.pos
	it.n--
	return keyContents(it.b[it.key:it.pos]), true
}

// RawKey is the last key read, as encoded.
func (it *MapIter) RawKey() []byte { return it.b[it.key:it.val] }

// Value reads the value of the key just read, or returns false where it is malformed.
func (it *MapIter) Value() (Value, bool) {
	// A fixstr, the commonest value: measured in place, inlined.
	if p := it.pos; p < len(it.b) && it.b[p]&0xe0 == 0xa0 {
		if end := p + 1 + int(it.b[p]&0x1f); end <= len(it.b) {
			it.pos = end
			return Value(it.b[p:end]), true
		}
	}
	return it.anyValue()
}

func (it *MapIter) anyValue() (Value, bool) {
	if it.err != nil {
		return nil, false
	}
	start := it.pos
	if start+1 < len(it.b) && it.b[start] == 0xd9 { // str8, the common long string
		if end := start + 2 + int(it.b[start+1]); end <= len(it.b) {
			it.pos = end
			return Value(it.b[start:end]), true
		}
	}
	vn, err := objectLen(it.b[start:])
	if err != nil {
		it.err, it.n = err, 0
		return nil, false
	}
	it.pos += vn
	return Value(it.b[start:it.pos]), true
}

// Entry reads the next entry in one step where it can: the key, and the value when its first
// bytes give its length (strings, numbers, nil, bools), moving past it. When the value is a map,
// an array or another type, val is nil and the walk stays at the value, for the caller to read
// with Value, or Rest and Advance: a walk that descends into a map need not measure it first.
// It returns false at the end of the map or at a malformed key (see Err).
func (it *MapIter) Entry() (key []byte, val Value, ok bool) {
	b, p := it.b, it.pos
	if it.n > 0 && p < len(b) && b[p]&0xe0 == 0xa0 { // a fixstr key, nearly every key
		end := p + 1 + int(b[p]&0x1f)
		if end > len(b) {
			_, ok = it.anyKey() // reports the error
			return nil, nil, ok
		}
		it.key, it.val, it.n = p, end, it.n-1
		key, p = b[p+1:end], end
	} else if key, ok = it.Key(); !ok {
		return nil, nil, false
	} else {
		p = it.pos
	}
	if p < len(b) {
		n := 0
		switch c := b[p]; {
		case c <= 0x7f || c >= 0xe0: // fixint
			n = 1
		case c&0xe0 == 0xa0: // fixstr
			n = 1 + int(c&0x1f)
		case c == 0xd9 && p+1 < len(b): // str8
			n = 2 + int(b[p+1])
		case fixedLen[c] != 0:
			n = int(fixedLen[c])
		}
		if n > 0 && p+n <= len(b) {
			it.pos = p + n
			return key, Value(b[p : p+n]), true
		}
	}
	it.pos = p
	return key, nil, true
}

// Rest is the map's bytes from the current value on.
func (it *MapIter) Rest() []byte { return it.b[it.pos:] }

// Advance moves past n bytes of the current value, read from Rest by the caller.
func (it *MapIter) Advance(n int) { it.pos = min(it.pos+n, len(it.b)) }

// SkipRest moves past every entry not read yet, false where one is malformed.
func (it *MapIter) SkipRest() bool {
	if it.n == 0 {
		return it.err == nil
	}
	n, err := skipObjects(it.b[it.pos:], 2*it.n)
	if err != nil {
		it.err, it.n = err, 0
		return false
	}
	it.pos, it.n = it.pos+n, 0
	return true
}

// Next reads the next entry: the key's contents if it is a str or bin (else nil) and the
// raw value. It returns false at the end of the map or at a malformed entry (see Err).
func (it *MapIter) Next() (key []byte, val Value, ok bool) {
	if key, ok = it.Key(); !ok {
		return nil, nil, false
	}
	if val, ok = it.Value(); !ok {
		return nil, nil, false
	}
	return key, val, true
}

// Err is the error that ended the walk early, if any.
func (it *MapIter) Err() error { return it.err }

// ArrayIter walks the elements of an array value in place.
type ArrayIter struct {
	rest []byte
	n    int
	err  error
}

// Elems starts a walk over an array value.
func (v Value) Elems() (ArrayIter, error) {
	n, rest, err := msgp.ReadArrayHeaderBytes(v)
	return ArrayIter{rest: rest, n: int(n)}, err
}

// Len is the number of elements not read yet.
func (it *ArrayIter) Len() int { return it.n }

// Next reads the next element; false at the end or at a malformed one (see Err).
func (it *ArrayIter) Next() (Value, bool) {
	if it.n == 0 || it.err != nil {
		return nil, false
	}
	sz, err := objectLen(it.rest)
	if err != nil {
		it.err = err
		return nil, false
	}
	v := Value(it.rest[:sz])
	it.rest, it.n = it.rest[sz:], it.n-1
	return v, true
}

// Err is the error that ended the walk early, if any.
func (it *ArrayIter) Err() error { return it.err }

// keyContents returns the bytes of a raw str or bin object, nil for other types.
func keyContents(raw []byte) []byte {
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
