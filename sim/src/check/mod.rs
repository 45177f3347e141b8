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
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.checker, self.detail)
    }
}
