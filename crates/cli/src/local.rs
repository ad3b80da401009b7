//! A cluster of real nodes inside this process, for `meridian demo` and `meridian bench`.
//!
//! Each node runs on its own tokio runtime, so killing a node is dropping its runtime: its
//! tasks stop mid-flight and its sockets close, as in a crash. Its data directory stays, and a
//! restart recovers from it.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use meridian_server::clock::SystemClock;
use meridian_server::NodeConfig;
use tokio::runtime::Runtime;

pub struct LocalNode {
    pub cfg: NodeConfig,
    /// Index of the node's region in the list the cluster was made from.
    pub region: usize,
    runtime: Option<Runtime>,
}

impl LocalNode {
    pub fn new((region, cfg): (usize, NodeConfig)) -> LocalNode {
        LocalNode {
            cfg,
            region,
            runtime: None,
        }
    }

    pub async fn start(&mut self) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("node-{}", self.cfg.node_id))
            .enable_all()
            .build()?;
        let cfg = self.cfg.clone();
        runtime
            .spawn(async move {
                meridian_server::start(cfg, Arc::new(SystemClock))
                    .await
                    .map(|_| ())
            })
            .await??;
        self.runtime = Some(runtime);
        Ok(())
    }

    pub fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    pub fn http(&self) -> String {
        self.cfg.listen_http.clone()
    }
}

fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()?;
    Ok(listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect())
}

/// Configs for `per_region` nodes in each of `regions`, data under `dir`, on free loopback
/// ports; the first node bootstraps. With `wan`, links between regions get the measured
/// latency of the built-in matrix plus 5% jitter. Each config comes with its region's index.
pub fn node_configs(
    dir: &Path,
    regions: &[&str],
    per_region: usize,
    wan: bool,
) -> Result<Vec<(usize, NodeConfig)>> {
    let ports = free_ports(regions.len() * per_region * 3)?;
    let mut cfgs = Vec::new();
    for (r, region) in regions.iter().enumerate() {
        for z in 0..per_region {
            let i = r * per_region + z;
            let text = format!(
                r#"
node_id = {id}
region = "{region}"
zone = "{region}{zone}"
data_dir = "{dir}"
listen_peer = "127.0.0.1:{peer}"
listen_http = "127.0.0.1:{http}"
listen_grpc = "127.0.0.1:{grpc}"
seeds = ["127.0.0.1:{seed}"]
bootstrap = {bootstrap}
[wan]
enabled = {wan}
jitter_pct = 5.0
seed = {id}
[failover]
holddown_ms = 5000
"#,
                id = i + 1,
                zone = (b'a' + z as u8) as char,
                dir = dir.join(format!("node-{}", i + 1)).display(),
                peer = ports[i * 3],
                http = ports[i * 3 + 1],
                grpc = ports[i * 3 + 2],
                seed = ports[0],
                bootstrap = i == 0,
            );
            let cfg: NodeConfig = toml::from_str(&text)?;
            cfgs.push((r, cfg.validated().map_err(anyhow::Error::msg)?));
        }
    }
    Ok(cfgs)
}

/// Node configs with the index of each node's region.
pub type RegionConfigs = Vec<(usize, NodeConfig)>;

/// The demos' node configs: [`node_configs`] with the WAN model on and, unless `insecure`,
/// tokens required (`[auth] enabled`) with a fresh root token that this process's clients send
/// (see `crate::client::set_token`). Returns the token.
pub fn demo_configs(
    dir: &Path,
    regions: &[&str],
    per_region: usize,
    insecure: bool,
) -> Result<(RegionConfigs, Option<String>)> {
    let mut cfgs = node_configs(dir, regions, per_region, true)?;
    if insecure {
        return Ok((cfgs, None));
    }
    let root = require_tokens(&mut cfgs, dir)?;
    require_tls(&mut cfgs, dir)?;
    Ok((cfgs, Some(root)))
}

/// Puts every listener of `cfgs`' nodes under TLS (mutual between nodes) with a fresh CA and
/// node certificates in `dir/certs`, and makes this process's clients trust that CA (and
/// present `dir/certs/client.pem`, a cluster-admin certificate). Returns the CA's path.
pub fn require_tls(cfgs: &mut RegionConfigs, dir: &Path) -> Result<std::path::PathBuf> {
    use meridian_server::certs::{write, Ca};
    let certs = dir.join("certs");
    let ca = Ca::generate(30).map_err(anyhow::Error::msg)?;
    let (ca_file, _) = write(&certs, "ca", &ca.issued()).map_err(anyhow::Error::msg)?;
    for (_, cfg) in cfgs.iter_mut() {
        let stem = format!("node-{}", cfg.node_id);
        let issued = ca
            .node(cfg.node_id, &cfg.region, &[], 30)
            .map_err(anyhow::Error::msg)?;
        let (cert_file, key_file) = write(&certs, &stem, &issued).map_err(anyhow::Error::msg)?;
        cfg.tls = Some(meridian_server::tls::TlsConfig {
            ca_file: ca_file.clone(),
            cert_file,
            key_file,
            client_certs: meridian_server::tls::ClientCerts::Optional,
            reload_interval_ms: 1000,
        });
    }
    let client = ca
        .client("admin", &["cluster-admin".to_string()], 30)
        .map_err(anyhow::Error::msg)?;
    let (cert, key) = write(&certs, "client", &client).map_err(anyhow::Error::msg)?;
    crate::client::configure_tls(Some(ca_file.clone()), Some(cert), Some(key))?;
    Ok(ca_file)
}

/// A new random root token (`mrd_<id>_<secret>`).
pub fn new_root_token() -> String {
    use rand::RngCore;
    let (mut id, mut secret) = ([0u8; 6], [0u8; 24]);
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    meridian_control::auth::Token::from_random(id, secret).text()
}

/// Makes `cfgs`' nodes require tokens under a fresh root token (written to `dir/root.token`),
/// which this process's clients then send; returns the token.
pub fn require_tokens(cfgs: &mut RegionConfigs, dir: &Path) -> Result<String> {
    let root = new_root_token();
    let file = dir.join("root.token");
    std::fs::write(&file, &root)?;
    for (_, cfg) in cfgs.iter_mut() {
        cfg.auth.enabled = true;
        cfg.auth.root_token_file = Some(file.clone());
    }
    crate::client::set_token(root.clone());
    Ok(root)
}

/// Prints how to reach a secured demo: its admin token, the CA its certificates come from,
/// and a console link that carries the token.
pub fn print_access(token: &Option<String>, http: &str) {
    let ca = crate::client::tls()
        .ca_path
        .map(|p| p.display().to_string());
    match token {
        Some(t) => {
            println!(
                "TLS and tokens required (--insecure turns both off); admin token: {t}\n  console with the token: https://{http}/#token={t}\n  (its certificate is from this demo's own CA: your browser warns once; accept it, or import the CA printed below)"
            );
            if let Some(ca) = ca {
                println!(
                    "  CLI: MERIDIAN_CA={ca} MERIDIAN_TOKEN={t} meridian cluster --node {http}"
                );
            }
        }
        None => println!("running without TLS or tokens (--insecure)"),
    }
}
