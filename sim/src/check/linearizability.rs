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

use super::{Checker, OpId, Violation};
use crate::history::{describe, KeyedOp, RegisterOp};

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
            RegisterOp::Delete { existed } => match existed {
                Some(existed) if *existed != state.is_some() => None,
                _ => Some(None),
            },
            RegisterOp::Cas {
                expected,
                new,
                swapped,
                current,
            } => {
                let swaps = state == expected;
                match (swapped, current) {
                    (Some(answer), _) if *answer != swaps => None,
                    (_, Some(held)) if held != state => None,
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
    let mut events = events_in_order(ops);
    let head = 0;
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

/// The calls and returns of `ops` in time order, as a doubly linked list
/// with a sentinel head at index 0. At equal times, returns come before
/// calls (an operation that returned at t precedes one called at t);
/// indeterminate operations return after everything.
fn events_in_order(ops: &[KeyedOp]) -> Vec<Event> {
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

    events
}

/// Takes a linearized operation's call and return out of the event list.
fn lift(events: &mut [Event], call: usize) {
    let ret = events[call].partner;
    for at in [call, ret] {
        let Event { prev, next, .. } = events[at];
        events[prev].next = next;
        if next != usize::MAX {
            events[next].prev = prev;
        }
    }
}

/// Puts an operation lifted by [`lift`] back where it was.
fn unlift(events: &mut [Event], call: usize) {
    let ret = events[call].partner;
    for at in [ret, call] {
        let Event { prev, next, .. } = events[at];
        events[prev].next = at;
        if next != usize::MAX {
            events[next].prev = at;
        }
    }
}

/// Checks every key of a history; reports the first key that fails, blaming
/// the operation whose answer first made the key's history impossible, and
/// shows the operations leading up to it.
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
                let blamed = first_impossible(&ops);
                let shown_from = blamed.map_or(0, |b| {
                    let b_ret = ops[b].ret.unwrap_or(ops[b].call);
                    let last = ops.iter().rposition(|op| op.call <= b_ret).unwrap_or(b);
                    (last + 1).saturating_sub(HISTORY_LINES_MAX)
                });
                let lines: Vec<String> = ops
                    .iter()
                    .enumerate()
                    .skip(shown_from)
                    .take(HISTORY_LINES_MAX)
                    .map(|(i, op)| {
                        let mark = if Some(i) == blamed { ">" } else { " " };
                        format!("{mark} {}", describe(op))
                    })
                    .collect();
                return Err(Violation {
                    blamed: blamed
                        .map(|b| OpId {
                            client: ops[b].client,
                            call: ops[b].call,
                        })
                        .into_iter()
                        .collect(),
                    checker: Checker::Linearizability,
                    detail: format!(
                        "key {} has no valid order of its {} operations; \
                         the first answer no order explains is marked >:\n    {}",
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
            blamed: Vec::new(),
            checker: Checker::Linearizability,
            detail: format!("search budget exhausted on keys {unknown:?}: undecided"),
        });
    }
    Ok(())
}

/// The history of one key as it stood at `time`: operations that had
/// returned keep their answers; those still running become indeterminate
/// (their answers unknown); later ones are left out. If the whole history is
/// linearizable, so is every such prefix.
fn prefix_at(ops: &[KeyedOp], time: Duration) -> Vec<KeyedOp> {
    ops.iter()
        .filter(|op| op.call <= time)
        .map(|op| {
            let mut op = op.clone();
            if op.ret.is_none_or(|ret| ret > time) {
                op.ret = None;
                match &mut op.op {
                    RegisterOp::Read(seen) => *seen = None,
                    RegisterOp::Cas {
                        swapped, current, ..
                    } => (*swapped, *current) = (None, None),
                    RegisterOp::Delete { existed } => *existed = None,
                    RegisterOp::Write(_) => {}
                }
            }
            op
        })
        .collect()
}

/// For a key whose history is not linearizable: the index of the operation
/// whose return first makes the prefix impossible (a binary search over
/// return times; prefixes only get harder as they grow).
fn first_impossible(ops: &[KeyedOp]) -> Option<usize> {
    let mut returns: Vec<Duration> = ops.iter().filter_map(|op| op.ret).collect();
    returns.sort_unstable();
    returns.dedup();
    let fails = |time: Duration| check_key(&prefix_at(ops, time)) == Verdict::NotLinearizable;
    let first = returns.partition_point(|time| !fails(*time));
    let time = *returns.get(first)?;
    ops.iter().position(|op| op.ret == Some(time))
}

/// Operations shown when a key fails.
const HISTORY_LINES_MAX: usize = 24;

/// Most linearizability checks [`contradicting`] makes.
const CORE_CHECKS_MAX: usize = 1_000;

/// For a key whose history is not linearizable, and `blamed` (an index into
/// `ops`) the first answer no order explains: the operations that, with
/// the blamed one, already admit no valid order, while without it they do.
/// Found by dropping, one at a time and earliest first, every operation
/// the contradiction does not need, but never one that wrote a value a kept
/// operation saw (so the result still shows where each seen value came
/// from). Indexes into `ops` in order of call, the blamed one left out;
/// empty if the history up to the blamed answer is in fact linearizable.
pub fn contradicting(ops: &[KeyedOp], blamed: usize) -> Vec<usize> {
    let until = ops[blamed].ret.unwrap_or(ops[blamed].call);
    let mut order: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].call <= until).collect();
    order.sort_by_key(|&i| (ops[i].call, i));
    let verdict = |keep: &mut dyn Iterator<Item = usize>| {
        let kept: Vec<KeyedOp> = keep.map(|i| ops[i].clone()).collect();
        check_key(&prefix_at(&kept, until))
    };
    // The blamed answer is what breaks the set; without it the rest holds.
    let breaks = |keep: &[usize]| {
        verdict(&mut keep.iter().copied()) == Verdict::NotLinearizable
            && verdict(&mut keep.iter().copied().filter(|&i| i != blamed)) == Verdict::Linearizable
    };
    if !order.contains(&blamed) || !breaks(&order) {
        return Vec::new();
    }
    let mut keep = order.clone();
    let mut checks = 1;
    let mut changed = true;
    while changed && checks < CORE_CHECKS_MAX {
        changed = false;
        for &candidate in &order {
            if candidate == blamed || !keep.contains(&candidate) || checks >= CORE_CHECKS_MAX {
                continue;
            }
            if wrote_a_seen_value(ops, &keep, candidate, until) {
                continue;
            }
            let without: Vec<usize> = keep.iter().copied().filter(|&i| i != candidate).collect();
            checks += 1;
            if breaks(&without) {
                keep = without;
                changed = true;
            }
        }
    }
    keep.retain(|&i| i != blamed);
    keep
}

/// Whether `ops[candidate]` writes a value that another kept operation,
/// answered by `until`, saw (read, or expected in a compare-and-swap).
fn wrote_a_seen_value(ops: &[KeyedOp], keep: &[usize], candidate: usize, until: Duration) -> bool {
    let written = match &ops[candidate].op {
        RegisterOp::Write(Some(v)) => v,
        RegisterOp::Cas { new: Some(v), .. } => v,
        _ => return false,
    };
    keep.iter().any(|&i| {
        let answered = ops[i].ret.is_some_and(|ret| ret <= until);
        i != candidate
            && answered
            && match &ops[i].op {
                RegisterOp::Read(Some(Some(seen))) => seen == written,
                RegisterOp::Cas {
                    expected: Some(e),
                    swapped: Some(true),
                    ..
                } => e == written,
                _ => false,
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::build::{op, r, w};

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
            current: None,
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
    fn delete_and_compare_and_swap_report_what_the_register_held() {
        use Verdict::*;
        let delete = |existed| RegisterOp::Delete {
            existed: Some(existed),
        };
        let cas = |swapped, held: Option<&'static str>| RegisterOp::Cas {
            expected: Some(Bytes::from("a")),
            new: Some(Bytes::from("b")),
            swapped: Some(swapped),
            current: Some(held.map(Bytes::from)),
        };
        let base = op(1, 0, Some(1), w("a"));
        let after = |second: RegisterOp| check_key(&[base.clone(), op(2, 2, Some(3), second)]);
        assert_eq!(after(delete(true)), Linearizable);
        assert_eq!(after(delete(false)), NotLinearizable, "the key was there");
        let deleted_twice = [
            base.clone(),
            op(2, 2, Some(3), delete(true)),
            op(3, 4, Some(5), delete(true)),
        ];
        assert_eq!(check_key(&deleted_twice), NotLinearizable);
        assert_eq!(after(cas(true, Some("a"))), Linearizable);
        assert_eq!(
            after(cas(true, Some("b"))),
            NotLinearizable,
            "a swap answers the value it replaced"
        );
        let failed = RegisterOp::Cas {
            expected: Some(Bytes::from("x")),
            new: Some(Bytes::from("b")),
            swapped: Some(false),
            current: Some(Some(Bytes::from("a"))),
        };
        assert_eq!(after(failed.clone()), Linearizable);
        let RegisterOp::Cas {
            expected,
            new,
            swapped,
            ..
        } = failed
        else {
            unreachable!()
        };
        let wrong = RegisterOp::Cas {
            expected,
            new,
            swapped,
            current: Some(None),
        };
        assert_eq!(
            after(wrong),
            NotLinearizable,
            "a failed swap reports the value held"
        );
    }

    #[test]
    fn a_failing_key_is_named_with_its_operations() {
        let history = [op(1, 0, Some(1), w("a")), op(2, 2, Some(3), r(None))];
        let violation = check(&history).unwrap_err();
        assert_eq!(violation.checker, Checker::Linearizability);
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

    #[test]
    fn the_operations_contradicting_a_blamed_answer() {
        // Client 3 reads "a" after "b" overwrote it: the write of "b" and
        // the write of "a" it saw contradict it; the reads do not matter.
        let history = [
            op(1, 0, Some(1), w("a")),
            op(2, 2, Some(3), r(Some("a"))),
            op(1, 4, Some(5), w("b")),
            op(2, 6, Some(7), r(Some("b"))),
            op(3, 8, Some(9), r(Some("a"))),
        ];
        assert_eq!(contradicting(&history, 4), [0, 2]);
        // A read of an absent key after a write: the write alone.
        let history = [op(1, 0, Some(1), w("a")), op(2, 2, Some(3), r(None))];
        assert_eq!(contradicting(&history, 1), [0]);
        // Nothing contradicts an answer that is fine.
        assert_eq!(contradicting(&history, 0), Vec::<usize>::new());
    }

    #[test]
    fn the_first_impossible_answer_is_blamed() {
        // Client 3's read of "a" after "b" was written is the stale one;
        // the reads before it and client 4's later read are fine alone.
        let history = [
            op(1, 0, Some(1), w("a")),
            op(2, 2, Some(3), r(Some("a"))),
            op(1, 4, Some(5), w("b")),
            op(2, 6, Some(7), r(Some("b"))),
            op(3, 8, Some(9), r(Some("a"))),
            op(4, 10, Some(11), r(Some("b"))),
        ];
        let violation = check(&history).unwrap_err();
        assert_eq!(
            violation.blamed,
            vec![OpId {
                client: 3,
                call: Duration::from_millis(8)
            }]
        );
        assert!(
            violation.detail.contains("> client    3"),
            "{}",
            violation.detail
        );
        // An operation still running when the blamed one returned is shown;
        // its answer did not count in finding the blame.
        let concurrent = [
            op(1, 0, Some(1), w("a")),
            op(2, 2, Some(20), r(Some("zzz"))),
            op(3, 3, Some(4), r(None)),
        ];
        let violation = check(&concurrent).unwrap_err();
        assert_eq!(violation.blamed[0].client, 3);
    }
}
