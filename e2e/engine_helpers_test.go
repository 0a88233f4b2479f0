package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trailstack/trailstack/testkit/fixture"
)

// fluentBit is the real engine (see fixture.Engine).
func fluentBit(t *testing.T) string { return fixture.Engine(t) }

// copyLogs copies the container logs matching glob into dir, for tail to read, and returns
// their contents.
func copyLogs(t *testing.T, glob, dir string) [][]byte {
	t.Helper()
	logs, _ := filepath.Glob(glob)
	if len(logs) == 0 {
		fixture.Need(t, "no container logs at %s", glob)
	}
	var out [][]byte
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(l)), b, 0o644); err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// startEngine runs bin with the test .so and conf, its output in logPath (not *.log: tail
// would read it), killed when the test ends.
func startEngine(t *testing.T, bin, conf, logPath string) *exec.Cmd {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	cmd := exec.Command(bin, "-e", soPath, "-c", conf)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd
}

// waitFor polls a file that another process writes until what occurs n times: there is
// nothing else to wait on.
func waitFor(t *testing.T, path, what string, n int) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		b, _ := os.ReadFile(path)
		if bytes.Count(b, []byte(what)) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q seen %d times in %s, want %d:\n%s", what, bytes.Count(b, []byte(what)), path, n, b)
		}
	}
}

// goBuild builds a command of this module into dir and returns its path.
func goBuild(t *testing.T, pkg, dir string) string {
	t.Helper()
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// tailConf writes dir/fluent-bit.conf: tail reads dir/*.log from the head with the cri
// parser into one trailstack output. Each of service, input and output is the section's
// further "Key value" lines, as they would be written in the file.
func tailConf(t *testing.T, dir string, service, input, output []string) string {
	t.Helper()
	section := func(name string, keys ...string) string {
		return "[" + name + "]\n    " + strings.Join(keys, "\n    ") + "\n"
	}
	conf := section("SERVICE", append([]string{"Flush 1", "Grace 5", "Log_Level info"}, service...)...) +
		section("INPUT", append([]string{"Name tail", "Tag kube.*", "Path " + dir + "/*.log", "multiline.parser cri", "Read_from_Head On"}, input...)...) +
		section("OUTPUT", append([]string{"Name trailstack", "Match *"}, withExceptionsOff(output)...)...)
	path := filepath.Join(dir, "fluent-bit.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// withExceptionsOff has the output deliver line by line, as the fixtures' records are,
// unless the test sets exceptions itself.
func withExceptionsOff(keys []string) []string {
	for _, k := range keys {
		if strings.HasPrefix(strings.ToLower(k), "exceptions ") {
			return keys
		}
	}
	return append(keys, "exceptions none")
}
