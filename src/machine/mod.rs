//! The replicated state machine, free of I/O: what every replica of a group
//! holds ([`Applied`]) and how a committed [`Command`] changes it.
//!
//! - [`command`]: the log's commands and their results;
//! - [`kv`]: the data and the client de-duplication table;
//! - [`session`]: the de-duplication table's sessions, the group clock and
//!   their bounded, deterministic expiry;
//! - [`shard`]: the shard function, the controller's configurations and a
//!   data group's shard moves.
//!
//! Every replica applies the same commands in the same order and so reaches
//! the same state: this module is a pure function of its inputs (no clock,
//! no randomness, no unordered iteration).

pub mod command;
pub mod data;
pub mod kv;
pub mod session;
pub mod shard;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use openraft::{LogId, StoredMembership};
use serde::{Deserialize, Serialize};

use crate::error::KvError;
use crate::ids::{GroupKey, Member, NodeId, ShardId};
use crate::runtime::{planted, PlantedBug};
use command::{Command, CommandResult, Outcome};
use data::{Data, DataFault, DataSource, Empty};
use kv::{KvState, Session};
use session::{SessionLimits, Sessions};
use shard::controller::ControllerState;
use shard::group::GroupShards;
use shard::{shard_of, ShardOp};

/// Everything a replica has applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The last log entry applied.
    pub last_applied: Option<LogId<NodeId>>,
    /// The membership as of `last_applied`.
    pub membership: StoredMembership<NodeId, Member>,
    /// The data and the de-duplication table.
    pub kv: KvState,
    /// What the group is for, with its sharding state.
    pub role: Role,
}

/// A group's role with its replicated sharding state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Serves every key.
    #[default]
    Standalone,
    /// The shard controller.
    Controller(ControllerState),
    /// A data group.
    Data(GroupShards),
}

/// What a replica has applied besides its data and its sessions' table:
/// storage keeps it with them and commits all three together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// The last log entry applied.
    pub last_applied: Option<LogId<NodeId>>,
    /// The membership as of `last_applied`.
    pub membership: StoredMembership<NodeId, Member>,
    /// The group's role with its sharding state.
    pub role: Role,
    /// The group clock.
    pub clock: u64,
    /// The sessions' eviction horizon.
    pub expired_through: u64,
}

impl Role {
    /// Shards the group's keys are spread over (1: one shard holds all).
    pub fn shard_count(&self) -> u32 {
        match self {
            Role::Data(group) => group.config.shard_count(),
            Role::Standalone | Role::Controller(_) => 1,
        }
    }

    /// The empty role of `group` in a cluster of `shard_count` shards.
    pub fn new(group: GroupKey, shard_count: u32) -> Role {
        match group {
            GroupKey::Standalone => Role::Standalone,
            GroupKey::Controller => Role::Controller(ControllerState::new(shard_count)),
            GroupKey::Data(group) => Role::Data(GroupShards::new(group, shard_count)),
        }
    }
}

/// The keys and values of one shard, and the de-duplication table that goes
/// with them when the shard moves to another group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardData {
    /// The shard's keys and values.
    pub data: Vec<(Bytes, Bytes)>,
    /// The previous owner's live sessions.
    pub sessions: std::collections::BTreeMap<u64, Session>,
    /// The previous owner's eviction horizon: a session it evicted may have
    /// written into the shard, so the new owner must refuse it too.
    pub expired_through: u64,
    /// Whether this part ends the shard; only the last part carries the
    /// sessions and the horizon.
    pub complete: bool,
}

impl ShardData {
    /// The log command that installs this shard, received at configuration
    /// `num`.
    pub fn install(self, num: u64, shard: ShardId) -> ShardOp {
        if !self.complete {
            return ShardOp::InstallPart {
                num,
                shard,
                data: self.data,
            };
        }
        ShardOp::Install {
            num,
            shard,
            data: self.data,
            sessions: self.sessions,
            expired_through: self.expired_through,
        }
    }
}

/// One group's answer to a scan: the entries found, and the requested shards
/// it served.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanPart {
    /// Keys in the range of the served shards, in order, at most the limit.
    pub entries: Vec<(Bytes, Bytes)>,
    /// The requested shards this group serves (a standalone group echoes
    /// the request).
    pub served: Vec<ShardId>,
}

impl Applied {
    /// The empty state of `group`.
    pub fn new(group: GroupKey, shard_count: u32) -> Applied {
        let role = Role::new(group, shard_count);
        Applied::restore(
            Head {
                role,
                ..Head::default()
            },
            BTreeMap::new(),
            Arc::new(Empty),
        )
    }

    /// The state storage holds: its head, sessions and data.
    pub fn restore(
        head: Head,
        sessions: BTreeMap<u64, Session>,
        data: Arc<dyn DataSource>,
    ) -> Applied {
        let Head {
            last_applied,
            membership,
            role,
            clock,
            expired_through,
        } = head;
        let kv = KvState::new(
            Data::new(data, role.shard_count()),
            Sessions::from_parts(sessions, clock, expired_through),
        );
        Applied {
            last_applied,
            membership,
            kv,
            role,
        }
    }

    /// The head: everything but the data and the sessions' table.
    pub fn head(&self) -> Head {
        Head {
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            role: self.role.clone(),
            clock: self.kv.sessions.clock(),
            expired_through: self.kv.sessions.expired_through(),
        }
    }

    /// Whether this group serves `key` now; if not, its configuration number.
    pub fn serves(&self, key: &[u8]) -> Result<(), u64> {
        match &self.role {
            Role::Standalone => Ok(()),
            Role::Controller(c) => Err(c.latest().num),
            Role::Data(g) => {
                let shard = shard_of(key, g.config.shard_count());
                if g.serves(shard) {
                    Ok(())
                } else {
                    Err(g.config.num)
                }
            }
        }
    }

    /// Reads `key`, if this group serves it.
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        self.serves(key)
            .map_err(|config_num| KvError::WrongGroup { config_num })?;
        self.kv.get(key).map_err(unavailable)
    }

    /// Keys in `[start, end)` (`end` empty: to the end) of the requested
    /// `shards` this group serves, in order, at most `limit`: reads at most
    /// `limit` keys of each shard.
    pub fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: u32,
        shards: &[ShardId],
    ) -> Result<ScanPart, KvError> {
        let (served, read): (Vec<ShardId>, Vec<ShardId>) = match &self.role {
            Role::Standalone => (shards.to_vec(), vec![0]),
            Role::Controller(_) => (Vec::new(), Vec::new()),
            Role::Data(group) => {
                let served: Vec<ShardId> = shards
                    .iter()
                    .copied()
                    .filter(|s| group.serves(*s))
                    .collect();
                (served.clone(), served)
            }
        };
        // The smallest key after `end`, for a scan that wrongly includes it.
        let past_end = [end, &[0]].concat();
        let upper = match (end.is_empty(), planted(PlantedBug::ScanIncludesEnd)) {
            (true, _) => None,
            (false, false) => Some(end),
            (false, true) => Some(past_end.as_slice()),
        };
        let entries = self
            .kv
            .data
            .scan(&read, start, upper, limit as usize)
            .map_err(unavailable)?;
        Ok(ScanPart { entries, served })
    }

    /// A part of the data of a shard this group gives away at
    /// configuration `num`, for its new owner: its keys after `after` (all:
    /// from the first), about `max_bytes` of them; the last part carries
    /// the whole de-duplication table. Reads that part of the shard only.
    pub fn shard_for_new_owner(
        &self,
        num: u64,
        shard: ShardId,
        after: Option<&[u8]>,
        max_bytes: usize,
    ) -> Result<ShardData, KvError> {
        let Role::Data(group) = &self.role else {
            return Err(KvError::Refused("this group holds no shards".into()));
        };
        if !group.giving_away(num, shard) {
            return Err(KvError::NotYet(format!(
                "shard {shard} is not being given away at configuration {num} (at {})",
                group.config.num
            )));
        }
        let (mut data, complete) = self
            .kv
            .shard_part(shard, after, max_bytes)
            .map_err(unavailable)?;
        if planted(PlantedBug::ShardHandedOverEmpty) {
            data.clear();
        }
        let sessions = match complete {
            true => self.kv.sessions.table().clone(),
            false => BTreeMap::new(),
        };
        Ok(ShardData {
            data,
            sessions,
            expired_through: self.kv.sessions.expired_through(),
            complete,
        })
    }

    /// Applies one command: data operations on keys this group serves,
    /// sharding operations to the role they belong to. `limits` bound the
    /// de-duplication table; every member of a group applies the same.
    pub fn apply_command(&mut self, command: &Command, limits: &SessionLimits) -> CommandResult {
        match command {
            Command::Data { id, op, stamp } => match self.serves(op.key()) {
                Ok(()) => self.kv.apply(*id, *stamp, op, limits),
                Err(config_num) => CommandResult::WrongGroup { config_num },
            },
            Command::CloseSession { client_id, stamp } => {
                self.kv.close_session(*client_id, *stamp, limits)
            }
            Command::Shard(op) => self.apply_shard_op(op, limits),
            Command::Batch(commands) => CommandResult::Batch(
                commands
                    .iter()
                    .inspect(|command| {
                        debug_assert!(
                            matches!(command, Command::Data { .. } | Command::CloseSession { .. }),
                            "a batch holds only data writes and session closes: {command:?}"
                        );
                    })
                    .map(|command| Outcome {
                        result: self.apply_command(command, limits),
                        stamp: self.kv.sessions.clock(),
                    })
                    .collect(),
            ),
        }
    }

    fn apply_shard_op(&mut self, op: &ShardOp, limits: &SessionLimits) -> CommandResult {
        match (&mut self.role, op) {
            (Role::Controller(controller), ShardOp::Controller(op)) => {
                CommandResult::Controller(controller.apply(op))
            }
            (Role::Data(group), ShardOp::Reconfigure(config)) => {
                CommandResult::Shard(group.reconfigure(config))
            }
            (
                Role::Data(group),
                ShardOp::Install {
                    num,
                    shard,
                    data,
                    sessions,
                    expired_through,
                },
            ) => {
                let install = group.received(*num, *shard);
                if install {
                    self.kv
                        .install_shard(data, sessions, *expired_through, limits);
                }
                CommandResult::Shard(install)
            }
            (Role::Data(group), ShardOp::Drop { num, shard }) => {
                let drop = group.dropped(*num, *shard);
                if drop {
                    self.kv.drop_shard(*shard);
                }
                CommandResult::Shard(drop)
            }
            (Role::Data(group), ShardOp::InstallPart { num, shard, data }) => {
                let pulling = group.pulling(*num, *shard);
                if pulling {
                    for (key, value) in data {
                        self.kv.data.insert(key.clone(), value.clone());
                    }
                }
                CommandResult::Shard(pulling)
            }
            (Role::Data(group), ShardOp::HandedOver { num, shard }) => {
                group.handed_over(*num, *shard);
                CommandResult::Shard(true)
            }
            // An operation meant for another kind of group: refused.
            _ => CommandResult::Shard(false),
        }
    }
}

/// A failed read of stored data, as clients see it.
fn unavailable(fault: DataFault) -> KvError {
    KvError::Unavailable(format!("stored data unreadable: {fault}"))
}

#[cfg(test)]
mod tests;
