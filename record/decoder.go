package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/tinylib/msgp/msgp"
)

// Group markers open and close a group of records from OpenTelemetry inputs: their header
// timestamp is one of these, and they carry no log line.
const (
	groupStart = -1
	groupEnd   = -2
)

// CorruptError says where a chunk stopped being valid msgpack. What came before it was
// decoded; nothing after it can be trusted.
type CorruptError struct {
	Offset  int // byte offset of the event that could not be read
	Size    int // size of the chunk
	Records int // records decoded before it
	Err     error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("corrupt chunk: event at byte %d of %d (after %d records): %v",
		e.Offset, e.Size, e.Records, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// Decoder walks the events of one chunk without copying it.
//
//	d := record.NewDecoder(chunk)
//	for d.Next() { use(d.Record()) }
//	if err := d.Err(); err != nil { ... }
//
// An event that is valid msgpack but not a log event (wrong shape, bad timestamp, a body that
// is not a map) is skipped and counted, so one bad event costs only itself; see Skipped.
type Decoder struct {
	chunk   []byte
	rest    []byte
	rec     Record
	records int
	skipped int
	skipAt  int   // offset of the first skipped event
	skipWhy error // why it was skipped
	err     error
	repeat  []byte // the last large map of a body, for the next body to be compared with
	slow    bool   // the slow path alone: the tests' reference
}

// NewDecoder returns a decoder over chunk.
func NewDecoder(chunk []byte) *Decoder {
	d := &Decoder{}
	d.Reset(chunk)
	return d
}

// Reset starts the decoder over another chunk, keeping nothing of the last one.
func (d *Decoder) Reset(chunk []byte) {
	*d = Decoder{chunk: chunk, rest: chunk}
}

// Next decodes the next log event. It returns false at the end of the chunk or at corruption;
// Err tells which.
func (d *Decoder) Next() bool {
	for len(d.rest) > 0 && d.err == nil {
		if n, ok := d.fastEvent(d.rest, &d.rec); ok && !d.slow {
			d.rest = d.rest[n:]
			d.records++
			return true
		}
		n, err := objectLen(d.rest)
		if err != nil {
			d.err = &CorruptError{Offset: len(d.chunk) - len(d.rest), Size: len(d.chunk), Records: d.records, Err: err}
			return false
		}
		event := d.rest[:n]
		d.rest = d.rest[n:]
		d.rec = Record{}
		isGroup, err := parseEvent(event, &d.rec)
		switch {
		case err != nil:
			d.skipped++
			if d.skipWhy == nil {
				d.skipAt, d.skipWhy = len(d.chunk)-len(d.rest)-len(event), err
			}
		case isGroup:
		default:
			d.records++
			return true
		}
	}
	return false
}

// Record is the event decoded by the last call to Next. It is overwritten by the next call.
func (d *Decoder) Record() *Record { return &d.rec }

// Err is nil at a clean end of the chunk, else a *CorruptError.
func (d *Decoder) Err() error { return d.err }

// Skipped counts the events that were valid msgpack but not log events, with the first reason.
func (d *Decoder) Skipped() (int, error) {
	if d.skipWhy == nil {
		return 0, nil
	}
	return d.skipped, fmt.Errorf("event at byte %d: %w", d.skipAt, d.skipWhy)
}

var (
	errShape    = errors.New("event is not [[time, metadata], body] or [time, body]")
	errMeta     = errors.New("event metadata is not a map")
	errBody     = errors.New("event body is not a map")
	errTimeType = errors.New("event timestamp is not an EventTime, integer or float")
	errTimeVal  = errors.New("event timestamp is out of range")
)

// parseEvent reads one event that objectLen has already shown to be a single whole object.
func parseEvent(b []byte, r *Record) (isGroup bool, err error) {
	// Type checks first: msgp's errors for a wrong type are allocated, and a chunk of
	// garbage must not cost an allocation per byte.
	if msgp.NextType(b) != msgp.ArrayType {
		return false, errShape
	}
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil || n != 2 {
		return false, errShape
	}
	r.Meta = nil
	if msgp.NextType(b) == msgp.ArrayType {
		// v2: [[time, metadata], body]
		hn, hb, err := msgp.ReadArrayHeaderBytes(b)
		if err != nil || hn != 2 {
			return false, errShape
		}
		if hb, err = readTime(hb, r); err != nil {
			return false, err
		}
		if r.Sec == groupStart || r.Sec == groupEnd {
			return true, nil
		}
		if r.Sec < 0 {
			return false, errTimeVal
		}
		if msgp.NextType(hb) != msgp.MapType {
			return false, errMeta
		}
		n, err := objectLen(hb)
		if err != nil {
			return false, errShape
		}
		r.Meta, b = hb[:n], hb[n:]
	} else {
		// legacy: [time, body]
		if b, err = readTime(b, r); err != nil {
			return false, err
		}
		if r.Sec < 0 {
			return false, errTimeVal
		}
	}
	if msgp.NextType(b) != msgp.MapType {
		return false, errBody
	}
	r.Body = b
	return false, nil
}

func readTime(b []byte, r *Record) ([]byte, error) {
	switch msgp.NextType(b) {
	case msgp.ExtensionType:
		// EventTime: ext type 0 holding seconds and nanoseconds, big endian uint32 each,
		// written as fixext8 (0xd7) or ext8 (0xc7) with length 8.
		var payload []byte
		switch {
		case len(b) >= 10 && b[0] == 0xd7 && b[1] == 0:
			payload, b = b[2:10], b[10:]
		case len(b) >= 11 && b[0] == 0xc7 && b[1] == 8 && b[2] == 0:
			payload, b = b[3:11], b[11:]
		default:
			return b, errTimeType
		}
		sec, nsec := binary.BigEndian.Uint32(payload), binary.BigEndian.Uint32(payload[4:])
		if nsec >= 1e9 {
			return b, errTimeVal
		}
		r.Sec, r.Nsec = int64(sec), int64(nsec)
		return b, nil
	case msgp.IntType, msgp.UintType:
		sec, rest, err := msgp.ReadInt64Bytes(b)
		if err != nil {
			return b, errTimeVal
		}
		r.Sec, r.Nsec = sec, 0
		return rest, nil
	case msgp.Float64Type, msgp.Float32Type:
		f, rest, err := msgp.ReadFloat64Bytes(b)
		if err != nil || math.IsNaN(f) || f < 0 || f >= 1<<62 {
			return b, errTimeVal
		}
		sec, frac := math.Modf(f)
		r.Sec, r.Nsec = int64(sec), int64(math.Round(frac*1e9))
		if r.Nsec >= 1e9 {
			r.Sec, r.Nsec = r.Sec+1, 0
		}
		return rest, nil
	}
	return b, errTimeType
}

// Consumed is how many bytes of the chunk the events decoded so far (and skipped) take: where
// a reader of a chunk still being written takes up again.
func (d *Decoder) Consumed() int { return len(d.chunk) - len(d.rest) }
