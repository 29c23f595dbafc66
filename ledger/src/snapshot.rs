//! Snapshots of the [`Projection`], so that a start loads the newest good
//! one and replays only the stream after it.
//!
//! A snapshot is one file, `snapshot-<seq, 20 digits>.bin` in its directory:
//! a 24-byte header (magic `NODAISNP`, format version, CRC32C of the body,
//! body length) and a MessagePack body holding the stream it was taken from
//! and the projection (which names the event at its sequence, so a load
//! checks it against the stream). It is written to a temporary file, synced, renamed
//! into place and the directory synced, so a crash leaves either the whole
//! snapshot or none. The newest [`KEEP`] are kept. A snapshot that does not
//! check out (damaged, another stream) is skipped with a warning, one of
//! another history of this stream (ahead of it, or another event at its
//! sequence) is set aside, and the next older one is tried; with none, the
//! stream is replayed from the start. See ADR 0003.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{io, Error};
use crate::Projection;
use ingest::EventId;

const MAGIC: &[u8; 8] = b"NODAISNP";
/// 2: de-duplication by stored time within a window (version 1 kept 35
/// days of ids by event day); a version 1 snapshot is skipped and the
/// stream replayed. 3: customers, credits, tokens: every field added is
/// last in its struct and defaulted, so a version 2 snapshot loads as well
/// (a deployment past its retention period has no stream to replay).
const VERSION: u32 = 3;
/// Versions read.
const READS: [u32; 2] = [2, 3];
const HEADER_LEN: usize = 24;
/// Snapshots kept; the older ones are deleted after a new one is in place.
pub const KEEP: usize = 2;

#[derive(serde::Serialize, serde::Deserialize)]
struct Body<P> {
    /// Which stream the projection was folded from (`embedded`, `nats:NODAI`).
    stream: String,
    projection: P,
}

/// The snapshot of `projection` as bytes.
pub fn encode(projection: &Projection, stream: &str) -> Result<Vec<u8>, Error> {
    let mut out = vec![0u8; HEADER_LEN];
    rmp_serde::encode::write(
        &mut out,
        &Body {
            stream: stream.to_owned(),
            projection,
        },
    )?;
    let body_len = (out.len() - HEADER_LEN) as u64;
    let crc = crc32c::crc32c(&out[HEADER_LEN..]);
    out[..8].copy_from_slice(MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    out[16..24].copy_from_slice(&body_len.to_le_bytes());
    Ok(out)
}

/// Reads a snapshot back, checking that it is whole and from `stream`.
pub fn decode(bytes: &[u8], stream: &str) -> Result<Projection, Error> {
    let (taken_from, projection) = decode_any(bytes)?;
    if taken_from != stream {
        return Err(Error::InvalidSnapshot(format!(
            "taken from stream {taken_from:?}, not {stream:?}"
        )));
    }
    Ok(projection)
}

/// Reads a snapshot back, checking that it is whole; returns the stream it
/// was taken from and the projection.
pub fn decode_any(bytes: &[u8]) -> Result<(String, Projection), Error> {
    let invalid = |why: &str| Error::InvalidSnapshot(why.to_owned());
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err(invalid("no snapshot header"));
    }
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default());
    if !READS.contains(&word(8)) {
        return Err(Error::InvalidSnapshot(format!(
            "format version {} is not one this build reads ({READS:?})",
            word(8)
        )));
    }
    let body_len = u64::from_le_bytes(bytes[16..24].try_into().unwrap_or_default());
    let body = &bytes[HEADER_LEN..];
    if body.len() as u64 != body_len {
        return Err(invalid("truncated"));
    }
    if crc32c::crc32c(body) != word(12) {
        return Err(invalid("checksum mismatch"));
    }
    let body: Body<Projection> =
        rmp_serde::from_slice(body).map_err(|e| Error::InvalidSnapshot(format!("undecodable: {e}")))?;
    Ok((body.stream, body.projection))
}

fn file_name(seq: u64) -> String {
    format!("snapshot-{seq:020}.bin")
}

/// Snapshot files in `dir`, newest first, with their sequences.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, Error> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.map_err(io(dir))?.path();
        let seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("snapshot-")?.strip_suffix(".bin")?.parse::<u64>().ok());
        if let Some(seq) = seq {
            found.push((seq, path));
        }
    }
    found.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
    Ok(found)
}

/// Writes `projection` as the newest snapshot in `dir`, durably, and drops
/// all but the newest [`KEEP`]. Returns the file's size.
pub fn write(dir: &Path, projection: &Projection, stream: &str) -> Result<u64, Error> {
    let bytes = encode(projection, stream)?;
    fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(file_name(projection.seq));
    let temp = dir.join(format!(".{}.tmp", file_name(projection.seq)));
    let mut file = File::create(&temp).map_err(io(&temp))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(io(&temp))?;
    fs::rename(&temp, &path).map_err(io(&path))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    for (_, old) in list(dir)?.into_iter().skip(KEEP) {
        if let Err(error) = fs::remove_file(&old) {
            tracing::warn!(%error, path = %old.display(), "cannot remove an old snapshot");
        }
    }
    Ok(bytes.len() as u64)
}

/// The newest snapshot in `dir` that checks out, is from `stream`, and
/// belongs to this stream's history: the event at its sequence must be the
/// one it was taken after (`id_at(seq)` reads it from the stream). `None`
/// means replay from the start. A snapshot ahead of the stream (`last_seq`)
/// or whose event is not there is from another history (a log that lost
/// its tail, a stream deleted and made again): it is moved to
/// `set-aside/` with a warning, so that no later start takes it either.
/// If the stream cannot be read to check, nothing is loaded (a full replay
/// is always right) and nothing is moved. A snapshot older than the
/// stream's first event (`first_seq`, after retention deleted the head)
/// cannot be checked nor replayed on from: it is skipped. Leftover
/// temporary files of an interrupted write are removed.
pub fn load_newest(
    dir: &Path,
    stream: &str,
    first_seq: u64,
    last_seq: u64,
    mut id_at: impl FnMut(u64) -> Result<Option<EventId>, String>,
) -> Option<Projection> {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_str().is_some_and(|n| n.ends_with(".tmp")) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    let candidates = match list(dir) {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(%error, "cannot list snapshots; replaying the whole stream");
            return None;
        }
    };
    for (seq, path) in candidates {
        if seq < first_seq {
            tracing::info!(path = %path.display(), seq, first_seq, "snapshot older than the stream's first event (retention deleted what follows it); skipped");
            continue;
        }
        if seq > last_seq {
            set_aside(
                dir,
                &path,
                &format!("taken at sequence {seq}, ahead of the stream's end ({last_seq})"),
            );
            continue;
        }
        let loaded = fs::read(&path)
            .map_err(io(&path))
            .and_then(|bytes| decode(&bytes, stream));
        let projection = match loaded {
            Ok(projection) if projection.seq == seq => projection,
            Ok(projection) => {
                tracing::warn!(path = %path.display(), inside = projection.seq, "snapshot name and content disagree; skipped");
                continue;
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "snapshot skipped");
                continue;
            }
        };
        match id_at(seq) {
            Ok(Some(id)) if Some(id) == projection.last_id => return Some(projection),
            Ok(found) => {
                let why = match (projection.last_id, found) {
                    (None, _) => format!("it does not name the event at sequence {seq} (written by an older version)"),
                    (Some(ours), Some(theirs)) => {
                        format!("the stream holds event {theirs} at sequence {seq}, not {ours}")
                    }
                    (Some(_), None) => format!("the stream holds no event at sequence {seq}"),
                };
                set_aside(dir, &path, &why);
            }
            Err(error) => {
                tracing::warn!(%error, seq, "cannot read the stream to check a snapshot; replaying the whole stream");
                return None;
            }
        }
    }
    None
}

/// Moves a snapshot of another history to `<dir>/set-aside/`.
fn set_aside(dir: &Path, path: &Path, why: &str) {
    let aside = dir.join("set-aside");
    let moved = fs::create_dir_all(&aside).and_then(|()| {
        let name = path.file_name().unwrap_or_default();
        fs::rename(path, aside.join(name))
    });
    match moved {
        Ok(()) => tracing::warn!(
            path = %path.display(),
            to = %aside.display(),
            why,
            "snapshot is not of this stream; set aside, replaying instead"
        ),
        Err(error) => tracing::warn!(
            path = %path.display(),
            why,
            %error,
            "snapshot is not of this stream and cannot be set aside; skipped"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use ingest::events::{KeyCreated, KeySettings, QueryRecorded};
    use ingest::{Event, EventId, Micros};

    fn projection(queries: u64) -> Projection {
        let t = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        let mut p = Projection::default();
        let created = Event::KeyCreated(KeyCreated {
            key_id: "key_a".into(),
            key_hash: "ab".repeat(32),
            prefix: "nk_abababab".into(),
            settings: KeySettings {
                name: "a".into(),
                owner: Some("org".into()),
                active: true,
                workflow_ids: vec![],
                rate_limit_per_hour: Some(10),
                cost_limit_per_month: None,
                alert_thresholds: vec![80, 100],
                expires_at: None,
                allowed_origins: vec![],
                metadata: Some(serde_json::json!({"plan": "pro", "n": [1, 2.5, null]})),
                customer_id: None,
                limits: vec![],
                max_concurrent: None,
            },
        });
        p.apply(1, EventId::new(), t, &created);
        for i in 0..queries {
            let q = Event::QueryRecorded(QueryRecorded {
                request_id: format!("req_{i}"),
                key_id: "key_a".into(),
                workflow_id: "echo".into(),
                status_code: 200,
                cost: Micros::new(1500),
                duration_ms: 3,
                reported_cost: None,
                record_by: None,
                customer_id: None,
                input_tokens: 0,
                output_tokens: 0,
                authorization_id: None,
            });
            p.apply(i + 2, EventId::new(), t + chrono::Duration::minutes(i as i64 * 7), &q);
        }
        p
    }

    #[test]
    fn a_snapshot_round_trips_exactly() {
        let p = projection(500);
        assert_eq!(decode(&encode(&p, "embedded").unwrap(), "embedded").unwrap(), p);
    }

    /// The stream as the snapshots saw it: the event at each one's sequence.
    fn history<'a>(snapshots: &'a [&'a Projection]) -> impl FnMut(u64) -> Result<Option<EventId>, String> + 'a {
        move |seq| Ok(snapshots.iter().find(|p| p.seq == seq).and_then(|p| p.last_id))
    }

    fn set_aside_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir.join("set-aside"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Retention deleted the stream's head: a snapshot from before the
    /// stream's first event is of no use (nothing to check it against,
    /// nothing to replay on from), but it is not of another history.
    #[test]
    fn a_snapshot_older_than_the_streams_first_event_is_skipped_not_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (projection(3), projection(9));
        write(dir.path(), &old, "embedded").unwrap();
        write(dir.path(), &new, "embedded").unwrap();
        let same = [&old, &new];
        assert_eq!(
            load_newest(dir.path(), "embedded", old.seq + 1, 100, history(&same)),
            Some(new.clone())
        );
        assert_eq!(
            load_newest(dir.path(), "embedded", new.seq + 1, 100, history(&same)),
            None
        );
        assert!(set_aside_names(dir.path()).is_empty());
        assert_eq!(list(dir.path()).unwrap().len(), 2);
    }

    #[test]
    fn damaged_foreign_or_future_snapshots_fall_back_to_older_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (projection(3), projection(9));
        write(dir.path(), &old, "embedded").unwrap();
        write(dir.path(), &new, "embedded").unwrap();
        let same = [&old, &new];
        assert_eq!(
            load_newest(dir.path(), "embedded", 1, 100, history(&same)),
            Some(new.clone())
        );
        assert_eq!(
            load_newest(dir.path(), "nats:NODAI", 1, 100, history(&same)),
            None,
            "another stream's"
        );
        // The stream cannot be read to check: nothing loaded, nothing moved.
        assert_eq!(
            load_newest(dir.path(), "embedded", 1, 100, |_| Err("down".into())),
            None
        );
        assert_eq!(list(dir.path()).unwrap().len(), 2);

        // Flip one byte of the newest: it is skipped for the older one.
        let newest = dir.path().join(file_name(new.seq));
        let whole = fs::read(&newest).unwrap();
        let mut bytes = whole.clone();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        fs::write(&newest, &bytes).unwrap();
        assert_eq!(
            load_newest(dir.path(), "embedded", 1, 100, history(&same)),
            Some(old.clone())
        );
        fs::write(&newest, &bytes[..100]).unwrap();
        assert_eq!(
            load_newest(dir.path(), "embedded", 1, 100, history(&same)),
            Some(old.clone())
        );
        fs::write(&newest, &whole).unwrap();

        // Only KEEP are kept.
        write(dir.path(), &projection(20), "embedded").unwrap();
        write(dir.path(), &projection(30), "embedded").unwrap();
        assert_eq!(list(dir.path()).unwrap().len(), KEEP);
    }

    /// A log that lost its tail, then took new events at the same
    /// sequences; a NATS stream deleted and made again: a snapshot of the
    /// old history is set aside for good, never loaded.
    #[test]
    fn a_snapshot_of_another_history_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (projection(3), projection(9));
        write(dir.path(), &old, "embedded").unwrap();
        write(dir.path(), &new, "embedded").unwrap();
        // Ahead of the stream's end.
        let same = [&old, &new];
        assert_eq!(
            load_newest(dir.path(), "embedded", 1, 5, history(&same)),
            Some(old.clone())
        );
        assert_eq!(set_aside_names(dir.path()), [file_name(new.seq)]);
        // The stream has grown past it again with other events: still not loaded.
        assert_eq!(
            load_newest(dir.path(), "embedded", 1, 100, history(&same)),
            Some(old.clone())
        );

        // Another event at its sequence.
        write(dir.path(), &new, "embedded").unwrap();
        let other = projection(9);
        assert_ne!(other.last_id, new.last_id);
        let rewritten = [&old, &other];
        assert_eq!(
            load_newest(dir.path(), "embedded", 1, 100, history(&rewritten)),
            Some(old.clone())
        );
        assert_eq!(
            list(dir.path()).unwrap().len(),
            1,
            "set aside, not left to be tried again"
        );

        // No event at its sequence, or written before snapshots named theirs.
        let mut unnamed = old.clone();
        unnamed.last_id = None;
        write(dir.path(), &unnamed, "embedded").unwrap();
        assert_eq!(load_newest(dir.path(), "embedded", 1, 100, history(&same)), None);
        assert_eq!(load_newest(dir.path(), "embedded", 1, 100, |_| Ok(None)), None);
        assert!(list(dir.path()).unwrap().is_empty());
    }
}
