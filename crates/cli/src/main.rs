//! `meridian`: run a node, run the demo, and talk to a running cluster.

mod bench;
mod client;
mod demo;
mod demo_async;
mod demo_zone;
mod local;
mod output;
mod sim;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use crate::client::Client;

/// The version and the commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MERIDIAN_GIT_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "meridian",
    version = VERSION,
    about = "Multi-region replicated key-value data service"
)]
struct Cli {
    /// The token sent to nodes (`Authorization: Bearer`); `MERIDIAN_TOKEN` otherwise.
    #[arg(long, global = true, hide_env_values = true)]
    token: Option<String>,
    /// The cluster CA (PEM) to verify nodes with: requests use https. `MERIDIAN_CA` otherwise.
    #[arg(long, global = true, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// A client certificate (PEM) to present; with --client-key. `MERIDIAN_CERT` otherwise.
    #[arg(
        long = "client-cert",
        id = "client_cert",
        global = true,
        value_name = "FILE"
    )]
    cert: Option<PathBuf>,
    /// The client certificate's key (PEM). `MERIDIAN_KEY` otherwise.
    #[arg(
        long = "client-key",
        id = "client_key",
        global = true,
        value_name = "FILE"
    )]
    key: Option<PathBuf>,
    /// How answers are printed: table (aligned columns and key: value lines), json or yaml.
    #[arg(
        long,
        short = 'o',
        global = true,
        value_enum,
        env = "MERIDIAN_OUTPUT",
        default_value = "table"
    )]
    output: output::Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node from a config file and/or MERIDIAN_* environment variables
    /// (`MERIDIAN_NODE_ID=3`, `MERIDIAN_WAN__ENABLED=true`; see ARCHITECTURE.md).
    Server {
        #[arg(long, env = "MERIDIAN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Start a 3-region, 9-node cluster in this process, lose the home region, recover, report.
    Demo {
        /// Seconds of client load (the whole demo takes about this plus 20 s).
        #[arg(long, default_value_t = 60)]
        duration: u64,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// sync: a sync keyspace through the loss of its home region; async: an async
        /// keyspace through a cut between regions; zone-promotion: a survive = "zone" keyspace
        /// promoted out of its lost home region, the old home returning fenced, and a
        /// switchover back.
        #[arg(long, default_value = "sync")]
        scenario: String,
        /// Run without tokens (by default the demo's nodes require them, and it prints an
        /// admin token and a console link that carries it).
        #[arg(long)]
        insecure: bool,
    },
    /// Drive a cluster (Meridian or etcd) with a YCSB-style workload; report throughput and
    /// latency percentiles. Without --endpoints, starts a 3-node Meridian cluster in-process.
    Bench {
        /// meridian or etcd.
        #[arg(long, default_value = "meridian")]
        target: bench::target::Target,
        /// grpc (one HTTP/2 connection per client) or http (the JSON/HTTP API: Meridian's
        /// /v1/kv, etcd's /v3 gateway; one HTTP/1.1 keep-alive connection per client).
        #[arg(long, default_value = "grpc")]
        protocol: bench::target::Protocol,
        /// Nodes to drive, comma-separated: HTTP addresses of Meridian nodes, or client
        /// addresses of etcd members.
        #[arg(long, value_delimiter = ',')]
        endpoints: Vec<String>,
        /// Without --endpoints: delay links between the 3 local nodes' regions as the WAN
        /// model does (default: no delay).
        #[arg(long)]
        wan: bool,
        /// Without --endpoints: the local nodes require tokens (`[auth] enabled`) and the
        /// clients send a root token, to measure what authentication costs. With --endpoints,
        /// pass the token with --token or MERIDIAN_TOKEN instead.
        #[arg(long)]
        auth: bool,
        /// Without --endpoints: every listener of the local nodes uses TLS (mutual between
        /// nodes) with a fresh CA, to measure what TLS costs. With --endpoints, give the CA
        /// with --ca or MERIDIAN_CA instead.
        #[arg(long)]
        tls: bool,
        /// a (50/50 read/update), b (95/5), c (read-only) or write (update-only).
        #[arg(long, default_value = "a")]
        workload: bench::workload::Workload,
        /// Concurrent clients, each with one request outstanding.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Distinct keys.
        #[arg(long, default_value_t = 1000)]
        keys: u64,
        /// Bytes per value.
        #[arg(long, default_value_t = 256)]
        value_size: usize,
        /// Seconds of measured load (after loading the keys).
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// zipfian (YCSB's skew) or uniform.
        #[arg(long, default_value = "zipfian")]
        distribution: bench::workload::Distribution,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Meridian keyspace to use (created if absent).
        #[arg(long, default_value = "bench")]
        keyspace: String,
        /// Shards of the keyspace when it is created.
        #[arg(long, default_value_t = 4)]
        shards: u16,
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Run the deterministic simulator: the real node code under simulated WAN latency and
    /// faults, from a seed, with linearizability, durability and consensus checkers.
    Sim {
        /// Replay one seed, printing its faults and any violation.
        #[arg(long, conflicts_with_all = ["seeds", "first"])]
        seed: Option<u64>,
        /// Run this many consecutive seeds and print a summary.
        #[arg(long, default_value_t = 1)]
        seeds: u64,
        /// The first of --seeds (default: random).
        #[arg(long)]
        first: Option<u64>,
        /// Operations per seed, spread over four client processes in each region.
        #[arg(long, default_value_t = 400)]
        ops: usize,
        /// Seconds of simulated time with faults (the safety phase).
        #[arg(long, default_value_t = 25)]
        safety_s: u64,
        /// Which keyspaces the clients use: sync, async (an async keyspace in two or three
        /// regions, drawn from the seed), or mixed (both, half the clients each).
        #[arg(long, default_value = "mixed")]
        workload: meridian_sim::Workload,
        /// Inject a shipping bug: the async keyspace's second region drops some shipped
        /// writes, which anti-entropy must find and repair (the convergence checkers judge).
        #[arg(long)]
        inject_shipping_loss: bool,
        /// Instead of random faults, lose the sync keyspace's whole home region halfway
        /// through and report each shard's recovery time (RTO) per seed, and p50/p99 over all.
        #[arg(long)]
        region_loss: bool,
        /// Instead of random faults, cut the home region off and back every 1 to 10 s for the
        /// whole safety phase (e.g. --safety-s 600); prints the failovers executed.
        #[arg(long, conflicts_with = "region_loss")]
        flapping: bool,
        /// Instead of random faults, gray failure: the home region's disks stall 700 ms per
        /// commit from a quarter of the safety phase on, heartbeats fine; it must lose its
        /// leaders within the degraded time (the gray-failover checker).
        #[arg(long, conflicts_with_all = ["region_loss", "flapping"])]
        gray: bool,
        /// Instead of random faults, cut the metadata group's leader off with a minority of its
        /// voters, again and again: that side must decide nothing (the meta-minority checker).
        #[arg(long, conflicts_with_all = ["region_loss", "flapping", "gray"])]
        meta_minority: bool,
        /// Instead of random faults, the sync keyspace is survive = "zone" (promotion = "auto")
        /// and its home region is lost for the last two thirds of the safety phase: it must be
        /// promoted, acknowledge no write at a stale epoch, and report every acknowledged write
        /// it lost in its lost tail once the old home returns.
        #[arg(long, conflicts_with_all = ["region_loss", "flapping", "gray", "meta_minority"])]
        promotion: bool,
        /// The sync keyspace's third region holds only witness voters (no async keyspace);
        /// with the random nemesis: witnesses must never lead and never hold data.
        #[arg(long, conflicts_with = "promotion")]
        witness: bool,
        /// Nodes start region by region, 1.5 s apart: the metadata group's voters must still
        /// never give one region a majority.
        #[arg(long)]
        staggered_join: bool,
    },
    /// Create, list and describe keyspaces.
    Keyspace {
        /// A node's HTTP address.
        #[arg(
            long,
            env = "MERIDIAN_NODE",
            default_value = "127.0.0.1:8101",
            global = true
        )]
        node: String,
        #[command(subcommand)]
        command: KeyspaceCommand,
    },
    /// Put, get, delete and scan keys.
    Kv {
        /// A node's HTTP address.
        #[arg(
            long,
            env = "MERIDIAN_NODE",
            default_value = "127.0.0.1:8101",
            global = true
        )]
        node: String,
        /// Keep a session across calls in FILE: its token is sent with the request and the
        /// response's token is written back, giving read-your-writes and monotonic reads
        /// from any region.
        #[arg(long, global = true)]
        session: Option<PathBuf>,
        #[command(subcommand)]
        command: KvCommand,
    },
    /// Operator controls on one node: fault injection (its transport, its disk) and the
    /// failover pause.
    Admin {
        #[arg(
            long,
            env = "MERIDIAN_NODE",
            default_value = "127.0.0.1:8101",
            global = true
        )]
        node: String,
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Show the conflict ledger of an async keyspace as this node's region recorded it.
    Conflicts {
        keyspace: String,
        /// Only conflicts on this key.
        #[arg(long)]
        key: Option<String>,
        /// Only conflicts detected at or after this time (milliseconds since the Unix epoch).
        #[arg(long)]
        since: Option<u64>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print the JSON the node returned.
        #[arg(long)]
        json: bool,
        #[arg(long, env = "MERIDIAN_NODE", default_value = "127.0.0.1:8101")]
        node: String,
    },
    /// Failover control: region health, the cluster-wide pause, pending decisions and the
    /// hash-chained decision log.
    Failover {
        #[arg(
            long,
            env = "MERIDIAN_NODE",
            default_value = "127.0.0.1:8101",
            global = true
        )]
        node: String,
        /// Who is asking, recorded in the decision log.
        #[arg(long, env = "USER", default_value = "operator", global = true)]
        by: String,
        /// Why, recorded in the decision log.
        #[arg(long, default_value = "", global = true)]
        reason: String,
        #[command(subcommand)]
        command: FailoverCommand,
    },
    /// Tokens and roles: `root-token` prints a new root token for nodes' `[auth]` config;
    /// `token create|list|revoke` manage the cluster's tokens (cluster-admin).
    Auth {
        #[arg(
            long,
            env = "MERIDIAN_NODE",
            default_value = "127.0.0.1:8101",
            global = true
        )]
        node: String,
        #[command(subcommand)]
        command: AuthCommand,
    },
    /// The hash-chained audit log of administrative actions, allowed or denied.
    Audit {
        #[arg(
            long,
            env = "MERIDIAN_NODE",
            default_value = "127.0.0.1:8101",
            global = true
        )]
        node: String,
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Certificates for TLS: a development CA, node certificates (mutual TLS between nodes,
    /// HTTPS and gRPC for clients) and client certificates that carry grants. Production
    /// certificates from your own CA need the same names (see ARCHITECTURE.md).
    Certs {
        /// Where the files go (`ca.pem`, `ca.key`, `node-<id>.pem`, ...); node and client
        /// certificates are signed by the CA found here.
        #[arg(long, global = true, default_value = "certs")]
        dir: PathBuf,
        /// How long the certificates are valid.
        #[arg(long, global = true, default_value_t = 365)]
        days: u32,
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Print a shell completion script: `meridian completions bash > /etc/bash_completion.d/meridian`,
    /// `meridian completions zsh > "${fpath[1]}/_meridian"`, `meridian completions fish >
    /// ~/.config/fish/completions/meridian.fish`.
    Completions { shell: clap_complete::Shell },
    /// Show the cluster: nodes, health, and shard leaders.
    Cluster {
        #[arg(long, env = "MERIDIAN_NODE", default_value = "127.0.0.1:8101")]
        node: String,
    },
}

#[derive(Subcommand)]
enum FailoverCommand {
    /// Health per region, the pause, evacuated regions and pending decisions.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Pause automatic placement decisions cluster-wide: they wait as pending until approved.
    /// (Raft still elects a leader when one dies.)
    Pause,
    /// Resume automatic placement decisions.
    Resume,
    /// Execute pending decision ID.
    Approve { id: u64 },
    /// Drop pending decision ID (not proposed again for a hold-down).
    Reject { id: u64 },
    /// Move a sync keyspace's home region with RPO 0: leaders (and, for survive = "zone",
    /// voters) move to REGION; prints each shard's write pause.
    Switchover {
        keyspace: String,
        /// The new home region (one of the keyspace's regions).
        #[arg(long)]
        to: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the decision log.
    Log {
        /// Check the hash chain and name the first entry edited, removed or reordered.
        #[arg(long)]
        verify: bool,
        /// Read an exported copy (the JSON `log --json` prints) instead of asking the cluster.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Print the log as JSON (an export `--file` can verify later).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KeyspaceCommand {
    /// Create a keyspace.
    Create {
        name: String,
        /// Regions where the data may live, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        regions: Vec<String>,
        /// Sync keyspaces: the region that keeps the leaders (async keyspaces have none).
        #[arg(long)]
        home_region: Option<String>,
        /// "region" (voters in 3 regions) or "zone" (voters in the home region).
        #[arg(long, default_value = "region")]
        survive: String,
        #[arg(long, default_value = "sync")]
        replication: String,
        #[arg(long, default_value_t = 4)]
        shards: u16,
        /// Default read consistency: linearizable, bounded:<ms>, session or eventual
        /// (default: linearizable for sync, session for async).
        #[arg(long)]
        read: Option<String>,
        /// The key type and how concurrent writes merge: lww (default), counter, set, or mv
        /// (async only).
        #[arg(long)]
        conflict: Option<String>,
        /// Async keyspaces: the replication lag budget in ms.
        #[arg(long)]
        lag_budget_ms: Option<i64>,
        /// Async keyspaces: alert, throttle or reject when a region is over the lag budget.
        #[arg(long)]
        on_lag_budget: Option<String>,
    },
    List,
    Describe {
        name: String,
    },
}

#[derive(Subcommand)]
enum AuthCommand {
    /// Print a new random root token (put it in the file `[auth] root_token_file` names, or
    /// in MERIDIAN_ROOT_TOKEN, on every node).
    RootToken,
    /// Who the node takes this client's token for, and its grants.
    Whoami,
    /// Create, list and revoke tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create the cluster CA (`ca.pem`, `ca.key`); refuses to replace an existing one.
    Ca,
    /// A node certificate naming `node-<id>.<region>.meridian` (plus localhost, the loopback
    /// addresses and every --host), for server and client use: `node-<id>.pem`, `.key`.
    Node {
        #[arg(long)]
        node_id: u64,
        #[arg(long)]
        region: String,
        /// Another DNS name or IP address clients reach the node by (repeatable).
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// A client certificate for principal `cert:<name>` with its grants (`reader`,
    /// `writer:orders*`, `cluster-admin`, ...; repeatable): `client-<name>.pem`, `.key`.
    Client {
        #[arg(long)]
        name: String,
        #[arg(long = "grant")]
        grants: Vec<String>,
        /// File name stem instead of `client-<name>`.
        #[arg(long)]
        out: Option<String>,
    },
    /// Everything a cluster needs in one step (what a container entrypoint without a shell
    /// can run): the CA unless DIR has one, a certificate per --node not yet in DIR
    /// (`node-<id>.pem`), a client certificate per --client, and with --root-token and --kek
    /// a root token (`root.token`) and a key-encryption key (`kek`) unless present.
    Bundle {
        /// `ID:REGION[:HOST,...]`: a node and the names clients reach it by (repeatable).
        #[arg(long = "node")]
        nodes: Vec<String>,
        /// `NAME:GRANT[,GRANT...]`: a client certificate `client-<NAME>.pem` (repeatable).
        #[arg(long = "client")]
        clients: Vec<String>,
        #[arg(long)]
        root_token: bool,
        #[arg(long)]
        kek: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token; prints it (the only time it is shown) on the last line.
    Create {
        /// The principal's name (`token:<name>` in the audit log).
        #[arg(long)]
        name: String,
        /// A role, optionally on a keyspace name pattern: `reader`, `writer:orders*`,
        /// `admin:team-a.*`, `cluster-admin` (repeatable).
        #[arg(long = "grant", required = true)]
        grants: Vec<String>,
    },
    /// Every token: id, name, grants, who created it, whether it is revoked.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id: it stops working at once.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Print the audit log (`--json`: as JSON, the form `--verify --file` checks).
    Log {
        #[arg(long)]
        json: bool,
        /// Check the hash chain and name the first entry edited, removed or reordered (exits
        /// 1 if there is one).
        #[arg(long)]
        verify: bool,
        /// Read the log from this file (the output of `meridian audit log --json`) instead
        /// of a node.
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Replace this node's injected faults (no flags: heal everything).
    Faults {
        /// Drop frames this node sends from region A to region B: `A:B` (repeatable).
        #[arg(long = "cut")]
        cut: Vec<String>,
        /// Drop every frame to or from this node id (repeatable).
        #[arg(long = "isolate")]
        isolate: Vec<u64>,
    },
    /// The cluster-wide failover pause (as `meridian failover pause|resume`).
    Failback {
        #[arg(long)]
        paused: bool,
    },
    /// Stall this node's disk: every durable commit takes DELAY_MS longer (0 ends it), a gray
    /// failure drill.
    Disk {
        #[arg(long)]
        delay_ms: u64,
    },
    /// Encryption at rest: every node of the cluster starts sealing with a new data key at
    /// once and re-encrypts older values in the background, then retires the old key.
    RotateKey,
    /// Encryption at rest on every node: active key, keys not yet retired, progress.
    Encryption,
    /// Print a new random key-encryption key (64 hex digits) for `[encryption] kek_file` or
    /// MERIDIAN_KEK. Keep it outside every data directory.
    NewKek,
}

#[derive(Subcommand)]
enum KvCommand {
    Put {
        keyspace: String,
        key: String,
        value: String,
        /// For a multi-value register: the context a get returned (replaces exactly the
        /// siblings it saw).
        #[arg(long)]
        context: Option<String>,
    },
    /// Add to a counter (a negative amount decrements).
    Incr {
        keyspace: String,
        key: String,
        #[arg(allow_negative_numbers = true)]
        by: i64,
    },
    /// Add and remove members of a set.
    Set {
        keyspace: String,
        key: String,
        #[arg(long = "add")]
        add: Vec<String>,
        #[arg(long = "remove")]
        remove: Vec<String>,
    },
    Get {
        keyspace: String,
        key: String,
        /// linearizable, bounded:<ms> or eventual; default: the keyspace's.
        #[arg(long)]
        consistency: Option<String>,
    },
    Delete {
        keyspace: String,
        key: String,
    },
    Scan {
        keyspace: String,
        #[arg(long, default_value = "")]
        prefix: String,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        consistency: Option<String>,
    },
    /// Compare-and-swap: set VALUE only if the key holds EXPECTED (omit --expected for "absent").
    Cas {
        keyspace: String,
        key: String,
        value: String,
        #[arg(long)]
        expected: Option<String>,
    },
}

/// One line per conflict: when, key, rule, the two sides (origin, value) and the outcome.
fn print_conflicts(c: &serde_json::Value) {
    let entries = c["conflicts"].as_array().cloned().unwrap_or_default();
    println!(
        "{} conflict(s) recorded in {} for keyspace {} ({} dropped by retention)",
        entries.len(),
        c["region"].as_str().unwrap_or("?"),
        c["keyspace"].as_str().unwrap_or("?"),
        c["dropped"]
    );
    let side = |s: &serde_json::Value| {
        let value = if s["deleted"].as_bool() == Some(true) {
            "(delete)".to_string()
        } else if let Some(v) = s["value"].as_str() {
            format!("{v:?}")
        } else {
            format!(
                "({} bytes, hash {})",
                s["size"],
                s["hash"].as_str().unwrap_or("?")
            )
        };
        format!("{} {value}", s["origin"].as_str().unwrap_or("?"))
    };
    for e in entries {
        println!(
            "{} {} key {} {}: {} vs {} -> {}",
            e["detected_at_ms"],
            e["id"].as_str().unwrap_or("?"),
            e["key"],
            e["rule"].as_str().unwrap_or("?"),
            side(&e["a"]),
            side(&e["b"]),
            e["outcome"].as_str().unwrap_or("?")
        );
    }
}

async fn auth_cmd(c: Client, command: AuthCommand) -> Result<()> {
    match command {
        AuthCommand::RootToken => {
            println!("{}", local::new_root_token());
        }
        AuthCommand::Whoami => {
            let w = c.get_json("/v1/auth/whoami").await?;
            output::emit(&w, None);
        }
        AuthCommand::Token { command } => match command {
            TokenCommand::Create { name, grants } => {
                let r = c
                    .post_json(
                        "/v1/auth/tokens",
                        &serde_json::json!({"name": name, "grants": grants}),
                    )
                    .await?;
                eprintln!(
                    "created token {} for {} ({}); it is shown only now:",
                    r["id"].as_str().unwrap_or("?"),
                    r["name"].as_str().unwrap_or("?"),
                    grants.join(", ")
                );
                println!("{}", r["token"].as_str().unwrap_or_default());
            }
            TokenCommand::List { json } => {
                let r = c.get_json("/v1/auth/tokens").await?;
                if output::structured(json) {
                    output::emit_as(&r, json);
                    return Ok(());
                }
                println!(
                    "{:<14} {:<20} {:<10} {:<20} grants",
                    "id", "name", "state", "created by"
                );
                for t in r["tokens"].as_array().into_iter().flatten() {
                    let grants: Vec<String> = t["grants"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|g| {
                            format!(
                                "{} on {}",
                                g["role"].as_str().unwrap_or("?"),
                                g["keyspaces"].as_str().unwrap_or("?")
                            )
                        })
                        .collect();
                    println!(
                        "{:<14} {:<20} {:<10} {:<20} {}",
                        t["id"].as_str().unwrap_or("?"),
                        t["name"].as_str().unwrap_or("?"),
                        if t["revoked_ms"].is_null() {
                            "active"
                        } else {
                            "revoked"
                        },
                        t["created_by"].as_str().unwrap_or("?"),
                        grants.join(", ")
                    );
                }
            }
            TokenCommand::Revoke { id } => {
                let r = c
                    .delete_json(&format!("/v1/auth/tokens/{}", client::enc(&id)))
                    .await?;
                println!(
                    "revoked token {} ({})",
                    r["id"].as_str().unwrap_or("?"),
                    r["name"].as_str().unwrap_or("?")
                );
            }
        },
    }
    Ok(())
}

async fn audit_cmd(c: Client, command: AuditCommand) -> Result<()> {
    let AuditCommand::Log { json, verify, file } = command;
    let entries: Vec<meridian_control::audit::Entry> = match &file {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading the audit log copy {}", f.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not JSON (write it with `meridian audit log --json`)",
                    f.display()
                )
            })?;
            serde_json::from_value(v.get("entries").cloned().unwrap_or(v))
                .with_context(|| format!("{} does not hold audit log entries", f.display()))?
        }
        None => serde_json::from_value(c.get_json("/v1/audit/log").await?["entries"].clone())
            .context("the node's audit log does not decode")?,
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"entries": entries}))?
        );
    } else if !verify {
        for e in &entries {
            println!(
                "{:>6} {} {:<8} {:<22} {:<24} {:<20} {}",
                e.seq, e.at_ms, e.outcome, e.principal, e.action, e.target, e.detail
            );
        }
    }
    if verify {
        match meridian_control::audit::verify(&entries) {
            Ok(n) => eprintln!("audit log verified: {n} entries, one unbroken chain"),
            Err(problem) => {
                eprintln!("audit log verification FAILED: {problem}");
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

fn print_served(s: &client::Served) {
    let staleness = s
        .staleness_ms
        .map(|ms| format!(", staleness {ms} ms"))
        .unwrap_or_default();
    let version = s
        .version
        .as_ref()
        .map(|v| format!(", version {v}"))
        .unwrap_or_default();
    eprintln!(
        "(served by node {} in {}{staleness}{version})",
        s.node, s.region
    );
}

/// Log timestamps: wall-clock time, or inside a simulation its simulated time (the simulator
/// runs many times faster than the clock, so wall times of its lines say nothing).
struct LogTime;

impl tracing_subscriber::fmt::time::FormatTime for LogTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        match meridian_sim::sim_elapsed() {
            Some(t) => write!(w, "sim+{:>9.3}s", t.as_secs_f64()),
            None => tracing_subscriber::fmt::time::SystemTime.format_time(w),
        }
    }
}

/// Runs the command; an error is one line on stderr (with a hint where one helps) and exit
/// status 1. `MERIDIAN_BACKTRACE=1` adds the error's chain and backtrace.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let line = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {line}");
            if let Some(h) = hint(&line) {
                eprintln!("hint: {h}");
            }
            if std::env::var("MERIDIAN_BACKTRACE").is_ok_and(|v| v == "1") {
                eprintln!("{e:?}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// A next step for the errors users meet first.
fn hint(error: &str) -> Option<&'static str> {
    let e = error.to_ascii_lowercase();
    if e.contains("unknownissuer")
        || e.contains("invalid peer certificate")
        || e.contains("certificate") && e.contains("verify")
    {
        Some("the node's certificate is not from a CA this client trusts: give the cluster CA with --ca FILE or MERIDIAN_CA")
    } else if e.contains("cannot reach the node") {
        Some("is a node running there? point --node (or MERIDIAN_NODE) at a node's HTTP address; if the cluster uses TLS, add --ca FILE (or MERIDIAN_CA)")
    } else if e.contains("401") {
        Some("send a token with --token or MERIDIAN_TOKEN (`meridian auth token create`), or a client certificate with --client-cert/--client-key")
    } else {
        None
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    output::set(cli.output);
    if let Some(t) = cli.token.clone() {
        client::set_token(t);
    }
    client::configure_tls(cli.ca.clone(), cli.cert.clone(), cli.key.clone())?;
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| match cli.command {
        Command::Server { .. } => "info,openraft=warn".into(),
        // The simulator reports what matters itself; its nodes' warnings (thousands of
        // failover decisions and skew alarms under the nemesis) would bury it.
        Command::Sim { .. } => "error".into(),
        _ => "warn,openraft=error".into(),
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_timer(LogTime)
        .init();
    match cli.command {
        Command::Server { config } => run_server(config),
        Command::Demo {
            duration,
            report,
            scenario,
            insecure,
        } => demo::run(duration, report, &scenario, insecure),
        Command::Sim {
            seed,
            seeds,
            first,
            ops,
            safety_s,
            workload,
            inject_shipping_loss,
            region_loss,
            flapping,
            gray,
            meta_minority,
            promotion,
            witness,
            staggered_join,
        } => sim::run_cli(sim::Args {
            seed,
            seeds,
            first,
            ops,
            safety_s,
            workload,
            inject_shipping_loss,
            region_loss,
            flapping,
            gray,
            meta_minority,
            promotion,
            witness,
            staggered_join,
        }),
        Command::Bench {
            target,
            protocol,
            endpoints,
            wan,
            auth,
            tls,
            workload,
            clients,
            keys,
            value_size,
            duration,
            distribution,
            seed,
            keyspace,
            shards,
            json,
        } => bench::run(bench::Options {
            target,
            protocol,
            endpoints,
            wan,
            auth,
            tls,
            workload,
            distribution,
            clients,
            keys,
            value_size,
            duration_s: duration,
            seed,
            keyspace,
            shards,
            json,
        }),
        Command::Keyspace { node, command } => {
            runtime()?.block_on(keyspace(Client::new(&node), command))
        }
        Command::Kv {
            node,
            session,
            command,
        } => runtime()?.block_on(kv_with_session(Client::new(&node), session, command)),
        Command::Admin { node, command } => runtime()?.block_on(admin(Client::new(&node), command)),
        Command::Conflicts {
            keyspace,
            key,
            since,
            limit,
            json,
            node,
        } => runtime()?.block_on(async {
            let mut path = format!("/v1/conflicts/{}?limit={limit}", client::enc(&keyspace));
            if let Some(k) = key {
                path.push_str(&format!("&key={}", client::enc(&k)));
            }
            if let Some(s) = since {
                path.push_str(&format!("&since={s}"));
            }
            let c = Client::new(&node).get_json(&path).await?;
            if output::structured(json) {
                output::emit_as(&c, json);
            } else {
                print_conflicts(&c);
            }
            Ok(())
        }),
        Command::Failover {
            node,
            by,
            reason,
            command,
        } => runtime()?.block_on(failover(Client::new(&node), &by, &reason, command)),
        Command::Auth { node, command } => {
            runtime()?.block_on(auth_cmd(Client::new(&node), command))
        }
        Command::Audit { node, command } => {
            runtime()?.block_on(audit_cmd(Client::new(&node), command))
        }
        Command::Certs { dir, days, command } => certs_cmd(&dir, days, command),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "meridian", &mut script);
            use std::io::Write;
            match std::io::stdout().write_all(&script) {
                // Piped into `head` and the like: not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                r => r.context("writing the completion script"),
            }
        }
        Command::Cluster { node } => runtime()?.block_on(async {
            let c = Client::new(&node).get_json("/v1/cluster").await?;
            output::emit(&c, Some(&output::cluster_table));
            Ok(())
        }),
    }
}

async fn failover(c: Client, by: &str, reason: &str, command: FailoverCommand) -> Result<()> {
    let body = json!({"by": by, "reason": reason});
    let act = |path: String| {
        let (c, body) = (c.clone(), body.clone());
        async move {
            let e = c.post_json(&path, &body).await?;
            println!(
                "decision {} committed: {} by {} ({})",
                e["seq"],
                e["action"],
                e["by"],
                e["hash"].as_str().unwrap_or("")
            );
            anyhow::Ok(())
        }
    };
    match command {
        FailoverCommand::Status { json } => {
            let s = c.get_json("/v1/failover").await?;
            if output::structured(json) {
                output::emit_as(&s, json);
                return Ok(());
            }
            println!(
                "failover: {} (as judged by node {})",
                if s["paused"] == json!(true) {
                    "PAUSED"
                } else {
                    "automatic"
                },
                s["observed_by"]["node"]
            );
            if let Some(h) = s["health"].as_object() {
                for (region, v) in h {
                    println!(
                        "  {region:<16} {:<9} write p99 {} ms (normal {}), fsync p99 {} ms, unheard by {}",
                        v["health"].as_str().unwrap_or("?"),
                        fmt_ms(&v["write_p99_ms"]),
                        fmt_ms(&v["normal_write_ms"]),
                        fmt_ms(&v["fsync_p99_ms"]),
                        v["unheard_by"]
                    );
                }
            }
            if let Some(ev) = s["evacuated"].as_object() {
                for (region, e) in ev {
                    println!(
                        "  leaders evacuated from {region} by decision {} (hold-down {} ms)",
                        e["decision"], e["holddown_ms"]
                    );
                }
            }
            for p in s["pending"].as_array().into_iter().flatten() {
                println!(
                    "  pending {}: {} (approve with `meridian failover approve {}`)",
                    p["id"], p["decision"], p["id"]
                );
            }
            Ok(())
        }
        FailoverCommand::Pause => act("/v1/failover/pause".into()).await,
        FailoverCommand::Resume => act("/v1/failover/resume".into()).await,
        FailoverCommand::Approve { id } => act(format!("/v1/failover/approve/{id}")).await,
        FailoverCommand::Reject { id } => act(format!("/v1/failover/reject/{id}")).await,
        FailoverCommand::Switchover { keyspace, to, json } => {
            let body = json!({"to": to, "by": by, "reason": reason});
            let path = format!("/v1/failover/switchover/{}", crate::client::enc(&keyspace));
            let r = c
                .post_json_waiting(&path, &body, std::time::Duration::from_secs(120))
                .await?;
            if output::structured(json) {
                output::emit_as(&r, json);
                return Ok(());
            }
            match r["decision"].as_u64() {
                Some(d) => println!(
                    "switchover of {keyspace} from {} to {} (decision {d}) done in {} ms",
                    r["from"].as_str().unwrap_or("?"),
                    r["to"].as_str().unwrap_or("?"),
                    r["took_ms"]
                ),
                None => println!(
                    "{keyspace} was already homed in {}; its shards are in place ({} ms)",
                    r["to"].as_str().unwrap_or("?"),
                    r["took_ms"]
                ),
            }
            for s in r["shards"].as_array().into_iter().flatten() {
                println!(
                    "  shard {}: leader {}, write pause {} ms, voters {}",
                    s["shard"], s["leader"], s["pause_ms"], s["voters"]
                );
            }
            println!("longest write pause: {} ms", r["pause_ms_max"]);
            Ok(())
        }
        FailoverCommand::Log { verify, file, json } => {
            let log = match &file {
                Some(f) => {
                    let text =
                        std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
                    serde_json::from_slice::<Value>(&text)
                        .with_context(|| format!("{} is not a failover log export", f.display()))?
                }
                None => c.get_json("/v1/failover/log").await?,
            };
            let entries: Vec<meridian_control::failover::Entry> =
                serde_json::from_value(log["entries"].clone()).context(
                    "the log's entries do not parse (an export of `meridian failover log --json`)",
                )?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"entries": entries}))?
                );
            } else {
                for e in &entries {
                    println!(
                        "{:>4} {} {:<9} by {:<24} {}",
                        e.seq,
                        e.at_ms,
                        e.action.name(),
                        e.by,
                        e.reason
                    );
                }
            }
            if verify {
                match meridian_control::failover::verify(&entries) {
                    Ok(n) => eprintln!("verified: {n} entries, the chain is intact"),
                    Err(problem) => anyhow::bail!("the decision log does not verify: {problem}"),
                }
            }
            Ok(())
        }
    }
}

fn fmt_ms(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |x| format!("{x:.1}"))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run_server(config: Option<PathBuf>) -> Result<()> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let cfg = meridian_server::NodeConfig::load_with_env(config.as_deref(), &env)
        .map_err(anyhow::Error::msg)?;
    runtime()?.block_on(async move {
        let clock = Arc::new(meridian_server::clock::SystemClock);
        let _node = meridian_server::start(cfg, clock).await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        Ok(())
    })
}

async fn keyspace(client: Client, command: KeyspaceCommand) -> Result<()> {
    match command {
        KeyspaceCommand::Create {
            name,
            regions,
            home_region,
            survive,
            replication,
            shards,
            read,
            conflict,
            lag_budget_ms,
            on_lag_budget,
        } => {
            let mut policy = json!({"name": name, "regions": regions, "replication": replication, "shards": shards});
            let optional = [
                ("home_region", home_region.map(Value::from)),
                ("read", read.map(Value::from)),
                ("conflict", conflict.map(Value::from)),
                ("lag_budget_ms", lag_budget_ms.map(Value::from)),
                ("on_lag_budget", on_lag_budget.map(Value::from)),
            ];
            for (field, value) in optional {
                if let Some(v) = value {
                    policy[field] = v;
                }
            }
            if replication == "sync" {
                policy["survive"] = json!(survive);
            }
            let r = client
                .create_keyspace(&policy)
                .await
                .context("create keyspace")?;
            output::emit(&r, None);
        }
        KeyspaceCommand::List => {
            let r = client.get_json("/v1/keyspaces").await?;
            output::emit(&r, Some(&output::keyspace_table));
        }
        KeyspaceCommand::Describe { name } => {
            let r = client
                .get_json(&format!("/v1/keyspaces/{}", client::enc(&name)))
                .await?;
            output::emit(&r, None);
        }
    }
    Ok(())
}

fn meridian_storage_kek() -> String {
    meridian_server::encryption::new_kek_hex()
}

async fn admin(client: Client, command: AdminCommand) -> Result<()> {
    let r = match command {
        AdminCommand::Faults { cut, isolate } => {
            let mut pairs = Vec::new();
            for c in &cut {
                let Some((a, b)) = c.split_once(':') else {
                    anyhow::bail!("--cut {c:?} must look like from-region:to-region, e.g. us-east-1:eu-west-1");
                };
                pairs.push([a, b]);
            }
            client
                .post_json(
                    "/v1/admin/faults",
                    &json!({"cut_regions": pairs, "isolate_nodes": isolate}),
                )
                .await?
        }
        AdminCommand::Disk { delay_ms } => {
            client
                .post_json("/v1/admin/disk", &json!({"delay_ms": delay_ms}))
                .await?
        }
        AdminCommand::Failback { paused } => {
            client
                .post_json("/v1/admin/failback", &json!({"paused": paused}))
                .await?
        }
        AdminCommand::NewKek => {
            println!("{}", meridian_storage_kek());
            return Ok(());
        }
        AdminCommand::RotateKey | AdminCommand::Encryption => {
            let rotate = matches!(command, AdminCommand::RotateKey);
            let cluster = client.get_json("/v1/cluster").await?;
            let mut out = Vec::new();
            let mut failed = 0;
            for n in cluster["nodes"].as_array().into_iter().flatten() {
                let addr = n["http_addr"].as_str().unwrap_or_default();
                let c = Client::new(addr);
                let r = if rotate {
                    c.post_json("/v1/admin/rotate-key", &json!({})).await
                } else {
                    c.get_json("/v1/admin/encryption").await
                };
                match r {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        failed += 1;
                        out.push(json!({"node": n["id"], "error": e.to_string()}));
                    }
                }
            }
            output::emit(&Value::Array(out), None);
            if failed > 0 {
                anyhow::bail!(
                    "{failed} node(s) did not {}; run it again once they are reachable",
                    if rotate { "rotate" } else { "answer" }
                );
            }
            return Ok(());
        }
    };
    output::emit(&r, None);
    Ok(())
}

/// Runs a KV command, with the session kept in `file` when given (read before, written after,
/// also after a failed command: what the node said stays true).
async fn kv_with_session(client: Client, file: Option<PathBuf>, command: KvCommand) -> Result<()> {
    let Some(file) = file else {
        return kv(client, command).await;
    };
    let token = match std::fs::read_to_string(&file) {
        Ok(t) => t.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(e).with_context(|| format!("reading the session file {}", file.display()))
        }
    };
    let shared = Arc::new(std::sync::Mutex::new(token));
    let result = kv(client.with_session(shared.clone()), command).await;
    let token = shared.lock().unwrap().clone();
    if !token.is_empty() {
        std::fs::write(&file, format!("{token}\n"))
            .with_context(|| format!("writing the session file {}", file.display()))?;
    }
    result
}

async fn kv(client: Client, command: KvCommand) -> Result<()> {
    match command {
        KvCommand::Put {
            keyspace,
            key,
            value,
            context,
        } => print_served(
            &client
                .put_with_context(&keyspace, &key, value.into_bytes(), context.as_deref())
                .await?,
        ),
        KvCommand::Incr { keyspace, key, by } => {
            let (r, served) = client
                .post_kv(&keyspace, &key, "incr", &serde_json::json!({"by": by}))
                .await?;
            print_served(&served);
            println!("{}", r["value"].as_str().unwrap_or("?"));
        }
        KvCommand::Set {
            keyspace,
            key,
            add,
            remove,
        } => {
            let body = serde_json::json!({"add": add, "remove": remove});
            let (r, served) = client.post_kv(&keyspace, &key, "set", &body).await?;
            print_served(&served);
            println!("{}", r["members"]);
        }
        KvCommand::Get {
            keyspace,
            key,
            consistency,
        } => {
            let (value, served) = client.get(&keyspace, &key, consistency.as_deref()).await?;
            print_served(&served);
            match value {
                Some(v) => println!("{}", String::from_utf8_lossy(&v)),
                None => anyhow::bail!("key {key:?} not found in keyspace {keyspace:?}"),
            }
        }
        KvCommand::Delete { keyspace, key } => {
            let (r, served) = client.delete(&keyspace, &key).await?;
            print_served(&served);
            println!("existed: {}", r["existed"]);
        }
        KvCommand::Scan {
            keyspace,
            prefix,
            limit,
            consistency,
        } => {
            let (r, served) = client
                .scan(&keyspace, &prefix, limit, consistency.as_deref())
                .await?;
            print_served(&served);
            for item in r["items"].as_array().into_iter().flatten() {
                println!(
                    "{}\t{}",
                    item["key"].as_str().unwrap_or(""),
                    item["value"].as_str().unwrap_or("")
                );
            }
        }
        KvCommand::Cas {
            keyspace,
            key,
            value,
            expected,
        } => {
            let (r, served) = client
                .cas(&keyspace, &key, expected.as_deref(), Some(&value))
                .await?;
            print_served(&served);
            println!("{}", serde_json::to_string(&r)?);
        }
    }
    Ok(())
}

fn certs_cmd(dir: &std::path::Path, days: u32, command: CertsCommand) -> Result<()> {
    use meridian_server::certs::{write, Ca};
    let (stem, issued) = match command {
        CertsCommand::Ca => {
            if dir.join("ca.key").exists() {
                anyhow::bail!(
                    "{} already holds a CA key; certificates it signed would stop verifying if it were replaced (remove it yourself if that is what you want)",
                    dir.display()
                );
            }
            (
                "ca".to_string(),
                Ca::generate(days).map_err(anyhow::Error::msg)?.issued(),
            )
        }
        CertsCommand::Node {
            node_id,
            region,
            hosts,
        } => (
            format!("node-{node_id}"),
            Ca::load(dir)
                .and_then(|ca| ca.node(node_id, &region, &hosts, days))
                .map_err(anyhow::Error::msg)?,
        ),
        CertsCommand::Bundle {
            nodes,
            clients,
            root_token,
            kek,
        } => return certs_bundle(dir, days, &nodes, &clients, root_token, kek),
        CertsCommand::Client { name, grants, out } => (
            out.unwrap_or_else(|| format!("client-{name}")),
            Ca::load(dir)
                .and_then(|ca| ca.client(&name, &grants, days))
                .map_err(anyhow::Error::msg)?,
        ),
    };
    let (cert, key) = write(dir, &stem, &issued).map_err(anyhow::Error::msg)?;
    println!("wrote {} and {}", cert.display(), key.display());
    Ok(())
}

fn certs_bundle(
    dir: &std::path::Path,
    days: u32,
    nodes: &[String],
    clients: &[String],
    root_token: bool,
    kek: bool,
) -> Result<()> {
    use meridian_server::certs::{write, write_private, Ca};
    let ca = if dir.join("ca.key").exists() {
        Ca::load(dir).map_err(anyhow::Error::msg)?
    } else {
        let ca = Ca::generate(days.max(3650)).map_err(anyhow::Error::msg)?;
        write(dir, "ca", &ca.issued()).map_err(anyhow::Error::msg)?;
        println!("wrote {}", dir.join("ca.pem").display());
        ca
    };
    for spec in nodes {
        let mut parts = spec.splitn(3, ':');
        let (Some(id), Some(region)) = (parts.next(), parts.next()) else {
            anyhow::bail!("--node {spec:?}: give ID:REGION[:HOST,...], e.g. 1:us-east-1:n1");
        };
        let id: u64 = id
            .parse()
            .with_context(|| format!("--node {spec:?}: {id:?} is not a node id"))?;
        let hosts: Vec<String> = parts
            .next()
            .map(|h| h.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        let stem = format!("node-{id}");
        if dir.join(format!("{stem}.pem")).exists() {
            continue;
        }
        let issued = ca
            .node(id, region, &hosts, days)
            .map_err(anyhow::Error::msg)?;
        write(dir, &stem, &issued).map_err(anyhow::Error::msg)?;
        println!("wrote {}", dir.join(format!("{stem}.pem")).display());
    }
    for spec in clients {
        let Some((name, grants)) = spec.split_once(':') else {
            anyhow::bail!(
                "--client {spec:?}: give NAME:GRANT[,GRANT...], e.g. admin:cluster-admin"
            );
        };
        let stem = format!("client-{name}");
        if dir.join(format!("{stem}.pem")).exists() {
            continue;
        }
        let grants: Vec<String> = grants.split(',').map(str::to_string).collect();
        let issued = ca.client(name, &grants, days).map_err(anyhow::Error::msg)?;
        write(dir, &stem, &issued).map_err(anyhow::Error::msg)?;
        println!("wrote {}", dir.join(format!("{stem}.pem")).display());
    }
    if root_token && !dir.join("root.token").exists() {
        write_private(&dir.join("root.token"), local::new_root_token().as_bytes())
            .map_err(anyhow::Error::msg)?;
        println!("wrote {}", dir.join("root.token").display());
    }
    if kek && !dir.join("kek").exists() {
        write_private(
            &dir.join("kek"),
            meridian_server::encryption::new_kek_hex().as_bytes(),
        )
        .map_err(anyhow::Error::msg)?;
        println!("wrote {}", dir.join("kek").display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: every command's flags are well formed and unique, global ones included (clap
    // checks this only when a command is parsed, i.e. at a user's first run of it).
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        // Global flags reach subcommands whose own arguments have similar names.
        for args in [
            &[
                "meridian",
                "kv",
                "get",
                "ks",
                "k",
                "--client-cert",
                "c",
                "--client-key",
                "k",
            ][..],
            &[
                "meridian",
                "conflicts",
                "ks",
                "--key",
                "x",
                "--client-key",
                "k",
                "--client-cert",
                "c",
            ][..],
        ] {
            let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(
                cli.key.as_deref(),
                Some(std::path::Path::new("k")),
                "{args:?}"
            );
            assert_eq!(
                cli.cert.as_deref(),
                Some(std::path::Path::new("c")),
                "{args:?}"
            );
        }
    }
}
