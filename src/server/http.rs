//! The HTTP/JSON gateway: the client API for tools without a gRPC stack
//! (curl, scripts), served on a node's `http_listen` address.
//!
//! | method and path | does | answers |
//! |---|---|---|
//! | `GET /v1/kv/{key}` | reads the key | 200 with the raw value; 404 if absent |
//! | `PUT /v1/kv/{key}` | stores the raw request body | 200 `{}` |
//! | `DELETE /v1/kv/{key}` | removes the key | 200 `{"existed": bool}` |
//! | `POST /v1/kv/{key}/cas` | compare-and-swap, body `{"expected": b64 or null, "new": b64 or null}` | 200 `{"swapped": bool, "current": b64 or null}` |
//! | `GET /v1/scan?start=&end=&limit=` | keys in `[start, end)` | 200 `{"entries": [{"key": b64, "value": b64}]}` |
//! | `GET /v1/status` | this node's view of its group | 200 JSON |
//!
//! Binary safety: a key is one path segment, percent-encoded (any byte may
//! be written `%XX`; a `/` in a key must be); `start` and `end` are
//! percent-encoded too (`+` is a plus sign, not a space). Values travel raw in
//! `PUT` bodies and `GET` answers, and as standard base64 inside JSON.
//!
//! Errors are JSON, `{"error": {"kind": ..., "message": ...}}`, with the
//! kinds of the gRPC API's `ErrorDetail` (`KEY_TOO_LARGE`, `NOT_LEADER`, ...)
//! and their fields, under the matching HTTP status: 400 bad input, 413 a
//! value over the limit, 409 refused, 503 unavailable, 504 no answer in
//! time, 404 `NOT_FOUND` for an absent key.
//!
//! The gateway routes every request itself, through the node's pool of Shoal
//! clients ([`super::pool`]); each HTTP request is one write, and re-sending a
//! request is a new write.

use axum::body::Bytes as Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use tonic::Code;

use super::replica::Replica;
use crate::client::{Client, ClientError};
use crate::error::KvError;
use crate::limits::CLIENT_MESSAGE_SIZE_MAX;

/// The most entries a scan answers when the request names no limit.
const SCAN_LIMIT_DEFAULT: u32 = 1000;

/// The gateway's routes, serving from `replica` and routing requests with
/// its client pool.
pub fn router(replica: Replica) -> Router {
    Router::new()
        .route("/v1/kv/{key}", get(get_key).put(put_key).delete(delete_key))
        .route("/v1/kv/{key}/cas", post(cas_key))
        .route("/v1/scan", get(scan))
        .route("/v1/status", get(status))
        .layer(DefaultBodyLimit::max(CLIENT_MESSAGE_SIZE_MAX))
        .with_state(replica)
}

/// A failed request, answered as JSON.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    body: serde_json::Value,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<KvError> for Failure {
    fn from(error: KvError) -> Failure {
        let (code, detail) = error.detail();
        let status = match (&error, code) {
            (KvError::ValueTooLarge { .. }, _) => StatusCode::PAYLOAD_TOO_LARGE,
            (_, Code::InvalidArgument) => StatusCode::BAD_REQUEST,
            (_, Code::FailedPrecondition) => StatusCode::CONFLICT,
            (_, Code::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut body = serde_json::json!({
            "kind": detail.kind().as_str_name(),
            "message": error.to_string(),
        });
        let fields = &mut body;
        match error {
            KvError::KeyTooLarge { actual, limit } | KvError::ValueTooLarge { actual, limit } => {
                fields["limit"] = limit.into();
                fields["actual"] = actual.into();
            }
            KvError::NotLeader {
                leader_id,
                leader_addr,
            } => {
                fields["leader_id"] = leader_id.into();
                fields["leader_addr"] = leader_addr.into();
            }
            KvError::WrongGroup { config_num } => fields["config_num"] = config_num.into(),
            KvError::SessionExpired { horizon } => fields["horizon"] = horizon.into(),
            _ => {}
        }
        Failure {
            status,
            body: serde_json::json!({ "error": body }),
        }
    }
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Failure {
        let (status, kind) = match &error {
            ClientError::Rejected(e) => return e.clone().into(),
            ClientError::SessionExpired { horizon } => {
                return KvError::SessionExpired { horizon: *horizon }.into()
            }
            ClientError::DeadlineExceeded { .. } => {
                (StatusCode::GATEWAY_TIMEOUT, "DEADLINE_EXCEEDED")
            }
            ClientError::Rpc(_) | ClientError::NoEndpoints => (StatusCode::BAD_GATEWAY, "INTERNAL"),
        };
        Failure {
            status,
            body: serde_json::json!({ "error": { "kind": kind, "message": error.to_string() } }),
        }
    }
}

fn bad_request(message: impl Into<String>) -> Failure {
    Failure {
        status: StatusCode::BAD_REQUEST,
        body: serde_json::json!({ "error": { "kind": "BAD_REQUEST", "message": message.into() } }),
    }
}

/// Percent-decodes `text` into bytes.
fn decode(text: &str) -> Bytes {
    Bytes::from(percent_decode_str(text).collect::<Vec<u8>>())
}

/// The key of a `/v1/kv/{key}` or `/v1/kv/{key}/cas` path, decoded.
fn key_of(uri: &Uri) -> Result<Bytes, Failure> {
    let path = uri.path();
    let rest = path
        .strip_prefix("/v1/kv/")
        .ok_or_else(|| bad_request("not a key path"))?;
    let segment = rest.strip_suffix("/cas").unwrap_or(rest);
    if segment.contains('/') {
        return Err(bad_request("a key is one path segment: write '/' as %2F"));
    }
    Ok(decode(segment))
}

/// Runs `call` with a client of the replica's pool.
async fn with_client<T>(
    replica: &Replica,
    call: impl AsyncFnOnce(&mut Client) -> Result<T, ClientError>,
) -> Result<T, Failure> {
    Ok(replica.clients.with(call).await?)
}

async fn get_key(State(replica): State<Replica>, uri: Uri) -> Result<Response, Failure> {
    let key = key_of(&uri)?;
    match with_client(&replica, async |c| c.get(key).await).await? {
        Some(value) => Ok(([("content-type", "application/octet-stream")], value).into_response()),
        None => Err(Failure {
            status: StatusCode::NOT_FOUND,
            body: serde_json::json!({ "error": { "kind": "NOT_FOUND", "message": "no such key" } }),
        }),
    }
}

async fn put_key(
    State(replica): State<Replica>,
    uri: Uri,
    value: Body,
) -> Result<Json<serde_json::Value>, Failure> {
    let key = key_of(&uri)?;
    with_client(&replica, async |c| c.put(key, value).await).await?;
    Ok(Json(serde_json::json!({})))
}

async fn delete_key(
    State(replica): State<Replica>,
    uri: Uri,
) -> Result<Json<serde_json::Value>, Failure> {
    let key = key_of(&uri)?;
    let existed = with_client(&replica, async |c| c.delete(key).await).await?;
    Ok(Json(serde_json::json!({ "existed": existed })))
}

/// A compare-and-swap's body: base64 values, `null` for "absent".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CasBody {
    expected: Option<String>,
    new: Option<String>,
}

/// A compare-and-swap's answer.
#[derive(Debug, Serialize)]
struct CasAnswer {
    swapped: bool,
    current: Option<String>,
}

fn base64_value(field: &str, text: Option<String>) -> Result<Option<Bytes>, Failure> {
    text.map(|t| {
        BASE64
            .decode(t)
            .map(Bytes::from)
            .map_err(|e| bad_request(format!("{field} is not base64: {e}")))
    })
    .transpose()
}

async fn cas_key(
    State(replica): State<Replica>,
    uri: Uri,
    body: Body,
) -> Result<Json<CasAnswer>, Failure> {
    let key = key_of(&uri)?;
    let body: CasBody = serde_json::from_slice(&body)
        .map_err(|e| bad_request(format!("compare-and-swap body: {e}")))?;
    let expected = base64_value("expected", body.expected)?;
    let new = base64_value("new", body.new)?;
    let outcome = with_client(&replica, async |c| {
        c.compare_and_swap(key, expected, new).await
    })
    .await?;
    Ok(Json(CasAnswer {
        swapped: outcome.swapped,
        current: outcome.current.map(|v| BASE64.encode(v)),
    }))
}

async fn scan(
    State(replica): State<Replica>,
    uri: Uri,
) -> Result<Json<serde_json::Value>, Failure> {
    let (mut start, mut end, mut limit) = (Bytes::new(), Bytes::new(), SCAN_LIMIT_DEFAULT);
    for pair in uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "start" => start = decode(value),
            "end" => end = decode(value),
            "limit" => {
                limit = value
                    .parse()
                    .map_err(|_| bad_request(format!("limit {value:?} is not a count")))?
            }
            other => return Err(bad_request(format!("unknown parameter {other:?}"))),
        }
    }
    let entries = with_client(&replica, async |c| c.scan(start, end, limit).await).await?;
    let entries: Vec<serde_json::Value> = entries
        .iter()
        .map(|(k, v)| serde_json::json!({ "key": BASE64.encode(k), "value": BASE64.encode(v) }))
        .collect();
    Ok(Json(serde_json::json!({ "entries": entries })))
}

async fn status(State(replica): State<Replica>) -> Json<serde_json::Value> {
    let status = replica.status();
    Json(serde_json::json!({
        "node_id": status.node_id,
        "leader_id": status.leader_id,
        "term": status.term,
        "role": status.role,
        "last_applied": status.last_applied,
        "members": status.members,
        "keys": status.keys,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_percent_encoded_segment() {
        let key = |path: &str| key_of(&path.parse::<Uri>().unwrap());
        assert_eq!(key("/v1/kv/hello").unwrap(), Bytes::from("hello"));
        assert_eq!(key("/v1/kv/a%2Fb/cas").unwrap(), Bytes::from("a/b"));
        assert_eq!(key("/v1/kv/%00%FF").unwrap(), Bytes::from(vec![0u8, 255]));
        assert!(key("/v1/kv/a/b").is_err());
    }

    #[test]
    fn errors_keep_their_kind_and_fields_under_the_right_status() {
        let failure = Failure::from(KvError::ValueTooLarge {
            actual: 200_000,
            limit: 131_072,
        });
        assert_eq!(failure.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(failure.body["error"]["kind"], "VALUE_TOO_LARGE");
        assert_eq!(failure.body["error"]["limit"], 131_072);
        let failure = Failure::from(KvError::KeyEmpty);
        assert_eq!(
            (failure.status, &failure.body["error"]["kind"]),
            (StatusCode::BAD_REQUEST, &"KEY_EMPTY".into())
        );
        let failure = Failure::from(KvError::Unavailable("no quorum".into()));
        assert_eq!(failure.status, StatusCode::SERVICE_UNAVAILABLE);
        let failure = Failure::from(KvError::StaleSequence);
        assert_eq!(failure.status, StatusCode::CONFLICT);
    }
}
