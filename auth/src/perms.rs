//! Operations, roles, and the one table that says what each RPC needs.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// What a token may do. A method needs exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Latest state and history (`ListReports`).
    Read,
    /// The live stream (`Watch`).
    Watch,
    /// See and revoke other people's logins.
    Sessions,
    /// Add and expire silences.
    Silence,
    /// A cluster's status badge (`/badge/NAME.svg`), and nothing else: the
    /// only op of a badge token, the only token ever put in a URL.
    Badge,
}

impl Op {
    pub const ALL: [Op; 5] = [Op::Read, Op::Watch, Op::Sessions, Op::Silence, Op::Badge];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Watch => "watch",
            Op::Sessions => "sessions",
            Op::Silence => "silence",
            Op::Badge => "badge",
        }
    }

    pub fn parse(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.as_str() == s)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Comma-separated, sorted: `read,watch`.
pub fn ops_to_string(ops: &BTreeSet<Op>) -> String {
    ops.iter().map(|o| o.as_str()).collect::<Vec<_>>().join(",")
}

/// A person's role. The role is read from the user store on every call, so
/// changing or removing a user takes effect on tokens already issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, on every cluster; may revoke anyone's login.
    Admin,
    /// Read and watch; may list logins and revoke those of non-admins.
    Operator,
    /// Read and watch, usually limited to some clusters.
    Viewer,
}

impl Role {
    pub fn ops(self) -> BTreeSet<Op> {
        match self {
            Role::Admin | Role::Operator => Op::ALL.into_iter().collect(),
            Role::Viewer => [Op::Read, Op::Watch, Op::Badge].into_iter().collect(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Admin, Role::Operator, Role::Viewer]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a method requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token: the method authenticates by other means (a join token, a
    /// login's secret device code) and is rate limited.
    Public,
    /// A valid token of any scope (the caller asks about or ends its own login).
    Session,
    /// A valid token that allows this operation.
    Op(Op),
    /// Only on the collector endpoint, with a collector certificate; refused
    /// on the people endpoint whatever the token.
    Collector,
}

/// Every RPC of `dbmon.v1`, by its gRPC path, and what it needs. A method
/// that is not here is refused (`tests` check that the proto has no
/// method missing from this table).
pub const METHODS: &[(&str, Access)] = &[
    ("/dbmon.v1.Ingest/Publish", Access::Collector),
    ("/dbmon.v1.Ingest/Renew", Access::Collector),
    ("/dbmon.v1.Enroll/Join", Access::Public),
    ("/dbmon.v1.Monitor/ListReports", Access::Op(Op::Read)),
    ("/dbmon.v1.Monitor/Watch", Access::Op(Op::Watch)),
    ("/dbmon.v1.Auth/StartLogin", Access::Public),
    ("/dbmon.v1.Auth/PollLogin", Access::Public),
    ("/dbmon.v1.Auth/WhoAmI", Access::Session),
    ("/dbmon.v1.Auth/Logout", Access::Session),
    ("/dbmon.v1.Sessions/ListSessions", Access::Op(Op::Sessions)),
    ("/dbmon.v1.Sessions/RevokeSession", Access::Op(Op::Sessions)),
    // Any reader of a cluster may make its badge token.
    ("/dbmon.v1.Sessions/MintBadge", Access::Op(Op::Read)),
    ("/dbmon.v1.Alerts/ListAlerts", Access::Op(Op::Read)),
    ("/dbmon.v1.Silences/ListSilences", Access::Op(Op::Read)),
    ("/dbmon.v1.Silences/AddSilence", Access::Op(Op::Silence)),
    ("/dbmon.v1.Silences/ExpireSilence", Access::Op(Op::Silence)),
];

/// Every route of the people endpoint's web side (the dashboard, the
/// sign-in pages and their JSON API, badges) by method and route pattern,
/// and what it needs. The same table as [`METHODS`] for the browser: a
/// signed-in browser holds a login's token in its session cookie, checked
/// against the route's access exactly as a method's. A route missing here
/// is refused.
pub const WEB_ROUTES: &[(&str, &str, Access)] = &[
    // The dashboard.
    ("GET", "/", Access::Op(Op::Read)),
    ("GET", "/clusters/{cluster}", Access::Op(Op::Read)),
    (
        "GET",
        "/clusters/{cluster}/nodes/{node}/checks/{check}",
        Access::Op(Op::Read),
    ),
    ("GET", "/live", Access::Op(Op::Watch)),
    ("POST", "/api/signout", Access::Session),
    // Signing in, registering a passkey, a CLI login's page.
    ("GET", "/signin", Access::Public),
    ("POST", "/api/signin/start", Access::Public),
    ("POST", "/api/signin/finish", Access::Public),
    ("GET", "/invite", Access::Public),
    ("GET", "/login/{id}", Access::Public),
    ("POST", "/api/register/start", Access::Public),
    ("POST", "/api/register/finish", Access::Public),
    ("POST", "/api/login/start", Access::Public),
    ("POST", "/api/login/finish", Access::Public),
    ("GET", "/assets/dbmon.js", Access::Public),
    ("GET", "/assets/dbmon.css", Access::Public),
    ("GET", "/assets/dashboard.js", Access::Public),
    // A badge authenticates by its own badge token in the URL, or answers
    // for a cluster marked public.
    ("GET", "/badge/{file}", Access::Public),
];

/// What the web route `pattern` (as routed, e.g. `/clusters/{cluster}`)
/// requires for `method`, or None for a route nobody may call.
pub fn web_access(method: &str, pattern: &str) -> Option<Access> {
    WEB_ROUTES
        .iter()
        .find(|(m, p, _)| *m == method && *p == pattern)
        .map(|(_, _, a)| *a)
}

/// What `path` requires, or None for a method nobody may call.
pub fn access(path: &str) -> Option<Access> {
    METHODS.iter().find(|(p, _)| *p == path).map(|(_, a)| *a)
}
