//! Who may call what, for people.
//!
//! - [`store`]: users, passkeys, invites and logins in one 0600 file.
//! - [`passkey`]: WebAuthn registration with an invite, and the CLI-to-browser
//!   login that ends with a macaroon.
//! - [`token`]: macaroons: minted per login with its own root key, narrowed
//!   by [`caveat`]s, verified on every call.
//! - [`perms`]: operations, roles and the one table of what each RPC needs.
//! - [`limit`]: attempts per peer address.
//!
//! Audit lines (target `dbmon::audit`) are written for every registration,
//! login, mint, revocation and refused call, with user, credential id,
//! login id and peer; never a token or a secret.

pub mod caveat;
pub mod limit;
pub mod passkey;
pub mod perms;
pub mod store;
pub mod token;

pub use perms::{Access, Op, Role};
pub use token::{Denied, Grant, METADATA_KEY, Verifier};
/// The WebAuthn types the server's pages exchange.
pub use webauthn_rs::prelude as webauthn;

/// Prepares the macaroon library's crypto; call once before minting.
pub fn init() {
    let _ = macaroon::initialize();
}

/// An audit line for a refused or revoked call.
pub fn audit(event: &str, user: &str, login: &str, peer: &str, outcome: &str) {
    tracing::info!(target: "dbmon::audit", event, user, credential = "", login, peer, outcome, "audit");
}
