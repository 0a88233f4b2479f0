package record

import "bytes"

// The decoder's fast path reads a well-formed log event in one pass: the event's header, then
// the body's top level entry by entry, taking the first log and stream values as it goes
// (every sink and the stack-trace joiner want them). A nested map that is byte for byte the
// one the last event had in its body (the kubernetes filter's map, the same for every line of
// a pod) is measured by comparing bytes instead of walking it: msgpack delimits itself, so
// equal bytes are the same whole object. Anything else, a group marker, another shape, a
// malformed object, goes the slow way, which frames the event first and says what is wrong.

// repeatMin is the smallest nested map worth remembering: below it, walking costs no more.
const repeatMin = 64

// fastEvent decodes the event at the start of b into r and returns its size, or false for
// the slow path.
func (d *Decoder) fastEvent(b []byte, r *Record) (int, bool) {
	if len(b) < 2 || b[0] != 0x92 {
		return 0, false
	}
	p := b[1:]
	r.Meta = nil
	v2 := p[0] == 0x92 // [[time, metadata], body]
	if v2 {
		p = p[1:]
	}
	// An EventTime, as Fluent Bit writes every time, or an integer that cannot overflow; the
	// other forms go the slow way, whose errors for them may allocate.
	if len(p) == 0 || !fastTime(p[0]) {
		return 0, false
	}
	p, err := readTime(p, r)
	if err != nil || r.Sec < 0 {
		return 0, false // group markers too
	}
	if v2 {
		if len(p) == 0 || !isMap(p[0]) {
			return 0, false
		}
		n, err := objectLen(p)
		if err != nil {
			return 0, false
		}
		r.Meta, p = p[:n], p[n:]
	}
	if len(p) == 0 || !isMap(p[0]) {
		return 0, false
	}
	n, ok := d.body(p, r)
	if !ok {
		return 0, false
	}
	r.Body = p[:n]
	r.indexed = r.Body
	r.Trace = false
	return len(b) - len(p) + n, true
}

// body measures the body map at the start of b, noting its first log and stream values.
func (d *Decoder) body(b []byte, r *Record) (int, bool) {
	it, err := Value(b).Iter()
	if err != nil {
		return 0, false
	}
	r.log, r.stream, r.offset = nil, nil, nil
	for it.Len() > 0 {
		k, v, ok := it.Entry()
		if !ok {
			return 0, false
		}
		if v == nil {
			rest := it.Rest()
			if len(rest) == 0 {
				return 0, false
			}
			if !isMap(rest[0]) {
				if v, ok = it.Value(); !ok {
					return 0, false
				}
			} else {
				var n int
				if len(d.repeat) > 0 && bytes.HasPrefix(rest, d.repeat) {
					n = len(d.repeat)
				} else if n, err = objectLen(rest); err != nil {
					return 0, false
				}
				if n >= repeatMin {
					d.repeat = rest[:n]
				}
				v = Value(rest[:n])
				it.Advance(n)
			}
		}
		switch {
		case r.log == nil && string(k) == "log":
			r.log = v
		case r.stream == nil && string(k) == "stream":
			r.stream = v
		case r.offset == nil && len(k) == len(OffsetKey) && string(k) == OffsetKey:
			r.offset = v
		}
	}
	return it.Offset(), true
}

func fastTime(c byte) bool {
	switch c {
	case 0xd7, 0xc7, 0xcc, 0xcd, 0xce, 0xd0, 0xd1, 0xd2: // EventTime; (u)int8-32
		return true
	}
	return c <= 0x7f
}

// isMap tells whether c starts a map: fixmap, map16 or map32.
func isMap(c byte) bool { return c&0xf0 == 0x80 || c == 0xde || c == 0xdf }

// LogAndStream returns the body's first log and stream values (nil where absent): as the
// decoder found them, or for a body set since, by reading it.
func (r *Record) LogAndStream() (log, stream Value) {
	if len(r.Body) > 0 && len(r.indexed) == len(r.Body) && &r.indexed[0] == &r.Body[0] {
		return r.log, r.stream
	}
	it, err := Value(r.Body).Iter()
	if err != nil {
		return nil, nil
	}
	for log == nil || stream == nil {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		switch {
		case log == nil && string(k) == "log":
			log = v
		case stream == nil && string(k) == "stream":
			stream = v
		}
	}
	return log, stream
}
