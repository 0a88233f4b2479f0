#!/usr/bin/env bash
# The main job on sample data: the Kubernetes container logs in testdata/containers through
# the real out_trailstack.so, fanned out to two outputs as on a GKE node: a local stand-in for
# Papertrail (a TLS syslog receiver) and one for Cloud Logging (a LoggingServiceV2 gRPC
# server). Each stand-in prints what it received and checks it against the sample's own
# lines (tools/syslogdrain, tools/fakelogging: -sample). The demo ends with a summary, and
# exits 1 unless every line reached both once and the plugin logged no warning or error.
#
# With a fluent-bit named by FLUENT_BIT_BIN or on PATH, the shipped conf/fluent-bit.yaml runs
# in it, tailing the sample; without one, build/flbhost plays Fluent Bit's part with the
# chunks Fluent Bit 5.1.1 made of the same sample (testdata/fluent-bit-5.1.1/kube-merged).
set -euo pipefail
build=${BUILD:-build}
sample=testdata/containers
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${DEMO_KEEP:-}" ] && cp "$work/plugin.log" "$DEMO_KEEP"; rm -rf "$work"' EXIT
chunks=(testdata/fluent-bit-5.1.1/kube-merged/*.msgpack)

"$build/syslogdrain" -dir "$work" -sample "$sample" -print -timeout 10m >"$work/syslog.out" &
papertrail=$!
"$build/fakelogging" -sample "$sample" -print -timeout 10m >"$work/logging.out" &
logging=$!
until grep -q listening "$work/syslog.out" 2>/dev/null && grep -q listening "$work/logging.out" 2>/dev/null; do sleep 0.05; done
syslog_addr=$(awk '/^listening/ {print $2}' "$work/syslog.out")
logging_addr=$(awk '/^listening/ {print $2}' "$work/logging.out")

echo "== Papertrail stand-in: RFC 5424 over TLS at $syslog_addr (CA $work/ca.pem)"
echo "== Cloud Logging stand-in: gRPC at $logging_addr"

# complete waits until both stand-ins have every line of the sample, for at most $1 s, and
# no longer than process $2 (Fluent Bit) lives.
complete() {
	local end=$((SECONDS + $1))
	until grep -qx complete "$work/syslog.out" && grep -qx complete "$work/logging.out"; do
		((SECONDS < end)) || return 1
		[ -z "${2:-}" ] || kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
}

fluent_bit=${FLUENT_BIT_BIN:-$(command -v fluent-bit || true)}
stopped=""
if [ -n "$fluent_bit" ]; then
	# The shipped conf/fluent-bit.yaml in a real fluent-bit, pointed at this machine: the
	# sample container logs instead of /var/log/containers, state in a temporary folder, the
	# stand-ins as destinations. Without a cluster there is no kubernetes filter (nor the
	# plugin's pod cache that feeds it); in its place a parser filter merges a JSON log's
	# keys into the record as the filter's merge_log (keep_log off) does, so that both
	# destinations read a line's severity from the same keys. The stand-in takes no token
	# (Fluent Bit warns of an empty ${PAPERTRAIL_TOKEN}).
	mkdir -p "$work/state/repair"  # the repair input's path, there at its first scan
	awk -v logs="$(realpath "$sample")" -v work="$work" -v logging="$logging_addr" -v so="$(realpath "$build/out_trailstack.so")" '
		/^  filters:/ { skip = 1
			print "  filters:"
			print "    - name: parser"
			print "      match: kube.*"
			print "      key_name: log"
			print "      parser: json"
			print "      reserve_data: on"
			next }
		skip && /^  [^ ]/ { skip = 0 }
		skip { next }
		/^  - \/fluent-bit\/plugins\// { print "  - " so; next }
		/^ *storage\.path:/ { print "  storage.path: " work "/state/storage/"; next }
		/^ *path: \/var\/log\/containers\// { print "      path: " logs "/*.log"; next }
		/^ *account_logs:/ { print "      account_logs: " logs; next }
		/^ *exclude_path:/ { next }
		/^ *http_server:/ { print "  http_server: off"; next }
		/^ *metrics_listen:/ { print "      metrics_listen: 127.0.0.1:0"; next }
		/^ *state_dir:/ { print "      state_dir: " work "/state"; next }
		/^ *ledger_dir:/ { print "      ledger_dir: " work "/state/ledger"; next }
		/^ *kube_metadata_listen:/ { next }
		/^ *token:/ { next }
		/^ *ca_file:/ { print "      ca_file: " work "/ca.pem"; next }
		/^ *sink: stackdriver/ { print; print "      endpoint: " logging; print "      endpoint_plaintext: on";
			print "      project_id: demo-project"; print "      cluster_name: demo-cluster"; print "      cluster_location: europe-west1"; next }
		# Every other path of the state directory (the DBs of tail, the buffer the account
		# reads, the repair files and their input) in the temporary folder too.
		{ gsub("/var/lib/trailstack", work "/state"); print }' conf/fluent-bit.yaml >"$work/fluent-bit.yaml"
	echo "== a real Fluent Bit ($fluent_bit) runs the shipped configuration on $sample/:"
	PAPERTRAIL_ADDRESS="$syslog_addr" PAPERTRAIL_TOKEN="" NODE_NAME=demo-node "$fluent_bit" -c "$work/fluent-bit.yaml" >"$work/plugin.log" 2>&1 &
	fb=$!
	complete 120 "$fb" || echo "== not every line arrived (Fluent Bit gone, or 120 s passed)"
	# Stopped as a DaemonSet's pod is, with SIGTERM, once both destinations have every line.
	t0=$(date +%s%N)
	kill -TERM "$fb" 2>/dev/null || true
	wait "$fb" || true
	stopped=$(( ($(date +%s%N) - t0) / 1000000 ))
	grep -E 'trailstack|\[ *(warn|error)\]' "$work/plugin.log" | grep -v 'worker #' >"$work/plugin.short" || true
	mv "$work/plugin.short" "$work/plugin.log"
else
	echo "== Fluent Bit's Go proxy ABI, played by $build/flbhost (no fluent-bit found), flushes the ${#chunks[@]} chunks Fluent Bit 5.1.1 made of $sample/ into both outputs:"
	"$build/flbhost" "$build/out_trailstack.so" \
		-i -o sink=syslog -o "address=$syslog_addr" -o "ca_file=$work/ca.pem" \
		-o "sd_params=ns=\$kubernetes['namespace_name'] pod=\$kubernetes['pod_name']" \
		-i -o sink=stackdriver -o "endpoint=$logging_addr" -o endpoint_plaintext=on \
		-o project_id=demo-project -o cluster_name=demo-cluster -o cluster_location=europe-west1 \
		-- "${chunks[@]}" 2>"$work/plugin.log" | grep -E '^(flush|total)' || true
	complete 10 || true
fi
kill -TERM "$papertrail" "$logging" 2>/dev/null || true
wait "$papertrail" "$logging" || true

echo "== the plugin logged:"
sed 's/^/  /' "$work/plugin.log"
echo "== the syslog receiver got (HOSTNAME is Papertrail's system, APP-NAME its program):"
grep -vE '^(listening|complete|received|sample:)' "$work/syslog.out" || true
echo "== the Cloud Logging stand-in got (time, severity, namespace/pod/container, log name: payload):"
grep -vE '^(listening|complete|received|sample:)' "$work/logging.out" || true

# The summary: for each destination, the sample's lines, what the plugin counted as
# delivered (its records_delivered counter, in its exit line) and what the stand-in found.
instance() { # the plugin instance of a sink: trailstack.N
	grep -o "\[output:trailstack:trailstack\.[0-9]*\] initialised: sink=\"$1\"" "$work/plugin.log" | grep -o 'trailstack\.[0-9]*' | head -1
}
delivered() {
	local in
	in=$(instance "$1")
	[ -n "$in" ] && grep -F "[output:trailstack:$in] exited after" "$work/plugin.log" | grep -o '[0-9]* records delivered' | cut -d' ' -f1 | head -1
}
field() { # field FILE REGEX: the number before the words REGEX matches in the stand-in's count
	grep '^sample:' "$1" | grep -oE "[0-9]+ $2" | head -1 | cut -d' ' -f1
}
physical=$(cat "$sample"/*.log | wc -l)
files=$(ls "$sample"/*.log | wc -l)
ok=yes
lines=$(grep -ohE "of the sample's [0-9]+ lines" "$work/syslog.out" "$work/logging.out" | head -1 | grep -oE '[0-9]+' || true)
echo "== summary: the sample is $physical lines in $files container logs, ${lines:-?} log lines once tail joins the parts the runtime split long lines into"
printf '  %-14s %8s %10s %9s %9s %14s %5s %6s\n' destination lines delivered received messages "traces joined" lost twice
for dest in Papertrail:syslog:syslog.out "Cloud Logging:stackdriver:logging.out"; do
	name=${dest%%:*} rest=${dest#*:}
	sink=${rest%%:*} out=$work/${rest#*:}
	lines=$(grep -oE "of the sample's [0-9]+ lines" "$out" | grep -oE '[0-9]+' || echo "?")
	d=$(delivered "$sink" || true)
	received=$(grep -oE "hold [0-9]+ of" "$out" | grep -oE '[0-9]+' || echo "?")
	messages=$(field "$out" "messages hold" || echo "?")
	traces=$(field "$out" "stack traces joined" || echo "?")
	lost=$(field "$out" "lost" || echo "?")
	twice=$(field "$out" "twice" || echo "?")
	unknown=$(field "$out" "not in the sample" || echo "?")
	printf '  %-14s %8s %10s %9s %9s %14s %5s %6s\n' "$name" "$lines" "${d:-?}" "$received" "${messages:-?}" "${traces:-?}" "${lost:-?}" "${twice:-?}"
	[ "$lines" = "${d:-}" ] && [ "$lines" = "$received" ] && [ "$lost" = 0 ] && [ "$twice" = 0 ] && [ "$unknown" = 0 ] || ok=no
done
# The plugin's warnings and anyone's errors (the engine warns that it is shutting down).
warnings=$(grep -cE '\[ *(warn|error)\] \[output:trailstack|\[error\]' "$work/plugin.log" || true)
if [ "$ok" = yes ] && [ "$warnings" = 0 ]; then
	echo "== every line of the sample reached both destinations once, and the plugin logged no warning or error${stopped:+; Fluent Bit stopped ${stopped} ms after the last line arrived}"
else
	echo "== FAILED: not every line reached both destinations exactly once, or the plugin logged $warnings warning or error lines"
	exit 1
fi
