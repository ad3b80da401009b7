//! Group commit: many writers, one fsync.
//!
//! Writers submit batches to a bounded queue. One writer thread takes everything queued (up to
//! [`COMMIT_BATCHES_MAX`] batches), commits it as one engine transaction, and then completes
//! every submitter in submission order. While one commit is being fsynced the next batches
//! accumulate, so the commit rate adapts to the load with no timer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

// tokio's clock: the real one in production, the simulated one under turmoil (replayable).
use tokio::time::Instant;

use meridian_types::limits::{COMMIT_BATCHES_MAX, COMMIT_QUEUE_MAX};
use tokio::sync::{mpsc, oneshot};

use crate::{LatencyWindow, Result, SharedEngine, StorageError, WriteBatch};

/// Called with the outcome once the batch is durable (or failed).
pub type Completion = Box<dyn FnOnce(Result<()>) + Send>;

struct Job {
    batch: WriteBatch,
    /// False: visible when done runs, durable with the next durable commit (see
    /// [`crate::Engine::commit_deferred`]).
    durable: bool,
    done: Completion,
}

/// A handle to a node's group-commit writer. Cloning shares the writer.
#[derive(Clone)]
pub struct GroupCommitter {
    queue: mpsc::Sender<Job>,
    engine: SharedEngine,
    disk: Arc<DiskHealth>,
}

/// What the writer measures of the disk (recent durable commit latencies, for gray-failure
/// detection) and an injected stall (fault injection: each durable commit takes this much
/// longer, as a failing disk would; 0 in normal operation).
#[derive(Debug, Default)]
pub struct DiskHealth {
    pub fsync: LatencyWindow,
    pub injected_delay_ms: AtomicU64,
}

impl GroupCommitter {
    /// Starts the writer thread for `engine`. The thread ends when every handle is dropped.
    pub fn start(engine: SharedEngine, node_label: String) -> GroupCommitter {
        let (queue, rx) = mpsc::channel(COMMIT_QUEUE_MAX);
        let disk = Arc::new(DiskHealth::default());
        let writer_engine = engine.clone();
        std::thread::Builder::new()
            .name(format!("group-commit-{node_label}"))
            .spawn({
                let disk = disk.clone();
                move || writer_loop(writer_engine, rx, node_label, disk)
            })
            .expect("spawn the group-commit thread");
        GroupCommitter {
            queue,
            engine,
            disk,
        }
    }

    /// Starts the writer as a task on the current tokio runtime instead of a thread, for an
    /// engine whose commits do not wait on a disk (the simulator's memory engine): a simulated
    /// host must not run threads of its own, or a seed could not be replayed.
    pub fn start_task(engine: SharedEngine, node_label: String) -> GroupCommitter {
        let (queue, rx) = mpsc::channel(COMMIT_QUEUE_MAX);
        let disk = Arc::new(DiskHealth::default());
        tokio::spawn(writer_task(engine.clone(), rx, node_label, disk.clone()));
        GroupCommitter {
            queue,
            engine,
            disk,
        }
    }

    /// The disk's recent commit latencies and the injected stall.
    pub fn disk(&self) -> &Arc<DiskHealth> {
        &self.disk
    }

    pub fn engine(&self) -> &SharedEngine {
        &self.engine
    }

    /// Queues `batch`; `done` runs on the writer thread once the batch is durable. Completions
    /// run in submission order.
    pub async fn submit(&self, batch: WriteBatch, done: Completion) -> Result<()> {
        self.queue
            .send(Job {
                batch,
                durable: true,
                done,
            })
            .await
            .map_err(|_| StorageError::Closed)
    }

    /// Commits `batch` durably, sharing the fsync with concurrent submitters.
    pub async fn commit(&self, batch: WriteBatch) -> Result<()> {
        self.commit_job(batch, true).await
    }

    /// Commits `batch` visibly but durable only with the next durable commit (no fsync of its
    /// own; see [`crate::Engine::commit_deferred`]). Commits stay in submission order.
    pub async fn commit_deferred(&self, batch: WriteBatch) -> Result<()> {
        self.commit_job(batch, false).await
    }

    async fn commit_job(&self, batch: WriteBatch, durable: bool) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        let done: Completion = Box::new(move |r| {
            let _ = tx.send(r);
        });
        self.queue
            .send(Job {
                batch,
                durable,
                done,
            })
            .await
            .map_err(|_| StorageError::Closed)?;
        rx.await.map_err(|_| StorageError::Closed)?
    }
}

/// Commits every queued job's batch as one transaction and completes the jobs in order.
struct Writer {
    engine: SharedEngine,
    disk: Arc<DiskHealth>,
    jobs: Vec<Job>,
    fsync_seconds: metrics::Histogram,
    batch_size: metrics::Histogram,
}

impl Writer {
    fn new(engine: SharedEngine, node_label: String, disk: Arc<DiskHealth>) -> Writer {
        Writer {
            engine,
            disk,
            jobs: Vec::with_capacity(COMMIT_BATCHES_MAX),
            fsync_seconds: metrics::histogram!("meridian_fsync_seconds", "node" => node_label.clone()),
            batch_size: metrics::histogram!("meridian_group_commit_batch_size", "node" => node_label),
        }
    }

    /// Takes `first` and whatever else is queued (up to `COMMIT_BATCHES_MAX` jobs); the injected
    /// stall the commit must wait first (only a durable commit touches the disk).
    fn gather(&mut self, first: Job, rx: &mut mpsc::Receiver<Job>) -> Option<Duration> {
        debug_assert!(self.jobs.is_empty(), "every gathered job was completed");
        self.jobs.push(first);
        while self.jobs.len() < COMMIT_BATCHES_MAX {
            match rx.try_recv() {
                Ok(job) => self.jobs.push(job),
                Err(_) => break,
            }
        }
        let stall = self.disk.injected_delay_ms.load(Ordering::Relaxed);
        (stall > 0 && self.jobs.iter().any(|j| j.durable)).then(|| Duration::from_millis(stall))
    }

    /// Commits the gathered jobs as one transaction (begun at `started`, an injected stall
    /// included) and completes them in order.
    fn commit(&mut self, started: Instant) {
        let batches: Vec<WriteBatch> = self
            .jobs
            .iter_mut()
            .map(|j| std::mem::take(&mut j.batch))
            .collect();
        // One durable job makes the whole transaction durable, and with it every deferred
        // commit before it, as the engine promises.
        let durable = self.jobs.iter().any(|j| j.durable);
        let result = if durable {
            let r = self.engine.commit(&batches);
            self.fsync_seconds.record(started.elapsed().as_secs_f64());
            self.disk.fsync.record(started.elapsed());
            r
        } else {
            self.engine.commit_deferred(&batches)
        };
        self.batch_size.record(batches.len() as f64);
        if let Err(e) = &result {
            tracing::error!(error = %e, batches = batches.len(), "group commit failed; no write in it is acknowledged");
        }
        for job in self.jobs.drain(..) {
            (job.done)(result.clone());
        }
    }
}

fn writer_loop(
    engine: SharedEngine,
    mut rx: mpsc::Receiver<Job>,
    node_label: String,
    disk: Arc<DiskHealth>,
) {
    let mut writer = Writer::new(engine, node_label, disk);
    while let Some(first) = rx.blocking_recv() {
        let started = Instant::now();
        if let Some(stall) = writer.gather(first, &mut rx) {
            // Injected fault: a disk that stalls (tests and the demo's gray failure).
            std::thread::sleep(stall);
        }
        writer.commit(started);
    }
}

async fn writer_task(
    engine: SharedEngine,
    mut rx: mpsc::Receiver<Job>,
    node_label: String,
    disk: Arc<DiskHealth>,
) {
    let mut writer = Writer::new(engine, node_label, disk);
    while let Some(first) = rx.recv().await {
        let started = Instant::now();
        if let Some(stall) = writer.gather(first, &mut rx) {
            // On the runtime's clock: the simulator's gray failure stalls one host's disk
            // without freezing the simulation.
            tokio::time::sleep(stall).await;
        }
        writer.commit(started);
    }
}
