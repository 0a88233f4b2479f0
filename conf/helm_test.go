package conf

// The Helm install: the official Fluent Bit chart rendered with Helm's own library and
// conf/helm/values.yaml, as `helm install` would render it, then held to the same invariants
// as the kustomize install (checkInstall) and run on the node harness.

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
	kubefake "helm.sh/helm/v3/pkg/kube/fake"
	"helm.sh/helm/v3/pkg/releaseutil"
	"helm.sh/helm/v3/pkg/storage"
	"helm.sh/helm/v3/pkg/storage/driver"

	"github.com/trailstack/trailstack/testkit/fixture"
)

func init() { versionedFiles = append(versionedFiles, "helm/values.yaml") }

// helmChart is the chart's .tgz: HELM_CHART, else the 0.58.1 copy beside the repository.
func helmChart(t *testing.T) string {
	t.Helper()
	p := os.Getenv("HELM_CHART")
	if p == "" {
		p = filepath.Join(fixture.Root(), "..", "shared", "charts", "fluent-bit-0.58.1.tgz")
	}
	if _, err := os.Stat(p); err != nil {
		fixture.Need(t, "no Helm chart at %s (set HELM_CHART)", p)
	}
	return p
}

// The README's install command, as values: the values file, and the configuration file
// given with --set-file.
var helmValues = values.Options{
	ValueFiles: []string{"helm/values.yaml"},
	FileValues: []string{`config.extraFiles.fluent-bit\.yaml=fluent-bit.yaml`},
}

const helmRelease, helmNamespace = "trailstack", "trailstack"

// renderHelm renders the chart as `helm install trailstack ... -n trailstack` would, and
// decodes every object strictly. What the README has the user create beside the chart is
// added as it would be: the Secret (kubectl create secret generic papertrail
// --from-env-file=conf/papertrail.env), the namespace (--create-namespace) and the
// ResourceQuota (conf/kubernetes/resourcequota.yaml).
func renderHelm(t *testing.T) *rendered {
	t.Helper()
	ch, err := loader.Load(helmChart(t))
	if err != nil {
		t.Fatal(err)
	}
	vals, err := helmValues.MergeValues(getter.Providers{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &action.Configuration{
		Releases:     storage.Init(driver.NewMemory()),
		KubeClient:   &kubefake.PrintingKubeClient{Out: os.Stderr},
		Capabilities: chartutil.DefaultCapabilities,
	}
	install := action.NewInstall(cfg)
	install.ReleaseName, install.Namespace = helmRelease, helmNamespace
	install.DryRun, install.ClientOnly, install.Replace = true, true, true
	rel, err := install.Run(ch, vals)
	if err != nil {
		t.Fatalf("helm: %v", err)
	}
	if len(rel.Hooks) != 0 {
		t.Errorf("%d hooks (a test Pod?): an install runs only the agent", len(rel.Hooks))
	}
	r := &rendered{}
	seen := map[string]int{}
	for name, doc := range releaseutil.SplitManifests(rel.Manifest) {
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var meta struct{ Kind string }
		_ = json.Unmarshal(js, &meta)
		var svc corev1.Service
		into, ok := map[string]any{
			"DaemonSet": &r.ds, "ConfigMap": &r.cm, "ServiceAccount": &r.sa,
			"ClusterRole": &r.role, "ClusterRoleBinding": &r.binding, "Service": &svc,
		}[meta.Kind]
		if !ok {
			t.Fatalf("unexpected %s", meta.Kind)
		}
		seen[meta.Kind]++
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.DisallowUnknownFields()
		if err := dec.Decode(into); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	for _, kind := range []string{"DaemonSet", "ConfigMap", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"} {
		if seen[kind] != 1 {
			t.Fatalf("%d %s objects, want 1", seen[kind], kind)
		}
	}
	// Beside the chart, as the README creates them.
	r.namespace.Name = helmNamespace
	r.secret = corev1.Secret{Data: map[string][]byte{}}
	r.secret.Name, r.secret.Namespace = "papertrail", helmNamespace
	for _, l := range strings.Split(string(readFile(t, "papertrail.env")), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(k, "#") {
			r.secret.Data[k] = []byte(v)
		}
	}
	q, err := yaml.YAMLToJSON(readFile(t, "kubernetes/resourcequota.yaml"))
	if err != nil || json.Unmarshal(q, &r.quota) != nil {
		t.Fatalf("resourcequota.yaml: %v", err)
	}
	r.quota.Namespace = helmNamespace
	return r
}

// The chart with our values renders an install that keeps every invariant the kustomize
// install keeps, with nothing of the chart's defaults that would contradict them.
func TestHelmChart(t *testing.T) {
	r := renderHelm(t)
	checkInstall(t, r)
	// Both installs run the same agent: what differs between their pods is only where the
	// chart puts things (the ConfigMap's directory and name, labels, ports' names).
	k := render(t)
	hc, kc := r.ds.Spec.Template.Spec.Containers[0], k.ds.Spec.Template.Spec.Containers[0]
	// kustomize names the Secret with its content's hash.
	for _, e := range kc.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == k.secret.Name {
			e.ValueFrom.SecretKeyRef.Name = r.secret.Name
		}
	}
	for what, same := range map[string]bool{
		"env":             equalJSON(hc.Env, kc.Env),
		"resources":       equalJSON(hc.Resources, kc.Resources),
		"securityContext": equalJSON(hc.SecurityContext, kc.SecurityContext),
		"grace":           equalJSON(r.ds.Spec.Template.Spec.TerminationGracePeriodSeconds, k.ds.Spec.Template.Spec.TerminationGracePeriodSeconds),
		"rbac":            equalJSON(r.role.Rules, k.role.Rules),
		"workload identity": r.sa.Annotations["iam.gke.io/gcp-service-account"] ==
			k.sa.Annotations["iam.gke.io/gcp-service-account"],
		"image": hc.Image == kc.Image,
	} {
		if !same {
			t.Errorf("the Helm install's %s differs from the kustomize install's", what)
		}
	}
	for _, v := range r.ds.Spec.Template.Spec.Volumes {
		if v.HostPath != nil && v.HostPath.Path != "/var/log" && v.HostPath.Path != "/var/lib/trailstack" {
			t.Errorf("hostPath %s: the agent needs the logs and its state only", v.HostPath.Path)
		}
	}
	// A changed configuration rolls the pods (no reload sidecar, one container).
	if r.ds.Spec.Template.Annotations["checksum/config"] == "" || len(r.ds.Spec.Template.Spec.Containers) != 1 {
		t.Error("a changed ConfigMap would not roll the pods, or a sidecar runs beside the agent")
	}
	if u := r.ds.Spec.UpdateStrategy; u.Type != appsv1.RollingUpdateDaemonSetStrategyType {
		t.Errorf("update strategy %v", u)
	}
	// The metrics port is named as the PodMonitoring scrapes it.
	ports := map[string]int32{}
	for _, p := range hc.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["http"] != 2020 || ports["metrics"] != 2021 {
		t.Errorf("ports %v, want http 2020 and metrics 2021", ports)
	}
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// The README's Helm commands name what exists: the chart and its version, the release and
// namespace the tests render, the values file, the configuration file as the tests give it,
// and the Secret the values read.
func TestQuickStartHelmCommands(t *testing.T) {
	ch, err := loader.Load(helmChart(t))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(readFile(t, "../README.md"))
	var cmds []string
	for _, b := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(readme, -1) {
		for _, l := range strings.Split(strings.ReplaceAll(b[1], "\\\n", " "), "\n") {
			if strings.HasPrefix(l, "helm ") {
				cmds = append(cmds, strings.Join(strings.Fields(l), " "))
			}
		}
	}
	var installs int
	for _, c := range cmds {
		c = strings.TrimSpace(strings.Split(c, "#")[0])
		f := strings.Fields(c)
		sub := f[1]
		if sub == "-n" {
			sub = f[3]
		}
		switch sub {
		case "install", "upgrade":
			installs++
			for _, want := range []string{
				"helm " + sub + " " + helmRelease + " fluent/" + ch.Metadata.Name + " --version " + ch.Metadata.Version + " -n " + helmNamespace + " ",
				" -f conf/" + helmValues.ValueFiles[0] + " ",
				" --set-file '" + strings.Replace(helmValues.FileValues[0], "=", "=conf/", 1) + "' ",
				" --set image.repository=", " --set image.tag=",
			} {
				if !strings.Contains(c+" ", want) {
					t.Errorf("%q lacks %q", c, want)
				}
			}
			for _, p := range regexp.MustCompile(`conf/[\w./-]+\w`).FindAllString(c, -1) {
				if _, err := os.Stat("../" + p); err != nil {
					t.Errorf("%s: %v", p, err)
				}
			}
		case "rollback", "history", "uninstall":
			if !strings.Contains(c, "-n "+helmNamespace) || f[len(f)-1] != helmRelease {
				t.Errorf("%q does not name release %s in %s", c, helmRelease, helmNamespace)
			}
		case "repo":
		default:
			t.Errorf("%q: a helm command the test does not know", c)
		}
	}
	if installs != 2 {
		t.Errorf("%d helm install and upgrade commands, want 2", installs)
	}
	r := renderHelm(t)
	for _, e := range r.ds.Spec.Template.Spec.Containers[0].Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && !strings.Contains(readme, "create secret generic "+e.ValueFrom.SecretKeyRef.Name+" --from-env-file=conf/papertrail.env") {
			t.Errorf("the README creates no Secret %s", e.ValueFrom.SecretKeyRef.Name)
		}
	}
	if !strings.Contains(readme, "-n "+helmNamespace+" apply -f conf/kubernetes/resourcequota.yaml") {
		t.Error("the Helm install does not create the ResourceQuota GKE needs")
	}
}
