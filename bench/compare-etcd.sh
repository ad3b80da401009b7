#!/usr/bin/env bash
# Meridian against etcd, side by side in one run on this machine: starts a 3-node Meridian
# cluster (real `meridian server` processes, WAN model off, since etcd has none) and a 3-member
# etcd cluster (Debian's etcd-server 3.4), both on loopback with their data on the same disk,
# drives both with `meridian bench` (same generator, same seed, gRPC for both) through every
# workload at 1 client and at high concurrency, alternating targets so machine noise hits both,
# and writes a markdown table with the ratios and the disk's fsync rate.
#
# Usage: bench/compare-etcd.sh [OUT.md]          (default OUT: bench/results.md)
# Knobs (environment): DURATION=10 CLIENTS_HIGH=64 KEYS=1000 VALUE_SIZE=256 WORKLOADS="write a b c"
#   HTTP=1: also the write workload at CLIENTS_HIGH through each system's JSON/HTTP API
#   (Meridian's /v1/kv, etcd's grpc-gateway), rows "write/http" (HTTP=0 leaves them out).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-bench/results.md}
DURATION=${DURATION:-10}
CLIENTS_HIGH=${CLIENTS_HIGH:-64}
KEYS=${KEYS:-1000}
VALUE_SIZE=${VALUE_SIZE:-256}
WORKLOADS=${WORKLOADS:-write a b c}
HTTP=${HTTP:-1}

if ! command -v etcd >/dev/null; then
    echo "etcd is not installed; install Debian's etcd-server (apt-get install etcd-server etcd-client)" >&2
    exit 1
fi
cargo build --release --quiet
BIN=$PWD/target/release/meridian
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# The disk's rate of small synchronous writes: the ceiling for a system that fsyncs every
# write alone, which group commit must beat by far.
FSYNCS=$(python3 - "$WORK" <<'EOF'
import os, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT)
n, start = 0, time.monotonic()
while time.monotonic() - start < 3:
    os.pwrite(fd, b"x" * 4096, (n % 256) * 4096)
    os.fsync(fd)
    n += 1
print(round(n / (time.monotonic() - start)))
EOF
)
echo "disk: $FSYNCS fsyncs/s (4 KiB write + fsync, one at a time)"

REGIONS=(us-east-1 us-west-2 eu-west-1)
M_HTTP=()
for i in 1 2 3; do
    cat >"$WORK/m$i.toml" <<EOF
node_id = $i
region = "${REGIONS[$((i - 1))]}"
zone = "${REGIONS[$((i - 1))]}a"
data_dir = "$WORK/m$i"
listen_peer = "127.0.0.1:$((17100 + i))"
listen_http = "127.0.0.1:$((18100 + i))"
listen_grpc = "127.0.0.1:$((19100 + i))"
seeds = ["127.0.0.1:17101"]
bootstrap = $([ "$i" = 1 ] && echo true || echo false)
[wan]
enabled = false
EOF
    "$BIN" server --config "$WORK/m$i.toml" >"$WORK/m$i.log" 2>&1 &
    PIDS+=($!)
    M_HTTP+=("127.0.0.1:$((18100 + i))")
done

CLUSTER=""
E_CLIENT=()
for i in 1 2 3; do
    CLUSTER+="${CLUSTER:+,}e$i=http://127.0.0.1:$((23800 + i))"
    E_CLIENT+=("127.0.0.1:$((23700 + i))")
done
for i in 1 2 3; do
    etcd --name "e$i" --data-dir "$WORK/e$i" \
        --listen-client-urls "http://127.0.0.1:$((23700 + i))" \
        --advertise-client-urls "http://127.0.0.1:$((23700 + i))" \
        --listen-peer-urls "http://127.0.0.1:$((23800 + i))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((23800 + i))" \
        --initial-cluster "$CLUSTER" --initial-cluster-state new \
        --initial-cluster-token meridian-bench >"$WORK/e$i.log" 2>&1 &
    PIDS+=($!)
done
for _ in $(seq 100); do
    ETCDCTL_API=3 etcdctl --endpoints "$(IFS=,; echo "${E_CLIENT[*]}")" endpoint health >/dev/null 2>&1 && break
    sleep 0.2
done

M_EP=$(IFS=,; echo "${M_HTTP[*]}")
E_EP=$(IFS=,; echo "${E_CLIENT[*]}")
for wl in $WORKLOADS; do
    for c in 1 "$CLIENTS_HIGH"; do
        for t in meridian etcd; do
            ep=$M_EP; [ "$t" = etcd ] && ep=$E_EP
            echo "== $t, workload $wl, $c clients"
            "$BIN" bench --target "$t" --endpoints "$ep" --workload "$wl" --clients "$c" \
                --keys "$KEYS" --value-size "$VALUE_SIZE" --duration "$DURATION" \
                --keyspace "bench_$wl" --json "$WORK/$t-$wl-$c.json" 2>/dev/null | tail -n 6
        done
    done
    if [ "$wl" = write ] && [ "$HTTP" = 1 ]; then
        for t in meridian etcd; do
            ep=$M_EP; [ "$t" = etcd ] && ep=$E_EP
            echo "== $t, workload write over HTTP, $CLIENTS_HIGH clients"
            "$BIN" bench --target "$t" --protocol http --endpoints "$ep" --workload write \
                --clients "$CLIENTS_HIGH" --keys "$KEYS" --value-size "$VALUE_SIZE" --duration "$DURATION" \
                --keyspace "bench_$wl" --json "$WORK/$t-write_http-$CLIENTS_HIGH.json" 2>/dev/null | tail -n 6
        done
    fi
done

python3 - "$WORK" "$OUT" "$FSYNCS" "$CLIENTS_HIGH" "$WORKLOADS" <<'EOF'
import json, os, platform, sys, datetime
work, out, fsyncs, high, workloads = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5].split()
def load(t, wl, c):
    return json.load(open(os.path.join(work, f"{t}-{wl}-{c}.json")))
rows = []
for wl in workloads:
    cells = [(wl, "1"), (wl, high)]
    if wl == "write" and os.path.exists(os.path.join(work, f"meridian-write_http-{high}.json")):
        cells.append(("write_http", high))
    for w, c in cells:
        m, e = load("meridian", w, c), load("etcd", w, c)
        ratio = m["throughput_ops_s"] / e["throughput_ops_s"] if e["throughput_ops_s"] else float("inf")
        rows.append((w.replace("_", "/"), c, m, e, ratio))
lines = [
    "# Meridian vs etcd, side by side",
    "",
    f"Run {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores ({platform.machine()}), "
    f"by `bench/compare-etcd.sh`: 3 Meridian nodes (WAN model off, one sync keyspace of 4 shards) and "
    f"3 etcd 3.4 members on loopback, data on the same disk; `meridian bench` drives both over gRPC "
    f"with the same seeded zipfian generator, {load('meridian', workloads[0], '1')['keys']} keys, "
    f"{load('meridian', workloads[0], '1')['value_size']}-byte values, "
    f"{load('meridian', workloads[0], '1')['duration_s']:.0f} s per cell. Reads are linearizable on both. "
    f"Rows write/http: the same writes through each system's JSON/HTTP API (Meridian's /v1/kv, etcd's grpc-gateway).",
    "",
    f"Disk: {fsyncs} fsyncs/s (4 KiB write + fsync, one at a time).",
    "",
    "| workload | clients | Meridian ops/s | etcd ops/s | ratio | Meridian p50 ms | etcd p50 ms | Meridian p99 ms | etcd p99 ms | errors (M/e) |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]
for wl, c, m, e, ratio in rows:
    lines.append(f"| {wl} | {c} | {m['throughput_ops_s']:.0f} | {e['throughput_ops_s']:.0f} | {ratio:.2f} | "
                 f"{m['p50_ms']} | {e['p50_ms']} | {m['p99_ms']} | {e['p99_ms']} | {m['errors']}/{e['errors']} |")
goals = []
by = {(wl, c): (m, e, r) for wl, c, m, e, r in rows}
if ("write", high) in by:
    m, e, r = by[("write", high)]
    goals.append(f"- write throughput at {high} clients >= 1.5 x etcd: {r:.2f} x ({'met' if r >= 1.5 else 'missed'})")
    x = m["throughput_ops_s"] / fsyncs
    goals.append(f"- sustained writes >= 10 x the disk's fsyncs/s: {m['throughput_ops_s']:.0f} ops/s = {x:.1f} x ({'met' if x >= 10 else 'missed'})")
if ("write/http", high) in by and ("write", high) in by:
    mh, mg = by[("write/http", high)][0], by[("write", high)][0]
    x = mh["throughput_ops_s"] / mg["throughput_ops_s"]
    goals.append(f"- Meridian's HTTP API within 20% of its gRPC API (writes, {high} clients): {x:.2f} x ({'met' if x >= 0.8 else 'missed'})")
if ("write", "1") in by:
    m, e, _ = by[("write", "1")]
    goals.append(f"- single-client put p50 no worse than etcd: {m['update']['p50_ms']} ms vs {e['update']['p50_ms']} ms "
                 f"({'met' if m['update']['p50_ms'] <= e['update']['p50_ms'] else 'missed'})")
if goals:
    lines += ["", "Goals:", ""] + goals
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
print(f"\nwritten to {out}")
EOF
