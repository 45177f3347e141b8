//! The de-duplication table with bounded memory: one [`Session`] per client
//! id, the group clock that stamps them, and the deterministic eviction that
//! keeps them within [`SessionLimits`].
//!
//! **Stamps.** Every data command carries the proposing leader's wall clock
//! (or the client's `floor`, if larger). Applying it advances the group
//! clock to `T = max(stamp, clock + 1)`: strictly increasing, replicated,
//! never read from a clock here. A session's `last_active` is the `T` of its
//! latest entry.
//!
//! **Eviction** happens while applying, identically on every replica: a
//! session idle for longer than `idle_timeout_ms` of group time goes, and
//! while more than `max_sessions` are live the least recently active goes
//! (ties: the lowest client id). Every eviction (and every close) raises
//! `expired_through` to the evicted session's `last_active`.
//!
//! **Why a retry of an evicted session cannot apply twice.** A client stamps
//! its session with `opened_at` and never sends a `floor` below it, so every
//! `T` of its entries, and so its `last_active`, is at least `opened_at`. If
//! this group ever evicted the session, `expired_through >= opened_at`; a
//! write of a client the group does not know with `opened_at <=
//! expired_through` is therefore refused ([`Admission::Expired`]), never
//! applied. A session arriving with a moved shard is installed only if it is
//! newer than `expired_through`, so an evicted session never comes back.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::command::CommandResult;
use crate::runtime::{planted, reached, PlantedBug, Situation};

/// The default bound on live sessions per group.
pub const MAX_SESSIONS_DEFAULT: usize = 10_000;
/// The default idle time after which a session is evicted (one hour).
pub const SESSION_IDLE_TIMEOUT_MS_DEFAULT: u64 = 60 * 60 * 1000;

/// How many sessions a group keeps, and for how long. Every member of a
/// group must use the same limits (like the shard count): they shape what
/// applying a command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Live sessions at most (at least 1).
    pub max_sessions: usize,
    /// Group-clock milliseconds a session may stay idle.
    pub idle_timeout_ms: u64,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_sessions: MAX_SESSIONS_DEFAULT,
            idle_timeout_ms: SESSION_IDLE_TIMEOUT_MS_DEFAULT,
        }
    }
}

/// The latest write of one client and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The highest sequence number applied for this client.
    pub seq: u64,
    /// The answer to that write, returned again to a retry.
    pub result: CommandResult,
    /// The group clock of the session's latest entry.
    pub last_active: u64,
}

/// What the table says about a write of a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission<'a> {
    /// The client's session is live.
    Known(&'a Session),
    /// Unknown client whose session began after every eviction: a new one.
    New,
    /// Unknown client whose session may be one this group evicted.
    Expired {
        /// `expired_through`.
        horizon: u64,
    },
}

/// The replicated form of [`Sessions`]; the activity index is rebuilt.
#[derive(Deserialize)]
struct SessionsFields {
    table: BTreeMap<u64, Session>,
    clock: u64,
    expired_through: u64,
}

/// Every live session, the group clock, and the eviction horizon.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "SessionsFields")]
pub struct Sessions {
    /// client id → session.
    table: BTreeMap<u64, Session>,
    /// The group clock: the effective stamp of the latest entry.
    clock: u64,
    /// The largest `last_active` of any session evicted or closed.
    expired_through: u64,
    /// `(last_active, client)` of every session, oldest first: derived from
    /// `table`, not replicated, not compared.
    #[serde(skip)]
    by_activity: BTreeSet<(u64, u64)>,
    /// Sessions evicted or closed by this copy of the state since it was
    /// made: a local count for metrics, not replicated.
    #[serde(skip)]
    evicted: u64,
    /// Clients whose session changed (or went) since storage last took
    /// them: what the next commit writes.
    #[serde(skip)]
    changed: BTreeSet<u64>,
}

impl From<SessionsFields> for Sessions {
    fn from(fields: SessionsFields) -> Sessions {
        let by_activity = fields
            .table
            .iter()
            .map(|(client, s)| (s.last_active, *client))
            .collect();
        Sessions {
            table: fields.table,
            clock: fields.clock,
            expired_through: fields.expired_through,
            by_activity,
            evicted: 0,
            changed: BTreeSet::new(),
        }
    }
}

impl PartialEq for Sessions {
    fn eq(&self, other: &Sessions) -> bool {
        (&self.table, self.clock, self.expired_through)
            == (&other.table, other.clock, other.expired_through)
    }
}

impl Eq for Sessions {}

impl Sessions {
    /// The table as stored: its sessions, the group clock and the horizon.
    pub fn from_parts(table: BTreeMap<u64, Session>, clock: u64, expired_through: u64) -> Sessions {
        Sessions::from(SessionsFields {
            table,
            clock,
            expired_through,
        })
    }

    /// The clients whose session changed since the last call, each with its
    /// session now (`None`: gone).
    pub fn take_changed(&mut self) -> Vec<(u64, Option<&Session>)> {
        let changed = std::mem::take(&mut self.changed);
        changed
            .into_iter()
            .map(|client| (client, self.table.get(&client)))
            .collect()
    }

    /// The live sessions.
    pub fn table(&self) -> &BTreeMap<u64, Session> {
        &self.table
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The group clock.
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// The largest `last_active` of a session evicted or closed.
    pub fn expired_through(&self) -> u64 {
        self.expired_through
    }

    /// Sessions this copy of the state evicted or closed (not replicated).
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Advances the group clock for an entry stamped `stamp`; returns the
    /// entry's effective stamp.
    pub fn tick(&mut self, stamp: u64) -> u64 {
        self.clock = stamp.max(self.clock + 1);
        self.clock
    }

    /// What to do with a write of `client_id` in a session opened at
    /// `opened_at`.
    pub fn admit(&self, client_id: u64, opened_at: u64) -> Admission<'_> {
        if let Some(session) = self.table.get(&client_id) {
            return Admission::Known(session);
        }
        // Effective stamps are at least 1, so `expired_through` is 0 only
        // while nothing has been evicted: every unknown client is new.
        let evicted_since = self.expired_through > 0 && opened_at <= self.expired_through;
        if evicted_since && !planted(PlantedBug::ExpiredSessionReapplied) {
            return Admission::Expired {
                horizon: self.expired_through,
            };
        }
        Admission::New
    }

    /// Records `client_id`'s write `seq` answered `result` at group time
    /// `now` (a new write, or a retry answered again).
    pub fn record(&mut self, client_id: u64, seq: u64, result: CommandResult, now: u64) {
        let session = Session {
            seq,
            result,
            last_active: now,
        };
        self.insert(client_id, session);
    }

    fn insert(&mut self, client_id: u64, session: Session) {
        if let Some(old) = self.table.get(&client_id) {
            assert!(
                self.by_activity.remove(&(old.last_active, client_id)),
                "activity index out of step with the table"
            );
        }
        self.by_activity.insert((session.last_active, client_id));
        self.table.insert(client_id, session);
        self.changed.insert(client_id);
    }

    /// Forgets `client_id`'s session as an eviction; whether it was live.
    pub fn remove(&mut self, client_id: u64) -> bool {
        let Some(session) = self.table.remove(&client_id) else {
            return false;
        };
        self.changed.insert(client_id);
        assert!(
            self.by_activity.remove(&(session.last_active, client_id)),
            "activity index out of step with the table"
        );
        self.expired_through = self.expired_through.max(session.last_active);
        self.evicted += 1;
        true
    }

    /// Evicts what the limits require at group time `now`: idle sessions,
    /// then the least recently active beyond `max_sessions`.
    pub fn expire(&mut self, now: u64, limits: &SessionLimits) {
        assert!(
            limits.max_sessions >= 1,
            "a group keeps at least one session"
        );
        while let Some(&(last_active, client)) = self.by_activity.first() {
            if last_active.saturating_add(limits.idle_timeout_ms) >= now {
                break;
            }
            self.remove(client);
        }
        while self.table.len() > limits.max_sessions {
            let &(_, client) = self.by_activity.first().expect("index matches table");
            reached(Situation::SessionEvictedByCap);
            self.remove(client);
        }
        debug_assert_eq!(self.by_activity.len(), self.table.len());
    }

    /// Adds the sessions of a moved shard's previous owner: a known client
    /// keeps the higher sequence number; an unknown one is installed only if
    /// it was active after `expired_through` (else this group may have
    /// evicted it, and an older copy must not come back). Then takes on the
    /// previous owner's horizon `their_expired_through`: a session it
    /// evicted may have written into the shard, and a retry of that write
    /// must be refused here too. Returns the clients installed or updated.
    /// The clock advances past them and the horizon.
    pub fn install(
        &mut self,
        incoming: &BTreeMap<u64, Session>,
        their_expired_through: u64,
    ) -> Vec<u64> {
        let mut installed = Vec::new();
        for (client, session) in incoming {
            let mut session = session.clone();
            match self.table.get(client) {
                Some(mine) if mine.seq >= session.seq => continue,
                Some(mine) => session.last_active = session.last_active.max(mine.last_active),
                None if session.last_active <= self.expired_through => continue,
                None => {}
            }
            self.clock = self.clock.max(session.last_active);
            self.insert(*client, session);
            installed.push(*client);
        }
        if !planted(PlantedBug::MovedHorizonDropped) {
            self.expired_through = self.expired_through.max(their_expired_through);
        }
        self.clock = self.clock.max(self.expired_through);
        installed
    }

    /// Forgets every session without counting them as evicted (a planted
    /// bug's snapshot only).
    pub fn forget_all(&mut self) {
        self.changed.extend(self.table.keys().copied());
        self.table.clear();
        self.by_activity.clear();
    }
}
