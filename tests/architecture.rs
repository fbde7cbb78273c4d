//! The dependency rules of ARCHITECTURE.md, checked against the manifests.

use std::collections::BTreeSet;

fn dbmon_deps(manifest: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(manifest).unwrap_or_else(|e| panic!("{manifest}: {e}"));
    let mut section = String::new();
    let mut deps = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        // Normal dependencies only: dev-dependencies may reach further.
        if section == "[dependencies]"
            && let Some(name) = line.split(['.', ' ', '=']).next()
            && name.starts_with("dbmon-")
        {
            deps.insert(name.to_string());
        }
    }
    deps
}

#[test]
fn crates_depend_only_downward() {
    let root = env!("CARGO_MANIFEST_DIR");
    let allowed: &[(&str, &[&str])] = &[
        (
            "server",
            &["dbmon-auth", "dbmon-config", "dbmon-pki", "dbmon-proto"],
        ),
        ("collector", &["dbmon-config", "dbmon-pki", "dbmon-proto"]),
        (
            "client",
            &["dbmon-auth", "dbmon-config", "dbmon-pki", "dbmon-proto"],
        ),
        ("config", &[]),
        ("pki", &[]),
        ("auth", &[]),
        ("proto", &[]),
    ];
    let mut wrong = Vec::new();
    for (krate, ok) in allowed {
        let deps = dbmon_deps(&format!("{root}/{krate}/Cargo.toml"));
        for d in deps {
            if !ok.contains(&d.as_str()) {
                wrong.push(format!("{krate} depends on {d}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependency rules of ARCHITECTURE.md broken: {wrong:?}"
    );
}
