//! `dbmon-client`: what people use to see their clusters. `status` prints
//! one line per cluster, `watch` follows reports live, `get cluster` shows
//! every check of one cluster.

pub mod view;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use dbmon_proto::health::{health_name, summarize};
use dbmon_proto::v1::monitor_client::MonitorClient;
use dbmon_proto::v1::{ListReportsRequest, WatchRequest, watch_event};
use dbmon_proto::{Report, now_ms};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use view::{ClusterView, ReportView};

/// Where the server is when nothing else says.
pub const DEFAULT_SERVER: &str = "https://127.0.0.1:7070";

#[derive(Parser, Debug)]
#[command(
    name = "dbmon-client",
    version,
    about = "See the live health of the clusters dbmon watches"
)]
pub struct Cli {
    /// gRPC address of the dbmon server [default: client.server of --config, else http://127.0.0.1:7070].
    #[arg(long, global = true, env = "DBMON_SERVER")]
    pub server: Option<String>,
    /// Configuration file whose `client:` section names the server and its CA.
    #[arg(long, global = true, env = "DBMON_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// CA certificate the server's certificate chains to (ca.crt of `dbmon pki init`).
    #[arg(long, global = true, env = "DBMON_CA")]
    pub ca: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// One line per cluster: health, nodes up, worst checks, age of the newest report.
    Status {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Follow reports as they arrive (a live table on a terminal, one line per event otherwise).
    Watch {
        /// Only these clusters (repeatable).
        #[arg(long = "cluster")]
        clusters: Vec<String>,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// A cluster's past reports: by default only status changes of each
    /// (node, check), from the server's recent history.
    History {
        cluster: String,
        /// How far back, like 15m, 1h or 1d.
        #[arg(long, default_value = "1h")]
        since: String,
        /// Every report, not only changes.
        #[arg(long)]
        all: bool,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Details of one object.
    Get {
        #[command(subcommand)]
        what: GetWhat,
    },
}

#[derive(Subcommand, Debug)]
pub enum GetWhat {
    /// Every check of one cluster, and its recent history.
    Cluster {
        name: String,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// Runs the command line; errors are printed by the caller.
pub async fn run(cli: Cli) -> Result<()> {
    let from_file = match &cli.config {
        Some(path) => {
            Some(dbmon_config::Config::load_client(path).map_err(|e| anyhow::anyhow!("{e}"))?)
        }
        None => None,
    };
    let server = cli
        .server
        .or_else(|| from_file.as_ref().map(|c| c.server.clone()))
        .unwrap_or_else(|| DEFAULT_SERVER.to_string());
    let ca = cli.ca.or_else(|| from_file.and_then(|c| c.ca_file));
    let target = Target { server, ca };
    match cli.command {
        Command::Status { output } => status(&target, output).await,
        Command::Watch { clusters, output } => watch(&target, clusters, output).await,
        Command::Get {
            what: GetWhat::Cluster { name, output },
        } => get_cluster(&target, &name, output).await,
        Command::History {
            cluster,
            since,
            all,
            output,
        } => history(&target, &cluster, &since, all, output).await,
    }
}

async fn history(
    target: &Target,
    cluster: &str,
    since: &str,
    all: bool,
    output: Format,
) -> Result<()> {
    let window = humantime::parse_duration(since)
        .with_context(|| format!("--since {since:?}: expected a duration like 15m, 1h or 1d"))?;
    let resp = cluster_reports(target, cluster).await?;
    let from = resp.server_time_ms - window.as_millis() as i64;
    let mut last: BTreeMap<(String, String), i32> = BTreeMap::new();
    let mut shown = Vec::new();
    for r in resp.history.iter().filter(|r| r.observed_at_ms >= from) {
        let key = (r.node.clone(), r.check.clone());
        let changed = last.insert(key, r.status) != Some(r.status);
        if all || changed {
            shown.push(r);
        }
    }
    match output {
        Format::Table => {
            let mut rows = vec![vec![
                "TIME".to_string(),
                "NODE".into(),
                "CHECK".into(),
                "STATUS".into(),
                "MESSAGE".into(),
            ]];
            for r in &shown {
                rows.push(vec![
                    view::timestamp(r.observed_at_ms),
                    if r.node.is_empty() {
                        "(cluster)".into()
                    } else {
                        r.node.clone()
                    },
                    r.check.clone(),
                    dbmon_proto::health::status_name(r.status()).to_string(),
                    r.message.clone(),
                ]);
            }
            print!("{}", view::table(&rows));
            if shown.is_empty() {
                println!("no reports of {cluster} in the last {since}");
            }
        }
        f => print_structured(
            &shown.iter().map(|r| ReportView::new(r)).collect::<Vec<_>>(),
            f,
        )?,
    }
    Ok(())
}

/// Where the server is and how to trust it.
pub struct Target {
    pub server: String,
    pub ca: Option<std::path::PathBuf>,
}

/// Connects, or explains why not and what to do.
pub async fn connect(target: &Target) -> Result<MonitorClient<Channel>> {
    let server = target.server.as_str();
    let result = if server.starts_with("https://") {
        let ca = target.ca.as_ref().ok_or_else(|| {
            anyhow::anyhow!("{server} uses TLS: give the CA that signed its certificate with --ca FILE, DBMON_CA or client.ca_file")
        })?;
        let td = dbmon_pki::trust_domain_of(ca)?;
        let trust = dbmon_pki::tls::Trust::load(ca, None, &td)?;
        let cfg = std::sync::Arc::new(dbmon_pki::tls::people_client(trust)?);
        dbmon_pki::transport::channel(server, cfg, Duration::from_secs(5)).await
    } else {
        let endpoint = tonic::transport::Endpoint::from_shared(server.to_string())
            .with_context(|| {
                format!("{server:?} is not a server address; expected https://HOST:PORT")
            })?
            .connect_timeout(Duration::from_secs(5));
        endpoint
            .connect()
            .await
            .map_err(|e| dbmon_pki::transport::describe_chain(&e))
    };
    let channel = result.map_err(|why| {
        anyhow::anyhow!(
            "cannot reach the dbmon server at {server} ({why}). Is `dbmon server` running there? \
             Point to it with --server or DBMON_SERVER."
        )
    })?;
    // ListReports of thousands of clusters is tens of MB, past tonic's 4 MB default.
    Ok(MonitorClient::new(channel).max_decoding_message_size(512 << 20))
}

fn rpc_error(server: &str, s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!(
        "the dbmon server at {server} answered {:?}: {}",
        s.code(),
        s.message()
    )
}

fn print_structured<T: serde::Serialize>(value: &T, format: Format) -> Result<()> {
    let text = match format {
        Format::Json => serde_json::to_string_pretty(value)? + "\n",
        Format::Yaml => serde_saphyr::to_string(value).context("cannot render YAML")?,
        Format::Table => unreachable!("tables are rendered by the caller"),
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

async fn status(target: &Target, output: Format) -> Result<()> {
    let server = target.server.as_str();
    let mut client = connect(target).await?;
    let resp = client
        .list_reports(ListReportsRequest::default())
        .await
        .map_err(|s| rpc_error(server, s))?
        .into_inner();
    let now = resp.server_time_ms;
    let summaries = summarize(&resp.latest, now);
    match output {
        Format::Table if summaries.is_empty() => {
            println!("no reports yet: no collector has published to {server}");
        }
        Format::Table => print!("{}", view::status_table(&summaries, now)),
        f => {
            let views: Vec<ClusterView> =
                summaries.iter().map(|s| ClusterView::new(s, now)).collect();
            print_structured(&views, f)?;
        }
    }
    Ok(())
}

/// The latest reports and history of one cluster, or why there are none.
async fn cluster_reports(
    target: &Target,
    name: &str,
) -> Result<dbmon_proto::v1::ListReportsResponse> {
    let server = target.server.as_str();
    let mut client = connect(target).await?;
    let resp = client
        .list_reports(ListReportsRequest {
            clusters: vec![name.to_string()],
            include_history: true,
        })
        .await
        .map_err(|s| rpc_error(server, s))?
        .into_inner();
    if resp.latest.is_empty() {
        bail!(
            "no cluster named {name:?} has reports on {server}; `dbmon-client status` lists the clusters"
        );
    }
    Ok(resp)
}

async fn get_cluster(target: &Target, name: &str, output: Format) -> Result<()> {
    let resp = cluster_reports(target, name).await?;
    let now = resp.server_time_ms;
    let summary = summarize(&resp.latest, now).remove(0);
    match output {
        Format::Table => {
            println!(
                "{}  {}  health: {}  nodes up: {}/{}  newest report: {} ago\n",
                summary.cluster,
                summary.kind,
                health_name(summary.health),
                summary.nodes_up,
                summary.nodes_total,
                view::age(now - summary.newest_ms)
            );
            print!("{}", view::reports_table(&resp.latest));
            let changes: Vec<&Report> = resp
                .history
                .iter()
                .filter(|r| view::notable(r.status()))
                .collect();
            if !changes.is_empty() {
                println!("\nrecent problems (newest last):");
                for r in changes.iter().rev().take(10).rev() {
                    println!(
                        "  {}  {}: {}",
                        view::timestamp(r.observed_at_ms),
                        view::short(r),
                        r.message
                    );
                }
            }
        }
        f => {
            #[derive(serde::Serialize)]
            struct Detail {
                summary: ClusterView,
                checks: Vec<ReportView>,
                history: Vec<ReportView>,
            }
            print_structured(
                &Detail {
                    summary: ClusterView::new(&summary, now),
                    checks: resp.latest.iter().map(ReportView::new).collect(),
                    history: resp.history.iter().map(ReportView::new).collect(),
                },
                f,
            )?;
        }
    }
    Ok(())
}

/// The latest report per (cluster, node, check), as a watcher sees it.
#[derive(Default)]
struct State {
    latest: BTreeMap<(String, String, String), Report>,
}

impl State {
    fn replace(&mut self, reports: Vec<Report>) {
        self.latest = reports
            .into_iter()
            .map(|r| ((r.cluster.clone(), r.node.clone(), r.check.clone()), r))
            .collect();
    }

    fn apply(&mut self, r: Report) {
        self.latest
            .insert((r.cluster.clone(), r.node.clone(), r.check.clone()), r);
    }

    fn summary(&self, cluster: &str, now: i64) -> Option<dbmon_proto::health::ClusterSummary> {
        summarize(self.latest.values().filter(|r| r.cluster == cluster), now).pop()
    }
}

async fn watch(target: &Target, clusters: Vec<String>, output: Format) -> Result<()> {
    let server = target.server.as_str();
    let live = output == Format::Table && std::io::stdout().is_terminal();
    let mut state = State::default();
    let mut recent: Vec<String> = Vec::new();
    let mut backoff = Duration::from_millis(500);
    let mut connected_once = false;
    // Where to resume after a lost connection: the last position received.
    let mut last_position = 0u64;
    loop {
        let attempt = async {
            let mut client = connect(target).await?;
            let stream = client
                .watch(WatchRequest {
                    clusters: clusters.clone(),
                    after_position: last_position,
                })
                .await
                .map_err(|s| rpc_error(server, s))?
                .into_inner();
            Ok::<_, anyhow::Error>(stream)
        }
        .await;
        let mut stream = match attempt {
            Ok(s) => s,
            Err(e) if !connected_once => return Err(e),
            Err(e) => {
                eprintln!("{e}; retrying in {}", humantime::format_duration(backoff));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        connected_once = true;
        backoff = Duration::from_millis(500);
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(e) => e,
                Err(s) => {
                    eprintln!("watch interrupted: {}", s.message());
                    break;
                }
            };
            let now = now_ms();
            // A snapshot restarts the count (a restarted server numbers anew).
            last_position = match &event.event {
                Some(watch_event::Event::Snapshot(_)) => event.position,
                _ => last_position.max(event.position),
            };
            match event.event {
                Some(watch_event::Event::Snapshot(snap)) => {
                    if snap.part == 0 {
                        state.replace(Vec::new());
                    }
                    for r in snap.latest {
                        state.apply(r);
                    }
                    if !snap.last {
                        continue;
                    }
                    let names: Vec<String> = state
                        .latest
                        .keys()
                        .map(|k| k.0.clone())
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    let summaries: Vec<_> =
                        names.iter().filter_map(|c| state.summary(c, now)).collect();
                    if output == Format::Json {
                        let line = serde_json::json!({
                            "type": "snapshot",
                            "reason": snap.reason,
                            "position": event.position,
                            "clusters": summaries.iter().map(|s| ClusterView::new(s, now)).collect::<Vec<_>>(),
                        });
                        println!("{line}");
                    } else if !live {
                        println!("-- {} ({} reports) --", snap.reason, state.latest.len());
                        print!("{}", view::status_table(&summaries, now));
                    }
                }
                Some(watch_event::Event::Report(_)) | Some(watch_event::Event::Batch(_)) => {
                    let reports = match event.event {
                        Some(watch_event::Event::Report(r)) => vec![r],
                        Some(watch_event::Event::Batch(b)) => b.reports,
                        _ => Vec::new(),
                    };
                    for r in reports {
                        let cluster = r.cluster.clone();
                        let line = format!(
                            "{}  {}  {}: {}",
                            view::timestamp(r.observed_at_ms),
                            cluster,
                            view::short(&r),
                            r.message
                        );
                        let rv = ReportView::new(&r);
                        state.apply(r);
                        let s = state.summary(&cluster, now);
                        if output == Format::Json {
                            let line = serde_json::json!({
                                "type": "report",
                                "position": event.position,
                                "report": rv,
                                "cluster_health": s.as_ref().map(|s| health_name(s.health)),
                                "nodes_up": s.as_ref().map(|s| s.nodes_up),
                                "nodes_total": s.as_ref().map(|s| s.nodes_total),
                            });
                            println!("{line}");
                        } else if !live {
                            let h = s.map(|s| health_name(s.health)).unwrap_or("unknown");
                            println!("{line}  [cluster {h}]");
                        } else {
                            if rv.status != "ok" {
                                recent.push(line);
                                if recent.len() > 10 {
                                    recent.remove(0);
                                }
                            }
                        }
                    }
                }
                None => {}
            }
            if live {
                redraw(&state, &recent, server, now);
            }
            std::io::stdout().flush()?;
        }
        eprintln!("lost the stream from {server}; reconnecting");
    }
}

fn redraw(state: &State, recent: &[String], server: &str, now: i64) {
    let names: std::collections::BTreeSet<&String> = state.latest.keys().map(|k| &k.0).collect();
    let summaries: Vec<_> = names.iter().filter_map(|c| state.summary(c, now)).collect();
    let mut out = String::from("\x1b[H\x1b[2J");
    out.push_str(&format!(
        "dbmon watch: {server}  ({})\n\n",
        view::timestamp(now)
    ));
    out.push_str(&view::status_table(&summaries, now));
    if !recent.is_empty() {
        out.push_str("\nrecent problems:\n");
        for l in recent {
            out.push_str("  ");
            out.push_str(l);
            out.push('\n');
        }
    }
    let _ = std::io::stdout().write_all(out.as_bytes());
}
