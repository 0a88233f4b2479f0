#!/usr/bin/env bash
# The main job on sample data: Kubernetes container logs (testdata/, chunks as Fluent Bit's
# tail + kubernetes filter produce them) through the real out_trailstack.so, fanned out to two
# outputs as on a GKE node: a local stand-in for Papertrail (a TLS syslog receiver) and one
# for Cloud Logging (a LoggingServiceV2 gRPC server), each printing what it received.
set -euo pipefail
build=${BUILD:-build}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
chunks=(testdata/fluent-bit-5.1.1/kube-merged/chunk-002.msgpack testdata/fluent-bit-5.1.1/kube-merged/chunk-003.msgpack)
"$build/syslogdrain" -dir "$work" -expect 126 -print -timeout 60s >"$work/syslog.out" &
"$build/fakelogging" -expect 126 -print -timeout 60s >"$work/logging.out" &
until grep -q listening "$work/syslog.out" 2>/dev/null && grep -q listening "$work/logging.out" 2>/dev/null; do sleep 0.05; done
syslog_addr=$(awk '/listening/ {print $2}' "$work/syslog.out")
logging_addr=$(awk '/listening/ {print $2}' "$work/logging.out")

echo "== Papertrail stand-in: RFC 5424 over TLS at $syslog_addr (CA $work/ca.pem)"
echo "== Cloud Logging stand-in: gRPC at $logging_addr"

fluent_bit=${FLUENT_BIT_BIN:-$(command -v fluent-bit || true)}
if [ -z "$fluent_bit" ] && [ -x ../shared/engine/fluent-bit ]; then
	fluent_bit=$(realpath ../shared/engine/fluent-bit)
fi
if [ -n "$fluent_bit" ]; then
	# The shipped conf/fluent-bit.yaml in a real fluent-bit, pointed at this machine: the
	# sample container logs instead of /var/log/containers, state in a temporary folder, the
	# stand-ins as destinations. Without a cluster there is no kubernetes filter (nor the
	# plugin's pod cache that feeds it), so the records carry no pod metadata.
	mkdir -p "$work/state"
	awk -v logs="$(realpath testdata/containers)" -v work="$work" -v logging="$logging_addr" -v so="$(realpath "$build/out_trailstack.so")" '
		/^  filters:/ { skip = 1; next }
		skip && /^  [^ ]/ { skip = 0 }
		skip { next }
		/^  - \/fluent-bit\/plugins\// { print "  - " so; next }
		/^ *storage.path:/ { print "  storage.path: " work "/state/storage/"; next }
		/^ *db:/ { print "      db: " work "/state/tail.db"; next }
		/^ *path:/ { print "      path: " logs "/*.log"; next }
		/^ *http_server:/ { print "  http_server: off"; next }
		/^ *metrics_listen:/ { print "      metrics_listen: 127.0.0.1:0"; next }
		/^ *kube_metadata_listen:/ { next }
		/^ *ca_file:/ { print "      ca_file: " work "/ca.pem"; next }
		/^ *sink: stackdriver/ { print; print "      endpoint: " logging; print "      endpoint_plaintext: on";
			print "      project_id: demo-project"; print "      cluster_name: demo-cluster"; print "      cluster_location: europe-west1"; next }
		{ print }' conf/fluent-bit.yaml >"$work/fluent-bit.yaml"
	echo "== a real Fluent Bit ($fluent_bit) runs the shipped configuration on testdata/containers/:"
	PAPERTRAIL_ADDRESS="$syslog_addr" NODE_NAME=demo-node "$fluent_bit" -c "$work/fluent-bit.yaml" >"$work/plugin.log" 2>&1 &
	fb=$!
	wait %1 %2 || true
	# The plugin's metrics, as a scraper sees them once the records are in.
	url=$(grep -o 'metrics on http://[^ ]*' "$work/plugin.log" | head -1 | cut -d' ' -f3)
	if [ -n "$url" ] && command -v curl >/dev/null; then
		sleep 1
		curl -s "$url" | grep -E '^trailstack_(records_delivered_total|flushes_total|flush_duration_seconds_(sum|count)|last_success)' >"$work/metrics.txt" || true
	fi
	kill -TERM "$fb" 2>/dev/null || true
	wait "$fb" || true
	grep -E 'trailstack|error' "$work/plugin.log" | grep -v 'worker #' >"$work/plugin.short" || true
	mv "$work/plugin.short" "$work/plugin.log"
else
	echo "== Fluent Bit's Go proxy ABI, played by build/flbhost (no fluent-bit found), flushes ${#chunks[@]} sample chunks into both outputs:"
	"$build/flbhost" "$build/out_trailstack.so" \
		-i -o sink=syslog -o "address=$syslog_addr" -o "ca_file=$work/ca.pem" \
		-o "sd_params=ns=\$kubernetes['namespace_name'] pod=\$kubernetes['pod_name']" \
		-i -o sink=stackdriver -o "endpoint=$logging_addr" -o endpoint_plaintext=on \
		-o project_id=demo-project -o cluster_name=demo-cluster -o cluster_location=europe-west1 \
		-- "${chunks[@]}" 2>"$work/plugin.log" | grep -E '^(flush|total)'
	wait %1 %2 || true
fi
echo "== the plugin logged:"
sed 's/^/  /' "$work/plugin.log"
echo "== the syslog receiver got (HOSTNAME is Papertrail's system, APP-NAME its program):"
grep -v listening "$work/syslog.out"
echo "== the Cloud Logging stand-in got (time, severity, namespace/pod/container, log name: payload):"
grep -v listening "$work/logging.out"
if [ -s "$work/metrics.txt" ]; then
	echo "== the plugin's metrics (GET /metrics on metrics_listen): delivered, flushes by result, flush time"
	sed 's/^/  /' "$work/metrics.txt"
else
	echo "== (the plugin's metrics are shown when the demo runs in a real Fluent Bit, which keeps serving them)"
fi
