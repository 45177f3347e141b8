//! Checkers: each guards one property and reports a [`Violation`] naming it.

pub mod convergence;
pub mod durability;
pub mod linearizability;
pub mod progress;
pub mod shard_safety;

/// A property that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The checker that tripped, e.g. "durability".
    pub checker: &'static str,
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
        write!(f, "[{}] {}", self.checker, self.detail)
    }
}
