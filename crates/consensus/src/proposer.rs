//! Proposal batching: a group's client writes reach openraft in batches, one raft message per
//! batch instead of one per write.
//!
//! openraft runs its storage and replication commands after every message it takes from its
//! API queue, so a write proposed alone costs one log append (one group-commit job), one
//! replication wake-up and one apply of its own. The proposer queues writes (bounded) and hands
//! everything queued to `client_write_many` as one message, with at most
//! [`PROPOSE_INFLIGHT_MAX`] batches of a group in flight: while they are, new writes wait in the
//! queue and become the next batch. A lone write is proposed at once (no timer, no added
//! latency); under load the batch grows with the load, so fixed costs per append, per
//! replication message and per apply are shared. Each write keeps its own log entry and its own
//! outcome, so nothing about durability or acknowledgement changes: a write is answered when
//! its entry is committed (fsynced by a majority) and applied, exactly as before.

use std::sync::Arc;

use futures::StreamExt;
use meridian_types::limits::{APPEND_BYTES_MAX, APPEND_ENTRIES_MAX};
use meridian_types::wire::Command;
use openraft::errors::{ClientWriteError, Fatal, RaftError};
use openraft::raft::ClientWriteResponse;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::log_store::AppendProgress;
use crate::typ::{MRaft, TypeConfig};

/// Writes waiting for a group's proposer before proposers wait (backpressure).
pub const PROPOSE_QUEUE_MAX: usize = 4096;
/// Batches of one group proposed and not yet answered (a bound: the proposer normally waits
/// only for the log's append, see the module's documentation).
pub const PROPOSE_INFLIGHT_MAX: usize = 64;
/// Writes in one batch (openraft appends a batch as one log write).
pub const PROPOSE_BATCH_MAX: usize = APPEND_ENTRIES_MAX as usize;

pub type ProposeResult =
    Result<ClientWriteResponse<TypeConfig>, RaftError<TypeConfig, ClientWriteError<TypeConfig>>>;

struct Proposal {
    cmd: Command,
    done: oneshot::Sender<ProposeResult>,
}

/// A handle to a group's proposer task; cloning shares it. The task ends when every handle is
/// dropped.
#[derive(Clone)]
pub struct Proposer {
    queue: mpsc::Sender<Proposal>,
}

impl Proposer {
    /// Starts the proposer of `raft` on the current runtime.
    pub fn start(raft: MRaft, appends: Arc<AppendProgress>) -> Proposer {
        let (queue, rx) = mpsc::channel(PROPOSE_QUEUE_MAX);
        let inflight = Arc::new(Semaphore::new(PROPOSE_INFLIGHT_MAX));
        tokio::spawn(run(raft, rx, inflight, appends));
        Proposer { queue }
    }

    /// Proposes `cmd` and waits for its outcome: what `Raft::client_write` would answer.
    pub async fn propose(&self, cmd: Command) -> ProposeResult {
        let (done, rx) = oneshot::channel();
        if self.queue.send(Proposal { cmd, done }).await.is_err() {
            return Err(RaftError::Fatal(Fatal::Stopped));
        }
        rx.await.unwrap_or(Err(RaftError::Fatal(Fatal::Stopped)))
    }
}

async fn run(
    raft: MRaft,
    mut rx: mpsc::Receiver<Proposal>,
    inflight: Arc<Semaphore>,
    appends: Arc<AppendProgress>,
) {
    loop {
        // A free slot first: while every slot is taken, writes gather in the queue.
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let batch = gather(first, &mut rx);
        debug_assert!(!batch.is_empty() && batch.len() <= PROPOSE_BATCH_MAX);
        let appended_before = appends.completed();
        let Some(mut answered) = propose_batch(&raft, batch, permit).await else {
            continue;
        };
        // Gather the next batch while the log writes this one: wait for an append to complete
        // with none left in flight (or for the batch's answers, if it never reaches this log:
        // leadership lost).
        loop {
            let changed = appends.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if appends.completed() > appended_before && appends.idle() {
                break;
            }
            tokio::select! {
                _ = changed => {}
                _ = &mut answered => break,
            }
        }
    }
}

/// `first` and whatever is queued behind it, up to the batch limits (a write past the byte
/// budget still joins a batch of its own: the first write always goes).
fn gather(first: Proposal, rx: &mut mpsc::Receiver<Proposal>) -> Vec<Proposal> {
    let mut bytes = encoded_len(&first.cmd);
    let mut batch = vec![first];
    while batch.len() < PROPOSE_BATCH_MAX && bytes < APPEND_BYTES_MAX {
        let Ok(next) = rx.try_recv() else { break };
        bytes = bytes.saturating_add(encoded_len(&next.cmd));
        batch.push(next);
    }
    batch
}

fn encoded_len(cmd: &Command) -> usize {
    bincode::serialized_size(cmd).map_or(usize::MAX, |n| n as usize)
}

/// Hands `batch` to openraft as one message; a task answers each write, in order, as its
/// entry is applied, and frees the slot once the last one is (then the returned receiver
/// completes). None if openraft has stopped.
async fn propose_batch(
    raft: &MRaft,
    batch: Vec<Proposal>,
    permit: OwnedSemaphorePermit,
) -> Option<oneshot::Receiver<()>> {
    let (cmds, dones): (Vec<Command>, Vec<oneshot::Sender<ProposeResult>>) =
        batch.into_iter().map(|p| (p.cmd, p.done)).unzip();
    let expected = dones.len();
    let mut stream = match raft.client_write_many(cmds).await {
        Ok(s) => s,
        Err(fatal) => {
            for done in dones {
                let _ = done.send(Err(RaftError::Fatal(fatal.clone())));
            }
            return None;
        }
    };
    let (all_answered, answered) = oneshot::channel();
    tokio::spawn(async move {
        let mut answered = 0usize;
        let mut dones = dones.into_iter();
        while let Some(outcome) = stream.next().await {
            let Some(done) = dones.next() else {
                debug_assert!(false, "openraft answered more writes than the batch held");
                break;
            };
            answered += 1;
            let reply = match outcome {
                Ok(Ok(resp)) => Ok(ClientWriteResponse {
                    log_id: resp.log_id,
                    data: resp.response,
                    membership: None,
                }),
                Ok(Err(e)) => Err(RaftError::APIError(e)),
                Err(fatal) => Err(RaftError::Fatal(fatal)),
            };
            let _ = done.send(reply);
        }
        // A stream that ended early (openraft stopped) leaves the rest unanswered: they fail.
        debug_assert!(answered <= expected);
        for done in dones {
            let _ = done.send(Err(RaftError::Fatal(Fatal::Stopped)));
        }
        drop(permit);
        let _ = all_answered.send(());
    });
    Some(answered)
}
