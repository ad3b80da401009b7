//! The async state machine's shipping rules, applied entry by entry: a shipped batch that would
//! leave a gap after the cursor is refused; writes at or below the cursor are skipped (nothing
//! applies twice); the cursor moves in the same commit as the data; last-writer-wins keeps the
//! higher HLC whatever arrives later, a delete included; the last local write and the highest
//! HLC are recorded for sessions and stamping.

use std::io;
use std::sync::Arc;

use meridian_consensus::state_machine::{self, StateMachine};
use meridian_consensus::TypeConfig;
use meridian_crdt::{Hlc, RegionTag};
use meridian_storage::{GroupCommitter, MemEngine, SharedEngine};
use meridian_types::ids::{async_group_id, keyspace_id};
use meridian_types::wire::{Command, ShipBatch, Shipped};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::testing::log_id;

type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;

fn hlc(t: u64, region: &str) -> Hlc {
    Hlc {
        physical_ms: t,
        logical: 0,
        origin: RegionTag::of(region),
    }
}

fn shipped(index: u64, key: &str, value: Option<&str>, t: u64) -> Shipped {
    Shipped {
        index,
        key: key.as_bytes().to_vec(),
        value: value.map(|v| v.as_bytes().to_vec()),
        hlc: hlc(t, "us-east-1"),
        vv: Default::default(),
        seen: Default::default(),
        typed: None,
    }
}

async fn apply(sm: &mut StateMachine, index: u64, cmd: Command) {
    let entry = Entry::new_normal(log_id::<TypeConfig>(1, 1, index), cmd);
    let items: Vec<io::Result<EntryResponder<TypeConfig>>> = vec![Ok((entry, None))];
    sm.apply(futures::stream::iter(items)).await.unwrap();
}

/// A state machine for the second region's group of keyspace "carts" (shard 0), on a memory
/// engine: (engine, state machine, the first region's group, its own group).
fn setup() -> (SharedEngine, StateMachine, u64, u64) {
    let ks = keyspace_id("carts");
    let (source, dest) = (async_group_id(ks, 0, 0), async_group_id(ks, 1, 0));
    let (engine, sm) = replica(dest);
    (engine, sm, source, dest)
}

/// A replica of `group` on its own memory engine.
fn replica(group: u64) -> (SharedEngine, StateMachine) {
    let engine: SharedEngine = Arc::new(MemEngine::new());
    let committer = GroupCommitter::start(engine.clone(), "test".into());
    (engine.clone(), StateMachine::new(group, committer))
}

/// A shipped batch of `source`'s log from `from` to `to`.
fn ship(source: u64, from: u64, to: u64, writes: Vec<Shipped>) -> Command {
    Command::Ship(ShipBatch {
        source,
        from,
        to,
        writes,
        state: false,
        fresh: None,
    })
}

fn value(engine: &SharedEngine, group: u64, key: &str) -> Option<String> {
    state_machine::read(engine, group, key.as_bytes())
        .unwrap()
        .map(|v| String::from_utf8(v).unwrap())
}

// Goal: the rules in the module doc, each observed in storage after the entry that exercises it.
#[tokio::test]
async fn shipped_batches_apply_in_order_once_and_merge_by_hlc() {
    let (engine, mut sm, source, dest) = setup();
    let batch = |from, to, writes| ship(source, from, to, writes);

    apply(
        &mut sm,
        1,
        batch(
            1,
            3,
            vec![
                shipped(1, "a", Some("1"), 10),
                shipped(3, "b", Some("2"), 12),
            ],
        ),
    )
    .await;
    assert_eq!(state_machine::cursor(&engine, dest, source).unwrap(), 3);
    assert_eq!(value(&engine, dest, "a").as_deref(), Some("1"));

    // Overlapping batch: index 3 is skipped (b is not rewritten), index 5 deletes a.
    apply(
        &mut sm,
        2,
        batch(
            2,
            5,
            vec![
                shipped(3, "b", Some("stale"), 12),
                shipped(5, "a", None, 15),
            ],
        ),
    )
    .await;
    assert_eq!(state_machine::cursor(&engine, dest, source).unwrap(), 5);
    assert_eq!(value(&engine, dest, "b").as_deref(), Some("2"));
    assert_eq!(value(&engine, dest, "a"), None, "the delete applied");

    // A gap (cursor 5, batch from 7): refused, nothing changes.
    apply(
        &mut sm,
        3,
        batch(7, 8, vec![shipped(8, "c", Some("3"), 20)]),
    )
    .await;
    assert_eq!(state_machine::cursor(&engine, dest, source).unwrap(), 5);
    assert_eq!(
        value(&engine, dest, "c"),
        None,
        "a batch past a gap is not applied"
    );

    // A local write stamped below the delete loses: the tombstone's HLC is higher.
    let old = Command::Write {
        key: b"a".to_vec(),
        value: Some(b"old".to_vec()),
        hlc: hlc(11, "eu-west-1"),
        seen: Default::default(),
    };
    apply(&mut sm, 4, old).await;
    let a = state_machine::read_versioned(&engine, dest, b"a")
        .unwrap()
        .unwrap();
    assert!(a.is_tombstone() && a.hlc == hlc(15, "us-east-1"), "{a:?}");
    let newer = Command::Write {
        key: b"a".to_vec(),
        value: Some(b"new".to_vec()),
        hlc: hlc(16, "eu-west-1"),
        seen: Default::default(),
    };
    apply(&mut sm, 5, newer).await;
    assert_eq!(value(&engine, dest, "a").as_deref(), Some("new"));
    assert_eq!(state_machine::last_write(&engine, dest).unwrap(), 5);
    assert_eq!(
        state_machine::hlc_max(&engine, dest).unwrap(),
        Some(hlc(16, "eu-west-1"))
    );
    assert_eq!(
        state_machine::cursors(&engine, dest).unwrap(),
        vec![(source, 5)]
    );
}

// Goal: a repair merges last-writer-wins like a shipped write (an older version changes
// nothing, a tombstone is kept) and moves no cursor.
#[tokio::test]
async fn repairs_merge_and_leave_cursors_alone() {
    let (engine, mut sm, peer, dest) = setup();
    let write = |key: &str, value: Option<&str>, t| Command::Write {
        key: key.as_bytes().to_vec(),
        value: value.map(|v| v.as_bytes().to_vec()),
        hlc: hlc(t, "eu-west-1"),
        seen: Default::default(),
    };
    apply(&mut sm, 1, write("a", Some("local"), 100)).await;
    apply(&mut sm, 2, write("b", Some("local"), 300)).await;
    let repair = |source, writes| Command::Repair { source, writes };
    apply(
        &mut sm,
        3,
        repair(
            peer,
            vec![
                shipped(0, "a", Some("newer"), 200),
                shipped(0, "b", Some("older"), 200),
                shipped(0, "c", None, 200),
            ],
        ),
    )
    .await;
    assert_eq!(value(&engine, dest, "a").as_deref(), Some("newer"));
    assert_eq!(value(&engine, dest, "b").as_deref(), Some("local"));
    let c = state_machine::read_versioned(&engine, dest, b"c").unwrap();
    assert!(c.is_some_and(|v| v.is_tombstone()), "the tombstone is kept");
    assert_eq!(state_machine::cursor(&engine, dest, peer).unwrap(), 0);
}

// Goal: a purge removes a tombstone only once the source has shipped a write with an HLC at
// least the tombstone's, and only if the tombstone is still the key's version.
#[tokio::test]
async fn purges_wait_for_every_source_and_spare_newer_versions() {
    let (engine, mut sm, source, dest) = setup();
    let ship = |from, to, writes| ship(source, from, to, writes);
    // Tombstones at 100, 200 (then overwritten here) and 300; the source has shipped up to
    // HLC 300.
    apply(
        &mut sm,
        1,
        ship(
            1,
            4,
            vec![
                shipped(1, "old", None, 100),
                shipped(2, "revived", None, 200),
                shipped(3, "young", None, 300),
            ],
        ),
    )
    .await;
    // A local write brings one key back.
    let revive = Command::Write {
        key: b"revived".to_vec(),
        value: Some(b"back".to_vec()),
        hlc: hlc(250, "eu-west-1"),
        seen: Default::default(),
    };
    apply(&mut sm, 2, revive).await;
    let src = state_machine::src_hlcs(&engine, dest).unwrap();
    assert_eq!(src.get(&source), Some(&hlc(300, "us-east-1")));
    // Purge the three with their tombstone stamps.
    let purge = Command::Purge {
        sources: vec![source],
        tombstones: vec![
            (b"old".to_vec(), hlc(100, "us-east-1")),
            (b"revived".to_vec(), hlc(200, "us-east-1")),
            (b"young".to_vec(), hlc(300, "us-east-1")),
        ],
    };
    apply(&mut sm, 3, purge).await;
    let row = |k: &str| state_machine::read_versioned(&engine, dest, k.as_bytes()).unwrap();
    assert_eq!(
        row("old"),
        None,
        "a tombstone every source passed is purged"
    );
    assert_eq!(
        row("young"),
        None,
        "the source's own latest write counts as passed"
    );
    assert_eq!(value(&engine, dest, "revived").as_deref(), Some("back"));
    // A source that has shipped nothing holds every tombstone back.
    let other = async_group_id(keyspace_id("carts"), 2, 0);
    apply(&mut sm, 4, ship(5, 6, vec![shipped(6, "late", None, 400)])).await;
    let held = Command::Purge {
        sources: vec![source, other],
        tombstones: vec![(b"late".to_vec(), hlc(400, "us-east-1"))],
    };
    apply(&mut sm, 5, held).await;
    assert!(row("late").is_some_and(|v| v.is_tombstone()));
}

// Goal: an lww write that had not seen the stored winner is a conflict, recorded once in the
// ledger and returned in the result; a write that had seen it is not.
#[tokio::test]
async fn concurrent_lww_writes_are_recorded_in_the_ledger() {
    let (engine, mut sm, source, dest) = setup();
    let local = |value: &str, t, seen| Command::Write {
        key: b"k".to_vec(),
        value: Some(value.as_bytes().to_vec()),
        hlc: hlc(t, "eu-west-1"),
        seen,
    };
    apply(&mut sm, 1, local("here", 10, Default::default())).await;
    // The source's write of index 1 had seen nothing of this region: concurrent.
    let mut theirs = shipped(1, "k", Some("there"), 20);
    theirs.vv.add(meridian_crdt::Dot {
        region: RegionTag::of("us-east-1"),
        n: 1,
    });
    theirs.seen = theirs.vv.clone();
    apply(&mut sm, 2, ship(source, 1, 1, vec![theirs])).await;
    assert_eq!(value(&engine, dest, "k").as_deref(), Some("there"));
    let entries = meridian_consensus::ledger::entries(&engine, dest, 0, 10).unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].outcome, meridian_crdt::Outcome::BWon);
    assert_eq!(entries[0].a.value.as_deref(), Some(b"here".as_slice()));
    // A local write that read the merged row has seen both: no conflict.
    let seen = state_machine::read_versioned(&engine, dest, b"k")
        .unwrap()
        .unwrap()
        .context();
    apply(&mut sm, 3, local("after", 30, seen)).await;
    assert_eq!(value(&engine, dest, "k").as_deref(), Some("after"));
    assert_eq!(
        meridian_consensus::ledger::entries(&engine, dest, 0, 10)
            .unwrap()
            .len(),
        1
    );
}

// Goal: counter updates apply locally and a shipped counter state joins without counting an
// update twice; a set update renders sorted members; a sync counter is a decimal in place.
#[tokio::test]
async fn typed_updates_apply_and_shipped_states_join() {
    let (engine, mut sm, source, dest) = setup();
    let incr = |by, t| Command::Update {
        key: b"views".to_vec(),
        op: meridian_crdt::Op::Incr(by),
        hlc: Some(hlc(t, "eu-west-1")),
    };
    apply(&mut sm, 1, incr(5, 10)).await;
    apply(&mut sm, 2, incr(2, 11)).await;
    assert_eq!(value(&engine, dest, "views").as_deref(), Some("7"));
    // The source's counter after its own +10, shipped twice (a retry).
    let (theirs, _) = meridian_crdt::row::apply_op(
        None,
        RegionTag::of("us-east-1"),
        hlc(12, "us-east-1"),
        &meridian_crdt::Op::Incr(10),
    )
    .unwrap();
    let mut w = shipped(1, "views", None, 12);
    w.typed = theirs.typed;
    apply(&mut sm, 3, ship(source, 1, 1, vec![w.clone()])).await;
    apply(
        &mut sm,
        4,
        Command::Repair {
            source,
            writes: vec![w],
        },
    )
    .await;
    assert_eq!(value(&engine, dest, "views").as_deref(), Some("17"));
    let set = Command::Update {
        key: b"cart".to_vec(),
        op: meridian_crdt::Op::Set {
            add: vec![b"pear".to_vec(), b"apple".to_vec()],
            remove: vec![],
        },
        hlc: Some(hlc(13, "eu-west-1")),
    };
    apply(&mut sm, 5, set).await;
    assert_eq!(
        value(&engine, dest, "cart").as_deref(),
        Some(r#"["apple","pear"]"#)
    );

    let committer = GroupCommitter::start(engine.clone(), "sync".into());
    let sync = meridian_types::ids::group_id(keyspace_id("hits"), 0);
    let mut sm = StateMachine::new(sync, committer);
    let sync_incr = |by| Command::Update {
        key: b"n".to_vec(),
        op: meridian_crdt::Op::Incr(by),
        hlc: None,
    };
    apply(&mut sm, 1, sync_incr(i64::MAX)).await;
    apply(&mut sm, 2, sync_incr(1)).await;
    apply(&mut sm, 3, sync_incr(-3)).await;
    assert_eq!(
        value(&engine, sync, "n"),
        Some((i64::MAX - 3).to_string()),
        "the overflowing update was refused"
    );
}

/// A write of `region`'s log at `index`, stamped `t`, that had seen `seen` (its dot is added).
fn shipped_from(
    region: &str,
    index: u64,
    key: &str,
    value: Option<&str>,
    t: u64,
    seen: &[(&str, u64)],
) -> Shipped {
    let mut vv = meridian_crdt::VersionVector::new();
    for (r, n) in seen.iter().chain([(region, index)].iter()) {
        vv.add(meridian_crdt::Dot {
            region: RegionTag::of(r),
            n: *n,
        });
    }
    Shipped {
        index,
        key: key.as_bytes().to_vec(),
        value: value.map(|v| v.as_bytes().to_vec()),
        hlc: hlc(t, region),
        vv: vv.clone(),
        seen: vv,
        typed: None,
    }
}

// Goal (simulator seed 6385, async): eu-west-1 deletes k (tombstone T) while us-west-2 writes
// it (W, concurrent, higher HLC). A region that purged T before W arrived and one that merged
// T after W agree on the winner and its vector, though not on `seen`; and a later write stamped
// in the purging region still covers T, so a region that holds T yet records no conflict.
#[tokio::test]
async fn a_purge_before_a_concurrent_write_keeps_what_the_tombstone_decides() {
    let ks = keyspace_id("carts");
    let (eu, usw) = (async_group_id(ks, 1, 0), async_group_id(ks, 2, 0));
    let t = || shipped_from("eu-west-1", 102, "k", None, 100, &[]);
    let w = || shipped_from("us-west-2", 113, "k", Some("w"), 160, &[]);

    // us-east-1 (group of region 0): T, then a write of us-west-2 past T's stamp, the purge,
    // then W.
    let east = async_group_id(ks, 0, 0);
    let (engine_east, mut sm) = replica(east);
    apply(&mut sm, 1, ship(eu, 1, 102, vec![t()])).await;
    let past = shipped_from("us-west-2", 110, "other", Some("o"), 150, &[]);
    apply(&mut sm, 2, ship(usw, 1, 110, vec![past])).await;
    let purge = Command::Purge {
        sources: vec![eu, usw],
        tombstones: vec![(b"k".to_vec(), hlc(100, "eu-west-1"))],
    };
    apply(&mut sm, 3, purge).await;
    assert_eq!(
        state_machine::read_versioned(&engine_east, east, b"k").unwrap(),
        None,
        "T is purged"
    );
    apply(&mut sm, 4, ship(usw, 111, 113, vec![w()])).await;
    let here = state_machine::read_versioned(&engine_east, east, b"k")
        .unwrap()
        .unwrap();

    // eu-west-1's view of the same shard elsewhere: W first, then T (no purge).
    let (other_engine, mut other) = replica(east);
    apply(&mut other, 1, ship(usw, 1, 113, vec![w()])).await;
    apply(&mut other, 2, ship(eu, 1, 102, vec![t()])).await;
    let there = state_machine::read_versioned(&other_engine, east, b"k")
        .unwrap()
        .unwrap();
    assert_eq!(here.replicated(), there.replicated(), "the same winner");
    assert_ne!(here.seen, there.seen, "the purging region knows less of k");
    assert!(!meridian_crdt::row::changes(Some(&here), &there));

    // A write stamped in the purging region has seen T all the same.
    let stamped = state_machine::write_context(&engine_east, east, b"k").unwrap();
    assert!(stamped.covers(&t().vv), "{stamped:?}");
    assert!(!here.seen.covers(&t().vv), "the row alone would not");

    // A third replica that holds T only: the write from the purging region is no conflict.
    let third_group = async_group_id(ks, 3, 0);
    let (third_engine, mut third) = replica(third_group);
    apply(&mut third, 1, ship(eu, 1, 102, vec![t()])).await;
    let mut n = shipped_from("us-east-1", 7, "k", Some("n"), 200, &[]);
    n.vv.merge(&stamped);
    n.seen = n.vv.clone();
    apply(&mut third, 2, ship(east, 1, 7, vec![n])).await;
    let entries = meridian_consensus::ledger::entries(&third_engine, third_group, 0, 10).unwrap();
    assert!(entries.is_empty(), "a spurious conflict: {entries:?}");
}
