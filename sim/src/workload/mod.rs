//! Client workloads, each client driven by a generator seeded from the
//! simulation seed.

pub mod list_append;
pub mod register;
pub mod write_once;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use shoal::client::Client;

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

/// How far the clients have got, for the nemesis to time its faults by.
#[derive(Debug, Default)]
pub struct Progress {
    /// Operations acknowledged.
    pub acked: AtomicU32,
    /// Operations finished, acknowledged or not.
    pub finished: AtomicU32,
}

impl Progress {
    /// Counts one finished operation.
    pub fn finish(&self, acked: bool) {
        if acked {
            self.acked.fetch_add(1, Ordering::Relaxed);
        }
        self.finished.fetch_add(1, Ordering::Relaxed);
    }
}
