//! `dbmon config check` on YAML-defined clusters (`kind: http`): every
//! placeholder and function is accepted, and each bad expression or
//! definition is refused at its file, line and column with what was expected.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

fn check(yaml: &str) -> (i32, String) {
    let (code, out, err) = support::config_check(yaml);
    (code, out + &err)
}

const HEAD: &str = "clusters:
  - name: a
    kind: http
    nodes: [127.0.0.1:1, 127.0.0.1:2]
    requests:
      r: {path: /r, format: json}
      m: {path: /m, format: prometheus}
      t: {path: /t}
    checks:
";

/// One check `x` reading `request` with `field: 'expr'` at line 12.
fn with_expr(request: &str, field: &str, expr: &str) -> String {
    format!(
        "{HEAD}      x:\n        request: {request}\n        {field}: '{}'\n",
        expr.replace('\'', "''")
    )
}

#[test]
fn every_placeholder_and_function_is_accepted() {
    let mut yaml = HEAD.to_string();
    for (i, (req, value, cond)) in [
        ("t", "[STATUS]", "!= 200"),
        ("t", "[RESPONSE_TIME]", "> 300ms"),
        ("t", "[CERTIFICATE_EXPIRATION]", "< 30d"),
        ("t", "[BODY]", "!= \"ok\""),
        ("r", "[BODY].data[0].state", "== pat(\"^(ok|ready)$\")"),
        ("r", "len([BODY].items)", "> 2"),
        ("r", "has([BODY].items)", "== false"),
        ("m", "sum([METRIC].x{a=\"1\"})", "> 0"),
        ("m", "min([METRIC].x{a!=\"1\"})", "> 0"),
        ("m", "max([METRIC].x{a=~\"1.*\"})", "> 0"),
        ("m", "avg([METRIC].x{a!~\"1\"})", "> 0"),
        ("m", "count([METRIC].x)", "> 0"),
        ("m", "rate(sum([METRIC].x), 10m)", "> 0"),
        ("m", "label([METRIC].build, \"version\")", "!= \"1\""),
        ("m", "[METRIC].a / [METRIC].b * 100", "> 80%"),
        ("m", "[METRIC].expiry - [NOW]", "< 7d"),
        ("r", "[BODY].n", "< [NODES] - 1"),
        ("r", "[BODY].used", "> 1GiB"),
    ]
    .iter()
    .enumerate()
    {
        yaml.push_str(&format!(
            "      c{i}: {{request: {req}, value: '{value}', warn: '{cond}'}}\n"
        ));
    }
    yaml.push_str(
        "      v: {request: r, value: '[BODY].version', cluster: distinct, warn: '> 1'}\n",
    );
    yaml.push_str(
        "      q: {request: r, value: '[STATUS] == 200', cluster: count_ok, crit: '< [NODES]'}\n",
    );
    yaml.push_str("      quorum: {request: t, crit: '[STATUS] != 200'}\n");
    let (code, out) = check(&yaml);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn the_presets_pass_as_they_are_and_with_overrides() {
    for preset in ["envoy", "istio", "nats"] {
        let (code, out) = check(&format!(
            "clusters:\n  - name: p\n    preset: {preset}\n    nodes: [127.0.0.1:1]\n    interval: 30s\n    checks:\n      up: {{enabled: false}}\n      extra: {{request: {}, crit: '[STATUS] >= 500'}}\n",
            match preset {
                "envoy" => "ready",
                "istio" => "metrics",
                _ => "healthz",
            }
        ));
        assert_eq!(code, 0, "{preset}: {out}");
    }
}

/// (request, field, expression, 1-based column of the error, words)
const GRAMMAR: &[(&str, &str, &str, u64, &str)] = &[
    ("t", "value", "", 17, "empty expression"),
    ("t", "value", "[STATUS] ==", 28, "expected a value"),
    ("t", "crit", "[STATUS] = 200", 25, "to compare, write =="),
    (
        "t",
        "crit",
        "[STATUS] != \"x\"",
        28,
        "cannot compare a number with text",
    ),
    ("t", "value", "[FOO]", 17, "unknown placeholder [FOO]"),
    ("r", "value", "[BODY].", 24, "expected a field name after ."),
    ("r", "value", "[BODY][x]", 24, "expected an index"),
    ("m", "value", "[METRIC]", 25, "a . and a metric name"),
    (
        "m",
        "value",
        "[METRIC].x{a==\"1\"}",
        29,
        "a label matcher takes =, not ==",
    ),
    ("m", "value", "[METRIC].x{a=1}", 30, "a quoted label value"),
    (
        "m",
        "value",
        "[METRIC].x{a=~\"(\"}",
        31,
        "not a regular expression",
    ),
    ("m", "value", "[METRIC].x{a=\"1\"", 33, "a , or a closing }"),
    ("r", "value", "len(", 21, "expected a value"),
    ("t", "value", "len([STATUS])", 21, "len() takes"),
    (
        "t",
        "value",
        "foo([STATUS])",
        17,
        "unknown function \"foo\"",
    ),
    ("t", "crit", "[BODY] == ok", 26, "text goes in quotes"),
    ("t", "value", "sum([STATUS])", 21, "sum() takes"),
    (
        "m",
        "value",
        "rate([METRIC].x, 5)",
        34,
        "window is a duration",
    ),
    (
        "m",
        "value",
        "label([METRIC].x)",
        17,
        "takes a selector and a label name",
    ),
    (
        "r",
        "crit",
        "[BODY].a == pat(\"(\")",
        32,
        "not a regular expression",
    ),
    ("r", "crit", "[BODY].a > pat(\"x\")", 25, "not >"),
    ("t", "crit", "[STATUS] == 200 == 200", 32, "do not chain"),
    ("t", "value", "\"open", 17, "never closed"),
    ("t", "crit", "[STATUS] & 1", 25, "write &&"),
    ("t", "value", "5parsecs", 17, "unknown unit"),
    ("t", "crit", "[RESPONSE_TIME] > 300", 34, "e.g. 300ms"),
    ("t", "crit", "[STATUS] && true", 16, "&& joins conditions"),
    ("t", "value", "(1 + 2", 23, "a closing )"),
    ("t", "value", "[STATUS] 200", 26, "expected an operator"),
    (
        "t",
        "value",
        "[RESPONSE_TIME] + 1KiB",
        35,
        "cannot add a duration and a size",
    ),
    ("t", "crit", "[STATUS]", 16, "must be true or false"),
    ("t", "crit", "> 5", 16, "this check has no value:"),
    ("t", "value", "@", 17, "unexpected character"),
];

#[test]
fn each_bad_expression_is_refused_at_its_column() {
    assert!(GRAMMAR.len() >= 30);
    for (req, field, expr, col, words) in GRAMMAR {
        let (code, out) = check(&with_expr(req, field, expr));
        assert_eq!(code, 1, "{expr:?} accepted:\n{out}");
        let want = format!("FILE:12:{col}: clusters[0].checks.x.{field}: ");
        let line = out
            .lines()
            .find(|l| l.contains(&format!("checks.x.{field}")))
            .unwrap_or_else(|| panic!("{expr:?}: no error for the field in:\n{out}"));
        assert!(
            line.starts_with(&want),
            "{expr:?}: want {want:?}, got:\n{out}"
        );
        assert!(line.contains(words), "{expr:?}: want {words:?} in:\n{out}");
    }
}

/// (what, the check's or cluster's extra YAML, the error expected)
const DEFINITIONS: &[(&str, &str, &str)] = &[
    (
        "unknown request",
        "      x: {request: nope, crit: '[STATUS] != 200'}\n",
        "FILE:10:20: clusters[0].checks.x.request: unknown request \"nope\"; expected one of: m, r, t",
    ),
    (
        "no request",
        "      x: {crit: '[STATUS] != 200'}\n",
        "clusters[0].checks.x.request: expected request: the name of the request",
    ),
    (
        "metric on a json request",
        "      x: {request: r, value: '[METRIC].up', warn: '< 1'}\n",
        "[METRIC].up reads [METRIC] but request \"r\" has format: json; set format: prometheus on the request",
    ),
    (
        "body path on a text request",
        "      x: {request: t, crit: '[BODY].ok == false'}\n",
        "reads a [BODY] path but request \"t\" has format: text; set format: json on the request",
    ),
    (
        "nothing to judge",
        "      x: {request: t}\n",
        "a check needs value:, warn: or crit:",
    ),
    (
        "a number where a condition belongs",
        "      x: {request: t, value: '[STATUS]', warn: 5}\n",
        "FILE:10:48: clusters[0].checks.x.warn: expected a condition in quotes, such as \"> 5\"",
    ),
    (
        "a cluster-wide value without a threshold",
        "      x: {request: r, value: '[BODY].v', cluster: distinct}\n",
        "a cluster-wide check needs warn: or crit:",
    ),
    (
        "an answer in a cluster-wide threshold",
        "      x: {request: r, value: '[BODY].v', cluster: distinct, warn: '> [STATUS]'}\n",
        "reads one node's answer, but this condition judges the cluster-wide value",
    ),
    (
        "count_ok of a number",
        "      x: {request: t, value: '[STATUS]', cluster: count_ok, warn: '< 2'}\n",
        "count_ok counts nodes whose value is true",
    ),
    (
        "unknown aggregate",
        "      x: {request: t, value: '[STATUS]', cluster: median, warn: '> 1'}\n",
        "unknown cluster aggregate \"median\"; expected sum, min, max, distinct or count_ok",
    ),
    (
        "quorum with warn",
        "      quorum: {request: t, warn: '[STATUS] != 200'}\n",
        "quorum takes request: and crit: only",
    ),
    (
        "unknown field",
        "      x: {request: t, critical: '[STATUS] != 200'}\n",
        "unknown field `critical`",
    ),
    (
        "a unit that does not fit",
        "      x: {request: t, value: '[RESPONSE_TIME]', warn: '> 1s', unit: GiB}\n",
        "the value is a duration, so unit \"GiB\" does not fit",
    ),
];

#[test]
fn each_bad_definition_is_refused_where_it_is_written() {
    for (what, extra, want) in DEFINITIONS {
        let (code, out) = check(&format!("{HEAD}{extra}"));
        assert_eq!(code, 1, "{what}: accepted:\n{out}");
        assert!(out.contains(want), "{what}: want {want:?} in:\n{out}");
    }
}

#[test]
fn requests_presets_and_kinds_are_checked() {
    for (what, yaml, want) in [
        (
            "unknown preset",
            "clusters:\n  - name: a\n    preset: consul\n    nodes: [127.0.0.1:1]\n",
            "FILE:3:13: clusters[0].preset: unknown preset \"consul\"; expected one of: envoy, istio, nats",
        ),
        (
            "a preset of another kind",
            "clusters:\n  - name: a\n    preset: nats\n    kind: etcd\n    nodes: [127.0.0.1:1]\n",
            "FILE:4:11: clusters[0].kind: preset \"nats\" defines a cluster of kind \"http\"; remove kind: or the preset",
        ),
        (
            "neither kind nor preset",
            "clusters:\n  - name: a\n    nodes: [127.0.0.1:1]\n",
            "clusters[0].kind: expected kind: one of cockroachdb, etcd, http, postgresql, redis, or preset: one of envoy, istio, nats",
        ),
        (
            "requests on etcd",
            "clusters:\n  - name: a\n    kind: etcd\n    nodes: [127.0.0.1:1]\n    requests:\n      r: {path: /r}\n",
            "FILE:6:7: clusters[0].requests: kind \"etcd\" does not use requests",
        ),
        (
            "a definition on a built-in check",
            "clusters:\n  - name: a\n    kind: etcd\n    nodes: [127.0.0.1:1]\n    checks:\n      db_size: {value: '[STATUS]'}\n",
            "clusters[0].checks.db_size.value: value: belongs to checks defined in YAML (kind: http)",
        ),
        (
            "http without requests",
            "clusters:\n  - name: a\n    kind: http\n    nodes: [127.0.0.1:1]\n",
            "clusters[0].requests: kind http needs requests:",
        ),
        (
            "a path without a slash",
            "clusters:\n  - name: a\n    kind: http\n    nodes: [127.0.0.1:1]\n    requests:\n      r: {path: ready}\n    checks:\n      up: {request: r, crit: '[STATUS] != 200'}\n",
            "FILE:6:17: clusters[0].requests.r.path: \"ready\" is not a path; expected one starting with /",
        ),
        (
            "an unknown method",
            "clusters:\n  - name: a\n    kind: http\n    nodes: [127.0.0.1:1]\n    requests:\n      r: {path: /r, method: FETCH}\n    checks:\n      up: {request: r, crit: '[STATUS] != 200'}\n",
            "clusters[0].requests.r.method: unknown method \"FETCH\"",
        ),
        (
            "an unknown format",
            "clusters:\n  - name: a\n    kind: http\n    nodes: [127.0.0.1:1]\n    requests:\n      r: {path: /r, format: xml}\n    checks:\n      up: {request: r, crit: '[STATUS] != 200'}\n",
            "clusters[0].requests.r.format: unknown format \"xml\"; expected text, json or prometheus",
        ),
        (
            "an inline token",
            "clusters:\n  - name: a\n    kind: http\n    nodes: [127.0.0.1:1]\n    requests:\n      r: {path: /r, headers: {X-Api-Key: abc123}}\n    checks:\n      up: {request: r, crit: '[STATUS] != 200'}\n",
            "clusters[0].requests.r.headers.X-Api-Key: secrets are never written inline; expected {file: PATH} or {env: VARIABLE}",
        ),
        (
            "an error in an override of a preset's check",
            "clusters:\n  - name: a\n    preset: nats\n    nodes: [127.0.0.1:1]\n    checks:\n      routes: {warn: '< two'}\n",
            "FILE:6:25: clusters[0].checks.routes.warn: unexpected word \"two\"",
        ),
    ] {
        let (code, out) = check(yaml);
        assert_eq!(code, 1, "{what}: accepted:\n{out}");
        assert!(out.contains(want), "{what}: want {want:?} in:\n{out}");
        assert!(
            !out.contains("abc123"),
            "{what}: the secret is printed:\n{out}"
        );
    }
}
