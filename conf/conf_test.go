package conf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/core/conffile"
	"github.com/trailstack/trailstack/sinks"
)

// shippedConf is the shipped configuration, the one file of the ConfigMap.
const shippedConf = "fluent-bit.yaml"

// parseConf reads a Fluent Bit configuration with the offline check's reader (make
// check-conf), in the format its name says.
func parseConf(t *testing.T, name string, data []byte) []core.Section {
	t.Helper()
	f, err := conffile.Read(name, data)
	if err != nil {
		t.Fatal(err)
	}
	return f.Sections
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fluentBitConf(t *testing.T) []core.Section {
	return parseConf(t, shippedConf, readFile(t, shippedConf))
}

// on is a Fluent Bit boolean that is true.
func on(v string) bool {
	return slices.Contains([]string{"on", "true", "yes", "1"}, strings.ToLower(v))
}

func only(t *testing.T, secs []core.Section, name string) core.MapGetter {
	t.Helper()
	var found []core.MapGetter
	for _, s := range secs {
		if s.Name == name {
			found = append(found, s.Keys)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d [%s] sections, want 1", len(found), name)
	}
	return found[0]
}

// containers is the tail input of the containers' logs, or the kubernetes filter of their
// records (the others are the repair's: their own input and filter).
func containers(t *testing.T, secs []core.Section, name string) core.MapGetter {
	t.Helper()
	var found []core.MapGetter
	for _, s := range secs {
		if s.Name == name && (strings.HasPrefix(s.Keys.Get("Tag"), "kube.") || s.Keys.Get("Match") == "kube.*") {
			found = append(found, s.Keys)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d [%s] sections of the containers' logs, want 1", len(found), name)
	}
	return found[0]
}

// Every key of every trailstack output is one the plugin reads, with a value it accepts.
func TestOutputsPassThePluginsOwnParser(t *testing.T) {
	env := map[string]string{"PAPERTRAIL_ADDRESS": "logs1.papertrailapp.com:12345", "NODE_NAME": "node-1"}
	// What tools/confcheck runs on a user's file.
	if errs := conffile.Check(shippedConf, readFile(t, shippedConf), sinks.All, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); len(errs) > 0 {
		t.Errorf("%v", errs)
	}
	used := map[string]bool{}
	for _, s := range fluentBitConf(t) {
		if s.Name != "OUTPUT" || !strings.EqualFold(s.Keys.Get("Name"), "trailstack") {
			continue
		}
		used[s.Keys.Get("sink")] = true
		if s.Keys.Get("Retry_Limit") != "no_limits" {
			t.Errorf("[OUTPUT] %s: Retry_Limit %q: a limit drops chunks", s.Keys.Get("Alias"), s.Keys.Get("Retry_Limit"))
		}
		if w, _ := strconv.Atoi(s.Keys.Get("Workers")); w < 1 {
			t.Errorf("[OUTPUT] %s: Workers %q: with 0 the flush blocks Fluent Bit's main thread", s.Keys.Get("Alias"), s.Keys.Get("Workers"))
		}
	}
	if !used["syslog"] || !used["stackdriver"] {
		t.Errorf("outputs to %v, want both syslog and stackdriver", used)
	}
	// And a misspelt key is caught.
	// make check-conf reads the Secret's file too: its placeholder address is caught.
	placeholder := map[string]string{}
	for _, l := range strings.Split(string(readFile(t, "papertrail.env")), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			placeholder[k] = v
		}
	}
	errs := conffile.Check(shippedConf, readFile(t, shippedConf), sinks.All, func(k string) (string, bool) {
		if v, ok := placeholder[k]; ok {
			return v, true
		}
		v, ok := env[k]
		return v, ok
	})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `config key "address"`) {
		t.Errorf("the placeholder address: %v", errs)
	}
	// A misspelt key in the shipped file is named with its file and line.
	lines := strings.Split(string(readFile(t, shippedConf)), "\n")
	i := slices.IndexFunc(lines, func(l string) bool { return strings.TrimSpace(l) == "ack_timeout: 10s" })
	lines[i] = strings.Replace(lines[i], "ack_timeout", "ack_timout", 1)
	want := fmt.Sprintf(`%s:%d: output papertrail: keys that sink syslog does not read: ack_timout`, shippedConf, i+1)
	if errs := conffile.Check(shippedConf, []byte(strings.Join(lines, "\n")), sinks.All, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); len(errs) != 1 || errs[0].Error() != want {
		t.Errorf("a misspelt key: %v, want %s", errs, want)
	}
}

func TestInputBuffersOnDisk(t *testing.T) {
	secs := fluentBitConf(t)
	svc := only(t, secs, "SERVICE")
	in := containers(t, secs, "INPUT")
	for k, want := range map[string]string{"Name": "tail", "storage.type": "filesystem",
		"Tag": "kube.var.log.containers.<file>", "Tag_Regex": "(?<file>[^/]+)$"} {
		if in.Get(k) != want {
			t.Errorf("[INPUT] %s = %q, want %q", k, in.Get(k), want)
		}
	}
	// The kubelet's links, and where the image's launcher hands back rotated logs; the
	// launcher reads the DB tail keeps (the Dockerfile's ENTRYPOINT, checked in TestDockerfile).
	if paths := strings.Split(in.Get("Path"), ","); len(paths) != 2 || paths[0] != "/var/log/containers/*.log" || paths[1] != "/var/lib/trailstack/resume/*/*.log" {
		t.Errorf("[INPUT] Path %q", in.Get("Path"))
	}
	if !strings.Contains(in.Get("multiline.parser"), "cri") || in.Get("DB") == "" || svc.Get("storage.path") == "" {
		t.Errorf("tail needs the cri parser, a DB and a storage.path: %v %v", in, svc)
	}
	if !on(in.Get("Read_from_Head")) {
		t.Errorf("[INPUT] Read_from_Head %q", in.Get("Read_from_Head"))
	}
	if !on(svc.Get("HTTP_Server")) {
		t.Error("the HTTP server (the probes' endpoint) is off")
	}
}

// What a node needs of tail, the filter and the scheduler; the node harness shows each in
// the real engine.
func TestShippedNodeSettings(t *testing.T) {
	secs := fluentBitConf(t)
	svc, in, filter := only(t, secs, "SERVICE"), containers(t, secs, "INPUT"), containers(t, secs, "FILTER")
	// A file with no offset in the DB at the first scan is read from its end otherwise.
	if !on(in.Get("Read_from_Head")) {
		t.Error("Read_from_Head is not On: a pod that logs while no agent runs loses those lines")
	}
	// Otherwise one long line ends the file's tail.
	if !on(in.Get("Skip_Long_Lines")) {
		t.Error("Skip_Long_Lines is not On")
	}
	// The whole pod object, up to the API server's largest (etcd's 1.5 MiB).
	if n, ok := core.ParseSize(filter.Get("Buffer_Size")); !ok || n != 0 && n < 1536<<10 {
		t.Errorf("kubernetes filter Buffer_Size %q: a pod object larger than it gets no metadata", filter.Get("Buffer_Size"))
	}
	if c, err := strconv.Atoi(svc.Get("scheduler.cap")); err != nil || c > 300 {
		t.Errorf("scheduler.cap %q: a chunk may wait that long for its next try after an outage", svc.Get("scheduler.cap"))
	}
	// Every line accounted for: tail puts the offset on each record, and each output reads the
	// kubelet's links tail reads, the buffer the engine writes and tail's own limits.
	if in.Get("Offset_Key") != "trailstack_offset" {
		t.Errorf("[INPUT] Offset_Key %q: the outputs cannot account for the lines", in.Get("Offset_Key"))
	}
	for _, s := range secs {
		if s.Name != "OUTPUT" {
			continue
		}
		// What an output repairs comes back to it alone, through the repair input.
		out := filepath.Base(s.Keys.Get("repair_dir"))
		if rx := s.Keys.Get("Match_Regex"); !strings.Contains(rx, `repair\.`+out+`)`) || filepath.Dir(s.Keys.Get("repair_dir")) != "/var/lib/trailstack/repair" {
			t.Errorf("[OUTPUT] %s: repair_dir %q and Match_Regex %q do not meet", s.Keys.Get("Alias"), s.Keys.Get("repair_dir"), rx)
		}
		want := map[string]string{"account_logs": strings.TrimSuffix(strings.Split(in.Get("Path"), ",")[0], "/*.log"),
			"storage_path": svc.Get("storage.path"), "account_max_line": in.Get("Buffer_Max_Size"), "account_rotate_wait": in.Get("Rotate_Wait") + "s"}
		for k, v := range want {
			if got := s.Keys.Get(k); got != v {
				t.Errorf("[OUTPUT] %s: %s %q, want %q", s.Keys.Get("Alias"), k, got, v)
			}
		}
	}
	// A filesystem buffer that a node's disk holds (README: Disk): one output's queue after the
	// other's can hold both caps.
	for _, s := range secs {
		if s.Name == "OUTPUT" {
			if n, ok := core.ParseSize(s.Keys.Get("storage.total_limit_size")); !ok || n == 0 || n > 4<<30 {
				t.Errorf("[OUTPUT] %s: storage.total_limit_size %q", s.Keys.Get("Alias"), s.Keys.Get("storage.total_limit_size"))
			}
		}
	}
}

// GKE admits a pod of a critical priority class outside kube-system only where a
// ResourceQuota of its namespace is scoped to that class.
func TestAdmittedOnGKEStandard(t *testing.T) { checkAdmitted(t, render(t)) }

func checkAdmitted(t *testing.T, r *rendered) {
	t.Helper()
	class := r.ds.Spec.Template.Spec.PriorityClassName
	if class != "system-node-critical" && class != "system-cluster-critical" || r.ds.Namespace == "kube-system" {
		return
	}
	q := r.quota
	ok := q.Namespace == r.ds.Namespace && q.Spec.Scopes == nil && q.Spec.Hard.Pods() != nil && q.Spec.Hard.Pods().Value() > 0
	if sel := q.Spec.ScopeSelector; ok && sel != nil {
		ok = false
		for _, e := range sel.MatchExpressions {
			if e.ScopeName == corev1.ResourceQuotaScopePriorityClass && e.Operator == corev1.ScopeSelectorOpIn && slices.Contains(e.Values, class) {
				ok = true
			}
		}
	} else {
		ok = false
	}
	if !ok {
		t.Errorf("no ResourceQuota in %s scoped to PriorityClass %s: GKE refuses the pods (%+v)", r.ds.Namespace, class, q)
	}
}

type rendered struct {
	ds        appsv1.DaemonSet
	cm        corev1.ConfigMap
	secret    corev1.Secret
	sa        corev1.ServiceAccount
	role      rbacv1.ClusterRole
	binding   rbacv1.ClusterRoleBinding
	namespace corev1.Namespace
	quota     corev1.ResourceQuota
}

// render builds conf/ with kustomize and decodes every object strictly into its k8s.io/api
// type: a field the type does not have fails.
func render(t *testing.T) *rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), ".")
	if err != nil {
		t.Fatalf("kustomize: %v", err)
	}
	r := &rendered{}
	seen := map[string]int{}
	for _, res := range rm.Resources() {
		js, err := res.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		into, ok := map[string]any{
			"DaemonSet": &r.ds, "ConfigMap": &r.cm, "Secret": &r.secret, "ServiceAccount": &r.sa,
			"ClusterRole": &r.role, "ClusterRoleBinding": &r.binding, "Namespace": &r.namespace,
			"ResourceQuota": &r.quota,
		}[res.GetKind()]
		if !ok {
			t.Fatalf("unexpected %s", res.GetKind())
		}
		seen[res.GetKind()]++
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.DisallowUnknownFields()
		if err := dec.Decode(into); err != nil {
			t.Fatalf("%s %s: %v", res.GetKind(), res.GetName(), err)
		}
	}
	for _, kind := range []string{"DaemonSet", "ConfigMap", "Secret", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Namespace", "ResourceQuota"} {
		if seen[kind] != 1 {
			t.Fatalf("%d %s objects, want 1", seen[kind], kind)
		}
	}
	return r
}

func TestManifests(t *testing.T) { checkInstall(t, render(t)) }

// checkInstall holds an install's objects (kustomize's, or the Helm chart's with our values)
// to what the agent needs: one function for both.
func checkInstall(t *testing.T, r *rendered) {
	t.Helper()
	spec := r.ds.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	c := spec.Containers[0]
	// The image's ENTRYPOINT runs (the launcher, then Fluent Bit: no command), with the
	// image's arguments or ones that name the shipped file (the node harness runs both in a
	// real runtime).
	args := c.Args
	if len(args) == 0 {
		args = imageCmd(t)
	}
	if len(c.Command) != 0 || len(args) != 2 || args[0] != "-c" || path.Base(args[1]) != shippedConf {
		t.Errorf("command %q args %q: want the image's entrypoint with -c .../%s", c.Command, c.Args, shippedConf)
	}
	// The pod cache's endpoint (kube_metadata_listen) is on loopback: the pod's own while the
	// pod has its own network; on the host's, every host-network pod could read it.
	if spec.HostNetwork {
		t.Error("hostNetwork: the Kubernetes metadata endpoint would be open to the node's host-network pods")
	}

	// The ConfigMap carries the files as they are in the repo, mounted where the image
	// expects them.
	// (Helm's block scalar drops the file's last newline.)
	if strings.TrimSuffix(r.cm.Data[shippedConf], "\n") != strings.TrimSuffix(string(readFile(t, shippedConf)), "\n") {
		t.Errorf("the ConfigMap does not hold conf/%s as it is", shippedConf)
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	mountedAt := func(p string) (corev1.VolumeMount, corev1.Volume, bool) {
		for dir := p; dir != "/"; dir = path.Dir(dir) {
			if m, ok := mounts[dir]; ok {
				return m, vols[m.Name], true
			}
		}
		return corev1.VolumeMount{}, corev1.Volume{}, false
	}
	secs := fluentBitConf(t)
	svc, in := only(t, secs, "SERVICE"), containers(t, secs, "INPUT")
	// The file Fluent Bit is given is the ConfigMap's, where the pod mounts it.
	if f := args[len(args)-1]; !slices.Contains(c.Args, f) && !slices.Contains(imageCmd(t), f) {
		t.Errorf("Fluent Bit reads %s", f)
	} else if _, v, ok := mountedAt(f); !ok || v.ConfigMap == nil || v.ConfigMap.Name != r.cm.Name || r.cm.Data[path.Base(f)] == "" {
		t.Errorf("%s is not in the mounted ConfigMap", f)
	}
	for what, p := range map[string]string{"storage.path": svc.Get("storage.path"), "DB": in.Get("DB")} {
		m, v, ok := mountedAt(strings.TrimSuffix(p, "/"))
		if !ok || v.HostPath == nil || m.ReadOnly {
			t.Errorf("%s %s is not on a writable hostPath: it would not survive the pod", what, p)
		}
	}
	if m, v, ok := mountedAt("/var/log/containers"); !ok || v.HostPath == nil || v.HostPath.Path != "/var/log" || !m.ReadOnly {
		t.Error("/var/log is not mounted read-only from the host")
	}

	// Shutdown as Fluent Bit 5.1.1 runs it (flb_engine.c, flb_output_thread.c): on SIGTERM
	// it retries for up to Grace seconds, then joins each output's workers, which finish
	// the flush in hand before running the rest of their queue; the plugin answers those at
	// once while the destination is known dead. So the kubelet must wait Grace + the
	// longest flush + a margin to exit. Each output states its flush bound explicitly.
	grace, _ := strconv.Atoi(svc.Get("Grace"))
	var longest time.Duration
	for _, s := range secs {
		if s.Name != "OUTPUT" {
			continue
		}
		var keys []string
		switch s.Keys.Get("sink") {
		case "syslog":
			keys = []string{"flush_timeout"}
		case "stackdriver":
			keys = []string{"timeout"}
		}
		var flush time.Duration
		for _, k := range keys {
			d, err := time.ParseDuration(s.Keys.Get(k))
			if err != nil {
				t.Errorf("[OUTPUT] %s: %s %q: state it, it is part of the shutdown budget", s.Keys.Get("Alias"), k, s.Keys.Get(k))
			}
			flush += d
		}
		longest = max(longest, flush)
	}
	const margin = 5 * time.Second
	if budget := time.Duration(grace)*time.Second + longest + margin; grace < 5 || spec.TerminationGracePeriodSeconds == nil ||
		time.Duration(*spec.TerminationGracePeriodSeconds)*time.Second < budget {
		t.Errorf("terminationGracePeriodSeconds %d < Grace %ds + longest flush %v + %v", ptrValue(spec.TerminationGracePeriodSeconds), grace, longest, margin)
	}

	// Probes on "/", which does not turn on a destination's errors.
	port, _ := strconv.Atoi(svc.Get("HTTP_Port"))
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || containerPort(c, p.HTTPGet.Port) != port || p.HTTPGet.Path != "/" {
			t.Errorf("%s probe %+v, want / on %d", name, p, port)
		}
	}
	if spec.NodeSelector["kubernetes.io/os"] != "linux" {
		t.Error("pods are not kept to Linux nodes")
	}
	envs := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		envs[e.Name] = e
	}
	if e := envs["NODE_NAME"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Error("NODE_NAME does not come from the downward API")
	}
	if e := envs["PAPERTRAIL_ADDRESS"]; e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != r.secret.Name {
		t.Error("PAPERTRAIL_ADDRESS does not come from the generated Secret")
	} else if _, ok := r.secret.Data[e.ValueFrom.SecretKeyRef.Key]; !ok {
		if _, ok := r.secret.StringData[e.ValueFrom.SecretKeyRef.Key]; !ok {
			t.Error("the Secret lacks PAPERTRAIL_ADDRESS")
		}
	}
	if spec.PriorityClassName != "system-node-critical" || len(spec.Tolerations) == 0 || spec.Tolerations[0].Operator != corev1.TolerationOpExists {
		t.Error("not scheduled on every node as node-critical")
	}
	if u := r.ds.Spec.UpdateStrategy; u.Type != appsv1.RollingUpdateDaemonSetStrategyType || u.RollingUpdate == nil || u.RollingUpdate.MaxUnavailable == nil {
		t.Error("no RollingUpdate with maxUnavailable")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("no resource requests and limits")
	}
	// The Go heap's soft cap leaves most of the pod's memory to the engine's chunks.
	var goMemLimit string
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" {
			goMemLimit = e.Value
		}
	}
	if q, err := resource.ParseQuantity(strings.TrimSuffix(goMemLimit, "B")); err != nil || q.Value() <= 0 || 4*q.Value() > c.Resources.Limits.Memory().Value() {
		t.Errorf("GOMEMLIMIT %q: want a Go memory limit of at most a quarter of the pod's %v", goMemLimit, c.Resources.Limits.Memory())
	}
	sc := c.SecurityContext
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.Privileged != nil && *sc.Privileged || sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0 {
		t.Errorf("security context grants more than reading logs and writing state needs: %+v", sc)
	}
	if spec.ServiceAccountName != r.sa.Name || r.sa.Annotations["iam.gke.io/gcp-service-account"] == "" {
		t.Error("no Workload Identity service account")
	}
	if r.binding.Subjects[0].Name != r.sa.Name || r.binding.Subjects[0].Namespace != r.ds.Namespace || r.binding.RoleRef.Name != r.role.Name {
		t.Error("the ClusterRoleBinding does not bind the DaemonSet's service account")
	}
	if r.ds.Namespace != r.namespace.Name {
		t.Errorf("DaemonSet in %q, namespace %q", r.ds.Namespace, r.namespace.Name)
	}
	// The tail input excludes our own pods' logs, by the namespace they run in.
	if !strings.Contains(in.Get("Exclude_Path"), r.ds.Name+"-*_"+r.ds.Namespace+"_") {
		t.Errorf("Exclude_Path %q does not exclude pods %s-* of namespace %s", in.Get("Exclude_Path"), r.ds.Name, r.ds.Namespace)
	}
	// The pods' labels are the ones the PodMonitoring selects.
	var pm struct {
		Spec struct {
			Selector metav1.LabelSelector
		}
	}
	if err := yaml.Unmarshal(readFile(t, "monitoring/podmonitoring.yaml"), &pm); err != nil {
		t.Fatal(err)
	}
	for k, v := range pm.Spec.Selector.MatchLabels {
		if r.ds.Spec.Template.Labels[k] != v {
			t.Errorf("the PodMonitoring selects %s=%s, the pods have %q", k, v, r.ds.Spec.Template.Labels[k])
		}
	}
	checkAdmitted(t, r)
}

// containerPort is the number a probe's port names, by number or by the container's name
// for it.
func containerPort(c corev1.Container, p intstr.IntOrString) int {
	if p.Type == intstr.Int {
		return p.IntValue()
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort)
		}
	}
	return 0
}

// imageCmd is the Dockerfile's CMD, Fluent Bit's default arguments.
func imageCmd(t *testing.T) []string {
	t.Helper()
	var cmd []string
	if m := regexp.MustCompile(`(?m)^CMD (.+)$`).FindSubmatch(readFile(t, "../Dockerfile")); m == nil || json.Unmarshal(m[1], &cmd) != nil {
		t.Fatal("no CMD in exec form")
	}
	return cmd
}

// The Dockerfile puts the .so where the configuration loads it and the CA bundle where the
// syslog output reads it, on a pinned Fluent Bit image, built with the Go of go.mod.
func TestDockerfile(t *testing.T) {
	df := string(readFile(t, "../Dockerfile"))
	so := only(t, fluentBitConf(t), "PLUGINS").Get("Path")
	if !regexp.MustCompile(`(?m)^COPY --from=build /out/out_trailstack.so ` + regexp.QuoteMeta(so) + `$`).MatchString(df) {
		t.Errorf("the Dockerfile does not put the .so at %s", so)
	}
	var caFile string
	for _, s := range fluentBitConf(t) {
		if s.Keys.Get("sink") == "syslog" {
			caFile = s.Keys.Get("ca_file")
		}
	}
	if !regexp.MustCompile(`(?m)^COPY --from=build /etc/ssl/certs/ca-certificates.crt ` + regexp.QuoteMeta(caFile) + `$`).MatchString(df) {
		t.Errorf("the Dockerfile does not put a CA bundle at %s", caFile)
	}
	// The launcher runs first, on the tail input's DB, into the directory its Path reads: it
	// is the ENTRYPOINT (the base image's is fluent-bit, which would take a CMD as its own
	// arguments), and the CMD is Fluent Bit's arguments. The node harness runs the image.
	in := containers(t, fluentBitConf(t), "INPUT")
	var entry, cmd []string
	for name, into := range map[string]*[]string{"ENTRYPOINT": &entry, "CMD": &cmd} {
		if m := regexp.MustCompile(`(?m)^` + name + ` (.+)$`).FindStringSubmatch(df); m == nil || json.Unmarshal([]byte(m[1]), into) != nil {
			t.Fatalf("no %s in exec form", name)
		}
	}
	flag := func(name string) string {
		if i := slices.Index(entry, name); i >= 0 && i+1 < len(entry) {
			return entry[i+1]
		}
		return ""
	}
	if !regexp.MustCompile(`(?m)^COPY --from=build /out/trailstack-launch `+regexp.QuoteMeta(entry[0])+`$`).MatchString(df) ||
		flag("-db") != in.Get("DB") || !slices.Contains(strings.Split(in.Get("Path"), ","), flag("-resume")+"/*/*.log") ||
		!slices.Equal(entry[slices.Index(entry, "--")+1:], []string{"/fluent-bit/bin/fluent-bit"}) ||
		!slices.Equal(cmd, []string{"-c", "/fluent-bit/etc/" + shippedConf}) {
		t.Errorf("ENTRYPOINT %q CMD %q: want trailstack-launch on the tail DB %s into a directory tail reads (%s), then Fluent Bit with the CMD", entry, cmd, in.Get("DB"), in.Get("Path"))
	}
	if !strings.Contains(df, "CGO_ENABLED=0 GOARCH=$TARGETARCH go build -trimpath -ldflags='-s -w' -o /out/trailstack-launch ./launch") {
		t.Error("the launcher is not built for the target, without cgo, stripped")
	}
	if !regexp.MustCompile(`(?m)^COPY conf/` + regexp.QuoteMeta(shippedConf) + ` /fluent-bit/etc/$`).MatchString(df) {
		t.Error("the Dockerfile does not copy the configuration to /fluent-bit/etc/")
	}
	if !regexp.MustCompile(`(?m)^ARG FLUENT_BIT_VERSION=\d+\.\d+\.\d+$`).MatchString(df) || !strings.Contains(df, "FROM fluent/fluent-bit:${FLUENT_BIT_VERSION}") {
		t.Error("the Fluent Bit base image is not pinned to a release")
	}
	gomod := string(readFile(t, "../go.mod"))
	goVer := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(gomod)
	if goVer == nil || !strings.Contains(df, "ARG GO_VERSION="+goVer[1]+"\n") || !strings.Contains(df, "FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build") {
		t.Errorf("the builder is not Go %v on bookworm", goVer)
	}
	if !strings.Contains(df, `CGO_ENABLED=1 GOARCH=$TARGETARCH go build -buildmode=c-shared -trimpath -ldflags="-s -w -X github.com/trailstack/trailstack/metrics.Version=${VERSION}"`) ||
		!strings.Contains(df, "ARG VERSION=") {
		t.Error("the .so is not built with cgo for the target, -trimpath, stripped and stamped with the version")
	}
	// The image's go mod download fetches the plugin's modules only: those that conf's tests
	// need (Kubernetes, kustomize, Prometheus's rule parser) are in conf/go.mod.
	for _, m := range []string{"k8s.io/", "sigs.k8s.io/", "github.com/prometheus/prometheus "} {
		if strings.Contains(gomod, m) {
			t.Errorf("the plugin's go.mod requires %s, which only conf's tests use", m)
		}
	}
	// The build context holds no build output, test binaries or test data.
	ignore := strings.Fields(string(readFile(t, "../.dockerignore")))
	for _, want := range []string{"build/", "*.test", "**/testdata/", "**/*_test.go"} {
		if !slices.Contains(ignore, want) {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
}

func ptrValue(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// renderUninstall is the uninstall's one object, the cleanup DaemonSet.
func renderUninstall(t *testing.T) appsv1.DaemonSet {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), "uninstall")
	if err != nil {
		t.Fatalf("kustomize uninstall: %v", err)
	}
	if len(rm.Resources()) != 1 {
		t.Fatalf("%d objects", len(rm.Resources()))
	}
	js, _ := rm.Resources()[0].MarshalJSON()
	var ds appsv1.DaemonSet
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ds); err != nil {
		t.Fatal(err)
	}
	return ds
}

// The uninstall DaemonSet empties the directory the agents keep their state in, on every
// node, with the install's image.
func TestUninstallClearsTheState(t *testing.T) {
	r := render(t)
	ds := renderUninstall(t)
	statePath := func(spec corev1.PodSpec) string {
		for _, v := range spec.Volumes {
			if v.HostPath != nil && v.Name == "state" {
				return v.HostPath.Path
			}
		}
		return ""
	}
	c := ds.Spec.Template.Spec.Containers[0]
	want := statePath(r.ds.Spec.Template.Spec)
	if got := statePath(ds.Spec.Template.Spec); got == "" || got != want || c.Image != r.ds.Spec.Template.Spec.Containers[0].Image ||
		len(c.Command) != 3 || c.Command[1] != "-uninstall" || c.Command[2] != c.VolumeMounts[0].MountPath ||
		len(ds.Spec.Template.Spec.Tolerations) == 0 {
		t.Errorf("cleanup of %q with %s %v, want the agents' %q with their image, on every node", got, c.Image, c.Command, want)
	}
}

// The README's quick start and operating commands name only what exists: files and
// directories, make targets, the image name kustomize sets, the objects kubectl waits on,
// the Kubernetes service account Workload Identity binds, the Secret's keys, the log lines to
// look for.
func TestQuickStartNamesExist(t *testing.T) {
	readme := string(readFile(t, "../README.md"))
	start := strings.Index(readme, "## Quick start on GKE")
	end := strings.Index(readme, "## What can still be lost")
	if start < 0 || end < start {
		t.Fatal("no quick start and operating sections")
	}
	text := readme[start:end]
	for _, p := range regexp.MustCompile(`\bconf/[\w./-]*\w`).FindAllString(text, -1) {
		if _, err := os.Stat("../" + p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	var code strings.Builder // the commands, in the code blocks
	for _, b := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(text, -1) {
		code.WriteString(b[1])
	}
	makefile := string(readFile(t, "../Makefile"))
	for _, m := range regexp.MustCompile(`\bmake ([a-z-]+)`).FindAllStringSubmatch(code.String(), -1) {
		if !regexp.MustCompile(`(?m)^` + m[1] + `:`).MatchString(makefile) {
			t.Errorf("make %s: no such target", m[1])
		}
	}
	for _, dir := range []string{".", "uninstall"} {
		if k := string(readFile(t, filepath.Join(dir, "kustomization.yaml"))); !strings.Contains(k, "- name: trailstack\n") {
			t.Errorf("%s: kustomize edit set image trailstack=... names no image there", dir)
		}
	}
	r := render(t)
	if !strings.Contains(text, "kubectl -n "+r.ds.Namespace+" rollout status ds/"+r.ds.Name) ||
		!strings.Contains(text, "svc.id.goog["+r.sa.Namespace+"/"+r.sa.Name+"]") {
		t.Errorf("the commands do not name the DaemonSet %s/%s or the service account %s/%s", r.ds.Namespace, r.ds.Name, r.sa.Namespace, r.sa.Name)
	}
	if !strings.Contains(string(readFile(t, "kubernetes/serviceaccount.yaml")), "@PROJECT_ID.iam.gserviceaccount.com") {
		t.Error("serviceaccount.yaml has no PROJECT_ID for the quick start's sed")
	}
	env := string(readFile(t, "papertrail.env"))
	for _, k := range regexp.MustCompile(`PAPERTRAIL_[A-Z]+`).FindAllString(text, -1) {
		if !strings.Contains(env, k+"=") {
			t.Errorf("%s is not in papertrail.env", k)
		}
	}
	if !strings.Contains(text, "ds/trailstack-cleanup") {
		t.Error("the uninstall does not wait for the cleanup DaemonSet")
	}
	// The lines the quick start says to look for are the ones the plugin writes.
	for _, line := range []string{"initialised: ", "output not started"} {
		found := false
		for _, f := range []string{"../core/instance.go", "../core/pending.go"} {
			found = found || strings.Contains(string(readFile(t, f)), line)
		}
		if !found || !strings.Contains(text, strings.TrimSpace(line)) {
			t.Errorf("%q: not in the code, or not in the quick start", line)
		}
	}
}

// One version on every clone, tags or not: the VERSION file, the CHANGELOG's top entry and
// the image tag of both kustomizations (and of the Helm values) agree.
func TestOneVersion(t *testing.T) {
	v := strings.TrimSpace(string(readFile(t, "../VERSION")))
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(v) {
		t.Fatalf("VERSION %q is not a semantic version", v)
	}
	if m := regexp.MustCompile(`(?m)^## (\S+)`).FindStringSubmatch(string(readFile(t, "../CHANGELOG.md"))); m == nil || m[1] != v {
		t.Errorf("the CHANGELOG's top entry is %v, VERSION %s", m, v)
	}
	for _, k := range []string{"kustomization.yaml", "uninstall/kustomization.yaml"} {
		if !regexp.MustCompile(`(?m)^\s+newTag: ` + regexp.QuoteMeta(v) + `$`).Match(readFile(t, k)) {
			t.Errorf("%s does not tag the image %s", k, v)
		}
	}
	for _, f := range versionedFiles {
		if !regexp.MustCompile(`(?m)^\s+tag: "?` + regexp.QuoteMeta(v) + `"?$`).Match(readFile(t, f)) {
			t.Errorf("%s does not tag the image %s", f, v)
		}
	}
	// What make stamps into the .so: the version, then git's commit where there is one.
	out, err := exec.Command("make", "-s", "-C", "..", "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); !regexp.MustCompile(`^` + regexp.QuoteMeta(v) + `(\+[0-9a-f]{7,}(\.dirty)?)?$`).MatchString(got) {
		t.Errorf("make stamps %q, VERSION is %s", got, v)
	}
}

// versionedFiles name the image's tag as a Helm values file does (tag: VERSION).
var versionedFiles []string
