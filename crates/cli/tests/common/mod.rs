//! A harness for multi-process tests: real `meridian server` processes started from config
//! files on loopback, killed with SIGKILL and restarted on the same data directories.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct NodeProc {
    pub id: u64,
    pub region: String,
    pub config: PathBuf,
    pub http: String,
    pub grpc: String,
    /// A command the server runs under, e.g. `faketime -f -2s` (empty: none).
    pub wrapper: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
}

/// What sets one node apart in a test cluster.
#[derive(Default)]
pub struct NodeTweak {
    /// Top-level config lines (`key = value\n`), put first in the file.
    pub extra_config: String,
    /// See `NodeProc::wrapper`.
    pub wrapper: Vec<String>,
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<NodeProc>,
    pub http: reqwest::Client,
}

fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl NodeProc {
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let bin = env!("CARGO_BIN_EXE_meridian");
        let mut cmd = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let child = cmd
            .args(["server", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info,openraft=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn meridian server");
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown code runs, unflushed state is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }
}

impl Cluster {
    /// Writes one config file per node (`regions[i]` has `counts[i]` nodes) and starts them all.
    pub fn start(regions: &[(&str, usize)]) -> Cluster {
        Cluster::start_with(regions, |_| NodeTweak::default())
    }

    /// As `start`, with extra config lines and a wrapper command per node id.
    pub fn start_with(regions: &[(&str, usize)], tweak: impl Fn(u64) -> NodeTweak) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let total: usize = regions.iter().map(|(_, n)| n).sum();
        let ports = free_ports(total * 3);
        let mut nodes = Vec::new();
        let mut i = 0;
        for (region, count) in regions {
            for z in 0..*count {
                let id = i as u64 + 1;
                let config = dir.path().join(format!("node{id}.toml"));
                let (peer, http, grpc) = (ports[i * 3], ports[i * 3 + 1], ports[i * 3 + 2]);
                let text = format!(
                    "node_id = {id}\nregion = \"{region}\"\nzone = \"{region}{zone}\"\ndata_dir = \"{data}\"\n\
                     listen_peer = \"127.0.0.1:{peer}\"\nlisten_http = \"127.0.0.1:{http}\"\nlisten_grpc = \"127.0.0.1:{grpc}\"\n\
                     seeds = [\"127.0.0.1:{seed}\"]\nbootstrap = {bootstrap}\n",
                    zone = (b'a' + z as u8) as char,
                    data = dir.path().join(format!("data{id}")).display(),
                    seed = ports[0],
                    bootstrap = i == 0,
                );
                let NodeTweak {
                    extra_config,
                    wrapper,
                } = tweak(id);
                let text = format!("{extra_config}{text}");
                std::fs::write(&config, text).unwrap();
                nodes.push(NodeProc {
                    id,
                    region: region.to_string(),
                    config,
                    http: format!("127.0.0.1:{http}"),
                    grpc: format!("127.0.0.1:{grpc}"),
                    wrapper,
                    child: None,
                    log: dir.path().join(format!("node{id}.log")),
                });
                i += 1;
            }
        }
        for n in nodes.iter_mut() {
            n.start();
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Cluster { dir, nodes, http }
    }

    pub fn node(&self, id: u64) -> &NodeProc {
        &self.nodes[(id - 1) as usize]
    }

    pub fn node_mut(&mut self, id: u64) -> &mut NodeProc {
        &mut self.nodes[(id - 1) as usize]
    }

    pub fn in_region(&self, region: &str) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.region == region)
            .map(|n| n.id)
            .collect()
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!(
                "--- node {} ---\n{}\n",
                n.id,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        out
    }

    pub async fn get_json(&self, id: u64, path: &str) -> Option<Value> {
        let r = self.http.get(self.node(id).url(path)).send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    /// Waits until node `observer` sees every node in the catalogue.
    pub async fn wait_joined(&self, observer: u64) {
        let total = self.nodes.len();
        eventually("every node joined", Duration::from_secs(60), || async {
            let c = self.get_json(observer, "/v1/cluster").await?;
            (c["nodes"].as_array()?.len() == total).then_some(())
        })
        .await;
    }

    /// The leader region of every shard of `keyspace`, as `observer` sees it.
    pub async fn leader_regions(
        &self,
        observer: u64,
        keyspace: &str,
    ) -> Option<Vec<Option<String>>> {
        let c = self.get_json(observer, "/v1/cluster").await?;
        let regions: Vec<Option<String>> = c["shards"]
            .as_array()?
            .iter()
            .filter(|s| s["keyspace"] == keyspace)
            .map(|s| s["leader_region"].as_str().map(str::to_string))
            .collect();
        Some(regions)
    }

    pub async fn create_keyspace(&self, via: u64, policy: Value) -> reqwest::Response {
        self.http
            .post(self.node(via).url("/v1/keyspaces"))
            .json(&policy)
            .send()
            .await
            .unwrap()
    }

    pub async fn put(
        &self,
        via: u64,
        keyspace: &str,
        key: &str,
        value: &str,
    ) -> Result<reqwest::Response, String> {
        let r = self
            .http
            .put(self.node(via).url(&format!("/v1/kv/{keyspace}/{key}")))
            .body(value.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status().is_success() {
            Ok(r)
        } else {
            Err(format!(
                "{}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ))
        }
    }

    /// A linearizable read: `Ok(None)` when the key is absent.
    pub async fn get(&self, via: u64, keyspace: &str, key: &str) -> Result<Option<String>, String> {
        let r = self
            .http
            .get(
                self.node(via)
                    .url(&format!("/v1/kv/{keyspace}/{key}?consistency=linearizable")),
            )
            .send()
            .await
            .map_err(|e| e.to_string())?;
        match r.status().as_u16() {
            200 => Ok(Some(r.text().await.unwrap())),
            404 if r.headers().contains_key("x-meridian-region") => Ok(None),
            s => Err(format!("{s}: {}", r.text().await.unwrap_or_default())),
        }
    }

    /// Sets the fault injection of every node (`Value::Null`-free JSON of `Faults`).
    pub async fn set_faults_everywhere(&self, faults: &Value) {
        for n in &self.nodes {
            let r = self
                .http
                .post(n.url("/v1/admin/faults"))
                .json(faults)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("data{id}"))
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in self.nodes.iter_mut() {
            n.kill();
        }
        if std::env::var_os("MERIDIAN_KEEP_TEST_DIR").is_some() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            eprintln!("test directory kept: {}", dir.keep().display());
        }
    }
}

/// The faults that cut `region` off from every other of `regions` in both directions (`on`), or
/// heal everything (`!on`), as `POST /v1/admin/faults` takes them.
pub fn cut_off(region: &str, regions: &[&str], on: bool) -> Value {
    let mut pairs: Vec<[&str; 2]> = Vec::new();
    if on {
        for other in regions.iter().filter(|r| **r != region) {
            pairs.push([region, other]);
            pairs.push([other, region]);
        }
    }
    serde_json::json!({"cut_regions": pairs})
}
