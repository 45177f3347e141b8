//! Client workloads, driven by a generator seeded from the simulation seed.

pub mod write_once;
