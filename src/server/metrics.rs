//! A node's metrics: one Prometheus registry holding the request, consensus,
//! storage, shard-move and state gauges, encoded in Prometheus's text format
//! for `/metrics`. The simulator reads the same handles.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::replica::Replica;
use crate::ids::NodeId;
use crate::storage::StorageMetrics;

/// The labels of a client request's metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// The gRPC method, e.g. `put`.
    pub method: &'static str,
    /// `ok`, or the gRPC status code's name of the error.
    pub outcome: String,
}

/// Every metric a node exports.
pub struct NodeMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RequestLabels, Histogram>,
    /// Writes proposed to the log and not yet answered.
    pub proposals_pending: Gauge,
    /// Incoming shards this node's mover began to pull.
    pub shard_moves_started: Counter,
    /// Incoming shards this node's mover received and proposed to install.
    pub shard_moves_finished: Counter,
    term: Gauge,
    is_leader: Gauge,
    leader_changes: Counter,
    last_log_index: Gauge,
    applied_index: Gauge,
    apply_lag: Gauge,
    keys: Gauge,
    key_bytes: Gauge,
    last_leader: Mutex<Option<NodeId>>,
}

impl NodeMetrics {
    /// The registry of a node whose storage reports to `storage`.
    pub fn new(storage: &StorageMetrics) -> NodeMetrics {
        let mut registry = Registry::with_prefix("shoal");
        storage.register(&mut registry);
        let request_seconds = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        let metrics = NodeMetrics {
            registry,
            requests: Family::default(),
            request_seconds,
            proposals_pending: Gauge::default(),
            shard_moves_started: Counter::default(),
            shard_moves_finished: Counter::default(),
            term: Gauge::default(),
            is_leader: Gauge::default(),
            leader_changes: Counter::default(),
            last_log_index: Gauge::default(),
            applied_index: Gauge::default(),
            apply_lag: Gauge::default(),
            keys: Gauge::default(),
            key_bytes: Gauge::default(),
            last_leader: Mutex::new(None),
        };
        metrics.register_own()
    }

    fn register_own(mut self) -> NodeMetrics {
        let r = &mut self.registry;
        r.register(
            "requests",
            "Client requests served, by method and outcome",
            self.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time to answer a client request, by method and outcome",
            self.request_seconds.clone(),
        );
        r.register(
            "proposals_pending",
            "Writes proposed and not yet answered",
            self.proposals_pending.clone(),
        );
        r.register(
            "shard_moves_started",
            "Shard pulls started by this node's mover",
            self.shard_moves_started.clone(),
        );
        r.register(
            "shard_moves_finished",
            "Shards received and proposed for installation",
            self.shard_moves_finished.clone(),
        );
        r.register("raft_term", "The current Raft term", self.term.clone());
        r.register(
            "raft_is_leader",
            "1 if this replica leads its group",
            self.is_leader.clone(),
        );
        r.register(
            "raft_leader_changes",
            "Changes of leader this replica has seen",
            self.leader_changes.clone(),
        );
        r.register(
            "raft_last_log_index",
            "Index of the last entry in the log",
            self.last_log_index.clone(),
        );
        r.register(
            "raft_applied_index",
            "Index of the last entry applied",
            self.applied_index.clone(),
        );
        r.register(
            "raft_apply_lag",
            "Log entries not yet applied",
            self.apply_lag.clone(),
        );
        r.register("keys", "Keys stored", self.keys.clone());
        r.register(
            "key_value_bytes",
            "Bytes of keys and values stored",
            self.key_bytes.clone(),
        );
        self
    }

    /// Counts a client request to `method` that took `took` and ended with
    /// `outcome` (`None`: it succeeded).
    pub fn observe_request(
        &self,
        method: &'static str,
        outcome: Option<tonic::Code>,
        took: Duration,
    ) {
        let labels = RequestLabels {
            method,
            outcome: outcome.map_or("ok".to_string(), |code| format!("{code:?}").to_lowercase()),
        };
        self.requests.get_or_create(&labels).inc();
        self.request_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Brings the consensus gauges up to date with `replica`'s view, counting
    /// a leader change if the leader differs from the last one seen.
    pub fn observe_raft(&self, replica: &Replica) {
        let view = replica.raft.metrics().borrow().clone();
        let applied = view.last_applied.map_or(0, |id| id.index);
        let last = view.last_log_index.unwrap_or(0);
        self.term.set(view.current_term as i64);
        self.is_leader
            .set(i64::from(view.current_leader == Some(view.id)));
        self.last_log_index.set(last as i64);
        self.applied_index.set(applied as i64);
        self.apply_lag.set(last.saturating_sub(applied) as i64);
        let mut seen = self.last_leader.lock().expect("leader lock");
        if view.current_leader.is_some() && *seen != view.current_leader {
            if seen.is_some() {
                self.leader_changes.inc();
            }
            *seen = view.current_leader;
        }
    }

    /// The registry in Prometheus's text format, its state gauges brought up
    /// to date first (from counts storage keeps as it commits).
    pub fn encode(&self, replica: &Replica) -> String {
        self.observe_raft(replica);
        {
            let applied = replica.state_machine.read();
            // A damaged count leaves the gauges as they were.
            if let Ok((keys, bytes)) = applied.kv.data.counts() {
                self.keys.set(keys as i64);
                self.key_bytes.set(bytes as i64);
            }
        }
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a string");
        text
    }
}

/// Applied entries a replica may trail its log by and still be ready.
const READY_LAG_MAX: u64 = 100;

/// The metrics address's routes: `/metrics` (Prometheus text), `/health`
/// (200 while the replica serves: its group has a leader it knows) and
/// `/ready` (200 once it has also applied its log to within
/// [`READY_LAG_MAX`] entries); otherwise 503 with the reason.
pub fn router(replica: Replica) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/metrics", get(scrape))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(replica)
}

type Answer = (
    axum::http::StatusCode,
    [(axum::http::HeaderName, &'static str); 1],
    String,
);

fn answer(ok: bool, content_type: &'static str, body: String) -> Answer {
    use axum::http::{header, StatusCode};
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, [(header::CONTENT_TYPE, content_type)], body)
}

async fn scrape(axum::extract::State(replica): axum::extract::State<Replica>) -> Answer {
    let text = replica.metrics.encode(&replica);
    answer(true, "text/plain; version=0.0.4; charset=utf-8", text)
}

/// Why `replica` is not serving, if it is not.
fn unhealthy(replica: &Replica) -> Option<String> {
    let view = replica.raft.metrics().borrow().clone();
    if let Err(fatal) = &view.running_state {
        return Some(format!("consensus stopped: {fatal}"));
    }
    view.current_leader
        .is_none()
        .then(|| "no known leader".to_string())
}

async fn health(axum::extract::State(replica): axum::extract::State<Replica>) -> Answer {
    let why = unhealthy(&replica);
    answer(
        why.is_none(),
        "text/plain",
        why.unwrap_or_else(|| "ok".into()) + "\n",
    )
}

async fn ready(axum::extract::State(replica): axum::extract::State<Replica>) -> Answer {
    let view = replica.raft.metrics().borrow().clone();
    let applied = view.last_applied.map_or(0, |id| id.index);
    let last = view.last_log_index.unwrap_or(0);
    let why = unhealthy(&replica).or_else(|| {
        (last > applied + READY_LAG_MAX).then(|| format!("applied {applied} of {last} log entries"))
    });
    answer(
        why.is_none(),
        "text/plain",
        why.unwrap_or_else(|| "ok".into()) + "\n",
    )
}
