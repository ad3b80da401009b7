//! The systems `meridian bench` drives, behind one interface: Meridian's gRPC API and etcd's
//! v3 KV API, both over one HTTP/2 connection per client, so the comparison measures the
//! servers and not two different client stacks.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};
use meridian_server::grpc::pb;
use pb::kv_client::KvClient;
use tonic::transport::{Channel, Endpoint};

#[allow(clippy::all)]
pub mod etcd_pb {
    tonic::include_proto!("etcdserverpb");
}

/// A request that takes longer than this counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Meridian,
    Etcd,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Meridian => "meridian",
            Target::Etcd => "etcd",
        }
    }
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "meridian" => Ok(Target::Meridian),
            "etcd" => Ok(Target::Etcd),
            other => Err(format!("unknown target {other:?}; use meridian or etcd")),
        }
    }
}

/// How the bench talks to the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// gRPC over one HTTP/2 connection per client.
    Grpc,
    /// JSON/HTTP over one HTTP/1.1 keep-alive connection per client: Meridian's `/v1/kv` API,
    /// etcd's grpc-gateway (`/v3/kv/put`, `/v3/kv/range`).
    Http,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http",
        }
    }
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "grpc" => Ok(Protocol::Grpc),
            "http" => Ok(Protocol::Http),
            other => Err(format!("unknown protocol {other:?}; use grpc or http")),
        }
    }
}

/// One client's connection to one node of the target.
pub enum Conn {
    /// Meridian's HTTP API; `base` is `http://addr/v1/kv/KEYSPACE/`.
    MeridianHttp {
        client: reqwest::Client,
        base: String,
    },
    /// etcd's grpc-gateway; `base` is `http://addr/v3/kv/`.
    EtcdHttp {
        client: reqwest::Client,
        base: String,
    },
    Meridian {
        client: KvClient<Channel>,
        keyspace: String,
        /// `Bearer <token>` when the cluster needs one (`--token` or `MERIDIAN_TOKEN`).
        auth: Option<tonic::metadata::AsciiMetadataValue>,
    },
    Etcd(etcd_pb::kv_client::KvClient<Channel>),
}

impl Conn {
    /// Connects to `addr` (host:port: a node's gRPC address, or for HTTP its HTTP address) of a
    /// node of `target`.
    pub async fn connect(
        target: Target,
        protocol: Protocol,
        addr: &str,
        keyspace: &str,
    ) -> Result<Conn> {
        let bearer = crate::client::token().map(|t| format!("Bearer {t}"));
        if protocol == Protocol::Http {
            let mut headers = reqwest::header::HeaderMap::new();
            if let (Target::Meridian, Some(b)) = (target, &bearer) {
                headers.insert(
                    reqwest::header::AUTHORIZATION,
                    b.parse().context("the token is not a valid header value")?,
                );
            }
            // One connection per client, kept alive, as the gRPC clients have.
            let client = crate::client::http_builder()
                .default_headers(headers)
                .timeout(REQUEST_TIMEOUT)
                .connect_timeout(Duration::from_secs(5))
                .pool_max_idle_per_host(1)
                .tcp_nodelay(true)
                .build()?;
            return Ok(match target {
                Target::Meridian => Conn::MeridianHttp {
                    client,
                    base: format!("{}://{addr}/v1/kv/{keyspace}/", crate::client::scheme()),
                },
                Target::Etcd => Conn::EtcdHttp {
                    client,
                    base: format!("http://{addr}/v3/kv/"),
                },
            });
        }
        let tls = crate::client::tls();
        let mut endpoint = Endpoint::from_shared(format!("http://{addr}"))?;
        if let (Target::Meridian, Some(ca)) = (target, &tls.ca_pem) {
            let mut config = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca));
            if let Some((c, k)) = &tls.identity_pem {
                config = config.identity(tonic::transport::Identity::from_pem(c, k));
            }
            endpoint = Endpoint::from_shared(format!("https://{addr}"))?.tls_config(config)?;
        }
        let channel = endpoint
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {} at {addr}", target.name()))?;
        Ok(match target {
            Target::Meridian => Conn::Meridian {
                client: KvClient::new(channel),
                keyspace: keyspace.to_string(),
                auth: bearer
                    .map(|b| b.parse())
                    .transpose()
                    .context("the token is not a valid metadata value")?,
            },
            Target::Etcd => Conn::Etcd(etcd_pb::kv_client::KvClient::new(channel)),
        })
    }

    pub async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        match self {
            Conn::MeridianHttp { client, base } => {
                let url = format!("{base}{}", String::from_utf8_lossy(key));
                http_outcome(client.put(url).body(value.to_vec()).send().await).await
            }
            Conn::EtcdHttp { client, base } => {
                let body = format!(r#"{{"key":"{}","value":"{}"}}"#, base64(key), base64(value));
                http_outcome(client.post(format!("{base}put")).body(body).send().await).await
            }
            Conn::Meridian {
                client,
                keyspace,
                auth,
            } => client
                .put(authed(
                    pb::PutRequest {
                        keyspace: keyspace.clone(),
                        key: key.to_vec(),
                        value: value.to_vec(),
                        session: String::new(),
                        request_id: Vec::new(),
                        context: String::new(),
                    },
                    auth,
                ))
                .await
                .map(|_| ())
                .map_err(|s| s.message().to_string()),
            Conn::Etcd(client) => client
                .put(etcd_pb::PutRequest {
                    key: key.to_vec(),
                    value: value.to_vec(),
                    ..Default::default()
                })
                .await
                .map(|_| ())
                .map_err(|s| s.message().to_string()),
        }
    }

    /// A linearizable read on both targets (Meridian's default for sync keyspaces; etcd's
    /// default, `serializable = false`).
    pub async fn get(&mut self, key: &[u8]) -> Result<(), String> {
        match self {
            Conn::MeridianHttp { client, base } => {
                let url = format!(
                    "{base}{}?consistency=linearizable",
                    String::from_utf8_lossy(key)
                );
                http_outcome(client.get(url).send().await).await
            }
            Conn::EtcdHttp { client, base } => {
                let body = format!(r#"{{"key":"{}"}}"#, base64(key));
                http_outcome(client.post(format!("{base}range")).body(body).send().await).await
            }
            Conn::Meridian {
                client,
                keyspace,
                auth,
            } => client
                .get(authed(
                    pb::GetRequest {
                        keyspace: keyspace.clone(),
                        key: key.to_vec(),
                        consistency: "linearizable".into(),
                        session: String::new(),
                    },
                    auth,
                ))
                .await
                .map(|_| ())
                .map_err(|s| s.message().to_string()),
            Conn::Etcd(client) => client
                .range(etcd_pb::RangeRequest {
                    key: key.to_vec(),
                    ..Default::default()
                })
                .await
                .map(|_| ())
                .map_err(|s| s.message().to_string()),
        }
    }
}

/// `msg` with the client's `authorization` metadata, if it has a token.
fn authed<T>(msg: T, auth: &Option<tonic::metadata::AsciiMetadataValue>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(a) = auth {
        req.metadata_mut().insert("authorization", a.clone());
    }
    req
}

/// A 2xx answer (its body read, so the connection is reused) is a success; anything else is
/// an error with the status and what the server said.
async fn http_outcome(sent: reqwest::Result<reqwest::Response>) -> Result<(), String> {
    let resp = sent.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
    }
}

/// Standard base64 with padding (etcd's gateway takes keys and values so).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }
}
