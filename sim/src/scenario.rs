//! Scenario files: a named situation in TOML (topology, workload, faults).
//! The seed decides everything random within it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A parsed, validated scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Simulated seconds the run may take before it counts as stuck.
    #[serde(default = "default_time_limit_s")]
    pub time_limit_s: u64,
}

fn default_time_limit_s() -> u64 {
    120
}

/// Topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Replicas in the group (1..=9).
    pub replicas: u64,
}

/// The write-once workload: `clients` clients write `keys` distinct keys
/// between them, each once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Concurrent clients (1..=64).
    pub clients: u32,
    /// Distinct keys written in all (at least one per client).
    pub keys: u32,
    /// Size of each value in bytes.
    #[serde(default = "default_value_size_bytes")]
    pub value_size_bytes: usize,
}

fn default_value_size_bytes() -> usize {
    64
}

/// Faults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Kill the leader in the middle of the traffic, then restart it.
    pub leader_kill: Option<LeaderKill>,
}

/// Kill the leader once some writes are acknowledged; restart it later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderKill {
    /// Acknowledged writes before the kill.
    pub after_acks: u32,
    /// Simulated milliseconds the killed leader stays down.
    pub down_ms: u64,
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
        if workload.keys < workload.clients {
            return Err(invalid(
                "workload.keys",
                format!("must be at least workload.clients ({})", workload.clients),
            ));
        }
        if workload.value_size_bytes > shoal::error::VALUE_SIZE_MAX {
            return Err(invalid(
                "workload.value_size_bytes",
                format!("must be at most {}", shoal::error::VALUE_SIZE_MAX),
            ));
        }
        if let Some(kill) = &scenario.faults.leader_kill {
            if kill.after_acks >= workload.keys {
                return Err(invalid(
                    "faults.leader_kill.after_acks",
                    format!("must be below workload.keys ({})", workload.keys),
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
        assert_eq!(scenario.faults.leader_kill, None);
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
}
