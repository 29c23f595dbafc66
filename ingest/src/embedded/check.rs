//! Reading the embedded log offline, frame by frame, every segment (their
//! summaries are not trusted), to say what is there: how many records,
//! the last sequence, the first damage and whether intact records follow
//! it, and the ids at the sequences a caller asks about (a snapshot's, an
//! archive watermark's). [`repair`] cuts a damaged newest segment at its
//! damage after keeping a copy; that is the operator's decision, never
//! the open's. Holds the log's lock while it reads, so a running server
//! is never read under.

use bytes::Bytes;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::format::{self, Decoded};
use crate::envelope::EventId;
use crate::error::StreamError;

#[derive(Debug)]
pub struct Report {
    pub segments: usize,
    /// Intact records before the first damage.
    pub records: u64,
    /// The last intact sequence (0: none).
    pub last_seq: u64,
    pub damage: Option<Damage>,
    /// The id at each asked-for sequence that is in the log.
    pub ids: HashMap<u64, EventId>,
}

#[derive(Debug)]
pub struct Damage {
    pub path: PathBuf,
    pub offset: u64,
    pub reason: String,
    /// The sequence of the first intact record after the damage, if any:
    /// then it is not a torn tail.
    pub intact_after: Option<u64>,
    /// Whether the damage is in the newest segment (only there can it be cut).
    pub newest: bool,
}

/// Reads the log in `dir` and reports; `wanted` are sequences whose ids to return.
pub fn check(dir: &Path, wanted: &[u64]) -> Result<Report, StreamError> {
    let _lock = super::lock_dir(dir)?;
    scan(dir, wanted)
}

fn scan(dir: &Path, wanted: &[u64]) -> Result<Report, StreamError> {
    let firsts = super::segment_firsts(dir)?;
    let mut report = Report {
        segments: firsts.len(),
        records: 0,
        last_seq: firsts.first().map_or(0, |f| f - 1),
        damage: None,
        ids: HashMap::new(),
    };
    for (i, first_seq) in firsts.iter().enumerate() {
        let path = dir.join(format::segment_name(*first_seq));
        let bytes = Bytes::from(std::fs::read(&path).map_err(StreamError::io(&path))?);
        let newest = i + 1 == firsts.len();
        let damaged = |offset: u64, reason: String, report: &Report| Damage {
            intact_after: usize::try_from(offset)
                .ok()
                .and_then(|at| bytes.get(at..))
                .and_then(|rest| format::next_intact_frame(rest, report.last_seq))
                .map(|(_, seq)| seq),
            path: path.clone(),
            offset,
            reason,
            newest,
        };
        if let Err(reason) = format::check_header(&bytes) {
            report.damage = Some(damaged(0, reason, &report));
            return Ok(report);
        }
        if *first_seq != report.last_seq + 1 {
            let reason = format!("starts at sequence {first_seq} where {} was due", report.last_seq + 1);
            report.damage = Some(damaged(0, reason, &report));
            return Ok(report);
        }
        let mut offset = format::HEADER_LEN as usize;
        while offset < bytes.len() {
            match format::decode(&bytes.slice(offset..)) {
                Decoded::Frame { frame, len } if frame.seq == report.last_seq + 1 => {
                    if wanted.contains(&frame.seq) {
                        report.ids.insert(frame.seq, frame.id);
                    }
                    report.records += 1;
                    report.last_seq = frame.seq;
                    offset += len;
                }
                Decoded::Frame { frame, .. } => {
                    let reason = format!("sequence {} where {} was due", frame.seq, report.last_seq + 1);
                    report.damage = Some(damaged(offset as u64, reason, &report));
                    return Ok(report);
                }
                Decoded::Incomplete { .. } => {
                    report.damage = Some(damaged(offset as u64, "torn record at the end".into(), &report));
                    return Ok(report);
                }
                Decoded::Corrupt(reason) => {
                    report.damage = Some(damaged(offset as u64, reason, &report));
                    return Ok(report);
                }
            }
        }
    }
    Ok(report)
}

/// What [`repair`] did.
#[derive(Debug)]
pub struct Repaired {
    /// The segment as it was, kept beside it.
    pub copy: PathBuf,
    /// Where it was cut; records from `lost_from` on are gone from the log.
    pub offset: u64,
    pub lost_from: u64,
}

/// Cuts the newest segment at its damage, after copying it to
/// `<segment>.damaged-<unix seconds>`; None if the log is whole. Damage
/// in an older segment is not cut (everything after it would go): restore
/// that segment from a backup.
pub fn repair(dir: &Path) -> Result<Option<Repaired>, StreamError> {
    let _lock = super::lock_dir(dir)?;
    let report = scan(dir, &[])?;
    let Some(damage) = report.damage else { return Ok(None) };
    if !damage.newest {
        return Err(StreamError::Corrupt(format!(
            "{} is damaged at byte {} ({}) and is not the newest segment: cutting there would drop every later segment; restore it from a backup",
            damage.path.display(),
            damage.offset,
            damage.reason
        )));
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut copy = damage.path.clone().into_os_string();
    copy.push(format!(".damaged-{stamp}"));
    let copy = PathBuf::from(copy);
    std::fs::copy(&damage.path, &copy).map_err(StreamError::io(&copy))?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&damage.path)
        .map_err(StreamError::io(&damage.path))?;
    // A header the damage took is written again whole.
    let offset = damage.offset.max(format::HEADER_LEN);
    file.set_len(offset).map_err(StreamError::io(&damage.path))?;
    if damage.offset < format::HEADER_LEN {
        std::io::Write::write_all(&mut &file, &format::header()).map_err(StreamError::io(&damage.path))?;
    }
    file.sync_all().map_err(StreamError::io(&damage.path))?;
    Ok(Some(Repaired {
        copy,
        offset,
        lost_from: report.last_seq + 1,
    }))
}
