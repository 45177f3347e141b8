//! Real-mode test: three `shoal-node` processes on loopback. Writes survive
//! the SIGKILL of the leader, and oversize input gets the documented error
//! over real gRPC (encoding and size limits only exist in real mode).
#![cfg(not(madsim))]

mod support;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use shoal::client::{Client, ClientConfig, ClientError};
use shoal::error::KvError;
use shoal::limits::{KEY_SIZE_MAX, VALUE_SIZE_MAX};
use shoal::proto::kv_client::KvClient;
use shoal::proto::PutRequest;
use support::cluster::{admin_client, cli, client, free_port, start_group, Group, Node, TempDir};

#[tokio::test]
async fn writes_survive_sigkill_of_the_leader() {
    let mut group = start_group(3);
    let mut client = client(&group);

    for i in 0..100 {
        client.put(format!("k{i}"), format!("v{i}")).await.unwrap();
    }
    assert_eq!(client.get("k7").await.unwrap(), Some(Bytes::from("v7")));

    let leader = client.status().await.unwrap().leader_id.expect("a leader");
    group.node(leader).kill();

    for i in 100..200 {
        client.put(format!("k{i}"), format!("v{i}")).await.unwrap();
    }
    let new_leader = client
        .status()
        .await
        .unwrap()
        .leader_id
        .expect("a new leader");
    assert_ne!(new_leader, leader);
    for i in 0..200 {
        let value = client.get(format!("k{i}")).await.unwrap();
        assert_eq!(value, Some(Bytes::from(format!("v{i}"))), "key k{i}");
    }
    let outcome = client
        .compare_and_swap("k1", Some("v1".into()), Some("w1".into()))
        .await
        .unwrap();
    assert!(outcome.swapped);
    assert!(client.delete("k2").await.unwrap());
    assert_eq!(client.get("k2").await.unwrap(), None);
}

#[tokio::test]
async fn oversize_input_gets_the_documented_error_and_changes_nothing() {
    let group = start_group(3);
    let mut client = client(&group);
    client.put("k", "original").await.unwrap();

    // The client library refuses before sending.
    let long_key = vec![b'k'; KEY_SIZE_MAX + 1];
    match client.put(long_key.clone(), "v").await {
        Err(ClientError::Rejected(KvError::KeyTooLarge { actual, limit })) => {
            assert_eq!(
                (actual, limit),
                (KEY_SIZE_MAX as u64 + 1, KEY_SIZE_MAX as u64)
            );
        }
        other => panic!("expected KeyTooLarge, got {other:?}"),
    }

    // The server enforces the same limits for any gRPC client, on every node.
    for addr in group.endpoints() {
        let mut raw = KvClient::connect(format!("http://{addr}")).await.unwrap();
        let status = raw
            .put(PutRequest {
                key: long_key.clone().into(),
                value: "v".into(),
                id: None,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(matches!(
            KvError::from_status(&status),
            Some(KvError::KeyTooLarge { .. })
        ));

        let big_value = vec![0u8; VALUE_SIZE_MAX + 1];
        let status = raw
            .put(PutRequest {
                key: "k".into(),
                value: big_value.into(),
                id: None,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            KvError::from_status(&status),
            Some(KvError::ValueTooLarge {
                actual: VALUE_SIZE_MAX as u64 + 1,
                limit: VALUE_SIZE_MAX as u64
            })
        );
        assert!(
            status.message().contains("limit is 131072 bytes"),
            "{}",
            status.message()
        );

        let status = raw
            .put(PutRequest {
                key: Bytes::new(),
                value: "v".into(),
                id: None,
            })
            .await
            .unwrap_err();
        assert_eq!(KvError::from_status(&status), Some(KvError::KeyEmpty));

        // Past the transport's message limit the request fails in gRPC itself.
        let huge = vec![0u8; shoal::limits::CLIENT_MESSAGE_SIZE_MAX + 1];
        let status = raw
            .put(PutRequest {
                key: "k".into(),
                value: huge.into(),
                id: None,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    }

    // A value exactly at the limit is fine; the failed writes changed nothing.
    client.put("edge", vec![7u8; VALUE_SIZE_MAX]).await.unwrap();
    assert_eq!(
        client.get("edge").await.unwrap().map(|v| v.len()),
        Some(VALUE_SIZE_MAX)
    );
    assert_eq!(
        client.get("k").await.unwrap(),
        Some(Bytes::from("original"))
    );
}

#[tokio::test]
async fn the_cli_talks_to_the_group() {
    let group = start_group(3);
    let endpoints = group.endpoints().join(",");
    let cli = |args: &[&str]| cli(&[&["--endpoints", &endpoints][..], args].concat());
    assert_eq!(cli(&["put", "hello", "world"]).0, Some(0));
    assert_eq!(
        cli(&["get", "hello"]),
        (Some(0), "world".into(), String::new())
    );
    assert_eq!(
        cli(&["cas", "hello", "--expected", "world", "--new", "there"]).1,
        "swapped (was world)"
    );
    assert_eq!(cli(&["cas", "hello", "--expected", "world"]).0, Some(1));
    assert_eq!(cli(&["delete", "hello"]).1, "deleted");
    assert_eq!(cli(&["get", "hello"]).0, Some(1));
    let long_key = "k".repeat(KEY_SIZE_MAX + 1);
    let (code, _, stderr) = cli(&["put", &long_key, "v"]);
    assert_eq!(code, Some(2));
    assert_eq!(stderr, "error: key is 4097 bytes; the limit is 4096 bytes");

    let (code, table, _) = cli(&["endpoint", "status"]);
    assert_eq!(code, Some(0));
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("| group "))
        .collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert_eq!(
        rows.iter().filter(|r| r.contains("| leader ")).count(),
        1,
        "{table}"
    );
    for addr in group.endpoints() {
        assert!(table.contains(&addr), "{table}");
    }
    let (code, health, _) = cli(&["endpoint", "health"]);
    assert_eq!(
        (code, health.matches("is healthy").count()),
        (Some(0), 3),
        "{health}"
    );
}

/// Writes keys `prefix-0`, `prefix-1`, ... until told to stop; returns the
/// acknowledged ones.
fn spawn_writer(
    group: &Group,
    prefix: &'static str,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<Vec<u32>>,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut config = ClientConfig::new(group.endpoints());
    config.deadline = Duration::from_secs(3);
    let mut client = Client::new(config);
    let writer = tokio::spawn(async move {
        let mut acked = Vec::new();
        for i in 0.. {
            if *stopped.borrow() {
                break;
            }
            if client
                .put(format!("{prefix}-{i}"), format!("value-{i}"))
                .await
                .is_ok()
            {
                acked.push(i);
            }
        }
        acked
    });
    (stop, writer)
}

async fn assert_all_readable(client: &mut Client, prefix: &str, acked: &[u32]) {
    for i in acked {
        let value = client.get(format!("{prefix}-{i}")).await.unwrap();
        assert_eq!(
            value,
            Some(Bytes::from(format!("value-{i}"))),
            "acknowledged {prefix}-{i}"
        );
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill_and_restart_on_the_same_data_dir() {
    let mut group = start_group(3);
    let mut client = client(&group);
    client.put("warm-up", "x").await.unwrap();

    // Kill one replica in the middle of writes, restart it on its data dir.
    let (stop, writer) = spawn_writer(&group, "one");
    tokio::time::sleep(Duration::from_millis(500)).await;
    group.node(2).kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    group.node(2).start();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(true).unwrap();
    let acked_one = writer.await.unwrap();
    assert!(
        acked_one.len() > 10,
        "only {} writes acknowledged",
        acked_one.len()
    );

    // Kill every replica in the middle of writes: only the disks remain.
    let (stop, writer) = spawn_writer(&group, "all");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in 1..=3 {
        group.node(id).kill();
    }
    stop.send(true).unwrap();
    let acked_all = writer.await.unwrap();
    assert!(!acked_all.is_empty());
    for id in 1..=3 {
        group.node(id).start();
    }

    assert_all_readable(&mut client, "one", &acked_one).await;
    assert_all_readable(&mut client, "all", &acked_all).await;
    assert_eq!(client.get("warm-up").await.unwrap(), Some(Bytes::from("x")));
}

#[tokio::test]
async fn a_replica_with_a_corrupt_log_refuses_to_start_and_names_the_damage() {
    let mut group = start_group(3);
    let mut client = client(&group);
    for i in 0..50 {
        client.put(format!("k{i}"), format!("v{i}")).await.unwrap();
    }
    group.node(3).kill();
    // Flip a byte inside the first record of replica 3's first log segment:
    // a crash cannot damage the start of a file that later records follow.
    let data_dir = std::path::PathBuf::from(&group.node(3).args[7]);
    let segment = data_dir.join("wal").join("00000000000000000001.wal");
    let mut bytes = std::fs::read(&segment).unwrap();
    assert!(bytes.len() > 1000, "segment too short to damage its middle");
    bytes[20] ^= 0x40;
    std::fs::write(&segment, &bytes).unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_shoal-node"))
        .args(&group.node(3).args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("00000000000000000001.wal: corrupt record at offset 0"),
        "{stderr}"
    );
    // The damage is never served: the other replicas still answer correctly.
    assert_eq!(client.get("k7").await.unwrap(), Some(Bytes::from("v7")));
}

#[tokio::test]
async fn replicas_are_added_and_removed_while_traffic_runs() {
    let mut group = start_group(3);
    let mut client = client(&group);
    let mut admin = admin_client(&group);
    client.put("before", "1").await.unwrap();

    // A fourth replica, started to join rather than to form a group, serving
    // its peers on an address of their own.
    let peer_addr = format!("127.0.0.1:{}", free_port());
    let extra = [
        "--peer-listen",
        &peer_addr,
        "--peer-addrs",
        &format!("4={peer_addr}"),
    ];
    let mut fourth = group.joiner(4, &extra.map(String::from));
    let addr = fourth.addr.clone();
    fourth.start();
    group.nodes.push(fourth);

    let (stop, writer) = spawn_writer(&group, "churn");
    let member = shoal::ids::Member::new(addr.clone(), peer_addr);
    let members = admin.add_replica(4, member).await.unwrap();
    assert_eq!(members.len(), 4, "{members:?}");
    let members = admin.remove_replica(1).await.unwrap();
    assert!(!members.contains_key(&1), "{members:?}");
    group.node(1).kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(true).unwrap();
    let acked = writer.await.unwrap();
    assert!(!acked.is_empty());
    assert_all_readable(&mut client, "churn", &acked).await;
    assert_eq!(client.get("before").await.unwrap(), Some(Bytes::from("1")));
    // The new replica serves: it alone with replica 2 is a majority of {2, 3, 4}.
    group.node(3).kill();
    client.put("after", "2").await.unwrap();
    assert_eq!(client.get("after").await.unwrap(), Some(Bytes::from("2")));
}

/// Runs `shoal-node` with `args` until it exits (at most `limit`); returns
/// whether it succeeded and what it printed on stderr.
fn node_exit(args: &[String], limit: Duration) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shoal-node"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start shoal-node");
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            panic!("shoal-node still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_taken_port_stops_the_node_with_the_reason() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = TempDir::new("port");
    let token = dir.0.join("cluster.token");
    std::fs::write(&token, "t").unwrap();
    let args = [
        "--id",
        "1",
        "--listen",
        &addr,
        "--peers",
        &format!("1={addr}"),
        "--data-dir",
        &dir.0.join("data").display().to_string(),
        "--token-file",
        &token.display().to_string(),
    ]
    .map(String::from);
    // Generous: a node that hangs instead of exiting is what this catches.
    let (ok, stderr) = node_exit(&args, Duration::from_secs(30));
    assert!(!ok, "the node must fail");
    assert!(
        stderr.contains(&format!("serving on {addr}")) && stderr.contains("in use"),
        "{stderr}"
    );
}

#[test]
fn a_data_directory_in_use_is_refused() {
    let group = start_group(1);
    let node = &group.nodes[0];
    // The first process holds the directory once it serves metrics (it
    // opens storage before it listens): only then is the race decided.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&node.metrics).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first node never served"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut args = node.args.clone();
    let port = free_port();
    args[3] = format!("127.0.0.1:{port}");
    args[5] = format!("1=127.0.0.1:{port}");
    *args.last_mut().unwrap() = format!("127.0.0.1:{}", free_port());
    let (ok, stderr) = node_exit(&args, Duration::from_secs(30));
    assert!(!ok, "a second process must not open the directory");
    assert!(stderr.contains("is in use by another process"), "{stderr}");
}

/// `GET path` over plain HTTP/1.1: the status code and the body.
fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the metrics address");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// One node's metrics, parsed with a Prometheus text-format parser: each
/// sample's value by metric name and labels (`name{k="v"}`), a histogram's
/// as its count.
fn scrape(node: &Node) -> std::collections::BTreeMap<String, f64> {
    let (status, text) = http_get(&node.metrics, "/metrics");
    assert_eq!(status, 200, "{text}");
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    scrape
        .samples
        .into_iter()
        .map(|sample| {
            let mut labels: Vec<String> = sample
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            labels.sort();
            let value = match sample.value {
                prometheus_parse::Value::Histogram(buckets) => {
                    buckets.last().map_or(0.0, |b| b.count)
                }
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Summary(_) => f64::NAN,
            };
            (format!("{}{{{}}}", sample.metric, labels.join(",")), value)
        })
        .collect()
}

#[tokio::test]
async fn metrics_are_served_in_prometheus_format_and_move_under_load() {
    let group = start_group(3);
    let mut client = client(&group);
    client
        .put(Bytes::from("metrics-0"), Bytes::from("v"))
        .await
        .unwrap();
    let before: Vec<_> = group.nodes.iter().map(scrape).collect();
    for i in 1..=40 {
        let key = Bytes::from(format!("metrics-{i}"));
        client.put(key, Bytes::from(vec![b'x'; 100])).await.unwrap();
    }
    client.get(Bytes::from("metrics-7")).await.unwrap();
    let after: Vec<_> = group.nodes.iter().map(scrape).collect();

    let fsyncs = "shoal_wal_fsync_duration_seconds{}";
    for (b, a) in before.iter().zip(&after) {
        assert!(
            a[fsyncs] > b[fsyncs],
            "every replica syncs its log: {b:?} -> {a:?}"
        );
        assert_eq!(a["shoal_raft_term{}"], after[0]["shoal_raft_term{}"]);
    }
    let leaders: Vec<usize> = (0..after.len())
        .filter(|&i| after[i]["shoal_raft_is_leader{}"] == 1.0)
        .collect();
    assert_eq!(leaders.len(), 1, "one leader: {after:?}");
    let leader = &after[leaders[0]];
    let puts = "shoal_requests_total{method=\"put\",outcome=\"ok\"}";
    let before_puts = before[leaders[0]].get(puts).copied().unwrap_or(0.0);
    assert!(leader[puts] - before_puts >= 40.0, "{leader:?}");
    let timed = "shoal_request_duration_seconds{method=\"put\",outcome=\"ok\"}";
    assert_eq!(leader[timed], leader[puts], "every request is timed");
    assert_eq!(leader["shoal_keys{}"], 41.0);
    assert!(leader["shoal_key_value_bytes{}"] >= 4000.0);
    assert!(leader["shoal_sessions{}"] >= 1.0);
    assert!(leader["shoal_raft_applied_index{}"] >= 41.0);
    // Closing the session removes it, counted as expired.
    client.close_session().await.unwrap();
    let closed = scrape(&group.nodes[leaders[0]]);
    assert_eq!(closed["shoal_sessions{}"], 0.0, "{closed:?}");
    assert_eq!(closed["shoal_sessions_expired_total{}"], 1.0, "{closed:?}");

    for node in &group.nodes {
        assert_eq!(
            http_get(&node.metrics, "/health"),
            (200, "ok\n".to_string())
        );
        assert_eq!(http_get(&node.metrics, "/ready").0, 200);
    }
}

/// A node asked to stop (SIGTERM) stops even while a caller holds its
/// connection open and never reads the node's goodbye on it: the drain is
/// bounded.
#[test]
fn a_node_stops_on_sigterm_though_a_caller_never_lets_go() {
    let mut group = start_group(1);
    // The client's runtime stops turning once the write is acknowledged,
    // so its end of the connection stays open and unread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut client = client(&group);
    runtime.block_on(async { client.put("k", "v").await.unwrap() });
    let node = group.node(1);
    node.signal("TERM");
    let asked = std::time::Instant::now();
    let limit = shoal::runtime::DRAIN_MAX + Duration::from_secs(20);
    let process = node.process.as_mut().unwrap();
    while process.try_wait().unwrap().is_none() {
        assert!(
            asked.elapsed() < limit,
            "the node has not stopped {limit:?} after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    node.process = None;
    drop((client, runtime));
}
