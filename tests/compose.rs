//! dbmon in containers built on this machine's Docker engine, across two
//! private networks: deploy/up.sh brings it up, the host's dbmon-client sees
//! it, a cluster member stops, a collector is cut off and comes back,
//! strangers cannot publish, a certificate is replaced in place, and
//! deploy/down.sh leaves nothing behind.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test or benchmark

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::*;

fn deploy(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(script)
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The compose project; `deploy/down.sh` runs when it is dropped, even
/// after a failed assertion.
struct Deployment {
    project: String,
    run_dir: PathBuf,
    port: u16,
    down: bool,
    /// The admin's token, after signing in.
    token: String,
}

impl Deployment {
    fn env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("COMPOSE_PROJECT_NAME", &self.project)
            .env("DBMON_RUN_DIR", &self.run_dir)
            .env("DBMON_PORT", self.port.to_string())
            .env("DBMON_BINARY", DBMON)
    }

    fn container(&self, service: &str) -> String {
        format!("{}_{service}_1", self.project)
    }

    fn client(&self, args: &[&str]) -> Output {
        Command::new(CLIENT)
            .args([
                "--server",
                &format!("https://127.0.0.1:{}", self.port),
                "--ca",
            ])
            .arg(self.run_dir.join("pki/ca.crt"))
            .args(args)
            .env("DBMON_TOKEN", &self.token)
            .output()
            .unwrap()
    }

    /// `status -o json` as (cluster → summary).
    fn status(&self) -> serde_json::Value {
        let out = self.client(&["status", "-o", "json"]);
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    fn cluster(&self, name: &str) -> serde_json::Value {
        self.status()
            .as_array()
            .and_then(|a| a.iter().find(|c| c["cluster"] == name).cloned())
            .unwrap_or(serde_json::Value::Null)
    }

    fn logs(&self, service: &str) -> String {
        let out = Command::new("docker")
            .args(["logs", &self.container(service)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// `dbmon pki probe` from a throwaway container on the server's network.
    fn probe(&self, mount: &Path, cert: Option<&str>) -> (bool, String) {
        let mut cmd = Command::new("docker");
        cmd.args([
            "run",
            "--rm",
            "--network",
            &format!("{}_front", self.project),
            "-v",
        ])
        .arg(format!("{}:/probe:ro", mount.display()))
        .args([
            "dbmon:local",
            "pki",
            "probe",
            "https://server:7072",
            "--ca",
            "/probe/ca.crt",
        ]);
        if let Some(c) = cert {
            cmd.args([
                "--cert",
                &format!("/probe/{c}.crt"),
                "--key",
                &format!("/probe/{c}.key"),
            ]);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    fn down(&mut self) {
        self.down = true;
        run(self.env(&mut Command::new(deploy("down.sh"))));
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if !self.down {
            let _ = self.env(&mut Command::new(deploy("down.sh"))).output();
        }
    }
}

/// Copies `from` over `to` by a rename, as a deployer's tooling would, and
/// gives it to the containers' user.
fn replace(from: &Path, to: &Path) {
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    if unsafe_is_root() {
        run(Command::new("chown").arg("65532:65532").arg(&tmp));
    }
    std::fs::rename(&tmp, to).unwrap();
}

fn unsafe_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// A container removed when dropped.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

/// The server image with its store on the image's read-only root, then on a
/// 1 MB tmpfs that a collector fills: each time it says so and goes on
/// serving from memory.
fn store_on_a_read_only_and_on_a_full_disk(d: &Deployment, dir: &Path) {
    let user = if unsafe_is_root() {
        "65532:65532".to_string()
    } else {
        let id = |f: &str| {
            String::from_utf8_lossy(&run(Command::new("id").arg(f)).stdout)
                .trim()
                .to_string()
        };
        format!("{}:{}", id("-u"), id("-g"))
    };
    let (uid, gid) = user.split_once(':').unwrap();
    let tmpfs = |path: &str, size: &str| format!("{path}:uid={uid},gid={gid},mode=0700{size}");
    let config = |name: &str, store: &str| {
        let path = d.run_dir.join("config").join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                "server:\n  listen: 0.0.0.0:7070\n  collector_listen: 0.0.0.0:7072\n  http_listen: 127.0.0.1:7071\n  pki_dir: /pki\n  store: {store}\n  auth:\n    dir: /auth\n"
            ),
        )
        .unwrap();
        if unsafe_is_root() {
            run(Command::new("chown").arg("65532:65532").arg(&path));
        }
    };
    let start = |name: &str, extra: &[String]| {
        let container = Container(format!("{}_{name}", d.project));
        let mut cmd = Command::new("docker");
        cmd.args([
            "run",
            "-d",
            "--name",
            &container.0,
            "--read-only",
            "--user",
            &user,
        ])
        .args(["--tmpfs", &tmpfs("/auth", "")])
        .arg("-v")
        .arg(format!("{}:/pki:ro", d.run_dir.join("server").display()))
        .arg("-v")
        .arg(format!("{}:/config:ro", d.run_dir.join("config").display()))
        .args(extra)
        .args([
            "dbmon:local",
            "server",
            "--config",
            &format!("/config/{name}.yaml"),
        ]);
        run(&mut cmd);
        container
    };
    let logs = |c: &Container| {
        let out = Command::new("docker")
            .args(["logs", &c.0])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let health = |c: &Container| {
        let out =
            run(Command::new("docker").args(["exec", &c.0, "/usr/local/bin/dbmon", "healthcheck"]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // Read-only: the store cannot be created.
    config("store-ro", "/var/lib/dbmon/reports.redb");
    let ro = start("store-ro", &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !logs(&ro).contains("cannot open the store") {
        assert!(
            std::time::Instant::now() < deadline,
            "the read-only server did not say why; its log:\n{}",
            logs(&ro)
        );
        std::thread::park_timeout(Duration::from_millis(100));
    }
    let log = logs(&ro);
    assert!(
        log.contains("Read-only file system") && log.contains("serving from memory only"),
        "{log}"
    );
    let h = health(&ro);
    assert!(
        h.contains("without a store") && h.contains("serving from memory"),
        "{h}"
    );

    // Full: a collector on the host fills 1 MB.
    config("store-full", "/data/reports.redb");
    let port = free_port();
    let full = start(
        "store-full",
        &[
            "--tmpfs".into(),
            tmpfs("/data", ",size=1m"),
            "-p".into(),
            format!("127.0.0.1:{port}:7072"),
        ],
    );
    wait_until(
        Duration::from_secs(20),
        "the full-disk server listens",
        || logs(&full).contains("dbmon server listening"),
    );
    let nodes: Vec<String> = (0..40)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let cfg = dir.join("filler.yaml");
    std::fs::write(
        &cfg,
        format!(
            "collector:\n  id: c1\n  server: https://127.0.0.1:{port}\n  pki_dir: {}\n\
             clusters:\n  - name: filler\n    kind: etcd\n    interval: 200ms\n    timeout: 100ms\n    max_backoff: 200ms\n    nodes: [{}]\n",
            d.run_dir.join("pki").display(),
            nodes.join(", ")
        ),
    )
    .unwrap();
    let filler = Proc::spawn(
        Command::new(DBMON)
            .args(["collector", "--config"])
            .arg(&cfg)
            .stdout(std::process::Stdio::null()),
        dir.join("filler.log"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !logs(&full).contains("cannot write the store") {
        assert!(
            std::time::Instant::now() < deadline,
            "the store did not fill up; server log:\n{}\ncollector log:\n{}",
            logs(&full),
            filler.log_text()
        );
        std::thread::park_timeout(Duration::from_millis(200));
    }
    assert!(
        logs(&full).contains("No space left on device"),
        "{}",
        logs(&full)
    );
    let h = health(&full);
    assert!(
        h.contains("cannot be written") && h.contains("serving from memory"),
        "{h}"
    );
    // Still serving: the collector's stream stays up and acks go on.
    let running =
        run(Command::new("docker").args(["inspect", "-f", "{{.State.Running}}", &full.0]));
    assert_eq!(String::from_utf8_lossy(&running.stdout).trim(), "true");
    let streaming = filler.log_text();
    assert!(
        streaming.contains("streaming reports to the server"),
        "{streaming}"
    );
    drop(filler);
}

#[test]
fn the_compose_deployment_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Deployment {
        project: format!("dbmontest{}", std::process::id()),
        run_dir: dir.path().join("run"),
        port: free_port(),
        down: false,
        token: String::new(),
    };
    let up = run(d.env(&mut Command::new(deploy("up.sh"))));
    let text = String::from_utf8_lossy(&up.stdout).into_owned();

    // The first admin: the invite up.sh printed, a passkey, `dbmon-client login`.
    let invite = text
        .split_whitespace()
        .find(|w| w.contains("/invite#"))
        .unwrap_or_else(|| panic!("up.sh printed no invite:\n{text}"));
    assert!(
        invite.starts_with(&format!("https://localhost:{}/", d.port)),
        "{invite}"
    );
    let http = support::softlogin::http_client(Some(
        &std::fs::read(d.run_dir.join("pki/ca.crt")).unwrap(),
    ));
    let mut key = block_on(support::softlogin::register(&http, invite)).unwrap();
    let server = format!("https://localhost:{}", d.port);
    let ca = d.run_dir.join("pki/ca.crt");
    let args = ["--server", &server, "--ca", ca.to_str().unwrap()];
    d.token = cli_login(&args, &dir.path().join("home"), "admin", &mut key, &http).unwrap();
    // Without a token the people endpoint serves nothing, certificate or not.
    let out = Command::new(CLIENT)
        .args(["--server", &server, "--ca", ca.to_str().unwrap(), "status"])
        .env_remove("DBMON_TOKEN")
        .env("XDG_CONFIG_HOME", dir.path().join("nobody"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Unauthenticated") && err.contains("dbmon-client login"),
        "{err}"
    );
    let auth_mode = std::fs::metadata(d.run_dir.join("auth/auth.json")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        auth_mode.permissions().mode() & 0o777,
        0o600,
        "root keys are 0600 on the host"
    );

    // The host's client sees both clusters healthy.
    wait_until(
        Duration::from_secs(60),
        "both clusters healthy with 3/3 members",
        || {
            ["etcd-a", "etcd-b"].iter().all(|c| {
                let s = d.cluster(c);
                s["health"] == "healthy" && s["nodes_up"] == 3
            })
        },
    );
    for service in ["server", "collector1", "collector2"] {
        let health = run(Command::new("docker").args([
            "inspect",
            "-f",
            "{{.State.Health.Status}}",
            &d.container(service),
        ]));
        let user = run(Command::new("docker").args([
            "inspect",
            "-f",
            "{{.Config.User}}",
            &d.container(service),
        ]));
        assert!(
            !String::from_utf8_lossy(&user.stdout)
                .trim()
                .starts_with('0'),
            "{service} runs as non-root"
        );
        let h = String::from_utf8_lossy(&health.stdout).trim().to_string();
        assert!(h == "healthy" || h == "starting", "{service}: {h}");
    }

    // One etcd member stops: degraded in watch.
    let mut watch = Watcher::spawn_with(
        &format!("https://127.0.0.1:{}", d.port),
        &[
            "--ca",
            d.run_dir.join("pki/ca.crt").to_str().unwrap(),
            "--cluster",
            "etcd-a",
        ],
        dir.path(),
        Some(&d.token),
    );
    run(Command::new("docker").args(["stop", "-t", "1", &d.container("etcd2")]));
    watch.wait_for(
        Duration::from_secs(20),
        "etcd-a degraded after a member stopped",
        |v| v["type"] == "report" && health_of(v) == "degraded" && v["nodes_up"] == 2,
    );
    // Started again, it rejoins on its data (kept on the host) and the
    // cluster heals.
    run(Command::new("docker").args(["start", &d.container("etcd2")]));
    watch.wait_for(
        Duration::from_secs(30),
        "etcd-a healthy again after the member restarted",
        |v| v["type"] == "report" && health_of(v) == "healthy" && v["nodes_up"] == 3,
    );

    // Collector 1 cut off from the server's network: its cluster goes stale
    // within three poll intervals and a timeout (1s each here: 4s), the
    // other collector's does not.
    let front = format!("{}_front", d.project);
    run(Command::new("docker").args(["network", "disconnect", &front, &d.container("collector1")]));
    let cut = std::time::Instant::now();
    wait_until(Duration::from_secs(15), "etcd-a stale", || {
        d.cluster("etcd-a")["stale"] == true
    });
    let took = cut.elapsed();
    assert!(took < Duration::from_secs(10), "stale after {took:?}");
    assert_eq!(
        d.cluster("etcd-b")["stale"],
        false,
        "collector 2 still reports"
    );
    let text = String::from_utf8_lossy(&d.client(&["status"]).stdout).into_owned();
    assert!(
        text.lines()
            .any(|l| l.starts_with("etcd-a") && l.contains("(stale)")),
        "{text}"
    );

    // Reconnected: reports resume.
    run(Command::new("docker").args(["network", "connect", &front, &d.container("collector1")]));
    wait_until(Duration::from_secs(60), "etcd-a reports resume", || {
        let s = d.cluster("etcd-a");
        s["stale"] == false && s["age_s"].as_f64().is_some_and(|a| a < 3.0)
    });

    // Strangers cannot publish: no certificate, another CA's certificate.
    let (ok, out) = d.probe(&d.run_dir.join("server"), None);
    assert!(!ok && out.starts_with("refused:"), "{out}");
    let other = dir.path().join("other");
    dbmon(&["pki", "init", "--dir", other.to_str().unwrap()]);
    issue_collector(&other, "c1", None);
    let stranger = dir.path().join("stranger");
    std::fs::create_dir_all(&stranger).unwrap();
    // Trusts the real server, shows the other CA's certificate.
    std::fs::copy(d.run_dir.join("pki/ca.crt"), stranger.join("ca.crt")).unwrap();
    std::fs::copy(
        other.join("collector.c1.crt"),
        stranger.join("collector.c1.crt"),
    )
    .unwrap();
    std::fs::copy(
        other.join("collector.c1.key"),
        stranger.join("collector.c1.key"),
    )
    .unwrap();
    if unsafe_is_root() {
        run(Command::new("chown")
            .args(["-R", "65532:65532"])
            .arg(&stranger));
    }
    let (ok, out) = d.probe(&stranger, Some("collector.c1"));
    assert!(!ok && out.starts_with("refused:"), "{out}");
    let log = d.logs("server");
    assert!(log.contains("no client certificate"), "{log}");
    assert!(log.contains("UnknownIssuer"), "{log}");
    let (ok, out) = d.probe(&d.run_dir.join("c1"), Some("collector.c1"));
    assert!(ok, "the real collector certificate is accepted: {out}");

    // A new certificate put into collector 1's mounted folder: picked up
    // without a restart, on the same stream.
    let connected = d.logs("server").matches("collector connected").count();
    let pki = d.run_dir.join("pki");
    issue_collector(&pki, "c1", None);
    replace(
        &pki.join("collector.c1.key"),
        &d.run_dir.join("c1/collector.c1.key"),
    );
    replace(
        &pki.join("collector.c1.crt"),
        &d.run_dir.join("c1/collector.c1.crt"),
    );
    wait_until(
        Duration::from_secs(20),
        "collector 1 reloads its new certificate",
        || {
            d.logs("collector1")
                .contains("collector certificate reloaded")
        },
    );
    let restarts = run(Command::new("docker").args([
        "inspect",
        "-f",
        "{{.RestartCount}} {{.State.StartedAt}}",
        &d.container("collector1"),
    ]));
    assert!(
        String::from_utf8_lossy(&restarts.stdout).starts_with("0 "),
        "no restart"
    );
    assert_eq!(
        d.logs("server").matches("collector connected").count(),
        connected,
        "the stream went on"
    );

    // Each collector spills to its own writable mount.
    for (c, spill) in [("collector1", "c1-spill"), ("collector2", "c2-spill")] {
        let log = d.logs(c);
        assert!(!log.contains("cannot use the spill directory"), "{log}");
        assert!(d.run_dir.join(spill).join("lock").exists(), "{spill}");
    }

    store_on_a_read_only_and_on_a_full_disk(&d, dir.path());

    // Down: nothing left.
    drop(watch);
    d.down();
    let left = run(Command::new("docker").args([
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.compose.project={}", d.project),
    ]));
    assert!(
        left.stdout.is_empty(),
        "containers left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    let nets = run(Command::new("docker").args([
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("name={}_", d.project),
    ]));
    assert!(nets.stdout.is_empty(), "networks left");
}
