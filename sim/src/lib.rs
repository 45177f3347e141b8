//! Shoal's simulation harness. It exists only in simulation builds
//! (`--cfg madsim`, see the `cargo sim` alias): a madsim cluster of real Shoal
//! nodes ([`cluster`]), scenario files ([`scenario`]), client workloads
//! ([`workload`]), faults ([`nemesis`]) recorded as a replayable
//! [`schedule`], the recorded [`history`], checkers ([`check`]) and the
//! code that runs one seed ([`run`]). The tools run each seed in a child
//! process ([`process`]); shrinking a failure tries the simpler scenarios
//! [`shrink`] proposes. A sweep's seed range splits into disjoint slices for
//! many machines, and its results into JSON and JUnit reports ([`sweep`]);
//! a history goes to checkers outside Shoal in Jepsen's form ([`export`]).
#![cfg(madsim)]
#![deny(missing_docs)]

pub mod check;
pub mod cluster;
pub mod disk;
pub mod export;
pub mod history;
pub mod nemesis;
pub mod process;
pub mod run;
pub mod scenario;
pub mod schedule;
pub mod shrink;
pub mod sweep;
pub mod view;

pub mod workload;

/// The allocator of every simulation build: the runner, replay and the
/// simulation tests. A run allocates for every message, task and timer, and
/// mimalloc takes about a sixth off a throughput seed's instructions. Where
/// a value lands in memory is no input to a run (address randomisation
/// already moves it between processes), so histories and traces stay the
/// same.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The exit code of Shoal's simulation tools: 0 when everything held, 1
/// when a check failed, 2 (with the error printed) when the tool could not
/// do its work.
pub fn exit_code(result: anyhow::Result<bool>) -> std::process::ExitCode {
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// What the trace records unless `RUST_LOG` says otherwise.
pub const TRACE_FILTER: &str = "info,openraft=warn";

/// Sets up `tracing` for one run: the trace (every event `RUST_LOG` or else
/// [`TRACE_FILTER`] lets through, one a line: simulated time, level, node
/// and task spans, component, event and fields) is hashed line by line and,
/// given a file, written to it; events passing `stderr_filter` also go to
/// stderr. Two runs of one seed produce identical traces; the returned
/// handle gives the trace's digest.
///
/// The simulator enters a task's span on every poll, so the filters sit
/// where entering a span costs nothing: without `RUST_LOG` the trace's
/// filter is a static [`Targets`](tracing_subscriber::filter::Targets) for
/// every layer, and `stderr_filter` picks lines at stderr's writer. That
/// shows stderr the same lines only because `stderr_filter` lets through no
/// more than [`TRACE_FILTER`] does (asserted); with `RUST_LOG` each layer
/// keeps its own `EnvFilter`.
pub fn init_tracing(
    stderr_filter: Option<&str>,
    trace_file: Option<&std::path::Path>,
) -> std::io::Result<TraceDigest> {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let file = match trace_file {
        Some(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            Some(std::fs::File::create(path)?)
        }
        None => None,
    };
    let digest = TraceDigest(std::sync::Arc::new(std::sync::Mutex::new(TraceSink {
        digest: history::Digest::default(),
        events: 0,
        partial: Vec::new(),
        file,
    })));
    if std::env::var_os(tracing_subscriber::EnvFilter::DEFAULT_ENV).is_some() {
        let stderr = stderr_filter.map(|f| {
            stderr_layer(std::io::stderr).with_filter(tracing_subscriber::EnvFilter::new(f))
        });
        tracing_subscriber::registry()
            .with(trace_layer(digest.clone()).with_filter(filter(TRACE_FILTER)))
            .with(stderr)
            .init();
    } else {
        let stderr = stderr_filter.map(|f| {
            let targets = static_filter(f);
            assert!(
                lets_through_no_more(&targets, &static_filter(TRACE_FILTER)),
                "stderr filter {f:?} lets through more than the trace's {TRACE_FILTER:?}"
            );
            stderr_layer(
                std::io::stderr
                    .with_filter(move |meta| targets.would_enable(meta.target(), meta.level())),
            )
        });
        tracing_subscriber::registry()
            .with(static_filter(TRACE_FILTER))
            .with(trace_layer(digest.clone()))
            .with(stderr)
            .init();
    }
    Ok(digest)
}

/// The trace's lines: simulated time, no colours, into the digest.
fn trace_layer<S>(digest: TraceDigest) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_timer(SimulatedTime)
        .with_ansi(false)
        .with_writer(digest)
}

/// Lines for stderr: the trace's format without the time.
fn stderr_layer<S, W>(writer: W) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .without_time()
        .with_writer(writer)
}

/// A filter of static directives (`target=level`, comma separated).
fn static_filter(directives: &str) -> tracing_subscriber::filter::Targets {
    directives
        .parse()
        .unwrap_or_else(|e| panic!("filter {directives:?}: {e}"))
}

/// Whether every event `narrow` enables, `wide` enables too: checked at
/// each level for the targets either names and for any other target.
fn lets_through_no_more(
    narrow: &tracing_subscriber::filter::Targets,
    wide: &tracing_subscriber::filter::Targets,
) -> bool {
    use tracing::Level;
    let levels = [
        Level::ERROR,
        Level::WARN,
        Level::INFO,
        Level::DEBUG,
        Level::TRACE,
    ];
    let mut targets: Vec<String> = narrow
        .iter()
        .chain(wide.iter())
        .map(|(t, _)| t.to_string())
        .collect();
    targets.push("\u{0}unnamed".to_string());
    targets.iter().all(|target| {
        levels
            .iter()
            .all(|level| !narrow.would_enable(target, level) || wide.would_enable(target, level))
    })
}

/// The running digest of a trace (see [`init_tracing`]).
#[derive(Clone)]
pub struct TraceDigest(std::sync::Arc<std::sync::Mutex<TraceSink>>);

struct TraceSink {
    digest: history::Digest,
    events: usize,
    /// A line not yet complete.
    partial: Vec<u8>,
    file: Option<std::fs::File>,
}

impl TraceDigest {
    /// The digest of the trace so far and its number of lines.
    pub fn value(&self) -> (u64, usize) {
        let sink = self.0.lock().expect("trace sink");
        (sink.digest.value(), sink.events)
    }

    /// The digest of a trace file written earlier, computed as the run
    /// computed it: each line, without its newline, mixed in.
    pub fn of_text(text: &str) -> (u64, usize) {
        let mut digest = history::Digest::default();
        let mut events = 0;
        for line in text.lines() {
            digest.add(line.as_bytes());
            events += 1;
        }
        (digest.value(), events)
    }
}

impl std::io::Write for TraceDigest {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut sink = self.0.lock().expect("trace sink");
        if let Some(file) = &mut sink.file {
            file.write_all(buf)?;
        }
        let sink = &mut *sink;
        sink.partial.extend_from_slice(buf);
        let mut start = 0;
        while let Some(end) = sink.partial[start..].iter().position(|b| *b == b'\n') {
            sink.digest.add(&sink.partial[start..start + end]);
            sink.events += 1;
            start += end + 1;
        }
        sink.partial.drain(..start);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.0.lock().expect("trace sink").file {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for TraceDigest {
    type Writer = TraceDigest;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
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

#[cfg(test)]
mod tests {
    use super::{lets_through_no_more, static_filter, TRACE_FILTER};

    fn check(narrow: &str, wide: &str, expect: bool) {
        let got = lets_through_no_more(&static_filter(narrow), &static_filter(wide));
        assert_eq!(got, expect, "{narrow:?} within {wide:?}");
    }

    #[test]
    fn stderr_filters_within_the_trace() {
        check("warn,openraft=off", TRACE_FILTER, true);
        check("error", TRACE_FILTER, true);
        check(TRACE_FILTER, TRACE_FILTER, true);
        check("debug", TRACE_FILTER, false);
        check("warn,openraft=info", TRACE_FILTER, false);
        check("warn,openraft::core=info", TRACE_FILTER, false);
        check("off,shoal=debug", TRACE_FILTER, false);
        check("warn", "info,shoal::server=error", false);
    }
}
