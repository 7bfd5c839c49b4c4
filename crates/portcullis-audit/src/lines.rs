//! Line sinks: the trail as JSON lines, to a file rotated by size or to stdout for log
//! shippers. Each line is `{"seq":N,"prev_hash":"…","hash":"…","record":{…}}`, chained like the
//! SQLite trail (the chain runs on across rotated files), written by one thread that flushes
//! (and, for files, fsyncs) each batch before it acknowledges it.

use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

use crate::{
    AuditError, AuditRecord, Durability,
    queue::Queue,
    sqlite::{GENESIS, chain},
};

/// Rotated files kept beside the live one (`audit.jsonl.1` is the newest).
const KEEP: usize = 5;

/// Where lines go.
#[derive(Debug, Clone)]
pub enum LineTarget {
    /// A file, rotated when it reaches `max_bytes`.
    File {
        /// The live file.
        path: PathBuf,
        /// Size that triggers a rotation.
        max_bytes: u64,
    },
    /// Standard output.
    Stdout,
}

/// A handle on a line sink; clones share one writer.
#[derive(Clone)]
pub struct LineSink {
    queue: Queue,
}

impl LineSink {
    /// Open `target` (continuing the chain of a file that already has lines) and start its
    /// writer.
    pub fn open(target: LineTarget) -> Result<Self, AuditError> {
        let (seq, last) = match &target {
            LineTarget::File { path, .. } => last_line(path)?,
            LineTarget::Stdout => (0, GENESIS.to_owned()),
        };
        let (mut seq, mut last) = (seq, last);
        let queue = Queue::start("audit-lines", move |records| {
            let (next_seq, next_last, text) = lines(records, seq, &last);
            write(&target, text.as_bytes()).map_err(|error| error.to_string())?;
            (seq, last) = (next_seq, next_last);
            Ok(())
        })
        .map_err(|error| AuditError::Write(error.to_string()))?;
        Ok(Self { queue })
    }

    /// Record `record`; with [`Durability::Durable`], return once it is written and synced.
    pub async fn record(
        &self,
        record: AuditRecord,
        durability: Durability,
    ) -> Result<(), AuditError> {
        self.queue.record(record, durability).await
    }
}

/// The sequence number and hash of the last line of `path` (none yet: 0 and the genesis).
fn last_line(path: &Path) -> Result<(u64, String), AuditError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok((0, GENESIS.to_owned()));
        }
        Err(error) => {
            return Err(AuditError::Open {
                path: path.to_owned(),
                reason: error.to_string(),
            });
        }
    };
    let mut last = (0, GENESIS.to_owned());
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|error| AuditError::Open {
            path: path.to_owned(),
            reason: error.to_string(),
        })?;
        if let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line)
            && let (Some(seq), Some(hash)) = (entry["seq"].as_u64(), entry["hash"].as_str())
        {
            last = (seq, hash.to_owned());
        }
    }
    Ok(last)
}

/// The lines for `records` after record `seq` with hash `last`, and the new `seq` and `last`.
fn lines(records: &[&AuditRecord], seq: u64, last: &str) -> (u64, String, String) {
    let mut text = String::new();
    let (mut seq, mut last) = (seq, last.to_owned());
    for record in records {
        let record = record.canonical();
        let hash = chain(&last, &record);
        seq += 1;
        text.push_str(&format!(
            "{{\"seq\":{seq},\"prev_hash\":\"{last}\",\"hash\":\"{hash}\",\"record\":{record}}}\n"
        ));
        last = hash;
    }
    (seq, last, text)
}

fn write(target: &LineTarget, bytes: &[u8]) -> std::io::Result<()> {
    match target {
        LineTarget::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)?;
            out.flush()
        }
        LineTarget::File { path, max_bytes } => {
            if std::fs::metadata(path).is_ok_and(|m| m.len() + bytes.len() as u64 > *max_bytes) {
                rotate(path)?;
            }
            let mut file = OpenOptions::new().create(true).append(true).open(path)?;
            file.write_all(bytes)?;
            file.sync_data()
        }
    }
}

/// `audit.jsonl` becomes `audit.jsonl.1`, `.1` becomes `.2`, ..., the oldest beyond `KEEP` goes.
fn rotate(path: &Path) -> std::io::Result<()> {
    let numbered = |n: usize| PathBuf::from(format!("{}.{n}", path.display()));
    let _ = std::fs::remove_file(numbered(KEEP));
    for n in (1..KEEP).rev() {
        if numbered(n).exists() {
            std::fs::rename(numbered(n), numbered(n + 1))?;
        }
    }
    std::fs::rename(path, numbered(1))
}

/// Check the chain of a JSON lines trail: its rotated files, oldest first, then the live one.
pub fn verify_lines(path: &Path) -> Result<crate::VerifyReport, AuditError> {
    let mut files: Vec<PathBuf> = (1..=KEEP)
        .rev()
        .map(|n| PathBuf::from(format!("{}.{n}", path.display())))
        .filter(|file| file.exists())
        .collect();
    files.push(path.to_owned());
    let (mut previous, mut expected, mut count) = (None::<String>, None::<u64>, 0u64);
    for file in files {
        let reader = BufReader::new(File::open(&file).map_err(|error| AuditError::Open {
            path: file.clone(),
            reason: error.to_string(),
        })?);
        for line in reader.lines() {
            let line = line.map_err(|error| AuditError::Open {
                path: file.clone(),
                reason: error.to_string(),
            })?;
            let broken = |seq: u64, reason: &str| {
                Ok(crate::VerifyReport::Broken {
                    seq: i64::try_from(seq).unwrap_or(i64::MAX),
                    reason: reason.to_owned(),
                })
            };
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                return broken(expected.unwrap_or(0), "a line is not JSON");
            };
            let seq = entry["seq"].as_u64().unwrap_or(0);
            let prev = entry["prev_hash"].as_str().unwrap_or_default();
            let hash = entry["hash"].as_str().unwrap_or_default();
            let record = serde_json::from_value::<AuditRecord>(entry["record"].clone());
            let Ok(record) = record else {
                return broken(seq, "it is not an audit record");
            };
            if expected.is_some_and(|expected| expected != seq) {
                return broken(seq, "a record before it is missing");
            }
            // The oldest kept file may start after rotated-away records: trust its first link.
            if previous.as_deref().is_some_and(|previous| previous != prev) {
                return broken(seq, "it does not link to the record before it");
            }
            if chain(prev, &record.canonical()) != hash {
                return broken(seq, "its content does not match its hash");
            }
            previous = Some(hash.to_owned());
            expected = Some(seq + 1);
            count += 1;
        }
    }
    Ok(crate::VerifyReport::Intact { records: count })
}
