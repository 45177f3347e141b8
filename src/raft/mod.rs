//! Consensus glue: Shoal's openraft type configuration, the Raft settings, the
//! binary encoding of consensus messages and the gRPC transport between
//! replicas.

pub mod codec;
pub mod network;

use std::io::Cursor;
use std::sync::Arc;

use openraft::BasicNode;

use crate::runtime::ShoalRuntime;
use crate::storage::kv::{Command, CommandResult};

/// A replica's id, unique within its group.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Shoal's openraft type configuration.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = ShoalRuntime,
);

/// A running Raft replica.
pub type ShoalRaft = openraft::Raft<TypeConfig>;

/// Most log entries sent in one append-entries message. With values capped at
/// [`crate::error::VALUE_SIZE_MAX`] this bounds a message to about 8.5 MiB,
/// under [`RAFT_MESSAGE_SIZE_MAX`].
pub const ENTRIES_PER_APPEND_MAX: u64 = 64;

/// Largest encoded consensus message accepted over gRPC.
pub const RAFT_MESSAGE_SIZE_MAX: usize = 16 * 1024 * 1024;

/// Snapshot chunk size for install-snapshot transfers.
pub const SNAPSHOT_CHUNK_SIZE_BYTES: u64 = 1024 * 1024;

/// The Raft settings every group uses.
pub fn config(cluster_name: &str) -> Arc<openraft::Config> {
    let config = openraft::Config {
        cluster_name: cluster_name.to_string(),
        heartbeat_interval: 50,
        election_timeout_min: 300,
        election_timeout_max: 600,
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
