//! Runs openraft's own storage test suite against Meridian's log store and state machine, on
//! both storage engines: the suite checks log state, membership recovery, truncation, purge,
//! vote persistence and snapshot round trips as openraft expects them.

use std::sync::Arc;

use meridian_consensus::log_store::LogStore;
use meridian_consensus::state_machine::StateMachine;
use meridian_consensus::TypeConfig;
use meridian_storage::{Engine, GroupCommitter, MemEngine, RedbEngine};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;

struct Builder {
    redb: bool,
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, Option<tempfile::TempDir>> for Builder {
    async fn build(
        &self,
    ) -> Result<(Option<tempfile::TempDir>, LogStore, StateMachine), StorageError<TypeConfig>> {
        let (dir, engine): (_, Arc<dyn Engine>) = if self.redb {
            let dir = tempfile::tempdir().unwrap();
            let engine = RedbEngine::open(&dir.path().join("db.redb")).unwrap();
            (Some(dir), Arc::new(engine))
        } else {
            (None, Arc::new(MemEngine::new()))
        };
        let committer = GroupCommitter::start(engine, "suite".into());
        // A non-zero group id checks that keys are prefixed rather than assumed to start at 0.
        let group = 7 << 16;
        Ok((
            dir,
            LogStore::new(group, committer.clone()),
            StateMachine::new(group, committer),
        ))
    }
}

// Goal: the redb-backed log store and state machine pass openraft's storage suite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_suite_on_redb() {
    Suite::test_all(Builder { redb: true }).await.unwrap();
}

// Goal: the memory-backed log store and state machine pass openraft's storage suite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_suite_on_memory() {
    Suite::test_all(Builder { redb: false }).await.unwrap();
}
