//! Client commands on their way into the log, batched: openraft appends and
//! syncs each proposal before it takes the next, so a leader that proposed
//! every write on its own would sync once per write. The proposer instead
//! takes every command waiting when it is ready and proposes them as one
//! [`Command::Batch`] entry; a lone command is proposed as itself, so an
//! idle group adds no delay.
//!
//! One batch is in flight at a time. Measured with `shoal-bench put
//! --clients 100` on a group of three processes, more batches in flight
//! were slower (openraft syncs each proposal before taking the next, so
//! more batches mean more, smaller syncs).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::metrics::NodeMetrics;
use super::replica::from_write_error;
use crate::error::KvError;
use crate::limits::ENTRY_PAYLOAD_SIZE_MAX;
use crate::machine::command::{Command, CommandResult, Outcome};
use crate::raft::ShoalRaft;
use crate::runtime::{planted, reached, PlantedBug, Situation};

/// Commands waiting to be proposed, at most; callers wait beyond it.
const COMMANDS_QUEUED_MAX: usize = 16 * 1024;

type Answer = oneshot::Sender<Result<Outcome, KvError>>;

/// The way into a replica's log. Clones share it.
#[derive(Clone)]
pub struct Proposer {
    queue: mpsc::Sender<(Command, Answer)>,
}

impl Proposer {
    /// Starts proposing to `raft` (the task ends with the last clone).
    pub fn start(raft: ShoalRaft, metrics: Arc<NodeMetrics>) -> Proposer {
        let (queue, waiting) = mpsc::channel(COMMANDS_QUEUED_MAX);
        tokio::spawn(propose_batches(raft, metrics, waiting));
        Proposer { queue }
    }

    /// Commits `command` and returns its outcome.
    pub async fn propose(&self, command: Command) -> Result<Outcome, KvError> {
        let stopped = || KvError::Unavailable("replica is shutting down".into());
        let (answer, outcome) = oneshot::channel();
        self.queue
            .send((command, answer))
            .await
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

/// Proposes the waiting commands in batches, one batch at a time: while one
/// replicates and applies, the next gathers everything that arrives.
async fn propose_batches(
    raft: ShoalRaft,
    metrics: Arc<NodeMetrics>,
    mut waiting: mpsc::Receiver<(Command, Answer)>,
) {
    let mut carried = None;
    loop {
        let first = match carried.take() {
            Some(first) => first,
            None => match waiting.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        let mut batch = vec![first];
        let mut size = 0;
        while let Some(size_of_last) = batch.last().and_then(|(c, _)| c.batch_size()) {
            size += size_of_last;
            let Ok(next) = waiting.try_recv() else { break };
            match next.0.batch_size() {
                Some(more) if size + more <= ENTRY_PAYLOAD_SIZE_MAX => batch.push(next),
                _ => {
                    carried = Some(next);
                    break;
                }
            }
        }
        commit(&raft, &metrics, batch).await;
    }
}

/// Proposes one batch and answers each of its commands.
async fn commit(raft: &ShoalRaft, metrics: &NodeMetrics, batch: Vec<(Command, Answer)>) {
    let (mut commands, answers): (Vec<Command>, Vec<Answer>) = batch.into_iter().unzip();
    let command = match commands.len() {
        1 => commands.pop().expect("one command"),
        _ => {
            reached(Situation::WritesBatched);
            Command::Batch(commands)
        }
    };
    let writes = answers.len() as i64;
    metrics.proposals_pending.inc_by(writes);
    let response = raft.client_write(command).await;
    metrics.proposals_pending.dec_by(writes);
    match response.map(|r| r.data) {
        Err(e) => {
            let e = from_write_error(e);
            answers
                .into_iter()
                .for_each(|a| drop(a.send(Err(e.clone()))));
        }
        Ok(Outcome {
            result: CommandResult::Batch(mut outcomes),
            ..
        }) => {
            if planted(PlantedBug::BatchAnswersRotated) {
                outcomes.rotate_left(1);
            }
            for (answer, outcome) in answers.into_iter().zip(outcomes) {
                let _ = answer.send(Ok(outcome));
            }
        }
        Ok(outcome) => {
            let answer = answers.into_iter().next().expect("one command");
            let _ = answer.send(Ok(outcome));
        }
    }
}
