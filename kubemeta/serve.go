package kubemeta

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Handler answers GET /api/v1/namespaces/{ns}/pods/{name} as the API server would, from c.
// Anything else is "not found": the filter then goes on without metadata.
func (c *Cache) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/pods/{name}", func(w http.ResponseWriter, r *http.Request) {
		raw, ok := c.Lookup(r.Context(), r.PathValue("ns"), r.PathValue("name"))
		if !ok {
			notFound(w, fmt.Sprintf("pods %q not found", r.PathValue("name")))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(raw)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { notFound(w, "not served here") })
	return mux
}

// notFound is the API server's Status for a missing object.
func notFound(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":%q,"reason":"NotFound","code":404}`, msg)
}

// server is the process's one endpoint and watch: Fluent Bit runs every [OUTPUT] of the
// plugin in one process and keeps it across hot reloads, like the metrics endpoint.
var server struct {
	mu   sync.Mutex // guards addr and ln
	addr string
	ln   net.Listener
}

// Start serves the node's pods at addr and starts the watch, once per process; instances
// that name the same address share it, one that names another is an error.
func Start(addr string, cfg Config, log Logger) (string, error) {
	server.mu.Lock()
	defer server.mu.Unlock()
	if server.ln != nil {
		if addr != server.addr {
			return "", fmt.Errorf("this process already serves Kubernetes metadata on %q (one endpoint per process)", server.addr)
		}
		return server.ln.Addr().String(), nil
	}
	c, err := New(cfg, log)
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	go c.Run(context.Background())
	server.addr, server.ln = addr, ln
	return ln.Addr().String(), nil
}
