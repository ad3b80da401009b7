//! Group commit on redb: 64 small write batches committed as one transaction (one fsync) against
//! the same batches committed one by one, side by side in one run, so the ratio shows what
//! group commit buys on this disk.
//! `cargo bench -p meridian-storage --bench group_commit`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use meridian_storage::{Engine, RedbEngine, Table, WriteBatch};

const BATCHES: usize = 64;
const VALUE_BYTES: usize = 256;

fn batches(next: &mut u64) -> Vec<WriteBatch> {
    (0..BATCHES)
        .map(|_| {
            *next += 1;
            let mut b = WriteBatch::default();
            b.put(
                Table::Log,
                next.to_be_bytes().to_vec(),
                vec![7; VALUE_BYTES],
            );
            b
        })
        .collect()
}

fn group_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let engine = RedbEngine::open(&dir.path().join("bench.redb")).unwrap();
    let mut next = 0u64;
    let mut g = c.benchmark_group("commit_64_batches");
    g.sample_size(20);
    g.throughput(Throughput::Elements(BATCHES as u64));
    g.bench_function("one_commit", |b| {
        b.iter_batched(
            || batches(&mut next),
            |bs| engine.commit(&bs).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("commit_each", |b| {
        b.iter_batched(
            || batches(&mut next),
            |bs| {
                for batch in bs {
                    engine.commit(&[batch]).unwrap();
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, group_commit);
criterion_main!(benches);
