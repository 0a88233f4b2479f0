package conf

// The node harness: the rendered DaemonSet's container run as a node runs it. The real
// fluent-bit starts in a private mount namespace, chrooted into a read-only root laid out as
// the Dockerfile lays out the image, with the pod's volumes (hostPaths, the ConfigMap, the
// service account) mounted where the manifest mounts them. The harness plays containerd
// (writes and rotates container logs), the kubelet (probes, SIGTERM then SIGKILL at the
// grace period, a new pod on the same hostPaths) and GKE (metadata server, API server).

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
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
// built as the Dockerfile builds it, once for every scenario: no scenario changes it.
func pluginSO(t *testing.T) string {
	return built(t, &builtSO, "TRAILSTACK_SO", "out_trailstack.so", "CGO_ENABLED=1", "-buildmode=c-shared", "./plugin")
}

// launcher is the image's trailstack-launch: TRAILSTACK_LAUNCH (make test's build), else
// built as the Dockerfile builds it, once.
func launcher(t *testing.T) string {
	return built(t, &builtLaunch, "TRAILSTACK_LAUNCH", "trailstack-launch", "CGO_ENABLED=0", "", "./launch")
}

// A build the tests share, removed when they end (TestMain).
type build struct {
	once      sync.Once
	dir, path string
	err       error
}

var builtSO, builtLaunch build

func built(t *testing.T, b *build, env, name, cgo, mode, pkg string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "trailstack-build-"); b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, name)
		args := []string{"build", "-trimpath", "-ldflags=-s -w", "-o", b.path, pkg}
		if mode != "" {
			args = slices.Insert(args, 1, mode)
		}
		cmd := exec.Command("go", args...)
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), cgo)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("building %s: %v\n%s", pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, b := range []*build{&builtSO, &builtLaunch} {
		if b.dir != "" {
			os.RemoveAll(b.dir)
		}
	}
	os.Exit(code)
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
	podMu        sync.Mutex          // guards want and traces
	want         []string            // every line id written so far
	traces       map[string][]string // the lines of each stack trace written, by its id
	started      int                 // agents started, to name their logs
}

// papertrailHost is the destination's name in the Secret; the pod's /etc/hosts resolves it.
const papertrailHost = "papertrail.test"

// newNode renders conf/, builds the image's root, and starts the stand-ins on loopback.
func newNode(t *testing.T) *node {
	t.Helper()
	return newNodeWith(t, nodeOptions{})
}

// newRunningNode is the start most scenarios share: a node with the shipped settings, one
// application pod, and an agent whose readiness probe passes.
func newRunningNode(t *testing.T) (*node, *appPod, *agent) {
	t.Helper()
	n := newNode(t)
	api := n.newPod("blog", "api-5d9b8c7f6-abcde", 0)
	a := n.startAgent()
	a.waitReady()
	return n, api, a
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
	// Fluent Bit's own multiline filter (its go, java, python and ruby parsers) joins stack
	// traces in place of the plugin (exceptions none): to compare the two.
	fluentBitMultiline bool
	// The Papertrail destination's token, as the Secret gives it ("": none).
	papertrailToken string
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
	so, launch := pluginSO(t), launcher(t)
	n := &node{t: t, dir: t.TempDir(), r: render(t), traces: map[string][]string{}}
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
	n.r.secret.Data = map[string][]byte{"PAPERTRAIL_ADDRESS": []byte(papertrailHost + ":" + strings.Split(n.papert.addr, ":")[1]),
		"PAPERTRAIL_TOKEN": []byte(o.papertrailToken)}
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
	if o.fluentBitMultiline {
		cfg := n.r.cm.Data["fluent-bit.conf"]
		i := strings.Index(cfg, "\n[FILTER]")
		cfg = cfg[:i] + "\n[FILTER]\n    Name multiline\n    Match kube.*\n    multiline.key_content log\n    multiline.parser go, java, python, ruby\n" + cfg[i:]
		n.r.cm.Data["fluent-bit.conf"] = regexp.MustCompile(`(?m)^(\s+)sink(\s+)(\w+)\n`).ReplaceAllString(cfg, "${0}${1}exceptions${2}none\n")
	}
	if o.nullOutput {
		// Without the plugin there is no pod cache: the filter asks the API server itself,
		// so that the records still carry their metadata.
		cfg := regexp.MustCompile(`(?m)^\s+Kube_URL\s+\S+\n`).ReplaceAllString(n.r.cm.Data["fluent-bit.conf"], "")
		n.r.cm.Data["fluent-bit.conf"] = cfg[:strings.Index(cfg, "\n[OUTPUT]")] + "\n[OUTPUT]\n    Name  null\n    Match kube.*\n"
	}

	n.buildImage(bin, so, launch, papertrailPKI.CAFile)
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
func (n *node) buildImage(bin, so, launch, caFile string) {
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
			case "/out/trailstack-launch":
				n.mkfile(dst, nil)
				n.mounts = append(n.mounts, [3]string{launch, dst, "ro"})
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
