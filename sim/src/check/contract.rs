//! The API's contract on each answer, whatever the order of events: what
//! no interleaving can explain (a scan returning a key outside its range,
//! out of order, twice, or past its limit; a configuration answering a
//! change without it). The workloads and the nemesis check each answer as
//! it arrives and record breaches in the history.

use shoal::machine::shard::config::Config;
use shoal::machine::shard::controller::ControllerOp;

use super::{Checker, OpId, Violation};
use crate::history::{client_name, History};

/// Whether the controller must accept `op` when `latest` is its newest
/// configuration: a join of groups not in it, a leave of some of its groups
/// (not all), a move of one of its shards to one of its groups.
pub fn valid_change(op: &ControllerOp, latest: &Config) -> bool {
    match op {
        ControllerOp::Join(groups) => {
            !groups.is_empty()
                && groups.iter().all(|(g, members)| {
                    *g != 0 && !members.is_empty() && !latest.groups.contains_key(g)
                })
        }
        ControllerOp::Leave(groups) => {
            !groups.is_empty()
                && groups.iter().all(|g| latest.groups.contains_key(g))
                && groups.len() < latest.groups.len()
        }
        ControllerOp::Move { shard, group } => {
            *shard < latest.shard_count() && latest.groups.contains_key(group)
        }
    }
}

/// What the configuration answering `op` breaks of its contract, if
/// anything: the change must be in it (joined groups with their members,
/// left groups gone and owning nothing, a moved shard with its new group),
/// every shard must belong to a group of it, a join or leave must leave the
/// groups balanced (shard counts differing by at most one), and its number
/// must follow `previous`, the number of the configuration the last change
/// answered.
pub fn config_breach(op: &ControllerOp, answer: &Config, previous: u64) -> Option<String> {
    if answer.num <= previous {
        return Some(format!(
            "{op:?} answered configuration {} after configuration {previous}",
            answer.num
        ));
    }
    let missing = match op {
        ControllerOp::Join(groups) => groups
            .iter()
            .find(|(g, members)| answer.groups.get(g) != Some(members))
            .map(|(g, _)| format!("group {g} with its members")),
        ControllerOp::Leave(groups) => groups
            .iter()
            .find(|g| answer.groups.contains_key(g) || !answer.shards_of(**g).is_empty())
            .map(|g| format!("group {g} gone")),
        ControllerOp::Move { shard, group } => (answer.owner(*shard) != Some(*group))
            .then(|| format!("shard {shard} owned by group {group}")),
    };
    if let Some(missing) = missing {
        return Some(format!(
            "{op:?} answered configuration {} without {missing}",
            answer.num
        ));
    }
    let orphan = (0..answer.shard_count()).find(|s| {
        answer
            .owner(*s)
            .is_none_or(|g| !answer.groups.contains_key(&g))
    });
    if let Some(s) = orphan {
        return Some(format!(
            "{op:?} answered configuration {} with shard {s} owned by no group of it",
            answer.num
        ));
    }
    let counts: Vec<usize> = answer
        .groups
        .keys()
        .map(|g| answer.shards_of(*g).len())
        .collect();
    let (least, most) = (counts.iter().min()?, counts.iter().max()?);
    let rebalanced = !matches!(op, ControllerOp::Move { .. });
    (rebalanced && most - least > 1).then(|| {
        format!(
            "{op:?} answered configuration {} with groups holding {least} to {most} shards",
            answer.num
        )
    })
}

/// Fails on the first recorded breach, blaming every breaching call.
pub fn check(history: &History) -> Result<(), Violation> {
    let Some(first) = history.breaches.first() else {
        return Ok(());
    };
    Err(Violation {
        checker: Checker::ApiContract,
        detail: format!(
            "client {} at {:?}: {} ({} answers broke the contract)",
            client_name(first.client),
            first.call,
            first.what,
            history.breaches.len()
        ),
        blamed: history
            .breaches
            .iter()
            .map(|b| OpId {
                client: b.client,
                call: b.call,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::register::scan_breach;
    use bytes::Bytes;
    use shoal::machine::shard::controller::ControllerState;

    fn entries(keys: &[&str]) -> Vec<(Bytes, Bytes)> {
        keys.iter()
            .map(|k| (Bytes::copy_from_slice(k.as_bytes()), Bytes::from("v")))
            .collect()
    }

    #[test]
    fn a_scan_answer_must_keep_to_its_range_order_and_limit() {
        let check = |keys: &[&str], limit| scan_breach(&entries(keys), b"b", b"e", limit);
        assert_eq!(check(&["b", "c", "d"], 3), None);
        assert_eq!(check(&[], 3), None);
        assert!(
            check(&["b", "e"], 3).unwrap().contains("returned e"),
            "end is excluded"
        );
        assert!(check(&["a", "b"], 3).unwrap().contains("returned a"));
        assert!(check(&["c", "b"], 3).unwrap().contains("c before b"));
        assert!(check(&["c", "c"], 3).unwrap().contains("c before c"));
        assert!(check(&["b", "c", "d"], 2).unwrap().contains("limit of 2"));
        assert_eq!(
            scan_breach(&entries(&["z"]), b"b", b"", 3),
            None,
            "empty end: no end"
        );
    }

    #[test]
    fn breaches_fail_the_run_and_are_blamed() {
        let mut history = History::default();
        assert_eq!(check(&history), Ok(()));
        history.breaches.push(crate::history::Breach {
            client: 2,
            call: std::time::Duration::from_millis(5),
            what: "scan of [b, e) returned e".into(),
        });
        let violation = check(&history).unwrap_err();
        assert_eq!(violation.checker, Checker::ApiContract);
        assert_eq!(violation.blamed.len(), 1);
    }

    #[test]
    fn a_configuration_must_carry_the_change_it_answers() {
        let members = |n: u64| [(n, format!("n{n}"))].into_iter().collect();
        let mut controller = ControllerState::new(4);
        let join = ControllerOp::Join([(1, members(1)), (2, members(2))].into());
        controller.apply(&join).unwrap();
        let joined = controller.latest().clone();
        assert_eq!(config_breach(&join, &joined, 0), None);
        let stale = config_breach(&join, &joined, joined.num).unwrap();
        assert!(stale.contains("after configuration"), "{stale}");

        let shard = joined.shards_of(1)[0];
        let moved = ControllerOp::Move { shard, group: 2 };
        controller.apply(&moved).unwrap();
        assert_eq!(config_breach(&moved, controller.latest(), joined.num), None);
        let ignored = config_breach(
            &moved,
            &Config {
                num: 2,
                ..joined.clone()
            },
            1,
        )
        .unwrap();
        assert!(
            ignored.contains(&format!("shard {shard} owned by group 2")),
            "{ignored}"
        );

        let leave = ControllerOp::Leave([2].into());
        controller.apply(&leave).unwrap();
        assert_eq!(config_breach(&leave, controller.latest(), 2), None);
        let mut kept = controller.latest().clone();
        kept.shards[0] = 2;
        assert!(config_breach(&leave, &kept, 2)
            .unwrap()
            .contains("group 2 gone"));
        let mut lopsided = controller.latest().clone();
        lopsided.groups.insert(3, members(3));
        lopsided.shards[1] = 3;
        let join = ControllerOp::Join([(3, members(3))].into());
        let unbalanced = config_breach(&join, &lopsided, 2).unwrap();
        assert!(unbalanced.contains("holding 1 to 3 shards"), "{unbalanced}");
        let mut orphaned = controller.latest().clone();
        orphaned.shards[1] = 7;
        let orphan = config_breach(&leave, &orphaned, 2).unwrap();
        assert!(orphan.contains("owned by no group"), "{orphan}");
    }

    #[test]
    fn a_valid_change_is_one_the_controller_accepts() {
        let members = |n: u64| [(n, format!("n{n}"))].into_iter().collect();
        let mut controller = ControllerState::new(4);
        let ops = [
            ControllerOp::Join([(1, members(1))].into()),
            ControllerOp::Join([(1, members(1))].into()),
            ControllerOp::Join([(2, members(2))].into()),
            ControllerOp::Move { shard: 3, group: 2 },
            ControllerOp::Move { shard: 4, group: 2 },
            ControllerOp::Move { shard: 0, group: 9 },
            ControllerOp::Leave([9].into()),
            ControllerOp::Leave([1, 2].into()),
            ControllerOp::Leave([1].into()),
            ControllerOp::Leave([2].into()),
        ];
        for op in ops {
            let valid = valid_change(&op, controller.latest());
            assert_eq!(controller.apply(&op).is_ok(), valid, "{op:?}");
        }
    }
}
