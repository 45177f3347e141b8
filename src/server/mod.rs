//! The gRPC services a node exposes: the client API ([`kv::KvService`]) and
//! the Raft transport ([`raft::RaftService`]), and the node itself
//! ([`node::run`]), which wires storage, consensus and services together.

pub mod kv;
pub mod node;
pub mod raft;
