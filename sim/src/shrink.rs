//! Shrinking a failing run: which simpler scenarios to try. The search
//! itself (`cargo replay --shrink`) is greedy: it runs these candidates, the
//! most promising first, each in a fresh process, keeps the first that still
//! fails the same checker, and starts over from it until none does.

use crate::run::ResultLine;
use crate::scenario::{Scenario, WorkloadKind};

/// A simpler variant of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// What was simplified, for people.
    pub what: String,
    /// The variant.
    pub scenario: Scenario,
}

/// Simpler variants of `s`, the most promising first: fewer fault events
/// (halves, then quarters, ... then single events), fewer clients and
/// operations, a shorter run, no disk faults, fault sites one by one, fewer
/// keys and liveness writes, shorter faults. Each differs from `s`.
pub fn candidates(s: &Scenario) -> Vec<Candidate> {
    let mut out = Candidates {
        base: s,
        out: Vec::new(),
    };
    out.without_faults();
    out.smaller_workload();
    out.push("no disk faults".to_string(), |c| c.faults.disk = None);
    for site in s.buggify.iter().flat_map(|b| &b.sites) {
        out.push(format!("without fault site {site}"), |c| {
            if let Some(b) = &mut c.buggify {
                b.sites.retain(|s| s != site);
            }
        });
    }
    if s.workload.kind != WorkloadKind::WriteOnce && s.workload.keys > 1 {
        out.push(format!("{} keys", s.workload.keys / 2), |c| {
            c.workload.keys /= 2;
        });
    }
    let live = s.checks.liveness_writes;
    if live > 0 {
        out.push(format!("{} liveness writes", live / 2), |c| {
            c.checks.liveness_writes = live / 2;
        });
    }
    out.push("every fault half as long".to_string(), |c| {
        for event in c.faults.schedule.iter_mut().flatten() {
            event.fault.halve_duration();
        }
    });
    out.out
}

/// Whether a run still fails the way the original did: `checker` tripped.
pub fn fails_the_same(result: &ResultLine, checker: &str) -> bool {
    result.checkers.iter().any(|c| c == checker)
}

/// The size of a run, for people.
pub fn size(s: &Scenario, r: &ResultLine) -> String {
    format!(
        "{} fault events, {} clients, {} operations, {:.1} simulated s",
        r.faults, s.workload.clients, r.operations, r.simulated_s
    )
}

struct Candidates<'a> {
    base: &'a Scenario,
    out: Vec<Candidate>,
}

impl Candidates<'_> {
    /// Adds the base changed by `change`, unless that changes nothing.
    fn push(&mut self, what: String, change: impl FnOnce(&mut Scenario)) {
        let mut scenario = self.base.clone();
        change(&mut scenario);
        if &scenario != self.base {
            self.out.push(Candidate { what, scenario });
        }
    }

    /// Without recorded fault events (halves first, down to single events),
    /// then without each fault still drawn from the seed (when the recorded
    /// schedule could not stand in for them).
    fn without_faults(&mut self) {
        let s = self.base;
        let events = s.faults.schedule.as_ref().map_or(0, Vec::len);
        let mut chunk = events.div_ceil(2);
        while chunk >= 1 {
            for from in (0..events).step_by(chunk) {
                let to = (from + chunk).min(events);
                self.push(format!("without fault events {}..{}", from + 1, to), |c| {
                    let events = c.faults.schedule.as_mut().expect("schedule");
                    events.drain(from..to);
                });
            }
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
        for i in 0..s.faults.kill.len() {
            self.push(format!("without kill event {}", i + 1), |c| {
                c.faults.kill.remove(i);
            });
        }
        for i in 0..s.faults.partition.len() {
            self.push(format!("without partition event {}", i + 1), |c| {
                c.faults.partition.remove(i);
            });
        }
        for i in 0..s.faults.membership.len() {
            self.push(format!("without membership event {}", i + 1), |c| {
                c.faults.membership.remove(i);
            });
        }
        if let Some(chaos) = &s.faults.chaos {
            self.push("without chaos".to_string(), |c| c.faults.chaos = None);
            let until = chaos.until_ms / 2;
            self.push(format!("chaos until {until} ms"), |c| {
                if let Some(chaos) = &mut c.faults.chaos {
                    chaos.until_ms = until;
                }
            });
        }
    }

    /// Fewer clients, fewer operations per client, fewer keys written, a
    /// shorter workload.
    fn smaller_workload(&mut self) {
        let s = self.base;
        let clients = s.workload.clients;
        let mut fewer: Vec<u32> = vec![1, clients / 2, clients - 1];
        fewer.retain(|n| (1..clients).contains(n));
        fewer.dedup();
        for n in fewer {
            self.push(format!("clients: {n} instead of {clients}"), |c| {
                c.workload.clients = n;
                if c.workload.kind == WorkloadKind::WriteOnce {
                    c.workload.keys = c.workload.keys.max(n);
                }
            });
        }
        if let Some(ops) = s.workload.ops_per_client {
            let mut fewer = vec![ops / 2, ops * 3 / 4, ops * 7 / 8, ops - 1];
            fewer.retain(|n| (1..ops).contains(n));
            fewer.dedup();
            for n in fewer {
                self.push(
                    format!("operations per client: {n} instead of {ops}"),
                    |c| {
                        c.workload.ops_per_client = Some(n);
                    },
                );
            }
        }
        if s.workload.kind == WorkloadKind::WriteOnce && s.workload.keys / 2 >= clients {
            self.push(format!("{} keys written", s.workload.keys / 2), |c| {
                c.workload.keys /= 2;
            });
        }
        if let Some(ms) = s.workload.duration_ms.filter(|ms| *ms > 1) {
            self.push(format!("workload for {} ms", ms / 2), |c| {
                c.workload.duration_ms = Some(ms / 2);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::schedule::{FaultAction, ScheduledFault};

    fn scenario(text: &str) -> Scenario {
        Scenario::parse(Path::new("s.toml"), text).unwrap()
    }

    fn whats(s: &Scenario) -> Vec<String> {
        candidates(s).into_iter().map(|c| c.what).collect()
    }

    const REGISTER: &str = r#"
        name = "t"
        [cluster]
        replicas = 3
        [workload]
        kind = "register"
        clients = 4
        keys = 4
        ops_per_client = 8
    "#;

    fn kill(at_ms: u64) -> ScheduledFault {
        ScheduledFault {
            at_ms,
            fault: FaultAction::Kill {
                replicas: vec![1],
                down_ms: 400,
            },
        }
    }

    #[test]
    fn fault_events_go_in_halves_then_one_by_one_before_anything_else() {
        let s = scenario(REGISTER).with_schedule(vec![kill(10), kill(20), kill(30)]);
        let all = candidates(&s);
        let first: Vec<&str> = all.iter().take(7).map(|c| c.what.as_str()).collect();
        assert_eq!(
            first,
            [
                "without fault events 1..2",
                "without fault events 3..3",
                "without fault events 1..1",
                "without fault events 2..2",
                "without fault events 3..3",
                "clients: 1 instead of 4",
                "clients: 2 instead of 4",
            ]
        );
        let kept = |c: &Candidate| -> Vec<u64> {
            let events = c.scenario.faults.schedule.as_ref().unwrap();
            events.iter().map(|e| e.at_ms).collect()
        };
        assert_eq!(kept(&all[0]), [30]);
        assert_eq!(kept(&all[3]), [10, 30]);
        let halved = all.last().unwrap();
        assert_eq!(halved.what, "every fault half as long");
        assert_eq!(halved.scenario.faults.schedule.as_ref().unwrap()[0], {
            let mut k = kill(10);
            k.fault.halve_duration();
            k
        });
    }

    #[test]
    fn fault_sites_are_dropped_one_at_a_time() {
        let s = scenario(&format!(
            "{REGISTER}\n[buggify]\nsites = [\"apply-delay\", \"reply-delay\"]"
        ));
        let without: Vec<Vec<String>> = candidates(&s)
            .into_iter()
            .filter(|c| c.what.starts_with("without fault site"))
            .map(|c| c.scenario.buggify.unwrap().sites)
            .collect();
        assert_eq!(without, [vec!["reply-delay"], vec!["apply-delay"]]);
    }

    #[test]
    fn the_workload_shrinks_in_steps_and_no_candidate_is_the_original() {
        let s = scenario(REGISTER);
        assert_eq!(
            whats(&s),
            [
                "clients: 1 instead of 4",
                "clients: 2 instead of 4",
                "clients: 3 instead of 4",
                "operations per client: 4 instead of 8",
                "operations per client: 6 instead of 8",
                "operations per client: 7 instead of 8",
                "2 keys",
                "10 liveness writes",
            ]
        );
        assert!(candidates(&s).iter().all(|c| c.scenario != s));
        let smallest = scenario(
            &REGISTER
                .replace("clients = 4", "clients = 1")
                .replace("keys = 4", "keys = 1")
                .replace("ops_per_client = 8", "ops_per_client = 1"),
        );
        let mut smallest = smallest;
        smallest.checks.liveness_writes = 0;
        assert!(candidates(&smallest).is_empty());
    }

    #[test]
    fn fewer_write_once_clients_still_have_a_key_each() {
        let s = scenario(
            r#"
            name = "t"
            [cluster]
            replicas = 3
            [workload]
            clients = 4
            keys = 4
            "#,
        );
        for c in candidates(&s) {
            let w = &c.scenario.workload;
            assert!(w.keys >= w.clients, "{}: {w:?}", c.what);
        }
        assert!(!whats(&s).iter().any(|w| w.ends_with("keys written")));
    }

    #[test]
    fn drawn_faults_and_chaos_are_dropped_one_at_a_time() {
        let s = scenario(&format!(
            "{REGISTER}\n[[faults.kill]]\ntarget = \"leader\"\nafter_acks = 3\ndown_ms = 5\n\
             [faults.chaos]\nevery_ms = 50\ndown_ms = 5\nuntil_ms = 1000"
        ));
        let all = whats(&s);
        assert_eq!(
            all[..3],
            [
                "without kill event 1",
                "without chaos",
                "chaos until 500 ms"
            ]
        );
    }

    #[test]
    fn a_run_fails_the_same_when_its_checker_trips() {
        let result = ResultLine {
            checkers: vec!["progress".into(), "durability".into()],
            ..ResultLine::default()
        };
        assert!(fails_the_same(&result, "durability"));
        assert!(!fails_the_same(&result, "linearizability"));
    }
}
