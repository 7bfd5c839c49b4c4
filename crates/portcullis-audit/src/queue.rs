//! The queue in front of every sink: callers hand records to one writer thread, which takes
//! whatever is queued (up to a batch) in one write, then tells each caller that waits. The
//! queue is bounded: when it is full, callers wait (backpressure); nothing is dropped.

use tokio::sync::{mpsc, oneshot};

use crate::{AuditError, AuditRecord, Durability};

const QUEUE: usize = 4096;
const BATCH: usize = 512;

struct Job {
    record: AuditRecord,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// The sending end; clones share one writer.
#[derive(Clone)]
pub(crate) struct Queue(mpsc::Sender<Job>);

impl Queue {
    /// Start a writer thread named `name` that hands each batch to `write`.
    pub(crate) fn start(
        name: &str,
        mut write: impl FnMut(&[&AuditRecord]) -> Result<(), String> + Send + 'static,
    ) -> std::io::Result<Self> {
        let (queue, mut jobs) = mpsc::channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                while let Some(first) = jobs.blocking_recv() {
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match jobs.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    let records: Vec<&AuditRecord> = batch.iter().map(|job| &job.record).collect();
                    let outcome = write(&records);
                    if let Err(error) = &outcome {
                        tracing::error!(%error, records = batch.len(), "audit write failed");
                    }
                    for job in batch {
                        if let Some(done) = job.done {
                            let _ = done.send(outcome.clone());
                        }
                    }
                }
            })?;
        Ok(Self(queue))
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
        self.0.send(job).await.map_err(|_| AuditError::Closed)?;
        if durability == Durability::Durable {
            written
                .await
                .map_err(|_| AuditError::Closed)?
                .map_err(AuditError::Write)?;
        }
        Ok(())
    }

    /// Records waiting to be written.
    pub(crate) fn queued(&self) -> usize {
        self.0.max_capacity() - self.0.capacity()
    }
}
