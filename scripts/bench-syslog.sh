#!/usr/bin/env bash
# 1,000,000 kube-20k records (8 chunks of about 2 MB, 50 times) through the .so via the C host
# into a TLS receiver on loopback that counts every message.
set -euo pipefail
build=${BUILD:-build}
fixtures=${FIXTURES:-../shared/fixtures/fluent-bit-5.1.1}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
"$build/syslogdrain" -dir "$work" -expect 1000000 >"$work/drain.out" &
until grep -q listening "$work/drain.out" 2>/dev/null; do sleep 0.05; done
addr=$(awk '/listening/ {print $2}' "$work/drain.out")
"$build/flbhost" -q -n 50 "$build/out_trailstack.so" -i -o sink=syslog -o "address=$addr" \
	-o "ca_file=$work/ca.pem" -- "$fixtures"/kube-20k/*.msgpack | tail -2
wait %1
tail -1 "$work/drain.out"
