//! Where a cluster's replicas live: their numbers, their addresses, and the
//! groups and replicas of a cluster's shape.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use shoal::ids::{GroupKey, NodeId};
use shoal::server::config::NodeConfig;

use super::PORT;
use crate::scenario::ClusterSpec;

/// A replica's number in the cluster, unique across groups, as scenario and
/// schedule files name it: its [`shoal::ids::ReplicaId`] packed as the node
/// id for a standalone group and `100 * (group + 1) + node id` in a sharded
/// cluster (so the controller's replicas are 101, 102, ... and group 1's
/// 201, ...).
pub type ReplicaId = u64;

/// The address of replica `id` of `group`.
pub(super) fn replica_addr(group: GroupKey, id: NodeId) -> SocketAddr {
    let id = u8::try_from(id).expect("at most 254 replicas per group");
    let net = group
        .number()
        .map_or(0, |g| u8::try_from(g + 1).expect("at most 254 groups"));
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, net, 0, id)), PORT)
}

/// Where replica `id` of `group` serves its peers: apart from its clients,
/// as a deployment with separate peer and client addresses does.
pub(super) fn peer_addr(group: GroupKey, id: NodeId) -> SocketAddr {
    let addr = replica_addr(group, id);
    SocketAddr::new(addr.ip(), PORT + 1)
}

pub(super) fn replica_id(group: GroupKey, id: NodeId) -> ReplicaId {
    group.number().map_or(id, |g| 100 * (g + 1) + id)
}

impl ClusterSpec {
    /// Sets the node settings this shape chooses on `config`.
    pub(super) fn tune(&self, config: &mut NodeConfig) {
        if let Some(every) = self.snapshot_every_entries {
            config.snapshot_every_entries = every;
        }
        if let Some(kept) = self.entries_kept_after_snapshot {
            config.entries_kept_after_snapshot = kept;
        }
        if let Some(size) = self.wal_segment_size_max {
            config.wal_segment_size_max = size;
        }
        if let Some(every) = self.checkpoint_every_entries {
            config.checkpoint_every_entries = every;
        }
        if let Some(max) = self.max_sessions {
            config.max_sessions = max;
        }
        if let Some(idle) = self.session_idle_timeout_ms {
            config.session_idle_timeout_ms = idle;
        }
    }

    /// The groups a cluster of this shape has: the standalone group, or the
    /// controller and every data group.
    pub fn group_ids(&self) -> Vec<GroupKey> {
        if self.groups == 0 {
            vec![GroupKey::Standalone]
        } else {
            (0..=u64::from(self.groups + self.standby_groups))
                .map(GroupKey::from_number)
                .collect()
        }
    }

    /// Every replica a cluster of this shape has, spares included.
    pub fn replica_ids(&self) -> std::collections::BTreeSet<ReplicaId> {
        self.group_ids()
            .into_iter()
            .flat_map(|g| {
                (1..=self.replicas + self.spare_replicas).map(move |id| replica_id(g, id))
            })
            .collect()
    }
}
