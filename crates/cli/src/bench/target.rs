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

/// One client's connection to one node of the target.
pub enum Conn {
    Meridian {
        client: KvClient<Channel>,
        keyspace: String,
    },
    Etcd(etcd_pb::kv_client::KvClient<Channel>),
}

impl Conn {
    /// Connects to the gRPC address `addr` (host:port) of a node of `target`.
    pub async fn connect(target: Target, addr: &str, keyspace: &str) -> Result<Conn> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
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
            },
            Target::Etcd => Conn::Etcd(etcd_pb::kv_client::KvClient::new(channel)),
        })
    }

    pub async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        match self {
            Conn::Meridian { client, keyspace } => client
                .put(pb::PutRequest {
                    keyspace: keyspace.clone(),
                    key: key.to_vec(),
                    value: value.to_vec(),
                    session: String::new(),
                    request_id: Vec::new(),
                    context: String::new(),
                })
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
            Conn::Meridian { client, keyspace } => client
                .get(pb::GetRequest {
                    keyspace: keyspace.clone(),
                    key: key.to_vec(),
                    consistency: "linearizable".into(),
                    session: String::new(),
                })
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
