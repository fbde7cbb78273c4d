//! The list of connector kinds. Adding a kind is one line here.

use crate::connector::{Connector, ConnectorError};
use crate::connectors;
use dbmon_config::{Catalog, CheckSpec, ClusterConfig, Section};

/// How to build the connector of one kind, and which checks it offers.
pub struct Registration {
    pub kind: &'static str,
    pub checks: &'static [CheckSpec],
    /// The optional parts of a cluster entry this kind uses; any other is a
    /// configuration error at its line.
    pub sections: &'static [Section],
    pub build: fn(&ClusterConfig) -> Result<Box<dyn Connector>, ConnectorError>,
}

/// Every connector kind dbmon knows.
pub static REGISTRY: &[Registration] = &[
    Registration {
        kind: "cockroachdb",
        checks: connectors::cockroachdb::CHECKS,
        sections: connectors::cockroachdb::SECTIONS,
        build: connectors::cockroachdb::build,
    },
    Registration {
        kind: "etcd",
        checks: connectors::etcd::CHECKS,
        sections: connectors::etcd::SECTIONS,
        build: connectors::etcd::build,
    },
    Registration {
        kind: "http",
        checks: connectors::http::CHECKS,
        sections: connectors::http::SECTIONS,
        build: connectors::http::build,
    },
];

/// The registration of `kind`.
pub fn find(kind: &str) -> Option<&'static Registration> {
    REGISTRY.iter().find(|r| r.kind == kind)
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
}
