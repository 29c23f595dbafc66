//! Accepting HTTP connections, with the limits a server facing the
//! internet needs and `axum::serve` does not set: how long a client may
//! take to send a request's head (and, on a kept-alive connection, may sit
//! idle before the next one), how large that head may be (431 past it),
//! and how many connections are open at once. At the cap, new connections
//! wait in the kernel's backlog instead of failing with "too many open
//! files" (the process's open-file limit is raised to its hard limit at
//! start, and the cap kept below it). A body's read timeout is the
//! extractors' (`crate::extract`). Does not route: it serves the `Router`.

use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use crate::metrics::Metrics;

/// How long in-flight requests may take to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(30);
/// Open files kept for everything but connections (the log's segments,
/// Parquet, snapshots, NATS, upstream calls).
const RESERVED_FILES: u64 = 256;

/// Limits on connections: `Config` carries them.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request's head must arrive within this; a kept-alive connection
    /// may stay idle between requests this long.
    pub header_timeout: Duration,
    /// Connections open at once, at most.
    pub max_connections: usize,
    /// A request's head (request line and headers), at most.
    pub max_header_bytes: usize,
}

/// Serves `app` on `listener` until `shutdown`, then stops accepting and
/// lets open requests finish (up to [`DRAIN`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let cap = limits.max_connections.min(open_files_for_connections());
    if cap < limits.max_connections {
        tracing::warn!(
            configured = limits.max_connections,
            cap,
            "the open-file limit allows fewer connections than configured; raise LimitNOFILE (ulimit -n)"
        );
    }
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout)
        .max_concurrent_streams(256);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(cap));
    let mut at_cap = false;
    loop {
        if permits.available_permits() == 0 && !at_cap {
            at_cap = true;
            metrics.connection_limit_reached.inc();
            tracing::warn!(cap, "connection limit reached; new connections wait until one closes");
        }
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        if at_cap {
            at_cap = false;
            tracing::info!(cap, "below the connection limit again");
        }
        let (socket, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and the like: back off instead of spinning.
                    tracing::warn!(%error, "cannot accept a connection; retrying in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let mut app = app.clone();
            async move { app.call(request.map(axum::body::Body::new)).await }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(socket), service);
        let connection = graceful.watch(connection.into_owned());
        let open = metrics.open_connections.clone();
        open.inc();
        tokio::spawn(async move {
            // A client that went away mid-request is its business, not an error of ours.
            let _ = connection.await;
            open.dec();
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN) => tracing::warn!("requests still open after {DRAIN:?}; stopping anyway"),
    }
    Ok(())
}

/// Raises the soft open-file limit to the hard one and says how many
/// connections fit under it.
fn open_files_for_connections() -> usize {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return usize::MAX;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit = raised;
                }
            }
        }
        let files: u64 = limit.rlim_cur;
        usize::try_from(files.saturating_sub(RESERVED_FILES).max(1)).unwrap_or(usize::MAX)
    }
    #[cfg(not(unix))]
    usize::MAX
}
