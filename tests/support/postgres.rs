//! A throwaway PostgreSQL server from Debian's packages, on a free loopback
//! port, with a database `dbmon` owned by user `dbmon`. PostgreSQL refuses
//! to run as root; when the tests do, it runs as the `postgres` account the
//! package created.
// Signals and the effective user id come from libc.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port free on loopback now (this file is shared with a benchmark, so it
/// brings its own).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub struct Postgres {
    child: Child,
    pub port: u16,
    pub data: PathBuf,
    log: PathBuf,
    account: Option<(u32, u32)>,
    /// Arguments of `postgres`, to start it again.
    args: Vec<String>,
}

/// The newest `/usr/lib/postgresql/<version>/bin`.
fn bindir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: run deploy/install-deps.sh (Debian's postgresql)")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no version under /usr/lib/postgresql")
        .1
}

fn id(flag: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .expect("run id");
    assert!(
        out.status.success(),
        "no postgres account: install Debian's postgresql"
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

impl Postgres {
    pub fn start(dir: &Path) -> Postgres {
        Postgres::start_with(dir, None)
    }

    /// With `tls` (certificate and key files), the server accepts TLS
    /// connections only.
    pub fn start_with(dir: &Path, tls: Option<(&Path, &Path)>) -> Postgres {
        Postgres::launch(dir, tls, false)
    }

    /// Syncing to disk as in production (the tests do not, for speed).
    pub fn start_durable(dir: &Path) -> Postgres {
        Postgres::launch(dir, None, true)
    }

    fn launch(dir: &Path, tls: Option<(&Path, &Path)>, durable: bool) -> Postgres {
        use std::os::unix::fs::PermissionsExt;
        let bin = bindir();
        let root = unsafe { libc::geteuid() } == 0;
        let account = root.then(|| (id("-u"), id("-g")));
        let data = dir.join("pg");
        std::fs::create_dir_all(&data).unwrap();
        if let Some((uid, gid)) = account {
            // The account must reach the data directory through the test's.
            let mut p = Some(dir);
            while let Some(d) = p {
                let mode = std::fs::metadata(d).unwrap().permissions().mode();
                if mode & 0o001 == 0 {
                    std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o711))
                        .unwrap();
                }
                p = d.parent();
            }
            std::os::unix::fs::chown(&data, Some(uid), Some(gid)).unwrap();
        }
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        let run = |program: &str| {
            let mut c = Command::new(bin.join(program));
            if let Some((uid, gid)) = account {
                c.uid(uid).gid(gid).env("HOME", &data);
            }
            c
        };
        let out = run("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "dbmon", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut tls_args: Vec<String> = Vec::new();
        if let Some((cert, key)) = tls {
            for (from, to) in [(cert, "server.crt"), (key, "server.key")] {
                let dest = data.join(to);
                std::fs::copy(from, &dest).unwrap();
                std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o600)).unwrap();
                if let Some((uid, gid)) = account {
                    std::os::unix::fs::chown(&dest, Some(uid), Some(gid)).unwrap();
                }
            }
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
            )
            .unwrap();
            for a in [
                "ssl=on",
                "ssl_cert_file=server.crt",
                "ssl_key_file=server.key",
            ] {
                tls_args.extend(["-c".to_string(), a.to_string()]);
            }
        }
        let port = free_port();
        let log = dir.join("postgres.log");
        let file = std::fs::File::create(&log).unwrap();
        if let Some((uid, gid)) = account {
            std::os::unix::fs::chown(&log, Some(uid), Some(gid)).unwrap();
        }
        let mut args: Vec<String> = vec![
            "-D".into(),
            data.display().to_string(),
            "-p".into(),
            port.to_string(),
            "-h".into(),
            "127.0.0.1".into(),
            "-k".into(),
            data.display().to_string(),
        ];
        args.extend(["-c".to_string(), "max_connections=50".to_string()]);
        if !durable {
            args.extend(["-c".to_string(), "fsync=off".to_string()]);
        }
        args.extend(tls_args);
        let child = Postgres::spawn(&bin, account, &data, &args, file);
        let mut pg = Postgres {
            child,
            port,
            data,
            log,
            account,
            args,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new(bin.join("createdb"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-U",
                    "dbmon",
                    "dbmon",
                ])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
            if let Ok(Some(s)) = pg.child.try_wait() {
                panic!("postgres exited ({s}); its log:\n{}", pg.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "postgres is not ready after 30s; its log:\n{}",
                pg.log_text()
            );
            std::thread::park_timeout(Duration::from_millis(100));
        }
        pg
    }

    fn spawn(
        bin: &Path,
        account: Option<(u32, u32)>,
        data: &Path,
        args: &[String],
        log: std::fs::File,
    ) -> Child {
        let mut c = Command::new(bin.join("postgres"));
        if let Some((uid, gid)) = account {
            c.uid(uid).gid(gid).env("HOME", data);
        }
        c.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres")
    }

    /// A streaming standby of `primary`, made with `pg_basebackup -R` into
    /// `dir/pg` and started on a port of its own; returns once it answers.
    pub fn standby_of(primary: &Postgres, dir: &Path) -> Postgres {
        use std::os::unix::fs::PermissionsExt;
        let bin = bindir();
        let account = primary.account;
        let data = dir.join("pg");
        std::fs::create_dir_all(dir).unwrap();
        let mut p = Some(dir);
        while let Some(d) = p {
            let mode = std::fs::metadata(d).unwrap().permissions().mode();
            if account.is_some() && mode & 0o001 == 0 {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o711)).unwrap();
            }
            p = d.parent();
        }
        if let Some((uid, gid)) = account {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
        }
        let mut c = Command::new(bin.join("pg_basebackup"));
        if let Some((uid, gid)) = account {
            c.uid(uid).gid(gid).env("HOME", dir);
        }
        let out = c
            .arg("-D")
            .arg(&data)
            .args([
                "-R",
                "-X",
                "stream",
                "--no-sync",
                "-h",
                "127.0.0.1",
                "-U",
                "dbmon",
            ])
            .args(["-p", &primary.port.to_string()])
            .output()
            .expect("run pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let log = dir.join("postgres.log");
        let file = std::fs::File::create(&log).unwrap();
        if let Some((uid, gid)) = account {
            std::os::unix::fs::chown(&log, Some(uid), Some(gid)).unwrap();
        }
        // The primary's arguments, with this standby's directory and port.
        let mut args = primary.args.clone();
        for (i, a) in primary.args.iter().enumerate() {
            if a == &primary.data.display().to_string() {
                args[i] = data.display().to_string();
            }
            if a == "-p" {
                args[i + 1] = port.to_string();
            }
        }
        let child = Postgres::spawn(&bin, account, &data, &args, file);
        let mut pg = Postgres {
            child,
            port,
            data,
            log,
            account,
            args,
        };
        pg.wait_answering();
        pg
    }

    /// Puts `lines` first in pg_hba.conf and reloads it.
    pub fn hba_first(&self, lines: &str) {
        let path = self.data.join("pg_hba.conf");
        let rest = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{lines}\n{rest}")).unwrap();
        self.psql("SELECT pg_reload_conf()");
    }

    /// Sends `signal` to the server and every backend it started (SIGSTOP:
    /// a database that hangs with its connections open).
    pub fn signal(&self, signal: i32) {
        let parent = self.child.id();
        let mut pids = vec![parent];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // pid (comm) state ppid ...: the comm may hold spaces.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(parent) {
                pids.push(pid);
            }
        }
        for pid in pids {
            unsafe {
                libc::kill(pid as i32, signal);
            }
        }
    }

    /// Stops the server (fast shutdown: sessions are cut).
    pub fn stop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            assert!(
                Instant::now() < deadline,
                "postgres does not stop: {}",
                self.log_text()
            );
            std::thread::park_timeout(Duration::from_millis(50));
        }
    }

    /// Starts it again on the same data and port; returns when it answers.
    pub fn start_again(&mut self) {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .unwrap();
        self.child = Postgres::spawn(&bindir(), self.account, &self.data, &self.args, log);
        self.wait_answering();
    }

    /// Returns once the server answers a query; panics with its log if it
    /// exits or is not ready within 30 s.
    fn wait_answering(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.try_psql("SELECT 1").is_none() {
            if let Ok(Some(s)) = self.child.try_wait() {
                panic!("postgres exited ({s}); its log:\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "postgres is not ready after 30s; its log:\n{}",
                self.log_text()
            );
            std::thread::park_timeout(Duration::from_millis(100));
        }
    }

    /// `postgresql://dbmon@127.0.0.1:PORT/dbmon`
    pub fn url(&self) -> String {
        format!("postgresql://dbmon@127.0.0.1:{}/dbmon", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs SQL with psql; returns its output (unaligned, tuples only).
    pub fn psql(&self, sql: &str) -> String {
        match self.run_psql(sql) {
            Ok(out) => out,
            Err(e) => panic!("psql {sql:?}: {e}"),
        }
    }

    /// [`Postgres::psql`], None when it fails.
    pub fn try_psql(&self, sql: &str) -> Option<String> {
        self.run_psql(sql).ok()
    }

    fn run_psql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new(bindir().join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "dbmon",
                "-d",
                "dbmon",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Whether postgres runs under its own account (the tests run as root).
    pub fn as_account(&self) -> bool {
        self.account.is_some()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Fast shutdown: backends end, shared memory is released.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::park_timeout(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
