//! An outside check of exported histories, sharing nothing with Shoal's own
//! checker: the JSON lines are read with `serde_json` alone, as any tool
//! would read them, and each key is checked with stateright's
//! `LinearizabilityTester` over the compare-and-swap register below. Events
//! are fed in the order of their `index`, which is the file's order.

use std::collections::BTreeMap;

use serde_json::Value;
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};

/// A register with compare-and-swap; `None` is an absent value.
#[derive(Clone, Debug, Default)]
pub struct CasRegister(Option<String>);

/// What a client asked of the register.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Read it.
    Read,
    /// Write it (`None`: delete).
    Write(Option<String>),
    /// If it holds the first value, set it to the second.
    Cas(Option<String>, Option<String>),
}

/// What the register answered.
#[derive(Clone, Debug, PartialEq)]
pub enum Ret {
    /// The value read.
    Read(Option<String>),
    /// The write happened.
    Written,
    /// Whether the compare-and-swap swapped.
    Cas(bool),
}

impl SequentialSpec for CasRegister {
    type Op = Op;
    type Ret = Ret;

    fn invoke(&mut self, op: &Op) -> Ret {
        match op {
            Op::Read => Ret::Read(self.0.clone()),
            Op::Write(v) => {
                self.0 = v.clone();
                Ret::Written
            }
            Op::Cas(expected, new) => {
                let swaps = &self.0 == expected;
                if swaps {
                    self.0 = new.clone();
                }
                Ret::Cas(swaps)
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

fn op(e: &Event) -> Result<Op, String> {
    Ok(match e.f.as_str() {
        "read" => Op::Read,
        "write" => Op::Write(text(&e.value)?),
        "cas" => match e.value.as_array().map(Vec::as_slice) {
            Some([a, b]) => Op::Cas(text(a)?, text(b)?),
            _ => return Err(format!("a cas value is [expected, new]: {}", e.value)),
        },
        f => return Err(format!("unknown f {f:?}")),
    })
}

fn ret(e: &Event) -> Result<Ret, String> {
    Ok(match (e.f.as_str(), e.kind.as_str()) {
        ("read", "ok") => Ret::Read(text(&e.value)?),
        ("write", "ok") => Ret::Written,
        ("cas", "ok") => Ret::Cas(true),
        ("cas", "fail") => Ret::Cas(false),
        (f, kind) => return Err(format!("no answer for {f} {kind}")),
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
/// every operation a thread of its own (as porcupine has it) instead of
/// one per process; events are taken in the order given.
pub fn check(events: &[Event], by_operation: bool) -> Result<BTreeMap<String, bool>, String> {
    let mut testers: BTreeMap<String, LinearizabilityTester<u64, CasRegister>> = BTreeMap::new();
    for e in events {
        let tester = testers
            .entry(e.key.clone())
            .or_insert_with(|| LinearizabilityTester::new(CasRegister::default()));
        let thread = if by_operation { e.op } else { e.process };
        match e.kind.as_str() {
            "invoke" => drop(tester.on_invoke(thread, op(e)?)?),
            // Indeterminate: stays in flight, so it may or may not count.
            "info" => {}
            _ => drop(tester.on_return(thread, ret(e)?)?),
        }
    }
    Ok(testers
        .into_iter()
        .map(|(key, tester)| (key, tester.is_consistent()))
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
