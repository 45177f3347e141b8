//! Real-mode test of backups: `shoal snapshot save` while a writer keeps
//! writing, `shoal-node --restore` into a new group on new ports and data
//! directories (every write acknowledged before the save is there, the new
//! group takes writes and keeps its state across a restart), and damaged
//! files refused with the offset of the damage.
#![cfg(not(madsim))]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use shoal::client::{Client, ClientConfig};

/// A scratch directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "shoal-backup-{name}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `shoal-node` processes of one group, killed when dropped.
struct Group {
    addrs: Vec<String>,
    /// Each member's flags, without `--restore`.
    args: Vec<Vec<String>>,
    processes: Vec<Child>,
}

impl Group {
    /// A group of `replicas` on fresh ports, data under `dir`, not started.
    fn plan(replicas: usize, dir: &Path) -> Group {
        let addrs: Vec<String> = (0..replicas)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let peers: Vec<String> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect();
        let args = (0..replicas)
            .map(|i| {
                let data_dir = dir.join((i + 1).to_string()).display().to_string();
                let id = (i + 1).to_string();
                let args = [
                    "--id",
                    &id,
                    "--listen",
                    &addrs[i],
                    "--peers",
                    &peers.join(","),
                ];
                let mut args: Vec<String> = args.map(String::from).to_vec();
                args.extend(["--data-dir".to_string(), data_dir]);
                args
            })
            .collect();
        Group {
            addrs,
            args,
            processes: Vec::new(),
        }
    }

    /// Starts every member, each with `extra` flags.
    fn start(&mut self, extra: &[&str]) {
        for args in &self.args {
            let child = Command::new(env!("CARGO_BIN_EXE_shoal-node"))
                .args(args)
                .args(extra)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start shoal-node");
            self.processes.push(child);
        }
    }

    /// SIGKILL of every member.
    fn kill(&mut self) {
        for mut child in self.processes.drain(..) {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn client(&self) -> Client {
        let mut config = ClientConfig::new(self.addrs.clone());
        config.deadline = Duration::from_secs(20);
        Client::new(config)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

fn shoal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_every_acknowledged_write() {
    let dir = TempDir::new("load");
    let mut source = Group::plan(3, &dir.0.join("source"));
    source.start(&[]);

    // A writer keeps putting keys; `acked` lists those acknowledged.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, mut client) = (acked.clone(), stop.clone(), source.client());
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
    let endpoints = source.addrs.join(",");
    let save_args = [
        "--endpoints",
        &endpoints,
        "snapshot",
        "save",
        file.to_str().unwrap(),
    ];
    let save_args: Vec<String> = save_args.map(String::from).to_vec();
    let saved = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = save_args.iter().map(String::as_str).collect();
        shoal(&args)
    })
    .await
    .unwrap();
    let during_save = acked.lock().unwrap().len();
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert_eq!(saved.status.code(), Some(0), "{}", text(&saved.stderr));
    let summary = text(&saved.stdout);
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
    let status = shoal(&["snapshot", "status", file.to_str().unwrap()]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status.stderr));
    assert_eq!(
        text(&status.stdout),
        summary.replacen(&format!("saved {}\n", file.display()), "", 1)
    );
    drop(source);

    // A new group of three on new ports and data directories.
    let mut restored = Group::plan(3, &dir.0.join("restored"));
    restored.start(&["--restore", file.to_str().unwrap()]);
    let mut client = restored.client();
    for (key, value) in &before_save {
        let found = client.get(key.clone()).await.unwrap();
        assert_eq!(found, Some(Bytes::from(value.clone())), "{key}");
    }
    client.put("after-restore", "yes").await.unwrap();

    // The restored state and the new write survive a restart of every member.
    restored.kill();
    restored.start(&[]);
    let mut client = restored.client();
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
fn restore(file: &Path, data_dir: &Path) -> (Option<i32>, String, bool) {
    let addr = format!("127.0.0.1:{}", free_port());
    let peers = format!("1={addr}");
    let output = Command::new(env!("CARGO_BIN_EXE_shoal-node"))
        .args(["--id", "1", "--listen", &addr, "--peers", &peers])
        .args(["--data-dir", data_dir.to_str().unwrap()])
        .args(["--restore", file.to_str().unwrap()])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let written = std::fs::read_dir(data_dir).is_ok_and(|mut d| d.next().is_some());
    (output.status.code(), text(&output.stderr), written)
}

#[tokio::test]
async fn damaged_backups_are_refused_with_the_offset_of_the_damage() {
    let dir = TempDir::new("damage");
    let mut group = Group::plan(1, &dir.0.join("source"));
    group.start(&[]);
    let mut client = group.client();
    for i in 0..50 {
        client.put(format!("k{i}"), format!("v{i}")).await.unwrap();
    }
    let file = dir.0.join("backup.snap");
    let saved = shoal(&[
        "--endpoints",
        &group.addrs[0],
        "snapshot",
        "save",
        file.to_str().unwrap(),
    ]);
    assert_eq!(saved.status.code(), Some(0), "{}", text(&saved.stderr));
    let good = std::fs::read(&file).unwrap();

    let flipped = dir.0.join("flipped.snap");
    let mut bytes = good.clone();
    let at = good.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&flipped, &bytes).unwrap();
    let truncated = dir.0.join("truncated.snap");
    std::fs::write(&truncated, &good[..good.len() - 10]).unwrap();

    for damaged in [&flipped, &truncated] {
        let status = shoal(&["snapshot", "status", damaged.to_str().unwrap()]);
        let stderr = text(&status.stderr);
        assert_eq!(status.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("damaged: at byte offset "), "{stderr}");
        let (code, stderr, written) = restore(damaged, &dir.0.join("refused"));
        assert_ne!(code, Some(0), "{stderr}");
        assert!(stderr.contains("damaged at byte offset "), "{stderr}");
        assert!(!written, "a damaged backup wrote to the data directory");
    }
    // The state lies in one chunk in the middle of this small file: the
    // damage is reported at the start of that chunk, before the flip.
    let status = text(&shoal(&["snapshot", "status", flipped.to_str().unwrap()]).stderr);
    let offset: usize = status
        .split("byte offset ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no offset in {status}"));
    assert!(offset <= at && at - offset < good.len() / 2, "{status}");

    // The good file is accepted, but not into a data directory in use.
    group.kill();
    let (code, stderr, _) = restore(&file, &dir.0.join("source").join("1"));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("not empty"), "{stderr}");
}
