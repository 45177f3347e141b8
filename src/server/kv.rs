//! The client API: validates requests, sends writes through the Raft log and
//! serves linearizable reads from the state machine.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::error::{
    ChangeMembershipError, CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError,
};
use openraft::BasicNode;
use tonic::{Request, Response, Status};

use crate::error::{check_key, check_value, KvError};
use crate::proto::kv_server::Kv;
use crate::proto::{
    CasRequest, CasResponse, ConfigResponse, DeleteRequest, DeleteResponse, DropShardResponse,
    GetRequest, GetResponse, KeyValue, PullShardResponse, PutRequest, PutResponse, QueryRequest,
    ReconfigureRequest, ScanRequest, ScanResponse, ShardRequest, StatusRequest, StatusResponse,
};
use crate::proto::{MembershipRequest, MembershipResponse};
use crate::raft::codec;
use crate::raft::{NodeId, ShoalRaft};
use crate::runtime::{planted, PlantedBug};
use crate::shard::controller::ControllerOp;
use crate::shard::group::ShardStatus;
use crate::shard::{shard_of, ShardOp};
use crate::storage::kv::{Command, CommandResult, Op, WriteId};
use crate::storage::state_machine::Role;
use crate::storage::StateMachineStore;

/// How long a read waits for the local state machine to catch up with the
/// commit index it must reflect before answering "unavailable".
const READ_APPLY_WAIT: Duration = Duration::from_secs(2);

/// Retries of a membership change refused because another is settling.
const MEMBERSHIP_RETRIES_MAX: u32 = 20;

/// Pause between those retries.
const MEMBERSHIP_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Serves the `Kv` gRPC service from one replica.
#[derive(Clone)]
pub struct KvService {
    raft: ShoalRaft,
    state_machine: StateMachineStore,
}

impl KvService {
    /// Serves the client API from `raft`, reading from `state_machine`.
    pub fn new(raft: ShoalRaft, state_machine: StateMachineStore) -> KvService {
        KvService {
            raft,
            state_machine,
        }
    }

    /// Waits until a read of the state machine is linearizable: this node has
    /// confirmed with a quorum that it is still the leader (read index), and it
    /// has applied everything committed before the read began.
    async fn read_barrier(&self) -> Result<(), KvError> {
        let mut metrics = self.raft.metrics();
        if planted(PlantedBug::StaleRead) {
            let view = metrics.borrow().clone();
            if view.current_leader == Some(view.id) {
                return Ok(());
            }
        }
        let (read_log_id, _) = self.raft.get_read_log_id().await.map_err(from_read_error)?;
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

    /// Commits a command and returns its result.
    async fn write(&self, id: Option<WriteId>, op: Op) -> Result<CommandResult, KvError> {
        let response = self
            .raft
            .client_write(Command { id, op })
            .await
            .map_err(from_write_error)?;
        match response.data {
            CommandResult::StaleSequence => Err(KvError::StaleSequence),
            CommandResult::WrongGroup { config_num } => Err(KvError::WrongGroup { config_num }),
            result => Ok(result),
        }
    }
}

/// Runs a membership change, waiting (briefly) while an earlier one is
/// still settling, as the learner just added is, say.
async fn retry_in_progress<F, Fut, T>(mut change: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<
        Output = Result<T, RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>>,
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
            Err(e) => return Err(from_write_error(e).to_status()),
        }
    }
}

fn not_leader(forward: &ForwardToLeader<NodeId, BasicNode>) -> KvError {
    KvError::NotLeader {
        leader_id: forward.leader_id,
        leader_addr: forward.leader_node.as_ref().map(|n| n.addr.clone()),
    }
}

fn from_read_error(error: RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>) -> KvError {
    match error {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => not_leader(&f),
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
            KvError::Unavailable(q.to_string())
        }
        RaftError::Fatal(fatal) => KvError::Unavailable(fatal.to_string()),
    }
}

fn from_write_error(error: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> KvError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(&f),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            KvError::Refused(e.to_string())
        }
        RaftError::Fatal(fatal) => KvError::Unavailable(fatal.to_string()),
    }
}

fn write_id(id: Option<crate::proto::WriteId>) -> Option<WriteId> {
    id.map(|id| WriteId {
        client_id: id.client_id,
        seq: id.seq,
    })
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let GetRequest { key } = request.into_inner();
        check_key(&key).map_err(|e| e.to_status())?;
        self.read_barrier().await.map_err(|e| e.to_status())?;
        let applied = self.state_machine.read();
        if let Err(config_num) = applied.serves(&key) {
            return Err(KvError::WrongGroup { config_num }.to_status());
        }
        let value = applied.kv.get(&key);
        Ok(Response::new(GetResponse { value }))
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let metrics = self.raft.metrics().borrow().clone();
        Ok(Response::new(StatusResponse {
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
        }))
    }

    async fn scan(&self, request: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        let ScanRequest {
            start,
            end,
            limit,
            shards,
        } = request.into_inner();
        self.read_barrier().await.map_err(|e| e.to_status())?;
        let applied = self.state_machine.read();
        let served: Vec<u32> = match &applied.role {
            Role::Standalone => shards.clone(),
            Role::Controller(_) => Vec::new(),
            Role::Data(group) => shards
                .iter()
                .copied()
                .filter(|s| group.serves(*s))
                .collect(),
        };
        let in_scope = |key: &[u8]| match &applied.role {
            Role::Standalone => true,
            Role::Controller(_) => false,
            Role::Data(group) => served.contains(&shard_of(key, group.config.shard_count())),
        };
        let range = applied.kv.data.range::<[u8], _>((
            std::ops::Bound::Included(&start[..]),
            if end.is_empty() {
                std::ops::Bound::Unbounded
            } else {
                std::ops::Bound::Excluded(&end[..])
            },
        ));
        let entries = range
            .filter(|(k, _)| in_scope(k))
            .take(limit as usize)
            .map(|(k, v)| KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        Ok(Response::new(ScanResponse { entries, served }))
    }

    async fn query(
        &self,
        request: Request<QueryRequest>,
    ) -> Result<Response<ConfigResponse>, Status> {
        let QueryRequest { num } = request.into_inner();
        self.read_barrier().await.map_err(|e| e.to_status())?;
        let applied = self.state_machine.read();
        let Role::Controller(controller) = &applied.role else {
            return Err(
                KvError::Refused("this group is not the shard controller".into()).to_status(),
            );
        };
        let config =
            codec::encode(controller.query(num)).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ConfigResponse {
            config: config.into(),
        }))
    }

    async fn reconfigure(
        &self,
        request: Request<ReconfigureRequest>,
    ) -> Result<Response<ConfigResponse>, Status> {
        let op: ControllerOp = codec::decode(&request.into_inner().op)
            .map_err(|e| Status::invalid_argument(format!("controller operation: {e}")))?;
        let num = match self.write(None, Op::Shard(ShardOp::Controller(op))).await {
            Ok(CommandResult::Controller(Ok(num))) => num,
            Ok(CommandResult::Controller(Err(e))) => {
                return Err(KvError::Refused(e.to_string()).to_status())
            }
            Ok(_) => {
                return Err(
                    KvError::Refused("this group is not the shard controller".into()).to_status(),
                )
            }
            Err(e) => return Err(e.to_status()),
        };
        let applied = self.state_machine.read();
        let Role::Controller(controller) = &applied.role else {
            unreachable!("a controller operation succeeded on a controller");
        };
        let config = codec::encode(controller.query(Some(num)))
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ConfigResponse {
            config: config.into(),
        }))
    }

    async fn pull_shard(
        &self,
        request: Request<ShardRequest>,
    ) -> Result<Response<PullShardResponse>, Status> {
        let ShardRequest { num, shard } = request.into_inner();
        self.read_barrier().await.map_err(|e| e.to_status())?;
        let applied = self.state_machine.read();
        let Role::Data(group) = &applied.role else {
            return Err(KvError::Refused("this group holds no shards".into()).to_status());
        };
        let leaving = matches!(group.status.get(&shard), Some(ShardStatus::Leaving { .. }));
        if group.config.num != num || !leaving {
            let why = format!(
                "shard {shard} is not being given away at configuration {num} (at {})",
                group.config.num
            );
            return Err(KvError::NotYet(why).to_status());
        }
        let data = applied.kv.shard_data(shard, group.config.shard_count());
        let shard = codec::encode(&(data, &applied.kv.sessions))
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(PullShardResponse {
            shard: shard.into(),
        }))
    }

    async fn drop_shard(
        &self,
        request: Request<ShardRequest>,
    ) -> Result<Response<DropShardResponse>, Status> {
        let ShardRequest { num, shard } = request.into_inner();
        let config_num = match &self.state_machine.read().role {
            Role::Data(group) => group.config.num,
            _ => return Err(KvError::Refused("this group holds no shards".into()).to_status()),
        };
        if config_num < num {
            return Err(
                KvError::NotYet(format!("configuration {num} (at {config_num})")).to_status(),
            );
        }
        // Dropping twice, or a shard already gone, is fine: the answer is the
        // same, the shard is not here.
        match self
            .write(None, Op::Shard(ShardOp::Drop { num, shard }))
            .await
        {
            Ok(_) => Ok(Response::new(DropShardResponse {})),
            Err(e) => Err(e.to_status()),
        }
    }

    async fn change_membership(
        &self,
        request: Request<MembershipRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        let MembershipRequest {
            add_id,
            add_addr,
            remove_id,
        } = request.into_inner();
        // Only the leader knows the group's membership for sure.
        let mut voters: BTreeSet<NodeId> = {
            let metrics = self.raft.metrics();
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
                }
                .to_status());
            }
            view.membership_config.membership().voter_ids().collect()
        };
        match (add_id, remove_id) {
            (Some(id), None) => {
                if add_addr.is_empty() {
                    return Err(Status::invalid_argument("add_addr is required with add_id"));
                }
                let node = BasicNode::new(add_addr);
                retry_in_progress(|| self.raft.add_learner(id, node.clone(), false)).await?;
                voters.insert(id);
            }
            (None, Some(id)) => {
                if !voters.remove(&id) {
                    return Err(
                        KvError::Refused(format!("replica {id} is not a voter")).to_status()
                    );
                }
                if voters.is_empty() {
                    return Err(
                        KvError::Refused("a group keeps at least one replica".into()).to_status(),
                    );
                }
            }
            _ => return Err(Status::invalid_argument("give either add_id or remove_id")),
        }
        retry_in_progress(|| self.raft.change_membership(voters.clone(), false)).await?;
        let metrics = self.raft.metrics();
        let members = metrics
            .borrow()
            .membership_config
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect();
        Ok(Response::new(MembershipResponse { members }))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let PutRequest { key, value, id } = request.into_inner();
        check_key(&key).map_err(|e| e.to_status())?;
        check_value(&value).map_err(|e| e.to_status())?;
        match self.write(write_id(id), Op::Put { key, value }).await {
            Ok(CommandResult::Put) => Ok(Response::new(PutResponse {})),
            Ok(_) => Err(KvError::WriteIdConflict.to_status()),
            Err(e) => Err(e.to_status()),
        }
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let DeleteRequest { key, id } = request.into_inner();
        check_key(&key).map_err(|e| e.to_status())?;
        match self.write(write_id(id), Op::Delete { key }).await {
            Ok(CommandResult::Delete { existed }) => Ok(Response::new(DeleteResponse { existed })),
            Ok(_) => Err(KvError::WriteIdConflict.to_status()),
            Err(e) => Err(e.to_status()),
        }
    }

    async fn compare_and_swap(
        &self,
        request: Request<CasRequest>,
    ) -> Result<Response<CasResponse>, Status> {
        let CasRequest {
            key,
            expected,
            new_value,
            id,
        } = request.into_inner();
        check_key(&key).map_err(|e| e.to_status())?;
        for value in expected.iter().chain(new_value.iter()) {
            check_value(value).map_err(|e| e.to_status())?;
        }
        let op = Op::Cas {
            key,
            expected,
            new: new_value,
        };
        match self.write(write_id(id), op).await {
            Ok(CommandResult::Cas { swapped, current }) => {
                Ok(Response::new(CasResponse { swapped, current }))
            }
            Ok(_) => Err(KvError::WriteIdConflict.to_status()),
            Err(e) => Err(e.to_status()),
        }
    }
}
