//! Local clusters on loopback, for trying dbmon and for its tests: a
//! 3-member etcd cluster from Debian's `etcd-server` package, and a 3-node
//! CockroachDB cluster when a `cockroach` binary is on PATH.

use anyhow::{Context, Result, bail};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Makes `cmd`'s process die with the thread that starts it, so that a
/// killed `dbmon local` (or test) leaves no cluster member behind.
fn die_with_parent(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// A TCP port free on 127.0.0.1 now, for a process started next to take.
///
/// Chosen at random below Linux's ephemeral range (32768 and up), where the
/// OS never hands out the local port of an outgoing connection: a port the
/// OS picked (`bind :0`) and released could be taken by any connection
/// opened before the process binds it, and an etcd member that finds its
/// port taken exits. Falls back to the OS's choice if nothing below is free.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    for _ in 0..64 {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let port = 20_000 + (random % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Finds a program on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// One member of a local etcd cluster.
pub struct EtcdMember {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    child: Option<Child>,
}

/// A local etcd cluster whose members can be killed and restarted.
pub struct EtcdCluster {
    dir: PathBuf,
    binary: PathBuf,
    initial_cluster: String,
    tls: Option<EtcdTls>,
    pub members: Vec<EtcdMember>,
    /// Whether the cluster has answered healthy once: until then, a member
    /// that finds its port taken moves the cluster to new ports.
    ever_healthy: bool,
}

/// TLS on the client URLs, with client-certificate authentication.
#[derive(Clone, Debug)]
pub struct EtcdTls {
    /// CA that clients' certificates must chain to.
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl EtcdCluster {
    /// Starts `n` members with data under `dir` on free loopback ports.
    pub fn start(dir: &Path, n: usize) -> Result<EtcdCluster> {
        Self::start_with(dir, n, None)
    }

    /// Like [`EtcdCluster::start`], with HTTPS client URLs that require a
    /// client certificate (`--client-cert-auth`) when `tls` is given.
    pub fn start_with(dir: &Path, n: usize, tls: Option<EtcdTls>) -> Result<EtcdCluster> {
        let binary = which("etcd").context(
            "no `etcd` on PATH: install Debian's etcd-server package (sudo apt-get install etcd-server)",
        )?;
        let members: Vec<EtcdMember> = (1..=n)
            .map(|i| EtcdMember {
                name: format!("etcd{i}"),
                client_port: 0,
                peer_port: 0,
                child: None,
            })
            .collect();
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut cluster = EtcdCluster {
            dir: dir.to_path_buf(),
            binary,
            initial_cluster: String::new(),
            tls,
            members,
            ever_healthy: false,
        };
        cluster.spawn_all_on_new_ports()?;
        Ok(cluster)
    }

    /// Every member (stopped first, its data gone) started afresh on ports
    /// free now.
    fn spawn_all_on_new_ports(&mut self) -> Result<()> {
        for i in 0..self.members.len() {
            self.kill(i);
            let _ = std::fs::remove_dir_all(self.dir.join(&self.members[i].name));
            self.members[i].client_port = free_port();
            self.members[i].peer_port = free_port();
        }
        self.initial_cluster = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        for i in 0..self.members.len() {
            self.spawn(i)?;
        }
        Ok(())
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Client URLs of every member.
    pub fn client_urls(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("{}://127.0.0.1:{}", self.scheme(), m.client_port))
            .collect()
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let m = &self.members[i];
        let data = self.dir.join(&m.name);
        let log = std::fs::File::create(self.dir.join(format!("{}.log", m.name)))?;
        let client = format!("{}://127.0.0.1:{}", self.scheme(), m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let mut cmd = Command::new(&self.binary);
        if let Some(t) = &self.tls {
            cmd.arg("--client-cert-auth")
                .arg("--trusted-ca-file")
                .arg(&t.ca_file)
                .arg("--cert-file")
                .arg(&t.cert_file)
                .arg("--key-file")
                .arg(&t.key_file);
        }
        let child = die_with_parent(&mut cmd)
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&data)
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(&self.initial_cluster)
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--initial-cluster-token")
            .arg("dbmon-local")
            .arg("--heartbeat-interval")
            .arg("100")
            .arg("--election-timeout")
            .arg("1000")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// Kills member `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data directory.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.kill(i);
        self.spawn(i)
    }

    /// Waits until every running member answers `/health` with health true.
    /// Before the cluster was ever healthy, a member that found one of its
    /// ports taken (by another process between choosing and binding it)
    /// moves the whole cluster to new ports, twice at most.
    pub fn wait_healthy(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut moves = 0;
        loop {
            let mut all = true;
            let mut exited = None;
            for (i, m) in self.members.iter_mut().enumerate() {
                if let Some(c) = m.child.as_mut()
                    && let Ok(Some(status)) = c.try_wait()
                {
                    exited = Some((i, status));
                    break;
                }
                let ready = if self.tls.is_some() {
                    // The member's certificate demands ours; an open port will do here.
                    std::net::TcpStream::connect(("127.0.0.1", m.client_port)).is_ok()
                } else {
                    http_ok(m.client_port, "/health")
                };
                if m.child.is_some() && !ready {
                    all = false;
                }
            }
            if let Some((i, status)) = exited {
                let log = self.dir.join(format!("{}.log", self.members[i].name));
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if !self.ever_healthy && moves < 2 && text.contains("address already in use") {
                    moves += 1;
                    self.spawn_all_on_new_ports()?;
                    continue;
                }
                let tail: Vec<&str> = text.lines().rev().take(3).collect();
                bail!(
                    "etcd member {} exited ({status}); its log {} ends: {}",
                    i + 1,
                    log.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                );
            }
            if all {
                self.ever_healthy = true;
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "etcd cluster not healthy after {timeout:?}; logs in {}",
                    self.dir.display()
                );
            }
            std::thread::park_timeout(Duration::from_millis(100));
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// Whether GET `path` on 127.0.0.1:`port` answers 200 with `"health":"true"`
/// or any 200 for other paths. Plain blocking HTTP/1.0, enough for loopback.
fn http_ok(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_millis(300),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.")
        && buf.contains(" 200 ")
        && (path != "/health" || buf.contains("\"true\""))
}

/// The `cockroach` binary on PATH, or what to do without one.
pub fn cockroach_binary() -> Result<PathBuf> {
    which("cockroach").context(
        "no `cockroach` binary on PATH. CockroachDB is not packaged by Debian: download it from \
         cockroachlabs.com, put it on PATH, and run again (or leave out --cockroach)",
    )
}

/// A local CockroachDB cluster (`cockroach start --insecure`), when the
/// binary is on PATH.
pub struct CockroachCluster {
    children: Vec<Child>,
    pub http_ports: Vec<u16>,
}

impl CockroachCluster {
    /// Starts 3 insecure nodes on loopback and initializes the cluster.
    pub fn start(dir: &Path) -> Result<CockroachCluster> {
        let binary = cockroach_binary()?;
        let sql: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let http: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let join = sql
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut children = Vec::new();
        for i in 0..3 {
            let log = std::fs::File::create(dir.join(format!("cockroach{}.log", i + 1)))?;
            children.push(
                die_with_parent(&mut Command::new(&binary))
                    .args(["start", "--insecure", "--listen-addr"])
                    .arg(format!("127.0.0.1:{}", sql[i]))
                    .arg("--http-addr")
                    .arg(format!("127.0.0.1:{}", http[i]))
                    .arg("--join")
                    .arg(&join)
                    .arg("--store")
                    .arg(dir.join(format!("cockroach{}", i + 1)))
                    .stdin(Stdio::null())
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    .spawn()?,
            );
        }
        let status = Command::new(&binary)
            .args(["init", "--insecure", "--host"])
            .arg(format!("127.0.0.1:{}", sql[0]))
            .status()?;
        if !status.success() {
            bail!("cockroach init failed; logs in {}", dir.display());
        }
        Ok(CockroachCluster {
            children,
            http_ports: http,
        })
    }
}

impl Drop for CockroachCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
