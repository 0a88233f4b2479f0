package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/trailstack/trailstack/testkit/fixture"
)

func config(s runSpec, logs string, port int, addrs map[string]string) string {
	// The tag holds the file's path (tail's `*`), as on a node.
	prefix := "kube." + strings.ReplaceAll(strings.TrimPrefix(logs, "/"), "/", ".") + "."
	tag := "kube.*"
	if s.shape == "mixed" {
		tag = fixture.MixedTag // one tag for every file: chunks mix containers
	}
	var b strings.Builder
	fmt.Fprintf(&b, `[SERVICE]
    Flush        1
    Grace        2
    Log_Level    warn
    HTTP_Server  On
    HTTP_Listen  127.0.0.1
    HTTP_Port    %d

[INPUT]
    Name              tail
    Tag               %s
    Path              %s/*.log
    multiline.parser  cri
    Read_from_Head    On
    Refresh_Interval  1
    Buffer_Max_Size   512k
    Offset_Key        trailstack_offset
`, port, tag, logs)
	if s.shape == "kube" || s.shape == "json" {
		tokenFile := filepath.Join(s.dir, "token")
		os.WriteFile(tokenFile, []byte("bench"), 0o600)
		fmt.Fprintf(&b, `
[FILTER]
    Name                        kubernetes
    Match                       kube.*
    Kube_Tag_Prefix             %s
    Kube_URL                    https://127.0.0.1:1
    Kube_Token_File             %s
    Kube_Meta_Preload_Cache_Dir %s
    Merge_Log                   On
    Keep_Log                    Off
    Labels                      On
    Annotations                 Off
    Owner_References            On
    Buffer_Size                 2M
`, prefix, tokenFile, filepath.Join(s.dir, "meta"))
	}
	// Fluent Bit's out_stackdriver reads the resource from the tag: a container's from the
	// file name after tag_prefix, a node's from "k8s_node.<node>".
	resource := "k8s_container\n    tag_prefix             " + prefix
	if s.shape == "mixed" {
		resource = "k8s_node"
	}
	host, portStr, _ := strings.Cut(addrs["listening"], ":")
	base, extras := outputOptions(s.output)
	out := trailstackOutput(s.workers)
	if extras["ledger"] {
		out += "    ledger_dir  " + filepath.Join(s.dir, "ledger") + "\n"
	}
	if extras["account"] {
		out += "    account_logs " + logs + "\n    storage_path " + filepath.Join(s.dir, "storage") + "\n    account_tag_prefix " + prefix + "\n"
		os.MkdirAll(filepath.Join(s.dir, "storage"), 0o755)
	}
	switch base {
	case "null":
		b.WriteString("\n[OUTPUT]\n    Name  null\n    Match *\n")
	case "c-syslog":
		fmt.Fprintf(&b, `
[OUTPUT]
    Name               syslog
    Match              *
    Host               %s
    Port               %s
    Mode               tls
    tls                On
    tls.verify         Off
    Syslog_Format      rfc5424
    Syslog_Message_Key log
    Syslog_Appname_Key kubernetes['container_name']
    Retry_Limit        no_limits
    Workers            %d
`, host, portStr, s.workers)
	case "c-stackdriver":
		fmt.Fprintf(&b, `
[OUTPUT]
    Name                   stackdriver
    Match                  *
    resource               %s
    k8s_cluster_name       bench
    k8s_cluster_location   local
    cloud_logging_base_url https://%s
    metadata_server        http://%s
    tls.verify             Off
    Retry_Limit            no_limits
    Workers                %d
`, resource, addrs["rest"], addrs["metadata"], s.workers)
	case "syslog":
		fmt.Fprintf(&b, "%s    sink        syslog\n    address     %s\n    ca_file     %s\n",
			out, addrs["listening"], filepath.Join(s.dir, "ca.pem"))
	case "stackdriver":
		fmt.Fprintf(&b, "%s    sink        stackdriver\n    endpoint    %s\n    endpoint_plaintext on\n"+
			"    project_id  bench\n    cluster_name bench\n    cluster_location local\n", out, addrs["listening"])
	}
	return b.String()
}

// outputOptions splits an output's name from its options: +ledger gives a trailstack output a
// ledger_dir, +account account_logs, as the shipped configuration does
// (syslog+ledger+account). Tail always puts the offset on the records, as shipped.
func outputOptions(name string) (base string, extras map[string]bool) {
	parts := strings.Split(name, "+")
	extras = map[string]bool{}
	for _, p := range parts[1:] {
		extras[p] = true
	}
	return parts[0], extras
}

// trailstackOutput is an [OUTPUT] of trailstack with the given workers; the sink's keys follow.
func trailstackOutput(workers int) string {
	return fmt.Sprintf(`
[OUTPUT]
    Name        trailstack
    Match       *
    Workers     %d
    Retry_Limit no_limits
`, workers)
}
