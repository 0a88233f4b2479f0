// Package kubemeta keeps the node's pods from one watch on the Kubernetes API and answers the
// kubernetes filter's pod lookups from that cache, on loopback, at once.
//
// Fluent Bit's kubernetes filter looks a new pod up with a synchronous request on the
// pipeline thread, with no read timeout: an API server that accepts and never answers stops
// tail, every filter and every output behind it (fluent/fluent-bit#12168). Pointed at this
// endpoint instead (Kube_URL http://127.0.0.1:PORT), the filter gets a pod the watch has
// delivered at once, waits at most Wait for one it has not while the watch is healthy, and
// otherwise gets "not found" at once, so its records go on with what the tag says.
package kubemeta

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/trailstack/trailstack/metrics"
)

// Logger is where the cache says what the operator must know: the watch lost and back.
type Logger interface {
	Infof(format string, args ...any)
	Warnf(format string, args ...any)
}

// Config is where the API server is and which node's pods to keep.
type Config struct {
	API       string // https://host:port
	Node      string
	TokenFile string
	CAFile    string
	// ServerName is checked in the API server's certificate: the in-cluster service name,
	// which every Kubernetes API server's certificate carries.
	ServerName string
}

// InCluster is the configuration a pod has: the API server from the environment the
// kubelet sets, the service account's token and CA, and the node named by node.
func InCluster(node string) (Config, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return Config{}, errors.New("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set: not running in a Kubernetes pod")
	}
	if node == "" {
		return Config{}, errors.New("no node name (set NODE_NAME from spec.nodeName)")
	}
	const sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
	return Config{API: "https://" + net.JoinHostPort(host, port), Node: node, TokenFile: sa + "token", CAFile: sa + "ca.crt",
		ServerName: "kubernetes.default.svc"}, nil
}

// Policy: how long a lookup waits for a pod the watch has not delivered, how long a pod
// stays after its deletion (its last lines may be read after it), how long a miss is
// answered at once, and the backoff between failed list or watch requests.
const (
	Wait           = 500 * time.Millisecond
	keepDeleted    = 5 * time.Minute
	missRemembered = 30 * time.Second
	retryMin       = time.Second
	retryMax       = 30 * time.Second
	// A watch is asked to end after watchSeconds and reconnected from where it was: a
	// stream that goes quiet (a hung API server keeps the connection) is noticed within it.
	watchSeconds = 60
	// healthyFor is how long after its last answer the API server counts as up.
	healthyFor = 90 * time.Second
)

func nextRetry(d time.Duration) time.Duration { return min(2*d, retryMax) }

// Cache is the node's pods, kept by the watch.
type Cache struct {
	cfg    Config
	client *http.Client
	log    Logger
	m      *metrics.Kube

	mu      sync.Mutex      // guards pods, missed, lastOK, synced and arrived
	pods    map[string]*pod // by namespace/name
	missed  map[string]time.Time
	lastOK  time.Time     // the last list or watch answer
	synced  bool          // a list has filled the cache
	arrived chan struct{} // closed and replaced when a pod arrives
}

type pod struct {
	raw     []byte    // the object as the API server sent it
	deleted time.Time // zero while it exists
}

// New makes a cache; Run fills it.
func New(cfg Config, log Logger) (*Cache, error) {
	ca, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("no PEM certificates in %s", cfg.CAFile)
	}
	tr := &http.Transport{
		TLSClientConfig:       &tls.Config{RootCAs: pool, ServerName: cfg.ServerName, MinVersion: tls.VersionTLS12},
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second, // an API server that accepts and never answers
		MaxIdleConns:          2,
	}
	return &Cache{cfg: cfg, client: &http.Client{Transport: tr}, log: log, m: metrics.NewKube(),
		pods: map[string]*pod{}, missed: map[string]time.Time{}, arrived: make(chan struct{})}, nil
}

// Run lists and watches the node's pods until ctx ends, retrying with backoff.
func (c *Cache) Run(ctx context.Context) {
	wait := retryMin
	var rv string
	failing := false
	for ctx.Err() == nil {
		var err error
		if rv == "" {
			rv, err = c.list(ctx)
		}
		if err == nil {
			rv, err = c.watch(ctx, rv)
		}
		if err == nil {
			wait = retryMin
			if failing {
				c.log.Infof("kubernetes metadata: watching pods of node %s again", c.cfg.Node)
				failing = false
			}
			continue
		}
		if errors.Is(err, errGone) {
			rv = "" // too old to resume: list again
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if !failing {
			c.log.Warnf("kubernetes metadata: %v; pods known are still served, new ones go without metadata until the API server answers (retrying)", err)
			failing = true
		}
		c.m.Up.Set(0)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = nextRetry(wait)
	}
}

var errGone = errors.New("resource version too old")

func (c *Cache) request(ctx context.Context, query url.Values) (*http.Response, error) {
	token, err := os.ReadFile(c.cfg.TokenFile) // re-read: projected tokens rotate
	if err != nil {
		return nil, err
	}
	query.Set("fieldSelector", "spec.nodeName="+c.cfg.Node)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.cfg.API+"/api/v1/pods?"+query.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if resp.StatusCode == http.StatusGone {
			return nil, errGone
		}
		return nil, fmt.Errorf("GET pods of node %s: %s: %s", c.cfg.Node, resp.Status, bytes.TrimSpace(b))
	}
	return resp, nil
}

// list replaces the cache with the node's pods and returns the list's resource version.
func (c *Cache) list(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := c.request(ctx, url.Values{})
	c.m.Requests("list", err).Inc()
	if err != nil {
		return "", fmt.Errorf("listing pods: %w", err)
	}
	defer resp.Body.Close()
	var l struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Items []json.RawMessage `json:"items"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		return "", fmt.Errorf("listing pods: %w", err)
	}
	now := time.Now()
	c.mu.Lock()
	seen := map[string]bool{}
	for _, item := range l.Items {
		if k, ok := key(item); ok {
			c.pods[k] = &pod{raw: item}
			seen[k] = true
		}
	}
	for k, p := range c.pods {
		if !seen[k] && p.deleted.IsZero() {
			p.deleted = now // gone while we were not watching
		}
	}
	c.synced, c.lastOK = true, now
	clear(c.missed) // everything the node has is known again
	c.pruneLocked()
	c.arrivedLocked()
	c.mu.Unlock()
	c.m.Up.Set(1)
	return l.Metadata.ResourceVersion, nil
}

// watch applies the events from rv on until the server ends the watch, and returns the
// resource version to resume from.
func (c *Cache) watch(ctx context.Context, rv string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, (watchSeconds+15)*time.Second)
	defer cancel()
	q := url.Values{"watch": {"true"}, "resourceVersion": {rv}, "allowWatchBookmarks": {"true"},
		"timeoutSeconds": {fmt.Sprint(watchSeconds)}}
	resp, err := c.request(ctx, q)
	c.m.Requests("watch", err).Inc()
	if err != nil {
		return rv, fmt.Errorf("watching pods: %w", err)
	}
	defer resp.Body.Close()
	c.touch()
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var ev struct {
			Type   string          `json:"type"`
			Object json.RawMessage `json:"object"`
		}
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				return rv, nil // the server ended the watch: resume
			}
			return rv, fmt.Errorf("watching pods: %w", err)
		}
		if ev.Type == "ERROR" {
			var st struct {
				Code int `json:"code"`
			}
			_ = json.Unmarshal(ev.Object, &st)
			if st.Code == http.StatusGone {
				return "", errGone
			}
			return rv, fmt.Errorf("watching pods: error event %s", ev.Object)
		}
		var meta struct {
			Metadata struct {
				ResourceVersion string `json:"resourceVersion"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(ev.Object, &meta); err == nil && meta.Metadata.ResourceVersion != "" {
			rv = meta.Metadata.ResourceVersion
		}
		c.apply(ev.Type, ev.Object)
	}
}

func (c *Cache) touch() {
	c.mu.Lock()
	c.lastOK = time.Now()
	c.mu.Unlock()
	c.m.Up.Set(1)
}

// apply is one watch event.
func (c *Cache) apply(typ string, obj json.RawMessage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastOK = time.Now()
	k, ok := key(obj)
	if !ok {
		return // a bookmark carries no pod
	}
	switch typ {
	case "ADDED", "MODIFIED":
		c.pods[k] = &pod{raw: obj}
		delete(c.missed, k)
		c.arrivedLocked()
	case "DELETED":
		if p := c.pods[k]; p != nil {
			p.deleted = time.Now()
		}
	}
	c.pruneLocked()
}

// arrivedLocked wakes the lookups waiting for a pod.
func (c *Cache) arrivedLocked() {
	close(c.arrived)
	c.arrived = make(chan struct{})
	c.m.Pods.Set(float64(len(c.pods)))
}

// pruneLocked drops pods deleted long enough ago, and old misses: the cache stays the size
// of the node's pods.
func (c *Cache) pruneLocked() {
	now := time.Now()
	for k, p := range c.pods {
		if !p.deleted.IsZero() && now.Sub(p.deleted) > keepDeleted {
			delete(c.pods, k)
		}
	}
	for k, t := range c.missed {
		if now.Sub(t) > missRemembered {
			delete(c.missed, k)
		}
	}
	c.m.Pods.Set(float64(len(c.pods)))
}

// key is an object's namespace/name.
func key(obj []byte) (string, bool) {
	var m struct {
		Metadata struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if json.Unmarshal(obj, &m) != nil || m.Metadata.Name == "" {
		return "", false
	}
	return m.Metadata.Namespace + "/" + m.Metadata.Name, true
}

// Lookup returns a pod's object: at once if the cache has it; if not, waiting at most Wait
// for the watch to deliver it, and only while the watch is healthy and the pod was not
// missed just before.
func (c *Cache) Lookup(ctx context.Context, namespace, name string) ([]byte, bool) {
	k := namespace + "/" + name
	deadline := time.Now().Add(Wait)
	for {
		c.mu.Lock()
		p := c.pods[k]
		_, missed := c.missed[k]
		healthy := c.synced && time.Since(c.lastOK) < healthyFor
		arrived := c.arrived
		c.mu.Unlock()
		if p != nil {
			c.m.Lookups("hit").Inc()
			return p.raw, true
		}
		left := time.Until(deadline)
		if !healthy || missed || left <= 0 {
			c.mu.Lock()
			if _, ok := c.missed[k]; !ok {
				c.missed[k] = time.Now()
			}
			c.mu.Unlock()
			c.m.Lookups("miss").Inc()
			return nil, false
		}
		t := time.NewTimer(left)
		select {
		case <-arrived:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, false
		}
		t.Stop()
	}
}
