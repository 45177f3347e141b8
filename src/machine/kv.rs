//! The data of a group: an ordered map of keys to values plus the client
//! de-duplication table, and how data operations change them. Every replica applies the same commands in the same order and so
//! reaches the same state; this module must therefore be a pure function of
//! its inputs (no clock, no randomness, no unordered iteration).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::command::{CommandResult, DataOp, WriteId};
use super::shard::shard_of;
use crate::ids::ShardId;
use crate::runtime::{planted, reached, PlantedBug, Situation};

/// The latest write of one client and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The highest sequence number applied for this client.
    pub seq: u64,
    /// The answer to that write, returned again to a retry.
    pub result: CommandResult,
}

/// The state every replica of a group holds: the data and the de-duplication
/// table. Both are ordered maps so that iteration (snapshots, digests) is the
/// same on every replica and every run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KvState {
    /// The data.
    pub data: BTreeMap<Bytes, Bytes>,
    /// client id → latest session.
    pub sessions: BTreeMap<u64, Session>,
    /// Clients whose latest session arrived with a moved shard. Only for
    /// counting [`Situation::RetryDeduplicatedAfterMove`]: not replicated
    /// through snapshots, not part of the state's equality.
    #[serde(skip)]
    moved_sessions: BTreeSet<u64>,
}

impl PartialEq for KvState {
    fn eq(&self, other: &KvState) -> bool {
        (&self.data, &self.sessions) == (&other.data, &other.sessions)
    }
}

impl Eq for KvState {}

impl KvState {
    /// The keys and values of one shard.
    pub fn shard_data(&self, shard: ShardId, shard_count: u32) -> Vec<(Bytes, Bytes)> {
        self.data
            .iter()
            .filter(|(k, _)| shard_of(k, shard_count) == shard)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Deletes one shard's keys.
    pub fn drop_shard(&mut self, shard: ShardId, shard_count: u32) {
        self.data.retain(|k, _| shard_of(k, shard_count) != shard);
    }

    /// Adds a moved shard: its data, and the previous owner's sessions,
    /// keeping each client's latest.
    pub fn install_shard(&mut self, data: &[(Bytes, Bytes)], sessions: &BTreeMap<u64, Session>) {
        self.data.extend(data.iter().cloned());
        if planted(PlantedBug::ShardMovesWithoutSessions) {
            return;
        }
        for (client, session) in sessions {
            let newer = self
                .sessions
                .get(client)
                .is_none_or(|mine| mine.seq < session.seq);
            if newer {
                reached(Situation::SessionsMovedWithShard);
                self.sessions.insert(*client, session.clone());
                self.moved_sessions.insert(*client);
            }
        }
    }

    /// Reads one key.
    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.data.get(key).cloned()
    }

    /// Applies a data operation exactly once per [`WriteId`]: a retry of
    /// the client's latest write gets the first answer again without
    /// re-applying it.
    pub fn apply(&mut self, id: Option<WriteId>, op: &DataOp) -> CommandResult {
        let Some(WriteId { client_id, seq }) = id else {
            return self.apply_op(op);
        };
        if let Some(session) = self.sessions.get(&client_id) {
            if seq == session.seq && !planted(PlantedBug::SkipDedup) {
                reached(Situation::RetryDeduplicated);
                if self.moved_sessions.contains(&client_id) {
                    reached(Situation::RetryDeduplicatedAfterMove);
                }
                return session.result.clone();
            }
            if seq < session.seq {
                return CommandResult::StaleSequence;
            }
        }
        let result = self.apply_op(op);
        self.moved_sessions.remove(&client_id);
        self.sessions.insert(
            client_id,
            Session {
                seq,
                result: result.clone(),
            },
        );
        result
    }

    fn apply_op(&mut self, op: &DataOp) -> CommandResult {
        match op {
            DataOp::Put { key, value } => {
                self.data.insert(key.clone(), value.clone());
                CommandResult::Put
            }
            DataOp::Delete { key } => CommandResult::Delete {
                existed: self.data.remove(key).is_some()
                    || planted(PlantedBug::DeleteAlwaysExisted),
            },
            DataOp::Cas { key, expected, new } => {
                let current = self.data.get(key).cloned();
                let swapped = current == *expected;
                if swapped {
                    match new {
                        Some(value) => self.data.insert(key.clone(), value.clone()),
                        None => self.data.remove(key),
                    };
                }
                let current = if swapped && planted(PlantedBug::CasAnswersNewValue) {
                    new.clone()
                } else {
                    current
                };
                CommandResult::Cas { swapped, current }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &'static str, value: &'static str) -> DataOp {
        DataOp::Put {
            key: Bytes::from(key),
            value: Bytes::from(value),
        }
    }

    fn cas(key: &'static str, expected: Option<&'static str>, new: Option<&'static str>) -> DataOp {
        DataOp::Cas {
            key: Bytes::from(key),
            expected: expected.map(Bytes::from),
            new: new.map(Bytes::from),
        }
    }

    /// Applies `(client, seq, op)` triples in order and checks each answer.
    fn check(steps: Vec<(u64, u64, DataOp, CommandResult)>, expect_data: &[(&str, &str)]) {
        let mut state = KvState::default();
        for (client, seq, op, expected) in steps {
            let result = state.apply(
                Some(WriteId {
                    client_id: client,
                    seq,
                }),
                &op,
            );
            assert_eq!(result, expected, "applying {op:?} as ({client}, {seq})");
        }
        let data: Vec<(&[u8], &[u8])> = state
            .data
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        let expect: Vec<(&[u8], &[u8])> = expect_data
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        assert_eq!(data, expect);
    }

    #[test]
    fn put_delete_and_cas() {
        use CommandResult as R;
        let none = None;
        check(
            vec![
                (1, 1, put("a", "1"), R::Put),
                (
                    1,
                    2,
                    cas("a", Some("2"), Some("3")),
                    R::Cas {
                        swapped: false,
                        current: Some("1".into()),
                    },
                ),
                (
                    1,
                    3,
                    cas("a", Some("1"), Some("3")),
                    R::Cas {
                        swapped: true,
                        current: Some("1".into()),
                    },
                ),
                (
                    1,
                    4,
                    cas("b", none, Some("9")),
                    R::Cas {
                        swapped: true,
                        current: None,
                    },
                ),
                (
                    1,
                    5,
                    DataOp::Delete { key: "a".into() },
                    R::Delete { existed: true },
                ),
                (
                    1,
                    6,
                    DataOp::Delete { key: "a".into() },
                    R::Delete { existed: false },
                ),
                (
                    1,
                    7,
                    cas("b", Some("9"), none),
                    R::Cas {
                        swapped: true,
                        current: Some("9".into()),
                    },
                ),
                (1, 8, put("c", ""), R::Put),
            ],
            &[("c", "")],
        );
    }

    #[test]
    fn a_retried_write_is_applied_once_and_answered_again() {
        use CommandResult as R;
        check(
            vec![
                (
                    1,
                    1,
                    cas("k", None, Some("x")),
                    R::Cas {
                        swapped: true,
                        current: None,
                    },
                ),
                // The retry must not re-run the CAS (it would now fail).
                (
                    1,
                    1,
                    cas("k", None, Some("x")),
                    R::Cas {
                        swapped: true,
                        current: None,
                    },
                ),
                (2, 1, put("k", "y"), R::Put),
                (1, 2, put("j", "z"), R::Put),
                // An older write of client 1 is stale, not re-applied.
                (1, 1, put("k", "old"), R::StaleSequence),
            ],
            &[("j", "z"), ("k", "y")],
        );
    }
}
