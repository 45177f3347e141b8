//! What every service of a node shares: the local replica, with the two
//! things a request does to it, a linearizable read barrier and a write
//! through the log, and the mapping of consensus errors to [`KvError`].

use std::sync::Arc;
use std::time::Duration;

use crate::ids::Member;
use openraft::error::{ClientWriteError, ForwardToLeader, RaftError};

use super::auth::Access;
use super::metrics::NodeMetrics;
use super::pool::ClientPool;
use super::propose::Proposer;
use super::read_index::ReadIndexer;
use crate::error::KvError;
use crate::ids::NodeId;
use crate::machine::command::{Command, CommandResult, Outcome};
use crate::proto::StatusResponse;
use crate::raft::ShoalRaft;
use crate::runtime::{buggify_delay, planted, reached, FaultSite, PlantedBug, Situation};
use crate::storage::StateMachineStore;

/// How long a read waits for the local state machine to catch up with the
/// commit index it must reflect before answering "unavailable".
const READ_APPLY_WAIT: Duration = Duration::from_secs(2);

/// Longest pause the `reply-delay` fault site puts before a write's answer.
const BUGGIFY_REPLY_DELAY_MAX: Duration = Duration::from_millis(4000);

/// One replica as the services see it. Clones share it.
#[derive(Clone)]
pub struct Replica {
    /// Consensus.
    pub raft: ShoalRaft,
    /// The applied state.
    pub state_machine: StateMachineStore,
    /// Clients for requests this replica routes to the group that serves
    /// them (the HTTP gateway's, and forwarded gRPC requests).
    pub clients: Arc<ClientPool>,
    /// The node's metrics.
    pub metrics: Arc<NodeMetrics>,
    /// Who may administer the node and act as its peer.
    pub access: Arc<Access>,
    /// Client commands' way into the log.
    pub proposer: Proposer,
    /// Reads' leadership checks.
    pub reads: ReadIndexer,
}

impl Replica {
    /// Waits until a read of the state machine is linearizable: this node has
    /// confirmed with a quorum that it is still the leader (read index), and it
    /// has applied everything committed before the read began.
    pub async fn read_barrier(&self) -> Result<(), KvError> {
        let mut metrics = self.raft.metrics();
        if planted(PlantedBug::StaleRead) {
            let view = metrics.borrow().clone();
            if view.current_leader == Some(view.id) {
                return Ok(());
            }
        }
        let read_log_id = self.reads.read_index().await?;
        if self.state_machine.read().last_applied < read_log_id {
            reached(Situation::ReadWaitedForApply);
            if planted(PlantedBug::ReadBeforeApply) {
                return Ok(());
            }
        }
        let deadline = tokio::time::Instant::now() + READ_APPLY_WAIT;
        while self.state_machine.read().last_applied < read_log_id {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(KvError::Unavailable(
                    "state machine is behind the commit index".into(),
                ));
            }
            match crate::runtime::timeout(deadline - now, metrics.changed()).await {
                Ok(Ok(())) | Err(_) => {}
                Ok(Err(_)) => return Err(KvError::Unavailable("replica is shutting down".into())),
            }
        }
        Ok(())
    }

    /// Commits a command and returns its outcome; a stale sequence number,
    /// an expired session or a key of a shard this group does not serve is
    /// an error.
    pub async fn write(&self, command: Command) -> Result<Outcome, KvError> {
        let outcome = self.proposer.propose(command).await?;
        buggify_delay(FaultSite::ReplyDelay, BUGGIFY_REPLY_DELAY_MAX).await;
        match outcome.result {
            CommandResult::StaleSequence => Err(KvError::StaleSequence),
            CommandResult::SessionExpired { horizon } => Err(KvError::SessionExpired { horizon }),
            CommandResult::WrongGroup { config_num } => {
                reached(Situation::WrongGroupRefused);
                Err(KvError::WrongGroup { config_num })
            }
            _ => Ok(outcome),
        }
    }

    /// This replica's view of its group (local, not linearizable).
    pub fn status(&self) -> StatusResponse {
        let metrics = self.raft.metrics().borrow().clone();
        StatusResponse {
            node_id: metrics.id,
            leader_id: metrics.current_leader,
            term: metrics.current_term,
            role: format!("{:?}", metrics.state).to_lowercase(),
            last_applied: metrics.last_applied.map_or(0, |log_id| log_id.index),
            members: metrics
                .membership_config
                .nodes()
                .map(|(id, node)| (*id, node.addr.clone()))
                .collect(),
            peer_members: metrics
                .membership_config
                .nodes()
                .map(|(id, node)| (*id, node.peer_addr().to_string()))
                .collect(),
            // A damaged count reads as none: status reports, it does not fail.
            keys: self
                .state_machine
                .read()
                .kv
                .data
                .counts()
                .map_or(0, |(keys, _)| keys),
        }
    }

    /// Whether this replica leads its group now, as far as it knows.
    pub fn is_leader(&self) -> bool {
        let metrics = self.raft.metrics();
        let view = metrics.borrow();
        view.current_leader == Some(view.id)
    }
}

pub(super) fn not_leader(forward: &ForwardToLeader<NodeId, Member>) -> KvError {
    KvError::NotLeader {
        leader_id: forward.leader_id,
        leader_addr: forward.leader_node.as_ref().map(|n| n.addr.clone()),
    }
}

/// The [`KvError`] a failed client write (or membership change) answers.
pub fn from_write_error(error: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> KvError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(&f),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            KvError::Refused(e.to_string())
        }
        RaftError::Fatal(fatal) => KvError::Unavailable(fatal.to_string()),
    }
}
