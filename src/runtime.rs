//! The runtime seam: the one module under `src/` that knows which world Shoal
//! runs in.
//!
//! Shoal compiles two ways. Normally `tokio` and `tonic` are the real crates;
//! under `--cfg madsim` the same names resolve to the madsim simulator, which
//! owns time, the network and randomness. Product code calls `tokio::`/`tonic::`
//! names and the items here; it never asks which world it is in.
//!
//! What lives here:
//! - [`ShoalRuntime`], openraft's [`AsyncRuntime`] built on the renamed `tokio`
//!   (openraft's own tokio runtime would reach for the real crate, which does not
//!   run inside the simulator);
//! - [`rng`], the process's single source of randomness: the simulator's seeded
//!   generator under madsim, OS-seeded entropy in real mode;
//! - [`shutdown_signal`], how a node learns it should stop;
//! - [`serve_http`], the HTTP gateway's listener: a real socket in real mode;
//!   the simulator has none to offer, so there it refuses;
//! - [`planted`], the switch for deliberately planted bugs, which exist only in
//!   simulation builds (in real builds it is the constant `false`).
//!
//! **Architecture invariant:** no other file under `src/` mentions `cfg(madsim)`;
//! `tests/tidy.rs` fails if one does.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use openraft::async_runtime::TokioOneShotSender;
use openraft::{AsyncRuntime, OptionalSend, TokioInstant};

/// The random generator type returned by [`rng`].
#[cfg(madsim)]
pub type Rng = madsim::rand::GlobalRng;
/// The random generator type returned by [`rng`].
#[cfg(not(madsim))]
pub type Rng = rand::rngs::ThreadRng;

/// The process's one source of randomness.
///
/// Under madsim this is the simulator's generator, seeded from the run's seed,
/// so every draw replays. In real mode it is a thread-local generator seeded
/// from the operating system.
pub fn rng() -> Rng {
    #[cfg(madsim)]
    {
        madsim::rand::thread_rng()
    }
    #[cfg(not(madsim))]
    {
        rand::thread_rng()
    }
}

/// Serves `router` over HTTP/1 on `addr` until `shutdown` resolves.
///
/// Real mode only: the HTTP stack runs on real sockets, so under madsim this
/// refuses at once (simulated nodes are never given an HTTP address).
pub async fn serve_http(
    addr: std::net::SocketAddr,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    #[cfg(madsim)]
    {
        let _ = (addr, router, shutdown);
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "the HTTP gateway does not run in simulation",
        ))
    }
    #[cfg(not(madsim))]
    {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// Resolves when the process is asked to stop: SIGTERM or Ctrl-C in real mode,
/// the simulator's `Handle::send_ctrl_c` under madsim.
pub async fn shutdown_signal() {
    #[cfg(madsim)]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    #[cfg(not(madsim))]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = match signal(SignalKind::terminate()) {
            Ok(terminate) => terminate,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C still stops");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            biased;
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
}

/// Runs blocking work (file I/O) where it does not stall the async workers:
/// tokio's blocking pool in real mode, inline in the simulator (which has no
/// real blocking work: its disk is simulated).
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    #[cfg(madsim)]
    {
        work()
    }
    #[cfg(not(madsim))]
    {
        tokio::task::spawn_blocking(work)
            .await
            .expect("blocking work panicked")
    }
}

/// A deliberate bug, compiled into simulation builds only and switched on by
/// name, so that the simulator can be shown to catch what it exists to catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PlantedBug {
    /// The log acknowledges writes before they are synced to disk.
    AckBeforeFsync,
    /// The state machine applies a retried write again instead of answering
    /// it from the de-duplication table.
    SkipDedup,
    /// A leader serves reads on its own belief that it leads, without the
    /// read index's quorum check: a deposed leader serves stale reads.
    StaleRead,
    /// A group goes on serving a shard it has given away, until the new
    /// owner has it (ignoring that the configuration moved on).
    ServeWhileLeaving,
    /// Snapshots leave out the de-duplication table, so a replica restored
    /// from one applies a retried write again.
    SnapshotDropsDedup,
    /// Clients pause before each call for a time taken from a heap address,
    /// an input from outside the simulation that differs between processes
    /// (address randomisation): the kind of hidden non-determinism, like
    /// iterating a map keyed by pointers, that breaks replay.
    ProcessDependent,
    /// A replica that led before a restart leads again at once, in the same
    /// term, though entries it had sent out but not yet synced may be gone
    /// from its log: it then serves reads from a state missing committed
    /// writes, and may hand out a log position its followers already hold.
    LeaderSurvivesRestart,
    /// A scan's end bound is taken as inclusive: a scan of `[start, end)`
    /// also returns `end`.
    ScanIncludesEnd,
}

impl PlantedBug {
    /// Every planted bug.
    pub const ALL: [PlantedBug; 8] = [
        PlantedBug::AckBeforeFsync,
        PlantedBug::SkipDedup,
        PlantedBug::StaleRead,
        PlantedBug::ServeWhileLeaving,
        PlantedBug::SnapshotDropsDedup,
        PlantedBug::ProcessDependent,
        PlantedBug::LeaderSurvivesRestart,
        PlantedBug::ScanIncludesEnd,
    ];

    /// The bug's name, as given in `SHOAL_PLANTED_BUGS`.
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::AckBeforeFsync => "ack-before-fsync",
            PlantedBug::SkipDedup => "skip-dedup",
            PlantedBug::StaleRead => "stale-read",
            PlantedBug::ServeWhileLeaving => "serve-while-leaving",
            PlantedBug::SnapshotDropsDedup => "snapshot-drops-dedup",
            PlantedBug::ProcessDependent => "process-dependent",
            PlantedBug::LeaderSurvivesRestart => "leader-survives-restart",
            PlantedBug::ScanIncludesEnd => "scan-includes-end",
        }
    }

    /// The bug with this name.
    pub fn from_name(name: &str) -> Option<PlantedBug> {
        PlantedBug::ALL.into_iter().find(|bug| bug.name() == name)
    }
}

/// Whether `bug` is switched on. Simulation builds read the comma-separated
/// bug names in `SHOAL_PLANTED_BUGS` once per process; real builds always
/// answer `false`.
pub fn planted(bug: PlantedBug) -> bool {
    #[cfg(madsim)]
    {
        static PLANTED: std::sync::OnceLock<Vec<PlantedBug>> = std::sync::OnceLock::new();
        PLANTED
            .get_or_init(|| {
                let names = std::env::var("SHOAL_PLANTED_BUGS").unwrap_or_default();
                names
                    .split(',')
                    .filter(|name| !name.trim().is_empty())
                    .map(|name| {
                        PlantedBug::from_name(name.trim())
                            .unwrap_or_else(|| panic!("unknown planted bug {name:?}"))
                    })
                    .collect()
            })
            .contains(&bug)
    }
    #[cfg(not(madsim))]
    {
        let _ = bug;
        false
    }
}

/// openraft's async runtime, built on whichever `tokio` this build links.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct ShoalRuntime;

/// A future bounded by a deadline. The inner future is polled first, so a
/// future that is ready at the deadline wins: the outcome never depends on
/// poll order chosen at random.
#[derive(Debug)]
pub struct Timeout<T> {
    future: Pin<Box<T>>,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

/// The error of a [`Timeout`] whose deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline elapsed")]
pub struct Elapsed;

impl<T: Future> Future for Timeout<T> {
    type Output = Result<T::Output, Elapsed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(output) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Sleeps until `deadline`, an instant of openraft's clock (which is the
/// simulator's clock under madsim: it intercepts the system clock).
pub fn sleep_until(deadline: TokioInstant) -> tokio::time::Sleep {
    #[cfg(madsim)]
    {
        tokio::time::sleep_until(deadline.into_std())
    }
    #[cfg(not(madsim))]
    {
        tokio::time::sleep_until(deadline)
    }
}

/// Runs `future` for at most `duration`; see [`Timeout`].
pub fn timeout<T: Future>(duration: Duration, future: T) -> Timeout<T> {
    Timeout {
        future: Box::pin(future),
        sleep: Box::pin(tokio::time::sleep(duration)),
    }
}

impl AsyncRuntime for ShoalRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = tokio::task::JoinHandle<T>;
    type Sleep = tokio::time::Sleep;
    type Instant = TokioInstant;
    type TimeoutError = Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = Timeout<T>;
    type ThreadLocalRng = Rng;
    type OneshotSender<T: OptionalSend> = TokioOneShotSender<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;
    type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        tokio::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        tokio::time::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        Timeout {
            future: Box::pin(future),
            sleep: Box::pin(sleep_until(deadline)),
        }
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        join_error.is_panic()
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        rng()
    }

    fn oneshot<T: OptionalSend>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (TokioOneShotSender(tx), rx)
    }
}
