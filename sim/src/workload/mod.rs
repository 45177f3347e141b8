//! Client workloads, each client driven by a generator seeded from the
//! simulation seed.

pub mod list_append;
pub mod register;
pub mod throughput;
pub mod write_once;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal::client::Client;

use crate::check::linearizability::KeyedOp;
use crate::history::History;
use crate::scenario::WorkloadSpec;

/// What one workload client runs with.
pub struct Worker {
    /// Its number among the clients (0-based).
    pub index: u32,
    /// Its connection to the cluster.
    pub client: Client,
    /// The workload.
    pub spec: WorkloadSpec,
    /// Seed of its own generator.
    pub seed: u64,
    /// When the run began.
    pub t0: tokio::time::Instant,
    /// Where it records what it does.
    pub history: Arc<Mutex<History>>,
    /// Where it counts what it has done.
    pub progress: Arc<Progress>,
}

impl Worker {
    /// Whether the client starts another operation, having done `done`: not
    /// past `ops_per_client` nor past `duration_ms` of simulated time.
    pub fn keep_going(&self, done: u32) -> bool {
        self.spec.ops_per_client.is_none_or(|max| done < max)
            && self
                .spec
                .duration_ms
                .is_none_or(|ms| self.now() < Duration::from_millis(ms))
    }

    /// Simulated time since the run began.
    pub fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// Records a keyed operation in the history.
    pub fn record(&self, op: KeyedOp) {
        self.history.lock().expect("history lock").ops.push(op);
    }
}

/// How far the clients have got, for the nemesis to time its faults by.
#[derive(Debug, Default)]
pub struct Progress {
    /// Operations acknowledged.
    pub acked: AtomicU32,
    /// Clients that have finished their work.
    pub clients_done: AtomicU32,
}

impl Progress {
    /// Counts one finished operation.
    pub fn finish(&self, acked: bool) {
        if acked {
            self.acked.fetch_add(1, Ordering::Relaxed);
        }
    }
}
