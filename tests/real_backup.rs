//! Real-mode test of backups: `shoal snapshot save` while a writer keeps
//! writing, `shoal-node --restore` into a new group on new ports and data
//! directories (every write acknowledged before the save is there, the new
//! group takes writes and keeps its state across a restart), and damaged
//! files refused with the offset of the damage (a later version's, as such).
#![cfg(not(madsim))]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use support::cluster::{
    admin_client, cli, client, free_port, start_group, start_group_with, Group, TempDir,
};

/// Restarts every member of `group` without `--restore`.
fn restart_without_restore(group: &mut Group) {
    for node in &mut group.nodes {
        node.kill();
        if let Some(at) = node.args.iter().position(|a| a == "--restore") {
            node.args.drain(at..at + 2);
        }
        node.start();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_every_acknowledged_write() {
    let dir = TempDir::new("backup-load");
    let source = start_group(3);

    // A writer keeps putting keys; `acked` lists those acknowledged.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, mut client) = (acked.clone(), stop.clone(), client(&source));
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (key, value) = (format!("key-{i:06}"), format!("value-{i}"));
                client.put(key.clone(), value.clone()).await.unwrap();
                acked.lock().unwrap().push((key, value));
                i += 1;
            }
        })
    };
    while acked.lock().unwrap().len() < 300 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let file = dir.0.join("backup.snap");
    let before_save: Vec<(String, String)> = acked.lock().unwrap().clone();
    let endpoints = source.endpoints().join(",");
    let save_args = [
        "--endpoints",
        &endpoints,
        "--token-file",
        source.token_file.to_str().unwrap(),
        "snapshot",
        "save",
        file.to_str().unwrap(),
    ];
    let save_args: Vec<String> = save_args.map(String::from).to_vec();
    let saved = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = save_args.iter().map(String::as_str).collect();
        cli(&args)
    })
    .await
    .unwrap();
    let during_save = acked.lock().unwrap().len();
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let (code, summary, stderr) = saved;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        summary.contains("group:        standalone group"),
        "{summary}"
    );
    assert!(summary.contains("crc32c"), "{summary}");
    assert!(
        during_save > before_save.len(),
        "the writer wrote while the backup was taken"
    );
    assert!(!PathBuf::from(format!("{}.tmp", file.display())).exists());
    let (code, status, stderr) = cli(&["snapshot", "status", file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        status,
        summary.replacen(&format!("saved {}\n", file.display()), "", 1)
    );
    drop(source);

    // A new group of three on new ports and data directories.
    let restore_flags = vec!["--restore".to_string(), file.display().to_string()];
    let mut restored = start_group_with(3, |_| restore_flags.clone());
    let mut client = client(&restored);
    for (key, value) in &before_save {
        let found = client.get(key.clone()).await.unwrap();
        assert_eq!(found, Some(Bytes::from(value.clone())), "{key}");
    }
    client.put("after-restore", "yes").await.unwrap();

    // The restored state and the new write survive a restart of every member.
    restart_without_restore(&mut restored);
    let mut client = admin_client(&restored);
    assert_eq!(
        client.get("after-restore").await.unwrap(),
        Some(Bytes::from("yes"))
    );
    for (key, value) in before_save.iter().step_by(7) {
        let found = client.get(key.clone()).await.unwrap();
        assert_eq!(found, Some(Bytes::from(value.clone())), "{key}");
    }
    let keys = client.status().await.unwrap().keys as usize;
    assert!(keys > before_save.len(), "{keys} keys");
}

/// Runs `shoal-node --restore file` into `data_dir`; returns the exit code,
/// the error output, and whether the directory holds anything afterwards.
fn restore(file: &Path, data_dir: &Path, token: &Path) -> (Option<i32>, String, bool) {
    let addr = format!("127.0.0.1:{}", free_port());
    let peers = format!("1={addr}");
    let output = Command::new(env!("CARGO_BIN_EXE_shoal-node"))
        .args(["--id", "1", "--listen", &addr, "--peers", &peers])
        .args(["--data-dir", data_dir.to_str().unwrap()])
        .args(["--token-file", token.to_str().unwrap()])
        .args(["--restore", file.to_str().unwrap()])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let written = std::fs::read_dir(data_dir).is_ok_and(|mut d| d.next().is_some());
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        written,
    )
}

#[tokio::test]
async fn damaged_backups_are_refused_with_the_offset_of_the_damage() {
    let dir = TempDir::new("backup-damage");
    let mut group = start_group(1);
    let mut client = client(&group);
    for i in 0..50 {
        client.put(format!("k{i}"), format!("v{i}")).await.unwrap();
    }
    let file = dir.0.join("backup.snap");
    // A backup holds every key: only an administrator may take one.
    let endpoint = ["--endpoints", &group.nodes[0].addr];
    let save = ["snapshot", "save", file.to_str().unwrap()];
    let (code, _, stderr) = cli(&[&endpoint[..], &save[..]].concat());
    assert_eq!(code, Some(2));
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert!(!file.exists());
    let token = ["--token-file", group.token_file.to_str().unwrap()];
    let (code, _, stderr) = cli(&[&endpoint[..], &token[..], &save[..]].concat());
    assert_eq!(code, Some(0), "{stderr}");
    let good = std::fs::read(&file).unwrap();

    let flipped = dir.0.join("flipped.snap");
    let mut bytes = good.clone();
    let at = good.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&flipped, &bytes).unwrap();
    let truncated = dir.0.join("truncated.snap");
    std::fs::write(&truncated, &good[..good.len() - 10]).unwrap();

    for damaged in [&flipped, &truncated] {
        let (code, _, stderr) = cli(&["snapshot", "status", damaged.to_str().unwrap()]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains("is damaged at byte offset "), "{stderr}");
        let (code, stderr, written) = restore(damaged, &dir.0.join("refused"), &group.token_file);
        assert_ne!(code, Some(0), "{stderr}");
        assert!(stderr.contains("damaged at byte offset "), "{stderr}");
        assert!(!written, "a damaged backup wrote to the data directory");
    }
    // The state lies in one chunk in the middle of this small file: the
    // damage is reported at the start of that chunk, before the flip.
    let (_, _, status) = cli(&["snapshot", "status", flipped.to_str().unwrap()]);
    let offset: usize = status
        .split("byte offset ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no offset in {status}"));
    assert!(offset <= at && at - offset < good.len() / 2, "{status}");

    // A later Shoal's backup (a newer format version) is refused as such,
    // not as damage.
    let newer = dir.0.join("newer.snap");
    let mut bytes = good.clone();
    bytes[8..12].copy_from_slice(&3u32.to_le_bytes());
    std::fs::write(&newer, &bytes).unwrap();
    let (code, _, stderr) = cli(&["snapshot", "status", newer.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    let said = "written by a newer Shoal: backup format 3, this binary reads up to 2";
    assert!(stderr.contains(said), "{stderr}");
    let (code, stderr, written) = restore(&newer, &dir.0.join("refused"), &group.token_file);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains(said), "{stderr}");
    assert!(!written, "a newer backup wrote to the data directory");

    // The good file is accepted, but not into a data directory in use.
    group.node(1).kill();
    let in_use = group.dir.0.join("1");
    let (code, stderr, _) = restore(&file, &in_use, &group.token_file);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("not empty"), "{stderr}");
}
