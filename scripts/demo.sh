#!/usr/bin/env bash
# The main job on sample data: Kubernetes container logs (testdata/, chunks as Fluent Bit's
# tail + kubernetes filter produce them) through the real out_trailstack.so into a local
# stand-in for Papertrail, a TLS syslog receiver on loopback, which prints what it received.
set -euo pipefail
build=${BUILD:-build}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
chunks=(testdata/grafana.msgpack testdata/nginx.msgpack)
"$build/syslogdrain" -dir "$work" -expect 126 -print -timeout 60s >"$work/drain.out" &
until grep -q listening "$work/drain.out" 2>/dev/null; do sleep 0.05; done
addr=$(awk '/listening/ {print $2}' "$work/drain.out")

echo "== Papertrail stand-in: RFC 5424 over TLS at $addr (CA $work/ca.pem)"
echo "== Fluent Bit's Go proxy ABI, played by build/flbhost, flushes ${#chunks[@]} sample chunks:"
"$build/flbhost" "$build/out_trailstack.so" -i -o sink=syslog -o "address=$addr" -o "ca_file=$work/ca.pem" \
	-o "sd_params=ns=\$kubernetes['namespace_name'] pod=\$kubernetes['pod_name']" -- "${chunks[@]}" 2>"$work/plugin.log" |
	grep -E '^(flush|total)'
wait %1 || true
echo "== the plugin logged:"
sed 's/^/  /' "$work/plugin.log"
echo "== the receiver got (each line as it arrived; HOSTNAME is Papertrail's system, APP-NAME its program):"
grep -v listening "$work/drain.out"
