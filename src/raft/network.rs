//! The Raft transport: openraft's network traits over the gRPC `Raft` service.
//!
//! Each message is encoded with [`super::codec`] into a `RaftMessage`; the
//! reply carries `Result<Response, RaftError>` the same way, so a remote
//! consensus error comes back typed.

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use super::codec;
use super::{NodeId, TypeConfig, RAFT_MESSAGE_SIZE_MAX};
use crate::proto::raft_client::RaftClient;
use crate::proto::RaftMessage;

/// Makes one [`Peer`] per replica this node replicates to.
#[derive(Debug, Clone)]
pub struct Network {
    /// This node's id, for error reports.
    pub id: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            id: self.id,
            target,
            addr: node.addr.clone(),
            client: None,
        }
    }
}

/// The connection to one peer replica, opened on first use and reopened after
/// a transport failure.
#[derive(Debug)]
pub struct Peer {
    id: NodeId,
    target: NodeId,
    addr: String,
    client: Option<RaftClient<Channel>>,
}

type RemoteResult<T, E> = Result<T, RaftError<NodeId, E>>;

impl Peer {
    async fn client(&mut self) -> Result<RaftClient<Channel>, Unreachable> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{}", self.addr))
            .map_err(|e| Unreachable::new(&e))?;
        let channel = endpoint.connect().await.map_err(|e| Unreachable::new(&e))?;
        let client = RaftClient::new(channel)
            .max_decoding_message_size(RAFT_MESSAGE_SIZE_MAX)
            .max_encoding_message_size(RAFT_MESSAGE_SIZE_MAX);
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Sends one message and decodes the typed reply.
    async fn call<Req, Resp, E>(
        &mut self,
        action: RPCTypes,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload = codec::encode(request).map_err(|e| NetworkError::new(&e))?;
        let message = RaftMessage {
            payload: payload.into(),
        };
        let mut client = self.client().await?;
        let ttl = option.hard_ttl();
        let call = async {
            match action {
                RPCTypes::Vote => client.vote(message).await,
                RPCTypes::AppendEntries => client.append_entries(message).await,
                RPCTypes::InstallSnapshot => client.install_snapshot(message).await,
            }
        };
        let reply = match crate::runtime::timeout(ttl, call).await {
            Ok(Ok(reply)) => reply.into_inner(),
            Ok(Err(status)) => {
                // The connection may be broken: open a fresh one next time.
                self.client = None;
                return Err(RPCError::Unreachable(Unreachable::new(&status)));
            }
            Err(_) => {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.id,
                    target: self.target,
                    timeout: ttl,
                }))
            }
        };
        let result: RemoteResult<Resp, E> =
            codec::decode(&reply.payload).map_err(|e| NetworkError::new(&e))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RPCTypes::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(RPCTypes::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RPCTypes::Vote, &rpc, &option).await
    }
}
