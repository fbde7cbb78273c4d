//! The Kubernetes manifests pass the Kubernetes schemas (strict), and the
//! dbmon configurations they carry pass `dbmon config check`.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test or benchmark

mod support;

use std::path::Path;
use std::process::Command;
use support::DBMON;

const MANIFESTS: &[&str] = &[
    "namespace.yaml",
    "server.yaml",
    "server-replicas.yaml",
    "collector.yaml",
];

fn k8s(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/k8s")
        .join(file)
}

fn validate(files: &[std::path::PathBuf]) -> std::process::Output {
    Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "--quiet"])
        .args(files)
        .output()
        .expect("python3 -m kubernetes_validate (pip install kubernetes-validate; make deps installs it)")
}

#[test]
fn manifests_pass_the_kubernetes_schemas() {
    let files: Vec<_> = MANIFESTS.iter().map(|f| k8s(f)).collect();
    let out = validate(&files);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The validator does refuse a broken manifest.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    let text = std::fs::read_to_string(k8s("server.yaml"))
        .unwrap()
        .replace("containerPort: 7070", "containerPort: \"seven\"");
    std::fs::write(&broken, text).unwrap();
    assert!(!validate(&[broken]).status.success());
}

/// The `|` block under `key:` of a ConfigMap, unindented.
fn block(manifest: &str, key: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    let mut indent = 0;
    for line in manifest.lines() {
        if inside {
            let n = line.len() - line.trim_start().len();
            if !line.trim().is_empty() && n < indent {
                break;
            }
            out.push_str(line.get(indent..).unwrap_or(""));
            out.push('\n');
        } else if line.trim() == format!("{key}: |") {
            inside = true;
            indent = line.len() - line.trim_start().len() + 2;
        }
    }
    out
}

#[test]
fn their_dbmon_configurations_check() {
    let dir = tempfile::tempdir().unwrap();
    for (manifest, key) in [
        ("server.yaml", "server.yaml"),
        ("server-replicas.yaml", "server.yaml"),
        ("collector.yaml", "collector.yaml"),
    ] {
        let text = block(&std::fs::read_to_string(k8s(manifest)).unwrap(), key);
        assert!(text.contains(":"), "found the {key} block in {manifest}");
        let path = dir.path().join(key);
        std::fs::write(&path, text).unwrap();
        let out = Command::new(DBMON)
            .args(["config", "check"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{manifest}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
