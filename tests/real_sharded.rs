//! Real-mode test of a sharded cluster: the README's dev cluster variant
//! (`shoal-node --dev --dev-groups 2 --dev-standby-groups 1`) as an OS
//! process; joining the standby group moves shards to it while every key
//! stays readable, through the library and the `shoal` CLI.
#![cfg(not(madsim))]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use shoal::client::{Client, ClientConfig, ClientError};
use shoal::error::KvError;
use shoal::machine::shard::controller::ControllerOp;

/// The dev cluster process, killed when dropped.
struct Cluster(Child, std::path::PathBuf);

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// A base port with `count` free ports after it.
fn free_ports(count: u16) -> u16 {
    for base in (21000..60000).step_by(97) {
        let listeners: Vec<_> = (0..count)
            .filter_map(|i| TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if listeners.len() == count as usize {
            return base;
        }
    }
    panic!("no {count} consecutive free ports");
}

#[tokio::test]
async fn joining_a_group_moves_shards_and_every_key_stays_readable() {
    let base = free_ports(12);
    let dir = std::env::temp_dir().join(format!("shoal-sharded-{}-{base}", std::process::id()));
    let child = Command::new(env!("CARGO_BIN_EXE_shoal-node"))
        .args(["--dev", "--dev-groups", "2", "--dev-standby-groups", "1"])
        .args(["--dev-base-port", &base.to_string()])
        .arg("--data-dir")
        .arg(&dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let cluster = Cluster(child, dir);
    let controller: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", base + i)).collect();
    let mut config = ClientConfig::sharded(controller.clone());
    config.deadline = Duration::from_secs(20);
    let mut client = Client::new(config);

    // The dev cluster joins groups 1 and 2 itself; wait for that.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while client
        .query(None)
        .await
        .map(|c| c.groups.len())
        .unwrap_or(0)
        < 2
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "groups 1 and 2 never joined"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..200 {
        client
            .put(format!("key-{i:03}"), format!("value-{i}"))
            .await
            .unwrap();
    }

    let members = (1..=3u64)
        .map(|id| (id, format!("127.0.0.1:{}", u64::from(base) + 8 + id)))
        .collect();
    let join = ControllerOp::Join([(3, members)].into());
    // Only an administrator may change the cluster: a user is refused and
    // nothing changes.
    let before = client.query(None).await.unwrap();
    let refused = client.reconfigure(&join).await.unwrap_err();
    assert!(
        matches!(refused, ClientError::Rejected(KvError::PermissionDenied(_))),
        "{refused}"
    );
    assert_eq!(client.query(None).await.unwrap(), before);
    let token = cluster.1.join("cluster.token");
    let mut admin = Client::new(ClientConfig {
        credentials: shoal::tls::credentials(&Default::default(), Some(&token)).unwrap(),
        ..ClientConfig::sharded(controller.clone())
    });
    let joined = admin.reconfigure(&join).await.unwrap();
    let moved = joined.shards_of(3);
    assert!(moved.len() >= 21, "group 3 got {} shards", moved.len());

    for i in 0..200 {
        let value = client.get(format!("key-{i:03}")).await.unwrap();
        assert_eq!(value, Some(Bytes::from(format!("value-{i}"))), "key-{i:03}");
    }
    let all = client.scan("key-", "key.", 1000).await.unwrap();
    let keys: Vec<String> = all
        .iter()
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect();
    let expected: Vec<String> = (0..200).map(|i| format!("key-{i:03}")).collect();
    assert_eq!(keys, expected, "scan merges every shard in order");

    // The CLI sees the same cluster: every key, through a scan, and one get.
    let output = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args([
            "--controller",
            &controller.join(","),
            "scan",
            "key-",
            "key.",
            "--limit",
            "1000",
        ])
        .output()
        .unwrap();
    let listed: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let expected: Vec<String> = (0..200).map(|i| format!("key-{i:03}\tvalue-{i}")).collect();
    assert_eq!(listed, expected);
    let output = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["--controller", &controller.join(","), "get", "key-042"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "value-42");
    let status = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["--controller", &controller.join(","), "admin", "status"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        table.contains(&format!("group 3: {} shards", moved.len())),
        "{table}"
    );

    // Backups of one data group and of the shard controller, found through
    // the controller: group 3 holds exactly the keys of the shards it got.
    let backup = cluster.1.with_extension("group-3.snap");
    let save = |group: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(["--controller", &controller.join(",")])
            .arg("--token-file")
            .arg(&token)
            .args(["snapshot", "save"])
            .arg(&backup)
            .args(["--group", group])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let summary = save("3");
    let held = (0..200)
        .filter(|i| {
            moved.contains(&shoal::machine::shard::shard_of(
                format!("key-{i:03}").as_bytes(),
                64,
            ))
        })
        .count();
    assert!(summary.contains("group:        group 3\n"), "{summary}");
    assert!(
        summary.contains(&format!("keys:         {held}\n")),
        "{summary}"
    );
    let summary = save("0");
    assert!(
        summary.contains("group:        shard controller\n"),
        "{summary}"
    );
    let _ = std::fs::remove_file(&backup);
}
