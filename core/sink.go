package core

import (
	"context"
	"sort"
	"sync"

	"github.com/trailstack/trailstack/metrics"
	"github.com/trailstack/trailstack/record"
)

// Status is a delivery's answer. Its zero value is Retry: an answer that was never set keeps
// the chunk in Fluent Bit's buffer rather than dropping it.
type Status int

const (
	// Retry means nothing is confirmed: Fluent Bit keeps the chunk and flushes it again.
	Retry Status = iota
	// Delivered means every record of the batch is confirmed at the destination.
	Delivered
	// Failed means the chunk can never be delivered and Fluent Bit drops it.
	Failed
)

func (s Status) String() string {
	switch s {
	case Delivered:
		return "delivered"
	case Failed:
		return "failed"
	}
	return "retry"
}

// Batch is the records of one flush, in chunk order. Records point into Fluent Bit's chunk
// and are valid only until Deliver returns: a sink copies what it keeps.
type Batch struct {
	Tag     string
	Records []record.Record
	// Data is the chunk the records came from: the same bytes on every retry, also after a
	// restart, so a sink can name the chunk by them in one pass (Cloud Logging's insertIds).
	Data []byte
}

// Result is a sink's answer for one batch, with the reason when it is not Delivered.
type Result struct {
	Status Status
	Err    error
	// Refused counts the records of a Delivered batch that the destination refused one by
	// one and that can never be delivered: dropped, each with its reason logged, while
	// every other record was delivered.
	Refused int
	// Truncated counts the records of a Delivered batch that were cut to the destination's
	// size limit.
	Truncated int
}

// Sink is one destination. Deliver is called concurrently when the instance has several
// workers; it returns Delivered only once every record is confirmed at the destination.
// ctx is cancelled when the instance is shutting down and cannot wait any longer.
type Sink interface {
	Deliver(ctx context.Context, b *Batch) Result
	Close() error
}

// Env is what a sink factory gets besides its keys.
type Env struct {
	Log     *Logger
	Metrics *metrics.Instance // the instance's series, for what only the sink knows
	// DryRun asks the factory to read and check its keys and stop there: no files, no
	// network, no sink (it returns nil). Check uses it to validate configuration files.
	DryRun bool
}

// Factory reads a sink's keys through p (its errors are collected by p) and builds the sink.
type Factory func(p *Parser, env Env) (Sink, error)

// sinksMu guards sinks: registration happens in init functions, lookups at Init.
var (
	sinksMu sync.Mutex
	sinks   = map[string]Factory{}
)

// RegisterSink makes a destination available under name to the sink key.
func RegisterSink(name string, f Factory) {
	sinksMu.Lock()
	defer sinksMu.Unlock()
	if _, dup := sinks[name]; dup {
		panic("sink registered twice: " + name)
	}
	sinks[name] = f
}

// SinkNames lists the registered destinations, sorted.
func SinkNames() []string {
	sinksMu.Lock()
	defer sinksMu.Unlock()
	names := make([]string, 0, len(sinks))
	for n := range sinks {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func lookupSink(name string) Factory {
	sinksMu.Lock()
	defer sinksMu.Unlock()
	return sinks[name]
}
