package record

import "github.com/tinylib/msgp/msgp"

// EngineKeys tells, key by key through one body, the keys that describe the record rather
// than the application's log: the kubernetes filter's map, tail's OffsetKey, and the first
// time, stream, _p and logtag (tail's parsers write them first; the same keys later are the application's
// own, merged by Merge_Log). What is left is what the application logged: Cloud Logging's
// jsonPayload and Papertrail's MSG.
type EngineKeys struct{ seen uint8 }

// Is reports whether k, the next key of the body, is one of the engine's.
func (e *EngineKeys) Is(k []byte) bool {
	var bit uint8
	switch string(k) {
	case "kubernetes", OffsetKey:
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
	first := e.seen&bit == 0
	e.seen |= bit
	return first
}

// JSON renders msgpack as compact JSON into B, which the caller keeps and reuses: msgp's
// JSON writer wants a writer, and one kept by the caller costs no allocation a record.
// Strings are repaired to valid UTF-8 by msgp's writer.
type JSON struct{ B []byte }

func (w *JSON) Write(p []byte) (int, error)       { w.B = append(w.B, p...); return len(p), nil }
func (w *JSON) WriteByte(c byte) error            { w.B = append(w.B, c); return nil }
func (w *JSON) WriteString(s string) (int, error) { w.B = append(w.B, s...); return len(s), nil }

// Value appends v. What msgp cannot render (a value nested deeper than its recursion limit)
// ends the JSON there, with the error.
func (w *JSON) Value(v Value) error {
	_, err := msgp.UnmarshalAsJSON(w, v)
	return err
}

// Body appends what an application logged as JSON and the kubernetes filter merged into the
// body: the body without the engine's keys (EngineKeys) or keys JSON cannot name, as
// Cloud Logging's jsonPayload has it. It stops adding keys once B has grown past limit bytes
// (0: no limit), for a caller that cuts it there. A value msgp cannot render ends its JSON
// there and the rest follows; the error is the last such.
func (w *JSON) Body(body Value, limit int) (err error) {
	it, ierr := body.Iter()
	if ierr != nil {
		return w.Value(body)
	}
	start := len(w.B)
	w.B = append(w.B, '{')
	first := true
	var engine EngineKeys
	for limit <= 0 || len(w.B)-start <= limit {
		key, ok := it.Key()
		if !ok {
			break
		}
		raw := it.RawKey()
		val, ok := it.Value()
		if !ok {
			break
		}
		if key == nil || engine.Is(key) {
			continue
		}
		if !first {
			w.B = append(w.B, ',')
		}
		first = false
		if raw[0] >= 0xc4 && raw[0] <= 0xc6 { // a bin key: written as a string
			raw = msgp.AppendStringFromBytes(nil, key)
		}
		_ = w.Value(raw)
		w.B = append(w.B, ':')
		if verr := w.Value(val); verr != nil {
			err = verr
		}
	}
	if ierr := it.Err(); ierr != nil {
		err = ierr
	}
	w.B = append(w.B, '}')
	return err
}
