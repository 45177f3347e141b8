//! Convergence: after the faults heal, every replica holds the same state.

use shoal::ids::NodeId;
use shoal::machine::Applied;

use super::{Checker, Violation};

/// Checks that all replicas applied the same log prefix to the same state
/// (data and de-duplication table).
pub fn check(replicas: &[(NodeId, Applied)]) -> Result<(), Violation> {
    let Some((first_id, first)) = replicas.first() else {
        return Ok(());
    };
    for (id, applied) in &replicas[1..] {
        if applied.last_applied != first.last_applied {
            return Err(Violation {
                blamed: Vec::new(),
                checker: Checker::Convergence,
                detail: format!(
                    "replica {id} applied up to {:?}, replica {first_id} up to {:?}",
                    applied.last_applied, first.last_applied
                ),
            });
        }
        if applied.kv != first.kv {
            let entries = first.kv.data.entries().unwrap_or_default();
            let differing = entries
                .iter()
                .find(|(_, k, v)| applied.kv.data.get(k).ok().flatten().as_ref() != Some(v))
                .map(|(_, k, _)| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_else(|| {
                    "(the de-duplication table, or a key only it holds)".to_string()
                });
            return Err(Violation {
                blamed: Vec::new(),
                checker: Checker::Convergence,
                detail: format!(
                    "replicas {first_id} and {id} both applied {:?} but differ at {differing}",
                    first.last_applied
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal::machine::command::{DataOp, WriteId};

    #[test]
    fn catches_a_diverged_replica() {
        let mut a = Applied::default();
        let id = Some(WriteId {
            client_id: 1,
            seq: 1,
            opened_at: 1,
        });
        let put = DataOp::Put {
            key: "k".into(),
            value: "v".into(),
        };
        a.kv.apply(id, 1, &put, &Default::default());
        let same = a.clone();
        assert_eq!(check(&[(1, a.clone()), (2, same)]), Ok(()));
        let mut diverged = a.clone();
        diverged.kv.data.insert("k".into(), "other".into());
        let violation = check(&[(1, a), (2, diverged)]).unwrap_err();
        assert_eq!(violation.checker, Checker::Convergence);
        assert!(
            violation.detail.contains("differ at k"),
            "{}",
            violation.detail
        );
    }
}
