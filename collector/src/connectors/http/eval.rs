//! Evaluates a compiled check expression against one node's answer.
//! Anything that cannot be read (a missing field, no sample, text where a
//! number belongs) is an error naming what was missing; the check is then
//! `unknown` with that sentence, never silently ok.

use crate::prom::Metrics;
use dbmon_config::expr::{ArithOp, CmpOp, Dim, Func, Lit, Node, Place, Selector, Step, fmt_num};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One node's answer to one request.
pub struct Reply {
    pub status: u16,
    pub latency: Duration,
    pub body: String,
    /// The body read as JSON (format: json).
    pub json: Option<Result<serde_json::Value, String>>,
    /// The body read as Prometheus text (format: prometheus).
    pub metrics: Option<Result<Metrics, String>>,
    /// When the node's certificate expires (unix seconds); None over plain HTTP.
    pub cert_not_after: Option<i64>,
}

/// A value while evaluating.
#[derive(Debug, Clone)]
pub enum Val<'a> {
    Num(f64, Dim),
    Text(Cow<'a, str>),
    Bool(bool),
    Json(&'a serde_json::Value),
    Series(Vec<(&'a HashMap<String, String>, f64)>, &'a Selector),
    Pat(&'a regex::Regex),
}

/// The samples one `rate()` keeps for one node, and their increase so far
/// (kept up to date as samples come and go, so a rate costs the same
/// however many polls the window holds).
#[derive(Default)]
struct History {
    samples: VecDeque<(Instant, f64)>,
    increase: f64,
}

/// At most this many samples per rate (a window of polls every 100 ms
/// holds fewer than 5 minutes' worth).
const MAX_SAMPLES: usize = 4096;

/// The increase from `a` to `b`; a drop is a counter reset.
fn step(a: f64, b: f64) -> f64 {
    if b >= a { b - a } else { b }
}

impl History {
    fn push(&mut self, at: Instant, v: f64, window: Duration) {
        if let Some(&(_, last)) = self.samples.back() {
            self.increase += step(last, v);
        }
        self.samples.push_back((at, v));
        while self.samples.len() > 2
            && (self.samples.len() > MAX_SAMPLES
                || self
                    .samples
                    .front()
                    .is_some_and(|(t, _)| at.duration_since(*t) > window))
        {
            if let (Some((_, a)), Some((_, b))) = (self.samples.pop_front(), self.samples.front()) {
                self.increase -= step(a, *b);
            }
        }
    }
}

/// Histories of `rate()` per (slot, node).
#[derive(Default)]
pub struct Rates {
    series: Mutex<HashMap<String, HashMap<usize, History>>>,
}

impl Rates {
    /// Records `v` and returns the per-second increase over `window`,
    /// counting a drop as a counter reset.
    fn rate(
        &self,
        slot: usize,
        node: &str,
        v: f64,
        at: Instant,
        window: Duration,
    ) -> Result<f64, String> {
        let mut all = self.series.lock().unwrap_or_else(|p| p.into_inner());
        if !all.contains_key(node) {
            all.insert(node.to_string(), HashMap::new());
        }
        let Some(per_node) = all.get_mut(node) else {
            return Err("rate() lost its history".into());
        };
        let h = per_node.entry(slot).or_default();
        h.push(at, v, window);
        let (Some(first), Some(last)) = (h.samples.front(), h.samples.back()) else {
            return Err("rate() has no samples".into());
        };
        let secs = last.0.duration_since(first.0).as_secs_f64();
        if h.samples.len() < 2 || secs <= 0.0 {
            return Err("rate() needs two polls; it is known from the next one".into());
        }
        Ok(h.increase.max(0.0) / secs)
    }
}

/// What an expression is evaluated against.
pub struct Cx<'a> {
    /// The node's answer; None for a cluster-wide judgement.
    pub reply: Option<&'a Reply>,
    pub node: &'a str,
    pub nodes: usize,
    /// Unix seconds of the poll.
    pub now: f64,
    pub at: Instant,
    pub rates: &'a Rates,
    /// The check's value, for the short form of conditions.
    pub value: Option<Val<'a>>,
    /// Left sides of the comparisons evaluated, for the sentence; None
    /// when the sentence will not use them.
    pub seen: Option<RefCell<Vec<(&'a str, Val<'a>)>>>,
}

impl<'a> Cx<'a> {
    fn reply(&self, what: &str) -> Result<&'a Reply, String> {
        self.reply
            .ok_or_else(|| format!("{what} needs an answer, and there is none here"))
    }

    /// Evaluates `n`.
    pub fn eval(&self, n: &'a Node) -> Result<Val<'a>, String> {
        match n {
            Node::Lit(Lit::Num(v, d)) => Ok(Val::Num(*v, *d)),
            Node::Lit(Lit::Text(t)) => Ok(Val::Text(Cow::Borrowed(t))),
            Node::Lit(Lit::Bool(b)) => Ok(Val::Bool(*b)),
            Node::Place(p) => self.place(p),
            Node::Pat(r) => Ok(Val::Pat(r)),
            Node::Neg(a) => {
                let (v, d) = num(&self.eval(a)?)?;
                Ok(Val::Num(-v, d))
            }
            Node::Not(a) => Ok(Val::Bool(!truth(&self.eval(a)?)?)),
            Node::And(a, b) => Ok(Val::Bool(truth(&self.eval(a)?)? && truth(&self.eval(b)?)?)),
            Node::Or(a, b) => Ok(Val::Bool(truth(&self.eval(a)?)? || truth(&self.eval(b)?)?)),
            Node::Arith(op, a, b) => {
                let (x, dx) = num(&self.eval(a)?)?;
                let (y, dy) = num(&self.eval(b)?)?;
                let dim = if dx == Dim::Plain { dy } else { dx };
                let v = match op {
                    ArithOp::Add => x + y,
                    ArithOp::Sub => x - y,
                    ArithOp::Mul => x * y,
                    ArithOp::Div if y == 0.0 => {
                        return Err(format!("division by zero ({} / 0)", fmt_num(x)));
                    }
                    ArithOp::Div => x / y,
                };
                let dim = if *op == ArithOp::Div && dx == dy {
                    Dim::Plain
                } else {
                    dim
                };
                Ok(Val::Num(v, dim))
            }
            Node::Cmp {
                op,
                left,
                right,
                left_text,
            } => {
                let l = self.eval(left)?;
                let r = self.eval(right)?;
                if let Some(seen) = &self.seen {
                    seen.borrow_mut().push((left_text.as_str(), l.clone()));
                }
                Ok(Val::Bool(compare(*op, &l, &r)?))
            }
            Node::Call(f, args) => self.call(*f, args),
            Node::Rate { arg, window, slot } => {
                let (v, _) = num(&self.eval(arg)?)?;
                let r = self.rates.rate(*slot, self.node, v, self.at, *window)?;
                Ok(Val::Num(r, Dim::Plain))
            }
        }
    }

    fn place(&self, p: &'a Place) -> Result<Val<'a>, String> {
        match p {
            Place::Status => Ok(Val::Num(self.reply("[STATUS]")?.status as f64, Dim::Plain)),
            Place::ResponseTime => Ok(Val::Num(
                self.reply("[RESPONSE_TIME]")?.latency.as_secs_f64(),
                Dim::Duration,
            )),
            Place::CertificateExpiration => {
                let r = self.reply("[CERTIFICATE_EXPIRATION]")?;
                let t = r.cert_not_after.ok_or(
                    "[CERTIFICATE_EXPIRATION]: the node answered over plain HTTP, without a certificate",
                )?;
                Ok(Val::Num(t as f64 - self.now, Dim::Duration))
            }
            Place::Nodes => Ok(Val::Num(self.nodes as f64, Dim::Plain)),
            Place::Now => Ok(Val::Num(self.now, Dim::Plain)),
            Place::Value => self
                .value
                .clone()
                .ok_or_else(|| "the check has no value".to_string()),
            Place::Body(path) => {
                let r = self.reply("[BODY]")?;
                if path.is_empty() {
                    return Ok(Val::Text(Cow::Borrowed(&r.body)));
                }
                let json = json_of(r)?;
                walk(json, path).map(Val::Json)
            }
            Place::Metric(sel) => {
                let r = self.reply("[METRIC]")?;
                let m = match &r.metrics {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => return Err(e.clone()),
                    None => return Err("the answer was not read as Prometheus text".into()),
                };
                let samples = m
                    .all(&sel.name)
                    .filter(|(labels, _)| {
                        sel.matchers
                            .iter()
                            .all(|mt| mt.matches(labels.get(&mt.label).map(String::as_str)))
                    })
                    .collect();
                Ok(Val::Series(samples, sel))
            }
        }
    }

    fn call(&self, f: Func, args: &'a [Node]) -> Result<Val<'a>, String> {
        let Some(first) = args.first() else {
            return Err(format!("{}() has no argument", f.name()));
        };
        if f == Func::Has {
            return Ok(Val::Bool(match first {
                Node::Place(Place::Body(path)) => {
                    let r = self.reply("[BODY]")?;
                    walk(json_of(r)?, path).is_ok_and(|v| !v.is_null())
                }
                other => match self.eval(other)? {
                    Val::Series(s, _) => !s.is_empty(),
                    v => !matches!(v, Val::Json(serde_json::Value::Null)),
                },
            }));
        }
        let v = self.eval(first)?;
        match f {
            Func::Len => Ok(Val::Num(
                match &v {
                    Val::Text(t) => t.chars().count() as f64,
                    Val::Json(serde_json::Value::Array(a)) => a.len() as f64,
                    Val::Json(serde_json::Value::Object(o)) => o.len() as f64,
                    Val::Json(serde_json::Value::String(s)) => s.chars().count() as f64,
                    Val::Series(s, _) => s.len() as f64,
                    other => return Err(format!("len() of {} has no length", show(other))),
                },
                Dim::Plain,
            )),
            Func::Label => {
                let Val::Series(s, sel) = &v else {
                    return Err("label() takes a [METRIC] selector".into());
                };
                let name = match args.get(1) {
                    Some(Node::Lit(Lit::Text(t))) => t,
                    _ => return Err("label() takes a label name".into()),
                };
                let Some((labels, _)) = s.first() else {
                    return Err(format!("no sample of {}", describe_selector(sel)));
                };
                labels
                    .get(name)
                    .map(|l| Val::Text(Cow::Borrowed(l.as_str())))
                    .ok_or_else(|| format!("{} has no label {name:?}", describe_selector(sel)))
            }
            Func::Sum | Func::Min | Func::Max | Func::Avg | Func::Count => {
                let values = list(&v)?;
                if f == Func::Count {
                    return Ok(Val::Num(values.len() as f64, Dim::Plain));
                }
                if values.is_empty() {
                    return Err(format!("{}() of nothing: {}", f.name(), empty_reason(&v)));
                }
                let n = values.len() as f64;
                let r = match f {
                    Func::Sum => values.iter().sum(),
                    Func::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
                    Func::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    _ => values.iter().sum::<f64>() / n,
                };
                Ok(Val::Num(r, Dim::Plain))
            }
            Func::Has | Func::Rate => Err(format!("{}() is not evaluated here", f.name())),
        }
    }
}

fn json_of(r: &Reply) -> Result<&serde_json::Value, String> {
    match &r.json {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(e.clone()),
        None => Err("the answer was not read as JSON".into()),
    }
}

/// Follows a path; the error names the first step that is missing.
fn walk<'a>(mut v: &'a serde_json::Value, path: &[Step]) -> Result<&'a serde_json::Value, String> {
    for (n, step) in path.iter().enumerate() {
        let next = match step {
            Step::Key(k) => v.get(k.as_str()),
            Step::Index(i) => v.get(*i),
        };
        match next {
            Some(next) => v = next,
            None => {
                // Names are built only for the sentence of a missing step.
                let done = path_text(&path[..n]);
                let shown = path_text(std::slice::from_ref(step));
                let shown = shown.trim_start_matches("[BODY]");
                let what = match (step, v) {
                    (Step::Index(i), serde_json::Value::Array(a)) => {
                        format!("{done} has {} item(s), so no [{i}]", a.len())
                    }
                    (Step::Key(_), serde_json::Value::Object(_)) => {
                        format!("{done}{shown} is missing from the answer")
                    }
                    _ => format!("{done} is {}, so it has no {shown}", json_kind(v)),
                };
                return Err(what);
            }
        }
    }
    Ok(v)
}

/// `[BODY].a["odd key"][0]`.
fn path_text(path: &[Step]) -> String {
    let mut out = String::from("[BODY]");
    for step in path {
        match step {
            Step::Key(k) if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                out.push('.');
                out.push_str(k);
            }
            Step::Key(k) => out.push_str(&format!("[{k:?}]")),
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "true or false",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "text",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

pub fn describe_selector(s: &Selector) -> String {
    if s.matchers.is_empty() {
        return s.name.clone();
    }
    let m: Vec<String> = s
        .matchers
        .iter()
        .map(|m| {
            let op = match m.op {
                dbmon_config::expr::MatchOp::Eq => "=",
                dbmon_config::expr::MatchOp::Ne => "!=",
                dbmon_config::expr::MatchOp::Re => "=~",
                dbmon_config::expr::MatchOp::NotRe => "!~",
            };
            format!("{}{op}{:?}", m.label, m.value)
        })
        .collect();
    format!("{}{{{}}}", s.name, m.join(","))
}

fn empty_reason(v: &Val<'_>) -> String {
    match v {
        Val::Series(_, sel) => format!("no sample of {} in the answer", describe_selector(sel)),
        _ => "an empty list".into(),
    }
}

/// Numbers of a series or a JSON list.
fn list(v: &Val<'_>) -> Result<Vec<f64>, String> {
    match v {
        Val::Series(s, _) => Ok(s.iter().map(|(_, v)| *v).collect()),
        Val::Json(serde_json::Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_f64()
                    .ok_or_else(|| format!("the list holds {}, not only numbers", json_kind(x)))
            })
            .collect(),
        other => Err(format!("{} is not a list", show(other))),
    }
}

/// A value as a number.
pub fn num(v: &Val<'_>) -> Result<(f64, Dim), String> {
    match v {
        Val::Num(n, d) => Ok((*n, *d)),
        Val::Json(serde_json::Value::Number(n)) => n
            .as_f64()
            .map(|f| (f, Dim::Plain))
            .ok_or_else(|| "a number out of range".into()),
        Val::Json(j) => Err(format!(
            "expected a number, found {} {}",
            json_kind(j),
            short(&j.to_string())
        )),
        Val::Series(s, sel) => match s.as_slice() {
            [(_, v)] => Ok((*v, Dim::Plain)),
            [] => Err(format!(
                "no sample of {} in the answer",
                describe_selector(sel)
            )),
            many => Err(format!(
                "{} samples match {}; pick one with labels or use sum(), min(), max(), avg() or count()",
                many.len(),
                describe_selector(sel)
            )),
        },
        Val::Text(t) => Err(format!("expected a number, found the text {}", short(t))),
        Val::Bool(b) => Err(format!("expected a number, found {b}")),
        Val::Pat(_) => Err("a pattern is not a number".into()),
    }
}

/// A value as true or false.
pub fn truth(v: &Val<'_>) -> Result<bool, String> {
    match v {
        Val::Bool(b) => Ok(*b),
        Val::Json(serde_json::Value::Bool(b)) => Ok(*b),
        other => Err(format!("expected true or false, found {}", show(other))),
    }
}

fn text<'v>(v: &'v Val<'_>) -> Option<Cow<'v, str>> {
    match v {
        Val::Text(t) => Some(Cow::Borrowed(t)),
        Val::Json(serde_json::Value::String(s)) => Some(Cow::Borrowed(s)),
        _ => None,
    }
}

fn compare(op: CmpOp, l: &Val<'_>, r: &Val<'_>) -> Result<bool, String> {
    if let Val::Pat(re) = r {
        let t = text(l).ok_or_else(|| format!("pat() matches text, found {}", show(l)))?;
        let m = re.is_match(&t);
        return Ok(if op == CmpOp::Ne { !m } else { m });
    }
    let eq = match (op, text(l), text(r)) {
        (CmpOp::Eq | CmpOp::Ne, Some(a), Some(b)) => Some(a == b),
        (CmpOp::Eq | CmpOp::Ne, _, _) => match (l, r) {
            (Val::Bool(_) | Val::Json(serde_json::Value::Bool(_)), _)
            | (_, Val::Bool(_) | Val::Json(serde_json::Value::Bool(_))) => {
                Some(truth(l)? == truth(r)?)
            }
            (Val::Json(serde_json::Value::Null), _) | (_, Val::Json(serde_json::Value::Null)) => {
                Some(
                    matches!(l, Val::Json(serde_json::Value::Null))
                        == matches!(r, Val::Json(serde_json::Value::Null)),
                )
            }
            _ if text(l).is_some() || text(r).is_some() => Some(false),
            _ => None,
        },
        _ => None,
    };
    if let Some(eq) = eq {
        return Ok(if op == CmpOp::Ne { !eq } else { eq });
    }
    let (a, _) = num(l)?;
    let (b, _) = num(r)?;
    Ok(match op {
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
    })
}

/// A value as a person reads it.
pub fn show(v: &Val<'_>) -> String {
    match v {
        Val::Num(n, d) => show_num(*n, *d),
        Val::Text(t) => short(t),
        Val::Bool(b) => b.to_string(),
        Val::Json(serde_json::Value::String(s)) => short(s),
        Val::Json(j) => short(&j.to_string()),
        Val::Series(s, sel) => match s.as_slice() {
            [(_, v)] => fmt_num(*v),
            _ => format!("{} samples of {}", s.len(), describe_selector(sel)),
        },
        Val::Pat(r) => format!("pat({:?})", r.as_str()),
    }
}

pub fn show_num(n: f64, d: Dim) -> String {
    match d {
        Dim::Duration => {
            let a = n.abs();
            let sign = if n < 0.0 { "-" } else { "" };
            if a < 1.0 {
                format!("{sign}{} ms", fmt_num((a * 1000.0 * 10.0).round() / 10.0))
            } else if a < 120.0 {
                format!("{sign}{} s", fmt_num((a * 100.0).round() / 100.0))
            } else if a < 2.0 * 3600.0 {
                format!("{sign}{} min", fmt_num((a / 60.0 * 10.0).round() / 10.0))
            } else if a < 2.0 * 86400.0 {
                format!("{sign}{} h", fmt_num((a / 3600.0 * 10.0).round() / 10.0))
            } else {
                format!(
                    "{sign}{} days",
                    fmt_num((a / 86400.0 * 10.0).round() / 10.0)
                )
            }
        }
        Dim::Bytes => crate::connector::bytes(n),
        Dim::Percent => format!("{}%", fmt_num(n)),
        Dim::Plain => fmt_num(n),
    }
}

/// Text for a message: at most 60 characters, quoted.
fn short(t: &str) -> String {
    match t.char_indices().nth(60) {
        None => format!("{t:?}"),
        Some((cut, _)) => format!("{:?}…", &t[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_count_resets_and_forget_what_leaves_the_window() {
        let r = Rates::default();
        let t0 = Instant::now();
        let w = Duration::from_secs(60);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(r.rate(0, "n", 100.0, at(0), w).is_err(), "one poll");
        assert_eq!(r.rate(0, "n", 110.0, at(10), w), Ok(1.0));
        // A restart: from 110 down to 5 counts 5.
        assert_eq!(r.rate(0, "n", 5.0, at(20), w), Ok(15.0 / 20.0));
        // Another node and another slot keep their own history.
        assert!(r.rate(0, "m", 1.0, at(20), w).is_err());
        assert!(r.rate(1, "n", 1.0, at(20), w).is_err());
        // 0 s and 10 s leave the window: 20 s → 75 s, +10.
        assert_eq!(r.rate(0, "n", 15.0, at(75), w), Ok(10.0 / 55.0));
    }

    #[test]
    fn a_rate_keeps_a_bounded_history() {
        let r = Rates::default();
        let t0 = Instant::now();
        for i in 0..(MAX_SAMPLES as u64 * 2) {
            let _ = r.rate(
                0,
                "n",
                i as f64,
                t0 + Duration::from_millis(i),
                Duration::from_secs(3600),
            );
        }
        let all = r.series.lock().unwrap();
        let h = &all["n"][&0];
        assert_eq!(h.samples.len(), MAX_SAMPLES);
        assert_eq!(h.increase, (MAX_SAMPLES - 1) as f64);
    }
}
