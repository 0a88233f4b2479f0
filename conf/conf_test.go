package conf

import (
	"bytes"
	"encoding/json"
	"os"
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
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/sinks"
)

// parseConf reads Fluent Bit's classic format with the plugin's own reader.
func parseConf(t *testing.T, data []byte) []core.Section {
	t.Helper()
	secs, err := core.ReadClassic(data)
	if err != nil {
		t.Fatal(err)
	}
	return secs
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fluentBitConf(t *testing.T) []core.Section { return parseConf(t, readFile(t, "fluent-bit.conf")) }

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

// Every key of every trailstack output is one the plugin reads, with a value it accepts.
func TestOutputsPassThePluginsOwnParser(t *testing.T) {
	env := map[string]string{"PAPERTRAIL_ADDRESS": "logs1.papertrailapp.com:12345", "NODE_NAME": "node-1"}
	// What tools/confcheck runs on a user's file.
	if errs := core.CheckClassic(readFile(t, "fluent-bit.conf"), sinks.All, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); len(errs) > 0 {
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
	errs := core.CheckClassic(readFile(t, "fluent-bit.conf"), sinks.All, func(k string) (string, bool) {
		if v, ok := placeholder[k]; ok {
			return v, true
		}
		v, ok := env[k]
		return v, ok
	})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `config key "address"`) {
		t.Errorf("the placeholder address: %v", errs)
	}
	bad := []byte("[OUTPUT]\n    Name trailstack\n    sink syslog\n    address h:1\n    adress x\n")
	if errs := core.CheckClassic(bad, sinks.All, os.LookupEnv); len(errs) != 1 || !strings.Contains(errs[0].Error(), "adress") {
		t.Errorf("a misspelt key: %v", errs)
	}
}

func TestInputBuffersOnDisk(t *testing.T) {
	secs := fluentBitConf(t)
	svc := only(t, secs, "SERVICE")
	in := only(t, secs, "INPUT")
	for k, want := range map[string]string{"Name": "tail", "storage.type": "filesystem", "Read_from_Head": "On",
		"Tag": "kube.var.log.containers.<file>", "Tag_Regex": "(?<file>[^/]+)$"} {
		if in.Get(k) != want {
			t.Errorf("[INPUT] %s = %q, want %q", k, in.Get(k), want)
		}
	}
	// The kubelet's links, and where the image's launcher hands back rotated logs; the
	// launcher reads the DB tail keeps (the Dockerfile's CMD, checked in TestDockerfile).
	if paths := strings.Split(in.Get("Path"), ","); len(paths) != 2 || paths[0] != "/var/log/containers/*.log" || paths[1] != "/var/lib/trailstack/resume/*/*.log" {
		t.Errorf("[INPUT] Path %q", in.Get("Path"))
	}
	if !strings.Contains(in.Get("multiline.parser"), "cri") || in.Get("DB") == "" || svc.Get("storage.path") == "" {
		t.Errorf("tail needs the cri parser, a DB and a storage.path: %v %v", in, svc)
	}
	if svc.Get("HTTP_Server") != "On" {
		t.Error("the HTTP server (the probes' endpoint) is off")
	}
}

// What a node needs of tail, the filter and the scheduler; the node harness shows each in
// the real engine.
func TestShippedNodeSettings(t *testing.T) {
	secs := fluentBitConf(t)
	svc, in, filter := only(t, secs, "SERVICE"), only(t, secs, "INPUT"), only(t, secs, "FILTER")
	// A file with no offset in the DB at the first scan is read from its end otherwise.
	if in.Get("Read_from_Head") != "On" {
		t.Error("Read_from_Head is not On: a pod that logs while no agent runs loses those lines")
	}
	// Otherwise one long line ends the file's tail.
	if in.Get("Skip_Long_Lines") != "On" {
		t.Error("Skip_Long_Lines is not On")
	}
	// The whole pod object, up to the API server's largest (etcd's 1.5 MiB).
	if n, ok := core.ParseSize(filter.Get("Buffer_Size")); !ok || n != 0 && n < 1536<<10 {
		t.Errorf("kubernetes filter Buffer_Size %q: a pod object larger than it gets no metadata", filter.Get("Buffer_Size"))
	}
	if c, err := strconv.Atoi(svc.Get("scheduler.cap")); err != nil || c > 300 {
		t.Errorf("scheduler.cap %q: a chunk may wait that long for its next try after an outage", svc.Get("scheduler.cap"))
	}
	// A filesystem buffer that a small node's disk holds (README: Disk).
	for _, s := range secs {
		if s.Name == "OUTPUT" {
			if n, ok := core.ParseSize(s.Keys.Get("storage.total_limit_size")); !ok || n == 0 || n > 2<<30 {
				t.Errorf("[OUTPUT] %s: storage.total_limit_size %q", s.Keys.Get("Alias"), s.Keys.Get("storage.total_limit_size"))
			}
		}
	}
}

// GKE admits a pod of a critical priority class outside kube-system only where a
// ResourceQuota of its namespace is scoped to that class.
func TestAdmittedOnGKEStandard(t *testing.T) {
	r := render(t)
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

func TestManifests(t *testing.T) {
	r := render(t)
	spec := r.ds.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	c := spec.Containers[0]
	// The pod cache's endpoint (kube_metadata_listen) is on loopback: the pod's own while the
	// pod has its own network; on the host's, every host-network pod could read it.
	if spec.HostNetwork {
		t.Error("hostNetwork: the Kubernetes metadata endpoint would be open to the node's host-network pods")
	}

	// The ConfigMap carries the files as they are in the repo, mounted where the image
	// expects them.
	for _, f := range []string{"fluent-bit.conf", "plugins.conf", "parsers.conf"} {
		if r.cm.Data[f] != string(readFile(t, f)) {
			t.Errorf("the ConfigMap does not hold conf/%s", f)
		}
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
	svc, in := only(t, secs, "SERVICE"), only(t, secs, "INPUT")
	for _, key := range []string{"Plugins_File", "Parsers_File"} {
		f := svc.Get(key)
		if m, v, ok := mountedAt(f); !ok || v.ConfigMap == nil || v.ConfigMap.Name != r.cm.Name || !m.ReadOnly || r.cm.Data[path.Base(f)] == "" {
			t.Errorf("%s %q is not in the mounted ConfigMap", key, f)
		}
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
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.IntValue() != port || p.HTTPGet.Path != "/" {
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
	if !strings.Contains(in.Get("Exclude_Path"), "_"+r.ds.Namespace+"_") {
		t.Errorf("Exclude_Path %q does not exclude namespace %s", in.Get("Exclude_Path"), r.ds.Namespace)
	}
}

// The Dockerfile puts the .so where plugins.conf loads it and the CA bundle where the syslog
// output reads it, on a pinned Fluent Bit image, built with the Go of go.mod.
func TestDockerfile(t *testing.T) {
	df := string(readFile(t, "../Dockerfile"))
	plugins := parseConf(t, readFile(t, "plugins.conf"))
	so := only(t, plugins, "PLUGINS").Get("Path")
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
	// The launcher runs first, on the tail input's DB, into the directory its Path reads.
	in := only(t, fluentBitConf(t), "INPUT")
	var cmd []string
	if m := regexp.MustCompile(`(?m)^CMD (.+)$`).FindStringSubmatch(df); m == nil || json.Unmarshal([]byte(m[1]), &cmd) != nil {
		t.Fatal("no CMD in exec form")
	}
	flag := func(name string) string {
		if i := slices.Index(cmd, name); i >= 0 && i+1 < len(cmd) {
			return cmd[i+1]
		}
		return ""
	}
	if !regexp.MustCompile(`(?m)^COPY --from=build /out/trailstack-launch `+regexp.QuoteMeta(cmd[0])+`$`).MatchString(df) ||
		flag("-db") != in.Get("DB") || !slices.Contains(strings.Split(in.Get("Path"), ","), flag("-resume")+"/*/*.log") ||
		!slices.Equal(cmd[slices.Index(cmd, "--")+1:], []string{"/fluent-bit/bin/fluent-bit", "-c", "/fluent-bit/etc/fluent-bit.conf"}) {
		t.Errorf("CMD %q: want trailstack-launch on the tail DB %s into a directory tail reads (%s), then Fluent Bit", cmd, in.Get("DB"), in.Get("Path"))
	}
	if !strings.Contains(df, "CGO_ENABLED=0 GOARCH=$TARGETARCH go build -trimpath -ldflags='-s -w' -o /out/trailstack-launch ./launch") {
		t.Error("the launcher is not built for the target, without cgo, stripped")
	}
	if !regexp.MustCompile(`(?m)^COPY conf/fluent-bit.conf conf/plugins.conf conf/parsers.conf /fluent-bit/etc/$`).MatchString(df) {
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

// The uninstall DaemonSet empties the directory the agents keep their state in, on every
// node, with the install's image.
func TestUninstallClearsTheState(t *testing.T) {
	r := render(t)
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
