//! The state machine store: applies committed entries to the replicated
//! state ([`Applied`]) in memory, and builds, installs and persists snapshots.
//!
//! The applied state is made durable only through snapshots: after a crash,
//! the state is the newest snapshot, and openraft re-applies the committed
//! entries after it from the log. A snapshot is durable before openraft may
//! purge the log entries it covers.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};

use super::disk::DiskRef;
use super::snapshot::{self, SnapshotError};
use super::StorageMetrics;
use crate::ids::{GroupKey, Member, NodeId};
use crate::machine::command::{CommandResult, Outcome};
use crate::machine::session::SessionLimits;
use crate::machine::Applied;
use crate::raft::{codec, TypeConfig};
use crate::runtime::{buggify_delay, planted, reached, FaultSite, PlantedBug, Situation};

/// Longest pause the `apply-delay` fault site puts before an apply.
const BUGGIFY_APPLY_DELAY_MAX: Duration = Duration::from_millis(3000);
/// Longest pause the snapshot build and install fault sites put in.
const BUGGIFY_SNAPSHOT_DELAY_MAX: Duration = Duration::from_millis(800);

#[derive(Debug, Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Member>,
    data: Vec<u8>,
}

/// The state machine of one replica. Clones share it: the server reads from
/// it while openraft applies to it.
#[derive(Debug, Clone)]
pub struct StateMachineStore {
    applied: Arc<RwLock<Applied>>,
    snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
    /// Held while a snapshot is written: openraft builds snapshots in a task
    /// of their own, which may run while a leader's snapshot is installed.
    snapshot_writes: Arc<tokio::sync::Mutex<()>>,
    /// One past the last log index the durable snapshot covers (0: none);
    /// the log store purges no further.
    snapshot_covers: Arc<AtomicU64>,
    disk: DiskRef,
    metrics: Arc<StorageMetrics>,
    /// The bounds of the de-duplication table, passed to every apply.
    limits: SessionLimits,
}

impl StateMachineStore {
    /// Recovers the state from the newest snapshot on `disk`, if any.
    pub async fn open(
        disk: DiskRef,
        group: GroupKey,
        shard_count: u32,
        limits: SessionLimits,
        metrics: Arc<StorageMetrics>,
    ) -> Result<StateMachineStore, SnapshotError> {
        let (applied, snapshot) = match snapshot::load_latest(&disk).await? {
            None => (Applied::new(group, shard_count), None),
            Some((meta, data)) => {
                let applied: Applied =
                    codec::decode(&data).map_err(|e| SnapshotError::Corrupt {
                        path: snapshot::SNAPSHOT_DIR.to_string(),
                        offset: 0,
                        reason: format!("state does not decode: {e}"),
                    })?;
                if applied.last_applied != meta.last_log_id {
                    return Err(SnapshotError::Corrupt {
                        path: snapshot::SNAPSHOT_DIR.to_string(),
                        offset: 0,
                        reason: "state and metadata disagree on the last index".to_string(),
                    });
                }
                tracing::info!(last_log_id = ?meta.last_log_id, "state recovered from snapshot");
                (applied, Some(StoredSnapshot { meta, data }))
            }
        };
        let covers = snapshot
            .as_ref()
            .and_then(|s: &StoredSnapshot| s.meta.last_log_id)
            .map_or(0, |l| l.index + 1);
        metrics.sessions.set(applied.kv.sessions.len() as i64);
        Ok(StateMachineStore {
            applied: Arc::new(RwLock::new(applied)),
            snapshot: Arc::new(Mutex::new(snapshot)),
            snapshot_writes: Arc::default(),
            snapshot_covers: Arc::new(AtomicU64::new(covers)),
            disk,
            metrics,
            limits,
        })
    }

    /// A read view of the applied state. Hold it briefly: appliers wait on it.
    pub fn read(&self) -> RwLockReadGuard<'_, Applied> {
        self.applied.read().expect("state machine lock poisoned")
    }

    /// One past the last log index the durable snapshot covers, shared with
    /// the log store, which must not durably purge beyond it.
    pub fn snapshot_covers(&self) -> Arc<AtomicU64> {
        self.snapshot_covers.clone()
    }

    /// The applied state as a snapshot holds it (its metadata and data), at
    /// the index applied now: what snapshots and backups are made of.
    pub fn capture(&self) -> Result<(SnapshotMeta<NodeId, Member>, Vec<u8>), codec::CodecError> {
        let applied = self.read();
        let data = if planted(PlantedBug::SnapshotDropsDedup) {
            let mut forgetful = applied.clone();
            forgetful.kv.sessions.forget_all();
            codec::encode(&forgetful)
        } else {
            codec::encode(&*applied)
        }?;
        let snapshot_id = match applied.last_applied {
            Some(log_id) => format!("{}-{}", log_id.leader_id, log_id.index),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership.clone(),
            snapshot_id,
        };
        Ok((meta, data))
    }

    /// The last log id of the current snapshot.
    fn snapshot_last_log_id(&self) -> Option<LogId<NodeId>> {
        let snapshot = self.snapshot.lock().expect("snapshot lock poisoned");
        snapshot.as_ref().and_then(|s| s.meta.last_log_id)
    }

    /// Makes `meta`/`data` the current snapshot, on disk and in memory, unless
    /// a newer one already is (then returns `false`). Callers hold
    /// `snapshot_writes`.
    async fn persist_snapshot(
        &self,
        meta: &SnapshotMeta<NodeId, Member>,
        data: &[u8],
    ) -> Result<bool, StorageError<NodeId>> {
        let current = self.snapshot_last_log_id();
        if current.is_some() && current >= meta.last_log_id {
            return Ok(false);
        }
        snapshot::write(&self.disk, meta, data)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        self.snapshot_covers.store(
            meta.last_log_id.map_or(0, |l| l.index + 1),
            Ordering::Release,
        );
        *self.snapshot.lock().expect("snapshot lock poisoned") = Some(StoredSnapshot {
            meta: meta.clone(),
            data: data.to_vec(),
        });
        Ok(true)
    }

    /// Replaces the applied state with a snapshot's.
    fn replace(&self, applied: Applied) {
        *self.applied.write().expect("state machine lock poisoned") = applied;
    }
}

/// A received snapshot whose contents end at a different log id than its
/// metadata says.
#[derive(Debug, thiserror::Error)]
#[error("snapshot contents end at {contents:?} but its metadata says {meta:?}")]
struct SnapshotMismatch {
    contents: Option<LogId<NodeId>>,
    meta: Option<LogId<NodeId>>,
}

fn io_error(
    meta: Option<&SnapshotMeta<NodeId, Member>>,
    e: &codec::CodecError,
) -> StorageError<NodeId> {
    match meta {
        Some(meta) => StorageIOError::read_snapshot(Some(meta.signature()), e).into(),
        None => StorageIOError::write_snapshot(None, e).into(),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let started = tokio::time::Instant::now();
        buggify_delay(FaultSite::SnapshotBuildDelay, BUGGIFY_SNAPSHOT_DELAY_MAX).await;
        let (meta, data) = self.capture().map_err(|e| io_error(None, &e))?;
        let _writing = self.snapshot_writes.lock().await;
        if self.persist_snapshot(&meta, &data).await? {
            let metrics = &self.metrics;
            metrics
                .snapshot_build_seconds
                .observe(started.elapsed().as_secs_f64());
            metrics.snapshot_bytes.observe(data.len() as f64);
        }
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>), StorageError<NodeId>>
    {
        let applied = self.read();
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        buggify_delay(FaultSite::ApplyDelay, BUGGIFY_APPLY_DELAY_MAX).await;
        let mut applied = self.applied.write().expect("state machine lock poisoned");
        let evicted_before = applied.kv.sessions.evicted();
        let mut results = Vec::new();
        for entry in entries {
            assert!(
                applied.last_applied < Some(entry.log_id),
                "entry {} applied twice (last applied {:?})",
                entry.log_id,
                applied.last_applied
            );
            applied.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => CommandResult::None,
                EntryPayload::Normal(ref command) => applied.apply_command(command, &self.limits),
                EntryPayload::Membership(ref membership) => {
                    applied.membership =
                        StoredMembership::new(Some(entry.log_id), membership.clone());
                    CommandResult::None
                }
            };
            results.push(Outcome {
                result,
                stamp: applied.kv.sessions.clock(),
            });
        }
        let sessions = &applied.kv.sessions;
        let metrics = &self.metrics;
        metrics
            .sessions_expired
            .inc_by(sessions.evicted() - evicted_before);
        metrics.sessions.set(sessions.len() as i64);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let started = tokio::time::Instant::now();
        buggify_delay(FaultSite::SnapshotInstallDelay, BUGGIFY_SNAPSHOT_DELAY_MAX).await;
        let data = snapshot.into_inner();
        let applied: Applied = codec::decode(&data).map_err(|e| io_error(Some(meta), &e))?;
        if applied.last_applied != meta.last_log_id {
            let mismatch = SnapshotMismatch {
                contents: applied.last_applied,
                meta: meta.last_log_id,
            };
            return Err(StorageIOError::read_snapshot(Some(meta.signature()), &mismatch).into());
        }
        let _writing = self.snapshot_writes.lock().await;
        self.persist_snapshot(meta, &data).await?;
        let metrics = &self.metrics;
        metrics
            .snapshot_install_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.snapshot_bytes.observe(data.len() as f64);
        metrics.snapshots_installed.inc();
        reached(Situation::SnapshotInstalled);
        metrics.sessions.set(applied.kv.sessions.len() as i64);
        self.replace(applied);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let snapshot = self
            .snapshot
            .lock()
            .expect("snapshot lock poisoned")
            .clone();
        Ok(snapshot.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
