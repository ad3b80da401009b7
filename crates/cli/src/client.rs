//! A small HTTP client for the node API, used by the `keyspace` and `kv` commands and the demo.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    pub base: String,
    /// A session token sent with every request (`meridian-session`) and replaced by every
    /// response's, when the client keeps a session.
    session: Option<Arc<Mutex<String>>>,
    /// Sent as `Authorization: Bearer <token>`: `--token`, else `MERIDIAN_TOKEN`.
    token: Option<String>,
}

/// The token given with `--token`, which wins over `MERIDIAN_TOKEN`.
static TOKEN: Mutex<Option<String>> = Mutex::new(None);

pub fn set_token(token: String) {
    *TOKEN.lock().unwrap() = Some(token);
}

pub fn token() -> Option<String> {
    TOKEN
        .lock()
        .unwrap()
        .clone()
        .or_else(|| std::env::var("MERIDIAN_TOKEN").ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// How this process's clients speak TLS to nodes: the cluster CA to verify them with, and a
/// client certificate to present (see [`configure_tls`]).
#[derive(Clone, Default)]
pub struct TlsClient {
    /// PEM of the CA (`--ca` or `MERIDIAN_CA`), and where it was read from.
    pub ca_pem: Option<Vec<u8>>,
    pub ca_path: Option<std::path::PathBuf>,
    /// PEM of the client certificate followed by its key (`--client-cert`/`--client-key` or
    /// `MERIDIAN_CERT`/`MERIDIAN_KEY`).
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
}

static TLS: Mutex<Option<TlsClient>> = Mutex::new(None);

/// Reads the CA and client certificate files once (flags win over the environment), so that a
/// missing or malformed file is one clear error at start rather than a failure per request.
pub fn configure_tls(
    ca: Option<std::path::PathBuf>,
    cert: Option<std::path::PathBuf>,
    key: Option<std::path::PathBuf>,
) -> Result<()> {
    let env = |name: &str| std::env::var_os(name).map(std::path::PathBuf::from);
    let ca = ca.or_else(|| env("MERIDIAN_CA"));
    let cert = cert.or_else(|| env("MERIDIAN_CERT"));
    let key = key.or_else(|| env("MERIDIAN_KEY"));
    let read = |p: &std::path::Path, what: &str| {
        std::fs::read(p).with_context(|| format!("cannot read the {what} {}", p.display()))
    };
    let ca_pem = ca.as_deref().map(|p| read(p, "CA file")).transpose()?;
    if let Some(pem) = &ca_pem {
        reqwest::Certificate::from_pem(pem).context("the CA file is not a PEM certificate")?;
    }
    let identity_pem = match (cert, key) {
        (Some(c), Some(k)) => {
            let pair = (read(&c, "certificate")?, read(&k, "key")?);
            let mut both = pair.0.clone();
            both.extend_from_slice(&pair.1);
            reqwest::Identity::from_pem(&both)
                .context("the client certificate and key are not a PEM pair")?;
            Some(pair)
        }
        (None, None) => None,
        _ => {
            return Err(anyhow!(
                "--client-cert and --client-key (MERIDIAN_CERT, MERIDIAN_KEY) go together"
            ))
        }
    };
    if identity_pem.is_some() && ca_pem.is_none() {
        return Err(anyhow!(
            "a client certificate needs the cluster CA too: --ca FILE or MERIDIAN_CA"
        ));
    }
    *TLS.lock().unwrap() = Some(TlsClient {
        ca_pem,
        ca_path: ca,
        identity_pem,
    });
    Ok(())
}

/// The TLS settings in force (none unless [`configure_tls`] found a CA).
pub fn tls() -> TlsClient {
    TLS.lock().unwrap().clone().unwrap_or_default()
}

/// The scheme for a node's HTTP address: https once a CA is configured.
pub fn scheme() -> &'static str {
    if tls().ca_pem.is_some() {
        "https"
    } else {
        "http"
    }
}

/// A reqwest builder that trusts the cluster CA (and only it) and presents the client
/// certificate, when configured.
pub fn http_builder() -> reqwest::ClientBuilder {
    let mut b = reqwest::Client::builder();
    let t = tls();
    if let Some(ca) = &t.ca_pem {
        b = b
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca).expect("checked at start"));
    }
    if let Some((c, k)) = &t.identity_pem {
        let mut both = c.clone();
        both.extend_from_slice(k);
        b = b.identity(reqwest::Identity::from_pem(&both).expect("checked at start"));
    }
    b
}

/// Where a response was served, from its headers.
#[derive(Clone, Debug, Default)]
pub struct Served {
    pub region: String,
    pub node: String,
    pub staleness_ms: Option<u64>,
    /// Async keyspaces: the HLC of the version written or read.
    pub version: Option<String>,
}

impl Served {
    fn from_headers(h: &reqwest::header::HeaderMap) -> Served {
        let get = |k: &str| {
            h.get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        Served {
            region: get("x-meridian-region"),
            node: get("x-meridian-node"),
            staleness_ms: get("x-meridian-staleness-ms").parse().ok(),
            version: Some(get("x-meridian-version")).filter(|v| !v.is_empty()),
        }
    }
}

fn api_error(status: reqwest::StatusCode, body: &str) -> anyhow::Error {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.to_string());
    anyhow!("{status}: {message}")
}

impl Client {
    pub fn new(base: &str) -> Client {
        let base = if base.starts_with("http") {
            base.to_string()
        } else {
            format!("{}://{base}", scheme())
        };
        let http = http_builder()
            .timeout(Duration::from_secs(15))
            .pool_max_idle_per_host(64)
            .build()
            .expect("HTTP client builds");
        Client {
            http,
            base: base.trim_end_matches('/').to_string(),
            session: None,
            token: token(),
        }
    }

    /// This client with a session: requests carry `token`, responses update it.
    pub fn with_session(&self, token: Arc<Mutex<String>>) -> Client {
        Client {
            session: Some(token),
            ..self.clone()
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, mut req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(s) = &self.session {
            let token = s.lock().unwrap().clone();
            if !token.is_empty() {
                req = req.header("meridian-session", token);
            }
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the node at {}", self.base))?;
        if let (Some(s), Some(v)) = (&self.session, resp.headers().get("meridian-session")) {
            if let Ok(v) = v.to_str() {
                *s.lock().unwrap() = v.to_string();
            }
        }
        Ok(resp)
    }

    async fn json(&self, req: reqwest::RequestBuilder) -> Result<(Value, Served)> {
        let resp = self.send(req).await?;
        let status = resp.status();
        let served = Served::from_headers(resp.headers());
        let body = resp.text().await?;
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        Ok((serde_json::from_str(&body).unwrap_or(Value::Null), served))
    }

    pub async fn put(&self, keyspace: &str, key: &str, value: Vec<u8>) -> Result<Served> {
        let req = self
            .http
            .put(self.url(&format!("/v1/kv/{keyspace}/{}", enc(key))))
            .body(value);
        Ok(self.json(req).await?.1)
    }

    /// A put carrying a multi-value register's causal context (when given).
    pub async fn put_with_context(
        &self,
        keyspace: &str,
        key: &str,
        value: Vec<u8>,
        context: Option<&str>,
    ) -> Result<Served> {
        let mut req = self
            .http
            .put(self.url(&format!("/v1/kv/{keyspace}/{}", enc(key))))
            .body(value);
        if let Some(c) = context {
            req = req.header("meridian-context", c);
        }
        Ok(self.json(req).await?.1)
    }

    /// A POST to one of a key's operations (`incr`, `set`).
    pub async fn post_kv(
        &self,
        keyspace: &str,
        key: &str,
        op: &str,
        body: &Value,
    ) -> Result<(Value, Served)> {
        self.json(
            self.http
                .post(self.url(&format!("/v1/kv/{keyspace}/{}/{op}", enc(key))))
                .json(body),
        )
        .await
    }

    /// As `post_kv`, with a request id (a retry with the same id is applied once).
    pub async fn post_kv_with_id(
        &self,
        keyspace: &str,
        key: &str,
        op: &str,
        body: &Value,
        request_id: &str,
    ) -> Result<(Value, Served)> {
        self.json(
            self.http
                .post(self.url(&format!("/v1/kv/{keyspace}/{}/{op}", enc(key))))
                .header("meridian-request-id", request_id)
                .json(body),
        )
        .await
    }

    /// Sets (`Some`) or clears the node's fault injection (cut region pairs).
    pub async fn set_cut_regions(&self, pairs: &[(&str, &str)]) -> Result<Value> {
        let cut: Vec<[&str; 2]> = pairs.iter().map(|(a, b)| [*a, *b]).collect();
        self.post_json("/v1/admin/faults", &serde_json::json!({"cut_regions": cut}))
            .await
    }

    /// The value (None when absent) and where it was served.
    pub async fn get(
        &self,
        keyspace: &str,
        key: &str,
        consistency: Option<&str>,
    ) -> Result<(Option<Vec<u8>>, Served)> {
        let mut req = self
            .http
            .get(self.url(&format!("/v1/kv/{keyspace}/{}", enc(key))));
        if let Some(c) = consistency {
            req = req.query(&[("consistency", c)]);
        }
        let resp = self.send(req).await?;
        let status = resp.status();
        let served = Served::from_headers(resp.headers());
        let body = resp.bytes().await?;
        if status == reqwest::StatusCode::NOT_FOUND && !served.region.is_empty() {
            return Ok((None, served));
        }
        if !status.is_success() {
            return Err(api_error(status, &String::from_utf8_lossy(&body)));
        }
        Ok((Some(body.to_vec()), served))
    }

    pub async fn delete(&self, keyspace: &str, key: &str) -> Result<(Value, Served)> {
        self.json(
            self.http
                .delete(self.url(&format!("/v1/kv/{keyspace}/{}", enc(key)))),
        )
        .await
    }

    pub async fn scan(
        &self,
        keyspace: &str,
        prefix: &str,
        limit: usize,
        consistency: Option<&str>,
    ) -> Result<(Value, Served)> {
        let mut q = vec![("prefix", prefix.to_string()), ("limit", limit.to_string())];
        if let Some(c) = consistency {
            q.push(("consistency", c.to_string()));
        }
        self.json(
            self.http
                .get(self.url(&format!("/v1/kv/{keyspace}")))
                .query(&q),
        )
        .await
    }

    pub async fn cas(
        &self,
        keyspace: &str,
        key: &str,
        expected: Option<&str>,
        value: Option<&str>,
    ) -> Result<(Value, Served)> {
        let body = serde_json::json!({"expected": expected, "value": value});
        self.json(
            self.http
                .post(self.url(&format!("/v1/kv/{keyspace}/{}/cas", enc(key))))
                .json(&body),
        )
        .await
    }

    pub async fn create_keyspace(&self, policy: &Value) -> Result<Value> {
        Ok(self
            .json(self.http.post(self.url("/v1/keyspaces")).json(policy))
            .await?
            .0)
    }

    pub async fn get_json(&self, path: &str) -> Result<Value> {
        Ok(self.json(self.http.get(self.url(path))).await?.0)
    }

    /// A POST that may take up to `wait` (a switchover answers once every shard has moved).
    pub async fn post_json_waiting(
        &self,
        path: &str,
        body: &Value,
        wait: Duration,
    ) -> Result<Value> {
        Ok(self
            .json(self.http.post(self.url(path)).timeout(wait).json(body))
            .await?
            .0)
    }

    pub async fn delete_json(&self, path: &str) -> Result<Value> {
        Ok(self.json(self.http.delete(self.url(path))).await?.0)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value> {
        Ok(self
            .json(self.http.post(self.url(path)).json(body))
            .await?
            .0)
    }
}

/// Percent-encodes a key for a path segment.
pub fn enc(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
