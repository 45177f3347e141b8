//! Progress: once every fault is over, the group accepts writes again (all
//! liveness-phase writes succeed); writes continue through faults; every
//! kind of operation clients try often is answered at least once; and, where
//! a scenario demands it, no client ever gives up.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Checker, OpId, Violation};
use crate::history::{History, Outcome, RegisterOp, LIVENESS_CLIENT};

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
                checker: Checker::Progress,
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
                checker: Checker::Progress,
                detail: format!(
                    "no write started after the first fault at {at:?} was acknowledged"
                ),
            });
        }
    }
    Ok(())
}

/// Checks that once every fault is over (at `healed_at`), each workload
/// client still at work has an operation acknowledged within `within`: no
/// client stays stuck after the cluster has recovered.
pub fn every_client_recovers(
    history: &History,
    healed_at: Duration,
    within: Duration,
) -> Result<(), Violation> {
    // Per client: (call, acknowledged at) of each operation.
    let mut clients: BTreeMap<u32, Vec<(Duration, Option<Duration>)>> = BTreeMap::new();
    for op in &history.writes {
        let acked = (op.outcome == Outcome::Ok).then_some(op.end);
        clients
            .entry(op.client)
            .or_default()
            .push((op.start, acked));
    }
    for op in &history.ops {
        clients
            .entry(op.client)
            .or_default()
            .push((op.call, op.ret));
    }
    clients.remove(&LIVENESS_CLIENT);
    let deadline = healed_at + within;
    for (client, ops) in clients {
        let active = ops
            .iter()
            .any(|(call, ret)| *call >= healed_at || ret.is_some_and(|r| r > healed_at));
        let recovered = ops
            .iter()
            .any(|(_, ret)| ret.is_some_and(|r| r >= healed_at && r <= deadline));
        if active && !recovered {
            let first = ops
                .iter()
                .filter(|(call, _)| *call >= healed_at)
                .map(|(call, _)| *call)
                .min();
            return Err(Violation {
                blamed: first
                    .map(|call| OpId { client, call })
                    .into_iter()
                    .collect(),
                checker: Checker::Progress,
                detail: format!(
                    "client {client} had no operation acknowledged within {within:?} of every fault \
                     ending at {healed_at:?}"
                ),
            });
        }
    }
    Ok(())
}

/// Attempts of one kind of operation after which at least one must have
/// been answered.
const ATTEMPTS_BEFORE_AN_ANSWER: usize = 20;

/// Every kind of register operation (read, write, delete, compare-and-swap)
/// tried at least [`ATTEMPTS_BEFORE_AN_ANSWER`] times was answered at least
/// once: an operation the cluster always fails is broken, faults or not.
pub fn every_kind_answered(history: &History) -> Result<(), Violation> {
    let mut kinds: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for op in &history.ops {
        let kind = match op.op {
            RegisterOp::Read(_) => "read",
            RegisterOp::Write(_) => "write",
            RegisterOp::Delete { .. } => "delete",
            RegisterOp::Cas { .. } => "compare-and-swap",
        };
        let tally = kinds.entry(kind).or_default();
        tally.0 += 1;
        tally.1 += usize::from(op.ret.is_some());
    }
    match kinds
        .into_iter()
        .find(|(_, (tried, answered))| *tried >= ATTEMPTS_BEFORE_AN_ANSWER && *answered == 0)
    {
        None => Ok(()),
        Some((kind, (tried, _))) => Err(Violation {
            blamed: Vec::new(),
            checker: Checker::Progress,
            detail: format!("no {kind} was answered in {tried} attempts"),
        }),
    }
}

/// Checks that the snapshot path ran: some replica installed a snapshot sent
/// by a leader.
pub fn snapshot_installed(installed: u64) -> Result<(), Violation> {
    if installed > 0 {
        return Ok(());
    }
    Err(Violation {
        blamed: Vec::new(),
        checker: Checker::SnapshotInstall,
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
        assert_eq!(violation.checker, Checker::Progress);
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

    #[test]
    fn catches_a_client_stuck_after_the_faults() {
        let second = Duration::from_secs(1);
        let history = |late_ok: bool| History {
            writes: vec![
                write_by(0, 100, Outcome::Ok),
                write_by(0, 2_000, Outcome::Failed("deadline".into())),
                write_by(
                    0,
                    9_000,
                    if late_ok {
                        Outcome::Ok
                    } else {
                        Outcome::Failed("deadline".into())
                    },
                ),
                // Client 1 finished before the faults ended: nothing to ask.
                write_by(1, 100, Outcome::Ok),
                write_by(2, 2_500, Outcome::Ok),
            ],
            ..History::default()
        };
        assert_eq!(
            every_client_recovers(&history(true), 2 * second, 8 * second),
            Ok(())
        );
        let stuck = every_client_recovers(&history(false), 2 * second, 8 * second).unwrap_err();
        assert!(
            stuck.detail.starts_with("client 0 had no operation"),
            "{}",
            stuck.detail
        );
        assert_eq!(
            stuck.blamed,
            vec![OpId {
                client: 0,
                call: 2 * second
            }]
        );
        // Recovery that comes, but too late, is not recovery.
        assert!(every_client_recovers(&history(true), 2 * second, 5 * second).is_err());
    }

    #[test]
    fn an_operation_kind_never_answered_is_caught() {
        use crate::history::KeyedOp;
        let op = |n: u64, op: RegisterOp, answered: bool| KeyedOp {
            client: 0,
            key: "k".into(),
            op,
            call: Duration::from_millis(n),
            ret: answered.then(|| Duration::from_millis(n + 1)),
        };
        let cas = || RegisterOp::Cas {
            expected: None,
            new: Some("v".into()),
            swapped: None,
            current: None,
        };
        let mut history = History::default();
        for n in 0..ATTEMPTS_BEFORE_AN_ANSWER as u64 {
            history
                .ops
                .push(op(2 * n, RegisterOp::Read(Some(None)), true));
            history.ops.push(op(2 * n + 1, cas(), false));
        }
        let violation = every_kind_answered(&history).unwrap_err();
        assert!(
            violation.detail.contains("no compare-and-swap"),
            "{violation:?}"
        );
        history.ops.pop();
        assert_eq!(
            every_kind_answered(&history),
            Ok(()),
            "too few attempts to tell"
        );
        history.ops.push(op(99, cas(), true));
        assert_eq!(every_kind_answered(&history), Ok(()));
    }
}
