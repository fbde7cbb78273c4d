//! People's users, passkeys, invites and logins in the shared store, so
//! that a login made on one server works on every other, and a logout or a
//! removed user on one ends access on all.
//!
//! The auth crate's store is synchronous (it is read on every RPC from
//! memory and changed rarely); this backend runs its queries on a runtime of
//! its own, on a short-lived thread, so it can be called from inside or
//! outside the server's runtime alike.

use crate::shared::{SharedConfig, connect, describe, migrate};
use dbmon_auth::store::{Backend, Change, StoreError};
use std::sync::Mutex;

/// The auth document in table `dbmon_auth`.
pub struct PgAuthBackend {
    cfg: SharedConfig,
    conn: Mutex<Conn>,
}

struct Conn {
    /// Always Some until dropped.
    rt: Option<tokio::runtime::Runtime>,
    client: Option<tokio_postgres::Client>,
}

impl Drop for PgAuthBackend {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which the server's runtime forbids.
        let conn = self.conn.get_mut().unwrap_or_else(|e| e.into_inner());
        conn.client = None;
        if let Some(rt) = conn.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for PgAuthBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgAuthBackend")
            .field("target", &self.cfg.target)
            .finish()
    }
}

/// Longest one round of queries may take: a database that hangs fails the
/// call (the last good copy is kept) instead of holding the caller.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs `fut` to completion on `rt`, on a thread of its own, within
/// CALL_TIMEOUT.
fn block<F, T>(rt: &tokio::runtime::Runtime, fut: F) -> Result<T, String>
where
    F: std::future::Future<Output = Result<T, String>> + Send,
    T: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            rt.block_on(async {
                match tokio::time::timeout(CALL_TIMEOUT, fut).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("no answer within {}s", CALL_TIMEOUT.as_secs())),
                }
            })
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

impl PgAuthBackend {
    /// Connects and brings the schema up to date.
    pub fn open(cfg: SharedConfig) -> Result<PgAuthBackend, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend(format!("shared store {}: {e}", cfg.target)))?;
        let backend = PgAuthBackend {
            cfg,
            conn: Mutex::new(Conn {
                rt: Some(rt),
                client: None,
            }),
        };
        backend
            .with_client(|c| Box::pin(async move { migrate(c).await }))
            .map_err(|e| {
                StoreError::Backend(format!(
                    "{e}; check server.store and server.store_password, and that the database is up"
                ))
            })?;
        Ok(backend)
    }

    fn failed(&self, why: impl std::fmt::Display) -> StoreError {
        StoreError::Backend(format!("shared store {}: {why}", self.cfg.target))
    }

    /// Runs `f` with a connected client (connecting first if needed); a
    /// broken connection is dropped so the next call connects again.
    fn with_client<R: Send>(
        &self,
        f: impl for<'a> FnOnce(
            &'a mut tokio_postgres::Client,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<R, String>> + Send + 'a>,
        > + Send,
    ) -> Result<R, StoreError> {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let Conn { rt, client } = &mut *guard;
        let rt = rt.as_ref().expect("a runtime until dropped");
        let cfg = &self.cfg;
        let out = block(rt, async {
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                *client = Some(connect(cfg).await?);
            }
            let c = client.as_mut().expect("connected above");
            f(c).await
        });
        if out.is_err() {
            // Whatever state the connection is in, the next call starts
            // afresh.
            *client = None;
        }
        out.map_err(|e| self.failed(e))
    }
}

impl Backend for PgAuthBackend {
    fn place(&self) -> String {
        format!("shared store {} (table dbmon_auth)", self.cfg.target)
    }

    fn version(&self) -> Result<Option<String>, StoreError> {
        self.with_client(|c| {
            Box::pin(async move {
                let row = c
                    .query_opt(
                        "SELECT version FROM dbmon_auth WHERE id = 1 AND version > 0",
                        &[],
                    )
                    .await
                    .map_err(|e| describe(&e))?;
                Ok(row.map(|r| r.get::<_, i64>(0).to_string()))
            })
        })
    }

    fn load(&self) -> Result<Option<(Vec<u8>, String)>, StoreError> {
        self.with_client(|c| {
            Box::pin(async move {
                let row = c
                    .query_opt(
                        "SELECT doc, version FROM dbmon_auth WHERE id = 1 AND version > 0",
                        &[],
                    )
                    .await
                    .map_err(|e| describe(&e))?;
                Ok(row.map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, i64>(1).to_string())))
            })
        })
    }

    fn replace(&self, f: &mut Change<'_>) -> Result<String, StoreError> {
        // The row lock is held from reading to writing: the change runs
        // between two round trips, on this thread.
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let Conn { rt, client } = &mut *guard;
        let rt = rt.as_ref().expect("a runtime until dropped");
        let cfg = &self.cfg;
        let current = block(rt, async {
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                *client = Some(connect(cfg).await?);
            }
            let c = client.as_ref().expect("connected above");
            c.batch_execute(
                "BEGIN; INSERT INTO dbmon_auth (id, version, doc) VALUES (1, 0, '') ON CONFLICT (id) DO NOTHING",
            )
            .await
            .map_err(|e| describe(&e))?;
            let row = c
                .query_one(
                    "SELECT doc, version FROM dbmon_auth WHERE id = 1 FOR UPDATE",
                    &[],
                )
                .await
                .map_err(|e| describe(&e))?;
            Ok::<_, String>((row.get::<_, Vec<u8>>(0), row.get::<_, i64>(1)))
        });
        let (doc, version) = match current {
            Ok(v) => v,
            Err(e) => {
                *client = None;
                return Err(self.failed(e));
            }
        };
        let next = f((version > 0).then_some(doc.as_slice()));
        let c = client.as_ref().expect("connected above");
        let done: Result<Result<String, StoreError>, String> = block(rt, async {
            match next {
                Ok(bytes) => {
                    c.execute(
                        "UPDATE dbmon_auth SET doc = $1, version = $2 WHERE id = 1",
                        &[&bytes, &(version + 1)],
                    )
                    .await
                    .map_err(|e| describe(&e))?;
                    c.batch_execute("COMMIT").await.map_err(|e| describe(&e))?;
                    Ok(Ok((version + 1).to_string()))
                }
                Err(e) => {
                    c.batch_execute("ROLLBACK")
                        .await
                        .map_err(|e| describe(&e))?;
                    Ok(Err(e))
                }
            }
        });
        match done {
            Ok(r) => r,
            Err(e) => {
                // The transaction's fate is unknown to us: start afresh.
                *client = None;
                Err(self.failed(e))
            }
        }
    }
}
