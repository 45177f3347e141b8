//! Shoal's simulation harness. It exists only in simulation builds
//! (`--cfg madsim`, see the `cargo sim` alias): a madsim cluster of real Shoal
//! nodes ([`cluster`]), scenario files ([`scenario`]), client workloads
//! ([`workload`]), the recorded [`history`], checkers ([`check`]) and the
//! code that runs one seed ([`run`]).
#![cfg(madsim)]
#![deny(missing_docs)]

pub mod check;
pub mod cluster;
pub mod disk;
pub mod history;
pub mod run;
pub mod scenario;
pub mod workload;

/// Sends `tracing` output to stderr, filtered by `RUST_LOG` or else by
/// `default_filter`. Wall-clock timestamps are left out: they would differ
/// between replays of the same seed.
pub fn init_logging(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .without_time()
        .with_writer(std::io::stderr)
        .init();
}
