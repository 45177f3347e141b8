//! Who starts a replica's incarnations, and what one is: the nemesis kills
//! and restarts replicas on its schedule; the supervisor restarts a replica
//! whose process exited on its own (storage refused to open, or the node
//! stopped on a fatal error).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal::server::config::NodeConfig;
use shoal::server::node::run;
use shoal::storage::{Storage, StorageMetrics, StorageOpenError, StorageOptions};

use super::{Cluster, ReplicaId};
use crate::disk::SimDisk;

/// Pause before the supervisor starts a replica whose process exited.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// How often the supervisor looks for exited replicas.
const SUPERVISE_INTERVAL: Duration = Duration::from_millis(100);

/// Who starts a replica's incarnations: the nemesis, which kills and
/// restarts it on its schedule, or the supervisor, which restarts a process
/// that exited on its own. Each start is one incarnation; a restart the
/// supervisor scheduled is dropped if anything started or killed the
/// replica meanwhile, so that it never kills a healthy incarnation or
/// revives one the nemesis holds down.
#[derive(Debug, Default)]
pub(super) struct Life {
    /// Set while the nemesis holds the replica down.
    pub(super) held_down: bool,
    /// Bumped by every kill and start: a scheduled restart carries the
    /// value it saw and fires only if it is unchanged.
    generation: u64,
    /// A supervisor restart is scheduled.
    restart_pending: bool,
}

/// One incarnation of a replica, from its start after a crash to its stop:
/// the disk loses what was not synced, storage recovers (a refusal to open
/// ends the incarnation, and the supervisor starts the next), and the node
/// runs until killed or stopped by a fatal error.
pub(super) async fn incarnation(
    config: NodeConfig,
    options: StorageOptions,
    disk: SimDisk,
    metrics: Arc<StorageMetrics>,
    slot: Arc<Mutex<Option<Storage>>>,
    corruption: Arc<Mutex<Vec<String>>>,
) {
    let id = config.id;
    // Whatever this replica had not synced died with its previous
    // incarnation.
    disk.crash();
    let opened = Storage::open(Arc::new(disk.clone()), &options, metrics.clone()).await;
    let storage = match opened {
        Ok(storage) => storage,
        Err(e) => {
            tracing::warn!(id, error = %e, "storage refused to open");
            if is_corruption(&e) {
                corruption
                    .lock()
                    .expect("corruption lock")
                    .push(e.to_string());
            }
            return; // the node exits; the supervisor restarts it
        }
    };
    *slot.lock().expect("storage slot") = Some(storage.clone());
    if let Err(e) = run(config, storage, shoal::runtime::shutdown_signal()).await {
        tracing::warn!(id, error = %e, "replica stopped");
    }
}

impl Cluster {
    /// Crashes replica `id`: its disk first (so nothing it does on its way
    /// out, such as closing its engine, reaches it), then its tasks.
    pub fn kill(&self, id: ReplicaId) {
        tracing::info!(id, "nemesis: kill");
        let replica = &self.replicas[&id];
        {
            let mut life = replica.life.lock().expect("life lock");
            life.held_down = true;
            life.generation += 1;
        }
        replica.disk.crash();
        self.handle.kill(replica.node.id());
    }

    /// Starts a killed replica again on the storage it left behind.
    pub fn restart(&self, id: ReplicaId) {
        tracing::info!(id, "nemesis: restart");
        let replica = &self.replicas[&id];
        let mut life = replica.life.lock().expect("life lock");
        assert!(life.held_down, "the nemesis restarts only what it killed");
        life.held_down = false;
        life.generation += 1;
        self.handle.restart(replica.node.id());
    }

    /// Ends replica `id`'s process as a fatal error would, without the
    /// nemesis holding it down: the supervisor restarts it.
    pub fn exit(&self, id: ReplicaId) {
        tracing::info!(id, "process exits");
        self.handle.kill(self.replicas[&id].node.id());
    }

    /// How many incarnations of replica `id` have started.
    pub fn incarnations(&self, id: ReplicaId) -> u64 {
        self.replicas[&id].incarnations.load(Ordering::Relaxed)
    }

    /// Freezes replica `id`: its tasks stop running until [`Cluster::resume`].
    pub fn pause(&self, id: ReplicaId) {
        tracing::info!(id, "nemesis: pause");
        self.handle.pause(self.replicas[&id].node.id());
    }

    /// Lets a paused replica run again.
    pub fn resume(&self, id: ReplicaId) {
        tracing::info!(id, "nemesis: resume");
        self.handle.resume(self.replicas[&id].node.id());
    }

    /// Restarts replicas whose process exited on its own, after a pause,
    /// for as long as the simulation runs.
    pub(super) fn supervise(&self) {
        let handle = self.handle.clone();
        let nodes: Vec<(ReplicaId, madsim::task::NodeId, Arc<Mutex<Life>>)> = self
            .replicas
            .iter()
            .map(|(id, r)| (*id, r.node.id(), r.life.clone()))
            .collect();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SUPERVISE_INTERVAL).await;
                for (id, node, life) in &nodes {
                    let generation = {
                        let mut life = life.lock().expect("life lock");
                        if life.held_down || life.restart_pending || !handle.is_exit(*node) {
                            continue;
                        }
                        life.restart_pending = true;
                        life.generation
                    };
                    tracing::info!(id, "supervisor: replica exited; restarting");
                    let (handle, node, life) = (handle.clone(), *node, life.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(RESTART_PAUSE).await;
                        let mut life = life.lock().expect("life lock");
                        life.restart_pending = false;
                        if life.generation != generation {
                            // The nemesis killed or restarted it meanwhile.
                            return;
                        }
                        life.generation += 1;
                        // A process that exits releases its sockets: kill
                        // resets the node's network state, restart runs it.
                        handle.kill(node);
                        handle.restart(node);
                    });
                }
            }
        });
    }
}

fn is_corruption(error: &StorageOpenError) -> bool {
    use shoal::storage::engine::EngineError;
    use shoal::storage::wal::WalError;
    match error {
        StorageOpenError::Wal(WalError::Corrupt { .. } | WalError::Unstable { .. }) => true,
        StorageOpenError::LogGap { .. } => true,
        StorageOpenError::Engine(EngineError::Damaged { .. } | EngineError::Format { .. }) => true,
        StorageOpenError::Engine(EngineError::Engine { source, .. }) => {
            matches!(**source, redb::Error::Corrupted(_))
        }
        _ => false,
    }
}
