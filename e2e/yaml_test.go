package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/trailstack/trailstack/testkit/testpki"
)

// In the real engine, a YAML configuration as users write it now: the plugin loaded by the
// top-level plugins list, two trailstack outputs of one input, and a grep processor on the
// Papertrail output only, which keeps health checks out of it. rsyslog gets every line but
// the health checks, Cloud Logging every line.
func TestEngineProcessorOnATrailstackOutput(t *testing.T) {
	bin := fluentBit(t)
	dir := t.TempDir()
	const lines, every = 300, 3 // every third line is a health check
	var log bytes.Buffer
	for i := 0; i < lines; i++ {
		msg := fmt.Sprintf("order %d handled", i)
		if i%every == 0 {
			msg = fmt.Sprintf(`10.0.0.7 - - "GET /healthz HTTP/1.1" 200 2 probe %d`, i)
		}
		fmt.Fprintf(&log, "2026-11-26T12:00:00.%09dZ stdout F %s\n", i, msg)
	}
	if err := os.WriteFile(filepath.Join(dir, "api-5d9b8c7f6-abcde_blog_api-0123456789abcdef.log"), log.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	health := (lines + every - 1) / every
	pki := testpki.New(t, "localhost")
	rs := startRsyslog(t, pki)
	_, addr, received := startFakeLogging(t, dir, "-expect", fmt.Sprint(lines))
	conf := filepath.Join(dir, "fluent-bit.yaml")
	yaml := fmt.Sprintf(`service:
  flush: 1
  grace: 5
  log_level: info
plugins:
  - %s
pipeline:
  inputs:
    - name: tail
      tag: kube.*
      path: %s/*.log
      multiline.parser: cri
      read_from_head: on
  outputs:
    - name: trailstack
      alias: papertrail
      match: kube.*
      workers: 1
      retry_limit: no_limits
      sink: syslog
      address: %s
      server_name: localhost
      ca_file: %s
      exceptions: none
      processors:
        logs:
          - name: grep
            exclude: log /healthz
    - name: trailstack
      alias: cloud-logging
      match: kube.*
      workers: 1
      retry_limit: no_limits
      sink: stackdriver
      endpoint: %s
      endpoint_plaintext: on
      project_id: blog-prod
      cluster_name: blog
      cluster_location: europe-west1
      exceptions: none
`, soPath, dir, rs.addr(), pki.CAFile, addr)
	if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "engine-output.txt")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// No -e: the plugins list loads the .so.
	cmd := exec.Command(bin, "-c", conf)
	cmd.Env = append(os.Environ(), "NODE_NAME=node-1")
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	received.Scan()
	if got := received.Text(); !strings.HasPrefix(got, fmt.Sprintf("received %d entries in ", lines)) {
		engineLog, _ := os.ReadFile(logPath)
		t.Fatalf("Cloud Logging: %q, want %d entries\n%s", got, lines, engineLog)
	}
	// The engine's exit finishes every flush in hand: what rsyslog has then is all it gets.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	got := rs.lines(t, lines-health)
	for _, l := range got {
		if strings.Contains(strings.Join(l, " "), "/healthz") {
			t.Fatalf("a health check reached Papertrail: %q", l)
		}
	}
	if len(got) != lines-health {
		t.Errorf("Papertrail got %d lines, want %d (%d health checks kept out)", len(got), lines-health, health)
	}
	t.Logf("Papertrail %d of %d lines (%d health checks kept out by the processor), Cloud Logging %d", len(got), lines, health, lines)
}
