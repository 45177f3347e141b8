//! What replicas ask of each other: the receiving end of the Raft transport
//! (see [`crate::raft::network`]), and shard transfer between data groups
//! (see [`super::mover`]).

use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::auth::Needs;
use super::replica::Replica;
use crate::error::KvError;
use crate::limits::SHARD_PART_SIZE_BYTES;
use crate::machine::command::Command;
use crate::machine::shard::ShardOp;
use crate::machine::Role;
use crate::proto::peer_server::Peer;
use crate::proto::{DropShardResponse, PullShardResponse, RaftMessage, ShardRequest};
use crate::raft::codec;
use crate::runtime::{buggify, FaultSite};

/// Serves the `Peer` gRPC service from one replica.
#[derive(Clone)]
pub struct PeerService {
    replica: Replica,
}

impl PeerService {
    /// Serves peers from `replica`.
    pub fn new(replica: Replica) -> PeerService {
        PeerService { replica }
    }
}

impl PeerService {
    /// Admits `request` only from a peer replica.
    fn admit<T>(&self, request: Request<T>) -> Result<T, Status> {
        self.replica.access.admit(&request, Needs::Peer)?;
        Ok(request.into_inner())
    }

    /// `error`, with a leader hint pointing at the leader's peer address
    /// (where a peer's call must go), not its client address.
    fn for_peer(&self, error: KvError) -> KvError {
        let KvError::NotLeader {
            leader_id: Some(leader),
            ..
        } = error
        else {
            return error;
        };
        let metrics = self.replica.raft.metrics();
        let view = metrics.borrow();
        let leader_addr = view
            .membership_config
            .nodes()
            .find(|(id, _)| **id == leader)
            .map(|(_, member)| member.peer_addr().to_string());
        KvError::NotLeader {
            leader_id: Some(leader),
            leader_addr,
        }
    }
}

fn decode<T: DeserializeOwned>(message: RaftMessage) -> Result<T, Status> {
    codec::decode(&message.payload).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn reply<T: Serialize>(result: &T) -> Result<Response<RaftMessage>, Status> {
    let payload = codec::encode(result).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftMessage {
        payload: payload.into(),
    }))
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        reply(
            &self
                .replica
                .raft
                .append_entries(decode(self.admit(request)?)?)
                .await,
        )
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        reply(&self.replica.raft.vote(decode(self.admit(request)?)?).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        reply(
            &self
                .replica
                .raft
                .install_snapshot(decode(self.admit(request)?)?)
                .await,
        )
    }

    async fn pull_shard(
        &self,
        request: Request<ShardRequest>,
    ) -> Result<Response<PullShardResponse>, Status> {
        let ShardRequest { num, shard, after } = self.admit(request)?;
        if buggify(FaultSite::ShardPullError) {
            return Err(KvError::Unavailable("shard pull failed (injected)".into()).into());
        }
        let barrier = self.replica.read_barrier().await;
        barrier.map_err(|e| self.for_peer(e))?;
        let data = self.replica.state_machine.read().shard_for_new_owner(
            num,
            shard,
            after.as_deref(),
            SHARD_PART_SIZE_BYTES,
        )?;
        let shard = codec::encode(&data).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(PullShardResponse {
            shard: shard.into(),
        }))
    }

    async fn drop_shard(
        &self,
        request: Request<ShardRequest>,
    ) -> Result<Response<DropShardResponse>, Status> {
        let ShardRequest { num, shard, .. } = self.admit(request)?;
        let config_num = match &self.replica.state_machine.read().role {
            Role::Data(group) => group.config.num,
            _ => return Err(KvError::Refused("this group holds no shards".into()).into()),
        };
        if config_num < num {
            return Err(KvError::NotYet(format!("configuration {num} (at {config_num})")).into());
        }
        // Dropping twice, or a shard already gone, is fine: the answer is the
        // same, the shard is not here.
        let command = Command::Shard(ShardOp::Drop { num, shard });
        let written = self.replica.write(command).await;
        written.map_err(|e| self.for_peer(e))?;
        Ok(Response::new(DropShardResponse {}))
    }
}
