//! The client library: finds the leader, retries with backoff under a
//! deadline, and numbers writes so that a retried write is applied once.
//!
//! A [`Client`] has one identity and sends one request at a time (its
//! methods take `&mut self`); run several clients for concurrency.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::error::{check_key, check_value, KvError};
use crate::proto::kv_client::KvClient;
use crate::proto::{
    CasRequest, DeleteRequest, GetRequest, PutRequest, StatusRequest, StatusResponse, WriteId,
};
use crate::server::node::CLIENT_MESSAGE_SIZE_MAX;

/// Leader hints followed in a row without pausing.
const REDIRECTS_UNPAUSED_MAX: u32 = 3;

/// How a client retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Addresses (`host:port`) of the group's members.
    pub endpoints: Vec<String>,
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
    /// Defaults for a group reachable at `endpoints`.
    pub fn new(endpoints: Vec<String>) -> ClientConfig {
        ClientConfig {
            endpoints,
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

enum Call {
    Get(GetRequest),
    Put(PutRequest),
    Delete(DeleteRequest),
    Cas(CasRequest),
    Status,
}

enum Reply {
    Get(Option<Bytes>),
    Put,
    Delete(bool),
    Cas(CasOutcome),
    Status(StatusResponse),
}

/// A connection to one Shoal group.
pub struct Client {
    config: ClientConfig,
    client_id: u64,
    /// Sequence number of the last write issued.
    seq: u64,
    /// The member believed to lead, tried first.
    leader: Option<String>,
    /// Index of the next endpoint to try when no leader is known.
    next_endpoint: usize,
    connections: BTreeMap<String, KvClient<Channel>>,
}

impl Client {
    /// A client with a fresh random identity.
    pub fn new(config: ClientConfig) -> Client {
        let mut rng = crate::runtime::rng();
        Client {
            client_id: rng.gen(),
            next_endpoint: rng.gen_range(0..config.endpoints.len().max(1)),
            config,
            seq: 0,
            leader: None,
            connections: BTreeMap::new(),
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
        match self.call(Call::Get(GetRequest { key })).await? {
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
        match self.call(Call::Put(PutRequest { key, value, id })).await? {
            Reply::Put => Ok(()),
            _ => unreachable!("put answered by another call"),
        }
    }

    /// Removes `key`; returns whether it existed.
    pub async fn delete(&mut self, key: impl Into<Bytes>) -> Result<bool, ClientError> {
        let key = key.into();
        check_key(&key)?;
        let id = Some(self.next_write_id());
        match self.call(Call::Delete(DeleteRequest { key, id })).await? {
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
            key,
            expected,
            new_value: new,
            id,
        };
        match self.call(Call::Cas(request)).await? {
            Reply::Cas(outcome) => Ok(outcome),
            _ => unreachable!("compare-and-swap answered by another call"),
        }
    }

    /// Asks one member (the believed leader, else the next endpoint) for its
    /// view of the group.
    pub async fn status(&mut self) -> Result<StatusResponse, ClientError> {
        match self.call(Call::Status).await? {
            Reply::Status(status) => Ok(status),
            _ => unreachable!("status answered by another call"),
        }
    }

    fn next_write_id(&mut self) -> WriteId {
        self.seq += 1;
        WriteId {
            client_id: self.client_id,
            seq: self.seq,
        }
    }

    /// Sends `call` until it succeeds, fails for good, or the deadline passes.
    async fn call(&mut self, call: Call) -> Result<Reply, ClientError> {
        if self.config.endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        let start = tokio::time::Instant::now();
        let deadline = start + self.config.deadline;
        let mut backoff = self.config.backoff_initial;
        let mut attempts = 0;
        let mut redirects = 0;
        loop {
            attempts += 1;
            let target = self.target();
            let last = match self.attempt(&target, &call, deadline).await {
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
                    deadline: self.config.deadline,
                    attempts,
                    last,
                });
            }
            tracing::debug!(attempts, ?pause, %last, "retrying");
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(self.config.backoff_max);
        }
    }

    /// The member to try next: the believed leader, else the next endpoint.
    fn target(&mut self) -> String {
        if let Some(leader) = &self.leader {
            return leader.clone();
        }
        let endpoints = &self.config.endpoints;
        let target = endpoints[self.next_endpoint % endpoints.len()].clone();
        self.next_endpoint = (self.next_endpoint + 1) % endpoints.len();
        target
    }

    async fn attempt(
        &mut self,
        target: &str,
        call: &Call,
        deadline: tokio::time::Instant,
    ) -> Result<Reply, Failure> {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let limit = self.config.attempt_timeout.min(remaining);
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
    })
}
