//! Identifiers of nodes, keyspaces and consensus groups, and the key-to-shard hash.

/// A node's id, unique in the cluster and stable across restarts (it names the data directory's
/// owner in every consensus group).
pub type NodeId = u64;

/// A keyspace's id: 48 bits derived from its name, so every node computes it without a counter.
pub type KeyspaceId = u64;

/// A consensus group's id: the keyspace id in the high 48 bits and the shard in the low 16.
pub type GroupId = u64;

/// The metadata group: topology and keyspace catalogue. Keyspace id 0 is reserved for it.
pub const META_GROUP: GroupId = 0;

const SHARD_BITS: u32 = 16;

/// The keyspace id of a name: a 48-bit hash, never 0 (0 is the metadata group).
pub fn keyspace_id(name: &str) -> KeyspaceId {
    let h = xxhash_rust::xxh3::xxh3_64(name.as_bytes()) >> SHARD_BITS;
    if h == 0 {
        1
    } else {
        h
    }
}

/// The group that replicates `shard` of sync keyspace `id` at its first epoch.
pub fn group_id(id: KeyspaceId, shard: u16) -> GroupId {
    sync_group_id(id, shard, 0)
}

/// Promotions a sync keyspace may go through: its epoch is in bits 8..15 of its groups' ids.
pub const EPOCH_MAX: u64 = 127;

/// The group that replicates `shard` of sync keyspace `id` at epoch `epoch`: a promotion starts
/// a new group per shard, so every message, forwarded request and stored key of a group names
/// its epoch, and nothing of an older epoch can reach a newer epoch's group (fencing).
pub fn sync_group_id(id: KeyspaceId, shard: u16, epoch: u64) -> GroupId {
    assert!(shard < 256, "a keyspace has at most 256 shards");
    assert!(
        epoch <= EPOCH_MAX,
        "a keyspace is promoted at most {EPOCH_MAX} times"
    );
    (id << SHARD_BITS) | (epoch << 8) | u64::from(shard)
}

/// The epoch of a sync group (0 for the metadata group and async groups).
pub fn group_epoch(group: GroupId) -> u64 {
    if group == META_GROUP || is_async_group(group) {
        return 0;
    }
    (group >> 8) & 0x7f
}

/// Marks the group of an async keyspace: one group per (region, shard), the region's index
/// in the policy's `regions` in bits 8..15 and the shard in bits 0..7 (a keyspace has at most
/// 256 shards, see `SHARDS_MAX`).
const ASYNC_BIT: u64 = 0x8000;
/// Regions an async keyspace may list (the index must fit in 7 bits).
pub const ASYNC_REGIONS_MAX: usize = 127;

/// The group that holds `shard` of async keyspace `id` in the region at `region_index` of the
/// policy's `regions`.
pub fn async_group_id(id: KeyspaceId, region_index: usize, shard: u16) -> GroupId {
    assert!(
        region_index < ASYNC_REGIONS_MAX,
        "an async keyspace lists at most {ASYNC_REGIONS_MAX} regions"
    );
    assert!(shard < 256, "an async keyspace has at most 256 shards");
    (id << SHARD_BITS) | ASYNC_BIT | ((region_index as u64) << 8) | u64::from(shard)
}

/// Whether `group` belongs to an async keyspace (its state machine merges by HLC).
pub fn is_async_group(group: GroupId) -> bool {
    group != META_GROUP && group & ASYNC_BIT != 0
}

/// The index in `regions` of an async group's region.
pub fn async_region_index(group: GroupId) -> usize {
    debug_assert!(is_async_group(group));
    ((group >> 8) & 0x7f) as usize
}

/// The keyspace id of a group.
pub fn group_keyspace(group: GroupId) -> KeyspaceId {
    group >> SHARD_BITS
}

/// The shard of a group.
pub fn group_shard(group: GroupId) -> u16 {
    // Async groups keep the region in bits 8..15, sync groups the epoch.
    (group & 0xff) as u16
}

/// The shard a key lives in: a stable 64-bit hash of the key modulo the shard count.
pub fn shard_for_key(key: &[u8], shard_count: u16) -> u16 {
    assert!(shard_count > 0, "a keyspace has at least one shard");
    (xxhash_rust::xxh3::xxh3_64(key) % u64::from(shard_count)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: group ids round-trip their shard and never collide with the metadata group.
    #[test]
    fn group_ids_keep_shard_and_avoid_meta() {
        let id = keyspace_id("orders");
        assert_ne!(id, 0);
        for shard in [0u16, 1, 3, 255] {
            let g = group_id(id, shard);
            assert_ne!(g, META_GROUP);
            assert_eq!(group_shard(g), shard);
            for epoch in [1, 2, EPOCH_MAX] {
                let e = sync_group_id(id, shard, epoch);
                assert!(!is_async_group(e));
                assert_eq!((group_shard(e), group_epoch(e)), (shard, epoch));
                assert_eq!(group_keyspace(e), id);
                assert_ne!(e, g);
            }
        }
    }

    // Goal: async groups keep keyspace, region and shard apart, and never look like sync
    // groups or the metadata group.
    #[test]
    fn async_group_ids_round_trip() {
        let id = keyspace_id("carts");
        let mut seen = std::collections::BTreeSet::new();
        for region in [0usize, 1, 2, 126] {
            for shard in [0u16, 1, 255] {
                let g = async_group_id(id, region, shard);
                assert!(is_async_group(g));
                assert_eq!(async_region_index(g), region);
                assert_eq!(group_shard(g), shard);
                assert_eq!(group_keyspace(g), id);
                assert!(seen.insert(g));
            }
        }
        assert!(!is_async_group(group_id(id, 3)));
        assert!(!is_async_group(META_GROUP));
    }

    // Goal: keys spread over every shard, so no shard is left empty by the hash.
    #[test]
    fn keys_spread_over_shards() {
        let mut seen = [0u32; 4];
        for i in 0..1000 {
            seen[shard_for_key(format!("key-{i}").as_bytes(), 4) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 150), "uneven spread: {seen:?}");
    }
}
