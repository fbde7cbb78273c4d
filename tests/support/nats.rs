//! A real NATS cluster on loopback from Debian's `nats-server` package:
//! servers routed to each other, each with its monitoring port.

use super::{Proc, free_port, wait_until};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub struct NatsServer {
    pub client_port: u16,
    pub cluster_port: u16,
    pub monitor_port: u16,
    proc: Option<Proc>,
}

pub struct NatsCluster {
    dir: PathBuf,
    pub servers: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `n` servers routed to each other and waits until every one
    /// routes to all the others.
    pub fn start(dir: &Path, n: usize) -> NatsCluster {
        std::fs::create_dir_all(dir).unwrap();
        let servers = (0..n)
            .map(|_| NatsServer {
                client_port: free_port(),
                cluster_port: free_port(),
                monitor_port: free_port(),
                proc: None,
            })
            .collect();
        let mut c = NatsCluster {
            dir: dir.to_path_buf(),
            servers,
        };
        for i in 0..n {
            c.spawn(i);
        }
        c.wait_routed(Duration::from_secs(20));
        c
    }

    fn spawn(&mut self, i: usize) {
        let routes: Vec<String> = self
            .servers
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, s)| format!("nats://127.0.0.1:{}", s.cluster_port))
            .collect();
        let s = &self.servers[i];
        let binary = dbmon::local::which("nats-server")
            .or_else(|| Some(PathBuf::from("/usr/sbin/nats-server")).filter(|p| p.is_file()))
            .expect("nats-server is not installed: run deploy/install-deps.sh");
        let mut cmd = Command::new(binary);
        cmd.args(["-a", "127.0.0.1", "-n", &format!("nats-{i}")])
            .args(["-p", &s.client_port.to_string()])
            .args(["-m", &s.monitor_port.to_string()])
            .args(["--cluster_name", "dbmon-test"])
            .args(["--cluster", &format!("nats://127.0.0.1:{}", s.cluster_port)])
            .args(["--routes", &routes.join(",")]);
        let log = self.dir.join(format!("nats-{i}.log"));
        self.servers[i].proc = Some(Proc::spawn(&mut cmd, log));
    }

    /// Monitoring URLs, the nodes dbmon watches.
    pub fn monitor_urls(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|s| format!("http://127.0.0.1:{}", s.monitor_port))
            .collect()
    }

    pub fn kill(&mut self, i: usize) {
        self.servers[i].proc = None;
    }

    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
    }

    /// Waits until every running server reports routes to all the others.
    pub fn wait_routed(&self, within: Duration) {
        let want = self.servers.len() - 1;
        wait_until(within, "every NATS server routes to all the others", || {
            self.servers
                .iter()
                .all(|s| routes(s.monitor_port).is_some_and(|r| r == want))
        });
    }
}

/// The `routes` count of a server's `/varz`, read over a plain socket.
fn routes(port: u16) -> Option<usize> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /varz HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let body = text.split_once("\r\n\r\n")?.1;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["routes"].as_u64().map(|r| r as usize)
}
