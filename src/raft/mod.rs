//! Consensus glue: Shoal's openraft type configuration, the Raft settings, the
//! binary encoding of consensus messages and the gRPC transport between
//! replicas.

pub mod codec;
pub mod network;

use std::io::Cursor;
use std::sync::Arc;

use openraft::{BasicNode, SnapshotPolicy};

use crate::runtime::ShoalRuntime;
use crate::server::node::NodeConfig;
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

/// Most log entries sent in one append-entries message. The largest entry is
/// a compare-and-swap carrying two values of [`crate::error::VALUE_SIZE_MAX`]
/// plus a key, so a message stays under about 8.3 MiB, half of
/// [`RAFT_MESSAGE_SIZE_MAX`].
pub const ENTRIES_PER_APPEND_MAX: u64 = 32;

/// Largest encoded consensus message accepted over gRPC.
pub const RAFT_MESSAGE_SIZE_MAX: usize = 16 * 1024 * 1024;

/// Snapshot chunk size for install-snapshot transfers.
pub const SNAPSHOT_CHUNK_SIZE_BYTES: u64 = 1024 * 1024;

/// The Raft settings of a node.
pub fn config(node: &NodeConfig) -> Arc<openraft::Config> {
    let config = openraft::Config {
        cluster_name: node.cluster_name.clone(),
        snapshot_policy: SnapshotPolicy::LogsSinceLast(node.snapshot_every_entries),
        max_in_snapshot_log_to_keep: node.entries_kept_after_snapshot,
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
