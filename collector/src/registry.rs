//! The list of connector kinds. Adding a kind is one line here.

use crate::connector::{Connector, ConnectorError};
use crate::connectors;
use dbmon_config::{Catalog, CheckSpec, ClusterConfig, Protocol, Section};

/// How to build the connector of one kind, and which checks it offers.
pub struct Registration {
    pub kind: &'static str,
    pub checks: &'static [CheckSpec],
    /// The optional parts of a cluster entry this kind uses; any other is a
    /// configuration error at its line.
    pub sections: &'static [Section],
    /// The checks without which the cluster's health cannot be known:
    /// while one is unknown, the cluster is not called healthy.
    pub essential: &'static [&'static str],
    /// How its nodes are reached: the address forms `nodes:` takes.
    pub protocol: Protocol,
    pub build: fn(&ClusterConfig) -> Result<Box<dyn Connector>, ConnectorError>,
}

/// Every connector kind dbmon knows.
pub static REGISTRY: &[Registration] = &[
    Registration {
        kind: "cockroachdb",
        checks: connectors::cockroachdb::CHECKS,
        sections: connectors::cockroachdb::SECTIONS,
        essential: connectors::cockroachdb::ESSENTIAL,
        protocol: Protocol::Http,
        build: connectors::cockroachdb::build,
    },
    Registration {
        kind: "etcd",
        checks: connectors::etcd::CHECKS,
        sections: connectors::etcd::SECTIONS,
        essential: connectors::etcd::ESSENTIAL,
        protocol: Protocol::Http,
        build: connectors::etcd::build,
    },
    Registration {
        kind: "http",
        checks: connectors::http::CHECKS,
        sections: connectors::http::SECTIONS,
        essential: connectors::http::ESSENTIAL,
        protocol: Protocol::Http,
        build: connectors::http::build,
    },
    Registration {
        kind: "postgresql",
        checks: connectors::postgresql::CHECKS,
        sections: connectors::postgresql::SECTIONS,
        essential: connectors::postgresql::ESSENTIAL,
        protocol: Protocol::Postgres,
        build: connectors::postgresql::build,
    },
    Registration {
        kind: "redis",
        checks: connectors::redis::CHECKS,
        sections: connectors::redis::SECTIONS,
        essential: connectors::redis::ESSENTIAL,
        protocol: Protocol::Redis,
        build: connectors::redis::build,
    },
];

/// The registration of `kind`.
pub fn find(kind: &str) -> Option<&'static Registration> {
    REGISTRY.iter().find(|r| r.kind == kind)
}

/// Whether `check` is essential to `cluster`'s health: listed by its kind,
/// or marked `essential: true` in a YAML-defined check.
pub fn essential(cluster: &ClusterConfig, check: &str) -> bool {
    find(&cluster.kind).is_some_and(|r| r.essential.contains(&check))
        || cluster
            .definition
            .as_ref()
            .and_then(|d| d.checks.get(check))
            .is_some_and(|c| c.essential)
}

/// The registry as the configuration's [`Catalog`].
pub struct Registry;

impl Catalog for Registry {
    fn kinds(&self) -> Vec<&'static str> {
        REGISTRY.iter().map(|r| r.kind).collect()
    }

    fn checks(&self, kind: &str) -> Option<&'static [CheckSpec]> {
        find(kind).map(|r| r.checks)
    }

    fn sections(&self, kind: &str) -> &'static [Section] {
        find(kind).map(|r| r.sections).unwrap_or(&[])
    }

    fn protocol(&self, kind: &str) -> Protocol {
        find(kind).map_or(Protocol::Http, |r| r.protocol)
    }
}
