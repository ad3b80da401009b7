//! The network adapter: openraft's network traits over a [`RaftRpc`] the composition root
//! provides, and the receiving side that hands a request to the local group.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use meridian_types::{GroupId, NodeId};
use openraft::base::BoxStream;
use openraft::errors::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::StreamAppendResult;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{AnyError, RPCTypes};
use serde::{Deserialize, Serialize};

use crate::freshness::{ClockOffset, Stamp, Stamper};
use crate::typ::{LogId, MRaft, PeerNode, Snapshot, SnapshotMeta, TypeConfig, Vote};

/// A consensus message for one group on another node.
#[derive(Serialize, Deserialize)]
pub enum RaftRequest {
    /// An append (or heartbeat), with the sender's latest freshness stamp while it leads.
    Append {
        req: AppendEntriesRequest<TypeConfig>,
        stamp: Option<Stamp>,
    },
    Vote(VoteRequest<TypeConfig>),
    PreVote(VoteRequest<TypeConfig>),
    Snapshot {
        vote: Vote,
        meta: SnapshotMeta,
        data: Vec<u8>,
    },
    TransferLeader(TransferLeaderRequest<TypeConfig>),
}

impl RaftRequest {
    fn rpc_type(&self) -> RPCTypes {
        match self {
            RaftRequest::Append { .. } => RPCTypes::AppendEntries,
            RaftRequest::Vote(_) | RaftRequest::PreVote(_) => RPCTypes::Vote,
            RaftRequest::Snapshot { .. } => RPCTypes::InstallSnapshot,
            RaftRequest::TransferLeader(_) => RPCTypes::TransferLeader,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub enum RaftResponse {
    Append(AppendEntriesResponse<TypeConfig>),
    Vote(VoteResponse<TypeConfig>),
    Snapshot(SnapshotResponse<TypeConfig>),
    TransferLeader(TransferLeaderResponse<TypeConfig>),
    /// The receiving node does not (yet) host the group, or the group has stopped.
    NoGroup(String),
}

/// Why a message got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RpcFailure {
    /// The peer could not be reached (connection refused, link cut by a fault).
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// No answer within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// The answer to a message already on the wire.
pub type PendingReply = BoxFuture<'static, Result<RaftResponse, RpcFailure>>;

/// Sends consensus messages to groups on other nodes. The server implements it with real
/// sockets; the simulator with simulated ones.
pub trait RaftRpc: Send + Sync + 'static {
    /// Queues `req` behind every earlier message to the same node and resolves once it is
    /// queued; the returned reply resolves with the answer, or fails after `timeout`. Splitting
    /// the two lets appends be pipelined while staying in order.
    fn send(
        &self,
        target: NodeId,
        node: &PeerNode,
        group: GroupId,
        req: RaftRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<PendingReply, RpcFailure>>;
}

/// Appends in flight to one follower at once.
const APPEND_PIPELINE_MAX: usize = 64;

/// The least time a pipelined append waits for its answer. openraft derives its replication
/// timeout from the heartbeat interval, which on a WAN link can be shorter than the round trip
/// plus the follower's fsync; an append that always times out never commits.
const APPEND_TIMEOUT_MIN: Duration = Duration::from_secs(1);

/// Creates one [`Network`] per peer of a group.
#[derive(Clone)]
pub struct NetworkFactory {
    pub node_id: NodeId,
    pub group: GroupId,
    pub rpc: Arc<dyn RaftRpc>,
    pub stamper: Arc<Stamper>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: NodeId, node: &PeerNode) -> Network {
        Network {
            factory: self.clone(),
            target,
            node: node.clone(),
        }
    }
}

pub struct Network {
    factory: NetworkFactory,
    target: NodeId,
    node: PeerNode,
}

impl Network {
    async fn send(
        &self,
        req: RaftRequest,
        timeout: Duration,
    ) -> Result<RaftResponse, RPCError<TypeConfig>> {
        let action = req.rpc_type();
        let f = &self.factory;
        let reply = match f
            .rpc
            .send(self.target, &self.node, f.group, req, timeout)
            .await
        {
            Ok(pending) => pending.await,
            Err(e) => Err(e),
        };
        rpc_result(reply, action, f.node_id, self.target)
    }
}

fn rpc_result(
    reply: Result<RaftResponse, RpcFailure>,
    action: RPCTypes,
    id: NodeId,
    target: NodeId,
) -> Result<RaftResponse, RPCError<TypeConfig>> {
    match reply {
        Ok(RaftResponse::NoGroup(why)) => Err(RPCError::Unreachable(Unreachable::from_string(why))),
        Ok(resp) => Ok(resp),
        Err(RpcFailure::Unreachable(why)) => {
            Err(RPCError::Unreachable(Unreachable::from_string(why)))
        }
        Err(RpcFailure::Timeout(timeout)) => Err(RPCError::Timeout(Timeout {
            action,
            id,
            target,
            timeout,
        })),
    }
}

fn unexpected() -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::new(&AnyError::error(
        "peer answered with the wrong message type",
    )))
}

impl RaftNetworkV2<TypeConfig> for Network {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let stamp = self.factory.stamper.latest();
        // Heartbeats: openraft abandons the call after `hard_ttl` anyway, so wait that long.
        match self
            .send(RaftRequest::Append { req, stamp }, option.hard_ttl())
            .await?
        {
            RaftResponse::Append(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    /// Pipelined appends: each request is put on the wire as soon as openraft produces it, and
    /// answers are matched in order, so a follower one WAN round trip away keeps receiving new
    /// entries while earlier ones are still being acknowledged. The receiver handles one group's
    /// appends in arrival order (see the transport's lanes), so order is kept end to end.
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<
            BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
    {
        let factory = self.factory.clone();
        let (target, node) = (self.target, self.node.clone());
        let timeout = option.soft_ttl().max(APPEND_TIMEOUT_MIN);
        Box::pin(async move {
            type InFlight = (
                Option<LogId>,
                Option<LogId>,
                Result<PendingReply, RpcFailure>,
            );
            let (tx, mut rx) = tokio::sync::mpsc::channel::<InFlight>(APPEND_PIPELINE_MAX);
            let id = factory.node_id;
            tokio::spawn(async move {
                let mut input = input;
                while let Some(req) = input.next().await {
                    let prev = req.prev_log_id;
                    let last = req.entries.last().map(|e| e.log_id).or(prev);
                    // The stamp is a promise made before now: true whenever it is sent.
                    let stamp = factory.stamper.latest();
                    let msg = RaftRequest::Append { req, stamp };
                    let pending = factory
                        .rpc
                        .send(target, &node, factory.group, msg, timeout)
                        .await;
                    let failed = pending.is_err();
                    if tx.send((prev, last, pending)).await.is_err() || failed {
                        break;
                    }
                }
            });
            let strm = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).then(
                move |(prev, last, pending)| async move {
                    let reply = match pending {
                        Ok(p) => p.await,
                        Err(e) => Err(e),
                    };
                    match rpc_result(reply, RPCTypes::AppendEntries, id, target)? {
                        RaftResponse::Append(r) => Ok(r.into_stream_result(prev, last)),
                        _ => Err(unexpected()),
                    }
                },
            );
            // End the stream after the first answer that is not a full success: openraft then
            // restarts replication from what the follower reported.
            let strm = strm.scan(false, |stopped, item| {
                if *stopped {
                    return futures::future::ready(None);
                }
                *stopped = !matches!(item, Ok(Ok(_)));
                futures::future::ready(Some(item))
            });
            let strm: BoxStream<'s, _> = Box::pin(strm);
            Ok(strm)
        })
    }

    async fn vote(
        &mut self,
        req: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.send(RaftRequest::Vote(req), option.soft_ttl()).await? {
            RaftResponse::Vote(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    async fn pre_vote(
        &mut self,
        req: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .send(RaftRequest::PreVote(req), option.soft_ttl())
            .await?
        {
            RaftResponse::Vote(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let req = RaftRequest::Snapshot {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot,
        };
        match self.send(req, option.hard_ttl()).await {
            Ok(RaftResponse::Snapshot(r)) => Ok(r),
            Ok(_) => Err(StreamingError::Network(NetworkError::new(
                &AnyError::error("wrong answer to a snapshot"),
            ))),
            Err(RPCError::Timeout(t)) => Err(StreamingError::Timeout(t)),
            Err(RPCError::Unreachable(u)) => Err(StreamingError::Unreachable(u)),
            Err(e) => Err(StreamingError::Network(NetworkError::new(&e))),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .send(RaftRequest::TransferLeader(req), option.soft_ttl())
            .await?
        {
            RaftResponse::TransferLeader(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }
}

/// Hands a received consensus message to the local group and returns its answer. `offset`:
/// the sender's freshness clock as this node knows it (`Err`: why it does not).
pub async fn handle_raft_request(
    raft: &MRaft,
    freshness: &crate::Freshness,
    contact: &crate::LeaderContact,
    offset: impl FnOnce() -> Result<ClockOffset, String>,
    req: RaftRequest,
) -> RaftResponse {
    let stopped = |e: &dyn std::fmt::Display| RaftResponse::NoGroup(format!("group stopped: {e}"));
    match req {
        RaftRequest::Append { req, stamp } => {
            // The leader was heard when its append arrived, not when this replica had flushed
            // it (openraft's lease counts from the arrival too).
            let arrived = tokio::time::Instant::now();
            match raft.append_entries(req).await {
                Ok(resp) => {
                    // Any answer but a higher vote came from a leader this replica follows.
                    if !matches!(resp, openraft::raft::AppendEntriesResponse::HigherVote(_)) {
                        contact.heard_at(arrived);
                    }
                    // A stamp is true whatever this node's log holds: committed entries are
                    // the same on every replica, and applied ones are committed.
                    if let Some(stamp) = stamp {
                        freshness.receive(stamp, offset());
                    }
                    RaftResponse::Append(resp)
                }
                Err(e) => stopped(&e),
            }
        }
        RaftRequest::Vote(req) => match raft.vote(req).await {
            Ok(r) => RaftResponse::Vote(r),
            Err(e) => stopped(&e),
        },
        RaftRequest::PreVote(req) => match raft.pre_vote(req).await {
            Ok(r) => RaftResponse::Vote(r),
            Err(e) => stopped(&e),
        },
        RaftRequest::Snapshot { vote, meta, data } => {
            match raft
                .install_full_snapshot(
                    vote,
                    Snapshot {
                        meta,
                        snapshot: data,
                    },
                )
                .await
            {
                Ok(r) => RaftResponse::Snapshot(r),
                Err(e) => stopped(&e),
            }
        }
        RaftRequest::TransferLeader(req) => match raft.handle_transfer_leader(req).await {
            Ok(r) => RaftResponse::TransferLeader(r),
            Err(e) => stopped(&e),
        },
    }
}
