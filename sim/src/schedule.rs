//! Fault schedules: every fault a run applied, with every choice made (which
//! replicas, which links, which shard) and the simulated time it struck.
//! The nemesis records one as it goes; a scenario that carries one
//! (`[[faults.schedule]]`) replays it instead of deciding anything.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal::ids::NodeId;
use shoal::ids::{GroupId, GroupKey};

use crate::cluster::ReplicaId;
use crate::scenario::PartitionKind;

/// One applied fault: what, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduledFault {
    /// Simulated milliseconds since the run began.
    pub at_ms: u64,
    /// The fault.
    pub fault: FaultAction,
}

/// A fault with every choice made: the replicas, the links, the shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FaultAction {
    /// Crash replicas; restart them `down_ms` later.
    Kill {
        /// The victims.
        replicas: Vec<ReplicaId>,
        /// Simulated milliseconds they stay down.
        down_ms: u64,
    },
    /// Freeze replicas; let them run again `down_ms` later.
    Pause {
        /// The victims.
        replicas: Vec<ReplicaId>,
        /// Simulated milliseconds they stay frozen.
        down_ms: u64,
    },
    /// Cut links between replicas; heal every link `duration_ms` later.
    Partition {
        /// How the split was drawn (for people; the cuts are what counts).
        shape: PartitionKind,
        /// The links cut, each one way.
        cuts: Vec<Cut>,
        /// Simulated milliseconds until it heals.
        duration_ms: u64,
    },
    /// Lose packets and slow every link; restore `duration_ms` later.
    Network {
        /// Chance that a packet is lost.
        packet_loss_rate: f64,
        /// Least one-way latency, in milliseconds.
        latency_ms_min: u64,
        /// Greatest one-way latency, in milliseconds.
        latency_ms_max: u64,
        /// Simulated milliseconds until the network is restored.
        duration_ms: u64,
    },
    /// A data group joins the sharded cluster.
    Join {
        /// The group.
        group: GroupId,
    },
    /// A data group leaves the sharded cluster.
    Leave {
        /// The group.
        group: GroupId,
    },
    /// One shard moves to a group.
    Move {
        /// The shard.
        shard: u32,
        /// Its new owner.
        group: GroupId,
    },
    /// A spare replica joins its group.
    AddReplica {
        /// The group (absent: the standalone group).
        #[serde(default, skip_serializing_if = "is_standalone")]
        group: GroupKey,
    },
    /// A member leaves its group.
    RemoveReplica {
        /// The group (absent: the standalone group).
        #[serde(default, skip_serializing_if = "is_standalone")]
        group: GroupKey,
        /// The member's node id within the group.
        node: NodeId,
    },
}

/// Links from every replica in `from` to every replica in `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cut {
    /// Senders.
    pub from: Vec<ReplicaId>,
    /// Receivers.
    pub to: Vec<ReplicaId>,
}

impl FaultAction {
    /// How long the fault lasts (zero for a change that is simply made).
    pub fn duration(&self) -> Duration {
        Duration::from_millis(match self {
            FaultAction::Kill { down_ms, .. } | FaultAction::Pause { down_ms, .. } => *down_ms,
            FaultAction::Partition { duration_ms, .. }
            | FaultAction::Network { duration_ms, .. } => *duration_ms,
            _ => 0,
        })
    }

    /// Halves how long the fault lasts.
    pub fn halve_duration(&mut self) {
        match self {
            FaultAction::Kill { down_ms, .. } | FaultAction::Pause { down_ms, .. } => *down_ms /= 2,
            FaultAction::Partition { duration_ms, .. }
            | FaultAction::Network { duration_ms, .. } => *duration_ms /= 2,
            _ => {}
        }
    }

    /// Every replica the fault names.
    pub fn replicas(&self) -> Vec<ReplicaId> {
        match self {
            FaultAction::Kill { replicas, .. } | FaultAction::Pause { replicas, .. } => {
                replicas.clone()
            }
            FaultAction::Partition { cuts, .. } => cuts
                .iter()
                .flat_map(|c| c.from.iter().chain(&c.to))
                .copied()
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// A standalone group is written by leaving its number out.
fn is_standalone(group: &GroupKey) -> bool {
    *group == GroupKey::Standalone
}
