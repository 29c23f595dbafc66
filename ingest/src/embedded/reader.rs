//! Reading the embedded log: locating a sequence, and reading batches of
//! committed records from there on. Readers never lock out the writer: they
//! read with `pread` through their own file handles, and only up to the
//! committed sequence, so they never see a half-written frame.

use bytes::{Bytes, BytesMut};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::format::{self, Decoded, Frame};
use super::Shared;
use crate::envelope::Subject;
use crate::error::StreamError;
use crate::stream::Record;

/// The most read per `pread`: enough that a syscall carries thousands of
/// ~200-byte records while replaying.
const CHUNK: usize = 1 << 20;
/// The least: a follower at the tail reads a few records at a time, and
/// zeroing a large buffer for them would cost more than the read.
const MIN_CHUNK: usize = 16 << 10;

/// Reads `len` bytes at `offset` (fewer at the end of the file).
pub(super) fn read_chunk(file: &File, path: &Path, offset: u64, len: usize) -> Result<Bytes, StreamError> {
    let mut buf = BytesMut::zeroed(len);
    let mut filled = 0;
    while filled < len {
        let n = file
            .read_at(&mut buf[filled..], offset + filled as u64)
            .map_err(StreamError::io(path))?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(buf.freeze())
}

struct Position {
    segment_first_seq: u64,
    path: std::path::PathBuf,
    file: File,
    offset: u64,
}

/// A reader's place in the log.
pub(super) struct Cursor {
    pub next_seq: u64,
    position: Option<Position>,
    /// The next read's size: grows while reads come back full, shrinks when not.
    chunk: usize,
}

impl Cursor {
    pub fn new(from: u64) -> Cursor {
        Cursor {
            next_seq: from.max(1),
            position: None,
            chunk: MIN_CHUNK,
        }
    }

    /// Reads up to `max` records with sequence ≤ `upto` (which must be
    /// committed).
    pub fn read_batch(&mut self, shared: &Shared, upto: u64, max: usize) -> Result<Vec<Record>, StreamError> {
        let mut out = Vec::new();
        while out.len() < max && self.next_seq <= upto {
            let position = match &mut self.position {
                Some(p) => p,
                None => self.position.insert(locate(shared, self.next_seq)?),
            };
            let mut buf = read_chunk(&position.file, &position.path, position.offset, self.chunk)?;
            let short = buf.len() < self.chunk;
            self.chunk = if short {
                (self.chunk / 2).max(MIN_CHUNK)
            } else {
                (self.chunk * 4).min(CHUNK)
            };
            if buf.is_empty() {
                // This segment is exhausted; the next sequence must open the next one.
                let exhausted = position.segment_first_seq;
                let next = locate(shared, self.next_seq)?;
                if next.segment_first_seq == exhausted {
                    return Err(StreamError::Corrupt(format!(
                        "sequence {} is missing from {}",
                        self.next_seq,
                        next.path.display()
                    )));
                }
                self.position = Some(next);
                continue;
            }
            // Every record up to `upto` is whole on disk, so a short read that
            // ends inside a frame can only mean damage.
            loop {
                match format::decode(&buf) {
                    Decoded::Frame { frame, len } => {
                        if frame.seq > upto {
                            return Ok(out);
                        }
                        position.offset += len as u64;
                        let _ = buf.split_to(len);
                        // `locate` may start a little before the wanted record.
                        if frame.seq < self.next_seq {
                            continue;
                        }
                        if frame.seq != self.next_seq {
                            return Err(StreamError::Corrupt(format!(
                                "expected sequence {} in {}, found {}",
                                self.next_seq,
                                position.path.display(),
                                frame.seq
                            )));
                        }
                        self.next_seq += 1;
                        out.push(to_record(frame)?);
                        if out.len() >= max || self.next_seq > upto {
                            return Ok(out);
                        }
                    }
                    Decoded::Incomplete { need } if need > CHUNK => {
                        // One record larger than a chunk: read exactly it.
                        buf = read_chunk(&position.file, &position.path, position.offset, need)?;
                        if buf.len() < need {
                            return Err(StreamError::Corrupt(format!(
                                "truncated record at {}:{}",
                                position.path.display(),
                                position.offset
                            )));
                        }
                    }
                    Decoded::Incomplete { .. } if short && !buf.is_empty() => {
                        return Err(StreamError::Corrupt(format!(
                            "truncated record at {}:{}",
                            position.path.display(),
                            position.offset
                        )))
                    }
                    // The chunk ends inside a frame: read on from there.
                    Decoded::Incomplete { .. } => break,
                    Decoded::Corrupt(reason) => {
                        return Err(StreamError::Corrupt(format!(
                            "{} at {}:{}",
                            reason,
                            position.path.display(),
                            position.offset
                        )))
                    }
                }
            }
        }
        Ok(out)
    }
}

pub(super) fn to_record(frame: Frame) -> Result<Record, StreamError> {
    Ok(Record {
        seq: frame.seq,
        id: frame.id,
        stored_micros: frame.appended_at_micros,
        subject: Subject::parse(&frame.subject)?,
        payload: frame.payload,
    })
}

/// Opens the segment holding `seq` at the last indexed offset at or before it.
fn locate(shared: &Shared, seq: u64) -> Result<Position, StreamError> {
    let segments = shared.segments.read().unwrap_or_else(|e| e.into_inner());
    let i = segments.partition_point(|s| s.first_seq <= seq);
    let Some(segment) = i.checked_sub(1).and_then(|i| segments.get(i)) else {
        return Err(match segments.first() {
            Some(first) => StreamError::Trimmed {
                seq,
                first: first.first_seq,
            },
            None => StreamError::Corrupt(format!("no segment holds sequence {seq}")),
        });
    };
    let j = segment.index.partition_point(|&(s, _)| s <= seq);
    let offset = j.checked_sub(1).map_or(format::HEADER_LEN, |j| segment.index[j].1);
    let file = File::open(&segment.path).map_err(StreamError::io(&segment.path))?;
    Ok(Position {
        segment_first_seq: segment.first_seq,
        path: segment.path.clone(),
        file,
        offset,
    })
}
