#!/usr/bin/env bash
# CI's end-to-end check of examples/secure-cluster/start.sh: the cluster forms over mutual TLS,
# the admin token and the client certificate write, the reader token cannot, and a canary value
# is nowhere in plaintext under the data directories. Stops the cluster in every case.
set -euo pipefail
bin=${MERIDIAN:?set MERIDIAN to the meridian binary}
dir=$(mktemp -d)
trap 'kill $(cat "$dir/c/pids" 2>/dev/null) 2>/dev/null || true; rm -rf "$dir"' EXIT
"$(dirname "$0")/start.sh" "$dir/c" >/dev/null
c="$dir/c"
export MERIDIAN_CA="$c/ca.pem" MERIDIAN_NODE="$(cut -d, -f2 "$c/http")"
canary="CANARY-$RANDOM$RANDOM-secure"
MERIDIAN_TOKEN=$(cat "$c/admin.token") "$bin" keyspace create orders \
    --regions us-east-1,us-west-2,eu-west-1 --home-region us-east-1 --shards 1 >/dev/null
for _ in $(seq 1 100); do
    MERIDIAN_TOKEN=$(cat "$c/admin.token") "$bin" kv put orders k1 "$canary" >/dev/null 2>&1 && break
    sleep 0.2
done
[ "$(MERIDIAN_TOKEN=$(cat "$c/reader.token") "$bin" kv get orders k1 2>/dev/null | head -1)" = "$canary" ]
if MERIDIAN_TOKEN=$(cat "$c/reader.token") "$bin" kv put orders k2 x >/dev/null 2>&1; then
    echo "FAIL: the reader token wrote" >&2
    exit 1
fi
"$bin" --client-cert "$c/client.pem" --client-key "$c/client.key" kv put orders k3 "$canary" >/dev/null
if grep -rl "$canary" "$c"/node-*/ ; then
    echo "FAIL: the canary is in plaintext in the files above" >&2
    exit 1
fi
echo "secure cluster: TLS, tokens, client certificate and encryption at rest checked"
