//! `dbmon-client`: what people use to see their clusters. `status` prints
//! one line per cluster, `watch` follows reports live, `get cluster` shows
//! every check of one cluster.

pub mod alerts;
pub mod session;
pub mod view;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use dbmon_proto::health::{health_name, summarize};
use dbmon_proto::v1::auth_client::AuthClient;
use dbmon_proto::v1::monitor_client::MonitorClient;
use dbmon_proto::v1::poll_login_response::State as PollState;
use dbmon_proto::v1::sessions_client::SessionsClient;
use dbmon_proto::v1::{
    ListReportsRequest, ListSessionsRequest, LogoutRequest, PollLoginRequest, RevokeSessionRequest,
    StartLoginRequest, WatchRequest, WhoAmIRequest, watch_event,
};
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
    /// Sign in with a passkey in a browser (this machine's or any other) and
    /// keep the token for this server.
    Login {
        /// Do not try to open a browser; only print the URL.
        #[arg(long)]
        no_browser: bool,
    },
    /// Revoke this login on the server and forget its token.
    Logout,
    /// Print a completion script for a shell: bash, zsh, fish, powershell
    /// or elvish. For bash: `dbmon-client completions bash > /etc/bash_completion.d/dbmon-client`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Who the token belongs to, what it allows and until when.
    Whoami,
    /// Tokens for scripts.
    Token {
        #[command(subcommand)]
        what: TokenWhat,
    },
    /// Everybody's logins (operators and admins).
    Sessions {
        #[command(subcommand)]
        what: SessionsWhat,
    },
    /// Firing and pending alerts: since when, who is told, how the last
    /// delivery went, and what mutes them.
    Alerts {
        /// Only these clusters (repeatable).
        #[arg(long = "cluster")]
        clusters: Vec<String>,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Mute notifications for a while (operators and admins).
    Silence {
        #[command(subcommand)]
        what: alerts::SilenceWhat,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenWhat {
    /// Print a narrower copy of the current token (offline: no server call).
    /// It can only do less than the token it comes from.
    Attenuate {
        /// Only these clusters (repeatable).
        #[arg(long = "cluster")]
        clusters: Vec<String>,
        /// Expires after this long, like 30m or 1h.
        #[arg(long)]
        ttl: Option<String>,
        /// Only these operations: read, watch, sessions, silence (comma-separated or repeated).
        #[arg(long)]
        ops: Vec<String>,
    },
    /// Make a badge token for one cluster: a new login (listed by
    /// `sessions list`, revoked by `sessions revoke`) that allows the
    /// cluster's status badge and nothing else. Prints the badge URLs.
    Badge {
        #[arg(long)]
        cluster: String,
        /// Lifetime, like 30d; at most a year.
        #[arg(long, default_value = "90d")]
        ttl: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum SessionsWhat {
    /// Logins that have not expired.
    List,
    /// Revoke one login, or all of a user's.
    Revoke {
        #[arg(long, conflicts_with = "user", required_unless_present = "user")]
        login: Option<String>,
        #[arg(long)]
        user: Option<String>,
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
    if let Command::Completions { shell } = cli.command {
        use clap::CommandFactory;
        // Written whole from memory: a closed pipe is an error, not a panic.
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "dbmon-client", &mut script);
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        return match out.write_all(&script).and_then(|()| out.flush()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(anyhow::anyhow!("cannot write the completion script: {e}")),
        };
    }
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
        Command::Login { no_browser } => login(&target, no_browser).await,
        Command::Logout => logout(&target).await,
        Command::Completions { .. } => Ok(()),
        Command::Whoami => whoami(&target).await,
        Command::Token {
            what: TokenWhat::Attenuate { clusters, ttl, ops },
        } => {
            let (token, _) =
                session::load(&target.server)?.ok_or_else(|| not_logged_in(&target.server))?;
            let caveats = session::caveats(&clusters, ttl.as_deref(), &ops)?;
            let narrowed = dbmon_auth::token::attenuate(&token, &caveats)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{narrowed}");
            Ok(())
        }
        Command::Token {
            what: TokenWhat::Badge { cluster, ttl },
        } => badge(&target, &cluster, &ttl).await,
        Command::Sessions { what } => sessions(&target, what).await,
        Command::Alerts { clusters, output } => alerts::alerts(&target, clusters, output).await,
        Command::Silence { what } => alerts::silence(&target, what).await,
    }
}

fn not_logged_in(server: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "not logged in to {server}: run `dbmon-client login` (or set {})",
        session::TOKEN_ENV
    )
}

type Authed = tonic::service::interceptor::InterceptedService<Channel, session::WithToken>;

async fn login(target: &Target, no_browser: bool) -> Result<()> {
    let server = target.server.as_str();
    let mut client = AuthClient::new(channel(target).await?);
    let started = client
        .start_login(StartLoginRequest {})
        .await
        .map_err(|s| rpc_error(server, s))?
        .into_inner();
    println!(
        "Open this URL in a browser, on this machine or any other:\n\n    {}\n",
        started.url
    );
    println!(
        "Check that the page shows the code {}, then sign in with your passkey.",
        started.user_code
    );
    std::io::stdout().flush()?;
    let graphical =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if !no_browser && graphical {
        let _ = std::process::Command::new("xdg-open")
            .arg(&started.url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    let interval = Duration::from_millis(started.interval_ms.clamp(250, 10_000) as u64);
    loop {
        if now_ms() > started.expires_at_ms {
            bail!("the login expired before a passkey was used; run `dbmon-client login` again");
        }
        tokio::time::sleep(interval).await;
        let poll = client
            .poll_login(PollLoginRequest {
                device_code: started.device_code.clone(),
            })
            .await
            .map_err(|s| rpc_error(server, s))?
            .into_inner();
        match poll.state() {
            PollState::Pending | PollState::Unspecified => continue,
            PollState::Expired => {
                bail!("the login expired or was already used; run `dbmon-client login` again")
            }
            PollState::Approved => {
                let path = session::save(server, &poll.macaroon)?;
                println!(
                    "Logged in to {server} as {}; token saved to {}",
                    poll.user,
                    path.display()
                );
                return Ok(());
            }
        }
    }
}

/// The saved token (read once) and an Auth client that carries it.
async fn signed_in(target: &Target) -> Result<(AuthClient<Authed>, session::Source)> {
    let server = target.server.as_str();
    let (token, src) = session::load(server)?.ok_or_else(|| not_logged_in(server))?;
    let with = session::WithToken::new(&token, &src)?;
    Ok((
        AuthClient::with_interceptor(channel(target).await?, with),
        src,
    ))
}

async fn logout(target: &Target) -> Result<()> {
    let server = target.server.as_str();
    let (mut client, src) = signed_in(target).await?;
    let result = client.logout(LogoutRequest {}).await;
    if let session::Source::File(_) = src {
        session::forget(server)?;
    }
    match result {
        Ok(r) => {
            println!(
                "Logged out: login {} revoked on {server}",
                r.into_inner().login
            );
            Ok(())
        }
        Err(s) if s.code() == tonic::Code::Unauthenticated => {
            println!(
                "The token was no longer valid ({}); it is forgotten here",
                s.message()
            );
            Ok(())
        }
        Err(s) => Err(rpc_error(server, s)),
    }
}

async fn whoami(target: &Target) -> Result<()> {
    let server = target.server.as_str();
    let (mut client, src) = signed_in(target).await?;
    let me = client
        .who_am_i(WhoAmIRequest {})
        .await
        .map_err(|s| rpc_error(server, s))?
        .into_inner();
    println!("user:     {}", me.user);
    println!("role:     {}", me.role);
    println!("login:    {}", me.login);
    println!("ops:      {}", me.ops.join(","));
    println!(
        "clusters: {}",
        if me.clusters.is_empty() {
            "all".to_string()
        } else {
            me.clusters.join(",")
        }
    );
    println!(
        "expires:  {}",
        dbmon_auth::caveat::format_ms(me.expires_at_ms)
    );
    println!("token:    {}", session::describe(&src));
    for c in &me.caveats {
        println!("caveat:   {}", session::explain(c));
    }
    Ok(())
}

async fn badge(target: &Target, cluster: &str, ttl: &str) -> Result<()> {
    let server = target.server.as_str();
    let ttl = humantime::parse_duration(ttl)
        .with_context(|| format!("--ttl {ttl:?}: expected a duration like 90d"))?;
    let mut client =
        SessionsClient::with_interceptor(channel(target).await?, session::interceptor(server)?);
    let r = client
        .mint_badge(dbmon_proto::v1::MintBadgeRequest {
            cluster: cluster.to_string(),
            ttl_ms: ttl.as_millis() as i64,
        })
        .await
        .map_err(|s| rpc_error(server, s))?
        .into_inner();
    let base = server.trim_end_matches('/');
    eprintln!(
        "badge token for {cluster}, login {}, until {}; it allows this badge and nothing else (revoke: dbmon-client sessions revoke --login {})",
        r.login,
        view::timestamp(r.expires_at_ms),
        r.login
    );
    println!("{base}/badge/{cluster}.svg?token={}", r.token);
    println!("{base}/badge/{cluster}.json?token={}", r.token);
    Ok(())
}

async fn sessions(target: &Target, what: SessionsWhat) -> Result<()> {
    let server = target.server.as_str();
    let mut client =
        SessionsClient::with_interceptor(channel(target).await?, session::interceptor(server)?);
    match what {
        SessionsWhat::List => {
            let list = client
                .list_sessions(ListSessionsRequest {})
                .await
                .map_err(|s| rpc_error(server, s))?
                .into_inner();
            let mut rows = vec![vec![
                "LOGIN".to_string(),
                "USER".into(),
                "WITH".into(),
                "PEER".into(),
                "CREATED".into(),
                "EXPIRES".into(),
                "REVOKED".into(),
            ]];
            for s in list.sessions {
                rows.push(vec![
                    s.login,
                    s.user,
                    s.credential,
                    s.peer,
                    view::timestamp(s.created_at_ms),
                    view::timestamp(s.expires_at_ms),
                    if s.revoked_at_ms == 0 {
                        "-".into()
                    } else {
                        view::timestamp(s.revoked_at_ms)
                    },
                ]);
            }
            print!("{}", view::table(&rows));
        }
        SessionsWhat::Revoke { login, user } => {
            let r = client
                .revoke_session(RevokeSessionRequest {
                    login: login.unwrap_or_default(),
                    user: user.unwrap_or_default(),
                })
                .await
                .map_err(|s| rpc_error(server, s))?
                .into_inner();
            if r.revoked.is_empty() {
                println!("nothing to revoke");
            }
            for id in r.revoked {
                println!("revoked {id}");
            }
        }
    }
    Ok(())
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

/// Connects with the token for the server, or explains why not.
pub async fn connect(target: &Target) -> Result<MonitorClient<Authed>> {
    let channel = channel(target).await?;
    // ListReports of thousands of clusters is tens of MB, past tonic's 4 MB default.
    Ok(
        MonitorClient::with_interceptor(channel, session::interceptor(&target.server)?)
            .max_decoding_message_size(512 << 20),
    )
}

/// A channel to the server, or why there is none and what to do.
pub async fn channel(target: &Target) -> Result<Channel> {
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
    result.map_err(|why| {
        anyhow::anyhow!(
            "cannot reach the dbmon server at {server} ({why}). Is `dbmon server` running there? \
             Point to it with --server or DBMON_SERVER."
        )
    })
}

pub(crate) fn rpc_error(server: &str, s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!(
        "the dbmon server at {server} answered {:?}: {}",
        s.code(),
        s.message()
    )
}

pub(crate) fn print_structured<T: serde::Serialize>(value: &T, format: Format) -> Result<()> {
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
    let notes = alerts::notes(target, Vec::new()).await;
    match output {
        Format::Table if summaries.is_empty() => {
            println!("no reports yet: no collector has published to {server}");
        }
        Format::Table => print!("{}", view::status_table(&summaries, now, &notes)),
        f => {
            let views: Vec<ClusterView> = summaries
                .iter()
                .map(|s| ClusterView {
                    alerts: notes.get(&s.cluster).cloned(),
                    ..ClusterView::new(s, now)
                })
                .collect();
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
    let note = alerts::notes(target, vec![name.to_string()])
        .await
        .remove(name);
    match output {
        Format::Table => {
            let health = if summary.stale {
                format!(
                    "{} (stale: nothing new from its collector)",
                    health_name(summary.health)
                )
            } else {
                view::health_text(&summary)
            };
            println!(
                "{}  {}  health: {}  nodes up: {}/{}  newest report: {} ago",
                summary.cluster,
                summary.kind,
                health,
                summary.nodes_up,
                summary.nodes_total,
                view::age(now - summary.newest_ms)
            );
            if let Some(n) = &note {
                println!("alerts: {n}");
            }
            println!();
            print!("{}", view::reports_table(&resp.latest, now));
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
                    summary: ClusterView {
                        alerts: note,
                        ..ClusterView::new(&summary, now)
                    },
                    checks: resp.latest.iter().map(|r| ReportView::at(r, now)).collect(),
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
    // The live table also says which alerts fire and what mutes them,
    // refreshed every few seconds beside the stream.
    let live_notes: std::sync::Arc<std::sync::Mutex<BTreeMap<String, String>>> =
        std::sync::Arc::default();
    if live {
        let (notes, target, clusters) = (
            live_notes.clone(),
            Target {
                server: target.server.clone(),
                ca: target.ca.clone(),
            },
            clusters.clone(),
        );
        tokio::spawn(async move {
            loop {
                let n = alerts::notes(&target, clusters.clone()).await;
                *notes.lock().unwrap_or_else(|e| e.into_inner()) = n;
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        });
    }
    let mut state = State::default();
    let mut recent: Vec<String> = Vec::new();
    let mut backoff = Duration::from_millis(500);
    let mut connected_once = false;
    // Where to resume after a lost connection: the last position received.
    let mut last_position = 0u64;
    loop {
        // A refusal of the token ends the watch (retrying cannot help);
        // anything else is retried once a stream has worked.
        let attempt = async {
            let mut client = connect(target).await.map_err(|e| (None, e))?;
            client
                .watch(WatchRequest {
                    clusters: clusters.clone(),
                    after_position: last_position,
                })
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| (Some(s.code()), rpc_error(server, s)))
        }
        .await;
        let mut stream = match attempt {
            Ok(s) => s,
            Err((_, e)) if !connected_once => return Err(e),
            Err((Some(tonic::Code::Unauthenticated | tonic::Code::PermissionDenied), e)) => {
                return Err(e);
            }
            Err((_, e)) => {
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
                // The login ended (revoked, expired, user removed): retrying
                // cannot help.
                Err(s)
                    if matches!(
                        s.code(),
                        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                    ) =>
                {
                    return Err(rpc_error(server, s));
                }
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
                        let notes = alerts::notes(target, clusters.clone()).await;
                        print!("{}", view::status_table(&summaries, now, &notes));
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
                let notes = live_notes.lock().unwrap_or_else(|e| e.into_inner()).clone();
                redraw(&state, &recent, server, now, &notes);
            }
            std::io::stdout().flush()?;
        }
        eprintln!("lost the stream from {server}; reconnecting");
    }
}

fn redraw(
    state: &State,
    recent: &[String],
    server: &str,
    now: i64,
    notes: &BTreeMap<String, String>,
) {
    let names: std::collections::BTreeSet<&String> = state.latest.keys().map(|k| &k.0).collect();
    let summaries: Vec<_> = names.iter().filter_map(|c| state.summary(c, now)).collect();
    let mut out = String::from("\x1b[H\x1b[2J");
    out.push_str(&format!(
        "dbmon watch: {server}  ({})\n\n",
        view::timestamp(now)
    ));
    out.push_str(&view::status_table(&summaries, now, notes));
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
