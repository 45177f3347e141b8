//! What goes wrong in a scenario: `[faults]`, from kills triggered by the
//! workload's progress to chaos drawn from the seed and a recorded schedule.

use serde::{Deserialize, Serialize};

use crate::disk::DiskFaults;
use crate::schedule::ScheduledFault;

/// Faults. Kill events run first, in order, then chaos; disk faults are on
/// from the start until every fault is over.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Kills triggered by workload progress.
    #[serde(default)]
    pub kill: Vec<KillEvent>,
    /// Network partitions triggered by workload progress.
    #[serde(default)]
    pub partition: Vec<PartitionEvent>,
    /// Shard controller operations (sharded clusters) triggered by workload
    /// progress.
    #[serde(default)]
    pub membership: Vec<MembershipEvent>,
    /// Random kills at random times.
    pub chaos: Option<Chaos>,
    /// Simulated disk faults.
    pub disk: Option<DiskFaults>,
    /// How network faults degrade the network (chaos `network_rate`).
    pub network: Option<NetworkFault>,
    /// A recorded fault schedule (`cargo replay` writes one for every run):
    /// these faults, at these times, instead of any drawn from the seed.
    /// Excludes `kill`, `partition`, `membership` and `chaos`.
    pub schedule: Option<Vec<ScheduledFault>>,
}

/// Which replicas a kill hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KillTarget {
    /// The current leader.
    Leader,
    /// One replica that is not the leader.
    Follower,
    /// Any one replica.
    Random,
    /// A majority of the replicas at once.
    Majority,
}

/// Kill replicas once some writes are acknowledged; restart them later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillEvent {
    /// Whom to kill.
    pub target: KillTarget,
    /// In which group (0: the shard controller); a random one if absent.
    pub group: Option<u64>,
    /// Freeze the victims (pause, then resume) instead of killing them.
    #[serde(default)]
    pub pause: bool,
    /// Acknowledged writes before the kill.
    pub after_acks: u32,
    /// Simulated milliseconds the killed replicas stay down.
    pub down_ms: u64,
}

/// How a partition splits the replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionKind {
    /// The leader alone on one side (clients still reach it).
    IsolateLeader,
    /// Two random halves (the odd replica on a random side).
    Halves,
    /// The leader with a minority on one side, the majority on the other.
    MinorityLeader,
    /// A random replica can send to the others but not hear from them.
    OneWay,
    /// Two halves joined only through one bridge replica.
    Bridge,
}

impl PartitionKind {
    /// Every kind, for chaos to draw from.
    pub const ALL: [PartitionKind; 5] = [
        PartitionKind::IsolateLeader,
        PartitionKind::Halves,
        PartitionKind::MinorityLeader,
        PartitionKind::OneWay,
        PartitionKind::Bridge,
    ];
}

/// Partition the network once some operations are acknowledged; heal later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionEvent {
    /// How to split.
    pub kind: PartitionKind,
    /// Acknowledged operations before the partition.
    pub after_acks: u32,
    /// Simulated milliseconds until it heals.
    pub duration_ms: u64,
}

/// A change of the sharded cluster's membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MembershipAction {
    /// A group that has not joined joins.
    Join,
    /// A joined group leaves (never the last).
    Leave,
    /// A random shard moves to a random joined group.
    Move,
    /// A spare replica joins its group (a Raft membership change).
    #[serde(rename = "add-replica")]
    AddReplica,
    /// A random member leaves its group (never the last).
    #[serde(rename = "remove-replica")]
    RemoveReplica,
}

/// Change membership once some operations are acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipEvent {
    /// What to do.
    pub action: MembershipAction,
    /// Which group joins or leaves (random if absent).
    pub group: Option<u64>,
    /// Acknowledged operations before the change.
    pub after_acks: u32,
}

/// Kill random replicas, now and then, for a while.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chaos {
    /// Mean simulated milliseconds between kills.
    pub every_ms: u64,
    /// Simulated milliseconds a killed replica stays down.
    pub down_ms: u64,
    /// Simulated time after which chaos stops.
    pub until_ms: u64,
    /// Chance that a kill takes down a majority instead of one replica.
    #[serde(default)]
    pub majority_rate: f64,
    /// Chance that a step partitions the network (a random kind, for
    /// `down_ms`) instead of killing.
    #[serde(default)]
    pub partition_rate: f64,
    /// Chance that a step changes membership instead (sharded clusters): a
    /// group joins or leaves, a shard moves, a spare replica is added or a
    /// member removed.
    #[serde(default)]
    pub membership_rate: f64,
    /// Chance that a step pauses (freezes) replicas instead of killing them.
    #[serde(default)]
    pub pause_rate: f64,
    /// Chance that a step degrades the whole network for `down_ms` instead:
    /// packet loss and a latency spike as `[faults.network]` sets.
    #[serde(default)]
    pub network_rate: f64,
}

impl Chaos {
    /// Its probabilities, each with its key in a scenario file.
    pub fn rates_mut(&mut self) -> [(&'static str, &mut f64); 5] {
        [
            ("faults.chaos.majority_rate", &mut self.majority_rate),
            ("faults.chaos.partition_rate", &mut self.partition_rate),
            ("faults.chaos.membership_rate", &mut self.membership_rate),
            ("faults.chaos.pause_rate", &mut self.pause_rate),
            ("faults.chaos.network_rate", &mut self.network_rate),
        ]
    }
}

/// How the network degrades during a network fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkFault {
    /// Chance that a packet is lost (on open connections, delivery is
    /// retried, so loss shows as delay).
    #[serde(default)]
    pub packet_loss_rate: f64,
    /// Least one-way latency, in milliseconds.
    #[serde(default)]
    pub latency_ms_min: u64,
    /// Greatest one-way latency, in milliseconds.
    #[serde(default = "default_latency_ms_max")]
    pub latency_ms_max: u64,
}

fn default_latency_ms_max() -> u64 {
    100
}
