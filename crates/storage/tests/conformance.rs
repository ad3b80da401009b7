//! Runs the storage conformance suite against every engine, and checks group commit.

use std::sync::Arc;

use meridian_storage::{
    conformance, Engine, GroupCommitter, MemEngine, RedbEngine, Table, WriteBatch,
};

// Goal: the redb engine passes every conformance check, including reopen after commit.
#[test]
fn redb_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance::run_all(dir.path(), true, &|d| {
        std::fs::create_dir_all(d).unwrap();
        Arc::new(RedbEngine::open(&d.join("meridian.redb")).unwrap())
    });
}

// Goal: the encrypting wrapper behaves as the engine it wraps (and reopens with its keyring).
#[test]
fn encrypted_redb_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let kek = meridian_storage::Kek::parse(&meridian_storage::Kek::generate_hex()).unwrap();
    conformance::run_all(dir.path(), true, &|d| {
        std::fs::create_dir_all(d).unwrap();
        let inner = Arc::new(RedbEngine::open(&d.join("meridian.redb")).unwrap());
        meridian_storage::EncryptedEngine::open(inner, d, &kek).unwrap()
    });
}

// Goal: the memory engine passes every check that does not need a file.
#[test]
fn mem_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance::run_all(dir.path(), false, &|_| Arc::new(MemEngine::new()));
}

// Goal: concurrent submitters through the group committer all become durable, in order per
// submitter; method: 32 tasks commit 50 keys each, then every key is read back after reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_makes_every_submission_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    {
        let engine: Arc<dyn Engine> = Arc::new(RedbEngine::open(&path).unwrap());
        let committer = GroupCommitter::start(engine, "t".into());
        let mut tasks = Vec::new();
        for t in 0u32..32 {
            let c = committer.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0u32..50 {
                    let mut b = WriteBatch::default();
                    b.put(
                        Table::Data,
                        [t.to_be_bytes(), i.to_be_bytes()].concat(),
                        vec![1],
                    );
                    c.commit(b).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    // The writer thread drops its engine once every handle is gone; wait for the file lock.
    let engine = loop {
        match RedbEngine::open(&path) {
            Ok(e) => break e,
            Err(_) => std::thread::yield_now(),
        }
    };
    assert_eq!(
        engine
            .scan(Table::Data, &[0; 8], &[0xff; 8], 10_000)
            .unwrap()
            .len(),
        32 * 50
    );
}
