//! Clusters defined in YAML alone (`kind: http`): the requests to send to
//! every node and the checks over their answers, written in the check
//! language of [`crate::expr`] and compiled here, once.

use crate::cluster::{RawCheck, RawCluster};
use crate::expr::{self, Context, Dim, ExprError, Expression, Node, Place, Ty};
use crate::raw::{RawSecret, Scalar};
use crate::secret::{HeaderValue, SecretRef};
use crate::validate::Validator;
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};
use std::collections::BTreeMap;
use std::time::Duration;

/// Largest answer read by default; a larger one is an error, not a hang.
pub const DEFAULT_MAX_BODY: u64 = 4 << 20;

/// The requests and checks of one YAML-defined cluster.
#[derive(Debug, Clone)]
pub struct Definition {
    pub requests: BTreeMap<String, Request>,
    pub checks: BTreeMap<String, DefinedCheck>,
    /// How many `rate()` calls the checks hold (each keeps its history).
    pub rate_slots: usize,
}

/// One request sent to every node at every poll.
#[derive(Debug, Clone)]
pub struct Request {
    /// Path and query, starting with `/`.
    pub path: String,
    pub method: String,
    pub headers: Vec<(String, HeaderValue)>,
    pub body: Option<RequestBody>,
    /// Overrides the cluster's timeout.
    pub timeout: Option<Duration>,
    pub format: Format,
    pub max_body: u64,
    /// The metric families the checks read from this answer (prometheus).
    pub metrics: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum RequestBody {
    Text(String),
    Secret(SecretRef),
}

/// How an answer is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Prometheus,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
            Format::Prometheus => "prometheus",
        }
    }
}

/// One check: a value read from one request's answer, judged by
/// conditions, per node or over the cluster.
#[derive(Debug, Clone)]
pub struct DefinedCheck {
    pub request: String,
    pub value: Option<Expression>,
    pub warn: Option<Expression>,
    pub crit: Option<Expression>,
    /// The unit reported, and how many base units (seconds, bytes) one of
    /// it is.
    pub unit: String,
    pub scale: f64,
    pub cluster: Option<Aggregate>,
    pub about: Option<String>,
    /// The cluster's health is unknown while this check is.
    pub essential: bool,
}

/// How node values make the cluster's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Sum,
    Min,
    Max,
    /// How many different values the nodes report (versions, say).
    Distinct,
    /// How many nodes' value is true.
    CountOk,
}

impl Aggregate {
    pub fn name(self) -> &'static str {
        match self {
            Aggregate::Sum => "sum",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
            Aggregate::Distinct => "distinct",
            Aggregate::CountOk => "count_ok",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRequest {
    pub(crate) path: Spanned<String>,
    pub(crate) method: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, Spanned<RawSecret>>,
    pub(crate) body: Option<Spanned<RawSecret>>,
    pub(crate) timeout: Option<Spanned<String>>,
    pub(crate) format: Option<Spanned<String>>,
    pub(crate) max_body: Option<Spanned<String>>,
}

impl RawRequest {
    /// Points every location at `loc` (the `preset:` line).
    pub(crate) fn relocate(&mut self, loc: Location) {
        self.path.referenced = loc;
        for s in [
            &mut self.method,
            &mut self.timeout,
            &mut self.format,
            &mut self.max_body,
        ]
        .into_iter()
        .flatten()
        {
            s.referenced = loc;
        }
        for h in self.headers.values_mut() {
            h.referenced = loc;
        }
        if let Some(b) = &mut self.body {
            b.referenced = loc;
        }
    }
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "HEAD", "OPTIONS", "PATCH", "DELETE"];

impl Validator<'_> {
    /// The requests and checks of a YAML-defined cluster.
    pub(crate) fn definition(&mut self, rc: &RawCluster, field: &str) -> Option<Definition> {
        let before = self.errors.len();
        let mut requests = BTreeMap::new();
        match &rc.requests {
            Some(r) if !r.value.is_empty() => {
                for (name, raw) in &r.value {
                    if let Some(req) = self.request(name, raw, &format!("{field}.requests.{name}")) {
                        requests.insert(name.clone(), req);
                    }
                }
            }
            Some(r) => self.err(
                r,
                &format!("{field}.requests"),
                "expected at least one request, e.g. ready: {path: /ready}",
            ),
            None => self.error_at(
                rc.kind_location(),
                format!("{field}.requests"),
                "kind http needs requests: the requests to send to every node, e.g. requests: {ready: {path: /ready}}",
            ),
        }
        let mut checks = BTreeMap::new();
        let mut ctx_slots = 0usize;
        match &rc.checks {
            Some(c) if !c.value.is_empty() => {
                for (name, entry) in &c.value {
                    let check_field = format!("{field}.checks.{name}");
                    if !crate::cluster::valid_name(name) {
                        self.err(
                            entry,
                            &check_field,
                            "expected a check name of letters, digits, '-', '_' or '.'",
                        );
                        continue;
                    }
                    let raw = entry.value.clone().unwrap_or_default();
                    let enabled = raw
                        .enabled
                        .as_ref()
                        .and_then(|e| self.flag(e, &format!("{check_field}.enabled")))
                        .unwrap_or(true);
                    if !enabled {
                        continue;
                    }
                    if let Some(chk) = self.defined_check(
                        name,
                        &raw,
                        entry.referenced,
                        &check_field,
                        &requests,
                        rc,
                        &mut ctx_slots,
                    ) {
                        checks.insert(name.clone(), chk);
                    }
                }
            }
            Some(c) => self.err(
                c,
                &format!("{field}.checks"),
                "expected at least one check, e.g. up: {request: ready, crit: \"[STATUS] != 200\"}",
            ),
            None => self.error_at(
                rc.kind_location(),
                format!("{field}.checks"),
                "kind http needs checks: what to judge in the answers, e.g. checks: {up: {request: ready, crit: \"[STATUS] != 200\"}}",
            ),
        }
        // Each request's answer is read in the format its checks need.
        for (name, chk) in &checks {
            let Some(req) = requests.get_mut(&chk.request) else {
                continue;
            };
            for e in [&chk.value, &chk.warn, &chk.crit].into_iter().flatten() {
                e.root.metric_names(&mut req.metrics);
                // The format the expression reads the answer in, if any.
                let want = if e.root.any(&|n| matches!(n, Node::Place(Place::Metric(_)))) {
                    Format::Prometheus
                } else if e
                    .root
                    .any(&|n| matches!(n, Node::Place(Place::Body(p)) if !p.is_empty()))
                {
                    Format::Json
                } else {
                    continue;
                };
                if req.format != want {
                    let loc = rc
                        .check_location(name)
                        .unwrap_or_else(|| rc.kind_location());
                    self.error_at(
                        loc,
                        format!("{field}.checks.{name}"),
                        format!(
                            "{} reads {} but request {:?} has format: {}; set format: {} on the request",
                            e.text.trim(),
                            if want == Format::Prometheus { "[METRIC]" } else { "a [BODY] path" },
                            chk.request,
                            req.format.name(),
                            want.name()
                        ),
                    );
                }
            }
        }
        if self.errors.len() > before {
            return None;
        }
        Some(Definition {
            requests,
            checks,
            rate_slots: ctx_slots,
        })
    }

    fn request(&mut self, name: &str, raw: &Spanned<RawRequest>, field: &str) -> Option<Request> {
        let before = self.errors.len();
        let r = &raw.value;
        if !crate::cluster::valid_name(name) {
            self.err(
                raw,
                field,
                "expected a request name of letters, digits, '-', '_' or '.'",
            );
        }
        let path = r.path.value.trim().to_string();
        if !path.starts_with('/') || path.contains(char::is_whitespace) || path.contains('#') {
            self.err(
                &r.path,
                &format!("{field}.path"),
                format!("{:?} is not a path; expected one starting with /, such as /healthz or /api/v1/status?verbose=1", r.path.value),
            );
        }
        let method = match &r.method {
            None => "GET".to_string(),
            Some(m) => {
                let up = m.value.trim().to_ascii_uppercase();
                if !METHODS.contains(&up.as_str()) {
                    self.err(
                        m,
                        &format!("{field}.method"),
                        format!(
                            "unknown method {:?}; expected one of: {}",
                            m.value,
                            METHODS.join(", ")
                        ),
                    );
                }
                up
            }
        };
        let headers = self.headers(&r.headers, field);
        let body = r.body.as_ref().and_then(|b| match &b.value {
            RawSecret::Inline(text) => Some(RequestBody::Text(text.clone())),
            RawSecret::Ref(_) => self
                .secret(b, &format!("{field}.body"))
                .map(RequestBody::Secret),
        });
        let timeout = r
            .timeout
            .as_ref()
            .and_then(|t| self.duration(t, &format!("{field}.timeout")));
        let format = match r.format.as_ref().map(|f| (f, f.value.trim())) {
            None => Format::Text,
            Some((_, "text")) => Format::Text,
            Some((_, "json")) => Format::Json,
            Some((_, "prometheus")) => Format::Prometheus,
            Some((f, other)) => {
                self.err(
                    f,
                    &format!("{field}.format"),
                    format!("unknown format {other:?}; expected text, json or prometheus"),
                );
                Format::Text
            }
        };
        let max_body = r
            .max_body
            .as_ref()
            .and_then(|m| self.size(m, &format!("{field}.max_body")))
            .unwrap_or(DEFAULT_MAX_BODY);
        (self.errors.len() == before).then(|| Request {
            path,
            method,
            headers,
            body,
            timeout,
            format,
            max_body,
            metrics: Vec::new(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn defined_check(
        &mut self,
        name: &str,
        raw: &RawCheck,
        at: Location,
        field: &str,
        requests: &BTreeMap<String, Request>,
        rc: &RawCluster,
        slots: &mut usize,
    ) -> Option<DefinedCheck> {
        let before = self.errors.len();
        let request = match &raw.request {
            Some(r) => {
                if !requests.contains_key(&r.value) && rc.request_named(&r.value).is_none() {
                    let known: Vec<&str> = rc.request_names();
                    self.err(
                        r,
                        &format!("{field}.request"),
                        format!(
                            "unknown request {:?}; expected one of: {}",
                            r.value,
                            known.join(", ")
                        ),
                    );
                }
                r.value.clone()
            }
            None => {
                self.error_at(
                    at,
                    format!("{field}.request"),
                    "expected request: the name of the request whose answer this check reads",
                );
                String::new()
            }
        };
        let cluster = raw.cluster.as_ref().and_then(|c| {
            let agg = match c.value.trim() {
                "sum" => Aggregate::Sum,
                "min" => Aggregate::Min,
                "max" => Aggregate::Max,
                "distinct" => Aggregate::Distinct,
                "count_ok" => Aggregate::CountOk,
                other => {
                    self.err(
                        c,
                        &format!("{field}.cluster"),
                        format!("unknown cluster aggregate {other:?}; expected sum, min, max, distinct or count_ok"),
                    );
                    return None;
                }
            };
            Some(agg)
        });
        let mut ctx = Context {
            value: None,
            no_answer: false,
            slots: *slots,
        };
        let value = raw.value.as_ref().and_then(|v| {
            self.expression(v, &format!("{field}.value"), expr::parse_value, &mut ctx)
        });
        if let Some(v) = &value {
            match cluster {
                Some(Aggregate::Sum | Aggregate::Min | Aggregate::Max) if !v.ty.numeric() => {
                    self.error_at(
                        raw.value.as_ref().map(|s| s.referenced).unwrap_or(at),
                        format!("{field}.cluster"),
                        format!(
                            "cluster: {} adds up numbers, but the value is {}",
                            cluster.map(Aggregate::name).unwrap_or(""),
                            v.ty.describe()
                        ),
                    );
                }
                Some(Aggregate::CountOk) if !matches!(v.ty, Ty::Bool | Ty::Json) => {
                    self.error_at(
                        raw.value.as_ref().map(|s| s.referenced).unwrap_or(at),
                        format!("{field}.cluster"),
                        "cluster: count_ok counts nodes whose value is true; write the value as a condition, e.g. value: \"[STATUS] == 200\"",
                    );
                }
                _ => {}
            }
        } else if cluster.is_some() && raw.value.is_none() {
            self.error_at(
                at,
                format!("{field}.value"),
                "a cluster-wide check (cluster:) combines the nodes' values; add value:",
            );
        }
        ctx.value = match (cluster, &value) {
            (Some(Aggregate::Distinct | Aggregate::CountOk), _) => Some(Ty::Num(Dim::Plain)),
            (Some(_), Some(v)) if v.ty == Ty::Series || v.ty == Ty::Json => {
                Some(Ty::Num(Dim::Plain))
            }
            (_, Some(v)) if v.ty == Ty::Series => Some(Ty::Num(Dim::Plain)),
            (_, v) => v.as_ref().map(|v| v.ty),
        };
        ctx.no_answer = cluster.is_some();
        let mut cond = |v: &mut Self, s: &Option<Spanned<Scalar>>, word: &str| {
            let s = s.as_ref()?;
            let f = format!("{field}.{word}");
            match &s.value {
                Scalar::Text(t) => {
                    let text = Spanned {
                        value: t.clone(),
                        referenced: s.referenced,
                        defined: s.defined,
                    };
                    v.expression(&text, &f, expr::parse_condition, &mut ctx)
                }
                other => {
                    v.err(
                        s,
                        &f,
                        format!(
                            "expected a condition in quotes, such as \"> {}\" or \"[STATUS] != 200\", found {}",
                            other.describe().trim_start_matches("the text "),
                            other.describe()
                        ),
                    );
                    None
                }
            }
        };
        let warn = cond(self, &raw.warn, "warn");
        let crit = cond(self, &raw.crit, "crit");
        *slots = ctx.slots;
        if name == QUORUM {
            if raw.crit.is_none() || raw.warn.is_some() || cluster.is_some() {
                self.error_at(
                    at,
                    field.to_string(),
                    "quorum takes request: and crit: only: crit is the condition that puts a node out; the cluster is crit when at most half of the nodes are in, warn when any is out",
                );
            }
        } else if raw.value.is_none() && raw.warn.is_none() && raw.crit.is_none() {
            self.error_at(
                at,
                field.to_string(),
                "a check needs value:, warn: or crit:, e.g. {request: ready, crit: \"[STATUS] != 200\"}",
            );
        } else if cluster.is_some() && raw.warn.is_none() && raw.crit.is_none() {
            self.error_at(
                at,
                field.to_string(),
                "a cluster-wide check needs warn: or crit:, e.g. warn: \"> 1\"",
            );
        }
        let (unit, scale) = self.unit(raw, value.as_ref(), [&warn, &crit], field);
        let essential = raw
            .essential
            .as_ref()
            .and_then(|e| self.flag(e, &format!("{field}.essential")))
            .unwrap_or(false);
        if self.errors.len() > before {
            return None;
        }
        Some(DefinedCheck {
            request,
            value,
            warn,
            crit,
            unit,
            scale,
            cluster,
            about: raw.about.as_ref().map(|a| a.value.clone()),
            essential,
        })
    }

    /// The reported unit: `unit:` when given; otherwise the unit the
    /// thresholds are written in (`> 300ms` reports milliseconds).
    fn unit(
        &mut self,
        raw: &RawCheck,
        value: Option<&Expression>,
        conditions: [&Option<Expression>; 2],
        field: &str,
    ) -> (String, f64) {
        let dim = match value.map(|v| v.ty) {
            Some(Ty::Num(d)) => d,
            _ => Dim::Plain,
        };
        if let Some(u) = &raw.unit {
            let text = u.value.trim().to_string();
            return match expr::unit_scale(&text) {
                // A plain number is in base units (seconds, bytes).
                Some((scale, d)) if d == dim || dim == Dim::Plain => (text, scale),
                Some((_, d)) if dim != Dim::Plain && d != dim => {
                    self.err(
                        u,
                        &format!("{field}.unit"),
                        format!(
                            "the value is {}, so unit {text:?} does not fit",
                            Ty::Num(dim).describe()
                        ),
                    );
                    (text, 1.0)
                }
                _ => (text, 1.0),
            };
        }
        let written = conditions
            .iter()
            .filter_map(|c| c.as_ref())
            .find_map(|c| literal_unit(&c.text, dim));
        match dim {
            Dim::Duration => written.unwrap_or(("s".into(), 1.0)),
            Dim::Bytes => written.unwrap_or(("B".into(), 1.0)),
            Dim::Percent => ("%".into(), 1.0),
            Dim::Plain => written.unwrap_or((String::new(), 1.0)),
        }
    }

    /// Compiles one expression; an error is placed at its column in the file.
    fn expression(
        &mut self,
        s: &Spanned<String>,
        field: &str,
        parse: impl Fn(&str, &mut Context) -> Result<Expression, ExprError>,
        ctx: &mut Context,
    ) -> Option<Expression> {
        match parse(&s.value, ctx) {
            Ok(e) => Some(e),
            Err(e) => {
                let loc = s.referenced;
                let quoted = loc.span().len() as usize >= s.value.chars().count() + 2
                    && !s.value.contains('\n');
                let column = if loc.line() == 0 {
                    0
                } else {
                    loc.column() + u64::from(quoted) + e.offset as u64
                };
                self.errors.push(crate::ConfigError {
                    file: self.file.to_path_buf(),
                    line: if loc.line() == 0 {
                        0
                    } else {
                        loc.line() + self.line_offset
                    },
                    column,
                    field: field.to_string(),
                    message: format!("{} (in {:?})", e.message, s.value),
                });
                None
            }
        }
    }
}

/// The check whose name makes it the cluster's quorum (as etcd's).
const QUORUM: &str = "quorum";

/// The unit of the first number literal of `dim` in a condition's text.
fn literal_unit(text: &str, dim: Dim) -> Option<(String, f64)> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_ascii_alphanumeric()) {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_digit() || matches!(chars[j], '.' | '_')) {
                j += 1;
            }
            let k = j;
            while j < chars.len() && (chars[j].is_ascii_alphabetic() || chars[j] == '%') {
                j += 1;
            }
            let unit: String = chars[k..j].iter().collect();
            if let Some((scale, d)) = expr::unit_scale(&unit)
                && (d == dim || dim == Dim::Plain)
            {
                return Some((unit, scale));
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    None
}
