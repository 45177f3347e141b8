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
//! - [`wall_clock_ms`], the wall clock (simulated time under madsim);
//! - [`serve_http`], the HTTP gateway's listener: a real socket in real mode;
//!   the simulator has none to offer, so there it refuses;
//! - [`planted`], the switch for deliberately planted bugs, which exist only in
//!   simulation builds (in real builds it is the constant `false`);
//! - [`buggify`] and [`reached`]: fault sites inside the nodes that a
//!   simulation run may fire, and rare situations it counts (both nothing in
//!   real builds).
//!
//! Its [`net`] part holds the listeners and signals ([`serve_grpc`],
//! [`serve_http`], [`shutdown_signal`], [`on_hangup`]).
//!
//! **Architecture invariant:** no other file under `src/` mentions `cfg(madsim)`
//! (this one and `runtime/net.rs` are the seam); `tests/tidy.rs` fails if one
//! does.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

mod net;

pub use net::{on_hangup, serve_grpc, serve_http, shutdown_signal, DRAIN_MAX};
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

/// Milliseconds since the Unix epoch on this node's wall clock: the
/// simulator's clock under madsim, the system's in real mode. Only a hint
/// (it may jump back and forth); the state machine orders its own stamps.
pub fn wall_clock_ms() -> u64 {
    #[cfg(madsim)]
    let now = madsim::time::TimeHandle::current().now_time();
    #[cfg(not(madsim))]
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
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

/// Declares a fieldless enum whose variants have names (as written in
/// environment variables, scenario files and reports): `ALL`, `name` and
/// `from_name`.
macro_rules! named {
    (
        $(#[$meta:meta])*
        pub enum $enum:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $name:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $enum {
            $( $(#[$vmeta])* $variant, )*
        }

        impl $enum {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$enum] = &[$( $enum::$variant, )*];

            /// The variant's name.
            pub fn name(self) -> &'static str {
                match self {
                    $( $enum::$variant => $name, )*
                }
            }

            /// The variant with this name.
            pub fn from_name(name: &str) -> Option<$enum> {
                $enum::ALL.iter().copied().find(|v| v.name() == name)
            }
        }
    };
}

named! {
    /// A deliberate bug, compiled into simulation builds only and switched on
    /// by name, so that the simulator can be shown to catch what it exists to
    /// catch.
    pub enum PlantedBug {
        /// The log acknowledges writes before they are synced to disk.
        AckBeforeFsync = "ack-before-fsync",
        /// The state machine applies a retried write again instead of
        /// answering it from the de-duplication table.
        SkipDedup = "skip-dedup",
        /// A leader serves reads on its own belief that it leads, without the
        /// read index's quorum check: a deposed leader serves stale reads.
        StaleRead = "stale-read",
        /// A group goes on serving a shard it has given away, until the new
        /// owner has it (ignoring that the configuration moved on).
        ServeWhileLeaving = "serve-while-leaving",
        /// Snapshots leave out the de-duplication table, so a replica restored
        /// from one applies a retried write again.
        SnapshotDropsDedup = "snapshot-drops-dedup",
        /// Clients pause before each call for a time taken from the process
        /// id, an input from outside the simulation that differs between
        /// processes: the kind of hidden non-determinism, like iterating a map
        /// keyed by pointers, that breaks replay.
        ProcessDependent = "process-dependent",
        /// A replica that led before a restart leads again at once, in the same
        /// term, though entries it had sent out but not yet synced may be gone
        /// from its log: it then serves reads from a state missing committed
        /// writes, and may hand out a log position its followers already hold.
        LeaderSurvivesRestart = "leader-survives-restart",
        /// A scan's end bound is taken as inclusive: a scan of `[start, end)`
        /// also returns `end`.
        ScanIncludesEnd = "scan-includes-end",
        /// A read answers as soon as the read index is confirmed, without
        /// waiting for the state machine to apply up to it: a new leader whose
        /// state machine lags serves a state missing acknowledged writes.
        ReadBeforeApply = "read-before-apply",
        /// A delete answers "existed" whether or not the key was there.
        DeleteAlwaysExisted = "delete-always-existed",
        /// A compare-and-swap that swapped answers the new value as the
        /// current one, instead of the value it replaced.
        CasAnswersNewValue = "cas-answers-new-value",
        /// A group hands a moving shard over without its keys (its sessions
        /// go along): the new owner starts the shard empty.
        ShardHandedOverEmpty = "shard-handed-over-empty",
        /// A moved shard's new owner installs its keys but not the previous
        /// owner's sessions: a retry of a write the old owner applied is
        /// applied again.
        ShardMovesWithoutSessions = "shard-moves-without-sessions",
        /// The shard controller answers a move with a new configuration
        /// that leaves the shard where it was.
        ControllerIgnoresMove = "controller-ignores-move",
        /// Recovery keeps a torn record at the end of the log instead of
        /// cutting it off, and appends after it: the next recovery finds the
        /// log corrupt in the middle.
        TornTailKept = "torn-tail-kept",
        /// A write of a client the group does not know is always applied,
        /// even when its session may be one the group evicted: a retry of a
        /// write whose session expired is applied a second time.
        ExpiredSessionReapplied = "expired-session-reapplied",
        /// A moved shard's new owner takes its sessions but not the previous
        /// owner's eviction horizon: a retry of a write into the shard whose
        /// session the previous owner had evicted is applied again.
        MovedHorizonDropped = "moved-horizon-dropped",
        /// The state machine's checkpoints are not made durable, yet the log
        /// is purged behind them: after a crash the engine is back at an
        /// older state and the entries since are gone from the log.
        CheckpointNotDurable = "checkpoint-not-durable",
        /// A batch of proposed commands is answered out of step: each
        /// command gets the outcome of the one after it.
        BatchAnswersRotated = "batch-answers-rotated",
        /// A snapshot install writes the snapshot's keys over the replica's
        /// old state instead of replacing it: a key deleted (or a shard
        /// dropped) in the entries the snapshot covers survives on the
        /// replica that installed it, which then holds other data than its
        /// group at the same log index.
        SnapshotInstallMerges = "snapshot-install-merges",
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

named! {
    /// A place in product code where a simulation run may inject a fault
    /// (BUGGIFY): a delay where timing is usually kind, or a transient error
    /// the code must tolerate. Activation has two stages: a run enables each
    /// site or not (the seed decides; see [`enable_buggify`]), and an enabled
    /// site then fires with some probability each time it is reached. Real
    /// builds compile every site away: [`buggify`] is the constant `false`.
    pub enum FaultSite {
        /// The state machine waits before applying committed entries, so it
        /// lags the commit index (and a new leader's reads must wait for it).
        ApplyDelay = "apply-delay",
        /// A write is committed and applied, but its answer waits before it
        /// is sent (the client may give up and retry).
        ReplyDelay = "reply-delay",
        /// Building a snapshot takes a while.
        SnapshotBuildDelay = "snapshot-build-delay",
        /// Installing a snapshot sent by the leader takes a while.
        SnapshotInstallDelay = "snapshot-install-delay",
        /// The shard mover waits before pulling a shard.
        ShardPullDelay = "shard-pull-delay",
        /// The shard mover waits between receiving a shard and proposing its
        /// installation.
        ShardInstallDelay = "shard-install-delay",
        /// A Raft message waits before it is sent.
        RaftSendDelay = "raft-send-delay",
        /// A Raft message fails to send (a transient network error).
        RaftSendError = "raft-send-error",
        /// A replica fails to serve a shard pull (a transient error).
        ShardPullError = "shard-pull-error",
    }
}

named! {
    /// A rare situation a good simulation run must reach now and then (a
    /// "sometimes" assertion). Product code counts it where it happens
    /// ([`reached`]); the simulator reports the counts and a sweep fails if
    /// a situation its scenario requires was never reached.
    pub enum Situation {
        /// A read on a leader whose state machine lagged the read index: the
        /// read waited for it to apply.
        ReadWaitedForApply = "read-waited-for-apply",
        /// A follower truncated a conflicting suffix of its log.
        LogSuffixTruncated = "log-suffix-truncated",
        /// A replica installed a snapshot sent by its leader.
        SnapshotInstalled = "snapshot-installed",
        /// A replica restarted on a log whose newest segment ended in a torn
        /// record, and cut it off.
        TornTailCut = "torn-tail-cut",
        /// A retried write was answered from the de-duplication table.
        RetryDeduplicated = "retry-deduplicated",
        /// A moved shard brought sessions newer than the new owner's: a retry
        /// of those writes is answered from them.
        SessionsMovedWithShard = "sessions-moved-with-shard",
        /// A retried write was answered from a session that arrived with a
        /// moved shard (its first attempt applied in the shard's old group).
        RetryDeduplicatedAfterMove = "retry-deduplicated-after-move",
        /// A replica became leader of a group in the middle of a shard move
        /// and carried the move on.
        ShardMoveResumedByNewLeader = "shard-move-resumed-by-new-leader",
        /// The shard mover failed to pull a shard and will try again.
        ShardPullRetried = "shard-pull-retried",
        /// A write was refused because the key's shard is not served here.
        WrongGroupRefused = "wrong-group-refused",
        /// A node forwarded a client's request to the group serving its key.
        RequestForwarded = "request-forwarded",
        /// A write of a session that had written before was refused because
        /// the group may have evicted the session (`SESSION_EXPIRED`).
        ExpiredSessionRefused = "expired-session-refused",
        /// A session was evicted because the group held `max_sessions`.
        SessionEvictedByCap = "session-evicted-by-cap",
        /// Several client commands waiting together were proposed as one
        /// log entry.
        WritesBatched = "writes-batched",
        /// Several linearizable reads waiting together shared one
        /// leadership check.
        ReadsShared = "reads-shared",
        /// An append-entries message too large to send whole was split.
        AppendSplit = "append-split",
    }
}

impl FaultSite {
    /// How often the site fires, as a share of the run's fire rate. Sites
    /// reached on every commit or message fire less often, or their delays
    /// would pile up into a cluster that does nothing else.
    pub fn fire_scale(self) -> f64 {
        match self {
            FaultSite::ApplyDelay => 0.04,
            FaultSite::ReplyDelay => 0.4,
            FaultSite::RaftSendDelay | FaultSite::RaftSendError => 0.2,
            FaultSite::SnapshotBuildDelay
            | FaultSite::SnapshotInstallDelay
            | FaultSite::ShardPullDelay
            | FaultSite::ShardInstallDelay
            | FaultSite::ShardPullError => 1.0,
        }
    }
}

/// What this simulation run's fault sites and situations are doing.
#[cfg(madsim)]
#[derive(Default)]
struct Sim {
    enabled: Vec<FaultSite>,
    fire_rate: f64,
    quiet: bool,
    counts: std::collections::BTreeMap<&'static str, u64>,
    /// Each group's applied-state digest at each log index, as the first
    /// replica to apply it reported: `(group, index)` → (the entry's term
    /// and leader, replica, digest).
    digests: std::collections::BTreeMap<(crate::ids::GroupKey, u64), ((u64, u64), u64, u64)>,
    /// The first report that disagreed with an earlier one.
    divergence: Option<String>,
}

#[cfg(madsim)]
thread_local! {
    // The simulator runs every node of a run on one thread: the run's
    // state lives there.
    static SIM: std::cell::RefCell<Sim> = std::cell::RefCell::default();
}

/// Starts a simulation run's fault sites and situation counts afresh:
/// `sites` are enabled, each firing with probability `fire_rate` (scaled by
/// [`FaultSite::fire_scale`]) when reached. In real builds this does
/// nothing.
pub fn enable_buggify(sites: &[FaultSite], fire_rate: f64) {
    #[cfg(madsim)]
    SIM.with(|sim| {
        *sim.borrow_mut() = Sim {
            enabled: sites.to_vec(),
            fire_rate,
            ..Sim::default()
        }
    });
    #[cfg(not(madsim))]
    let _ = (sites, fire_rate);
}

/// Stops every fault site from firing (the run's faults are over).
pub fn quiesce_buggify() {
    #[cfg(madsim)]
    SIM.with(|sim| sim.borrow_mut().quiet = true);
}

/// Whether the fault at `site` strikes now. Draws randomness only when the
/// site is enabled, so a run without BUGGIFY draws exactly what it did
/// before the sites existed.
pub fn buggify(site: FaultSite) -> bool {
    #[cfg(madsim)]
    {
        let fire_rate = SIM.with(|sim| {
            let sim = sim.borrow();
            (!sim.quiet && sim.enabled.contains(&site)).then_some(sim.fire_rate * site.fire_scale())
        });
        let fires = fire_rate.is_some_and(|rate| rand::Rng::gen_bool(&mut rng(), rate));
        if fires {
            SIM.with(|sim| *sim.borrow_mut().counts.entry(site.name()).or_default() += 1);
        }
        fires
    }
    #[cfg(not(madsim))]
    {
        let _ = site;
        false
    }
}

/// Waits up to `max` (a random while) if the fault at `site` strikes.
pub async fn buggify_delay(site: FaultSite, max: Duration) {
    if buggify(site) {
        let millis = rand::Rng::gen_range(&mut rng(), 1..=max.as_millis().max(1) as u64);
        tokio::time::sleep(Duration::from_millis(millis)).await;
    }
}

/// Counts that `situation` happened (simulation builds; nothing in real
/// builds).
pub fn reached(situation: Situation) {
    #[cfg(madsim)]
    SIM.with(|sim| *sim.borrow_mut().counts.entry(situation.name()).or_default() += 1);
    #[cfg(not(madsim))]
    let _ = situation;
}

/// Whether replicas report the digest of their applied state after every
/// entry ([`applied_state`]): in simulation builds, where the simulator
/// compares them; never in real builds.
pub fn tracks_state_digests() -> bool {
    cfg!(madsim)
}

/// Replica `node` of `group` applied the entry at `index` (written in
/// `term` by `leader`), after which its state has `digest`. Every replica
/// that applies an index must have applied the same entry and reached the
/// same state there: the first report that does not is kept for
/// [`state_divergence`]. Nothing in real builds.
pub fn applied_state(
    group: crate::ids::GroupKey,
    node: u64,
    (term, leader, index): (u64, u64, u64),
    digest: u64,
) {
    #[cfg(madsim)]
    SIM.with(|sim| {
        let mut sim = sim.borrow_mut();
        let entry = (term, leader);
        match sim.digests.get(&(group, index)) {
            None => {
                sim.digests.insert((group, index), (entry, node, digest));
            }
            Some(&(first_entry, first_node, first_digest))
                if (first_entry, first_digest) != (entry, digest) && sim.divergence.is_none() =>
            {
                let (first_term, first_leader) = first_entry;
                sim.divergence = Some(format!(
                    "in group {group:?}, replica {node} applied index {index} \
                     (T{term}-N{leader}) and holds state {digest:016x}; replica {first_node} \
                     applied it (T{first_term}-N{first_leader}) and held {first_digest:016x}"
                ));
            }
            Some(_) => {}
        }
    });
    #[cfg(not(madsim))]
    let _ = (group, node, term, leader, index, digest);
}

/// The first disagreement [`applied_state`] saw in this run, if any.
pub fn state_divergence() -> Option<String> {
    #[cfg(madsim)]
    {
        SIM.with(|sim| sim.borrow().divergence.clone())
    }
    #[cfg(not(madsim))]
    {
        None
    }
}

/// How often, in this simulation run, each situation was reached and each
/// fault site fired, by name (empty in real builds).
pub fn reached_counts() -> std::collections::BTreeMap<&'static str, u64> {
    #[cfg(madsim)]
    {
        SIM.with(|sim| sim.borrow().counts.clone())
    }
    #[cfg(not(madsim))]
    {
        std::collections::BTreeMap::new()
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
