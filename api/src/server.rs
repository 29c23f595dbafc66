//! Running nodai: [`run`] takes an already-bound listener and a shutdown
//! token, so tests bind port 0 and stop it cleanly; [`serve`] binds the
//! configured address first. One token fans out to every task.

use std::sync::{Arc, RwLock};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::archiver::{self, Archiver};
use crate::auth::AdminToken;
use crate::config::{Backend, Config, Role};
use crate::datadir::{DataDir, DataDirError};
use crate::follower::{self, Progress, Snapshots};
use crate::lease;
use crate::limiter::Limiter;
use crate::metrics::{MeteredStream, Metrics};
use crate::routes;
use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error(transparent)]
    Stream(#[from] ingest::StreamError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read or create the admin token at {}: {source}", path.display())]
    AdminToken {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the archive: {0}")]
    Archive(#[from] ledger::Error),
    #[error("--archive-url: {0}")]
    Offsite(#[from] crate::offsite::OffsiteError),
    #[error("http server failed: {0}")]
    Http(#[source] std::io::Error),
    #[error(
        "stopped: events this process had not applied were deleted by retention; a restart loads a snapshot that reaches the stream"
    )]
    FellBehind,
    #[error(
        "the stream's events before sequence {first} were deleted (retention) and no snapshot reaches them: {why}. \
         Start from a copy of a data dir whose snapshots reach sequence {first}, or (NATS) once a worker has published one"
    )]
    NoSnapshot { first: u64, why: String },
}

/// A snapshot after `Config::snapshot_every_events` applied events, or
/// this long, whichever comes first (and one at shutdown).
const SNAPSHOT_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// Binds the configured address, then [`run`]s.
pub async fn serve(config: Config, shutdown: CancellationToken) -> Result<(), ServeError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    run(config, listener, shutdown).await
}

/// Runs until `shutdown` is cancelled: stops accepting, lets in-flight
/// requests finish, stops the background tasks, closes the stream.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> Result<(), ServeError> {
    let data_dir = DataDir::open(&config.data_dir)?;
    let metrics = Arc::new(Metrics::new());
    let stream = ingest::open(config.stream_backend()).await?;
    let stream: Arc<dyn ingest::EventStream> = Arc::new(MeteredStream::new(stream, metrics.clone()));
    let admin_token = AdminToken::load_or_create(config.admin_token.as_ref(), data_dir.path()).map_err(|source| {
        ServeError::AdminToken {
            path: data_dir.path().join("admin-token"),
            source,
        }
    })?;
    let target = stream.last_seq().await?;
    let snapshots = Snapshots {
        dir: data_dir.path().join("snapshots"),
        stream: match &config.backend {
            Backend::Embedded { .. } => "embedded".to_owned(),
            Backend::Nats { stream, .. } => format!("nats:{stream}"),
        },
        every_events: config.snapshot_every_events,
        every: SNAPSHOT_EVERY,
    };
    let first = stream.first_seq().await?;
    let started = std::time::Instant::now();
    let projection = load_projection(&stream, &snapshots, first, target).await?;
    tracing::info!(
        snapshot_seq = projection.seq,
        stream_last_seq = target,
        ms = started.elapsed().as_millis() as u64,
        "projection loaded; replaying the rest of the stream"
    );
    let progress = Arc::new(Progress::new(target, projection.seq));
    let fell_behind = progress.clone();
    let projection = Arc::new(RwLock::new(projection));

    // Background work stops after the HTTP server has finished its
    // in-flight requests, so the last snapshot and the last archive flush
    // hold everything those requests appended.
    let background = CancellationToken::new();
    let tasks = TaskTracker::new();
    let limiter = Arc::new(Limiter::default());
    let mut archive_feed = None;
    let offsite = config
        .archive_url
        .as_ref()
        .map(crate::offsite::Offsite::open)
        .transpose()?;
    if matches!(config.role, Role::All | Role::Worker) {
        let (feed_tx, feed) = archiver::feed();
        archive_feed = Some(feed_tx);
        // A local archive is every worker's own. The archive on object
        // storage is one for all: only the worker holding the lease
        // archives into it (below), taking up from what was uploaded.
        let (archived, staged) = match &offsite {
            None => {
                let archiver = Archiver::open(
                    data_dir.path().join("archive"),
                    &stream,
                    projection.clone(),
                    metrics.clone(),
                    None,
                )
                .await?;
                let archived = archiver.durable_watermark();
                tasks.spawn(archiver.run(stream.clone(), feed, config.archive_flush, background.clone()));
                (archived, None)
            }
            Some(offsite) => {
                let staged = Staged {
                    offsite: offsite.clone(),
                    dir: data_dir.path().join("archive"),
                    feed: Arc::new(tokio::sync::Mutex::new(feed)),
                    tasks: tasks.clone(),
                    every: config.archive_flush,
                };
                (Arc::new(std::sync::atomic::AtomicU64::new(0)), Some(staged))
            }
        };
        // Fails here, not later, if the HTTP client cannot be built.
        drop(
            webhooks::Worker::new(
                stream.clone(),
                projection.clone(),
                progress.subscribe(),
                target,
                config.webhook_retry_schedule.clone(),
                config.webhook_guard,
                background.clone(),
            )
            .map_err(|e| ServeError::Http(std::io::Error::other(e)))?,
        );
        let (stream, projection, progress, config) =
            (stream.clone(), projection.clone(), progress.clone(), config.clone());
        let worker_metrics = metrics.clone();
        let (snapshots_dir, stream_name) = (snapshots.dir.clone(), snapshots.stream.clone());
        tasks.spawn(lease::run_while_held(
            stream.clone(),
            metrics.clone(),
            background.clone(),
            move |active| {
                let (stream, projection, progress, config) =
                    (stream.clone(), projection.clone(), progress.clone(), config.clone());
                let failures = worker_metrics.webhook_record_errors.clone();
                // Deletes old events while this process is the worker.
                let retention = crate::retention::Retention {
                    stream: stream.clone(),
                    metrics: worker_metrics.clone(),
                    keep: config.retention,
                    snapshots: snapshots_dir.clone(),
                    stream_name: stream_name.clone(),
                    publish: matches!(config.backend, Backend::Nats { .. }),
                    archived: archived.clone(),
                    progress: progress.clone(),
                    checked: Default::default(),
                };
                tokio::spawn(retention.run(config.retention_every, active.clone()));
                if let Some(staged) = &staged {
                    staged.archive_while(&stream, &projection, &worker_metrics, &archived, &active);
                }
                async move {
                    // Send nothing before what the previous worker recorded is folded.
                    let ready_at = match stream.last_seq().await {
                        Ok(seq) => seq,
                        Err(error) => {
                            tracing::warn!(%error, "cannot read the stream's end; waiting for all of it at start");
                            progress.target()
                        }
                    };
                    let worker = webhooks::Worker::new(
                        stream,
                        projection,
                        progress.subscribe(),
                        ready_at,
                        config.webhook_retry_schedule.clone(),
                        config.webhook_guard,
                        active,
                    );
                    match worker {
                        Ok(worker) => {
                            worker
                                .on_record_failure(move || {
                                    failures.inc();
                                })
                                .run()
                                .await
                        }
                        Err(error) => tracing::error!(%error, "cannot start webhook delivery"),
                    }
                }
            },
        ));
    }
    if config.role == Role::Api {
        tasks.spawn(crate::retention::watch(
            stream.clone(),
            metrics.clone(),
            config.retention,
            config.retention_every,
            background.clone(),
        ));
    }
    tasks.spawn(follower::run(
        stream.clone(),
        projection.clone(),
        limiter.clone(),
        progress.clone(),
        metrics.clone(),
        snapshots,
        archive_feed,
        background.clone(),
        shutdown.clone(),
    ));

    let http = reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| ServeError::Http(std::io::Error::other(e)))?;
    let metrics_for_http = metrics.clone();
    let state = AppState {
        stream: stream.clone(),
        projection,
        progress,
        metrics,
        admin_token,
        limiter,
        http,
        upstream_timeout: config.upstream_timeout,
        webhook_guard: config.webhook_guard,
        rate_alerts: Arc::default(),
        admissions: Arc::default(),
        admit_on_stream: matches!(config.backend, Backend::Nats { .. }),
        summaries: Arc::default(),
        outcome_can_be_unknown: matches!(config.backend, Backend::Nats { .. }),
        archive: (config.role == Role::All && offsite.is_none()).then(|| data_dir.path().join("archive")),
        offsite,
    };
    if config.role != Role::Worker && (state.archive.is_some() || state.offsite.is_some()) {
        tasks.spawn(routes::report::keep_warm(state.clone(), background.clone()));
    }
    // A worker answers health and metrics only; its projection serves no one else.
    let app = match config.role {
        Role::Worker => routes::health_router(state),
        Role::All | Role::Api => routes::router(state),
    };
    let addr = listener.local_addr().map_err(ServeError::Http)?;
    let backend = match &config.backend {
        Backend::Embedded { .. } => "embedded",
        Backend::Nats { .. } => "nats",
    };
    tracing::info!(%addr, backend, role = ?config.role, data_dir = %data_dir.path().display(), stream_last_seq = target, "nodai listening");
    let app = app.layer(axum::Extension(crate::extract::BodyTimeout(config.body_timeout)));
    let served = crate::listen::serve(listener, app, config.connections, metrics_for_http, shutdown.clone())
        .await
        .map_err(ServeError::Http);

    shutdown.cancel();
    background.cancel();
    tasks.close();
    tasks.wait().await;
    // Connection tasks may still hold the state for a moment; the stream is
    // closed (synced, unlocked) now regardless.
    stream.close().await;
    tracing::info!("nodai stopped");
    if fell_behind.has_fallen_behind() {
        return Err(ServeError::FellBehind);
    }
    served
}

/// The archive on object storage, archived into while this worker holds
/// the lease.
#[derive(Clone)]
struct Staged {
    offsite: crate::offsite::Offsite,
    /// The data dir's `archive/`, where flushes are staged before upload.
    dir: std::path::PathBuf,
    feed: Arc<tokio::sync::Mutex<archiver::Feed>>,
    tasks: TaskTracker,
    every: std::time::Duration,
}

impl Staged {
    /// Archives until `active` ends (the lease lost, or shutdown, which
    /// flushes and uploads first): opens the staging taking up from the
    /// uploaded watermark, retried while it cannot.
    fn archive_while(
        &self,
        stream: &Arc<dyn ingest::EventStream>,
        projection: &Arc<std::sync::RwLock<ledger::Projection>>,
        metrics: &Arc<crate::metrics::Metrics>,
        durable: &Arc<std::sync::atomic::AtomicU64>,
        active: &CancellationToken,
    ) {
        let (this, stream, projection, metrics, durable, active) = (
            self.clone(),
            stream.clone(),
            projection.clone(),
            metrics.clone(),
            durable.clone(),
            active.clone(),
        );
        self.tasks.spawn(async move {
            let mut feed = this.feed.lock().await;
            while !active.is_cancelled() {
                let opened = Archiver::open(
                    this.dir.clone(),
                    &stream,
                    projection.clone(),
                    metrics.clone(),
                    Some(this.offsite.clone()),
                )
                .await;
                match opened {
                    Ok(archiver) => {
                        archiver
                            .sharing(durable)
                            .run_on(stream, &mut feed, this.every, active)
                            .await;
                        return;
                    }
                    Err(error) => {
                        tracing::error!(%error, url = this.offsite.url, "cannot archive to object storage; trying again in 5 s");
                        metrics.archive_errors.inc();
                        tokio::select! {
                            _ = active.cancelled() => return,
                            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                        }
                    }
                }
            }
        });
    }
}

/// The projection to start from: the newest snapshot in the data dir that
/// checks out against the stream, else (after retention deleted the
/// stream's head) the published one, else an empty one if the stream still
/// starts at its first event. A start that cannot reach the stream's first
/// event refuses rather than fold a stream with its beginning missing.
async fn load_projection(
    stream: &Arc<dyn ingest::EventStream>,
    snapshots: &Snapshots,
    first: u64,
    target: u64,
) -> Result<ledger::Projection, ServeError> {
    let (loading, checking) = (snapshots.clone(), stream.clone());
    let runtime = tokio::runtime::Handle::current();
    let local = tokio::task::spawn_blocking(move || {
        // On the blocking pool: waiting here for the stream blocks no worker.
        let id_at = |seq| {
            runtime
                .block_on(checking.record_at(seq))
                .map(|r| r.map(|r| r.id))
                .map_err(|e| e.to_string())
        };
        ledger::snapshot::load_newest(&loading.dir, &loading.stream, first, target, id_at)
    })
    .await
    .ok()
    .flatten();
    if let Some(projection) = local {
        return Ok(projection);
    }
    if first <= 1 {
        return Ok(ledger::Projection::default());
    }
    let no_snapshot = |why: String| ServeError::NoSnapshot { first, why };
    let bytes = stream
        .fetch_snapshot()
        .await
        .map_err(|e| no_snapshot(format!("the published snapshot cannot be read ({e})")))?
        .ok_or_else(|| no_snapshot("none is in the data dir and none is published".into()))?;
    let projection = ledger::snapshot::decode(&bytes, &snapshots.stream)
        .map_err(|e| no_snapshot(format!("the published snapshot is not usable ({e})")))?;
    if projection.seq < first || projection.seq > target {
        return Err(no_snapshot(format!(
            "the published snapshot was taken at sequence {}, outside the stream's {first}..={target}",
            projection.seq
        )));
    }
    let found = stream.record_at(projection.seq).await?.map(|r| r.id);
    if found.is_none() || found != projection.last_id {
        return Err(no_snapshot(format!(
            "the published snapshot names another event at sequence {} than the stream holds",
            projection.seq
        )));
    }
    tracing::info!(
        seq = projection.seq,
        bytes = bytes.len(),
        "loaded the published snapshot"
    );
    Ok(projection)
}

/// Cancels `token` on SIGTERM or Ctrl-C.
pub async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("ctrl-c: shutting down"),
        _ = term => tracing::info!("SIGTERM: shutting down"),
    }
    token.cancel();
}

/// Logs to stderr with the `NODAI_LOG` filter; no colours unless a terminal.
pub fn init_logging(filter: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|error| {
        eprintln!("nodai: NODAI_LOG={filter:?} is not a valid filter ({error}); using info");
        tracing_subscriber::EnvFilter::new("info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
