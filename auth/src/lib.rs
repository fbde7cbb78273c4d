//! Who may call what, for people: macaroons minted after a WebAuthn
//! passkey login, checked on every client RPC by one layer with one table
//! of methods and permissions.
//!
//! Not built yet. Until it is, the people endpoint (`server.listen`)
//! authenticates the server to people (TLS) but not people to the server:
//! anyone who trusts the deployment's CA and can reach it may read. The
//! collector endpoint is unaffected: it requires a collector certificate.
