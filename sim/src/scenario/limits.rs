//! The bounds of a scenario, named once: validation refuses a scenario
//! beyond them ([`Scenario::parse`](super::Scenario::parse)), and the
//! simulated cluster asserts them.

/// Replicas a group starts with (its first voters).
pub const REPLICAS_PER_GROUP_MAX: u64 = 9;

/// Spare replicas per group (started to join, added by membership faults).
pub const SPARE_REPLICAS_PER_GROUP_MAX: u64 = 9;

/// Data groups of a sharded cluster, joined and standby together.
pub const GROUPS_MAX: u32 = 16;

/// Concurrent workload clients.
pub const CLIENTS_MAX: u32 = 64;

/// Hot keys of the register and list-append workloads (their names sort as
/// their numbers do up to this many).
pub const HOT_KEYS_MAX: u32 = 1_000;

/// Size of the throughput workload's key space (its key names sort as their
/// numbers do up to this many).
pub const KEY_SPACE_MAX: u32 = 10_000_000;

// A replica's id in the cluster is `100 * (group + 1) + node id`: node ids,
// spares included, stay below 100.
const _: () = assert!(REPLICAS_PER_GROUP_MAX + SPARE_REPLICAS_PER_GROUP_MAX < 100);
// Group `g` is addressed as network `10.(g + 1).0.0`, the controller being
// group 0: every group number plus one fits in a byte.
const _: () = assert!(GROUPS_MAX + 1 < 255);
// Clients are addressed as `10.0.1.n` for n from 1.
const _: () = assert!(CLIENTS_MAX < 255);
