//! Ready-made cluster definitions (`preset: NAME`), shipped in
//! deploy/presets/ and built into the binary. An entry's own fields win:
//! its `requests:` replace the preset's of the same name, each field of its
//! `checks:` entries replaces the preset's (`enabled: false` turns one off),
//! and new names are added.

use crate::cluster::{RawCheck, RawCluster};
use crate::http::RawRequest;
use crate::validate::Validator;
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};
use std::collections::BTreeMap;

const PRESETS: &[(&str, &str)] = &[
    ("envoy", include_str!("../../deploy/presets/envoy.yaml")),
    ("istio", include_str!("../../deploy/presets/istio.yaml")),
    ("nats", include_str!("../../deploy/presets/nats.yaml")),
];

/// The names of every preset.
pub fn names() -> Vec<&'static str> {
    PRESETS.iter().map(|(n, _)| *n).collect()
}

/// The YAML of preset `name`.
pub fn text(name: &str) -> Option<&'static str> {
    PRESETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPreset {
    #[allow(dead_code)]
    about: String,
    kind: Spanned<String>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    requests: BTreeMap<String, Spanned<RawRequest>>,
    checks: BTreeMap<String, Spanned<Option<RawCheck>>>,
}

/// Fills `rc` from its preset. Whatever comes from the preset is located
/// at the `preset:` line, so an error it causes points there.
pub(crate) fn apply(v: &mut Validator<'_>, rc: &mut RawCluster, field: &str) {
    let Some(p) = rc.preset.clone() else {
        return;
    };
    let name = p.value.trim();
    let Some(text) = text(name) else {
        v.err(
            &p,
            &format!("{field}.preset"),
            format!(
                "unknown preset {name:?}; expected one of: {}",
                names().join(", ")
            ),
        );
        return;
    };
    let preset: RawPreset = match serde_saphyr::from_str(text) {
        Ok(p) => p,
        Err(e) => {
            v.err(
                &p,
                &format!("{field}.preset"),
                format!("preset {name:?} cannot be read: {e}"),
            );
            return;
        }
    };
    let loc = p.referenced;
    let here = |mut s: Spanned<String>| {
        s.referenced = loc;
        s
    };
    match &rc.kind {
        None => rc.kind = Some(here(preset.kind)),
        Some(k) if k.value != preset.kind.value => {
            let msg = format!(
                "preset {name:?} defines a cluster of kind {:?}; remove kind: or the preset",
                preset.kind.value
            );
            v.err(k, &format!("{field}.kind"), msg);
        }
        Some(_) => {}
    }
    if rc.interval.is_none() {
        rc.interval = preset.interval.map(here);
    }
    if rc.timeout.is_none() {
        rc.timeout = preset.timeout.map(here);
    }
    let requests = rc.requests.get_or_insert_with(|| empty(loc));
    for (n, mut r) in preset.requests {
        r.referenced = loc;
        r.value.relocate(loc);
        requests.value.entry(n).or_insert(r);
    }
    let checks = rc.checks.get_or_insert_with(|| empty(loc));
    for (n, c) in preset.checks {
        let mut base = c.value.unwrap_or_default();
        base.relocate(loc);
        match checks.value.get_mut(&n) {
            Some(own) => {
                if let Some(over) = own.value.take() {
                    base.overlay(over);
                }
                own.value = Some(base);
            }
            None => {
                checks.value.insert(
                    n,
                    Spanned {
                        value: Some(base),
                        referenced: loc,
                        defined: loc,
                    },
                );
            }
        }
    }
}

fn empty<T>(loc: Location) -> Spanned<BTreeMap<String, T>> {
    Spanned {
        value: BTreeMap::new(),
        referenced: loc,
        defined: loc,
    }
}
