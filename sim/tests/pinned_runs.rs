//! Pinned runs: the history summary and the digests (history and trace) of
//! small fixed-seed runs, kept as insta snapshots. Any change of behaviour,
//! intended or not, and any loss of determinism shows up here as a diff to
//! review; accept an intended one with `cargo insta review` (or
//! `INSTA_UPDATE=always cargo simtest -p shoal-sim --test pinned_runs`).
//!
//! Each run is its own process, as every seed must be (see the seed
//! runner's docs).
#![cfg(madsim)]

use std::process::Command;

/// Runs `scenario` (TOML text) at `seed` through `shoal-sim seed` and
/// returns its report: the plain-text history summary and the RESULT line.
fn run(name: &str, scenario: &str, seed: u64) -> String {
    let dir = std::env::temp_dir().join(format!("shoal-pinned-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, scenario).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_shoal-sim"))
        .arg("seed")
        .arg(&path)
        .arg("--seed")
        .arg(seed.to_string())
        .env_remove("RUST_LOG")
        .env_remove("SHOAL_PLANTED_BUGS")
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let report = String::from_utf8(output.stdout).unwrap();
    assert!(
        report.contains("RESULT verdict=pass"),
        "{name} seed {seed} failed:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    report
}

#[test]
fn register_with_a_leader_kill() {
    let report = run(
        "register-kill",
        r#"
        name = "pinned-register-kill"
        [cluster]
        replicas = 3
        [workload]
        kind = "register"
        clients = 3
        keys = 4
        ops_per_client = 30
        [workload.mix]
        get = 40
        put = 25
        cas = 20
        delete = 5
        scan = 10
        [[faults.kill]]
        target = "leader"
        after_acks = 30
        down_ms = 1500
        "#,
        1,
    );
    insta::assert_snapshot!(report);
}

#[test]
fn sharded_writes_with_a_move_and_a_partition() {
    let report = run(
        "sharded",
        r#"
        name = "pinned-sharded"
        [cluster]
        replicas = 3
        groups = 2
        shard_count = 8
        [workload]
        clients = 2
        keys = 60
        [[faults.membership]]
        action = "move"
        after_acks = 20
        [[faults.partition]]
        kind = "halves"
        after_acks = 35
        duration_ms = 800
        "#,
        2,
    );
    insta::assert_snapshot!(report);
}

#[test]
fn a_recorded_schedule_with_disk_faults() {
    let report = run(
        "schedule",
        r#"
        name = "pinned-schedule"
        [cluster]
        replicas = 3
        [workload]
        kind = "list-append"
        clients = 2
        keys = 2
        duration_ms = 3000
        [faults.disk]
        torn_write_rate = 1.0
        [[faults.schedule]]
        at_ms = 800
        fault = { action = "kill", replicas = [1, 2], down_ms = 400 }
        [[faults.schedule]]
        at_ms = 1500
        fault = { action = "partition", shape = "one-way", cuts = [{ from = [2, 3], to = [1] }], duration_ms = 500 }
        [[faults.schedule]]
        at_ms = 2200
        fault = { action = "network", packet_loss_rate = 0.1, latency_ms_min = 5, latency_ms_max = 40, duration_ms = 300 }
        "#,
        3,
    );
    insta::assert_snapshot!(report);
}
