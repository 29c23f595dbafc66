//! The one harness of the integration tests: [`app::App`] (a real server
//! on a free port, on either backend), [`on_both_backends!`], and helpers
//! that read what a server wrote.

pub mod app;
mod receiver;
pub mod s3;

pub use receiver::FlakyReceiver;

/// Runs each `async fn(App)` named, once on the embedded log
/// (`<module>::embedded_log::<test>`) and once on NATS
/// (`<module>::nats_jetstream::<test>`, skipped without `nats-server`
/// unless `NODAI_REQUIRE_NATS=1`). `configured by f;` first passes each
/// server's config through `f`.
macro_rules! on_both_backends {
    (configured by $configure:path; $($test:ident),* $(,)?) => {
        mod embedded_log {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let app = $crate::common::app::App::start_with(false, $configure).await;
                    super::$test(app.expect("the embedded log always starts")).await;
                }
            )*
        }
        mod nats_jetstream {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(app) = $crate::common::app::App::start_with(true, $configure).await else { return };
                    super::$test(app).await;
                }
            )*
        }
    };
    ($($test:ident),* $(,)?) => {
        $crate::common::on_both_backends!(configured by $crate::common::app::as_is; $($test),*);
    };
}
pub(crate) use on_both_backends;

/// Tests that run several processes under load (a cluster, a kill -9)
/// take turns: two at once on two cores would starve each other's
/// deadlines.
pub static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

use futures::StreamExt;
use ingest::EventStream;
use std::path::Path;
use std::sync::Arc;

/// Every record on a server's stream: the embedded log in `data_dir`, or
/// the NATS stream `nats` = (url, stream name). The server must be stopped
/// for the embedded log (it holds the lock).
pub async fn records(data_dir: &Path, nats: Option<(String, &str)>) -> Vec<ingest::Record> {
    let stream: Arc<dyn EventStream> = match nats {
        None => Arc::new(
            ingest::embedded::EmbeddedLog::open(ingest::embedded::Options::new(data_dir.join("stream")))
                .await
                .unwrap(),
        ),
        Some((url, name)) => Arc::new(
            ingest::nats::NatsStream::connect(ingest::nats::Options::new(url, name))
                .await
                .unwrap(),
        ),
    };
    // From the first event retention left.
    let first = stream.first_seq().await.unwrap();
    let records: Vec<_> = stream.replay(first).await.unwrap().map(|r| r.unwrap()).collect().await;
    stream.close().await;
    records
}

/// The event ids in a Parquet archive, sorted; fails if one is there twice.
pub fn archived_once(archive: &Path) -> Vec<String> {
    let mut archived: Vec<String> = ledger::archive::read_ids(archive)
        .unwrap_or_default()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    archived.sort();
    let rows = archived.len();
    archived.dedup();
    assert_eq!(
        archived.len(),
        rows,
        "an event_id archived twice in {}",
        archive.display()
    );
    archived
}

/// Copies a directory tree, leaving out `LOCK` files (a copy of a data dir
/// as a crash or a backup would leave it).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The newest segment file of the embedded log in `data_dir`.
pub fn newest_segment(data_dir: &Path) -> std::path::PathBuf {
    let mut segments: Vec<_> = std::fs::read_dir(data_dir.join("stream"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    segments.pop().unwrap()
}

/// Runs a Python `script` that imports duckdb, with `args` as `sys.argv[1:]`;
/// its output, or None (logged) if duckdb is not installed, unless
/// `NODAI_REQUIRE_PYTHON=1` (CI installs it), which fails instead.
pub fn duckdb(script: &str, args: &[&std::ffi::OsStr]) -> Option<String> {
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .args(args)
        .output()
        .unwrap();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No module named 'duckdb'") && std::env::var("NODAI_REQUIRE_PYTHON").as_deref() != Ok("1") {
            eprintln!("skipping the DuckDB check: pip install duckdb (or set NODAI_REQUIRE_PYTHON=1 to fail)");
            return None;
        }
        panic!("duckdb failed: {stderr}");
    }
    Some(String::from_utf8(out.stdout).unwrap())
}

/// Cuts the newest segment of the embedded log in `data_dir` before its
/// last `records` records: at a record's first byte, or 10 bytes into it.
pub fn cut_log_tail(data_dir: &std::path::Path, records: usize, mid_record: bool) {
    let newest = newest_segment(data_dir);
    let bytes = std::fs::read(&newest).unwrap();
    // 16-byte header, then frames of len u32 | crc u32 | body.
    let (mut at, mut starts) = (16usize, Vec::new());
    while at + 8 <= bytes.len() {
        starts.push(at);
        at += 8 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    }
    let cut = starts[starts.len() - records] + if mid_record { 10 } else { 0 };
    std::fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap()
        .set_len(cut as u64)
        .unwrap();
}

/// A metric's value from the `/metrics` of the server at `base` (0 if absent).
pub async fn metric(base: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}
