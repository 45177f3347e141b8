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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::WriteOp;

    fn write(start_ms: u64, outcome: Outcome) -> WriteOp {
        WriteOp {
            client: 0,
            key: "k".into(),
            value: "v".into(),
            start: Duration::from_millis(start_ms),
            end: Duration::from_millis(start_ms + 10),
            outcome,
        }
    }

    #[test]
    fn catches_a_stalled_group_and_a_failed_client() {
        let before_only = History {
            writes: vec![write(10, Outcome::Ok), write(20, Outcome::Ok)],
            faults: vec![],
        };
        assert_eq!(check(&before_only, Some(Duration::from_millis(5))), Ok(()));
        let stalled = check(&before_only, Some(Duration::from_millis(30))).unwrap_err();
        assert!(
            stalled.detail.contains("no write started after"),
            "{}",
            stalled.detail
        );

        let failed = History {
            writes: vec![
                write(10, Outcome::Ok),
                write(20, Outcome::Failed("deadline".into())),
            ],
            faults: vec![],
        };
        let violation = check(&failed, None).unwrap_err();
        assert_eq!(violation.checker, "progress");
        assert!(
            violation.detail.starts_with("1 writes failed"),
            "{}",
            violation.detail
        );
    }
}
