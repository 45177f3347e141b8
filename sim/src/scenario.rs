//! Scenario files: a named situation in TOML (topology, workload, faults).
//! The seed decides everything random within it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::disk::DiskFaults;
use crate::nemesis::ScheduledFault;

/// A parsed, validated scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, shown in reports.
    pub name: String,
    /// What situation this scenario recreates.
    #[serde(default)]
    pub description: String,
    /// The group under test.
    pub cluster: ClusterSpec,
    /// What the clients do.
    pub workload: WorkloadSpec,
    /// What goes wrong.
    #[serde(default)]
    pub faults: FaultSpec,
    /// What must hold.
    #[serde(default)]
    pub checks: CheckSpec,
    /// Simulated seconds the run may take before it counts as stuck.
    #[serde(default = "default_time_limit_s")]
    pub time_limit_s: u64,
    /// Swarm mode: each seed also draws the knobs, each within the range the
    /// scenario allows (a rate between 0 and its value, an interval between
    /// half and twice its value, clients between 1 and their number), so
    /// that a sweep explores many configurations.
    #[serde(default)]
    pub swarm: bool,
}

fn default_time_limit_s() -> u64 {
    120
}

/// Topology and the replicas' settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Replicas per group (1..=9).
    pub replicas: u64,
    /// Replicas per group started to join, not yet members (membership
    /// faults add them).
    #[serde(default)]
    pub spare_replicas: u64,
    /// Data groups joined at the start; 0 for one standalone group without
    /// a shard controller.
    #[serde(default)]
    pub groups: u32,
    /// Data groups started but not joined (membership faults join them).
    #[serde(default)]
    pub standby_groups: u32,
    /// Shards of a sharded cluster.
    #[serde(default = "default_shard_count")]
    pub shard_count: u32,
    /// Override of the node setting of the same name.
    pub snapshot_every_entries: Option<u64>,
    /// Override of the node setting of the same name.
    pub entries_kept_after_snapshot: Option<u64>,
    /// Write-ahead log segment size (small values exercise rotation).
    pub wal_segment_size_max: Option<u64>,
}

/// What the clients do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Which workload.
    #[serde(default)]
    pub kind: WorkloadKind,
    /// Concurrent clients (1..=64).
    pub clients: u32,
    /// write-once: distinct keys written in all (at least one per client);
    /// register and list-append: the number of hot keys (at most 1,000);
    /// throughput: the size of the key space (at most 10,000,000).
    pub keys: u32,
    /// Size of each value in bytes (write-once, throughput).
    #[serde(default = "default_value_size_bytes")]
    pub value_size_bytes: usize,
    /// Operations per client (register, list-append, throughput).
    pub ops_per_client: Option<u32>,
    /// Simulated milliseconds after which clients start no more operations.
    /// Register, list-append and throughput workloads need this or
    /// `ops_per_client`, or both (whichever runs out first).
    pub duration_ms: Option<u64>,
    /// Operation weights (register, throughput).
    pub mix: Option<Mix>,
    /// Throughput: how strongly operations favour low-numbered keys, from 0
    /// (uniform) up to, not including, 1.
    #[serde(default)]
    pub skew: f64,
}

/// The workloads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// Each key written once; checked for durability.
    #[default]
    WriteOnce,
    /// Reads, writes, CAS and deletes racing on hot keys; checked for
    /// linearizability.
    Register,
    /// Appends to lists on hot keys by read and compare-and-swap; checked
    /// for linearizability and for the list invariants.
    ListAppend,
    /// The register's operations over a large, optionally skewed key space
    /// with sized values and short scans; checked for linearizability.
    Throughput,
}

/// Relative weights of register operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    /// Reads.
    #[serde(default)]
    pub get: u32,
    /// Writes.
    #[serde(default)]
    pub put: u32,
    /// Compare-and-swaps.
    #[serde(default)]
    pub cas: u32,
    /// Deletes.
    #[serde(default)]
    pub delete: u32,
    /// Scans (of every hot key for the register workload, of ten keys for
    /// the throughput workload).
    #[serde(default)]
    pub scan: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            get: 50,
            put: 25,
            cas: 20,
            delete: 5,
            scan: 0,
        }
    }
}

impl WorkloadSpec {
    /// Operations the workload performs in all, if that is bounded by a
    /// count rather than only by time.
    pub fn total_ops(&self) -> Option<u32> {
        match self.kind {
            WorkloadKind::WriteOnce => Some(self.keys),
            _ => self.ops_per_client.map(|n| self.clients * n),
        }
    }
}

fn default_shard_count() -> u32 {
    16
}

fn default_value_size_bytes() -> usize {
    64
}

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

/// What the run must show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// The checkers that run (all of them unless the scenario says).
    #[serde(default = "Checker::all")]
    pub run: Vec<Checker>,
    /// Every workload write must be acknowledged (no client gives up).
    #[serde(default)]
    pub all_writes_succeed: bool,
    /// Some replica must have installed a snapshot sent by a leader.
    #[serde(default)]
    pub snapshot_installed: bool,
    /// Writes made after every fault is over, all of which must succeed.
    #[serde(default = "default_liveness_writes")]
    pub liveness_writes: u32,
    /// Simulated milliseconds after the last fault ends within which every
    /// client still at work must have an operation acknowledged.
    #[serde(default = "default_recover_within_ms")]
    pub recover_within_ms: u64,
}

/// The checkers, each guarding one property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Checker {
    /// Every key's history has a valid order (register-style workloads).
    Linearizability,
    /// Every acknowledged write is there at the end.
    Durability,
    /// The replicas of each group end identical.
    Convergence,
    /// The cluster and every client make progress once faults are over.
    Progress,
    /// No shard is ever served by two groups; moves finish and clean up.
    ShardSafety,
    /// The list-append workload's lists hold what was appended, in order.
    ListAppend,
    /// No replica finds damage the simulated disk never causes.
    Recovery,
}

impl Checker {
    /// Every checker.
    pub fn all() -> Vec<Checker> {
        vec![
            Checker::Linearizability,
            Checker::Durability,
            Checker::Convergence,
            Checker::Progress,
            Checker::ShardSafety,
            Checker::ListAppend,
            Checker::Recovery,
        ]
    }

    /// The name its violations carry.
    pub fn name(self) -> &'static str {
        match self {
            Checker::Linearizability => "linearizability",
            Checker::Durability => "durability",
            Checker::Convergence => "convergence",
            Checker::Progress => "progress",
            Checker::ShardSafety => "shard-safety",
            Checker::ListAppend => "list-append",
            Checker::Recovery => "recovery",
        }
    }
}

impl Default for CheckSpec {
    fn default() -> Self {
        CheckSpec {
            run: Checker::all(),
            all_writes_succeed: false,
            snapshot_installed: false,
            liveness_writes: default_liveness_writes(),
            recover_within_ms: default_recover_within_ms(),
        }
    }
}

fn default_liveness_writes() -> u32 {
    20
}

fn default_recover_within_ms() -> u64 {
    10_000
}

/// A scenario file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid scenario (syntax, unknown key, wrong type).
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error, which names the key and the reason.
        source: toml::de::Error,
    },
    /// A value is out of its allowed range.
    #[error("{path}: `{key}` {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The offending key.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl Scenario {
    /// The scenario a seed runs: itself, or in swarm mode, with knobs drawn
    /// from the seed. Returns a line describing the drawn knobs (if any).
    pub fn for_seed(&self, seed: u64) -> (Scenario, Option<String>) {
        if !self.swarm {
            return (self.clone(), None);
        }
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5357_4152_4d00_0000);
        let mut s = self.clone();
        let chaos_rates = s.faults.chaos.as_mut().map(Chaos::rates_mut);
        let disk_rates = s.faults.disk.as_mut().map(DiskFaults::rates_mut);
        for (_, r) in chaos_rates.into_iter().chain(disk_rates).flatten() {
            *r = rng.gen_range(0.0..=*r);
        }
        if let Some(chaos) = &mut s.faults.chaos {
            chaos.every_ms = rng
                .gen_range(chaos.every_ms / 2..=chaos.every_ms * 2)
                .max(1);
            chaos.down_ms = rng.gen_range(chaos.down_ms / 2..=chaos.down_ms * 2);
        }
        s.workload.clients = rng.gen_range(1..=s.workload.clients);
        if s.workload.kind == WorkloadKind::WriteOnce {
            s.workload.keys = s.workload.keys.max(s.workload.clients);
        }
        let knobs = format!(
            "swarm knobs: clients={} chaos={:?} disk={:?}",
            s.workload.clients, s.faults.chaos, s.faults.disk
        );
        (s, Some(knobs))
    }

    /// This scenario as one run of it ran: with the swarm's knobs as drawn
    /// (see [`Scenario::for_seed`]) and `schedule` in place of the faults it
    /// would draw. Running it with the same seed replays those faults.
    pub fn with_schedule(&self, schedule: Vec<ScheduledFault>) -> Scenario {
        let mut s = self.clone();
        s.swarm = false;
        s.faults.kill.clear();
        s.faults.partition.clear();
        s.faults.membership.clear();
        s.faults.chaos = None;
        s.faults.network = None;
        s.faults.schedule = Some(schedule);
        s
    }

    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Scenario::parse(path, &text)
    }

    /// Parses and validates scenario text; `path` is for messages.
    pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = toml::from_str(text).map_err(|source| ScenarioError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |key, reason: String| ScenarioError::Invalid {
            path: path.to_path_buf(),
            key,
            reason,
        };
        if !(1..=9).contains(&scenario.cluster.replicas) {
            return Err(invalid(
                "cluster.replicas",
                "must be between 1 and 9".into(),
            ));
        }
        let workload = &scenario.workload;
        if !(1..=64).contains(&workload.clients) {
            return Err(invalid(
                "workload.clients",
                "must be between 1 and 64".into(),
            ));
        }
        match workload.kind {
            WorkloadKind::WriteOnce if workload.keys < workload.clients => {
                return Err(invalid(
                    "workload.keys",
                    format!("must be at least workload.clients ({})", workload.clients),
                ));
            }
            WorkloadKind::WriteOnce => {}
            _ if workload.ops_per_client.is_none() && workload.duration_ms.is_none() => {
                return Err(invalid(
                    "workload.ops_per_client",
                    "or workload.duration_ms must be set for this workload".into(),
                ));
            }
            WorkloadKind::Register | WorkloadKind::ListAppend
                if !(1..=1_000).contains(&workload.keys) =>
            {
                return Err(invalid(
                    "workload.keys",
                    "must be between 1 and 1000 for this workload".into(),
                ));
            }
            WorkloadKind::Throughput if !(1..=10_000_000).contains(&workload.keys) => {
                return Err(invalid(
                    "workload.keys",
                    "must be between 1 and 10000000 for this workload".into(),
                ));
            }
            _ => {}
        }
        if workload.ops_per_client == Some(0) {
            return Err(invalid(
                "workload.ops_per_client",
                "must be positive".into(),
            ));
        }
        if workload.duration_ms == Some(0) {
            return Err(invalid("workload.duration_ms", "must be positive".into()));
        }
        if !(0.0..1.0).contains(&workload.skew) {
            return Err(invalid(
                "workload.skew",
                "must be at least 0 and below 1".into(),
            ));
        }
        if let Some(mix) = &workload.mix {
            if mix.get + mix.put + mix.cas + mix.delete + mix.scan == 0 {
                return Err(invalid("workload.mix", "needs a positive weight".into()));
            }
        }
        if workload.value_size_bytes > shoal::limits::VALUE_SIZE_MAX {
            return Err(invalid(
                "workload.value_size_bytes",
                format!("must be at most {}", shoal::limits::VALUE_SIZE_MAX),
            ));
        }
        let triggers = scenario.faults.kill.iter().map(|k| k.after_acks);
        let triggers = triggers.chain(scenario.faults.partition.iter().map(|p| p.after_acks));
        let triggers = triggers.chain(scenario.faults.membership.iter().map(|m| m.after_acks));
        if let Some(total) = workload.total_ops() {
            for after_acks in triggers {
                if after_acks >= total {
                    return Err(invalid(
                        "faults.*.after_acks",
                        format!("must be below the workload's operations ({total})"),
                    ));
                }
            }
        }
        if let Some(schedule) = &scenario.faults.schedule {
            let faults = &scenario.faults;
            if !faults.kill.is_empty()
                || !faults.partition.is_empty()
                || !faults.membership.is_empty()
                || faults.chaos.is_some()
            {
                return Err(invalid(
                    "faults.schedule",
                    "replaces kill, partition, membership and chaos: remove those".into(),
                ));
            }
            let known = scenario.cluster.replica_ids();
            for event in schedule {
                if let Some(id) = event
                    .fault
                    .replicas()
                    .into_iter()
                    .find(|id| !known.contains(id))
                {
                    return Err(invalid(
                        "faults.schedule",
                        format!(
                            "names replica {id} at {} ms, which this cluster does not have (it has {known:?})",
                            event.at_ms
                        ),
                    ));
                }
            }
            if schedule.windows(2).any(|w| w[0].at_ms > w[1].at_ms) {
                return Err(invalid(
                    "faults.schedule",
                    "must be in time order (at_ms)".into(),
                ));
            }
        }
        if let Some(chaos) = &scenario.faults.chaos {
            if chaos.every_ms == 0 {
                return Err(invalid("faults.chaos.every_ms", "must be positive".into()));
            }
        }
        let (mut chaos, mut disk) = (scenario.faults.chaos.clone(), scenario.faults.disk.clone());
        let chaos_rates = chaos.as_mut().map(Chaos::rates_mut);
        let disk_rates = disk.as_mut().map(DiskFaults::rates_mut);
        for (key, rate) in chaos_rates.into_iter().chain(disk_rates).flatten() {
            if !(0.0..=1.0).contains(rate) {
                return Err(invalid(key, "must be between 0 and 1".into()));
            }
        }
        if let Some(network) = &scenario.faults.network {
            if !(0.0..1.0).contains(&network.packet_loss_rate) {
                return Err(invalid(
                    "faults.network.packet_loss_rate",
                    "must be at least 0 and below 1".into(),
                ));
            }
            if network.latency_ms_min > network.latency_ms_max {
                return Err(invalid(
                    "faults.network.latency_ms_min",
                    "must not exceed latency_ms_max".into(),
                ));
            }
        }
        if scenario.time_limit_s == 0 {
            return Err(invalid("time_limit_s", "must be positive".into()));
        }
        Ok(scenario)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        Scenario::parse(Path::new("s.toml"), text)
            .unwrap_err()
            .to_string()
    }

    const GOOD: &str = r#"
        name = "t"
        [cluster]
        replicas = 3
        [workload]
        clients = 2
        keys = 10
    "#;

    #[test]
    fn good_file_parses() {
        let scenario = Scenario::parse(Path::new("s.toml"), GOOD).unwrap();
        assert_eq!(scenario.workload.value_size_bytes, 64);
        assert_eq!(scenario.faults, FaultSpec::default());
        assert_eq!(scenario.checks, CheckSpec::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let unknown = error(&GOOD.replace("keys = 10", "keys = 10\nkeyz = 3"));
        assert!(
            unknown.contains("s.toml") && unknown.contains("keyz"),
            "{unknown}"
        );
        let range = error(&GOOD.replace("replicas = 3", "replicas = 0"));
        assert!(range.contains("cluster.replicas"), "{range}");
        let typed = error(&GOOD.replace("clients = 2", "clients = \"two\""));
        assert!(typed.contains("clients"), "{typed}");
        let rate = error(&format!("{GOOD}\n[faults.disk]\nsync_eio_rate = 1.5"));
        assert!(rate.contains("faults.disk.sync_eio_rate"), "{rate}");
        let chaos = error(&format!(
            "{GOOD}\n[faults.chaos]\nevery_ms = 5\ndown_ms = 5\nuntil_ms = 9\npartition_rate = 1.5"
        ));
        assert!(chaos.contains("faults.chaos.partition_rate"), "{chaos}");
        let target = error(&format!(
            "{GOOD}\n[[faults.kill]]\ntarget = \"everyone\"\nafter_acks = 1\ndown_ms = 5"
        ));
        assert!(target.contains("everyone"), "{target}");
        let checker = error(&format!(
            "{GOOD}\n[checks]\nrun = [\"linearizability\", \"vibes\"]"
        ));
        assert!(
            checker.contains("vibes") && checker.contains("shard-safety"),
            "{checker}"
        );
    }

    #[test]
    fn every_shipped_scenario_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut count = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Scenario::load(&path).unwrap();
                count += 1;
            }
        }
        assert!(count > 0, "no scenarios found");
    }

    #[test]
    fn a_recorded_schedule_round_trips_and_is_checked() {
        use crate::nemesis::{Cut, FaultAction};
        let scenario = Scenario::parse(Path::new("s.toml"), GOOD).unwrap();
        let schedule = vec![
            ScheduledFault {
                at_ms: 1_200,
                fault: FaultAction::Kill {
                    replicas: vec![1, 3],
                    down_ms: 500,
                },
            },
            ScheduledFault {
                at_ms: 2_000,
                fault: FaultAction::Partition {
                    shape: PartitionKind::OneWay,
                    cuts: vec![Cut {
                        from: vec![2, 3],
                        to: vec![1],
                    }],
                    duration_ms: 300,
                },
            },
            ScheduledFault {
                at_ms: 2_500,
                fault: FaultAction::RemoveReplica {
                    group: None,
                    node: 2,
                },
            },
        ];
        let recorded = scenario.with_schedule(schedule);
        let text = toml::to_string(&recorded).unwrap();
        assert_eq!(
            Scenario::parse(Path::new("r.toml"), &text).unwrap(),
            recorded
        );

        let stranger = text.replace("replicas = [1, 3]", "replicas = [1, 7]");
        let error = Scenario::parse(Path::new("r.toml"), &stranger)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("faults.schedule") && error.contains("replica 7"),
            "{error}"
        );
        let unknown = text.replace("down_ms = 500", "down_ms = 500\nsevere = true");
        let error = Scenario::parse(Path::new("r.toml"), &unknown)
            .unwrap_err()
            .to_string();
        assert!(error.contains("severe"), "{error}");
        let mixed = format!("{text}\n[faults.chaos]\nevery_ms = 5\ndown_ms = 5\nuntil_ms = 9");
        let error = Scenario::parse(Path::new("r.toml"), &mixed)
            .unwrap_err()
            .to_string();
        assert!(error.contains("replaces kill"), "{error}");
    }
}
