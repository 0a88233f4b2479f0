#!/usr/bin/env bash
# The main job on sample data: Kubernetes container logs (testdata/, chunks as Fluent Bit's
# tail + kubernetes filter produce them) through the real out_trailstack.so, fanned out to two
# outputs as on a GKE node: a local stand-in for Papertrail (a TLS syslog receiver) and one
# for Cloud Logging (a LoggingServiceV2 gRPC server), each printing what it received.
set -euo pipefail
build=${BUILD:-build}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
chunks=(testdata/grafana.msgpack testdata/nginx.msgpack)
"$build/syslogdrain" -dir "$work" -expect 126 -print -timeout 60s >"$work/syslog.out" &
"$build/fakelogging" -expect 126 -print -timeout 60s >"$work/logging.out" &
until grep -q listening "$work/syslog.out" 2>/dev/null && grep -q listening "$work/logging.out" 2>/dev/null; do sleep 0.05; done
syslog_addr=$(awk '/listening/ {print $2}' "$work/syslog.out")
logging_addr=$(awk '/listening/ {print $2}' "$work/logging.out")

echo "== Papertrail stand-in: RFC 5424 over TLS at $syslog_addr (CA $work/ca.pem)"
echo "== Cloud Logging stand-in: gRPC at $logging_addr"
echo "== Fluent Bit's Go proxy ABI, played by build/flbhost, flushes ${#chunks[@]} sample chunks into both outputs:"
"$build/flbhost" "$build/out_trailstack.so" \
	-i -o sink=syslog -o "address=$syslog_addr" -o "ca_file=$work/ca.pem" \
	-o "sd_params=ns=\$kubernetes['namespace_name'] pod=\$kubernetes['pod_name']" \
	-i -o sink=stackdriver -o "endpoint=$logging_addr" -o endpoint_plaintext=on \
	-o project_id=demo-project -o cluster_name=demo-cluster -o cluster_location=europe-west1 \
	-- "${chunks[@]}" 2>"$work/plugin.log" | grep -E '^(flush|total)'
wait %1 %2 || true
echo "== the plugin logged:"
sed 's/^/  /' "$work/plugin.log"
echo "== the syslog receiver got (HOSTNAME is Papertrail's system, APP-NAME its program):"
grep -v listening "$work/syslog.out"
echo "== the Cloud Logging stand-in got (time, severity, namespace/pod/container, log name: payload):"
grep -v listening "$work/logging.out"
