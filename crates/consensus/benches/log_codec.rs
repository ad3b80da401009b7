//! Encoding and decoding raft log entries: every write is encoded once into the log and
//! decoded whenever it is read back for replication.
//! `cargo bench -p meridian-consensus --bench log_codec`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use meridian_consensus::log_store::{decode, encode};
use meridian_consensus::typ::Entry;
use meridian_consensus::TypeConfig;
use meridian_types::wire::Command;
use openraft::entry::RaftEntry;

fn entry(index: u64, value_bytes: usize) -> Entry {
    let cmd = Command::Put {
        key: format!("user{index:010}").into_bytes(),
        value: vec![7; value_bytes],
    };
    Entry::new_normal(openraft::testing::log_id::<TypeConfig>(3, 1, index), cmd)
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("log_entry_256b");
    g.throughput(Throughput::Elements(1));
    let e = entry(42, 256);
    let bytes = encode(&e);
    g.bench_function("encode", |b| b.iter(|| encode(black_box(&e))));
    g.bench_function("decode", |b| {
        b.iter(|| decode::<Entry>(black_box(&bytes)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
