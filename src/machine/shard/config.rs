//! Numbered configurations: which group serves each shard, and who the
//! members of each group are. Configuration 0 has no groups and leaves every
//! shard unassigned; each Join, Leave or Move makes the next one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{GroupId, NodeId, ShardId};

/// "No group": the owner of an unassigned shard.
pub const NO_GROUP: GroupId = 0;

/// One configuration of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Its number; configurations are numbered 0, 1, 2, ... without gaps.
    pub num: u64,
    /// The group serving each shard (`shards[s]`), or [`NO_GROUP`].
    pub shards: Vec<GroupId>,
    /// Each group's members: node id → address.
    pub groups: BTreeMap<GroupId, BTreeMap<NodeId, String>>,
}

impl Config {
    /// Configuration 0 of a cluster with `shard_count` shards.
    pub fn initial(shard_count: u32) -> Config {
        Config {
            num: 0,
            shards: vec![NO_GROUP; shard_count as usize],
            groups: BTreeMap::new(),
        }
    }

    /// The number of shards.
    pub fn shard_count(&self) -> u32 {
        self.shards.len() as u32
    }

    /// The group serving `shard`, if any.
    pub fn owner(&self, shard: ShardId) -> Option<GroupId> {
        self.shards
            .get(shard as usize)
            .copied()
            .filter(|g| *g != NO_GROUP)
    }

    /// The shards `group` serves.
    pub fn shards_of(&self, group: GroupId) -> Vec<ShardId> {
        (0..self.shard_count())
            .filter(|s| self.shards[*s as usize] == group)
            .collect()
    }

    /// A table for people: one line per group with its shards.
    pub fn table(&self) -> String {
        let mut out = format!("config {}\n", self.num);
        for (group, members) in &self.groups {
            let shards = self.shards_of(*group);
            let addrs: Vec<String> = members.iter().map(|(id, a)| format!("{id}={a}")).collect();
            out += &format!(
                "  group {group}: {} shards {:?} members [{}]\n",
                shards.len(),
                shards,
                addrs.join(", ")
            );
        }
        let unassigned = self.shards_of(NO_GROUP);
        if !unassigned.is_empty() {
            out += &format!("  unassigned: {unassigned:?}\n");
        }
        out
    }
}
