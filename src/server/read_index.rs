//! Linearizable reads share leadership checks: a read needs the commit index
//! from a check (a round of heartbeats to a quorum) that began after the
//! read did. One check at a time runs; every read that arrived before it
//! began takes its answer, and reads arriving meanwhile wait for the next.
//! Under load, one round of messages serves every read waiting.

use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::LogId;
use tokio::sync::{mpsc, oneshot};

use super::replica::not_leader;
use crate::error::KvError;
use crate::ids::{Member, NodeId};
use crate::raft::ShoalRaft;
use crate::runtime::{reached, Situation};

/// Reads waiting for a check, at most; callers wait beyond it.
const READS_QUEUED_MAX: usize = 16 * 1024;

type ReadIndex = Result<Option<LogId<NodeId>>, KvError>;

/// Where reads get their read index. Clones share it.
#[derive(Clone)]
pub struct ReadIndexer {
    queue: mpsc::Sender<oneshot::Sender<ReadIndex>>,
}

impl ReadIndexer {
    /// Starts checking leadership for reads on `raft` (the task ends with
    /// the last clone).
    pub fn start(raft: ShoalRaft) -> ReadIndexer {
        let (queue, waiting) = mpsc::channel(READS_QUEUED_MAX);
        tokio::spawn(check_for_reads(raft, waiting));
        ReadIndexer { queue }
    }

    /// The log position a read that begins now must see applied, confirmed
    /// by a quorum after this call began; an error if this replica does not
    /// lead.
    pub async fn read_index(&self) -> ReadIndex {
        let stopped = || KvError::Unavailable("replica is shutting down".into());
        let (answer, index) = oneshot::channel();
        self.queue.send(answer).await.map_err(|_| stopped())?;
        index.await.map_err(|_| stopped())?
    }
}

/// Runs one check for all reads waiting, then the next, for ever.
async fn check_for_reads(raft: ShoalRaft, mut waiting: mpsc::Receiver<oneshot::Sender<ReadIndex>>) {
    while let Some(first) = waiting.recv().await {
        let mut readers = vec![first];
        while let Ok(next) = waiting.try_recv() {
            readers.push(next);
        }
        let index = raft
            .get_read_log_id()
            .await
            .map(|(read_log_id, _applied)| read_log_id)
            .map_err(from_read_error);
        if readers.len() > 1 {
            reached(Situation::ReadsShared);
        }
        for reader in readers {
            let _ = reader.send(index.clone());
        }
    }
}

fn from_read_error(error: RaftError<NodeId, CheckIsLeaderError<NodeId, Member>>) -> KvError {
    match error {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => not_leader(&f),
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
            KvError::Unavailable(q.to_string())
        }
        RaftError::Fatal(fatal) => KvError::Unavailable(fatal.to_string()),
    }
}
