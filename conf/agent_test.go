package conf

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// agent is one pod of the DaemonSet, running on the node.
type agent struct {
	n       *node
	cmd     *exec.Cmd
	log     string
	exited  chan struct{}
	stopped chan struct{} // closed when the kubelet stops probing
	mu      sync.Mutex    // guards probe results
	ready   bool
	restart string // why liveness would have restarted the pod, if it would have
}

// startAgent starts a new pod of the DaemonSet on the node, on the same hostPaths.
func (n *node) startAgent() *agent {
	t := n.t
	n.started++
	a := &agent{n: n, log: filepath.Join(n.dir, fmt.Sprintf("agent-%d.txt", n.started)), exited: make(chan struct{}), stopped: make(chan struct{})}
	var sh strings.Builder
	sh.WriteString("set -e\nmount --bind \"$R\" \"$R\"\nmount -o remount,bind,ro \"$R\"\n")
	for _, m := range n.mounts {
		switch m[2] {
		case "rbind":
			fmt.Fprintf(&sh, "mount --rbind %q \"$R\"%q\n", m[0], m[1])
		case "ro":
			fmt.Fprintf(&sh, "mount --bind %q \"$R\"%q\nmount -o remount,bind,ro \"$R\"%q\n", m[0], m[1], m[1])
		default:
			fmt.Fprintf(&sh, "mount --bind %q \"$R\"%q\n", m[0], m[1])
		}
	}
	// The container's security context: no capability left and no privilege to gain
	// (setpriv is util-linux's, from the host's /usr mounted in the root).
	sc, drop := n.c.SecurityContext, ""
	if sc != nil && sc.Capabilities != nil && slices.Contains(sc.Capabilities.Drop, "ALL") {
		drop += " --bounding-set=-all --inh-caps=-all"
	}
	if sc != nil && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		drop += " --no-new-privs"
	}
	if drop != "" {
		drop = " /usr/bin/setpriv" + drop
	}
	sh.WriteString("exec chroot \"$R\"" + drop + " \"$@\"\n")
	args := append([]string{"--mount", "--propagation", "private", "sh", "-c", sh.String(), "pod"}, n.argv...)
	a.cmd = exec.Command("unshare", args...)
	a.cmd.Env = append([]string{"R=" + n.root}, n.env...)
	f, err := os.Create(a.log)
	if err != nil {
		t.Fatal(err)
	}
	a.cmd.Stdout, a.cmd.Stderr = f, f
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = a.cmd.Wait(); f.Close(); close(a.exited) }()
	t.Cleanup(func() { a.kill() })
	go a.probe()
	return a
}

// probe polls the container's probes as the kubelet does; a liveness failure that would
// restart the pod is recorded (a restart cannot fix a destination).
func (a *agent) probe() {
	c := a.n.c
	type state struct {
		p     *corev1.Probe
		fails int
		next  time.Time
	}
	start := time.Now()
	var probes []*state
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
		if p != nil {
			probes = append(probes, &state{p: p, next: start.Add(time.Duration(p.InitialDelaySeconds) * time.Second)})
		}
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-a.exited:
			return
		case <-a.stopped:
			return
		case now := <-tick.C:
			for i, s := range probes {
				if now.Before(s.next) {
					continue
				}
				s.next = now.Add(time.Duration(max(s.p.PeriodSeconds, 1)) * time.Second)
				ok := httpProbe(s.p)
				a.mu.Lock()
				if ok {
					s.fails = 0
					if i == 0 {
						a.ready = true
					}
				} else if s.fails++; s.p == c.LivenessProbe && s.fails >= int(max(s.p.FailureThreshold, 3)) && a.restart == "" {
					a.restart = fmt.Sprintf("liveness failed %d times at %v", s.fails, now.Sub(start).Round(time.Second))
				}
				a.mu.Unlock()
			}
		}
	}
}

func httpProbe(p *corev1.Probe) bool {
	to := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	resp, err := (&http.Client{Timeout: to}).Get(fmt.Sprintf("http://127.0.0.1:%d%s", p.HTTPGet.Port.IntValue(), p.HTTPGet.Path))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

// waitReady waits for the readiness probe to pass.
func (a *agent) waitReady() {
	a.n.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		a.mu.Lock()
		ready := a.ready
		a.mu.Unlock()
		if ready {
			return
		}
		select {
		case <-a.exited:
			a.n.t.Fatalf("the agent exited before it was ready:\n%s", a.tail())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			a.n.t.Fatalf("not ready after 60s:\n%s", a.tail())
		}
	}
}

// stop is the kubelet's pod termination: SIGTERM, then SIGKILL once the grace period is
// over. It returns the time from SIGTERM to exit and whether the kill was needed.
func (a *agent) stop() (time.Duration, bool) {
	close(a.stopped)
	grace := time.Duration(*a.n.spec.TerminationGracePeriodSeconds) * time.Second
	start := time.Now()
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
		return time.Since(start), false
	case <-time.After(grace):
		a.kill()
		return time.Since(start), true
	}
}

// kill is a node losing power: no SIGTERM, nothing flushed.
func (a *agent) kill() {
	_ = a.cmd.Process.Kill()
	<-a.exited
}

// stopCleanly stops the pod as the kubelet does and fails the test if the pod had to be
// killed at the grace period, or if liveness would have restarted it.
func (a *agent) stopCleanly() {
	a.checkNoRestart()
	if _, killed := a.stop(); killed {
		a.n.t.Error("killed at the grace period")
	}
}

// checkNoRestart fails the test if liveness would have restarted the pod.
func (a *agent) checkNoRestart() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.restart != "" {
		a.n.t.Errorf("the kubelet would have restarted the pod: %s", a.restart)
	}
}

func (a *agent) output() string {
	b, _ := os.ReadFile(a.log)
	return string(b)
}

func (a *agent) tail() string {
	b, _ := os.ReadFile(a.log)
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}
