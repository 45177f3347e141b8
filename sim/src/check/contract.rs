//! The API's contract on each answer, whatever the order of events: what
//! no interleaving can explain (a scan returning a key outside its range,
//! out of order, twice, or past its limit). The workloads check each answer
//! as it arrives and record breaches in the history.

use super::{Checker, OpId, Violation};
use crate::history::History;

/// Fails on the first recorded breach, blaming every breaching call.
pub fn check(history: &History) -> Result<(), Violation> {
    let Some(first) = history.breaches.first() else {
        return Ok(());
    };
    Err(Violation {
        checker: Checker::ApiContract,
        detail: format!(
            "client {} at {:?}: {} ({} answers broke the contract)",
            first.client,
            first.call,
            first.what,
            history.breaches.len()
        ),
        blamed: history
            .breaches
            .iter()
            .map(|b| OpId {
                client: b.client,
                call: b.call,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::register::scan_breach;
    use bytes::Bytes;

    fn entries(keys: &[&str]) -> Vec<(Bytes, Bytes)> {
        keys.iter()
            .map(|k| (Bytes::copy_from_slice(k.as_bytes()), Bytes::from("v")))
            .collect()
    }

    #[test]
    fn a_scan_answer_must_keep_to_its_range_order_and_limit() {
        let check = |keys: &[&str], limit| scan_breach(&entries(keys), b"b", b"e", limit);
        assert_eq!(check(&["b", "c", "d"], 3), None);
        assert_eq!(check(&[], 3), None);
        assert!(
            check(&["b", "e"], 3).unwrap().contains("returned e"),
            "end is excluded"
        );
        assert!(check(&["a", "b"], 3).unwrap().contains("returned a"));
        assert!(check(&["c", "b"], 3).unwrap().contains("c before b"));
        assert!(check(&["c", "c"], 3).unwrap().contains("c before c"));
        assert!(check(&["b", "c", "d"], 2).unwrap().contains("limit of 2"));
        assert_eq!(
            scan_breach(&entries(&["z"]), b"b", b"", 3),
            None,
            "empty end: no end"
        );
    }

    #[test]
    fn breaches_fail_the_run_and_are_blamed() {
        let mut history = History::default();
        assert_eq!(check(&history), Ok(()));
        history.breaches.push(crate::history::Breach {
            client: 2,
            call: std::time::Duration::from_millis(5),
            what: "scan of [b, e) returned e".into(),
        });
        let violation = check(&history).unwrap_err();
        assert_eq!(violation.checker, Checker::ApiContract);
        assert_eq!(violation.blamed.len(), 1);
    }
}
