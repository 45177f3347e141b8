//! The state machine store: applies committed entries to the replicated
//! state ([`Applied`]), whose data, sessions and head live in the engine
//! ([`super::engine`]), and builds and installs snapshots from it.
//!
//! The entries of one apply call are committed to the engine together, in
//! one batched commit (visible at once, durable at the next checkpoint).
//! Every `checkpoint_every_entries` entries, and for every snapshot built, a
//! checkpoint makes everything applied durable. After a crash the engine is
//! at its last checkpoint and openraft re-applies the committed entries after
//! it from the log, which is purged only behind a checkpoint: recovery reads
//! nothing in proportion to the data.
//!
//! A snapshot is generated from the engine as it is sent. One received is
//! written to a file, installed into a new engine file, and renamed over
//! the old one: a crash mid-install leaves the old state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};

use super::disk::DiskRef;
use super::engine::{Batch, Commit, Engine, EngineError, EngineOptions};
use super::snapshot::{self, InstallError, Meta, SnapshotStream, FORMER_SNAPSHOT_DIR};
use super::{StorageMetrics, StorageOpenError, StorageOptions};
use crate::ids::{GroupKey, Member, NodeId};
use crate::machine::command::{CommandResult, Outcome};
use crate::machine::{Applied, Head, Role};
use crate::raft::{codec, SnapshotData, TypeConfig};
use crate::runtime::{
    applied_state, buggify_delay, planted, reached, tracks_state_digests, FaultSite, PlantedBug,
    Situation,
};

/// Longest pause the `apply-delay` fault site puts before an apply.
const BUGGIFY_APPLY_DELAY_MAX: Duration = Duration::from_millis(3000);
/// Longest pause the snapshot build and install fault sites put in.
const BUGGIFY_SNAPSHOT_DELAY_MAX: Duration = Duration::from_millis(800);

/// The engine file in a data directory.
pub const ENGINE_FILE: &str = "engine.redb";
/// A new engine file being made from a received snapshot.
const INSTALL_FILE: &str = "engine.install";
/// A snapshot being received.
const RECEIVED_FILE: &str = "snapshot.received";

/// The state machine of one replica. Clones share it: the server reads from
/// it while openraft applies to it.
#[derive(Debug, Clone)]
pub struct StateMachineStore {
    applied: Arc<RwLock<Applied>>,
    /// Replaced whole when a snapshot is installed.
    engine: Arc<RwLock<Arc<Engine>>>,
    /// The last snapshot built or installed (openraft asks for one only
    /// after that).
    snapshot: Arc<Mutex<Option<Meta>>>,
    /// Held while a snapshot is built or installed: openraft builds in a
    /// task of its own, which may run while a leader's snapshot installs.
    snapshot_writes: Arc<tokio::sync::Mutex<()>>,
    /// One past the last log index the durable checkpoint covers (0: none);
    /// the log store purges no further.
    snapshot_covers: Arc<AtomicU64>,
    /// Entries applied since the last checkpoint.
    since_checkpoint: Arc<AtomicU64>,
    disk: DiskRef,
    options: StorageOptions,
    engine_options: EngineOptions,
    metrics: Arc<StorageMetrics>,
}

/// The state the engine holds: its head, sessions and data.
fn load(engine: &Engine, group: GroupKey, shard_count: u32) -> Result<Applied, EngineError> {
    let reader = engine.reader()?;
    let damaged = |what: String| EngineError::Damaged {
        file: engine.file().to_string(),
        what,
    };
    let head = match reader.state()? {
        None => Head {
            role: Role::new(group, shard_count),
            ..Head::default()
        },
        Some(bytes) => {
            codec::decode(&bytes).map_err(|e| damaged(format!("the state record ({e})")))?
        }
    };
    let mut sessions = std::collections::BTreeMap::new();
    for (client, bytes) in reader.sessions()? {
        let session = codec::decode(&bytes)
            .map_err(|e| damaged(format!("the session of client {client} ({e})")))?;
        sessions.insert(client, session);
    }
    let mut applied = Applied::restore(head, sessions, Arc::new(reader));
    if tracks_state_digests() {
        // A state that cannot be read whole is not compared.
        let _ = applied.kv.data.track_digest();
    }
    Ok(applied)
}

/// The digest of everything `applied` holds: its entries (kept as they
/// change), its head and its de-duplication table. Replicas that applied the
/// same entries hold states of the same digest.
fn state_digest(applied: &Applied) -> Option<u64> {
    let entries = applied.kv.data.digest()?;
    let rest = codec::encode(&(applied.head(), applied.kv.sessions.table()))
        .expect("a head and sessions encode");
    Some(entries ^ crate::machine::data::digest([(u32::MAX, rest.as_slice(), &[][..])]))
}

impl StateMachineStore {
    /// Recovers the state from the engine on `disk` (empty on a fresh disk).
    /// Refuses a data directory of the former format (state in snapshot
    /// files).
    pub async fn open(
        disk: DiskRef,
        options: &StorageOptions,
        metrics: Arc<StorageMetrics>,
    ) -> Result<StateMachineStore, StorageOpenError> {
        let names = disk.list("").await.map_err(StorageOpenError::Io)?;
        let former = disk
            .list(FORMER_SNAPSHOT_DIR)
            .await
            .map_err(StorageOpenError::Io)?;
        if !former.is_empty() && !names.iter().any(|n| n == ENGINE_FILE) {
            return Err(StorageOpenError::FormerFormat);
        }
        for leftover in [INSTALL_FILE, RECEIVED_FILE] {
            disk.remove(leftover).await.map_err(StorageOpenError::Io)?;
        }
        let engine_options = EngineOptions {
            cache_bytes: options.engine_cache_bytes,
            io: metrics.engine.clone(),
        };
        let engine = Engine::open(&disk, ENGINE_FILE, &engine_options).await?;
        let applied = load(&engine, options.group, options.shard_count)?;
        if let Some(last) = applied.last_applied {
            tracing::info!(last_log_id = %last, "state recovered from the engine's checkpoint");
        }
        let covers = applied.last_applied.map_or(0, |l| l.index + 1);
        metrics.sessions.set(applied.kv.sessions.len() as i64);
        Ok(StateMachineStore {
            applied: Arc::new(RwLock::new(applied)),
            engine: Arc::new(RwLock::new(Arc::new(engine))),
            snapshot: Arc::default(),
            snapshot_writes: Arc::default(),
            snapshot_covers: Arc::new(AtomicU64::new(covers)),
            since_checkpoint: Arc::default(),
            disk,
            options: options.clone(),
            engine_options,
            metrics,
        })
    }

    /// A read view of the applied state. Hold it briefly: appliers wait on it.
    pub fn read(&self) -> RwLockReadGuard<'_, Applied> {
        self.applied.read().expect("state machine lock poisoned")
    }

    fn write(&self) -> RwLockWriteGuard<'_, Applied> {
        self.applied.write().expect("state machine lock poisoned")
    }

    fn engine(&self) -> Arc<Engine> {
        self.engine.read().expect("engine lock poisoned").clone()
    }

    /// One past the last log index the durable checkpoint covers, shared
    /// with the log store, which must not durably purge beyond it.
    pub fn snapshot_covers(&self) -> Arc<AtomicU64> {
        self.snapshot_covers.clone()
    }

    /// The applied state now as a snapshot: its metadata and a stream that
    /// generates its bytes from the engine as they are read.
    fn snapshot_now(&self, applied: &Applied) -> std::io::Result<(Meta, SnapshotStream)> {
        let empty = std::collections::BTreeMap::new();
        let sessions = if planted(PlantedBug::SnapshotDropsDedup) {
            &empty
        } else {
            applied.kv.sessions.table()
        };
        let stream = SnapshotStream::generate(&applied.head(), sessions, applied.kv.data.clone())?;
        let snapshot_id = match applied.last_applied {
            Some(log_id) => format!("{}-{}", log_id.leader_id, log_id.index),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership.clone(),
            snapshot_id,
        };
        Ok((meta, stream))
    }

    /// The applied state as a snapshot holds it (its metadata and bytes), at
    /// the index applied now: what backups are made of.
    pub fn capture(&self) -> std::io::Result<(Meta, Vec<u8>)> {
        let (meta, stream) = self.snapshot_now(&self.read())?;
        Ok((meta, stream.read_all()?))
    }

    /// Whether enough entries went by since the last checkpoint for the
    /// next commit to be one.
    fn checkpoint_due(&self) -> bool {
        self.since_checkpoint.load(Ordering::Acquire) >= self.options.checkpoint_every_entries
    }

    /// How a checkpoint commits.
    fn checkpoint_commit() -> Commit {
        if planted(PlantedBug::CheckpointNotDurable) {
            Commit::Batched
        } else {
            Commit::Checkpoint
        }
    }

    /// Commits what the entries just applied changed, as a checkpoint if
    /// `checkpoint`.
    fn commit_applied(
        &self,
        applied: &mut Applied,
        entries: u64,
        checkpoint: bool,
    ) -> Result<(), StorageError<NodeId>> {
        let changes = applied
            .kv
            .data
            .take_changes()
            .map_err(|e| apply_error(&e))?;
        let mut batch = Batch::default();
        for shard in &changes.dropped {
            batch.drop_shard(*shard);
        }
        for ((shard, key), value) in changes.writes {
            match value {
                Some(value) => batch.put(shard, &key, value),
                None => batch.delete(shard, &key),
            }
        }
        for (client, session) in applied.kv.sessions.take_changed() {
            let encoded = session.map(|s| codec::encode(s).expect("a session encodes"));
            batch.session(client, encoded);
        }
        batch.state(codec::encode(&applied.head()).expect("a head encodes"));
        self.since_checkpoint.fetch_add(entries, Ordering::AcqRel);
        let commit = if checkpoint {
            StateMachineStore::checkpoint_commit()
        } else {
            Commit::Batched
        };
        let engine = self.engine();
        let started = tokio::time::Instant::now();
        engine.commit(&batch, commit).map_err(|e| apply_error(&e))?;
        let metrics = &self.metrics;
        metrics
            .engine_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.applied_per_commit.observe(entries as f64);
        applied
            .kv
            .data
            .set_base(Arc::new(engine.reader().map_err(|e| apply_error(&e))?));
        if checkpoint {
            self.checkpointed(applied.last_applied);
        }
        Ok(())
    }

    /// Records that a checkpoint covers the log up to `last`.
    fn checkpointed(&self, last: Option<LogId<NodeId>>) {
        self.since_checkpoint.store(0, Ordering::Release);
        self.snapshot_covers
            .fetch_max(last.map_or(0, |l| l.index + 1), Ordering::AcqRel);
    }

    /// Installs the received snapshot `stream` as a new engine and makes it
    /// the state.
    async fn install_received(
        &self,
        meta: &Meta,
        stream: &mut SnapshotStream,
    ) -> Result<u64, InstallError> {
        let len = stream.len().map_err(InstallError::Io)?;
        let mut read = |at: u64, out: &mut [u8]| stream.read_exact_at(at, out);
        let options = &self.engine_options;
        let head = install_engine(&self.disk, options, len, &mut read, Some(meta)).await?;
        debug_assert_eq!(head.last_applied, meta.last_log_id);
        let io = InstallError::Io;
        let engine = Engine::open(&self.disk, ENGINE_FILE, &self.engine_options).await?;
        if planted(PlantedBug::SnapshotInstallMerges) {
            self.merge_old_keys(&engine)?;
        }
        let applied = load(&engine, self.options.group, self.options.shard_count)?;
        self.metrics.sessions.set(applied.kv.sessions.len() as i64);
        *self.engine.write().expect("engine lock poisoned") = Arc::new(engine);
        *self.write() = applied;
        self.checkpointed(meta.last_log_id);
        self.disk.remove(RECEIVED_FILE).await.map_err(io)?;
        Ok(len)
    }

    /// The `snapshot-install-merges` bug: copies into the installed
    /// `engine` every key of the state before the install that the
    /// snapshot does not hold.
    fn merge_old_keys(&self, engine: &Engine) -> Result<(), InstallError> {
        let damaged =
            |e: crate::machine::data::DataFault| InstallError::Io(std::io::Error::other(e));
        let old = self.read().kv.data.entries().map_err(damaged)?;
        let installed = engine.reader()?;
        let mut batch = Batch::default();
        for (shard, key, value) in old {
            if installed.get(shard, &key)?.is_none() {
                batch.put(shard, &key, value);
            }
        }
        engine.commit(&batch, Commit::Checkpoint)?;
        Ok(())
    }
}

/// Installs the snapshot `len` bytes long that `read` reads as the engine
/// of the replica on `disk`, replacing any: made whole under another name,
/// then renamed into place. If `meta` is given, the snapshot's state must
/// end where it says. Returns the snapshot's head.
pub(super) async fn install_engine(
    disk: &DiskRef,
    options: &EngineOptions,
    len: u64,
    read: &mut (dyn FnMut(u64, &mut [u8]) -> std::io::Result<()> + Send),
    meta: Option<&Meta>,
) -> Result<Head, InstallError> {
    let (head, _) = snapshot::install(disk, INSTALL_FILE, options, len, read).await?;
    if let Some(meta) = meta.filter(|m| m.last_log_id != head.last_applied) {
        return Err(InstallError::Damaged(snapshot::Damage {
            offset: 0,
            reason: format!(
                "its state ends at {:?} but its metadata says {:?}",
                head.last_applied, meta.last_log_id
            ),
        }));
    }
    disk.rename(INSTALL_FILE, ENGINE_FILE)
        .await
        .map_err(InstallError::Io)?;
    disk.sync_dir("").await.map_err(InstallError::Io)?;
    Ok(head)
}

fn apply_error(e: &(impl std::error::Error + 'static)) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(e).into()
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    /// A checkpoint: the snapshot is the state it makes durable, generated
    /// from the engine when sent.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let started = tokio::time::Instant::now();
        buggify_delay(FaultSite::SnapshotBuildDelay, BUGGIFY_SNAPSHOT_DELAY_MAX).await;
        let _writing = self.snapshot_writes.lock().await;
        self.disk
            .pause()
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let (meta, stream) = {
            let applied = self.read();
            self.engine()
                .commit(&Batch::default(), StateMachineStore::checkpoint_commit())
                .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
            self.checkpointed(applied.last_applied);
            self.snapshot_now(&applied)
                .map_err(|e| StorageIOError::read_snapshot(None, &e))?
        };
        *self.snapshot.lock().expect("snapshot lock poisoned") = Some(meta.clone());
        self.metrics
            .snapshot_build_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Box::new(stream)),
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
        let checkpoint = self.checkpoint_due();
        if checkpoint {
            self.disk.pause().await.map_err(|e| apply_error(&e))?;
        }
        let mut applied = self.write();
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
                EntryPayload::Normal(ref command) => {
                    applied.apply_command(command, &self.options.sessions)
                }
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
            if let Some(digest) = state_digest(&applied) {
                let LogId { leader_id, index } = entry.log_id;
                let entry = (leader_id.term, leader_id.node_id, index);
                applied_state(self.options.group, self.options.node, entry, digest);
            }
        }
        self.commit_applied(&mut applied, results.len() as u64, checkpoint)?;
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
    ) -> Result<Box<SnapshotData>, StorageError<NodeId>> {
        let failed = |e: std::io::Error| StorageIOError::write_snapshot(None, &e);
        let file = self.disk.open_random(RECEIVED_FILE).await.map_err(failed)?;
        file.set_len(0).map_err(failed)?;
        Ok(Box::new(Box::new(SnapshotStream::in_file(file))))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError<NodeId>> {
        let Ok(mut snapshot) = (*snapshot).into_any().downcast::<SnapshotStream>() else {
            unreachable!("every snapshot is a SnapshotStream");
        };
        let started = tokio::time::Instant::now();
        buggify_delay(FaultSite::SnapshotInstallDelay, BUGGIFY_SNAPSHOT_DELAY_MAX).await;
        let _writing = self.snapshot_writes.lock().await;
        let size = self
            .install_received(meta, &mut snapshot)
            .await
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        *self.snapshot.lock().expect("snapshot lock poisoned") = Some(meta.clone());
        let metrics = &self.metrics;
        metrics
            .snapshot_install_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.snapshot_bytes.observe(size as f64);
        metrics.snapshots_installed.inc();
        reached(Situation::SnapshotInstalled);
        Ok(())
    }

    /// The state now, if a snapshot was built or installed since start.
    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        if self
            .snapshot
            .lock()
            .expect("snapshot lock poisoned")
            .is_none()
        {
            return Ok(None);
        }
        let (meta, stream) = self
            .snapshot_now(&self.read())
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Box::new(stream)),
        }))
    }
}
