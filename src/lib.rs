//! Shoal: a sharded, Raft-replicated key-value database built simulation-first.
//!
//! A short tour, from the bottom layer up (a module uses only modules of its
//! own layer or below; `tests/layers.rs` enforces it):
//! 1. [`runtime`] is the seam between the two worlds Shoal compiles for: real
//!    tokio, and the madsim simulator. Nothing else knows which one it runs
//!    in. Beside it: [`ids`] (replica, group and shard names), [`limits`]
//!    (every size bound), [`error`] (the client API's typed error),
//!    [`format`] (every durable and peer encoding, with its version) and
//!    [`proto`] (the wire types).
//! 2. [`machine`] is the replicated state machine, pure logic: commands, the
//!    data with its de-duplication table, the shard controller's
//!    configurations and a data group's shard moves.
//! 3. [`raft`] configures openraft for Shoal and carries its messages over
//!    gRPC; [`wire`] gives the state machine's public types their protobuf
//!    forms; [`storage`] keeps a replica's Raft log and state machine on disk.
//! 4. [`client`] finds leaders, retries under a deadline and numbers writes
//!    for exactly-once application.
//! 5. [`server`] exposes the client, admin and peer services, and
//!    [`server::node::run`] starts a whole replica: the one entry point the
//!    node binary and the simulator share.

#![deny(missing_docs)]

pub mod client;
pub mod error;
pub mod format;
pub mod ids;
pub mod limits;
pub mod machine;
pub mod raft;
pub mod runtime;
pub mod server;
pub mod storage;
pub mod tls;
pub mod wire;

/// Code generated from `proto/shoal.proto`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("shoal");
}
