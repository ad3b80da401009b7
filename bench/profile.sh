#!/usr/bin/env bash
# Where a write spends its CPU: starts a 3-node Meridian cluster on loopback (real `meridian
# server` processes, WAN model off, as bench/compare-etcd.sh does), drives it with `meridian
# bench` (64 clients, the write workload by default), samples every CPU with `perf record`
# (cpu-clock, DWARF call graphs) for a few seconds in the middle of the run, and writes:
#   OUT/flamegraph.svg   the flame graph (inferno), all processes (servers and the bench client)
#   OUT/folded.txt       the folded stacks it was drawn from
#   OUT/top.txt          the top functions by self time, and inclusive shares of the write path's
#                        stages (gRPC, proposal, openraft, log append, storage commit, fsync,
#                        apply, peer transport)
#
# Usage: bench/profile.sh [OUT_DIR]           (default: target/profile)
# Knobs (environment): WORKLOAD=write CLIENTS=64 DURATION=14 SAMPLE_S=6 FREQ=199
# Needs perf (Debian's linux-perf; installed here when missing) and inferno (cargo install).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-target/profile}
WORKLOAD=${WORKLOAD:-write}
CLIENTS=${CLIENTS:-64}
DURATION=${DURATION:-14}
SAMPLE_S=${SAMPLE_S:-6}
FREQ=${FREQ:-199}

if ! command -v perf >/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends linux-perf >/dev/null
fi
export PATH="$HOME/.cargo/bin:$PATH"
command -v inferno-flamegraph >/dev/null || cargo install --quiet --locked inferno
cargo build --release --quiet -p meridian
BIN=$PWD/target/release/meridian
mkdir -p "$OUT"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

REGIONS=(us-east-1 us-west-2 eu-west-1)
EP=()
for i in 1 2 3; do
    cat >"$WORK/m$i.toml" <<EOT
node_id = $i
region = "${REGIONS[$((i - 1))]}"
zone = "${REGIONS[$((i - 1))]}a"
data_dir = "$WORK/m$i"
listen_peer = "127.0.0.1:$((17200 + i))"
listen_http = "127.0.0.1:$((18200 + i))"
listen_grpc = "127.0.0.1:$((19200 + i))"
seeds = ["127.0.0.1:17201"]
bootstrap = $([ "$i" = 1 ] && echo true || echo false)
[wan]
enabled = false
EOT
    "$BIN" server --config "$WORK/m$i.toml" >"$WORK/m$i.log" 2>&1 &
    PIDS+=($!)
    EP+=("127.0.0.1:$((18200 + i))")
done
ENDPOINTS=$(IFS=,; echo "${EP[*]}")

# Sampling starts once the keyspace exists and the load is steady.
(sleep $(( (DURATION - SAMPLE_S) / 2 )); perf record -q -e cpu-clock -F "$FREQ" --call-graph dwarf,32768 -a \
    -o "$WORK/perf.data" -- sleep "$SAMPLE_S" 2>/dev/null) &
PERF=$!
"$BIN" bench --target meridian --endpoints "$ENDPOINTS" --workload "$WORKLOAD" --clients "$CLIENTS" \
    --duration "$DURATION" --keyspace "profile_$WORKLOAD" 2>/dev/null | tail -n 4
wait "$PERF"

perf script -i "$WORK/perf.data" 2>/dev/null | inferno-collapse-perf >"$OUT/folded.txt"
inferno-flamegraph --title "meridian bench --workload $WORKLOAD --clients $CLIENTS (3 nodes + client, all CPUs)" \
    <"$OUT/folded.txt" >"$OUT/flamegraph.svg"
python3 - "$OUT/folded.txt" <<'PY' | tee "$OUT/top.txt"
import collections, re, sys
stacks = [l.rsplit(" ", 1) for l in open(sys.argv[1]) if l.strip()]
total = sum(int(n) for _, n in stacks) or 1
print("Inclusive share of all sampled CPU, by stage of the write path:")
stages = [
    ("gRPC server (tonic/h2)", r"tonic::transport::server"),
    ("bench client (gRPC)", r"hyper::proto::h2::client|meridian::bench"),
    ("proposal batching", r"meridian_consensus::proposer"),
    ("openraft core", r"openraft::core::raft_core"),
    ("openraft replication", r"openraft::replication"),
    ("log append (encode, submit)", r"meridian_consensus::log_store"),
    ("state machine apply", r"meridian_consensus::state_machine"),
    ("storage commit (group committer)", r"meridian_storage::committer::writer"),
    ("  of which fsync", r"sync_data|fsync"),
    ("peer transport", r"meridian_server::transport"),
    ("kernel networking", r"tcp_sendmsg|tcp_recvmsg|tcp_v4_rcv"),
    ("memory allocation", r"malloc|_int_free|cfree|realloc"),
]
for name, pat in stages:
    n = sum(int(c) for s, c in stacks if re.search(pat, s))
    print(f"  {100 * n / total:5.1f}%  {name}")
print("\nTop 30 functions by self time:")
self_time = collections.Counter()
for s, c in stacks:
    self_time[s.split(";")[-1]] += int(c)
for f, c in self_time.most_common(30):
    print(f"  {100 * c / total:5.1f}%  {f[:140]}")
PY
echo "flame graph: $OUT/flamegraph.svg"
