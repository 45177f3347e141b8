//! Where a replica keeps its state, all of it through the [`disk`] seam:
//! the Raft log in a write-ahead log ([`log_store`], [`wal`], [`frame`]) and
//! the state machine ([`state_machine`], whose logic is [`crate::machine`]) with its
//! [`snapshot`] files.
//!
//! Recovery on open: the newest snapshot gives the applied state, the log
//! gives the entries, the vote and the committed index; openraft then
//! re-applies the committed entries after the snapshot. A torn tail at the end
//! of the log (the normal result of a crash) is cut off. Damage anywhere else
//! is never served: opening fails with an error naming the file and offset.

pub mod disk;
pub mod frame;
pub mod log_store;
pub mod snapshot;
pub mod state_machine;
pub mod vote;
pub mod wal;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use log_store::LogStore;
pub use state_machine::StateMachineStore;

use disk::DiskRef;

use crate::ids::GroupKey;
use crate::machine::shard::SHARD_COUNT_DEFAULT;

/// Tunables of a replica's storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageOptions {
    /// Size at which a write-ahead log segment is closed and a new one begun.
    pub wal_segment_size_max: u64,
    /// The replica's group, which shapes the state of a fresh replica.
    pub group: GroupKey,
    /// Shards in the cluster (sharded clusters).
    pub shard_count: u32,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            wal_segment_size_max: 64 * 1024 * 1024,
            group: GroupKey::Standalone,
            shard_count: SHARD_COUNT_DEFAULT,
        }
    }
}

/// Counters of storage activity, shared with whoever watches the replica.
#[derive(Debug, Default)]
pub struct StorageMetrics {
    /// Write-ahead log syncs (one per group-committed batch).
    pub wal_syncs: AtomicU64,
    /// Records written to the write-ahead log.
    pub wal_records: AtomicU64,
    /// Bytes written to the write-ahead log.
    pub wal_bytes: AtomicU64,
    /// Snapshots this replica built from its own state.
    pub snapshots_built: AtomicU64,
    /// Snapshots this replica installed from a leader.
    pub snapshots_installed: AtomicU64,
}

impl StorageMetrics {
    pub(crate) fn record_wal_batch(&self, records: usize, bytes: usize) {
        self.wal_syncs.fetch_add(1, Ordering::Relaxed);
        self.wal_records
            .fetch_add(records as u64, Ordering::Relaxed);
        self.wal_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// Why a replica's storage could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StorageOpenError {
    /// The write-ahead log is unreadable or damaged.
    #[error("write-ahead log: {0}")]
    Wal(#[from] wal::WalError),
    /// The newest snapshot is unreadable or damaged.
    #[error("snapshot: {0}")]
    Snapshot(#[from] snapshot::SnapshotError),
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
        let state_machine = StateMachineStore::open(
            disk.clone(),
            options.group,
            options.shard_count,
            metrics.clone(),
        )
        .await?;
        let log = LogStore::open(
            disk,
            options.wal_segment_size_max,
            state_machine.snapshot_covers(),
            metrics.clone(),
        )
        .await?;
        Ok(Storage {
            log,
            state_machine,
            metrics,
        })
    }
}
