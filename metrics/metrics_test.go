package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// One endpoint per process: the same address is shared, another is an error naming both;
// an instance's series appear with its labels and leave with it, and the server stays.
func TestEndpoint(t *testing.T) {
	addr, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := Listen("127.0.0.1:0"); err != nil || again != addr {
		t.Fatalf("the same address again: %v %v", again, err)
	}
	if _, err := Listen("127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), `"127.0.0.1:1"`) || !strings.Contains(err.Error(), `"127.0.0.1:0"`) {
		t.Fatalf("another address: %v", err)
	}
	a, b := NewInstance("trailstack.0", "syslog"), NewInstance("trailstack.1", "stackdriver")
	a.Delivered.Add(3)
	a.FlushOK.Inc()
	b.Requests("Unavailable").Inc()
	out := scrape(t, "http://"+addr+"/metrics")
	for _, want := range []string{
		`trailstack_records_delivered_total{instance="trailstack.0",sink="syslog"} 3`,
		`trailstack_flushes_total{instance="trailstack.0",result="ok",sink="syslog"} 1`,
		`trailstack_stackdriver_requests_total{code="Unavailable",instance="trailstack.1",sink="stackdriver"} 1`,
		`trailstack_records_dropped_total{instance="trailstack.1",reason="rejected",sink="stackdriver"} 0`,
		`trailstack_build_info{fluent_bit_abi="proxy-output-v2",go_version="go`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %s:\n%s", want, out)
		}
	}
	a.Remove()
	out = scrape(t, "http://"+addr+"/metrics")
	if strings.Contains(out, `instance="trailstack.0"`) || !strings.Contains(out, `instance="trailstack.1"`) {
		t.Errorf("after trailstack.0 exited:\n%s", out)
	}
	b.Remove()
}

// BenchmarkFlushCounters is what a flush adds: its counters and histograms. (A whole flush,
// alone and while the endpoint is scraped, is core's BenchmarkFlush.)
func BenchmarkFlushCounters(b *testing.B) {
	m := NewInstance("bench", "null")
	defer m.Remove()
	for i := 0; i < b.N; i++ {
		m.FlushDuration.Observe(0.001)
		m.FlushRecords.Observe(2779)
		m.Delivered.Add(2779)
		m.LastSuccess.Set(1)
		m.FlushOK.Inc()
	}
}

// The metadata cache's series appear with the cache: a process without it has no
// trailstack_kube_watch_up at 0 for the TrailstackMetadataMissing alert to fire on.
func TestKubeSeriesOnlyWithTheCache(t *testing.T) {
	rec := func() string {
		w := httptest.NewRecorder()
		Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		return w.Body.String()
	}
	if out := rec(); strings.Contains(out, "trailstack_kube_") {
		t.Fatalf("kube series before the cache started:\n%s", out)
	}
	k := NewKube()
	k.Up.Set(1)
	if out := rec(); !strings.Contains(out, "trailstack_kube_watch_up 1\n") || !strings.Contains(out, `trailstack_kube_lookups_total{result="miss"} 0`) {
		t.Fatalf("kube series after the cache started:\n%s", out)
	}
	NewKube() // a second instance naming the same endpoint registers nothing twice
}
