package conf

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

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
