#!/usr/bin/env bash
# 1,000,000 kube-20k records (8 chunks of about 2 MB, 50 times) through the .so via the C host
# into a local Cloud Logging stand-in (gRPC on loopback) that counts every entry.
set -euo pipefail
build=${BUILD:-build}
fixtures=${FIXTURES:-../shared/fixtures/fluent-bit-5.1.1}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
"$build/fakelogging" -expect 1000000 >"$work/fake.out" &
until grep -q listening "$work/fake.out" 2>/dev/null; do sleep 0.05; done
addr=$(awk '/listening/ {print $2}' "$work/fake.out")
"$build/flbhost" -q -n 50 "$build/out_trailstack.so" -i -o sink=stackdriver -o "endpoint=$addr" \
	-o endpoint_plaintext=on -o project_id=bench -o cluster_name=bench -o cluster_location=local \
	-- "$fixtures"/kube-20k/*.msgpack | tail -2
wait %1
tail -1 "$work/fake.out"
