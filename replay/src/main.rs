//! `shoal-replay`: reruns one seed of a scenario in this process and shows
//! what happened.
//!
//! `cargo replay scenarios/leader-kill.toml --seed 7` reproduces the run the
//! seed runner reported: same history, same verdict, same digest. It writes
//! the run's trace (one line per event: simulated time, node, component,
//! event) to a file and prints the file's digest.
//!
//! `cargo replay --check-determinism scenarios/leader-kill.toml --seed 7` runs
//! the seed twice, in two processes, and compares the traces; on a mismatch
//! it shows the first event that differs, with context from both runs.

#[cfg(not(madsim))]
fn main() {
    eprintln!("shoal-replay runs only in simulation builds: use `cargo replay ...`");
    std::process::exit(2);
}

#[cfg(madsim)]
fn main() -> std::process::ExitCode {
    replay::main()
}

#[cfg(madsim)]
mod replay {
    use std::path::{Path, PathBuf};
    use std::process::{Command, ExitCode};

    use anyhow::{bail, Context};
    use clap::Parser;
    use shoal_sim::history::Digest;
    use shoal_sim::scenario::Scenario;

    /// Replay one seed of a Shoal scenario.
    #[derive(Debug, Parser)]
    struct Args {
        /// The scenario file.
        scenario: PathBuf,
        /// The seed to replay.
        #[arg(long)]
        seed: u64,
        /// Where to write the trace (default: target/replay/NAME-SEED.trace).
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Run the seed twice in separate processes and compare the traces.
        #[arg(long)]
        check_determinism: bool,
    }

    /// Lines of context shown around the first divergent event.
    const CONTEXT_LINES: usize = 3;

    pub fn main() -> ExitCode {
        let args = Args::parse();
        let result = if args.check_determinism {
            check(&args)
        } else {
            replay(&args)
        };
        match result {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        }
    }

    fn trace_path(args: &Args, scenario: &Scenario) -> PathBuf {
        args.trace.clone().unwrap_or_else(|| {
            PathBuf::from(format!(
                "target/replay/{}-{}.trace",
                scenario.name, args.seed
            ))
        })
    }

    fn digest_of(path: &Path) -> anyhow::Result<(u64, usize)> {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let mut digest = Digest::default();
        digest.add(&text);
        Ok((
            digest.value(),
            text.split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .count(),
        ))
    }

    fn replay(args: &Args) -> anyhow::Result<bool> {
        let scenario = Scenario::load(&args.scenario)?;
        let trace = trace_path(args, &scenario);
        shoal_sim::init_trace("info,openraft=warn", &trace).context("creating the trace file")?;
        let report = shoal_sim::run::run_seed(&scenario, args.seed);
        report.print(&scenario, args.seed);
        let (digest, events) = digest_of(&trace)?;
        println!(
            "trace: {} ({events} events), digest {digest:016x}",
            trace.display()
        );
        Ok(report.passed())
    }

    fn check(args: &Args) -> anyhow::Result<bool> {
        let scenario = Scenario::load(&args.scenario)?;
        let base = trace_path(args, &scenario);
        let runs = [
            base.with_extension("trace.1"),
            base.with_extension("trace.2"),
        ];
        for trace in &runs {
            let status = Command::new(std::env::current_exe()?)
                .arg(&args.scenario)
                .arg("--seed")
                .arg(args.seed.to_string())
                .arg("--trace")
                .arg(trace)
                .stdout(std::process::Stdio::null())
                .status()
                .context("running the seed")?;
            if status.code().is_none_or(|c| c > 1) {
                bail!("the replay of seed {} did not finish ({status})", args.seed);
            }
        }
        let first = std::fs::read_to_string(&runs[0])?;
        let second = std::fs::read_to_string(&runs[1])?;
        let (a, b): (Vec<&str>, Vec<&str>) = (first.lines().collect(), second.lines().collect());
        let Some(at) = (0..a.len().max(b.len())).find(|i| a.get(*i) != b.get(*i)) else {
            let (digest, events) = digest_of(&runs[0])?;
            println!("seed {}: deterministic: two runs, identical traces ({events} events, digest {digest:016x})", args.seed);
            return Ok(true);
        };
        println!(
            "seed {}: NOT deterministic: the traces differ from event {} on",
            args.seed,
            at + 1
        );
        for (name, lines) in [("first run", &a), ("second run", &b)] {
            println!("--- {name} ---");
            let from = at.saturating_sub(CONTEXT_LINES);
            for (i, line) in lines
                .iter()
                .enumerate()
                .skip(from)
                .take(CONTEXT_LINES * 2 + 1)
            {
                println!("{} {:>6}: {line}", if i == at { ">" } else { " " }, i + 1);
            }
        }
        Ok(false)
    }
}
