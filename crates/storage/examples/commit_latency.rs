//! Measures one-batch commit latency of the redb engine on this disk: `cargo run --release -p
//! meridian-storage --example commit_latency`.

use std::time::Instant;

use meridian_storage::{Engine, RedbEngine, Table, WriteBatch};

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let engine = RedbEngine::open(&dir.path().join("db.redb")).unwrap();
    let mut samples = Vec::new();
    for i in 0u32..300 {
        let mut b = WriteBatch::default();
        b.put(Table::Log, i.to_be_bytes().to_vec(), vec![7; 200]);
        let t = Instant::now();
        engine.commit(&[b]).unwrap();
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "commit latency over 300 single-entry batches: p50 {:.2} ms, p99 {:.2} ms",
        samples[150], samples[297]
    );
}
