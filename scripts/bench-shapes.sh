#!/usr/bin/env bash
# Each record shape (a 2 MB chunk of each, from enginebench -chunks) through the .so via the
# C host, 100 times, into the syslog receiver over TLS and the Cloud Logging stand-in over
# gRPC, every record counted: the plugin alone, without the engine around it.
set -euo pipefail
build=${BUILD:-build}
repeat=${REPEAT:-100}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
"$build/enginebench" -chunks "$work/chunks" >"$work/records"
echo "shape  sink         CPU µs/record  records/s  peak RSS kB"
while read -r shape n _; do
	expect=$((n * repeat))
	chunk="$work/chunks/$shape.msgpack"
	"$build/syslogdrain" -dir "$work" -expect "$expect" </dev/null >"$work/drain.out" &
	until grep -q listening "$work/drain.out" 2>/dev/null; do sleep 0.05; done
	addr=$(awk '/listening/ {print $2}' "$work/drain.out")
	"$build/flbhost" -q -n "$repeat" "$build/out_trailstack.so" -i -o sink=syslog -o "address=$addr" \
		-o "ca_file=$work/ca.pem" -- "$chunk" </dev/null 2>/dev/null | awk -v s="$shape" '/flush phase/ {
			for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
			printf "%-6s syslog       %13s  %9d  %11s\n", s, f["cpu_us_per_record"], f["records_per_s"], f["maxrss_kb"] }'
	wait %1
	"$build/fakelogging" -expect "$expect" </dev/null >"$work/fake.out" &
	until grep -q listening "$work/fake.out" 2>/dev/null; do sleep 0.05; done
	addr=$(awk '/listening/ {print $2}' "$work/fake.out")
	"$build/flbhost" -q -n "$repeat" "$build/out_trailstack.so" -i -o sink=stackdriver -o "endpoint=$addr" \
		-o endpoint_plaintext=on -o project_id=bench -o cluster_name=bench -o cluster_location=local \
		-- "$chunk" </dev/null 2>/dev/null | awk -v s="$shape" '/flush phase/ {
			for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
			printf "%-6s stackdriver  %13s  %9d  %11s\n", s, f["cpu_us_per_record"], f["records_per_s"], f["maxrss_kb"] }'
	wait %1
done <"$work/records"
