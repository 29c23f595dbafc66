//! `nodai check`: verifies a data dir offline and says what it found: the
//! embedded log (every record's checksum and sequence; damage and whether
//! intact records follow it), each snapshot (whole, and of this log's
//! history), and the archive (its watermark against the log, every Parquet
//! file readable). `--repair` cuts a damaged newest log segment at its
//! damage, after keeping a copy: the one repair an operator may choose,
//! since it gives up the records after the damage. Takes the data dir's
//! lock, so it never reads under a running server.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::datadir::DataDir;

/// What a check found: lines to print, and whether anything is wrong.
#[derive(Debug, Default)]
pub struct Findings {
    pub lines: Vec<String>,
    pub problems: usize,
}

impl Findings {
    fn ok(&mut self, line: String) {
        self.lines.push(format!("ok       {line}"));
    }

    fn problem(&mut self, line: String) {
        self.problems += 1;
        self.lines.push(format!("PROBLEM  {line}"));
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    DataDir(#[from] crate::datadir::DataDirError),
    #[error(transparent)]
    Stream(#[from] ingest::StreamError),
}

/// Checks `data_dir`; with `repair`, first cuts a damaged newest segment.
pub fn run(data_dir: &Path, repair: bool) -> Result<Findings, CheckError> {
    let dir = DataDir::open(data_dir)?;
    let mut found = Findings::default();
    let log = dir.path().join("stream");
    if repair && log.is_dir() {
        match ingest::embedded::check::repair(&log)? {
            Some(repaired) => found.lines.push(format!(
                "repaired {}: cut at byte {}, records from sequence {} on are gone from the log; the segment as it was is {}",
                log.display(),
                repaired.offset,
                repaired.lost_from,
                repaired.copy.display()
            )),
            None => found.lines.push("repair: the log is whole, nothing cut".into()),
        }
    }
    let snapshots = ledger::snapshot::list(&dir.path().join("snapshots")).unwrap_or_default();
    let archive = dir.path().join("archive");
    let watermark = ledger::archive::Archive::peek(&archive);
    let mut wanted: Vec<u64> = snapshots.iter().map(|(seq, _)| *seq).collect();
    if let Ok(Some((seq, _))) = &watermark {
        wanted.push(*seq);
    }
    let report = if log.is_dir() {
        let report = ingest::embedded::check::check(&log, &wanted)?;
        describe_log(&log, &report, &mut found);
        Some(report)
    } else {
        found.lines.push(format!(
            "no embedded log in {} (a NATS deployment: its stream is checked with `nats stream info`)",
            log.display()
        ));
        None
    };
    for (seq, path) in &snapshots {
        check_snapshot(*seq, path, report.as_ref(), &mut found);
    }
    check_archive(&archive, watermark, report.as_ref(), &mut found);
    Ok(found)
}

fn describe_log(log: &Path, report: &ingest::embedded::check::Report, found: &mut Findings) {
    let summary = format!(
        "log {}: {} segments, {} intact records through sequence {}",
        log.display(),
        report.segments,
        report.records,
        report.last_seq
    );
    let Some(damage) = &report.damage else {
        found.ok(summary);
        return;
    };
    let mut line = format!(
        "{summary}; damaged at {} byte {} ({})",
        damage.path.display(),
        damage.offset,
        damage.reason
    );
    match (damage.intact_after, damage.newest) {
        (None, true) => {
            let _ = write!(line, ": a torn tail, as a crash leaves; the next start cuts it");
            found.ok(line);
            return;
        }
        (Some(seq), true) => {
            let _ = write!(
                line,
                "; intact records follow (sequence {seq}): `nodai check --repair` cuts the log there, giving up every record from sequence {} on (a copy of the segment is kept)",
                report.last_seq + 1
            );
        }
        (_, false) => {
            let _ = write!(line, "; not the newest segment: restore it from a backup");
        }
    }
    found.problem(line);
}

fn check_snapshot(seq: u64, path: &PathBuf, log: Option<&ingest::embedded::check::Report>, found: &mut Findings) {
    let decoded = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| ledger::snapshot::decode_any(&bytes).map_err(|e| e.to_string()));
    let (stream, projection) = match decoded {
        Ok(decoded) => decoded,
        Err(error) => {
            found.problem(format!("snapshot {}: {error} (a start skips it)", path.display()));
            return;
        }
    };
    let Some(log) = log else {
        found.ok(format!(
            "snapshot {} of stream {stream}, sequence {seq}: whole",
            path.display()
        ));
        return;
    };
    match (log.ids.get(&seq), projection.last_id) {
        (Some(id), Some(named)) if *id == named => found.ok(format!(
            "snapshot {}: sequence {seq}, of this log's history",
            path.display()
        )),
        _ => found.problem(format!(
            "snapshot {}: sequence {seq} is not of this log's history (the log lost or changed what it saw); a start sets it aside",
            path.display()
        )),
    }
}

fn check_archive(
    archive: &Path,
    watermark: Result<Option<(u64, Option<ingest::EventId>)>, ledger::Error>,
    log: Option<&ingest::embedded::check::Report>,
    found: &mut Findings,
) {
    let (seq, anchor) = match watermark {
        Ok(Some(mark)) => mark,
        Ok(None) => {
            found.ok(format!("archive {}: none yet", archive.display()));
            return;
        }
        Err(error) => {
            found.problem(format!("archive {}: {error}", archive.display()));
            return;
        }
    };
    match ledger::archive::read_ids(archive) {
        Ok(rows) => found.ok(format!(
            "archive {}: {} rows through sequence {seq}, every file readable",
            archive.display(),
            rows.len()
        )),
        Err(error) => found.problem(format!("archive {}: {error}", archive.display())),
    }
    if let Some(log) = log {
        let agrees = match anchor {
            Some(anchor) => log.ids.get(&seq) == Some(&anchor),
            None => seq <= log.last_seq,
        };
        if !agrees {
            found.problem(format!(
                "archive {}: its watermark (sequence {seq}) is not of this log's history; a start sets the archive aside and archives the log again",
                archive.display()
            ));
        }
    }
}
