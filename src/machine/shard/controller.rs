//! The shard controller's state machine: the history of configurations, and
//! the operations that make new ones. It runs as the state machine of its own
//! Raft group, so every replica computes the same configurations.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::assign::rebalance;
use super::config::Config;
use crate::ids::{GroupId, NodeId, ShardId};
use crate::runtime::{planted, PlantedBug};

/// An operation on the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerOp {
    /// Add groups (id → members) and rebalance.
    Join(BTreeMap<GroupId, BTreeMap<NodeId, String>>),
    /// Remove groups and rebalance.
    Leave(BTreeSet<GroupId>),
    /// Give one shard to one group (no rebalancing).
    Move {
        /// The shard.
        shard: ShardId,
        /// Its new group.
        group: GroupId,
    },
}

/// Why the controller refused an operation. Nothing changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ControllerError {
    /// Join named a group that is already in the configuration.
    #[error("group {0} has already joined")]
    AlreadyJoined(GroupId),
    /// The operation named a group that is not in the configuration.
    #[error("group {0} is not in the configuration")]
    UnknownGroup(GroupId),
    /// Group 0 means "no group" and cannot join.
    #[error("group 0 is reserved")]
    ReservedGroup,
    /// A group must have at least one member.
    #[error("group {0} has no members")]
    NoMembers(GroupId),
    /// The shard does not exist.
    #[error("shard {shard} does not exist (the cluster has {count})")]
    NoSuchShard {
        /// The shard named.
        shard: ShardId,
        /// How many shards there are.
        count: u32,
    },
    /// The operation names no group at all.
    #[error("no groups given")]
    NoGroups,
    /// Leave would remove every group, leaving the data nowhere to live.
    #[error("at least one group must remain")]
    LastGroups,
}

/// Every configuration so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerState {
    configs: Vec<Config>,
}

impl ControllerState {
    /// A controller for a cluster of `shard_count` shards, at configuration 0.
    pub fn new(shard_count: u32) -> ControllerState {
        ControllerState {
            configs: vec![Config::initial(shard_count)],
        }
    }

    /// The latest configuration.
    pub fn latest(&self) -> &Config {
        self.configs.last().expect("configuration 0 always exists")
    }

    /// Configuration `num`, or the latest if `num` is `None` or beyond it.
    pub fn query(&self, num: Option<u64>) -> &Config {
        match num {
            Some(num) if (num as usize) < self.configs.len() => &self.configs[num as usize],
            _ => self.latest(),
        }
    }

    /// Applies an operation, making the next configuration; returns its number.
    pub fn apply(&mut self, op: &ControllerOp) -> Result<u64, ControllerError> {
        let mut next = self.latest().clone();
        next.num += 1;
        match op {
            ControllerOp::Join(groups) => {
                if groups.is_empty() {
                    return Err(ControllerError::NoGroups);
                }
                for (group, members) in groups {
                    if *group == 0 {
                        return Err(ControllerError::ReservedGroup);
                    }
                    if next.groups.contains_key(group) {
                        return Err(ControllerError::AlreadyJoined(*group));
                    }
                    if members.is_empty() {
                        return Err(ControllerError::NoMembers(*group));
                    }
                }
                next.groups.extend(groups.clone());
                next.shards = rebalance(&next.shards, &next.groups.keys().copied().collect());
            }
            ControllerOp::Leave(groups) => {
                if groups.is_empty() {
                    return Err(ControllerError::NoGroups);
                }
                if let Some(unknown) = groups.iter().find(|g| !next.groups.contains_key(g)) {
                    return Err(ControllerError::UnknownGroup(*unknown));
                }
                if groups.len() == next.groups.len() {
                    return Err(ControllerError::LastGroups);
                }
                next.groups.retain(|g, _| !groups.contains(g));
                next.shards = rebalance(&next.shards, &next.groups.keys().copied().collect());
            }
            ControllerOp::Move { shard, group } => {
                let count = next.shard_count();
                if *shard >= count {
                    return Err(ControllerError::NoSuchShard {
                        shard: *shard,
                        count,
                    });
                }
                if !next.groups.contains_key(group) {
                    return Err(ControllerError::UnknownGroup(*group));
                }
                if !planted(PlantedBug::ControllerIgnoresMove) {
                    next.shards[*shard as usize] = *group;
                }
            }
        }
        let num = next.num;
        self.configs.push(next);
        Ok(num)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(id: NodeId) -> BTreeMap<NodeId, String> {
        BTreeMap::from([(id, format!("10.0.{id}.1:7000"))])
    }

    fn join(groups: &[GroupId]) -> ControllerOp {
        ControllerOp::Join(groups.iter().map(|g| (*g, members(*g))).collect())
    }

    #[test]
    fn assignment_tables() {
        let mut controller = ControllerState::new(16);
        let steps = [
            join(&[1]),
            join(&[2, 3]),
            ControllerOp::Move { shard: 1, group: 3 },
            join(&[4]),
            ControllerOp::Leave([2].into()),
            ControllerOp::Leave([1, 3].into()),
        ];
        let mut tables = String::new();
        for step in &steps {
            controller.apply(step).unwrap();
            tables += &controller.latest().table();
        }
        insta::assert_snapshot!(tables);
    }

    #[test]
    fn bad_operations_are_refused_and_change_nothing() {
        let mut controller = ControllerState::new(8);
        controller.apply(&join(&[1])).unwrap();
        let before = controller.clone();
        assert_eq!(
            controller.apply(&join(&[1])),
            Err(ControllerError::AlreadyJoined(1))
        );
        assert_eq!(
            controller.apply(&join(&[0])),
            Err(ControllerError::ReservedGroup)
        );
        assert_eq!(
            controller.apply(&ControllerOp::Leave([5].into())),
            Err(ControllerError::UnknownGroup(5))
        );
        assert_eq!(
            controller.apply(&ControllerOp::Leave([1].into())),
            Err(ControllerError::LastGroups)
        );
        assert_eq!(
            controller.apply(&ControllerOp::Move { shard: 8, group: 1 }),
            Err(ControllerError::NoSuchShard { shard: 8, count: 8 })
        );
        assert_eq!(
            controller.apply(&ControllerOp::Join(BTreeMap::from([(2, BTreeMap::new())]))),
            Err(ControllerError::NoMembers(2))
        );
        assert_eq!(controller, before);
        assert_eq!(controller.query(Some(0)).num, 0);
        assert_eq!(controller.query(Some(99)).num, 1);
        assert_eq!(controller.query(None).num, 1);
    }

    #[test]
    fn every_replica_computes_the_same_configurations() {
        let ops = [
            join(&[5, 9]),
            join(&[2]),
            ControllerOp::Leave([9].into()),
            join(&[7, 1]),
        ];
        let mut a = ControllerState::new(64);
        let mut b = ControllerState::new(64);
        for op in &ops {
            a.apply(op).unwrap();
        }
        for op in &ops {
            b.apply(&op.clone()).unwrap();
        }
        assert_eq!(a, b);
    }
}
