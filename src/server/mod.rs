//! A node: the gRPC services it exposes, one per audience, over the one
//! local [`replica::Replica`]:
//! - [`kv::KvService`], the client API;
//! - [`admin::AdminService`], the shard controller and membership changes;
//! - [`peer::PeerService`], the Raft transport and shard transfer between
//!   groups;
//!
//! the node's [`config`], the data group leader's shard [`mover`], its
//! [`metrics`] (Prometheus, with `/health` and `/ready`, on an HTTP address
//! of their own), and [`node::run`], which wires storage, consensus and
//! services together.

pub mod admin;
pub mod auth;
pub mod config;
pub mod http;
pub mod kv;
pub mod metrics;
pub mod mover;
pub mod node;
pub mod peer;
pub mod pool;
pub mod propose;
pub mod read_index;
pub mod replica;
