//! The queue in front of every sink: callers hand records to one writer thread, which takes
//! whatever is queued (up to a batch) in one write, then tells each caller that waits. The
//! queue is bounded: when it is full, callers wait (backpressure); nothing is dropped.
//!
//! A failed write fails the durable records in it (their callers refuse their calls) and keeps
//! the others, which are written again, first, once the sink takes writes again: a read's
//! record survives an outage of its sink for as long as the process lives.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use tokio::sync::{mpsc, oneshot};

use crate::{AuditError, AuditRecord, Durability, Stats};

const QUEUE: usize = 4096;
const BATCH: usize = 512;
/// How long a batch of records nothing waits for may wait for company: every batch costs a
/// sync of the sink, so a busy gateway writes a few larger batches rather than many small
/// ones. A durable record ends the wait at once (its sender wakes the writer); queued records
/// do not wake it, so a burst costs one wake-up, not one per record.
const LINGER: Duration = Duration::from_millis(5);
/// The pause after a failed write, doubling up to the most.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MOST: Duration = Duration::from_secs(2);

struct Job {
    record: AuditRecord,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// The sending end; clones share one writer.
#[derive(Clone)]
pub(crate) struct Queue {
    jobs: mpsc::Sender<Job>,
    stats: Arc<Stats>,
    /// The writer thread, woken early for a durable record.
    writer: std::thread::Thread,
}

impl Queue {
    /// Start a writer thread named `name` that hands each batch to `write`.
    pub(crate) fn start(
        name: &str,
        mut write: impl FnMut(&[&AuditRecord]) -> Result<(), String> + Send + 'static,
    ) -> std::io::Result<Self> {
        let (queue, mut jobs) = mpsc::channel::<Job>(QUEUE);
        let stats = Arc::new(Stats::default());
        let writer_stats = stats.clone();
        let writer = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut waiting = VecDeque::<Job>::new();
                let mut pause = RETRY_FIRST;
                loop {
                    if waiting.is_empty() {
                        match jobs.blocking_recv() {
                            Some(job) => waiting.push_back(job),
                            None => return,
                        }
                    }
                    let lingering = std::time::Instant::now() + LINGER;
                    loop {
                        while waiting.len() < QUEUE
                            && let Ok(job) = jobs.try_recv()
                        {
                            waiting.push_back(job);
                        }
                        let waited_on = waiting.iter().any(|job| job.done.is_some());
                        let left = lingering.saturating_duration_since(std::time::Instant::now());
                        if waited_on || waiting.len() >= BATCH || left.is_zero() {
                            break;
                        }
                        // Woken early by a durable record (or spuriously): look again.
                        std::thread::park_timeout(left);
                    }
                    let batch: Vec<Job> = waiting.drain(..waiting.len().min(BATCH)).collect();
                    let records: Vec<&AuditRecord> = batch.iter().map(|job| &job.record).collect();
                    let started = std::time::Instant::now();
                    let outcome = write(&records);
                    writer_stats.count(records.len(), started.elapsed(), outcome.is_ok());
                    if let Err(error) = &outcome {
                        tracing::error!(%error, records = batch.len(), "audit write failed");
                    }
                    let failed = outcome.is_err();
                    let mut kept = Vec::new();
                    for job in batch {
                        match job.done {
                            Some(done) => {
                                let _ = done.send(outcome.clone());
                            }
                            None if failed => kept.push(job),
                            None => {}
                        }
                    }
                    for job in kept.into_iter().rev() {
                        waiting.push_front(job);
                    }
                    if failed {
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(RETRY_MOST);
                    } else {
                        pause = RETRY_FIRST;
                    }
                }
            })?;
        Ok(Self {
            jobs: queue,
            stats,
            writer: writer.thread().clone(),
        })
    }

    /// Queue `record`; with [`Durability::Durable`], return only once it is written.
    pub(crate) async fn record(
        &self,
        record: AuditRecord,
        durability: Durability,
    ) -> Result<(), AuditError> {
        let (done, written) = oneshot::channel();
        let job = Job {
            record,
            done: (durability == Durability::Durable).then_some(done),
        };
        self.jobs.send(job).await.map_err(|_| AuditError::Closed)?;
        if durability == Durability::Durable {
            self.writer.unpark();
            written
                .await
                .map_err(|_| AuditError::Closed)?
                .map_err(AuditError::Write)?;
        }
        Ok(())
    }

    /// Queue `record` without waiting for room: when the queue is full, a task waits for it
    /// (nothing is dropped; the caller goes on).
    pub(crate) fn record_later(&self, record: AuditRecord) {
        let job = Job { record, done: None };
        match self.jobs.try_send(job) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(job)) => {
                let jobs = self.jobs.clone();
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        let _ = jobs.send(job).await;
                    });
                }
            }
        }
    }

    /// Records waiting to be written.
    pub(crate) fn queued(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }

    /// What the writer has done.
    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }
}
