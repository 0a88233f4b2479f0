package stackdriver

import (
	"unicode/utf8"

	"cloud.google.com/go/logging/apiv2/loggingpb"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// A request's entries are encoded here, each in one pass with protowire's helpers, and the
// request goes to gRPC as those bytes beside its own few fields, instead of protobuf walking
// every entry's twenty-odd fields twice (sizing, then encoding). In the engine that walk was
// a third of a kube flush's CPU (docs/benchmarks.md). An entry with a field this file does
// not write (an HTTP request, a source location, an operation, a split, a JSON payload
// still as a Struct) is encoded by protobuf itself, as before; TestWireEntriesAreProtobufs
// holds both to the same message.

// LogEntry's and WriteLogEntriesRequest's field numbers (google/logging/v2).
const (
	entryInsertID     protowire.Number = 4
	entryText         protowire.Number = 3
	entryTimestamp    protowire.Number = 9
	entrySeverity     protowire.Number = 10
	entryLabels       protowire.Number = 11
	entryLogName      protowire.Number = 12
	entryTrace        protowire.Number = 22
	entrySpanID       protowire.Number = 27
	entryTraceSampled protowire.Number = 30
	requestEntries    protowire.Number = 4
)

// wire is a request ready to send: the request's own fields, what the client is handed, and
// its entries as bytes. It is also the call's codec (encoding.CodecV2), which gives gRPC the
// two blocks as they are, where gRPC's own would take a buffer of the message's size from its
// pool, clear it and copy the message in: 5 % of a kube flush's CPU in the engine.
type wire struct {
	req     *loggingpb.WriteLogEntriesRequest // without its entries
	head    []byte                            // req encoded
	entries []byte
}

// wireRequest encodes req's entries, appended to buf (the wire's entries, for reuse); req
// itself is left as it is, for its entries' indexes in a partial error.
func wireRequest(req *loggingpb.WriteLogEntriesRequest, buf []byte) (*wire, error) {
	w := &wire{entries: buf[:0], req: &loggingpb.WriteLogEntriesRequest{
		LogName: req.LogName, Resource: req.Resource, Labels: req.Labels, PartialSuccess: req.PartialSuccess, DryRun: req.DryRun,
	}}
	for _, e := range req.Entries {
		var err error
		if w.entries, err = appendEntry(w.entries, e); err != nil {
			return w, err
		}
	}
	// A message's fields may come in any order: the request's own, then the entries.
	var err error
	w.head, err = proto.Marshal(w.req)
	return w, err
}

// protoCodec is gRPC's own, for the answer and for any message but w.req.
var protoCodec = encoding.GetCodecV2(grpcproto.Name)

// Marshal gives gRPC w's request as the blocks it is in. gRPC only reads them, and may until
// the call's bytes have left (the caller reuses them only after an answer that shows they
// arrived).
func (w *wire) Marshal(v any) (mem.BufferSlice, error) {
	if v != any(w.req) {
		return protoCodec.Marshal(v)
	}
	return mem.BufferSlice{mem.SliceBuffer(w.head), mem.SliceBuffer(w.entries)}, nil
}

func (w *wire) Unmarshal(data mem.BufferSlice, v any) error { return protoCodec.Unmarshal(data, v) }

// Name is empty so that gRPC names no content subtype: the request goes as
// application/grpc, as with the client's own codec, not as application/grpc+proto.
func (w *wire) Name() string { return "" }

// appendEntry appends e as a WriteLogEntriesRequest.entries field.
func appendEntry(dst []byte, e *loggingpb.LogEntry) ([]byte, error) {
	if !plainEntry(e) {
		return appendMarshalled(dst, e)
	}
	if out, ok := appendPlain(dst, e); ok {
		return out, nil
	}
	// A bug in appendPlain, never the input's (TestWireEntriesAreProtobufs checks every
	// entry's length): the entry goes as protobuf encodes it rather than with a wrong length.
	return appendMarshalled(dst, e)
}

// appendPlain appends a plain entry (plainEntry) as a WriteLogEntriesRequest.entries field,
// written here; false if what it wrote is not the length it measured first.
func appendPlain(dst []byte, e *loggingpb.LogEntry) ([]byte, bool) {
	field := len(dst)
	dst = protowire.AppendTag(dst, requestEntries, protowire.BytesType)
	// The length goes before the entry: measured first, in the same order as written.
	unknown := e.ProtoReflect().GetUnknown()
	n := entrySize(e, len(unknown))
	dst = protowire.AppendVarint(dst, uint64(n))
	start := len(dst)
	if p, ok := e.Payload.(*loggingpb.LogEntry_TextPayload); ok {
		dst = appendField(dst, entryText, p.TextPayload) // a oneof's member is written even when empty
	}
	dst = appendString(dst, entryInsertID, e.InsertId)
	if t := e.Timestamp; t != nil {
		dst = protowire.AppendTag(dst, entryTimestamp, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(timestampSize(t.Seconds, t.Nanos)))
		if t.Seconds != 0 {
			dst = protowire.AppendTag(dst, 1, protowire.VarintType)
			dst = protowire.AppendVarint(dst, uint64(t.Seconds))
		}
		if t.Nanos != 0 {
			dst = protowire.AppendTag(dst, 2, protowire.VarintType)
			dst = protowire.AppendVarint(dst, uint64(t.Nanos))
		}
	}
	if e.Severity != 0 {
		dst = protowire.AppendTag(dst, entrySeverity, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(e.Severity))
	}
	for k, v := range e.Labels { // nearly always none: the pod's go once per request
		dst = protowire.AppendTag(dst, entryLabels, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(labelSize(k, v)))
		dst = appendField(dst, 1, k)
		dst = appendField(dst, 2, v)
	}
	dst = appendString(dst, entryLogName, e.LogName)
	dst = appendString(dst, entryTrace, e.Trace)
	dst = appendString(dst, entrySpanID, e.SpanId)
	if e.TraceSampled {
		dst = protowire.AppendTag(dst, entryTraceSampled, protowire.VarintType)
		dst = protowire.AppendVarint(dst, 1)
	}
	dst = append(dst, unknown...) // a JSON payload encoded already
	if len(dst)-start != n {
		return dst[:field], false
	}
	return dst, true
}

// appendMarshalled appends e as a WriteLogEntriesRequest.entries field, encoded by protobuf.
func appendMarshalled(dst []byte, e *loggingpb.LogEntry) ([]byte, error) {
	b, err := proto.MarshalOptions{}.MarshalAppend(nil, e)
	if err != nil {
		return dst, err
	}
	dst = protowire.AppendTag(dst, requestEntries, protowire.BytesType)
	return protowire.AppendBytes(dst, b), nil
}

// plainEntry tells whether e has only the fields appendEntry writes, all valid UTF-8 (which
// protobuf checks and refuses to send otherwise). The text payload is not checked again: the
// mapper makes every text valid (chunkString, validString; the parts split and cut from it
// are cut on rune boundaries), and it is the one long string of an entry.
func plainEntry(e *loggingpb.LogEntry) bool {
	if e.Resource != nil || e.ReceiveTimestamp != nil || e.HttpRequest != nil || e.Operation != nil || e.SourceLocation != nil || e.Split != nil {
		return false
	}
	if _, ok := e.Payload.(*loggingpb.LogEntry_TextPayload); e.Payload != nil && !ok {
		return false
	}
	if !utf8.ValidString(e.InsertId) || !utf8.ValidString(e.LogName) ||
		!utf8.ValidString(e.Trace) || !utf8.ValidString(e.SpanId) {
		return false
	}
	for k, v := range e.Labels {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return false
		}
	}
	return true
}

func entrySize(e *loggingpb.LogEntry, unknown int) int {
	n := 0
	if p, ok := e.Payload.(*loggingpb.LogEntry_TextPayload); ok {
		n += protowire.SizeTag(entryText) + protowire.SizeBytes(len(p.TextPayload))
	}
	n += stringSize(entryInsertID, e.InsertId) +
		stringSize(entryLogName, e.LogName) + stringSize(entryTrace, e.Trace) + stringSize(entrySpanID, e.SpanId)
	if t := e.Timestamp; t != nil {
		n += protowire.SizeTag(entryTimestamp) + protowire.SizeBytes(timestampSize(t.Seconds, t.Nanos))
	}
	if e.Severity != 0 {
		n += protowire.SizeTag(entrySeverity) + protowire.SizeVarint(uint64(e.Severity))
	}
	for k, v := range e.Labels {
		n += protowire.SizeTag(entryLabels) + protowire.SizeBytes(labelSize(k, v))
	}
	if e.TraceSampled {
		n += protowire.SizeTag(entryTraceSampled) + 1
	}
	return n + unknown
}

func timestampSize(sec int64, nanos int32) int {
	n := 0
	if sec != 0 {
		n += 1 + protowire.SizeVarint(uint64(sec))
	}
	if nanos != 0 {
		n += 1 + protowire.SizeVarint(uint64(nanos))
	}
	return n
}

// labelSize is a map entry's: key 1, value 2, both written even when empty (as protobuf
// writes map entries).
func labelSize(k, v string) int {
	return 1 + protowire.SizeBytes(len(k)) + 1 + protowire.SizeBytes(len(v))
}

// appendString writes a string field, leaving an empty one out as proto3 does.
func appendString(dst []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return dst
	}
	return appendField(dst, num, s)
}

// appendField writes a string field whatever it holds: a map entry's key and value.
func appendField(dst []byte, num protowire.Number, s string) []byte {
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	return protowire.AppendString(dst, s)
}

func stringSize(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
}
