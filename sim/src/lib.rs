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
pub mod nemesis;
pub mod run;
pub mod scenario;
pub mod workload;

/// Sends `tracing` output to stderr, filtered by `RUST_LOG` or else by
/// `default_filter`. Wall-clock timestamps are left out: they would differ
/// between replays of the same seed.
pub fn init_logging(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(filter(default_filter))
        .without_time()
        .with_writer(std::io::stderr)
        .init();
}

/// Sends `tracing` output to `trace`, one event a line: simulated time, level,
/// node and task spans, component, event and fields. Two runs of one seed
/// write identical files.
pub fn init_trace(default_filter: &str, trace: &std::path::Path) -> std::io::Result<()> {
    if let Some(dir) = trace.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::File::create(trace)?;
    tracing_subscriber::fmt()
        .with_env_filter(filter(default_filter))
        .with_timer(SimulatedTime)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .init();
    Ok(())
}

fn filter(default_filter: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into())
}

/// Timestamps events with the simulated time since the first one.
struct SimulatedTime;

impl tracing_subscriber::fmt::time::FormatTime for SimulatedTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        // The simulator owns the clock: this is simulated time.
        let now = std::time::Instant::now();
        let elapsed = now.saturating_duration_since(*START.get_or_init(|| now));
        write!(w, "{:>10.6}s", elapsed.as_secs_f64())
    }
}
