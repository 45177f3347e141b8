//! Shard safety: no shard is ever served by two groups in the same
//! configuration, every move completes, and a group that gave a shard away
//! keeps none of its data (garbage collection).
//!
//! An [`Observer`] samples every replica's applied state throughout the run,
//! noting which group served which shard under which configuration number.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal::ids::{GroupId, ShardId};
use shoal::machine::{Applied, Role};

use super::{Checker, Violation};
use crate::cluster::Cluster;

/// (configuration number, shard) → the groups seen serving it.
pub type Serving = BTreeMap<(u64, ShardId), BTreeSet<GroupId>>;

/// How often replicas are sampled.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(20);

/// Notes what `applied` serves.
pub fn observe(applied: &Applied, serving: &mut Serving) {
    if let Role::Data(group) = &applied.role {
        for shard in 0..group.config.shard_count() {
            if group.serves(shard) {
                serving
                    .entry((group.config.num, shard))
                    .or_default()
                    .insert(group.group);
            }
        }
    }
}

/// Checks that no shard was served by two groups under one configuration.
pub fn check_serving(serving: &Serving) -> Result<(), Violation> {
    match serving.iter().find(|(_, groups)| groups.len() > 1) {
        None => Ok(()),
        Some(((num, shard), groups)) => Err(Violation {
            blamed: Vec::new(),
            checker: Checker::ShardSafety,
            detail: format!("shard {shard} was served by groups {groups:?} in configuration {num}"),
        }),
    }
}

/// Checks a data group's final state: every move done, no data of shards it
/// does not serve.
pub fn check_final(applied: &Applied) -> Result<(), Violation> {
    let Role::Data(group) = &applied.role else {
        return Ok(());
    };
    if !group.settled() {
        return Err(Violation {
            blamed: Vec::new(),
            checker: Checker::ShardSafety,
            detail: format!(
                "group {} never finished the moves of configuration {}: {:?}",
                group.group, group.config.num, group.status
            ),
        });
    }
    let stray: BTreeSet<ShardId> = applied
        .kv
        .data
        .shards()
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !group.serves(*s))
        .collect();
    if stray.is_empty() {
        return Ok(());
    }
    Err(Violation {
        blamed: Vec::new(),
        checker: Checker::ShardSafety,
        detail: format!(
            "group {} still holds data of shards it gave away: {stray:?}",
            group.group
        ),
    })
}

/// Samples every replica during a run.
pub struct Observer {
    serving: Arc<Mutex<Serving>>,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    /// Starts sampling `cluster`.
    pub fn start(cluster: &Cluster) -> Observer {
        let serving: Arc<Mutex<Serving>> = Arc::default();
        let probes = cluster.probes();
        let sink = serving.clone();
        let task = tokio::spawn(async move {
            loop {
                for probe in &probes {
                    probe.with(|applied| observe(applied, &mut sink.lock().expect("serving lock")));
                }
                tokio::time::sleep(SAMPLE_INTERVAL).await;
            }
        });
        Observer { serving, task }
    }

    /// Stops sampling and checks what was seen and where things ended.
    pub fn check(self, cluster: &Cluster) -> Result<(), Violation> {
        self.task.abort();
        check_serving(&self.serving.lock().expect("serving lock"))?;
        for group in cluster.groups() {
            for id in cluster.voters_of(group) {
                check_final(&cluster.applied(id))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal::machine::command::{DataOp, WriteId};
    use shoal::machine::data::Empty;
    use shoal::machine::shard::config::Config;
    use shoal::machine::shard::group::GroupShards;
    use shoal::machine::shard::shard_of;
    use shoal::machine::Head;
    use std::sync::Arc;

    fn serving_group(group: GroupId, owners: &[GroupId]) -> Applied {
        let mut shards = GroupShards::new(group, owners.len() as u32);
        let groups = owners
            .iter()
            .map(|g| (*g, BTreeMap::from([(1, format!("g{g}"))])))
            .collect();
        assert!(shards.reconfigure(&Config {
            num: 1,
            shards: owners.to_vec(),
            groups
        }));
        let head = Head {
            role: Role::Data(shards),
            ..Head::default()
        };
        Applied::restore(head, BTreeMap::new(), Arc::new(Empty))
    }

    #[test]
    fn catches_a_double_owned_shard() {
        let mut serving = Serving::new();
        observe(&serving_group(1, &[1, 2]), &mut serving);
        observe(&serving_group(2, &[1, 2]), &mut serving);
        assert_eq!(check_serving(&serving), Ok(()));
        // A buggy group 2 that believes it owns shard 0 in the same config.
        observe(&serving_group(2, &[2, 2]), &mut serving);
        let violation = check_serving(&serving).unwrap_err();
        assert_eq!(violation.checker, Checker::ShardSafety);
        assert!(
            violation
                .detail
                .contains("shard 0 was served by groups {1, 2}"),
            "{}",
            violation.detail
        );
    }

    #[test]
    fn catches_data_left_behind() {
        let mut applied = serving_group(1, &[1, 2]);
        assert_eq!(check_final(&applied), Ok(()));
        // Find a key of shard 1 (served by group 2) and leave it in group 1.
        let key = (0..)
            .map(|i| format!("k{i}"))
            .find(|k| shard_of(k.as_bytes(), 2) == 1)
            .unwrap();
        let id = Some(WriteId {
            client_id: 1,
            seq: 1,
            opened_at: 1,
        });
        let put = DataOp::Put {
            key: key.into(),
            value: "v".into(),
        };
        applied.kv.apply(id, 1, &put, &Default::default());
        let violation = check_final(&applied).unwrap_err();
        assert!(
            violation
                .detail
                .contains("still holds data of shards it gave away: {1}"),
            "{}",
            violation.detail
        );
    }
}
