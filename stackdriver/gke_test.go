package stackdriver

import (
	"encoding/json"
	"maps"
	"testing"
	"time"

	ltype "google.golang.org/genproto/googleapis/logging/type"

	"github.com/tinylib/msgp/msgp"

	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/record"
	"github.com/trailstack/trailstack/testkit/fixture"
)

// The entries GKE's own agent writes, field by field, for each shape of record a node
// produces. The expected entries are written from GKE's documented shape (Google's
// structured-logging and GKE logging pages, the agent's published configuration), not from
// our output: resource, log name, labels, severity, timestamp and payload.
func TestEntriesAsGKEWritesThem(t *testing.T) {
	t.Setenv("NODE_NAME", "gke-node-1")
	const tag = "kube.var.log.containers.web-6c8d9f7b4-zxcvb_shop_web-" + hex64 + ".log"
	recordTime := time.Date(2026, 11, 27, 10, 0, 1, 0, time.UTC)
	kube := func(owner map[string]any) map[string]any {
		return map[string]any{
			"pod_name": "web-6c8d9f7b4-zxcvb", "namespace_name": "shop", "container_name": "web", "host": "gke-node-1",
			"labels":          map[string]any{"app.kubernetes.io/name": "web", "pod-template-hash": "6c8d9f7b4"},
			"ownerReferences": []any{owner},
		}
	}
	rs := map[string]any{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-6c8d9f7b4", "controller": true}
	podLabels := map[string]string{
		"compute.googleapis.com/resource_name":     "gke-node-1",
		"k8s-pod/app_kubernetes_io/name":           "web",
		"k8s-pod/pod-template-hash":                "6c8d9f7b4",
		"logging.gke.io/top_level_controller_type": "Deployment",
		"logging.gke.io/top_level_controller_name": "web",
	}
	with := func(extra map[string]string) map[string]string {
		l := maps.Clone(podLabels)
		maps.Copy(l, extra)
		return l
	}
	type kv = [2]any
	// body keeps the key order the engine writes: the cri parser's time, stream and _p,
	// then the log line or the application's merged keys, then the filter's map.
	body := func(stream string, app []kv, k map[string]any) []byte {
		b := msgp.AppendMapHeader(nil, uint32(4+len(app)))
		for _, e := range append([]kv{{"time", "2026-11-27T10:00:01.000000000Z"}, {"stream", stream}, {"_p", "F"}}, append(app, kv{"kubernetes", k})...) {
			b = msgp.AppendString(b, e[0].(string))
			b, _ = msgp.AppendIntf(b, e[1])
		}
		return b
	}
	for _, c := range []struct {
		name     string
		body     []byte
		text     string // textPayload, or
		json     string // jsonPayload, as compact JSON
		severity ltype.LogSeverity
		ts       time.Time
		labels   map[string]string
		trace    string
	}{
		{"plain text on stdout", body("stdout", []kv{{"log", "GET /cart 200\n"}}, kube(rs)),
			"GET /cart 200", "", ltype.LogSeverity_INFO, recordTime, podLabels, ""},
		{"plain text on stderr", body("stderr", []kv{{"log", "connection refused\n"}}, kube(rs)),
			"connection refused", "", ltype.LogSeverity_ERROR, recordTime, podLabels, ""},
		{"klog INFO on stderr: the header's severity and time", body("stderr", []kv{{"log", "I1127 10:00:00.123456       1 server.go:42] started\n"}}, kube(rs)),
			"I1127 10:00:00.123456       1 server.go:42] started", "", ltype.LogSeverity_INFO, time.Date(2026, 11, 27, 10, 0, 0, 123456000, time.UTC), podLabels, ""},
		{"glog ERROR", body("stderr", []kv{{"log", "E1127 09:59:58.000001 7 x.go:1] boom\n"}}, kube(rs)),
			"E1127 09:59:58.000001 7 x.go:1] boom", "", ltype.LogSeverity_ERROR, time.Date(2026, 11, 27, 9, 59, 58, 1000, time.UTC), podLabels, ""},
		{"JSON line with time (RFC 3339) and a one-letter severity", body("stdout", []kv{{"log", `{"message":"hi","severity":"W","time":"2026-11-27T09:59:59.5Z"}`}}, kube(rs)),
			"", `{"message":"hi"}`, ltype.LogSeverity_WARNING, time.Date(2026, 11, 27, 9, 59, 59, 5e8, time.UTC), podLabels, ""},
		{"JSON line with timestamp{seconds,nanos}", body("stdout", []kv{{"log", `{"msg":"x","timestamp":{"seconds":1795694300,"nanos":5}}`}}, kube(rs)),
			"", `{"msg":"x"}`, ltype.LogSeverity_INFO, time.Unix(1795694300, 5), podLabels, ""},
		{"JSON line with timestampSeconds and timestampNanos", body("stdout", []kv{{"log", `{"msg":"x","timestampSeconds":1795694300,"timestampNanos":7}`}}, kube(rs)),
			"", `{"msg":"x"}`, ltype.LogSeverity_INFO, time.Unix(1795694300, 7), podLabels, ""},
		{"JSON line without time fields", body("stdout", []kv{{"log", `{"msg":"x","level":"debug"}`}}, kube(rs)),
			"", `{"level":"debug","msg":"x"}`, ltype.LogSeverity_DEBUG, recordTime, podLabels, ""},
		{"merged JSON: the application's time after the runtime's, SEVERE", body("stdout", []kv{{"message", "hi"}, {"severity", "SEVERE"}, {"time", "2026-11-27T09:00:00Z"}}, kube(rs)),
			"", `{"message":"hi"}`, ltype.LogSeverity_ERROR, time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC), podLabels, ""},
		{"merged JSON: an unknown severity gives DEFAULT and stays", body("stderr", []kv{{"msg", "x"}, {"severity", "verbose"}}, kube(rs)),
			"", `{"msg":"x","severity":"verbose"}`, ltype.LogSeverity_DEFAULT, recordTime, podLabels, ""},
		{"merged JSON: numbers round down to the hundred", body("stdout", []kv{{"msg", "x"}, {"severity", 450}}, kube(rs)),
			"", `{"msg":"x"}`, ltype.LogSeverity_WARNING, recordTime, podLabels, ""},
		{"merged JSON: FINE, labels and a bare trace ID", body("stdout", []kv{{"msg", "x"}, {"severity", "FINE"}, {"logging.googleapis.com/trace", "4bf92f3577b34da6a3ce929d0e0e4736"}, {"logging.googleapis.com/labels", map[string]any{"tenant": "a"}}}, kube(rs)),
			"", `{"msg":"x"}`, ltype.LogSeverity_DEBUG, recordTime, with(map[string]string{"tenant": "a"}), "projects/gke-prod/traces/4bf92f3577b34da6a3ce929d0e0e4736"},
		{"a CronJob's pod", body("stdout", []kv{{"log", "done\n"}}, kube(map[string]any{"kind": "Job", "name": "backup-29364000", "controller": true})),
			"done", "", ltype.LogSeverity_INFO, recordTime, with(map[string]string{"logging.gke.io/top_level_controller_type": "CronJob", "logging.gke.io/top_level_controller_name": "backup"}), ""},
		{"a StatefulSet's pod", body("stdout", []kv{{"log", "ready\n"}}, kube(map[string]any{"kind": "StatefulSet", "name": "db", "controller": true})),
			"ready", "", ltype.LogSeverity_INFO, recordTime, with(map[string]string{"logging.gke.io/top_level_controller_type": "StatefulSet", "logging.gke.io/top_level_controller_name": "db"}), ""},
	} {
		f := startFake(t)
		s := newSink(t, f, core.MapGetter{"project_id": "gke-prod", "cluster_name": "prod", "cluster_location": "europe-west1"})
		deliver(t, s, fixture.Chunk(tag, []record.Record{{Sec: recordTime.Unix(), Body: c.body}}))
		e := f.entries()[0]
		res := e.Resource
		if res.Type != "k8s_container" || !maps.Equal(res.Labels, map[string]string{"project_id": "gke-prod", "location": "europe-west1", "cluster_name": "prod",
			"namespace_name": "shop", "pod_name": "web-6c8d9f7b4-zxcvb", "container_name": "web"}) {
			t.Errorf("%s: resource %v", c.name, res)
		}
		stream, _ := record.Value(c.body).Lookup("stream")
		b, _ := stream.Bytes()
		wantLog := "projects/gke-prod/logs/" + string(b) // the runtime's stream, as on GKE
		if e.LogName != wantLog {
			t.Errorf("%s: log name %s, want %s", c.name, e.LogName, wantLog)
		}
		if !maps.Equal(e.Labels, c.labels) {
			t.Errorf("%s: labels\n got %v\nwant %v", c.name, e.Labels, c.labels)
		}
		if e.Severity != c.severity {
			t.Errorf("%s: severity %v, want %v", c.name, e.Severity, c.severity)
		}
		if got := e.Timestamp.AsTime(); !got.Equal(c.ts) {
			t.Errorf("%s: timestamp %v, want %v", c.name, got, c.ts)
		}
		if c.json != "" {
			var got, want any
			b, _ := e.GetJsonPayload().MarshalJSON()
			_ = json.Unmarshal(b, &got)
			_ = json.Unmarshal([]byte(c.json), &want)
			if e.GetJsonPayload() == nil || !jsonEqual(got, want) {
				t.Errorf("%s: jsonPayload %s, want %s", c.name, b, c.json)
			}
		} else if e.GetTextPayload() != c.text {
			t.Errorf("%s: textPayload %q, want %q", c.name, e.GetTextPayload(), c.text)
		}
		if e.Trace != c.trace {
			t.Errorf("%s: trace %q, want %q", c.name, e.Trace, c.trace)
		}
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

const hex64 = "5f3a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"
