//! An outside check of exported histories, sharing nothing with Shoal's own
//! checker: the JSON lines are read with `serde_json` alone, as any tool
//! would read them, and each key is checked by `todc-utils`' linearizability
//! checker (Wing & Gong's search with Lowe's memoisation, as porcupine and
//! Knossos do it) over the compare-and-swap register below. Events are
//! taken in the order of their `index`, which is the file's order.

use std::collections::BTreeMap;

use serde_json::Value;
use todc_utils::linearizability::history::{Action, History};
use todc_utils::linearizability::WGLChecker;
use todc_utils::specifications::Specification;

/// An operation on the register as the checker sees it: at its call, and
/// with its answer at its completion (`None`: not known).
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A read, and the value it returned (`Some(None)`: absent).
    Read(Option<Option<String>>),
    /// A write (`None`: a delete).
    Write(Option<String>),
    /// If the register holds `expected`, set it to `new`; whether it did.
    Cas {
        /// The value it must hold.
        expected: Option<String>,
        /// The value to set.
        new: Option<String>,
        /// Whether it swapped.
        swapped: Option<bool>,
    },
}

/// A register with compare-and-swap, starting absent.
pub struct CasRegister;

impl Specification for CasRegister {
    type State = Option<String>;
    type Operation = Op;

    fn init() -> Self::State {
        None
    }

    fn apply(op: &Op, state: &Self::State) -> (bool, Self::State) {
        match op {
            Op::Read(Some(seen)) => (seen == state, state.clone()),
            Op::Read(None) => (true, state.clone()),
            Op::Write(v) => (true, v.clone()),
            Op::Cas {
                expected,
                new,
                swapped,
            } => {
                let swaps = state == expected;
                if swapped.is_some_and(|s| s != swaps) {
                    return (false, state.clone());
                }
                (true, if swaps { new.clone() } else { state.clone() })
            }
        }
    }
}

/// One parsed event.
#[derive(Clone, Debug)]
pub struct Event {
    key: String,
    process: u64,
    /// The index of the operation's invocation.
    op: u64,
    kind: String,
    f: String,
    value: Value,
    time: u64,
}

fn text(value: &Value) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        other => Err(format!("not a register value: {other}")),
    }
}

fn parse(line: &str, expected_index: u64) -> Result<Event, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))?;
    let field = |name: &str| v.get(name).ok_or(format!("no {name:?} in {line}"));
    let index = field("index")?.as_u64().ok_or("index is not a number")?;
    if index != expected_index {
        return Err(format!("event {index} where {expected_index} was due"));
    }
    let pair = field("value")?
        .as_array()
        .ok_or("value is not [key, value]")?;
    let [key, value] = pair.as_slice() else {
        return Err(format!("value is not [key, value]: {line}"));
    };
    Ok(Event {
        key: key.as_str().ok_or("key is not a string")?.to_string(),
        process: field("process")?
            .as_u64()
            .ok_or("process is not a number")?,
        op: index,
        time: field("time")?.as_u64().ok_or("time is not a number")?,
        kind: field("type")?
            .as_str()
            .ok_or("type is not a string")?
            .to_string(),
        f: field("f")?.as_str().ok_or("f is not a string")?.to_string(),
        value: value.clone(),
    })
}

/// The operation an event carries: at its invocation, its request; at its
/// completion, its answer too (`info`: unknown).
fn op(e: &Event) -> Result<Op, String> {
    let answered = e.kind == "ok" || e.kind == "fail";
    Ok(match e.f.as_str() {
        "read" if e.kind == "ok" => Op::Read(Some(text(&e.value)?)),
        "read" => Op::Read(None),
        "write" => Op::Write(text(&e.value)?),
        "cas" => match e.value.as_array().map(Vec::as_slice) {
            Some([a, b]) => Op::Cas {
                expected: text(a)?,
                new: text(b)?,
                swapped: answered.then_some(e.kind == "ok"),
            },
            _ => return Err(format!("a cas value is [expected, new]: {}", e.value)),
        },
        f => return Err(format!("unknown f {f:?}")),
    })
}

/// Reads an exported history: its events in `index` order, each
/// completion carrying its invocation's index as `op`.
pub fn read(jsonl: &str) -> Result<Vec<Event>, String> {
    let mut in_flight: BTreeMap<u64, u64> = BTreeMap::new();
    let lines = jsonl.lines().filter(|l| !l.trim().is_empty());
    let mut events = Vec::new();
    for (i, line) in lines.enumerate() {
        let mut e = parse(line, i as u64)?;
        if e.kind == "invoke" {
            if in_flight.insert(e.process, e.op).is_some() {
                return Err(format!("process {} invoked twice: {line}", e.process));
            }
        } else {
            e.op = in_flight
                .remove(&e.process)
                .ok_or(format!("a completion without an invocation: {line}"))?;
        }
        events.push(e);
    }
    Ok(events)
}

/// Per key, whether its history is linearizable. `by_operation` gives
/// every operation a process of its own (as porcupine has it) instead of
/// the exported one; events are taken in the order given. An indeterminate
/// operation's completion is its `info` event, which the export lists after
/// every other: it may take effect anywhere after its call, or never.
pub fn check(events: &[Event], by_operation: bool) -> Result<BTreeMap<String, bool>, String> {
    let mut by_key: BTreeMap<&str, Vec<(usize, Action<Op>)>> = BTreeMap::new();
    let mut processes: BTreeMap<u64, usize> = BTreeMap::new();
    for e in events {
        let id = if by_operation { e.op } else { e.process };
        // Dense process numbers, as the checker wants them.
        let next = processes.len();
        let process = *processes.entry(id).or_insert(next);
        let action = if e.kind == "invoke" {
            Action::Call(op(e)?)
        } else {
            Action::Response(op(e)?)
        };
        by_key.entry(&e.key).or_default().push((process, action));
    }
    Ok(by_key
        .into_iter()
        .map(|(key, actions)| {
            let history = History::from_actions(actions);
            (
                key.to_string(),
                WGLChecker::<CasRegister>::is_linearizable(history),
            )
        })
        .collect())
}

/// The events reordered by `time` alone, calls before returns at equal
/// times: what a checker that ignores `index` and orders ties that way
/// (porcupine does) sees.
pub fn calls_first(events: &[Event]) -> Vec<Event> {
    let mut sorted = events.to_vec();
    sorted.sort_by_key(|e| (e.time, e.kind != "invoke", e.op));
    sorted
}
