//! Summaries of sealed segments, so that opening the log reads the newest
//! segment only instead of every record ever written.
//!
//! `<segment>.sum` holds what the open-time scan of a sealed segment would
//! rebuild: its sparse index, the last sequence of each subject in it, and
//! where it ends. It is written (temp, sync, rename) the first time a
//! sealed segment is scanned, and used only if it checks out: magic,
//! version, CRC32C, and the segment file still has the recorded length.
//! Anything else and the segment is scanned again; a summary is a cache.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"NODAISUM";
const VERSION: u32 = 1;

#[derive(Debug, Default, PartialEq)]
pub(super) struct Summary {
    pub first_seq: u64,
    /// One past the segment's last sequence.
    pub next_seq: u64,
    /// The segment file's length in bytes.
    pub len: u64,
    /// The newest record's append time (µs): ids still inside the
    /// duplicate window need the scan.
    pub newest_micros: i64,
    pub index: Vec<(u64, u64)>,
    /// (subject key, last sequence of that subject in this segment).
    pub subjects: Vec<(u128, u64)>,
}

pub(super) fn path_for(segment: &Path) -> PathBuf {
    segment.with_extension("sum")
}

impl Summary {
    fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(48 + self.index.len() * 16 + self.subjects.len() * 24);
        for v in [self.first_seq, self.next_seq, self.len, self.newest_micros as u64] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        body.extend_from_slice(&(self.index.len() as u64).to_le_bytes());
        for (seq, offset) in &self.index {
            body.extend_from_slice(&seq.to_le_bytes());
            body.extend_from_slice(&offset.to_le_bytes());
        }
        body.extend_from_slice(&(self.subjects.len() as u64).to_le_bytes());
        for (key, seq) in &self.subjects {
            body.extend_from_slice(&key.to_le_bytes());
            body.extend_from_slice(&seq.to_le_bytes());
        }
        let mut out = Vec::with_capacity(body.len() + 16);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Summary> {
        let (head, body) = bytes.split_at_checked(16)?;
        if &head[..8] != MAGIC
            || u32::from_le_bytes(head[8..12].try_into().ok()?) != VERSION
            || u32::from_le_bytes(head[12..16].try_into().ok()?) != crc32c::crc32c(body)
        {
            return None;
        }
        let mut at = 0usize;
        let mut u64_at = || {
            let v = u64::from_le_bytes(body.get(at..at + 8)?.try_into().ok()?);
            at += 8;
            Some(v)
        };
        let (first_seq, next_seq, len, newest) = (u64_at()?, u64_at()?, u64_at()?, u64_at()?);
        let n = u64_at()? as usize;
        let mut index = Vec::with_capacity(n.min(body.len() / 16));
        for _ in 0..n {
            index.push((u64_at()?, u64_at()?));
        }
        let n = u64_at()? as usize;
        let mut subjects = Vec::with_capacity(n.min(body.len() / 24));
        for _ in 0..n {
            let (low, high) = (u64_at()?, u64_at()?);
            subjects.push(((high as u128) << 64 | low as u128, u64_at()?));
        }
        Some(Summary {
            first_seq,
            next_seq,
            len,
            newest_micros: newest as i64,
            index,
            subjects,
        })
    }
}

/// The summary of the sealed segment at `segment`, if there is one that
/// checks out against the segment as it is now.
pub(super) fn read(segment: &Path, first_seq: u64) -> Option<Summary> {
    let summary = Summary::decode(&fs::read(path_for(segment)).ok()?)?;
    let len = fs::metadata(segment).ok()?.len();
    (summary.first_seq == first_seq && summary.len == len).then_some(summary)
}

/// Writes the summary of a sealed segment; a failure only costs a scan at
/// the next open.
pub(super) fn write(segment: &Path, summary: &Summary) {
    let path = path_for(segment);
    let temp = path.with_extension("sum.tmp");
    let written = File::create(&temp)
        .and_then(|mut f| f.write_all(&summary.encode()).and_then(|()| f.sync_all()))
        .and_then(|()| fs::rename(&temp, &path));
    if let Err(error) = written {
        tracing::warn!(%error, path = %path.display(), "cannot write a segment summary; the next open scans the segment");
        let _ = fs::remove_file(&temp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_round_trips_and_rejects_damage_and_a_changed_segment() {
        let dir = tempfile::tempdir().unwrap();
        let segment = dir.path().join("00000000000000000001.log");
        fs::write(&segment, vec![7u8; 100]).unwrap();
        let summary = Summary {
            first_seq: 1,
            next_seq: 11,
            len: 100,
            newest_micros: 1_700_000_000_000_000,
            index: vec![(1, 16), (9, 80)],
            subjects: vec![(u128::MAX - 5, 10), (3, 4)],
        };
        write(&segment, &summary);
        assert_eq!(read(&segment, 1), Some(summary));
        assert_eq!(read(&segment, 2), None, "another segment's");
        let mut bytes = fs::read(path_for(&segment)).unwrap();
        bytes[30] ^= 1;
        fs::write(path_for(&segment), &bytes).unwrap();
        assert_eq!(read(&segment, 1), None, "damaged");
        bytes[30] ^= 1;
        fs::write(path_for(&segment), &bytes).unwrap();
        assert!(read(&segment, 1).is_some());
        fs::write(&segment, vec![7u8; 101]).unwrap();
        assert_eq!(read(&segment, 1), None, "the segment changed");
    }
}
