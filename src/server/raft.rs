//! The receiving end of the Raft transport (see [`crate::raft::network`]).

use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::proto::raft_server::Raft;
use crate::proto::RaftMessage;
use crate::raft::{codec, ShoalRaft};

/// Hands consensus messages from peers to the local replica.
#[derive(Clone)]
pub struct RaftService {
    raft: ShoalRaft,
}

impl RaftService {
    /// Serves `raft`.
    pub fn new(raft: ShoalRaft) -> RaftService {
        RaftService { raft }
    }
}

fn decode<T: DeserializeOwned>(request: Request<RaftMessage>) -> Result<T, Status> {
    codec::decode(&request.into_inner().payload)
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

fn reply<T: Serialize>(result: &T) -> Result<Response<RaftMessage>, Status> {
    let payload = codec::encode(result).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftMessage {
        payload: payload.into(),
    }))
}

#[tonic::async_trait]
impl Raft for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        reply(&self.raft.append_entries(decode(request)?).await)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        reply(&self.raft.vote(decode(request)?).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        reply(&self.raft.install_snapshot(decode(request)?).await)
    }
}
