//! ztunnel's resource types, compiled from `proto/istio/` by `build.rs`: workload
//! discovery (`istio.workload.Address`: workloads and services) and L4 authorization
//! (`istio.security.Authorization`). shoal's own rendition of Istio's wire types (there is
//! no crate); map fields are `BTreeMap`s, so encoding is deterministic.

/// `istio.workload`: [`workload::Address`] and what it holds.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod workload {
    include!(concat!(env!("OUT_DIR"), "/istio.workload.rs"));
}

/// `istio.security`: [`security::Authorization`] and its rules.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod security {
    include!(concat!(env!("OUT_DIR"), "/istio.security.rs"));
}

/// `shoal.federation.v1`: what a shoal group exports to its peers
/// ([`federation::ExportedService`]). shoal's own protocol, compiled beside Istio's types.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod federation {
    include!(concat!(env!("OUT_DIR"), "/shoal.federation.v1.rs"));
}

/// The descriptors of these packages (for JSON rendering).
pub(crate) static DESCRIPTORS: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/istio_descriptors.bin"));

impl prost::Name for workload::Address {
    const NAME: &'static str = "Address";
    const PACKAGE: &'static str = "istio.workload";
}

impl prost::Name for security::Authorization {
    const NAME: &'static str = "Authorization";
    const PACKAGE: &'static str = "istio.security";
}

impl prost::Name for federation::ExportedService {
    const NAME: &'static str = "ExportedService";
    const PACKAGE: &'static str = "shoal.federation.v1";
}
