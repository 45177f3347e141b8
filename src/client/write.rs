//! Writes and the session they are de-duplicated under: every write goes
//! through [`Client::write`], which numbers it in the current [`Session`],
//! raises the session's floor with the answer's stamp, and starts a new
//! session when a group refuses the old one as expired.

use std::future::Future;

use bytes::Bytes;
use tonic::transport::Channel;
use tonic::{Response, Status};

use super::link::kv;
use super::session::{AfterRefusal, Session};
use super::{group_link, mark, routed, CasOutcome, Client, ClientError, Routing};
use crate::error::KvError;
use crate::limits::{check_key, check_value};
use crate::machine::shard::shard_of;
use crate::proto::kv_client::KvClient;
use crate::proto::{
    CasRequest, CasResponse, CloseSessionRequest, DeleteRequest, DeleteResponse, PutRequest,
    PutResponse, WriteId,
};

/// An answer to a write, which carries the entry's stamp.
pub trait Stamped {
    /// The entry's stamp in its group's clock.
    fn stamp(&self) -> u64;
}

macro_rules! stamped {
    ($($t:ty),*) => {$(
        impl Stamped for $t {
            fn stamp(&self) -> u64 {
                self.stamp
            }
        }
    )*};
}
stamped!(PutResponse, DeleteResponse, CasResponse);

impl Client {
    /// Stores `value` under `key`.
    pub async fn put(
        &mut self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        let (key, value) = (key.into(), value.into());
        check_key(&key)?;
        check_value(&value)?;
        let request = |id| PutRequest {
            key: key.clone(),
            value: value.clone(),
            id: Some(id),
        };
        self.write(&key, request, |mut kv, r| async move { kv.put(r).await })
            .await?;
        Ok(())
    }

    /// Removes `key`; returns whether it existed.
    pub async fn delete(&mut self, key: impl Into<Bytes>) -> Result<bool, ClientError> {
        let key = key.into();
        check_key(&key)?;
        let request = |id| DeleteRequest {
            key: key.clone(),
            id: Some(id),
        };
        let reply = self
            .write(&key, request, |mut kv, r| async move { kv.delete(r).await })
            .await?;
        Ok(reply.existed)
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
        let request = |id| CasRequest {
            key: key.clone(),
            expected: expected.clone(),
            new_value: new.clone(),
            id: Some(id),
        };
        let reply = self
            .write(&key, request, |mut kv, r| async move {
                kv.compare_and_swap(r).await
            })
            .await?;
        Ok(CasOutcome {
            swapped: reply.swapped,
            current: reply.current,
        })
    }

    /// Ends the current session: each group it wrote to forgets it (a
    /// client reaching the cluster through nodes cannot address groups: its
    /// sessions end by expiry). Later writes use a new session.
    pub async fn close_session(&mut self) -> Result<(), ClientError> {
        let fresh = self.new_session(0);
        let old = std::mem::replace(&mut self.session, fresh);
        let request = CloseSessionRequest {
            client_id: old.client_id,
            floor: old.floor,
        };
        let deadline = self.deadline();
        let config = match self.config.routing {
            Routing::ByNodes => return Ok(()),
            Routing::Group => None,
            Routing::Sharded if old.groups.is_empty() => return Ok(()),
            Routing::Sharded => Some(self.routing(deadline, false).await?),
        };
        for group in old.groups {
            let link = match (group, &config) {
                (Some(group), Some(config)) if config.groups.contains_key(&group) => {
                    group_link(&mut self.groups, group, config)
                }
                (Some(_), _) => continue,
                (None, _) => &mut self.home,
            };
            link.call(&self.config, deadline, |ch| {
                let request = request.clone();
                async move { kv(ch).close_session(routed(request)).await }
            })
            .await?;
        }
        Ok(())
    }

    /// Starts a new session, leaving the current one to expire in the
    /// groups (as a client that vanishes does).
    pub fn abandon_session(&mut self) {
        self.session = self.new_session(0);
    }

    /// A new session, opened after `horizon`.
    pub(super) fn new_session(&self, horizon: u64) -> Session {
        let client_id = rand::Rng::gen(&mut crate::runtime::rng());
        Session::open(client_id, crate::runtime::wall_clock_ms(), horizon)
    }

    /// Attempts whose outcome is unknown, over every link so far.
    fn ambiguous_attempts(&self) -> u64 {
        let groups: u64 = self.groups.values().map(|l| l.ambiguous_attempts()).sum();
        self.home.ambiguous_attempts() + groups
    }

    /// Sends the write that `request` makes from a write id about `key`
    /// with `call`. A refusal of the session as expired starts a new
    /// session and sends the write again under it, unless an earlier
    /// attempt went unanswered (it may have applied: the write ends with
    /// [`ClientError::SessionExpired`]). A write that ends without an
    /// answer also ends its session, which must not write again.
    async fn write<Q, T, F, Fut>(
        &mut self,
        key: &Bytes,
        mut request: impl FnMut(WriteId) -> Q,
        call: F,
    ) -> Result<T, ClientError>
    where
        Q: Clone,
        T: Stamped,
        F: Fn(KvClient<Channel>, tonic::Request<Q>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let unanswered_before = self.ambiguous_attempts();
        let mut renewals = 0;
        loop {
            let message = request(self.session.next_write_id());
            let routing = self.config.routing;
            let result = self
                .call_for_key(key, |ch| call(kv(ch), mark(routing, message.clone())))
                .await;
            let horizon = match result {
                Ok(reply) => {
                    let group = self.group_of(key);
                    self.session.answered(reply.stamp(), group);
                    return Ok(reply);
                }
                Err(ClientError::Rejected(KvError::SessionExpired { horizon })) => horizon,
                Err(e) => {
                    if matches!(e, ClientError::DeadlineExceeded { .. }) {
                        self.session = self.new_session(0);
                    }
                    return Err(e);
                }
            };
            self.session = self.new_session(horizon);
            let unanswered = self.ambiguous_attempts() > unanswered_before;
            match AfterRefusal::decide(unanswered, renewals) {
                AfterRefusal::Resend => renewals += 1,
                AfterRefusal::InDoubt => return Err(ClientError::SessionExpired { horizon }),
                AfterRefusal::GiveUp => return Err(KvError::SessionExpired { horizon }.into()),
            }
            tracing::debug!(horizon, "session expired; resending under a new one");
        }
    }

    /// The data group serving `key` in the configuration in use (`None`:
    /// not sharded).
    fn group_of(&self, key: &[u8]) -> Option<crate::ids::GroupId> {
        let config = self.routing.as_ref()?;
        if self.config.routing != Routing::Sharded {
            return None;
        }
        config.owner(shard_of(key, config.shard_count()))
    }
}
