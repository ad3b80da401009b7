//! The process's Prometheus recorder. Every metric carries a `node` label, so several nodes in
//! one process (the demo) stay apart.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

const LATENCY_BUCKETS_S: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0,
    2.0, 5.0, 10.0, 30.0, 60.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Installs the recorder once per process and starts its upkeep; later calls are no-ops.
pub fn install() {
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS_S)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), BATCH_BUCKETS)
            })
            .expect("bucket lists are non-empty")
            .install_recorder()
            .expect("no other metrics recorder is installed");
        describe();
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(5));
                upkeep.run_upkeep();
            })
            .expect("spawn metrics upkeep");
        handle
    });
}

/// Help text for every metric the node exports (Prometheus tooling expects it).
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_histogram!(
        "meridian_request_duration_seconds",
        Unit::Seconds,
        "Client request latency at the node that received it, by operation, keyspace, consistency (writes: linearizable, or async for async keyspaces), serving region and outcome."
    );
    describe_gauge!(
        "meridian_leaders",
        "Shard groups this node leads (sum by region for leaders per region)."
    );
    describe_histogram!(
        "meridian_fsync_seconds",
        Unit::Seconds,
        "Duration of one durable storage commit (one fsync) of the group committer."
    );
    describe_histogram!(
        "meridian_group_commit_batch_size",
        "Write batches merged into one storage commit (one fsync)."
    );
    describe_gauge!(
        "meridian_replication_lag_seconds",
        Unit::Seconds,
        "Worst staleness of the leader state applied on this node's replicas, by leader region (source) and replica region (destination); NaN when no longer measured."
    );
    describe_gauge!(
        "meridian_replication_lag_entries",
        "Worst number of log entries followers lack, measured on this node's leaders, by leader region (source) and follower region (destination); NaN when no longer measured."
    );
    describe_gauge!(
        "meridian_clock_offset_seconds",
        Unit::Seconds,
        "A peer's clock minus this node's, estimated at the midpoint of a probe's round trip."
    );
    describe_gauge!(
        "meridian_clock_offset_max_seconds",
        Unit::Seconds,
        "Largest absolute clock offset from this node to any reachable peer."
    );
    describe_gauge!(
        "meridian_peer_rtt_seconds",
        Unit::Seconds,
        "Round-trip time of the last probe to each peer, through the transport (WAN model included)."
    );
    describe_counter!(
        "meridian_failovers_total",
        "Leaderships this node took over from a leader that had gone silent, by keyspace and region."
    );
    describe_histogram!(
        "meridian_failover_rto_seconds",
        Unit::Seconds,
        "Time from the old leader's last message to this node leading the group after a failover."
    );
    describe_gauge!(
        "meridian_async_lag_seconds",
        Unit::Seconds,
        "Async keyspaces: age of the oldest write committed in the source region and not yet applied in the destination region, worst over the shards this node leads."
    );
    describe_gauge!(
        "meridian_async_lag_entries",
        "Async keyspaces: log entries of the source region's groups the destination region has not acknowledged, worst over the shards this node leads."
    );
    describe_histogram!(
        "meridian_async_delivery_seconds",
        Unit::Seconds,
        "Async keyspaces: delay from a write's HLC to its commit in the destination region, for writes this node committed as destination."
    );
    describe_counter!(
        "meridian_hlc_skew_alarms_total",
        "Shipped writes whose HLC was further ahead of this node's clock than max_clock_offset_ms (applied all the same)."
    );
    describe_counter!(
        "meridian_antientropy_repairs_total",
        "Keys anti-entropy repaired in dest_region from source_region: replicas that had diverged in spite of shipping (0 while shipping is correct)."
    );
    describe_counter!(
        "meridian_tombstones_purged_total",
        "Delete tombstones removed once every other region had shipped past them."
    );
    describe_counter!(
        "meridian_lag_budget_exceeded_total",
        "Async writes accepted while replication to some region was over the keyspace's lag_budget_ms, by the action taken."
    );
    describe_counter!(
        "meridian_conflicts_total",
        "Concurrent writes an async keyspace resolved, by keyspace, rule (lww, mv, set), the losing or sibling write's origin region and the detecting (dest) region."
    );
    describe_gauge!(
        "meridian_region_health",
        "Each region's health as this node judges it: 0 healthy, 1 degraded, 2 down."
    );
    describe_counter!(
        "meridian_failover_decisions_total",
        "Failover decisions this node committed to the decision log, by action."
    );
    describe_gauge!(
        "meridian_promotion_lost_entries",
        "Committed entries of the old home a promotion is known to have lost (a lower bound until the old home returns), by keyspace and epoch."
    );
    describe_gauge!(
        "meridian_promotion_lost_writes",
        "Writes in a promotion's exact lost tail, as the returning old home reported them, by keyspace, epoch and shard."
    );
    describe_counter!(
        "meridian_audit_entries_total",
        "Audit log entries this node appended, by outcome (allowed, denied, failed)."
    );
    describe_counter!(
        "meridian_audit_unrecorded_total",
        "Administrative requests whose audit entry was not recorded (denied beyond the rate bound, queue full, or the metadata group unreachable)."
    );
    describe_counter!(
        "meridian_auth_refused_total",
        "Requests refused for want of a valid token (status 401) or of a permission (403)."
    );
    describe_counter!(
        "meridian_connections_refused_total",
        "Client connections closed on accept for exceeding the per-address or per-listener bound, by listener."
    );
    describe_counter!(
        "meridian_peer_tls_refused_total",
        "Peer connections refused under mutual TLS, by side: accept (handshake or certificate names no node), dial (the dialed peer's certificate), catalogue (certified region differs from the catalogue's), identity (a frame from another sender than the certificate names)."
    );
    describe_counter!(
        "meridian_tls_handshakes_failed_total",
        "Client TLS handshakes that failed or timed out on the HTTP and gRPC ports, by listener."
    );
    describe_counter!(
        "meridian_encryption_rotations_total",
        "Data key rotations on this node (encryption at rest)."
    );
    describe_counter!(
        "meridian_tls_reloads_total",
        "Reloads of changed TLS certificate files, by outcome (ok, or failed: the previous files stay in use)."
    );
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    HANDLE.get().map(|h| h.render()).unwrap_or_default()
}
