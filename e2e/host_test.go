package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/trailstack/trailstack/record"
	"github.com/trailstack/trailstack/testkit/fixture"
	"github.com/trailstack/trailstack/testkit/testsink"
)

var soPath, hostPath string

// TestMain builds the test .so and flbhost unless the Makefile already did
// (TRAILSTACK_TEST_SO and FLBHOST).
func TestMain(m *testing.M) {
	soPath, hostPath = os.Getenv("TRAILSTACK_TEST_SO"), os.Getenv("FLBHOST")
	if soPath == "" || hostPath == "" {
		dir, err := os.MkdirTemp("", "e2e")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer os.RemoveAll(dir)
		soPath, hostPath = filepath.Join(dir, "out_trailstack_test.so"), filepath.Join(dir, "flbhost")
		for _, args := range [][]string{
			{"go", "build", "-buildmode=c-shared", "-tags", "trailstack_testsink", "-o", soPath, "./plugin"},
			{"gcc", "-O2", "-Wall", "-o", hostPath, "tools/flbhost/flbhost.c", "-ldl", "-lpthread"},
		} {
			cmd := exec.Command(args[0], args[1:]...)
			cmd.Dir = ".."
			cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "%v: %v\n%s", args, err, out)
				os.Exit(1)
			}
		}
	}
	os.Exit(m.Run())
}

type run struct {
	stdout, stderr string
	code           int
}

// host runs the C host. Its instances deliver the fixtures line by line (exceptions none),
// so that what arrived compares with the chunks' records one to one, unless a test sets
// exceptions itself (TestHostFixtureTraceJoined).
func host(t *testing.T, args ...string) run {
	t.Helper()
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "exceptions=") }) {
		var with []string
		for _, a := range args {
			with = append(with, a)
			if a == "-i" {
				with = append(with, "-o", "exceptions=none")
			}
		}
		args = with
	}
	cmd := exec.Command(hostPath, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return run{out.String(), errb.String(), code}
}

func fixtures(t *testing.T, set string) []string { return fixture.Files(t, set) }

// expected decodes the chunks in Go and renders the lines the test sink must have written.
func expected(t *testing.T, files []string) []string {
	t.Helper()
	var lines []string
	for _, f := range files {
		b := fixture.Batch(t, f)
		for i := range b.Records {
			lines = append(lines, testsink.Line(b.Tag, &b.Records[i]))
		}
	}
	return lines
}

func times(lines []string, n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, lines...)
	}
	return out
}

// arrived reads what the test sink wrote.
func arrived(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

func sameLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	g, w := append([]string(nil), got...), append([]string(nil), want...)
	sort.Strings(g)
	sort.Strings(w)
	if len(g) != len(w) {
		t.Fatalf("%s: %d lines arrived, want %d", what, len(g), len(w))
	}
	for i := range g {
		if g[i] != w[i] {
			t.Fatalf("%s: line %q arrived, want %q", what, g[i], w[i])
		}
	}
}

var totalRe = regexp.MustCompile(`total records_offered=(\d+) records_ok=(\d+)`)

func totals(t *testing.T, r run) (offered, ok int) {
	t.Helper()
	m := totalRe.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no totals in host output:\n%s\n%s", r.stdout, r.stderr)
	}
	offered, _ = strconv.Atoi(m[1])
	ok, _ = strconv.Atoi(m[2])
	return offered, ok
}

// The C host counts the records of every fixture chunk itself, independently of the plugin,
// and of three generated chunks of 2 MB.
func TestHostCountsEveryFixture(t *testing.T) {
	big, bigRecords := fixture.WriteShapeChunks(t, t.TempDir(), "kube", 3, 2<<20)
	sets := map[string][]string{"kube-merged": fixtures(t, "kube-merged"), "kube-raw": fixtures(t, "kube-raw"), "plain": fixtures(t, "plain"), "generated": big}
	want := map[string]int{"kube-merged": 206, "kube-raw": 206, "plain": 209, "generated": bigRecords}
	for set, n := range want {
		r := host(t, append([]string{"-q", soPath, "-i", "-o", "sink=null", "--"}, sets[set]...)...)
		if r.code != 0 {
			t.Fatalf("%s: exit %d\n%s\n%s", set, r.code, r.stdout, r.stderr)
		}
		if offered, ok := totals(t, r); offered != n || ok != n {
			t.Errorf("%s: host counted %d records, %d OK; want %d", set, offered, ok, n)
		}
		if !strings.Contains(r.stderr, fmt.Sprintf("%d records delivered", n)) {
			t.Errorf("%s: the plugin did not report %d records:\n%s", set, n, r.stderr)
		}
	}
}

// Two instances, each its own destination, fed by two threads: every record of every
// fixture set arrives at both, exactly once.
func TestHostFixturesArriveAtEveryInstance(t *testing.T) {
	for _, set := range []string{"kube-merged", "kube-raw", "plain"} {
		t.Run(set, func(t *testing.T) {
			files := fixtures(t, set)
			dir := t.TempDir()
			a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
			r := host(t, append([]string{"-t", "2", soPath,
				"-i", "-o", "sink=test", "-o", "test_out=" + a,
				"-i", "-o", "Sink=TEST", "-o", "Test_Out=" + b, "--"}, files...)...)
			if r.code != 0 {
				t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			want := expected(t, files)
			sameLines(t, "instance 0", arrived(t, a), want)
			sameLines(t, "instance 1", arrived(t, b), want)
			for _, name := range []string{"trailstack.0", "trailstack.1"} {
				if !strings.Contains(r.stderr, "[output:trailstack:"+name+"] initialised: sink=\"test\"") {
					t.Errorf("no init line for %s:\n%s", name, r.stderr)
				}
			}
		})
	}
}

// Many instances and threads at once, each chunk flushed several times: the counts are exact.
func TestHostConcurrentInstancesAndWorkers(t *testing.T) {
	dir := t.TempDir()
	files, _ := fixture.WriteShapeChunks(t, t.TempDir(), "kube", 3, 2<<20)
	args := []string{"-q", "-t", "4", "-n", "3", soPath}
	for i := 0; i < 3; i++ {
		args = append(args, "-i", "-o", "sink=test", "-o", fmt.Sprintf("test_out=%s/%d", dir, i))
	}
	r := host(t, append(append(args, "--"), files...)...)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	want := times(expected(t, files), 3)
	for i := 0; i < 3; i++ {
		sameLines(t, fmt.Sprintf("instance %d", i), arrived(t, fmt.Sprintf("%s/%d", dir, i)), want)
	}
}

// A panic inside a sink answers RETRY, is logged, and the process and other chunks go on.
func TestHostPanicInSinkAnswersRetry(t *testing.T) {
	files := fixtures(t, "kube-merged")
	r, out := hostTestSink(t, files, "3", "test_panic_tag=grafana")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1 (a chunk never delivered)\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if n := strings.Count(r.stdout, "chunk-002.msgpack attempt="); n != 3 {
		t.Errorf("grafana chunk flushed %d times, want 3", n)
	}
	if strings.Count(r.stdout, "rc=2 RETRY") != 3 || strings.Count(r.stdout, "rc=1 OK") != 2 {
		t.Errorf("answers:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "panic while flushing chunk") || !strings.Contains(r.stderr, "asked to panic") {
		t.Errorf("panic not logged:\n%s", r.stderr)
	}
	if !strings.Contains(r.stdout, "exit instance=0 rc=1") {
		t.Errorf("instance did not exit cleanly:\n%s", r.stdout)
	}
	sameLines(t, "delivered", arrived(t, out), expected(t, []string{files[0], files[2]}))
}

// RETRY is answered before anything is written; the re-flush delivers every record once.
func TestHostRetryThenDeliver(t *testing.T) {
	files := fixtures(t, "kube-merged")
	r, out := hostTestSink(t, files, "5", "test_retry_first=2")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if strings.Count(r.stdout, "rc=2 RETRY") != 2 || strings.Count(r.stdout, "rc=1 OK") != 3 {
		t.Errorf("answers:\n%s", r.stdout)
	}
	sameLines(t, "delivered", arrived(t, out), expected(t, files))
}

// A hot reload exits every instance and initialises new ones in the same process.
func TestHostHotReload(t *testing.T) {
	files := fixtures(t, "kube-merged")
	out := filepath.Join(t.TempDir(), "out")
	r := host(t, append([]string{"-R", "2", soPath, "-i", "-o", "sink=test", "-o", "test_out=" + out, "-i", "-o", "sink=null", "--"}, files...)...)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if n := strings.Count(r.stdout, "registered plugin=trailstack"); n != 3 {
		t.Errorf("registered %d times, want 3", n)
	}
	if n := strings.Count(r.stderr, "[output:trailstack:trailstack.0] initialised"); n != 3 {
		t.Errorf("trailstack.0 initialised %d times, want 3 (names restart after a reload)", n)
	}
	if n := strings.Count(r.stderr, "exited after 3 flushes: 206 records delivered"); n != 6 {
		t.Errorf("%d instances exited with their own counts, want 6:\n%s", n, r.stderr)
	}
	sameLines(t, "delivered", arrived(t, out), times(expected(t, files), 3))
}

// A corrupt chunk: the records before the corruption are delivered, the chunk answers ERROR
// with the reason logged, and other chunks are untouched.
func TestHostCorruptChunk(t *testing.T) {
	files := fixtures(t, "kube-merged")
	chunk, err := os.ReadFile(files[1])
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "truncated.msgpack")
	if err := os.WriteFile(bad, chunk[:len(chunk)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	r := host(t, soPath, "-i", "-o", "sink=test", "-o", "test_out="+out, "--", files[0], bad)
	if r.code != 1 || !strings.Contains(r.stdout, "truncated.msgpack attempt=1 rc=0 ERROR") {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "corrupt chunk: event at byte") {
		t.Errorf("no reason logged:\n%s", r.stderr)
	}
	// The prefix that could be read is what arrived besides the first chunk.
	var prefix []string
	d := record.NewDecoder(chunk[:len(chunk)/2])
	for d.Next() {
		prefix = append(prefix, "")
	}
	got := arrived(t, out)
	if want := 80 + len(prefix); len(got) != want || len(prefix) == 0 {
		t.Fatalf("%d lines arrived, want %d", len(got), want)
	}
}

// Config errors fail Init with a line naming the key, and the host reports the failure.
func TestHostInitFailsOnBadConfig(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-o", "shutdown_timeout=5x", "-o", "sink=null"}, `config key "shutdown_timeout": invalid value "5x"`},
		{[]string{"-o", "sink=papertrial"}, `config key "sink": invalid value "papertrial"`},
		{nil, `config key "sink" is required`},
		{[]string{"-o", "sink=test"}, `config key "test_out": required`},
	} {
		r := host(t, append(append([]string{soPath, "-i"}, c.args...), "--")...)
		if r.code != 2 || !strings.Contains(r.stdout, "init instance=0 rc=0") {
			t.Errorf("%v: exit %d\n%s", c.args, r.code, r.stdout)
		}
		if !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: log lacks %q:\n%s", c.args, c.want, r.stderr)
		}
	}
}

// hostTestSink runs the C host over files, each flushed up to attempts times, into one
// instance of the test sink with its key set; out is where the sink writes what arrived.
func hostTestSink(t *testing.T, files []string, attempts, key string) (r run, out string) {
	out = filepath.Join(t.TempDir(), "out")
	r = host(t, append([]string{"-r", attempts, "-w", "1", soPath,
		"-i", "-o", "sink=test", "-o", "test_out=" + out, "-o", key, "--"}, files...)...)
	return r, out
}

// With exceptions on (the default), the fixtures' Java traces (written by the api container
// on stderr, three lines each) arrive as one record each, their lines joined, and every other
// line as it was.
func TestHostFixtureTraceJoined(t *testing.T) {
	files := fixtures(t, "kube-merged")
	out := filepath.Join(t.TempDir(), "out")
	r := host(t, append([]string{soPath, "-i", "-o", "sink=test", "-o", "test_out=" + out, "-o", "exceptions=all", "--"}, files...)...)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	logs, _ := filepath.Glob(filepath.Join(fixture.ContainerLogs(), "api-*.log"))
	raw, err := os.ReadFile(logs[0])
	if err != nil {
		t.Fatal(err)
	}
	// The traces as the container wrote them: CRI lines "time stream F text".
	var traces []string
	cri := strings.Split(strings.TrimSpace(string(raw)), "\n")
	for i, l := range cri {
		if f := strings.SplitN(l, " ", 4); len(f) == 4 && strings.HasPrefix(f[3], "Exception in thread") {
			var lines []string
			for _, next := range cri[i : i+3] {
				lines = append(lines, strings.SplitN(next, " ", 4)[3])
			}
			traces = append(traces, strconv.Quote(strings.Join(lines, "\n")))
		}
	}
	got := arrived(t, out)
	all := strings.Join(got, "")
	for _, tr := range traces {
		if strings.Count(all, "\t"+tr+"\n") != 1 {
			t.Errorf("trace %s did not arrive once, whole", tr)
		}
	}
	if want := len(expected(t, files)) - 2*len(traces); len(traces) == 0 || len(got) != want {
		t.Errorf("%d records arrived, want %d (%d traces of three lines joined)", len(got), want, len(traces))
	}
}
