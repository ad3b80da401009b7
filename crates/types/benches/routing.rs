//! Request routing: hashing a key to its shard and group, done for every client request.
//! `cargo bench -p meridian-types --bench routing`

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use meridian_types::ids::group_id;
use meridian_types::shard_for_key;

fn routing(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_key");
    for len in [16usize, 256, 4096] {
        let key = vec![b'k'; len];
        g.bench_with_input(BenchmarkId::from_parameter(len), &key, |b, key| {
            b.iter(|| group_id(7, shard_for_key(black_box(key), 16)))
        });
    }
    g.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
