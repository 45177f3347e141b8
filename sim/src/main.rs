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
    use std::path::{Path, PathBuf};
    use std::process::{Command, ExitCode};
    use std::time::{Duration, Instant};

    use anyhow::{bail, Context};
    use clap::{Parser, Subcommand};
    use shoal_sim::process::SeedProcess;
    use shoal_sim::scenario::Scenario;
    use shoal_sim::sweep::progress::Progress;
    use shoal_sim::sweep::report::{merge, write_junit};
    use shoal_sim::sweep::{parse_seeds, seeds_text, Partition, SeedSummary, Summary, Verdict};

    #[derive(Debug, Parser)]
    #[command(about = "Run Shoal simulation scenarios over seeds")]
    struct Args {
        #[command(subcommand)]
        command: Cmd,
    }

    #[derive(Debug, Subcommand)]
    enum Cmd {
        /// Run a scenario for a range of seeds, one process per seed.
        Run(RunArgs),
        /// Run one seed in this process and print its full report.
        Seed {
            /// The scenario file.
            scenario: PathBuf,
            /// The seed.
            #[arg(long)]
            seed: u64,
        },
        /// Merge the `--json` summaries of a sweep's slices (or of several
        /// sweeps): one summary per scenario, checked for overlapping and
        /// missing slices. Fails if any seed failed.
        Merge {
            /// Summaries written by `run --json`.
            #[arg(required = true)]
            summaries: Vec<PathBuf>,
            /// Write the merged summaries' JUnit XML here.
            #[arg(long)]
            junit: Option<PathBuf>,
            /// Write the merged summary here as JSON (one scenario only).
            #[arg(long)]
            json: Option<PathBuf>,
        },
    }

    #[derive(Debug, clap::Args)]
    struct RunArgs {
        /// The scenario file.
        scenario: PathBuf,
        /// Seeds: `N`, `A..B` (B excluded) or `A..=B`.
        #[arg(long, default_value = "1..=10")]
        seeds: String,
        /// Run only the K-th of N disjoint slices of the seed range (`K/N`,
        /// 1 <= K <= N), so that N machines together run it exactly once.
        #[arg(long)]
        partition: Option<Partition>,
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
        /// Require a rare situation to be reached by some seed, on top of
        /// the scenario's `checks.must_reach` (repeatable; names: see
        /// `Situation` in src/runtime.rs).
        #[arg(long)]
        must_reach: Vec<String>,
        /// Write a JUnit XML report here: one test case per seed.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Write a JSON summary here: every seed's verdict, digests and,
        /// for failures, the replay command (`merge` combines them).
        #[arg(long)]
        json: Option<PathBuf>,
    }

    pub fn main() -> ExitCode {
        let args = Args::parse();
        let result = match args.command {
            Cmd::Run(run) => plant_bugs(&run.plant).and_then(|()| {
                let summary = sweep(&run)?;
                let passed = summary.passed();
                if run.expect_failure {
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
                Ok(passed && summary.unreached().is_empty())
            }),
            Cmd::Seed { scenario, seed } => one_seed(&scenario, seed),
            Cmd::Merge {
                summaries,
                junit,
                json,
            } => merge_summaries(&summaries, junit.as_deref(), json.as_deref()),
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

    /// One run of a seed: the seed, which run, its process and its wall
    /// time.
    struct Run {
        seed: u64,
        run: usize,
        process: SeedProcess,
        wall: Duration,
    }

    fn sweep(args: &RunArgs) -> anyhow::Result<Summary> {
        let scenario = args.scenario.as_path();
        let loaded = Scenario::load(scenario)?;
        let mut must_reach = loaded.checks.must_reach.clone();
        for name in &args.must_reach {
            if shoal::runtime::Situation::from_name(name).is_none() {
                bail!("unknown situation {name:?} (see `Situation` in src/runtime.rs)");
            }
            must_reach.push(name.clone());
        }
        let range = parse_seeds(&args.seeds)?;
        let seeds = match args.partition {
            Some(p) => p.slice(&range),
            None => Some(range.clone()),
        };
        let jobs = args.jobs.max(1);
        let twice = args.check_determinism;
        let total = seeds.clone().map_or(0, |s| s.count());
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
        if let Some(p) = args.partition {
            println!(
                "partition {p} of seeds {}: {}",
                seeds_text(&range),
                seeds.as_ref().map_or("no seeds".to_string(), seeds_text)
            );
        }
        let runs = match seeds {
            Some(seeds) => run_seeds(scenario, seeds.collect(), runs_per_seed, jobs)?,
            None => Vec::new(),
        };
        let summary = Summary {
            scenario: loaded.name.clone(),
            scenario_file: scenario.display().to_string(),
            seeds: seeds_text(&range),
            partitions: args.partition.iter().map(Partition::to_string).collect(),
            planted: args.plant.clone(),
            check_determinism: twice,
            must_reach,
            wall_s: started.elapsed().as_secs_f64(),
            results: runs
                .chunk_by(|a, b| a.seed == b.seed)
                .map(|runs| seed_summary(scenario, runs))
                .collect(),
        };
        report(&summary, args.junit.as_deref(), args.json.as_deref())?;
        Ok(summary)
    }

    /// Prints a sweep's failures and closing line, and writes its JUnit
    /// and JSON reports if asked.
    fn report(summary: &Summary, junit: Option<&Path>, json: Option<&Path>) -> anyhow::Result<()> {
        for result in summary.failures() {
            if result.verdict == Verdict::NonDeterministic {
                println!(
                    "\nseed {}: two runs produced different histories or traces (non-determinism); \
                     see where they part: cargo replay --check-determinism {} --seed {}",
                    result.seed, summary.scenario_file, result.seed
                );
            } else {
                println!("\n=== seed {} failed ===", result.seed);
                print!("{}", result.output.as_deref().unwrap_or(""));
                println!("replay: {}", result.replay.as_deref().unwrap_or(""));
            }
        }
        print!("\n{}", summary.reached_table());
        let unreached = summary.unreached();
        if !unreached.is_empty() {
            println!(
                "\nnever reached in {} seeds, though required: {} (grow the scenario's faults, seeds or swarm ranges)",
                summary.results.len(),
                unreached.join(", ")
            );
        }
        println!("\n{}", summary.line());
        if let Some(path) = junit {
            write_junit(path, &[summary])?;
            println!("JUnit report: {}", path.display());
        }
        if let Some(path) = json {
            summary.write_json(path)?;
            println!("JSON summary: {}", path.display());
        }
        Ok(())
    }

    /// One seed's runs (one, or two compared) as the summary shows it.
    fn seed_summary(scenario: &Path, runs: &[Run]) -> SeedSummary {
        let first = &runs[0];
        let failing = runs.iter().find(|r| !r.process.passed());
        let verdict = if failing.is_some() {
            Verdict::Fail
        } else if runs
            .iter()
            .any(|r| digests(&r.process) != digests(&first.process))
        {
            Verdict::NonDeterministic
        } else {
            Verdict::Pass
        };
        let shown = failing.unwrap_or(first);
        let result = shown.process.result.clone().unwrap_or_default();
        let failed = verdict == Verdict::Fail;
        SeedSummary {
            seed: first.seed,
            verdict,
            checkers: result.checkers,
            digest: shown.process.result.as_ref().map(|r| r.digest.clone()),
            trace: shown.process.result.as_ref().map(|r| r.trace.clone()),
            simulated_s: runs
                .iter()
                .filter_map(|r| r.process.result.as_ref())
                .map(|r| r.simulated_s)
                .sum(),
            wall_s: runs.iter().map(|r| r.wall.as_secs_f64()).sum(),
            acked: runs
                .iter()
                .filter_map(|r| r.process.result.as_ref())
                .map(|r| r.acked)
                .sum(),
            replay: match verdict {
                Verdict::Pass => None,
                Verdict::Fail => Some(shoal_sim::run::replay_command(scenario, first.seed)),
                Verdict::NonDeterministic => Some(
                    shoal_sim::run::replay_command(scenario, first.seed)
                        .replace("cargo replay ", "cargo replay --check-determinism "),
                ),
            },
            output: failed.then(|| failure_text(&shown.process)),
            reached: result.reached,
        }
    }

    /// Runs every seed `runs_per_seed` times, `jobs` child processes at a
    /// time, reporting failures as they come and progress as it goes; the
    /// runs in order of seed, then run.
    fn run_seeds(
        scenario: &Path,
        seeds: Vec<u64>,
        runs_per_seed: usize,
        jobs: usize,
    ) -> anyhow::Result<Vec<Run>> {
        let mut pending: Vec<(u64, usize)> = seeds
            .into_iter()
            .flat_map(|s| (0..runs_per_seed).map(move |r| (s, r)))
            .rev()
            .collect();
        let mut progress = Progress::new(pending.len() as u64);
        // Each seed process is run by a thread of its own, which also drains
        // its output as it comes: a child blocked on a full pipe would never
        // finish.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut running = 0;
        let mut results: Vec<Run> = Vec::new();
        let mut failures = 0;
        while !pending.is_empty() || running > 0 {
            while running < jobs {
                let Some((seed, run)) = pending.pop() else {
                    break;
                };
                let command = seed_command(scenario, seed)?;
                let done = done_tx.clone();
                std::thread::spawn(move || {
                    let started = Instant::now();
                    let process = SeedProcess::run(command);
                    let _ = done.send((seed, run, process, started.elapsed()));
                });
                running += 1;
            }
            match done_rx.recv_timeout(Duration::from_secs(1)) {
                Ok((seed, run, process, wall)) => {
                    running -= 1;
                    let process = process.context("running a seed process")?;
                    let failed = !process.passed();
                    failures += usize::from(failed);
                    progress.finished(failed.then_some(seed), failures);
                    results.push(Run {
                        seed,
                        run,
                        process,
                        wall,
                    });
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(e) => bail!("seed workers vanished: {e}"),
            }
            progress.tick();
        }
        progress.finish();
        results.sort_by_key(|r| (r.seed, r.run));
        Ok(results)
    }

    /// A failed seed's report (its RESULT line left out), digests and last
    /// log lines, indented.
    fn failure_text(result: &SeedProcess) -> String {
        let mut out = String::new();
        for line in result.stdout.lines().filter(|l| !l.starts_with("RESULT ")) {
            out += &format!("  {line}\n");
        }
        if let Some(r) = &result.result {
            out += &format!("  digests: history {}, trace {}\n", r.digest, r.trace);
        }
        let log: Vec<&str> = result.stderr.lines().collect();
        if !log.is_empty() {
            out += "  last log lines:\n";
            for line in &log[log.len().saturating_sub(LOG_LINES_SHOWN)..] {
                out += &format!("    {line}\n");
            }
        }
        out
    }

    /// `shoal-sim merge`: combines slice summaries, prints each scenario's
    /// failures and closing line, and names slices that are missing.
    fn merge_summaries(
        files: &[PathBuf],
        junit: Option<&Path>,
        json: Option<&Path>,
    ) -> anyhow::Result<bool> {
        let parts = files
            .iter()
            .map(|f| Summary::read_json(f))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let merged = merge(parts)?;
        if json.is_some() && merged.len() > 1 {
            bail!(
                "--json takes one scenario's summaries; these hold {}",
                merged.len()
            );
        }
        let mut passed = true;
        for (summary, coverage) in &merged {
            println!(
                "scenario {} ({}): seeds {}, {} slices merged{}",
                summary.scenario,
                summary.scenario_file,
                summary.seeds,
                summary.partitions.len(),
                if coverage.missing.is_empty() {
                    String::new()
                } else {
                    format!("; MISSING slices {}", coverage.missing.join(", "))
                }
            );
            report(summary, None, json)?;
            passed &=
                summary.passed() && coverage.missing.is_empty() && summary.unreached().is_empty();
        }
        if let Some(path) = junit {
            write_junit(path, &merged.iter().map(|(s, _)| s).collect::<Vec<_>>())?;
            println!("JUnit report: {}", path.display());
        }
        Ok(passed)
    }

    fn one_seed(scenario_path: &Path, seed: u64) -> anyhow::Result<bool> {
        let scenario = Scenario::load(scenario_path)?;
        let trace = shoal_sim::init_tracing(Some("warn,openraft=off"), None)?;
        let report = shoal_sim::run::run_seed(&scenario, seed);
        report.print(&scenario, seed, trace.value());
        Ok(report.passed())
    }
}
