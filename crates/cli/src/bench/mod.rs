//! `meridian bench`: YCSB-style workloads against Meridian or etcd, driven by the same seeded
//! generator over the same kind of client (gRPC, one HTTP/2 connection per client), with a
//! progress display, a table of throughput and latency percentiles, and a JSON report.
//!
//! Clients run closed loops (one request outstanding each) for the given duration; keys are
//! loaded first for workloads that read. Without `--endpoints`, a 3-node Meridian cluster (one
//! node in each of three regions, WAN model off unless `--wan`) is started in this process.

pub mod target;
pub mod workload;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use serde_json::{json, Value};

use crate::client::Client;
use crate::local::{node_configs, LocalNode};
use target::{Conn, Protocol, Target};
use workload::{key_name, Distribution, Generator, Operation, Workload};

/// Most concurrent clients one bench process runs.
pub const CLIENTS_MAX: usize = 4096;
/// Attempts to load one key before the load phase fails.
const LOAD_ATTEMPTS_MAX: u32 = 5;
/// Longest latency the histograms hold (µs); slower requests are clamped to it.
const LATENCY_US_MAX: u64 = 60_000_000;
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
const LOCAL_REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];

pub struct Options {
    pub target: Target,
    pub protocol: Protocol,
    pub endpoints: Vec<String>,
    pub wan: bool,
    /// Local nodes require tokens; the clients send a root token.
    pub auth: bool,
    /// Local nodes use TLS on every listener; the clients trust their CA.
    pub tls: bool,
    pub workload: Workload,
    pub distribution: Distribution,
    pub clients: usize,
    pub keys: u64,
    pub value_size: usize,
    pub duration_s: u64,
    pub seed: u64,
    pub keyspace: String,
    pub shards: u16,
    pub json: Option<PathBuf>,
}

impl Options {
    fn validate(&self) -> Result<()> {
        if self.clients == 0 || self.clients > CLIENTS_MAX {
            bail!(
                "--clients {} is out of range; use 1 to {CLIENTS_MAX}",
                self.clients
            );
        }
        if self.keys == 0 {
            bail!("--keys must be at least 1");
        }
        if self.value_size > meridian_types::limits::VALUE_BYTES_MAX {
            bail!(
                "--value-size {} is over Meridian's value limit of {} bytes",
                self.value_size,
                meridian_types::limits::VALUE_BYTES_MAX
            );
        }
        if self.duration_s == 0 {
            bail!("--duration must be at least 1 second");
        }
        if self.target == Target::Etcd && self.endpoints.is_empty() {
            bail!("--target etcd needs --endpoints (the members' client addresses, e.g. 127.0.0.1:2379); bench/compare-etcd.sh starts an etcd cluster");
        }
        Ok(())
    }
}

pub fn run(opts: Options) -> Result<()> {
    opts.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(bench(opts))
}

/// Per-client results of the measured phase.
struct Tally {
    read: Histogram<u64>,
    update: Histogram<u64>,
    errors: u64,
    last_error: Option<String>,
}

impl Tally {
    fn new() -> Tally {
        let h = || Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid bounds");
        Tally {
            read: h(),
            update: h(),
            errors: 0,
            last_error: None,
        }
    }

    fn merge(&mut self, other: Tally) {
        self.read.add(other.read).expect("same bounds");
        self.update.add(other.update).expect("same bounds");
        self.errors += other.errors;
        self.last_error = other.last_error.or(self.last_error.take());
    }
}

async fn bench(opts: Options) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut local: Vec<LocalNode> = Vec::new();
    let (addrs, description) = match opts.target {
        Target::Etcd => (
            opts.endpoints.clone(),
            format!("etcd, {} members", opts.endpoints.len()),
        ),
        Target::Meridian => {
            let http = if opts.endpoints.is_empty() {
                local = start_local(dir.path(), opts.wan, opts.auth, opts.tls).await?;
                local.iter().map(LocalNode::http).collect()
            } else {
                opts.endpoints.clone()
            };
            let grpc = prepare_meridian(&http, &opts).await?;
            if opts.auth && opts.endpoints.is_empty() {
                // Measure with a stored token (looked up in the metadata group's replica on
                // every request), as applications use, not the root token.
                let r = Client::new(&http[0])
                    .post_json(
                        "/v1/auth/tokens",
                        &json!({"name": "bench", "grants": [format!("writer:{}", opts.keyspace)]}),
                    )
                    .await
                    .context("creating the bench's token")?;
                let token = r["token"].as_str().context("a created token")?.to_string();
                // Every node knows it before the load starts.
                crate::client::set_token(token);
                for h in &http {
                    let c = Client::new(h);
                    let started = Instant::now();
                    while c.get_json("/v1/auth/whoami").await.is_err() {
                        if started.elapsed() > SETTLE_TIMEOUT {
                            bail!("node {h} did not learn the bench's token in time");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            // The HTTP API is served on the nodes' HTTP addresses.
            let grpc = if opts.protocol == Protocol::Http {
                http.clone()
            } else {
                grpc
            };
            let how = if !local.is_empty() {
                if opts.wan {
                    "in this process, 3 regions under the WAN model"
                } else {
                    "in this process, no WAN delay"
                }
            } else {
                "external"
            };
            (grpc, format!("meridian, {} nodes ({how})", http.len()))
        }
    };
    let mut conns = Vec::with_capacity(opts.clients);
    for c in 0..opts.clients {
        let addr = &addrs[c % addrs.len()];
        conns.push(Conn::connect(opts.target, opts.protocol, addr, &opts.keyspace).await?);
    }
    println!(
        "meridian bench: {description}; workload {} ({}% reads), {} clients, {} keys ({:?}), {}-byte values, {} s, seed {}",
        opts.workload.name(),
        opts.workload.read_pct(),
        opts.clients,
        opts.keys,
        opts.distribution,
        opts.value_size,
        opts.duration_s,
        opts.seed
    );
    let mut value = vec![0u8; opts.value_size];
    StdRng::seed_from_u64(opts.seed).fill_bytes(&mut value);
    let value = Arc::new(value);
    if opts.workload.read_pct() > 0 {
        conns = load(conns, &opts, &value).await?;
    }
    let (tally, elapsed) = measure(conns, &opts, &value).await;
    let report = report(&opts, &description, &tally, elapsed);
    print_table(&report);
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    for n in local.iter_mut() {
        n.kill();
    }
    Ok(())
}

async fn start_local(
    dir: &std::path::Path,
    wan: bool,
    auth: bool,
    tls: bool,
) -> Result<Vec<LocalNode>> {
    let mut cfgs = node_configs(dir, &LOCAL_REGIONS, 1, wan)?;
    if auth {
        crate::local::require_tokens(&mut cfgs, dir)?;
    }
    if tls {
        crate::local::require_tls(&mut cfgs, dir)?;
    }
    let mut nodes: Vec<LocalNode> = cfgs.into_iter().map(LocalNode::new).collect();
    for n in nodes.iter_mut() {
        n.start().await?;
    }
    Ok(nodes)
}

/// Creates the keyspace if needed, waits until every shard has a leader, and returns the gRPC
/// address of each node in `http`.
async fn prepare_meridian(http: &[String], opts: &Options) -> Result<Vec<String>> {
    let first = Client::new(&http[0]);
    let started = Instant::now();
    let cluster = loop {
        let c = first.get_json("/v1/cluster").await;
        if let Ok(c) = c.as_ref() {
            let joined = c["nodes"].as_array().map_or(0, Vec::len);
            if joined >= http.len() && c["meta_leader"].is_u64() {
                break c.clone();
            }
        }
        if started.elapsed() > SETTLE_TIMEOUT {
            bail!(
                "the cluster at {} did not form within {SETTLE_TIMEOUT:?}: {c:?}",
                http[0]
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let nodes = cluster["nodes"].as_array().cloned().unwrap_or_default();
    let grpc: Vec<String> = http
        .iter()
        .map(|h| {
            let h = h
                .trim_start_matches("http://")
                .trim_start_matches("https://");
            nodes
                .iter()
                .find(|n| n["http_addr"] == h)
                .and_then(|n| n["grpc_addr"].as_str().map(str::to_string))
                .with_context(|| format!("{h} is not the HTTP address of a node of this cluster"))
        })
        .collect::<Result<_>>()?;
    let regions: Vec<String> = cluster["regions"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let home = cluster["observed_by"]["region"]
        .as_str()
        .unwrap_or_default();
    let survive = if regions.len() >= 3 { "region" } else { "zone" };
    let policy = json!({"name": opts.keyspace, "replication": "sync", "survive": survive,
                        "home_region": home, "regions": regions, "shards": opts.shards});
    if let Err(e) = first.create_keyspace(&policy).await {
        if !e.to_string().contains("already exists") {
            return Err(e.context("creating the bench keyspace"));
        }
    }
    let started = Instant::now();
    loop {
        let c = first.get_json("/v1/cluster").await?;
        let shards: Vec<&Value> = c["shards"]
            .as_array()
            .map(|s| {
                s.iter()
                    .filter(|s| s["keyspace"] == opts.keyspace.as_str())
                    .collect()
            })
            .unwrap_or_default();
        if !shards.is_empty() && shards.iter().all(|s| s["leader"].is_u64()) {
            return Ok(grpc);
        }
        if started.elapsed() > SETTLE_TIMEOUT {
            bail!(
                "keyspace {:?} has shards without a leader after {SETTLE_TIMEOUT:?}",
                opts.keyspace
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes every key once, spread over the clients, retrying a failed write a few times.
async fn load(conns: Vec<Conn>, opts: &Options, value: &Arc<Vec<u8>>) -> Result<Vec<Conn>> {
    let started = Instant::now();
    let clients = conns.len() as u64;
    let tasks = conns.into_iter().enumerate().map(|(c, mut conn)| {
        let (keys, value) = (opts.keys, value.clone());
        tokio::spawn(async move {
            let mut i = c as u64;
            while i < keys {
                let key = key_name(i);
                let mut attempt = 1;
                while let Err(e) = conn.put(key.as_bytes(), &value).await {
                    if attempt == LOAD_ATTEMPTS_MAX {
                        return Err(anyhow::anyhow!("loading {key} failed {attempt} times: {e}"));
                    }
                    attempt += 1;
                }
                i += clients;
            }
            Ok(conn)
        })
    });
    let mut conns = Vec::new();
    for t in futures::future::join_all(tasks).await {
        conns.push(t??);
    }
    println!(
        "loaded {} keys in {:.1} s",
        opts.keys,
        started.elapsed().as_secs_f64()
    );
    Ok(conns)
}

/// Runs the closed-loop clients for the duration, with a progress line every second.
async fn measure(conns: Vec<Conn>, opts: &Options, value: &Arc<Vec<u8>>) -> (Tally, Duration) {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(opts.duration_s);
    let generator = Arc::new(Generator::new(opts.workload, opts.keys, opts.distribution));
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(c, mut conn)| {
            let (generator, value) = (generator.clone(), value.clone());
            let (done, failed) = (done.clone(), failed.clone());
            let mut rng =
                StdRng::seed_from_u64(opts.seed ^ (c as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            tokio::spawn(async move {
                let mut tally = Tally::new();
                while Instant::now() < deadline {
                    let op = generator.next(&mut rng);
                    let t = Instant::now();
                    let (result, hist) = match op {
                        Operation::Read(k) => {
                            (conn.get(key_name(k).as_bytes()).await, &mut tally.read)
                        }
                        Operation::Update(k) => (
                            conn.put(key_name(k).as_bytes(), &value).await,
                            &mut tally.update,
                        ),
                    };
                    match result {
                        Ok(()) => {
                            let us = (t.elapsed().as_micros() as u64).clamp(1, LATENCY_US_MAX);
                            hist.record(us).expect("clamped into range");
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            tally.errors += 1;
                            tally.last_error = Some(e);
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let progress = tokio::spawn(progress(done.clone(), failed.clone(), started, deadline));
    let mut tally = Tally::new();
    for t in futures::future::join_all(tasks).await {
        tally.merge(t.expect("bench clients do not panic"));
    }
    let elapsed = started.elapsed();
    progress.abort();
    (tally, elapsed)
}

async fn progress(
    done: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    started: Instant,
    deadline: Instant,
) {
    let mut last = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = done.load(Ordering::Relaxed);
        eprintln!(
            "[{:>4.0}s] {:>7} ops/s  {:>9} ops  {} errors",
            started.elapsed().as_secs_f64(),
            now - last,
            now,
            failed.load(Ordering::Relaxed)
        );
        last = now;
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    json!((h.value_at_quantile(q) as f64 / 10.0).round() / 100.0)
}

fn op_summary(h: &Histogram<u64>, elapsed: Duration) -> Value {
    json!({
        "count": h.len(),
        "throughput_ops_s": (h.len() as f64 / elapsed.as_secs_f64()).round(),
        "p50_ms": ms(h, 0.5), "p90_ms": ms(h, 0.9), "p99_ms": ms(h, 0.99), "p999_ms": ms(h, 0.999),
        "max_ms": if h.is_empty() { Value::Null } else { json!(h.max() as f64 / 1000.0) },
    })
}

fn report(opts: &Options, description: &str, tally: &Tally, elapsed: Duration) -> Value {
    let mut all = tally.read.clone();
    all.add(&tally.update).expect("same bounds");
    let summary = op_summary(&all, elapsed);
    json!({
        "target": opts.target.name(),
        "protocol": opts.protocol.name(),
        // Whether requests carried a token (the local nodes required one with --auth).
        "auth": opts.auth || crate::client::token().is_some(),
        // Whether the clients spoke TLS to the nodes (the local nodes used it with --tls).
        "tls": crate::client::tls().ca_pem.is_some(),
        "cluster": description,
        "workload": opts.workload.name(),
        "read_pct": opts.workload.read_pct(),
        "clients": opts.clients,
        "keys": opts.keys,
        "distribution": format!("{:?}", opts.distribution).to_lowercase(),
        "value_size": opts.value_size,
        "duration_s": (elapsed.as_secs_f64() * 100.0).round() / 100.0,
        "seed": opts.seed,
        "throughput_ops_s": summary["throughput_ops_s"],
        "p50_ms": summary["p50_ms"],
        "p90_ms": summary["p90_ms"],
        "p99_ms": summary["p99_ms"],
        "p999_ms": summary["p999_ms"],
        "max_ms": summary["max_ms"],
        "errors": tally.errors,
        "last_error": tally.last_error,
        "read": op_summary(&tally.read, elapsed),
        "update": op_summary(&tally.update, elapsed),
    })
}

fn print_table(r: &Value) {
    let cell = |v: &Value| match v {
        Value::Null => "-".to_string(),
        v => v.to_string(),
    };
    println!(
        "\n{:<8} {:>9} {:>10} {:>8} {:>8} {:>8} {:>9} {:>8}",
        "op", "count", "ops/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for (name, s) in [("read", &r["read"]), ("update", &r["update"])] {
        if s["count"] == 0 {
            continue;
        }
        println!(
            "{:<8} {:>9} {:>10} {:>8} {:>8} {:>8} {:>9} {:>8}",
            name,
            cell(&s["count"]),
            cell(&s["throughput_ops_s"]),
            cell(&s["p50_ms"]),
            cell(&s["p90_ms"]),
            cell(&s["p99_ms"]),
            cell(&s["p999_ms"]),
            cell(&s["max_ms"])
        );
    }
    println!(
        "{:<8} {:>9} {:>10} {:>8} {:>8} {:>8} {:>9} {:>8}",
        "all",
        cell(
            &(r["read"]["count"].as_u64().unwrap_or(0)
                + r["update"]["count"].as_u64().unwrap_or(0))
            .into()
        ),
        cell(&r["throughput_ops_s"]),
        cell(&r["p50_ms"]),
        cell(&r["p90_ms"]),
        cell(&r["p99_ms"]),
        cell(&r["p999_ms"]),
        cell(&r["max_ms"])
    );
    println!("errors: {}", r["errors"]);
    if let Some(e) = r["last_error"].as_str() {
        println!("last error: {e}");
    }
}
