//! The check language of `kind: http` clusters: values and conditions over
//! one node's answers, compiled once when the configuration is loaded.
//!
//! ```text
//! condition := or | CMP or            (the short form compares the check's value)
//! or        := and ("||" and)*
//! and       := not ("&&" not)*
//! not       := "!" not | cmp
//! cmp       := sum (CMP sum)?         CMP: == != < <= > >=
//! sum       := product (("+" | "-") product)*
//! product   := unary (("*" | "/") unary)*
//! unary     := "-" unary | primary
//! primary   := NUMBER UNIT? | STRING | true | false | "(" or ")"
//!            | [STATUS] | [RESPONSE_TIME] | [CERTIFICATE_EXPIRATION] | [NODES] | [NOW]
//!            | [BODY] path | [METRIC] "." NAME ("{" matcher ("," matcher)* "}")?
//!            | FUNC "(" args ")"
//! path      := ("." KEY | "[" INDEX "]" | "[" STRING "]")*
//! matcher   := LABEL ("=" | "!=" | "=~" | "!~") STRING
//! FUNC      := len has pat sum min max avg count rate label
//! UNIT      := ns us ms s m h d w | B KB MB GB KiB MiB GiB TiB | %
//! ```
//!
//! Types are checked here, so `dbmon config check` refuses `[STATUS] > "x"`
//! or `[RESPONSE_TIME] > 300` (no unit) with the column. The collector
//! evaluates the compiled tree ([`Node`]) against each answer.

mod lex;
mod parse;

pub use parse::{Context, parse_condition, parse_value};

use std::fmt;

/// A problem in an expression, at a character offset within it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// 0-based character offset in the expression text.
    pub offset: usize,
    pub message: String,
}

impl ExprError {
    pub(crate) fn at(offset: usize, message: String) -> Self {
        ExprError { offset, message }
    }
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.offset + 1, self.message)
    }
}

/// A compiled expression and the text it came from.
#[derive(Debug, Clone)]
pub struct Expression {
    pub text: String,
    pub root: Node,
    pub ty: Ty,
}

/// What a number measures; literals carry it from their unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    /// A plain number (metric values, counts, JSON numbers).
    Plain,
    /// Seconds.
    Duration,
    /// Bytes.
    Bytes,
    /// A percentage written with `%` (80% is 80).
    Percent,
}

/// The static type of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Num(Dim),
    Text,
    Bool,
    /// A part of a JSON answer: its type is known only when it is read.
    Json,
    /// The samples a metric selector picks.
    Series,
    /// `pat(...)`: only on the right of `==` or `!=`.
    Pattern,
}

impl Ty {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Ty::Num(Dim::Duration) => "a duration",
            Ty::Num(Dim::Bytes) => "a size",
            Ty::Num(_) => "a number",
            Ty::Text => "text",
            Ty::Bool => "true or false",
            Ty::Json => "a JSON value",
            Ty::Series => "metric samples",
            Ty::Pattern => "a pattern",
        }
    }

    /// Whether a value of this type can be a number when evaluated.
    pub fn numeric(self) -> bool {
        matches!(self, Ty::Num(_) | Ty::Json | Ty::Series)
    }
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Num(f64, Dim),
    Text(String),
    Bool(bool),
}

/// A place in one node's answer.
#[derive(Debug, Clone)]
pub enum Place {
    /// The HTTP status code.
    Status,
    /// Seconds from sending the request to the end of the answer.
    ResponseTime,
    /// Seconds until the node's TLS certificate expires.
    CertificateExpiration,
    /// How many nodes the cluster has in its configuration.
    Nodes,
    /// The time of the poll, in seconds since 1970 (for timestamps).
    Now,
    /// The body (text), or a part of the JSON answer.
    Body(Vec<Step>),
    /// Samples of a Prometheus answer.
    Metric(Selector),
    /// The check's `value:` (in the short form of a condition).
    Value,
}

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// `name{label="x", other=~"re"}`.
#[derive(Debug, Clone)]
pub struct Selector {
    pub name: String,
    pub matchers: Vec<Matcher>,
}

#[derive(Debug, Clone)]
pub struct Matcher {
    pub label: String,
    pub op: MatchOp,
    pub value: String,
    /// Compiled for `=~` and `!~` (anchored, as in PromQL).
    pub regex: Option<regex::Regex>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    NotRe,
}

impl Matcher {
    pub fn matches(&self, value: Option<&str>) -> bool {
        let v = value.unwrap_or("");
        match self.op {
            MatchOp::Eq => v == self.value,
            MatchOp::Ne => v != self.value,
            MatchOp::Re => self.regex.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::NotRe => !self.regex.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Len,
    Has,
    Sum,
    Min,
    Max,
    Avg,
    Count,
    Rate,
    Label,
}

impl Func {
    pub fn name(self) -> &'static str {
        match self {
            Func::Len => "len",
            Func::Has => "has",
            Func::Sum => "sum",
            Func::Min => "min",
            Func::Max => "max",
            Func::Avg => "avg",
            Func::Count => "count",
            Func::Rate => "rate",
            Func::Label => "label",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// A compiled expression tree.
#[derive(Debug, Clone)]
pub enum Node {
    Lit(Lit),
    Place(Place),
    Call(Func, Vec<Node>),
    /// `rate` carries its window and a slot number unique within the
    /// cluster, so the collector keeps each rate's history apart.
    Rate {
        arg: Box<Node>,
        window: std::time::Duration,
        slot: usize,
    },
    /// `pat("regex")`, right of `==` / `!=`.
    Pat(regex::Regex),
    Neg(Box<Node>),
    Not(Box<Node>),
    Arith(ArithOp, Box<Node>, Box<Node>),
    /// A comparison, with the text of its left side for sentences.
    Cmp {
        op: CmpOp,
        left: Box<Node>,
        right: Box<Node>,
        left_text: String,
    },
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
}

impl Node {
    /// Every metric name a selector in this tree reads.
    pub fn metric_names(&self, out: &mut Vec<String>) {
        self.walk(&mut |n| {
            if let Node::Place(Place::Metric(s)) = n
                && !out.contains(&s.name)
            {
                out.push(s.name.clone());
            }
        });
    }

    /// Whether any node of the tree satisfies `f`.
    pub fn any(&self, f: &dyn Fn(&Node) -> bool) -> bool {
        let mut found = false;
        self.walk(&mut |n| found |= f(n));
        found
    }

    fn walk(&self, f: &mut dyn FnMut(&Node)) {
        f(self);
        match self {
            Node::Call(_, args) => args.iter().for_each(|a| a.walk(f)),
            Node::Rate { arg, .. } | Node::Neg(arg) | Node::Not(arg) => arg.walk(f),
            Node::Arith(_, a, b)
            | Node::And(a, b)
            | Node::Or(a, b)
            | Node::Cmp {
                left: a, right: b, ..
            } => {
                a.walk(f);
                b.walk(f);
            }
            Node::Lit(_) | Node::Place(_) | Node::Pat(_) => {}
        }
    }
}

/// Seconds, bytes or percent in one unit, or None for an unknown unit.
pub fn unit_scale(unit: &str) -> Option<(f64, Dim)> {
    Some(match unit {
        "ns" => (1e-9, Dim::Duration),
        "us" | "µs" => (1e-6, Dim::Duration),
        "ms" => (1e-3, Dim::Duration),
        "s" => (1.0, Dim::Duration),
        "m" => (60.0, Dim::Duration),
        "h" => (3600.0, Dim::Duration),
        "d" => (86400.0, Dim::Duration),
        "w" => (7.0 * 86400.0, Dim::Duration),
        "B" => (1.0, Dim::Bytes),
        "KB" => (1e3, Dim::Bytes),
        "MB" => (1e6, Dim::Bytes),
        "GB" => (1e9, Dim::Bytes),
        "TB" => (1e12, Dim::Bytes),
        "KiB" => (1024.0, Dim::Bytes),
        "MiB" => (1024.0 * 1024.0, Dim::Bytes),
        "GiB" => (1024.0 * 1024.0 * 1024.0, Dim::Bytes),
        "TiB" => (1024.0 * 1024.0 * 1024.0 * 1024.0, Dim::Bytes),
        "%" => (1.0, Dim::Percent),
        _ => return None,
    })
}

/// A number as people write it: 15, 0.5, 62.93, 1.5e9.
pub fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.abs() >= 1e15 || (v != 0.0 && v.abs() < 1e-3) {
        format!("{v:e}")
    } else {
        let mut s = format!("{v:.3}");
        let keep = s.trim_end_matches('0').trim_end_matches('.').len();
        s.truncate(keep);
        s
    }
}

/// Every unit a number may carry, for messages.
pub const UNITS: &str = "ns, us, ms, s, m, h, d, w, B, KB, MB, GB, TB, KiB, MiB, GiB, TiB, %";

#[cfg(test)]
mod tests;
