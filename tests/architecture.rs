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

/// The top-level modules of a crate and the ones each names (`crate::x`),
/// outside comments and test modules.
fn module_uses(src: &std::path::Path) -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let mut out: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let first = rel.components().next().expect("a component");
            let module = first
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if module == "lib" || module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let uses = out.entry(module.clone()).or_default();
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (i, _) in line.match_indices("crate::") {
                    let rest = &line[i + "crate::".len()..];
                    let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                        group
                            .split('}')
                            .next()
                            .unwrap_or_default()
                            .split(',')
                            .map(|n| n.trim().split("::").next().unwrap_or_default())
                            .collect()
                    } else {
                        vec![
                            rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                                .next()
                                .unwrap_or_default(),
                        ]
                    };
                    for n in names {
                        if !n.is_empty() && n != module {
                            uses.insert(n.to_string());
                        }
                    }
                }
            }
        }
    }
    out
}

/// A circle of modules, if any: a path that comes back to its start.
fn circle(uses: &std::collections::BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        uses: &std::collections::BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut c = path[i..].to_vec();
            c.push(m.to_string());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in uses.get(m).into_iter().flatten() {
            if uses.contains_key(next)
                && let Some(c) = visit(next, uses, path, done)
            {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    uses.keys()
        .find_map(|m| visit(m, uses, &mut Vec::new(), &mut done))
}

/// Inside these crates, modules name each other one way only. (The config
/// crate is left out: its reader names each section's raw type and the
/// sections share the reader's raw scalars, by design.)
#[test]
fn modules_have_no_circles() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for krate in ["server", "collector", "auth", "pki", "client", "proto"] {
        if let Some(c) = circle(&module_uses(&root.join(krate).join("src"))) {
            found.push(format!("{krate}: {}", c.join(" -> ")));
        }
    }
    assert!(found.is_empty(), "module circles:\n{}", found.join("\n"));
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The client runs on people's machines, Windows among them: in it and in
/// the crates it builds on, unix-only code (file modes) sits behind
/// `#[cfg(unix)]` (or a narrower unix gate) written just above it, with a
/// path for the other platforms beside it.
#[test]
fn unix_only_code_in_the_client_and_its_crates_is_gated() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for krate in ["client", "auth", "config", "pki", "proto"] {
        rust_files(&root.join(krate).join("src"), &mut files);
    }
    files.push(root.join("src/bin/dbmon-client.rs"));
    let gate = |l: &str| {
        let l = l.trim();
        l.starts_with("#[cfg(")
            && (l.contains("unix") || l.contains("target_os = \"linux\""))
            && !l.contains("not(unix")
    };
    let mut ungated = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let unix_only = ["std::os::unix", "tokio::signal::unix", "libc::"];
            if !unix_only.iter().any(|u| line.contains(u)) || line.trim_start().starts_with("//") {
                continue;
            }
            // The gate on the item itself, or on the block it opens (a
            // function gated whole may use it in its first lines).
            let above = lines[i.saturating_sub(3)..i].iter().any(|l| gate(l));
            if !above {
                ungated.push(format!(
                    "{}:{}: {}",
                    f.strip_prefix(root).unwrap_or(f).display(),
                    i + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        ungated.is_empty(),
        "unix-only code outside a #[cfg(unix)] gate (the client must build on Windows):\n{}",
        ungated.join("\n")
    );
    assert!(files.len() > 20, "scanned only {} files", files.len());
}
