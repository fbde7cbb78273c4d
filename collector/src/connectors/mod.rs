//! One module per kind of cluster. To add one, see docs/connectors.md.

pub mod cockroachdb;
pub mod etcd;
pub mod http;
pub mod postgresql;
pub mod redis;
