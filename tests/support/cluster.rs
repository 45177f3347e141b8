//! `shoal-node` processes on loopback for the real-mode tests: start, kill,
//! restart, and clients that talk to them as a user or as an administrator.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shoal::client::{Client, ClientConfig, Credentials};

/// One `shoal-node` process and how to start it again.
pub struct Node {
    pub id: u64,
    pub addr: String,
    /// Its metrics address (`/metrics`, `/health`, `/ready`).
    pub metrics: String,
    /// Its flags; `--metrics-listen ADDR` comes last.
    pub args: Vec<String>,
    pub process: Option<Child>,
}

impl Node {
    pub fn start(&mut self) {
        assert!(self.process.is_none(), "node {} is running", self.id);
        let child = Command::new(env!("CARGO_BIN_EXE_shoal-node"))
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start shoal-node");
        self.process = Some(child);
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self) {
        let mut child = self.process.take().expect("node is running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Sends the running process `signal` (by name, as `kill -s` takes it).
    pub fn signal(&self, signal: &str) {
        let pid = self.process.as_ref().expect("node is running").id();
        let status = Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -s {signal} {pid}");
    }
}

/// Shoal node processes, killed when dropped, with the cluster token they
/// share in their scratch directory.
pub struct Group {
    pub nodes: Vec<Node>,
    pub dir: TempDir,
    pub token_file: PathBuf,
}

impl Group {
    pub fn node(&mut self, id: u64) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).unwrap()
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// The members as `ID=ADDR` entries.
    pub fn peers(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.addr))
            .collect()
    }

    /// An administrator's credentials: the cluster token.
    pub fn admin_credentials(&self) -> Credentials {
        shoal::tls::credentials(&Default::default(), Some(&self.token_file)).unwrap()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if node.process.is_some() {
                node.kill();
            }
        }
    }
}

/// A scratch directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory named after `what`.
    pub fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "shoal-{what}-{}-{}",
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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The flags of replica `id` at `addr` among `peers`, its data under `dir`.
fn node_args(id: u64, addr: &str, peers: &[String], dir: &Path, token: &Path) -> Vec<String> {
    [
        "--id",
        &id.to_string(),
        "--listen",
        addr,
        "--peers",
        &peers.join(","),
        "--data-dir",
        &dir.join(id.to_string()).display().to_string(),
        "--token-file",
        &token.display().to_string(),
    ]
    .map(String::from)
    .to_vec()
}

/// A standalone group of `replicas` processes that recognise each other by
/// a cluster token.
pub fn start_group(replicas: u64) -> Group {
    start_group_with(replicas, |_| Vec::new())
}

/// Like [`start_group`], each node also given `extra(id)` flags.
pub fn start_group_with(replicas: u64, extra: impl Fn(u64) -> Vec<String>) -> Group {
    let dir = TempDir::new("test");
    let token_file = dir.0.join("cluster.token");
    std::fs::write(&token_file, format!("token-{}\n", free_port())).unwrap();
    let addrs: Vec<String> = (0..replicas)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let peers: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect();
    let mut nodes: Vec<Node> = (1..=replicas)
        .map(|id| {
            let addr = addrs[id as usize - 1].clone();
            let metrics = format!("127.0.0.1:{}", free_port());
            let mut args = node_args(id, &addr, &peers, &dir.0, &token_file);
            args.extend(extra(id));
            args.extend(["--metrics-listen".to_string(), metrics.clone()]);
            Node {
                id,
                addr,
                metrics,
                args,
                process: None,
            }
        })
        .collect();
    nodes.iter_mut().for_each(Node::start);
    Group {
        nodes,
        dir,
        token_file,
    }
}

/// A user's client of `group` (no administrator's credentials).
pub fn client(group: &Group) -> Client {
    let mut config = ClientConfig::new(group.endpoints());
    config.deadline = Duration::from_secs(20);
    Client::new(config)
}

/// An administrator's client of `group`.
pub fn admin_client(group: &Group) -> Client {
    let mut config = ClientConfig::new(group.endpoints());
    config.deadline = Duration::from_secs(20);
    config.credentials = group.admin_credentials();
    Client::new(config)
}

/// Runs the `shoal` CLI with `args`: its exit code, and what it printed on
/// stdout and stderr (trimmed).
pub fn cli(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).trim().to_string(),
        String::from_utf8_lossy(&output.stderr).trim().to_string(),
    )
}

impl Group {
    /// A replica `id` for this group, not started: it joins (`--join`) once
    /// added, on a fresh address, with the group's token and `extra` flags.
    pub fn joiner(&self, id: u64, extra: &[String]) -> Node {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut peers = self.peers();
        peers.push(format!("{id}={addr}"));
        let mut args = node_args(id, &addr, &peers, &self.dir.0, &self.token_file);
        args.push("--join".to_string());
        args.extend(extra.iter().cloned());
        Node {
            id,
            addr,
            metrics: String::new(),
            args,
            process: None,
        }
    }
}
