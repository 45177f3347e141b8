//! The list-append workload: each key holds a comma-separated list; clients
//! append unique elements with a read followed by a compare-and-swap,
//! retrying on conflict. Every operation is recorded for the linearizability
//! checker, and [`check`] verifies the stronger list invariants: every
//! acknowledged append is in its list exactly once, nothing appears that was
//! never appended, and appends that did not overlap in time appear in the
//! order they happened.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shoal::client::CasOutcome;

use super::Worker;
use crate::check::linearizability::{KeyedOp, RegisterOp};
use crate::check::Violation;

/// Compare-and-swap attempts per append before the client gives up on it.
const CAS_ATTEMPTS_MAX: u32 = 8;

/// The list key numbered `i`.
pub fn key(i: u32) -> Bytes {
    Bytes::from(format!("list-{i:03}"))
}

/// One append as its client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Append {
    /// The list.
    pub key: Bytes,
    /// The element, unique in the run.
    pub element: String,
    /// When the append began.
    pub start: Duration,
    /// When it was acknowledged; `None` if the client gave up.
    pub end: Option<Duration>,
}

fn elements(list: &Option<Bytes>) -> Vec<String> {
    match list {
        None => Vec::new(),
        Some(bytes) => String::from_utf8_lossy(bytes)
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect(),
    }
}

/// Runs one client for `spec.ops_per_client` appends (or `duration_ms`).
pub async fn run_client(mut worker: Worker, appends: Arc<Mutex<Vec<Append>>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(worker.seed);
    let mut n = 0;
    while worker.keep_going(n) {
        let key = key(rng.gen_range(0..worker.spec.keys));
        let element = format!("{}.{n}", worker.index);
        n += 1;
        let start = worker.now();
        let mut end = None;
        for _ in 0..CAS_ATTEMPTS_MAX {
            let call = worker.now();
            let Ok(current) = worker.client.get(key.clone()).await else {
                continue;
            };
            worker.record(KeyedOp {
                client: worker.index,
                key: key.clone(),
                op: RegisterOp::Read(Some(current.clone())),
                call,
                ret: Some(worker.now()),
            });
            let mut list = elements(&current);
            list.push(element.clone());
            let new = Bytes::from(list.join(","));
            let call = worker.now();
            let result = worker
                .client
                .compare_and_swap(key.clone(), current.clone(), Some(new.clone()))
                .await;
            let (swapped, ret) = match &result {
                Ok(CasOutcome { swapped, .. }) => (Some(*swapped), Some(worker.now())),
                Err(_) => (None, None),
            };
            worker.record(KeyedOp {
                client: worker.index,
                key: key.clone(),
                op: RegisterOp::Cas {
                    expected: current,
                    new: Some(new),
                    swapped,
                },
                call,
                ret,
            });
            if swapped == Some(true) {
                end = ret;
                break;
            }
            if swapped.is_none() {
                // Unknown whether it applied: appending again could add the
                // element twice, so this append ends undecided.
                break;
            }
        }
        worker.progress.finish(end.is_some());
        appends.lock().expect("appends lock").push(Append {
            key: key.clone(),
            element,
            start,
            end,
        });
    }
}

/// Checks the final lists against the appends.
pub fn check(appends: &[Append], finals: &BTreeMap<Bytes, Option<Bytes>>) -> Result<(), Violation> {
    let violation = |detail: String| {
        Err(Violation {
            blamed: Vec::new(),
            checker: "list-append",
            detail,
        })
    };
    let attempted: BTreeMap<(&Bytes, &str), &Append> = appends
        .iter()
        .map(|a| ((&a.key, a.element.as_str()), a))
        .collect();
    for (key, list) in finals {
        let list = elements(list);
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
