//! The bounded sweep `ci/mutants.sh` runs against every mutant: a few seeds
//! of the scenarios that exercise storage, shard moves and the read and
//! write paths, each seed in its own `shoal-sim` process, stopping at the
//! first seed that fails. It takes about 40 s, too long for every
//! `cargo simtest`, so it does nothing unless `SHOAL_MUTANT_SWEEP` is set
//! (the script sets it).
#![cfg(madsim)]

use std::path::Path;
use std::process::Command;

use shoal_sim::process::SeedProcess;
use shoal_sim::run::replay_command;

/// Scenarios (files in `scenarios/`) and how many seeds of each, from 1:
/// the quick ones first, so that a caught mutant fails fast.
const SWEEP: &[(&str, u64)] = &[
    ("register-leader-kill", 3),
    ("leader-isolation", 3),
    ("snapshot-restarts", 5),
    ("crash-majority", 5),
    ("sharding", 3),
    ("disk-faults", 3),
    ("snapshot-catchup", 2),
    ("routing-nodes", 2),
    ("controller-failures", 2),
    ("throughput", 1),
];

/// Lines of a failed seed's report and log shown (the replay shows all).
const LINES_SHOWN: usize = 20;

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LINES_SHOWN)..].join("\n")
}

#[test]
fn scenarios_pass_their_seeds() {
    if std::env::var_os("SHOAL_MUTANT_SWEEP").is_none() {
        eprintln!("skipped: set SHOAL_MUTANT_SWEEP=1 to run the mutant sweep");
        return;
    }
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    for &(name, seeds) in SWEEP {
        let scenario = scenarios.join(format!("{name}.toml"));
        for seed in 1..=seeds {
            let mut command = Command::new(env!("CARGO_BIN_EXE_shoal-sim"));
            command
                .arg("seed")
                .arg(&scenario)
                .arg(format!("--seed={seed}"))
                .env_remove("RUST_LOG")
                .env_remove("SHOAL_PLANTED_BUGS")
                // A debug build takes seconds to print a backtrace.
                .env_remove("RUST_BACKTRACE");
            let run = SeedProcess::run(command).unwrap();
            assert!(
                run.passed(),
                "{name} seed {seed} failed ({}); replay: {}\n{}\n{}",
                run.status,
                replay_command(&scenario, seed),
                tail(&run.stdout),
                tail(&run.stderr)
            );
        }
        eprintln!("{name}: seeds 1..={seeds} passed");
    }
}
