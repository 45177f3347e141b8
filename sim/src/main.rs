//! `shoal-sim`: runs scenarios over ranges of seeds, each seed in its own
//! process, and reports failures with the command that replays them.
//!
//! Why one process per seed: tokio's unbiased `select!` draws from a
//! process-global counter, so a seed that shares a process with other seeds
//! would not replay on its own.

#[cfg(not(madsim))]
fn main() {
    eprintln!("shoal-sim runs only in simulation builds: use `cargo sim ...`");
    std::process::exit(2);
}

#[cfg(madsim)]
fn main() -> std::process::ExitCode {
    runner::main()
}

#[cfg(madsim)]
mod runner {
    use std::ops::RangeInclusive;
    use std::path::{Path, PathBuf};
    use std::process::{Command, ExitCode};
    use std::time::{Duration, Instant};

    use anyhow::{bail, Context};
    use clap::{Parser, Subcommand};
    use shoal_sim::process::SeedProcess;
    use shoal_sim::scenario::Scenario;

    #[derive(Debug, Parser)]
    #[command(about = "Run Shoal simulation scenarios over seeds")]
    struct Args {
        #[command(subcommand)]
        command: Cmd,
    }

    #[derive(Debug, Subcommand)]
    enum Cmd {
        /// Run a scenario for a range of seeds, one process per seed.
        Run {
            /// The scenario file.
            scenario: PathBuf,
            /// Seeds: `N`, `A..B` (B excluded) or `A..=B`.
            #[arg(long, default_value = "1..=10")]
            seeds: String,
            /// Seeds run at once.
            #[arg(long, default_value_t = 2)]
            jobs: usize,
            /// Run every seed twice, in two processes, and require identical
            /// histories and traces.
            #[arg(long)]
            check_determinism: bool,
            /// Switch on a planted bug (repeatable): the sweep is then
            /// expected to fail. Names: see `PlantedBug` in src/runtime.rs.
            #[arg(long)]
            plant: Vec<String>,
            /// Succeed only if some seed fails (for planted-bug self-tests).
            #[arg(long)]
            expect_failure: bool,
        },
        /// Run one seed in this process and print its full report.
        Seed {
            /// The scenario file.
            scenario: PathBuf,
            /// The seed.
            #[arg(long)]
            seed: u64,
        },
    }

    pub fn main() -> ExitCode {
        let args = Args::parse();
        let result = match args.command {
            Cmd::Run {
                scenario,
                seeds,
                jobs,
                check_determinism,
                plant,
                expect_failure,
            } => plant_bugs(&plant).and_then(|()| {
                let passed = sweep(&scenario, &seeds, jobs, check_determinism)?;
                if expect_failure {
                    println!(
                        "{}",
                        if passed {
                            "expected a failure: none found"
                        } else {
                            "failure found, as expected"
                        }
                    );
                    return Ok(!passed);
                }
                Ok(passed)
            }),
            Cmd::Seed { scenario, seed } => one_seed(&scenario, seed),
        };
        shoal_sim::exit_code(result)
    }

    /// Log lines shown for a failed seed (the replay shows them all).
    const LOG_LINES_SHOWN: usize = 8;

    /// Switches on planted bugs for the seed processes this runner starts.
    fn plant_bugs(names: &[String]) -> anyhow::Result<()> {
        for name in names {
            if shoal::runtime::PlantedBug::from_name(name).is_none() {
                let known: Vec<&str> = shoal::runtime::PlantedBug::ALL
                    .iter()
                    .map(|b| b.name())
                    .collect();
                bail!("unknown planted bug {name:?}; known: {}", known.join(", "));
            }
        }
        if !names.is_empty() {
            // Read by the seed processes, which inherit the environment.
            std::env::set_var("SHOAL_PLANTED_BUGS", names.join(","));
            println!("planted bugs: {}", names.join(", "));
        }
        Ok(())
    }

    /// Parses `N`, `A..B` or `A..=B`.
    fn parse_seeds(text: &str) -> anyhow::Result<RangeInclusive<u64>> {
        let number = |s: &str| {
            s.trim()
                .parse::<u64>()
                .with_context(|| format!("bad seed {s:?}"))
        };
        let range = if let Some((a, b)) = text.split_once("..=") {
            number(a)?..=number(b)?
        } else if let Some((a, b)) = text.split_once("..") {
            let end = number(b)?;
            if end == 0 {
                bail!("empty seed range {text:?}");
            }
            number(a)?..=end - 1
        } else {
            let n = number(text)?;
            n..=n
        };
        if range.is_empty() {
            bail!("empty seed range {text:?}");
        }
        Ok(range)
    }

    /// The command that runs one seed in a child process.
    fn seed_command(scenario: &Path, seed: u64) -> anyhow::Result<Command> {
        let exe = std::env::current_exe().context("locating shoal-sim")?;
        let mut command = Command::new(exe);
        command
            .arg("seed")
            .arg(scenario)
            .arg("--seed")
            .arg(seed.to_string());
        Ok(command)
    }

    /// What must be equal between two runs of a seed.
    fn digests(run: &SeedProcess) -> Option<(&str, &str)> {
        run.result
            .as_ref()
            .map(|r| (r.digest.as_str(), r.trace.as_str()))
    }

    fn sweep(scenario: &Path, seeds: &str, jobs: usize, twice: bool) -> anyhow::Result<bool> {
        let loaded = Scenario::load(scenario)?;
        let seeds = parse_seeds(seeds)?;
        let jobs = jobs.max(1);
        let total = seeds.clone().count();
        let started = Instant::now();
        let runs_per_seed = if twice { 2 } else { 1 };
        println!(
            "scenario {} ({}): {} seeds{}, {} at a time",
            loaded.name,
            scenario.display(),
            total,
            if twice { " twice each" } else { "" },
            jobs
        );
        let results = run_seeds(scenario, seeds, runs_per_seed, jobs, started)?;

        let mut failed = Vec::new();
        let mut nondeterministic = Vec::new();
        for pair in results.chunks(runs_per_seed) {
            let (seed, _, first) = &pair[0];
            if let Some((seed, _, failing)) = pair.iter().find(|(_, _, r)| !r.passed()) {
                failed.push((*seed, failing));
            } else if pair.iter().any(|(_, _, r)| digests(r) != digests(first)) {
                nondeterministic.push(*seed);
            }
        }
        let wall = started.elapsed().as_secs_f64();
        let finished = results.iter().filter_map(|(_, _, r)| r.result.as_ref());
        let simulated: f64 = finished.clone().map(|r| r.simulated_s).sum();
        let acked: u64 = finished.map(|r| r.acked).sum();
        for (seed, result) in &failed {
            print_failure(scenario, *seed, result);
        }
        for seed in &nondeterministic {
            println!(
                "\nseed {seed}: two runs produced different histories or traces (non-determinism); \
                 see where they part: cargo replay --check-determinism {} --seed {seed}",
                scenario.display()
            );
        }
        println!(
            "\n{}: {} passed, {} failed{} of {} seeds; {:.1} simulated s in {:.1} wall s ({:.1}x); {} operations acknowledged",
            loaded.name,
            total - failed.len() - nondeterministic.len(),
            failed.len(),
            if twice { format!(", {} non-deterministic", nondeterministic.len()) } else { String::new() },
            total,
            simulated,
            wall,
            if wall > 0.0 { simulated / wall } else { 0.0 },
            acked
        );
        Ok(failed.is_empty() && nondeterministic.is_empty())
    }

    /// Runs every seed `runs_per_seed` times, `jobs` child processes at a
    /// time, reporting failures as they come and progress every ten
    /// seconds; the runs in order of seed, then run.
    fn run_seeds(
        scenario: &Path,
        seeds: RangeInclusive<u64>,
        runs_per_seed: usize,
        jobs: usize,
        started: Instant,
    ) -> anyhow::Result<Vec<(u64, usize, SeedProcess)>> {
        let total = seeds.clone().count();
        let mut pending: Vec<(u64, usize)> = seeds
            .flat_map(|s| (0..runs_per_seed).map(move |r| (s, r)))
            .rev()
            .collect();
        // Each seed process is run by a thread of its own, which also drains
        // its output as it comes: a child blocked on a full pipe would never
        // finish.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut running = 0;
        let mut results: Vec<(u64, usize, SeedProcess)> = Vec::new();
        let mut last_progress = Instant::now();
        while !pending.is_empty() || running > 0 {
            while running < jobs {
                let Some((seed, run)) = pending.pop() else {
                    break;
                };
                let command = seed_command(scenario, seed)?;
                let done = done_tx.clone();
                std::thread::spawn(move || {
                    let _ = done.send((seed, run, SeedProcess::run(command)));
                });
                running += 1;
            }
            match done_rx.recv_timeout(Duration::from_secs(1)) {
                Ok((seed, run, result)) => {
                    running -= 1;
                    let result = result.context("running a seed process")?;
                    if !result.passed() {
                        println!("seed {seed}: FAILED");
                    }
                    results.push((seed, run, result));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(e) => bail!("seed workers vanished: {e}"),
            }
            if last_progress.elapsed() >= Duration::from_secs(10) {
                println!(
                    "  ... {}/{} runs done, {:.0}s",
                    results.len(),
                    total * runs_per_seed,
                    started.elapsed().as_secs_f64()
                );
                last_progress = Instant::now();
            }
        }
        results.sort_by_key(|(seed, run, _)| (*seed, *run));
        Ok(results)
    }

    /// Shows a failed seed: its report, digests, last log lines and the
    /// command that replays it.
    fn print_failure(scenario: &Path, seed: u64, result: &SeedProcess) {
        println!("\n=== seed {seed} failed ===");
        for line in result.stdout.lines().filter(|l| !l.starts_with("RESULT ")) {
            println!("  {line}");
        }
        if let Some(r) = &result.result {
            println!("  digests: history {}, trace {}", r.digest, r.trace);
        }
        let log: Vec<&str> = result.stderr.lines().collect();
        if !log.is_empty() {
            println!("  last log lines:");
            for line in &log[log.len().saturating_sub(LOG_LINES_SHOWN)..] {
                println!("    {line}");
            }
        }
        println!("replay: {}", shoal_sim::run::replay_command(scenario, seed));
    }

    fn one_seed(scenario_path: &Path, seed: u64) -> anyhow::Result<bool> {
        let scenario = Scenario::load(scenario_path)?;
        let trace = shoal_sim::init_tracing(Some("warn,openraft=off"), None)?;
        let report = shoal_sim::run::run_seed(&scenario, seed);
        report.print(&scenario, seed, trace.value());
        Ok(report.passed())
    }
}
