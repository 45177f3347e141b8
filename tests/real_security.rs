//! Real-mode tests of who may talk to a node: mutual TLS between replicas,
//! TLS for clients (optionally with required client certificates), the
//! administrator's identity, and certificates rotated on a running group.
//! The simulator's network has no TLS, so these run real processes.
#![cfg(not(madsim))]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use shoal::client::{Client, ClientConfig, ClientError, Credentials};
use shoal::error::KvError;
use shoal::proto::peer_client::PeerClient;
use shoal::proto::RaftMessage;
use shoal::tls::{dev, dev_certificates, ClientTls, TlsFiles};
use support::cluster::{client, start_group, start_group_with, Group, TempDir};

/// A throw-away CA and its certificates (see [`dev`]) in `dir`.
struct Ca(PathBuf);

impl Ca {
    fn new(dir: &Path) -> Ca {
        dev_certificates(dir).unwrap();
        Ca(dir.to_path_buf())
    }

    fn ca(&self) -> PathBuf {
        self.0.join(dev::CA)
    }

    fn pair(&self, (cert, key): (&str, &str)) -> (PathBuf, PathBuf) {
        (self.0.join(cert), self.0.join(key))
    }

    /// TLS files trusting `ca`, with `who`'s certificate if given.
    fn files(&self, ca: &Path, who: Option<(&str, &str)>) -> TlsFiles {
        let pair = who.map(|who| self.pair(who));
        TlsFiles {
            cacert: Some(ca.to_path_buf()),
            cert: pair.as_ref().map(|p| p.0.clone()),
            key: pair.map(|p| p.1),
        }
    }
}

/// The flags that give a node `ca`'s node certificate, trusting `trust`.
fn node_tls_flags(ca: &Ca, trust: &Path, extra: &[&str]) -> Vec<String> {
    let (cert, key) = ca.pair(dev::NODE);
    let mut flags = vec![
        "--cacert".to_string(),
        trust.display().to_string(),
        "--cert".to_string(),
        cert.display().to_string(),
        "--key".to_string(),
        key.display().to_string(),
        "--admin-names".to_string(),
        dev::ADMIN_NAME.to_string(),
        "--peer-names".to_string(),
        dev::NODE_NAME.to_string(),
    ];
    flags.extend(extra.iter().map(|s| s.to_string()));
    flags
}

/// A three-replica group under mutual TLS with `ca`'s certificates.
fn tls_group(ca: &Ca, extra: &[&str]) -> Group {
    let trust = ca.ca();
    start_group_with(3, |_| node_tls_flags(ca, &trust, extra))
}

/// Runs the `shoal` CLI against `group` with `args`.
fn cli(group: &Group, args: &[&str]) -> (Option<i32>, String, String) {
    let endpoints = group.endpoints().join(",");
    let common = ["--endpoints", &endpoints, "--deadline-ms", "5000"];
    support::cluster::cli(&[&common[..], args].concat())
}

fn tls_args(files: &[(String, String); 3]) -> Vec<&str> {
    files
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .flat_map(|(flag, value)| [flag.as_str(), value.as_str()])
        .collect()
}

/// `--cacert/--cert/--key` for the CLI from `files`.
fn flags_of(files: &TlsFiles) -> [(String, String); 3] {
    let show = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    [
        ("--cacert".into(), show(&files.cacert)),
        ("--cert".into(), show(&files.cert)),
        ("--key".into(), show(&files.key)),
    ]
}

fn tls_client(group: &Group, files: &TlsFiles) -> Client {
    let mut config = ClientConfig::new(group.endpoints());
    config.deadline = Duration::from_secs(5);
    config.credentials = Credentials {
        token: None,
        tls: Some(std::sync::Arc::new(ClientTls::load(files).unwrap())),
    };
    Client::new(config)
}

#[tokio::test]
async fn a_mutual_tls_group_serves_the_cli_and_refuses_plaintext() {
    let dir = TempDir::new("tls-cli");
    let ca = Ca::new(&dir.0.join("ca"));
    let group = tls_group(&ca, &[]);
    let user = flags_of(&ca.files(&ca.ca(), None));
    let user = tls_args(&user);
    let put = [user.clone(), vec!["put", "hello", "world"]].concat();
    assert_eq!(cli(&group, &put).0, Some(0));
    let get = [user.clone(), vec!["get", "hello"]].concat();
    assert_eq!(cli(&group, &get).1, "world");
    let (code, table, _) = cli(&group, &[user, vec!["endpoint", "status"]].concat());
    assert_eq!(code, Some(0));
    assert_eq!(table.matches("| leader ").count(), 1, "{table}");
    // Plaintext to a TLS node gets nowhere.
    let (code, _, stderr) = cli(&group, &["get", "hello"]);
    assert_eq!(code, Some(2), "{stderr}");
}

#[tokio::test]
async fn a_client_without_a_required_certificate_is_refused() {
    let dir = TempDir::new("tls-required");
    let ca = Ca::new(&dir.0.join("ca"));
    let group = tls_group(&ca, &["--client-cert-auth"]);
    let mut anonymous = tls_client(&group, &ca.files(&ca.ca(), None));
    let refused = anonymous.put("k", "v").await.unwrap_err();
    assert!(
        matches!(refused, ClientError::DeadlineExceeded { .. }),
        "{refused}"
    );
    let mut holder = tls_client(&group, &ca.files(&ca.ca(), Some(dev::CLIENT)));
    holder.put("k", "v").await.unwrap();
    assert_eq!(holder.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}

#[tokio::test]
async fn only_an_administrator_changes_the_membership() {
    let dir = TempDir::new("tls-admin");
    let ca = Ca::new(&dir.0.join("ca"));
    let group = tls_group(&ca, &[]);
    let as_user = flags_of(&ca.files(&ca.ca(), Some(dev::CLIENT)));
    let remove = ["admin", "remove-replica", "--node", "3"];
    let (code, _, stderr) = cli(&group, &[tls_args(&as_user), remove.to_vec()].concat());
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("permission denied") && stderr.contains("\"client\""),
        "{stderr}"
    );
    // No certificate at all, and a wrong token, are refused the same way.
    let token = dir.0.join("wrong.token");
    std::fs::write(&token, "guess").unwrap();
    let anonymous = flags_of(&ca.files(&ca.ca(), None));
    let token_flag = ["--token-file", token.to_str().unwrap()];
    let args = [tls_args(&anonymous), token_flag.to_vec(), remove.to_vec()].concat();
    let (code, _, stderr) = cli(&group, &args);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("a wrong token"), "{stderr}");
    let files = ca.files(&ca.ca(), None);
    assert_eq!(leaders_members(&group, &files).await, 3, "unchanged");

    let as_admin = flags_of(&ca.files(&ca.ca(), Some(dev::ADMIN)));
    let (code, out, stderr) = cli(&group, &[tls_args(&as_admin), remove.to_vec()].concat());
    assert_eq!(code, Some(0), "{out}{stderr}");
    assert_eq!(leaders_members(&group, &files).await, 2, "removed");
}

/// How many members the group's leader counts (asking each node in turn
/// until one leads).
async fn leaders_members(group: &Group, files: &TlsFiles) -> usize {
    let tls = std::sync::Arc::new(ClientTls::load(files).unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        for addr in group.endpoints() {
            let mut config = ClientConfig::new(vec![addr]);
            config.deadline = Duration::from_secs(1);
            config.credentials.tls = Some(tls.clone());
            if let Ok(status) = Client::new(config).status().await {
                if status.role == "leader" {
                    return status.members.len();
                }
            }
        }
        assert!(std::time::Instant::now() < deadline, "no leader");
    }
}

#[tokio::test]
async fn a_replica_rejects_raft_messages_from_anyone_but_a_peer() {
    let dir = TempDir::new("tls-peer");
    let ca = Ca::new(&dir.0.join("ca"));
    let other = Ca::new(&dir.0.join("other"));
    let group = tls_group(&ca, &[]);
    let mut user = tls_client(&group, &ca.files(&ca.ca(), None));
    user.put("up", "1").await.unwrap();
    let target = group.nodes[0].addr.clone();
    let vote = |files: TlsFiles| {
        let target = target.clone();
        async move {
            let tls = ClientTls::load(&files).unwrap();
            let endpoint = Credentials {
                token: None,
                tls: Some(std::sync::Arc::new(tls)),
            }
            .endpoint(&target)
            .unwrap()
            .connect_timeout(Duration::from_secs(5));
            let channel = endpoint.connect().await.map_err(|e| format!("{e:?}"))?;
            let message = RaftMessage {
                payload: b"not a vote".to_vec().into(),
            };
            PeerClient::new(channel)
                .vote(message)
                .await
                .map(|_| ())
                .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
        }
    };
    // A certificate from another CA: the handshake fails.
    let foreign = vote(other.files(&ca.ca(), Some(dev::NODE)))
        .await
        .unwrap_err();
    assert!(!foreign.contains("PermissionDenied"), "{foreign}");
    // The cluster's CA, but a client's name: authenticated, not a peer.
    let client = vote(ca.files(&ca.ca(), Some(dev::CLIENT)))
        .await
        .unwrap_err();
    assert!(client.starts_with("PermissionDenied"), "{client}");
    let anonymous = vote(ca.files(&ca.ca(), None)).await.unwrap_err();
    assert!(anonymous.starts_with("PermissionDenied"), "{anonymous}");
    // A peer's certificate gets past the door (and the garbage is refused
    // for what it is).
    let peer = vote(ca.files(&ca.ca(), Some(dev::NODE))).await.unwrap_err();
    assert!(peer.starts_with("InvalidArgument"), "{peer}");
}

#[tokio::test]
async fn a_replica_from_another_ca_cannot_join() {
    let dir = TempDir::new("tls-join");
    let ca = Ca::new(&dir.0.join("ca"));
    let other = Ca::new(&dir.0.join("other"));
    let mut group = tls_group(&ca, &[]);
    let mut admin = tls_client(&group, &ca.files(&ca.ca(), Some(dev::ADMIN)));
    admin.put("before", "1").await.unwrap();
    // A fourth replica whose certificate another CA signed (and which
    // trusts only that CA).
    let mut fourth = group.joiner(4, &node_tls_flags(&other, &other.ca(), &[]));
    let addr = fourth.addr.clone();
    fourth.start();
    group.nodes.push(fourth);
    // Whatever the group makes of the request, the stranger never gets the
    // log: it holds no key a while later.
    let _ = admin
        .add_replica(4, shoal::ids::Member::new(addr.clone(), ""))
        .await;
    admin.put("after", "2").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut config = ClientConfig::new(vec![addr]);
    config.deadline = Duration::from_secs(3);
    config.credentials.tls = Some(std::sync::Arc::new(
        ClientTls::load(&other.files(&other.ca(), None)).unwrap(),
    ));
    let status = Client::new(config).status().await.unwrap();
    assert_eq!((status.keys, status.last_applied), (0, 0), "{status:?}");
}

#[tokio::test]
async fn certificates_rotate_on_a_running_group() {
    let dir = TempDir::new("tls-rotate");
    let old = Ca::new(&dir.0.join("old"));
    let new = Ca::new(&dir.0.join("new"));
    // The nodes read their files from `live`, which the operator rewrites.
    let live = Ca(dir.0.join("live"));
    std::fs::create_dir_all(&live.0).unwrap();
    let install = |from: &Ca, file: &str| {
        std::fs::copy(from.0.join(file), live.0.join(file)).unwrap();
    };
    for file in [dev::CA, dev::NODE.0, dev::NODE.1] {
        install(&old, file);
    }
    let group = tls_group(&live, &[]);
    let mut before = tls_client(&group, &old.files(&old.ca(), Some(dev::ADMIN)));
    before.put("k", "old").await.unwrap();
    let hang_up = |group: &Group| group.nodes.iter().for_each(|n| n.signal("HUP"));

    // 1. Trust both CAs; 2. serve certificates of the new one.
    let bundle = [old.ca(), new.ca()].map(|p| std::fs::read_to_string(p).unwrap());
    std::fs::write(live.ca(), bundle.concat()).unwrap();
    hang_up(&group);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for file in [dev::NODE.0, dev::NODE.1] {
        install(&new, file);
    }
    hang_up(&group);

    // A client that trusts only the new CA now gets through: the nodes
    // serve the new certificate without having restarted.
    let mut after = tls_client(&group, &new.files(&new.ca(), Some(dev::ADMIN)));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while after.put("k", "new").await.is_err() {
        assert!(std::time::Instant::now() < deadline, "never rotated");
    }
    assert_eq!(after.get("k").await.unwrap().as_deref(), Some(&b"new"[..]));
    for node in &group.nodes {
        let pid = node.process.as_ref().unwrap().id();
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "node {} restarted",
            node.id
        );
    }
    // 3. Trust only the new CA: a client still holding the old one is out.
    install(&new, dev::CA);
    hang_up(&group);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut stale = tls_client(&group, &old.files(&old.ca(), Some(dev::ADMIN)));
    assert!(stale.get("k").await.is_err());
    after.put("k", "newer").await.unwrap();
}

#[tokio::test]
async fn without_tls_the_cluster_token_is_the_administrators_identity() {
    let group = start_group(3);
    let mut user = client(&group);
    user.put("k", "v").await.unwrap();
    let refused = user.remove_replica(3).await.unwrap_err();
    assert!(
        matches!(refused, ClientError::Rejected(KvError::PermissionDenied(_))),
        "{refused}"
    );
    assert_eq!(user.status().await.unwrap().members.len(), 3);
    let mut admin = support::cluster::admin_client(&group);
    assert_eq!(admin.remove_replica(3).await.unwrap().len(), 2);
}
