//! Throwaway Redis servers from Debian's `redis-server`, on free loopback
//! ports: a master with replicas, or the masters of a Redis Cluster.

use super::{Proc, free_port};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    /// The TLS port, when started with TLS.
    pub tls_port: Option<u16>,
    proc: Option<Proc>,
    args: Vec<String>,
    log: PathBuf,
}

impl RedisServer {
    /// Starts `redis-server` with `extra` arguments (`--replicaof`, ...).
    pub fn start(dir: &Path, name: &str, extra: &[String]) -> RedisServer {
        let port = free_port();
        let data = dir.join(name);
        std::fs::create_dir_all(&data).unwrap();
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--dir",
            &data.display().to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--enable-debug-command",
            "local",
            "--logfile",
            &dir.join(format!("{name}.log")).display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().cloned());
        let tls_port = args
            .iter()
            .position(|a| a == "--tls-port")
            .and_then(|i| args.get(i + 1))
            .and_then(|p| p.parse().ok());
        let log = dir.join(format!("{name}.log"));
        let _ = &log;
        let mut r = RedisServer {
            port,
            tls_port,
            proc: None,
            args,
            log,
        };
        r.start_again();
        r
    }

    /// Starts it again on the same port and data; returns when it answers.
    pub fn start_again(&mut self) {
        let proc = Proc::spawn(
            Command::new("redis-server")
                .args(&self.args)
                .stdout(std::process::Stdio::null()),
            self.log.clone(),
        );
        self.proc = Some(proc);
        let deadline = Instant::now() + Duration::from_secs(20);
        // PONG, or NOAUTH from a node that wants a password: it answers.
        while !self
            .cli(&["PING"])
            .is_some_and(|a| a == "PONG" || a.contains("NOAUTH"))
        {
            assert!(
                Instant::now() < deadline,
                "redis-server on {} does not answer; its log:\n{}",
                self.port,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::park_timeout(Duration::from_millis(50));
        }
    }

    pub fn kill(&mut self) {
        self.proc.take();
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `redis-cli` as the default user; None when it fails.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// `redis-cli ARGS` in the background (a `DEBUG SLEEP` that blocks).
    pub fn cli_background(&self, args: &[&str]) -> std::process::Child {
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("run redis-cli")
    }
}

/// The `--user` arguments for the monitoring ACL user.
pub fn monitor_user(password: &str) -> Vec<String> {
    [
        "--user",
        "monitor",
        "on",
        &format!(">{password}"),
        "+ping",
        "+info",
        "+cluster|info",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Waits until `master` has `n` replicas online.
pub fn wait_replicas(master: &RedisServer, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = master.cli(&["INFO", "replication"]).unwrap_or_default();
        if info.matches("state=online").count() >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n} replicas not online after 30s:\n{info}"
        );
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

/// Three masters in cluster mode, slots spread by `redis-cli --cluster create`.
pub fn start_cluster(dir: &Path, password: &str) -> Vec<RedisServer> {
    let nodes: Vec<RedisServer> = (0..3)
        .map(|i| {
            let mut extra: Vec<String> = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &format!("nodes-{i}.conf"),
                "--cluster-node-timeout",
                "1000",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            extra.extend(monitor_user(password));
            RedisServer::start(dir, &format!("cluster-{i}"), &extra)
        })
        .collect();
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr()).collect();
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("run redis-cli --cluster create");
    assert!(
        out.status.success(),
        "redis-cli --cluster create: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !nodes.iter().all(|n| {
        n.cli(&["CLUSTER", "INFO"])
            .is_some_and(|i| i.contains("cluster_state:ok"))
    }) {
        assert!(Instant::now() < deadline, "the cluster is not ok after 30s");
        std::thread::park_timeout(Duration::from_millis(100));
    }
    nodes
}
