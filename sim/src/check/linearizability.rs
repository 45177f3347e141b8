//! Linearizability, per key: is there an order of the operations on each key,
//! consistent with real time (an operation that returned before another was
//! called comes first), in which a single register would have given every
//! answer the clients saw?
//!
//! The search is Wing & Gong's, with Lowe's memoisation: walk the history's
//! call and return events in time order; at a call, try to linearize that
//! operation now (if the register allows its answer) and move on; at a
//! return whose operation is not yet linearized, backtrack. A set of
//! (linearized operations, register state) pairs already explored prunes
//! repeats. Keys are independent (linearizability is compositional), so each
//! key's history is checked alone.
//!
//! An operation whose client gave up (a timeout) is *indeterminate*: it may
//! or may not have taken effect, and its answer is unknown. It is given a
//! return time after everything else, so it can be linearized anywhere after
//! its call, including "never" (at the very end, where nothing observes it).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;

use super::Violation;

/// A register operation and, if the client heard back, its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOp {
    /// A read that returned `Some(value)` (or saw no value: `None`).
    Read(Option<Option<Bytes>>),
    /// A write of a value (`None`: a delete). The answer carries nothing.
    Write(Option<Bytes>),
    /// Compare-and-swap: if the register holds `expected`, set it to `new`.
    /// The answer: whether it swapped.
    Cas {
        /// The value the register must hold (`None`: absent).
        expected: Option<Bytes>,
        /// The value to set (`None`: delete).
        new: Option<Bytes>,
        /// Whether it swapped, if the client heard back.
        swapped: Option<bool>,
    },
}

/// One operation on one key, as a client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedOp {
    /// The client that issued it.
    pub client: u32,
    /// The key.
    pub key: Bytes,
    /// The operation and its answer.
    pub op: RegisterOp,
    /// When the client called it.
    pub call: Duration,
    /// When the answer arrived; `None` if the client gave up (indeterminate).
    pub ret: Option<Duration>,
}

impl RegisterOp {
    /// Applies the operation to `state`; `None` if the recorded answer is
    /// impossible from `state`. An unknown answer is always possible.
    fn step(&self, state: &Option<Bytes>) -> Option<Option<Bytes>> {
        match self {
            RegisterOp::Read(seen) => match seen {
                Some(seen) if seen != state => None,
                _ => Some(state.clone()),
            },
            RegisterOp::Write(value) => Some(value.clone()),
            RegisterOp::Cas {
                expected,
                new,
                swapped,
            } => {
                let swaps = state == expected;
                match swapped {
                    Some(answer) if *answer != swaps => None,
                    _ => Some(if swaps { new.clone() } else { state.clone() }),
                }
            }
        }
    }
}

/// Most search steps for one key before the checker gives up on it (and
/// says so rather than pass it).
const STEPS_PER_KEY_MAX: u64 = 5_000_000;

/// The outcome of checking one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A valid order exists.
    Linearizable,
    /// No valid order exists.
    NotLinearizable,
    /// The search ran out of steps.
    Unknown,
}

#[derive(Debug, Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// Index of the matching event (call ↔ return).
    partner: usize,
    prev: usize,
    next: usize,
}

/// Checks the operations of one key, starting from an absent value.
pub fn check_key(ops: &[KeyedOp]) -> Verdict {
    check_key_from(ops, None)
}

/// Checks the operations of one key, starting from `initial`.
pub fn check_key_from(ops: &[KeyedOp], initial: Option<Bytes>) -> Verdict {
    if ops.is_empty() {
        return Verdict::Linearizable;
    }
    // Events in time order; at equal times, returns before calls (an
    // operation that returned at t precedes one called at t). Indeterminate
    // operations return after everything.
    let never = ops
        .iter()
        .filter_map(|o| o.ret)
        .chain(ops.iter().map(|o| o.call))
        .max()
        .unwrap_or_default()
        + Duration::from_secs(1);
    let mut order: Vec<(Duration, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        order.push((op.call, true, i));
        order.push((op.ret.unwrap_or(never), false, i));
    }
    order.sort_by_key(|(time, is_call, op)| (*time, *is_call, *op));

    // A doubly linked list with a sentinel head at index 0.
    let head = 0;
    let mut events = vec![Event {
        op: usize::MAX,
        is_call: false,
        partner: 0,
        prev: 0,
        next: 1,
    }];
    let mut position = vec![[0usize; 2]; ops.len()];
    for (i, (_, is_call, op)) in order.iter().enumerate() {
        let index = i + 1;
        position[*op][usize::from(!*is_call)] = index;
        events.push(Event {
            op: *op,
            is_call: *is_call,
            partner: 0,
            prev: index - 1,
            next: if i + 1 == order.len() {
                usize::MAX
            } else {
                index + 1
            },
        });
    }
    for [call, ret] in &position {
        events[*call].partner = *ret;
        events[*ret].partner = *call;
    }

    let lift = |events: &mut Vec<Event>, call: usize| {
        let ret = events[call].partner;
        for at in [call, ret] {
            let Event { prev, next, .. } = events[at];
            events[prev].next = next;
            if next != usize::MAX {
                events[next].prev = prev;
            }
        }
    };
    let unlift = |events: &mut Vec<Event>, call: usize| {
        let ret = events[call].partner;
        for at in [ret, call] {
            let Event { prev, next, .. } = events[at];
            events[prev].next = at;
            if next != usize::MAX {
                events[next].prev = at;
            }
        }
    };

    let mut linearized = vec![false; ops.len()];
    let mut seen: BTreeSet<(Vec<bool>, Option<Bytes>)> = BTreeSet::new();
    let mut stack: Vec<(usize, Option<Bytes>)> = Vec::new();
    let mut state = initial;
    let mut at = events[head].next;
    let mut steps = 0u64;
    while events[head].next != usize::MAX {
        steps += 1;
        if steps > STEPS_PER_KEY_MAX {
            return Verdict::Unknown;
        }
        let event = events[at];
        if event.is_call {
            let op = event.op;
            if let Some(next_state) = ops[op].op.step(&state) {
                linearized[op] = true;
                if seen.insert((linearized.clone(), next_state.clone())) {
                    stack.push((at, state));
                    state = next_state;
                    lift(&mut events, at);
                    at = events[head].next;
                    continue;
                }
                linearized[op] = false;
            }
            at = event.next;
        } else {
            // An operation returned before it could be linearized: undo the
            // latest choice and try the next one.
            let Some((call, previous)) = stack.pop() else {
                return Verdict::NotLinearizable;
            };
            state = previous;
            linearized[events[call].op] = false;
            unlift(&mut events, call);
            at = events[call].next;
        }
    }
    Verdict::Linearizable
}

/// Checks every key of a history; reports the first key that fails, with its
/// operations in call order.
pub fn check(ops: &[KeyedOp]) -> Result<(), Violation> {
    let mut by_key: BTreeMap<&Bytes, Vec<KeyedOp>> = BTreeMap::new();
    for op in ops {
        by_key.entry(&op.key).or_default().push(op.clone());
    }
    let mut unknown = Vec::new();
    for (key, ops) in by_key {
        match check_key(&ops) {
            Verdict::Linearizable => {}
            Verdict::Unknown => unknown.push(String::from_utf8_lossy(key).into_owned()),
            Verdict::NotLinearizable => {
                let mut ops = ops;
                ops.sort_by_key(|op| op.call);
                let lines: Vec<String> = ops.iter().take(HISTORY_LINES_MAX).map(describe).collect();
                return Err(Violation {
                    checker: "linearizability",
                    detail: format!(
                        "key {} has no valid order of its {} operations:\n    {}",
                        String::from_utf8_lossy(key),
                        ops.len(),
                        lines.join("\n    ")
                    ),
                });
            }
        }
    }
    if !unknown.is_empty() {
        return Err(Violation {
            checker: "linearizability",
            detail: format!("search budget exhausted on keys {unknown:?}: undecided"),
        });
    }
    Ok(())
}

/// Operations shown when a key fails.
const HISTORY_LINES_MAX: usize = 24;

fn value(v: &Option<Bytes>) -> String {
    match v {
        None => "∅".to_string(),
        Some(v) if v.len() <= 16 => format!("{:?}", String::from_utf8_lossy(v)),
        Some(v) => format!("<{} bytes>", v.len()),
    }
}

/// One line per operation: client, interval, operation, answer.
pub fn describe(op: &KeyedOp) -> String {
    let interval = match op.ret {
        Some(ret) => format!("[{:?} .. {:?}]", op.call, ret),
        None => format!("[{:?} .. gave up]", op.call),
    };
    let what = match &op.op {
        RegisterOp::Read(Some(seen)) => format!("read -> {}", value(seen)),
        RegisterOp::Read(None) => "read -> ?".to_string(),
        RegisterOp::Write(v) => format!("write {}", value(v)),
        RegisterOp::Cas {
            expected,
            new,
            swapped,
        } => format!(
            "cas {} -> {} : {}",
            value(expected),
            value(new),
            swapped.map_or("?".to_string(), |s| s.to_string())
        ),
    };
    format!("client {:>3} {interval:<32} {what}", op.client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: u32, call_ms: u64, ret_ms: Option<u64>, op: RegisterOp) -> KeyedOp {
        KeyedOp {
            client,
            key: Bytes::from("k"),
            op,
            call: Duration::from_millis(call_ms),
            ret: ret_ms.map(Duration::from_millis),
        }
    }

    fn w(v: &'static str) -> RegisterOp {
        RegisterOp::Write(Some(Bytes::from(v)))
    }

    fn r(v: Option<&'static str>) -> RegisterOp {
        RegisterOp::Read(Some(v.map(Bytes::from)))
    }

    #[test]
    fn sequential_and_concurrent_histories() {
        use Verdict::*;
        // Sequential, consistent.
        assert_eq!(
            check_key(&[op(1, 0, Some(1), w("a")), op(2, 2, Some(3), r(Some("a")))]),
            Linearizable
        );
        // A stale read: the write finished before the read began.
        assert_eq!(
            check_key(&[op(1, 0, Some(1), w("a")), op(2, 2, Some(3), r(None))]),
            NotLinearizable
        );
        // Concurrent: the read may see either.
        for seen in [None, Some("a")] {
            assert_eq!(
                check_key(&[op(1, 0, Some(5), w("a")), op(2, 1, Some(2), r(seen))]),
                Linearizable
            );
        }
        // Two reads that disagree on the order of two concurrent writes.
        let history = [
            op(1, 0, Some(10), w("a")),
            op(2, 0, Some(10), w("b")),
            op(3, 11, Some(12), r(Some("a"))),
            op(4, 13, Some(14), r(Some("b"))),
        ];
        assert_eq!(check_key(&history), NotLinearizable);
    }

    #[test]
    fn an_indeterminate_write_may_or_may_not_have_happened() {
        use Verdict::*;
        let gave_up = op(1, 0, None, w("a"));
        assert_eq!(
            check_key(&[gave_up.clone(), op(2, 5, Some(6), r(None))]),
            Linearizable
        );
        assert_eq!(
            check_key(&[gave_up.clone(), op(2, 5, Some(6), r(Some("a")))]),
            Linearizable
        );
        // But once seen, it cannot be unseen.
        let history = [
            gave_up,
            op(2, 5, Some(6), r(Some("a"))),
            op(2, 7, Some(8), r(None)),
        ];
        assert_eq!(check_key(&history), NotLinearizable);
    }

    #[test]
    fn compare_and_swap_answers_are_checked() {
        use Verdict::*;
        let cas = |expected: Option<&'static str>, new: &'static str, swapped| RegisterOp::Cas {
            expected: expected.map(Bytes::from),
            new: Some(Bytes::from(new)),
            swapped: Some(swapped),
        };
        let base = op(1, 0, Some(1), w("a"));
        assert_eq!(
            check_key(&[base.clone(), op(2, 2, Some(3), cas(Some("a"), "b", true))]),
            Linearizable
        );
        assert_eq!(
            check_key(&[base.clone(), op(2, 2, Some(3), cas(Some("x"), "b", true))]),
            NotLinearizable
        );
        // Two clients both "win" a CAS from the same value: impossible.
        let history = [
            base,
            op(2, 2, Some(5), cas(Some("a"), "b", true)),
            op(3, 2, Some(5), cas(Some("a"), "c", true)),
        ];
        assert_eq!(check_key(&history), NotLinearizable);
    }

    #[test]
    fn a_failing_key_is_named_with_its_operations() {
        let history = [op(1, 0, Some(1), w("a")), op(2, 2, Some(3), r(None))];
        let violation = check(&history).unwrap_err();
        assert_eq!(violation.checker, "linearizability");
        assert!(
            violation.detail.contains("key k has no valid order"),
            "{}",
            violation.detail
        );
        assert!(
            violation.detail.contains("read -> ∅"),
            "{}",
            violation.detail
        );
    }
}
