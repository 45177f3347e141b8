//! The list-append workload's lists: every acknowledged append is in its
//! list exactly once, nothing appears that was never appended, and appends
//! that did not overlap in time appear in the order they happened. (The
//! linearizability checker sees the same run as reads and compare-and-swaps;
//! these invariants are stronger.)

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::{Checker, Violation};
use crate::history::{list_elements, Append};

/// Checks the final lists against the appends.
pub fn check(appends: &[Append], finals: &BTreeMap<Bytes, Option<Bytes>>) -> Result<(), Violation> {
    let violation = |detail: String| {
        Err(Violation {
            blamed: Vec::new(),
            checker: Checker::ListAppend,
            detail,
        })
    };
    let attempted: BTreeMap<(&Bytes, &str), &Append> = appends
        .iter()
        .map(|a| ((&a.key, a.element.as_str()), a))
        .collect();
    for (key, list) in finals {
        let list = list_elements(list);
        let mut seen = BTreeSet::new();
        for element in &list {
            if !seen.insert(element.clone()) {
                return violation(format!(
                    "{}: element {element} appears twice",
                    String::from_utf8_lossy(key)
                ));
            }
            if !attempted.contains_key(&(key, element.as_str())) {
                return violation(format!(
                    "{}: element {element} was never appended",
                    String::from_utf8_lossy(key)
                ));
            }
        }
        let position: BTreeMap<&str, usize> = list
            .iter()
            .enumerate()
            .map(|(i, e)| (e.as_str(), i))
            .collect();
        let acked: Vec<&Append> = appends
            .iter()
            .filter(|a| &a.key == key && a.end.is_some())
            .collect();
        for a in &acked {
            if !position.contains_key(a.element.as_str()) {
                return violation(format!(
                    "{}: acknowledged append of {} is missing",
                    String::from_utf8_lossy(key),
                    a.element
                ));
            }
        }
        for a in &acked {
            for b in &acked {
                if a.end.expect("acked") < b.start
                    && position[a.element.as_str()] > position[b.element.as_str()]
                {
                    return violation(format!(
                        "{}: {} finished before {} began but comes after it",
                        String::from_utf8_lossy(key),
                        a.element,
                        b.element
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn append(element: &str, start: u64, end: Option<u64>) -> Append {
        Append {
            key: "l".into(),
            element: element.into(),
            start: Duration::from_millis(start),
            end: end.map(Duration::from_millis),
        }
    }

    #[test]
    fn catches_lost_duplicated_invented_and_reordered_elements() {
        let appends = [
            append("a", 0, Some(5)),
            append("b", 10, Some(15)),
            append("c", 20, None),
        ];
        let finals =
            |list: &'static str| BTreeMap::from([(Bytes::from("l"), Some(Bytes::from(list)))]);
        assert_eq!(check(&appends, &finals("a,b")), Ok(()));
        assert_eq!(
            check(&appends, &finals("a,b,c")),
            Ok(()),
            "the undecided append may have happened"
        );
        assert!(check(&appends, &finals("a"))
            .unwrap_err()
            .detail
            .contains("missing"));
        assert!(check(&appends, &finals("a,b,b"))
            .unwrap_err()
            .detail
            .contains("twice"));
        assert!(check(&appends, &finals("a,b,z"))
            .unwrap_err()
            .detail
            .contains("never appended"));
        assert!(check(&appends, &finals("b,a"))
            .unwrap_err()
            .detail
            .contains("finished before"));
    }
}
