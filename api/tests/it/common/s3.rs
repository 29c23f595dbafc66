//! A real S3-compatible server for the tests: moto's, from PyPI
//! (`pip install "moto[server]"`; `.ci/run` installs it), on a free port,
//! with one bucket. Skipped without it unless `NODAI_REQUIRE_PYTHON=1`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

pub const BUCKET: &str = "nodai-archive";

pub struct S3Server {
    child: Child,
    pub endpoint: String,
}

impl S3Server {
    pub async fn start() -> Option<S3Server> {
        let required = std::env::var("NODAI_REQUIRE_PYTHON").as_deref() == Ok("1");
        let has_moto = Command::new("python3")
            .args(["-c", "import moto.server"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has_moto {
            assert!(!required, "moto is not installed: pip install \"moto[server]\"");
            eprintln!("skipping: no moto (pip install \"moto[server]\", or NODAI_REQUIRE_PYTHON=1 to fail)");
            return None;
        }
        let port = ingest::testkit::free_port();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.put(format!("{}/{BUCKET}", server.endpoint)).send().await {
                assert!(r.status().is_success(), "cannot create the bucket: {}", r.status());
                return Some(server);
            }
            assert!(Instant::now() < deadline, "moto never answered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The `AWS_*` variables that point a client at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Runs a Python `script` with this server's `AWS_*` variables (and
    /// `python_path`, if given, in front of Python's path); its output.
    pub fn python(&self, script: &str, args: &[&str], python_path: Option<&str>) -> String {
        let mut command = Command::new("python3");
        command.args(["-c", script]).args(args).envs(self.env());
        if let Some(path) = python_path {
            command.env("PYTHONPATH", path);
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Every `event_id` in the archive under `prefix`, read by pyarrow
    /// (an independent reader), sorted; and the sum of `cost` as a
    /// decimal string.
    pub fn archived(&self, prefix: &str) -> (Vec<String>, String) {
        let script = r#"
import os, sys
import pyarrow.compute as pc
import pyarrow.dataset as ds
from pyarrow import fs
s3 = fs.S3FileSystem(access_key="test", secret_key="test", region="us-east-1",
                     endpoint_override=os.environ["AWS_ENDPOINT_URL"], scheme="http")
files = [f.path for f in s3.get_file_info(fs.FileSelector(sys.argv[1], recursive=True))
         if f.path.endswith(".parquet")]
table = ds.dataset(files, filesystem=s3, format="parquet").to_table(columns=["event_id", "cost"]) if files else None
print(pc.sum(table["cost"]).as_py() if table is not None and table.num_rows else "0")
for i in (table["event_id"].to_pylist() if table is not None else []):
    print(i)
"#;
        let out = self.python(script, &[&format!("{BUCKET}/{prefix}/usage")], None);
        let mut lines = out.lines();
        let cost = lines.next().unwrap_or("0").to_owned();
        let mut ids: Vec<String> = lines.map(str::to_owned).collect();
        ids.sort();
        (ids, cost)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
