//! Data directories written by earlier releases, opened by this build.
//!
//! Each release that writes a format of its own leaves fixtures under
//! `tests/fixtures/<version>/`, written by its `shoal-node` with
//! `cargo test --test fixtures -- --ignored write_this_release` (which
//! refuses to overwrite a release's fixtures):
//!
//! - `standalone/`: a standalone group of three replicas (`1/`, `2/`, `3/`)
//!   after puts, deletes, compare-and-swaps and sessions (one closed, one
//!   open), written with a snapshot every 40 entries;
//! - `sharded/`: a dev cluster (a shard controller and three data groups)
//!   after writes and a shard move to a group joined later.
//!
//! Next to each, `expected.txt` holds every key and value it serves
//! (`key<TAB>value`, in key order). The test below starts this build on a
//! copy of every fixture, on the addresses the fixture's replicas were
//! written with, and requires exactly that data, then a write and its read.
//! A change that makes an earlier fixture unreadable fails here: it must
//! migrate the old format on open instead.
#![cfg(not(madsim))]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use shoal::client::{Client, ClientConfig};
use shoal::machine::shard::controller::ControllerOp;
use support::cluster::Node;

/// The standalone fixture's replicas listen on this port and the two after
/// it (below Linux's ephemeral ports, so no test's free port takes them).
const STANDALONE_PORT: u16 = 29311;
/// The sharded fixture's dev cluster uses this port and the 11 after it.
const SHARDED_PORT: u16 = 29320;
const TOKEN: &str = "fixture-token\n";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// The three replicas of the standalone fixture, data under `dir`.
fn standalone_nodes(dir: &Path) -> Vec<Node> {
    let peers: Vec<String> = (1..=3u16)
        .map(|id| format!("{id}={}", addr(STANDALONE_PORT + id - 1)))
        .collect();
    (1..=3u16)
        .map(|id| {
            let listen = addr(STANDALONE_PORT + id - 1);
            let args = [
                "--id",
                &id.to_string(),
                "--listen",
                &listen,
                "--peers",
                &peers.join(","),
                "--data-dir",
                &dir.join(id.to_string()).display().to_string(),
                "--token-file",
                &dir.join("cluster.token").display().to_string(),
            ]
            .map(String::from)
            .to_vec();
            Node {
                id: u64::from(id),
                addr: listen,
                metrics: String::new(),
                args,
                process: None,
            }
        })
        .collect()
}

fn standalone_client() -> Client {
    let endpoints = (0..3).map(|i| addr(STANDALONE_PORT + i)).collect();
    let mut config = ClientConfig::new(endpoints);
    config.deadline = Duration::from_secs(20);
    Client::new(config)
}

const NODE: &str = env!("CARGO_BIN_EXE_shoal-node");

/// A node process with the file its output goes to, killed if the test
/// fails before it stops it.
struct Running(Child, PathBuf);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The dev cluster of the sharded fixture, data under `dir`.
fn sharded_command(dir: &Path) -> Command {
    let mut command = Command::new(NODE);
    command
        .args(["--dev", "--dev-groups", "2", "--dev-standby-groups", "1"])
        .args(["--dev-base-port", &SHARDED_PORT.to_string()])
        .arg("--data-dir")
        .arg(dir);
    command
}

fn start_sharded(dir: &Path) -> Child {
    sharded_command(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start shoal-node --dev")
}

/// Starts `command`, its output in `dir/node-N.log`.
fn start_logged(command: &mut Command, dir: &Path, n: u64) -> Running {
    let log = dir.join(format!("node-{n}.log"));
    let child = command
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start shoal-node");
    Running(child, log)
}

/// Fails, with what it printed, if a node refused its data and stopped.
async fn still_running(children: &mut [Running], dir: &Path) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    for Running(child, log) in children {
        if let Some(status) = child.try_wait().unwrap() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!(
                "a node refused {} and stopped ({status}):\n{log}",
                dir.display()
            );
        }
    }
}

fn sharded_client(dir: &Path) -> Client {
    let controller = (0..3).map(|i| addr(SHARDED_PORT + i)).collect();
    let mut config = ClientConfig::sharded(controller);
    config.deadline = Duration::from_secs(20);
    config.credentials =
        shoal::tls::credentials(&Default::default(), Some(&dir.join("cluster.token"))).unwrap();
    Client::new(config)
}

/// Stops a node as an operator does (SIGTERM) and waits for it to exit,
/// keeping this test's runtime turning meanwhile: the node drains its
/// connections, and the clients' ends of them live here.
async fn stop(child: &mut Child) {
    let status = Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a node did not stop within 30 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Everything `client` serves, as `expected.txt` lists it.
async fn listing(client: &mut Client) -> String {
    let entries = client.scan("", "", 10_000).await.unwrap();
    entries
        .iter()
        .map(|(k, v)| {
            format!(
                "{}\t{}\n",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(v)
            )
        })
        .collect()
}

/// The fixture's data must be served exactly, and the cluster must take a
/// write.
async fn check_serves(client: &mut Client, fixture: &Path) {
    let expected = std::fs::read_to_string(fixture.join("expected.txt")).unwrap();
    assert_eq!(
        listing(client).await,
        expected,
        "{} serves other data than it was written with",
        fixture.display()
    );
    client.put("written-by-this-build", "yes").await.unwrap();
    assert_eq!(
        client.get("written-by-this-build").await.unwrap(),
        Some(Bytes::from("yes"))
    );
}

#[tokio::test]
async fn this_build_opens_every_earlier_release() {
    for release in releases() {
        let scratch = support::cluster::TempDir::new("fixture");

        let fixture = release.join("standalone");
        let copy = scratch.0.join("standalone");
        copy_dir(&fixture, &copy);
        let mut nodes: Vec<Running> = standalone_nodes(&copy)
            .iter()
            .map(|node| start_logged(Command::new(NODE).args(&node.args), &copy, node.id))
            .collect();
        still_running(&mut nodes, &copy).await;
        check_serves(&mut standalone_client(), &fixture).await;
        for node in &mut nodes {
            stop(&mut node.0).await;
        }

        let fixture = release.join("sharded");
        let copy = scratch.0.join("sharded");
        copy_dir(&fixture, &copy);
        let mut cluster = [start_logged(&mut sharded_command(&copy), &copy, 0)];
        still_running(&mut cluster, &copy).await;
        check_serves(&mut sharded_client(&copy), &fixture).await;
        stop(&mut cluster[0].0).await;
    }
}

/// Writes this release's fixtures (`--ignored`; see the module comment).
#[tokio::test]
#[ignore = "writes tests/fixtures/<version>: run once per release that changes a format"]
async fn write_this_release() {
    let release = fixtures().join(env!("CARGO_PKG_VERSION"));
    assert!(
        !release.exists(),
        "{} exists: a release's fixtures are never rewritten",
        release.display()
    );
    let scratch = support::cluster::TempDir::new("fixture-writer");
    write_standalone(&scratch.0.join("standalone")).await;
    write_sharded(&scratch.0.join("sharded")).await;
    copy_dir(&scratch.0, &release);
}

async fn write_standalone(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("cluster.token"), TOKEN).unwrap();
    // Small snapshots, so that the fixture holds one and a purged log.
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        "snapshot_every_entries = 40\nentries_kept_after_snapshot = 10\n",
    )
    .unwrap();
    let mut nodes = standalone_nodes(dir);
    for node in &mut nodes {
        node.args
            .extend(["--config".to_string(), config.display().to_string()]);
        node.start();
    }
    let mut client = standalone_client();
    for i in 0..60 {
        client
            .put(format!("key-{i:02}"), format!("value-{i}"))
            .await
            .unwrap();
    }
    for i in (0..60).step_by(7) {
        assert!(client.delete(format!("key-{i:02}")).await.unwrap());
    }
    assert!(!client.delete("never-written").await.unwrap());
    let cas = |key: &str, expected: Option<&str>, new: Option<&str>| {
        (
            key.to_string(),
            expected.map(|e| Bytes::copy_from_slice(e.as_bytes())),
            new.map(|n| Bytes::copy_from_slice(n.as_bytes())),
        )
    };
    for (key, expected, new, swapped) in [
        (cas("key-10", Some("value-10"), Some("swapped-10")), true),
        (cas("key-11", Some("not-its-value"), Some("never")), false),
        (cas("created", None, Some("by-cas")), true),
        (cas("key-12", Some("value-12"), None), true),
    ]
    .map(|((k, e, n), s)| (k, e, n, s))
    {
        let outcome = client.compare_and_swap(key.clone(), expected, new).await;
        assert_eq!(outcome.unwrap().swapped, swapped, "{key}");
    }
    // A second session that closes; the first stays open.
    let mut other = standalone_client();
    other.put("other-session", "closed").await.unwrap();
    other.close_session().await.unwrap();
    client.put("key-59", "last").await.unwrap();
    let listed = listing(&mut client).await;
    // Every replica applies the last writes before it stops.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for node in &mut nodes {
        stop(node.process.as_mut().unwrap()).await;
    }
    std::fs::remove_file(&config).unwrap();
    std::fs::write(dir.join("expected.txt"), listed).unwrap();
}

async fn write_sharded(dir: &Path) {
    let mut cluster = start_sharded(dir);
    // The dev cluster makes its token on first start.
    while !dir.join("cluster.token").exists() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client = sharded_client(dir);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while client.query(None).await.map_or(0, |c| c.groups.len()) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "groups never joined"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..100 {
        client
            .put(format!("key-{i:03}"), format!("value-{i}"))
            .await
            .unwrap();
    }
    for i in (0..100).step_by(9) {
        client.delete(format!("key-{i:03}")).await.unwrap();
    }
    // The standby group 3 joins: shards move to it.
    let members = (1..=3u16)
        .map(|id| (u64::from(id), addr(SHARDED_PORT + 8 + id)))
        .collect();
    let joined = client
        .reconfigure(&ControllerOp::Join([(3, members)].into()))
        .await
        .unwrap();
    assert!(!joined.shards_of(3).is_empty());
    client.put("after-the-move", "yes").await.unwrap();
    let listed = listing(&mut client).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop(&mut cluster).await;
    std::fs::write(dir.join("expected.txt"), listed).unwrap();
}

/// Every release's fixtures, oldest first.
fn releases() -> Vec<PathBuf> {
    let mut releases: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    // By version number: 0.10.0 after 0.9.0.
    releases.sort_by_key(|path| {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let numbers: Vec<u64> = name.split('.').map(|n| n.parse().unwrap()).collect();
        numbers
    });
    assert!(!releases.is_empty(), "no fixtures under tests/fixtures");
    releases
}

/// The newest release's fixtures.
fn newest_release() -> PathBuf {
    releases().pop().unwrap()
}

#[test]
fn an_engine_file_of_a_newer_shoal_is_refused_as_such() {
    use shoal::storage::engine::ENGINE_FORMAT;
    let scratch = support::cluster::TempDir::new("fixture-newer");
    copy_dir(&newest_release().join("standalone"), &scratch.0);
    // The engine's format record, as a later build would write it: sealed
    // with the checksum of its name and value.
    let newer = (ENGINE_FORMAT + 1).to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(b"format"), &newer);
    let sealed = [crc.to_le_bytes().as_slice(), &newer].concat();
    let db = redb::Database::open(scratch.0.join("1").join("engine.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let meta = redb::TableDefinition::<&str, &[u8]>::new("meta");
        let mut table = txn.open_table(meta).unwrap();
        table.insert("format", sealed.as_slice()).unwrap();
    }
    txn.commit().unwrap();
    drop(db);

    let node = &standalone_nodes(&scratch.0)[0];
    let output = Command::new(env!("CARGO_BIN_EXE_shoal-node"))
        .args(&node.args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let said = format!(
        "written by a newer Shoal: engine format {}, this binary reads up to {ENGINE_FORMAT}",
        ENGINE_FORMAT + 1
    );
    assert!(stderr.contains(&said), "{stderr}");
}
