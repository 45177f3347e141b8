//! Backups: a group's state streamed from its leader as the bytes of a
//! backup file ([`Client::save_snapshot`]; the format is
//! [`crate::storage::backup`]'s).

use std::time::Duration;

use bytes::Bytes;
use tonic::Streaming;

use super::link::admin;
use super::{group_link, Client, ClientError, Routing};
use crate::error::KvError;
use crate::ids::GroupId;
use crate::proto::{SaveSnapshotRequest, SnapshotChunk};

/// A backup arriving from a group's leader.
pub struct SnapshotStream {
    stream: Streaming<SnapshotChunk>,
    /// Longest wait for the next piece.
    idle_max: Duration,
}

impl SnapshotStream {
    /// The next bytes of the backup file, or `None` after the last.
    pub async fn next(&mut self) -> Result<Option<Bytes>, ClientError> {
        match crate::runtime::timeout(self.idle_max, self.stream.message()).await {
            Ok(Ok(chunk)) => Ok(chunk.map(|chunk| chunk.data)),
            Ok(Err(status)) => Err(match KvError::from_status(&status) {
                Some(e) => ClientError::Rejected(e),
                None => ClientError::Rpc(status),
            }),
            Err(_) => Err(ClientError::DeadlineExceeded {
                deadline: self.idle_max,
                attempts: 1,
                last: "the backup stopped arriving".to_string(),
            }),
        }
    }
}

impl Client {
    /// Asks a group's leader for a backup: its state as of one applied
    /// index, after a linearizable read barrier. `group` is `None` for the
    /// group at this client's endpoints (a standalone group, or the shard
    /// controller of a sharded cluster), `Some(0)` for the shard controller
    /// and `Some(n)` for data group `n` of a sharded cluster. Each piece
    /// must arrive within the client's deadline.
    pub async fn save_snapshot(
        &mut self,
        group: Option<GroupId>,
    ) -> Result<SnapshotStream, ClientError> {
        let deadline = self.deadline();
        let credentials = self.config.credentials.clone();
        let send = |ch| {
            let request = credentials.request(SaveSnapshotRequest {});
            async move { admin(ch).save_snapshot(request).await }
        };
        let stream = match group {
            None | Some(0) => self.home.call(&self.config, deadline, send).await?,
            Some(group) => {
                if self.config.routing != Routing::Sharded {
                    let why = "a data group is found through the shard controller (--controller)";
                    return Err(KvError::Refused(why.into()).into());
                }
                let config = self.routing(deadline, true).await?;
                if !config.groups.contains_key(&group) {
                    let why = format!("group {group} is not in configuration {}", config.num);
                    return Err(KvError::Refused(why).into());
                }
                let link = group_link(&mut self.groups, group, &config);
                link.call(&self.config, deadline, send).await?
            }
        };
        Ok(SnapshotStream {
            stream,
            idle_max: self.config.deadline,
        })
    }
}
