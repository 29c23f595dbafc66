//! The command line and environment of `nodai`, parsed and validated once
//! into a [`Config`] that is passed explicitly from then on.

use clap::{Parser, Subcommand, ValueEnum};
use ingest::embedded::FsyncPolicy;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "nodai",
    version,
    about = "API keys, usage metering and webhooks in one binary"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Verify a data dir offline (the server must be stopped) and say what
    /// is there; exits 1 if anything is wrong.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[arg(long, env = "NODAI_DATA_DIR", default_value = "./nodai-data")]
    pub data_dir: PathBuf,
    /// Cut a damaged newest log segment at its damage (a copy is kept),
    /// giving up the records after it.
    #[arg(long)]
    pub repair: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// HTTP API and worker in one process.
    All,
    /// HTTP API from an in-memory projection of the stream.
    Api,
    /// Archive, alerts and webhook delivery (with health and metrics over HTTP).
    Worker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fsync {
    /// fdatasync before every acknowledgement (group-committed).
    Always,
    /// fdatasync in the background every second.
    Interval,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the bound address is logged).
    #[arg(long, env = "NODAI_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where nodai keeps its state (the embedded log, the archive, the admin token).
    #[arg(long, env = "NODAI_DATA_DIR", default_value = "./nodai-data")]
    pub data_dir: PathBuf,
    /// NATS server URL; unset means the embedded log.
    #[arg(long, env = "NODAI_NATS_URL")]
    pub nats: Option<String>,
    /// NATS user (with NODAI_NATS_PASSWORD).
    #[arg(long, env = "NODAI_NATS_USER")]
    pub nats_user: Option<String>,
    /// The NATS user's password; from the environment only.
    #[arg(
        long = "nats-password-unsafe-flag",
        env = "NODAI_NATS_PASSWORD",
        hide = true,
        hide_env_values = true
    )]
    pub nats_password: Option<String>,
    /// A NATS credentials file (JWT and NKey seed).
    #[arg(long, env = "NODAI_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// PEM root certificates for NATS over TLS (TLS is then required).
    #[arg(long, env = "NODAI_NATS_CA")]
    pub nats_ca: Option<PathBuf>,
    /// JetStream stream name (created if missing).
    #[arg(long, env = "NODAI_STREAM", default_value = "NODAI")]
    pub stream: String,
    /// Replicas for the JetStream stream when nodai creates it (1 to 5).
    #[arg(long, env = "NODAI_STREAM_REPLICAS", default_value_t = 1,
        value_parser = clap::value_parser!(u64).range(1..=5))]
    pub stream_replicas: u64,
    #[arg(long, env = "NODAI_ROLE", value_enum, default_value = "all")]
    pub role: Role,
    /// Seconds between Parquet archive flushes (1 to 86400).
    #[arg(long, env = "NODAI_ARCHIVE_FLUSH_SECS", default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..=MAX_FLUSH_SECS))]
    pub archive_flush_secs: u64,
    /// Where the Parquet archive goes: unset, `<data-dir>/archive`;
    /// `s3://bucket/prefix`, the same layout on S3-compatible object
    /// storage (credentials, region and endpoint from the `AWS_*`
    /// variables, e.g. `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP=true`).
    #[arg(long, env = "NODAI_ARCHIVE_URL", value_parser = parse_archive_url)]
    pub archive_url: Option<ArchiveUrl>,
    /// How long events stay on the stream (`s`, `m`, `h` or `d`, e.g. `7d`).
    /// Older ones are deleted once the snapshot every replica can load
    /// and, for usage, the Parquet archive cover them; never sooner.
    #[arg(long, env = "NODAI_RETENTION", default_value = "7d", value_parser = parse_retention)]
    pub retention: Duration,
    /// Seconds between the worker's retention passes (tests shorten it).
    #[arg(long, hide = true, default_value_t = RETENTION_EVERY.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub retention_check_secs: u64,
    /// The embedded log's segment size in bytes: retention deletes whole
    /// segments (tests shrink it).
    #[arg(long, hide = true, default_value_t = SEGMENT_BYTES,
        value_parser = clap::value_parser!(u64).range(4096..=(1 << 40)))]
    pub log_segment_bytes: u64,
    /// Applied events between snapshots (tests lower it).
    #[arg(long, hide = true, default_value_t = SNAPSHOT_EVERY_EVENTS,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_every_events: u64,
    /// Seconds a query waits for its workflow's upstream (1 to 3600).
    #[arg(long, env = "NODAI_UPSTREAM_TIMEOUT_SECS", default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=MAX_UPSTREAM_TIMEOUT_SECS))]
    pub upstream_timeout_secs: u64,
    /// Seconds a client may take to send a request's head, and may keep a
    /// connection idle between requests (1 to 3600).
    #[arg(long, env = "NODAI_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub http_header_timeout_secs: u64,
    /// Seconds a client may take to send a request's body (1 to 3600).
    #[arg(long, env = "NODAI_HTTP_BODY_TIMEOUT_SECS", default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub http_body_timeout_secs: u64,
    /// HTTP connections open at once, at most; more wait in the backlog
    /// (1 to 1000000; also kept below the open-file limit).
    #[arg(long, env = "NODAI_MAX_CONNECTIONS", default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// The admin token; unset: generated into `<data-dir>/admin-token`.
    #[arg(
        long = "admin-token-unsafe-flag",
        env = "NODAI_ADMIN_TOKEN",
        hide = true,
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// When the embedded log reaches the disk.
    #[arg(long, env = "NODAI_FSYNC", value_enum, default_value = "interval")]
    pub fsync: Fsync,
    /// Allow webhook URLs that resolve to loopback, private or link-local
    /// addresses (development and tests only).
    #[arg(long = "webhook-allow-private", env = "NODAI_WEBHOOK_ALLOW_PRIVATE", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false", hide = true)]
    pub webhook_allow_private: bool,
    /// Delays before each retry of a failed webhook delivery.
    #[arg(
        long = "webhook-retry-schedule",
        env = "NODAI_WEBHOOK_RETRY_SCHEDULE",
        default_value = "5s,5m,30m,2h,5h,10h,10h",
        hide = true
    )]
    pub webhook_retry_schedule: String,
}

/// A duration of whole seconds, minutes, hours or days: `90s`, `15m`,
/// `36h`, `7d`; from a second to ten years.
pub fn parse_retention(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let unit = text.chars().last().ok_or("a duration such as 7d is needed")?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return Err(format!("{text:?} must end in s, m, h or d (e.g. 7d)")),
    };
    let number: u64 = text[..text.len() - 1]
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number followed by s, m, h or d"))?;
    let seconds = number
        .checked_mul(scale)
        .filter(|s| (1..=MAX_RETENTION_SECS).contains(s));
    seconds
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} must be from 1s to 3650d"))
}

const MAX_RETENTION_SECS: u64 = 3650 * 86_400;

/// How often the worker looks for events to delete.
const RETENTION_EVERY: Duration = Duration::from_secs(60);
/// The embedded log's segment size: retention deletes whole segments.
const SEGMENT_BYTES: u64 = 256 << 20;

/// A request's head (request line and headers) at most: 431 past it.
const MAX_HEADER_BYTES: usize = 64 << 10;

/// Events between snapshots.
const SNAPSHOT_EVERY_EVENTS: u64 = 1_000_000;

/// A day: a longer flush interval would keep a day's rows only in memory.
const MAX_FLUSH_SECS: u64 = 86_400;
/// An hour: admissions on NATS expire this long (plus a minute) after a
/// query started, so a longer call would outlive its place.
const MAX_UPSTREAM_TIMEOUT_SECS: u64 = 3_600;

/// `s3://bucket/prefix`: an archive on object storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveUrl {
    pub bucket: String,
    /// Without leading or trailing `/` (may be empty).
    pub prefix: String,
}

impl std::fmt::Display for ArchiveUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

fn parse_archive_url(value: &str) -> Result<ArchiveUrl, String> {
    let rest = value
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{value:?}: only s3://bucket/prefix is supported"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid_bucket {
        return Err(format!("{value:?}: {bucket:?} is not an S3 bucket name"));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|part| part == "." || part == "..") || prefix.contains("//") {
        return Err(format!("{value:?}: the prefix may not hold empty, . or .. parts"));
    }
    Ok(ArchiveUrl {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
    })
}

/// Everything `nodai serve` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub backend: Backend,
    pub role: Role,
    pub archive_flush: Duration,
    /// None: the archive is `<data-dir>/archive`.
    pub archive_url: Option<ArchiveUrl>,
    pub upstream_timeout: Duration,
    pub admin_token: Option<crate::auth::AdminToken>,
    pub log_filter: String,
    pub webhook_guard: webhooks::Guard,
    pub webhook_retry_schedule: webhooks::Schedule,
    /// A snapshot after this many applied events (or 5 minutes). A hidden
    /// flag: tests lower it to write snapshots under load.
    pub snapshot_every_events: u64,
    /// Connection limits (`--http-header-timeout-secs`, `--max-connections`).
    pub connections: crate::listen::Limits,
    /// How long a request's body may take to arrive.
    pub body_timeout: Duration,
    /// `--retention`: how long events stay on the stream at least.
    pub retention: Duration,
    /// How often the worker deletes what retention allows (a hidden flag:
    /// tests shorten it).
    pub retention_every: Duration,
    /// The embedded log's segment size (a hidden flag: tests shrink it so
    /// that retention has sealed segments to delete).
    pub segment_bytes: u64,
}

#[derive(Debug, Clone)]
pub enum Backend {
    Embedded {
        fsync: FsyncPolicy,
    },
    Nats {
        url: String,
        stream: String,
        replicas: usize,
        auth: ingest::nats::Auth,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--stream {0:?} is not a valid JetStream name (letters, digits, '-' and '_')")]
    StreamName(String),
    #[error("--archive-flush-secs must be 1 to 86400")]
    FlushInterval,
    #[error("--stream-replicas must be 1 to 5")]
    Replicas,
    #[error("--upstream-timeout-secs must be 1 to 3600")]
    UpstreamTimeout,
    #[error("NODAI_ADMIN_TOKEN must be at least 16 characters")]
    AdminToken,
    #[error("NODAI_NATS_USER and NODAI_NATS_PASSWORD go together")]
    NatsUser,
    #[error("NODAI_WEBHOOK_RETRY_SCHEDULE: {0}")]
    RetrySchedule(#[from] webhooks::Error),
}

impl Config {
    pub fn from_args(args: ServeArgs) -> Result<Config, ConfigError> {
        if args.stream.is_empty()
            || !args
                .stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::StreamName(args.stream));
        }
        // Checked by the parser too; `ServeArgs` may be built in code.
        if !(1..=MAX_FLUSH_SECS).contains(&args.archive_flush_secs) {
            return Err(ConfigError::FlushInterval);
        }
        if !(1..=5).contains(&args.stream_replicas) {
            return Err(ConfigError::Replicas);
        }
        if !(1..=MAX_UPSTREAM_TIMEOUT_SECS).contains(&args.upstream_timeout_secs) {
            return Err(ConfigError::UpstreamTimeout);
        }
        if args.admin_token.as_ref().is_some_and(|t| t.trim().len() < 16) {
            return Err(ConfigError::AdminToken);
        }
        let backend = match args.nats {
            Some(url) => Backend::Nats {
                url,
                stream: args.stream,
                replicas: args.stream_replicas as usize,
                auth: ingest::nats::Auth {
                    user: match (args.nats_user, args.nats_password) {
                        (Some(user), Some(password)) => Some((user, ingest::nats::Password(password))),
                        (None, None) => None,
                        _ => return Err(ConfigError::NatsUser),
                    },
                    creds_file: args.nats_creds,
                    ca_file: args.nats_ca,
                },
            },
            None => Backend::Embedded {
                fsync: match args.fsync {
                    Fsync::Always => FsyncPolicy::Always,
                    Fsync::Interval => FsyncPolicy::Interval(Duration::from_secs(1)),
                },
            },
        };
        Ok(Config {
            listen: args.listen,
            data_dir: args.data_dir,
            backend,
            role: args.role,
            archive_flush: Duration::from_secs(args.archive_flush_secs),
            archive_url: args.archive_url,
            upstream_timeout: Duration::from_secs(args.upstream_timeout_secs),
            admin_token: args
                .admin_token
                .map(|t| crate::auth::AdminToken::new(t.trim().to_owned())),
            log_filter: std::env::var("NODAI_LOG").unwrap_or_else(|_| "info".into()),
            webhook_guard: webhooks::Guard {
                allow_private: args.webhook_allow_private,
            },
            webhook_retry_schedule: args.webhook_retry_schedule.parse()?,
            snapshot_every_events: args.snapshot_every_events,
            connections: crate::listen::Limits {
                header_timeout: Duration::from_secs(args.http_header_timeout_secs),
                max_connections: args.max_connections as usize,
                max_header_bytes: MAX_HEADER_BYTES,
            },
            body_timeout: Duration::from_secs(args.http_body_timeout_secs),
            retention: args.retention,
            retention_every: Duration::from_secs(args.retention_check_secs),
            segment_bytes: args.log_segment_bytes,
        })
    }

    /// A configuration for tests and embedding: the embedded log in `data_dir`.
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            backend: Backend::Embedded {
                fsync: FsyncPolicy::Interval(Duration::from_secs(1)),
            },
            role: Role::All,
            archive_flush: Duration::from_secs(60),
            archive_url: None,
            upstream_timeout: Duration::from_secs(30),
            admin_token: None,
            log_filter: "info".into(),
            webhook_guard: webhooks::Guard::default(),
            webhook_retry_schedule: webhooks::Schedule::default(),
            snapshot_every_events: SNAPSHOT_EVERY_EVENTS,
            connections: crate::listen::Limits {
                header_timeout: Duration::from_secs(30),
                max_connections: 10_000,
                max_header_bytes: MAX_HEADER_BYTES,
            },
            body_timeout: Duration::from_secs(30),
            retention: Duration::from_secs(7 * 86_400),
            retention_every: RETENTION_EVERY,
            segment_bytes: SEGMENT_BYTES,
        }
    }

    /// Which stream backend to open.
    pub fn stream_backend(&self) -> ingest::Backend {
        match &self.backend {
            Backend::Embedded { fsync } => ingest::Backend::Embedded(ingest::embedded::Options {
                fsync: *fsync,
                segment_bytes: self.segment_bytes,
                ..ingest::embedded::Options::new(self.data_dir.join("stream"))
            }),
            Backend::Nats {
                url,
                stream,
                replicas,
                auth,
            } => ingest::Backend::Nats(ingest::nats::Options {
                replicas: *replicas,
                auth: auth.clone(),
                ..ingest::nats::Options::new(url, stream)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let cli = Cli::try_parse_from([&["nodai", "serve"], args].concat()).map_err(|e| e.to_string())?;
        let Command::Serve(args) = cli.command else {
            return Err("not serve".into());
        };
        Config::from_args(*args).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_spec_defaults() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.data_dir, PathBuf::from("./nodai-data"));
        assert_eq!(config.role, Role::All);
        assert_eq!(config.archive_flush, Duration::from_secs(60));
        assert_eq!(config.retention, Duration::from_secs(7 * 86_400));
        assert!(matches!(
            config.backend,
            Backend::Embedded {
                fsync: FsyncPolicy::Interval(_)
            }
        ));
    }

    #[test]
    fn nats_flags_choose_the_nats_backend() {
        let config = parse(&[
            "--nats",
            "nats://127.0.0.1:4222",
            "--stream",
            "PROD_1",
            "--role",
            "worker",
        ])
        .unwrap();
        assert!(
            matches!(&config.backend, Backend::Nats { url, stream, replicas: 1, .. } if url == "nats://127.0.0.1:4222" && stream == "PROD_1")
        );
        assert_eq!(config.role, Role::Worker);
    }

    #[test]
    fn webhook_settings() {
        let config = parse(&[]).unwrap();
        assert!(!config.webhook_guard.allow_private);
        assert_eq!(config.webhook_retry_schedule, webhooks::Schedule::default());
        let config = parse(&["--webhook-allow-private", "--webhook-retry-schedule", "1s,2m"]).unwrap();
        assert!(config.webhook_guard.allow_private);
        assert_eq!(config.webhook_retry_schedule, "1s,2m".parse().unwrap());
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        assert!(parse(&["--stream", "a.b"]).unwrap_err().contains("--stream"));
        // Every number has bounds and a clear error, never a panic later.
        for (flag, bad) in [
            ("--archive-flush-secs", "0"),
            ("--archive-flush-secs", "86401"),
            ("--archive-flush-secs", "18446744073709551615"),
            ("--archive-flush-secs", "18446744073709551616"),
            ("--archive-flush-secs", "-1"),
            ("--upstream-timeout-secs", "0"),
            ("--upstream-timeout-secs", "3601"),
            ("--upstream-timeout-secs", "18446744073709551615"),
            ("--stream-replicas", "0"),
            ("--stream-replicas", "6"),
            ("--stream-replicas", "18446744073709551615"),
            ("--http-header-timeout-secs", "0"),
            ("--http-body-timeout-secs", "3601"),
            ("--max-connections", "0"),
            ("--max-connections", "1000001"),
            ("--retention", "0d"),
            ("--retention", "7"),
            ("--retention", "7w"),
            ("--retention", "3651d"),
            ("--retention", "-1h"),
            ("--retention", "99999999999999999999d"),
        ] {
            let error = parse(&[&format!("{flag}={bad}")]).unwrap_err();
            assert!(error.contains(flag), "{flag} {bad}: {error}");
        }
        assert_eq!(
            parse(&["--archive-flush-secs", "86400"]).unwrap().archive_flush,
            Duration::from_secs(86_400)
        );
        for (text, seconds) in [("90s", 90), ("15m", 900), ("36h", 129_600), ("30d", 2_592_000)] {
            assert_eq!(
                parse(&["--retention", text]).unwrap().retention,
                Duration::from_secs(seconds)
            );
        }
        assert!(parse(&["--role", "boss"]).is_err());
        assert!(parse(&["--listen", "nowhere"]).is_err());
        assert!(parse(&["--fsync", "sometimes"]).is_err());
        assert!(parse(&["--webhook-retry-schedule", "5s,soon"])
            .unwrap_err()
            .contains("NODAI_WEBHOOK_RETRY_SCHEDULE"));
    }
}
