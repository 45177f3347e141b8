//! Exported histories as an outside checker reads them: written by
//! `shoal_sim::export`, read back from JSON lines by code that shares
//! nothing with Shoal's checker, and judged by `todc-utils`' checker. The
//! order at equal times is the point: a read called at the instant a write
//! returned must see it, and only the `index` order says so.
#![cfg(madsim)]

mod outside;

use std::time::Duration;

use bytes::Bytes;
use shoal_sim::check::linearizability::{check_key, Verdict};
use shoal_sim::export;
use shoal_sim::history::{History, KeyedOp, RegisterOp};

fn op(client: u32, key: &'static str, (call, ret): (u64, Option<u64>), op: RegisterOp) -> KeyedOp {
    KeyedOp {
        client,
        key: Bytes::from(key),
        op,
        call: Duration::from_millis(call),
        ret: ret.map(Duration::from_millis),
    }
}

fn write(v: &'static str) -> RegisterOp {
    RegisterOp::Write(Some(Bytes::from(v)))
}

fn read(v: Option<&'static str>) -> RegisterOp {
    RegisterOp::Read(Some(v.map(Bytes::from)))
}

fn exported(ops: &[KeyedOp]) -> Vec<outside::Event> {
    let history = History {
        ops: ops.to_vec(),
        ..History::default()
    };
    let jsonl = export::json_lines(&export::events(&history));
    outside::read(&jsonl).expect("a well-formed history")
}

#[test]
fn a_read_called_as_a_write_returns_must_see_it() {
    // Client 1 reads at the instant client 0's write returned, and sees
    // nothing: not linearizable.
    let stale = [
        op(0, "k", (0, Some(10)), write("x")),
        op(1, "k", (10, Some(15)), read(None)),
        op(2, "j", (1, Some(2)), write("y")),
    ];
    assert_eq!(check_key(&stale[..2]), Verdict::NotLinearizable);
    let events = exported(&stale);
    let verdicts = outside::check(&events, false).unwrap();
    assert_eq!(verdicts["k"], false);
    assert_eq!(verdicts["j"], true);
    // Ordered by time with calls first at the tie, the two overlap and the
    // history is (wrongly) accepted: why the export carries `index`.
    let naive = outside::check(&outside::calls_first(&events), true).unwrap();
    assert_eq!(naive["k"], true);
}

#[test]
fn indeterminate_operations_scans_and_cas_are_judged_like_shoal_judges_them() {
    let cas = |expected: &'static str, new: &'static str, swapped| RegisterOp::Cas {
        expected: Some(Bytes::from(expected)),
        new: Some(Bytes::from(new)),
        swapped,
        current: None,
    };
    let fine = [
        op(0, "k", (0, Some(5)), write("a")),
        // Gave up: may or may not have happened; it did.
        op(1, "k", (6, None), write("b")),
        op(1, "k", (7, Some(9)), read(Some("b"))),
        op(2, "k", (10, Some(12)), cas("b", "c", Some(true))),
        op(2, "k", (12, Some(14)), cas("b", "d", Some(false))),
        // A scan: one read per key over one interval.
        op(0, "k", (15, Some(20)), read(Some("c"))),
        op(0, "j", (15, Some(20)), read(None)),
    ];
    let events = exported(&fine);
    assert!(outside::check(&events, false)
        .unwrap()
        .values()
        .all(|ok| *ok));
    // A swap from a value the register no longer held.
    let mut wrong = fine.to_vec();
    wrong.push(op(3, "k", (21, Some(22)), cas("a", "e", Some(true))));
    let verdicts = outside::check(&exported(&wrong), false).unwrap();
    assert_eq!(verdicts["k"], false);
}
