//! Real receivers for the alerting tests: an HTTP endpoint that records
//! what it is sent and answers as scripted, Debian's Alertmanager, and an
//! SMTP server (aiosmtpd) writing an mbox.

use super::{Proc, free_port, wait_until};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the hook answers one request.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    Status(u16),
    /// Reads the request and never answers.
    Hang,
}

/// One request the hook received.
#[derive(Clone, Debug)]
pub struct Hit {
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub answered: Option<u16>,
}

impl Hit {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// An HTTP endpoint on loopback recording every POST.
pub struct Hook {
    pub url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
}

impl Hook {
    /// Answers the scripted answers first, then 200.
    pub fn start(script: &[Answer]) -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind hook");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let (h, s) = (hits.clone(), script.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (h, s) = (h.clone(), s.clone());
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                std::thread::spawn(move || serve(conn, &h, &s));
            }
        });
        Hook { url, hits, script }
    }

    /// The same over TLS with `cert` and `key` (PEM), on `port` of
    /// 127.0.0.1: the URL is `https://127.0.0.1:PORT/hook`.
    pub fn start_tls(port: u16, cert: &Path, key: &Path, script: &[Answer]) -> Hook {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .expect("read the hook's certificate")
            .map(|c| c.expect("a PEM certificate"))
            .collect();
        let key = PrivateKeyDer::from_pem_file(key).expect("read the hook's key");
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("the hook's certificate and key"),
        );
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind TLS hook");
        let url = format!("https://127.0.0.1:{port}/hook");
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let (h, s) = (hits.clone(), script.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (h, s, config) = (h.clone(), s.clone(), config.clone());
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                    let Ok(tls) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    // A client that refuses the certificate ends here.
                    serve(rustls::StreamOwned::new(tls, conn), &h, &s);
                });
            }
        });
        Hook { url, hits, script }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Answers `a` from now on for the next request(s) given.
    pub fn then(&self, answers: &[Answer]) {
        self.script.lock().unwrap().extend(answers.iter().copied());
    }

    /// Waits until a hit satisfies `pred`; returns it.
    pub fn wait_for(&self, within: Duration, what: &str, pred: impl Fn(&Hit) -> bool) -> Hit {
        let mut found = None;
        wait_until(within, what, || {
            found = self.hits().into_iter().find(|h| pred(h));
            found.is_some()
        });
        found.expect("found")
    }
}

fn serve(mut conn: impl Read + Write, hits: &Mutex<Vec<Hit>>, script: &Mutex<VecDeque<Answer>>) {
    let mut reader = BufReader::new(&mut conn);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut headers = BTreeMap::new();
    loop {
        let mut l = String::new();
        if reader.read_line(&mut l).unwrap_or(0) == 0 {
            return;
        }
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    drop(reader);
    let answer = script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Answer::Status(200));
    let answered = match answer {
        Answer::Status(code) => Some(code),
        Answer::Hang => None,
    };
    hits.lock().unwrap().push(Hit {
        headers,
        body,
        answered,
    });
    match answer {
        Answer::Status(code) => {
            let _ = write!(
                conn,
                "HTTP/1.1 {code} Scripted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
        Answer::Hang => {
            // Hold the connection open without a word, until the client
            // gives up (each read waits out its timeout).
            let mut sink = [0u8; 1];
            for _ in 0..12 {
                if matches!(conn.read(&mut sink), Ok(0)) {
                    break;
                }
            }
        }
    }
}

/// Debian's Alertmanager on a loopback port, alone (no cluster peers).
pub struct Alertmanager {
    pub url: String,
    _proc: Proc,
}

impl Alertmanager {
    pub fn start(dir: &Path) -> Alertmanager {
        std::fs::create_dir_all(dir).expect("alertmanager dir");
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: keep\n  group_wait: 1s\nreceivers:\n  - name: keep\n",
        )
        .expect("write alertmanager.yml");
        let port = free_port();
        let proc = Proc::spawn(
            Command::new("prometheus-alertmanager")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.path={}", dir.join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--cluster.listen-address=")
                .stdout(Stdio::null()),
            dir.join("alertmanager.log"),
        );
        let url = format!("http://127.0.0.1:{port}");
        let am = Alertmanager { url, _proc: proc };
        wait_until(Duration::from_secs(20), "Alertmanager ready", || {
            am.get("/-/ready").is_some()
        });
        am
    }

    fn get(&self, path: &str) -> Option<String> {
        let port = self.url.rsplit(':').next()?;
        let mut s = TcpStream::connect(format!("127.0.0.1:{port}")).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let (head, body) = out.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.0 200")
            .then(|| body.to_string())
            .or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_string()))
    }

    /// The alerts Alertmanager holds as active (its own API).
    pub fn alerts(&self) -> Vec<Value> {
        self.get("/api/v2/alerts")
            .and_then(|b| serde_json::from_str::<Value>(&b).ok())
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }
}

/// aiosmtpd, a real SMTP server, writing what it receives to an mbox;
/// STARTTLS required when given a certificate.
pub struct Smtp {
    pub port: u16,
    pub mbox: PathBuf,
    _proc: Proc,
}

impl Smtp {
    /// On `port` of 127.0.0.1, STARTTLS required with `cert` and `key`;
    /// with `auth` (user, password file), AUTH required too.
    pub fn start(dir: &Path, port: u16, tls: (&Path, &Path), auth: Option<(&str, &Path)>) -> Smtp {
        std::fs::create_dir_all(dir).expect("smtp dir");
        let mbox = dir.join("Maildir");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_server.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg("127.0.0.1")
            .arg(port.to_string())
            .arg(&mbox)
            .arg(tls.0)
            .arg(tls.1);
        if let Some((user, password_file)) = auth {
            cmd.arg(user).arg(password_file);
        }
        cmd.stdout(Stdio::null());
        let proc = Proc::spawn(&mut cmd, dir.join("smtp.log"));
        wait_until(Duration::from_secs(20), "SMTP server listening", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Smtp {
            port,
            mbox,
            _proc: proc,
        }
    }

    /// Every message delivered so far (the handler writes a Maildir).
    pub fn mail(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(self.mbox.join(sub)) {
                for e in rd.flatten() {
                    out.push(std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        out
    }
}
