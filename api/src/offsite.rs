//! The archive on object storage (`--archive-url s3://bucket/prefix`):
//! the same layout as `<data-dir>/archive`, under the prefix, through the
//! `object_store` crate.
//!
//! The worker writes each flush to its data dir exactly as for a local
//! archive (files named by their sequence range, then the watermark), and
//! then uploads:
//!
//! 1. every local part file at or below the local watermark, under the
//!    same relative path (`usage/date=…/hour=…/part-<first>-<last>.parquet`);
//! 2. then `watermark`;
//! 3. then deletes the local files it uploaded.
//!
//! A put is atomic (an object is there whole or not at all), and a file's
//! name is its range, so an upload repeated after a crash (kill -9 between
//! any two steps) writes the same rows under the same name: each row is in
//! exactly one object. Nothing is uploaded beyond the local watermark, so
//! never a file of an unfinished flush. Files are not compacted on object
//! storage: merging would mean a window where a reader sees both the parts
//! and the merged file. The stream is trimmed only up to the watermark
//! *uploaded*.

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use std::path::Path;
use std::sync::Arc;

use crate::config::ArchiveUrl;

#[derive(Debug, thiserror::Error)]
pub enum OffsiteError {
    #[error("object storage: {0}")]
    Store(#[from] object_store::Error),
    #[error(transparent)]
    Archive(#[from] ledger::Error),
    #[error("the watermark on object storage is not a sequence number and an event id: {0:?}")]
    Watermark(String),
}

/// An archive at an `s3://` URL.
#[derive(Debug, Clone)]
pub struct Offsite {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    pub url: String,
}

impl Offsite {
    /// From the URL and the `AWS_*` environment.
    pub fn open(url: &ArchiveUrl) -> Result<Offsite, OffsiteError> {
        let store = AmazonS3Builder::from_env().with_bucket_name(&url.bucket).build()?;
        Ok(Offsite {
            store: Arc::new(store),
            prefix: url.prefix.clone(),
            url: url.to_string(),
        })
    }

    fn path(&self, relative: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(relative)
        } else {
            ObjectPath::from(format!("{}/{relative}", self.prefix))
        }
    }

    /// The uploaded watermark (0: none yet).
    pub async fn watermark(&self) -> Result<u64, OffsiteError> {
        Ok(self.mark().await?.0)
    }

    /// The uploaded watermark and the id of the event it names.
    pub async fn mark(&self) -> Result<(u64, Option<ingest::EventId>), OffsiteError> {
        match self.store.get(&self.path("watermark")).await {
            Ok(got) => {
                let text = String::from_utf8_lossy(&got.bytes().await?).into_owned();
                ledger::archive::parse_watermark(&text).ok_or(OffsiteError::Watermark(text))
            }
            Err(object_store::Error::NotFound { .. }) => Ok((0, None)),
            Err(e) => Err(e.into()),
        }
    }

    /// Uploads what the local archive at `root` holds at or below its
    /// watermark, then the watermark, then deletes the local files; the
    /// watermark now uploaded.
    pub async fn upload(&self, root: &Path) -> Result<u64, OffsiteError> {
        let dir = root.to_owned();
        let (parts, line, watermark) = tokio::task::spawn_blocking(move || {
            let archive = ledger::archive::Archive::peek(&dir)?;
            let watermark = archive.map_or(0, |(seq, _)| seq);
            let parts = ledger::archive::parts_at_or_below(&dir, watermark)?;
            let line = match std::fs::read_to_string(dir.join("watermark")) {
                Ok(line) => line,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(source) => {
                    return Err(ledger::Error::Io {
                        path: dir.join("watermark"),
                        source,
                    })
                }
            };
            Ok::<_, ledger::Error>((parts, line, watermark))
        })
        .await
        .map_err(|e| ledger::Error::InvalidArchive(format!("the upload task failed: {e}")))??;
        if watermark == 0 {
            return Ok(0);
        }
        for (relative, path) in &parts {
            let bytes = tokio::fs::read(path).await.map_err(|source| ledger::Error::Io {
                path: path.clone(),
                source,
            })?;
            self.store
                .put(&self.path(relative), PutPayload::from(Bytes::from(bytes)))
                .await?;
        }
        self.store
            .put(&self.path("watermark"), PutPayload::from(Bytes::from(line)))
            .await?;
        for (_, path) in &parts {
            // Uploaded: the object store holds it now. A file left behind
            // (a crash here) is uploaded again under the same name.
            let _ = tokio::fs::remove_file(path).await;
        }
        if !parts.is_empty() {
            tracing::info!(files = parts.len(), watermark, url = self.url, "archive uploaded");
        }
        Ok(watermark)
    }

    /// The usage in hours `from..to`, from the objects at or below the
    /// uploaded watermark (the caller adds the stream after it); each
    /// object's sums kept in `cache` by its tag.
    pub async fn hours(
        &self,
        from: i64,
        to: i64,
        cache: &Arc<ledger::summary::Cache>,
    ) -> Result<ledger::summary::Summary, OffsiteError> {
        let watermark = self.watermark().await?;
        let mut summary = ledger::summary::Summary {
            watermark,
            files: Vec::new(),
        };
        let (first_day, last_day) = (from.div_euclid(24), (to - 1).div_euclid(24));
        for day in first_day..=last_day {
            let Some(date) = ledger::usage::date_of_day(day) else {
                continue;
            };
            let prefix = self.path(&format!("usage/date={}", date.format("%Y-%m-%d")));
            let mut listed = self.store.list(Some(&prefix));
            while let Some(meta) = listed.next().await {
                let meta = meta?;
                let location = meta.location.to_string();
                let Some(hour) = hour_of(&location) else { continue };
                let hour = day * 24 + hour;
                if hour < from || hour >= to {
                    continue;
                }
                let name = location.rsplit('/').next().unwrap_or_default();
                let Some((_, last)) = ledger::archive::parse_part(name) else {
                    continue;
                };
                // Beyond the watermark: the stream after it has these rows.
                if last > watermark {
                    continue;
                }
                let version = format!("{} {:?}", meta.size, meta.e_tag);
                let groups = match cache.get(&location, &version) {
                    Some(groups) => groups,
                    None => {
                        let bytes = self.store.get(&meta.location).await?.bytes().await?;
                        let at = location.clone();
                        let groups = tokio::task::spawn_blocking(move || ledger::summary::of_bytes(hour, bytes, &at))
                            .await
                            .map_err(|e| ledger::Error::InvalidArchive(format!("a reader failed: {e}")))??;
                        let groups: Arc<[ledger::summary::HourGroup]> = groups.into();
                        cache.put(&location, &version, groups.clone());
                        groups
                    }
                };
                summary.files.push(groups);
            }
        }
        Ok(summary)
    }
}

/// The hour of `…/hour=HH/part-…`.
fn hour_of(location: &str) -> Option<i64> {
    let mut parts = location.rsplit('/');
    parts.next()?;
    parts.next()?.strip_prefix("hour=")?.parse().ok()
}
