//! Wiring of `meridian_georep` to this node: shipped batches travel over the peer transport to
//! a node of the destination group (its leader when known), which commits them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
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
        let target = hint.or_else(|| {
            let ks = node.keyspace_by_id(meridian_types::ids::group_keyspace(dest))?;
            let voters = &ks.placement(dest)?.voters;
            let i = self.rotation.fetch_add(1, Ordering::Relaxed);
            voters.get(i % voters.len().max(1)).copied()
        });
        Box::pin(async move {
            let target = target.ok_or_else(|| format!("no node of group {dest} is known yet"))?;
            let rec = node
                .catalog_nodes()
                .into_iter()
                .find(|n| n.id == target)
                .ok_or_else(|| format!("node {target} is not in the catalogue"))?;
            let to = Endpoint {
                node: target,
                region: rec.region,
            };
            let req = PeerRequest::Ship { dest, batch };
            match node.transport.call(&to, &rec.peer_addr, req, timeout).await {
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
