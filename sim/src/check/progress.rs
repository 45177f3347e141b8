//! Progress: the group keeps accepting writes through and after a fault, and
//! no client gives up.

use std::time::Duration;

use super::Violation;
use crate::history::{History, Outcome};

/// Checks that no write failed and, if a fault was injected at `fault_at`,
/// that writes were acknowledged after it.
pub fn check(history: &History, fault_at: Option<Duration>) -> Result<(), Violation> {
    if let Some(failed) = history.writes.iter().find(|op| op.outcome != Outcome::Ok) {
        let count = history
            .writes
            .iter()
            .filter(|op| op.outcome != Outcome::Ok)
            .count();
        return Err(Violation {
            checker: "progress",
            detail: format!(
                "{count} writes failed; first: client {} at {:?}: {:?}",
                failed.client, failed.start, failed.outcome
            ),
        });
    }
    if let Some(at) = fault_at {
        let after = history
            .writes
            .iter()
            .filter(|op| op.outcome == Outcome::Ok && op.start > at)
            .count();
        if after == 0 {
            return Err(Violation {
                checker: "progress",
                detail: format!("no write started after the fault at {at:?} was acknowledged"),
            });
        }
    }
    Ok(())
}
