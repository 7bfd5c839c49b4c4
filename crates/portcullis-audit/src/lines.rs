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
    AuditError, AuditRecord, Filter, Sink, VerifyReport,
    chain::{GENESIS, Walk, chain},
    queue::Queue,
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

/// Open `target` (continuing the chain of a file that already has lines) and start its writer.
pub(crate) fn open(target: LineTarget) -> Result<Sink, AuditError> {
    let (mut seq, mut last) = match &target {
        LineTarget::File { path, .. } => last_line(path)?,
        LineTarget::Stdout => (0, GENESIS.to_owned()),
    };
    let kind = match target {
        LineTarget::File { .. } => "jsonl",
        LineTarget::Stdout => "stdout",
    };
    let queue = Queue::start("audit-lines", move |records| {
        let (next_seq, next_last, text) = lines(records, seq, &last);
        write(&target, text.as_bytes()).map_err(|error| error.to_string())?;
        (seq, last) = (next_seq, next_last);
        Ok(())
    })
    .map_err(|error| AuditError::Write(error.to_string()))?;
    Ok(Sink::new(kind, queue))
}

/// The sequence number and hash of the last line of `path` (none yet: 0 and the genesis).
fn last_line(path: &Path) -> Result<(u64, String), AuditError> {
    // A device or a pipe (`/dev/stdout`, say) has no past lines to continue from.
    if std::fs::metadata(path).is_ok_and(|meta| !meta.is_file()) {
        return Ok((0, GENESIS.to_owned()));
    }
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok((0, GENESIS.to_owned()));
        }
        Err(error) => {
            return Err(AuditError::open(path.display(), error));
        }
    };
    let mut last = (0, GENESIS.to_owned());
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|error| AuditError::open(path.display(), error))?;
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
            let mut options = OpenOptions::new();
            options.create(true).append(true);
            // Private to the gateway's user: records name callers and what they did.
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path)?;
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

/// One stored line: its place in the chain and its record.
struct Entry {
    seq: i64,
    prev_hash: String,
    hash: String,
    record: Result<AuditRecord, ()>,
}

/// Every line of a JSON lines trail: its rotated files, oldest first, then the live one.
fn entries(path: &Path, mut each: impl FnMut(Entry) -> bool) -> Result<(), AuditError> {
    let mut files: Vec<PathBuf> = (1..=KEEP)
        .rev()
        .map(|n| PathBuf::from(format!("{}.{n}", path.display())))
        .filter(|file| file.exists())
        .collect();
    files.push(path.to_owned());
    for file in files {
        let opened = File::open(&file).map_err(|error| AuditError::open(file.display(), error))?;
        for line in BufReader::new(opened).lines() {
            let line = line.map_err(|error| AuditError::open(file.display(), error))?;
            let entry = serde_json::from_str::<serde_json::Value>(&line).unwrap_or_default();
            let text = |key: &str| entry[key].as_str().unwrap_or_default().to_owned();
            let entry = Entry {
                seq: entry["seq"].as_i64().unwrap_or(0),
                prev_hash: text("prev_hash"),
                hash: text("hash"),
                record: serde_json::from_value(entry["record"].clone()).map_err(|_| ()),
            };
            if !each(entry) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Check the chain of a JSON lines trail. The oldest kept file may start after rotated-away
/// records, so its first link is taken on trust.
pub fn verify_lines(path: &Path) -> Result<VerifyReport, AuditError> {
    let mut walk = Walk::from_oldest_kept();
    let mut broken = None;
    entries(path, |entry| {
        let outcome = match &entry.record {
            Ok(record) => walk.step(
                entry.seq,
                &record.canonical(),
                &entry.prev_hash,
                &entry.hash,
            ),
            Err(()) => Err(VerifyReport::Broken {
                seq: entry.seq,
                reason: "it is not an audit record".to_owned(),
            }),
        };
        broken = outcome.err();
        broken.is_none()
    })?;
    Ok(broken.unwrap_or_else(|| walk.finish()))
}

/// The records of a JSON lines trail that `filter` matches, in order.
pub(crate) fn query_lines(
    path: &Path,
    filter: &Filter,
) -> Result<Vec<(i64, AuditRecord)>, AuditError> {
    let mut found = Vec::new();
    entries(path, |entry| {
        if let Ok(record) = entry.record
            && entry.seq > filter.after.unwrap_or(0)
            && filter.matches(&record)
        {
            found.push((entry.seq, record));
        }
        true
    })?;
    Ok(found)
}
