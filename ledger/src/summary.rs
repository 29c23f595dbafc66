//! Usage across keys from the Parquet archive, summed per hour and per
//! group (key, customer, workflow, status): what `GET /api/v1/usage`
//! regroups into its periods. The sums are DuckDB's over the same files.
//!
//! Made for the archive's shape rather than through a general engine:
//! - every row of a file is of its directory's hour, so `ts` is not read;
//! - the id columns are dictionary-encoded, and are read as dictionaries,
//!   so a row is grouped by four small integers, never by its strings;
//! - files are read on every core at once;
//! - a file's sums are kept ([`Cache`]): a part file never changes under
//!   its name (a flush or a compaction writes a new name), so a file read
//!   once is not read again while its size and time stay the same.
//!
//! Only files at or below the watermark are read (a flush beyond it has
//! not finished): the caller adds what comes after the returned watermark
//! from the stream. A file replaced while it was read (compaction), or one
//! beyond the watermark it was listed with, makes the whole read start
//! again, so the files summed and the watermark always agree.

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{Array, Decimal128Array, DictionaryArray, Int32Array, Int64Array};
use arrow_schema::{DataType, Field, Schema};
use ingest::Micros;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use parquet::file::reader::ChunkReader;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::archive::{self, Archive, COST, CUSTOMER_ID, INPUT_TOKENS, KEY_ID, OUTPUT_TOKENS, STATUS_CODE, WORKFLOW_ID};
use crate::error::{io, Error};
use crate::hash::FastMap;
use crate::Bucket;

/// One group's usage in one hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourGroup {
    /// Hours since the epoch.
    pub hour: i64,
    pub key_id: Arc<str>,
    pub customer_id: Option<Arc<str>>,
    pub workflow_id: Arc<str>,
    pub status_code: u16,
    pub usage: Bucket,
}

/// What was read, and the watermark it is exact up to.
#[derive(Debug, Default)]
pub struct Summary {
    pub watermark: u64,
    /// Each file's groups.
    pub files: Vec<Arc<[HourGroup]>>,
}

impl Summary {
    pub fn groups(&self) -> impl Iterator<Item = &HourGroup> {
        self.files.iter().flat_map(|f| f.iter())
    }
}

/// Groups kept at most (about 120 bytes each); past it the cache starts
/// over. The sums of an hour are a group per key, workflow and status
/// used in it, so this is about a month of 1,000 such combinations an hour.
const CACHE_GROUPS: usize = 1_000_000;

/// The sums of files read before, by path, with the size and time they
/// had.
#[derive(Debug)]
pub struct Cache {
    files: std::sync::Mutex<CacheFiles>,
    /// Groups kept at most.
    limit: usize,
}

impl Default for Cache {
    fn default() -> Cache {
        Cache::with_limit(CACHE_GROUPS)
    }
}

/// A file's version when read (its size and time, or its object's tag),
/// its sums, and the last round (see [`Cache::sweep`]) it was asked for in.
type Cached = (String, Arc<[HourGroup]>, u64);

#[derive(Debug, Default)]
struct CacheFiles {
    by_path: HashMap<String, Cached>,
    groups: usize,
    /// The current round of [`Cache::sweep`].
    round: u64,
}

impl Cache {
    /// A cache of at most `limit` groups.
    pub fn with_limit(limit: usize) -> Cache {
        Cache {
            files: Default::default(),
            limit,
        }
    }

    /// The sums of the file at `path` if it is still at `version`.
    pub fn get(&self, path: &str, version: &str) -> Option<Arc<[HourGroup]>> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let round = files.round;
        match files.by_path.get_mut(path) {
            Some((v, groups, seen)) if v == version => {
                *seen = round;
                Some(groups.clone())
            }
            _ => None,
        }
    }

    /// Starts a round: files not asked for from now until [`Self::sweep`]
    /// with the returned round are forgotten then. A reader that reads
    /// every file it cares about in a round (the usage query's
    /// read-ahead) so drops the sums of files that no longer exist (a
    /// flush's parts, once compacted) rather than keeping them until the
    /// cache is full.
    pub fn next_round(&self) -> u64 {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        files.round += 1;
        files.round
    }

    /// Forgets the files of `hours` (and those without usage) not asked
    /// for since round `round` started: the reader read every file of
    /// those hours, so the rest no longer exist. Files of other hours,
    /// which a query asked for, stay.
    pub fn sweep(&self, round: u64, hours: std::ops::Range<i64>) {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let mut dropped = 0;
        files.by_path.retain(|_, (_, groups, seen)| {
            let swept = groups.first().is_none_or(|g| hours.contains(&g.hour));
            let keep = *seen >= round || !swept;
            if !keep {
                dropped += groups.len();
            }
            keep
        });
        files.groups -= dropped;
    }

    /// Groups kept at most.
    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn put(&self, path: &str, version: &str, groups: Arc<[HourGroup]>) {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        // A file's older version (compacted, rewritten) makes room first.
        if let Some((_, old, _)) = files.by_path.remove(path) {
            files.groups -= old.len();
        }
        if files.groups + groups.len() > self.limit {
            files.by_path.clear();
            files.groups = 0;
        }
        files.groups += groups.len();
        let round = files.round;
        files
            .by_path
            .insert(path.to_owned(), (version.to_owned(), groups, round));
    }
}

/// The archive's usage in hours `from..to` (hours since the epoch).
pub fn hours(root: &Path, from: i64, to: i64, cache: &Cache) -> Result<Summary, Error> {
    let mut attempts = 0;
    loop {
        match hours_once(root, from, to, cache) {
            // A flush or a compaction is under way: it takes milliseconds.
            Err(Retry::Again) | Err(Retry::Gone(_)) if attempts < 40 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            Err(Retry::Again) => {
                return Err(Error::InvalidArchive(
                    "the archive kept changing while it was read".into(),
                ))
            }
            Err(Retry::Gone(e) | Retry::Failed(e)) => return Err(e),
            Ok(summary) => return Ok(summary),
        }
    }
}

enum Retry {
    /// A file beyond the watermark: a flush landed meanwhile.
    Again,
    /// A file disappeared (compaction swapped its hour).
    Gone(Error),
    Failed(Error),
}

impl From<Error> for Retry {
    fn from(e: Error) -> Retry {
        match &e {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => Retry::Gone(e),
            _ => Retry::Failed(e),
        }
    }
}

fn hours_once(root: &Path, from: i64, to: i64, cache: &Cache) -> Result<Summary, Retry> {
    let watermark = Archive::peek(root)?.map_or(0, |(seq, _)| seq);
    let mut files: Vec<(i64, PathBuf)> = Vec::new();
    for hour in from..to {
        for path in archive::read_dir(&archive::hour_dir(root, hour))? {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let Some((_, last)) = archive::parse_part(name) else {
                continue;
            };
            if last > watermark {
                return Err(Retry::Again);
            }
            files.push((hour, path));
        }
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len().max(1));
    let chunk = files.len().div_ceil(threads).max(1);
    let parts: Vec<Result<Vec<Arc<[HourGroup]>>, Error>> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|files| {
                s.spawn(move || {
                    let mut sums = Vec::with_capacity(files.len());
                    for (hour, path) in files {
                        let meta = std::fs::metadata(path).map_err(io(path))?;
                        let version = format!("{} {:?}", meta.len(), meta.modified().ok());
                        let key = path.display().to_string();
                        let groups = match cache.get(&key, &version) {
                            Some(groups) => groups,
                            None => {
                                let mut groups = Vec::new();
                                file(*hour, path, &mut groups)?;
                                let groups: Arc<[HourGroup]> = groups.into();
                                cache.put(&key, &version, groups.clone());
                                groups
                            }
                        };
                        sums.push(groups);
                    }
                    Ok(sums)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::InvalidArchive("a reader panicked".into())))
            })
            .collect()
    });
    let mut summary = Summary {
        watermark,
        ..Summary::default()
    };
    for part in parts {
        summary.files.extend(part?);
    }
    Ok(summary)
}

/// The archive's schema (or, for a file written before tokens and
/// customers, its first `columns`) with the id columns as dictionaries.
fn dictionary_schema(columns: usize) -> Arc<Schema> {
    let fields = archive::schema()
        .fields()
        .iter()
        .take(columns)
        .enumerate()
        .map(|(i, f)| match i {
            KEY_ID | WORKFLOW_ID | CUSTOMER_ID => Arc::new(Field::new(
                f.name(),
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                f.is_nullable(),
            )),
            _ => f.clone(),
        })
        .collect::<Vec<_>>();
    Arc::new(Schema::new(fields))
}

/// Key, customer, workflow, status.
type GroupKey = (Arc<str>, Option<Arc<str>>, Arc<str>, u16);

/// Sums one file into `out`.
fn file(hour: i64, path: &PathBuf, out: &mut Vec<HourGroup>) -> Result<(), Error> {
    let opened = File::open(path).map_err(io(path))?;
    let again = opened.try_clone().map_err(io(path))?;
    read(hour, opened, again, &path.display().to_string(), out)
}

/// The sums of one part file held in memory (read from object storage),
/// of hour `hour`; `name` for errors.
pub fn of_bytes(hour: i64, bytes: bytes::Bytes, name: &str) -> Result<Vec<HourGroup>, Error> {
    let mut out = Vec::new();
    read(hour, bytes.clone(), bytes, name, &mut out)?;
    Ok(out)
}

/// Sums a part file, given twice (its schema is read first).
fn read<R: ChunkReader + 'static>(
    hour: i64,
    first: R,
    again: R,
    name: &str,
    out: &mut Vec<HourGroup>,
) -> Result<(), Error> {
    let columns = ParquetRecordBatchReaderBuilder::try_new(first)?.schema().fields().len();
    let options = ArrowReaderOptions::new().with_schema(dictionary_schema(columns));
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(again, options)?;
    let mut wanted = vec![KEY_ID, WORKFLOW_ID, STATUS_CODE, COST];
    if columns > CUSTOMER_ID {
        wanted.extend([INPUT_TOKENS, OUTPUT_TOKENS, CUSTOMER_ID]);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), wanted.iter().copied());
    let at = |c: usize| wanted.iter().position(|w| *w == c);
    let mut sums: HashMap<GroupKey, Bucket> = HashMap::new();
    let bad = || Error::InvalidArchive(format!("{name}: unexpected column types"));
    for batch in builder.with_projection(mask).with_batch_size(65_536).build()? {
        let batch = batch?;
        let column = |c: usize| at(c).map(|i| batch.column(i));
        let dict = |c: usize| column(c).and_then(|a| a.as_dictionary_opt::<Int32Type>());
        let (Some(keys), Some(workflows), Some(status), Some(cost)) = (
            dict(KEY_ID),
            dict(WORKFLOW_ID),
            column(STATUS_CODE).and_then(|a| a.as_any().downcast_ref::<Int32Array>()),
            column(COST).and_then(|a| a.as_any().downcast_ref::<Decimal128Array>()),
        ) else {
            return Err(bad());
        };
        let customers = dict(CUSTOMER_ID);
        let tokens = |c: usize| column(c).and_then(|a| a.as_any().downcast_ref::<Int64Array>());
        let (input, output) = (tokens(INPUT_TOKENS), tokens(OUTPUT_TOKENS));
        // Grouped by dictionary indices: integers, not strings.
        let mut by_index: FastMap<(i32, i32, i32, i32), Bucket> = FastMap::default();
        let (k, w) = (keys.keys(), workflows.keys());
        for i in 0..batch.num_rows() {
            let c = customers.map_or(-1, |c| if c.is_valid(i) { c.keys().value(i) } else { -1 });
            let s = status.value(i);
            let bucket = by_index.entry((k.value(i), w.value(i), c, s)).or_default();
            bucket.requests += 1;
            bucket.cost += Micros::new(cost.value(i) as i64);
            if s >= 500 {
                bucket.errors += 1;
            }
            bucket.input_tokens = bucket
                .input_tokens
                .saturating_add(input.map_or(0, |a| a.value(i) as u64));
            bucket.output_tokens = bucket
                .output_tokens
                .saturating_add(output.map_or(0, |a| a.value(i) as u64));
        }
        let name = |d: &DictionaryArray<Int32Type>, i: i32| -> Result<Arc<str>, Error> {
            let values = d.values().as_string_opt::<i32>().ok_or_else(bad)?;
            usize::try_from(i)
                .ok()
                .filter(|&i| i < values.len())
                .map(|i| Arc::from(values.value(i)))
                .ok_or_else(bad)
        };
        for ((k, w, c, s), bucket) in by_index {
            let customer = match customers {
                Some(d) if c >= 0 => Some(name(d, c)?),
                _ => None,
            };
            let group = (name(keys, k)?, customer, name(workflows, w)?, s.clamp(0, 999) as u16);
            *sums.entry(group).or_default() += bucket;
        }
    }
    out.extend(
        sums.into_iter()
            .map(|((key_id, customer_id, workflow_id, status_code), usage)| HourGroup {
                hour,
                key_id,
                customer_id,
                workflow_id,
                status_code,
                usage,
            }),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(n: usize) -> Arc<[HourGroup]> {
        hour_groups(0, n)
    }

    fn hour_groups(hour: i64, n: usize) -> Arc<[HourGroup]> {
        (0..n)
            .map(|_| HourGroup {
                hour,
                key_id: "k".into(),
                customer_id: None,
                workflow_id: "w".into(),
                status_code: 200,
                usage: Bucket::default(),
            })
            .collect()
    }

    #[test]
    fn a_full_cache_starts_over() {
        let cache = Cache::with_limit(10);
        cache.put("z", "1", groups(4));
        cache.put("a", "1", groups(6));
        cache.put("a", "2", groups(6));
        assert!(cache.get("a", "1").is_none());
        assert_eq!(cache.get("a", "2").map(|g| g.len()), Some(6));
        assert!(
            cache.get("z", "1").is_some(),
            "a new version gives back the old one's groups first: exactly full, not started over"
        );
        cache.put("c", "1", groups(1));
        assert!(cache.get("a", "2").is_none() && cache.get("z", "1").is_none());
        assert_eq!(cache.get("c", "1").map(|g| g.len()), Some(1));
    }

    #[test]
    fn a_sweep_forgets_the_files_not_asked_for_in_its_round() {
        let cache = Cache::with_limit(11);
        cache.put("gone", "1", groups(5));
        cache.put("kept", "1", groups(3));
        cache.put("other hours", "1", hour_groups(100, 1));
        let round = cache.next_round();
        assert!(cache.get("kept", "1").is_some());
        cache.put("new", "1", groups(2));
        cache.sweep(round, 0..10);
        assert!(cache.get("gone", "1").is_none());
        assert!(cache.get("kept", "1").is_some() && cache.get("new", "1").is_some());
        assert!(cache.get("other hours", "1").is_some(), "outside the hours swept");
        // Its 5 groups were given back: 5 more fit without starting over.
        cache.put("more", "1", groups(5));
        assert!(cache.get("kept", "1").is_some(), "not started over");
    }
}
