//! Shoal's simulation harness. It exists only in simulation builds
//! (`--cfg madsim`, see the `cargo sim` alias): a madsim cluster of real Shoal
//! nodes ([`cluster`]), scenario files ([`scenario`]), client workloads
//! ([`workload`]), the recorded [`history`], checkers ([`check`]) and the
//! code that runs one seed ([`run`]).
#![cfg(madsim)]
#![deny(missing_docs)]

pub mod check;
pub mod cluster;
pub mod history;
pub mod run;
pub mod scenario;
pub mod workload;
