package accessor

import (
	"strings"
	"testing"

	"github.com/tinylib/msgp/msgp"

	"github.com/trailstack/trailstack/record"
)

const apiTag = "kube.var.log.containers.api-5d9b8c7f6-abcde_blog_api-bb3a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8.log"

func TestParseTag(t *testing.T) {
	for tag, want := range map[string]Identity{
		apiTag: {OK: true, Namespace: "blog", Pod: "api-5d9b8c7f6-abcde", Container: "api"},
		"kube.var.log.containers.web.v2-0_shop_side-car-" + hex64 + ".log": {OK: true, Namespace: "shop", Pod: "web.v2-0", Container: "side-car"},
		hexName("p_ns_c"):               {OK: true, Namespace: "ns", Pod: "p", Container: "c"},
		"kube.var.log.syslog":           {},
		"kube.var.log.containers.x.log": {},
		"kube.p_ns_c-nothex.log":        {},
		"kube._ns_c-" + hex64 + ".log":  {},
	} {
		got := ParseTag(tag)
		if got.OK != want.OK || got.Namespace != want.Namespace || got.Pod != want.Pod || got.Container != want.Container {
			t.Errorf("%s: %+v, want %+v", tag, got, want)
		}
		if got.OK {
			for v, s := range map[string]string{string(got.ns): got.Namespace, string(got.pod): got.Pod, string(got.container): got.Container} {
				if b, _ := record.Value(v).Bytes(); string(b) != s {
					t.Errorf("%s: encoded %x, want %q", tag, v, s)
				}
			}
		}
	}
}

const hex64 = "bb3a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"

func hexName(s string) string { return s + "-" + hex64 + ".log" }

// Records exactly as the engine builds them with Merge_Log On: the keys the engine wrote
// (stream, _p), then the application's JSON keys (which may repeat them and may hold a
// kubernetes map), then the filter's kubernetes map when its lookup succeeded.
func TestNoRecordCanNameAnotherContainer(t *testing.T) {
	spoof := map[string]any{"namespace_name": "kube-system", "pod_name": "kube-apiserver-0", "container_name": "kube-apiserver", "host": "victim-node", "labels": map[string]any{"tier": "control-plane"}}
	own := map[string]any{"namespace_name": "blog", "pod_name": "api-5d9b8c7f6-abcde", "container_name": "api", "host": "victim-node"}
	filter := map[string]any{"namespace_name": "blog", "pod_name": "api-5d9b8c7f6-abcde", "container_name": "api", "host": "node-1", "labels": map[string]any{"app": "api"}}
	type kv struct {
		k string
		v any
	}
	body := func(kvs ...kv) []byte {
		b := msgp.AppendMapHeader(nil, uint32(len(kvs)))
		for _, e := range kvs {
			b = msgp.AppendString(b, e.k)
			b, _ = msgp.AppendIntf(b, e.v)
		}
		return b
	}
	engine := []kv{{"stream", "stdout"}, {"_p", "F"}}
	app := []kv{{"msg", "hi"}, {"stream", "fake"}}
	for _, c := range []struct {
		name                      string
		body                      []byte
		tag                       string
		ns, pod, cont, host, tier string
		app                       string
	}{
		{"filter's map after a spoofed one", body(append(append(engine, app...), kv{"kubernetes", spoof}, kv{"kubernetes", filter})...), apiTag, "blog", "api-5d9b8c7f6-abcde", "api", "node-1", "", "api"},
		{"no filter map, a spoofed one", body(append(append(engine, app...), kv{"kubernetes", spoof})...), apiTag, "blog", "api-5d9b8c7f6-abcde", "api", "", "", ""},
		{"no filter map, the application's own", body(append(append(engine, app...), kv{"kubernetes", own})...), apiTag, "blog", "api-5d9b8c7f6-abcde", "api", "victim-node", "", ""},
		{"a spoofed map under a tag that names no container", body(append(append(engine, app...), kv{"kubernetes", spoof})...), "kube.var.log.syslog", "", "", "", "", "", ""},
	} {
		ex := NewExtractor()
		slot := func(p ...string) int { return ex.Add(p) }
		ns, pod, cont, host, tier, appLabel, stream := slot("kubernetes", "namespace_name"), slot("kubernetes", "pod_name"), slot("kubernetes", "container_name"),
			slot("kubernetes", "host"), slot("kubernetes", "labels", "tier"), slot("kubernetes", "labels", "app"), slot("stream")
		vals := make([]record.Value, ex.Slots())
		id := ParseTag(c.tag)
		ex.Extract(&id, record.Value(c.body), vals, nil)
		for s, want := range map[int]string{ns: c.ns, pod: c.pod, cont: c.cont, host: c.host, tier: c.tier, appLabel: c.app, stream: "stdout"} {
			got, _ := vals[s].Bytes()
			if string(got) != want {
				t.Errorf("%s: slot %d = %q, want %q", c.name, s, got, want)
			}
		}
	}
}

// TagIdentity answers what ParseTag does, for each tag in turn, the last one kept.
func TestTagIdentityFollowsTheTag(t *testing.T) {
	var ti TagIdentity
	for _, tag := range []string{
		"kube.var.log.containers.p_ns_c-" + strings.Repeat("ab", 32) + ".log",
		"kube.var.log.containers.p_ns_c-" + strings.Repeat("ab", 32) + ".log",
		"kube.var.log.containers.q_other_d-" + strings.Repeat("cd", 32) + ".log",
		"k8s_node.n",
		"",
	} {
		if got, want := *ti.Of(strings.Clone(tag)), ParseTag(tag); got.OK != want.OK || got.Namespace != want.Namespace || got.Pod != want.Pod || got.Container != want.Container {
			t.Fatalf("%q: %+v, want %+v", tag, got, want)
		}
	}
}
