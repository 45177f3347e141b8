//! Administration: the shard controller's configurations (query, join,
//! leave, move), changes to a group's replica membership, and backups.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::ids::Member;
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use tonic::{Request, Response, Status};

use super::auth::Needs;
use super::replica::{from_write_error, Replica};
use crate::error::KvError;
use crate::ids::NodeId;
use crate::limits::BACKUP_CHUNK_SIZE_BYTES;
use crate::machine::command::{Command, CommandResult};
use crate::machine::shard::controller::ControllerOp;
use crate::machine::shard::ShardOp;
use crate::machine::Role;
use crate::proto::admin_server::Admin;
use crate::proto::{
    ConfigResponse, MembershipRequest, MembershipResponse, QueryRequest, ReconfigureRequest,
    SaveSnapshotRequest, SnapshotChunk,
};
use crate::storage::backup;

/// Retries of a membership change refused because another is settling.
const MEMBERSHIP_RETRIES_MAX: u32 = 20;

/// Pause between those retries.
const MEMBERSHIP_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Serves the `Admin` gRPC service from one replica.
#[derive(Clone)]
pub struct AdminService {
    replica: Replica,
}

impl AdminService {
    /// Serves administration from `replica`.
    pub fn new(replica: Replica) -> AdminService {
        AdminService { replica }
    }

    /// Configuration `num` (the latest if `None`) of the controller group.
    fn config(&self, num: Option<u64>) -> Result<Response<ConfigResponse>, Status> {
        let applied = self.replica.state_machine.read();
        let Role::Controller(controller) = &applied.role else {
            return Err(KvError::Refused("this group is not the shard controller".into()).into());
        };
        Ok(Response::new(ConfigResponse {
            config: Some(controller.query(num).into()),
        }))
    }

    /// The voters the group has now; refused unless this replica leads, as
    /// only the leader knows the membership for sure.
    fn voters(&self) -> Result<BTreeSet<NodeId>, KvError> {
        let metrics = self.replica.raft.metrics();
        let view = metrics.borrow();
        if view.current_leader != Some(view.id) {
            let leader_addr = view.current_leader.and_then(|l| {
                view.membership_config
                    .nodes()
                    .find(|(id, _)| **id == l)
                    .map(|(_, n)| n.addr.clone())
            });
            return Err(KvError::NotLeader {
                leader_id: view.current_leader,
                leader_addr,
            });
        }
        Ok(view.membership_config.membership().voter_ids().collect())
    }
}

/// Runs a membership change, waiting (briefly) while an earlier one is
/// still settling, as the learner just added is, say.
async fn retry_in_progress<F, Fut, T>(mut change: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<
        Output = Result<T, RaftError<NodeId, ClientWriteError<NodeId, Member>>>,
    >,
{
    let mut attempts = 0;
    loop {
        match change().await {
            Ok(done) => return Ok(done),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(_),
            ))) if attempts < MEMBERSHIP_RETRIES_MAX => {
                attempts += 1;
                tokio::time::sleep(MEMBERSHIP_RETRY_PAUSE).await;
            }
            Err(e) => return Err(from_write_error(e).into()),
        }
    }
}

/// A backup file's bytes, as `SaveSnapshot` streams them.
type ChunkStream = std::pin::Pin<
    Box<dyn tonic::codegen::tokio_stream::Stream<Item = Result<SnapshotChunk, Status>> + Send>,
>;

#[tonic::async_trait]
impl Admin for AdminService {
    type SaveSnapshotStream = ChunkStream;

    async fn save_snapshot(
        &self,
        request: Request<SaveSnapshotRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        self.replica.access.admit(&request, Needs::Admin)?;
        self.replica.read_barrier().await?;
        let state_machine = &self.replica.state_machine;
        let (meta, state) = state_machine
            .capture()
            .map_err(|e| Status::internal(e.to_string()))?;
        let group = backup::group_of(&state_machine.read().role);
        let file = bytes::Bytes::from(backup::encode(group, &meta, &state));
        tracing::info!(%group, last_log_id = ?meta.last_log_id, size_bytes = file.len(), "backup taken");
        let chunks: Vec<Result<SnapshotChunk, Status>> = (0..file.len())
            .step_by(BACKUP_CHUNK_SIZE_BYTES)
            .map(|at| {
                let end = (at + BACKUP_CHUNK_SIZE_BYTES).min(file.len());
                Ok(SnapshotChunk {
                    data: file.slice(at..end),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tonic::codegen::tokio_stream::iter(
            chunks,
        ))))
    }

    async fn query(
        &self,
        request: Request<QueryRequest>,
    ) -> Result<Response<ConfigResponse>, Status> {
        let QueryRequest { num } = request.into_inner();
        self.replica.read_barrier().await?;
        self.config(num)
    }

    async fn reconfigure(
        &self,
        request: Request<ReconfigureRequest>,
    ) -> Result<Response<ConfigResponse>, Status> {
        self.replica.access.admit(&request, Needs::Admin)?;
        let op = ControllerOp::try_from(request.into_inner())?;
        let command = Command::Shard(ShardOp::Controller(op));
        match self.replica.write(command).await?.result {
            CommandResult::Controller(Ok(num)) => self.config(Some(num)),
            CommandResult::Controller(Err(e)) => Err(KvError::Refused(e.to_string()).into()),
            _ => Err(KvError::Refused("this group is not the shard controller".into()).into()),
        }
    }

    async fn change_membership(
        &self,
        request: Request<MembershipRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        self.replica.access.admit(&request, Needs::Admin)?;
        let MembershipRequest {
            add_id,
            add_addr,
            add_peer_addr,
            remove_id,
        } = request.into_inner();
        let raft = &self.replica.raft;
        let mut voters = self.voters()?;
        match (add_id, remove_id) {
            (Some(id), None) => {
                if add_addr.is_empty() {
                    return Err(Status::invalid_argument("add_addr is required with add_id"));
                }
                let node = Member::new(add_addr, add_peer_addr);
                retry_in_progress(|| raft.add_learner(id, node.clone(), false)).await?;
                voters.insert(id);
            }
            (None, Some(id)) => {
                if !voters.remove(&id) {
                    return Err(KvError::Refused(format!("replica {id} is not a voter")).into());
                }
                if voters.is_empty() {
                    return Err(
                        KvError::Refused("a group keeps at least one replica".into()).into(),
                    );
                }
            }
            _ => return Err(Status::invalid_argument("give either add_id or remove_id")),
        }
        retry_in_progress(|| raft.change_membership(voters.clone(), false)).await?;
        let metrics = raft.metrics();
        let members = metrics
            .borrow()
            .membership_config
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect();
        Ok(Response::new(MembershipResponse { members }))
    }
}
