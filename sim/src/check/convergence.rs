//! Convergence: after the faults heal, every replica holds the same state.
//!
//! What a replica holds is read whole when it is captured ([`Captured`]):
//! a live [`Applied`] reads its data from the replica's engine as needed,
//! so one kept past a restart of the replica would read from an engine
//! that is gone.

use bytes::Bytes;
use openraft::LogId;
use shoal::ids::{NodeId, ShardId};
use shoal::machine::data::DataFault;
use shoal::machine::session::Sessions;
use shoal::machine::Applied;

use super::{Checker, Violation};

/// What one replica held at one moment, read out of its storage.
#[derive(Debug, Clone)]
pub struct Captured {
    /// The last entry it had applied.
    pub last_applied: Option<LogId<NodeId>>,
    /// Every key and value, shard by shard in key order, or why they could
    /// not be read.
    pub entries: Result<Vec<(ShardId, Bytes, Bytes)>, DataFault>,
    /// Its de-duplication table.
    pub sessions: Sessions,
}

impl Captured {
    /// Reads `applied` whole.
    pub fn of(applied: &Applied) -> Captured {
        Captured {
            last_applied: applied.last_applied,
            entries: applied.kv.data.entries(),
            sessions: applied.kv.sessions.clone(),
        }
    }
}

/// Checks that no two replicas reached different states on applying the
/// same log index, at any moment of the run: each replica reports its
/// state's digest after every entry it applies (see
/// `shoal::runtime::applied_state`), so a divergence is found where it
/// happens, even if a later snapshot install or restart hides it.
pub fn while_applying() -> Result<(), Violation> {
    match shoal::runtime::state_divergence() {
        None => Ok(()),
        Some(detail) => Err(Violation {
            blamed: Vec::new(),
            checker: Checker::Convergence,
            detail: format!("replicas diverged while applying: {detail}"),
        }),
    }
}

/// Checks that all replicas applied the same log prefix to the same state
/// (data and de-duplication table).
pub fn check(replicas: &[(NodeId, Captured)]) -> Result<(), Violation> {
    let violation = |detail: String| Violation {
        blamed: Vec::new(),
        checker: Checker::Convergence,
        detail,
    };
    for (id, captured) in replicas {
        if let Err(fault) = &captured.entries {
            return Err(violation(format!(
                "replica {id} (applied up to {:?}) could not read its own state: {fault}",
                captured.last_applied
            )));
        }
    }
    let Some((first_id, first)) = replicas.first() else {
        return Ok(());
    };
    // Every replica's read succeeded (checked above).
    fn entries(c: &Captured) -> &[(ShardId, Bytes, Bytes)] {
        c.entries.as_deref().unwrap_or(&[])
    }
    for (id, other) in &replicas[1..] {
        if other.last_applied != first.last_applied {
            return Err(violation(format!(
                "replica {id} applied up to {:?}, replica {first_id} up to {:?}",
                other.last_applied, first.last_applied
            )));
        }
        if let Some(key) = first_difference(entries(first), entries(other)) {
            return Err(violation(format!(
                "replicas {first_id} and {id} both applied {:?} but differ at {key}",
                first.last_applied
            )));
        }
        if other.sessions != first.sessions {
            return Err(violation(format!(
                "replicas {first_id} and {id} both applied {:?} but their de-duplication \
                 tables differ",
                first.last_applied
            )));
        }
    }
    Ok(())
}

/// The first key (in shard and key order) whose value differs between two
/// replicas' entries, or that only one of them holds.
fn first_difference(
    a: &[(ShardId, Bytes, Bytes)],
    b: &[(ShardId, Bytes, Bytes)],
) -> Option<String> {
    let describe = |(shard, key, _): &(ShardId, Bytes, Bytes), how: &str| {
        format!("{} (shard {shard}): {how}", String::from_utf8_lossy(key))
    };
    let (mut a, mut b) = (a.iter().peekable(), b.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => return None,
            (Some(x), None) => return Some(describe(x, "held only by the first")),
            (None, Some(y)) => return Some(describe(y, "held only by the second")),
            (Some(x), Some(y)) => match (x.0, &x.1).cmp(&(y.0, &y.1)) {
                std::cmp::Ordering::Less => return Some(describe(x, "held only by the first")),
                std::cmp::Ordering::Greater => return Some(describe(y, "held only by the second")),
                std::cmp::Ordering::Equal if x.2 != y.2 => {
                    return Some(describe(x, "values differ"))
                }
                std::cmp::Ordering::Equal => {
                    a.next();
                    b.next();
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal::machine::command::{DataOp, WriteId};
    use shoal::machine::data::{Data, DataSource, Entries};
    use std::ops::Bound;
    use std::sync::Arc;

    fn with_key(value: &str) -> Applied {
        let mut a = Applied::default();
        let id = Some(WriteId {
            client_id: 1,
            seq: 1,
            opened_at: 1,
        });
        let put = DataOp::Put {
            key: "k".into(),
            value: Bytes::copy_from_slice(value.as_bytes()),
        };
        a.kv.apply(id, 1, &put, &Default::default());
        a
    }

    #[test]
    fn catches_a_diverged_replica() {
        let a = with_key("v");
        assert_eq!(
            check(&[(1, Captured::of(&a)), (2, Captured::of(&a.clone()))]),
            Ok(())
        );
        let mut diverged = a.clone();
        diverged.kv.data.insert("k".into(), "other".into());
        let violation = check(&[(1, Captured::of(&a)), (2, Captured::of(&diverged))]).unwrap_err();
        assert_eq!(violation.checker, Checker::Convergence);
        assert!(
            violation
                .detail
                .contains("differ at k (shard 0): values differ"),
            "{}",
            violation.detail
        );
        let mut extra = a.clone();
        extra.kv.data.insert("z".into(), "v".into());
        let violation = check(&[(1, Captured::of(&a)), (2, Captured::of(&extra))]).unwrap_err();
        assert!(
            violation
                .detail
                .contains("differ at z (shard 0): held only by the second"),
            "{}",
            violation.detail
        );
    }

    /// A source whose every read fails, as an engine that was closed.
    #[derive(Debug)]
    struct Closed;

    impl DataSource for Closed {
        fn get(&self, _: ShardId, _: &[u8]) -> Result<Option<Bytes>, DataFault> {
            Err(DataFault("closed".into()))
        }
        fn range<'a>(
            &'a self,
            _: ShardId,
            _: Bound<&[u8]>,
            _: Option<&[u8]>,
        ) -> Result<Entries<'a>, DataFault> {
            Err(DataFault("closed".into()))
        }
        fn shards(&self) -> Result<Vec<ShardId>, DataFault> {
            Err(DataFault("closed".into()))
        }
        fn counts(&self) -> Result<(u64, u64), DataFault> {
            Err(DataFault("closed".into()))
        }
    }

    /// A state captured before its source goes away keeps what it read;
    /// one that cannot be read is reported as such, not as a difference.
    #[test]
    fn a_capture_outlives_its_source() {
        let a = with_key("v");
        let captured = Captured::of(&a);
        let mut gone = a.clone();
        gone.kv.data = Data::new(Arc::new(Closed), 1);
        assert_eq!(check(&[(1, Captured::of(&a)), (2, captured)]), Ok(()));
        let violation = check(&[(1, Captured::of(&a)), (2, Captured::of(&gone))]).unwrap_err();
        assert!(
            violation.detail.contains("replica 2") && violation.detail.contains("could not read"),
            "{}",
            violation.detail
        );
    }
}
