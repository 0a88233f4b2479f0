// Package metrics is the plugin's Prometheus endpoint: the series only the plugin knows
// (what each destination confirmed, refused, how long it took), labelled by instance and
// sink, on one HTTP server for the whole Fluent Bit process.
//
// Fluent Bit runs every [OUTPUT] of a plugin in one process and, on a hot reload, starts
// new instances in the same process: so the server and the registry are the process's, an
// instance only adds its series and removes them when it exits.
package metrics

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Version is the plugin's version, set at link time (-X); "dev" otherwise.
var Version = "dev"

// FluentBitABI is the Go proxy interface the plugin implements (fluent-bit-go's output
// plugin, FLB_PROXY_OUTPUT_PLUGIN, proxy API version 2).
const FluentBitABI = "proxy-output-v2"

var (
	labels = []string{"instance", "sink"}

	delivered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trailstack_records_delivered_total", Help: "Records confirmed at the destination.",
	}, labels)
	dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trailstack_records_dropped_total", Help: "Records that can never be delivered and were dropped, by reason: rejected (refused by the destination), not_a_record (events that are not log records), corrupt_chunk (the unreadable rest of a corrupt chunk, counted as one, since how many records it held cannot be known).",
	}, append(labels, "reason"))
	tracesJoined = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trailstack_traces_joined_total", Help: "Stack traces delivered as one record each, joined from their lines (the exceptions key).",
	}, labels)
	truncated = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trailstack_records_truncated_total", Help: "Records delivered cut to the destination's size limit.",
	}, labels)
	flushes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trailstack_flushes_total", Help: "Flushes by the answer given to Fluent Bit (ok, retry, error).",
	}, append(labels, "result"))
	flushDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "trailstack_flush_duration_seconds", Help: "Time from a flush's call to its answer.",
		Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, labels)
	flushRecords = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "trailstack_flush_records", Help: "Records in a flushed chunk.",
		Buckets: []float64{1, 10, 100, 500, 1000, 2500, 5000, 10000},
	}, labels)
	// Buckets up to the 60 s that the lag alert reads, and beyond for outages.
	deliveryLag = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "trailstack_delivery_lag_seconds", Help: "Age of a confirmed chunk's oldest record (by the engine's record time) when its flush was confirmed.",
		Buckets: []float64{.25, .5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600},
	}, labels)
	ready = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "trailstack_output_ready", Help: "1 once the output has started; 0 while it could not (a destination or credential from the environment that does not parse, a metadata server not reachable yet): its records wait in Fluent Bit's buffer.",
	}, labels)
	lastSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "trailstack_last_success_timestamp_seconds", Help: "When a flush last answered OK (Unix time); 0 until one has.",
	}, labels)

	skipped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trailstack_records_skipped_total", Help: "Records not sent because the output's ledger says the destination already confirmed their chunk: a chunk the engine replayed after a restart while another output still held it.",
	}, labels)
	lost = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trailstack_records_lost_total", Help: "Lines of container logs that the engine read or let go and that will never reach this output through it, by cause: buffer_cap (a stored chunk left the buffer unsent here: storage.total_limit_size), not_buffered (read but never stored: a full disk), rotated_unread (a rotated file let go before its end), too_long (over tail's buffer_max_size). Found by comparing the log files with what the output confirmed (account_logs).",
	}, []string{"instance", "sink", "cause"})
	repaired = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trailstack_records_repaired_total", Help: "Lost lines read back from the container logs (repair_dir), made into records again by the engine and confirmed by this output's destination.",
	}, labels)
	ledgerEntries = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "trailstack_ledger_entries", Help: "Chunks the output's ledger holds as confirmed by the destination (ledger_dir).",
	}, labels)
	ledgerBytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "trailstack_ledger_bytes", Help: "Size of the output's ledger file on the node.",
	}, labels)

	syslogConnects = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trailstack_syslog_connects_total", Help: "Connections opened to the syslog destination, by result (ok, refused, timeout, tls, error).",
	}, append(labels, "result"))
	syslogAckWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "trailstack_syslog_ack_wait_seconds", Help: "Time from a flush's last write to the peer's acknowledgement of every byte.",
		Buckets: []float64{.0001, .001, .005, .01, .05, .1, .5, 1, 5, 10, 30},
	}, labels)
	syslogBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trailstack_syslog_bytes_written_total", Help: "Bytes written to the syslog destination (acknowledged or not).",
	}, labels)

	sdRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trailstack_stackdriver_requests_total", Help: "WriteLogEntries requests by gRPC code.",
	}, append(labels, "code"))
	sdDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "trailstack_stackdriver_request_duration_seconds", Help: "Time of a WriteLogEntries request.",
		Buckets: []float64{.005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, labels)
	sdRejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trailstack_stackdriver_entries_rejected_total", Help: "Entries Cloud Logging refused one by one (dropped; the rest written).",
	}, labels)

	kubeUp = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "trailstack_kube_watch_up", Help: "1 while the watch of the node's pods is synced and the API server answered within 90 s; 0 while new pods go without metadata.",
	})
	kubePods = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "trailstack_kube_pods", Help: "Pods of the node in the metadata cache (those deleted in the last 5 minutes included).",
	})
	kubeLookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trailstack_kube_lookups_total", Help: "The kubernetes filter's pod lookups answered from the cache, by result (hit, miss).",
	}, []string{"result"})
	kubeRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trailstack_kube_api_requests_total", Help: "Requests to the Kubernetes API server, by verb (list, watch) and result (ok, error).",
	}, []string{"verb", "result"})

	buildInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "trailstack_build_info", Help: "Always 1: the plugin's version, its Go version and the Fluent Bit interface it implements.",
	}, []string{"version", "go_version", "fluent_bit_abi"})

	// perInstance are the vectors whose series an exiting instance takes with it.
	perInstance = []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{delivered, dropped, truncated, tracesJoined, ready, skipped, lost, repaired, ledgerEntries, ledgerBytes, flushes, flushDuration, flushRecords, deliveryLag, lastSuccess, syslogConnects, syslogAckWait, syslogBytes, sdRequests, sdDuration, sdRejected}

	registry = prometheus.NewRegistry()
)

func init() {
	registry.MustRegister(delivered, dropped, truncated, tracesJoined, ready, skipped, lost, repaired, ledgerEntries, ledgerBytes, flushes, flushDuration, flushRecords, deliveryLag, lastSuccess,
		syslogConnects, syslogAckWait, syslogBytes, sdRequests, sdDuration, sdRejected, buildInfo,
		// The plugin's Go heap beside its limit (GOMEMLIMIT: go_gc_gomemlimit_bytes), which
		// the pod's memory shares with the engine's chunks.
		collectors.NewGoCollector())
	buildInfo.WithLabelValues(Version, runtime.Version(), FluentBitABI).Set(1)
}

// Handler serves the registry in Prometheus' text format (tests use it without a server).
func Handler() http.Handler {
	return promhttp.HandlerFor(registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// server is the process's one endpoint.
var server struct {
	mu   sync.Mutex // guards addr and ln
	addr string
	ln   net.Listener
}

// Listen starts the endpoint at addr, once per process: instances that name the same
// address share it; one that names another is an error naming both. The server outlives
// the instances (a hot reload keeps it) and never touches a flush: it only reads counters.
func Listen(addr string) (string, error) {
	server.mu.Lock()
	defer server.mu.Unlock()
	if server.ln != nil {
		if addr != server.addr {
			return "", fmt.Errorf("metrics_listen %q: this process already serves metrics on %q (one endpoint per process; name the same address or none)", addr, server.addr)
		}
		return server.ln.Addr().String(), nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("metrics_listen %q: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			// Where the plugin's logger writes; this package sits below it.
			fmt.Fprintf(os.Stderr, "[error] [output:trailstack] metrics endpoint %s stopped: %v\n", addr, err)
		}
	}()
	server.addr, server.ln = addr, ln
	return ln.Addr().String(), nil
}

// Instance is one instance's series, curried with its labels so that the flush path does
// no label lookup.
type Instance struct {
	name, sink string

	Delivered, Truncated, SyslogBytes, Rejected prometheus.Counter
	TracesJoined                                prometheus.Counter
	Dropped                                     func(reason string) prometheus.Counter
	Lost                                        func(cause string) prometheus.Counter
	FlushOK, FlushRetry, FlushError             prometheus.Counter
	FlushDuration, FlushRecords, DeliveryLag    prometheus.Observer
	LastSuccess, Ready                          prometheus.Gauge
	Skipped, Repaired                           prometheus.Counter
	LedgerEntries, LedgerBytes                  prometheus.Gauge
	SyslogConnects                              func(result string) prometheus.Counter
	AckWait, RequestDuration                    prometheus.Observer
	Requests                                    func(code string) prometheus.Counter
}

// NewInstance creates the series of an instance.
func NewInstance(name, sink string) *Instance {
	l := []string{name, sink}
	m := &Instance{
		name: name, sink: sink,
		Delivered:     delivered.WithLabelValues(l...),
		Truncated:     truncated.WithLabelValues(l...),
		TracesJoined:  tracesJoined.WithLabelValues(l...),
		FlushOK:       flushes.WithLabelValues(name, sink, "ok"),
		FlushRetry:    flushes.WithLabelValues(name, sink, "retry"),
		FlushError:    flushes.WithLabelValues(name, sink, "error"),
		FlushDuration: flushDuration.WithLabelValues(l...),
		FlushRecords:  flushRecords.WithLabelValues(l...),
		DeliveryLag:   deliveryLag.WithLabelValues(l...),
		LastSuccess:   lastSuccess.WithLabelValues(l...),
		Ready:         ready.WithLabelValues(l...),
		Skipped:       skipped.WithLabelValues(l...),
		Repaired:      repaired.WithLabelValues(l...),
		LedgerEntries: ledgerEntries.WithLabelValues(l...),
		LedgerBytes:   ledgerBytes.WithLabelValues(l...),
	}
	// A sink's own series exist only on its instances: another sink's go to unregistered
	// collectors, which nobody reads.
	m.SyslogBytes, m.AckWait = unregistered()
	m.Rejected, m.RequestDuration = unregistered()
	switch sink {
	case "syslog":
		m.SyslogBytes, m.AckWait = syslogBytes.WithLabelValues(l...), syslogAckWait.WithLabelValues(l...)
	case "stackdriver":
		m.Rejected, m.RequestDuration = sdRejected.WithLabelValues(l...), sdDuration.WithLabelValues(l...)
	}
	m.Dropped = func(reason string) prometheus.Counter { return dropped.WithLabelValues(name, sink, reason) }
	m.Lost = func(cause string) prometheus.Counter { return lost.WithLabelValues(name, sink, cause) }
	m.SyslogConnects = func(result string) prometheus.Counter { return syslogConnects.WithLabelValues(name, sink, result) }
	m.Requests = func(code string) prometheus.Counter { return sdRequests.WithLabelValues(name, sink, code) }
	// Series that an alert reads exist from the start, at zero.
	m.Dropped("corrupt_chunk")
	m.Dropped("rejected")
	return m
}

func unregistered() (prometheus.Counter, prometheus.Observer) {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: "unregistered"}), prometheus.NewHistogram(prometheus.HistogramOpts{Name: "unregistered"})
}

// Remove takes the instance's series out of the endpoint (it exited).
func (m *Instance) Remove() {
	for _, v := range perInstance {
		v.DeletePartialMatch(prometheus.Labels{"instance": m.name})
	}
}

// Kube is the series of the process's Kubernetes metadata cache (one per process).
type Kube struct {
	Up, Pods prometheus.Gauge
	Lookups  func(result string) prometheus.Counter
	Requests func(verb string, err error) prometheus.Counter
}

// kubeOnce registers the metadata cache's series with the cache, not before: a process
// without the cache shows no trailstack_kube_watch_up 0 for its alert to fire on.
var kubeOnce sync.Once

// NewKube registers and returns the metadata cache's series; the lookups exist from the
// start, at zero.
func NewKube() *Kube {
	kubeOnce.Do(func() { registry.MustRegister(kubeUp, kubePods, kubeLookups, kubeRequests) })
	k := &Kube{Up: kubeUp, Pods: kubePods,
		Lookups: func(result string) prometheus.Counter { return kubeLookups.WithLabelValues(result) },
		Requests: func(verb string, err error) prometheus.Counter {
			if err != nil {
				return kubeRequests.WithLabelValues(verb, "error")
			}
			return kubeRequests.WithLabelValues(verb, "ok")
		},
	}
	k.Lookups("hit")
	k.Lookups("miss")
	return k
}

// stateDiskOnce registers the state directory's filesystem series once a process.
var stateDiskOnce sync.Once

// WatchStateDisk exports the free share of the filesystem that holds dir (Fluent Bit's
// buffers and tail offsets): when it fills, tail reads on while no chunk can be written,
// and lines are lost. The first directory named in a process is the one watched.
func WatchStateDisk(dir string) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return err
	}
	stateDiskOnce.Do(func() {
		registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "trailstack_state_filesystem_avail_ratio",
			Help: "The share of the state directory's filesystem free to unprivileged writers (0 to 1).",
		}, func() float64 {
			var st syscall.Statfs_t
			if syscall.Statfs(dir, &st) != nil || st.Blocks == 0 {
				return 0
			}
			return float64(st.Bavail) / float64(st.Blocks)
		}))
	})
	return nil
}
