//! The README's table of checks is the registry's: every kind and check
//! the collector offers is there with its default thresholds, and nothing
//! else is.

use dbmon_collector::registry::REGISTRY;
use dbmon_config::Direction;
use std::collections::BTreeMap;

fn num(v: f64) -> String {
    dbmon_collector::connector::fmt_num(v)
}

#[test]
fn the_readme_lists_every_check_of_the_registry_with_its_defaults() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("### Checks")
        .nth(1)
        .expect("a ### Checks section")
        .split("\n#")
        .next()
        .unwrap_or_default();
    // | kind | `check` | default | meaning |
    let mut rows: BTreeMap<(String, String), String> = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 5 || !cells[2].starts_with('`') {
            continue;
        }
        let key = (cells[1].to_string(), cells[2].trim_matches('`').to_string());
        assert!(
            rows.insert(key.clone(), cells[3].to_string()).is_none(),
            "{key:?} twice in the README"
        );
    }
    let mut problems = Vec::new();
    for reg in REGISTRY {
        for spec in reg.checks {
            let key = (reg.kind.to_string(), spec.name.to_string());
            let Some(default) = rows.remove(&key) else {
                problems.push(format!("{key:?} is missing from the README's table"));
                continue;
            };
            let op = match spec.direction {
                Direction::Above => ">",
                Direction::Below => "<",
            };
            let mut want = Vec::new();
            if let Some(w) = spec.warn {
                want.push(format!("warn {op} {}", num(w)));
            }
            if let Some(c) = spec.crit {
                want.push(format!("crit {op} {}", num(c)));
            }
            for w in &want {
                if !default.contains(w.as_str()) {
                    problems.push(format!(
                        "{key:?}: the README says {default:?}, expected {w:?}"
                    ));
                }
            }
            if want.is_empty() && !default.is_empty() {
                problems.push(format!(
                    "{key:?}: the README gives defaults {default:?}, the registry none"
                ));
            }
        }
    }
    for key in rows.keys() {
        problems.push(format!("{key:?} is in the README but not in the registry"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The cluster entries shown under "Connect your cluster" are valid, and so
/// are the presets and the YAML-defined cluster they show.
#[test]
fn the_connect_your_cluster_examples_pass_config_check() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("## Connect your cluster")
        .nth(1)
        .expect("a Connect your cluster section")
        .split("\n## ")
        .next()
        .unwrap_or_default();
    let blocks: Vec<&str> = section
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect();
    assert_eq!(blocks.len(), 4, "four YAML examples");
    let mut yaml = String::new();
    for b in blocks {
        yaml.push_str(b.trim_start_matches("clusters:\n"));
    }
    let yaml = format!("clusters:\n{yaml}");
    let cfg = dbmon_config::Config::parse(
        &yaml,
        std::path::Path::new("README.md"),
        &dbmon_collector::Registry,
    )
    .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let kinds: Vec<&str> = cfg.clusters.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["etcd", "postgresql", "redis", "http", "http", "http"]
    );
    let billing = cfg.clusters.iter().find(|c| c.name == "billing");
    let def = billing
        .and_then(|c| c.definition.as_ref())
        .expect("billing defined");
    assert_eq!(def.checks.len(), 5);
}
