//! `dbmon pki`: files, modes, refusal to overwrite, list, inspect, revoke.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test or benchmark

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use support::*;

#[test]
fn init_issue_list_inspect_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let p = pki.to_str().unwrap();
    let out = dbmon(&[
        "pki",
        "init",
        "--dir",
        p,
        "--trust-domain",
        "example.test",
        "--host",
        "dbmon.example.test",
        "--host",
        "10.1.2.3",
    ]);
    assert!(out.contains("spiffe://example.test/server/server"), "{out}");
    for (file, mode) in [
        ("ca.key", 0o600),
        ("server.key", 0o600),
        ("ca.crt", 0o644),
        ("server.crt", 0o644),
        ("ca.crl", 0o644),
    ] {
        let m = std::fs::metadata(pki.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(m, mode, "{file}");
    }

    // Never overwritten without --force.
    let again = Command::new(DBMON)
        .args(["pki", "init", "--dir", p])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("ca.key exists; pass --force"), "{err}");
    let again = Command::new(DBMON)
        .args(["pki", "issue", "server", "--name", "server", "--dir", p])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stderr).contains("server.key exists; pass --force"));

    let out = dbmon(&[
        "pki",
        "issue",
        "collector",
        "--name",
        "c1",
        "--ttl",
        "2d",
        "--dir",
        p,
    ]);
    assert!(
        out.contains("collector.c1.crt for spiffe://example.test/collector/c1"),
        "{out}"
    );
    let list = dbmon(&["pki", "list", "--dir", p]);
    let row = list
        .lines()
        .find(|l| l.starts_with("collector.c1.crt"))
        .unwrap_or_else(|| panic!("{list}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "spiffe://example.test/collector/c1");
    let serial = cols[2].to_string();
    assert!(
        ["1", "2"].contains(cols.last().unwrap()),
        "days left of a 2d certificate: {row}"
    );

    let inspect = dbmon(&[
        "pki",
        "inspect",
        pki.join("collector.c1.crt").to_str().unwrap(),
    ]);
    assert!(
        inspect.contains("identity:   spiffe://example.test/collector/c1"),
        "{inspect}"
    );
    assert!(inspect.contains("usage:      client auth"), "{inspect}");
    assert!(
        inspect.contains(&format!("serial:     {serial}")),
        "{inspect}"
    );
    let server = dbmon(&["pki", "inspect", pki.join("server.crt").to_str().unwrap()]);
    assert!(server.contains("usage:      server auth"), "{server}");

    dbmon(&["pki", "revoke", &serial, "--dir", p]);
    let list = dbmon(&["pki", "list", "--dir", p]);
    let row = list
        .lines()
        .find(|l| l.starts_with("collector.c1.crt"))
        .unwrap();
    assert!(row.ends_with("revoked"), "{row}");
    let bad = Command::new(DBMON)
        .args(["pki", "revoke", "not-hex", "--dir", p])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not hexadecimal"));

    // The pin printed with a token is the CA certificate's.
    let token = dbmon(&["pki", "token", "create", "--collector", "c2", "--dir", p]);
    let ca_pin = dbmon(&["pki", "inspect", pki.join("ca.crt").to_str().unwrap()]);
    let pin = ca_pin
        .lines()
        .find_map(|l| l.strip_prefix("pin:"))
        .unwrap()
        .trim();
    assert!(
        token.contains(&format!("ca pin:  {pin}")),
        "{token}\n{ca_pin}"
    );
    let m = std::fs::metadata(pki.join("tokens.json"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(
        m, 0o600,
        "the token store holds only hashes, and is private anyway"
    );
}
