//! Where a replica keeps its state: the Raft log ([`log_store`]) and the
//! state machine with its snapshots ([`state_machine`]), whose logic lives in
//! [`kv`].
//!
//! Both stores implement openraft's storage traits. They currently keep their
//! data in memory, shared through [`Storage`]: a handle that outlives the
//! replica using it, so the simulator can kill and restart a node and hand the
//! new incarnation the state the old one left behind, as a disk would.

pub mod kv;
pub mod log_store;
pub mod state_machine;

pub use log_store::LogStore;
pub use state_machine::StateMachineStore;

/// A replica's stores. Cloning shares them.
#[derive(Debug, Clone, Default)]
pub struct Storage {
    /// The Raft log, vote and committed index.
    pub log: LogStore,
    /// The applied state and the latest snapshot.
    pub state_machine: StateMachineStore,
}

impl Storage {
    /// Empty stores held in memory.
    pub fn in_memory() -> Storage {
        Storage::default()
    }
}
