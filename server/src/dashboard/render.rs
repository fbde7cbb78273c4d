//! The dashboard's HTML, drawn on the server: tiles, the node × check
//! matrix, the history strip (SVG) and a report's detail. The same
//! functions draw a page and the fragments the live channel sends, so a
//! live update looks exactly like a reload. Every name and message is
//! escaped; health and status are always written out in words (and a
//! symbol), never told by colour alone.

use crate::web::escape;
use dbmon_proto::health::{ClusterSummary, health_name, status_name};
use dbmon_proto::v1::{Health, Report, Status};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// A symbol that tells a health apart without colour.
fn health_symbol(h: Health) -> &'static str {
    match h {
        Health::Healthy => "✓",
        Health::Degraded => "!",
        Health::Unavailable => "✗",
        Health::Unknown | Health::Unspecified => "?",
    }
}

fn status_symbol(s: Status) -> &'static str {
    match s {
        Status::Ok => "✓",
        Status::Warn => "!",
        Status::Crit => "✗",
        Status::NotApplicable => "–",
        Status::Unknown | Status::Unspecified => "?",
    }
}

/// "3 s ago", "4 min ago", from `at_ms` to `now_ms`.
pub fn age(at_ms: i64, now_ms: i64) -> String {
    if at_ms <= 0 {
        return "never".into();
    }
    let s = (now_ms - at_ms).max(0) / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// A value with its unit, as people read it: `71.2 %`, `3`, `12 MiB`.
pub fn value(r: &Report) -> String {
    let Some(v) = r.value else {
        return String::new();
    };
    let n = if v.fract() == 0.0 || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    };
    match r.unit.as_str() {
        "" => n,
        "bytes" | "B" => bytes(v),
        u => format!("{n} {u}"),
    }
}

fn bytes(v: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = v;
    let mut i = 0;
    while v.abs() >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// The path of a cluster's page.
pub fn cluster_href(cluster: &str) -> String {
    format!("/clusters/{}", path_part(cluster))
}

/// The path of a report's detail.
pub fn report_href(r: &Report) -> String {
    format!(
        "/clusters/{}/nodes/{}/checks/{}",
        path_part(&r.cluster),
        path_part(node_key(&r.node)),
        path_part(&r.check)
    )
}

/// A cluster-wide report has no node; its path and row say `cluster`.
pub const CLUSTER_WIDE: &str = "(cluster)";

pub fn node_key(node: &str) -> &str {
    if node.is_empty() { CLUSTER_WIDE } else { node }
}

fn path_part(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// One cluster's tile on the overview; `marks` are its firing alerts and
/// why notifications are muted.
pub fn tile(s: &ClusterSummary, marks: &(usize, Option<String>), now_ms: i64) -> String {
    let h = health_name(s.health);
    let mut out = String::new();
    let _ = write!(
        out,
        "<article class=\"tile h-{h}\" id=\"tile-{id}\" data-health=\"{h}\">\
         <h2><a href=\"{href}\">{name}</a></h2>\
         <p class=\"health\"><span class=\"sym\" aria-hidden=\"true\">{sym}</span> {h}</p>\
         <p class=\"nodes\">{up} of {total} nodes up · {kind}</p>",
        id = escape(&s.cluster),
        href = escape(&cluster_href(&s.cluster)),
        name = escape(&s.cluster),
        sym = health_symbol(s.health),
        up = s.nodes_up,
        total = s.nodes_total,
        kind = escape(&s.kind),
    );
    if !s.blind.is_empty() {
        let _ = write!(
            out,
            "<p class=\"blind\">cannot see: {}</p>",
            escape(&s.blind.join(", "))
        );
    }
    if !s.worst.is_empty() {
        out.push_str("<ul class=\"worst\">");
        for r in s.worst.iter().take(3) {
            let st = status_name(dbmon_proto::health::effective_status(r, now_ms));
            let _ = write!(
                out,
                "<li><span class=\"st st-{st}\">{st}</span> <a href=\"{href}\">{node} {check}</a>: {msg}</li>",
                href = escape(&report_href(r)),
                node = escape(node_key(&r.node)),
                check = escape(&r.check),
                msg = escape(&r.message),
            );
        }
        if s.worst.len() > 3 {
            let _ = write!(out, "<li>and {} more</li>", s.worst.len() - 3);
        }
        out.push_str("</ul>");
    }
    let (firing, muted) = marks;
    if *firing > 0 || muted.is_some() {
        out.push_str("<p class=\"marks\">");
        if *firing > 0 {
            let _ = write!(
                out,
                "<span class=\"firing\">{firing} alert{} firing</span> ",
                if *firing == 1 { "" } else { "s" }
            );
        }
        if let Some(m) = muted {
            let _ = write!(out, "<span class=\"muted\">muted: {}</span>", escape(m));
        }
        out.push_str("</p>");
    }
    let _ = write!(
        out,
        "<p class=\"age\">{stale}updated <span data-at=\"{at}\">{age}</span></p></article>",
        stale = if s.stale { "stale: " } else { "" },
        at = s.newest_ms,
        age = age(s.newest_ms, now_ms),
    );
    out
}

/// The id of a matrix cell.
pub fn cell_id(node: &str, check: &str) -> String {
    format!("cell/{}/{check}", node_key(node))
}

/// One cell of the matrix.
pub fn cell(r: &Report, now_ms: i64) -> String {
    let status = dbmon_proto::health::effective_status(r, now_ms);
    let st = status_name(status);
    let stale = if dbmon_proto::health::is_stale(r, now_ms) {
        " (stale)"
    } else {
        ""
    };
    format!(
        "<td id=\"{id}\" class=\"cell st-{st}\"><a href=\"{href}\">\
         <span class=\"st st-{st}\"><span aria-hidden=\"true\">{sym}</span> {st}{stale}</span> \
         <span class=\"value\">{value}</span></a><span class=\"msg\">{msg}</span></td>",
        id = escape(&cell_id(&r.node, &r.check)),
        href = escape(&report_href(r)),
        sym = status_symbol(status),
        value = escape(&value(r)),
        msg = escape(&r.message),
    )
}

/// The node × check matrix of a cluster's latest reports.
pub fn matrix(latest: &[Report], now_ms: i64) -> String {
    let checks: BTreeSet<&str> = latest.iter().map(|r| r.check.as_str()).collect();
    let mut rows: BTreeMap<&str, BTreeMap<&str, &Report>> = BTreeMap::new();
    for r in latest {
        rows.entry(node_key(&r.node))
            .or_default()
            .insert(&r.check, r);
    }
    let mut out = String::from(
        "<div class=\"scroll\" tabindex=\"0\" aria-label=\"nodes and checks\"><table class=\"matrix\"><thead><tr><th scope=\"col\">node</th>",
    );
    for c in &checks {
        let _ = write!(out, "<th scope=\"col\">{}</th>", escape(c));
    }
    out.push_str("</tr></thead><tbody>");
    for (node, by_check) in &rows {
        let _ = write!(out, "<tr><th scope=\"row\">{}</th>", escape(node));
        for c in &checks {
            match by_check.get(c) {
                Some(r) => out.push_str(&cell(r, now_ms)),
                None => {
                    let _ = write!(
                        out,
                        "<td id=\"{}\" class=\"cell none\">–</td>",
                        escape(&cell_id(node, c))
                    );
                }
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

/// The history strip: one band per health, from the oldest report held to
/// now, drawn as SVG with a title per band (read by screen readers and
/// shown on hover) and the span written below.
pub fn strip(changes: &[(i64, Health)], now_ms: i64) -> String {
    const W: f64 = 600.0;
    let Some(&(start, _)) = changes.first() else {
        return "<p id=\"strip\" class=\"strip-none\">No history held yet.</p>".into();
    };
    let span = (now_ms - start).max(1) as f64;
    let mut bands = String::new();
    let mut words = Vec::new();
    for (i, (from, h)) in changes.iter().enumerate() {
        let to = changes.get(i + 1).map_or(now_ms, |n| n.0);
        let x = (from - start) as f64 / span * W;
        let w = ((to - from) as f64 / span * W).max(1.0);
        let name = health_name(*h);
        let _ = write!(
            bands,
            "<rect class=\"band h-{name}\" x=\"{x:.1}\" y=\"0\" width=\"{w:.1}\" height=\"24\"><title>{name} from {} to {}</title></rect>",
            dbmon_auth::caveat::format_ms(*from),
            dbmon_auth::caveat::format_ms(to),
        );
        words.push(format!(
            "{name} at {}",
            dbmon_auth::caveat::format_ms(*from)
        ));
    }
    format!(
        "<figure id=\"strip\"><svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} 24\" \
         preserveAspectRatio=\"none\" role=\"img\" aria-label=\"health over the history held: {label}\">{bands}</svg>\
         <figcaption>Health since {since} ({changes} change{s}): {label}</figcaption></figure>",
        label = escape(&words.join(", then ")),
        since = dbmon_auth::caveat::format_ms(start),
        changes = changes.len().saturating_sub(1),
        s = if changes.len() == 2 { "" } else { "s" },
    )
}

/// A report's detail: every field, then its recent status changes.
pub fn detail(r: &Report, history: &[Report], now_ms: i64) -> String {
    let status = dbmon_proto::health::effective_status(r, now_ms);
    let st = status_name(status);
    let mut out = String::new();
    let _ = write!(
        out,
        "<dl class=\"detail\">\
         <dt>Status</dt><dd><span class=\"st st-{st}\"><span aria-hidden=\"true\">{sym}</span> {st}</span>{stale}</dd>\
         <dt>Value</dt><dd>{value}</dd>\
         <dt>Message</dt><dd>{msg}</dd>\
         <dt>Observed</dt><dd>{observed} ({age})</dd>\
         <dt>Stale after</dt><dd>{stale_after}</dd>\
         <dt>Kind</dt><dd>{kind}</dd>\
         <dt>Collector</dt><dd>{collector}</dd>\
         <dt>Answered in</dt><dd>{latency:.1} ms</dd>\
         <dt>Essential</dt><dd>{essential}</dd></dl>",
        sym = status_symbol(status),
        stale = if dbmon_proto::health::is_stale(r, now_ms) {
            " (stale: not reported again in time)"
        } else {
            ""
        },
        value = escape(&value(r)),
        msg = escape(&r.message),
        observed = dbmon_auth::caveat::format_ms(r.observed_at_ms),
        age = age(r.observed_at_ms, now_ms),
        stale_after = if r.stale_after_ms > 0 {
            format!("{} s", r.stale_after_ms / 1000)
        } else {
            "never".into()
        },
        kind = escape(&r.kind),
        collector = escape(&r.collector_id),
        latency = r.latency_us as f64 / 1000.0,
        essential = if r.essential {
            "yes: the cluster's health is unknown without it"
        } else {
            "no"
        },
    );
    let mut changes: Vec<&Report> = Vec::new();
    for h in history
        .iter()
        .filter(|h| h.node == r.node && h.check == r.check)
    {
        if changes.last().is_none_or(|l| l.status != h.status) {
            changes.push(h);
        }
    }
    out.push_str("<h2>Status changes held</h2>");
    if changes.is_empty() {
        out.push_str("<p>None held.</p>");
        return out;
    }
    out.push_str("<div class=\"scroll\" tabindex=\"0\"><table><thead><tr><th scope=\"col\">since</th><th scope=\"col\">status</th><th scope=\"col\">value</th><th scope=\"col\">message</th></tr></thead><tbody>");
    for h in changes.iter().rev().take(50) {
        let st = status_name(h.status());
        let _ = write!(
            out,
            "<tr><td>{}</td><td><span class=\"st st-{st}\">{st}</span></td><td>{}</td><td>{}</td></tr>",
            dbmon_auth::caveat::format_ms(h.observed_at_ms),
            escape(&value(h)),
            escape(&h.message),
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(node: &str, check: &str, status: Status, at: i64) -> Report {
        Report {
            cluster: "c".into(),
            node: node.into(),
            check: check.into(),
            status: status as i32,
            observed_at_ms: at,
            ..Default::default()
        }
    }

    #[test]
    fn the_strip_draws_a_band_per_stretch_of_health() {
        let changes = [
            (1000, Health::Healthy),
            (3000, Health::Degraded),
            (5000, Health::Healthy),
        ];
        let svg = strip(&changes, 6000);
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("2 changes"), "{svg}");
        assert!(svg.contains("degraded at"), "{svg}");
    }

    #[test]
    fn names_are_escaped_and_values_read_well() {
        let mut r = rep("<n>", "up\"", Status::Warn, 1);
        r.message = "<script>".into();
        r.value = Some(3.0 * 1024.0 * 1024.0);
        r.unit = "bytes".into();
        let c = cell(&r, 2);
        assert!(!c.contains("<script>") && !c.contains("<n>"), "{c}");
        assert!(c.contains("3.0 MiB"), "{c}");
        r.value = Some(71.234);
        r.unit = "%".into();
        assert_eq!(value(&r), "71.23 %");
        assert_eq!(age(1000, 62_000), "1 min ago");
    }
}
