//! Wiring of `meridian_georep` to this node: shipped batches travel over the peer transport to
//! a node of the destination group (its leader when known), which commits them; anti-entropy's
//! digest and bucket requests go to the other regions' voters in turn.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use meridian_georep::antientropy::{AntiEntropyRpc, BucketPage, Digest};
use meridian_georep::{ShipAck, ShipRpc, ShipperLimits};
use meridian_types::wire::ShipBatch;
use meridian_types::{GroupId, NodeId};

use crate::node::Node;
use crate::peer::{PeerRequest, PeerResponse};
use crate::transport::Endpoint;

pub struct ShipVia {
    pub node: Arc<Node>,
    /// Which voter to try when no leader is known: rotates after each try.
    pub rotation: AtomicUsize,
}

/// Anti-entropy's calls to the other regions' groups: to their voters in turn (any replica's
/// state will do; what it had applied comes with its rows).
pub struct AntiEntropyVia {
    pub node: Arc<Node>,
    pub rotation: AtomicUsize,
}

/// The next voter of `group` in `rotation`'s turn.
fn voter_in_turn(node: &Node, group: GroupId, rotation: &AtomicUsize) -> Result<NodeId, String> {
    let ks = node
        .keyspace_by_id(meridian_types::ids::group_keyspace(group))
        .ok_or_else(|| format!("the keyspace of group {group} is not known here"))?;
    let voters = &ks
        .placement(group)
        .ok_or_else(|| format!("group {group} has no placement yet"))?
        .voters;
    let i = rotation.fetch_add(1, Ordering::Relaxed);
    voters
        .get(i % voters.len().max(1))
        .copied()
        .ok_or_else(|| format!("group {group} has no voters"))
}

/// Where to reach node `id`.
fn endpoint(node: &Node, id: NodeId) -> Result<(Endpoint, String), String> {
    let rec = node
        .catalog_nodes()
        .into_iter()
        .find(|n| n.id == id)
        .ok_or_else(|| format!("node {id} is not in the catalogue"))?;
    Ok((
        Endpoint {
            node: id,
            region: rec.region,
        },
        rec.peer_addr,
    ))
}

impl AntiEntropyVia {
    /// A voter of `group` and where to reach it.
    fn target(&self, group: GroupId) -> Result<(Endpoint, String), String> {
        endpoint(
            &self.node,
            voter_in_turn(&self.node, group, &self.rotation)?,
        )
    }
}

impl AntiEntropyRpc for AntiEntropyVia {
    fn digest(
        &self,
        group: GroupId,
        horizon_ms: u64,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Digest, String>> {
        let node = self.node.clone();
        let target = self.target(group);
        Box::pin(async move {
            let (to, addr) = target?;
            let req = PeerRequest::Digest { group, horizon_ms };
            match node.transport.call(&to, &addr, req, timeout).await {
                Ok(PeerResponse::Digest(Ok(d))) => Ok(d),
                Ok(PeerResponse::Digest(Err(e))) => Err(format!("node {}: {e}", to.node)),
                Ok(_) => Err("peer answered with the wrong message type".into()),
                Err(e) => Err(format!("node {}: {e}", to.node)),
            }
        })
    }

    fn bucket(
        &self,
        group: GroupId,
        bucket: u32,
        after: Option<Vec<u8>>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<BucketPage, String>> {
        let node = self.node.clone();
        let target = self.target(group);
        Box::pin(async move {
            let (to, addr) = target?;
            let req = PeerRequest::Bucket {
                group,
                bucket,
                after,
            };
            match node.transport.call(&to, &addr, req, timeout).await {
                Ok(PeerResponse::Bucket(Ok(p))) => Ok(p),
                Ok(PeerResponse::Bucket(Err(e))) => Err(format!("node {}: {e}", to.node)),
                Ok(_) => Err("peer answered with the wrong message type".into()),
                Err(e) => Err(format!("node {}: {e}", to.node)),
            }
        })
    }
}

/// Shipping limits towards `dest_region`: the answer may take a round trip plus a commit
/// there; waiting much longer only delays the resume after a cut heals.
pub fn limits(node: &Node, dest_region: &str) -> ShipperLimits {
    let rtt = node.matrix.rtt_ms(&node.cfg.region, dest_region);
    ShipperLimits {
        timeout: Duration::from_millis(600 + (2.0 * rtt) as u64),
        ..ShipperLimits::default()
    }
}

impl ShipRpc for ShipVia {
    fn ship(
        &self,
        dest: GroupId,
        hint: Option<NodeId>,
        batch: ShipBatch,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<ShipAck, String>> {
        let node = self.node.clone();
        let target = match hint {
            Some(h) => Ok(h),
            None => voter_in_turn(&node, dest, &self.rotation),
        }
        .and_then(|t| endpoint(&node, t));
        Box::pin(async move {
            let (to, addr) = target?;
            let target = to.node;
            let req = PeerRequest::Ship { dest, batch };
            match node.transport.call(&to, &addr, req, timeout).await {
                Ok(PeerResponse::Ship(Ok((accepted, cursor, leader)))) => Ok(ShipAck {
                    accepted,
                    cursor,
                    leader: Some(leader),
                }),
                Ok(PeerResponse::Ship(Err(e))) => Err(format!("node {target}: {e}")),
                Ok(_) => Err("peer answered with the wrong message type".into()),
                Err(e) => Err(format!("node {target}: {e}")),
            }
        })
    }
}
