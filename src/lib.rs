//! Support for the `dbmon` binary that is worth sharing with its tests:
//! local clusters on loopback (`dbmon local`).

pub mod local;
pub mod operator;
