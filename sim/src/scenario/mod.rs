//! Scenario files: a named situation in TOML (topology, workload, faults).
//! The seed decides everything random within it.

use std::path::{Path, PathBuf};

mod buggify;
mod faults;
pub mod limits;
mod validate;
mod workload;

use serde::{Deserialize, Serialize};

pub use self::buggify::BuggifySpec;
pub use self::faults::{
    Chaos, FaultSpec, KillEvent, KillTarget, MembershipAction, MembershipEvent, NetworkFault,
    PartitionEvent, PartitionKind,
};
pub use self::workload::{ClientRouting, Mix, WorkloadKind, WorkloadSpec};
use crate::check::Checker;
use crate::disk::DiskFaults;
use crate::schedule::ScheduledFault;

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
    /// Fault sites inside the nodes (none unless the scenario asks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buggify: Option<BuggifySpec>,
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
    /// Override of the node setting of the same name (small values make
    /// the engine checkpoint often).
    pub checkpoint_every_entries: Option<u64>,
    /// Override of the node setting of the same name (small values make
    /// sessions get evicted).
    pub max_sessions: Option<usize>,
    /// Override of the node setting of the same name.
    pub session_idle_timeout_ms: Option<u64>,
}

fn default_shard_count() -> u32 {
    16
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
    /// Rare situations (by name: see `shoal::runtime::Situation`) that a
    /// sweep of the scenario must reach in at least one seed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must_reach: Vec<String>,
}

impl CheckSpec {
    /// Whether a violation found by `checker` counts: the scenario chose
    /// the checker, or it is the snapshot install the scenario demands.
    pub fn counts(&self, checker: Checker) -> bool {
        checker == Checker::SnapshotInstall || self.run.contains(&checker)
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
            must_reach: Vec::new(),
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
    /// The scenario a seed runs: itself with the fault sites it enables
    /// written out, and in swarm mode, with knobs drawn from the seed.
    /// Returns lines describing what was drawn (if anything).
    pub fn for_seed(&self, seed: u64) -> (Scenario, Option<String>) {
        let mut s = self.clone();
        s.buggify = self.buggify.as_ref().map(|b| b.for_seed(&self.name, seed));
        let buggify = s.buggify.as_ref().map(BuggifySpec::describe);
        if !self.swarm {
            return (s, buggify);
        }
        let (s, knobs) = s.swarm_knobs(seed);
        (
            s,
            Some(knobs + &buggify.map_or(String::new(), |b| format!("\n{b}"))),
        )
    }

    /// This scenario with the swarm's knobs drawn for `seed`, and the line
    /// describing them.
    fn swarm_knobs(mut self, seed: u64) -> (Scenario, String) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5357_4152_4d00_0000);
        let s = &mut self;
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
        if !s.workload.swarm_kinds.is_empty() {
            let kinds = std::mem::take(&mut s.workload.swarm_kinds);
            s.workload.kind = kinds[rng.gen_range(0..kinds.len())];
        }
        if s.workload.kind == WorkloadKind::WriteOnce {
            s.workload.keys = s.workload.keys.max(s.workload.clients);
        }
        let knobs = format!(
            "swarm knobs: workload={:?} clients={} chaos={:?} disk={:?}",
            s.workload.kind, s.workload.clients, s.faults.chaos, s.faults.disk
        );
        (self, knobs)
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
        validate::validate(&scenario).map_err(|(key, reason)| ScenarioError::Invalid {
            path: path.to_path_buf(),
            key,
            reason,
        })?;
        Ok(scenario)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal::ids::GroupKey;

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
    fn limits_are_accepted_and_refused_one_past() {
        use limits::*;
        let at = |replicas: u64, spares: u64, groups: u32, clients: u32| {
            GOOD.replace(
                "replicas = 3",
                &format!("replicas = {replicas}\nspare_replicas = {spares}\ngroups = {groups}"),
            )
            .replace("clients = 2", &format!("clients = {clients}"))
            .replace("keys = 10", "keys = 100")
        };
        let max = at(
            REPLICAS_PER_GROUP_MAX,
            SPARE_REPLICAS_PER_GROUP_MAX,
            GROUPS_MAX,
            CLIENTS_MAX,
        );
        Scenario::parse(Path::new("s.toml"), &max).unwrap();
        let past = [
            (at(REPLICAS_PER_GROUP_MAX + 1, 0, 0, 1), "cluster.replicas"),
            (
                at(1, SPARE_REPLICAS_PER_GROUP_MAX + 1, 0, 1),
                "cluster.spare_replicas",
            ),
            (at(1, 0, GROUPS_MAX + 1, 1), "cluster.groups"),
            (at(1, 0, 0, CLIENTS_MAX + 1), "workload.clients"),
        ];
        for (text, key) in past {
            let error = error(&text);
            assert!(error.contains(key), "{error}");
        }
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
    fn every_situation_is_required_by_a_shipped_scenario() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut required = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                required.extend(Scenario::load(&path).unwrap().checks.must_reach);
            }
        }
        for situation in shoal::runtime::Situation::ALL {
            assert!(
                required.contains(situation.name()),
                "no scenario must reach {}",
                situation.name()
            );
        }
    }

    #[test]
    fn a_recorded_schedule_round_trips_and_is_checked() {
        use crate::schedule::{Cut, FaultAction};
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
                    group: GroupKey::Standalone,
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
