//! What a scenario's clients do: `[workload]`.

use serde::{Deserialize, Serialize};

/// What the clients do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Which workload.
    #[serde(default)]
    pub kind: WorkloadKind,
    /// Concurrent clients (1..=64).
    pub clients: u32,
    /// write-once: distinct keys written in all (at least one per client);
    /// register and list-append: the number of hot keys (at most 1,000);
    /// throughput: the size of the key space (at most 10,000,000).
    pub keys: u32,
    /// Size of each value in bytes (write-once, throughput).
    #[serde(default = "default_value_size_bytes")]
    pub value_size_bytes: usize,
    /// Operations per client (register, list-append, throughput).
    pub ops_per_client: Option<u32>,
    /// Simulated milliseconds after which clients start no more operations.
    /// Register, list-append and throughput workloads need this or
    /// `ops_per_client`, or both (whichever runs out first).
    pub duration_ms: Option<u64>,
    /// Operation weights (register, throughput).
    pub mix: Option<Mix>,
    /// Throughput: how strongly operations favour low-numbered keys, from 0
    /// (uniform) up to, not including, 1.
    #[serde(default)]
    pub skew: f64,
    /// Who routes the clients' requests: the clients themselves (the
    /// default) or the nodes, which the clients then reach at random.
    #[serde(default, skip_serializing_if = "ClientRouting::is_default")]
    pub routing: ClientRouting,
    /// List-append: each client starts a new session (a new client id, as
    /// a new short-lived client would) after this many appends, closing
    /// the old one or just leaving it (absent: one session throughout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appends_per_session: Option<u32>,
    /// Swarm mode: the workloads a seed draws from (empty: always `kind`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub swarm_kinds: Vec<WorkloadKind>,
}

/// Who routes the workload's requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientRouting {
    /// Shoal's routing client: to the group serving each key's shard.
    #[default]
    Client,
    /// Clients that do not route: any node forwards each request.
    Nodes,
}

impl ClientRouting {
    fn is_default(&self) -> bool {
        *self == ClientRouting::default()
    }
}

/// The workloads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// Each key written once; checked for durability.
    #[default]
    WriteOnce,
    /// Reads, writes, CAS and deletes racing on hot keys; checked for
    /// linearizability.
    Register,
    /// Appends to lists on hot keys by read and compare-and-swap; checked
    /// for linearizability and for the list invariants.
    ListAppend,
    /// The register's operations over a large, optionally skewed key space
    /// with sized values and short scans; checked for linearizability.
    Throughput,
}

/// Relative weights of register operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    /// Reads.
    #[serde(default)]
    pub get: u32,
    /// Writes.
    #[serde(default)]
    pub put: u32,
    /// Compare-and-swaps.
    #[serde(default)]
    pub cas: u32,
    /// Deletes.
    #[serde(default)]
    pub delete: u32,
    /// Scans (of every hot key for the register workload, of ten keys for
    /// the throughput workload).
    #[serde(default)]
    pub scan: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            get: 50,
            put: 25,
            cas: 20,
            delete: 5,
            scan: 0,
        }
    }
}

impl WorkloadSpec {
    /// Operations the workload performs in all, if that is bounded by a
    /// count rather than only by time.
    pub fn total_ops(&self) -> Option<u32> {
        match self.kind {
            WorkloadKind::WriteOnce => Some(self.keys),
            _ => self.ops_per_client.map(|n| self.clients * n),
        }
    }
}

fn default_value_size_bytes() -> usize {
    64
}
