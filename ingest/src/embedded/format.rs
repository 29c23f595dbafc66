//! The on-disk format of the embedded log. See `docs/adr/0001-embedded-log-format.md`.
//!
//! A segment file `<first seq, 20 digits>.log` is a 16-byte header
//! (`NODAILOG`, format version u32 LE, 4 reserved bytes) and then frames:
//!
//! ```text
//! len u32 LE | crc32c(body) u32 LE | body (len bytes)
//! body = seq u64 LE | appended_at µs i64 LE | event id [16] | subject_len u16 LE | subject | payload
//! ```
//!
//! Sequences run on without a gap from one segment into the next. This module
//! only encodes and decodes bytes; it does no I/O.

use bytes::Bytes;

use crate::envelope::EventId;

pub const MAGIC: &[u8; 8] = b"NODAILOG";
pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_LEN: u64 = 16;
const FRAME_HEADER_LEN: usize = 8;
const BODY_FIXED_LEN: usize = 8 + 8 + 16 + 2;
/// Largest body accepted, so a corrupt length can never make a reader
/// allocate gigabytes.
pub const MAX_BODY_LEN: usize = 8 << 20;

pub fn header() -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

pub fn check_header(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < HEADER_LEN as usize || &bytes[..8] != MAGIC {
        return Err("not a nodai log segment (bad magic)".into());
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != FORMAT_VERSION {
        return Err(format!(
            "segment format version {version}, this build reads {FORMAT_VERSION}"
        ));
    }
    Ok(())
}

pub fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.log")
}

pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    (digits.len() == 20).then(|| digits.parse().ok()).flatten()
}

/// The encoded size of a record, to check limits before encoding.
pub fn body_len(subject: &str, payload: &[u8]) -> usize {
    BODY_FIXED_LEN + subject.len() + payload.len()
}

/// Appends one frame to `buf`; returns the frame's length.
pub fn encode(
    buf: &mut Vec<u8>,
    seq: u64,
    appended_at_micros: i64,
    id: &EventId,
    subject: &str,
    payload: &[u8],
) -> usize {
    let body_len = body_len(subject, payload);
    let start = buf.len();
    buf.reserve(FRAME_HEADER_LEN + body_len);
    buf.extend_from_slice(&(body_len as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    let body_start = buf.len();
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&appended_at_micros.to_le_bytes());
    buf.extend_from_slice(id.as_bytes());
    buf.extend_from_slice(&(subject.len() as u16).to_le_bytes());
    buf.extend_from_slice(subject.as_bytes());
    buf.extend_from_slice(payload);
    let crc = crc32c::crc32c(&buf[body_start..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    buf.len() - start
}

/// One decoded frame; `payload` shares the buffer it was read into.
#[derive(Debug, Clone)]
pub struct Frame {
    pub seq: u64,
    pub appended_at_micros: i64,
    pub id: EventId,
    pub subject: String,
    pub payload: Bytes,
}

#[derive(Debug)]
pub enum Decoded {
    /// A whole, intact frame, `len` bytes long.
    Frame { frame: Frame, len: usize },
    /// The buffer ends inside a frame: `need` bytes in all would complete it.
    Incomplete { need: usize },
    /// The bytes at this point are not a frame.
    Corrupt(String),
}

/// Decodes the frame at the start of `buf`.
pub fn decode(buf: &Bytes) -> Decoded {
    if buf.len() < FRAME_HEADER_LEN {
        return Decoded::Incomplete { need: FRAME_HEADER_LEN };
    }
    let body_len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(BODY_FIXED_LEN..=MAX_BODY_LEN).contains(&body_len) {
        return Decoded::Corrupt(format!("impossible frame length {body_len}"));
    }
    let total = FRAME_HEADER_LEN + body_len;
    if buf.len() < total {
        return Decoded::Incomplete { need: total };
    }
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let body = &buf[FRAME_HEADER_LEN..total];
    if crc32c::crc32c(body) != crc {
        return Decoded::Corrupt("checksum mismatch".into());
    }
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&body[at..at + 8]);
        b
    };
    let seq = u64::from_le_bytes(u64_at(0));
    let appended_at_micros = i64::from_le_bytes(u64_at(8));
    let mut id = [0u8; 16];
    id.copy_from_slice(&body[16..32]);
    let subject_len = u16::from_le_bytes([body[32], body[33]]) as usize;
    let subject_end = BODY_FIXED_LEN + subject_len;
    if subject_end > body.len() {
        return Decoded::Corrupt("subject longer than its frame".into());
    }
    let Ok(subject) = std::str::from_utf8(&body[BODY_FIXED_LEN..subject_end]) else {
        return Decoded::Corrupt("subject is not UTF-8".into());
    };
    Decoded::Frame {
        frame: Frame {
            seq,
            appended_at_micros,
            id: EventId::from_bytes(id),
            subject: subject.to_owned(),
            payload: buf.slice(FRAME_HEADER_LEN + subject_end..total),
        },
        len: total,
    }
}

/// The first intact frame in `buf` past its first byte whose sequence is
/// above `after_seq`: its offset and sequence. What tells damage (intact
/// records follow it) from a torn tail (nothing intact follows). Positions
/// whose length and sequence fields are implausible are passed over
/// before any checksum is computed.
pub fn next_intact_frame(buf: &[u8], after_seq: u64) -> Option<(usize, u64)> {
    let word = |at: usize, n: usize| -> Option<&[u8]> { buf.get(at..at + n) };
    (1..buf.len()).find_map(|at| {
        let len = u32::from_le_bytes(word(at, 4)?.try_into().ok()?) as usize;
        if !(BODY_FIXED_LEN..=MAX_BODY_LEN).contains(&len) {
            return None;
        }
        let body = buf.get(at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + len)?;
        let seq = u64::from_le_bytes(body[..8].try_into().ok()?);
        if seq <= after_seq || seq - after_seq > 1 << 32 {
            return None;
        }
        let crc = u32::from_le_bytes(word(at + 4, 4)?.try_into().ok()?);
        (crc32c::crc32c(body) == crc).then_some((at, seq))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_frame() -> (Vec<u8>, EventId) {
        let id = EventId::new();
        let mut buf = Vec::new();
        encode(&mut buf, 7, 1_700_000_000_000_000, &id, "key.k1", b"{\"a\":1}");
        (buf, id)
    }

    #[test]
    fn a_frame_round_trips() {
        let (buf, id) = one_frame();
        let Decoded::Frame { frame, len } = decode(&Bytes::from(buf.clone())) else {
            panic!("frame did not decode")
        };
        assert_eq!(len, buf.len());
        assert_eq!(frame.seq, 7);
        assert_eq!(frame.id, id);
        assert_eq!(frame.subject, "key.k1");
        assert_eq!(&frame.payload[..], b"{\"a\":1}");
    }

    #[test]
    fn every_truncation_is_incomplete_and_every_bit_flip_is_caught() {
        let (buf, _) = one_frame();
        for cut in 0..buf.len() {
            let decoded = decode(&Bytes::copy_from_slice(&buf[..cut]));
            assert!(
                matches!(decoded, Decoded::Incomplete { .. }),
                "cut at {cut}: {decoded:?}"
            );
        }
        for byte in 4..buf.len() {
            let mut flipped = buf.clone();
            flipped[byte] ^= 0x10;
            let decoded = decode(&Bytes::from(flipped));
            assert!(matches!(decoded, Decoded::Corrupt(_)), "flip at {byte}: {decoded:?}");
        }
    }

    #[test]
    fn segment_names_sort_by_first_sequence() {
        assert_eq!(segment_name(42), "00000000000000000042.log");
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name("42.log"), None);
        assert_eq!(parse_segment_name("LOCK"), None);
    }

    #[test]
    fn intact_frames_after_damage_are_found_and_a_torn_tail_has_none() {
        let mut buf = Vec::new();
        for seq in 1..=5 {
            encode(&mut buf, seq, 0, &EventId::new(), "usage.k", b"{}");
        }
        let frame = buf.len() / 5;
        // A bit flipped in the second frame: the third is intact after it.
        let mut damaged = buf.clone();
        damaged[frame + 20] ^= 1;
        assert_eq!(next_intact_frame(&damaged[frame..], 1), Some((frame, 3)));
        // The last frame torn: nothing intact follows the damage.
        assert_eq!(next_intact_frame(&buf[4 * frame..buf.len() - 3], 4), None);
        // Only sequences after the last good one count.
        assert_eq!(next_intact_frame(&buf[frame..], 5), None);
    }
}
