package core

import (
	"bytes"
	"slices"
	"strings"

	"github.com/tinylib/msgp/msgp"

	"github.com/trailstack/trailstack/exceptions"
	"github.com/trailstack/trailstack/record"
)

// Exception traces are joined within the flush that carries them, never held for the next:
// a chunk is confirmed or retried whole, so a crash can cost no line of a trace, and a retry
// joins the same lines again. A trace that a chunk boundary cuts (chunks are cut at the
// Flush tick) goes as its parts. Limits as GKE's agent had them.
const (
	traceMaxLines = 1000
	traceMaxBytes = 500_000
)

// joiner joins each stack trace of a batch into one record, per container and stream.
type joiner struct {
	det exceptions.Detector
}

func newJoiner(langs exceptions.Language) *joiner {
	if langs == 0 {
		return nil
	}
	return &joiner{det: exceptions.Detector{Languages: langs, MaxLines: traceMaxLines, MaxBytes: traceMaxBytes}}
}

// joinScratch is one flush's reusable state.
type joinScratch struct {
	streams []stream
	traces  []exceptions.Trace
	take    []span
	bodies  []byte // the joined records' bodies, which they point into until the flush ends
	text    []byte
	out     []record.Record
}

// stream is one container's stdout or stderr in the batch.
type stream struct {
	name, pod, container []byte
	idx                  []int    // its records, in order
	lines                [][]byte // their log lines; nil for a record without one
}

// join returns recs with each trace's lines joined into its first record, and how many
// traces it joined. The result points into s and recs' chunk.
func (j *joiner) join(recs []record.Record, tag string, s *joinScratch) ([]record.Record, int) {
	for i := range s.streams {
		st := &s.streams[i]
		st.idx, st.lines = st.idx[:0], st.lines[:0]
	}
	s.streams = s.streams[:0]
	// A tag of one container's log file makes every record of the batch that container's; a
	// node-level tag may mix containers, told apart by their metadata.
	byMeta := !strings.HasSuffix(tag, ".log")
	for i := range recs {
		// As the decoder found them: the first of each counts, as record.EngineKeys has it.
		lv, sv := recs[i].LogAndStream()
		line, ok := lv.Bytes()
		if !ok {
			line = nil
		}
		name, _ := sv.Bytes()
		var pod, container []byte
		if byMeta {
			pod, _ = value(recs[i].Lookup("kubernetes", "pod_name"))
			container, _ = value(recs[i].Lookup("kubernetes", "container_name"))
		}
		st := s.stream(name, pod, container)
		st.idx = append(st.idx, i)
		st.lines = append(st.lines, line)
	}
	s.take = slices.Grow(s.take[:0], len(recs))[:len(recs)] // what becomes of each record
	clear(s.take)
	s.bodies = s.bodies[:0]
	joined := 0
	for k := range s.streams {
		st := &s.streams[k]
		s.traces = j.det.Traces(st.lines, s.traces[:0])
		for _, t := range s.traces {
			s.text = s.text[:0]
			for n := t.Start; n < t.End; n++ {
				if n > t.Start {
					s.text = append(s.text, '\n')
					s.take[st.idx[n]].drop = true
				}
				s.text = append(s.text, bytes.TrimRight(st.lines[n], "\r\n")...)
			}
			first := &s.take[st.idx[t.Start]]
			first.from = len(s.bodies)
			s.bodies = withLog(s.bodies, recs[st.idx[t.Start]].Body, s.text)
			first.to = len(s.bodies)
			joined++
		}
	}
	if joined == 0 {
		return recs, 0
	}
	s.out = s.out[:0]
	for i, r := range recs {
		switch t := s.take[i]; {
		case t.drop:
			continue
		case t.to > t.from:
			r.Body, r.Trace = s.bodies[t.from:t.to], true
		}
		s.out = append(s.out, r)
	}
	return s.out, joined
}

// span is what becomes of a record: dropped (a trace's later line), or given the joined body
// at bodies[from:to] (a trace's first line).
type span struct {
	from, to int
	drop     bool
}

func (s *joinScratch) stream(name, pod, container []byte) *stream {
	for i := range s.streams {
		st := &s.streams[i]
		if bytes.Equal(st.name, name) && bytes.Equal(st.pod, pod) && bytes.Equal(st.container, container) {
			return st
		}
	}
	if len(s.streams) < cap(s.streams) {
		s.streams = s.streams[:len(s.streams)+1]
		st := &s.streams[len(s.streams)-1]
		st.name, st.pod, st.container = name, pod, container
		return st
	}
	s.streams = append(s.streams, stream{name: name, pod: pod, container: container})
	return &s.streams[len(s.streams)-1]
}

// value is a str or bin value's bytes.
func value(v record.Value, found bool) ([]byte, bool) {
	if !found {
		return nil, false
	}
	return v.Bytes()
}

// withLog appends body with its log value replaced by text.
func withLog(dst []byte, body []byte, text []byte) []byte {
	it, err := record.Value(body).Iter()
	if err != nil {
		return append(dst, body...)
	}
	dst = msgp.AppendMapHeader(dst, uint32(it.Len()))
	replaced := false
	for {
		k, ok := it.Key()
		if !ok {
			break
		}
		raw := it.RawKey()
		v, ok := it.Value()
		if !ok {
			break
		}
		dst = append(dst, raw...)
		if !replaced && string(k) == "log" {
			dst = msgp.AppendStringFromBytes(dst, text)
			replaced = true
			continue
		}
		dst = append(dst, v...)
	}
	return dst
}
