//! Checkers: each guards one property and reports a [`Violation`] naming it
//! by its [`Checker`].

pub mod contract;
pub mod convergence;
pub mod durability;
pub mod linearizability;
pub mod list_append;
pub mod progress;
pub mod sessions;
pub mod shard_safety;

use serde::{Deserialize, Serialize};

/// The checkers, each guarding one property. A scenario chooses which run
/// (`[checks] run`, by these names).
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
    /// Every answer keeps the API's contract (scans: in range, ordered,
    /// unique, within the limit).
    ApiContract,
    /// Replicas clean up after themselves: none keeps more than two snapshot
    /// files (the newest, and one a crash interrupted the removal of).
    DiskUse,
    /// No replica ever holds more live client sessions than `max_sessions`.
    SessionBound,
    /// Some replica installed a snapshot sent by a leader. Not chosen in
    /// `[checks] run`: it runs when the scenario demands a snapshot install
    /// (`[checks] snapshot_installed`), and then always counts.
    #[serde(skip)]
    SnapshotInstall,
}

impl Checker {
    /// Every checker a scenario can choose (the default choice).
    pub fn all() -> Vec<Checker> {
        vec![
            Checker::Linearizability,
            Checker::Durability,
            Checker::Convergence,
            Checker::Progress,
            Checker::ShardSafety,
            Checker::ListAppend,
            Checker::Recovery,
            Checker::ApiContract,
            Checker::DiskUse,
            Checker::SessionBound,
        ]
    }

    /// Its name in scenario files, reports and `RESULT` lines.
    pub fn name(self) -> &'static str {
        match self {
            Checker::Linearizability => "linearizability",
            Checker::Durability => "durability",
            Checker::Convergence => "convergence",
            Checker::Progress => "progress",
            Checker::ShardSafety => "shard-safety",
            Checker::ListAppend => "list-append",
            Checker::Recovery => "recovery",
            Checker::ApiContract => "api-contract",
            Checker::DiskUse => "disk-use",
            Checker::SessionBound => "session-bound",
            Checker::SnapshotInstall => "snapshot-install",
        }
    }
}

impl std::fmt::Display for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A property that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The checker that tripped.
    pub checker: Checker,
    /// What it saw, in a line or a few.
    pub detail: String,
    /// The operations it holds responsible, for the history views to
    /// highlight (empty when the fault is not in any one operation).
    pub blamed: Vec<OpId>,
}

/// Names one recorded operation: a client runs one operation at a time, so
/// its client and call time identify it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct OpId {
    /// The client that issued it.
    pub client: u32,
    /// Simulated time of the call, since the run began.
    pub call: std::time::Duration,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.checker.name(), self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_snapshot_install_is_not_chosen_by_name() {
        #[derive(Deserialize)]
        struct Choice {
            run: Vec<Checker>,
        }
        for checker in Checker::all() {
            let text = format!("run = [\"{}\"]", checker.name());
            let choice: Choice = toml::from_str(&text).unwrap();
            assert_eq!(choice.run, [checker]);
        }
        assert!(!Checker::all().contains(&Checker::SnapshotInstall));
        assert!(toml::from_str::<Choice>("run = [\"snapshot-install\"]").is_err());
    }
}
