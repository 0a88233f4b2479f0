package core

import "context"

// nullSink discards every record once decoded, as Fluent Bit's own null output does. It
// exists to measure the plugin's own cost (decoding and the cgo boundary) with no destination.
type nullSink struct{}

// Null is the null destination: it has no keys.
var Null = Kind{Name: "null", Parse: func(*Parser) Config { return nullSink{} }}

func (nullSink) Build(Env) (Sink, error) { return nullSink{}, nil }

func (nullSink) Deliver(context.Context, *Batch) Result { return Result{Status: Delivered} }
func (nullSink) Close() error                           { return nil }
