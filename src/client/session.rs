//! A client's session: the identity its writes are de-duplicated under.
//!
//! A session is `(client_id, seq, opened_at, floor)`: a fresh random id,
//! the number of its latest write, when it began (wall-clock milliseconds,
//! or just past a group's eviction horizon after a refusal), and the largest
//! group stamp it has seen in an answer, which it sends as the `floor` of
//! its next write so that every stamp of its entries is at least
//! `opened_at` (what makes a group's `SESSION_EXPIRED` refusal airtight; see
//! `machine::session`). The client starts a new session when a group
//! refuses the old one, when a write ends without an answer (its outcome
//! unknown, the session must not write again), and when it closes one.

use std::collections::BTreeSet;

use crate::ids::GroupId;
use crate::proto::WriteId;

/// New sessions one write may start after refusals before it gives up.
pub const SESSION_RENEWALS_MAX: u32 = 4;

/// What a write does when a group refuses its session as expired (the
/// client has already started a new session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterRefusal {
    /// Nothing of the write is in doubt: send it again in the new session.
    Resend,
    /// An earlier attempt went unanswered and may have applied: the write
    /// ends, its outcome unknown.
    InDoubt,
    /// Refused again and again: the write ends, not applied.
    GiveUp,
}

impl AfterRefusal {
    /// The decision after a refusal, given whether an attempt of the write
    /// went unanswered and how many new sessions it has started already.
    pub fn decide(unanswered: bool, renewals: u32) -> AfterRefusal {
        if unanswered {
            AfterRefusal::InDoubt
        } else if renewals >= SESSION_RENEWALS_MAX {
            AfterRefusal::GiveUp
        } else {
            AfterRefusal::Resend
        }
    }
}

/// One session of a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Its identity in the groups' de-duplication tables.
    pub client_id: u64,
    /// The number of the latest write issued.
    pub seq: u64,
    /// When it began.
    pub opened_at: u64,
    /// The largest stamp seen in an answer (at least `opened_at`).
    pub floor: u64,
    /// The data groups it wrote to (`None`: the standalone group or the
    /// nodes the client reaches), for closing it.
    pub groups: BTreeSet<Option<GroupId>>,
}

impl Session {
    /// A session named `client_id` beginning at wall-clock `now_ms`, after
    /// a group's eviction `horizon` (0: none known).
    pub fn open(client_id: u64, now_ms: u64, horizon: u64) -> Session {
        let opened_at = now_ms.max(horizon.saturating_add(1));
        Session {
            client_id,
            seq: 0,
            opened_at,
            floor: opened_at,
            groups: BTreeSet::new(),
        }
    }

    /// Numbers the next write.
    pub fn next_write_id(&mut self) -> WriteId {
        self.seq += 1;
        WriteId {
            client_id: self.client_id,
            seq: self.seq,
            opened_at: self.opened_at,
            floor: self.floor,
        }
    }

    /// A write of the session was answered with `stamp` by `group`.
    pub fn answered(&mut self, stamp: u64, group: Option<GroupId>) {
        self.floor = self.floor.max(stamp);
        self.groups.insert(group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_opens_after_the_horizon_and_keeps_its_floor() {
        let mut session = Session::open(7, 1_000, 0);
        assert_eq!((session.opened_at, session.floor), (1_000, 1_000));
        let first = session.next_write_id();
        assert_eq!((first.seq, first.opened_at, first.floor), (1, 1_000, 1_000));
        session.answered(1_500, Some(2));
        session.answered(1_200, None);
        let second = session.next_write_id();
        assert_eq!((second.seq, second.floor), (2, 1_500));
        assert_eq!(session.groups, BTreeSet::from([None, Some(2)]));
        // A refusal's horizon ahead of the clock moves the start past it.
        assert_eq!(Session::open(8, 1_000, 4_000).opened_at, 4_001);
        assert_eq!(Session::open(8, 5_000, 4_000).opened_at, 5_000);
    }

    #[test]
    fn a_refused_write_is_resent_only_when_nothing_is_in_doubt() {
        use AfterRefusal::*;
        assert_eq!(AfterRefusal::decide(false, 0), Resend);
        assert_eq!(AfterRefusal::decide(true, 0), InDoubt);
        assert_eq!(
            AfterRefusal::decide(false, SESSION_RENEWALS_MAX - 1),
            Resend
        );
        assert_eq!(AfterRefusal::decide(false, SESSION_RENEWALS_MAX), GiveUp);
        assert_eq!(AfterRefusal::decide(true, SESSION_RENEWALS_MAX), InDoubt);
    }
}
