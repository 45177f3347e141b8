//! The names of things: replicas, groups and shards. Every layer uses them,
//! so they live at the bottom, with no logic beyond parsing and printing.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A replica's id, unique within its group.
pub type NodeId = u64;

/// A data group's number; 0 is never a data group (see [`GroupKey`]).
pub type GroupId = u64;

/// A shard's number, `0..shard_count`.
pub type ShardId = u32;

/// Where a member of a Raft group is reached: the address clients and
/// administrators dial, and the one its peers dial (Raft, shard transfer),
/// as etcd has client and peer URLs. The group's membership holds one per
/// replica.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The client address (`host:port`).
    pub addr: String,
    /// The peer address; empty when the member serves its peers on `addr`.
    pub peer_addr: String,
}

impl Member {
    /// A member reached at `addr` by clients and at `peer_addr` by peers
    /// (empty: at `addr` too).
    pub fn new(addr: impl Into<String>, peer_addr: impl Into<String>) -> Member {
        Member {
            addr: addr.into(),
            peer_addr: peer_addr.into(),
        }
    }

    /// The address its peers dial.
    pub fn peer_addr(&self) -> &str {
        if self.peer_addr.is_empty() {
            &self.addr
        } else {
            &self.peer_addr
        }
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.peer_addr.is_empty() {
            true => write!(f, "{}", self.addr),
            false => write!(f, "{} (peers: {})", self.addr, self.peer_addr),
        }
    }
}

/// Which Raft group a replica belongs to.
///
/// Written in configuration files and flags as a number: absent for a
/// standalone group, `0` for the shard controller, `N > 0` for data group
/// `N`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "u64", into = "u64")]
pub enum GroupKey {
    /// A lone group serving every key (no controller, no shards).
    #[default]
    Standalone,
    /// The shard controller's group.
    Controller,
    /// Data group `GroupId` (never 0).
    Data(GroupId),
}

impl GroupKey {
    /// The group written as `number`: 0 is the controller, any other a data
    /// group. (A standalone group has no number.)
    pub fn from_number(number: u64) -> GroupKey {
        match number {
            0 => GroupKey::Controller,
            group => GroupKey::Data(group),
        }
    }

    /// The group's number, as [`GroupKey::from_number`] reads it; `None`
    /// for a standalone group.
    pub fn number(self) -> Option<u64> {
        match self {
            GroupKey::Standalone => None,
            GroupKey::Controller => Some(0),
            GroupKey::Data(group) => Some(group),
        }
    }

    /// The data group's id, if this is one.
    pub fn data(self) -> Option<GroupId> {
        match self {
            GroupKey::Data(group) => Some(group),
            _ => None,
        }
    }
}

impl TryFrom<u64> for GroupKey {
    type Error = std::convert::Infallible;

    fn try_from(number: u64) -> Result<GroupKey, Self::Error> {
        Ok(GroupKey::from_number(number))
    }
}

impl From<GroupKey> for u64 {
    /// The group's number; a standalone group has none and is never
    /// written as one (configuration files omit the key).
    fn from(group: GroupKey) -> u64 {
        group
            .number()
            .expect("a standalone group is written by omitting its number")
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupKey::Standalone => write!(f, "standalone group"),
            GroupKey::Controller => write!(f, "shard controller"),
            GroupKey::Data(group) => write!(f, "group {group}"),
        }
    }
}

/// One replica of a cluster: its group and its id within the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaId {
    /// The replica's group.
    pub group: GroupKey,
    /// Its id within the group.
    pub node: NodeId,
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.group {
            GroupKey::Standalone => write!(f, "replica {}", self.node),
            group => write!(f, "{group} replica {}", self.node),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_numbers_round_trip() {
        for (number, key) in [
            (0, GroupKey::Controller),
            (1, GroupKey::Data(1)),
            (7, GroupKey::Data(7)),
        ] {
            assert_eq!(GroupKey::from_number(number), key);
            assert_eq!(key.number(), Some(number));
        }
        assert_eq!(GroupKey::Standalone.number(), None);
        assert_eq!(GroupKey::Data(3).data(), Some(3));
        assert_eq!(GroupKey::Controller.data(), None);
    }

    #[test]
    fn groups_and_replicas_print_for_people() {
        let replica = ReplicaId {
            group: GroupKey::Data(2),
            node: 3,
        };
        assert_eq!(replica.to_string(), "group 2 replica 3");
        assert_eq!(GroupKey::Controller.to_string(), "shard controller");
    }
}
