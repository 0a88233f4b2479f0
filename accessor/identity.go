package accessor

import (
	"strings"

	"github.com/tinylib/msgp/msgp"

	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/record"
)

// Identity is the container a chunk came from, read from its tag: the kubelet's file name
// /var/log/containers/<pod>_<namespace>_<container>-<id>.log, which tail puts at the end
// of the tag (kube.var.log.containers.<file>). An application can write any key into its
// record (the kubernetes filter merges its JSON next to the filter's own keys), but not the
// name of the file the runtime writes its output to; GKE's own agent takes a container's
// identity from that name too.
type Identity struct {
	OK                        bool
	Namespace, Pod, Container string
	ns, pod, container        record.Value // the same, as msgpack strings for the slots
}

// TagIdentity is the container a tag names, for the last tag asked about: every record of a
// chunk has the chunk's tag.
type TagIdentity struct {
	tag string
	id  Identity
}

// Of returns the identity tag names, read again only for a tag unlike the last.
func (t *TagIdentity) Of(tag string) *Identity {
	if tag != t.tag {
		t.id = ParseTag(tag)
	}
	// Kept even when equal: a flush's records share one string, so comparing it again is
	// comparing pointers, not a tag's hundred-odd bytes per record.
	t.tag = tag
	return &t.id
}

// ParseTag reads the identity at the end of tag; OK is false when the tag does not end with
// a container log's file name.
func ParseTag(tag string) Identity {
	file, ok := strings.CutSuffix(tag, ".log")
	if !ok {
		return Identity{}
	}
	dash := strings.LastIndexByte(file, '-')
	if dash < 0 || !core.IsHex(file[dash+1:], 64) || strings.ToLower(file[dash+1:]) != file[dash+1:] {
		return Identity{}
	}
	// Before the id: <...>.<pod>_<namespace>_<container>, none of which may hold '_' or '.'
	// but the pod (a DNS subdomain may have dots, and so may the tag's path before it).
	head := file[:dash]
	c := strings.LastIndexByte(head, '_')
	if c < 0 {
		return Identity{}
	}
	n := strings.LastIndexByte(head[:c], '_')
	if n < 0 {
		return Identity{}
	}
	pod := head[:n]
	// The path before the pod: the tag's dots stand for the path's slashes, and a pod name
	// may have dots too; the path is the kubelet's /var/log/containers.
	if i := strings.Index(pod, "containers."); i >= 0 {
		pod = pod[i+len("containers."):]
	}
	id := Identity{OK: true, Pod: pod, Namespace: head[n+1 : c], Container: head[c+1:]}
	if !dnsName(id.Pod, true) || !dnsName(id.Namespace, false) || !dnsName(id.Container, false) {
		return Identity{}
	}
	buf := msgp.AppendString(nil, id.Namespace)
	buf = msgp.AppendString(buf, id.Pod)
	buf = msgp.AppendString(buf, id.Container)
	l1, l2 := msgpStrLen(id.Namespace), msgpStrLen(id.Pod)
	id.ns, id.pod, id.container = buf[:l1], buf[l1:l1+l2], buf[l1+l2:]
	return id
}

// msgpStrLen is the size of s as a msgpack string: header and bytes.
func msgpStrLen(s string) int {
	switch n := len(s); {
	case n < 32:
		return 1 + n
	case n < 256:
		return 2 + n
	case n < 65536:
		return 3 + n
	default:
		return 5 + n
	}
}

// dnsName checks Kubernetes' names: lower-case letters, digits and '-' (and '.' in a
// subdomain, such as a pod's name), starting and ending with a letter or digit.
func dnsName(s string, dots bool) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || i == len(s)-1 || c != '-' && !(dots && c == '.')) {
			return false
		}
	}
	return true
}
