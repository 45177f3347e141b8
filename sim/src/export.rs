//! A run's client history for checkers outside Shoal, in Jepsen's form: one
//! event per invocation and per completion, each a map of `:index`, `:type`
//! (`:invoke`, `:ok`, `:fail`, `:info`), `:f` (`:read`, `:write`, `:cas`),
//! `:value`, `:process` and `:time` (simulated nanoseconds since the run
//! began). Written as EDN (Knossos, Elle, anything Clojure) or as JSON lines
//! (porcupine and everything else).
//!
//! Keys are independent registers, so a `:value` is a `[key value]` tuple as
//! `jepsen.independent` writes it: a read's is `[k v]` on completion (`nil`
//! for an absent key; `[k nil]` on invocation), a write's `[k v]` (`nil`: a
//! delete), a compare-and-swap's `[k [expected new]]`.
//!
//! **Order at equal times.** A client calls its next operation at the
//! simulated instant its previous one returned, and other clients' calls and
//! returns often share that instant. Shoal reads such a tie as "the return
//! came first" (the operation that returned at t precedes one called at t).
//! Events are therefore listed, and numbered by `:index`, in time order with
//! completions before invocations at equal times: `:index` is the exact
//! order. A checker that takes times and puts calls first at a tie
//! (porcupine does) must be given `:index` as the time, or it will accept
//! histories Shoal rightly rejects.
//!
//! **Outcomes.** An acknowledged operation is `:ok`; a compare-and-swap
//! that did not swap is `:fail` (it had no effect, as Jepsen's convention
//! has it); an operation whose client gave up is `:info`: it may or may not
//! have taken effect. Shoal records no time for giving up, so every `:info`
//! completion is listed after all other events, at the last event's time;
//! like Jepsen, which never reuses a process after an `:info`, the client
//! then continues as a new process.
//!
//! **Processes.** Client `c` (counted 0.. in the order of their numbers,
//! the post-run reader last) is Jepsen's thread `t`; its process is
//! `t + threads × g`, where its generation `g` grows by one after each
//! `:info` and between the reads of one scan, which Shoal records as one
//! read per key over the scan's interval: so each process has at most one
//! operation in flight.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::history::{History, KeyedOp, Outcome, RegisterOp};

/// Jepsen's event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Type {
    /// The client called the operation.
    Invoke,
    /// It took effect, with the answer in `value`.
    Ok,
    /// It certainly had no effect (a compare-and-swap that did not swap).
    Fail,
    /// Unknown: the client gave up.
    Info,
}

/// The operation's function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum F {
    /// A read of the register.
    Read,
    /// A write (a delete writes `nil`).
    Write,
    /// Compare-and-swap.
    Cas,
}

/// An event's value on its key: a register value (`None`: absent or
/// unknown) or a compare-and-swap's (expected, new) pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// Expected and new value of a compare-and-swap.
    Cas(Option<String>, Option<String>),
    /// A register value.
    One(Option<String>),
}

/// One event of the exported history. In JSON lines the fields keep these
/// names, `value` being `[key, value]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the history: the order of events, exact at equal times.
    pub index: u64,
    /// Invocation or completion.
    #[serde(rename = "type")]
    pub kind: Type,
    /// The operation.
    pub f: F,
    /// The key (the first element of `value` in the exported forms).
    pub key: String,
    /// The value on the key.
    pub value: Value,
    /// The Jepsen process that ran it.
    pub process: u64,
    /// Simulated nanoseconds since the run began.
    pub time: u64,
}

/// The history's operations in export form: register operations and
/// write-once writes, each with its client and interval.
struct Op {
    client: u32,
    key: String,
    f: F,
    /// The value at invocation and at completion.
    invoke: Value,
    done: Value,
    /// `Ok`, `Fail` or `Info`.
    end: Type,
    call: Duration,
    ret: Option<Duration>,
}

fn text(value: &Option<Bytes>) -> Option<String> {
    value
        .as_ref()
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn register_op(op: &KeyedOp) -> Op {
    let answered = op.ret.is_some();
    let (f, invoke, done, end) = match &op.op {
        RegisterOp::Read(seen) => {
            let seen = seen.as_ref().and_then(text);
            (F::Read, Value::One(None), Value::One(seen), Type::Ok)
        }
        RegisterOp::Write(v) => (F::Write, Value::One(text(v)), Value::One(text(v)), Type::Ok),
        // The outside register models know no delete: a write of nothing.
        RegisterOp::Delete { .. } => (F::Write, Value::One(None), Value::One(None), Type::Ok),
        RegisterOp::Cas {
            expected,
            new,
            swapped,
            ..
        } => {
            let pair = Value::Cas(text(expected), text(new));
            let end = if *swapped == Some(false) {
                Type::Fail
            } else {
                Type::Ok
            };
            (F::Cas, pair.clone(), pair, end)
        }
    };
    Op {
        client: op.client,
        key: String::from_utf8_lossy(&op.key).into_owned(),
        f,
        invoke,
        done,
        end: if answered { end } else { Type::Info },
        call: op.call,
        ret: op.ret,
    }
}

fn operations(history: &History) -> Vec<Op> {
    let writes = history.writes.iter().map(|w| {
        let value = Value::One(Some(String::from_utf8_lossy(&w.value).into_owned()));
        let acked = w.outcome == Outcome::Ok;
        Op {
            client: w.client,
            key: String::from_utf8_lossy(&w.key).into_owned(),
            f: F::Write,
            invoke: value.clone(),
            done: value,
            end: if acked { Type::Ok } else { Type::Info },
            call: w.start,
            ret: acked.then_some(w.end),
        }
    });
    writes.chain(history.ops.iter().map(register_op)).collect()
}

/// Each operation's process (see the module docs), by position in `ops`.
fn processes(ops: &[Op]) -> Vec<u64> {
    let mut threads: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        threads.entry(op.client).or_default().push(i);
    }
    let count = threads.len() as u64;
    let mut process = vec![0; ops.len()];
    for (thread, mine) in threads.values_mut().enumerate() {
        mine.sort_by(|a, b| (ops[*a].call, &ops[*a].key).cmp(&(ops[*b].call, &ops[*b].key)));
        let mut generation = 0;
        let mut previous: Option<&Op> = None;
        for &i in mine.iter() {
            if let Some(p) = previous {
                if p.end == Type::Info || p.call == ops[i].call {
                    generation += 1;
                }
            }
            process[i] = thread as u64 + count * generation;
            previous = Some(&ops[i]);
        }
    }
    process
}

/// The history as Jepsen events in `:index` order (see the module docs).
pub fn events(history: &History) -> Vec<Event> {
    let ops = operations(history);
    let processes = processes(&ops);
    // (time, completion before invocation, tie-breaks, op): indeterminate
    // completions sort after every timed event.
    let mut order: Vec<(u8, Duration, u8, u64, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        order.push((0, op.call, 1, processes[i], i));
        match op.ret {
            Some(ret) => order.push((0, ret, 0, processes[i], i)),
            None => order.push((1, Duration::ZERO, 0, processes[i], i)),
        }
    }
    order.sort();
    let last = order
        .iter()
        .filter(|e| e.0 == 0)
        .map(|e| e.1)
        .max()
        .unwrap_or_default();
    let mut invoked_at = vec![0; ops.len()];
    order
        .iter()
        .enumerate()
        .map(|(index, &(never, time, is_call, process, i))| {
            let op = &ops[i];
            let time = if never == 1 { last } else { time };
            let (kind, value) = if is_call == 1 {
                invoked_at[i] = index;
                (Type::Invoke, op.invoke.clone())
            } else {
                assert!(invoked_at[i] < index, "a completion precedes its call");
                (op.end, op.done.clone())
            };
            Event {
                index: index as u64,
                kind,
                f: op.f,
                key: op.key.clone(),
                value,
                process,
                time: u64::try_from(time.as_nanos()).expect("simulated time fits in u64 ns"),
            }
        })
        .collect()
}

/// An EDN string literal.
fn edn_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn edn_opt(value: &Option<String>) -> String {
    value.as_deref().map_or("nil".to_string(), edn_string)
}

/// The history as EDN: one event map a line, in `:index` order.
pub fn edn(events: &[Event]) -> String {
    let mut out = String::new();
    for e in events {
        let value = match &e.value {
            Value::One(v) => edn_opt(v),
            Value::Cas(a, b) => format!("[{} {}]", edn_opt(a), edn_opt(b)),
        };
        let _ = writeln!(
            out,
            "{{:index {}, :type :{}, :f :{}, :value [{} {value}], :process {}, :time {}}}",
            e.index,
            type_name(e.kind),
            f_name(e.f),
            edn_string(&e.key),
            e.process,
            e.time
        );
    }
    out
}

fn type_name(kind: Type) -> &'static str {
    match kind {
        Type::Invoke => "invoke",
        Type::Ok => "ok",
        Type::Fail => "fail",
        Type::Info => "info",
    }
}

fn f_name(f: F) -> &'static str {
    match f {
        F::Read => "read",
        F::Write => "write",
        F::Cas => "cas",
    }
}

/// The JSON form of one event: `value` is `[key, value]`, as in EDN.
#[derive(Serialize, Deserialize)]
struct JsonEvent {
    index: u64,
    #[serde(rename = "type")]
    kind: Type,
    f: F,
    value: (String, Value),
    process: u64,
    time: u64,
}

/// The history as JSON lines: one event object a line, in `index` order.
pub fn json_lines(events: &[Event]) -> String {
    let mut out = String::new();
    for e in events {
        let json = JsonEvent {
            index: e.index,
            kind: e.kind,
            f: e.f,
            value: (e.key.clone(), e.value.clone()),
            process: e.process,
            time: e.time,
        };
        out.push_str(&serde_json::to_string(&json).expect("an event serializes"));
        out.push('\n');
    }
    out
}

/// Reads JSON lines written by [`json_lines`] back.
pub fn parse_json_lines(text: &str) -> Result<Vec<Event>, serde_json::Error> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let e: JsonEvent = serde_json::from_str(line)?;
            Ok(Event {
                index: e.index,
                kind: e.kind,
                f: e.f,
                key: e.value.0,
                value: e.value.1,
                process: e.process,
                time: e.time,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::build::{op, r, w};

    fn history(ops: Vec<KeyedOp>) -> History {
        History {
            ops,
            ..History::default()
        }
    }

    /// (type, process, time in ms) of each event, in index order.
    fn shape(events: &[Event]) -> Vec<(Type, u64, u64)> {
        events
            .iter()
            .map(|e| (e.kind, e.process, e.time / 1_000_000))
            .collect()
    }

    #[test]
    fn at_equal_times_completions_come_before_invocations() {
        // Client 1's read is called at the instant client 0's write returns.
        let events = events(&history(vec![
            op(1, 10, Some(12), r(Some("a"))),
            op(0, 5, Some(10), w("a")),
        ]));
        use Type::*;
        assert_eq!(
            shape(&events),
            [(Invoke, 0, 5), (Ok, 0, 10), (Invoke, 1, 10), (Ok, 1, 12)]
        );
        let indexes: Vec<u64> = events.iter().map(|e| e.index).collect();
        assert_eq!(indexes, [0, 1, 2, 3]);
        assert_eq!(events[3].value, Value::One(Some("a".into())));
        assert_eq!(events[2].value, Value::One(None));
    }

    #[test]
    fn a_client_that_gave_up_goes_on_as_a_new_process() {
        // Two clients (threads); client 0 gives up on a write at 1 ms.
        let events = events(&history(vec![
            op(0, 1, None, w("a")),
            op(1, 2, Some(3), r(None)),
            op(0, 4, Some(6), r(Some("a"))),
        ]));
        use Type::*;
        assert_eq!(
            shape(&events),
            [
                (Invoke, 0, 1),
                (Invoke, 1, 2),
                (Ok, 1, 3),
                (Invoke, 2, 4),
                (Ok, 2, 6),
                // Indeterminate: listed last, at the last event's time.
                (Info, 0, 6),
            ]
        );
    }

    #[test]
    fn the_reads_of_one_scan_run_as_processes_of_their_own() {
        let scan = |key: &'static str| KeyedOp {
            key: Bytes::from(key),
            ..op(0, 1, Some(2), r(None))
        };
        let events = events(&history(vec![
            scan("a"),
            scan("b"),
            op(0, 2, Some(3), w("x")),
        ]));
        let processes: Vec<u64> = events.iter().map(|e| e.process).collect();
        assert_eq!(processes, [0, 1, 0, 1, 1, 1]);
    }

    #[test]
    fn compare_and_swap_outcomes() {
        let cas = |swapped| RegisterOp::Cas {
            expected: None,
            new: Some(Bytes::from("n")),
            swapped,
            current: None,
        };
        let events = events(&history(vec![
            op(0, 1, Some(2), cas(Some(true))),
            op(1, 3, Some(4), cas(Some(false))),
        ]));
        let ends: Vec<Type> = events.iter().map(|e| e.kind).collect();
        use Type::*;
        assert_eq!(ends, [Invoke, Ok, Invoke, Fail]);
        assert_eq!(events[1].value, Value::Cas(None, Some("n".into())));
    }

    #[test]
    fn edn_and_json_lines_forms() {
        let events = events(&history(vec![
            op(0, 1, Some(2), w("say \"hi\"")),
            op(1, 3, Some(4), RegisterOp::Write(None)),
        ]));
        let edn = edn(&events);
        assert_eq!(
            edn.lines().nth(1).unwrap(),
            r#"{:index 1, :type :ok, :f :write, :value ["k" "say \"hi\""], :process 0, :time 2000000}"#
        );
        assert!(edn.lines().nth(3).unwrap().contains(r#":value ["k" nil]"#));
        let json = json_lines(&events);
        assert_eq!(
            json.lines().next().unwrap(),
            r#"{"index":0,"type":"invoke","f":"write","value":["k","say \"hi\""],"process":0,"time":1000000}"#
        );
        assert_eq!(parse_json_lines(&json).unwrap(), events);
    }
}
