//! Which worker is active. Every worker archives into its own data dir;
//! alert evaluation and webhook delivery run on one worker at a time: the
//! one holding the stream's `worker` lease (a JetStream KV entry that lapses
//! [`ingest::LEASE_TTL`] after its last renewal; always held on the
//! embedded log). A standby asks for it every second, so it takes over
//! within about `LEASE_TTL` plus a second of the active worker dying. See
//! `docs/adr/0005-scale-out-lease-and-admissions.md`.

use ingest::{EventStream, StreamError, LEASE_TTL};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

const LEASE: &str = "worker";
/// How often the holder renews and a standby asks.
const EVERY: Duration = Duration::from_secs(1);
/// How long one request for the lease may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs `work` while this process holds the worker lease: started with a
/// token that is cancelled when the lease is lost (or `shutdown`), and
/// awaited before the lease is asked for again or released.
pub async fn run_while_held<F, Fut>(
    stream: Arc<dyn EventStream>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    mut work: F,
) where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let holder = format!("{}-{}", std::process::id(), uuid::Uuid::now_v7().simple());
    let (mut warned, mut failing) = (false, false);
    loop {
        let answer = ask(&*stream, &holder).await;
        if failing && answer.is_ok() {
            tracing::info!("the worker lease can be asked for again");
            failing = false;
        }
        match answer {
            Ok(true) => {}
            Ok(false) => {
                if !warned {
                    tracing::info!("another worker is active; standing by");
                    warned = true;
                }
                if wait(&shutdown, EVERY).await {
                    return;
                }
                continue;
            }
            Err(error) => {
                // Once when asking starts failing; the next success says so.
                if !failing {
                    tracing::warn!(%error, "cannot ask for the worker lease; retrying every second");
                    failing = true;
                }
                metrics.lease_errors.inc();
                if wait(&shutdown, EVERY).await {
                    return;
                }
                continue;
            }
        }
        tracing::info!(
            holder,
            "holding the worker lease: evaluating alerts and delivering webhooks"
        );
        metrics.worker_active.set(1);
        let active = shutdown.child_token();
        let task = tokio::spawn(work(active.clone()));
        let mut renewed = Instant::now();
        loop {
            if wait(&shutdown, EVERY).await {
                break;
            }
            let asked = Instant::now();
            match ask(&*stream, &holder).await {
                Ok(true) => {
                    renewed = Instant::now();
                    tracing::debug!(ms = (renewed - asked).as_millis() as u64, "renewed the worker lease");
                }
                Ok(false) => {
                    tracing::warn!("lost the worker lease to another worker; standing by");
                    break;
                }
                // Stop a second before the lease can lapse, so that two
                // workers never deliver at once.
                Err(error) if renewed.elapsed() + EVERY >= LEASE_TTL => {
                    tracing::warn!(%error, "cannot renew the worker lease; stepping down");
                    break;
                }
                Err(error) => {
                    metrics.lease_errors.inc();
                    tracing::warn!(%error, "cannot renew the worker lease; retrying");
                }
            }
        }
        active.cancel();
        let _ = task.await;
        metrics.worker_active.set(0);
        warned = false;
        if shutdown.is_cancelled() {
            if let Err(error) = stream.release_lease(LEASE, &holder).await {
                tracing::warn!(%error, "cannot release the worker lease; it lapses by itself");
            }
            return;
        }
    }
}

/// Asks for the lease, within a bound: a request that hangs (seen right
/// after a cluster forms) must not keep a worker from ever asking again.
async fn ask(stream: &dyn EventStream, holder: &str) -> Result<bool, StreamError> {
    match tokio::time::timeout(ASK_TIMEOUT, stream.hold_lease(LEASE, holder)).await {
        Ok(answer) => answer,
        Err(_) => Err(StreamError::Unavailable(format!("no answer within {ASK_TIMEOUT:?}"))),
    }
}

/// Sleeps for `period`; true if `shutdown` came first.
async fn wait(shutdown: &CancellationToken, period: Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(period) => false,
    }
}
