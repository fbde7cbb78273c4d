//! `dbmon local`: a local cluster on loopback, a server and a collector
//! over mutual TLS with their own CA, for trying dbmon on one machine.

use super::{load, shutdown_signal};
use anyhow::{Context, Result};
use dbmon_config::Config;
use dbmon_pki::{Ca, Role};
use std::path::PathBuf;
use std::time::Duration;

/// The user `dbmon local` invites.
pub const LOCAL_ADMIN: &str = "admin";

pub async fn local(dir: Option<PathBuf>, cockroach: bool, interval: &str) -> Result<()> {
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("dbmon-local-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir)?;
    // A fresh start each time: cluster data of an earlier run, and the
    // reports stored or spilled about it, name other ports. Users and
    // passkeys stay.
    for stale in [
        "data",
        "spill",
        "etcd1",
        "etcd2",
        "etcd3",
        "cockroach1",
        "cockroach2",
        "cockroach3",
        "pki",
    ] {
        let p = dir.join(stale);
        if p.exists() {
            std::fs::remove_dir_all(&p).with_context(|| format!("cannot clear {}", p.display()))?;
        }
    }
    let crdb = if cockroach {
        Some(crate::local::CockroachCluster::start(&dir)?)
    } else {
        None
    };
    let mut etcd = crate::local::EtcdCluster::start(&dir, 3)?;
    etcd.wait_healthy(Duration::from_secs(30))?;

    let pki = dir.join("pki");
    let ca = Ca::init(&pki, dbmon_pki::ca::DEFAULT_TRUST_DOMAIN, true)?;
    ca.issue(
        Role::Server,
        "local",
        None,
        &["localhost".into(), "127.0.0.1".into()],
        dbmon_pki::ca::SERVER_TTL,
        true,
    )?;
    ca.issue(
        Role::Collector,
        "local",
        Some("local"),
        &[],
        dbmon_pki::ca::COLLECTOR_TTL,
        true,
    )?;

    let defaults = Config::embedded_default();
    let mut yaml = format!(
        "server:\n  pki_dir: {pki}\ncollector:\n  id: local\n  pki_dir: {pki}\n  server: https://{collectors}\n\
         client:\n  server: https://{people}\n  ca_file: {pki}/ca.crt\nclusters:\n",
        pki = pki.display(),
        collectors = defaults.server.collector_listen,
        people = defaults.server.listen,
    );
    yaml.push_str(&format!(
        "  - name: local-etcd\n    kind: etcd\n    interval: {interval}\n    timeout: 1s\n    nodes: [{}]\n    labels: {{env: local}}\n",
        etcd.client_urls().join(", ")
    ));
    if let Some(c) = &crdb {
        let nodes: Vec<String> = c
            .http_ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
        yaml.push_str(&format!(
            "  - name: local-cockroachdb\n    kind: cockroachdb\n    interval: {interval}\n    timeout: 1s\n    nodes: [{}]\n    labels: {{env: local}}\n",
            nodes.join(", ")
        ));
    }
    let path = dir.join("dbmon.yaml");
    std::fs::write(&path, &yaml)?;
    let cfg = load(&path)?;
    // Someone has to sign in: an admin with a passkey, or an invite for one.
    let store = dbmon_auth::store::AuthStore::open(&cfg.server.auth.dir)?;
    let invite_ms = cfg.server.auth.invite_ttl.as_millis() as i64;
    let has_passkey = store
        .snapshot()
        .users
        .get(LOCAL_ADMIN)
        .is_some_and(|u| !u.credentials.is_empty());
    let invite = if has_passkey {
        None
    } else if store.snapshot().users.contains_key(LOCAL_ADMIN) {
        Some(store.invite(LOCAL_ADMIN, invite_ms)?)
    } else {
        Some(store.add_user(LOCAL_ADMIN, dbmon_auth::Role::Admin, vec![], invite_ms)?)
    };
    let origin = dbmon_auth::webauthn::Url::parse(&cfg.server.origin())?;
    let sign_in = match &invite {
        Some(secret) => format!(
            "Sign in first: open this one-time invite in a browser on this machine and register a passkey\n\
             for the user {LOCAL_ADMIN} (the server's certificate is signed by {pki}/ca.crt; trust it, or accept the warning):\n  \
             {}\n\
             On a remote machine (over SSH, no browser there), forward the port and open the same URL in your\n\
             own browser: passkeys need the localhost origin, which the forward keeps:\n  \
             ssh -L {port}:localhost:{port} YOU@THIS-MACHINE\n\
             then:\n  cargo run --bin dbmon-client -- --config {path} login\n",
            dbmon_auth::passkey::Passkeys::invite_url(&origin, secret),
            port = origin.port_or_known_default().unwrap_or(7070),
            pki = pki.display(),
            path = path.display()
        ),
        None => format!(
            "Sign in with the passkey of {LOCAL_ADMIN}:\n  cargo run --bin dbmon-client -- --config {} login\n",
            path.display()
        ),
    };
    let shutdown = shutdown_signal();
    let server = tokio::spawn(dbmon_server::serve_deployment(
        cfg.clone(),
        shutdown.clone(),
    ));
    let collector = tokio::spawn(dbmon_collector::run(cfg.clone(), shutdown.clone()));
    println!(
        "\ndbmon is watching a local 3-member etcd cluster{}, over mutual TLS with certificates from its own CA.\n\
         configuration: {path}\n\
         data and logs:  {dir}\n\n\
         {sign_in}\n\
         In another terminal:\n  \
         cargo run --bin dbmon-client -- --config {path} watch\n  \
         cargo run --bin dbmon-client -- --config {path} status\n  \
         cargo run --bin dbmon-client -- --config {path} get cluster local-etcd\n\n\
         Kill an etcd member to see it degrade: pkill -f 'name etcd2'\n\
         Ctrl-C stops everything.\n",
        if crdb.is_some() {
            " and a 3-node CockroachDB cluster"
        } else {
            ""
        },
        path = path.display(),
        dir = dir.display()
    );
    let r = server.await?;
    let c = collector.await?;
    drop(etcd);
    drop(crdb);
    r?;
    c?;
    Ok(())
}
