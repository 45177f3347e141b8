//! `shoal-replay`: reruns one seed of a scenario and explains it.
//!
//! `cargo replay scenarios/leader-kill.toml --seed 7` reproduces the run the
//! seed runner reported: same history, same verdict, same digests. It writes,
//! under `target/replay/`:
//! - `NAME-SEED.trace`: one line per event (simulated time, node, component,
//!   event), whose digest it prints;
//! - `NAME-SEED.txt` and `NAME-SEED.html`: the history as a plain-text
//!   summary and as a timeline for a browser, blamed operations marked;
//! - `NAME-SEED.schedule.toml`: the scenario as this seed ran it, with the
//!   faults the nemesis applied written out as a schedule; running that file
//!   replays those faults instead of drawing them.
//!
//! `--export edn|json` (repeatable, or comma-separated) also writes the
//! client history for checkers outside Shoal, in Jepsen's form (see
//! `shoal_sim::export`): `NAME-SEED.history.edn` and
//! `NAME-SEED.history.jsonl`.
//!
//! `--check-determinism` runs the seed twice, in two processes, and compares
//! the traces; on a mismatch it shows the first event that differs, with
//! context from both runs.
//!
//! `--shrink` searches for a smaller run that still fails the same checker
//! (fewer faults, clients, operations, a shorter run) and writes it as
//! `NAME-SEED.min.toml`, which `cargo replay` reruns with the same seed.

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
    use shoal_sim::process::SeedProcess;
    use shoal_sim::run::replay_command;
    use shoal_sim::scenario::Scenario;
    use shoal_sim::TraceDigest;

    /// Replay one seed of a Shoal scenario.
    #[derive(Debug, Parser)]
    struct Args {
        /// The scenario file.
        scenario: PathBuf,
        /// The seed to replay.
        #[arg(long)]
        seed: u64,
        /// Directory for the trace, views and schedule.
        #[arg(long, default_value = "target/replay")]
        out: PathBuf,
        /// Where to write the trace (default: OUT/NAME-SEED.trace).
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Run the seed twice in separate processes and compare the traces.
        #[arg(long)]
        check_determinism: bool,
        /// Search for a smaller run that fails the same checker.
        #[arg(long)]
        shrink: bool,
        /// Most runs the shrinking search makes.
        #[arg(long, default_value_t = 300)]
        shrink_runs: usize,
        /// Runs the shrinking search makes at once.
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        /// Also write the client history in Jepsen's form, as EDN
        /// (`NAME-SEED.history.edn`) and/or JSON lines
        /// (`NAME-SEED.history.jsonl`).
        #[arg(long, value_enum, value_delimiter = ',')]
        export: Vec<Export>,
        /// Write only the schedule and the result (no trace file, no views).
        #[arg(long, hide = true)]
        bare: bool,
    }

    /// The exported history forms.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
    enum Export {
        /// EDN, for Knossos and Elle.
        Edn,
        /// JSON lines, for porcupine and the rest.
        Json,
    }

    /// Lines of context shown around the first divergent event.
    const CONTEXT_LINES: usize = 3;

    pub fn main() -> ExitCode {
        let args = Args::parse();
        let result = if args.check_determinism {
            check(&args)
        } else if args.shrink {
            shrink::shrink(&args)
        } else {
            replay(&args)
        };
        shoal_sim::exit_code(result)
    }

    /// `OUT/NAME-SEED.EXTENSION`.
    fn output(args: &Args, scenario: &Scenario, extension: &str) -> PathBuf {
        args.out
            .join(format!("{}-{}.{extension}", scenario.name, args.seed))
    }

    fn trace_path(args: &Args, scenario: &Scenario) -> PathBuf {
        args.trace
            .clone()
            .unwrap_or_else(|| output(args, scenario, "trace"))
    }

    fn write(path: &Path, text: &str) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }

    fn replay(args: &Args) -> anyhow::Result<bool> {
        let scenario = Scenario::load(&args.scenario)?;
        let trace = trace_path(args, &scenario);
        let digest = shoal_sim::init_tracing(None, (!args.bare).then_some(trace.as_path()))
            .context("creating the trace file")?;
        let report = shoal_sim::run::run_seed(&scenario, args.seed);

        let recorded = scenario
            .for_seed(args.seed)
            .0
            .with_schedule(report.schedule.clone());
        let schedule = output(args, &scenario, "schedule.toml");
        write(
            &schedule,
            &format!(
                "# {} at seed {} with the faults it applied as a schedule.\n# Replay: {}\n\n{}",
                args.scenario.display(),
                args.seed,
                replay_command(&schedule, args.seed),
                toml::to_string(&recorded).context("writing the schedule")?
            ),
        )?;
        if !args.bare {
            let text = output(args, &scenario, "txt");
            let html = output(args, &scenario, "html");
            write(
                &text,
                &shoal_sim::view::text(&report, &scenario.name, args.seed),
            )?;
            write(
                &html,
                &shoal_sim::view::html(&report, &scenario.name, args.seed),
            )?;
            let (value, events) = digest.value();
            println!(
                "trace: {} ({events} events), digest {value:016x}",
                trace.display()
            );
            println!("history: {} and {}", text.display(), html.display());
            println!("fault schedule: {}", schedule.display());
        }
        export(args, &scenario, &report)?;
        report.print(&scenario, args.seed, digest.value());
        Ok(report.passed())
    }

    /// Writes the history in the forms `--export` asks for.
    fn export(
        args: &Args,
        scenario: &Scenario,
        report: &shoal_sim::run::Report,
    ) -> anyhow::Result<()> {
        if args.export.is_empty() {
            return Ok(());
        }
        let events = shoal_sim::export::events(&report.history);
        for form in &args.export {
            let (extension, text) = match form {
                Export::Edn => ("history.edn", shoal_sim::export::edn(&events)),
                Export::Json => ("history.jsonl", shoal_sim::export::json_lines(&events)),
            };
            let path = output(args, scenario, extension);
            write(&path, &text)?;
            println!(
                "history for outside checkers: {} ({} events)",
                path.display(),
                events.len()
            );
        }
        Ok(())
    }

    fn check(args: &Args) -> anyhow::Result<bool> {
        let scenario = Scenario::load(&args.scenario)?;
        let base = trace_path(args, &scenario);
        let runs = [
            base.with_extension("trace.1"),
            base.with_extension("trace.2"),
        ];
        for trace in &runs {
            let mut command = Command::new(std::env::current_exe()?);
            command
                .arg(&args.scenario)
                .arg("--seed")
                .arg(args.seed.to_string())
                .arg("--out")
                .arg(&args.out)
                .arg("--trace")
                .arg(trace);
            let run = SeedProcess::run(command).context("running the seed")?;
            if run.result.is_none() {
                eprint!("{}", run.stderr);
                bail!(
                    "the replay of seed {} did not finish ({})",
                    args.seed,
                    run.status
                );
            }
        }
        let first = std::fs::read_to_string(&runs[0])?;
        let second = std::fs::read_to_string(&runs[1])?;
        let (a, b): (Vec<&str>, Vec<&str>) = (first.lines().collect(), second.lines().collect());
        let Some(at) = (0..a.len().max(b.len())).find(|i| a.get(*i) != b.get(*i)) else {
            let (digest, events) = TraceDigest::of_text(&first);
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

    mod shrink {
        //! The shrinking search's shell: runs the candidates
        //! [`shoal_sim::shrink`] proposes, each in a fresh process, and keeps
        //! the first that still fails the same checker.

        use std::path::{Path, PathBuf};
        use std::process::Command;

        use anyhow::{bail, Context};
        use shoal_sim::process::SeedProcess;
        use shoal_sim::run::ResultLine;
        use shoal_sim::scenario::Scenario;
        use shoal_sim::shrink::{candidates, fails_the_same, size, Candidate};

        use super::{output, replay_command, write, Args};

        /// A run tried by the search.
        struct Tried {
            result: ResultLine,
            /// The scenario as it ran, with its applied faults as schedule.
            recorded: Scenario,
        }

        /// Runs `scenario` at the seed in a child process; `None` if the run
        /// did not finish (it panicked or ran out of simulated time).
        fn run(args: &Args, scenario: &Scenario, dir: &Path) -> anyhow::Result<Option<Tried>> {
            let file = dir.join("scenario.toml");
            write(&file, &toml::to_string(scenario)?)?;
            let mut command = Command::new(std::env::current_exe()?);
            command
                .arg(&file)
                .arg("--seed")
                .arg(args.seed.to_string())
                .arg("--out")
                .arg(dir)
                .arg("--bare");
            let run = SeedProcess::run(command).context("running a candidate")?;
            let Some(result) = run.result else {
                return Ok(None);
            };
            let recorded = Scenario::load(
                &dir.join(format!("{}-{}.schedule.toml", scenario.name, args.seed)),
            )?;
            Ok(Some(Tried { result, recorded }))
        }

        /// Runs candidates `jobs` at a time; the first (in order) that fails
        /// `checker`, if any.
        fn first_failing(
            args: &Args,
            candidates: &[Candidate],
            checker: &str,
            work: &Path,
            runs: &mut usize,
        ) -> anyhow::Result<Option<(usize, Tried)>> {
            for (b, batch) in candidates.chunks(args.jobs.max(1)).enumerate() {
                if *runs >= args.shrink_runs {
                    return Ok(None);
                }
                let dirs: Vec<PathBuf> = (0..batch.len())
                    .map(|i| work.join(format!("run-{}", *runs + i)))
                    .collect();
                *runs += batch.len();
                let tried: Vec<anyhow::Result<Option<Tried>>> = std::thread::scope(|scope| {
                    let handles: Vec<_> = batch
                        .iter()
                        .zip(&dirs)
                        .map(|(c, dir)| scope.spawn(move || run(args, &c.scenario, dir)))
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("candidate thread"))
                        .collect()
                });
                for (i, (candidate, tried)) in batch.iter().zip(tried).enumerate() {
                    let what = &candidate.what;
                    let Some(tried) = tried? else {
                        println!("  {what:<44} did not finish");
                        continue;
                    };
                    let fails = fails_the_same(&tried.result, checker);
                    println!(
                        "  {:<44} {}",
                        what,
                        if fails {
                            "still fails: kept"
                        } else {
                            "passes or fails otherwise"
                        }
                    );
                    if fails {
                        return Ok(Some((b * args.jobs.max(1) + i, tried)));
                    }
                }
            }
            Ok(None)
        }

        /// Where the search starts: the failing run, the checker it fails,
        /// and the scenario to simplify with its result.
        struct Start {
            original: Tried,
            checker: String,
            best: Scenario,
            best_result: ResultLine,
        }

        /// Runs the seed as given, then its recorded schedule in place of
        /// the drawn faults: the schedule is simplified if it fails the same
        /// way, else the scenario with its faults drawn from the seed.
        fn start(
            args: &Args,
            scenario: &Scenario,
            work: &Path,
            runs: &mut usize,
        ) -> anyhow::Result<Start> {
            let Some(original) = run(args, scenario, &work.join("original"))? else {
                bail!(
                    "seed {} did not finish (see `cargo replay {} --seed {}`): nothing to compare a smaller run with",
                    args.seed,
                    args.scenario.display(),
                    args.seed
                );
            };
            *runs += 1;
            let Some(checker) = original.result.checkers.first().cloned() else {
                bail!("seed {} passes: there is no failure to shrink", args.seed);
            };
            let mut best = original.recorded.clone();
            println!(
                "the run fails [{checker}] with {}",
                size(&best, &original.result)
            );
            // The recorded schedule replayed in place of the drawn faults
            // must fail the same way before anything is removed from it.
            let replayed = run(args, &best, &work.join("recorded"))?;
            *runs += 1;
            let replayed = replayed.map(|r| r.result);
            let best_result =
                if let Some(r) = replayed.clone().filter(|r| fails_the_same(r, &checker)) {
                    println!("replaying its recorded schedule fails the same way; simplifying:");
                    r
                } else {
                    // Replayed at the recorded times, the same faults miss:
                    // the failure hangs on the run's exact timing, which the
                    // drawing of faults is part of. Shrink the drawn faults.
                    println!(
                    "replaying its recorded schedule does not fail the same way (it gives {:?}); \
                     simplifying the scenario with its faults drawn from the seed:",
                    replayed.map(|r| r.checkers)
                );
                    best = scenario.for_seed(args.seed).0;
                    best.swarm = false;
                    original.result.clone()
                };
            Ok(Start {
                original,
                checker,
                best,
                best_result,
            })
        }

        pub fn shrink(args: &Args) -> anyhow::Result<bool> {
            let scenario = Scenario::load(&args.scenario)?;
            let work = args
                .out
                .join(format!("shrink-{}-{}", scenario.name, args.seed));
            if work.exists() {
                std::fs::remove_dir_all(&work)?;
            }
            let mut runs = 0;
            println!(
                "shrinking {} at seed {}",
                args.scenario.display(),
                args.seed
            );
            let Start {
                original,
                checker,
                mut best,
                mut best_result,
            } = start(args, &scenario, &work, &mut runs)?;
            while runs < args.shrink_runs {
                let candidates = candidates(&best);
                match first_failing(args, &candidates, &checker, &work, &mut runs)? {
                    Some((index, tried)) => {
                        best = candidates[index].scenario.clone();
                        best_result = tried.result;
                    }
                    None => break,
                }
            }
            let minimal = output(args, &scenario, "min.toml");
            best.name = format!("{}-min", scenario.name);
            best.description = format!(
                "{} at seed {}, shrunk: fails [{checker}] with {} (originally {}).",
                args.scenario.display(),
                args.seed,
                size(&best, &best_result),
                size(&original.recorded, &original.result),
            );
            write(
                &minimal,
                &format!(
                    "# Replay: {}\n\n{}",
                    replay_command(&minimal, args.seed),
                    toml::to_string(&best)?
                ),
            )?;
            println!(
                "\nshrunk in {runs} runs: [{checker}] still fails with {}\n  (originally {})",
                size(&best, &best_result),
                size(&original.recorded, &original.result)
            );
            println!("written: {}", minimal.display());
            println!("replay: {}", replay_command(&minimal, args.seed));
            Ok(true)
        }
    }
}
