//! Administration through a [`Client`]: the shard controller's
//! configurations and changes to a group's replicas. The changes need an
//! administrator's identity ([`super::ClientConfig::credentials`]).

use std::collections::BTreeMap;

use super::link::admin;
use super::{config_of, query, Client, ClientError};
use crate::ids::Member;
use crate::machine::shard::config::Config;
use crate::machine::shard::controller::ControllerOp;
use crate::proto::{MembershipRequest, ReconfigureRequest};

impl Client {
    /// Shard controller: configuration `num` (the latest if `None`).
    pub async fn query(&mut self, num: Option<u64>) -> Result<Config, ClientError> {
        let deadline = self.deadline();
        query(&mut self.home, &self.config, deadline, num).await
    }

    /// Shard controller: applies `op`; returns the configuration it made.
    pub async fn reconfigure(&mut self, op: &ControllerOp) -> Result<Config, ClientError> {
        let deadline = self.deadline();
        let request = ReconfigureRequest::from(op);
        let credentials = &self.config.credentials.clone();
        let reply = self
            .home
            .call(&self.config, deadline, |ch| {
                let request = credentials.request(request.clone());
                async move { admin(ch).reconfigure(request).await }
            })
            .await?;
        config_of(reply)
    }

    /// Adds replica `id`, reached as `member` says (running, started to
    /// join), to the group at this client's endpoints; returns the group's
    /// members afterwards.
    pub async fn add_replica(
        &mut self,
        id: u64,
        member: Member,
    ) -> Result<BTreeMap<u64, String>, ClientError> {
        self.change_membership(MembershipRequest {
            add_id: Some(id),
            add_addr: member.addr,
            add_peer_addr: member.peer_addr,
            remove_id: None,
        })
        .await
    }

    /// Removes replica `id` from the group at this client's endpoints.
    pub async fn remove_replica(&mut self, id: u64) -> Result<BTreeMap<u64, String>, ClientError> {
        self.change_membership(MembershipRequest {
            add_id: None,
            add_addr: String::new(),
            add_peer_addr: String::new(),
            remove_id: Some(id),
        })
        .await
    }

    async fn change_membership(
        &mut self,
        request: MembershipRequest,
    ) -> Result<BTreeMap<u64, String>, ClientError> {
        let deadline = self.deadline();
        let credentials = &self.config.credentials.clone();
        let reply = self
            .home
            .call(&self.config, deadline, |ch| {
                let request = credentials.request(request.clone());
                async move { admin(ch).change_membership(request).await }
            })
            .await?;
        Ok(reply.members)
    }
}
