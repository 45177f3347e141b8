//! Client workloads, each client driven by a generator seeded from the
//! simulation seed. [`Workload`] is the one place a run turns a workload
//! kind into its clients and its reads and checks after the run.

pub mod list_append;
pub mod register;
pub mod throughput;
pub mod write_once;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use shoal::client::Client;

use crate::check::{self, Violation};
use crate::cluster::Cluster;
use crate::history::{Append, History, KeyedOp};
use crate::scenario::{WorkloadKind, WorkloadSpec};

/// A workload as a run drives it: what its clients do, what it reads once
/// the run is over, and what it checks itself.
#[derive(Clone)]
pub enum Workload {
    /// See [`write_once`].
    WriteOnce,
    /// See [`register`].
    Register,
    /// See [`list_append`].
    ListAppend {
        /// Every append the clients made, as they saw it.
        appends: Arc<Mutex<Vec<Append>>>,
    },
    /// See [`throughput`].
    Throughput,
}

impl Workload {
    /// The workload of `kind`, before any client has run.
    pub fn new(kind: WorkloadKind) -> Workload {
        match kind {
            WorkloadKind::WriteOnce => Workload::WriteOnce,
            WorkloadKind::Register => Workload::Register,
            WorkloadKind::ListAppend => Workload::ListAppend {
                appends: Arc::default(),
            },
            WorkloadKind::Throughput => Workload::Throughput,
        }
    }

    /// Runs one client of the workload to its end.
    pub async fn run_client(self, worker: Worker) {
        match self {
            Workload::WriteOnce => write_once::run_client(worker).await,
            Workload::Register => register::run_client(worker).await,
            Workload::Throughput => throughput::run_client(worker).await,
            Workload::ListAppend { appends } => list_append::run_client(worker, appends).await,
        }
    }

    /// Reads made once the run is over that belong in the history, so that
    /// the final state is checked too: a register workload reads each hot
    /// key once more.
    pub async fn final_reads(
        &self,
        cluster: &Cluster,
        spec: &WorkloadSpec,
        t0: tokio::time::Instant,
    ) -> Vec<KeyedOp> {
        match self {
            Workload::Register => register::read_hot_keys(cluster, spec.keys, t0).await,
            Workload::WriteOnce | Workload::ListAppend { .. } | Workload::Throughput => Vec::new(),
        }
    }

    /// The workload's own check of the final state, reading it back as it
    /// needs: a list-append workload checks its lists.
    pub async fn final_check(
        &self,
        cluster: &Cluster,
        spec: &WorkloadSpec,
    ) -> Result<(), Violation> {
        match self {
            Workload::ListAppend { appends } => {
                let keys: BTreeSet<Bytes> = (0..spec.keys).map(list_append::key).collect();
                let appends = appends.lock().expect("appends lock").clone();
                let finals = read_keys(cluster, keys).await;
                check::list_append::check(&appends, &finals)
            }
            Workload::WriteOnce | Workload::Register | Workload::Throughput => Ok(()),
        }
    }
}

/// Reads `keys` through a client (a read that fails counts as absent).
pub async fn read_keys(cluster: &Cluster, keys: BTreeSet<Bytes>) -> BTreeMap<Bytes, Option<Bytes>> {
    cluster
        .observe(move |mut client| async move {
            let mut reads = BTreeMap::new();
            for key in keys {
                let value = client.get(key.clone()).await.ok().flatten();
                reads.insert(key, value);
            }
            reads
        })
        .await
}

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
    /// Records an answer that broke the API's contract, for the call made
    /// at `call`.
    pub fn breach(&self, call: Duration, what: String) {
        let mut history = self.history.lock().expect("history lock");
        history.breach(self.index, call, what);
    }

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
