package core

import (
	"context"
	"fmt"

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
	// Sum is ChunkSum(Tag, Data) when the ledger took it, 0 when not taken.
	Sum uint64
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

// Env is what building a sink gets besides its configuration.
type Env struct {
	Log     *Logger
	Metrics *metrics.Instance // the instance's series, for what only the sink knows
}

// Kind is a destination as the sink key names it, built in two steps: Parse reads and
// checks its keys, Config.Build starts it.
type Kind struct {
	Name string
	// Parse reads the kind's keys through p into a configuration; every error is collected
	// by p, naming its key. It opens no file and no connection, so Check can run it on a
	// configuration file alone.
	Parse func(p *Parser) Config
}

// Config is a kind's keys, parsed and checked.
type Config interface {
	// Build starts the sink: files, connections, clients. An error that is a key's fault
	// names the key (KeyError). A Config builds one sink: Build may extend what Parse made.
	Build(env Env) (Sink, error)
}

// KeyError is an error with the key at fault, worded as the Parser words its own.
func KeyError(key, format string, args ...any) error {
	return &BadKeys{Keys: []string{key}, Err: fmt.Errorf("config key %q: %s", key, fmt.Sprintf(format, args...))}
}

// BadKeys is a configuration problem with the keys it names, so that a file's check can
// point at their lines.
type BadKeys struct {
	Keys []string
	Err  error
}

func (e *BadKeys) Error() string { return e.Err.Error() }
func (e *BadKeys) Unwrap() error { return e.Err }

// kindNames lists the kinds' names in table order.
func kindNames(kinds []Kind) []string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.Name
	}
	return names
}
