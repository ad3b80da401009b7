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
#   CURVES=1: afterwards, how cost grows (CURVE_DURATION=5 s per cell): write and read
#   throughput and p99 against clients (1, 8, 64, 256), value size (256 B, 4 KiB, 64 KiB),
#   shards (1, 4, 16; Meridian) and keys (1 thousand, 1 million; writes), each node's resident
#   memory under load, fsyncs per acknowledged write at 64 clients; written as a "Cost curves"
#   section of bench/results.md and a plot of throughput against clients, bench/curves.svg.
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
M_PIDS=()
E_PIDS=()
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
    M_PIDS+=($!)
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
    E_PIDS+=($!)
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
# A cost-curves section from an earlier CURVES=1 run stays (a CURVES=1 run replaces it).
kept = ""
if os.path.exists(out):
    prev = open(out).read()
    if "<!-- curves -->" in prev and "<!-- /curves -->" in prev:
        kept = "\n" + prev[prev.index("<!-- curves -->"):prev.index("<!-- /curves -->") + len("<!-- /curves -->")] + "\n"
open(out, "w").write("\n".join(lines) + "\n" + kept)
print("\n".join(lines))
print(f"\nwritten to {out}")
EOF

if [ "${CURVES:-0}" = 1 ]; then
    CD=${CURVE_DURATION:-5}
    mkdir -p "$WORK/curves"
    # Resident memory (KiB) of each node of $1, sampled halfway through a cell.
    rss() {
        local pids=("${M_PIDS[@]}"); [ "$1" = etcd ] && pids=("${E_PIDS[@]}")
        local out=()
        for p in "${pids[@]}"; do out+=("$(awk '/VmRSS/{print $2}' "/proc/$p/status")"); done
        (IFS=,; echo "${out[*]}")
    }
    fsyncs() {
        for h in "${M_HTTP[@]}"; do curl -s "http://$h/metrics"; done |
            awk '/^meridian_fsync_seconds_count/{s+=$2} END{print s+0}'
    }
    # cell NAME TARGET WORKLOAD CLIENTS VALUE_SIZE KEYS SHARDS
    cell() {
        local name=$1 t=$2 wl=$3 c=$4 vs=$5 k=$6 sh=$7
        local ep=$M_EP; [ "$t" = etcd ] && ep=$E_EP
        echo "== curve $name: $t, $wl, $c clients, $vs B, $k keys, $sh shards"
        (sleep $((CD / 2 + 1)); rss "$t" >"$WORK/curves/$name-$t.rss") &
        local sampler=$!
        local f0; f0=$(fsyncs)
        "$BIN" bench --target "$t" --endpoints "$ep" --workload "$wl" --clients "$c" --keys "$k" \
            --value-size "$vs" --duration "$CD" --shards "$sh" --keyspace "curve_${wl}_${sh}" \
            --json "$WORK/curves/$name-$t.json" >/dev/null 2>&1 || echo "   (failed)"
        wait "$sampler"
        echo $(( $(fsyncs) - f0 )) >"$WORK/curves/$name-$t.fsyncs"
    }
    for c in 1 8 64 256; do
        for t in meridian etcd; do
            cell "clients-write-$c" "$t" write "$c" 256 1000 4
            cell "clients-read-$c" "$t" c "$c" 256 1000 4
        done
    done
    for vs in 256 4096 65536; do
        for t in meridian etcd; do cell "value-$vs" "$t" write 64 "$vs" 1000 4; done
    done
    for sh in 1 4 16; do cell "shards-$sh" meridian write 64 256 1000 "$sh"; done
    for k in 1000 1000000; do
        for t in meridian etcd; do cell "keys-$k" "$t" write 64 256 "$k" 4; done
    done
    python3 - "$WORK/curves" bench/results.md bench/curves.svg <<'PY'
import json, os, sys
d, results, svg = sys.argv[1:4]
def get(name, t):
    p = os.path.join(d, f"{name}-{t}.json")
    if not os.path.exists(p):
        return None
    r = json.load(open(p))
    r["rss"] = open(os.path.join(d, f"{name}-{t}.rss")).read().strip()
    r["fsyncs"] = int(open(os.path.join(d, f"{name}-{t}.fsyncs")).read().strip() or 0)
    return r
def mib(rss):
    return "/".join(f"{int(x) / 1024:.0f}" for x in rss.split(",") if x)
def row(label, name):
    m, e = get(name, "meridian"), get(name, "etcd")
    cells = [label]
    for r in (m, e):
        cells += [f"{r['throughput_ops_s']:.0f}", f"{r['p99_ms']}", mib(r["rss"])] if r else ["-", "-", "-"]
    cells.append(f"{m['throughput_ops_s'] / e['throughput_ops_s']:.2f}" if m and e and e["throughput_ops_s"] else "-")
    return "| " + " | ".join(cells) + " |"
head = ["| cell | Meridian ops/s | Meridian p99 ms | Meridian RSS MiB (per node) | etcd ops/s | etcd p99 ms | etcd RSS MiB (per member) | ratio |",
        "|---|---:|---:|---|---:|---:|---|---:|"]
lines = ["<!-- curves -->", "## Cost curves", "",
         "`CURVES=1 bench/compare-etcd.sh`, same clusters and generator as above, "
         f"{get('clients-write-1', 'meridian')['duration_s']:.0f} s per cell; resident memory of each node "
         "sampled halfway through the cell. Defaults: 64 clients, 256-byte values, 1000 keys, 4 shards.", "",
         "Against clients (write = update-only; read = workload c, linearizable reads):", ""] + head
for c in (1, 8, 64, 256):
    lines.append(row(f"write, {c} clients", f"clients-write-{c}"))
    lines.append(row(f"read, {c} clients", f"clients-read-{c}"))
lines += ["", "Against value size (writes, 64 clients):", ""] + head
for vs in (256, 4096, 65536):
    lines.append(row(f"{vs} B values", f"value-{vs}"))
lines += ["", "Against shards of the keyspace (Meridian; writes, 64 clients):", ""] + head
for sh in (1, 4, 16):
    lines.append(row(f"{sh} shard(s)", f"shards-{sh}"))
lines += ["", "Against key count (writes, 64 clients; keys are written, not preloaded):", ""] + head
for k in (1000, 1000000):
    lines.append(row(f"{k} keys", f"keys-{k}"))
w = get("clients-write-64", "meridian")
if w:
    per = w["fsyncs"] / max(w["ops"] if "ops" in w else w["throughput_ops_s"] * w["duration_s"], 1)
    lines += ["", f"Fsyncs per acknowledged write at 64 clients (meridian_fsync_seconds_count over the cell, "
              f"all 3 nodes): {per:.2f} ({per / 3:.2f} per node; goal at most 0.1).", ""]
lines += ["![Throughput against clients](curves.svg)", "<!-- /curves -->"]
text = open(results).read() if os.path.exists(results) else ""
if "<!-- curves -->" in text:
    text = text[:text.index("<!-- curves -->")] + text[text.index("<!-- /curves -->") + len("<!-- /curves -->"):].lstrip("\n")
open(results, "w").write(text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n")
# The plot: throughput against clients (log scale), both systems, writes and reads.
W, H, L, B = 640, 400, 70, 50
xs = [1, 8, 64, 256]
series = []
for t, colour in (("meridian", "#1f77b4"), ("etcd", "#d62728")):
    for wl, dash in (("write", ""), ("read", "6,4")):
        pts = [(c, get(f"clients-{wl}-{c}", t)) for c in xs]
        pts = [(c, r["throughput_ops_s"]) for c, r in pts if r]
        series.append((f"{t} {wl}", colour, dash, pts))
ymax = max([y for *_, pts in series for _, y in pts] + [1]) * 1.1
import math
def px(c): return L + (W - L - 20) * math.log(c) / math.log(256)
def py(y): return H - B - (H - B - 20) * y / ymax
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<line x1="{L}" y1="{H-B}" x2="{W-20}" y2="{H-B}" stroke="black"/>',
       f'<line x1="{L}" y1="20" x2="{L}" y2="{H-B}" stroke="black"/>',
       f'<text x="{W/2}" y="{H-12}" text-anchor="middle">clients (closed loop, log scale)</text>',
       f'<text x="16" y="{H/2}" transform="rotate(-90 16 {H/2})" text-anchor="middle">ops/s</text>']
for c in xs:
    out.append(f'<text x="{px(c):.0f}" y="{H-B+16}" text-anchor="middle">{c}</text>')
for i in range(6):
    y = ymax * i / 5
    out.append(f'<text x="{L-6}" y="{py(y)+4:.0f}" text-anchor="end">{y:.0f}</text>')
    out.append(f'<line x1="{L}" y1="{py(y):.0f}" x2="{W-20}" y2="{py(y):.0f}" stroke="#ddd"/>')
for k, (label, colour, dash, pts) in enumerate(series):
    path = " ".join(f"{px(c):.1f},{py(y):.1f}" for c, y in pts)
    out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>')
    for c, y in pts:
        out.append(f'<circle cx="{px(c):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>')
    out.append(f'<line x1="{L+10}" y1="{30+16*k}" x2="{L+40}" y2="{30+16*k}" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>')
    out.append(f'<text x="{L+46}" y="{34+16*k}">{label}</text>')
out.append("</svg>")
open(svg, "w").write("\n".join(out) + "\n")
print("\n".join(lines))
print(f"\ncurves written to {results} and {svg}")
PY
fi
