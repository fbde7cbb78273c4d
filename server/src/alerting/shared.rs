//! Alerting when servers share one PostgreSQL store: exactly one server
//! sends. It holds a session advisory lock on a connection of its own, and
//! saves the alerting state through that same connection, so a server
//! that lost the lock (its connection died) can save nothing and so
//! deliver nothing new. When the sender dies, its connection closes, the
//! lock is free, and another server takes it within a second or two,
//! loads the state the first one saved, and goes on: the resolve of an
//! alert the dead server notified is sent by the new one.
//!
//! Silences are rows of their own, which any server adds or expires; the
//! sender reads them every second.

use super::state::Silence;
use crate::shared::{SharedConfig, connect};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, watch};

/// The sender's session lock ("dbmonal" in ASCII).
const SEND_LOCK: i64 = 0x0064_626d_6f6e_616c;
/// How often a server tries to become the sender, and the sender checks
/// that its connection is alive.
const LEASE_CHECK: Duration = Duration::from_secs(1);

/// This server's side of the shared alerting state.
pub struct SharedAlerting {
    cfg: SharedConfig,
    /// The connection holding the sender lock; Some while this server sends.
    holder: Mutex<Option<tokio_postgres::Client>>,
    /// True while this server is the sender.
    pub leader: watch::Sender<bool>,
    /// For reading the state and for silences (any server).
    reader: Mutex<Option<tokio_postgres::Client>>,
    name: String,
}

impl SharedAlerting {
    pub fn new(cfg: SharedConfig, name: String) -> Arc<SharedAlerting> {
        Arc::new(SharedAlerting {
            cfg,
            holder: Mutex::new(None),
            leader: watch::channel(false).0,
            reader: Mutex::new(None),
            name,
        })
    }

    /// Keeps trying to become the sender, and notices when it no longer is.
    pub async fn lease_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let mut holder = self.holder.lock().await;
            match holder.as_ref() {
                None => match connect(&self.cfg).await {
                    Ok(c) => match c
                        .query_one("SELECT pg_try_advisory_lock($1)", &[&SEND_LOCK])
                        .await
                    {
                        Ok(row) if row.get::<_, bool>(0) => {
                            *holder = Some(c);
                            tracing::info!(server = %self.name, "this server now sends the notifications of the shared store");
                            self.leader.send_replace(true);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::debug!(error = %e, "cannot ask for the alerting lock")
                        }
                    },
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot reach the shared store for alerting")
                    }
                },
                Some(c) => {
                    let alive =
                        tokio::time::timeout(Duration::from_secs(5), c.simple_query("SELECT 1"))
                            .await
                            .is_ok_and(|r| r.is_ok());
                    if !alive {
                        *holder = None;
                        self.leader.send_replace(false);
                        tracing::warn!(server = %self.name, "lost the connection that made this server the sender of notifications; another server takes over");
                    }
                }
            }
            drop(holder);
            tokio::select! {
                _ = tokio::time::sleep(LEASE_CHECK) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn with_reader<T>(
        &self,
        f: impl AsyncFnOnce(&tokio_postgres::Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, String> {
        let mut guard = self.reader.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = Some(connect(&self.cfg).await?);
        }
        let client = guard.as_ref().expect("connected above");
        match f(client).await {
            Ok(t) => Ok(t),
            Err(e) => {
                let why = crate::shared::describe(&e);
                *guard = None;
                Err(why)
            }
        }
    }

    /// The state the sender saved last.
    pub async fn load(&self) -> Result<Option<Vec<u8>>, String> {
        self.with_reader(async |c| {
            c.query_opt("SELECT doc FROM dbmon_alerting WHERE id = 1", &[])
                .await
                .map(|r| r.map(|row| row.get::<_, Vec<u8>>(0)))
        })
        .await
    }

    /// Saves the state, through the connection that holds the lock: a
    /// server that is not the sender cannot.
    pub async fn save(&self, doc: &[u8]) -> Result<(), String> {
        let holder = self.holder.lock().await;
        let Some(c) = holder.as_ref() else {
            return Err("this server is not the sender of notifications".into());
        };
        c.execute(
            "INSERT INTO dbmon_alerting (id, doc, saved_by, saved_at) VALUES (1, $1, $2, now())
             ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc, saved_by = EXCLUDED.saved_by, saved_at = now()",
            &[&doc, &self.name],
        )
        .await
        .map(|_| ())
        .map_err(|e| crate::shared::describe(&e))
    }

    /// Every silence (ended ones are pruned by the sender).
    pub async fn silences(&self) -> Result<Vec<Silence>, String> {
        let rows = self
            .with_reader(async |c| c.query("SELECT doc FROM dbmon_silences", &[]).await)
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| serde_json::from_slice(&r.get::<_, Vec<u8>>(0)).ok())
            .collect())
    }

    /// Adds or replaces a silence.
    pub async fn put_silence(&self, s: &Silence) -> Result<(), String> {
        let doc = serde_json::to_vec(s).map_err(|e| e.to_string())?;
        self.with_reader(async |c| {
            c.execute(
                "INSERT INTO dbmon_silences (id, cluster, doc) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc",
                &[&s.id, &s.cluster, &doc],
            )
            .await
        })
        .await
        .map(|_| ())
    }

    /// Removes silences that ended long ago.
    pub async fn forget_silences(&self, ids: &[String]) -> Result<(), String> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = ids.to_vec();
        self.with_reader(async |c| {
            c.execute("DELETE FROM dbmon_silences WHERE id = ANY($1)", &[&ids])
                .await
        })
        .await
        .map(|_| ())
    }
}
