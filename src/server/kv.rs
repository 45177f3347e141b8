//! The client API: validates requests, sends writes through the Raft log and
//! serves linearizable reads from the state machine.

use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::BasicNode;
use tonic::{Request, Response, Status};

use crate::error::{check_key, check_value, KvError};
use crate::proto::kv_server::Kv;
use crate::proto::{
    CasRequest, CasResponse, DeleteRequest, DeleteResponse, GetRequest, GetResponse, PutRequest,
    PutResponse, StatusRequest, StatusResponse,
};
use crate::raft::{NodeId, ShoalRaft};
use crate::runtime::{planted, PlantedBug};
use crate::storage::kv::{Command, CommandResult, Op, WriteId};
use crate::storage::StateMachineStore;

/// How long a read waits for the local state machine to catch up with the
/// commit index it must reflect before answering "unavailable".
const READ_APPLY_WAIT: Duration = Duration::from_secs(2);

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
            result => Ok(result),
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
            unreachable!("a key-value write is not a membership change: {e}")
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
        let value = self.state_machine.read().kv.get(&key);
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
