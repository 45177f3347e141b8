//! Durability: every acknowledged write is present at the end, unchanged;
//! and no key ever reads back a value nobody wrote (a write whose client gave
//! up may or may not have happened, but cannot have happened differently).

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{Checker, OpId, Violation};
use crate::history::{History, Outcome};

/// Compares what was written with what a final read returned. `reads` maps
/// each written key (every key is written once) to the value read back
/// (`None`: absent, or the read failed, which for an acknowledged write is
/// just as bad).
pub fn check(history: &History, reads: &BTreeMap<Bytes, Option<Bytes>>) -> Result<(), Violation> {
    let mut lost = Vec::new();
    let mut blamed = Vec::new();
    for op in &history.writes {
        let read = reads.get(&op.key).cloned().flatten();
        let fine = match op.outcome {
            Outcome::Ok => read.as_ref() == Some(&op.value),
            Outcome::Failed(_) => read.is_none() || read.as_ref() == Some(&op.value),
        };
        if !fine {
            blamed.push(OpId {
                client: op.client,
                call: op.start,
            });
            lost.push(format!(
                "{} (client {}, {} at {:?}) read back as {}",
                String::from_utf8_lossy(&op.key),
                op.client,
                if op.outcome == Outcome::Ok {
                    "acknowledged"
                } else {
                    "given up"
                },
                op.end,
                match read {
                    None => "absent".to_string(),
                    Some(v) => format!("a different {}-byte value", v.len()),
                }
            ));
        }
    }
    if lost.is_empty() {
        return Ok(());
    }
    Err(Violation {
        blamed,
        checker: Checker::Durability,
        detail: format!("{} writes lost or changed; first: {}", lost.len(), lost[0]),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::history::WriteOp;

    fn write(key: &'static str, value: &'static str, outcome: Outcome) -> WriteOp {
        WriteOp {
            client: 0,
            key: key.into(),
            value: value.into(),
            start: Duration::ZERO,
            end: Duration::from_millis(5),
            outcome,
        }
    }

    #[test]
    fn catches_a_lost_write_and_forgives_an_indeterminate_one() {
        let history = History {
            writes: vec![
                write("a", "1", Outcome::Ok),
                write("b", "2", Outcome::Ok),
                write("c", "3", Outcome::Failed("deadline".into())),
            ],
            ..History::default()
        };
        let mut reads = BTreeMap::from([
            (Bytes::from("a"), Some(Bytes::from("1"))),
            (Bytes::from("b"), Some(Bytes::from("2"))),
        ]);
        assert_eq!(check(&history, &reads), Ok(()));
        reads.insert("b".into(), None);
        let violation = check(&history, &reads).unwrap_err();
        assert_eq!(violation.checker, Checker::Durability);
        assert!(
            violation.detail.contains("b (client 0"),
            "{}",
            violation.detail
        );
        reads.insert("b".into(), Some("x".into()));
        assert!(check(&history, &reads).is_err());
        reads.insert("b".into(), Some("2".into()));
        // The given-up write may have happened, but only as written.
        reads.insert("c".into(), Some("3".into()));
        assert_eq!(check(&history, &reads), Ok(()));
        reads.insert("c".into(), Some("garbage".into()));
        let violation = check(&history, &reads).unwrap_err();
        assert!(
            violation.detail.contains("c (client 0, given up"),
            "{}",
            violation.detail
        );
    }
}
