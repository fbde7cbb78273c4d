//! `kind: http`: a cluster defined in YAML alone. Every poll sends each
//! configured request to every node, reads the answers in their format
//! (text, JSON, Prometheus), and judges each check's compiled value and
//! conditions (see docs/http-checks.md), per node or over the cluster.
//!
//! Without an `up` check of its own, a node is up when it answers every
//! request (any HTTP status). A check whose request got no answer is
//! `unknown` (`crit` for `up`); a check named `quorum` makes the cluster
//! unavailable when at most half of the nodes pass it. Redirects are not
//! followed: a 3xx is the answer. Secrets of headers, bodies and `auth:`
//! are masked in every sentence.

mod eval;

use eval::{Cx, Val};
pub use eval::{Rates, Reply};

use crate::connector::{Connector, ConnectorError, Observation, bytes, node_label};
use crate::http::{describe, join};
use crate::prom::Metrics;
use dbmon_config::expr::{Dim, Expression};
use dbmon_config::{
    Aggregate, ClusterConfig, DefinedCheck, Definition, Format, HeaderValue, Request, RequestBody,
};
use dbmon_proto::Status;
use dbmon_proto::health::{QUORUM_CHECK, UP_CHECK};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

/// TLS, client certificates, HTTP Basic login (`auth:`) and the requests.
pub static SECTIONS: &[dbmon_config::Section] = &[
    dbmon_config::Section::Tls,
    dbmon_config::Section::ClientCert,
    dbmon_config::Section::Auth,
    dbmon_config::Section::Requests,
];

/// Marked in the configuration (`essential: true`).
pub static ESSENTIAL: &[&str] = &[];

/// The checks are the configuration's own.
pub static CHECKS: &[dbmon_config::CheckSpec] = &[];

/// Builds the connector; secrets are read now, so a missing one is a
/// setup error retried at every interval.
pub fn build(cluster: &ClusterConfig) -> Result<Box<dyn Connector>, ConnectorError> {
    let def = cluster.definition.clone().ok_or_else(|| {
        ConnectorError::Http("a kind: http cluster without requests and checks".into())
    })?;
    let client = crate::http::builder_for(cluster)?
        .redirect(reqwest::redirect::Policy::none())
        .tls_info(true)
        .build()
        .map_err(|e| ConnectorError::Http(format!("{e}")))?;
    let mut secrets = Vec::new();
    let mut prepared = BTreeMap::new();
    for (name, req) in &def.requests {
        let mut headers = reqwest::header::HeaderMap::new();
        for (h, v) in &req.headers {
            let (text, secret) = match v {
                HeaderValue::Plain(t) => (t.clone(), false),
                HeaderValue::Secret(s) => (s.resolve()?, true),
            };
            let header_name = reqwest::header::HeaderName::from_bytes(h.as_bytes())
                .map_err(|e| ConnectorError::Http(format!("requests.{name}.headers.{h}: {e}")))?;
            let mut value = reqwest::header::HeaderValue::from_str(&text).map_err(|_| {
                ConnectorError::Http(format!(
                    "requests.{name}.headers.{h}: the value holds characters a header cannot carry"
                ))
            })?;
            if secret {
                value.set_sensitive(true);
                secrets.push(text);
            }
            headers.insert(header_name, value);
        }
        let body = match &req.body {
            None => None,
            Some(RequestBody::Text(t)) => Some(t.clone()),
            Some(RequestBody::Secret(s)) => {
                let t = s.resolve()?;
                secrets.push(t.clone());
                Some(t)
            }
        };
        prepared.insert(
            name.clone(),
            Prepared {
                req: req.clone(),
                headers,
                body,
            },
        );
    }
    let login = match &cluster.auth {
        Some(a) => {
            let p = a.resolve_password()?;
            secrets.push(p.clone());
            Some((a.username.clone(), p))
        }
        None => None,
    };
    // "Bearer abc…": the credential alone may come back too.
    let words: Vec<String> = secrets
        .iter()
        .flat_map(|s| s.split_whitespace().skip(1))
        .filter(|w| w.len() >= 8)
        .map(str::to_string)
        .collect();
    secrets.extend(words);
    secrets.retain(|s| s.len() >= 4);
    // Longest first, so a whole value is masked before its parts.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    Ok(Box::new(Http {
        client,
        cluster: cluster.clone(),
        def,
        prepared,
        login,
        secrets,
        rates: Rates::default(),
    }))
}

struct Prepared {
    req: Request,
    headers: reqwest::header::HeaderMap,
    body: Option<String>,
}

pub struct Http {
    client: reqwest::Client,
    cluster: ClusterConfig,
    def: Definition,
    prepared: BTreeMap<String, Prepared>,
    login: Option<(String, String)>,
    secrets: Vec<String>,
    rates: Rates,
}

/// One node's answers, by request name.
pub type Answers = BTreeMap<String, Result<Reply, String>>;

#[async_trait::async_trait]
impl Connector for Http {
    async fn poll(&self) -> Vec<Observation> {
        let asks = self.cluster.nodes.iter().map(|u| async move {
            let asks = self
                .prepared
                .iter()
                .map(|(name, p)| async move { (name.clone(), self.ask(u, p).await) });
            let answers: Answers = futures::future::join_all(asks).await.into_iter().collect();
            (node_label(u), answers)
        });
        let per_node = futures::future::join_all(asks).await;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let mut out = judge(&self.def, &per_node, &self.rates, now, Instant::now());
        for o in &mut out {
            for s in &self.secrets {
                if o.message.contains(s.as_str()) {
                    o.message = o.message.replace(s.as_str(), "[redacted]");
                }
            }
        }
        out
    }
}

impl Http {
    /// Sends one request to one node and reads the answer in its format.
    async fn ask(&self, base: &url::Url, p: &Prepared) -> Result<Reply, String> {
        let timeout = p.req.timeout.unwrap_or(self.cluster.timeout);
        let url = with_path(base, &p.req.path);
        let method = reqwest::Method::from_bytes(p.req.method.as_bytes())
            .map_err(|_| format!("method {} is not valid", p.req.method))?;
        let mut rb = self
            .client
            .request(method, url)
            .timeout(timeout)
            .headers(p.headers.clone());
        if let Some(b) = &p.body {
            rb = rb.body(b.clone());
        }
        if let Some((u, pw)) = &self.login {
            rb = rb.basic_auth(u, Some(pw));
        }
        let started = Instant::now();
        let mut resp = rb.send().await.map_err(|e| describe(&e, timeout))?;
        let status = resp.status().as_u16();
        let cert_not_after = resp
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|t| t.peer_certificate())
            .and_then(not_after);
        let limit = p.req.max_body;
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(too_large(limit));
        }
        let mut buf = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e, timeout))? {
            if (buf.len() + chunk.len()) as u64 > limit {
                return Err(too_large(limit));
            }
            buf.extend_from_slice(&chunk);
        }
        let latency = started.elapsed();
        let body = String::from_utf8_lossy(&buf).into_owned();
        let json = (p.req.format == Format::Json).then(|| {
            serde_json::from_str(&body).map_err(|e| {
                format!(
                    "the answer (HTTP {status}) is not JSON: {e}; it starts {}",
                    crate::http::excerpt(&body)
                )
            })
        });
        let metrics =
            (p.req.format == Format::Prometheus && !p.req.metrics.is_empty()).then(|| {
                let wanted: Vec<&str> = p.req.metrics.iter().map(String::as_str).collect();
                Metrics::parse_only(&body, &wanted).map_err(|e| format!("HTTP {status}: {e}"))
            });
        Ok(Reply {
            status,
            latency,
            body,
            json,
            metrics,
            cert_not_after,
        })
    }
}

fn too_large(limit: u64) -> String {
    format!(
        "the answer is larger than {}, the request's max_body; raise max_body or ask for less",
        bytes(limit as f64)
    )
}

/// `base` with the request's path and query.
fn with_path(base: &url::Url, path: &str) -> url::Url {
    let (p, q) = path.split_once('?').unwrap_or((path, ""));
    let mut u = join(base, p.trim_start_matches('/'));
    if !q.is_empty() {
        u.set_query(Some(q));
    }
    u
}

/// The expiry of a DER certificate, in unix seconds.
fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Judges every check against the nodes' answers. Separate from the
/// requests so that benchmarks and tests can run it on captured answers.
pub fn judge(
    def: &Definition,
    per_node: &[(String, Answers)],
    rates: &Rates,
    now: f64,
    at: Instant,
) -> Vec<Observation> {
    let mut out = Vec::new();
    if !def.checks.contains_key(UP_CHECK) {
        for (node, answers) in per_node {
            out.push(implicit_up(node, answers));
        }
    }
    for (name, chk) in &def.checks {
        let judged = Judge {
            name,
            chk,
            rates,
            nodes: per_node.len(),
            now,
            at,
        };
        if name == QUORUM_CHECK {
            out.push(judged.quorum(per_node));
        } else if let Some(agg) = chk.cluster {
            out.push(judged.cluster(agg, per_node));
        } else {
            for (node, answers) in per_node {
                out.push(judged.node(node, answers));
            }
        }
    }
    out
}

fn implicit_up(node: &str, answers: &Answers) -> Observation {
    for (name, a) in answers {
        if let Err(e) = a {
            return Observation::new(node, UP_CHECK, Status::Crit, format!("{name}: {e}"));
        }
    }
    let first = answers
        .iter()
        .find_map(|(n, a)| a.as_ref().ok().map(|r| (n, r)));
    match first {
        Some((name, r)) => Observation::new(
            node,
            UP_CHECK,
            Status::Ok,
            format!(
                "answers {} request(s); {name}: HTTP {}",
                answers.len(),
                r.status
            ),
        )
        .with_latency(r.latency),
        None => Observation::new(node, UP_CHECK, Status::Unknown, "no request was sent"),
    }
}

struct Judge<'j> {
    name: &'j str,
    chk: &'j DefinedCheck,
    rates: &'j Rates,
    nodes: usize,
    now: f64,
    at: Instant,
}

/// How one node fared on one check.
enum NodeResult<'a> {
    /// The request got no answer.
    NoAnswer(String),
    /// The value or a condition could not be read.
    Unreadable(String),
    Judged {
        status: Status,
        value: Option<Val<'a>>,
        seen: Vec<(&'a str, Val<'a>)>,
        failed: Option<&'a Expression>,
        reply: &'a Reply,
    },
}

impl<'j> Judge<'j> {
    fn cx<'a>(&self, node: &'a str, reply: Option<&'a Reply>) -> Cx<'a>
    where
        'j: 'a,
    {
        Cx {
            reply,
            node,
            nodes: self.nodes,
            now: self.now,
            at: self.at,
            rates: self.rates,
            value: None,
            // Only a check without a value tells what its conditions saw.
            seen: (self.chk.value.is_none()).then(|| RefCell::new(Vec::new())),
        }
    }

    /// One node's value and, unless the check judges the cluster as a
    /// whole, its conditions.
    fn evaluate<'a>(&self, node: &'a str, answers: &'a Answers) -> NodeResult<'a>
    where
        'j: 'a,
    {
        let reply = match answers.get(&self.chk.request) {
            Some(Ok(r)) => r,
            Some(Err(e)) => return NodeResult::NoAnswer(format!("{}: {e}", self.chk.request)),
            None => return NodeResult::NoAnswer(format!("{}: not sent", self.chk.request)),
        };
        let mut cx = self.cx(node, Some(reply));
        let value = match &self.chk.value {
            Some(e) => match cx.eval(&e.root) {
                // Samples stand for their one value.
                Ok(v @ Val::Series(..)) => match eval::num(&v) {
                    Ok((n, d)) => Some(Val::Num(n, d)),
                    Err(err) => return NodeResult::Unreadable(format!("{}: {err}", e.text.trim())),
                },
                Ok(v) => Some(v),
                Err(err) => return NodeResult::Unreadable(format!("{}: {err}", e.text.trim())),
            },
            None => None,
        };
        cx.value = value.clone();
        let judged = if self.chk.cluster.is_some() {
            Ok((Status::Ok, None))
        } else {
            conditions(&cx, self.chk)
        };
        let (status, failed) = match judged {
            Ok(x) => x,
            Err(e) => return NodeResult::Unreadable(e),
        };
        NodeResult::Judged {
            status,
            value,
            seen: cx.seen.map(RefCell::into_inner).unwrap_or_default(),
            failed,
            reply,
        }
    }

    fn node(&self, node: &str, answers: &Answers) -> Observation {
        match self.evaluate(node, answers) {
            NodeResult::NoAnswer(e) => {
                let status = if self.name == UP_CHECK {
                    Status::Crit
                } else {
                    Status::Unknown
                };
                Observation::new(node, self.name, status, e)
            }
            NodeResult::Unreadable(e) => Observation::new(
                node,
                self.name,
                Status::Unknown,
                format!("cannot judge: {e}"),
            ),
            NodeResult::Judged {
                status,
                value,
                seen,
                failed,
                reply,
            } => {
                let (number, shown) = self.present(value.as_ref(), &seen, reply);
                let mut o =
                    Observation::new(node, self.name, status, sentence(shown, status, failed));
                if let Some(n) = number {
                    o.value = Some(n);
                    o.unit = self.chk.unit.clone();
                }
                o.with_latency(reply.latency)
            }
        }
    }

    /// The value as reported (number in the check's unit) and as read.
    fn present(
        &self,
        value: Option<&Val<'_>>,
        seen: &[(&str, Val<'_>)],
        reply: &Reply,
    ) -> (Option<f64>, String) {
        match value {
            Some(v) => match eval::num(v) {
                Ok((n, _)) if !matches!(v, Val::Bool(_)) => {
                    let scaled = n / self.chk.scale;
                    // The number, then its unit ("81%", "3 items", "0.5/s").
                    let mut shown = dbmon_config::expr::fmt_num(scaled);
                    let unit = &self.chk.unit;
                    if !unit.is_empty() {
                        if !(unit.starts_with('/') || unit == "%") {
                            shown.push(' ');
                        }
                        shown.push_str(unit);
                    }
                    (Some(scaled), shown)
                }
                _ => (None, eval::show(v)),
            },
            None => {
                let mut text = String::new();
                let mut shown: Vec<(&str, String)> = Vec::with_capacity(seen.len());
                for (l, v) in seen {
                    let v = eval::show(v);
                    if shown.iter().any(|(l2, v2)| l2 == l && *v2 == v) {
                        continue;
                    }
                    if !text.is_empty() {
                        text.push_str(", ");
                    }
                    text.push_str(l);
                    text.push_str(" = ");
                    text.push_str(&v);
                    shown.push((l, v));
                }
                if text.is_empty() {
                    text = format!("HTTP {}", reply.status);
                }
                (None, text)
            }
        }
    }

    /// A check over the cluster: the nodes' values combined, then judged.
    fn cluster(&self, agg: Aggregate, per_node: &[(String, Answers)]) -> Observation {
        let mut numbers: Vec<(String, f64)> = Vec::new();
        let mut texts: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut missing: Vec<String> = Vec::new();
        let mut dim = Dim::Plain;
        for (node, answers) in per_node {
            match self.evaluate(node, answers) {
                NodeResult::NoAnswer(e) | NodeResult::Unreadable(e) => {
                    missing.push(format!("{node} ({e})"))
                }
                NodeResult::Judged { value: Some(v), .. } => match agg {
                    Aggregate::Distinct => {
                        texts.entry(eval::show(&v)).or_default().push(node.clone())
                    }
                    Aggregate::CountOk => match eval::truth(&v) {
                        Ok(b) => numbers.push((node.clone(), f64::from(u8::from(b)))),
                        Err(e) => missing.push(format!("{node} ({e})")),
                    },
                    _ => match eval::num(&v) {
                        Ok((n, d)) => {
                            dim = d;
                            numbers.push((node.clone(), n))
                        }
                        Err(e) => missing.push(format!("{node} ({e})")),
                    },
                },
                NodeResult::Judged { value: None, .. } => {
                    missing.push(format!("{node} (no value)"))
                }
            }
        }
        let read = numbers.len() + texts.values().map(Vec::len).sum::<usize>();
        let total = per_node.len();
        if read == 0 {
            return Observation::new(
                "",
                self.name,
                Status::Unknown,
                format!("no node's value could be read: {}", missing.join("; ")),
            );
        }
        let values = numbers.iter().map(|(_, v)| *v);
        let (value, detail) = match agg {
            Aggregate::Sum => (values.sum(), String::new()),
            Aggregate::Min => (values.fold(f64::INFINITY, f64::min), String::new()),
            Aggregate::Max => (values.fold(f64::NEG_INFINITY, f64::max), String::new()),
            Aggregate::CountOk => (values.sum(), String::new()),
            Aggregate::Distinct => {
                let parts: Vec<String> = texts
                    .iter()
                    .map(|(v, ns)| format!("{v} on {}", ns.join(", ")))
                    .collect();
                (texts.len() as f64, parts.join("; "))
            }
        };
        let dim = if matches!(agg, Aggregate::Distinct | Aggregate::CountOk) {
            Dim::Plain
        } else {
            dim
        };
        let mut cx = self.cx("", None);
        cx.value = Some(Val::Num(value, dim));
        let (status, failed) = match conditions(&cx, self.chk) {
            Ok(x) => x,
            Err(e) => {
                return Observation::new(
                    "",
                    self.name,
                    Status::Unknown,
                    format!("cannot judge: {e}"),
                );
            }
        };
        let scaled = if matches!(agg, Aggregate::Distinct | Aggregate::CountOk) {
            value
        } else {
            value / self.chk.scale
        };
        let what = match agg {
            Aggregate::Distinct => format!("{} distinct value(s): {detail}", scaled),
            Aggregate::CountOk => format!("{} of {total} nodes ok", scaled),
            other => format!(
                "{} of {} {}",
                other.name(),
                dbmon_config::expr::fmt_num(scaled),
                self.chk.unit
            )
            .trim_end()
            .to_string(),
        };
        let mut msg = sentence(what, status, failed);
        if !missing.is_empty() {
            msg.push_str(&format!(
                "; {read} of {total} nodes read, not {}",
                missing.join("; ")
            ));
        }
        let mut o = Observation::new("", self.name, status, msg);
        o.value = Some(scaled);
        o.unit = match agg {
            Aggregate::Distinct => "values".into(),
            Aggregate::CountOk => "nodes".into(),
            _ => self.chk.unit.clone(),
        };
        o
    }

    /// `quorum`: a node is in unless its crit condition holds or it does
    /// not answer; the cluster needs more than half of the nodes in.
    fn quorum(&self, per_node: &[(String, Answers)]) -> Observation {
        let mut out_nodes = Vec::new();
        for (node, answers) in per_node {
            match self.evaluate(node, answers) {
                NodeResult::Judged {
                    status: Status::Ok, ..
                } => {}
                NodeResult::Judged { failed, seen, .. } => {
                    let why = seen
                        .first()
                        .map(|(l, v)| format!("{l} = {}", eval::show(v)))
                        .or_else(|| failed.map(|f| f.text.trim().to_string()))
                        .unwrap_or_default();
                    out_nodes.push(format!("{node} ({why})"))
                }
                NodeResult::NoAnswer(e) | NodeResult::Unreadable(e) => {
                    out_nodes.push(format!("{node} ({e})"))
                }
            }
        }
        let total = per_node.len();
        let inside = total - out_nodes.len();
        let status = if inside * 2 <= total {
            Status::Crit
        } else if inside < total {
            Status::Warn
        } else {
            Status::Ok
        };
        let mut msg = format!("{inside} of {total} nodes in");
        if !out_nodes.is_empty() {
            msg.push_str(&format!("; out: {}", out_nodes.join(", ")));
        }
        let mut o = Observation::new("", QUORUM_CHECK, status, msg);
        o.value = Some(inside as f64);
        o.unit = "nodes".into();
        o
    }
}

/// Crit first, then warn; the condition that failed, if any.
fn conditions<'a>(
    cx: &Cx<'a>,
    chk: &'a DefinedCheck,
) -> Result<(Status, Option<&'a Expression>), String> {
    for (cond, status) in [(&chk.crit, Status::Crit), (&chk.warn, Status::Warn)] {
        if let Some(c) = cond {
            let v = cx
                .eval(&c.root)
                .map_err(|e| format!("{}: {e}", c.text.trim()))?;
            if eval::truth(&v).map_err(|e| format!("{}: {e}", c.text.trim()))? {
                return Ok((status, Some(c)));
            }
        }
    }
    Ok((Status::Ok, None))
}

fn sentence(what: String, status: Status, failed: Option<&Expression>) -> String {
    match (status, failed) {
        (Status::Crit | Status::Warn, Some(c)) => {
            let word = if status == Status::Crit {
                "crit"
            } else {
                "warn"
            };
            format!("{what} ({word}: {})", c.text.trim())
        }
        _ => what,
    }
}
