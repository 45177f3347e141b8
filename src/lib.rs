//! Shoal: a sharded, Raft-replicated key-value database built simulation-first.
//!
//! A short tour, from the bottom up:
//! - [`runtime`] is the seam between the two worlds Shoal compiles for: real
//!   tokio, and the madsim simulator. Nothing else knows which one it runs in.
//! - [`storage`] keeps a replica's Raft log and state machine; [`storage::kv`]
//!   is the state machine's pure logic (ordered map + de-duplication table).
//! - [`raft`] configures openraft for Shoal and carries its messages over gRPC.
//! - [`server`] exposes the client API and the Raft transport, and
//!   [`server::node::run`] starts a whole replica: the one entry point the node
//!   binary and the simulator share.
//! - [`client`] finds leaders, retries under a deadline and numbers writes for
//!   exactly-once application.
//! - [`shard`] maps keys to shards and shards to groups: the shard
//!   controller's configurations and a data group's shard moves.
//! - [`error`] holds the client API's limits and its typed error.

#![deny(missing_docs)]

pub mod client;
pub mod error;
pub mod raft;
pub mod runtime;
pub mod server;
pub mod shard;
pub mod storage;

/// Code generated from `proto/shoal.proto`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("shoal");
}
