//! The data of a group: an ordered map of keys to values plus the client
//! de-duplication table, and how data operations change them. Every replica applies the same commands in the same order and so
//! reaches the same state; this module must therefore be a pure function of
//! its inputs (no clock, no randomness, no unordered iteration).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use bytes::Bytes;

use super::command::{CommandResult, DataOp, WriteId};
use super::data::{Data, DataFault};
use super::session::{Admission, SessionLimits, Sessions};
use crate::ids::ShardId;
use crate::runtime::{planted, reached, PlantedBug, Situation};

pub use super::session::Session;

/// The state every replica of a group holds: the data and the de-duplication
/// table. Both are ordered so that iteration (snapshots, digests) is the
/// same on every replica and every run.
#[derive(Debug, Clone, Default)]
pub struct KvState {
    /// The data.
    pub data: Data,
    /// client id → latest session, with the group clock.
    pub sessions: Sessions,
    /// Clients whose latest session arrived with a moved shard. Only for
    /// counting [`Situation::RetryDeduplicatedAfterMove`]: not replicated
    /// through snapshots, not part of the state's equality.
    moved_sessions: BTreeSet<u64>,
}

impl PartialEq for KvState {
    fn eq(&self, other: &KvState) -> bool {
        (&self.data, &self.sessions) == (&other.data, &other.sessions)
    }
}

impl Eq for KvState {}

impl KvState {
    /// The state of `data` with the de-duplication table `sessions`.
    pub fn new(data: Data, sessions: Sessions) -> KvState {
        KvState {
            data,
            sessions,
            moved_sessions: BTreeSet::new(),
        }
    }

    /// Keys and values of one shard after `after` (all: from its first),
    /// about `max_bytes` of them, and whether they reach the shard's end: a
    /// read of that part of its range only.
    pub fn shard_part(
        &self,
        shard: ShardId,
        after: Option<&[u8]>,
        max_bytes: usize,
    ) -> Result<(Vec<(Bytes, Bytes)>, bool), DataFault> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut entries = self.data.range(shard, start, None)?.peekable();
        let (mut part, mut bytes) = (Vec::new(), 0);
        while bytes < max_bytes {
            let Some(entry) = entries.next() else {
                break;
            };
            let (key, value) = entry?;
            bytes += key.len() + value.len();
            part.push((key, value));
        }
        let complete = entries.peek().is_none();
        Ok((part, complete))
    }

    /// Deletes one shard's keys.
    pub fn drop_shard(&mut self, shard: ShardId) {
        self.data.drop_shard(shard);
    }

    /// Adds a moved shard: its data, and the previous owner's sessions
    /// and eviction horizon (see [`Sessions::install`]), then evicts what
    /// the limits require.
    pub fn install_shard(
        &mut self,
        data: &[(Bytes, Bytes)],
        sessions: &BTreeMap<u64, Session>,
        expired_through: u64,
        limits: &SessionLimits,
    ) {
        for (key, value) in data {
            self.data.insert(key.clone(), value.clone());
        }
        if planted(PlantedBug::ShardMovesWithoutSessions) {
            return;
        }
        for client in self.sessions.install(sessions, expired_through) {
            reached(Situation::SessionsMovedWithShard);
            self.moved_sessions.insert(client);
        }
        let now = self.sessions.clock();
        self.sessions.expire(now, limits);
        self.forget_moved();
    }

    /// Reads one key.
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>, DataFault> {
        self.data.get(key)
    }

    /// Applies a data operation stamped `stamp` exactly once per
    /// [`WriteId`]: a retry of the client's latest write gets the first
    /// answer again without re-applying it; a write of an unknown session
    /// this group may have evicted is refused.
    pub fn apply(
        &mut self,
        id: Option<WriteId>,
        stamp: u64,
        op: &DataOp,
        limits: &SessionLimits,
    ) -> CommandResult {
        let now = self.sessions.tick(stamp);
        self.sessions.expire(now, limits);
        let result = match id {
            None => self.apply_op(op),
            Some(id) => self.apply_once(id, op, now),
        };
        self.sessions.expire(now, limits);
        if self.moved_sessions.len() > self.sessions.len() {
            self.forget_moved();
        }
        result
    }

    fn apply_once(&mut self, id: WriteId, op: &DataOp, now: u64) -> CommandResult {
        let WriteId {
            client_id,
            seq,
            opened_at,
        } = id;
        match self.sessions.admit(client_id, opened_at) {
            Admission::Known(session) if seq == session.seq && !planted(PlantedBug::SkipDedup) => {
                reached(Situation::RetryDeduplicated);
                if self.moved_sessions.contains(&client_id) {
                    reached(Situation::RetryDeduplicatedAfterMove);
                }
                let result = session.result.clone();
                self.sessions.record(client_id, seq, result.clone(), now);
                return result;
            }
            Admission::Known(session) if seq < session.seq => return CommandResult::StaleSequence,
            Admission::Known(_) | Admission::New => {}
            Admission::Expired { horizon } => {
                if seq > 1 {
                    reached(Situation::ExpiredSessionRefused);
                }
                return CommandResult::SessionExpired { horizon };
            }
        }
        let result = self.apply_op(op);
        self.moved_sessions.remove(&client_id);
        self.sessions.record(client_id, seq, result.clone(), now);
        result
    }

    /// Closes `client_id`'s session at stamp `stamp` (an eviction).
    pub fn close_session(
        &mut self,
        client_id: u64,
        stamp: u64,
        limits: &SessionLimits,
    ) -> CommandResult {
        let now = self.sessions.tick(stamp);
        let closed = self.sessions.remove(client_id);
        self.moved_sessions.remove(&client_id);
        self.sessions.expire(now, limits);
        CommandResult::SessionClosed(closed)
    }

    /// Drops the moved-session marks of sessions no longer live.
    fn forget_moved(&mut self) {
        let table = self.sessions.table();
        self.moved_sessions.retain(|c| table.contains_key(c));
    }

    fn apply_op(&mut self, op: &DataOp) -> CommandResult {
        match op {
            DataOp::Put { key, value } => {
                self.data.insert(key.clone(), value.clone());
                CommandResult::Put
            }
            DataOp::Delete { key } => CommandResult::Delete {
                existed: self.data.remove(key) || planted(PlantedBug::DeleteAlwaysExisted),
            },
            DataOp::Cas { key, expected, new } => {
                let current = self.data.read_for_apply(key);
                let swapped = current == *expected;
                if swapped {
                    match new {
                        Some(value) => self.data.insert(key.clone(), value.clone()),
                        None => {
                            self.data.remove(key);
                        }
                    }
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
            let id = WriteId {
                client_id: client,
                seq,
                opened_at: 1,
            };
            let result = state.apply(Some(id), 10, &op, &SessionLimits::default());
            assert_eq!(result, expected, "applying {op:?} as ({client}, {seq})");
        }
        let entries = state.data.entries().unwrap();
        let data: Vec<(&[u8], &[u8])> = entries
            .iter()
            .map(|(_, k, v)| (k.as_ref(), v.as_ref()))
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

    /// A write of `client` (`seq`, session opened at `opened_at`) putting
    /// `key`, stamped `stamp`.
    fn write(
        state: &mut KvState,
        limits: &SessionLimits,
        (client, seq, opened_at): (u64, u64, u64),
        stamp: u64,
        key: &'static str,
    ) -> CommandResult {
        let id = WriteId {
            client_id: client,
            seq,
            opened_at,
        };
        state.apply(Some(id), stamp, &put(key, "v"), limits)
    }

    fn limits(max_sessions: usize, idle_timeout_ms: u64) -> SessionLimits {
        SessionLimits {
            max_sessions,
            idle_timeout_ms,
        }
    }

    fn live(state: &KvState) -> Vec<u64> {
        state.sessions.table().keys().copied().collect()
    }

    #[test]
    fn the_group_clock_only_moves_forward() {
        let mut state = KvState::default();
        let l = limits(10, 1000);
        write(&mut state, &l, (1, 1, 1), 100, "a");
        assert_eq!(state.sessions.clock(), 100);
        write(&mut state, &l, (1, 2, 1), 50, "a");
        assert_eq!(state.sessions.clock(), 101, "a stamp behind the clock");
        assert_eq!(state.sessions.table()[&1].last_active, 101);
    }

    #[test]
    fn an_idle_session_expires_and_its_retry_is_refused() {
        let mut state = KvState::default();
        let l = limits(10, 100);
        assert_eq!(
            write(&mut state, &l, (1, 1, 1000), 1000, "a"),
            CommandResult::Put
        );
        // 100 ms idle is still live; past it, evicted at the next entry.
        write(&mut state, &l, (2, 1, 1100), 1100, "b");
        assert_eq!(live(&state), [1, 2]);
        write(&mut state, &l, (2, 2, 1100), 1101, "b");
        assert_eq!(live(&state), [2]);
        assert_eq!(state.sessions.expired_through(), 1000);
        // The retry of client 1's write is refused, not applied again.
        state.data = Data::default();
        let retry = write(&mut state, &l, (1, 1, 1000), 1102, "a");
        assert_eq!(retry, CommandResult::SessionExpired { horizon: 1000 });
        assert!(state.get(b"a").unwrap().is_none());
        assert_eq!(live(&state), [2]);
        // A session opened after the horizon is new and applies.
        assert_eq!(
            write(&mut state, &l, (3, 1, 1001), 1103, "c"),
            CommandResult::Put
        );
        assert_eq!(live(&state), [2, 3]);
    }

    #[test]
    fn beyond_the_cap_the_least_recently_active_session_goes() {
        let mut state = KvState::default();
        let l = limits(2, u64::MAX);
        for (client, stamp) in [(7, 10), (3, 20), (5, 30)] {
            write(&mut state, &l, (client, 1, 1), stamp, "k");
        }
        assert_eq!(live(&state), [3, 5]);
        assert_eq!(state.sessions.expired_through(), 10);
        // A retry answered again keeps its session active: 3 is now newest.
        write(&mut state, &l, (3, 1, 1), 40, "k");
        write(&mut state, &l, (9, 1, 31), 50, "k");
        assert_eq!(live(&state), [3, 9]);
        assert_eq!(state.sessions.expired_through(), 30);
        assert_eq!(
            write(&mut state, &l, (5, 2, 1), 60, "k"),
            CommandResult::SessionExpired { horizon: 30 }
        );
        assert_eq!(state.sessions.evicted(), 2);
    }

    #[test]
    fn ties_in_activity_evict_the_lowest_client_id() {
        let mut state = KvState::default();
        let s = |last_active| Session {
            seq: 1,
            result: CommandResult::Put,
            last_active,
        };
        let incoming = BTreeMap::from([(4, s(50)), (8, s(50)), (6, s(50))]);
        state.install_shard(&[], &incoming, 0, &limits(2, u64::MAX));
        assert_eq!(live(&state), [6, 8]);
        assert_eq!(state.sessions.clock(), 50);
        assert_eq!(state.sessions.expired_through(), 50);
    }

    #[test]
    fn a_moved_session_this_group_may_have_evicted_is_not_revived() {
        let mut state = KvState::default();
        let l = limits(1, u64::MAX);
        write(&mut state, &l, (1, 3, 1), 100, "a");
        write(&mut state, &l, (2, 1, 1), 200, "b");
        assert_eq!(state.sessions.expired_through(), 100);
        let s = |seq, last_active| Session {
            seq,
            result: CommandResult::Put,
            last_active,
        };
        // An older copy of client 1's session (seq 2) must not come back:
        // client 1's retry of seq 3 would then apply again.
        let old = BTreeMap::from([(1, s(2, 90))]);
        state.install_shard(&[], &old, 0, &limits(10, u64::MAX));
        assert_eq!(live(&state), [2]);
        assert_eq!(
            write(&mut state, &limits(10, u64::MAX), (1, 3, 1), 300, "a"),
            CommandResult::SessionExpired { horizon: 100 }
        );
        // Newer sessions move in; a known client keeps the higher seq.
        let newer = BTreeMap::from([(2, s(5, 150)), (4, s(1, 900))]);
        state.install_shard(&[], &newer, 0, &limits(10, u64::MAX));
        assert_eq!(live(&state), [2, 4]);
        assert_eq!(state.sessions.table()[&2].seq, 5);
        assert_eq!(state.sessions.table()[&2].last_active, 200);
        assert_eq!(
            state.sessions.clock(),
            900,
            "the clock passes installed sessions"
        );
    }

    #[test]
    fn a_moved_shard_brings_its_previous_owners_horizon() {
        // The previous owner evicted sessions active up to 500: one of them
        // may have written into the shard, so its retry is refused here.
        let mut state = KvState::default();
        let l = limits(10, u64::MAX);
        state.install_shard(&[], &BTreeMap::new(), 500, &l);
        assert_eq!(state.sessions.expired_through(), 500);
        assert!(state.sessions.clock() >= 500);
        assert_eq!(
            write(&mut state, &l, (1, 2, 400), 600, "a"),
            CommandResult::SessionExpired { horizon: 500 }
        );
        assert_eq!(
            write(&mut state, &l, (2, 1, 501), 601, "a"),
            CommandResult::Put
        );
    }

    #[test]
    fn a_closed_session_is_forgotten_and_its_retry_refused() {
        let mut state = KvState::default();
        let l = limits(10, u64::MAX);
        write(&mut state, &l, (1, 1, 5), 10, "a");
        assert_eq!(
            state.close_session(1, 20, &l),
            CommandResult::SessionClosed(true)
        );
        assert_eq!(
            state.close_session(1, 30, &l),
            CommandResult::SessionClosed(false)
        );
        assert!(live(&state).is_empty());
        assert_eq!(state.sessions.expired_through(), 10);
        assert_eq!(
            write(&mut state, &l, (1, 1, 5), 40, "a"),
            CommandResult::SessionExpired { horizon: 10 }
        );
    }

    #[test]
    fn the_table_survives_encoding_with_its_eviction_order() {
        let mut state = KvState::default();
        let l = limits(3, u64::MAX);
        for (client, stamp) in [(5, 10), (2, 20), (9, 30)] {
            write(&mut state, &l, (client, 1, 1), stamp, "k");
        }
        let bytes = bincode::serialize(&state.sessions).unwrap();
        let mut copy = KvState {
            sessions: bincode::deserialize(&bytes).unwrap(),
            ..state.clone()
        };
        assert_eq!(copy, state);
        write(&mut copy, &l, (4, 1, 1), 40, "k");
        write(&mut state, &l, (4, 1, 1), 40, "k");
        assert_eq!(live(&copy), [2, 4, 9]);
        assert_eq!(copy, state);
    }
}
