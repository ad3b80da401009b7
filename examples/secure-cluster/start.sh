#!/usr/bin/env bash
# A secured three-region Meridian cluster on this machine: one node per region on loopback,
# mutual TLS between nodes, HTTPS and gRPC over TLS for clients, tokens required, values
# encrypted at rest.
#
#   examples/secure-cluster/start.sh DIR
#
# Writes into DIR: ca.pem (the cluster CA), client.pem and client.key (a cluster-admin client
# certificate), admin.token (cluster-admin) and reader.token (reader on every keyspace),
# root.token and kek (the nodes' secrets), http (the nodes' HTTPS addresses, comma-separated),
# pids (the node processes), node-N.toml and node-N/ (configs and data directories).
# Stop it with: kill $(cat DIR/pids)
#
# The binary: $MERIDIAN, else meridian on PATH, else this checkout's target/release or
# target/debug build. Ports: BASE_PORT (default 19100) and the next eight.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR   (DIR receives certificates, tokens, configs and data)" >&2
    exit 2
fi
dir=$1
here="$(cd "$(dirname "$0")/../.." && pwd)"
bin=${MERIDIAN:-}
if [ -z "$bin" ]; then
    if command -v meridian >/dev/null; then
        bin=meridian
    elif [ -x "$here/target/release/meridian" ]; then
        bin="$here/target/release/meridian"
    elif [ -x "$here/target/debug/meridian" ]; then
        bin="$here/target/debug/meridian"
    else
        echo "no meridian binary: build one with 'cargo build --release -p meridian' or set MERIDIAN" >&2
        exit 1
    fi
fi
if [ -e "$dir/pids" ]; then
    echo "$dir already holds a cluster (see $dir/pids); stop it and remove $dir first" >&2
    exit 1
fi
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
base=${BASE_PORT:-19100}
regions=(us-east-1 us-west-2 eu-west-1)

"$bin" certs --dir "$dir" ca >/dev/null
for i in 1 2 3; do
    "$bin" certs --dir "$dir" node --node-id "$i" --region "${regions[$((i - 1))]}" >/dev/null
done
"$bin" certs --dir "$dir" client --name admin --grant cluster-admin --out client >/dev/null
"$bin" auth root-token > "$dir/root.token"
"$bin" admin new-kek > "$dir/kek"
chmod 600 "$dir/root.token" "$dir/kek"

http=()
: > "$dir/pids"
# Started nodes are stopped again if the cluster does not come up.
trap 'kill $(cat "$dir/pids") 2>/dev/null || true' EXIT
for i in 1 2 3; do
    peer=$((base + (i - 1) * 3)); web=$((peer + 1)); grpc=$((peer + 2))
    http+=("127.0.0.1:$web")
    cat > "$dir/node-$i.toml" <<TOML
node_id = $i
region = "${regions[$((i - 1))]}"
data_dir = "$dir/node-$i"
listen_peer = "127.0.0.1:$peer"
listen_http = "127.0.0.1:$web"
listen_grpc = "127.0.0.1:$grpc"
seeds = ["127.0.0.1:$base"]
bootstrap = $([ "$i" = 1 ] && echo true || echo false)

[wan]
enabled = true

[tls]
ca_file = "$dir/ca.pem"
cert_file = "$dir/node-$i.pem"
key_file = "$dir/node-$i.key"
client_certs = "optional"

[auth]
enabled = true
root_token_file = "$dir/root.token"

[encryption]
kek_file = "$dir/kek"
TOML
    RUST_LOG=${RUST_LOG:-info,openraft=warn} nohup "$bin" server --config "$dir/node-$i.toml" \
        > "$dir/node-$i.log" 2>&1 &
    echo $! >> "$dir/pids"
done
(IFS=,; echo "${http[*]}") > "$dir/http"

export MERIDIAN_CA="$dir/ca.pem" MERIDIAN_TOKEN="$(cat "$dir/root.token")"
export MERIDIAN_NODE="${http[0]}"
for _ in $(seq 1 300); do
    if "$bin" cluster --output json 2>/dev/null | grep -q '"meta_spread": true'; then
        break
    fi
    sleep 0.2
done
if ! "$bin" cluster --output json 2>/dev/null | grep -q '"meta_spread": true'; then
    echo "the cluster did not form within a minute; see $dir/node-*.log" >&2
    exit 1
fi
"$bin" auth token create --name admin --grant cluster-admin | tail -1 > "$dir/admin.token"
"$bin" auth token create --name reader --grant reader | tail -1 > "$dir/reader.token"
chmod 600 "$dir/admin.token" "$dir/reader.token"
trap - EXIT

cat <<MSG
secure cluster up: $(cat "$dir/http")
  CLI:      export MERIDIAN_CA=$dir/ca.pem MERIDIAN_TOKEN=\$(cat $dir/admin.token) MERIDIAN_NODE=${http[0]}
            meridian cluster
  console:  https://${http[0]}/#token=\$(cat $dir/admin.token)  (trust $dir/ca.pem first)
  stop:     kill \$(cat $dir/pids)
MSG
