//! The Raft transport: openraft's network traits over the gRPC `Peer` service.
//!
//! Each message is encoded with [`super::codec`] into a `RaftMessage`; the
//! reply carries `Result<Response, RaftError>` the same way, so a remote
//! consensus error comes back typed.

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::ids::Member;
use openraft::network::{Backoff, RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;

use super::codec;
use super::TypeConfig;
use crate::ids::NodeId;
use crate::limits::{APPEND_SIZE_MAX, RAFT_MESSAGE_SIZE_MAX};
use crate::proto::peer_client::PeerClient;
use crate::proto::RaftMessage;
use crate::runtime::{buggify, buggify_delay, reached, FaultSite, Situation};
use crate::tls::Credentials;

/// How long replication to a peer pauses after the peer proved unreachable;
/// well under the election timeout, so a brief blip costs no election.
const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(100);

/// Longest pause the `raft-send-delay` fault site puts before a message.
const BUGGIFY_SEND_DELAY_MAX: Duration = Duration::from_millis(150);

/// Connections to peers, shared by every [`Peer`] this node makes: openraft
/// asks for a new client for each leadership check, and each must not dial
/// a fresh connection.
type Connections = Arc<Mutex<BTreeMap<(NodeId, String), PeerClient<Channel>>>>;

/// Makes one [`Peer`] per replica this node talks to.
#[derive(Debug, Clone)]
pub struct Network {
    id: NodeId,
    connections: Connections,
    credentials: Credentials,
}

impl Network {
    /// The transport of replica `id`, which proves itself to its peers with
    /// `credentials`.
    pub fn new(id: NodeId, credentials: Credentials) -> Network {
        Network {
            id,
            connections: Connections::default(),
            credentials,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Peer {
        Peer {
            id: self.id,
            target,
            addr: node.peer_addr().to_string(),
            connections: self.connections.clone(),
            credentials: self.credentials.clone(),
        }
    }
}

/// The link to one peer replica. Its connection is opened on first use,
/// shared through [`Connections`], and reopened after a transport failure.
#[derive(Debug)]
pub struct Peer {
    id: NodeId,
    target: NodeId,
    addr: String,
    connections: Connections,
    credentials: Credentials,
}

type RemoteResult<T, E> = Result<T, RaftError<NodeId, E>>;

impl Peer {
    fn key(&self) -> (NodeId, String) {
        (self.target, self.addr.clone())
    }

    fn forget_connection(&self) {
        self.connections
            .lock()
            .expect("connections lock")
            .remove(&self.key());
    }

    async fn client(&mut self) -> Result<PeerClient<Channel>, Unreachable> {
        if let Some(client) = self
            .connections
            .lock()
            .expect("connections lock")
            .get(&self.key())
        {
            return Ok(client.clone());
        }
        let endpoint = self
            .credentials
            .endpoint(&self.addr)
            .map_err(|e| Unreachable::new(&std::io::Error::other(e)))?;
        let channel = endpoint.connect().await.map_err(|e| Unreachable::new(&e))?;
        let client = PeerClient::new(channel)
            .max_decoding_message_size(RAFT_MESSAGE_SIZE_MAX)
            .max_encoding_message_size(RAFT_MESSAGE_SIZE_MAX);
        self.connections
            .lock()
            .expect("connections lock")
            .insert(self.key(), client.clone());
        Ok(client)
    }

    /// Sends one message and decodes the typed reply.
    async fn call<Req, Resp, E>(
        &mut self,
        action: RPCTypes,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Member, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload = codec::encode(request).map_err(|e| NetworkError::new(&e))?;
        self.send(action, payload, option).await
    }

    /// Sends one encoded message and decodes the typed reply.
    async fn send<Resp, E>(
        &mut self,
        action: RPCTypes,
        payload: Vec<u8>,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Member, RaftError<NodeId, E>>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        buggify_delay(FaultSite::RaftSendDelay, BUGGIFY_SEND_DELAY_MAX).await;
        if buggify(FaultSite::RaftSendError) {
            let error = std::io::Error::other("message lost (injected)");
            return Err(RPCError::Network(NetworkError::new(&error)));
        }
        let message = self.credentials.request(RaftMessage {
            payload: payload.into(),
        });
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
                // The peer answered or the stream broke; either way this is
                // not proof that the peer is down, so no backoff.
                self.forget_connection();
                return Err(RPCError::Network(NetworkError::new(&status)));
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
    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(UNREACHABLE_BACKOFF))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        let payload = codec::encode(&rpc).map_err(|e| NetworkError::new(&e))?;
        let entries = rpc.entries.len();
        if entries > 1 && payload.len() > APPEND_SIZE_MAX {
            // As many entries as fit, if they are of the average size.
            let fit = (entries * APPEND_SIZE_MAX / payload.len()).max(1);
            reached(Situation::AppendSplit);
            let too_large = PayloadTooLarge::new_entries_hint(fit as u64);
            return Err(RPCError::PayloadTooLarge(too_large));
        }
        self.send(RPCTypes::AppendEntries, payload, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(RPCTypes::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.call(RPCTypes::Vote, &rpc, &option).await
    }
}
