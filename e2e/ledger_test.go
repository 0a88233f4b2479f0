package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	loggingpb "cloud.google.com/go/logging/apiv2/loggingpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var seqOf = regexp.MustCompile(`ledger seq=(\d+) `)

// liveAt marks a line written to measure lag: its write time, in Unix nanoseconds.
var liveAt = regexp.MustCompile(`live at=(\d+) `)

// counted is what one destination got of the lines seq=0..n-1, by sequence number, and how
// late each live line (liveAt) arrived.
type counted struct {
	mu   sync.Mutex // guards got and lags
	got  map[int]int
	lags []time.Duration
}

func (c *counted) add(text string) {
	if m := seqOf.FindStringSubmatch(text); m != nil {
		n, _ := strconv.Atoi(m[1])
		c.mu.Lock()
		c.got[n]++
		c.mu.Unlock()
	} else if m := liveAt.FindStringSubmatch(text); m != nil {
		at, _ := strconv.ParseInt(m[1], 10, 64)
		c.mu.Lock()
		c.lags = append(c.lags, time.Since(time.Unix(0, at)))
		c.mu.Unlock()
	}
}

// lagQuantiles is the live lines' lag at the median, the 99th percentile and the most, and
// how many arrived.
func (c *counted) lagQuantiles() (p50, p99, most time.Duration, n int) {
	c.mu.Lock()
	lags := slices.Clone(c.lags)
	c.mu.Unlock()
	if len(lags) == 0 {
		return 0, 0, 0, 0
	}
	slices.Sort(lags)
	return lags[len(lags)/2], lags[len(lags)*99/100], lags[len(lags)-1], len(lags)
}

// of is how many of lines 0..n-1 arrived, were lost, and arrived more than once (counting
// each extra copy).
func (c *counted) of(n int) (arrived, lost, twice int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := 0; i < n; i++ {
		switch k := c.got[i]; {
		case k == 0:
			lost++
		default:
			arrived++
			twice += k - 1
		}
	}
	return arrived, lost, twice
}

// syslogCounter is a TCP syslog receiver (lf framing) counting the lines by sequence number.
// Its connections read nothing until release is closed (nil: at once): a Papertrail that
// accepts and stalls.
func syslogCounter(t *testing.T, release <-chan struct{}) (*counted, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	c := &counted{got: map[int]int{}}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				if release != nil {
					<-release
				}
				sc := bufio.NewScanner(conn)
				sc.Buffer(make([]byte, 1<<20), 1<<20)
				for sc.Scan() {
					c.add(sc.Text())
				}
			}()
		}
	}()
	return c, ln.Addr().String()
}

// loggingCounter is a Cloud Logging service on loopback that refuses every request
// (UNAVAILABLE) until up is set, then counts the entries' lines by sequence number.
type loggingCounter struct {
	loggingpb.UnimplementedLoggingServiceV2Server
	counted
	up atomic.Bool
}

func startLoggingCounter(t *testing.T) (*loggingCounter, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &loggingCounter{counted: counted{got: map[int]int{}}}
	srv := grpc.NewServer()
	loggingpb.RegisterLoggingServiceV2Server(srv, l)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return l, ln.Addr().String()
}

func (l *loggingCounter) WriteLogEntries(_ context.Context, req *loggingpb.WriteLogEntriesRequest) (*loggingpb.WriteLogEntriesResponse, error) {
	if !l.up.Load() {
		return nil, status.Error(codes.Unavailable, "down")
	}
	for _, e := range req.Entries {
		l.add(e.GetTextPayload())
	}
	return &loggingpb.WriteLogEntriesResponse{}, nil
}

// TestEngineLedger: Papertrail up, Cloud Logging down (refusing every request), the engine
// stopped twice (SIGTERM) while a pod's log grows at 1,000 lines a second, a new engine on
// the same storage, tail DB and ledgers each time. Fluent Bit keeps every chunk for Cloud
// Logging and, after each restart, routes it to both outputs again: with the ledger every
// line reaches Papertrail once; without it, the stored chunks arrive there again at every
// restart. Then Cloud Logging comes back and gets every line, and the last engine is
// reloaded (SIGHUP). A ledger deleted or corrupted
// between two runs costs duplicates, never a line.
func TestEngineLedger(t *testing.T) {
	bin := fluentBit(t)
	for _, tc := range []struct {
		name   string
		ledger bool
		// between runs 2 and 3, done to the ledger files
		harm func(t *testing.T, files []string)
		// and what the third engine then says of its ledgers
		says string
	}{
		{name: "with the ledger", ledger: true},
		{name: "without a ledger"},
		{name: "ledger deleted", ledger: true, says: `(?m)^.*syslog-[0-9a-f]+\.ledger: 0 chunks confirmed$`, harm: func(t *testing.T, files []string) {
			for _, f := range files {
				if err := os.Remove(f); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{name: "ledger corrupted", ledger: true, says: `syslog-[0-9a-f]+\.ledger cannot be trusted`, harm: func(t *testing.T, files []string) {
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				for i := len(b) / 8; i < len(b); i += 7 {
					b[i] ^= 0x5A
				}
				if err := os.WriteFile(f, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const lines, rate = 12000, 1000
			dir := t.TempDir()
			papertrail, ptAddr := syslogCounter(t, nil)
			cloud, clAddr := startLoggingCounter(t)
			ledger := []string{}
			if tc.ledger {
				ledger = []string{"ledger_dir " + filepath.Join(dir, "ledger")}
			}
			conf := tailConf(t, dir, []string{"Hot_Reload On", "scheduler.base 1", "scheduler.cap 2", "storage.path " + dir + "/storage"},
				[]string{"DB " + dir + "/tail.db", "storage.type filesystem", "Refresh_Interval 1"},
				append([]string{"Alias papertrail", "Workers 2", "Retry_Limit no_limits", "sink syslog", "address tcp://" + ptAddr, "framing lf"}, ledger...))
			f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(f, "[OUTPUT]\n    Name trailstack\n    Alias cloud-logging\n    Match *\n    Workers 2\n    Retry_Limit no_limits\n    exceptions none\n"+
				"    sink stackdriver\n    endpoint %s\n    endpoint_plaintext on\n    project_id blog-prod\n    cluster_name blog\n    cluster_location europe-west1\n", clAddr)
			for _, k := range ledger {
				fmt.Fprintf(f, "    %s\n", k)
			}
			f.Close()
			t.Setenv("NODE_NAME", "node-1")

			// The pod: its runtime writes CRI lines, rate a second.
			logf, err := os.Create(filepath.Join(dir, "app-1_shop_app-0123456789abcdef.log"))
			if err != nil {
				t.Fatal(err)
			}
			written := make(chan struct{})
			go func() {
				defer close(written)
				defer logf.Close()
				tick := time.NewTicker(100 * time.Millisecond)
				defer tick.Stop()
				for i := 0; i < lines; {
					<-tick.C
					var b []byte
					for k := 0; k < rate/10 && i < lines; k, i = k+1, i+1 {
						b = fmt.Appendf(b, "%s stdout F ledger seq=%d GET /api/v1/items 200 %070d\n", time.Now().UTC().Format(time.RFC3339Nano), i, i)
					}
					if _, err := logf.Write(b); err != nil {
						return
					}
				}
			}()

			run := func(n int) {
				logPath := filepath.Join(dir, fmt.Sprintf("engine-%d.txt", n))
				cmd := startEngine(t, bin, conf, logPath)
				time.Sleep(4 * time.Second)
				_ = cmd.Process.Signal(syscall.SIGTERM)
				_ = cmd.Wait()
			}
			run(1)
			run(2)
			ledgers, _ := filepath.Glob(filepath.Join(dir, "ledger", "*.ledger"))
			if tc.ledger && len(ledgers) != 2 {
				t.Fatalf("ledger files %v, want one per output", ledgers)
			}
			if tc.harm != nil {
				tc.harm(t, ledgers)
			}
			logPath := filepath.Join(dir, "engine-3.txt")
			last := startEngine(t, bin, conf, logPath)
			<-written
			deadline := time.Now().Add(60 * time.Second)
			for {
				if _, lost, _ := papertrail.of(lines); lost == 0 || time.Now().After(deadline) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if a, _, _ := cloud.of(lines); a != 0 {
				t.Fatalf("Cloud Logging was down, yet %d lines arrived there", a)
			}
			cloud.up.Store(true)
			for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
				if _, lost, _ := cloud.of(lines); lost == 0 {
					break
				}
			}
			// A hot reload (Fluent Bit waits for its tasks first, so it comes once both
			// destinations are up): new instances in the same process take over the ledgers
			// the old ones closed. Then a moment for anything sent twice to arrive too.
			_ = last.Process.Signal(syscall.SIGHUP)
			waitFor(t, logPath, "initialised: sink=", 4)
			time.Sleep(3 * time.Second)
			// Counted once the last engine has sent both destinations all it holds: at its
			// start it replays every stored chunk to both.
			ca, cl, ct := cloud.of(lines)
			pa, pl, pt := papertrail.of(lines)
			_ = last.Process.Signal(syscall.SIGTERM)
			_ = last.Wait()
			engineLog, _ := os.ReadFile(logPath)
			t.Logf("%s: Papertrail %d arrived, %d lost, %d twice; Cloud Logging (down, then back) %d arrived, %d lost, %d twice",
				tc.name, pa, pl, pt, ca, cl, ct)
			if pl != 0 || cl != 0 {
				t.Errorf("lines lost:\n%s", tailLines(engineLog, 30))
			}
			if ct != 0 {
				t.Errorf("Cloud Logging got %d lines twice", ct)
			}
			switch {
			case tc.name == "with the ledger" && pt != 0:
				t.Errorf("with the ledger, %d lines arrived twice at Papertrail", pt)
			case tc.name == "without a ledger" && pt == 0:
				t.Errorf("without a ledger no line arrived twice: the restarts did not replay what this test means them to")
			case tc.says != "" && !regexp.MustCompile(tc.says).Match(engineLog):
				t.Errorf("the engine's log does not say %q of the ledger:\n%s", tc.says, tailLines(engineLog, 30))
			}
			if n := bytes.Count(engineLog, []byte("chunks confirmed")); tc.ledger && (n != 4 || bytes.Contains(engineLog, []byte("no ledger"))) {
				t.Errorf("each output did not open its ledger at the start and at the reload (%d opened):\n%s", n, tailLines(engineLog, 40))
			}
			if tc.ledger && tc.harm == nil && !regexp.MustCompile(`skipped \d+ records of \d+ chunks`).Match(engineLog) {
				t.Errorf("the last engine did not say it skipped a replay:\n%s", tailLines(engineLog, 30))
			}
			if t.Failed() {
				for n := 1; n <= 3; n++ {
					b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("engine-%d.txt", n)))
					for _, l := range regexp.MustCompile(`(?m)^.*(skipped|chunks confirmed|cannot be trusted|exited after).*$`).FindAll(b, -1) {
						t.Logf("engine %d: %s", n, l)
					}
				}
			}
		})
	}
}

func tailLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
