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
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::error::{check_key, check_value, KvError};
use crate::proto::kv_client::KvClient;
use crate::proto::{
    CasRequest, DeleteRequest, GetRequest, MembershipRequest, PutRequest, QueryRequest,
    ReconfigureRequest, ScanRequest, ShardRequest, StatusRequest, StatusResponse, WriteId,
};
use crate::raft::codec;
use crate::server::node::CLIENT_MESSAGE_SIZE_MAX;
use crate::shard::config::Config;
use crate::shard::controller::ControllerOp;
use crate::shard::{shard_of, GroupId, ShardId};
use crate::storage::kv::Session;

/// Leader hints followed in a row without pausing.
const REDIRECTS_UNPAUSED_MAX: u32 = 3;

/// How a client finds the cluster and retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Addresses (`host:port`) of the group's members: of the one group of a
    /// standalone cluster, or of the shard controller when `sharded`.
    pub endpoints: Vec<String>,
    /// Whether `endpoints` are a shard controller whose configuration routes
    /// keys to data groups.
    pub sharded: bool,
    /// Total time one operation may take, retries included.
    pub deadline: Duration,
    /// Time one attempt may take before the client tries again.
    pub attempt_timeout: Duration,
    /// First pause between attempts; doubles up to `backoff_max`.
    pub backoff_initial: Duration,
    /// Longest pause between attempts.
    pub backoff_max: Duration,
}

impl ClientConfig {
    /// Defaults for a sharded cluster whose controller is at `controller`.
    pub fn sharded(controller: Vec<String>) -> ClientConfig {
        ClientConfig {
            sharded: true,
            ..ClientConfig::new(controller)
        }
    }

    /// Defaults for a group reachable at `endpoints`.
    pub fn new(endpoints: Vec<String>) -> ClientConfig {
        ClientConfig {
            endpoints,
            sharded: false,
            deadline: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(2),
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(500),
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
}

/// The result of a compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasOutcome {
    /// Whether the value was replaced.
    pub swapped: bool,
    /// The value the key held when the operation was applied.
    pub current: Option<Bytes>,
}

#[derive(Clone)]
enum Call {
    Get(GetRequest),
    Put(PutRequest),
    Delete(DeleteRequest),
    Cas(CasRequest),
    Status,
    Scan(ScanRequest),
    Query(QueryRequest),
    Reconfigure(ReconfigureRequest),
    PullShard(ShardRequest),
    DropShard(ShardRequest),
    Membership(MembershipRequest),
}

enum Reply {
    Get(Option<Bytes>),
    Put,
    Delete(bool),
    Cas(CasOutcome),
    Status(StatusResponse),
    Scan(Vec<(Bytes, Bytes)>, Vec<ShardId>),
    Config(Bytes),
    Shard(Bytes),
    Dropped,
    Members(BTreeMap<u64, String>),
}

/// The data a shard's previous owner hands over: keys and values, and its
/// de-duplication table.
pub type ShardData = (Vec<(Bytes, Bytes)>, BTreeMap<u64, Session>);

/// A connection to one cluster: a standalone group, or a sharded cluster.
pub struct Client {
    config: ClientConfig,
    client_id: u64,
    /// Sequence number of the last write issued.
    seq: u64,
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
        Client {
            client_id: rng.gen(),
            home: GroupLink::new(config.endpoints.clone(), &mut rng),
            config,
            seq: 0,
            routing: None,
            groups: BTreeMap::new(),
        }
    }

    /// This client's identity in the de-duplication table.
    pub fn id(&self) -> u64 {
        self.client_id
    }

    /// Reads `key` (linearizable).
    pub async fn get(&mut self, key: impl Into<Bytes>) -> Result<Option<Bytes>, ClientError> {
        let key = key.into();
        check_key(&key)?;
        match self
            .call_for_key(&key, Call::Get(GetRequest { key: key.clone() }))
            .await?
        {
            Reply::Get(value) => Ok(value),
            _ => unreachable!("get answered by another call"),
        }
    }

    /// Stores `value` under `key`.
    pub async fn put(
        &mut self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        let (key, value) = (key.into(), value.into());
        check_key(&key)?;
        check_value(&value)?;
        let id = Some(self.next_write_id());
        let call = Call::Put(PutRequest {
            key: key.clone(),
            value,
            id,
        });
        match self.call_for_key(&key, call).await? {
            Reply::Put => Ok(()),
            _ => unreachable!("put answered by another call"),
        }
    }

    /// Removes `key`; returns whether it existed.
    pub async fn delete(&mut self, key: impl Into<Bytes>) -> Result<bool, ClientError> {
        let key = key.into();
        check_key(&key)?;
        let id = Some(self.next_write_id());
        match self
            .call_for_key(
                &key,
                Call::Delete(DeleteRequest {
                    key: key.clone(),
                    id,
                }),
            )
            .await?
        {
            Reply::Delete(existed) => Ok(existed),
            _ => unreachable!("delete answered by another call"),
        }
    }

    /// If `key` holds `expected` (`None`: is absent), replaces it with `new`
    /// (`None`: removes it).
    pub async fn compare_and_swap(
        &mut self,
        key: impl Into<Bytes>,
        expected: Option<Bytes>,
        new: Option<Bytes>,
    ) -> Result<CasOutcome, ClientError> {
        let key = key.into();
        check_key(&key)?;
        for value in expected.iter().chain(new.iter()) {
            check_value(value)?;
        }
        let id = Some(self.next_write_id());
        let request = CasRequest {
            key: key.clone(),
            expected,
            new_value: new,
            id,
        };
        match self.call_for_key(&key, Call::Cas(request)).await? {
            Reply::Cas(outcome) => Ok(outcome),
            _ => unreachable!("compare-and-swap answered by another call"),
        }
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
        if !self.config.sharded {
            let request = ScanRequest {
                start,
                end,
                limit,
                shards: Vec::new(),
            };
            return match self
                .home
                .call(&self.config, Call::Scan(request), deadline)
                .await?
            {
                Reply::Scan(entries, _) => Ok(entries),
                _ => unreachable!("scan answered by another call"),
            };
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
                let request = ScanRequest {
                    start: start.clone(),
                    end: end.clone(),
                    limit,
                    shards,
                };
                let link = group_link(&mut self.groups, group, &config);
                if let Reply::Scan(found, served) = link
                    .call(&self.config, Call::Scan(request), deadline)
                    .await?
                {
                    entries.extend(found);
                    missing.retain(|s| !served.contains(s));
                }
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
        match self.home.call(&self.config, Call::Status, deadline).await? {
            Reply::Status(status) => Ok(status),
            _ => unreachable!("status answered by another call"),
        }
    }

    /// Shard controller: configuration `num` (the latest if `None`).
    pub async fn query(&mut self, num: Option<u64>) -> Result<Config, ClientError> {
        let deadline = self.deadline();
        match self
            .home
            .call(&self.config, Call::Query(QueryRequest { num }), deadline)
            .await?
        {
            Reply::Config(bytes) => decode(&bytes),
            _ => unreachable!("query answered by another call"),
        }
    }

    /// Shard controller: applies `op`; returns the configuration it made.
    pub async fn reconfigure(&mut self, op: &ControllerOp) -> Result<Config, ClientError> {
        let deadline = self.deadline();
        let op = codec::encode(op)
            .expect("controller operations always encode")
            .into();
        match self
            .home
            .call(
                &self.config,
                Call::Reconfigure(ReconfigureRequest { op }),
                deadline,
            )
            .await?
        {
            Reply::Config(bytes) => decode(&bytes),
            _ => unreachable!("reconfigure answered by another call"),
        }
    }

    /// Data groups: takes a shard the group gave away at configuration `num`.
    pub async fn pull_shard(&mut self, num: u64, shard: ShardId) -> Result<ShardData, ClientError> {
        let deadline = self.deadline();
        match self
            .home
            .call(
                &self.config,
                Call::PullShard(ShardRequest { num, shard }),
                deadline,
            )
            .await?
        {
            Reply::Shard(bytes) => decode(&bytes),
            _ => unreachable!("pull answered by another call"),
        }
    }

    /// Data groups: tells the group to delete a shard given away at `num`.
    pub async fn drop_shard(&mut self, num: u64, shard: ShardId) -> Result<(), ClientError> {
        let deadline = self.deadline();
        match self
            .home
            .call(
                &self.config,
                Call::DropShard(ShardRequest { num, shard }),
                deadline,
            )
            .await?
        {
            Reply::Dropped => Ok(()),
            _ => unreachable!("drop answered by another call"),
        }
    }

    /// Adds replica `id` at `addr` (running, started to join) to the group
    /// at this client's endpoints; returns the group's members afterwards.
    pub async fn add_replica(
        &mut self,
        id: u64,
        addr: String,
    ) -> Result<BTreeMap<u64, String>, ClientError> {
        self.change_membership(MembershipRequest {
            add_id: Some(id),
            add_addr: addr,
            remove_id: None,
        })
        .await
    }

    /// Removes replica `id` from the group at this client's endpoints.
    pub async fn remove_replica(&mut self, id: u64) -> Result<BTreeMap<u64, String>, ClientError> {
        self.change_membership(MembershipRequest {
            add_id: None,
            add_addr: String::new(),
            remove_id: Some(id),
        })
        .await
    }

    async fn change_membership(
        &mut self,
        request: MembershipRequest,
    ) -> Result<BTreeMap<u64, String>, ClientError> {
        let deadline = self.deadline();
        match self
            .home
            .call(&self.config, Call::Membership(request), deadline)
            .await?
        {
            Reply::Members(members) => Ok(members),
            _ => unreachable!("membership change answered by another call"),
        }
    }

    fn next_write_id(&mut self) -> WriteId {
        self.seq += 1;
        WriteId {
            client_id: self.client_id,
            seq: self.seq,
        }
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
        let call = Call::Query(QueryRequest { num: None });
        let Reply::Config(bytes) = self.home.call(&self.config, call, deadline).await? else {
            unreachable!("query answered by another call");
        };
        let config: Config = decode(&bytes)?;
        self.routing = Some(config.clone());
        Ok(config)
    }

    /// Sends a call about `key` to the group serving its shard, following
    /// "wrong group" answers to newer configurations until the deadline.
    async fn call_for_key(&mut self, key: &[u8], call: Call) -> Result<Reply, ClientError> {
        let deadline = self.deadline();
        if !self.config.sharded {
            return self.home.call(&self.config, call, deadline).await;
        }
        let mut refresh = false;
        loop {
            let config = self.routing(deadline, refresh).await?;
            let shard = shard_of(key, config.shard_count());
            let last = match config.owner(shard) {
                None => format!("shard {shard} has no group in configuration {}", config.num),
                Some(group) => {
                    let link = group_link(&mut self.groups, group, &config);
                    match link.call(&self.config, call.clone(), deadline).await {
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
    if link.endpoints != members {
        *link = GroupLink::new(members, &mut crate::runtime::rng());
    }
    link
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ClientError> {
    codec::decode(bytes)
        .map_err(|e| ClientError::Rpc(Status::internal(format!("undecodable answer: {e}"))))
}

/// One Raft group's members, the one believed to lead, and open connections.
struct GroupLink {
    endpoints: Vec<String>,
    /// The member believed to lead, tried first.
    leader: Option<String>,
    /// Index of the next endpoint to try when no leader is known.
    next_endpoint: usize,
    connections: BTreeMap<String, KvClient<Channel>>,
}

impl GroupLink {
    fn new(endpoints: Vec<String>, rng: &mut crate::runtime::Rng) -> GroupLink {
        GroupLink {
            next_endpoint: rng.gen_range(0..endpoints.len().max(1)),
            endpoints,
            leader: None,
            connections: BTreeMap::new(),
        }
    }
    async fn call(
        &mut self,
        config: &ClientConfig,
        call: Call,
        deadline: tokio::time::Instant,
    ) -> Result<Reply, ClientError> {
        if self.endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        if crate::runtime::planted(crate::runtime::PlantedBug::ProcessDependent) {
            // Hidden input from outside the simulation: where the allocator
            // put a value, which address randomisation changes per process.
            let probe = Box::new(0u8);
            let pause = ((&*probe as *const u8 as usize >> 12) % 97) as u64 + 1;
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        let mut backoff = config.backoff_initial;
        let mut attempts = 0;
        let mut redirects = 0;
        loop {
            attempts += 1;
            let target = self.target();
            let last = match self.attempt(config, &target, &call, deadline).await {
                Ok(reply) => return Ok(reply),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Redirect(leader)) => {
                    // A fresh hint is worth following at once, but stale hints
                    // can point in circles: after a few, back off as usual.
                    let reason = format!("{target}: redirected to {leader}");
                    self.leader = Some(leader);
                    redirects += 1;
                    if redirects <= REDIRECTS_UNPAUSED_MAX && tokio::time::Instant::now() < deadline
                    {
                        continue;
                    }
                    redirects = 0;
                    reason
                }
                Err(Failure::Retry(reason)) => {
                    if self.leader.as_deref() == Some(target.as_str()) {
                        self.leader = None;
                    }
                    reason
                }
            };
            let now = tokio::time::Instant::now();
            let remaining = deadline.saturating_duration_since(now);
            let jitter = crate::runtime::rng().gen_range(0..=backoff.as_micros() as u64 / 2);
            let pause = backoff + Duration::from_micros(jitter);
            if pause >= remaining {
                // No time for another attempt after the pause: give up now
                // and report the failure that actually happened.
                return Err(ClientError::DeadlineExceeded {
                    deadline: config.deadline,
                    attempts,
                    last,
                });
            }
            tracing::debug!(attempts, ?pause, %last, "retrying");
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(config.backoff_max);
        }
    }

    /// The member to try next: the believed leader, else the next endpoint.
    fn target(&mut self) -> String {
        if let Some(leader) = &self.leader {
            return leader.clone();
        }
        let endpoints = &self.endpoints;
        let target = endpoints[self.next_endpoint % endpoints.len()].clone();
        self.next_endpoint = (self.next_endpoint + 1) % endpoints.len();
        target
    }

    async fn attempt(
        &mut self,
        config: &ClientConfig,
        target: &str,
        call: &Call,
        deadline: tokio::time::Instant,
    ) -> Result<Reply, Failure> {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let limit = config.attempt_timeout.min(remaining);
        let result = crate::runtime::timeout(limit, async {
            let mut client = self.connect(target).await?;
            send(&mut client, call).await
        })
        .await;
        let status = match result {
            Ok(Ok(reply)) => return Ok(reply),
            Ok(Err(status)) => status,
            Err(_) => {
                self.connections.remove(target);
                return Err(Failure::Retry(format!(
                    "{target}: no answer within {limit:?}"
                )));
            }
        };
        match KvError::from_status(&status) {
            Some(KvError::NotLeader {
                leader_addr: Some(leader),
                ..
            }) if leader != target => Err(Failure::Redirect(leader)),
            Some(e) if e.is_retryable() => Err(Failure::Retry(format!("{target}: {e}"))),
            Some(e) => Err(Failure::Fatal(ClientError::Rejected(e))),
            None if retryable_code(status.code()) => {
                self.connections.remove(target);
                Err(Failure::Retry(format!("{target}: {status}")))
            }
            None => Err(Failure::Fatal(ClientError::Rpc(status))),
        }
    }

    async fn connect(&mut self, target: &str) -> Result<KvClient<Channel>, Status> {
        if let Some(client) = self.connections.get(target) {
            return Ok(client.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{target}"))
            .map_err(|e| Status::invalid_argument(format!("bad endpoint {target:?}: {e}")))?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| Status::unavailable(format!("cannot connect: {e}")))?;
        let client = KvClient::new(channel).max_decoding_message_size(CLIENT_MESSAGE_SIZE_MAX);
        self.connections.insert(target.to_string(), client.clone());
        Ok(client)
    }
}

enum Failure {
    Retry(String),
    Redirect(String),
    Fatal(ClientError),
}

/// Transport-level failures worth another attempt (possibly elsewhere).
fn retryable_code(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Internal
            | Code::Cancelled
            | Code::Aborted
    )
}

async fn send(client: &mut KvClient<Channel>, call: &Call) -> Result<Reply, Status> {
    Ok(match call {
        Call::Get(request) => Reply::Get(client.get(request.clone()).await?.into_inner().value),
        Call::Put(request) => {
            client.put(request.clone()).await?;
            Reply::Put
        }
        Call::Delete(request) => {
            Reply::Delete(client.delete(request.clone()).await?.into_inner().existed)
        }
        Call::Cas(request) => {
            let reply = client.compare_and_swap(request.clone()).await?.into_inner();
            Reply::Cas(CasOutcome {
                swapped: reply.swapped,
                current: reply.current,
            })
        }
        Call::Status => Reply::Status(client.status(StatusRequest {}).await?.into_inner()),
        Call::Scan(request) => {
            let reply = client.scan(request.clone()).await?.into_inner();
            let entries = reply
                .entries
                .into_iter()
                .map(|kv| (kv.key, kv.value))
                .collect();
            Reply::Scan(entries, reply.served)
        }
        Call::Query(request) => Reply::Config(client.query(*request).await?.into_inner().config),
        Call::Reconfigure(request) => Reply::Config(
            client
                .reconfigure(request.clone())
                .await?
                .into_inner()
                .config,
        ),
        Call::PullShard(request) => {
            Reply::Shard(client.pull_shard(*request).await?.into_inner().shard)
        }
        Call::DropShard(request) => {
            client.drop_shard(*request).await?;
            Reply::Dropped
        }
        Call::Membership(request) => Reply::Members(
            client
                .change_membership(request.clone())
                .await?
                .into_inner()
                .members,
        ),
    })
}
