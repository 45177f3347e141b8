//! The client API's one error type, with the conversion to and from the gRPC
//! status that carries it over the wire.
//!
//! The status follows gRPC's richer error model: its details are a
//! `google.rpc.Status` whose `details` hold Shoal's [`ErrorDetail`] packed as
//! an `Any`, plus the standard `google.rpc.BadRequest` for a broken limit and
//! `google.rpc.RetryInfo` for a failure worth retrying, so that the gRPC
//! libraries of every language decode it.

use bytes::Bytes;
use prost::Message;
use prost_types::Any;
use tonic::{Code, Status};
use tonic_types::pb;

use crate::proto::error_detail::Kind;
use crate::proto::ErrorDetail;

/// Why a client API call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// This node is not the leader of its group; retry on the leader.
    #[error("not the leader (leader is {})", leader_addr.as_deref().unwrap_or("unknown"))]
    NotLeader {
        /// The leader's node id, when known.
        leader_id: Option<u64>,
        /// The leader's client address, when known.
        leader_addr: Option<String>,
    },
    /// The group cannot serve now (no quorum, election under way, shutting
    /// down). Retrying later may succeed.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Keys must be at least one byte long.
    #[error("key is empty")]
    KeyEmpty,
    /// The key is longer than [`crate::limits::KEY_SIZE_MAX`].
    #[error("key is {actual} bytes; the limit is {limit} bytes")]
    KeyTooLarge {
        /// The size of the offending key.
        actual: u64,
        /// [`crate::limits::KEY_SIZE_MAX`].
        limit: u64,
    },
    /// The value is longer than [`crate::limits::VALUE_SIZE_MAX`].
    #[error("value is {actual} bytes; the limit is {limit} bytes")]
    ValueTooLarge {
        /// The size of the offending value.
        actual: u64,
        /// [`crate::limits::VALUE_SIZE_MAX`].
        limit: u64,
    },
    /// The write reused a sequence number older than the client's latest; its
    /// answer was already delivered and is no longer kept.
    #[error("stale sequence number for this client")]
    StaleSequence,
    /// The write id was already used by this client for a different kind of
    /// operation; the earlier operation's answer cannot answer this one.
    #[error("write id already used for a different operation")]
    WriteIdConflict,
    /// This group does not serve the key's shard (in its configuration
    /// `config_num`): refresh the configuration and retry at the owner.
    #[error("wrong group for this key (group is at configuration {config_num})")]
    WrongGroup {
        /// The group's configuration number.
        config_num: u64,
    },
    /// An administration request (to the shard controller, or a membership
    /// change) was refused; nothing changed.
    #[error("refused: {0}")]
    Refused(String),
    /// The request names a configuration this replica has not reached yet.
    #[error("not yet: {0}")]
    NotYet(String),
    /// The caller lacks the identity the call needs (an administrator's, a
    /// peer's); nothing changed.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The write's session is unknown to the group and may be one it
    /// evicted (idle, over the bound, or closed): this attempt applied
    /// nothing. A new session must open after `horizon`.
    #[error("session expired (the group evicted sessions active up to {horizon})")]
    SessionExpired {
        /// The group's eviction horizon (`expired_through`).
        horizon: u64,
    },
}

impl KvError {
    /// Whether the same request may succeed if retried (possibly elsewhere).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            KvError::NotLeader { .. } | KvError::Unavailable(_) | KvError::NotYet(_)
        )
    }

    /// The gRPC code and the [`ErrorDetail`] that describe the error.
    pub fn detail(&self) -> (Code, ErrorDetail) {
        let mut detail = ErrorDetail::default();
        let code = match self {
            KvError::NotLeader {
                leader_id,
                leader_addr,
            } => {
                detail.set_kind(Kind::NotLeader);
                detail.leader_id = *leader_id;
                detail.leader_addr = leader_addr.clone();
                Code::Unavailable
            }
            KvError::Unavailable(reason) => {
                detail.set_kind(Kind::Unavailable);
                detail.reason = reason.clone();
                Code::Unavailable
            }
            KvError::KeyEmpty => {
                detail.set_kind(Kind::KeyEmpty);
                Code::InvalidArgument
            }
            KvError::KeyTooLarge { actual, limit } => {
                detail.set_kind(Kind::KeyTooLarge);
                (detail.actual, detail.limit) = (*actual, *limit);
                Code::InvalidArgument
            }
            KvError::ValueTooLarge { actual, limit } => {
                detail.set_kind(Kind::ValueTooLarge);
                (detail.actual, detail.limit) = (*actual, *limit);
                Code::InvalidArgument
            }
            KvError::StaleSequence => {
                detail.set_kind(Kind::StaleSequence);
                Code::FailedPrecondition
            }
            KvError::WriteIdConflict => {
                detail.set_kind(Kind::WriteIdConflict);
                Code::FailedPrecondition
            }
            KvError::WrongGroup { config_num } => {
                detail.set_kind(Kind::WrongGroup);
                detail.config_num = *config_num;
                Code::FailedPrecondition
            }
            KvError::Refused(reason) => {
                detail.set_kind(Kind::Refused);
                detail.reason = reason.clone();
                Code::FailedPrecondition
            }
            KvError::NotYet(reason) => {
                detail.set_kind(Kind::NotYet);
                detail.reason = reason.clone();
                Code::Unavailable
            }
            KvError::PermissionDenied(reason) => {
                detail.set_kind(Kind::PermissionDenied);
                detail.reason = reason.clone();
                Code::PermissionDenied
            }
            KvError::SessionExpired { horizon } => {
                detail.set_kind(Kind::SessionExpired);
                detail.horizon = *horizon;
                Code::FailedPrecondition
            }
        };
        (code, detail)
    }

    /// Encodes the error as a gRPC status whose details carry an [`ErrorDetail`].
    pub fn to_status(&self) -> Status {
        let (code, detail) = self.detail();
        let message = self.to_string();
        let mut details = vec![pack(ERROR_DETAIL_TYPE, &detail)];
        if let Some(violation) = self.field_violation() {
            let bad_request = pb::BadRequest {
                field_violations: vec![violation],
            };
            details.push(pack(BAD_REQUEST_TYPE, &bad_request));
        }
        if self.is_retryable() {
            let retry = pb::RetryInfo {
                retry_delay: Some(prost_types::Duration {
                    seconds: 0,
                    nanos: RETRY_DELAY_NANOS,
                }),
            };
            details.push(pack(RETRY_INFO_TYPE, &retry));
        }
        let status = pb::Status {
            code: code as i32,
            message: message.clone(),
            details,
        };
        Status::with_details(code, message, Bytes::from(status.encode_to_vec()))
    }

    /// The request field a limit error is about, as `google.rpc.BadRequest`
    /// names it.
    fn field_violation(&self) -> Option<pb::bad_request::FieldViolation> {
        let field = match self {
            KvError::KeyEmpty | KvError::KeyTooLarge { .. } => "key",
            KvError::ValueTooLarge { .. } => "value",
            _ => return None,
        };
        Some(pb::bad_request::FieldViolation {
            field: field.to_string(),
            description: self.to_string(),
            ..Default::default()
        })
    }

    /// Decodes a status produced by [`KvError::to_status`]. Returns `None` for a
    /// status that carries no Shoal error detail (a transport failure, say).
    pub fn from_status(status: &Status) -> Option<KvError> {
        let rich = pb::Status::decode(status.details()).ok()?;
        let packed = rich
            .details
            .iter()
            .find(|a| a.type_url == ERROR_DETAIL_TYPE)?;
        let detail = ErrorDetail::decode(&packed.value[..]).ok()?;
        Some(match detail.kind() {
            Kind::Unspecified => return None,
            Kind::NotLeader => KvError::NotLeader {
                leader_id: detail.leader_id,
                leader_addr: detail.leader_addr,
            },
            Kind::Unavailable => KvError::Unavailable(detail.reason),
            Kind::KeyEmpty => KvError::KeyEmpty,
            Kind::KeyTooLarge => KvError::KeyTooLarge {
                actual: detail.actual,
                limit: detail.limit,
            },
            Kind::ValueTooLarge => KvError::ValueTooLarge {
                actual: detail.actual,
                limit: detail.limit,
            },
            Kind::StaleSequence => KvError::StaleSequence,
            Kind::WriteIdConflict => KvError::WriteIdConflict,
            Kind::WrongGroup => KvError::WrongGroup {
                config_num: detail.config_num,
            },
            Kind::Refused => KvError::Refused(detail.reason),
            Kind::NotYet => KvError::NotYet(detail.reason),
            Kind::PermissionDenied => KvError::PermissionDenied(detail.reason),
            Kind::SessionExpired => KvError::SessionExpired {
                horizon: detail.horizon,
            },
        })
    }
}

/// The `Any` type URL of Shoal's [`ErrorDetail`].
pub const ERROR_DETAIL_TYPE: &str = "type.googleapis.com/shoal.ErrorDetail";
const BAD_REQUEST_TYPE: &str = "type.googleapis.com/google.rpc.BadRequest";
const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// The pause `google.rpc.RetryInfo` suggests before a retry (100 ms).
const RETRY_DELAY_NANOS: i32 = 100_000_000;

fn pack(type_url: &str, message: &impl Message) -> Any {
    Any {
        type_url: type_url.to_string(),
        value: message.encode_to_vec(),
    }
}

impl From<KvError> for Status {
    fn from(error: KvError) -> Status {
        error.to_status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_survives_the_status_round_trip() {
        let errors = [
            KvError::NotLeader {
                leader_id: Some(2),
                leader_addr: Some("10.0.0.2:7000".into()),
            },
            KvError::NotLeader {
                leader_id: None,
                leader_addr: None,
            },
            KvError::Unavailable("no quorum".into()),
            KvError::KeyEmpty,
            KvError::KeyTooLarge {
                actual: 5000,
                limit: 4096,
            },
            KvError::ValueTooLarge {
                actual: 200_000,
                limit: 131_072,
            },
            KvError::StaleSequence,
            KvError::WriteIdConflict,
            KvError::WrongGroup { config_num: 7 },
            KvError::Refused("group 1 has already joined".into()),
            KvError::NotYet("configuration 4".into()),
            KvError::PermissionDenied("an administrator is needed".into()),
            KvError::SessionExpired { horizon: 1_700_000 },
        ];
        for error in errors {
            let status = error.to_status();
            assert_eq!(KvError::from_status(&status), Some(error));
        }
    }

    #[test]
    fn the_details_are_a_standard_rich_status() {
        use tonic_types::StatusExt;
        let status = KvError::ValueTooLarge {
            actual: 200_000,
            limit: 131_072,
        }
        .to_status();
        let rich = pb::Status::decode(status.details()).unwrap();
        assert_eq!(rich.code, Code::InvalidArgument as i32);
        assert_eq!(rich.details[0].type_url, ERROR_DETAIL_TYPE);
        let bad = status
            .get_details_bad_request()
            .expect("a BadRequest detail");
        assert_eq!(bad.field_violations[0].field, "value");
        assert!(status.get_details_retry_info().is_none());
        let unavailable = KvError::Unavailable("no quorum".into()).to_status();
        let retry = unavailable
            .get_details_retry_info()
            .expect("a RetryInfo detail");
        assert_eq!(
            retry.retry_delay,
            Some(std::time::Duration::from_millis(100))
        );
        assert!(unavailable.get_details_bad_request().is_none());
    }

    #[test]
    fn a_plain_status_is_not_a_kv_error() {
        assert_eq!(KvError::from_status(&Status::internal("boom")), None);
    }
}
