package kubemeta

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAPI lists and watches pods as the API server does, and can hang: accept a request and
// never answer it.
type fakeAPI struct {
	mu     sync.Mutex // guards pods, rv, events, hang, lists, watches
	pods   map[string]string
	rv     int
	events chan string
	hang   bool
	lists  int
}

func podJSON(ns, name string, rv int) string {
	return fmt.Sprintf(`{"metadata":{"name":%q,"namespace":%q,"resourceVersion":"%d","labels":{"app":%q}},"spec":{"nodeName":"node-1"}}`, name, ns, rv, name)
}

func (f *fakeAPI) add(ns, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rv++
	f.pods[ns+"/"+name] = podJSON(ns, name, f.rv)
	if !f.hang {
		select {
		case f.events <- fmt.Sprintf(`{"type":"ADDED","object":%s}`, f.pods[ns+"/"+name]):
		default:
		}
	}
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	hang := f.hang
	f.mu.Unlock()
	if hang {
		<-r.Context().Done()
		return
	}
	if r.Header.Get("Authorization") != "Bearer t0ken" || r.URL.Query().Get("fieldSelector") != "spec.nodeName=node-1" {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	if r.URL.Query().Get("watch") != "true" {
		f.mu.Lock()
		f.lists++
		var items []string
		for _, p := range f.pods {
			items = append(items, p)
		}
		body := fmt.Sprintf(`{"metadata":{"resourceVersion":"%d"},"items":[%s]}`, f.rv, strings.Join(items, ","))
		f.mu.Unlock()
		io.WriteString(w, body)
		return
	}
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	for {
		select {
		case ev := <-f.events:
			io.WriteString(w, ev+"\n")
			w.(http.Flusher).Flush()
		case <-r.Context().Done():
			return
		}
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Infof(f string, a ...any) { l.t.Logf("info: "+f, a...) }
func (l testLog) Warnf(f string, a ...any) { l.t.Logf("warn: "+f, a...) }

func startCache(t *testing.T, f *fakeAPI) *Cache {
	t.Helper()
	srv := httptest.NewTLSServer(f)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("t0ken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{API: srv.URL, Node: "node-1", TokenFile: filepath.Join(dir, "token"), CAFile: filepath.Join(dir, "ca.crt"), ServerName: "example.com"}, testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { f.mu.Lock(); f.hang = false; f.mu.Unlock(); cancel(); <-done })
	return c
}

func labelOf(t *testing.T, raw []byte) string {
	var p struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	return p.Metadata.Labels["app"]
}

// waitServed waits for the cache to have listed a pod.
func waitServed(t *testing.T, c *Cache, ns, name string) []byte {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if raw, ok := c.Lookup(context.Background(), ns, name); ok {
			return raw
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/%s was never served", ns, name)
		}
	}
}

// Pods listed at start are served at once; a pod the watch delivers while a lookup waits is
// served to it; one that never comes is "not found" after Wait, and at once after that.
func TestLookupFromTheWatch(t *testing.T) {
	f := &fakeAPI{pods: map[string]string{}, events: make(chan string, 16)}
	f.add("shop", "web-1")
	c := startCache(t, f)
	ctx := context.Background()
	if got := labelOf(t, waitServed(t, c, "shop", "web-1")); got != "web-1" {
		t.Fatalf("label %q", got)
	}
	time.AfterFunc(100*time.Millisecond, func() { f.add("shop", "cart-1") })
	start := time.Now()
	if raw, ok := c.Lookup(ctx, "shop", "cart-1"); !ok || labelOf(t, raw) != "cart-1" {
		t.Fatalf("a pod added while the lookup waited: %v", ok)
	}
	if waited := time.Since(start); waited > Wait {
		t.Errorf("waited %v", waited)
	}
	start = time.Now()
	if _, ok := c.Lookup(ctx, "shop", "ghost"); ok || time.Since(start) < Wait {
		t.Fatalf("a pod that never comes: found %v after %v", ok, time.Since(start))
	}
	start = time.Now()
	if _, ok := c.Lookup(ctx, "shop", "ghost"); ok || time.Since(start) > Wait/2 {
		t.Fatalf("a pod just missed again: found %v after %v", ok, time.Since(start))
	}
}

// An API server that hangs stops nothing: known pods are still served, an unknown one is
// "not found" at once once the watch is known down, and nothing waits on the API server.
func TestHungAPIServerAnswersAtOnce(t *testing.T) {
	f := &fakeAPI{pods: map[string]string{}, events: make(chan string, 16)}
	f.add("shop", "web-1")
	c := startCache(t, f)
	ctx := context.Background()
	waitServed(t, c, "shop", "web-1")
	f.mu.Lock()
	f.hang = true
	f.mu.Unlock()
	c.mu.Lock()
	c.lastOK = time.Now().Add(-healthyFor) // as after 90 s of silence
	c.mu.Unlock()
	start := time.Now()
	if _, ok := c.Lookup(ctx, "shop", "web-1"); !ok {
		t.Error("a known pod is not served while the API server hangs")
	}
	if _, ok := c.Lookup(ctx, "shop", "new-1"); ok {
		t.Error("an unknown pod was found")
	}
	if took := time.Since(start); took > 50*time.Millisecond {
		t.Errorf("lookups took %v while the API server hangs", took)
	}
}
