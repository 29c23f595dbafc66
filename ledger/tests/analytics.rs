//! Runs every Python recipe of `docs/analytics.md` against a generated
//! archive and checks that it prints what the guide shows. With
//! `NODAI_UPDATE_DOCS=1` it writes the printed output into the guide instead.
//! Skipped if Python lacks duckdb, polars or pyarrow, unless
//! `NODAI_REQUIRE_PYTHON=1` (CI installs them).

use chrono::{TimeZone, Utc};
use ingest::{EventId, Micros};
use ledger::archive::{Archive, Row};
use std::path::{Path, PathBuf};
use std::process::Command;

/// 600 queries over two days, three keys and three workflows, some failing:
/// the same archive on every run.
fn generate(root: &Path) {
    let keys = ["key_alpha", "key_beta", "key_gamma"];
    let workflows = [("summarize", 2_500), ("translate", 1_200), ("classify", 400)];
    let start = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut rows = Vec::new();
    for i in 0..600u64 {
        let (workflow, price) = workflows[(next() % 3) as usize];
        let status_code = match i {
            _ if i % 17 == 0 => 502,
            _ if i % 29 == 0 => 504,
            _ => 200,
        };
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&i.to_be_bytes());
        id[8..].copy_from_slice(&next().to_be_bytes());
        rows.push(Row {
            seq: i + 1,
            event_id: EventId::from_bytes(id),
            ts: start + chrono::Duration::seconds((i * 288) as i64),
            key_id: keys[(next() % 3) as usize].into(),
            workflow_id: workflow.into(),
            status_code,
            cost: Micros::new(if status_code == 200 { price } else { 0 }),
            duration_ms: 20 + next() % 1_500,
            input_tokens: 0,
            output_tokens: 0,
            customer_id: None,
        });
    }
    let mut archive = Archive::open(root).unwrap();
    // Several flushes, as a running worker would make them.
    for chunk in rows.chunks(150) {
        archive.write(chunk, chunk.last().unwrap().seq, None).unwrap();
    }
}

/// (recipe, the output block's line range) for each python block followed by a text block.
fn recipes(doc: &str) -> Vec<(String, std::ops::Range<usize>)> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i] == "```python" {
            let end = i + lines[i..].iter().position(|l| *l == "```").unwrap();
            let code = lines[i + 1..end].join("\n");
            let text = end + 1 + lines[end + 1..].iter().position(|l| *l == "```text").unwrap();
            let close = text + 1 + lines[text + 1..].iter().position(|l| *l == "```").unwrap();
            out.push((code, text + 1..close));
            i = close;
        }
        i += 1;
    }
    out
}

fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import duckdb, polars, pyarrow"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok && std::env::var("NODAI_REQUIRE_PYTHON").as_deref() == Ok("1") {
        panic!("NODAI_REQUIRE_PYTHON=1 but python3 cannot import duckdb, polars and pyarrow");
    }
    ok
}

#[test]
fn every_recipe_in_the_analytics_guide_prints_what_it_shows() {
    if !python_ready() {
        eprintln!("skipped: pip install duckdb polars pyarrow (or set NODAI_REQUIRE_PYTHON=1 to fail)");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    generate(&work.path().join("nodai-data/archive"));
    let guide: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/analytics.md");
    let doc = std::fs::read_to_string(&guide).unwrap();
    let found = recipes(&doc);
    assert_eq!(found.len(), 5, "recipes in the guide");
    let mut lines: Vec<String> = doc.lines().map(str::to_owned).collect();
    let update = std::env::var("NODAI_UPDATE_DOCS").as_deref() == Ok("1");
    // Replace from the end so earlier ranges stay valid.
    for (code, range) in found.into_iter().rev() {
        let out = Command::new("python3")
            .args(["-c", &code])
            .current_dir(work.path())
            .env("POLARS_FMT_MAX_ROWS", "20")
            .output()
            .unwrap();
        assert!(out.status.success(), "{code}\n{}", String::from_utf8_lossy(&out.stderr));
        let printed: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .trim_end()
            .lines()
            .map(|l| l.trim_end().to_owned())
            .collect();
        if update {
            lines.splice(range, printed);
        } else {
            assert_eq!(
                lines[range].join("\n"),
                printed.join("\n"),
                "docs/analytics.md shows other output for:\n{code}\n(run with NODAI_UPDATE_DOCS=1 after a deliberate change)"
            );
        }
    }
    if update {
        std::fs::write(&guide, lines.join("\n") + "\n").unwrap();
    }
}
