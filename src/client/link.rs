//! The one call path of every client: [`GroupLink::call`] sends a request to
//! a Raft group, finding its leader, following redirects, and retrying by
//! the [`Retry`] policy until an answer or the deadline.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tonic::transport::Channel;
use tonic::{Code, Response, Status};

use super::retry::Retry;
use super::{ClientConfig, ClientError};
use crate::error::KvError;
use crate::limits::CLIENT_MESSAGE_SIZE_MAX;
use crate::proto::admin_client::AdminClient;
use crate::proto::kv_client::KvClient;
use crate::proto::peer_client::PeerClient;

/// The `Kv` service over `channel`.
pub fn kv(channel: Channel) -> KvClient<Channel> {
    KvClient::new(channel).max_decoding_message_size(CLIENT_MESSAGE_SIZE_MAX)
}

/// The `Admin` service over `channel`.
pub fn admin(channel: Channel) -> AdminClient<Channel> {
    AdminClient::new(channel).max_decoding_message_size(CLIENT_MESSAGE_SIZE_MAX)
}

/// The `Peer` service over `channel`.
pub fn peer(channel: Channel) -> PeerClient<Channel> {
    PeerClient::new(channel).max_decoding_message_size(CLIENT_MESSAGE_SIZE_MAX)
}

/// Connections by address, shared by the clients given the same pool (a
/// connection carries many clients' requests at once).
#[derive(Debug, Clone, Default)]
pub struct SharedConnections(Arc<Mutex<BTreeMap<String, Channel>>>);

impl PartialEq for SharedConnections {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SharedConnections {}

impl SharedConnections {
    fn get(&self, addr: &str) -> Option<Channel> {
        self.0.lock().expect("connections lock").get(addr).cloned()
    }

    fn insert(&self, addr: &str, channel: Channel) {
        let mut connections = self.0.lock().expect("connections lock");
        connections.insert(addr.to_string(), channel);
    }

    fn remove(&self, addr: &str) {
        self.0.lock().expect("connections lock").remove(addr);
    }
}

/// One Raft group's members, the one believed to lead, and open connections.
pub struct GroupLink {
    endpoints: Vec<String>,
    /// The member believed to lead, tried first.
    leader: Option<String>,
    /// Index of the next endpoint to try when no leader is known.
    next_endpoint: usize,
    /// This link's own connections (when the client shares none).
    connections: SharedConnections,
    /// Attempts sent whose outcome is unknown (no answer, a transport
    /// error, an unavailable group): a write among them may have applied.
    ambiguous: u64,
}

/// How one attempt failed.
enum Failure {
    Retry(String),
    Redirect(String),
    Fatal(ClientError),
}

impl GroupLink {
    /// A link to the group whose members are at `endpoints`, starting at a
    /// random one.
    pub fn new(endpoints: Vec<String>, rng: &mut crate::runtime::Rng) -> GroupLink {
        GroupLink {
            next_endpoint: rng.gen_range(0..endpoints.len().max(1)),
            endpoints,
            leader: None,
            connections: SharedConnections::default(),
            ambiguous: 0,
        }
    }

    /// Attempts so far whose outcome is unknown.
    pub fn ambiguous_attempts(&self) -> u64 {
        self.ambiguous
    }

    /// Takes over the count of a link this one replaces.
    pub fn carry_ambiguous_attempts(&mut self, count: u64) {
        self.ambiguous += count;
    }

    /// The members' addresses.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Sends one request to the group: `send` makes the call over a
    /// connection to one member, and is called again for every attempt
    /// until one is answered, the answer is an error retrying cannot help,
    /// or `deadline` passes.
    pub async fn call<T, F, Fut>(
        &mut self,
        config: &ClientConfig,
        deadline: tokio::time::Instant,
        mut send: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        if self.endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        if crate::runtime::planted(crate::runtime::PlantedBug::ProcessDependent) {
            // Hidden input from outside the simulation: the process id.
            let pause = u64::from(std::process::id() % 97) + 1;
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        let mut retry = Retry::new(config.backoff_initial, config.backoff_max);
        loop {
            retry.attempt();
            let target = self.target();
            let last = match self.attempt(config, &target, &mut send, deadline).await {
                Ok(reply) => return Ok(reply),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Redirect(leader)) => {
                    let reason = format!("{target}: redirected to {leader}");
                    self.leader = Some(leader);
                    if retry.redirect_now(tokio::time::Instant::now() < deadline) {
                        continue;
                    }
                    reason
                }
                Err(Failure::Retry(reason)) => {
                    if self.leader.as_deref() == Some(target.as_str()) {
                        self.leader = None;
                    }
                    reason
                }
            };
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let jitter = crate::runtime::rng().gen_range(0..=retry.jitter_max_us());
            let Some(pause) = retry.pause(jitter, remaining) else {
                // No time for another attempt after the pause: give up now
                // and report the failure that actually happened.
                return Err(ClientError::DeadlineExceeded {
                    deadline: config.deadline,
                    attempts: retry.attempts(),
                    last,
                });
            };
            tracing::debug!(attempts = retry.attempts(), ?pause, %last, "retrying");
            tokio::time::sleep(pause).await;
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

    async fn attempt<T, F, Fut>(
        &mut self,
        config: &ClientConfig,
        target: &str,
        send: &mut F,
        deadline: tokio::time::Instant,
    ) -> Result<T, Failure>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let limit = config.attempt_timeout.min(remaining);
        // `sent`: the request left (a failure after it is ambiguous).
        let result = crate::runtime::timeout(limit, async {
            let channel = self.connect(config, target).await.map_err(|s| (false, s))?;
            send(channel).await.map_err(|s| (true, s))
        })
        .await;
        let (sent, status) = match result {
            Ok(Ok(reply)) => return Ok(reply.into_inner()),
            Ok(Err(failed)) => failed,
            Err(_) => {
                self.ambiguous += 1;
                self.pool(config).remove(target);
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
            Some(e) if e.is_retryable() => {
                if matches!(e, KvError::Unavailable(_)) {
                    self.ambiguous += 1;
                }
                Err(Failure::Retry(format!("{target}: {e}")))
            }
            Some(e) => Err(Failure::Fatal(ClientError::Rejected(e))),
            None if retryable_code(status.code()) => {
                if sent {
                    self.ambiguous += 1;
                }
                self.pool(config).remove(target);
                Err(Failure::Retry(format!("{target}: {status}")))
            }
            None => Err(Failure::Fatal(ClientError::Rpc(status))),
        }
    }

    /// The connections this link uses: the client's shared pool, else its own.
    fn pool<'a>(&'a self, config: &'a ClientConfig) -> &'a SharedConnections {
        config.connections.as_ref().unwrap_or(&self.connections)
    }

    async fn connect(&mut self, config: &ClientConfig, target: &str) -> Result<Channel, Status> {
        if let Some(channel) = self.pool(config).get(target) {
            return Ok(channel);
        }
        let endpoint = config
            .credentials
            .endpoint(target)
            .map_err(Status::invalid_argument)?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| Status::unavailable(format!("cannot connect: {e}")))?;
        self.pool(config).insert(target, channel.clone());
        Ok(channel)
    }
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
