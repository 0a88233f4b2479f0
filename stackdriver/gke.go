package stackdriver

import (
	"bytes"
	"net/url"
	"regexp"
	"strings"

	"github.com/tinylib/msgp/msgp"
	"google.golang.org/genproto/googleapis/api/monitoredres"

	"github.com/trailstack/trailstack/record"
)

// Labels GKE's agent writes on container entries.
const (
	labelNode           = "compute.googleapis.com/resource_name"
	labelControllerType = "logging.gke.io/top_level_controller_type"
	labelControllerName = "logging.gke.io/top_level_controller_name"
)

// podOf is a k8s_container entry's pod defaults: what GKE's agent puts on every entry of a
// pod (the node, the pod's labels, its top-level controller). They are the same for every
// entry of the pod, so they are built once per pod and go once into the request's defaults,
// which Cloud Logging merges under an entry's own labels.
func (m *mapper) podOf(v []record.Value, tag string, s *scratch) *cachedPod {
	// The last record's pod, when the memo vouches that everything it was built from is.
	if lp := &s.lastPod; s.stamp != 0 && lp.gen != 0 && lp.stamp == s.stamp && lp.tag == tag && m.nodeFromKube {
		for i := len(s.pods) - 1; i >= 0; i-- {
			if s.pods[i].gen == lp.gen {
				lp.tag = tag // this flush's string: the next comparison is of pointers (TagIdentity.Of)
				return &s.pods[i]
			}
		}
	}
	p := m.findPod(v, tag, s)
	s.lastPod.stamp, s.lastPod.tag, s.lastPod.gen = s.stamp, tag, p.gen
	return p
}

func (m *mapper) findPod(v []record.Value, tag string, s *scratch) *cachedPod {
	labels, owners := v[m.slot.labels], v[m.slot.owners]
	s.buf, _ = m.nodeName.Render(s.buf[:0], v, tag)
	for i := len(s.pods) - 1; i >= 0; i-- {
		if p := &s.pods[i]; bytes.Equal(labels, p.labelsRaw) && bytes.Equal(owners, p.ownersRaw) && string(s.buf) == p.node {
			return p
		}
	}
	node := string(s.buf)
	s.labelsGen++
	var p *cachedPod
	s.pods, p = remember(s.pods, cachedPod{labels, owners, node, podLabels(labels, owners, node), s.labelsGen})
	return p
}

// podLabels builds the labels of a pod's entries: k8s-pod/<key> for each pod label, with the
// dots of the key as '_' (slashes kept), as GKE writes them; the node; and the top-level
// controller from the pod's ownerReferences (Owner_References On in the filter).
func podLabels(labels, owners record.Value, node string) map[string]string {
	out := map[string]string{}
	if node != "" {
		out[labelNode] = node
	}
	var hash string
	_ = labels.Range(func(k []byte, lv record.Value) bool {
		if string(k) == "pod-template-hash" {
			hash = str(lv)
		}
		if len(out) < maxLabels-2 {
			out["k8s-pod/"+strings.ReplaceAll(validString(k), ".", "_")] = truncateUTF8(str(lv), maxLabelValue)
		}
		return true
	})
	if kind, name := topController(owners, hash); kind != "" {
		out[labelControllerType], out[labelControllerName] = kind, name
	}
	return out
}

// cronJobSuffix is what a CronJob adds to the names of its Jobs: the scheduled time, in
// minutes since the epoch.
var cronJobSuffix = regexp.MustCompile(`^(.+)-[0-9]{8,}$`)

// topController reads the pod's controlling owner (the first one marked controller, else
// the first) and climbs as far as the name allows without the API: a ReplicaSet named
// <deployment>-<pod-template-hash> is a Deployment's, a Job named <cronjob>-<minutes> a
// CronJob's. Other kinds (StatefulSet, DaemonSet, a bare ReplicaSet or Job) are their own top.
func topController(owners record.Value, podTemplateHash string) (kind, name string) {
	it, _ := owners.Elems()
	for {
		o, ok := it.Next()
		if !ok {
			break
		}
		k, _ := o.Lookup("kind")
		nm, _ := o.Lookup("name")
		c, _ := o.Lookup("controller")
		isController, _, _ := msgp.ReadBoolBytes(c)
		if kind == "" || isController {
			kind, name = str(k), str(nm)
		}
		if isController {
			break
		}
	}
	switch kind {
	case "ReplicaSet":
		if base, ok := strings.CutSuffix(name, "-"+podTemplateHash); ok && podTemplateHash != "" {
			return "Deployment", base
		}
	case "Job":
		if m := cronJobSuffix.FindStringSubmatch(name); m != nil {
			return "CronJob", m[1]
		}
	}
	return kind, name
}

func (m *mapper) resource(v []record.Value, tag string, s *scratch) *monitoredres.MonitoredResource {
	nsB, _ := v[m.slot.ns].Bytes()
	podB, _ := v[m.slot.pod].Bytes()
	contB, _ := v[m.slot.container].Bytes()
	if len(nsB) > 0 && len(podB) > 0 && len(contB) > 0 {
		for i := len(s.resources) - 1; i >= 0; i-- {
			if r := &s.resources[i]; r.container && string(nsB) == r.ns && string(podB) == r.pod && string(contB) == r.cont {
				return r.res // shared: read-only
			}
		}
		c := cachedResource{ns: validString(nsB), pod: validString(podB), cont: validString(contB), container: true}
		c.res = &monitoredres.MonitoredResource{Type: "k8s_container", Labels: map[string]string{
			"project_id": m.project, "location": m.location, "cluster_name": m.cluster,
			"namespace_name": c.ns, "pod_name": c.pod, "container_name": c.cont,
		}}
		s.resources, _ = remember(s.resources, c)
		return c.res
	}
	// The fallback resource is the node's: shared by consecutive entries like a container's,
	// so that it goes once into the request's defaults instead of being encoded per entry.
	s.buf, _ = m.nodeName.Render(s.buf[:0], v, tag)
	for i := len(s.resources) - 1; i >= 0; i-- {
		if r := &s.resources[i]; !r.container && string(s.buf) == r.node {
			return r.res
		}
	}
	c := cachedResource{node: string(s.buf)}
	switch m.fallback {
	case "k8s_node":
		c.res = &monitoredres.MonitoredResource{Type: "k8s_node", Labels: map[string]string{
			"project_id": m.project, "location": m.location, "cluster_name": m.cluster, "node_name": c.node,
		}}
	case "generic_node":
		c.res = &monitoredres.MonitoredResource{Type: "generic_node", Labels: map[string]string{
			"project_id": m.project, "location": m.location, "namespace": m.cluster, "node_id": c.node,
		}}
	default:
		c.res = &monitoredres.MonitoredResource{Type: "global", Labels: map[string]string{"project_id": m.project}}
	}
	s.resources, _ = remember(s.resources, c)
	return c.res
}

// logNameOf is the entry's full log name, built once per log in the chunk.
func (m *mapper) logNameOf(v []record.Value, tag string, s *scratch) string {
	last := &s.lastLog
	if last.name != "" && sameValues(v, m.logSlots, last.vals) {
		return last.name
	}
	name := m.renderLogName(v, tag, s)
	last.name, last.vals = name, last.vals[:0]
	for _, slot := range m.logSlots {
		last.vals = append(last.vals, v[slot])
	}
	return name
}

// sameValues tells whether the values at slots are those in was, one for one.
func sameValues(v []record.Value, slots []int, was []record.Value) bool {
	for i, slot := range slots {
		if (v[slot] == nil) != (was[i] == nil) || !bytes.Equal(v[slot], was[i]) {
			return false
		}
	}
	return true
}

func (m *mapper) renderLogName(v []record.Value, tag string, s *scratch) string {
	s.buf, _ = m.logName.Render(s.buf[:0], v, tag)
	for i := len(s.logNames) - 1; i >= 0; i-- {
		if string(s.buf) == s.logNames[i].id {
			return s.logNames[i].name
		}
	}
	c := cachedLogName{id: string(s.buf), name: "projects/" + m.project + "/logs/" + url.PathEscape(logID(s.buf))}
	s.logNames, _ = remember(s.logNames, c)
	return c.name
}

// logID keeps a log name to what the API accepts: letters, digits, and / _ - . , at most
// 512 bytes; anything else becomes _.
func logID(b []byte) string {
	if len(b) == 0 {
		return "stdout"
	}
	if len(b) > 512 {
		b = b[:512]
	}
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '/' || c == '_' || c == '-' || c == '.') {
			b[i] = '_'
		}
	}
	return string(b)
}
