//! Shared by the end-to-end tests: real `dbmon` and `dbmon-client`
//! processes on loopback, and waiting for conditions with deadlines.
#![allow(dead_code)]
// Test helpers: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

pub mod browser;
pub mod nats;
pub mod postgres;
pub mod receivers;
pub mod redis;
pub mod softlogin;

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
    /// An admin's token, made on first use.
    admin: std::sync::OnceLock<String>,
}

/// A person signed in through `dbmon-client login`.
pub struct Person {
    pub name: String,
    pub token: String,
    pub key: softlogin::Passkey,
    /// XDG_CONFIG_HOME of their `dbmon-client`.
    pub home: PathBuf,
}

/// Runs `f` on a small runtime (the helpers below are called from plain tests).
pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
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
            admin: std::sync::OnceLock::new(),
        };
    }
    panic!("five sets of free ports were all taken before the server could bind them");
}

/// [`start_server_with`] without extra server settings.
pub fn start_server(dir: &Path, clusters_yaml: &str) -> Stack {
    start_server_with(dir, clusters_yaml, "")
}

/// Another server on the same configuration (and so the same PKI, auth
/// directory and store), on ports of its own.
pub struct Replica {
    pub server: Proc,
    pub grpc: String,
    pub http_port: u16,
    pub config: PathBuf,
}

impl Stack {
    /// Starts a second server like this stack's, named `name` in its files;
    /// `extra_server` goes at the top of its server section.
    pub fn start_replica(&self, name: &str, extra_server: &str) -> Replica {
        let yaml = std::fs::read_to_string(self.dir.join("dbmon.yaml")).expect("read config");
        for _attempt in 0..5 {
            let (grpc_port, collector_port, http_port) = (free_port(), free_port(), free_port());
            let mut out = String::new();
            let mut in_server = false;
            for line in yaml.lines() {
                if !line.starts_with(' ') {
                    in_server = line == "server:";
                }
                let line = match line.trim_start().split_once(':') {
                    Some(("listen", _)) if in_server => format!("  listen: 127.0.0.1:{grpc_port}"),
                    Some(("collector_listen", _)) if in_server => {
                        format!("  collector_listen: 127.0.0.1:{collector_port}")
                    }
                    Some(("http_listen", _)) if in_server => {
                        format!("  http_listen: 127.0.0.1:{http_port}")
                    }
                    _ => line.to_string(),
                };
                out.push_str(&line);
                out.push('\n');
                if line == "server:" {
                    out.push_str(extra_server);
                }
            }
            let config = self.dir.join(format!("dbmon-{name}.yaml"));
            std::fs::write(&config, out).expect("write config");
            let mut server = Proc::spawn(
                Command::new(DBMON)
                    .arg("server")
                    .arg("--config")
                    .arg(&config)
                    .stdout(Stdio::null()),
                self.dir.join(format!("server-{name}.log")),
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut taken = false;
            while std::net::TcpStream::connect(("127.0.0.1", grpc_port)).is_err() {
                if let Ok(Some(_)) = server.child.try_wait() {
                    let log = server.log_text();
                    assert!(
                        log.contains("Address already in use"),
                        "replica {name} stopped; its log:\n{log}"
                    );
                    taken = true;
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "replica {name} does not listen after 30s; its log:\n{}",
                    server.log_text()
                );
                std::thread::park_timeout(Duration::from_millis(50));
            }
            if !taken {
                return Replica {
                    server,
                    grpc: format!("https://127.0.0.1:{grpc_port}"),
                    http_port,
                    config,
                };
            }
        }
        panic!("five sets of free ports were all taken");
    }

    pub fn start_collector(&mut self) {
        self.start_collector_with_env(&[]);
    }

    /// Starts the collector with extra environment variables.
    pub fn start_collector_with_env(&mut self, env: &[(&str, &str)]) {
        let path = self.dir.join("dbmon.yaml");
        self.collector = Some(Proc::spawn(
            Command::new(DBMON)
                .arg("collector")
                .arg("--config")
                .arg(&path)
                .envs(env.iter().copied())
                .stdout(Stdio::null()),
            self.dir.join("collector.log"),
        ));
    }

    /// Runs `dbmon-client --server <grpc> args...` to completion, as an admin.
    pub fn client(&self, args: &[&str]) -> std::process::Output {
        self.client_as(self.admin_token(), args)
    }

    /// Runs `dbmon-client` with `token` in DBMON_TOKEN.
    pub fn client_as(&self, token: &str, args: &[&str]) -> std::process::Output {
        Command::new(CLIENT)
            .arg("--server")
            .arg(&self.grpc)
            .arg("--ca")
            .arg(self.pki.join("ca.crt"))
            .args(args)
            .env("DBMON_TOKEN", token)
            .output()
            .expect("run dbmon-client")
    }

    /// `dbmon-client watch -o json` in the background, as an admin.
    pub fn watch_json(&self, extra: &[&str]) -> Watcher {
        self.watch_json_as(self.admin_token(), extra)
    }

    /// `dbmon-client watch -o json` in the background, with `token`.
    pub fn watch_json_as(&self, token: &str, extra: &[&str]) -> Watcher {
        let ca = self.pki.join("ca.crt");
        let mut args = vec!["--ca", ca.to_str().expect("utf-8 path")];
        args.extend_from_slice(extra);
        Watcher::spawn_with(&self.grpc, &args, &self.dir, Some(token))
    }

    /// The token of user `admin` (signed in on first use).
    pub fn admin_token(&self) -> &str {
        self.admin
            .get_or_init(|| self.person("admin", "admin", &[]).token)
    }

    /// `dbmon user add NAME --role ROLE [--clusters ...]`: the invite URL.
    pub fn add_user(&self, name: &str, role: &str, clusters: &[&str]) -> String {
        let config = self.dir.join("dbmon.yaml");
        let joined = clusters.join(",");
        let mut args = vec![
            "user",
            "add",
            name,
            "--role",
            role,
            "--config",
            config.to_str().expect("utf-8 path"),
        ];
        if !clusters.is_empty() {
            args.extend(["--clusters", &joined]);
        }
        let out = dbmon(&args);
        out.split_whitespace()
            .find(|w| w.contains("/invite#"))
            .unwrap_or_else(|| panic!("no invite URL in: {out}"))
            .to_string()
    }

    /// An HTTPS client trusting the deployment's CA.
    pub fn http(&self) -> reqwest::Client {
        let pem = std::fs::read(self.pki.join("ca.crt")).expect("read ca.crt");
        softlogin::http_client(Some(&pem))
    }

    /// Registers a software passkey with an invite URL.
    pub fn register(&self, invite_url: &str) -> softlogin::Passkey {
        block_on(softlogin::register(&self.http(), invite_url)).unwrap_or_else(|e| {
            panic!(
                "registration failed: {e}\nserver log:\n{}",
                self.server_log()
            )
        })
    }

    /// `dbmon-client login` as `name`, the passkey assertion made by `key`;
    /// returns the token the CLI saved and its config home.
    pub fn cli_login(&self, name: &str, key: &mut softlogin::Passkey) -> (String, PathBuf) {
        let home = self.dir.join(format!("home-{name}-{}", unique()));
        let ca = self.pki.join("ca.crt");
        let args = [
            "--server",
            &self.grpc,
            "--ca",
            ca.to_str().expect("utf-8 path"),
        ];
        let token = cli_login(&args, &home, name, key, &self.http())
            .unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", self.server_log()));
        (token, home)
    }

    /// A user added, registered and signed in through the CLI.
    pub fn person(&self, name: &str, role: &str, clusters: &[&str]) -> Person {
        let invite = self.add_user(name, role, clusters);
        let mut key = self.register(&invite);
        let (token, home) = self.cli_login(name, &mut key);
        Person {
            name: name.to_string(),
            token,
            key,
            home,
        }
    }
}

/// `dbmon-client ARGS login --no-browser` with XDG_CONFIG_HOME=`home`, the
/// passkey assertion made by `key` over `http`; the token the CLI saved
/// (checked to be mode 0600).
pub fn cli_login(
    args: &[&str],
    home: &Path,
    name: &str,
    key: &mut softlogin::Passkey,
    http: &reqwest::Client,
) -> Result<String, String> {
    cli_login_with(args, home, |url, _| {
        block_on(softlogin::approve(http, url, name, key))
            .map_err(|e| format!("passkey assertion failed: {e}"))
    })
}

/// `dbmon-client ARGS login --no-browser`, with `approve(url, printed lines)`
/// doing what the person does in a browser; the token the CLI saved.
pub fn cli_login_with(
    args: &[&str],
    home: &Path,
    approve: impl FnOnce(&str, &[String]) -> Result<(), String>,
) -> Result<String, String> {
    {
        std::fs::create_dir_all(home).expect("home");
        let mut child = Command::new(CLIENT)
            .args(args)
            .args(["login", "--no-browser"])
            .env("XDG_CONFIG_HOME", home)
            .env_remove("DBMON_TOKEN")
            .env_remove("DBMON_SERVER")
            .env_remove("DISPLAY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run dbmon-client login");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut printed = Vec::new();
        let url = loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) => {
                    printed.push(line.clone());
                    if let Some(u) = line.split_whitespace().find(|w| w.contains("/login/")) {
                        break u.to_string();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let out = child.wait_with_output().expect("wait");
                    return Err(format!(
                        "dbmon-client login printed no URL: {printed:?} {}",
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
            }
        };
        // The line after the URL carries the code.
        if let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
            printed.push(line);
        }
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            printed.push(line);
        }
        approve(&url, &printed)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() > deadline {
                return Err("dbmon-client login did not finish within 20s".into());
            }
            std::thread::park_timeout(Duration::from_millis(50));
        };
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        if !status.success() {
            return Err(format!("dbmon-client login failed: {err}"));
        }
        let tokens = home.join("dbmon").join("tokens");
        let file = std::fs::read_dir(&tokens)
            .expect("token directory")
            .next()
            .expect("a token file")
            .expect("entry")
            .path();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", file.display());
        Ok(std::fs::read_to_string(&file)
            .expect("token")
            .trim()
            .to_string())
    }
}

impl Stack {
    /// Kills the server with SIGKILL (no chance to flush anything) and
    /// starts it again on the same configuration and ports.
    pub fn crash_and_restart_server(&mut self) {
        let _ = self.server.child.kill();
        let _ = self.server.child.wait();
        let path = self.dir.join("dbmon.yaml");
        let port: u16 = self
            .collector_grpc
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("collector port");
        self.server = Proc::spawn(
            Command::new(DBMON)
                .arg("server")
                .arg("--config")
                .arg(&path)
                .stdout(Stdio::null()),
            self.dir.join(format!("server-{}.log", unique())),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the restarted server does not listen; its log:\n{}",
                self.server.log_text()
            );
            std::thread::park_timeout(Duration::from_millis(50));
        }
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
        // A server that stops answering fails the test, not hangs it.
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out)
            .unwrap_or_else(|e| panic!("GET {path}: no answer in 10s ({e})"));
        out
    }
}

/// A `dbmon-client watch -o json` process and the events it printed.
pub struct Watcher {
    proc: Proc,
    rx: mpsc::Receiver<Value>,
    pub seen: Vec<Value>,
}

/// Asserts `seqs` runs `first`, `first + 1`, ... with no gap and no repeat.
pub fn assert_no_gap(seqs: &[u64], first: u64) {
    assert_eq!(seqs.first(), Some(&first), "{seqs:?}");
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0] + 1, "a gap or a repeat: ... {:?} ...", w);
    }
}

/// A number unique within this process run, for file names.
pub fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

impl Watcher {
    pub fn spawn(server: &str, extra: &[&str], dir: &Path) -> Watcher {
        Watcher::spawn_with(server, extra, dir, None)
    }

    /// With `token` in DBMON_TOKEN.
    pub fn spawn_with(server: &str, extra: &[&str], dir: &Path, token: Option<&str>) -> Watcher {
        let n = unique();
        let mut cmd = Command::new(CLIENT);
        cmd.arg("--server")
            .arg(server)
            .arg("watch")
            .arg("-o")
            .arg("json")
            .args(extra)
            .stdout(Stdio::piped());
        if let Some(t) = token {
            cmd.env("DBMON_TOKEN", t);
        }
        let mut proc = Proc::spawn(&mut cmd, dir.join(format!("watch-{n}.log")));
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

    /// Waits until the watch process exits; its stderr.
    pub fn wait_exit(&mut self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(_)) = self.proc.child.try_wait() {
                return self.proc.log_text();
            }
            assert!(
                Instant::now() < deadline,
                "watch still running after {within:?}; stderr:\n{}",
                self.proc.log_text()
            );
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }

    /// Waits for an event matching `pred`; panics with the recent events
    /// and the watcher's stderr when the deadline passes.
    /// The seqs of the reports seen so far, in order.
    pub fn report_seqs(&self) -> Vec<u64> {
        self.seen
            .iter()
            .filter(|v| v["type"] == "report")
            .filter_map(|v| v["report"]["seq"].as_u64())
            .collect()
    }

    /// Asserts that the reports seen so far are numbered `first`, `first +
    /// 1`, ... with no gap and no repeat.
    pub fn assert_no_gap_from(&self, first: u64) {
        assert_no_gap(&self.report_seqs(), first);
    }

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

/// Writes `value` and a newline to `dir/name`, mode 0600: a secret that
/// configurations reference as `{file: ...}`.
pub fn secret_file(dir: &Path, name: &str, value: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let file = dir.join(name);
    std::fs::write(&file, format!("{value}\n")).expect("write secret file");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
        .expect("chmod secret file");
    file
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

/// `dbmon config check` on `yaml` written to a file: exit code, stdout
/// (with the file's path written `FILE`) and stderr.
pub fn config_check(yaml: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("dbmon.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let out = Command::new(DBMON)
        .args(["config", "check"])
        .arg(&path)
        .output()
        .expect("run dbmon config check");
    let file = path.display().to_string();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).replace(&file, "FILE"),
        String::from_utf8_lossy(&out.stderr).replace(&file, "FILE"),
    )
}
