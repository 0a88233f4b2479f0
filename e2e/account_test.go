package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trailstack/trailstack/testkit/fixture"
)

// pod is a container log as the kubelet lays it out: the file in the pod's directory and
// the link tail reads.
type pod struct {
	link, file string
	f          *os.File
	seq        int
}

func newPod(t *testing.T, dir, name string) *pod {
	t.Helper()
	podDir := filepath.Join(dir, "pods", "shop_"+name+"_0b5e7d2c", "app")
	if err := os.MkdirAll(podDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "containers"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := &pod{file: filepath.Join(podDir, "0.log"), link: filepath.Join(dir, "containers", name+"_shop_app-0123456789abcdef.log")}
	f, err := os.Create(p.file)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	p.f = f
	if err := os.Symlink(p.file, p.link); err != nil {
		t.Fatal(err)
	}
	return p
}

// write appends n CRI lines, rate a second, numbered on from the last.
func (p *pod) write(t *testing.T, n, rate int) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for end := p.seq + n; p.seq < end; {
		<-tick.C
		var b []byte
		for k := 0; k < rate/10 && p.seq < end; k, p.seq = k+1, p.seq+1 {
			b = fmt.Appendf(b, "%s stdout F ledger seq=%d GET /api/v1/items 200 %070d\n", time.Now().UTC().Format(time.RFC3339Nano), p.seq, p.seq)
		}
		if _, err := p.f.Write(b); err != nil {
			t.Fatal(err)
		}
	}
}

// live writes rate lines a second, each carrying its write time (liveAt), until stop is
// closed; it returns when it stopped.
func (p *pod) live(t *testing.T, rate int, stop <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			var b []byte
			for k := 0; k < rate/10; k++ {
				now := time.Now()
				b = fmt.Appendf(b, "%s stdout F live at=%d GET /api/v1/items 200\n", now.UTC().Format(time.RFC3339Nano), now.UnixNano())
			}
			if _, err := p.f.Write(b); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	return done
}

// rotate does what the kubelet does: the file is renamed and a new one opened under its
// name. It returns the old file, still open.
func (p *pod) rotate(t *testing.T) *os.File {
	t.Helper()
	old := p.f
	if err := os.Rename(p.file, p.file+"."+time.Now().UTC().Format("20060102-150405")); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(p.file)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	p.f = f
	return old
}

// lostSeries reads trailstack_records_lost_total of one sink, by cause.
func lostSeries(t *testing.T, url, sink string) map[string]int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]int{}
	re := regexp.MustCompile(`(?m)^trailstack_records_lost_total\{cause="(\w+)",instance="[^"]*",sink="` + sink + `"\} (\d+)$`)
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		n, _ := strconv.Atoi(m[2])
		out[m[1]] += n
	}
	re = regexp.MustCompile(`(?m)^trailstack_records_repaired_total\{instance="[^"]*",sink="` + sink + `"\} (\d+)$`)
	if m := re.FindStringSubmatch(string(b)); m != nil {
		out["repaired"], _ = strconv.Atoi(m[1])
	}
	if len(out) == 0 {
		t.Fatalf("no trailstack_records_lost_total for sink %s at %s:\n%s", sink, url, b)
	}
	return out
}

// accountConf is the tail input and the two outputs of these tests, as the shipped
// configuration has them: tail's offset_key, and each output comparing the logs with what
// its destination confirmed. With repair, lost lines go back to the engine through a tail
// input of their own, tagged for the one output that missed them.
func accountConf(t *testing.T, dir, ptAddr, clAddr string, repair bool, tailKeys, clKeys []string) string {
	t.Helper()
	account := []string{"account_logs " + dir + "/containers", "storage_path " + dir + "/storage",
		"account_interval 1s", "account_grace 3s", "account_rotate_wait 5s", "metrics_listen 127.0.0.1:0"}
	conf := tailConf(t, dir, []string{"scheduler.base 1", "scheduler.cap 2", "storage.path " + dir + "/storage", "storage.max_chunks_up 8"},
		append([]string{"DB " + dir + "/tail.db", "storage.type filesystem", "Refresh_Interval 1", "Rotate_Wait 5",
			"Offset_Key trailstack_offset", "Tag_Regex (?<file>[^/]+)$"}, tailKeys...),
		append([]string{"Alias papertrail", "Workers 2", "Retry_Limit no_limits", "sink syslog", "address tcp://" + ptAddr, "framing lf"}, account...))
	b, _ := os.ReadFile(conf)
	b = regexp.MustCompile(`(?m)^    Path .*$`).ReplaceAll(b, []byte("    Path "+dir+"/containers/*.log"))
	b = regexp.MustCompile(`(?m)^    Tag kube\.\*$`).ReplaceAll(b, []byte("    Tag kube.var.log.containers.<file>"))
	b = fmt.Appendf(b, "[OUTPUT]\n    Name trailstack\n    Alias cloud-logging\n    Match *\n    Workers 2\n    Retry_Limit no_limits\n    exceptions none\n"+
		"    sink stackdriver\n    endpoint %s\n    endpoint_plaintext on\n    project_id blog-prod\n    cluster_name blog\n    cluster_location europe-west1\n", clAddr)
	for _, k := range append(clKeys, account[:5]...) {
		b = fmt.Appendf(b, "    %s\n", k)
	}
	if repair {
		for _, out := range []string{"papertrail", "cloud-logging"} {
			b = regexp.MustCompile(`(?m)^    Match \*\n    Alias `+out+`$|^    Alias `+out+`\n    Match \*$`).ReplaceAll(b,
				[]byte("    Alias "+out+"\n    Match_Regex ^(kube|repair\\."+out+")\\.\n    repair_dir "+dir+"/repair/"+out))
		}
		b = fmt.Appendf(b, "[INPUT]\n    Name tail\n    Path %[1]s/repair/*/*.log\n    Tag repair.<out>.<file>\n    Tag_Regex (?<out>[^/]+)/(?<file>[^/]+)$\n"+
			"    multiline.parser cri\n    Read_from_Head On\n    DB %[1]s/repair.db\n    storage.type filesystem\n    Refresh_Interval 1\n    Offset_Key trailstack_offset\n", dir)
	}
	if err := os.WriteFile(conf, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NODE_NAME", "node-1")
	return conf
}

// settle waits until a destination has all n lines or its count stopped changing for 10 s
// (the engine's retries come within 2 s).
func settle(c *counted, n int) (arrived, lost, twice int) {
	last, since := -1, time.Now()
	for deadline := time.Now().Add(120 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		arrived, lost, twice = c.of(n)
		if lost == 0 {
			break
		}
		if arrived != last {
			last, since = arrived, time.Now()
		} else if time.Since(since) > 10*time.Second {
			break
		}
	}
	return arrived, lost, twice
}

// waitLost polls the lost series until its total reaches want or a while passes, and
// returns it.
func waitLost(t *testing.T, url, sink string, want int) map[string]int {
	t.Helper()
	var got map[string]int
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
		got = lostSeries(t, url, sink)
		total := 0
		for _, n := range got {
			total += n
		}
		if total >= want && time.Now().After(deadline.Add(-20*time.Second)) || time.Now().After(deadline) {
			return got
		}
	}
}

// checkAccount compares what a destination missed with what its output counted: every line
// it missed counted as lost by cause, none counted that it got; with repair, nothing
// missed and the fault shown by what was repaired.
func checkAccount(t *testing.T, name string, missed, twice int, counted map[string]int, cause string, repair, hit bool) {
	t.Helper()
	if twice != 0 {
		t.Errorf("%s got %d lines twice", name, twice)
	}
	lost := 0
	for _, c := range []string{"buffer_cap", "not_buffered", "rotated_unread", "too_long"} {
		lost += counted[c]
	}
	switch {
	case repair && (missed != 0 || lost != 0):
		t.Errorf("%s: %d lines missed with repair on; its output counted %v", name, missed, counted)
	case repair && hit && counted["repaired"] == 0:
		t.Errorf("%s: nothing repaired: the test did not make the loss it repairs (%v)", name, counted)
	case repair && !hit && counted["repaired"] != 0:
		t.Errorf("%s lost nothing, yet %d lines were repaired for it", name, counted["repaired"])
	case !repair && hit && missed == 0:
		t.Errorf("%s missed nothing: the test did not make the loss it counts", name)
	case !repair && (counted[cause] != missed || lost != missed):
		t.Errorf("%s missed %d lines (%s); its output counted %v", name, missed, cause, counted)
	}
}

// TestEngineCountsWhatTheEngineLost makes the real engine lose lines and compares what each
// output counts as lost with what its destination is missing, line by line; then again with
// the lost lines repaired from the logs, where nothing may be missing or arrive twice.
func TestEngineCountsWhatTheEngineLost(t *testing.T) {
	bin := fluentBit(t)
	for _, repair := range []bool{false, true} {
		suffix := ""
		if repair {
			suffix = " repaired"
		}

		// Cloud Logging refuses every request while a pod writes; its output's queue is
		// capped at 1M, so the engine evicts its oldest chunks. Papertrail, beside it,
		// takes every line: it lost nothing and must say so.
		t.Run("buffer cap"+suffix, func(t *testing.T) {
			const lines = 30000
			dir := t.TempDir()
			papertrail, ptAddr := syslogCounter(t, nil)
			cloud, clAddr := startLoggingCounter(t)
			conf := accountConf(t, dir, ptAddr, clAddr, repair, nil, []string{"storage.total_limit_size 1M"})
			p := newPod(t, dir, "app-1")
			logPath := filepath.Join(dir, "engine.txt")
			cmd := startEngine(t, bin, conf, logPath)
			url := metricsURL(t, logPath)
			p.write(t, lines, 3000)
			time.Sleep(3 * time.Second)
			// Another pod logs on while Cloud Logging drains (and, with repair, while the
			// evicted lines are repaired): how late its lines arrive is what the repair
			// costs live lines.
			stopLive := make(chan struct{})
			lived := newPod(t, dir, "live-1").live(t, 300, stopLive)
			cloud.up.Store(true)
			ca, cl, ct := settle(&cloud.counted, lines)
			pa, pl, pt := settle(papertrail, lines)
			close(stopLive)
			<-lived
			waitLost(t, url, "stackdriver", cl)
			time.Sleep(5 * time.Second) // a pass or two more: nothing else may be counted
			clLost, ptLost := lostSeries(t, url, "stackdriver"), lostSeries(t, url, "syslog")
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
			engineLog, _ := os.ReadFile(logPath)
			t.Logf("Cloud Logging: %d arrived, %d lost, %d twice; counted %v", ca, cl, ct, clLost)
			t.Logf("Papertrail: %d arrived, %d lost, %d twice; counted %v", pa, pl, pt, ptLost)
			p50, p99, most, n := cloud.lagQuantiles()
			t.Logf("Cloud Logging: a live pod's %d lines meanwhile, lag p50 %v, p99 %v, most %v", n, p50, p99, most)
			checkAccount(t, "Cloud Logging", cl, ct, clLost, "buffer_cap", repair, true)
			checkAccount(t, "Papertrail", pl, pt, ptLost, "", repair, false)
			says := `lost \d+ lines of pod shop/app-1 container app \(.*0\.log bytes \d+-\d+\): the engine evicted`
			if repair {
				says = `repairing \d+ lines of pod shop/app-1 container app \(.*0\.log bytes \d+-\d+\), read back from the log for tail: the engine evicted`
			}
			if !regexp.MustCompile(says).Match(engineLog) {
				t.Errorf("no log line names the pod, file and range:\n%s", tailLines(engineLog, 30))
			}
		})

		// The buffer's filesystem fills for a few seconds while a pod writes: tail reads on
		// and no chunk can be stored. Both outputs lose the same lines, and each counts them.
		t.Run("disk full"+suffix, func(t *testing.T) {
			if err := mountable(); err != nil {
				fixture.Need(t, "root to mount a tmpfs: %v", err)
			}
			const lines = 12000
			dir := t.TempDir()
			storage := filepath.Join(dir, "storage")
			if err := os.MkdirAll(storage, 0o755); err != nil {
				t.Fatal(err)
			}
			if b, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", storage).CombinedOutput(); err != nil {
				t.Fatalf("mount: %v %s", err, b)
			}
			t.Cleanup(func() { _ = exec.Command("umount", "-l", storage).Run() })
			papertrail, ptAddr := syslogCounter(t, nil)
			cloud, clAddr := startLoggingCounter(t)
			cloud.up.Store(true)
			conf := accountConf(t, dir, ptAddr, clAddr, repair, nil, nil)
			p := newPod(t, dir, "app-2")
			logPath := filepath.Join(dir, "engine.txt")
			cmd := startEngine(t, bin, conf, logPath)
			url := metricsURL(t, logPath)
			p.write(t, lines/3, 2000)
			filler := filepath.Join(storage, "filler")
			_ = exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=64k").Run() // ends with ENOSPC
			p.write(t, lines/3, 2000)
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			p.write(t, lines/3, 2000)
			ca, cl, ct := settle(&cloud.counted, lines)
			pa, pl, pt := settle(papertrail, lines)
			waitLost(t, url, "syslog", pl)
			time.Sleep(5 * time.Second)
			clLost, ptLost := lostSeries(t, url, "stackdriver"), lostSeries(t, url, "syslog")
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
			t.Logf("Cloud Logging: %d arrived, %d lost, %d twice; counted %v", ca, cl, ct, clLost)
			t.Logf("Papertrail: %d arrived, %d lost, %d twice; counted %v", pa, pl, pt, ptLost)
			checkAccount(t, "Papertrail", pl, pt, ptLost, "not_buffered", repair, true)
			checkAccount(t, "Cloud Logging", cl, ct, clLost, "not_buffered", repair, true)
		})
	}
}

// TestEngineCountsLinesTailNeverReads: a line longer than tail's buffer_max_size, which
// tail skips, and lines a rotated file got after tail let it go (rotate_wait): the lines a
// starved agent leaves behind.
func TestEngineCountsLinesTailNeverReads(t *testing.T) {
	bin := fluentBit(t)
	dir := t.TempDir()
	papertrail, ptAddr := syslogCounter(t, nil)
	cloud, clAddr := startLoggingCounter(t)
	cloud.up.Store(true)
	conf := accountConf(t, dir, ptAddr, clAddr, false, []string{"Buffer_Chunk_Size 8k", "Buffer_Max_Size 8k", "Skip_Long_Lines On"}, []string{"account_max_line 8k"})
	b, _ := os.ReadFile(conf)
	b = regexp.MustCompile(`(?m)^(    account_grace 3s)$`).ReplaceAll(b, []byte("$1\n    account_max_line 8k"))
	if err := os.WriteFile(conf, b, 0o644); err != nil {
		t.Fatal(err)
	}
	p := newPod(t, dir, "app-3")
	logPath := filepath.Join(dir, "engine.txt")
	cmd := startEngine(t, bin, conf, logPath)
	url := metricsURL(t, logPath)
	long := 0
	for i := 0; i < 20; i++ {
		p.write(t, 100, 1000)
		fmt.Fprintf(p.f, "%s stdout F ledger seq=%d %s\n", time.Now().UTC().Format(time.RFC3339Nano), p.seq, strings.Repeat("x", 20000))
		p.seq, long = p.seq+1, long+1
	}
	old := p.rotate(t)
	p.write(t, 1000, 1000)
	time.Sleep(8 * time.Second) // past rotate_wait: tail let the old file go
	unread := 0
	for i := 0; i < 500; i++ {
		fmt.Fprintf(old, "%s stdout F ledger seq=%d late\n", time.Now().UTC().Format(time.RFC3339Nano), p.seq)
		p.seq, unread = p.seq+1, unread+1
	}
	p.write(t, 1000, 1000)
	lines := p.seq
	ca, cl, ct := settle(&cloud.counted, lines)
	pa, pl, pt := settle(papertrail, lines)
	waitLost(t, url, "syslog", pl)
	time.Sleep(5 * time.Second)
	clLost, ptLost := lostSeries(t, url, "stackdriver"), lostSeries(t, url, "syslog")
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	engineLog, _ := os.ReadFile(logPath)
	t.Logf("%d lines written, %d too long, %d after tail let the rotated file go", lines, long, unread)
	t.Logf("Cloud Logging: %d arrived, %d lost, %d twice; counted lost %v", ca, cl, ct, clLost)
	t.Logf("Papertrail: %d arrived, %d lost, %d twice; counted lost %v", pa, pl, pt, ptLost)
	for _, l := range regexp.MustCompile(`(?m)^.*lost \d+ lines.*$`).FindAll(engineLog, -1) {
		t.Logf("engine: %s", l)
	}
	if pl != long+unread {
		t.Fatalf("Papertrail missed %d lines, not the %d the test meant it to:\n%s", pl, long+unread, tailLines(engineLog, 30))
	}
	for _, c := range []struct {
		name       string
		lost, twic int
		counted    map[string]int
	}{{"Papertrail", pl, pt, ptLost}, {"Cloud Logging", cl, ct, clLost}} {
		if c.counted["too_long"] != long || c.counted["rotated_unread"] != unread || c.counted["buffer_cap"]+c.counted["not_buffered"] != 0 {
			t.Errorf("%s missed %d lines (%d too long, %d unread); its output counted %v", c.name, c.lost, long, unread, c.counted)
		}
		if c.twic != 0 {
			t.Errorf("%s got %d lines twice", c.name, c.twic)
		}
	}
}

// mountable says why this process cannot mount a tmpfs, or nil.
func mountable() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("not root")
	}
	if _, err := exec.LookPath("mount"); err != nil {
		return err
	}
	return nil
}
