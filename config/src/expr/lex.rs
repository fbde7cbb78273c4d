//! Tokens of the check language, each with its character offset.

use super::ExprError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A number and the unit written right after it (`300ms`, `80%`, `1e9`).
    Num(f64, Option<String>),
    Str(String),
    Ident(String),
    /// `[STATUS]`, `[BODY]`, ...: upper-case letters and `_` in brackets.
    Place(String),
    Punct(&'static str),
}

impl Tok {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Num(n, u) => format!("the number {n}{}", u.as_deref().unwrap_or("")),
            Tok::Str(s) => format!("the text {s:?}"),
            Tok::Ident(s) => format!("{s:?}"),
            Tok::Place(p) => format!("[{p}]"),
            Tok::Punct(p) => format!("{p:?}"),
        }
    }
}

/// A token and the character offsets where it starts and ends.
#[derive(Debug, Clone)]
pub(crate) struct Spanned {
    pub tok: Tok,
    pub start: usize,
    pub end: usize,
}

const PUNCT: &[&str] = &[
    "==", "!=", "<=", ">=", "&&", "||", "=~", "!~", "<", ">", "!", "+", "-", "*", "/", "(", ")",
    "[", "]", "{", "}", ",", ".", "=",
];

pub(crate) fn lex(text: &str) -> Result<Vec<Spanned>, ExprError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() {
            let (tok, next) = number(&chars, i)?;
            out.push(Spanned {
                tok,
                start,
                end: next,
            });
            i = next;
            continue;
        }
        if c == '"' || c == '\'' {
            let (s, next) = string(&chars, i)?;
            out.push(Spanned {
                tok: Tok::Str(s),
                start,
                end: next,
            });
            i = next;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let mut j = i;
            while j < chars.len()
                && (chars[j].is_ascii_alphanumeric() || matches!(chars[j], '_' | ':'))
            {
                j += 1;
            }
            out.push(Spanned {
                tok: Tok::Ident(chars[i..j].iter().collect()),
                start,
                end: j,
            });
            i = j;
            continue;
        }
        if c == '[' {
            let mut j = i + 1;
            while j < chars.len() && (chars[j].is_ascii_uppercase() || chars[j] == '_') {
                j += 1;
            }
            if j > i + 1 && chars.get(j) == Some(&']') {
                out.push(Spanned {
                    tok: Tok::Place(chars[i + 1..j].iter().collect()),
                    start,
                    end: j + 1,
                });
                i = j + 1;
                continue;
            }
        }
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        match PUNCT.iter().find(|p| rest.starts_with(**p)) {
            Some(p) => {
                out.push(Spanned {
                    tok: Tok::Punct(p),
                    start,
                    end: i + p.len(),
                });
                i += p.len();
            }
            None => {
                let hint = match c {
                    '&' | '|' => format!("; to join conditions, write {c}{c}"),
                    _ => String::new(),
                };
                return Err(ExprError::at(
                    i,
                    format!("unexpected character {c:?}{hint}"),
                ));
            }
        }
    }
    Ok(out)
}

/// Digits, an optional fraction and exponent, then an optional unit.
fn number(chars: &[char], start: usize) -> Result<(Tok, usize), ExprError> {
    let mut j = start;
    let digits = |j: &mut usize| {
        while *j < chars.len() && (chars[*j].is_ascii_digit() || chars[*j] == '_') {
            *j += 1;
        }
    };
    digits(&mut j);
    if chars.get(j) == Some(&'.') && chars.get(j + 1).is_some_and(|c| c.is_ascii_digit()) {
        j += 1;
        digits(&mut j);
    }
    if matches!(chars.get(j), Some('e' | 'E'))
        && (chars.get(j + 1).is_some_and(|c| c.is_ascii_digit())
            || (matches!(chars.get(j + 1), Some('+' | '-'))
                && chars.get(j + 2).is_some_and(|c| c.is_ascii_digit())))
    {
        j += 2;
        digits(&mut j);
    }
    let text: String = chars[start..j].iter().filter(|c| **c != '_').collect();
    let value: f64 = text
        .parse()
        .map_err(|_| ExprError::at(start, format!("{text:?} is not a number")))?;
    let unit_start = j;
    while j < chars.len() && (chars[j].is_ascii_alphabetic() || chars[j] == '%') {
        j += 1;
    }
    let unit = (j > unit_start).then(|| chars[unit_start..j].iter().collect::<String>());
    Ok((Tok::Num(value, unit), j))
}

/// A quoted string with `\\`, `\"`, `\'`, `\n` and `\t` escapes.
fn string(chars: &[char], start: usize) -> Result<(String, usize), ExprError> {
    let quote = chars[start];
    let mut s = String::new();
    let mut j = start + 1;
    while j < chars.len() {
        match chars[j] {
            c if c == quote => return Ok((s, j + 1)),
            '\\' => {
                let e = chars.get(j + 1).copied().ok_or_else(|| {
                    ExprError::at(j, "a backslash at the end of the text".to_string())
                })?;
                match e {
                    'n' => s.push('\n'),
                    't' => s.push('\t'),
                    '\\' | '"' | '\'' => s.push(e),
                    // Kept for regular expressions: `\d`, `\.`.
                    other => {
                        s.push('\\');
                        s.push(other);
                    }
                }
                j += 2;
            }
            c => {
                s.push(c);
                j += 1;
            }
        }
    }
    Err(ExprError::at(
        start,
        format!("text opened with {quote} is never closed; expected a closing {quote}"),
    ))
}
