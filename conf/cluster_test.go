package conf

// The cluster tier: the install as the README gives it, on a real one-node Kubernetes built
// from the upstream sources (kube-apiserver, etcd, kube-controller-manager, kube-scheduler
// and the kubelet, v1.35) and run with Debian's containerd and runc by the k8snode scripts
// beside the repository. What the node harness plays here is real: the kubelet runs the
// rendered pod spec (env, volumes, the projected service-account token, probes, the memory
// limit), containerd writes the pods' logs and the kubelet rotates and compresses them, the
// DaemonSet controller rolls an update, and the plugin watches the real API server with the
// shipped RBAC. What this machine lacks is named in the overlay the test writes, and nothing
// else: the image's local name and pull policy (no registry), the API server's address (no
// kube-proxy), the metadata server's (not GKE), the Papertrail stand-in's address in the
// Secret, and the Cloud Logging stand-in's endpoint in the configuration.

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/trailstack/trailstack/testkit/fixture"
	"github.com/trailstack/trailstack/testkit/testpki"
)

const (
	// k8sVersion is the Kubernetes the k8snode scripts build; their binaries are kept under
	// a directory named by it, for later runs.
	k8sVersion = "v1.35.4"
	// bridgeIP is the node's address, the pod bridge's gateway (k8snode's up.sh): how pods
	// reach the API server and the stand-ins.
	bridgeIP = "10.244.0.1"
	apiPort  = "16443"
	// agentNS is the namespace the install creates.
	agentNS = "trailstack"
)

// cluster is the one-node Kubernetes the tier runs on.
type cluster struct {
	t          *testing.T
	scripts    string // the k8snode scripts
	dir        string // K8SNODE_DIR: binaries, images, the running cluster's state
	kubeconfig string
	env        []string
}

// k8snodeDir is where the cluster's binaries are built and kept: K8SNODE_DIR, else a
// directory of the machine's own named by the version, which a later run reuses.
func k8snodeDir() string {
	if d := os.Getenv("K8SNODE_DIR"); d != "" {
		return d
	}
	return "/var/tmp/trailstack-k8snode-" + k8sVersion
}

// startCluster brings the cluster up, or reuses one already up (stopping only what it
// started), building its binaries first where they are not there yet (about 10 minutes on 2
// cores, once).
func startCluster(t *testing.T) *cluster {
	t.Helper()
	if os.Geteuid() != 0 {
		fixture.Need(t, "the cluster needs root (the kubelet, containerd)")
	}
	scripts := os.Getenv("K8SNODE_SCRIPTS")
	if scripts == "" {
		scripts = filepath.Join(fixture.Root(), "..", "shared", "k8snode")
	}
	if _, err := os.Stat(filepath.Join(scripts, "up.sh")); err != nil {
		fixture.Need(t, "no k8snode scripts at %s (set K8SNODE_SCRIPTS)", scripts)
	}
	for _, c := range []string{"containerd", "ctr", "runc", "podman", "/usr/lib/cni/bridge", "/bin/busybox"} {
		if _, err := exec.LookPath(c); err != nil {
			fixture.Need(t, "%s not found (.ci/run installs containerd, containernetworking-plugins, busybox-static)", c)
		}
	}
	c := &cluster{t: t, scripts: scripts, dir: k8snodeDir()}
	c.kubeconfig = filepath.Join(c.dir, "run", "pki", "admin.kubeconfig")
	c.env = append(os.Environ(), "K8SNODE_DIR="+c.dir, "KUBECONFIG="+c.kubeconfig,
		"PATH="+filepath.Join(c.dir, "bin")+":"+os.Getenv("PATH"), "NICE=", "JOBS="+strconv.Itoa(max(2, runtime.NumCPU())))
	for _, b := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl", "etcd"} {
		if _, err := os.Stat(filepath.Join(c.dir, "bin", b)); err != nil {
			start := time.Now()
			c.script("build.sh", nil)
			t.Logf("cluster: built Kubernetes %s into %s in %v", k8sVersion, c.dir, time.Since(start).Round(time.Second))
			break
		}
	}
	if c.up() {
		t.Logf("cluster: reusing the one up at %s", c.dir)
	} else {
		start := time.Now()
		// API_BIND: pods on the bridge reach the API server at the node's address.
		c.script("up.sh", nil, "API_BIND=0.0.0.0")
		t.Cleanup(func() { c.script("down.sh", []string{"--purge"}) })
		// A node of its own: no agent state left from an earlier run (the uninstall scenario
		// empties it again at the end).
		if err := os.RemoveAll("/var/lib/trailstack"); err != nil {
			t.Fatal(err)
		}
		t.Logf("cluster: up in %v", time.Since(start).Round(100*time.Millisecond))
	}
	// The agent, on the bridge, reaches the API server at the node's address.
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(bridgeIP, apiPort), 5*time.Second)
	if err != nil {
		t.Fatalf("the API server does not answer at %s:%s (a cluster started without API_BIND=0.0.0.0?): %v", bridgeIP, apiPort, err)
	}
	conn.Close()
	return c
}

// script runs one of the k8snode scripts with args and, beside the cluster's, the
// environment env; its output goes to the test log on failure.
func (c *cluster) script(name string, args []string, env ...string) {
	c.t.Helper()
	cmd := exec.Command("bash", append([]string{filepath.Join(c.scripts, name)}, args...)...)
	cmd.Env = append(append([]string{}, c.env...), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("%s: %v\n%s", name, err, tailOf(string(out), 40))
	}
}

func tailOf(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// up tells whether a cluster answers with the kubeconfig.
func (c *cluster) up() bool {
	if _, err := os.Stat(c.kubeconfig); err != nil {
		return false
	}
	cmd := exec.Command(filepath.Join(c.dir, "bin", "kubectl"), "get", "--raw", "/readyz", "--request-timeout=3s")
	cmd.Env = c.env
	return cmd.Run() == nil
}

// kubectl runs kubectl with stdin (may be empty) and fails the test on an error.
func (c *cluster) kubectl(stdin string, args ...string) string {
	c.t.Helper()
	out, err := c.kubectlErr(stdin, args...)
	if err != nil {
		c.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *cluster) kubectlErr(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.dir, "bin", "kubectl"), args...)
	cmd.Env = c.env
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// dumpState logs what a failed scenario leaves to read: the pods and the agent's log.
func (c *cluster) dumpState() {
	out, _ := c.kubectlErr("", "get", "pods", "-A", "-o", "wide")
	c.t.Logf("pods:\n%s", out)
	out, _ = c.kubectlErr("", "-n", agentNS, "describe", "pods")
	c.t.Logf("agent pods:\n%s", tailOf(out, 60))
	out, _ = c.kubectlErr("", "-n", agentNS, "logs", "ds/trailstack", "--tail=60")
	c.t.Logf("agent log:\n%s", out)
}

// importImage puts a podman image into the node's containerd, as a registry pull would.
func (c *cluster) importImage(image, dir string) {
	c.t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	tar := filepath.Join(dir, "image.tar")
	podmanOK(c.t, "save", "--format", "docker-archive", "-o", tar, image)
	cmd := exec.Command("ctr", "--address", filepath.Join(c.dir, "run", "containerd", "containerd.sock"), "-n", "k8s.io", "images", "import", tar)
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("ctr import: %v\n%s", err, out)
	}
	os.Remove(tar)
}

// install is trailstack installed on the cluster, with both destinations' stand-ins on the
// node's bridge.
type install struct {
	*node // the stand-ins, and the lines written, as the node harness counts them
	c     *cluster
	dir   string // the overlay
	image string // the built image, without its tag
	built string // the built image, tagged as the builder tagged it
	tag   int
	conf  string // the configuration the overlay's ConfigMap holds

	checked map[string]bool // the agent's repair lines accounted() has checked
}

// installKustomize writes the overlay over conf/ and applies it as the README does
// (kubectl apply -k), then waits for the rollout.
func installKustomize(t *testing.T, c *cluster) *install {
	t.Helper()
	n := &node{t: t, dir: t.TempDir(), traces: map[string][]string{}}
	listen := func(lc *net.ListenConfig) (net.Listener, error) {
		return lc.Listen(context.Background(), "tcp", bridgeIP+":0")
	}
	papertrailPKI := testpki.New(t, bridgeIP)
	n.papert = startSyslog(t, papertrailPKI, listen, true)
	n.papert.node = strings.TrimSpace(c.kubectl("", "get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"))
	n.cloud = startCloudLogging(t, listen)
	n.metadata = startMetadataAt(t, bridgeIP+":0")

	in := &install{node: n, c: c, dir: filepath.Join(n.dir, "overlay"), checked: map[string]bool{}}
	built := buildImage(t, n.dir, "localhost/trailstack-cluster", pluginSO(t), launcher(t), papertrailPKI.CAFile)
	in.image, in.built = strings.Split(built, ":")[0], built
	in.retag()

	cfg, err := os.ReadFile("fluent-bit.yaml")
	if err != nil {
		t.Fatal(err)
	}
	in.conf = withCloudEndpoint(t, string(cfg), n.cloud.addr)
	in.apply()
	return in
}

// retag gives the built image the next tag and imports it into the node's containerd.
func (in *install) retag() {
	in.tag++
	tagged := fmt.Sprintf("%s:%d", in.image, in.tag)
	podmanOK(in.t, "tag", in.built, tagged)
	in.t.Cleanup(func() { _ = podman("rmi", tagged).Run() })
	in.c.importImage(tagged, in.dir+"-image")
}

// withCloudEndpoint adds the Cloud Logging stand-in's endpoint to the stackdriver output,
// the one line the node harness adds too.
func withCloudEndpoint(t *testing.T, cfg, addr string) string {
	sd := regexp.MustCompile(`(?m)^(\s+)sink: stackdriver\n`)
	if !sd.MatchString(cfg) {
		t.Fatal("no stackdriver output in fluent-bit.yaml")
	}
	return sd.ReplaceAllString(cfg, "${0}${1}endpoint: "+addr+"\n${1}endpoint_plaintext: on\n")
}

// overlay is the kustomization over conf/ that names what this machine lacks; every other
// line of the manifests is conf/'s.
func (in *install) overlay() string {
	conf, err := filepath.Abs(".")
	if err != nil {
		in.t.Fatal(err)
	}
	rel, err := filepath.Rel(in.dir, conf)
	if err != nil {
		in.t.Fatal(err)
	}
	papertrail := in.papert.addr
	return fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %s
# No registry: the image is imported into the node's containerd.
images:
  - name: REGION-docker.pkg.dev/PROJECT_ID/trailstack/trailstack
    newName: %s
    newTag: "%d"
# The user's values: the Papertrail destination (the stand-in on the node's bridge) and the
# configuration with the Cloud Logging stand-in's endpoint.
secretGenerator:
  - name: papertrail
    namespace: %[4]s
    behavior: replace
    literals:
      - PAPERTRAIL_ADDRESS=%[5]s
      - PAPERTRAIL_TOKEN=
configMapGenerator:
  - name: trailstack-config
    namespace: %[4]s
    behavior: replace
    files:
      - fluent-bit.yaml
patches:
  # No kube-proxy: the API server at the node's address; no GKE: the metadata stand-in's;
  # no registry: never pulled.
  - patch: |
      apiVersion: apps/v1
      kind: DaemonSet
      metadata:
        name: trailstack
        namespace: %[4]s
      spec:
        template:
          spec:
            containers:
              - name: fluent-bit
                imagePullPolicy: Never
                env:
                  - name: KUBERNETES_SERVICE_HOST
                    value: "%[6]s"
                  - name: KUBERNETES_SERVICE_PORT
                    value: "%[7]s"
                  - name: GCE_METADATA_HOST
                    value: "%[8]s"
`, rel, in.image, in.tag, agentNS, papertrail, bridgeIP, apiPort, in.metadata)
}

// apply writes the overlay and applies it, then waits until the DaemonSet has rolled out.
func (in *install) apply() {
	in.t.Helper()
	writeFile(in.t, filepath.Join(in.dir, "kustomization.yaml"), []byte(in.overlay()))
	writeFile(in.t, filepath.Join(in.dir, "fluent-bit.yaml"), []byte(in.conf))
	in.c.kubectl("", "apply", "-k", in.dir)
	in.rolledOut()
}

// rolledOut waits for the DaemonSet's rollout and its pod's readiness, as the kubelet's
// probe reports it.
func (in *install) rolledOut() {
	in.t.Helper()
	in.c.kubectl("", "-n", agentNS, "rollout", "status", "ds/trailstack", "--timeout=180s")
}

// writer is a pod whose own process writes count lines (pod=NAME seq=N), rate a second,
// then sleeps; the kubelet and containerd write its log.
func (in *install) writer(ns, name string, count, rate int) {
	in.writerPhases(ns, name, rate, 0, count)
}

// writerPhases is a writer that writes each phase's count of lines, pausing pause seconds
// between phases (for the kubelet's rotation, checked every 10 s, to see each phase apart).
func (in *install) writerPhases(ns, name string, rate, pause int, counts ...int) {
	in.t.Helper()
	batch := max(1, rate/10)
	pad := strings.Repeat("a", 60)
	var script strings.Builder
	script.WriteString("i=0; ")
	total := 0
	for k, n := range counts {
		if k > 0 {
			fmt.Fprintf(&script, "sleep %d; ", pause)
		}
		total += n
		fmt.Fprintf(&script, `while [ $i -lt %d ]; do echo "pod=$POD seq=$i GET /api/v1/items?page=$i 200 %s"; i=$((i+1)); if [ $((i %% %d)) -eq 0 ]; then usleep 100000; fi; done; `, total, pad, batch)
	}
	script.WriteString("touch /written; exec sleep 2147483647")
	in.c.kubectl(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: %s
  labels: {app: %s, team: shop}
spec:
%s`, name, ns, name, writerSpec(script.String(), "Never")), "apply", "-f", "-")
	in.podMu.Lock()
	for i := 0; i < total; i++ {
		in.want = append(in.want, name+"#"+strconv.Itoa(i))
	}
	in.podMu.Unlock()
}

// writerSpec is a writer pod's spec (indented for a Pod), running script in busybox.
func writerSpec(script, restart string) string {
	return fmt.Sprintf(`  terminationGracePeriodSeconds: 1
  restartPolicy: %s
  containers:
    - name: app
      image: k8snode.local/busybox:1
      imagePullPolicy: Never
      env:
        - name: POD
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
      command: ["/bin/sh", "-c", %q]
`, restart, script)
}

// deployment is a Deployment of one writer pod (count lines, then sleep); it returns the
// pod's name, which its ReplicaSet made.
func (in *install) deployment(ns, name string, count int) string {
	in.t.Helper()
	script := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do echo "pod=$POD seq=$i GET /api/v1/items 200 %s"; i=$((i+1)); done; touch /written; exec sleep 2147483647`, count, strings.Repeat("b", 60))
	spec := strings.ReplaceAll(writerSpec(script, "Always"), "\n  ", "\n      ")
	in.c.kubectl(fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
  namespace: %[2]s
spec:
  replicas: 1
  selector:
    matchLabels: {app: %[1]s}
  template:
    metadata:
      labels: {app: %[1]s, team: shop}
    spec:
    %[3]s`, name, ns, spec), "apply", "-f", "-")
	in.c.kubectl("", "-n", ns, "rollout", "status", "deployment/"+name, "--timeout=120s")
	pod := strings.TrimPrefix(strings.TrimSpace(in.c.kubectl("", "-n", ns, "get", "pods", "-l", "app="+name, "-o", "name")), "pod/")
	in.podMu.Lock()
	for i := 0; i < count; i++ {
		in.want = append(in.want, pod+"#"+strconv.Itoa(i))
	}
	in.podMu.Unlock()
	return pod
}

// written waits until each writer has written all its lines: its script marks that with a
// file in its container (its log's last line may already be in a rotated file).
func (in *install) written(ns string, names ...string) {
	in.t.Helper()
	for _, name := range names {
		deadline := time.Now().Add(3 * time.Minute)
		for {
			if _, err := in.c.kubectlErr("", "-n", ns, "exec", name, "--", "sh", "-c", "test -f /written"); err == nil {
				break
			}
			if time.Now().After(deadline) {
				phase, _ := in.c.kubectlErr("", "-n", ns, "get", "pod", name, "-o", "jsonpath={.status.phase}")
				in.t.Fatalf("%s/%s did not write its lines: phase %q", ns, name, phase)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// podLogDir is a pod's container's log directory on the node, as the kubelet names it.
func (in *install) podLogDir(ns, name string) string {
	uid := in.c.kubectl("", "-n", ns, "get", "pod", name, "-o", "jsonpath={.metadata.uid}")
	return filepath.Join("/var/log/pods", ns+"_"+name+"_"+uid, "app")
}

// rotations counts a container's rotated logs: plain and compressed.
func rotations(dir string) (plain, gz int) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		switch {
		case strings.HasSuffix(e.Name(), ".gz"):
			gz++
		case strings.Contains(e.Name(), ".log."):
			plain++
		}
	}
	return plain, gz
}

// rotatedAtLeast waits up to a minute for a container's log directory to hold at least
// plain and gz rotated files, and returns what it holds.
func rotatedAtLeast(dir string, plain, gz int) (int, int) {
	deadline := time.Now().Add(time.Minute)
	for {
		p, g := rotations(dir)
		if p+g >= plain+gz && g >= gz || time.Now().After(deadline) {
			return p, g
		}
		time.Sleep(time.Second)
	}
}

// accounted checks the agent's account of every line (account_logs) against what the
// destinations received. In these scenarios no line stays lost: a line counted lost (not
// repaired) is a false alarm. A repair is true where the engine did lose lines, as when the
// kubelet rotates a log between the launcher's look at tail's DB and tail's first scan (tail
// then drops the rotated file's offset, see docs/tests.md), and each line it names arrives
// once at its output's destination; a repair of lines the engine had delivered makes them
// arrive twice.
func (in *install) accounted() {
	in.t.Helper()
	log := in.agentLog()
	for _, l := range regexp.MustCompile(`(?m)^.*(lost \d+ lines of pod|cannot read the buffer|cannot repair).*$`).FindAllString(log, -1) {
		in.t.Errorf("the agent counts a line lost that the engine did not lose for good: %s", l)
	}
	var aliases []string
	if _, outs, ok := strings.Cut(in.conf, "\n  outputs:\n"); ok {
		for _, m := range regexp.MustCompile(`(?m)^\s+alias: (\S+)$`).FindAllStringSubmatch(outs, -1) {
			aliases = append(aliases, m[1])
		}
	}
	repairing := regexp.MustCompile(`(?m)^.*\[output:trailstack:trailstack\.(\d+)\] repairing (\d+) lines of pod \S+ container \S+ \((\S+) bytes (\d+)-(\d+)\).*$`)
	for _, m := range repairing.FindAllStringSubmatch(log, -1) {
		if in.checked[m[0]] {
			continue
		}
		in.checked[m[0]] = true
		i, _ := strconv.Atoi(m[1])
		from, _ := strconv.ParseInt(m[4], 10, 64)
		to, _ := strconv.ParseInt(m[5], 10, 64)
		dest := map[string]*tally{"papertrail": in.papert.tally, "cloud-logging": in.cloud.tally}[aliases[min(i, len(aliases)-1)]]
		ids, err := lineIDsIn(m[3], from, to)
		if err != nil || len(ids) == 0 || dest == nil {
			in.t.Errorf("%s: its lines cannot be read back (%v, %d lines) or its output found (%v)", m[0], err, len(ids), aliases)
			continue
		}
		// Each repaired line arrives; then a while for any second copy.
		deadline := time.Now().Add(2 * time.Minute)
		for dest.missing(ids) > 0 && time.Now().Before(deadline) {
			time.Sleep(time.Second)
		}
		time.Sleep(15 * time.Second)
		if missing, twice := dest.missing(ids), dest.twice(ids); missing > 0 || twice > 0 {
			in.t.Errorf("%s: of the %d lines in that range, %d never arrived and %d arrived twice or more", m[0], len(ids), missing, twice)
		} else {
			in.t.Logf("the engine lost lines, the agent repaired them, each arrived once (%d in the range): %s", len(ids), m[0])
		}
	}
}

// lineIDsIn reads the harness's line ids in bytes from to to of a container's log (or of the
// .gz the kubelet made of it).
func lineIDsIn(path string, from, to int64) ([]string, error) {
	var b []byte
	var err error
	if strings.HasSuffix(path, ".gz") {
		b, err = gunzip(path)
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	if to > int64(len(b)) || from > to {
		return nil, fmt.Errorf("bytes %d-%d of %d", from, to, len(b))
	}
	var ids []string
	for _, m := range lineID.FindAllStringSubmatch(string(b[from:to]), -1) {
		ids = append(ids, m[1]+"#"+m[2])
	}
	return ids, nil
}

// agentLog is the log of the agent's current pod, the launcher's lines first.
func (in *install) agentLog() string {
	out, _ := in.c.kubectlErr("", "-n", agentNS, "logs", "ds/trailstack", "--tail=-1")
	return out
}

// agentPID is the host's PID of the agent container's process (Fluent Bit, which the
// launcher became).
func (in *install) agentPID() int {
	in.t.Helper()
	id := in.c.kubectl("", "-n", agentNS, "get", "pods", "-o", "jsonpath={.items[0].status.containerStatuses[0].containerID}")
	id = strings.TrimPrefix(strings.TrimSpace(id), "containerd://")
	out, err := exec.Command("ctr", "--address", filepath.Join(in.c.dir, "run", "containerd", "containerd.sock"), "-n", "k8s.io", "task", "ls").CombinedOutput()
	if err != nil {
		in.t.Fatalf("ctr task ls: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == id {
			if pid, err := strconv.Atoi(f[1]); err == nil && pid > 0 {
				return pid
			}
		}
	}
	in.t.Fatalf("the agent's container %q has no process:\n%s", id, out)
	return 0
}

// agentMemoryLimit is the memory limit of the agent container's cgroup, as runc set it.
func (in *install) agentMemoryLimit() int64 {
	in.t.Helper()
	pid := strconv.Itoa(in.agentPID())
	cg, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		in.t.Fatalf("the agent's process %s: %v", pid, err)
	}
	for _, l := range strings.Split(string(cg), "\n") {
		if f := strings.SplitN(l, ":", 3); len(f) == 3 && strings.Contains(","+f[1]+",", ",memory,") {
			b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", f[2], "memory.limit_in_bytes"))
			if err != nil {
				in.t.Fatal(err)
			}
			n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			return n
		}
	}
	in.t.Fatalf("the agent's process %s has no memory cgroup: %s", pid, cg)
	return 0
}

// restarts is how many times the kubelet restarted the agent's container.
func (in *install) restarts() int {
	in.t.Helper()
	out := in.c.kubectl("", "-n", agentNS, "get", "pods", "-o", "jsonpath={.items[0].status.containerStatuses[0].restartCount}")
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		in.t.Fatalf("restart count %q: %v", out, err)
	}
	return n
}

// grace is the agent pod's termination grace period, as the API server has it.
func (in *install) grace() time.Duration {
	in.t.Helper()
	out := in.c.kubectl("", "-n", agentNS, "get", "ds/trailstack", "-o", "jsonpath={.spec.template.spec.terminationGracePeriodSeconds}")
	s, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		in.t.Fatalf("grace period %q: %v", out, err)
	}
	return time.Duration(s) * time.Second
}

// pid is the PID of one of the cluster's processes, from the k8snode scripts' PID files.
func (c *cluster) pid(name string) int {
	c.t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, "run", "pids", name+".pid"))
	if err != nil {
		c.t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || syscall.Kill(pid, 0) != nil {
		c.t.Fatalf("%s: no process %q", name, b)
	}
	return pid
}

// agentGone waits until no pod of the DaemonSet runs.
func (in *install) agentGone() {
	in.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, _ := in.c.kubectlErr("", "-n", agentNS, "get", "pods", "-o", "name")
		if strings.TrimSpace(out) == "" {
			return
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("the agent's pod is still there: %s", out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestCluster(t *testing.T) {
	c := startCluster(t)
	in := installKustomize(t, c)
	c.kubectl("", "create", "namespace", "shop")
	t.Cleanup(func() { _, _ = c.kubectlErr("", "delete", "namespace", "shop", "--wait=false") })
	t.Cleanup(func() { _, _ = c.kubectlErr("", "delete", "-k", in.dir, "--wait=false") })
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpState()
		}
	})

	// Pods log; every line arrives at both destinations under its pod, with the labels the
	// plugin's watch of the real API server gave it.
	t.Run("steady", func(t *testing.T) {
		in.t = t
		in.writer("shop", "steady-1", 2000, 500)
		in.writer("shop", "steady-2", 1000, 200)
		web := in.deployment("shop", "web", 500)
		in.written("shop", "steady-1", "steady-2", web)
		ds := in.waitDelivered(90*time.Second, nil)
		onceEach(t, ds)
		for _, p := range []string{"steady-1", "steady-2"} {
			if l := in.cloud.labelsOf(p); l["k8s-pod/app"] != p || l["k8s-pod/team"] != "shop" {
				t.Errorf("%s's entries carry labels %v, want its pod's app and team", p, l)
			}
		}
		// The owner references from the API server: the Deployment above the ReplicaSet, as
		// GKE's agent labels it.
		if l := in.cloud.labelsOf(web); l["logging.gke.io/top_level_controller_type"] != "Deployment" || l["logging.gke.io/top_level_controller_name"] != "web" {
			t.Errorf("%s's entries carry labels %v, want its Deployment as the top-level controller", web, l)
		}
		report(t, in.node, "pods logging on a real node", ds, "")
		in.accounted()
	})

	// A pod that writes and is deleted before its lines reach Papertrail (which stops
	// reading meanwhile): they arrive under its identity, from the plugin's cache, which
	// keeps a deleted pod for a while.
	t.Run("pod deleted before its lines are sent", func(t *testing.T) {
		in.t = t
		in.papert.setReading(false)
		in.writer("shop", "short-lived", 1000, 2000)
		in.written("shop", "short-lived")
		// Tail finds a new log at its next scan (refresh_interval, 5 s): a pod deleted
		// before that is a log no agent saw. Cloud Logging having them says tail read them.
		in.waitDelivered(60*time.Second, nil, "cloud-logging")
		c.kubectl("", "-n", "shop", "delete", "pod", "short-lived", "--wait=true", "--timeout=60s")
		in.papert.setReading(true)
		ds := in.waitDelivered(120*time.Second, nil)
		onceEach(t, ds)
		if l := in.cloud.labelsOf("short-lived"); l["k8s-pod/app"] != "short-lived" {
			t.Errorf("short-lived's entries carry labels %v", l)
		}
		report(t, in.node, "a pod deleted before its lines were sent", ds, "")
		in.accounted()
	})

	// A rolling update through the DaemonSet controller, to a new image tag and a changed
	// ConfigMap, while a pod logs.
	t.Run("rolling update", func(t *testing.T) {
		in.t = t
		in.writer("shop", "during-update", 1500, 100)
		time.Sleep(3 * time.Second)
		in.retag()
		in.conf = strings.Replace(in.conf, "scheduler.cap: 60", "scheduler.cap: 30", 1)
		in.apply()
		in.written("shop", "during-update")
		ds := in.waitDelivered(120*time.Second, nil)
		onceEach(t, ds)
		report(t, in.node, "a rolling update to a new tag and configuration while a pod logs", ds, "")
		in.accounted()
	})

	// Papertrail stops reading (accepts, never acknowledges) across a rolling update: the
	// old pod exits within its grace period (the rollout does not wait for the kubelet's
	// SIGKILL), Cloud Logging keeps delivering meanwhile, and once Papertrail reads again
	// every line arrives there too, once.
	t.Run("Papertrail hung across a rolling update", func(t *testing.T) {
		in.t = t
		in.papert.setReading(false)
		defer in.papert.setReading(true) // the next scenarios need it, whatever happens here
		// hung-fill's lines fill Papertrail's window, so that the old agent has flushes
		// waiting when it is told to stop; hung-update's 2,000 (about 340 KB) make the
		// kubelet rotate its log at 200 KiB around the time the old agent stops.
		in.writer("shop", "hung-fill", 1000, 1000)
		in.writer("shop", "hung-update", 2000, 100)
		time.Sleep(8 * time.Second)
		in.retag()
		start := time.Now()
		in.apply()
		took := time.Since(start)
		grace := in.grace()
		if took >= grace {
			t.Errorf("with Papertrail hung the rollout took %v; the old pod was killed at its grace period (%v)", took, grace)
		}
		if took < 5*time.Second {
			t.Logf("the rollout took %v: the old agent had no flush waiting on Papertrail", took)
		}
		in.written("shop", "hung-fill", "hung-update")
		in.waitDelivered(90*time.Second, nil, "cloud-logging")
		in.papert.setReading(true)
		ds := in.waitDelivered(180*time.Second, nil)
		// Cloud Logging, the destination that kept up, gets every line once. Papertrail's
		// flushes that were waiting on the stalled connection when it timed out are retried
		// whole, and what of them its kernel had taken arrives twice (at least once, see
		// the README): reported, then settled for the next scenarios.
		for _, d := range ds {
			if d.name == "cloud-logging" && d.dups != 0 {
				t.Errorf("%v: want every line once", d)
			}
		}
		report(t, in.node, "Papertrail hung across a rolling update", ds, fmt.Sprintf(", rollout %v (grace %v)", took.Round(100*time.Millisecond), grace))
		in.accounted()
		in.papert.tally.settle()
	})

	// The kubelet's rotation (containerLogMaxSize 200Ki, checked every 10 s) under a running
	// agent, and while none runs: a pod that logged before keeps logging, and a pod created
	// in the gap logs through two rotations (the first compressed by the second) before an
	// agent returns.
	t.Run("rotation while no agent runs", func(t *testing.T) {
		in.t = t
		// busy's first lines give tail's scan (every 5 s) time to find its log before the
		// burst that the kubelet rotates: a log rotated before any scan found it is read by
		// no one (see README, what can still be lost).
		in.writerPhases("shop", "busy", 1500, 8, 20, 5980)
		in.written("shop", "busy")
		if p, gz := rotatedAtLeast(in.podLogDir("shop", "busy"), 1, 0); p+gz == 0 {
			t.Errorf("the kubelet did not rotate busy's log")
		}
		in.waitDelivered(120*time.Second, nil)

		// About 540 KB each: at most two rotations of 200Ki, within the three files the
		// kubelet keeps. in-gap writes two halves 25 s apart, so that each is rotated.
		in.writer("shop", "across-gap", 4000, 200)
		time.Sleep(3 * time.Second)
		in.c.kubectl("", "-n", agentNS, "patch", "ds/trailstack", "--type=merge",
			"-p", `{"spec":{"template":{"spec":{"nodeSelector":{"trailstack.test/no-such-node":"true"}}}}}`)
		in.agentGone()
		in.writerPhases("shop", "in-gap", 400, 25, 2000, 2000)
		in.written("shop", "across-gap", "in-gap")
		p, gz := rotatedAtLeast(in.podLogDir("shop", "in-gap"), 1, 1)
		if p+gz < 2 || gz < 1 {
			t.Errorf("in-gap's log rotated into %d plain and %d compressed files, want two rotations, one compressed", p, gz)
		}
		// The DaemonSet as shipped again: the agent returns.
		in.c.kubectl("", "-n", agentNS, "patch", "ds/trailstack", "--type=json",
			"-p", `[{"op":"remove","path":"/spec/template/spec/nodeSelector/trailstack.test~1no-such-node"}]`)
		in.rolledOut()
		ds := in.waitDelivered(120*time.Second, nil)
		onceEach(t, ds)
		log := in.agentLog()
		if !regexp.MustCompile(`in-gap_shop_app-[0-9a-f]+\.log: \d+ rotated files, \d+ bytes handed to tail: its logs rotated while no agent ran`).MatchString(log) {
			t.Errorf("the launcher did not say what it handed in-gap:\n%s", tailOf(log, 30))
		}
		report(t, in.node, fmt.Sprintf("rotations under the agent and while none ran (in-gap: %d plain, %d compressed)", p, gz), ds, ", "+handedLine(log))
		in.accounted()
	})

	// The kubelet ran the agent's probes all along: no restart (liveness), and the pod is
	// ready (readiness, which rollout status waited on).
	t.Run("probes", func(t *testing.T) {
		in.t = t
		out := c.kubectl("", "-n", agentNS, "get", "pods", "-o",
			`jsonpath={range .items[*]}{.metadata.name} restarts={.status.containerStatuses[0].restartCount} ready={.status.containerStatuses[0].ready}{"\n"}{end}`)
		if !regexp.MustCompile(`(?m)^trailstack-\S+ restarts=0 ready=true$`).MatchString(out) {
			t.Errorf("the agent's pod: %s", out)
		}
		// The runtime holds the container to the manifest's memory limit (cgroup v1).
		if got, want := in.agentMemoryLimit(), int64(512<<20); got != want {
			t.Errorf("the agent's container has a memory limit of %d bytes, want %d (512Mi)", got, want)
		}
	})

	// One destination down: Cloud Logging refuses every request (UNAVAILABLE) while a pod
	// logs, through a rolling update and then the agent's process killed (SIGKILL). The
	// engine keeps every chunk for Cloud Logging and replays each to both outputs at each
	// start: Papertrail gets every line once (the ledger skips what it confirmed), Cloud
	// Logging every line once it is back.
	t.Run("Cloud Logging down", func(t *testing.T) {
		in.t = t
		in.cloud.setDown(codes.Unavailable)
		// About 510 KB: the kubelet rotates the log twice meanwhile.
		in.writer("shop", "while-down", 3000, 100)
		time.Sleep(8 * time.Second)
		in.retag()
		in.apply()
		time.Sleep(5 * time.Second)
		if err := syscall.Kill(in.agentPID(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		in.written("shop", "while-down")
		in.rolledOut()
		in.waitDelivered(120*time.Second, nil, "papertrail")
		var mine []string
		for i := 0; i < 3000; i++ {
			mine = append(mine, "while-down#"+strconv.Itoa(i))
		}
		if arrived, _, _ := in.cloud.count(mine); arrived != 0 {
			t.Fatalf("Cloud Logging was down, yet %d lines arrived there", arrived)
		}
		in.cloud.setDown(codes.OK)
		ds := in.waitDelivered(180*time.Second, nil)
		onceEach(t, ds)
		// A destination's errors are not the probes' business: no restart but the kill,
		// still ready.
		out := c.kubectl("", "-n", agentNS, "get", "pods", "-o",
			`jsonpath={.items[0].status.containerStatuses[0].restartCount} {.items[0].status.containerStatuses[0].ready}`)
		if out != "1 true" {
			t.Errorf("after the outage the agent's restarts and readiness are %q, want 1 and true", out)
		}
		skipped := regexp.MustCompile(`skipped \d+ records of \d+ chunks`).FindString(in.agentLog())
		if skipped == "" {
			t.Errorf("the agent never said it skipped a replay:\n%s", tailOf(in.agentLog(), 30))
		}
		report(t, in.node, "Cloud Logging down through a rolling update and a killed agent, then back", ds, ", "+skipped)
		in.accounted()
	})

	// The buffer cap on a real node: Cloud Logging refuses every request while a pod logs,
	// and its output's storage.total_limit_size is cut to 1M, so the engine evicts its
	// oldest chunks for it. The output reads those lines back from the pod's log through the
	// shipped repair input and filter: every line arrives at both destinations once, with
	// its pod's metadata, and nothing is counted lost. The pod writes twice 1,600 lines (about
	// 250 KB each) with a pause between for the kubelet's check (10 s): it rotates the log
	// at 200 KiB after each, and compresses the first rotated file at the second rotation,
	// while nothing of it was confirmed: those lost lines are read from the .gz. (A third
	// would have the kubelet delete the first file, containerLogMaxFiles 3 here: its lines
	// are then counted lost, 1,600 of 1,600 in a run that did.)
	t.Run("buffer cap repaired", func(t *testing.T) {
		in.t = t
		shipped := in.conf
		in.conf = strings.Replace(in.conf, "storage.total_limit_size: 2G\n      sink: stackdriver", "storage.total_limit_size: 1M\n      sink: stackdriver", 1)
		// Repaired lines join the same capped queue: paced below what Cloud Logging drains
		// on a loaded machine, or the cap would evict them again (which nothing counts).
		in.conf = strings.Replace(in.conf, "      repair_dir: /var/lib/trailstack/repair/cloud-logging\n", "      repair_dir: /var/lib/trailstack/repair/cloud-logging\n      repair_rate: 100\n", 1)
		if in.conf == shipped || !strings.Contains(in.conf, "repair_rate: 100") {
			t.Fatal("the Cloud Logging output's storage.total_limit_size is not where this test looks")
		}
		defer func() {
			in.conf = shipped
			in.retag()
			in.apply()
			in.rolledOut()
		}()
		in.retag()
		in.apply()
		in.rolledOut()
		in.cloud.setDown(codes.Unavailable)
		defer func() {
			if t.Failed() {
				for _, l := range regexp.MustCompile(`(?m)^.*(repairing|lost \d+ lines|cannot repair|account_logs|evicted|rotated logs).*$`).FindAllString(in.agentLog(), -1) {
					t.Logf("agent: %s", l)
				}
				m, _ := filepath.Glob(in.podLogDir("shop", "over-cap") + "/*")
				t.Logf("the pod's log directory: %v", m)
			}
		}()
		in.writerPhases("shop", "over-cap", 300, 11, 1600, 1600)
		in.written("shop", "over-cap")
		plain, gz := rotatedAtLeast(in.podLogDir("shop", "over-cap"), 1, 1)
		if gz == 0 {
			t.Errorf("the kubelet compressed no rotated file of the pod's (%d plain)", plain)
		}
		time.Sleep(5 * time.Second)
		in.cloud.setDown(codes.OK)
		ds := in.waitDelivered(300*time.Second, nil)
		onceEach(t, ds)
		for _, d := range ds {
			if d.anonymous != 0 {
				t.Errorf("%v: repaired lines without their pod's metadata", d)
			}
		}
		if l := in.cloud.labelsOf("over-cap"); l["k8s-pod/app"] != "over-cap" {
			t.Errorf("over-cap's entries carry labels %v", l)
		}
		log := in.agentLog()
		repairing := regexp.MustCompile(`repairing \d+ lines of pod shop/over-cap[^\n]*`).FindAllString(log, -1)
		if len(repairing) == 0 || !strings.Contains(log, "evicted from output queue") {
			t.Errorf("the engine evicted nothing, or nothing was repaired:\n%s", tailOf(log, 30))
		}
		report(t, in.node, "Cloud Logging down with a 1M buffer cap, the evicted lines repaired", ds,
			fmt.Sprintf(", %d rotated files (%d compressed); %s", plain+gz, gz, strings.Join(repairing, "; ")))
		in.accounted()
	})

	// What containerd and the kubelet make of an application's output: a line of 40 KiB,
	// which containerd writes as 16 KiB parts (P) and tail's cri parser joins, and Java
	// stack traces, which the plugin joins into one message each.
	t.Run("long lines and stack traces", func(t *testing.T) {
		in.t = t
		in.papert.keepTexts()
		in.cloud.keepTexts()
		const traces = 20
		script := fmt.Sprintf(`echo "pod=$POD seq=0 $(head -c 40000 /dev/zero | tr '\0' x) end"; i=1; while [ $i -le %d ]; do echo "java.lang.IllegalStateException: order failed pod=$POD seq=$i"; printf '\tat com.example.shop.Orders.step(Orders.java:41)\n\tat com.example.shop.Main.main(Main.java:7)\n'; i=$((i+1)); done; touch /written; exec sleep 2147483647`, traces)
		c.kubectl(fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata:\n  name: shapes\n  namespace: shop\n  labels: {app: shapes}\nspec:\n%s", writerSpec(script, "Never")), "apply", "-f", "-")
		in.podMu.Lock()
		for i := 0; i <= traces; i++ {
			id := "shapes#" + strconv.Itoa(i)
			in.want = append(in.want, id)
			if i > 0 {
				in.traces[id] = []string{"java.lang.IllegalStateException: order failed pod=shapes seq=" + strconv.Itoa(i),
					"\tat com.example.shop.Orders.step(Orders.java:41)", "\tat com.example.shop.Main.main(Main.java:7)"}
			}
		}
		in.podMu.Unlock()
		in.written("shop", "shapes")
		ds := in.waitDelivered(90*time.Second, nil)
		onceEach(t, ds)
		want := "pod=shapes seq=0 " + strings.Repeat("x", 40000) + " end"
		for _, d := range []struct {
			name string
			t    *tally
		}{{"Papertrail", in.papert.tally}, {"Cloud Logging", in.cloud.tally}} {
			d.t.mu.Lock()
			long := d.t.texts["shapes#0"]
			d.t.mu.Unlock()
			if len(long) != 1 || !strings.Contains(long[0], want) {
				t.Errorf("%s: the 40 KiB line arrived as %d messages, want it whole once", d.name, len(long))
			}
			in.podMu.Lock()
			whole, merged := d.t.whole(in.traces)
			in.podMu.Unlock()
			if whole != traces || len(merged) > 0 {
				t.Errorf("%s: %d of %d stack traces whole; lines joined to another: %q", d.name, whole, traces, merged)
			}
		}
		report(t, in.node, "a 40 KiB line in containerd's parts and 20 stack traces", ds, "")
		in.accounted()
	})

	// The agent's process killed outright (SIGKILL, as an OOM kill or a node's crash leaves
	// it) while a pod logs: the kubelet restarts the container, and every line arrives.
	t.Run("agent killed", func(t *testing.T) {
		in.t = t
		restarts := in.restarts()
		in.writer("shop", "through-kill", 5000, 500)
		time.Sleep(3 * time.Second)
		pid := in.agentPID()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		in.written("shop", "through-kill")
		in.rolledOut()
		ds := in.waitDelivered(180*time.Second, nil)
		if got := in.restarts(); got != restarts+1 {
			t.Errorf("the agent's container restarted %d times in all, want %d", got, restarts+1)
		}
		report(t, in.node, "the agent killed while a pod logs", ds, "")
		in.accounted()
	})

	// The control plane hangs: the real API server is stopped (SIGSTOP), so it accepts
	// connections and never answers, and its watches go silent. A pod known before goes on
	// logging through the hang, and every line reaches both destinations with its pod's
	// labels while the API server still hangs: the kubernetes filter asks the plugin's cache,
	// never the API server. Once the API server is back, a pod created after it gets its
	// labels without a restart. (The kubelet itself did not restart a stopped agent while
	// its API server hung, in 3 minutes: the agent is left running here.)
	t.Run("API server hangs", func(t *testing.T) {
		in.t = t
		restarts := in.restarts()
		in.writer("shop", "through-hang", 3000, 100)
		time.Sleep(3 * time.Second)
		api := c.pid("kube-apiserver")
		if err := syscall.Kill(api, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		hung := time.Now()
		resumed := false
		resume := func() {
			if !resumed {
				resumed = true
				_ = syscall.Kill(api, syscall.SIGCONT)
			}
		}
		defer resume()
		// The writer's 30 s, while the API server hangs: every line arrives meanwhile.
		ds := in.waitDelivered(90*time.Second, nil)
		onceEach(t, ds)
		if l := in.cloud.labelsOf("through-hang"); l["k8s-pod/app"] != "through-hang" {
			t.Errorf("the last entry of a pod known before the hang carries labels %v, want its own", l)
		}
		took := time.Since(hung)
		resume()
		deadline := time.Now().Add(time.Minute)
		for !c.up() {
			if time.Now().After(deadline) {
				t.Fatal("the API server did not answer again after SIGCONT")
			}
			time.Sleep(time.Second)
		}
		in.rolledOut()
		if got := in.restarts(); got != restarts {
			t.Errorf("the agent's container restarted during the hang (%d times in all, %d before)", got, restarts)
		}
		in.writer("shop", "after-hang", 500, 250)
		in.written("shop", "after-hang")
		ds = in.waitDelivered(90*time.Second, nil)
		onceEach(t, ds)
		if l := in.cloud.labelsOf("after-hang"); l["k8s-pod/app"] != "after-hang" {
			t.Errorf("a pod created after the API server came back has labels %v, want its own", l)
		}
		report(t, in.node, "a pod logging while the API server hung", ds, fmt.Sprintf(", the API server stopped for %v", took.Round(time.Second)))
		in.accounted()
	})

	// The README's uninstall: kubectl delete -k, then the cleanup DaemonSet empties the
	// node's state.
	t.Run("uninstall", func(t *testing.T) {
		in.t = t
		in.uninstall()
	})

	// The Helm install of the official chart, on the same node: pods log, every line
	// arrives, then helm uninstall.
	t.Run("helm", func(t *testing.T) {
		in.t = t
		uninstall := in.helmInstall()
		defer uninstall()
		// A new install on a node whose state the uninstall emptied reads every container
		// log from its start (the cleanup's documented effect): the earlier pods' lines
		// arrive again, and this install is counted by its own pod's lines.
		in.podMu.Lock()
		in.want = nil
		in.podMu.Unlock()
		in.writer("shop", "under-helm", 2000, 400)
		in.written("shop", "under-helm")
		ds := in.waitDelivered(120*time.Second, nil)
		onceEach(t, ds)
		if l := in.cloud.labelsOf("under-helm"); l["k8s-pod/app"] != "under-helm" {
			t.Errorf("under-helm's entries carry labels %v", l)
		}
		report(t, in.node, "the Helm chart's install", ds, "")
		in.accounted()
	})
}

// uninstall removes the kustomize install as the README does (kubectl delete -k), then runs
// the cleanup DaemonSet (conf/uninstall, through an overlay naming the local image) until it
// has emptied the node's state directory, and deletes it.
func (in *install) uninstall() {
	in.t.Helper()
	in.c.kubectl("", "delete", "-k", in.dir, "--wait=true", "--timeout=120s")
	if left, _ := os.ReadDir("/var/lib/trailstack"); len(left) == 0 {
		in.t.Fatal("the agent left no state to clean up")
	}
	dir := in.dir + "-uninstall"
	rel := func(to string) string {
		abs, _ := filepath.Abs(to)
		r, err := filepath.Rel(dir, abs)
		if err != nil {
			in.t.Fatal(err)
		}
		return r
	}
	writeFile(in.t, filepath.Join(dir, "kustomization.yaml"), []byte(fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %s
images:
  - name: REGION-docker.pkg.dev/PROJECT_ID/trailstack/trailstack
    newName: %s
    newTag: "%d"
patches:
  - patch: |
      apiVersion: apps/v1
      kind: DaemonSet
      metadata:
        name: trailstack-cleanup
        namespace: default
      spec:
        template:
          spec:
            containers:
              - name: cleanup
                imagePullPolicy: Never
`, rel("uninstall"), in.image, in.tag)))
	in.c.kubectl("", "apply", "-k", dir)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, _ := in.c.kubectlErr("", "-n", "default", "logs", "ds/trailstack-cleanup")
		if strings.Contains(out, "uninstall: removed") {
			break
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("the cleanup DaemonSet did not say it removed the state: %s", out)
		}
		time.Sleep(time.Second)
	}
	if left, _ := os.ReadDir("/var/lib/trailstack"); len(left) != 0 {
		in.t.Errorf("the node's state directory still holds %d entries after the uninstall", len(left))
	}
	// Deleted, the cleanup pod exits on SIGTERM: the kubelet need not kill it at the grace
	// period (30 s).
	start := time.Now()
	in.c.kubectl("", "delete", "-k", dir, "--wait=true", "--timeout=120s")
	if d := time.Since(start); d > 20*time.Second {
		in.t.Errorf("deleting the cleanup DaemonSet took %v: its pod did not exit on SIGTERM", d)
	}
}

// helmInstall installs the official chart as the README does: the namespace, the
// ResourceQuota and the Secret beside the chart, then helm install (Helm's own library, as
// the helm command runs it) with conf/helm/values.yaml and the configuration by --set-file,
// and --set for what this machine lacks: the image's local name, tag and pull policy, and
// the addresses of the API server and the metadata server from a ConfigMap (envFrom; the
// values' env list stays as it is). It returns the release's uninstall.
func (in *install) helmInstall() (uninstall func()) {
	t := in.t
	t.Helper()
	in.c.kubectl("", "create", "namespace", helmNamespace)
	in.c.kubectl("", "-n", helmNamespace, "apply", "-f", "kubernetes/resourcequota.yaml")
	in.c.kubectl("", "-n", helmNamespace, "create", "secret", "generic", "papertrail",
		"--from-literal=PAPERTRAIL_ADDRESS="+in.papert.addr, "--from-literal=PAPERTRAIL_TOKEN=")
	in.c.kubectl("", "-n", helmNamespace, "create", "configmap", "cluster-addresses",
		"--from-literal=KUBERNETES_SERVICE_HOST="+bridgeIP, "--from-literal=KUBERNETES_SERVICE_PORT="+apiPort,
		"--from-literal=GCE_METADATA_HOST="+in.metadata)

	ch, err := loader.Load(helmChart(t))
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(in.dir, "fluent-bit.yaml")
	writeFile(t, conf, []byte(in.conf))
	opts := values.Options{
		ValueFiles: helmValues.ValueFiles,
		FileValues: []string{`config.extraFiles.fluent-bit\.yaml=` + conf},
		Values: []string{"image.repository=" + in.image, "image.pullPolicy=Never",
			"envFrom[0].configMapRef.name=cluster-addresses"},
		StringValues: []string{"image.tag=" + strconv.Itoa(in.tag)},
	}
	vals, err := opts.MergeValues(getter.Providers{})
	if err != nil {
		t.Fatal(err)
	}
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &in.c.kubeconfig
	ns := helmNamespace
	flags.Namespace = &ns
	cfg := &action.Configuration{}
	if err := cfg.Init(flags, helmNamespace, "secret", func(string, ...any) {}); err != nil {
		t.Fatal(err)
	}
	inst := action.NewInstall(cfg)
	inst.ReleaseName, inst.Namespace = helmRelease, helmNamespace
	inst.Wait, inst.Timeout = true, 3*time.Minute
	if _, err := inst.Run(ch, vals); err != nil {
		t.Fatalf("helm install: %v", err)
	}
	in.rolledOut()
	return func() {
		un := action.NewUninstall(cfg)
		un.Wait, un.Timeout = true, 2*time.Minute
		if _, err := un.Run(helmRelease); err != nil {
			t.Errorf("helm uninstall: %v", err)
		}
		in.c.kubectl("", "delete", "namespace", helmNamespace, "--wait=true", "--timeout=120s")
	}
}

// gunzip reads a compressed file whole.
func gunzip(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	zr, err := gzip.NewReader(fh)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}
