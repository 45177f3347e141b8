//! Progress: once every fault is over, the group accepts writes again (all
//! liveness-phase writes succeed); writes continue through faults; and, where
//! a scenario demands it, no client ever gives up.

use std::time::Duration;

use super::{OpId, Violation};
use crate::history::{History, Outcome, LIVENESS_CLIENT};

/// Checks progress. `all_writes_succeed`: every write must be acknowledged.
/// `first_fault`: when the first fault struck, after which some workload write
/// must still have been acknowledged.
pub fn check(
    history: &History,
    all_writes_succeed: bool,
    first_fault: Option<Duration>,
) -> Result<(), Violation> {
    let failed = |liveness_only: bool| {
        history
            .writes
            .iter()
            .filter(move |op| op.outcome != Outcome::Ok)
            .filter(move |op| !liveness_only || op.client == LIVENESS_CLIENT)
    };
    for (liveness_only, what) in [(true, "after every fault was over"), (false, "")] {
        if !liveness_only && !all_writes_succeed {
            continue;
        }
        if let Some(op) = failed(liveness_only).next() {
            return Err(Violation {
                blamed: failed(liveness_only)
                    .map(|op| OpId {
                        client: op.client,
                        call: op.start,
                    })
                    .collect(),
                checker: "progress",
                detail: format!(
                    "{} writes failed {what}; first: client {} at {:?}: {:?}",
                    failed(liveness_only).count(),
                    op.client,
                    op.start,
                    op.outcome
                ),
            });
        }
    }
    if let Some(at) = first_fault {
        let writes = history
            .writes
            .iter()
            .any(|op| op.client != LIVENESS_CLIENT && op.outcome == Outcome::Ok && op.start > at);
        let register_ops = history
            .ops
            .iter()
            .any(|op| op.client != LIVENESS_CLIENT && op.ret.is_some() && op.call > at);
        let continued = writes || register_ops;
        if !continued {
            return Err(Violation {
                blamed: Vec::new(),
                checker: "progress",
                detail: format!(
                    "no write started after the first fault at {at:?} was acknowledged"
                ),
            });
        }
    }
    Ok(())
}

/// Checks that the snapshot path ran: some replica installed a snapshot sent
/// by a leader.
pub fn snapshot_installed(installed: u64) -> Result<(), Violation> {
    if installed > 0 {
        return Ok(());
    }
    Err(Violation {
        blamed: Vec::new(),
        checker: "snapshot-install",
        detail: "no replica installed a snapshot from a leader".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::WriteOp;

    fn write(start_ms: u64, outcome: Outcome) -> WriteOp {
        write_by(0, start_ms, outcome)
    }

    fn write_by(client: u32, start_ms: u64, outcome: Outcome) -> WriteOp {
        WriteOp {
            client,
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
            ..History::default()
        };
        let at = |ms| Some(Duration::from_millis(ms));
        assert_eq!(check(&before_only, true, at(5)), Ok(()));
        let stalled = check(&before_only, true, at(30)).unwrap_err();
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
            ..History::default()
        };
        let violation = check(&failed, true, None).unwrap_err();
        assert_eq!(violation.checker, "progress");
        assert!(
            violation.detail.starts_with("1 writes failed"),
            "{}",
            violation.detail
        );
        // During faults a client may give up, unless the scenario forbids it...
        assert_eq!(check(&failed, false, None), Ok(()));
        // ...but never once every fault is over.
        let mut stuck = failed.clone();
        stuck.writes.push(write_by(
            LIVENESS_CLIENT,
            30,
            Outcome::Failed("deadline".into()),
        ));
        let violation = check(&stuck, false, None).unwrap_err();
        assert!(
            violation.detail.contains("after every fault was over"),
            "{}",
            violation.detail
        );
        assert!(snapshot_installed(0).is_err());
        assert!(snapshot_installed(2).is_ok());
    }
}
