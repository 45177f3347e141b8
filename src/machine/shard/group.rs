//! A data group's view of sharding, replicated through its own Raft log: the
//! configuration it has adopted, and where each of its shards stands in
//! moving in or out.
//!
//! A group adopts configurations one at a time, in order, and only once every
//! move of the previous one is complete. When it adopts configuration `n`:
//! - a shard it keeps goes on serving;
//! - a shard it gains from nobody (it was unassigned) serves at once, empty;
//! - a shard it gains from group `g` is [`ShardStatus::Pulling`] until its data
//!   (with the de-duplication entries) arrives from `g`, then serves, and is
//!   [`ShardStatus::Handover`] until `g` confirms it dropped its copy;
//! - a shard it loses is [`ShardStatus::Leaving`]: not served, kept until the
//!   new owner confirms it has the data, then dropped.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::Config;
use crate::ids::{GroupId, ShardId};
use crate::runtime::{planted, PlantedBug};

/// Where one of a group's shards stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardStatus {
    /// Owned and served.
    Serving,
    /// Owned, waiting for its data from the previous owner; not served yet.
    Pulling {
        /// The previous owner.
        from: GroupId,
    },
    /// Owned and served; the previous owner must still be told to drop it.
    Handover {
        /// The previous owner.
        from: GroupId,
    },
    /// Given away: not served; kept until the new owner has it.
    Leaving {
        /// The new owner.
        to: GroupId,
    },
}

/// A data group's sharding state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupShards {
    /// This group.
    pub group: GroupId,
    /// The configuration adopted last.
    pub config: Config,
    /// The one before it (to find the groups shards come from).
    pub previous: Option<Config>,
    /// Status of every shard this group owns or is giving away.
    pub status: BTreeMap<ShardId, ShardStatus>,
}

impl GroupShards {
    /// A new group, at configuration 0 (owning nothing).
    pub fn new(group: GroupId, shard_count: u32) -> GroupShards {
        GroupShards {
            group,
            config: Config::initial(shard_count),
            previous: None,
            status: BTreeMap::new(),
        }
    }

    /// Whether the group serves `shard` now.
    pub fn serves(&self, shard: ShardId) -> bool {
        match self.status.get(&shard) {
            Some(ShardStatus::Serving | ShardStatus::Handover { .. }) => true,
            Some(ShardStatus::Leaving { .. }) => planted(PlantedBug::ServeWhileLeaving),
            _ => false,
        }
    }

    /// Whether every move of the current configuration is complete.
    pub fn settled(&self) -> bool {
        self.status.values().all(|s| *s == ShardStatus::Serving)
    }

    /// Adopts `next` if it is the next configuration and the current one is
    /// settled; returns whether it did.
    pub fn reconfigure(&mut self, next: &Config) -> bool {
        if next.num != self.config.num + 1 || !self.settled() {
            return false;
        }
        let me = self.group;
        let mut status = BTreeMap::new();
        for shard in 0..next.shard_count() {
            let before = self.config.owner(shard);
            let after = next.owner(shard);
            let s = match (before == Some(me), after == Some(me)) {
                (true, true) => ShardStatus::Serving,
                (false, true) => match before {
                    None => ShardStatus::Serving,
                    Some(from) => ShardStatus::Pulling { from },
                },
                (true, false) => ShardStatus::Leaving {
                    // The controller never leaves a shard without a group
                    // once one has joined.
                    to: after.expect("a shard leaves for another group, never for none"),
                },
                (false, false) => continue,
            };
            status.insert(shard, s);
        }
        self.previous = Some(std::mem::replace(&mut self.config, next.clone()));
        self.status = status;
        true
    }

    /// Whether the group is giving `shard` away at configuration `num`, so
    /// that its new owner may take the data.
    pub fn giving_away(&self, num: u64, shard: ShardId) -> bool {
        num == self.config.num
            && matches!(self.status.get(&shard), Some(ShardStatus::Leaving { .. }))
    }

    /// Whether the group waits for `shard`'s data at configuration `num`.
    pub fn pulling(&self, num: u64, shard: ShardId) -> bool {
        num == self.config.num
            && matches!(self.status.get(&shard), Some(ShardStatus::Pulling { .. }))
    }

    /// Marks a pulled shard as received at configuration `num`; returns
    /// whether its data should be installed (false for a duplicate).
    pub fn received(&mut self, num: u64, shard: ShardId) -> bool {
        match self.status.get(&shard) {
            Some(ShardStatus::Pulling { from }) if num == self.config.num => {
                let from = *from;
                self.status.insert(shard, ShardStatus::Handover { from });
                true
            }
            _ => false,
        }
    }

    /// Drops a shard the new owner has, at configuration `num`; returns
    /// whether its data should be deleted now.
    pub fn dropped(&mut self, num: u64, shard: ShardId) -> bool {
        match self.status.get(&shard) {
            Some(ShardStatus::Leaving { .. }) if num == self.config.num => {
                self.status.remove(&shard);
                true
            }
            _ => false,
        }
    }

    /// Notes that the previous owner dropped a shard at configuration `num`.
    pub fn handed_over(&mut self, num: u64, shard: ShardId) {
        if let Some(ShardStatus::Handover { .. }) = self.status.get(&shard) {
            if num == self.config.num {
                self.status.insert(shard, ShardStatus::Serving);
            }
        }
    }

    /// Where the group of a shard being pulled can be reached.
    pub fn members_of(&self, group: GroupId) -> Vec<String> {
        let previous = self.previous.as_ref().unwrap_or(&self.config);
        previous
            .groups
            .get(&group)
            .or_else(|| self.config.groups.get(&group))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(num: u64, shards: &[GroupId]) -> Config {
        let groups = shards
            .iter()
            .filter(|g| **g != 0)
            .map(|g| (*g, BTreeMap::from([(*g, format!("g{g}"))])))
            .collect();
        Config {
            num,
            shards: shards.to_vec(),
            groups,
        }
    }

    #[test]
    fn a_move_runs_pull_install_drop_handover() {
        let mut old = GroupShards::new(1, 2);
        let mut new = GroupShards::new(2, 2);
        // Config 1: group 1 gets both shards from nobody: serves at once.
        assert!(old.reconfigure(&config(1, &[1, 1])));
        assert!(old.serves(0) && old.serves(1) && old.settled());
        assert!(new.reconfigure(&config(1, &[1, 1])));
        // Config 2: shard 1 moves to group 2.
        let two = config(2, &[1, 2]);
        assert!(old.reconfigure(&two) && new.reconfigure(&two));
        assert!(
            old.serves(0) && !old.serves(1),
            "the old owner stops serving at once"
        );
        assert!(!new.serves(1), "the new owner waits for the data");
        assert!(
            !new.reconfigure(&config(3, &[2, 2])),
            "no new config while a move is open"
        );
        assert!(old.giving_away(2, 1), "the new owner may pull shard 1");
        assert!(
            !old.giving_away(1, 1),
            "only at the configuration it moves in"
        );
        assert!(!old.giving_away(2, 0), "shard 0 stays");
        assert!(!new.received(1, 1), "a stale install is refused");
        assert!(new.received(2, 1) && new.serves(1));
        assert!(!new.received(2, 1), "a duplicate install is refused");
        assert!(old.dropped(2, 1) && !old.dropped(2, 1));
        assert!(!old.giving_away(2, 1), "dropped: nothing left to give");
        new.handed_over(2, 1);
        assert!(new.settled() && old.settled());
        assert_eq!(new.members_of(1), vec!["g1".to_string()]);
    }
}
