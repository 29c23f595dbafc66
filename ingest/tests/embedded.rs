//! What only the embedded log has: files to damage, a lock, segments.

use futures::{FutureExt, StreamExt};
use ingest::embedded::{EmbeddedLog, FsyncPolicy, Options};
use ingest::events::{Event, KeyRevoked};
use ingest::{EventStream, Outgoing, StreamError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn event(n: u64) -> Outgoing {
    let e = Event::KeyRevoked(KeyRevoked {
        key_id: format!("key_{n}"),
    });
    Outgoing::new(&e, chrono::Utc::now()).unwrap()
}

async fn fill(log: &EmbeddedLog, n: u64) -> Vec<Outgoing> {
    let mut sent = Vec::new();
    for i in 0..n {
        let e = event(i);
        log.append(&e).await.unwrap();
        sent.push(e);
    }
    sent
}

async fn replay_ids(log: &EmbeddedLog, from: u64) -> Vec<ingest::EventId> {
    let stream = log.replay(from).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), stream.map(|r| r.unwrap().id).collect())
        .await
        .expect("replay did not end")
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn a_torn_tail_is_cut_off_and_every_good_record_kept() {
    let dir = tempfile::tempdir().unwrap();
    let sent = {
        let log = EmbeddedLog::open(Options::new(dir.path())).await.unwrap();
        fill(&log, 100).await
    };
    let segment = segments(dir.path()).pop().unwrap();
    let good_len = std::fs::metadata(&segment).unwrap().len();
    // A crash mid-write leaves a partial frame: a plausible length, then garbage.
    let mut file = std::fs::OpenOptions::new().append(true).open(&segment).unwrap();
    file.write_all(&200u32.to_le_bytes()).unwrap();
    file.write_all(&[0xAB; 77]).unwrap();
    drop(file);

    let log = EmbeddedLog::open(Options::new(dir.path())).await.unwrap();
    assert_eq!(log.last_seq().await.unwrap(), 100);
    assert_eq!(replay_ids(&log, 1).await, sent.iter().map(|e| e.id).collect::<Vec<_>>());
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), good_len, "garbage removed");
    assert_eq!(log.append(&event(100)).await.unwrap().seq, 101);
    assert_eq!(replay_ids(&log, 101).await.len(), 1);
}

/// One flipped byte in the middle of the newest segment, intact records
/// after it: not a crash's torn tail, so the open refuses rather than cut
/// acknowledged records; `check` says where and what follows, and
/// `repair` (the operator's choice) keeps a copy and cuts there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_followed_by_intact_records_refuses_to_open_until_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let sent = {
        let log = EmbeddedLog::open(Options::new(dir.path())).await.unwrap();
        fill(&log, 10).await
    };
    let segment = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    // Flip one byte inside the 8th record's payload. Records differ in
    // size by their time's digits: walk the frames (16-byte header, then
    // len u32 | crc u32 | body).
    let mut starts = Vec::new();
    let mut frame = 16;
    while frame + 8 <= bytes.len() {
        starts.push(frame);
        frame += 8 + u32::from_le_bytes(bytes[frame..frame + 4].try_into().unwrap()) as usize;
    }
    assert_eq!(starts.len(), 10);
    let at = starts[8] - 3;
    bytes[at] ^= 0xFF;
    std::fs::write(&segment, &bytes).unwrap();

    let Err(StreamError::Corrupt(message)) = EmbeddedLog::open(Options::new(dir.path())).await else {
        panic!("opened a log damaged in the middle");
    };
    let offset = starts[7];
    assert!(message.contains(&format!("byte {offset}")), "{message}");
    assert!(
        message.contains("sequence 9") && message.contains("nodai check --repair"),
        "{message}"
    );
    assert_eq!(std::fs::read(&segment).unwrap(), bytes, "nothing was cut");

    let report = ingest::embedded::check::check(dir.path(), &[3]).unwrap();
    assert_eq!((report.records, report.last_seq), (7, 7));
    assert_eq!(report.ids.get(&3), Some(&sent[2].id));
    let damage = report.damage.unwrap();
    assert_eq!(
        (damage.offset, damage.intact_after, damage.newest),
        (offset as u64, Some(9), true)
    );

    let repaired = ingest::embedded::check::repair(dir.path()).unwrap().unwrap();
    assert_eq!((repaired.offset, repaired.lost_from), (offset as u64, 8));
    assert_eq!(
        std::fs::read(&repaired.copy).unwrap(),
        bytes,
        "the segment as it was is kept"
    );
    let log = EmbeddedLog::open(Options::new(dir.path())).await.unwrap();
    assert_eq!(log.last_seq().await.unwrap(), 7);
    assert_eq!(
        replay_ids(&log, 1).await,
        sent[..7].iter().map(|e| e.id).collect::<Vec<_>>()
    );
    log.close().await;
    assert!(
        ingest::embedded::check::repair(dir.path()).unwrap().is_none(),
        "whole now: nothing more to cut"
    );
}

/// Damage in the last record, with nothing after it, is what a crash
/// leaves: cut off at open, every earlier record kept.
#[tokio::test]
async fn a_corrupt_last_record_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let sent = {
        let log = EmbeddedLog::open(Options::new(dir.path())).await.unwrap();
        fill(&log, 10).await
    };
    let segment = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.len() - 3;
    bytes[at] ^= 0xFF;
    std::fs::write(&segment, &bytes).unwrap();
    let report = ingest::embedded::check::check(dir.path(), &[]).unwrap();
    assert_eq!(report.damage.map(|d| d.intact_after), Some(None));
    let log = EmbeddedLog::open(Options::new(dir.path())).await.unwrap();
    assert_eq!(log.last_seq().await.unwrap(), 9);
    assert_eq!(
        replay_ids(&log, 1).await,
        sent[..9].iter().map(|e| e.id).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_second_open_of_the_same_dir_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(Options::new(dir.path())).await.unwrap();
    match EmbeddedLog::open(Options::new(dir.path())).await {
        Err(StreamError::Locked { path }) => assert_eq!(path, dir.path()),
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("a second open succeeded"),
    }
    drop(log);
    EmbeddedLog::open(Options::new(dir.path()))
        .await
        .expect("the lock is released on drop");
}

#[tokio::test]
async fn segments_roll_and_replay_across_them_from_any_point() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        segment_bytes: 4096,
        fsync: FsyncPolicy::Always,
        ..Options::new(dir.path())
    };
    let sent = {
        let log = EmbeddedLog::open(options.clone()).await.unwrap();
        // Concurrent appenders, so batches also straddle segment boundaries.
        let log = std::sync::Arc::new(log);
        let mut tasks = Vec::new();
        for t in 0..4u64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..750 {
                    log.append(&event(t * 1000 + i)).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        replay_ids(&log, 1).await
    };
    assert_eq!(sent.len(), 3000);
    assert!(segments(dir.path()).len() > 10, "segments rolled");
    let log = EmbeddedLog::open(options).await.unwrap();
    assert_eq!(log.last_seq().await.unwrap(), 3000);
    for from in [1, 2, 1024, 1025, 1500, 2999, 3000] {
        assert_eq!(
            replay_ids(&log, from).await,
            sent[from as usize - 1..],
            "replay from {from}"
        );
    }
}

#[tokio::test]
async fn damage_in_an_older_segment_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        segment_bytes: 1024,
        ..Options::new(dir.path())
    };
    {
        let log = EmbeddedLog::open(options.clone()).await.unwrap();
        fill(&log, 100).await;
    }
    let first = segments(dir.path()).remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&first, &bytes).unwrap();
    match EmbeddedLog::open(options).await {
        Err(StreamError::Corrupt(message)) => {
            assert!(message.contains("not the newest segment"), "{message}")
        }
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("a damaged log opened"),
    }
}

#[tokio::test]
async fn an_oversized_event_is_refused_and_nothing_stored() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(Options::new(dir.path())).await.unwrap();
    let mut big = event(1);
    big.payload = vec![b' '; 9 << 20].into();
    assert!(matches!(log.append(&big).await, Err(StreamError::TooLarge { .. })));
    assert_eq!(log.last_seq().await.unwrap(), 0);
    assert_eq!(log.append(&event(2)).await.unwrap().seq, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_segments_are_summarised_and_opened_without_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        segment_bytes: 1024,
        // Every id is outside the window, so every summary may be used.
        duplicate_window: Duration::ZERO,
        ..Options::new(dir.path())
    };
    let sent = {
        let log = EmbeddedLog::open(options.clone()).await.unwrap();
        fill(&log, 200).await;
        log.close().await;
        replay_ids(&EmbeddedLog::open(options.clone()).await.unwrap(), 1).await
    };
    let sealed = segments(dir.path()).len() - 1;
    assert!(sealed > 5, "segments rolled");
    let summaries = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "sum"))
        .count();
    assert_eq!(summaries, sealed, "one summary per sealed segment");

    for round in 0..2 {
        let log = EmbeddedLog::open(options.clone()).await.unwrap();
        assert_eq!(log.last_seq().await.unwrap(), 200 + round);
        // The subject's last sequence lives in an old segment's summary.
        let subject = ingest::Subject::new("key", "key_3").unwrap();
        let last = log.last_subject_seq(&subject).await.unwrap();
        assert_eq!(last, if round == 0 { 4 } else { 201 });
        let mut ids = replay_ids(&log, 1).await;
        ids.truncate(200);
        assert_eq!(ids, sent);
        if round == 0 {
            assert!(log.append_expecting(&event(3), last).await.is_ok());
            assert!(matches!(
                log.append_expecting(&event(3), last).await,
                Err(StreamError::Conflict { .. })
            ));
            log.close().await;
            // A damaged summary costs a scan, nothing else.
            let first = segments(dir.path()).remove(0);
            std::fs::write(first.with_extension("sum"), b"NODAISUM garbage").unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_summary_the_open_skips_the_scan_and_reads_still_check_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        segment_bytes: 1024,
        duplicate_window: Duration::ZERO,
        ..Options::new(dir.path())
    };
    let log = EmbeddedLog::open(options.clone()).await.unwrap();
    fill(&log, 100).await;
    log.close().await;
    EmbeddedLog::open(options.clone()).await.unwrap().close().await; // writes the summaries
    let first = segments(dir.path()).remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&first, &bytes).unwrap();
    // A scan would refuse this log (see damage_in_an_older_segment_refuses_to_open).
    let log = EmbeddedLog::open(options).await.expect("opened from the summary");
    assert_eq!(log.last_seq().await.unwrap(), 100);
    let read: Vec<_> = log.replay(1).await.unwrap().collect().await;
    assert!(
        read.iter().any(|r| matches!(r, Err(StreamError::Corrupt(_)))),
        "reading the damaged record reports it"
    );
}

/// The appender that leads a group commit yields once before writing; if
/// its future is dropped right there (a client that went away), the queue
/// is still written (by it, or under `fsync=always` by the blocking pool),
/// and the log takes the next appender as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appender_dropped_while_leading_still_writes_the_queue() {
    for fsync in [FsyncPolicy::Interval(Duration::from_secs(1)), FsyncPolicy::Always] {
        let dir = tempfile::tempdir().unwrap();
        let mut options = Options::new(dir.path());
        options.fsync = fsync;
        let log = std::sync::Arc::new(EmbeddedLog::open(options).await.unwrap());
        // Alone, so it leads; polled once, it stops at its yield and is dropped.
        let first = event(1);
        let abandoned = log.append(&first).now_or_never();
        assert!(abandoned.is_none(), "the append was expected to stop at its yield");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while log.last_seq().await.unwrap() < 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{fsync:?}: not written after its leader was dropped"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }

        // Many at once, every third dropped at its first await: none is
        // lost and none waits for a leader that left.
        let mut tasks = Vec::new();
        for n in 2..=301 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let e = event(n);
                if n % 3 == 0 {
                    let _ = log.append(&e).now_or_never();
                } else {
                    log.append(&e).await.unwrap();
                }
                e.id
            }));
        }
        let mut sent = vec![first.id];
        for task in tasks {
            sent.push(
                tokio::time::timeout(Duration::from_secs(10), task)
                    .await
                    .expect("an append hung")
                    .unwrap(),
            );
        }
        let after = event(302);
        tokio::time::timeout(Duration::from_secs(10), log.append(&after))
            .await
            .expect("the next append hung")
            .unwrap();
        sent.push(after.id);
        let mut stored = replay_ids(&log, 1).await;
        assert_eq!(stored.len(), sent.len(), "{fsync:?}: each append stored once");
        stored.sort();
        sent.sort();
        assert_eq!(stored, sent, "{fsync:?}");
    }
}
