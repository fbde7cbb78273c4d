//! Prometheus text answers, parsed with the `prometheus-parse` crate, and
//! the lookups connectors need. An answer that holds no samples is an error,
//! so HTML or garbage never reads as "all metrics absent and fine".

use std::collections::HashMap;

/// What [`Metrics::parse_only`] reads of a body, taken in piece by piece
/// as it arrives, so that the whole body is never held: the lines of the
/// wanted families, whether any line was a sample (garbage is refused), the
/// body's size and its start (for messages). A CockroachDB node's answer is
/// 175 KB of which a connector reads a few hundred bytes; a thousand of
/// them in flight at once were most of a collector's memory.
pub struct LineFilter<'w> {
    /// The wanted names as bytes, each with whether it is a prefix (`*`),
    /// in the order of their first byte.
    wanted: Vec<(&'w [u8], bool)>,
    /// For each byte, the wanted names that start with it (a range of
    /// `wanted`): a line is compared with those only, and most lines with
    /// none.
    first: [(u32, u32); 256],
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    kept: String,
    any_sample: bool,
    bytes: usize,
    head: String,
}

/// How much of a body's start is kept for messages.
const HEAD: usize = 200;

impl<'w> LineFilter<'w> {
    pub fn new(wanted: &'w [&'w str]) -> LineFilter<'w> {
        let mut wanted = wanted
            .iter()
            .map(|w| match w.strip_suffix('*') {
                Some(prefix) => (prefix.as_bytes(), true),
                None => (w.as_bytes(), false),
            })
            .collect::<Vec<_>>();
        // An empty prefix (`*`) wants every name: keep just that one.
        if let Some(&all) = wanted.iter().find(|(w, _)| w.is_empty()) {
            wanted = vec![all];
        }
        wanted.sort_unstable_by_key(|(w, _)| w.first().copied());
        let mut first = [(0u32, 0u32); 256];
        for (i, (w, _)) in (0u32..).zip(&wanted) {
            let range = match w.first() {
                Some(&c) => &mut first[usize::from(c)..=usize::from(c)],
                None => &mut first[..],
            };
            for r in range {
                if r.0 == r.1 {
                    *r = (i, i + 1);
                } else {
                    r.1 = i + 1;
                }
            }
        }
        LineFilter {
            wanted,
            first,
            partial: Vec::new(),
            kept: String::new(),
            any_sample: false,
            bytes: 0,
            head: String::new(),
        }
    }

    /// The next piece of the body.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.head.len() < HEAD {
            let take = &chunk[..chunk.len().min(HEAD - self.head.len())];
            self.head.push_str(&String::from_utf8_lossy(take));
        }
        self.bytes += chunk.len();
        let mut rest = chunk;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            if self.partial.is_empty() {
                self.line(&rest[..i]);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&rest[..i]);
                self.line(&line);
            }
            rest = &rest[i + 1..];
        }
        self.partial.extend_from_slice(rest);
    }

    /// One line: whether it is wanted is read off its bytes; only a wanted
    /// line (or, until the first sample, any line) is read as text.
    fn line(&mut self, bytes: &[u8]) {
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let wanted = self.wants(bytes);
        if !wanted && self.any_sample {
            return;
        }
        let line = String::from_utf8_lossy(bytes);
        self.any_sample = self.any_sample || looks_like_sample(&line);
        if wanted {
            self.kept.push_str(&line);
            self.kept.push('\n');
        }
    }

    /// Whether the line's metric name (of a sample, or of a `# TYPE` or
    /// `# HELP` line) is wanted, matched in place: most lines fail on their
    /// first byte against every wanted name, without the name being found.
    fn wants(&self, line: &[u8]) -> bool {
        let l = line.trim_ascii_start();
        let l = match l.first() {
            Some(b'#') => match l
                .strip_prefix(b"# TYPE ")
                .or_else(|| l.strip_prefix(b"# HELP "))
            {
                Some(rest) => rest,
                None => return false,
            },
            Some(_) => l,
            None => return false,
        };
        // An empty name (or one starting with `#`) is nobody's.
        let Some(&c) = l.first() else { return false };
        if c == b'#' || ends_name(c) {
            return false;
        }
        let (from, to) = self.first[usize::from(c)];
        self.wanted[from as usize..to as usize]
            .iter()
            .any(|&(w, prefix)| {
                // For a whole name the byte after it first: it is cheap.
                (prefix || l.get(w.len()).is_none_or(|&c| ends_name(c))) && l.starts_with(w)
            })
    }

    /// The start of the body, for a message.
    pub fn excerpt(&self) -> String {
        crate::http::excerpt(&self.head)
    }

    /// The wanted families, parsed; an error when no line of the body was
    /// a sample.
    pub fn finish(mut self) -> Result<Metrics, String> {
        if !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            self.line(&last);
        }
        if !self.any_sample {
            return Err(format!(
                "not Prometheus text: no metric samples in {} bytes starting {}",
                self.bytes,
                self.excerpt()
            ));
        }
        let lines = self.kept.lines().map(|l| Ok(without_empty_labels(l)));
        let scrape = prometheus_parse::Scrape::parse(lines)
            .map_err(|e| format!("not Prometheus text: {e}"))?;
        Ok(Metrics {
            samples: scrape.samples,
        })
    }
}

/// A parsed `/metrics` or `/_status/vars` answer.
pub struct Metrics {
    samples: Vec<prometheus_parse::Sample>,
}

impl Metrics {
    /// Parses an exposition-format body.
    pub fn parse(body: &str) -> Result<Metrics, String> {
        Self::parse_lines(body, body.lines())
    }

    /// Parses only the families named in `wanted` (metric names, or
    /// prefixes ending in `*`). A connector needs a dozen of the hundreds
    /// a database exports; skipping the rest before the parser sees them
    /// cuts the cost of a CockroachDB answer about 18-fold (see
    /// collector/benches/parse.rs). Garbage is still refused: the body must
    /// hold at least one sample line.
    pub fn parse_only(body: &str, wanted: &[&str]) -> Result<Metrics, String> {
        let mut filter = LineFilter::new(wanted);
        filter.push(body.as_bytes());
        filter.finish()
    }

    fn parse_lines<'a>(
        body: &str,
        lines: impl Iterator<Item = &'a str>,
    ) -> Result<Metrics, String> {
        let lines = lines.map(|l| Ok(without_empty_labels(l)));
        let scrape = prometheus_parse::Scrape::parse(lines)
            .map_err(|e| format!("not Prometheus text: {e}"))?;
        if scrape.samples.is_empty() && !body.lines().any(looks_like_sample) {
            return Err(format!(
                "not Prometheus text: no metric samples in {} bytes starting {}",
                body.len(),
                crate::http::excerpt(body)
            ));
        }
        Ok(Metrics {
            samples: scrape.samples,
        })
    }

    /// Whether any sample of `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.metric == name)
    }

    /// The value of the first sample of `name`.
    pub fn first(&self, name: &str) -> Option<f64> {
        self.all(name).next().map(|(_, v)| v)
    }

    /// Sum of every sample of `name` (over all label sets).
    pub fn sum(&self, name: &str) -> Option<f64> {
        let mut it = self.all(name).peekable();
        it.peek()?;
        Some(it.map(|(_, v)| v).sum())
    }

    /// Every sample of `name` with its labels.
    pub fn all<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = (&'a HashMap<String, String>, f64)> + 'a {
        self.samples
            .iter()
            .filter(move |s| s.metric == name)
            .filter_map(|s| value(&s.value).map(|v| (&*s.labels, v)))
    }

    /// Every metric name with the given prefix and its first value.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
        self.samples
            .iter()
            .filter(move |s| s.metric.starts_with(prefix))
            .filter_map(|s| value(&s.value).map(|v| (s.metric.as_str(), v)))
    }
}

/// `name{} 1` as `name 1`: an empty label set is valid exposition text
/// (Envoy writes it), but the parser skips such lines.
fn without_empty_labels(line: &str) -> String {
    match line.find("{}") {
        Some(i) if !line[..i].contains(char::is_whitespace) && !line.starts_with('#') => {
            format!("{}{}", &line[..i], &line[i + 2..])
        }
        _ => line.to_string(),
    }
}

/// Whether a byte ends a metric name.
fn ends_name(c: u8) -> bool {
    c == b'{' || c.is_ascii_whitespace()
}

fn metric_name(line: &str) -> &str {
    let l = line.trim_start();
    let l = l
        .strip_prefix("# TYPE ")
        .or_else(|| l.strip_prefix("# HELP "))
        .unwrap_or(l);
    let end = l
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(l.len());
    let name = &l[..end];
    if name.starts_with('#') { "" } else { name }
}

/// A line of the form `name[{labels}] value [timestamp]`.
fn looks_like_sample(line: &str) -> bool {
    let name = metric_name(line);
    if name.is_empty()
        || line.trim_start().starts_with('#')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return false;
    }
    let rest = line.trim_start()[name.len()..].trim_start();
    let rest = match rest.strip_prefix('{') {
        Some(r) => match r.rfind('}') {
            Some(i) => &r[i + 1..],
            None => return false,
        },
        None => rest,
    };
    rest.split_whitespace()
        .next()
        .is_some_and(|v| v.parse::<f64>().is_ok() || matches!(v, "NaN" | "+Inf" | "-Inf"))
}

fn value(v: &prometheus_parse::Value) -> Option<f64> {
    use prometheus_parse::Value;
    match v {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v.is_finite().then_some(*v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS_VARS: &str = include_str!("../tests/fixtures/cockroachdb/status-vars.txt");

    #[test]
    fn lines_are_wanted_by_their_metric_name() {
        let odd = [
            "# TYPE x_total counter",
            "# HELP x_total what it counts",
            "  y{a=\"b\"} 1",
            "#comment",
            "# TYPE #x gauge",
            "",
            "   ",
            "z\t2",
            "x_totality 3",
            "x_total",
            "{x_total} 1",
        ];
        let lists: [&[&str]; 4] = [
            &["x_total", "y", "z*", "sys_uptime"],
            crate::connectors::cockroachdb::VARS,
            &["*"],
            &["sql_*", "x*"],
        ];
        for wanted in lists {
            let f = LineFilter::new(wanted);
            for line in STATUS_VARS.lines().chain(odd) {
                // The name found first, then compared: what matching in
                // place must agree with.
                let name = metric_name(line);
                let expected = !name.is_empty()
                    && wanted.iter().any(|w| match w.strip_suffix('*') {
                        Some(prefix) => name.starts_with(prefix),
                        None => name == *w,
                    });
                assert_eq!(f.wants(line.as_bytes()), expected, "{wanted:?} {line:?}");
            }
        }
    }

    #[test]
    fn a_body_taken_in_pieces_reads_as_the_whole() {
        let wanted = ["liveness_livenodes", "capacity*", "sys_uptime"];
        let whole = Metrics::parse_only(STATUS_VARS, &wanted).unwrap();
        // Pieces cut anywhere, mid-line and mid-character included.
        for size in [1, 7, 100, 4096, 16_384] {
            let mut f = LineFilter::new(&wanted);
            for piece in STATUS_VARS.as_bytes().chunks(size) {
                f.push(piece);
            }
            assert!(
                f.kept.len() < STATUS_VARS.len() / 20,
                "keeps only what is wanted"
            );
            let pieces = f.finish().unwrap();
            assert_eq!(
                pieces.samples.len(),
                whole.samples.len(),
                "pieces of {size}"
            );
            for name in wanted.iter().filter(|w| !w.ends_with('*')) {
                assert_eq!(pieces.first(name), whole.first(name), "{name}");
            }
        }
        // Garbage is refused with its start, as whole.
        let mut f = LineFilter::new(&wanted);
        f.push(b"<html><body>not");
        f.push(b" metrics</body></html>");
        let e = f.finish().err().unwrap();
        assert!(
            e.contains("no metric samples in 37 bytes starting \"<html>"),
            "{e}"
        );
    }

    #[test]
    fn parsing_only_what_is_wanted_gives_the_same_values() {
        let all = Metrics::parse(STATUS_VARS).unwrap();
        let some = Metrics::parse_only(
            STATUS_VARS,
            &["liveness_livenodes", "capacity*", "build_timestamp"],
        )
        .unwrap();
        for name in [
            "liveness_livenodes",
            "capacity",
            "capacity_available",
            "build_timestamp",
        ] {
            assert_eq!(all.first(name), some.first(name), "{name}");
        }
        assert!(some.first("sys_uptime").is_none(), "not asked for");
    }

    #[test]
    fn empty_label_sets_are_read() {
        let m = Metrics::parse("# TYPE a gauge\na{} 1\nb{x=\"{}\"} 2\n").unwrap();
        assert_eq!(m.first("a"), Some(1.0));
        assert_eq!(m.first("b"), Some(2.0));
    }

    #[test]
    fn garbage_is_refused_either_way() {
        for body in [
            "<html><body>hi</body></html>",
            "",
            "# only a comment\n",
            "not a metric line at all",
        ] {
            assert!(Metrics::parse_only(body, &["x"]).is_err(), "{body:?}");
            assert!(Metrics::parse(body).is_err(), "{body:?}");
        }
        // Real text without the wanted families parses, and has none of them.
        let m = Metrics::parse_only(STATUS_VARS, &["no_such_metric"]).unwrap();
        assert!(!m.has("no_such_metric"));
    }
}
