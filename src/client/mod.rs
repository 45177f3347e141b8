//! The client library: routes each key to the group serving its shard (with
//! a cached configuration from the shard controller, refreshed when a group
//! answers "wrong group"), finds each group's leader, retries with backoff
//! under a deadline, and numbers writes so that a retried write is applied
//! once, even across a shard move.
//!
//! A [`Client`] has one identity and sends one request at a time (its
//! methods take `&mut self`); run several clients for concurrency.
//!
//! [`Client::scan`] merges the shards' ordered results. Each shard's part is
//! linearizable; the whole is not one snapshot (shards are read at slightly
//! different moments).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use tonic::Status;

mod admin;
pub mod backup;
pub mod endpoints;
pub mod link;
pub mod retry;
pub mod session;
mod write;

use crate::error::KvError;
use crate::ids::{GroupId, ShardId};
use crate::limits::check_key;
use crate::machine::shard::config::Config;
use crate::machine::shard::shard_of;
use crate::proto::{GetRequest, QueryRequest, ScanRequest, StatusRequest, StatusResponse};
pub use crate::tls::Credentials;
use link::{admin, kv};
pub use link::{GroupLink, SharedConnections};

/// How a client finds the cluster and retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Addresses (`host:port`) of nodes: what they are is `routing`'s.
    pub endpoints: Vec<String>,
    /// Who routes each key to the group that serves it.
    pub routing: Routing,
    /// Total time one operation may take, retries included.
    pub deadline: Duration,
    /// Time one attempt may take before the client tries again.
    pub attempt_timeout: Duration,
    /// First pause between attempts; doubles up to `backoff_max`.
    pub backoff_initial: Duration,
    /// Longest pause between attempts.
    pub backoff_max: Duration,
    /// What the client presents to nodes (TLS, the cluster token).
    pub credentials: Credentials,
    /// Connections shared with the other clients given the same pool; none:
    /// each client opens its own.
    pub connections: Option<SharedConnections>,
}

/// Who routes a client's requests, and so what its endpoints are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// The endpoints are the members of a standalone group, which serves
    /// every key.
    Group,
    /// The endpoints are the shard controller's members; the client routes
    /// each key with the controller's configuration.
    Sharded,
    /// The endpoints are any nodes of the cluster, which forward each
    /// request to the group that serves it (one hop); the client only picks
    /// a node and retries. For clients that can reach some nodes only (behind
    /// a load balancer, say).
    ByNodes,
}

impl ClientConfig {
    /// Defaults for a sharded cluster whose controller is at `controller`.
    pub fn sharded(controller: Vec<String>) -> ClientConfig {
        ClientConfig {
            routing: Routing::Sharded,
            ..ClientConfig::new(controller)
        }
    }

    /// Defaults for a cluster reached through the nodes at `nodes`, which
    /// route each request (see [`Routing::ByNodes`]).
    pub fn by_nodes(nodes: Vec<String>) -> ClientConfig {
        ClientConfig {
            routing: Routing::ByNodes,
            ..ClientConfig::new(nodes)
        }
    }

    /// Defaults for a group reachable at `endpoints`.
    pub fn new(endpoints: Vec<String>) -> ClientConfig {
        ClientConfig {
            endpoints,
            routing: Routing::Group,
            deadline: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(2),
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(500),
            credentials: Credentials::default(),
            connections: None,
        }
    }
}

/// Why an operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The group refused the request and retrying cannot help (bad input).
    #[error(transparent)]
    Rejected(#[from] KvError),
    /// The deadline passed before any attempt succeeded. A write that ends
    /// this way may or may not have been applied.
    #[error("no answer within {deadline:?} after {attempts} attempts; last error: {last}")]
    DeadlineExceeded {
        /// The configured deadline.
        deadline: Duration,
        /// Attempts made.
        attempts: u32,
        /// The last attempt's failure.
        last: String,
    },
    /// The server answered with an error that is not Shoal's and is not worth
    /// retrying (an incompatible server, say).
    #[error("server error: {0}")]
    Rpc(Status),
    /// The client was given no endpoints.
    #[error("no endpoints configured")]
    NoEndpoints,
    /// The write's session expired in its group after an earlier attempt
    /// went unanswered: the write may or may not have been applied. (A
    /// refusal with no attempt in doubt is not an error: the client sends
    /// the write again under a new session.)
    #[error("session expired (horizon {horizon}) after an unanswered attempt: the write may or may not have applied")]
    SessionExpired {
        /// The group's eviction horizon.
        horizon: u64,
    },
}

/// The result of a compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasOutcome {
    /// Whether the value was replaced.
    pub swapped: bool,
    /// The value the key held when the operation was applied.
    pub current: Option<Bytes>,
}

/// A connection to one cluster: a standalone group, or a sharded cluster.
pub struct Client {
    config: ClientConfig,
    /// The session writes are numbered in (see [`session`]).
    session: session::Session,
    /// The standalone group, or the shard controller.
    home: GroupLink,
    /// Sharded: the configuration in use, and a link per data group.
    routing: Option<Config>,
    groups: BTreeMap<GroupId, GroupLink>,
}

impl Client {
    /// A client with a fresh random identity.
    pub fn new(config: ClientConfig) -> Client {
        let mut rng = crate::runtime::rng();
        let client_id = rng.gen();
        Client {
            session: session::Session::open(client_id, crate::runtime::wall_clock_ms(), 0),
            home: GroupLink::new(config.endpoints.clone(), &mut rng),
            config,
            routing: None,
            groups: BTreeMap::new(),
        }
    }

    /// The current session's identity in the de-duplication tables.
    pub fn id(&self) -> u64 {
        self.session.client_id
    }

    /// Reads `key` (linearizable).
    pub async fn get(&mut self, key: impl Into<Bytes>) -> Result<Option<Bytes>, ClientError> {
        let key = key.into();
        check_key(&key)?;
        let request = GetRequest { key: key.clone() };
        let routing = self.config.routing;
        let reply = self
            .call_for_key(&key, |ch| {
                let request = request.clone();
                async move { kv(ch).get(mark(routing, request)).await }
            })
            .await?;
        Ok(reply.value)
    }

    /// Keys in `[start, end)` (`end` empty: to the end), in order, at most
    /// `limit`. Linearizable per shard, not one snapshot of all shards.
    pub async fn scan(
        &mut self,
        start: impl Into<Bytes>,
        end: impl Into<Bytes>,
        limit: u32,
    ) -> Result<Vec<(Bytes, Bytes)>, ClientError> {
        let (start, end) = (start.into(), end.into());
        let deadline = self.deadline();
        let request = |shards| ScanRequest {
            start: start.clone(),
            end: end.clone(),
            limit,
            shards,
        };
        if self.config.routing != Routing::Sharded {
            let (entries, _) =
                scan_group(&mut self.home, &self.config, deadline, request(Vec::new())).await?;
            return Ok(entries);
        }
        let mut entries = Vec::new();
        let mut missing: Vec<ShardId> = Vec::new();
        loop {
            let config = self.routing(deadline, false).await?;
            if missing.is_empty() && entries.is_empty() {
                missing = (0..config.shard_count()).collect();
            }
            let mut by_group: BTreeMap<GroupId, Vec<ShardId>> = BTreeMap::new();
            for shard in &missing {
                if let Some(group) = config.owner(*shard) {
                    by_group.entry(group).or_default().push(*shard);
                }
            }
            for (group, shards) in by_group {
                let link = group_link(&mut self.groups, group, &config);
                let (found, served) =
                    scan_group(link, &self.config, deadline, request(shards)).await?;
                entries.extend(found);
                missing.retain(|s| !served.contains(s));
            }
            if missing.is_empty() {
                entries.sort();
                entries.truncate(limit as usize);
                return Ok(entries);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::DeadlineExceeded {
                    deadline: self.config.deadline,
                    attempts: 0,
                    last: format!("shards {missing:?} not served by anyone yet"),
                });
            }
            tokio::time::sleep(self.config.backoff_initial).await;
            self.routing(deadline, true).await?;
        }
    }

    /// Asks one member (the believed leader, else the next endpoint) for its
    /// view of its group.
    pub async fn status(&mut self) -> Result<StatusResponse, ClientError> {
        let deadline = self.deadline();
        self.home
            .call(&self.config, deadline, |ch| async move {
                kv(ch).status(StatusRequest {}).await
            })
            .await
    }

    fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.config.deadline
    }

    /// The configuration to route by, fetched from the controller when there
    /// is none yet or `refresh` asks for the latest.
    async fn routing(
        &mut self,
        deadline: tokio::time::Instant,
        refresh: bool,
    ) -> Result<Config, ClientError> {
        if let (Some(config), false) = (&self.routing, refresh) {
            return Ok(config.clone());
        }
        let config = query(&mut self.home, &self.config, deadline, None).await?;
        self.routing = Some(config.clone());
        Ok(config)
    }

    /// Sends a call about `key` to the group serving its shard, following
    /// "wrong group" answers to newer configurations until the deadline.
    /// `send` makes the call over a connection to one member (see
    /// [`GroupLink::call`]); a request it sends should be [`routed`].
    pub async fn call_for_key<T, F, Fut>(
        &mut self,
        key: &[u8],
        mut send: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(tonic::transport::Channel) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let deadline = self.deadline();
        match self.config.routing {
            Routing::Group => return self.home.call(&self.config, deadline, send).await,
            Routing::ByNodes => return self.through_nodes(deadline, send).await,
            Routing::Sharded => {}
        }
        let mut refresh = false;
        loop {
            let config = self.routing(deadline, refresh).await?;
            let shard = shard_of(key, config.shard_count());
            let last = match config.owner(shard) {
                None => format!("shard {shard} has no group in configuration {}", config.num),
                Some(group) => {
                    let link = group_link(&mut self.groups, group, &config);
                    match link.call(&self.config, deadline, &mut send).await {
                        Err(ClientError::Rejected(KvError::WrongGroup { config_num })) => {
                            format!("group {group} does not serve shard {shard} (at configuration {config_num})")
                        }
                        other => return other,
                    }
                }
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::DeadlineExceeded {
                    deadline: self.config.deadline,
                    attempts: 0,
                    last,
                });
            }
            // The shard may be moving: give it a moment, then look again.
            tokio::time::sleep(self.config.backoff_initial).await;
            refresh = true;
        }
    }
}

impl Client {
    /// Sends a call to any node, which routes it. "Wrong group" means the
    /// key's shard is moving: the call waits and tries again until the
    /// deadline.
    async fn through_nodes<T, F, Fut>(
        &mut self,
        deadline: tokio::time::Instant,
        mut send: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(tonic::transport::Channel) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        loop {
            match self.home.call(&self.config, deadline, &mut send).await {
                Err(ClientError::Rejected(KvError::WrongGroup { config_num })) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ClientError::DeadlineExceeded {
                            deadline: self.config.deadline,
                            attempts: 0,
                            last: format!("the key's shard is moving (configuration {config_num})"),
                        });
                    }
                    tokio::time::sleep(self.config.backoff_initial).await;
                }
                other => return other,
            }
        }
    }
}

/// `message` as a request of a client with `routing`: marked as routed
/// unless the nodes route it.
fn mark<T>(routing: Routing, message: T) -> tonic::Request<T> {
    match routing {
        Routing::ByNodes => tonic::Request::new(message),
        Routing::Group | Routing::Sharded => routed(message),
    }
}

/// Asks the controller group at `link` for configuration `num`.
async fn query(
    link: &mut GroupLink,
    config: &ClientConfig,
    deadline: tokio::time::Instant,
    num: Option<u64>,
) -> Result<Config, ClientError> {
    let request = QueryRequest { num };
    let reply = link
        .call(config, deadline, |ch| async move {
            admin(ch).query(request).await
        })
        .await?;
    config_of(reply)
}

/// One group's part of a scan: the entries, and the shards it served.
async fn scan_group(
    link: &mut GroupLink,
    config: &ClientConfig,
    deadline: tokio::time::Instant,
    request: ScanRequest,
) -> Result<(Vec<(Bytes, Bytes)>, Vec<ShardId>), ClientError> {
    let reply = link
        .call(config, deadline, |ch| {
            let request = request.clone();
            async move { kv(ch).scan(mark(config.routing, request)).await }
        })
        .await?;
    let entries = reply
        .entries
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect();
    Ok((entries, reply.served))
}

/// The link to `group`, (re)made from `config`'s member list.
fn group_link<'a>(
    groups: &'a mut BTreeMap<GroupId, GroupLink>,
    group: GroupId,
    config: &Config,
) -> &'a mut GroupLink {
    let members: Vec<String> = config
        .groups
        .get(&group)
        .map(|m| m.values().cloned().collect())
        .unwrap_or_default();
    let link = groups
        .entry(group)
        .or_insert_with(|| GroupLink::new(members.clone(), &mut crate::runtime::rng()));
    if link.endpoints() != members {
        let unanswered = link.ambiguous_attempts();
        *link = GroupLink::new(members, &mut crate::runtime::rng());
        link.carry_ambiguous_attempts(unanswered);
    }
    link
}

/// The metadata key a routing client sets on its data requests.
pub const ROUTED_HEADER: &str = "shoal-routed";

/// `message` as a request its sender routed: the node answers it itself (a
/// "wrong group" or "not the leader" answer makes the sender look again)
/// rather than forwarding it. Requests without the mark come from clients
/// that do not route, and a node forwards them (see `server::kv`).
pub fn routed<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        ROUTED_HEADER,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    request
}

impl From<ClientError> for Status {
    /// The status a node answers when a request it routed failed.
    fn from(error: ClientError) -> Status {
        match error {
            ClientError::Rejected(e) => e.into(),
            ClientError::SessionExpired { horizon } => KvError::SessionExpired { horizon }.into(),
            ClientError::Rpc(status) => status,
            other => KvError::Unavailable(other.to_string()).into(),
        }
    }
}

/// The configuration an answer carries.
fn config_of(reply: crate::proto::ConfigResponse) -> Result<Config, ClientError> {
    reply
        .config
        .map(Config::from)
        .ok_or_else(|| ClientError::Rpc(Status::internal("the answer carries no configuration")))
}
