package conf

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// external are series that come from neither the plugin nor Fluent Bit: kube-state-metrics'
// (every GKE cluster with managed collection has it), and up, which the collector writes for
// each target it scrapes.
var external = map[string]bool{"kube_pod_container_status_restarts_total": true, "up": true}

// alertExprs parses alerts.yaml with Prometheus' own rule parser, holds rules.yaml (the
// Rules object for Google Managed Prometheus) to the same groups, and returns every
// expression.
func alertExprs(t *testing.T) []string {
	t.Helper()
	groups, errs := rulefmt.Parse(readFile(t, "monitoring/alerts.yaml"), false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatalf("alerts.yaml: %v", errs)
	}
	var plain, gmp struct {
		Groups any `json:"groups"`
		Spec   struct {
			Groups any `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(readFile(t, "monitoring/alerts.yaml"), &plain); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(readFile(t, "monitoring/rules.yaml"), &gmp); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(plain.Groups, gmp.Spec.Groups) || plain.Groups == nil {
		t.Error("rules.yaml and alerts.yaml differ")
	}
	var exprs, names []string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
			names = append(names, r.Alert)
			// Lag p99 above a minute for ten minutes: a slow drain, not a burst.
			if r.Alert == "TrailstackDeliveryLagging" && (time.Duration(r.For) != 10*time.Minute ||
				!strings.Contains(r.Expr, "histogram_quantile(0.99") || !strings.Contains(r.Expr, "trailstack_delivery_lag_seconds_bucket") || !strings.HasSuffix(strings.TrimSpace(r.Expr), "> 60")) {
				t.Errorf("TrailstackDeliveryLagging: want p99 of trailstack_delivery_lag_seconds > 60 for 10m, got %q for %v", r.Expr, r.For)
			}
		}
	}
	want := []string{"TrailstackDestinationStuck", "TrailstackRecordsDropped", "TrailstackLinesLost", "TrailstackDeliveryLagging", "TrailstackOutputThrottled", "TrailstackMetadataMissing", "TrailstackDiskBufferFilling", "TrailstackPodRestarting", "TrailstackOutputNotReady", "TrailstackAgentNotScraped", "TrailstackStateDiskFilling"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("alerts %v, want %v", names, want)
	}
	return exprs
}

// dashboardExprs is every query of the Grafana dashboard.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	var d struct {
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(readFile(t, "monitoring/dashboard.json"), &d); err != nil {
		t.Fatal(err)
	}
	var exprs, rows []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			rows = append(rows, p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	if !reflect.DeepEqual(rows, []string{"Papertrail (syslog)", "Cloud Logging", "Kubernetes metadata"}) {
		t.Errorf("rows %v, want one per destination and the metadata cache's", rows)
	}
	return exprs
}

// metricNames parses PromQL and returns the metric names it selects.
func metricNames(t *testing.T, exprs []string) []string {
	t.Helper()
	seen := map[string]bool{}
	p := parser.NewParser(parser.Options{})
	for _, e := range exprs {
		ast, err := p.ParseExpr(e)
		if err != nil {
			t.Fatalf("%q: %v", e, err)
		}
		parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				seen[vs.Name] = true
			}
			return nil
		})
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// The rules and the dashboard parse, and the monitoring kustomization renders.
func TestMonitoringParses(t *testing.T) {
	names := metricNames(t, append(alertExprs(t), dashboardExprs(t)...))
	if len(names) < 10 {
		t.Errorf("only %v", names)
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), "monitoring")
	if err != nil {
		t.Fatalf("kustomize monitoring: %v", err)
	}
	kinds := map[string]bool{}
	for _, r := range rm.Resources() {
		kinds[r.GetKind()] = r.GetNamespace() == "trailstack"
	}
	if !kinds["PodMonitoring"] || !kinds["Rules"] {
		t.Errorf("rendered %v", kinds)
	}
}

// scrapeNames reads the metric names of a Prometheus text endpoint.
func scrapeNames(t *testing.T, url string, into map[string]bool) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	name := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)`)
	for sc.Scan() {
		if m := name.FindStringSubmatch(sc.Text()); m != nil {
			into[m[1]] = true
		}
	}
	return string(b)
}

// checkMonitoringAgainst fails for a metric that the rules or the dashboard name and that a
// real scrape of the node does not have.
func checkMonitoringAgainst(t *testing.T, scraped map[string]bool) {
	t.Helper()
	for _, n := range metricNames(t, append(alertExprs(t), dashboardExprs(t)...)) {
		if !scraped[n] && !external[n] {
			t.Errorf("the rules or the dashboard name %s, which no scrape has", n)
		}
	}
}

// sample reads one sample's value from a scrape.
func sample(scrape, series string) (float64, bool) {
	for _, l := range strings.Split(scrape, "\n") {
		if strings.HasPrefix(l, series+" ") {
			var v float64
			_, err := fmt.Sscan(strings.TrimPrefix(l, series+" "), &v)
			return v, err == nil
		}
	}
	return 0, false
}
