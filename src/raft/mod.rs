//! Consensus glue: Shoal's openraft type configuration, the Raft settings, the
//! binary encoding of consensus messages and the gRPC transport between
//! replicas.

pub mod codec;
pub mod network;

use std::any::Any;
use std::fmt::Debug;
use std::sync::Arc;

use openraft::SnapshotPolicy;
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite};

use crate::ids::{Member, NodeId};
use crate::limits::{ENTRIES_PER_APPEND_MAX, SNAPSHOT_CHUNK_SIZE_BYTES};
use crate::machine::command::{Command, Outcome};
use crate::runtime::ShoalRuntime;

openraft::declare_raft_types!(
    /// Shoal's openraft type configuration.
    pub TypeConfig:
        D = Command,
        R = Outcome,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotData,
        AsyncRuntime = ShoalRuntime,
);

/// A snapshot's bytes as openraft moves them between replicas. Storage
/// decides how they are made and kept.
pub trait SnapshotBytes:
    AsyncRead + AsyncWrite + AsyncSeek + Debug + Send + Sync + Unpin + 'static
{
    /// The concrete type, for the storage that made it.
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

/// The snapshot data of [`TypeConfig`].
pub type SnapshotData = Box<dyn SnapshotBytes>;

/// A running Raft replica.
pub type ShoalRaft = openraft::Raft<TypeConfig>;

/// The Raft settings a node chooses; the rest are fixed (see [`config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftSettings {
    /// Name shared by all members; guards against wiring two clusters together.
    pub cluster_name: String,
    /// Snapshot the state after this many entries applied since the last one.
    pub snapshot_every_entries: u64,
    /// Entries kept in the log behind a snapshot, so that a follower a little
    /// behind catches up from the log rather than by snapshot.
    pub entries_kept_after_snapshot: u64,
}

/// openraft's configuration for a replica with `settings`.
pub fn config(settings: &RaftSettings) -> Arc<openraft::Config> {
    let config = openraft::Config {
        cluster_name: settings.cluster_name.clone(),
        snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_every_entries),
        max_in_snapshot_log_to_keep: settings.entries_kept_after_snapshot,
        // openraft also uses the heartbeat interval as the time limit of one
        // append-entries call, so it must cover sending a full batch.
        heartbeat_interval: 100,
        election_timeout_min: 500,
        election_timeout_max: 1000,
        max_payload_entries: ENTRIES_PER_APPEND_MAX,
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_SIZE_BYTES,
        ..Default::default()
    };
    Arc::new(
        config
            .validate()
            .expect("the built-in Raft settings are valid"),
    )
}
