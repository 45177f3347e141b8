//! Cross-checks Shoal's linearizability checker against stateright's
//! `LinearizabilityTester` on generated register histories: both must give
//! the same verdict on every one, linearizable or not.
#![cfg(madsim)]

use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shoal_sim::check::linearizability::{check_key, Verdict};
use shoal_sim::history::{KeyedOp, RegisterOp};
use stateright::semantics::register::{Register, RegisterOp as SrOp, RegisterRet};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};

const VALUES: [&str; 3] = ["a", "b", "c"];

/// A random history of reads and writes by `clients` sequential clients.
/// Results come from a real register applied at random linearization points
/// inside each operation's interval, then some reads are perturbed.
fn history(rng: &mut ChaCha8Rng) -> Vec<KeyedOp> {
    let clients = rng.gen_range(1..=4u32);
    struct Planned {
        client: u32,
        call: u64,
        ret: u64,
        point: u64,
        write: Option<&'static str>,
        gave_up: bool,
    }
    let mut planned = Vec::new();
    for client in 0..clients {
        let mut time = rng.gen_range(0..5u64);
        for n in 0..rng.gen_range(1..=5) {
            let call = time;
            let ret = call + rng.gen_range(1..20u64);
            let point = rng.gen_range(call..=ret);
            let write = rng
                .gen_bool(0.5)
                .then(|| VALUES[rng.gen_range(0..VALUES.len())]);
            // Only a client's last operation can be left hanging.
            let gave_up = write.is_some() && n > 0 && rng.gen_bool(0.15);
            planned.push(Planned {
                client,
                call,
                ret,
                point,
                write,
                gave_up,
            });
            if gave_up {
                break;
            }
            time = ret + rng.gen_range(0..5u64);
        }
    }
    // Apply at the linearization points (a hanging write may never apply).
    let mut by_point: Vec<usize> = (0..planned.len()).collect();
    by_point.sort_by_key(|&i| (planned[i].point, i));
    let mut register: Option<&'static str> = None;
    let mut seen: Vec<Option<Option<&'static str>>> = vec![None; planned.len()];
    for i in by_point {
        let p = &planned[i];
        match p.write {
            Some(v) if !(p.gave_up && rng.gen_bool(0.5)) => register = Some(v),
            Some(_) => {}
            None => seen[i] = Some(register),
        }
    }
    planned
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let op = match p.write {
                Some(v) => RegisterOp::Write(Some(Bytes::from(v))),
                None => {
                    let mut value = seen[i].unwrap();
                    if rng.gen_bool(0.2) {
                        value = [None, Some("a"), Some("b"), Some("c")][rng.gen_range(0..4)];
                    }
                    RegisterOp::Read(Some(value.map(Bytes::from)))
                }
            };
            KeyedOp {
                client: p.client,
                key: Bytes::from("k"),
                op,
                call: Duration::from_millis(p.call),
                ret: (!p.gave_up).then(|| Duration::from_millis(p.ret)),
            }
        })
        .collect()
}

/// stateright's verdict on the same history.
fn reference(ops: &[KeyedOp]) -> bool {
    let mut events: Vec<(Duration, bool, usize)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        events.push((op.call, true, i));
        if let Some(ret) = op.ret {
            events.push((ret, false, i));
        }
    }
    events.sort_by_key(|(time, is_call, i)| (*time, *is_call, *i));
    let mut tester = LinearizabilityTester::new(Register(None::<Bytes>));
    for (_, is_call, i) in events {
        let op = &ops[i];
        match (&op.op, is_call) {
            (RegisterOp::Write(v), true) => {
                drop(tester.on_invoke(op.client, SrOp::Write(v.clone())))
            }
            (RegisterOp::Write(_), false) => {
                drop(tester.on_return(op.client, RegisterRet::WriteOk))
            }
            (RegisterOp::Read(_), true) => drop(tester.on_invoke(op.client, SrOp::Read)),
            (RegisterOp::Read(seen), false) => {
                drop(tester.on_return(op.client, RegisterRet::ReadOk(seen.clone().unwrap())))
            }
            (RegisterOp::Cas { .. } | RegisterOp::Delete { .. }, _) => {
                unreachable!("the reference register has no CAS and no delete answer")
            }
        }
    }
    tester.is_consistent()
}

#[test]
fn verdicts_agree_with_stateright() {
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let (mut linearizable, mut not) = (0, 0);
    for n in 0..3000 {
        let ops = history(&mut rng);
        let ours = check_key(&ops);
        let theirs = reference(&ops);
        assert_ne!(ours, Verdict::Unknown);
        assert_eq!(
            ours == Verdict::Linearizable,
            theirs,
            "history {n} disagrees: {ops:#?}"
        );
        if theirs {
            linearizable += 1;
        } else {
            not += 1;
        }
    }
    // Both kinds occurred in quantity, so agreement means something.
    assert!(
        linearizable > 500 && not > 500,
        "{linearizable} linearizable, {not} not"
    );
}
