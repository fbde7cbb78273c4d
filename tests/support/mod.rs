//! Shared by the end-to-end tests: real `dbmon` and `dbmon-client`
//! processes on loopback, and waiting for conditions with deadlines.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use dbmon::local::{EtcdCluster, free_port};

pub const DBMON: &str = env!("CARGO_BIN_EXE_dbmon");
pub const CLIENT: &str = env!("CARGO_BIN_EXE_dbmon-client");

/// A child process killed when dropped; its stderr goes to a log file.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(cmd: &mut Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).expect("create log file");
        let child = cmd
            .stdin(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Server and collector processes for one config, with their addresses.
pub struct Stack {
    pub server: Proc,
    pub collector: Option<Proc>,
    /// Endpoint for people (TLS).
    pub grpc: String,
    /// Endpoint for collectors (mutual TLS).
    pub collector_grpc: String,
    pub http_port: u16,
    pub dir: PathBuf,
    /// The deployment's PKI directory (made with `dbmon pki init`).
    pub pki: PathBuf,
}

/// Runs `dbmon` with `args` to completion and asserts it succeeds.
pub fn dbmon(args: &[&str]) -> String {
    let out = Command::new(DBMON).args(args).output().expect("run dbmon");
    assert!(
        out.status.success(),
        "dbmon {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Issues, or replaces, collector `name`'s certificate and key in `pki`
/// with `dbmon pki issue collector`; `ttl` like "6s".
pub fn issue_collector(pki: &Path, name: &str, ttl: Option<&str>) {
    let p = pki.to_str().expect("utf-8 path");
    let mut args = vec![
        "pki",
        "issue",
        "collector",
        "--name",
        name,
        "--force",
        "--dir",
        p,
    ];
    if let Some(t) = ttl {
        args.extend(["--ttl", t]);
    }
    dbmon(&args);
}

/// Makes a PKI in `dir/pki` with `dbmon pki init` and a certificate for
/// collector `test-collector`.
pub fn make_pki(dir: &Path) -> PathBuf {
    let pki = dir.join("pki");
    let p = pki.to_str().expect("utf-8 path");
    dbmon(&["pki", "init", "--dir", p]);
    issue_collector(&pki, "test-collector", None);
    pki
}

/// Writes a config with a server on free ports, certificates from a fresh
/// PKI, and the given clusters (a YAML list body, indented by two spaces),
/// and starts the server. `extra_server` is appended to the server section.
pub fn start_server_with(dir: &Path, clusters_yaml: &str, extra_server: &str) -> Stack {
    let pki = make_pki(dir);
    // Free ports are picked, then released for the server to bind: another
    // process may take one in between. Then the server says so and exits,
    // and we try other ports.
    for _attempt in 0..5 {
        let (grpc_port, collector_port, http_port) = (free_port(), free_port(), free_port());
        let yaml = format!(
            "server:\n  listen: 127.0.0.1:{grpc_port}\n  collector_listen: 127.0.0.1:{collector_port}\n  http_listen: 127.0.0.1:{http_port}\n  pki_dir: {pki}\n{extra_server}\
             collector:\n  id: test-collector\n  server: https://127.0.0.1:{collector_port}\n  enroll_server: https://127.0.0.1:{grpc_port}\n  pki_dir: {pki}\n\
             clusters:\n{clusters_yaml}",
            pki = pki.display()
        );
        let path = dir.join("dbmon.yaml");
        std::fs::write(&path, yaml).expect("write config");
        let mut server = Proc::spawn(
            Command::new(DBMON)
                .arg("server")
                .arg("--config")
                .arg(&path)
                .stdout(Stdio::null()),
            dir.join("server.log"),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut taken = false;
        while std::net::TcpStream::connect(("127.0.0.1", collector_port)).is_err() {
            if let Ok(Some(_)) = server.child.try_wait() {
                let log = server.log_text();
                assert!(
                    log.contains("Address already in use"),
                    "the server stopped; its log:\n{log}"
                );
                taken = true;
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server does not listen after 20s; its log:\n{}",
                server.log_text()
            );
            std::thread::park_timeout(Duration::from_millis(50));
        }
        if taken {
            continue;
        }
        return Stack {
            server,
            collector: None,
            grpc: format!("https://127.0.0.1:{grpc_port}"),
            collector_grpc: format!("https://127.0.0.1:{collector_port}"),
            http_port,
            dir: dir.to_path_buf(),
            pki,
        };
    }
    panic!("five sets of free ports were all taken before the server could bind them");
}

/// [`start_server_with`] without extra server settings.
pub fn start_server(dir: &Path, clusters_yaml: &str) -> Stack {
    start_server_with(dir, clusters_yaml, "")
}

impl Stack {
    pub fn start_collector(&mut self) {
        let path = self.dir.join("dbmon.yaml");
        self.collector = Some(Proc::spawn(
            Command::new(DBMON)
                .arg("collector")
                .arg("--config")
                .arg(&path)
                .stdout(Stdio::null()),
            self.dir.join("collector.log"),
        ));
    }

    /// Runs `dbmon-client --server <grpc> args...` to completion.
    pub fn client(&self, args: &[&str]) -> std::process::Output {
        Command::new(CLIENT)
            .arg("--server")
            .arg(&self.grpc)
            .arg("--ca")
            .arg(self.pki.join("ca.crt"))
            .args(args)
            .output()
            .expect("run dbmon-client")
    }

    /// `dbmon-client watch -o json` in the background.
    pub fn watch_json(&self, extra: &[&str]) -> Watcher {
        let ca = self.pki.join("ca.crt");
        let mut args = vec!["--ca", ca.to_str().expect("utf-8 path")];
        args.extend_from_slice(extra);
        Watcher::spawn(&self.grpc, &args, &self.dir)
    }

    /// The server's log so far.
    pub fn server_log(&self) -> String {
        self.server.log_text()
    }

    /// A blocking HTTP GET on the server's HTTP endpoint.
    pub fn http_get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let mut s =
            std::net::TcpStream::connect(("127.0.0.1", self.http_port)).expect("connect http");
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    }
}

/// A `dbmon-client watch -o json` process and the events it printed.
pub struct Watcher {
    proc: Proc,
    rx: mpsc::Receiver<Value>,
    pub seen: Vec<Value>,
}

impl Watcher {
    pub fn spawn(server: &str, extra: &[&str], dir: &Path) -> Watcher {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut proc = Proc::spawn(
            Command::new(CLIENT)
                .arg("--server")
                .arg(server)
                .arg("watch")
                .arg("-o")
                .arg("json")
                .args(extra)
                .stdout(Stdio::piped()),
            dir.join(format!("watch-{n}.log")),
        );
        let stdout = proc.child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(e) => panic!("watch printed a line that is not JSON ({e}): {line}"),
                }
            }
        });
        Watcher {
            proc,
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits for an event matching `pred`; panics with the recent events
    /// and the watcher's stderr when the deadline passes.
    pub fn wait_for(
        &mut self,
        within: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => {
                    let tail: Vec<String> = self
                        .seen
                        .iter()
                        .rev()
                        .take(15)
                        .rev()
                        .map(|v| v.to_string())
                        .collect();
                    panic!(
                        "no watch event within {within:?}: {what}\nlast events:\n{}\nwatch stderr:\n{}",
                        tail.join("\n"),
                        self.proc.log_text()
                    );
                }
            }
        }
    }
}

/// Polls `cond` every 50 ms until it holds; panics after `within`.
pub fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "not true within {within:?}: {what}"
        );
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

/// Fields of a report event, for predicates.
pub fn report_is(v: &Value, node: Option<&str>, check: &str, status: &str) -> bool {
    v["type"] == "report"
        && v["report"]["check"] == check
        && v["report"]["status"] == status
        && node.is_none_or(|n| v["report"]["node"] == n)
}

/// Cluster health carried by a report event.
pub fn health_of(v: &Value) -> &str {
    v["cluster_health"].as_str().unwrap_or("")
}
