//! `shoal-replay`: reruns one seed of a scenario in this process and shows
//! what happened, with the node, client and consensus trace on stderr.
//!
//! `cargo replay scenarios/leader-kill.toml --seed 7` reproduces the run the
//! seed runner reported: same history, same verdict, same digest.

#[cfg(not(madsim))]
fn main() {
    eprintln!("shoal-replay runs only in simulation builds: use `cargo replay ...`");
    std::process::exit(2);
}

#[cfg(madsim)]
fn main() -> std::process::ExitCode {
    use clap::Parser;

    /// Replay one seed of a Shoal scenario.
    #[derive(Debug, Parser)]
    struct Args {
        /// The scenario file.
        scenario: std::path::PathBuf,
        /// The seed to replay.
        #[arg(long)]
        seed: u64,
    }

    let args = Args::parse();
    let scenario = match shoal_sim::scenario::Scenario::load(&args.scenario) {
        Ok(scenario) => scenario,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    shoal_sim::init_logging("info,openraft=warn");
    let report = shoal_sim::run::run_seed(&scenario, args.seed);
    report.print(&scenario, args.seed);
    if report.passed() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
