package conf

// The node harness: the rendered DaemonSet's container run as a node runs it. The real
// fluent-bit starts in a private mount namespace, chrooted into a read-only root laid out as
// the Dockerfile lays out the image, with the pod's volumes (hostPaths, the ConfigMap, the
// service account) mounted where the manifest mounts them. The harness plays containerd
// (writes and rotates container logs), the kubelet (probes, SIGTERM then SIGKILL at the
// grace period, a new pod on the same hostPaths) and GKE (metadata server, API server).

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/trailstack/trailstack/testkit/delayline"
	"github.com/trailstack/trailstack/testkit/fixture"
	"github.com/trailstack/trailstack/testkit/testpki"
)

const (
	nodeName = "node-1"
	// kubeAPIAddr is where the pod's /etc/hosts puts kubernetes.default.svc: a loopback
	// address of its own, since the filter's default URL has port 443.
	kubeAPIAddr = "127.0.0.2:443"
)

// pluginSO is the shipped plugin: TRAILSTACK_SO (make test passes the stripped build), else
// built here as the Dockerfile builds it.
func pluginSO(t *testing.T) string {
	t.Helper()
	if so := os.Getenv("TRAILSTACK_SO"); so != "" {
		return so
	}
	out := filepath.Join(t.TempDir(), "out_trailstack.so")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-ldflags=-s -w", "-o", out, "./plugin")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the plugin: %v\n%s", err, b)
	}
	return out
}

// node is one machine: its disk (hostPath directories), the stand-ins it talks to, and the
// pod spec it runs.
type node struct {
	t            *testing.T
	dir          string // the node's disk: hostPaths live under dir/host
	root         string // the image's root filesystem, read-only in the pod
	r            *rendered
	spec         corev1.PodSpec
	c            corev1.Container
	env          []string
	argv         []string
	mounts       [][3]string       // source, target inside root, "ro" or ""
	papertrailIP string            // where the pod's /etc/hosts puts papertrailHost
	lines        []*delayline.Line // the destinations' delay lines, where they are far away
	papert       *syslogReceiver
	cloud        *cloudLogging
	kube         *kubeAPI
	podMu        sync.Mutex // guards want
	want         []string   // every line id written so far
	started      int        // agents started, to name their logs
}

// papertrailHost is the destination's name in the Secret; the pod's /etc/hosts resolves it.
const papertrailHost = "papertrail.test"

// newNode renders conf/, builds the image's root, and starts the stand-ins on loopback.
func newNode(t *testing.T) *node {
	t.Helper()
	return newNodeWith(t, nodeOptions{})
}

// nodeOptions are what a scenario changes of the node.
type nodeOptions struct {
	// Papertrail and Cloud Logging each at this round trip, behind a delay line of its
	// own, or on loopback where it is 0.
	papertrailRTT, cloudRTT time.Duration
	// Fluent Bit's null output in place of the shipped outputs: the engine's own cost.
	nullOutput bool
	// Workers of both outputs in place of the shipped value, where not 0.
	workers int
}

func newNodeWith(t *testing.T, o nodeOptions) *node {
	t.Helper()
	if os.Geteuid() != 0 {
		fixture.Need(t, "the node harness needs root for its mount namespace")
	}
	for _, c := range []string{"unshare", "chroot", "mount"} {
		if _, err := exec.LookPath(c); err != nil {
			fixture.Need(t, "%s not found", c)
		}
	}
	bin := fixture.Engine(t)
	so := pluginSO(t)
	n := &node{t: t, dir: t.TempDir(), r: render(t)}
	n.root = filepath.Join(n.dir, "root")
	n.spec = n.r.ds.Spec.Template.Spec
	n.c = n.spec.Containers[0]

	papertrailPKI := testpki.New(t, papertrailHost)
	kubePKI := testpki.New(t, "kubernetes.default.svc")
	var listenPapertrail, listenCloud listenFunc
	listenPapertrail, n.papertrailIP = n.farAway("tsp", 214, o.papertrailRTT)
	listenCloud, _ = n.farAway("tsc", 215, o.cloudRTT)
	n.papert = startSyslog(t, papertrailPKI, listenPapertrail, o.papertrailRTT == 0)
	n.cloud = startCloudLogging(t, listenCloud)
	n.kube = startKubeAPI(t, kubeAPIAddr, kubePKI)
	metadata := startMetadata(t)

	// The user's own values: the Papertrail destination in the Secret, and the Cloud
	// Logging endpoint (the only line the harness adds to the shipped configuration).
	n.r.secret.Data = map[string][]byte{"PAPERTRAIL_ADDRESS": []byte(papertrailHost + ":" + strings.Split(n.papert.addr, ":")[1])}
	cfg := n.r.cm.Data["fluent-bit.conf"]
	sd := regexp.MustCompile(`(?m)^(\s+)sink(\s+)stackdriver\n`)
	if !sd.MatchString(cfg) {
		t.Fatal("no stackdriver output in fluent-bit.conf")
	}
	n.r.cm.Data["fluent-bit.conf"] = sd.ReplaceAllString(cfg, "${0}${1}endpoint${2}"+n.cloud.addr+"\n${1}endpoint_plaintext on\n")
	if o.workers > 0 {
		w := regexp.MustCompile(`(?m)^(\s+Workers\s+)\d+$`)
		n.r.cm.Data["fluent-bit.conf"] = w.ReplaceAllString(n.r.cm.Data["fluent-bit.conf"], "${1}"+strconv.Itoa(o.workers))
	}
	if o.nullOutput {
		// Without the plugin there is no pod cache: the filter asks the API server itself,
		// so that the records still carry their metadata.
		cfg := regexp.MustCompile(`(?m)^\s+Kube_URL\s+\S+\n`).ReplaceAllString(n.r.cm.Data["fluent-bit.conf"], "")
		n.r.cm.Data["fluent-bit.conf"] = cfg[:strings.Index(cfg, "\n[OUTPUT]")] + "\n[OUTPUT]\n    Name  null\n    Match kube.*\n"
	}

	n.buildImage(bin, so, papertrailPKI.CAFile)
	n.mountVolumes(kubePKI.CAFile)
	n.env = n.podEnv(metadata)
	return n
}

// farAway returns how a destination's stand-in listens: on loopback, or rtt away at the far
// end of a delay line of its own (namespace prefix+pid, addresses 10.subnet.0.0/30).
func (n *node) farAway(prefix string, subnet int, rtt time.Duration) (listenFunc, string) {
	if rtt == 0 {
		return func(lc *net.ListenConfig) (net.Listener, error) {
			return lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
		}, "127.0.0.1"
	}
	l := delayline.Start(n.t, prefix, subnet, rtt)
	n.lines = append(n.lines, l)
	return func(lc *net.ListenConfig) (net.Listener, error) { return l.Listen(lc, "tcp", l.FarIP+":0") }, l.FarIP
}

// buildImage lays out the final stage of the Dockerfile: the base image's fluent-bit, then
// every COPY. The CA bundle from the builder is the stand-in's CA here.
func (n *node) buildImage(bin, so, caFile string) {
	t := n.t
	df := string(readFile(t, "../Dockerfile"))
	final := df[strings.LastIndex(df, "\nFROM "):]
	n.mkfile("fluent-bit/bin/fluent-bit", nil)
	n.mounts = append(n.mounts, [3]string{bin, "/fluent-bit/bin/fluent-bit", "ro"})
	for _, line := range strings.Split(final, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "COPY" {
			if len(f) > 0 && f[0] == "CMD" {
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "CMD ")), &n.argv); err != nil {
					t.Fatalf("Dockerfile CMD: %v", err)
				}
			}
			continue
		}
		srcs, dst := f[1:len(f)-1], f[len(f)-1]
		if strings.HasPrefix(srcs[0], "--from=") {
			switch srcs[1] {
			case "/out/out_trailstack.so":
				n.mkfile(dst, nil)
				n.mounts = append(n.mounts, [3]string{so, dst, "ro"})
			case "/etc/ssl/certs/ca-certificates.crt":
				n.mkfile(dst, readFile(t, caFile))
			default:
				t.Fatalf("the harness does not know what %s is", srcs[1])
			}
			continue
		}
		for _, s := range srcs {
			to := dst
			if strings.HasSuffix(dst, "/") {
				to = filepath.Join(dst, filepath.Base(s))
			}
			n.mkfile(to, readFile(t, filepath.Join("..", s)))
		}
	}
	if len(n.c.Command) > 0 {
		n.argv = append(append([]string{}, n.c.Command...), n.c.Args...)
	} else if len(n.c.Args) > 0 {
		n.argv = append(n.argv[:1], n.c.Args...)
	}
	// What the image's base has and the pod's runtime provides.
	n.mkfile("etc/hosts", []byte("127.0.0.1 localhost\n"+strings.Split(kubeAPIAddr, ":")[0]+" kubernetes.default.svc\n"+
		n.papertrailIP+" "+papertrailHost+"\n"))
	n.mkfile("etc/nsswitch.conf", []byte("hosts: files dns\n"))
	n.mkfile("etc/resolv.conf", []byte("nameserver 127.0.0.1\n"))
	for _, l := range []string{"lib", "lib64", "bin", "sbin"} {
		if err := os.Symlink("usr/"+l, filepath.Join(n.root, l)); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"usr", "dev", "proc", "tmp"} {
		n.mkdir(d)
	}
	n.mounts = append(n.mounts, [3]string{"/usr", "/usr", "ro"}, [3]string{"/dev", "/dev", "rbind"}, [3]string{"/proc", "/proc", "rbind"})
}

// mountVolumes mounts the container's volumes as the kubelet does, and the service account.
func (n *node) mountVolumes(kubeCA string) {
	t := n.t
	vols := map[string]corev1.Volume{}
	for _, v := range n.spec.Volumes {
		vols[v.Name] = v
	}
	for _, m := range n.c.VolumeMounts {
		v, ok := vols[m.Name]
		if !ok {
			t.Fatalf("volumeMount %s has no volume", m.Name)
		}
		var src string
		switch {
		case v.HostPath != nil:
			src = n.hostPath(v.HostPath.Path)
		case v.ConfigMap != nil:
			if v.ConfigMap.Name != n.r.cm.Name {
				t.Fatalf("volume %s: ConfigMap %s is not rendered", v.Name, v.ConfigMap.Name)
			}
			src = filepath.Join(n.dir, "volumes", v.Name)
			for k, d := range n.r.cm.Data {
				writeFile(t, filepath.Join(src, k), []byte(d))
			}
		case v.EmptyDir != nil:
			src = filepath.Join(n.dir, "volumes", v.Name)
			if err := os.MkdirAll(src, 0o755); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("volume %s: a kind the harness does not mount", v.Name)
		}
		n.mkdir(m.MountPath)
		ro := ""
		if m.ReadOnly {
			ro = "ro"
		}
		n.mounts = append(n.mounts, [3]string{src, m.MountPath, ro})
	}
	sa := filepath.Join(n.dir, "volumes", "serviceaccount")
	writeFile(t, filepath.Join(sa, "token"), []byte("harness-token"))
	writeFile(t, filepath.Join(sa, "ca.crt"), readFile(t, kubeCA))
	writeFile(t, filepath.Join(sa, "namespace"), []byte(n.r.ds.Namespace))
	n.mkdir("var/run/secrets/kubernetes.io/serviceaccount")
	n.mounts = append(n.mounts, [3]string{sa, "/var/run/secrets/kubernetes.io/serviceaccount", "ro"})
}

// podEnv is the container's environment as the kubelet builds it.
func (n *node) podEnv(metadata string) []string {
	t := n.t
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOSTNAME=trailstack-harness",
		"KUBERNETES_SERVICE_HOST=" + strings.Split(kubeAPIAddr, ":")[0], "KUBERNETES_SERVICE_PORT=443",
		"GCE_METADATA_HOST=" + metadata, // GKE's metadata server
	}
	for _, e := range n.c.Env {
		v := e.Value
		switch {
		case e.ValueFrom == nil:
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName":
			v = nodeName
		case e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == n.r.secret.Name:
			b, ok := n.r.secret.Data[e.ValueFrom.SecretKeyRef.Key]
			if !ok {
				t.Fatalf("env %s: the Secret has no %s", e.Name, e.ValueFrom.SecretKeyRef.Key)
			}
			v = string(b)
		default:
			t.Fatalf("env %s: a source the harness does not know", e.Name)
		}
		env = append(env, e.Name+"="+v)
	}
	return env
}

func (n *node) hostPath(p string) string {
	dir := filepath.Join(n.dir, "host", p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		n.t.Fatal(err)
	}
	return dir
}

func (n *node) mkdir(p string) {
	if err := os.MkdirAll(filepath.Join(n.root, p), 0o755); err != nil {
		n.t.Fatal(err)
	}
}

func (n *node) mkfile(p string, data []byte) { writeFile(n.t, filepath.Join(n.root, p), data) }

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

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

// appPod is a workload's container on the node: containerd writes its log, the kubelet
// links it under /var/log/containers.
type appPod struct {
	ns, name string
	file     string // the log file, on the node's disk
	logfmt   bool   // key=value lines instead of text
	spoof    bool   // JSON lines that claim another pod's identity

	mu   sync.Mutex // guards seq and size, and orders writes with rotation: one writer, as containerd
	seq  int
	size int64
}

func podUID(ns, name string) string {
	h := sha256.Sum256([]byte("uid/" + ns + "/" + name))
	u := hex.EncodeToString(h[:16])
	return u[:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:]
}

func containerID(ns, name string) string {
	h := sha256.Sum256([]byte("container/" + ns + "/" + name))
	return hex.EncodeToString(h[:])
}

// newPod creates a pod's log file and link and registers it with the API stand-in;
// annotationBytes pads the pod object (a sidecar-injected pod, large annotations).
func (n *node) newPod(ns, name string, annotationBytes int) *appPod {
	n.t.Helper()
	ann := map[string]string{}
	if annotationBytes > 0 {
		ann["example.com/injected-config"] = strings.Repeat("x", annotationBytes)
	}
	return n.newAnnotatedPod(ns, name, ann)
}

func (n *node) newAnnotatedPod(ns, name string, ann map[string]string) *appPod {
	n.t.Helper()
	labels := map[string]string{"app": name, "app.kubernetes.io/name": strings.Split(name, "-")[0]}
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if j := strings.LastIndexByte(name[:i], '-'); j > 0 {
			labels["pod-template-hash"] = name[j+1 : i]
		}
	}
	n.kube.addPod(ns, name, labels, ann)
	p := &appPod{ns: ns, name: name}
	n.podFiles(p)
	return p
}

// podFiles creates the pod's log file and its link, as containerd and the kubelet do.
func (n *node) podFiles(p *appPod) {
	n.t.Helper()
	ns, name := p.ns, p.name
	varlog := n.hostPath("/var/log")
	dir := filepath.Join("pods", ns+"_"+name+"_"+podUID(ns, name), "app")
	p.file = filepath.Join(varlog, dir, "0.log")
	writeFile(n.t, p.file, nil)
	link := filepath.Join(varlog, "containers", fmt.Sprintf("%s_%s_app-%s.log", name, ns, containerID(ns, name)))
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		n.t.Fatal(err)
	}
	// The link's target is the path inside the pod, as on a node.
	if err := os.Symlink(filepath.Join("/var/log", dir, "0.log"), link); err != nil {
		n.t.Fatal(err)
	}
}

// write appends count lines to the pod's log as containerd does (CRI format).
func (n *node) write(p *appPod, count int) {
	n.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.OpenFile(p.file, os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		n.t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 256<<10)
	ids := make([]string, 0, count)
	for i := 0; i < count; i++ {
		ts := time.Now().UTC().Format("2006-01-02T15:04:05.000000000Z07:00")
		stream := "stdout"
		if p.seq%10 == 9 {
			stream = "stderr"
		}
		line := fmt.Sprintf("%s %s F pod=%s seq=%d GET /api/v1/items?page=%d 200 %s\n", ts, stream, p.name, p.seq, p.seq, strings.Repeat("a", 120))
		if p.logfmt {
			line = fmt.Sprintf("%s %s F level=info msg=\"request done\" pod=%s seq=%d\n", ts, stream, p.name, p.seq)
		}
		if p.spoof {
			line = fmt.Sprintf(`%s %s F {"msg":"pod=%s seq=%d","stream":"audit","kubernetes":{"namespace_name":"kube-system","pod_name":"kube-apiserver-0","container_name":"kube-apiserver","host":"victim-node","labels":{"tier":"control-plane"}}}`+"\n", ts, stream, p.name, p.seq)
		}
		w.WriteString(line)
		p.size += int64(len(line))
		ids = append(ids, p.name+"#"+strconv.Itoa(p.seq))
		p.seq++
	}
	if err := w.Flush(); err != nil {
		n.t.Fatal(err)
	}
	n.podMu.Lock()
	n.want = append(n.want, ids...)
	n.podMu.Unlock()
}

// rotate is the kubelet's log rotation: the file is renamed beside itself and containerd
// reopens a new one at the same path.
func (n *node) rotate(p *appPod) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := os.Rename(p.file, p.file+"."+time.Now().UTC().Format("20060102-150405")); err != nil {
		n.t.Fatal(err)
	}
	writeFile(n.t, p.file, nil)
	p.size = 0
}

// logged is how many bytes the pod's current file holds.
func (p *appPod) logged() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.size
}

// writer writes lines to pods in the background at about rate lines/s until stopped.
func (n *node) writer(rate int, pods ...*appPod) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				for _, p := range pods {
					n.write(p, max(rate/10, 1))
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

// expected is every line id written so far.
func (n *node) expected() []string {
	n.podMu.Lock()
	defer n.podMu.Unlock()
	return append([]string(nil), n.want...)
}

// delivery is what one destination got of what was written.
type delivery struct {
	name                string
	arrived, lost, dups int
	anonymous           int
	wrongName           []string
}

func (d delivery) String() string {
	return fmt.Sprintf("%s: %d arrived, %d lost, %d duplicates, %d without metadata", d.name, d.arrived, d.lost, d.dups, d.anonymous)
}

func (n *node) deliveries(want []string) []delivery {
	var out []delivery
	for _, d := range []struct {
		name string
		t    *tally
	}{{"papertrail", n.papert.tally}, {"cloud-logging", n.cloud.tally}} {
		a, l, dup := d.t.count(want)
		d.t.mu.Lock()
		out = append(out, delivery{name: d.name, arrived: a, lost: l, dups: dup, anonymous: d.t.anonymous, wrongName: append([]string(nil), d.t.wrongName...)})
		d.t.mu.Unlock()
	}
	return out
}

// waitDelivered waits until every line written so far has arrived at both destinations (or
// the ones named), then checks identity: every line under its own pod, none without
// metadata. Lines written while it waits are not waited for: a writer may still be running.
func (n *node) waitDelivered(timeout time.Duration, a *agent, only ...string) []delivery {
	n.t.Helper()
	deadline := time.Now().Add(timeout)
	want := n.expected()
	for {
		ds := n.deliveries(want)
		done := true
		for _, d := range ds {
			if d.lost > 0 && (len(only) == 0 || strings.Contains(strings.Join(only, ","), d.name)) {
				done = false
			}
		}
		if done {
			for _, d := range ds {
				if d.anonymous > 0 || len(d.wrongName) > 0 {
					n.t.Errorf("%v; under another identity: %v", d, d.wrongName)
				}
			}
			return ds
		}
		if time.Now().After(deadline) {
			msg := ""
			if a != nil {
				msg = a.tail()
			}
			n.t.Fatalf("not delivered after %v: %v\nagent log:\n%s", timeout, ds, msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
