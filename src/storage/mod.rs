//! Where a replica keeps its state, all of it through the [`disk`] seam:
//! the Raft log in a write-ahead log ([`log_store`], [`wal`], [`frame`]) and
//! the state machine ([`state_machine`], whose logic is [`crate::machine`]) with its
//! [`snapshot`] files; and [`backup`] files, a group's state copied out and
//! seeded into a new group.
//!
//! Recovery on open: the newest snapshot gives the applied state, the log
//! gives the entries, the vote and the committed index; openraft then
//! re-applies the committed entries after the snapshot. A torn tail at the end
//! of the log (the normal result of a crash) is cut off. Damage anywhere else
//! is never served: opening fails with an error naming the file and offset.

pub mod backup;
pub mod disk;
pub mod engine;
pub mod frame;
pub mod log_store;
pub mod snapshot;
pub mod state_machine;
pub mod vote;
pub mod wal;

#[cfg(test)]
mod golden;

use std::sync::Arc;
use std::time::Duration;

pub use log_store::LogStore;
pub use state_machine::StateMachineStore;

use disk::DiskRef;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::ids::{GroupKey, NodeId};
use crate::machine::session::SessionLimits;
use crate::machine::shard::SHARD_COUNT_DEFAULT;

/// Entries applied between checkpoints unless told otherwise.
pub const CHECKPOINT_EVERY_ENTRIES_DEFAULT: u64 = 10_000;

/// Tunables of a replica's storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageOptions {
    /// Size at which a write-ahead log segment is closed and a new one begun.
    pub wal_segment_size_max: u64,
    /// The replica's group, which shapes the state of a fresh replica.
    pub group: GroupKey,
    /// The replica's node id in its group (names it in diagnostics).
    pub node: NodeId,
    /// Shards in the cluster (sharded clusters).
    pub shard_count: u32,
    /// The bounds of the de-duplication table (the same on every member).
    pub sessions: SessionLimits,
    /// Bytes of engine pages cached in memory.
    pub engine_cache_bytes: usize,
    /// Entries applied between two durable checkpoints of the engine: the
    /// most a restart re-applies from the log.
    pub checkpoint_every_entries: u64,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            wal_segment_size_max: 64 * 1024 * 1024,
            group: GroupKey::Standalone,
            node: 0,
            shard_count: SHARD_COUNT_DEFAULT,
            sessions: SessionLimits::default(),
            engine_cache_bytes: engine::CACHE_SIZE_BYTES_DEFAULT,
            checkpoint_every_entries: CHECKPOINT_EVERY_ENTRIES_DEFAULT,
        }
    }
}

/// Storage activity, shared with whoever watches the replica: the node's
/// metrics registry registers these same handles (cloning one shares it).
#[derive(Debug, Clone)]
pub struct StorageMetrics {
    /// Seconds each write-ahead log batch took to write and sync.
    pub wal_fsync_seconds: Histogram,
    /// Write-ahead log syncs (one per group-committed batch).
    pub wal_syncs: Counter,
    /// Records written to the write-ahead log.
    pub wal_records: Counter,
    /// Bytes written to the write-ahead log.
    pub wal_bytes: Counter,
    /// Seconds each snapshot this replica built from its own state took.
    pub snapshot_build_seconds: Histogram,
    /// Seconds each snapshot installed from a leader took.
    pub snapshot_install_seconds: Histogram,
    /// Sizes of snapshots built or installed, in bytes.
    pub snapshot_bytes: Histogram,
    /// Snapshots this replica installed from a leader.
    pub snapshots_installed: Counter,
    /// Live de-duplication sessions in the applied state, set as it
    /// changes (apply, snapshot install, recovery).
    pub sessions: Gauge,
    /// Sessions this replica evicted (idle, over the bound) or closed.
    pub sessions_expired: Counter,
    /// Bytes the state machine's engine read and wrote.
    pub engine: engine::EngineIo,
    /// Seconds each commit of applied entries to the engine took.
    pub engine_commit_seconds: Histogram,
    /// Entries applied together in one commit.
    pub applied_per_commit: Histogram,
}

impl Default for StorageMetrics {
    fn default() -> Self {
        StorageMetrics {
            wal_fsync_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            wal_syncs: Counter::default(),
            wal_records: Counter::default(),
            wal_bytes: Counter::default(),
            snapshot_build_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            snapshot_install_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            snapshot_bytes: Histogram::new(exponential_buckets(1024.0, 4.0, 12)),
            snapshots_installed: Counter::default(),
            sessions: Gauge::default(),
            sessions_expired: Counter::default(),
            engine: engine::EngineIo::default(),
            engine_commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            applied_per_commit: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
        }
    }
}

impl StorageMetrics {
    /// Counts a batch written to the write-ahead log, and the time its sync
    /// took if it was synced.
    pub(crate) fn record_wal_batch(&self, records: usize, bytes: usize, synced: Option<Duration>) {
        if let Some(took) = synced {
            self.wal_fsync_seconds.observe(took.as_secs_f64());
            self.wal_syncs.inc();
        }
        self.wal_records.inc_by(records as u64);
        self.wal_bytes.inc_by(bytes as u64);
    }

    /// Adds these metrics to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "wal_fsync_duration_seconds",
            "Time to write and sync one write-ahead log batch",
            self.wal_fsync_seconds.clone(),
        );
        registry.register(
            "wal_syncs",
            "Write-ahead log syncs, one per group-committed batch",
            self.wal_syncs.clone(),
        );
        registry.register(
            "wal_records",
            "Records written to the write-ahead log",
            self.wal_records.clone(),
        );
        registry.register(
            "wal_bytes",
            "Bytes written to the write-ahead log",
            self.wal_bytes.clone(),
        );
        registry.register(
            "snapshot_build_duration_seconds",
            "Time to build a snapshot of this replica's state",
            self.snapshot_build_seconds.clone(),
        );
        registry.register(
            "snapshot_install_duration_seconds",
            "Time to install a snapshot sent by the leader",
            self.snapshot_install_seconds.clone(),
        );
        registry.register(
            "snapshot_size_bytes",
            "Sizes of snapshots built or installed",
            self.snapshot_bytes.clone(),
        );
        registry.register(
            "snapshots_installed",
            "Snapshots installed from a leader",
            self.snapshots_installed.clone(),
        );
        registry.register(
            "sessions",
            "Live client de-duplication sessions",
            self.sessions.clone(),
        );
        registry.register(
            "sessions_expired",
            "Client sessions evicted (idle or over the bound) or closed",
            self.sessions_expired.clone(),
        );
        registry.register(
            "engine_read_bytes",
            "Bytes the state machine's engine read from its file, past its cache",
            self.engine.read_bytes.clone(),
        );
        registry.register(
            "engine_written_bytes",
            "Bytes the state machine's engine wrote to its file",
            self.engine.written_bytes.clone(),
        );
        registry.register(
            "engine_commit_duration_seconds",
            "Time to commit one batch of applied entries to the engine",
            self.engine_commit_seconds.clone(),
        );
        registry.register(
            "applied_entries_per_commit",
            "Log entries applied together in one engine commit",
            self.applied_per_commit.clone(),
        );
    }
}

/// Why a replica's storage could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StorageOpenError {
    /// The write-ahead log is unreadable or damaged.
    #[error("write-ahead log: {0}")]
    Wal(#[from] wal::WalError),
    /// The engine is unreadable or damaged.
    #[error("engine: {0}")]
    Engine(#[from] engine::EngineError),
    /// The data directory is of the former format, state in snapshot files.
    #[error(
        "this data directory was written by an older Shoal that kept the state in \
         snapshot files ({}/); this version keeps it in {}. Start this node with an \
         empty data directory and restore a backup taken with the older version's \
         `shoal snapshot save`, or let it catch up from its group",
        snapshot::FORMER_SNAPSHOT_DIR,
        state_machine::ENGINE_FILE
    )]
    FormerFormat,
    /// The data directory could not be listed or cleaned.
    #[error("data directory: {0}")]
    Io(std::io::Error),
    /// The log was purged past what the state machine holds: the entries
    /// between are gone.
    #[error(
        "the log is purged through index {purged} but the state machine holds entries \
         only through {applied:?}: the entries between are lost (the engine's checkpoint \
         did not reach the disk); the replica must be replaced"
    )]
    LogGap {
        /// The last index purged from the log.
        purged: u64,
        /// The last index the state machine applied.
        applied: Option<u64>,
    },
    /// The vote file is unreadable or damaged.
    #[error("vote: {0}")]
    Vote(#[from] vote::VoteError),
}

/// A replica's stores. Cloning shares them.
#[derive(Debug, Clone)]
pub struct Storage {
    /// The Raft log, vote and committed index.
    pub log: LogStore,
    /// The applied state and the latest snapshot.
    pub state_machine: StateMachineStore,
    /// Activity counters.
    pub metrics: Arc<StorageMetrics>,
}

impl Storage {
    /// Recovers a replica's state from `disk` (empty on a fresh disk).
    pub async fn open(
        disk: DiskRef,
        options: &StorageOptions,
        metrics: Arc<StorageMetrics>,
    ) -> Result<Storage, StorageOpenError> {
        let state_machine = StateMachineStore::open(disk.clone(), options, metrics.clone()).await?;
        let log = LogStore::open(
            disk,
            options.wal_segment_size_max,
            state_machine.snapshot_covers(),
            metrics.clone(),
        )
        .await?;
        let applied = state_machine.read().last_applied.map(|l| l.index);
        if let Some(purged) = log.last_purged().map(|p| p.index) {
            if applied.is_none_or(|a| a < purged) {
                return Err(StorageOpenError::LogGap { purged, applied });
            }
        }
        Ok(Storage {
            log,
            state_machine,
            metrics,
        })
    }
}
