package conf

import (
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"
)

// kubeHang is how long TestNodeKubeAPIHangs keeps writing while the API server hangs; make
// test runs it short, -kube.hang 5m runs the full goal.
var kubeHang = flag.Duration("kube.hang", 20*time.Second, "how long the API server hangs while pods write")

// The control plane hangs: the API server accepts and never answers, and its watches go
// silent. Pods known before go on with their metadata, a pod that starts during the hang is
// sent with what its tag says, every line arrives as promptly as before, and SIGTERM ends
// the agent within its grace. The filter never asks the API server itself.
func TestNodeKubeAPIHangs(t *testing.T) {
	n := newNode(t)
	known := n.newPod("blog", "api-5d9b8c7f6-abcde", 0)
	a := n.startAgent()
	a.waitReady()
	n.write(known, 200)
	n.waitDelivered(60*time.Second, a)
	n.kube.setHung(true)
	defer n.kube.setHung(false)
	fresh := n.newPod("blog", "fresh-6c8d9f7b4-zxcvb", 0) // the API server has it, but cannot say
	// Tail finds a new file at its next scan (Refresh_Interval 5): wait for it, so that the
	// lag measures the pipeline, not the scan.
	time.Sleep(6 * time.Second)
	stop := n.writer(1000, known, fresh)
	time.Sleep(*kubeHang)
	stop()
	ds := n.waitDelivered(30*time.Second, a)
	qs, most := n.papert.lagQuantiles(0.99)
	cq, cmost := n.cloud.lagQuantiles(0.99)
	for _, q := range []time.Duration{qs[0], cq[0]} {
		if q > 5*time.Second {
			t.Errorf("lag p99 %v with the API server hung (Papertrail %v, Cloud Logging %v)", q, qs[0], cq[0])
		}
	}
	if l := n.cloud.labelsOf(known.name); l["k8s-pod/app"] != known.name {
		t.Errorf("a pod known before the hang lost its labels: %v", l)
	}
	if l := n.cloud.labelsOf(fresh.name); l["k8s-pod/app"] != "" {
		t.Errorf("a pod that started during the hang has labels: the API server answered? %v", l)
	}
	took, killed := a.stop()
	if killed {
		t.Errorf("SIGTERM during the hang: killed at the grace period")
	}
	c := n.kube.counts()
	if c["get"] != 0 {
		t.Errorf("%d pod lookups reached the API server; the filter must ask the cache", c["get"])
	}
	report(t, n, "API server hung", ds, fmt.Sprintf(", lag p99 %v (max %v) to Papertrail, %v (max %v) to Cloud Logging; SIGTERM to exit %v; API requests: %v",
		qs[0].Round(time.Millisecond), most.Round(time.Millisecond), cq[0].Round(time.Millisecond), cmost.Round(time.Millisecond), took.Round(time.Millisecond), c))
}

// The API server refuses connections, then comes back: lines go on meanwhile, and once it
// answers again a pod that started during the outage, and one after, get their metadata
// without a restart.
func TestNodeKubeAPIRefusesThenReturns(t *testing.T) {
	n := newNode(t)
	known := n.newPod("blog", "api-5d9b8c7f6-abcde", 0)
	a := n.startAgent()
	a.waitReady()
	n.kube.setRefusing(true)
	fresh := n.newPod("blog", "fresh-6c8d9f7b4-zxcvb", 0)
	stop := n.writer(1000, known, fresh)
	time.Sleep(10 * time.Second)
	stop()
	n.waitDelivered(30*time.Second, a)
	if !strings.Contains(a.output(), "kubernetes metadata: ") {
		t.Errorf("the agent's log does not say that metadata is missing:\n%s", a.tail())
	}
	n.kube.setRefusing(false)
	// The watch comes back within its backoff (at most 30 s).
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(time.Second) {
		scrape := scrapeNames(t, "http://127.0.0.1:2021/metrics", map[string]bool{})
		if v, _ := sample(scrape, "trailstack_kube_watch_up"); v == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the watch did not come back:\n%s", a.tail())
		}
	}
	// A pod that starts now has its labels on its first line (the one line it writes), and
	// the one that started during the outage gets them too.
	later := n.newPod("blog", "later-7f9c8d6b5-qwert", 0)
	n.write(later, 1)
	n.write(fresh, 100)
	ds := n.waitDelivered(60*time.Second, a)
	for _, p := range []*appPod{fresh, later} {
		if l := n.cloud.labelsOf(p.name); l["k8s-pod/app"] != p.name {
			t.Errorf("%s: no labels after the API server came back: %v", p.name, l)
		}
	}
	a.stopCleanly()
	report(t, n, "API server refused, then back", ds, fmt.Sprintf(", API requests: %v", n.kube.counts()))
}
