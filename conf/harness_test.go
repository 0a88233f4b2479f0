package conf

// The node harness: the rendered DaemonSet's container run as a node runs it. The image is
// the Dockerfile built by a real builder on a stand-in of the official Fluent Bit image, and
// each pod is run by a real container runtime (podman with runc, runtime_test.go) with the
// container's command, args, env, volumes (hostPaths, the ConfigMap, the service account),
// security context and memory limit. The harness plays containerd's part in writing and
// rotating container logs, the kubelet's (probes, podman stop with the grace period, a new
// pod on the same hostPaths) and GKE's (metadata server, API server).

import (
	"context"
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
	if runtimeConf != "" {
		os.RemoveAll(filepath.Dir(runtimeConf))
	}
	os.Exit(code)
}

// node is one machine: its disk (hostPath directories), the stand-ins it talks to, and the
// pod spec it runs.
type node struct {
	t            *testing.T
	dir          string // the node's disk: hostPaths live under dir/host
	image        string // the Dockerfile built for this node (its CA bundle is the stand-in's)
	r            *rendered
	spec         corev1.PodSpec
	c            corev1.Container
	metadata     string            // the GCE metadata server stand-in's host:port
	kubeCA       string            // the API server stand-in's CA, the service account's ca.crt
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
	// The Helm chart's install (conf/helm/values.yaml) in place of kustomize's.
	helm bool
	// Service settings in place of the shipped values, by key (storage.max_chunks_up: 64).
	service map[string]string
	// The container's environment variables in place of the DaemonSet's (GOMEMLIMIT).
	env map[string]string
	// Keys added to both trailstack outputs (inflight_limit: 8M).
	output map[string]string
}

func newNodeWith(t *testing.T, o nodeOptions) *node {
	t.Helper()
	if os.Geteuid() != 0 {
		fixture.Need(t, "the node harness needs root for its mount namespace")
	}
	so, launch := pluginSO(t), launcher(t)
	n := &node{t: t, dir: t.TempDir(), traces: map[string][]string{}}
	if n.r = render(t); o.helm {
		n.r = renderHelm(t)
	}
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
	const file = "fluent-bit.yaml"
	cfg := n.r.cm.Data[file]
	sd := regexp.MustCompile(`(?m)^(\s+)sink: stackdriver\n`)
	if !sd.MatchString(cfg) {
		t.Fatal("no stackdriver output in " + file)
	}
	cfg = sd.ReplaceAllString(cfg, "${0}${1}endpoint: "+n.cloud.addr+"\n${1}endpoint_plaintext: on\n")
	for k, v := range o.service {
		re := regexp.MustCompile(`(?m)^(  ` + regexp.QuoteMeta(k) + `: ).*$`)
		if !re.MatchString(cfg) {
			cfg = strings.Replace(cfg, "\nservice:\n", "\nservice:\n  "+k+": "+v+"\n", 1)
		}
		cfg = re.ReplaceAllString(cfg, "${1}"+v)
	}
	for k, v := range o.output {
		if re := regexp.MustCompile(`(?m)^(      ` + regexp.QuoteMeta(k) + `: ).*$`); re.MatchString(cfg) {
			cfg = re.ReplaceAllString(cfg, "${1}"+v)
			continue
		}
		cfg = regexp.MustCompile(`(?m)^(\s+)sink: (\w+)\n`).ReplaceAllString(cfg, "${0}${1}"+k+": "+v+"\n")
	}
	if o.workers > 0 {
		cfg = regexp.MustCompile(`(?m)^(\s+workers: )\d+$`).ReplaceAllString(cfg, "${1}"+strconv.Itoa(o.workers))
	}
	if o.fluentBitMultiline {
		cfg = strings.Replace(cfg, "\n  filters:\n", "\n  filters:\n    - name: multiline\n      match: kube.*\n      multiline.key_content: log\n      multiline.parser: go, java, python, ruby\n", 1)
		cfg = regexp.MustCompile(`(?m)^(\s+)sink: (\w+)\n`).ReplaceAllString(cfg, "${0}${1}exceptions: none\n")
	}
	if o.nullOutput {
		// Without the plugin there is no pod cache: the filter asks the API server itself,
		// so that the records still carry their metadata. The plugin is not loaded either.
		cfg = regexp.MustCompile(`(?m)^\s+kube_url: \S+\n`).ReplaceAllString(cfg, "")
		cfg = cfg[:strings.Index(cfg, "\n  outputs:\n")] + "\n  outputs:\n    - name: null\n      match: kube.*\n"
	}
	n.r.cm.Data[file] = cfg
	for i, e := range n.c.Env {
		if v, ok := o.env[e.Name]; ok {
			n.c.Env[i] = corev1.EnvVar{Name: e.Name, Value: v}
		}
	}
	n.metadata, n.kubeCA = metadata, kubePKI.CAFile
	n.buildImage(so, launch, papertrailPKI.CAFile)
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

func (n *node) hostPath(p string) string {
	dir := filepath.Join(n.dir, "host", p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		n.t.Fatal(err)
	}
	return dir
}

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
