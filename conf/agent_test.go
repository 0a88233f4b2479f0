package conf

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// agent is one pod of the DaemonSet, running on the node in the container runtime.
type agent struct {
	n       *node
	name    string // the container's
	c       corev1.Container
	grace   int64     // the pod's termination grace period, in seconds
	cmd     *exec.Cmd // podman run, attached: the container's output, and its exit status
	log     string
	exited  chan struct{}
	stopped chan struct{} // closed when the kubelet stops probing
	mu      sync.Mutex    // guards probe results
	ready   bool
	restart string // why liveness would have restarted the pod, if it would have

	// Peaks of memory, sampled while the pod runs: the engine's anonymous resident memory
	// (what no reclaim can take back) and the container's memory cgroup's usage, page cache
	// of the chunk files included (what the pod's limit counts, reclaimable in part).
	peakAnon, peakCgroup atomic.Int64
}

// startAgent starts a new pod of the DaemonSet on the node, on the same hostPaths.
func (n *node) startAgent() *agent { return n.startPod(n.spec, n.c) }

// startPod runs a pod's container on the node, and probes it as the kubelet does.
func (n *node) startPod(spec corev1.PodSpec, c corev1.Container) *agent {
	t := n.t
	n.started++
	a := &agent{n: n, c: c, name: fmt.Sprintf("trailstack-harness-%d-%d", os.Getpid(), podSeq.Add(1)), grace: 30,
		log: filepath.Join(n.dir, fmt.Sprintf("agent-%d.txt", n.started)), exited: make(chan struct{}), stopped: make(chan struct{})}
	if g := spec.TerminationGracePeriodSeconds; g != nil {
		a.grace = *g
	}
	a.cmd = podman(n.podArgs(a.name, spec, c)...)
	f, err := os.Create(a.log)
	if err != nil {
		t.Fatal(err)
	}
	a.cmd.Stdout, a.cmd.Stderr = f, f
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = a.cmd.Wait(); f.Close(); close(a.exited) }()
	go a.sampleMemory()
	t.Cleanup(func() { a.kill(); _ = podman("rm", "-f", a.name).Run() })
	go a.probe()
	return a
}

// probe polls the container's probes as the kubelet does; a liveness failure that would
// restart the pod is recorded (a restart cannot fix a destination).
func (a *agent) probe() {
	c := a.c
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
				ok := httpProbe(c, s.p)
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

func httpProbe(c corev1.Container, p *corev1.Probe) bool {
	to := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	resp, err := (&http.Client{Timeout: to}).Get(fmt.Sprintf("http://127.0.0.1:%d%s", containerPort(c, p.HTTPGet.Port), p.HTTPGet.Path))
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
// over (podman stop with the pod's grace period). It returns the time from SIGTERM to exit
// and whether the kill was needed.
func (a *agent) stop() (time.Duration, bool) {
	close(a.stopped)
	start := time.Now()
	if out, err := podman("stop", "--time", strconv.FormatInt(a.grace, 10), a.name).CombinedOutput(); err != nil {
		a.n.t.Errorf("podman stop: %v\n%s", err, out)
	}
	<-a.exited
	// 137: the runtime's SIGKILL.
	return time.Since(start), a.cmd.ProcessState.ExitCode() == 128+int(syscall.SIGKILL)
}

// kill is a node losing power: no SIGTERM, nothing flushed.
func (a *agent) kill() {
	select {
	case <-a.exited:
		return
	default:
	}
	_ = podman("kill", "--signal", "KILL", a.name).Run()
	<-a.exited
}

// sampleMemory keeps the memory peaks until the pod exits.
func (a *agent) sampleMemory() {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	pid, usage := 0, ""
	for {
		select {
		case <-a.exited:
			return
		case <-tick.C:
		}
		if pid == 0 {
			if pid = a.pid(); pid == 0 {
				continue
			}
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
			for _, l := range strings.Split(string(b), "\n") {
				if f := strings.SplitN(l, ":", 3); len(f) == 3 && f[1] == "memory" {
					usage = filepath.Join("/sys/fs/cgroup/memory", f[2], "memory.usage_in_bytes")
				}
			}
		}
		if v := procStatus(pid, "RssAnon"); v > a.peakAnon.Load() {
			a.peakAnon.Store(v)
		}
		if b, err := os.ReadFile(usage); err == nil {
			if v, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); v > a.peakCgroup.Load() {
				a.peakCgroup.Store(v)
			}
		}
	}
}

// memory says the engine's peaks so far: resident, anonymous, and the container's cgroup.
func (a *agent) memory() string {
	return fmt.Sprintf("peak RSS %d MiB (anonymous %d MiB), cgroup %d MiB", a.peakRSS()>>20, a.peakAnon.Load()>>20, a.peakCgroup.Load()>>20)
}

// pid is the container's first process as the node sees it: fluent-bit, which the launcher
// became.
func (a *agent) pid() int {
	out, err := podman("inspect", "--format", "{{.State.Pid}}", a.name).Output()
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return p
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
