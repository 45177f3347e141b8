//! Who may do what on a node: [`Access`] admits a call that needs an
//! administrator (shard-controller and replica changes) or a peer (Raft,
//! shard transfer) only from a caller that proves to be one, with a client
//! certificate of a trusted name or the cluster token. Anyone else gets
//! `PERMISSION_DENIED` before the call does anything.

use std::collections::BTreeSet;

use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use super::config::NodeConfig;
use crate::error::KvError;
use crate::tls::{certificate_name, AUTHORIZATION};

/// The identity a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// An administrator: changes to the shard controller's configurations,
    /// to a group's replicas, backups.
    Admin,
    /// Another replica of the cluster: Raft messages, shard transfer.
    Peer,
}

/// A node's rules for admitting calls.
#[derive(Debug, Clone, Default)]
pub struct Access {
    admin_names: BTreeSet<String>,
    peer_names: BTreeSet<String>,
    token: Option<String>,
    tls: bool,
}

impl Access {
    /// The rules `config` sets.
    pub fn new(config: &NodeConfig) -> Access {
        Access {
            admin_names: config.admin_names.iter().cloned().collect(),
            peer_names: config.peer_names.iter().cloned().collect(),
            token: config.token.clone(),
            tls: config.tls_files().any(),
        }
    }

    /// Admits `request` if its caller holds `role`; else `PERMISSION_DENIED`
    /// naming what was needed and what the caller showed.
    pub fn admit<T>(&self, request: &Request<T>, needs: Needs) -> Result<(), Status> {
        if self.token_matches(request.metadata()) {
            return Ok(());
        }
        let name = request
            .peer_certs()
            .and_then(|certs| certs.first().and_then(|cert| certificate_name(cert)));
        let admitted = match (&name, needs) {
            (Some(name), Needs::Admin) => self.admin_names.contains(name),
            (Some(name), Needs::Peer) => {
                self.tls && (self.peer_names.is_empty() || self.peer_names.contains(name))
            }
            (None, _) => false,
        };
        if admitted {
            return Ok(());
        }
        let needed = match needs {
            Needs::Admin => "an administrator",
            Needs::Peer => "a peer replica",
        };
        let shown = match name {
            Some(name) => format!("a certificate named {name:?}"),
            None => "no client certificate".to_string(),
        };
        let token = match request.metadata().get(AUTHORIZATION) {
            Some(_) => "a wrong token",
            None => "no token",
        };
        Err(KvError::PermissionDenied(format!(
            "this call needs {needed} (a trusted client certificate or the cluster token); \
             the caller showed {shown} and {token}"
        ))
        .into())
    }

    fn token_matches(&self, metadata: &MetadataMap) -> bool {
        let (Some(token), Some(given)) = (&self.token, metadata.get(AUTHORIZATION)) else {
            return false;
        };
        let given = given.as_bytes();
        let expected = format!("Bearer {token}");
        // Compare every byte whatever differs, so timing does not reveal
        // how much of a guess was right.
        given.len() == expected.len()
            && given
                .iter()
                .zip(expected.as_bytes())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access_with(token: Option<&str>) -> Access {
        Access {
            admin_names: ["admin".to_string()].into(),
            token: token.map(str::to_string),
            ..Access::default()
        }
    }

    fn request(authorization: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert(AUTHORIZATION, value.parse().unwrap());
        }
        request
    }

    #[test]
    fn the_cluster_token_admits_administrators_and_peers() {
        let access = access_with(Some("s3cret"));
        for needs in [Needs::Admin, Needs::Peer] {
            assert!(access.admit(&request(Some("Bearer s3cret")), needs).is_ok());
        }
    }

    #[test]
    fn anyone_else_is_denied_with_what_was_needed() {
        let access = access_with(Some("s3cret"));
        for (authorization, shown) in [
            (None, "no token"),
            (Some("Bearer s3cre"), "a wrong token"),
            (Some("Bearer s3cret "), "a wrong token"),
            (Some("s3cret"), "a wrong token"),
        ] {
            let status = access
                .admit(&request(authorization), Needs::Admin)
                .unwrap_err();
            assert_eq!(status.code(), tonic::Code::PermissionDenied);
            assert!(status.message().contains("needs an administrator"));
            assert!(status.message().contains(shown), "{}", status.message());
        }
        // A node without a token admits no one by token.
        let status = access_with(None)
            .admit(&request(Some("Bearer ")), Needs::Peer)
            .unwrap_err();
        assert!(matches!(
            KvError::from_status(&status),
            Some(KvError::PermissionDenied(_))
        ));
    }
}
