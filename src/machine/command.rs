//! What travels through a group's Raft log ([`Command`]) and what applying
//! it answers ([`CommandResult`]).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::shard::controller::ControllerError;
use super::shard::ShardOp;

/// Names one client write for de-duplication: clients number their writes
/// 1, 2, 3... and retry a write under the same number until it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WriteId {
    /// A client's random 64-bit identity: one session of one client.
    pub client_id: u64,
    /// The write's number within the session, starting at 1.
    pub seq: u64,
    /// When the session began, in the groups' stamp units (milliseconds):
    /// every stamp of the session's writes is at least this. A group that
    /// does not know the session refuses it if it may have evicted it
    /// (`opened_at` at or below its `expired_through`).
    pub opened_at: u64,
}

/// One log entry's command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A change to the data, on a key the group must serve.
    Data {
        /// Who sent it, for de-duplication. A write without an id is applied
        /// every time it is committed (at-least-once under retries).
        id: Option<WriteId>,
        /// What it does.
        op: DataOp,
        /// The proposing leader's stamp: its wall clock in milliseconds, or
        /// the client's `floor` if larger. The state machine makes stamps
        /// strictly increasing (see [`super::kv::KvState::tick`]).
        stamp: u64,
    },
    /// A client ends its session: the group forgets it (as if evicted).
    CloseSession {
        /// The session's client id.
        client_id: u64,
        /// The proposing leader's stamp, as for [`Command::Data`].
        stamp: u64,
    },
    /// A change to the group's sharding state (see [`super::shard`]).
    Shard(ShardOp),
    /// Client commands proposed together, applied in order as if each were
    /// an entry of its own; answers [`CommandResult::Batch`]. Never nested,
    /// never holds [`Command::Shard`].
    Batch(Vec<Command>),
}

/// Bytes a command is counted as in a batch, beyond its keys and values:
/// its identity, stamp and encoding.
const COMMAND_OVERHEAD_BYTES: usize = 64;

impl Command {
    /// The bytes this command adds to a [`Command::Batch`], if it may join
    /// one (client writes and session closes may; sharding changes, which
    /// can be large, go alone).
    pub fn batch_size(&self) -> Option<usize> {
        let payload = match self {
            Command::Data { op, .. } => match op {
                DataOp::Put { key, value } => key.len() + value.len(),
                DataOp::Delete { key } => key.len(),
                DataOp::Cas { key, expected, new } => {
                    let len = |v: &Option<Bytes>| v.as_ref().map_or(0, Bytes::len);
                    key.len() + len(expected) + len(new)
                }
            },
            Command::CloseSession { .. } => 0,
            Command::Shard(_) | Command::Batch(_) => return None,
        };
        Some(payload + COMMAND_OVERHEAD_BYTES)
    }
}

/// The operations that change the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataOp {
    /// Store `value` under `key`.
    Put {
        /// The key.
        key: Bytes,
        /// The new value.
        value: Bytes,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: Bytes,
    },
    /// If `key` holds `expected` (`None`: is absent), replace it by `new`
    /// (`None`: remove it).
    Cas {
        /// The key.
        key: Bytes,
        /// The value the key must hold.
        expected: Option<Bytes>,
        /// The value to store.
        new: Option<Bytes>,
    },
}

impl DataOp {
    /// The key the operation touches.
    pub fn key(&self) -> &Bytes {
        match self {
            DataOp::Put { key, .. } | DataOp::Delete { key } | DataOp::Cas { key, .. } => key,
        }
    }
}

/// The outcome of applying one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// A log entry that carries no command (leader no-op, membership change).
    None,
    /// A `Put` was applied.
    Put,
    /// A `Delete` was applied.
    Delete {
        /// Whether the key existed before.
        existed: bool,
    },
    /// A `Cas` was applied.
    Cas {
        /// Whether the value was replaced.
        swapped: bool,
        /// The value the key held when the command was applied.
        current: Option<Bytes>,
    },
    /// The command's sequence number is older than the client's latest write:
    /// it was answered before and its answer is no longer kept.
    StaleSequence,
    /// The write's session is unknown here and may be one this group
    /// evicted (its `opened_at` is at or below `horizon`): nothing was
    /// applied. Whether an earlier attempt of the write applied is unknown.
    SessionExpired {
        /// The group's `expired_through`: a new session must open after it.
        horizon: u64,
    },
    /// A session was closed (`true`) or was not known (`false`).
    SessionClosed(bool),
    /// The key's shard is not served by this group (as of configuration
    /// `config_num`); nothing was applied.
    WrongGroup {
        /// The group's configuration number.
        config_num: u64,
    },
    /// The result of a controller operation: the new configuration's number.
    Controller(Result<u64, ControllerError>),
    /// A sharding change took effect (`true`) or was a no-op (`false`:
    /// stale or duplicate).
    Shard(bool),
    /// The outcomes of a [`Command::Batch`]'s commands, in order.
    Batch(Vec<Outcome>),
}

/// What applying one log entry answers: its result, and the entry's
/// effective stamp (the group clock after it), which a client keeps as the
/// `floor` of its later writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The command's result.
    pub result: CommandResult,
    /// The group clock after the entry.
    pub stamp: u64,
}
