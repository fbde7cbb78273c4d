//! A recursive-descent parser with type checks, one function per rule of
//! the grammar in the module's documentation.

use super::lex::{Spanned, Tok, lex};
use super::*;
use std::time::Duration;

/// What an expression may refer to where it is written.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The type of the check's `value:`, when it has one: a condition may
    /// then start with a comparison (`> 5`).
    pub value: Option<Ty>,
    /// False where no answer is at hand (the thresholds of a cluster-wide
    /// check): only literals, `[NODES]` and the value may appear.
    pub no_answer: bool,
    /// The next free `rate()` slot of the cluster.
    pub slots: usize,
}

/// Compiles a `value:` expression.
pub fn parse_value(text: &str, ctx: &mut Context) -> Result<Expression, ExprError> {
    let mut p = Parser::new(text, ctx)?;
    if p.toks.is_empty() {
        return Err(ExprError::at(
            0,
            "empty expression; expected a value such as [STATUS] or [BODY].field".into(),
        ));
    }
    let (root, ty, _) = p.or()?;
    p.end()?;
    if ty == Ty::Pattern {
        return Err(ExprError::at(0, "pat() only goes right of == or !=".into()));
    }
    Ok(Expression {
        text: text.to_string(),
        root,
        ty,
    })
}

/// Compiles a `warn:` or `crit:` condition; with a value, it may start
/// with a comparison operator.
pub fn parse_condition(text: &str, ctx: &mut Context) -> Result<Expression, ExprError> {
    let mut p = Parser::new(text, ctx)?;
    if p.toks.is_empty() {
        return Err(ExprError::at(
            0,
            "empty condition; expected a comparison such as \"> 5\" or \"[STATUS] != 200\"".into(),
        ));
    }
    let short = match p.peek() {
        Some(Tok::Punct(op)) => cmp_op(op),
        _ => None,
    };
    let (root, ty) = if let Some(op) = short {
        let Some(value_ty) = p.ctx.value else {
            return Err(ExprError::at(
                0,
                format!(
                    "a condition starting with {:?} compares the check's value, but this check has no value:; add value: or write the whole comparison, e.g. \"[STATUS] {} 200\"",
                    op.symbol(),
                    op.symbol()
                ),
            ));
        };
        let start = p.pos_start();
        p.next();
        let (right, rty, rstart) = p.sum()?;
        let node = p.compare(
            op,
            (Node::Place(Place::Value), value_ty, 0),
            (right, rty, rstart),
            "the value".into(),
            start,
        )?;
        p.end()?;
        (node, Ty::Bool)
    } else {
        let (root, ty, _) = p.or()?;
        p.end()?;
        (root, ty)
    };
    if !matches!(ty, Ty::Bool | Ty::Json) {
        return Err(ExprError::at(
            0,
            format!(
                "a condition must be true or false, but this is {}; compare it, e.g. \"{} > 5\"",
                ty.describe(),
                text.trim()
            ),
        ));
    }
    Ok(Expression {
        text: text.to_string(),
        root,
        ty: Ty::Bool,
    })
}

fn cmp_op(p: &str) -> Option<CmpOp> {
    Some(match p {
        "==" => CmpOp::Eq,
        "!=" => CmpOp::Ne,
        "<" => CmpOp::Lt,
        "<=" => CmpOp::Le,
        ">" => CmpOp::Gt,
        ">=" => CmpOp::Ge,
        _ => return None,
    })
}

type Parsed = (Node, Ty, usize);

struct Parser<'c> {
    text: Vec<char>,
    toks: Vec<Spanned>,
    at: usize,
    ctx: &'c mut Context,
}

impl<'c> Parser<'c> {
    fn new(text: &str, ctx: &'c mut Context) -> Result<Self, ExprError> {
        Ok(Parser {
            text: text.chars().collect(),
            toks: lex(text)?,
            at: 0,
            ctx,
        })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|t| &t.tok)
    }

    fn next(&mut self) -> Option<Spanned> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    /// Where the next token starts (the end of the text after the last).
    fn pos_start(&self) -> usize {
        self.toks
            .get(self.at)
            .map(|t| t.start)
            .unwrap_or(self.text.len())
    }

    fn pos_end(&self) -> usize {
        self.at
            .checked_sub(1)
            .and_then(|i| self.toks.get(i))
            .map(|t| t.end)
            .unwrap_or(0)
    }

    fn found(&self) -> String {
        match self.peek() {
            Some(t) => t.describe(),
            None => "the end of the expression".into(),
        }
    }

    fn expected(&self, what: &str) -> ExprError {
        ExprError::at(
            self.pos_start(),
            format!("expected {what}, found {}", self.found()),
        )
    }

    fn eat(&mut self, p: &'static str) -> bool {
        if self.peek() == Some(&Tok::Punct(p)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, p: &'static str, what: &str) -> Result<(), ExprError> {
        if self.eat(p) {
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    fn end(&self) -> Result<(), ExprError> {
        if self.at < self.toks.len() {
            let hint = match self.peek() {
                Some(Tok::Punct("=")) => "; to compare, write ==",
                _ => "",
            };
            return Err(ExprError::at(
                self.pos_start(),
                format!(
                    "expected an operator or the end of the expression, found {}{hint}",
                    self.found()
                ),
            ));
        }
        Ok(())
    }

    fn text_between(&self, start: usize, end: usize) -> String {
        self.text[start..end.min(self.text.len())]
            .iter()
            .collect::<String>()
            .trim()
            .to_string()
    }

    fn or(&mut self) -> Result<Parsed, ExprError> {
        let mut left = self.and()?;
        while self.eat("||") {
            let right = self.and()?;
            logical(&left, "||")?;
            logical(&right, "||")?;
            left = (
                Node::Or(Box::new(left.0), Box::new(right.0)),
                Ty::Bool,
                left.2,
            );
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Parsed, ExprError> {
        let mut left = self.not()?;
        while self.eat("&&") {
            let right = self.not()?;
            logical(&left, "&&")?;
            logical(&right, "&&")?;
            left = (
                Node::And(Box::new(left.0), Box::new(right.0)),
                Ty::Bool,
                left.2,
            );
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Parsed, ExprError> {
        let start = self.pos_start();
        if self.eat("!") {
            let inner = self.not()?;
            logical(&inner, "!")?;
            return Ok((Node::Not(Box::new(inner.0)), Ty::Bool, start));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Parsed, ExprError> {
        let left = self.sum()?;
        if self.peek() == Some(&Tok::Punct("=")) {
            return Err(ExprError::at(
                self.pos_start(),
                "a single = does not compare; to compare, write ==".into(),
            ));
        }
        let left_end = self.pos_end();
        let op = match self.peek() {
            Some(Tok::Punct(p)) => cmp_op(p),
            _ => None,
        };
        let Some(op) = op else {
            return Ok(left);
        };
        let op_at = self.pos_start();
        self.next();
        let right = self.sum()?;
        let left_text = self.text_between(left.2, left_end);
        let start = left.2;
        let node = self.compare(op, left, right, left_text, op_at)?;
        if let Some(Tok::Punct(p)) = self.peek()
            && cmp_op(p).is_some()
        {
            return Err(ExprError::at(
                self.pos_start(),
                "comparisons do not chain; join them with && or ||".into(),
            ));
        }
        Ok((node, Ty::Bool, start))
    }

    /// Type-checks a comparison and builds its node.
    fn compare(
        &mut self,
        op: CmpOp,
        left: Parsed,
        right: Parsed,
        left_text: String,
        op_at: usize,
    ) -> Result<Node, ExprError> {
        let (lt, rt) = (left.1, right.1);
        let ordering = !matches!(op, CmpOp::Eq | CmpOp::Ne);
        if lt == Ty::Pattern {
            return Err(ExprError::at(left.2, "pat() goes right of == or !=".into()));
        }
        if rt == Ty::Pattern {
            if ordering {
                return Err(ExprError::at(
                    op_at,
                    format!("pat() matches with == or !=, not {}", op.symbol()),
                ));
            }
            if !matches!(lt, Ty::Text | Ty::Json) {
                return Err(ExprError::at(
                    left.2,
                    format!("pat() matches text, but the left side is {}", lt.describe()),
                ));
            }
        } else if ordering {
            for (ty, at) in [(lt, left.2), (rt, right.2)] {
                if !ty.numeric() {
                    return Err(ExprError::at(
                        at,
                        format!(
                            "{} compares numbers, but this is {}",
                            op.symbol(),
                            ty.describe()
                        ),
                    ));
                }
            }
        } else {
            let kind = |t: Ty| match t {
                Ty::Num(_) | Ty::Series => 0,
                Ty::Text => 1,
                Ty::Bool => 2,
                Ty::Json | Ty::Pattern => 3,
            };
            let (a, b) = (kind(lt), kind(rt));
            if a != 3 && b != 3 && a != b {
                return Err(ExprError::at(
                    right.2,
                    format!("cannot compare {} with {}", lt.describe(), rt.describe()),
                ));
            }
        }
        // A duration or size compared with a bare number is a missing unit.
        for (this, other) in [(&left, &right), (&right, &left)] {
            if let (Ty::Num(d @ (Dim::Duration | Dim::Bytes)), Node::Lit(Lit::Num(n, Dim::Plain))) =
                (this.1, &other.0)
            {
                let example = if d == Dim::Duration { "ms" } else { "MiB" };
                return Err(ExprError::at(
                    other.2,
                    format!(
                        "{} is {}: write the number with its unit, e.g. {}{example}",
                        if this.0.any(&|n| matches!(n, Node::Place(Place::Value))) {
                            "the value".to_string()
                        } else {
                            "the left side".to_string()
                        },
                        this.1.describe(),
                        fmt_num(*n),
                    ),
                ));
            }
            if let (Ty::Num(a), Ty::Num(b)) = (this.1, other.1)
                && a != b
                && a != Dim::Plain
                && b != Dim::Plain
                && !(a == Dim::Percent || b == Dim::Percent)
            {
                return Err(ExprError::at(
                    right.2,
                    format!("cannot compare {} with {}", lt.describe(), rt.describe()),
                ));
            }
        }
        Ok(Node::Cmp {
            op,
            left: Box::new(left.0),
            right: Box::new(right.0),
            left_text,
        })
    }

    fn sum(&mut self) -> Result<Parsed, ExprError> {
        let mut left = self.product()?;
        loop {
            let op = if self.eat("+") {
                ArithOp::Add
            } else if self.eat("-") {
                ArithOp::Sub
            } else {
                return Ok(left);
            };
            let right = self.product()?;
            left = arith(op, left, right)?;
        }
    }

    fn product(&mut self) -> Result<Parsed, ExprError> {
        let mut left = self.unary()?;
        loop {
            let op = if self.eat("*") {
                ArithOp::Mul
            } else if self.eat("/") {
                ArithOp::Div
            } else {
                return Ok(left);
            };
            let right = self.unary()?;
            left = arith(op, left, right)?;
        }
    }

    fn unary(&mut self) -> Result<Parsed, ExprError> {
        let start = self.pos_start();
        if self.eat("-") {
            let (n, ty, _) = self.unary()?;
            if !ty.numeric() {
                return Err(ExprError::at(
                    start,
                    format!("cannot negate {}", ty.describe()),
                ));
            }
            let ty = if matches!(ty, Ty::Num(_)) {
                ty
            } else {
                Ty::Num(Dim::Plain)
            };
            return Ok(match n {
                Node::Lit(Lit::Num(v, d)) => (Node::Lit(Lit::Num(-v, d)), ty, start),
                n => (Node::Neg(Box::new(n)), ty, start),
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Parsed, ExprError> {
        let start = self.pos_start();
        let Some(tok) = self.next() else {
            self.at -= 1;
            return Err(self.expected("a value"));
        };
        match tok.tok {
            Tok::Num(v, unit) => {
                let (scale, dim) = match unit.as_deref() {
                    None => (1.0, Dim::Plain),
                    Some(u) => unit_scale(u).ok_or_else(|| {
                        ExprError::at(
                            tok.start,
                            format!("unknown unit {u:?} after {v}; expected one of: {UNITS}"),
                        )
                    })?,
                };
                Ok((Node::Lit(Lit::Num(v * scale, dim)), Ty::Num(dim), start))
            }
            Tok::Str(s) => Ok((Node::Lit(Lit::Text(s)), Ty::Text, start)),
            Tok::Ident(id) if id == "true" || id == "false" => {
                Ok((Node::Lit(Lit::Bool(id == "true")), Ty::Bool, start))
            }
            Tok::Ident(id) => self.call(&id, start),
            Tok::Place(p) => self.place(&p, start),
            Tok::Punct("(") => {
                let (n, ty, _) = self.or()?;
                self.expect(")", "a closing )")?;
                Ok((n, ty, start))
            }
            _ => {
                self.at -= 1;
                Err(self.expected(
                    "a value: a number, \"text\", [STATUS], [BODY], [METRIC].name or a function such as len()",
                ))
            }
        }
    }

    fn place(&mut self, p: &str, start: usize) -> Result<Parsed, ExprError> {
        let needs_answer = !matches!(p, "NODES" | "NOW");
        if needs_answer && self.ctx.no_answer {
            return Err(ExprError::at(
                start,
                format!(
                    "[{p}] reads one node's answer, but this condition judges the cluster-wide value; compare the value (e.g. \"> 1\") or use [NODES]"
                ),
            ));
        }
        match p {
            "STATUS" => Ok((Node::Place(Place::Status), Ty::Num(Dim::Plain), start)),
            "RESPONSE_TIME" => Ok((
                Node::Place(Place::ResponseTime),
                Ty::Num(Dim::Duration),
                start,
            )),
            "CERTIFICATE_EXPIRATION" => Ok((
                Node::Place(Place::CertificateExpiration),
                Ty::Num(Dim::Duration),
                start,
            )),
            "NODES" => Ok((Node::Place(Place::Nodes), Ty::Num(Dim::Plain), start)),
            "NOW" => Ok((Node::Place(Place::Now), Ty::Num(Dim::Plain), start)),
            "BODY" => {
                let path = self.path()?;
                let ty = if path.is_empty() { Ty::Text } else { Ty::Json };
                Ok((Node::Place(Place::Body(path)), ty, start))
            }
            "METRIC" => {
                self.expect(".", "a . and a metric name after [METRIC]")?;
                let name = match self.next() {
                    Some(Spanned {
                        tok: Tok::Ident(n), ..
                    }) => n,
                    _ => {
                        self.at -= 1;
                        return Err(self.expected("a metric name after [METRIC]."));
                    }
                };
                let matchers = if self.eat("{") {
                    self.matchers()?
                } else {
                    Vec::new()
                };
                Ok((
                    Node::Place(Place::Metric(Selector { name, matchers })),
                    Ty::Series,
                    start,
                ))
            }
            other => Err(ExprError::at(
                start,
                format!(
                    "unknown placeholder [{other}]; expected one of [STATUS], [RESPONSE_TIME], [BODY], [METRIC], [CERTIFICATE_EXPIRATION], [NODES], [NOW]"
                ),
            )),
        }
    }

    /// `.key`, `."odd key"`, `[0]`, `["key"]` after `[BODY]`.
    fn path(&mut self) -> Result<Vec<Step>, ExprError> {
        let mut steps = Vec::new();
        loop {
            if self.eat(".") {
                match self.next().map(|t| t.tok) {
                    Some(Tok::Ident(k)) | Some(Tok::Str(k)) => steps.push(Step::Key(k)),
                    Some(Tok::Num(n, None)) if n.fract() == 0.0 && n >= 0.0 => {
                        steps.push(Step::Key(fmt_num(n)))
                    }
                    _ => {
                        self.at -= 1;
                        return Err(self.expected("a field name after ."));
                    }
                }
            } else if self.peek() == Some(&Tok::Punct("[")) {
                self.next();
                match self.next().map(|t| t.tok) {
                    Some(Tok::Num(n, None)) if n.fract() == 0.0 && n >= 0.0 => {
                        steps.push(Step::Index(n as usize))
                    }
                    Some(Tok::Str(k)) => steps.push(Step::Key(k)),
                    _ => {
                        self.at -= 1;
                        return Err(
                            self.expected("an index such as [0] or a key such as [\"name\"]")
                        );
                    }
                }
                self.expect("]", "a closing ]")?;
            } else {
                return Ok(steps);
            }
        }
    }

    /// `label="v", other=~"re"}` (the `{` is already read).
    fn matchers(&mut self) -> Result<Vec<Matcher>, ExprError> {
        let mut out = Vec::new();
        if self.eat("}") {
            return Ok(out);
        }
        loop {
            let label = match self.next().map(|t| t.tok) {
                Some(Tok::Ident(l)) => l,
                _ => {
                    self.at -= 1;
                    return Err(self.expected("a label name"));
                }
            };
            let op = match self.next().map(|t| t.tok) {
                Some(Tok::Punct("=")) => MatchOp::Eq,
                Some(Tok::Punct("!=")) => MatchOp::Ne,
                Some(Tok::Punct("=~")) => MatchOp::Re,
                Some(Tok::Punct("!~")) => MatchOp::NotRe,
                Some(Tok::Punct("==")) => {
                    self.at -= 1;
                    return Err(ExprError::at(
                        self.pos_start(),
                        "a label matcher takes =, not ==".into(),
                    ));
                }
                _ => {
                    self.at -= 1;
                    return Err(self.expected("=, !=, =~ or !~ after the label name"));
                }
            };
            let value_at = self.pos_start();
            let value = match self.next().map(|t| t.tok) {
                Some(Tok::Str(v)) => v,
                _ => {
                    self.at -= 1;
                    return Err(self.expected("a quoted label value"));
                }
            };
            let regex = match op {
                MatchOp::Re | MatchOp::NotRe => {
                    Some(regex::Regex::new(&format!("^(?:{value})$")).map_err(|e| {
                        ExprError::at(
                            value_at,
                            format!("not a regular expression: {}", first_line(&e)),
                        )
                    })?)
                }
                _ => None,
            };
            out.push(Matcher {
                label,
                op,
                value,
                regex,
            });
            if self.eat("}") {
                return Ok(out);
            }
            self.expect(",", "a , or a closing }")?;
        }
    }

    fn call(&mut self, name: &str, start: usize) -> Result<Parsed, ExprError> {
        let func = match name {
            "len" => Func::Len,
            "has" => Func::Has,
            "sum" => Func::Sum,
            "min" => Func::Min,
            "max" => Func::Max,
            "avg" => Func::Avg,
            "count" => Func::Count,
            "rate" => Func::Rate,
            "label" => Func::Label,
            "pat" => return self.pat(start),
            other => {
                let hint = if self.peek() == Some(&Tok::Punct("(")) {
                    format!(
                        "unknown function {other:?}; expected one of: len, has, pat, sum, min, max, avg, count, rate, label"
                    )
                } else {
                    format!(
                        "unexpected word {other:?}; text goes in quotes (\"{other}\"), placeholders in brackets ([STATUS])"
                    )
                };
                return Err(ExprError::at(start, hint));
            }
        };
        self.expect("(", &format!("( after {name}"))?;
        let mut args = Vec::new();
        if !self.eat(")") {
            loop {
                args.push(self.or()?);
                if self.eat(")") {
                    break;
                }
                self.expect(",", "a , or a closing )")?;
            }
        }
        let arity = match func {
            Func::Rate => 1..=2,
            Func::Label => 2..=2,
            _ => 1..=1,
        };
        if !arity.contains(&args.len()) {
            let want = match func {
                Func::Rate => "one value and an optional window, e.g. rate([METRIC].x, 5m)",
                Func::Label => {
                    "a selector and a label name, e.g. label([METRIC].build_info, \"version\")"
                }
                _ => "one argument",
            };
            return Err(ExprError::at(
                start,
                format!("{name}() takes {want}; found {} argument(s)", args.len()),
            ));
        }
        let arg_ty = args[0].1;
        let arg_at = args[0].2;
        let bad = |what: &str| {
            Err(ExprError::at(
                arg_at,
                format!("{name}() takes {what}, but this is {}", arg_ty.describe()),
            ))
        };
        match func {
            Func::Len => {
                if !matches!(arg_ty, Ty::Json | Ty::Text | Ty::Series) {
                    return bad("a JSON value, text or metric samples");
                }
            }
            Func::Has => {
                let ok = matches!(args[0].0, Node::Place(Place::Body(ref p)) if !p.is_empty())
                    || arg_ty == Ty::Series;
                if !ok {
                    return bad("a [BODY] path or a [METRIC] selector");
                }
            }
            Func::Sum | Func::Min | Func::Max | Func::Avg | Func::Count => {
                if !matches!(arg_ty, Ty::Series | Ty::Json) {
                    return bad("a [METRIC] selector or a JSON list");
                }
            }
            Func::Label => {
                if arg_ty != Ty::Series {
                    return bad("a [METRIC] selector");
                }
                if !matches!(args[1].0, Node::Lit(Lit::Text(_))) {
                    return Err(ExprError::at(
                        args[1].2,
                        "label() takes the label name in quotes, e.g. \"version\"".into(),
                    ));
                }
            }
            Func::Rate => {
                if !arg_ty.numeric() {
                    return bad("a number");
                }
                let window = match args.get(1) {
                    None => Duration::from_secs(300),
                    Some((Node::Lit(Lit::Num(s, Dim::Duration)), _, _)) if *s >= 1.0 => {
                        Duration::from_secs_f64(*s)
                    }
                    Some((_, _, at)) => {
                        return Err(ExprError::at(
                            *at,
                            "rate()'s window is a duration of at least 1s, e.g. 5m".into(),
                        ));
                    }
                };
                let slot = self.ctx.slots;
                self.ctx.slots += 1;
                let arg = args.swap_remove(0).0;
                return Ok((
                    Node::Rate {
                        arg: Box::new(arg),
                        window,
                        slot,
                    },
                    Ty::Num(Dim::Plain),
                    start,
                ));
            }
        }
        let ty = match func {
            Func::Has => Ty::Bool,
            Func::Label => Ty::Text,
            _ => Ty::Num(Dim::Plain),
        };
        Ok((
            Node::Call(func, args.into_iter().map(|a| a.0).collect()),
            ty,
            start,
        ))
    }

    fn pat(&mut self, start: usize) -> Result<Parsed, ExprError> {
        self.expect("(", "( after pat")?;
        let at = self.pos_start();
        let re = match self.next().map(|t| t.tok) {
            Some(Tok::Str(s)) => s,
            _ => {
                self.at -= 1;
                return Err(self.expected("a regular expression in quotes, e.g. pat(\"^ok\")"));
            }
        };
        self.expect(")", "a closing )")?;
        let regex = regex::Regex::new(&re).map_err(|e| {
            ExprError::at(at, format!("not a regular expression: {}", first_line(&e)))
        })?;
        Ok((Node::Pat(regex), Ty::Pattern, start))
    }
}

fn first_line(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .map(|l| l.trim_start_matches("error:").trim().to_string())
        .unwrap_or(text)
}

fn logical(p: &Parsed, op: &str) -> Result<(), ExprError> {
    if matches!(p.1, Ty::Bool | Ty::Json) {
        Ok(())
    } else {
        Err(ExprError::at(
            p.2,
            format!(
                "{op} joins conditions, but this is {}; compare it first",
                p.1.describe()
            ),
        ))
    }
}

fn arith(op: ArithOp, left: Parsed, right: Parsed) -> Result<Parsed, ExprError> {
    for (ty, at) in [(left.1, left.2), (right.1, right.2)] {
        if !ty.numeric() {
            return Err(ExprError::at(
                at,
                format!("arithmetic needs numbers, but this is {}", ty.describe()),
            ));
        }
    }
    let dim = |t: Ty| match t {
        Ty::Num(d) => d,
        _ => Dim::Plain,
    };
    let (a, b) = (dim(left.1), dim(right.1));
    let d = match op {
        ArithOp::Add | ArithOp::Sub => {
            if a != Dim::Plain && b != Dim::Plain && a != b {
                return Err(ExprError::at(
                    right.2,
                    format!(
                        "cannot add {} and {}",
                        left.1.describe(),
                        right.1.describe()
                    ),
                ));
            }
            if a == Dim::Plain { b } else { a }
        }
        ArithOp::Mul => {
            if a == Dim::Plain {
                b
            } else {
                a
            }
        }
        ArithOp::Div => {
            if a == b {
                Dim::Plain
            } else {
                a
            }
        }
    };
    Ok((
        Node::Arith(op, Box::new(left.0), Box::new(right.0)),
        Ty::Num(d),
        left.2,
    ))
}
