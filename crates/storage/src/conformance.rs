//! The storage conformance suite: every engine runs it (see `tests/conformance.rs`).
//!
//! `open(dir)` must open the engine's state in `dir`, creating it when absent. Engines without
//! durable files (the memory engine) pass `reopens = false` and skip the reopen checks.

use std::path::Path;
use std::sync::Arc;

use crate::{prefix_end, Engine, Table, WriteBatch};

/// Runs every check against engines made by `open`.
pub fn run_all(dir: &Path, reopens: bool, open: &dyn Fn(&Path) -> Arc<dyn Engine>) {
    put_get_delete(&*open(&dir.join("a")));
    tables_are_separate(&*open(&dir.join("b")));
    scan_is_ordered_bounded_and_limited(&*open(&dir.join("c")));
    delete_range_removes_exactly_the_range(&*open(&dir.join("d")));
    batches_apply_in_order(&*open(&dir.join("e")));
    last_finds_greatest_key_in_range(&*open(&dir.join("f")));
    scan_consistent_reads_every_range(&*open(&dir.join("h")));
    deferred_commits_are_visible_at_once(&*open(&dir.join("i")));
    rewrite_replaces_in_chunks_and_resumes(&*open(&dir.join("k")));
    if reopens {
        commits_survive_reopen(&dir.join("g"), open);
        deferred_commits_survive_reopen_after_a_durable_one(&dir.join("j"), open);
    }
}

fn put(engine: &dyn Engine, table: Table, key: &[u8], value: &[u8]) {
    let mut b = WriteBatch::default();
    b.put(table, key.to_vec(), value.to_vec());
    engine.commit(&[b]).unwrap();
}

fn put_get_delete(engine: &dyn Engine) {
    assert_eq!(engine.get(Table::Data, b"k").unwrap(), None);
    put(engine, Table::Data, b"k", b"v1");
    assert_eq!(engine.get(Table::Data, b"k").unwrap(), Some(b"v1".to_vec()));
    put(engine, Table::Data, b"k", b"v2");
    assert_eq!(engine.get(Table::Data, b"k").unwrap(), Some(b"v2".to_vec()));
    let mut b = WriteBatch::default();
    b.delete(Table::Data, b"k".to_vec());
    engine.commit(&[b]).unwrap();
    assert_eq!(engine.get(Table::Data, b"k").unwrap(), None);
    // An empty value is a value, not an absence.
    put(engine, Table::Data, b"empty", b"");
    assert_eq!(engine.get(Table::Data, b"empty").unwrap(), Some(Vec::new()));
}

fn tables_are_separate(engine: &dyn Engine) {
    put(engine, Table::Log, b"k", b"log");
    put(engine, Table::Meta, b"k", b"meta");
    assert_eq!(engine.get(Table::Data, b"k").unwrap(), None);
    assert_eq!(engine.get(Table::Log, b"k").unwrap(), Some(b"log".to_vec()));
    assert_eq!(
        engine.get(Table::Meta, b"k").unwrap(),
        Some(b"meta".to_vec())
    );
}

fn scan_is_ordered_bounded_and_limited(engine: &dyn Engine) {
    let mut b = WriteBatch::default();
    for k in ["b2", "a1", "b1", "b3", "c1"] {
        b.put(Table::Data, k.as_bytes().to_vec(), k.as_bytes().to_vec());
    }
    engine.commit(&[b]).unwrap();
    let end = prefix_end(b"b").unwrap();
    let keys: Vec<Vec<u8>> = engine
        .scan(Table::Data, b"b", &end, 10)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec![b"b1".to_vec(), b"b2".to_vec(), b"b3".to_vec()]);
    assert_eq!(engine.scan(Table::Data, b"b", &end, 2).unwrap().len(), 2);
    assert!(engine.scan(Table::Data, b"z", b"a", 10).unwrap().is_empty());
}

fn delete_range_removes_exactly_the_range(engine: &dyn Engine) {
    let mut b = WriteBatch::default();
    for i in 0u8..10 {
        b.put(Table::Log, vec![i], vec![i]);
    }
    engine.commit(&[b]).unwrap();
    let mut d = WriteBatch::default();
    d.delete_range(Table::Log, vec![3], vec![7]);
    engine.commit(&[d]).unwrap();
    let left: Vec<u8> = engine
        .scan(Table::Log, &[0], &[10], 100)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k[0])
        .collect();
    assert_eq!(left, vec![0, 1, 2, 7, 8, 9]);
}

fn batches_apply_in_order(engine: &dyn Engine) {
    let mut first = WriteBatch::default();
    first.put(Table::Data, b"x".to_vec(), b"1".to_vec());
    let mut second = WriteBatch::default();
    second.put(Table::Data, b"x".to_vec(), b"2".to_vec());
    second.put(Table::Data, b"y".to_vec(), b"2".to_vec());
    engine.commit(&[first, second]).unwrap();
    assert_eq!(engine.get(Table::Data, b"x").unwrap(), Some(b"2".to_vec()));
    assert_eq!(engine.get(Table::Data, b"y").unwrap(), Some(b"2".to_vec()));
}

fn last_finds_greatest_key_in_range(engine: &dyn Engine) {
    assert_eq!(engine.last(Table::Log, b"a", b"z").unwrap(), None);
    for k in ["a1", "a5", "a3", "b1"] {
        put(engine, Table::Log, k.as_bytes(), b"");
    }
    let (k, _) = engine.last(Table::Log, b"a", b"b").unwrap().unwrap();
    assert_eq!(k, b"a5".to_vec());
}

fn commits_survive_reopen(dir: &Path, open: &dyn Fn(&Path) -> Arc<dyn Engine>) {
    {
        let engine = open(dir);
        let mut b = WriteBatch::default();
        for i in 0u32..100 {
            b.put(Table::Data, i.to_be_bytes().to_vec(), vec![7; 100]);
        }
        engine.commit(&[b]).unwrap();
    }
    let engine = open(dir);
    assert_eq!(
        engine
            .scan(Table::Data, &[0; 4], &[0xff; 4], 1000)
            .unwrap()
            .len(),
        100
    );
}

fn deferred_commits_are_visible_at_once(engine: &dyn Engine) {
    let mut b = WriteBatch::default();
    b.put(Table::Data, b"k".to_vec(), b"deferred".to_vec());
    b.put(Table::Meta, b"applied".to_vec(), b"1".to_vec());
    engine.commit_deferred(&[b]).unwrap();
    assert_eq!(
        engine.get(Table::Data, b"k").unwrap(),
        Some(b"deferred".to_vec())
    );
    let mut d = WriteBatch::default();
    d.delete(Table::Data, b"k".to_vec());
    engine.commit_deferred(&[d]).unwrap();
    assert_eq!(engine.get(Table::Data, b"k").unwrap(), None);
    assert_eq!(
        engine.get(Table::Meta, b"applied").unwrap(),
        Some(b"1".to_vec())
    );
}

/// A durable commit makes the deferred ones before it durable too (the state machine's applies
/// become durable with the next log append).
fn deferred_commits_survive_reopen_after_a_durable_one(
    dir: &Path,
    open: &dyn Fn(&Path) -> Arc<dyn Engine>,
) {
    {
        let engine = open(dir);
        let mut b = WriteBatch::default();
        b.put(Table::Data, b"applied".to_vec(), b"x".to_vec());
        engine.commit_deferred(&[b]).unwrap();
        put(&*engine, Table::Log, b"entry", b"y");
    }
    let engine = open(dir);
    assert_eq!(
        engine.get(Table::Data, b"applied").unwrap(),
        Some(b"x".to_vec())
    );
    assert_eq!(
        engine.get(Table::Log, b"entry").unwrap(),
        Some(b"y".to_vec())
    );
}

fn scan_consistent_reads_every_range(engine: &dyn Engine) {
    let mut b = WriteBatch::default();
    b.put(Table::Meta, b"m1".to_vec(), b"x".to_vec());
    for k in ["d1", "d2", "e1"] {
        b.put(Table::Data, k.as_bytes().to_vec(), b"y".to_vec());
    }
    engine.commit(&[b]).unwrap();
    let views = engine
        .scan_consistent(&[
            (Table::Meta, b"m".to_vec(), b"n".to_vec()),
            (Table::Data, b"d".to_vec(), b"e".to_vec()),
            (Table::Data, b"z".to_vec(), b"a".to_vec()),
        ])
        .unwrap();
    assert_eq!(views[0].len(), 1);
    assert_eq!(views[1].len(), 2);
    assert!(views[2].is_empty());
}

fn rewrite_replaces_in_chunks_and_resumes(engine: &dyn Engine) {
    let mut b = WriteBatch::default();
    for i in 0u8..10 {
        b.put(Table::Data, vec![i], vec![i]);
    }
    b.put(Table::Log, vec![0], b"other table".to_vec());
    engine.commit(&[b]).unwrap();
    let mut cursor = Vec::new();
    let mut visits = Vec::new();
    loop {
        let (n, next) = engine
            .rewrite(Table::Data, &cursor, 4, &mut |k, v| {
                assert_eq!(k, v, "rewrite sees the stored value");
                Ok((k[0] % 2 == 0).then(|| vec![k[0] + 100]))
            })
            .unwrap();
        visits.push(n);
        match next {
            Some(k) => {
                assert!(k > cursor, "the cursor moves forward");
                cursor = k;
            }
            None => break,
        }
    }
    assert_eq!(visits.iter().sum::<usize>(), 10, "{visits:?}");
    assert!(visits.iter().all(|n| *n <= 4));
    for i in 0u8..10 {
        let want = if i % 2 == 0 { i + 100 } else { i };
        assert_eq!(engine.get(Table::Data, &[i]).unwrap(), Some(vec![want]));
    }
    assert_eq!(
        engine.get(Table::Log, &[0]).unwrap(),
        Some(b"other table".to_vec()),
        "other tables are untouched"
    );
}
