//! Key layout in the shared engine: every key starts with its group id (8 bytes, big endian), so
//! one group's log, metadata and data are contiguous ranges.

use meridian_types::GroupId;

pub const META_VOTE: &[u8] = b"vote";
pub const META_PURGED: &[u8] = b"purged";
pub const META_APPLIED: &[u8] = b"applied";
pub const META_SNAPSHOT: &[u8] = b"snapshot";
/// Async groups' replicated state beside the data, under one prefix so snapshots carry it:
/// the highest HLC applied, and one cursor per source group.
pub const META_GEO: &[u8] = b"g/";
pub const META_HLC_MAX: &[u8] = b"g/hlc_max";
/// The log index of the last write (not shipped batch, blank or membership) applied.
pub const META_LAST_WRITE: &[u8] = b"g/last_write";

/// The meta tag of the latest freshness promise of source group `source` that the cursor
/// covers, in an async group.
pub fn fresh_tag(source: GroupId) -> Vec<u8> {
    [b"g/fresh/".as_slice(), &source.to_be_bytes()].concat()
}

/// The meta tag of the highest HLC of source group `source`'s writes that an async group has
/// applied by shipping (HLCs grow along a group's log, so every earlier one is applied too).
pub fn src_hlc_tag(source: GroupId) -> Vec<u8> {
    [b"g/src_hlc/".as_slice(), &source.to_be_bytes()].concat()
}

/// The meta tag of the cursor of source group `source` in an async group.
pub fn cursor_tag(source: GroupId) -> Vec<u8> {
    [b"g/cursor/".as_slice(), &source.to_be_bytes()].concat()
}

pub fn group_prefix(group: GroupId) -> Vec<u8> {
    group.to_be_bytes().to_vec()
}

/// The first key after every key of `group`.
pub fn group_end(group: GroupId) -> Vec<u8> {
    match group.checked_add(1) {
        Some(next) => next.to_be_bytes().to_vec(),
        None => vec![0xff; 9],
    }
}

pub fn log_key(group: GroupId, index: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    k.extend_from_slice(&group.to_be_bytes());
    k.extend_from_slice(&index.to_be_bytes());
    k
}

pub fn log_index_of(key: &[u8]) -> u64 {
    u64::from_be_bytes(key[8..16].try_into().expect("log keys are 16 bytes"))
}

pub fn meta_key(group: GroupId, tag: &[u8]) -> Vec<u8> {
    [group.to_be_bytes().as_slice(), tag].concat()
}

pub fn data_key(group: GroupId, key: &[u8]) -> Vec<u8> {
    [group.to_be_bytes().as_slice(), key].concat()
}

/// The user key of a data key.
pub fn user_key(data_key: &[u8]) -> &[u8] {
    &data_key[8..]
}

/// The meta tag of request id `id`'s record (its first outcome) in a group.
pub fn request_tag(id: &[u8]) -> Vec<u8> {
    [b"g/req/".as_slice(), id].concat()
}

/// The meta tag of request id `id` in the group's index by time (oldest first).
pub fn request_time_tag(at_ms: u64, id: &[u8]) -> Vec<u8> {
    [b"g/reqt/".as_slice(), &at_ms.to_be_bytes(), id].concat()
}

pub const REQUEST_TIME_PREFIX: &[u8] = b"g/reqt/";
/// How many request id records the group holds.
pub const META_REQUEST_COUNT: &[u8] = b"g/req_count";

/// The join of the histories of every tombstone an async group purged.
pub const META_PURGED_SEEN: &[u8] = b"g/purged_seen";
