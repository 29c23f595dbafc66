//! The Parquet archive: one row per admitted query, exactly once across all
//! files, in a Hive layout DuckDB, Polars and pyarrow read as it is:
//!
//! ```text
//! <root>/watermark                          last stream sequence archived
//! <root>/usage/date=2026-11-25/hour=03/part-<first seq>-<last seq>.parquet
//! ```
//!
//! Exactly once, through any crash:
//! - A flush covers a range of stream sequences, `watermark+1 ..= through`.
//!   Each hour it touches gets one file named by that range, written to a
//!   hidden temporary file, synced and renamed into place.
//! - Only then does the watermark move to `through` (temp, sync, rename).
//! - At open, a file whose range ends beyond the watermark belongs to a
//!   flush that did not finish: it is deleted and the range archived again.
//! - Compaction merges a closed hour's files into one in a staging
//!   directory and swaps the two directories with one atomic
//!   `renameat2(RENAME_EXCHANGE)`: a reader sees the old files or the new
//!   one, never both, never neither. Leftover staging is deleted at open.

use arrow_array::{
    Array, Decimal128Array, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Timelike, Utc};
use ingest::{EventId, Micros};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{io, Error};

/// Rows in a row group of a compacted file.
const ROW_GROUP: usize = 8192;

/// One admitted query, as archived.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub seq: u64,
    pub event_id: EventId,
    pub ts: DateTime<Utc>,
    pub key_id: String,
    pub workflow_id: String,
    pub status_code: u16,
    pub cost: Micros,
    pub duration_ms: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The key's customer when the query was admitted.
    pub customer_id: Option<String>,
}

/// What a flush or a compaction did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub files: usize,
    pub rows: usize,
    pub bytes: u64,
    /// Files that could not be read, moved to `quarantine/`.
    pub quarantined: usize,
}

/// The archive directory, opened (and recovered) by one process at a time.
#[derive(Debug)]
pub struct Archive {
    root: PathBuf,
    watermark: u64,
    /// The watermark as a power cut would leave it: moved only once the
    /// directory holding the file was synced after the rename. What
    /// retention may delete up to.
    durable: u64,
    /// The id of the event at the watermark, checked against the stream at
    /// start (None: none yet, or a watermark written before it was kept).
    anchor: Option<EventId>,
}

/// `<seq>` (older archives) or `<seq> <event id>`.
pub fn parse_watermark(text: &str) -> Option<(u64, Option<EventId>)> {
    let mut words = text.split_whitespace();
    let seq = words.next().map_or(Some(0), |w| w.parse().ok())?;
    let anchor = match words.next() {
        Some(id) => Some(id.parse().ok()?),
        None => None,
    };
    words.next().is_none().then_some((seq, anchor))
}

/// The archive's schema: the spec's columns, the stream sequence, then the
/// columns added since (files written before them are read with tokens 0
/// and no customer, [`read_batches`]).
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("key_id", DataType::Utf8, false),
        Field::new("workflow_id", DataType::Utf8, false),
        Field::new("status_code", DataType::Int32, false),
        Field::new("cost", DataType::Decimal128(18, 6), false),
        Field::new("duration_ms", DataType::Int64, false),
        Field::new("seq", DataType::Int64, false),
        Field::new("input_tokens", DataType::Int64, false),
        Field::new("output_tokens", DataType::Int64, false),
        Field::new("customer_id", DataType::Utf8, true),
    ]))
}

/// Column numbers in [`schema`].
pub(crate) const KEY_ID: usize = 2;
pub(crate) const WORKFLOW_ID: usize = 3;
pub(crate) const STATUS_CODE: usize = 4;
pub(crate) const COST: usize = 5;
const SEQ: usize = 7;
pub(crate) const INPUT_TOKENS: usize = 8;
pub(crate) const OUTPUT_TOKENS: usize = 9;
pub(crate) const CUSTOMER_ID: usize = 10;
/// Columns of files written before tokens and customers.
const FIRST_COLUMNS: usize = 8;

/// Whose usage to read from the archive.
#[derive(Debug, Clone, Copy)]
pub enum Whose<'a> {
    Key(&'a str),
    Customer(&'a str),
}

impl Archive {
    /// Opens the archive at `root`, finishing what a crash interrupted:
    /// temporary files and staging directories go, and files beyond the
    /// watermark (an unfinished flush) are deleted to be written again.
    pub fn open(root: &Path) -> Result<Archive, Error> {
        let usage = root.join("usage");
        fs::create_dir_all(&usage).map_err(io(&usage))?;
        let staging = root.join(".staging");
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(io(&staging))?;
        }
        let (watermark, anchor) = match fs::read_to_string(root.join("watermark")) {
            Ok(text) => parse_watermark(&text).ok_or_else(|| Error::Io {
                path: root.join("watermark"),
                source: std::io::Error::other(format!("not a sequence number and an event id: {text:?}")),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, None),
            Err(e) => return Err(io(&root.join("watermark"))(e)),
        };
        let mut removed = 0;
        for (path, range) in files(&usage)? {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if range.is_none() && !name.starts_with('.') {
                // Not ours (a copy, a stray export): kept aside, not deleted.
                quarantine(root, &path, "not a part file of this archive")?;
                continue;
            }
            let unfinished = range.is_none_or(|(_, last)| last > watermark);
            if unfinished {
                fs::remove_file(&path).map_err(io(&path))?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::warn!(
                removed,
                watermark,
                "removed archive files of a flush that did not finish; archiving that range again"
            );
        }
        upgrade_files(&usage)?;
        // A rename of the watermark before a crash may not have reached
        // the disk yet: it has once this sync succeeds.
        let durable = match sync_dir(root) {
            Ok(()) => watermark,
            Err(error) => {
                tracing::warn!(%error, "cannot sync the archive directory; retention deletes nothing until a flush can");
                0
            }
        };
        Ok(Archive {
            root: root.to_owned(),
            watermark,
            durable,
            anchor,
        })
    }

    /// The watermark of the archive at `root` without opening (and so
    /// recovering) it: None when there is none.
    pub fn peek(root: &Path) -> Result<Option<(u64, Option<EventId>)>, Error> {
        let mark = root.join("watermark");
        match fs::read_to_string(&mark) {
            Ok(text) => parse_watermark(&text).map(Some).ok_or_else(|| Error::Io {
                path: mark,
                source: std::io::Error::other(format!("not a sequence number and an event id: {text:?}")),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&mark)(e)),
        }
    }

    /// Where the archive is.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The id of the event at the watermark, if the watermark names it.
    pub fn anchor(&self) -> Option<EventId> {
        self.anchor
    }

    /// Moves the whole archive at `root` aside, to a sibling named for now,
    /// and returns where: for an archive of another history of the stream,
    /// whose watermark would skip rows of this one. The caller opens a new
    /// one at `root`, to be written again from the stream.
    pub fn set_aside(root: &Path) -> Result<PathBuf, Error> {
        let name = root.file_name().and_then(|n| n.to_str()).unwrap_or("archive");
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let aside = root.with_file_name(format!("{name}.set-aside-{stamp}"));
        fs::rename(root, &aside).map_err(io(root))?;
        Ok(aside)
    }

    /// The archived row with the highest sequence at or before `seq`, as
    /// (sequence, event id): what ties the archive to a stream's history
    /// when its watermark is past the stream's end.
    pub fn last_row_until(&self, seq: u64) -> Result<Option<(u64, String)>, Error> {
        let mut ranges: BTreeMap<SeqRange, Vec<PathBuf>> = BTreeMap::new();
        for (path, range) in files(&self.root.join("usage"))? {
            if let Some(range) = range.filter(|(first, _)| *first <= seq) {
                ranges.entry(range).or_default().push(path);
            }
        }
        // Flushes from the newest back: the first that has a row at or
        // before `seq` has the highest one.
        for (_, paths) in ranges.iter().rev() {
            let mut best: Option<(u64, String)> = None;
            for path in paths {
                for batch in read_batches(path)? {
                    let ids = batch.column(0).as_any().downcast_ref::<StringArray>();
                    let seqs = batch.column(SEQ).as_any().downcast_ref::<Int64Array>();
                    let (Some(ids), Some(seqs)) = (ids, seqs) else {
                        return Err(Error::InvalidArchive(format!(
                            "{}: unexpected column types",
                            path.display()
                        )));
                    };
                    for i in 0..ids.len() {
                        let at = seqs.value(i) as u64;
                        if at <= seq && best.as_ref().is_none_or(|(b, _)| at > *b) {
                            best = Some((at, ids.value(i).to_owned()));
                        }
                    }
                }
            }
            if best.is_some() {
                return Ok(best);
            }
        }
        Ok(None)
    }

    /// Cuts the archive back to sequence `seq` (the stream lost what
    /// followed: a log's unsynced tail after a power cut), keeping every
    /// row at or before it. Parts beyond it go; a part that straddles it
    /// is rewritten as `part-<first>-<seq>`; then the watermark moves back.
    /// A crash in the middle leaves the old part beside its cut copy, both
    /// under the old watermark: the next open cuts back again to the same
    /// `seq`, writing the same file, and converges.
    pub fn cut_back(&mut self, seq: u64, anchor: Option<EventId>) -> Result<(), Error> {
        let mut doomed = Vec::new();
        for (path, range) in files(&self.root.join("usage"))? {
            let Some((first, last)) = range else { continue };
            if last <= seq {
                continue;
            }
            if first <= seq {
                let kept: Vec<RecordBatch> = read_batches(&path)?
                    .iter()
                    .map(|batch| {
                        let seqs =
                            batch.column(SEQ).as_any().downcast_ref::<Int64Array>().ok_or_else(|| {
                                Error::InvalidArchive(format!("{}: seq is not int64", path.display()))
                            })?;
                        let keep: arrow_array::BooleanArray = seqs.iter().map(|s| s.map(|s| s as u64 <= seq)).collect();
                        Ok(arrow_select::filter::filter_record_batch(batch, &keep)?)
                    })
                    .collect::<Result<_, Error>>()?;
                let dir = path.parent().unwrap_or(&self.root);
                write_batches(dir, &part_name(first, seq), &kept)?;
                sync_dir(dir)?;
            }
            doomed.push(path);
        }
        self.move_to(seq, anchor, &doomed)
    }

    /// Drops every part file and sets the watermark to `seq`: a staging
    /// archive taking up from where the archive on object storage stands
    /// (whose rows up to `seq` are there, written by whichever worker).
    pub fn restart_at(&mut self, seq: u64, anchor: Option<EventId>) -> Result<(), Error> {
        let doomed: Vec<PathBuf> = files(&self.root.join("usage"))?.into_iter().map(|(p, _)| p).collect();
        self.move_to(seq, anchor, &doomed)
    }

    /// Moves the watermark to `seq`, then deletes `doomed`: files the new
    /// watermark no longer covers the way they say.
    fn move_to(&mut self, seq: u64, anchor: Option<EventId>, doomed: &[PathBuf]) -> Result<(), Error> {
        let synced = self.move_watermark(seq, anchor)?;
        self.durable = if synced { seq } else { self.durable.min(seq) };
        for path in doomed {
            fs::remove_file(path).map_err(io(path))?;
        }
        self.watermark = seq;
        self.anchor = anchor;
        Ok(())
    }

    /// The watermark a power cut now would leave: what the stream may be
    /// deleted up to.
    pub fn durable_watermark(&self) -> u64 {
        self.durable
    }

    /// The last stream sequence whose rows are all in the archive.
    pub fn watermark(&self) -> u64 {
        self.watermark
    }

    /// Archives `rows` (the admitted queries among sequences
    /// `watermark+1 ..= through`, in sequence order) and moves the
    /// watermark to `through`, naming `through_id`, the event there.
    pub fn write(&mut self, rows: &[Row], through: u64, through_id: Option<EventId>) -> Result<Written, Error> {
        if through <= self.watermark {
            return Ok(Written::default());
        }
        let first = self.watermark + 1;
        let mut by_hour: BTreeMap<i64, Vec<&Row>> = BTreeMap::new();
        for row in rows.iter().filter(|r| r.seq >= first && r.seq <= through) {
            by_hour.entry(crate::usage::hour_of(row.ts)).or_default().push(row);
        }
        let mut written = Written::default();
        let mut paths = Vec::new();
        let name = part_name(first, through);
        let files = by_hour.into_iter().try_for_each(|(hour, rows)| {
            let dir = self.hour_dir(hour);
            fs::create_dir_all(&dir).map_err(io(&dir))?;
            paths.push(dir.join(&name));
            written.bytes += write_file(&dir, &name, &rows)?;
            sync_dir(&dir)?;
            written.files += 1;
            written.rows += rows.len();
            Ok::<_, Error>(())
        });
        let synced = match files.and_then(|()| self.move_watermark(through, through_id)) {
            Ok(synced) => synced,
            Err(error) => {
                // Leave nothing beyond the watermark: a retry writes this range again.
                for path in paths {
                    let _ = fs::remove_file(path);
                }
                return Err(error);
            }
        };
        if synced {
            self.durable = through;
        }
        self.watermark = through;
        self.anchor = through_id;
        Ok(written)
    }

    /// Writes the watermark; true if it is durable (the directory synced
    /// after the rename).
    fn move_watermark(&self, through: u64, through_id: Option<EventId>) -> Result<bool, Error> {
        let mark = self.root.join("watermark");
        let temp = self.root.join(".watermark.tmp");
        let mut file = File::create(&temp).map_err(io(&temp))?;
        let text = match through_id {
            Some(id) => format!("{through} {id}\n"),
            None => format!("{through}\n"),
        };
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io(&temp))?;
        fs::rename(&temp, &mark).map_err(io(&mark))?;
        // The watermark has moved: from here on an error must not make the
        // caller delete the files it covers.
        match sync_dir(&self.root) {
            Ok(()) => Ok(true),
            Err(error) => {
                tracing::warn!(%error, "cannot sync the archive directory after moving the watermark");
                Ok(false)
            }
        }
    }

    /// `usage/date=YYYY-MM-DD/hour=HH` of an hour number (hours since the epoch).
    fn hour_dir(&self, hour: i64) -> PathBuf {
        hour_dir(&self.root, hour)
    }

    /// Merges the files of every hour that ended before `closed_before`
    /// into one per hour. A part that cannot be read is moved to
    /// `quarantine/` (the hour's other parts are merged without it); an
    /// hour that fails otherwise is left as it is and the later hours are
    /// still compacted. The first such error is returned after all hours
    /// were tried.
    pub fn compact(&self, closed_before: DateTime<Utc>) -> Result<Written, Error> {
        let mut done = Written::default();
        let usage = self.root.join("usage");
        let mut hours: BTreeMap<PathBuf, Vec<(PathBuf, SeqRange)>> = BTreeMap::new();
        for (path, range) in files(&usage)? {
            if let (Some(range), Some(dir)) = (range, path.parent()) {
                hours.entry(dir.to_owned()).or_default().push((path, range));
            }
        }
        let mut failed = None;
        for (dir, parts) in hours {
            let Some(end) = hour_end(&dir) else { continue };
            if parts.len() < 2 || end > closed_before {
                continue;
            }
            match self.compact_hour(&dir, parts) {
                Ok(hour) => {
                    done.files += hour.files;
                    done.rows += hour.rows;
                    done.bytes += hour.bytes;
                    done.quarantined += hour.quarantined;
                }
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), %error, "cannot compact an archive hour; its files stay as they are");
                    failed.get_or_insert(error);
                }
            }
        }
        match failed {
            Some(error) => Err(error),
            None => Ok(done),
        }
    }

    /// Merges one closed hour's `parts` into one file.
    fn compact_hour(&self, dir: &Path, parts: Vec<(PathBuf, SeqRange)>) -> Result<Written, Error> {
        let mut done = Written::default();
        let usage = self.root.join("usage");
        let mut batches = Vec::new();
        let mut kept = Vec::with_capacity(parts.len());
        for (path, range) in parts {
            match read_batches(&path) {
                Ok(read) => {
                    batches.extend(read);
                    kept.push((path, range));
                }
                // The hour's directory is swapped for the merged one below:
                // a file neither read nor moved aside would be lost with it.
                Err(error) => {
                    quarantine(&self.root, &path, &error.to_string())?;
                    done.quarantined += 1;
                }
            }
        }
        let mut parts = kept;
        if parts.len() < 2 {
            return Ok(done);
        }
        {
            parts.sort_by_key(|(_, range)| *range);
            let first = parts.iter().map(|(_, (f, _))| *f).min().unwrap_or_default();
            let last = parts.iter().map(|(_, (_, l))| *l).max().unwrap_or_default();
            let staging = self.root.join(".staging");
            fs::create_dir_all(&staging).map_err(io(&staging))?;
            let merged = staging.join(dir.file_name().unwrap_or_default());
            fs::create_dir_all(&merged).map_err(io(&merged))?;
            let name = part_name(first, last);
            let batches = [sorted_by_key(&batches)?];
            let bytes = write_batches(&merged, &name, &batches)?;
            sync_dir(&merged)?;
            exchange(&merged, dir)?;
            sync_dir(dir.parent().unwrap_or(&usage))?;
            // `merged` now holds the old small files.
            fs::remove_dir_all(&staging).map_err(io(&staging))?;
            done.files += 1;
            done.rows += batches.iter().map(RecordBatch::num_rows).sum::<usize>();
            done.bytes += bytes;
            tracing::info!(dir = %dir.display(), merged = parts.len(), "archive hour compacted");
        }
        Ok(done)
    }
}

/// `batches` as one batch sorted by key (then by sequence, as they come).
fn sorted_by_key(batches: &[RecordBatch]) -> Result<RecordBatch, Error> {
    let batch = arrow_select::concat::concat_batches(&schema(), batches)?;
    let keys = batch
        .column(KEY_ID)
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| Error::InvalidArchive("key_id is not a string column".into()))?;
    let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
    order.sort_by(|&a, &b| keys.value(a as usize).cmp(keys.value(b as usize)));
    Ok(arrow_select::take::take_record_batch(
        &batch,
        &arrow_array::UInt32Array::from(order),
    )?)
}

/// A key's or a customer's usage in the archive at `root`, per hour, for the hours
/// numbered `from..to` (hours since the epoch): what DuckDB sums over the
/// same files. Files of a flush that has not finished (beyond the
/// watermark) are left out; row groups whose key range cannot hold the key
/// are not read.
pub fn hours_of(root: &Path, whose: Whose<'_>, from: i64, to: i64) -> Result<BTreeMap<i64, crate::Bucket>, Error> {
    let mut attempts = 0;
    loop {
        match hours_once(root, whose, from, to) {
            // Compaction swapped an hour while it was read: read again.
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound && attempts < 3 => {
                attempts += 1;
            }
            other => return other,
        }
    }
}

fn hours_once(root: &Path, whose: Whose<'_>, from: i64, to: i64) -> Result<BTreeMap<i64, crate::Bucket>, Error> {
    use parquet::arrow::ProjectionMask;
    use parquet::file::statistics::Statistics;
    let mut watermark = Archive::peek(root)?.map_or(0, |(seq, _)| seq);
    let mut out = BTreeMap::new();
    let archive = Archive {
        root: root.to_owned(),
        watermark,
        durable: 0,
        anchor: None,
    };
    for hour in from..to {
        for path in read_dir(&archive.hour_dir(hour))? {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let Some((_, last)) = parse_part(name) else { continue };
            // A flush (or a compaction merging one) may have moved the
            // watermark since it was read: look again before skipping.
            if last > watermark {
                watermark = Archive::peek(root)?.map_or(0, |(seq, _)| seq);
                if last > watermark {
                    continue;
                }
            }
            let file = File::open(&path).map_err(io(&path))?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
            let columns = builder.parquet_schema().num_columns();
            let (column, id) = match whose {
                Whose::Key(id) => (KEY_ID, id),
                // Written before customers: no row has one.
                Whose::Customer(_) if columns <= CUSTOMER_ID => continue,
                Whose::Customer(id) => (CUSTOMER_ID, id),
            };
            let may_hold = |stats: Option<&Statistics>| match stats {
                Some(Statistics::ByteArray(s)) => match (s.min_opt(), s.max_opt()) {
                    (Some(min), Some(max)) => min.data() <= id.as_bytes() && id.as_bytes() <= max.data(),
                    _ => true,
                },
                _ => true,
            };
            let groups: Vec<usize> = (0..builder.metadata().num_row_groups())
                .filter(|&i| may_hold(builder.metadata().row_group(i).column(column).statistics()))
                .collect();
            if groups.is_empty() {
                continue;
            }
            let mut wanted = vec![column, STATUS_CODE, COST];
            if columns > OUTPUT_TOKENS {
                wanted.extend([INPUT_TOKENS, OUTPUT_TOKENS]);
            }
            wanted.sort_unstable();
            let mask = ProjectionMask::roots(builder.parquet_schema(), wanted.iter().copied());
            let at = |c: usize| wanted.iter().position(|w| *w == c);
            let bucket: &mut crate::Bucket = out.entry(hour).or_default();
            for batch in builder.with_row_groups(groups).with_projection(mask).build()? {
                let batch = batch?;
                let column = |c: usize| at(c).map(|i| batch.column(i).as_any());
                let (Some(ids), Some(status), Some(cost)) = (
                    column(column_of(whose)).and_then(|c| c.downcast_ref::<StringArray>()),
                    column(STATUS_CODE).and_then(|c| c.downcast_ref::<Int32Array>()),
                    column(COST).and_then(|c| c.downcast_ref::<Decimal128Array>()),
                ) else {
                    return Err(Error::InvalidArchive(format!(
                        "{}: unexpected column types",
                        path.display()
                    )));
                };
                let tokens = |c: usize| column(c).and_then(|c| c.downcast_ref::<Int64Array>());
                let (input, output) = (tokens(INPUT_TOKENS), tokens(OUTPUT_TOKENS));
                for i in (0..ids.len()).filter(|&i| ids.is_valid(i) && ids.value(i) == id) {
                    bucket.requests += 1;
                    bucket.cost += Micros::new(cost.value(i) as i64);
                    if status.value(i) >= 500 {
                        bucket.errors += 1;
                    }
                    bucket.input_tokens += input.map_or(0, |c| c.value(i) as u64);
                    bucket.output_tokens += output.map_or(0, |c| c.value(i) as u64);
                }
            }
        }
    }
    out.retain(|_, b| b.requests > 0);
    Ok(out)
}

fn column_of(whose: Whose<'_>) -> usize {
    match whose {
        Whose::Key(_) => KEY_ID,
        Whose::Customer(_) => CUSTOMER_ID,
    }
}

/// Every batch of a Parquet file.
/// Files written before the token and customer columns get them filled
/// (tokens 0, no customer), so every batch has today's [`schema`].
fn read_batches(path: &Path) -> Result<Vec<RecordBatch>, Error> {
    let file = File::open(path).map_err(io(path))?;
    let mut batches = Vec::new();
    for batch in ParquetRecordBatchReaderBuilder::try_new(file)?.build()? {
        batches.push(upgraded(batch?)?);
    }
    Ok(batches)
}

/// Rewrites every part file written before the token and customer columns
/// with today's schema (tokens 0, no customer), each in one rename, so
/// that a reader globbing the directory (DuckDB, Polars) meets one schema.
/// Once, at the first open after an upgrade; a file that cannot be read is
/// left to compaction, which quarantines it.
fn upgrade_files(usage: &Path) -> Result<(), Error> {
    let mut upgraded = 0;
    for (path, _) in files(usage)? {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if name.starts_with('.') {
            continue;
        }
        let columns = File::open(&path)
            .ok()
            .and_then(|f| ParquetRecordBatchReaderBuilder::try_new(f).ok())
            .map(|b| b.schema().fields().len());
        if columns != Some(FIRST_COLUMNS) {
            continue;
        }
        let Some(dir) = path.parent() else { continue };
        let Ok(batches) = read_batches(&path) else { continue };
        write_batches(dir, &name, &batches)?;
        sync_dir(dir)?;
        upgraded += 1;
    }
    if upgraded > 0 {
        tracing::info!(upgraded, "archive files rewritten with the token and customer columns");
    }
    Ok(())
}

fn upgraded(batch: RecordBatch) -> Result<RecordBatch, Error> {
    if batch.num_columns() != FIRST_COLUMNS {
        return Ok(batch);
    }
    let n = batch.num_rows();
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(Int64Array::from(vec![0; n])));
    columns.push(Arc::new(Int64Array::from(vec![0; n])));
    columns.push(Arc::new(StringArray::from(vec![None::<&str>; n])));
    Ok(RecordBatch::try_new(schema(), columns)?)
}

/// Moves `path` (under `<root>/usage/`) to the same place under
/// `<root>/quarantine/`, out of the readers' `usage/**` glob, with a warning.
fn quarantine(root: &Path, path: &Path, why: &str) -> Result<(), Error> {
    let relative = path.strip_prefix(root.join("usage")).unwrap_or(path);
    let target = root.join("quarantine").join(relative);
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(io(parent))?;
    }
    fs::rename(path, &target).map_err(io(path))?;
    tracing::warn!(
        path = %path.display(),
        to = %target.display(),
        why,
        "archive file quarantined; the archive goes on without it"
    );
    Ok(())
}

/// The first and last stream sequence a part file covers.
type SeqRange = (u64, u64);

fn part_name(first: u64, last: u64) -> String {
    format!("part-{first:020}-{last:020}.parquet")
}

/// `<root>/usage/date=YYYY-MM-DD/hour=HH` of an hour number (hours since the epoch).
pub(crate) fn hour_dir(root: &Path, hour: i64) -> PathBuf {
    let start = DateTime::from_timestamp(hour * 3600, 0).unwrap_or_default();
    root.join("usage")
        .join(format!("date={}", start.format("%Y-%m-%d")))
        .join(format!("hour={:02}", start.hour()))
}

/// The part files of the archive at `root` at or below `watermark` (of
/// flushes that finished), by path relative to the root
/// (`usage/date=…/hour=…/part-…`) and on disk.
pub fn parts_at_or_below(root: &Path, watermark: u64) -> Result<Vec<(String, PathBuf)>, Error> {
    let mut out = Vec::new();
    for (path, range) in files(&root.join("usage"))? {
        let Some((_, last)) = range else { continue };
        if last > watermark {
            continue;
        }
        let Ok(relative) = path.strip_prefix(root) else {
            continue;
        };
        out.push((relative.to_string_lossy().into_owned(), path));
    }
    Ok(out)
}

/// `(first, last)` of a `part-<first>-<last>.parquet` name.
pub fn parse_part(name: &str) -> Option<(u64, u64)> {
    let (first, last) = name.strip_prefix("part-")?.strip_suffix(".parquet")?.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

/// When the hour of a `…/date=YYYY-MM-DD/hour=HH` directory ends.
fn hour_end(dir: &Path) -> Option<DateTime<Utc>> {
    let hour: u32 = dir.file_name()?.to_str()?.strip_prefix("hour=")?.parse().ok()?;
    let date = dir.parent()?.file_name()?.to_str()?.strip_prefix("date=")?;
    let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(hour, 0, 0)?.and_utc() + chrono::Duration::hours(1))
}

/// Every file under `usage/date=*/hour=*/`, with its range if it is a part
/// file (temporary files and strays have none).
fn files(usage: &Path) -> Result<Vec<(PathBuf, Option<SeqRange>)>, Error> {
    let mut out = Vec::new();
    for date in read_dir(usage)? {
        for hour in read_dir(&date)? {
            for file in read_dir(&hour)? {
                if file.is_file() {
                    let range = file.file_name().and_then(|n| n.to_str()).and_then(parse_part);
                    out.push((file, range));
                }
            }
        }
    }
    Ok(out)
}

pub(crate) fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        out.push(entry.map_err(io(dir))?.path());
    }
    out.sort();
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn write_file(dir: &Path, name: &str, rows: &[&Row]) -> Result<u64, Error> {
    let schema = schema();
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(event_ids(rows)),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.ts.timestamp_micros()))
                    .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.key_id.as_str()))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.workflow_id.as_str()),
            )),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.status_code as i32))),
            Arc::new(
                Decimal128Array::from_iter_values(rows.iter().map(|r| r.cost.get() as i128))
                    .with_precision_and_scale(18, 6)?,
            ),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.duration_ms as i64))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.seq as i64))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.input_tokens as i64))),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.output_tokens as i64),
            )),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.customer_id.as_deref()))),
        ],
    )?;
    write_batches(dir, name, &[batch])
}

fn event_ids(rows: &[&Row]) -> StringArray {
    let mut ids = arrow_array::builder::StringBuilder::with_capacity(rows.len(), rows.len() * 36);
    let mut buf = [0u8; 36];
    for row in rows {
        ids.append_value(row.event_id.encode(&mut buf));
    }
    ids.finish()
}

/// Writes `batches` to `dir/name` through a hidden temporary file; returns
/// the file's size.
fn write_batches(dir: &Path, name: &str, batches: &[RecordBatch]) -> Result<u64, Error> {
    let temp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let file = File::create(&temp).map_err(io(&temp))?;
    // Dictionaries pay off for the repetitive columns (keys, workflows,
    // statuses, prices); unique or ever-increasing ones only pay for them.
    let plain = ["event_id", "ts", "seq", "duration_ms"];
    let props = plain
        .into_iter()
        .fold(WriterProperties::builder(), |b, column| {
            b.set_column_dictionary_enabled(column.into(), false)
        })
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .set_max_row_group_size(ROW_GROUP)
        .build();
    let mut writer = ArrowWriter::try_new(file, schema(), Some(props))?;
    for batch in batches {
        writer.write(batch)?;
    }
    let file = writer.into_inner()?;
    file.sync_all().map_err(io(&temp))?;
    let bytes = file.metadata().map_err(io(&temp))?.len();
    fs::rename(&temp, &path).map_err(io(&path))?;
    Ok(bytes)
}

/// Swaps two directories in one step (Linux `renameat2(RENAME_EXCHANGE)`).
fn exchange(a: &Path, b: &Path) -> Result<(), Error> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|e| io(p)(std::io::Error::other(e)));
    let (ca, cb) = (c(a)?, c(b)?);
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io(b)(std::io::Error::last_os_error()))
    }
}

/// Every row in the archive (for tests and checks): `(event_id, seq)`.
pub fn read_ids(root: &Path) -> Result<Vec<(String, i64)>, Error> {
    let mut out = Vec::new();
    for (path, range) in files(&root.join("usage"))? {
        if range.is_none() {
            continue;
        }
        let file = File::open(&path).map_err(io(&path))?;
        for batch in ParquetRecordBatchReaderBuilder::try_new(file)?.build()? {
            let batch = batch?;
            let ids = batch.column(0).as_any().downcast_ref::<StringArray>();
            let seqs = batch.column(SEQ).as_any().downcast_ref::<Int64Array>();
            if let (Some(ids), Some(seqs)) = (ids, seqs) {
                for i in 0..ids.len() {
                    out.push((ids.value(i).to_owned(), seqs.value(i)));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage;
    use chrono::TimeZone;

    fn row(seq: u64, ts: DateTime<Utc>) -> Row {
        Row {
            seq,
            event_id: EventId::new(),
            ts,
            key_id: "key_a".into(),
            workflow_id: "echo".into(),
            status_code: 200,
            cost: Micros::new(1_500_000),
            duration_ms: 3,
            input_tokens: 0,
            output_tokens: 0,
            customer_id: None,
        }
    }

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, h, m, 0).unwrap()
    }

    #[test]
    fn flushes_name_their_range_and_move_the_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let mut archive = Archive::open(dir.path()).unwrap();
        let rows = [row(2, t(3, 59)), row(3, t(4, 0)), row(5, t(4, 1))];
        let written = archive.write(&rows, 6, None).unwrap();
        assert_eq!((written.files, written.rows), (2, 3));
        assert_eq!(archive.watermark(), 6);
        assert_eq!(archive.durable_watermark(), 6, "renamed and its directory synced");
        assert!(dir
            .path()
            .join("usage/date=2026-11-25/hour=04")
            .join(part_name(1, 6))
            .exists());
        // Nothing but non-query events: the watermark still moves, naming
        // the event there; a watermark of an older version names none.
        let at_nine = EventId::new();
        assert_eq!(archive.write(&[], 9, Some(at_nine)).unwrap().files, 0);
        let reopened = Archive::open(dir.path()).unwrap();
        assert_eq!((reopened.watermark(), reopened.anchor()), (9, Some(at_nine)));
        assert_eq!(parse_watermark("7\n"), Some((7, None)));
        assert_eq!(parse_watermark(""), Some((0, None)));
        for bad in ["x", "7 x", &format!("7 {at_nine} 8")] {
            assert_eq!(parse_watermark(bad), None, "{bad:?}");
        }
        let mut ids = read_ids(dir.path()).unwrap();
        ids.sort_by_key(|(_, seq)| *seq);
        assert_eq!(ids.iter().map(|(_, s)| *s).collect::<Vec<_>>(), [2, 3, 5]);
    }

    /// Cutting back keeps every row at or before the cut, once, whether
    /// its flush ends before the cut or straddles it; a crash that left a
    /// straddling part beside its cut copy converges at the next cut.
    #[test]
    fn cutting_back_keeps_what_precedes_the_cut_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut archive = Archive::open(dir.path()).unwrap();
        archive.write(&[row(2, t(3, 10)), row(4, t(4, 10))], 5, None).unwrap();
        archive
            .write(&[row(6, t(3, 20)), row(8, t(4, 20)), row(10, t(4, 30))], 10, None)
            .unwrap();
        archive.write(&[row(12, t(4, 40))], 12, None).unwrap();
        assert_eq!(archive.last_row_until(9).unwrap().map(|(seq, _)| seq), Some(8));
        assert_eq!(archive.last_row_until(1).unwrap(), None);
        // A crash mid-way: the straddling flush's cut copy beside it.
        let straddling = dir.path().join("usage/date=2026-11-25/hour=04");
        let batches = read_batches(&straddling.join(part_name(6, 10))).unwrap();
        write_batches(&straddling, &part_name(6, 9), &batches).unwrap();
        let anchor = Some(EventId::new());
        archive.cut_back(9, anchor).unwrap();
        let reopened = Archive::open(dir.path()).unwrap();
        assert_eq!((reopened.watermark(), reopened.anchor()), (9, anchor));
        let mut seqs: Vec<i64> = read_ids(dir.path()).unwrap().into_iter().map(|(_, s)| s).collect();
        seqs.sort();
        assert_eq!(seqs, [2, 4, 6, 8]);
    }

    /// A file written before the token and customer columns is read with
    /// tokens 0 and no customer: summed beside newer files, and merged with
    /// them into today's schema by compaction.
    #[test]
    fn files_from_before_tokens_and_customers_still_count() {
        let dir = tempfile::tempdir().unwrap();
        let mut archive = Archive::open(dir.path()).unwrap();
        archive.write(&[row(1, t(3, 0))], 1, None).unwrap();
        // Rewrite that file with the first eight columns only, as they were.
        let three = dir.path().join("usage/date=2026-11-25/hour=03");
        let old: Vec<RecordBatch> = read_batches(&three.join(part_name(1, 1)))
            .unwrap()
            .into_iter()
            .map(|b| b.project(&(0..FIRST_COLUMNS).collect::<Vec<_>>()).unwrap())
            .collect();
        let file = File::create(three.join(part_name(1, 1))).unwrap();
        let mut writer = ArrowWriter::try_new(file, old[0].schema(), None).unwrap();
        writer.write(&old[0]).unwrap();
        writer.close().unwrap();
        let mut tokened = row(2, t(3, 30));
        (tokened.input_tokens, tokened.output_tokens) = (7, 9);
        tokened.customer_id = Some("acme".into());
        archive.write(&[tokened], 2, None).unwrap();
        let hour = usage::hour_of(t(3, 0));
        let read = |whose| hours_of(dir.path(), whose, hour, hour + 1).unwrap();
        let key = read(Whose::Key("key_a"))[&hour];
        assert_eq!((key.requests, key.input_tokens, key.output_tokens), (2, 7, 9));
        assert_eq!(
            read(Whose::Customer("acme"))[&hour].requests,
            1,
            "the old row has no customer"
        );
        assert!(read(Whose::Customer("other")).is_empty());
        assert_eq!(archive.compact(t(5, 0)).unwrap().rows, 2);
        assert_eq!(read(Whose::Key("key_a"))[&hour], key, "the same after compaction");

        // An old file alone in its hour is rewritten at open, so every
        // file has today's schema.
        let four = dir.path().join("usage/date=2026-11-25/hour=04");
        archive.write(&[row(3, t(4, 0))], 3, None).unwrap();
        let old = read_batches(&four.join(part_name(3, 3))).unwrap()[0]
            .project(&(0..FIRST_COLUMNS).collect::<Vec<_>>())
            .unwrap();
        let mut writer =
            ArrowWriter::try_new(File::create(four.join(part_name(3, 3))).unwrap(), old.schema(), None).unwrap();
        writer.write(&old).unwrap();
        writer.close().unwrap();
        drop(archive);
        Archive::open(dir.path()).unwrap();
        let file = File::open(four.join(part_name(3, 3))).unwrap();
        let columns = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .schema()
            .fields()
            .len();
        assert_eq!(columns, schema().fields().len());
        assert_eq!(read_ids(dir.path()).unwrap().len(), 3, "no row lost or doubled");
    }

    #[test]
    fn an_unfinished_flush_is_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut archive = Archive::open(dir.path()).unwrap();
        archive.write(&[row(1, t(3, 0))], 1, None).unwrap();
        // A crash after a file was renamed into place but before the watermark moved.
        let hour = dir.path().join("usage/date=2026-11-25/hour=05");
        fs::create_dir_all(&hour).unwrap();
        write_file(&hour, &part_name(2, 4), &[&row(3, t(5, 0))]).unwrap();
        fs::write(hour.join(".part-x.tmp"), b"half").unwrap();
        let archive = Archive::open(dir.path()).unwrap();
        assert_eq!(archive.watermark(), 1);
        assert_eq!(read_ids(dir.path()).unwrap().len(), 1);
        assert_eq!(fs::read_dir(&hour).unwrap().count(), 0, "both leftovers are gone");
    }

    #[test]
    fn compaction_merges_closed_hours_into_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut archive = Archive::open(dir.path()).unwrap();
        archive.write(&[row(1, t(3, 0)), row(2, t(4, 0))], 2, None).unwrap();
        archive.write(&[row(3, t(3, 30)), row(4, t(4, 30))], 4, None).unwrap();
        archive.write(&[row(5, t(3, 59))], 5, None).unwrap();
        let before = read_ids(dir.path()).unwrap();
        let done = archive.compact(t(4, 10)).unwrap();
        assert_eq!((done.files, done.rows), (1, 3), "03:00 closed, 04:00 not");
        let three = dir.path().join("usage/date=2026-11-25/hour=03");
        let names: Vec<_> = fs::read_dir(&three).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [std::ffi::OsString::from(part_name(1, 5))]);
        assert_eq!(
            fs::read_dir(dir.path().join("usage/date=2026-11-25/hour=04"))
                .unwrap()
                .count(),
            2
        );
        let mut after = read_ids(dir.path()).unwrap();
        let mut before = before;
        before.sort();
        after.sort();
        assert_eq!(after, before, "same rows, once each");
        assert!(!dir.path().join(".staging").exists());
        assert_eq!(
            Archive::open(dir.path()).unwrap().watermark(),
            5,
            "compaction keeps the watermark"
        );
    }

    /// One unreadable file in a closed hour: moved to `quarantine/`, the
    /// hour merged without it, later hours compacted all the same, and the
    /// archive readable (as DuckDB reads it) throughout. A file that is not
    /// a part file goes to quarantine at open, not to the bin.
    #[test]
    fn an_unreadable_file_is_quarantined_and_the_rest_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut archive = Archive::open(dir.path()).unwrap();
        archive.write(&[row(1, t(3, 0)), row(2, t(4, 0))], 2, None).unwrap();
        archive.write(&[row(3, t(3, 30)), row(4, t(4, 30))], 4, None).unwrap();
        archive.write(&[row(5, t(3, 59)), row(6, t(4, 59))], 6, None).unwrap();
        let three = dir.path().join("usage/date=2026-11-25/hour=03");
        let damaged = three.join(part_name(3, 4));
        let mut bytes = fs::read(&damaged).unwrap();
        let len = bytes.len();
        bytes[len / 2..].fill(0xAB);
        fs::write(&damaged, &bytes).unwrap();
        let done = archive.compact(t(5, 10)).unwrap();
        assert_eq!(
            (done.files, done.quarantined),
            (2, 1),
            "both hours merged, one file aside"
        );
        assert!(dir
            .path()
            .join("quarantine/date=2026-11-25/hour=03")
            .join(part_name(3, 4))
            .exists());
        let mut seqs: Vec<i64> = read_ids(dir.path()).unwrap().into_iter().map(|(_, s)| s).collect();
        seqs.sort();
        assert_eq!(seqs, [1, 2, 4, 5, 6], "every row but the quarantined file's");

        let stray = three.join("export.parquet");
        fs::write(&stray, b"not ours").unwrap();
        drop(archive);
        Archive::open(dir.path()).unwrap();
        assert!(!stray.exists());
        assert!(dir
            .path()
            .join("quarantine/date=2026-11-25/hour=03/export.parquet")
            .exists());
    }
}
