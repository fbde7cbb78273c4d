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
        let lines = body.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines)
            .map_err(|e| format!("not Prometheus text: {e}"))?;
        if scrape.samples.is_empty() {
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

fn value(v: &prometheus_parse::Value) -> Option<f64> {
    use prometheus_parse::Value;
    match v {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v.is_finite().then_some(*v),
        _ => None,
    }
}
