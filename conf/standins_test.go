package conf

// Local stand-ins for what a GKE node talks to: Papertrail (a TLS syslog receiver), Cloud
// Logging (a gRPC LoggingServiceV2), the Kubernetes API and the GCE metadata server. The two
// destinations count every line they receive by its pod and sequence number, and can be
// taken down the ways a real destination goes down.

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/logging/apiv2/loggingpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/trailstack/trailstack/testkit/cloudlogging"
	"github.com/trailstack/trailstack/testkit/testpki"
)

// lineID finds the pod and sequence number that every harness log line carries, as text
// (pod=P seq=N) or as the JSON of a parsed line ("pod":"P","seq":"N").
var lineID = regexp.MustCompile(`pod"?[=:]"?([^"\s,]+)"?[ ,]"?seq"?[=:]"?(\d+)`)

// tally counts what a destination received, by line id, and what arrived without its pod's
// identity, and how old each line was when it first arrived.
type tally struct {
	mu        sync.Mutex // guards got, lags, anonymous, wrongName and texts
	got       map[string]int
	texts     map[string][]string // every message by its id, where a test keeps them (keepTexts)
	lags      []time.Duration     // arrival minus the runtime's timestamp, first copies only
	anonymous int                 // lines whose identity (metadata) was missing
	wrongName []string            // a few examples of lines under another identity
}

func newTally() *tally { return &tally{got: map[string]int{}} }

// add records one line; ident is the pod the destination says it came from ("" when the
// record had no Kubernetes metadata), written the line's time as the destination got it.
func (t *tally) add(msg, ident string, written time.Time) {
	m := lineID.FindStringSubmatch(msg)
	if m == nil {
		return // not a harness line (the engine's own records, for example)
	}
	lag := time.Since(written)
	t.mu.Lock()
	defer t.mu.Unlock()
	id := m[1] + "#" + m[2]
	if t.texts != nil {
		t.texts[id] = append(t.texts[id], msg)
	}
	if t.got[id]++; t.got[id] == 1 {
		t.lags = append(t.lags, lag)
	}
	switch {
	case ident == "":
		t.anonymous++
	case ident != m[1] && len(t.wrongName) < 5:
		t.wrongName = append(t.wrongName, fmt.Sprintf("%s arrived as %s", m[0], ident))
	}
}

// settle counts every line that arrived more than once as once, after a scenario whose
// duplicates are expected and reported, so that the next scenarios count only their own.
func (t *tally) settle() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, n := range t.got {
		if n > 1 {
			t.got[id] = 1
		}
	}
}

// keepTexts makes the tally keep every message, for tests that check what a message holds.
func (t *tally) keepTexts() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.texts = map[string][]string{}
}

// whole counts the traces (their lines by id) of which some message holds every line, in
// order; it also returns the messages that hold more than one line id (a line joined to
// another).
func (t *tally) whole(traces map[string][]string) (n int, merged []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, lines := range traces {
		for _, msg := range t.texts[id] {
			if holdsInOrder(msg, lines) {
				n++
				break
			}
		}
	}
	for _, msgs := range t.texts {
		for _, m := range msgs {
			if len(lineID.FindAllString(m, 2)) > 1 && len(merged) < 5 {
				merged = append(merged, m)
			}
		}
	}
	return n, merged
}

// holdsInOrder tells whether msg holds each line's text in turn; a line's tabs and newlines
// may have become spaces on the way (syslog's one-line messages).
func holdsInOrder(msg string, lines []string) bool {
	msg = strings.NewReplacer("\t", " ", "\n", " ").Replace(msg)
	for _, l := range lines {
		l = strings.TrimSpace(strings.ReplaceAll(l, "\t", " "))
		i := strings.Index(msg, l)
		if i < 0 {
			return false
		}
		msg = msg[i+len(l):]
	}
	return true
}

// count returns how many of want arrived, how many are missing, and the extra copies.
func (t *tally) count(want []string) (arrived, lost, dups int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, w := range want {
		n := t.got[w]
		if n == 0 {
			lost++
			continue
		}
		arrived++
		dups += n - 1
	}
	return
}

// missing is how many of ids have not arrived.
func (t *tally) missing(ids []string) (n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range ids {
		if t.got[id] == 0 {
			n++
		}
	}
	return n
}

// twice is how many of ids arrived more than once.
func (t *tally) twice(ids []string) (n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range ids {
		if t.got[id] > 1 {
			n++
		}
	}
	return n
}

// lagQuantiles returns the lines' lag at each quantile q (0 to 1) and the largest.
func (t *tally) lagQuantiles(qs ...float64) (at []time.Duration, most time.Duration) {
	t.mu.Lock()
	l := slices.Clone(t.lags)
	t.mu.Unlock()
	if len(l) == 0 {
		return make([]time.Duration, len(qs)), 0
	}
	slices.Sort(l)
	for _, q := range qs {
		at = append(at, l[min(int(q*float64(len(l))), len(l)-1)])
	}
	return at, l[len(l)-1]
}

// syslogReceiver is Papertrail: RFC 5424 over TLS, one message per line.
type syslogReceiver struct {
	*tally
	addr string
	ln   net.Listener
	node string // the HOSTNAME every message must carry: the node's name

	mu       sync.Mutex    // guards resume, conns and tokens
	resume   chan struct{} // non-nil while the receiver has stopped reading
	conns    map[net.Conn]bool
	refusing bool
	tokens   map[string]int // messages by the token their first SD element carried
}

// rfc5424 picks HOSTNAME, APP-NAME, PROCID, MSGID and MSG out of a frame:
// <PRI>1 TS HOST APP PROCID MSGID SD MSG.
var rfc5424 = regexp.MustCompile(`^<\d+>1 \S+ (\S+) (\S+) (\S+) (\S+) (-|(?:\[(?:[^\]\\]|\\.)*\])+) ?(.*)$`)

// tokenElement is a token destination's SD element, [<token>@41058], first in the SD.
var tokenElement = regexp.MustCompile(`^\[([^ =\]"]+)@41058\]`)

// timestamp5424 is a frame's TIMESTAMP.
func timestamp5424(frame string) time.Time {
	_, rest, _ := strings.Cut(frame, " ")
	ts, _, _ := strings.Cut(rest, " ")
	t, _ := time.Parse(time.RFC3339Nano, ts)
	return t
}

// listenFunc opens a stand-in's listener: on loopback, or at the far end of a delay line.
type listenFunc func(*net.ListenConfig) (net.Listener, error)

func startSyslog(t *testing.T, pki *testpki.PKI, listen listenFunc, smallWindow bool) *syslogReceiver {
	t.Helper()
	// On loopback, a receive buffer of a WAN link's size, not loopback's autotuned
	// megabytes: a receiver that stops reading stops acknowledging within a chunk, as
	// Papertrail would. At a distance the kernel's autotuning, as Papertrail's own: a fixed
	// 64 KiB window would cap the link at 64 KiB a round trip.
	lc := &net.ListenConfig{}
	if smallWindow {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10) })
		}
	}
	ln, err := listen(lc)
	if err != nil {
		t.Fatal(err)
	}
	r := &syslogReceiver{tally: newTally(), addr: ln.Addr().String(), ln: tls.NewListener(ln, pki.Server), node: nodeName, conns: map[net.Conn]bool{}, tokens: map[string]int{}}
	go r.serve()
	t.Cleanup(func() { r.ln.Close(); r.setReading(true); r.closeAll() })
	return r
}

func (r *syslogReceiver) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		if r.refusing {
			r.mu.Unlock()
			c.(*tls.Conn).NetConn().(*net.TCPConn).SetLinger(0)
			c.Close()
			continue
		}
		r.conns[c] = true
		r.mu.Unlock()
		go r.read(c)
	}
}

func (r *syslogReceiver) read(c net.Conn) {
	defer func() {
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
		c.Close()
	}()
	br := bufio.NewReaderSize(c, 1<<20)
	for {
		r.mu.Lock()
		wait := r.resume
		r.mu.Unlock()
		if wait != nil {
			<-wait // stopped reading: the kernel's buffers fill and the sender's bytes stay unacknowledged
		}
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		m := rfc5424.FindStringSubmatch(strings.TrimSuffix(line, "\n"))
		if m == nil {
			continue
		}
		// APP-NAME is namespace/container and PROCID the pod; HOSTNAME is the node and
		// MSGID the stream the runtime wrote: none of them the application's to choose.
		ident := ""
		if m[3] != "-" && strings.Contains(m[2], "/") {
			ident = m[3]
		}
		if m[1] != r.node || m[4] != "stdout" && m[4] != "stderr" {
			ident = "host " + m[1] + ", msgid " + m[4]
		}
		if t := tokenElement.FindStringSubmatch(m[5]); t != nil {
			r.mu.Lock()
			r.tokens[t[1]]++
			r.mu.Unlock()
		}
		r.add(m[6], ident, timestamp5424(line))
	}
}

// setReading stops (false) or resumes (true) reading from every connection.
func (r *syslogReceiver) setReading(on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case on && r.resume != nil:
		close(r.resume)
		r.resume = nil
	case !on && r.resume == nil:
		r.resume = make(chan struct{})
	}
}

func (r *syslogReceiver) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		c.Close()
	}
}

// cloudLogging is Cloud Logging's WriteLogEntries.
type cloudLogging struct {
	loggingpb.UnimplementedLoggingServiceV2Server
	*tally
	addr string

	mu   sync.Mutex // guards down, the quota, insertIDs, sameID and structured
	down codes.Code // non-OK: every request is answered with this code
	// A quota of requests a second (0: none), as a token bucket of a second's worth:
	// past it, RESOURCE_EXHAUSTED.
	grant      float64
	tokens     float64
	refilled   time.Time
	throttled  int // requests answered RESOURCE_EXHAUSTED
	insertIDs  map[string]bool
	sameID     int                          // entries whose insertId was seen before: the service keeps one of them
	structured map[string]int               // jsonPayload entries by pod
	labels     map[string]map[string]string // the labels of a pod's last entry, defaults merged
	splits     cloudlogging.Splits          // split entries, put back together
	largest    int                          // the largest entry written, in bytes
}

func startCloudLogging(t *testing.T, listen listenFunc) *cloudLogging {
	t.Helper()
	ln, err := listen(&net.ListenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	f := &cloudLogging{tally: newTally(), addr: ln.Addr().String(), insertIDs: map[string]bool{}, structured: map[string]int{}, labels: map[string]map[string]string{}}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(16 << 20))
	loggingpb.RegisterLoggingServiceV2Server(srv, f)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return f
}

// largestEntry is the largest entry written, in bytes as the API counts them.
// setQuota grants perSecond requests a second from now on (0: no quota).
func (f *cloudLogging) setQuota(perSecond float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.grant, f.tokens, f.refilled = perSecond, perSecond, time.Now()
}

func (f *cloudLogging) throttledRequests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.throttled
}

func (f *cloudLogging) largestEntry() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.largest
}

// resent is how many entries arrived again with an insertId already written: Cloud Logging
// keeps one entry per insertId and timestamp, so these are not duplicates to its users.
func (f *cloudLogging) resent() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sameID
}

// labelsOf is the labels of the last entry written for a pod.
func (f *cloudLogging) labelsOf(pod string) map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.labels[pod]
}

// jsonEntries is how many of a pod's entries came with a jsonPayload.
func (f *cloudLogging) jsonEntries(pod string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.structured[pod]
}

func (f *cloudLogging) setDown(c codes.Code) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = c
}

func (f *cloudLogging) WriteLogEntries(ctx context.Context, req *loggingpb.WriteLogEntriesRequest) (*loggingpb.WriteLogEntriesResponse, error) {
	f.mu.Lock()
	down := f.down
	if f.grant > 0 {
		now := time.Now()
		f.tokens = min(f.grant, f.tokens+now.Sub(f.refilled).Seconds()*f.grant)
		f.refilled = now
		if f.tokens < 1 {
			f.throttled++
			f.mu.Unlock()
			return nil, status.Error(codes.ResourceExhausted, "Quota exceeded for quota metric 'Write requests' of service 'logging.googleapis.com'")
		}
		f.tokens--
	}
	f.mu.Unlock()
	if down != codes.OK {
		return nil, status.Error(down, "stand-in is down")
	}
	f.mu.Lock()
	for _, e := range req.Entries {
		if f.insertIDs[e.InsertId] {
			f.sameID++
		}
		f.insertIDs[e.InsertId] = true
	}
	f.mu.Unlock()
	for _, e := range req.Entries {
		e = cloudlogging.Stored(req, e)
		ident := ""
		if e.Resource.GetType() == "k8s_container" {
			ident = e.Resource.Labels["pod_name"]
		}
		f.mu.Lock()
		f.labels[ident] = e.Labels
		f.mu.Unlock()
		if !strings.HasSuffix(e.LogName, "/stdout") && !strings.HasSuffix(e.LogName, "/stderr") {
			ident = "log name " + e.LogName
		}
		f.mu.Lock()
		f.largest = max(f.largest, proto.Size(e))
		text, whole := f.splits.Add(e)
		f.mu.Unlock()
		switch p := e.Payload.(type) {
		case *loggingpb.LogEntry_TextPayload:
			if whole {
				f.add(text, ident, e.Timestamp.AsTime())
			}
		case *loggingpb.LogEntry_JsonPayload:
			b, _ := json.Marshal(p.JsonPayload.AsMap())
			f.add(string(b), ident, e.Timestamp.AsTime())
			f.mu.Lock()
			f.structured[ident]++
			f.mu.Unlock()
		}
	}
	return &loggingpb.WriteLogEntriesResponse{}, nil
}

func (f *cloudLogging) DeleteLog(context.Context, *loggingpb.DeleteLogRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

// kubeAPI serves pods as the API server does: a pod by name, and the node's pods listed and
// watched. It can hang (accept, never answer, and its watches go silent) or refuse
// connections, as a control plane in trouble does.
type kubeAPI struct {
	addr string
	pki  *testpki.PKI

	mu       sync.Mutex        // guards every field below
	pods     map[string][]byte // by path, /api/v1/namespaces/<ns>/pods/<name>
	events   []kubeEvent       // every pod added, in resource-version order
	rv       int
	changed  chan struct{}  // closed and replaced on every change
	srv      *http.Server   // nil while refusing
	requests map[string]int // get, list, watch
}

type kubeEvent struct {
	rv  int
	obj []byte
}

// startKubeAPI listens on addr (where the pod's /etc/hosts puts kubernetes.default.svc) with
// a certificate the pod's service-account ca.crt verifies.
func startKubeAPI(t *testing.T, addr string, pki *testpki.PKI) *kubeAPI {
	t.Helper()
	k := &kubeAPI{addr: addr, pki: pki, pods: map[string][]byte{}, changed: make(chan struct{}), requests: map[string]int{}}
	if err := k.listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.setRefusing(true) })
	return k
}

func (k *kubeAPI) listen() error {
	ln, err := net.Listen("tcp", k.addr)
	if err != nil {
		return err
	}
	k.srv = &http.Server{Handler: k, TLSConfig: k.pki.Server}
	go k.srv.Serve(tls.NewListener(ln, k.pki.Server))
	return nil
}

// notifyLocked wakes the watches.
func (k *kubeAPI) notifyLocked() {
	close(k.changed)
	k.changed = make(chan struct{})
}

// setRefusing closes the listener and every connection (true), or listens again (false).
func (k *kubeAPI) setRefusing(refusing bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case refusing && k.srv != nil:
		k.srv.Close()
		k.srv = nil
	case !refusing && k.srv == nil:
		if err := k.listen(); err != nil {
			panic(err)
		}
	}
}

// counts returns how many requests of each kind the API server answered or held.
func (k *kubeAPI) counts() map[string]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return maps.Clone(k.requests)
}

func (k *kubeAPI) addPod(ns, name string, labels, annotations map[string]string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.rv++
	pod := map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{
			"name": name, "namespace": ns, "uid": podUID(ns, name),
			"labels": labels, "annotations": annotations,
			"creationTimestamp": "2026-11-27T00:00:00Z",
			"resourceVersion":   strconv.Itoa(k.rv),
			"ownerReferences":   owners(name),
		},
		"spec": map[string]any{"nodeName": nodeName, "containers": []any{map[string]any{"name": "app", "image": "registry.example/app:1"}}},
		"status": map[string]any{"phase": "Running", "podIP": "10.0.0.7", "containerStatuses": []any{map[string]any{
			"name": "app", "image": "registry.example/app:1", "imageID": "registry.example/app@sha256:00",
			"containerID": "containerd://" + containerID(ns, name), "ready": true,
		}}},
	}
	b, _ := json.Marshal(pod)
	k.pods["/api/v1/namespaces/"+ns+"/pods/"+name] = b
	k.events = append(k.events, kubeEvent{k.rv, b})
	k.notifyLocked()
}

// owners is what a Deployment's pod carries: its ReplicaSet, <deployment>-<hash>, named in
// the pod's name <deployment>-<hash>-<suffix>.
func owners(pod string) []any {
	i := strings.LastIndexByte(pod, '-')
	if i < 0 {
		return nil
	}
	return []any{map[string]any{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": pod[:i], "uid": "00000000-0000-0000-0000-000000000001", "controller": true, "blockOwnerDeletion": true}}
}

func (k *kubeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		http.Error(w, "no token", http.StatusUnauthorized)
		return
	}
	q := r.URL.Query()
	kind := "get"
	if r.URL.Path == "/api/v1/pods" {
		kind = "list"
		if q.Get("watch") == "true" {
			kind = "watch"
		}
		if q.Get("fieldSelector") != "spec.nodeName="+nodeName {
			http.Error(w, "this stand-in serves one node's pods", http.StatusBadRequest)
			return
		}
	}
	k.mu.Lock()
	k.requests[kind]++
	k.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch kind {
	case "get":
		k.mu.Lock()
		b, ok := k.pods[r.URL.Path]
		k.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	case "list":
		k.mu.Lock()
		items := make([]json.RawMessage, 0, len(k.pods))
		for _, e := range k.events {
			items = append(items, e.obj)
		}
		b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"resourceVersion": strconv.Itoa(k.rv)}, "items": items})
		k.mu.Unlock()
		_, _ = w.Write(b)
	case "watch":
		k.watch(w, r)
	}
}

// watch streams ADDED events after the requested resource version until timeoutSeconds.
func (k *kubeAPI) watch(w http.ResponseWriter, r *http.Request) {
	since, _ := strconv.Atoi(r.URL.Query().Get("resourceVersion"))
	secs, _ := strconv.Atoi(r.URL.Query().Get("timeoutSeconds"))
	end := time.After(time.Duration(max(secs, 1)) * time.Second)
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	for {
		k.mu.Lock()
		var out []kubeEvent
		for _, e := range k.events {
			if e.rv > since {
				out = append(out, e)
			}
		}
		changed := k.changed
		k.mu.Unlock()
		for _, e := range out {
			fmt.Fprintf(w, `{"type":"ADDED","object":%s}`+"\n", e.obj)
			since = e.rv
		}
		w.(http.Flusher).Flush()
		select {
		case <-changed:
		case <-end:
			return
		case <-r.Context().Done():
			return
		}
	}
}

// startMetadata answers as GKE's metadata server does for the Cloud Logging output.
func startMetadata(t *testing.T) string { return startMetadataAt(t, "127.0.0.1:0") }

// startMetadataAt is startMetadata listening at addr.
func startMetadataAt(t *testing.T, addr string) string {
	t.Helper()
	attrs := map[string]string{
		"project/project-id":                   "node-harness",
		"instance/attributes/cluster-name":     "harness",
		"instance/attributes/cluster-location": "europe-west1",
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, ok := attrs[strings.TrimPrefix(r.URL.Path, "/computeMetadata/v1/")]
		if r.Header.Get("Metadata-Flavor") != "Google" || !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Metadata-Flavor", "Google")
		_, _ = w.Write([]byte(v))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}
