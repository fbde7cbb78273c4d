//! Prometheus text answers, parsed with the `prometheus-parse` crate, and
//! the lookups connectors need. An answer that holds no samples is an error,
//! so HTML or garbage never reads as "all metrics absent and fine".

use std::collections::HashMap;

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
        if !body.lines().any(looks_like_sample) {
            return Self::parse_lines(body, std::iter::empty());
        }
        let keep = |line: &&str| {
            let name = metric_name(line);
            !name.is_empty()
                && wanted.iter().any(|w| match w.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => name == *w,
                })
        };
        Self::parse_lines(body, body.lines().filter(keep))
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

/// The metric name of a sample line, or of a `# TYPE`/`# HELP` line.
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
