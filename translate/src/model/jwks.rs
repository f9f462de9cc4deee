//! JSON Web Key Sets the control plane fetches for RequestAuthentication rules.
//!
//! As in Istio (whose default is `PILOT_JWT_ENABLE_REMOTE_JWKS=false`), the control plane
//! fetches a rule's `jwksUri` — or, without one, discovers it from the issuer's OpenID
//! configuration — and inlines the keys into the `jwt_authn` filter, so that proxies need no
//! route to the identity provider. Fetching is IO and lives in the server; the model only
//! holds what was fetched ([`FetchedJwks`]) and says what it needs ([`Model::jwks_refs`]).
//! A rule whose keys are not (yet) known gets [`UNUSABLE_JWKS`]: its tokens are rejected,
//! never accepted unverified.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shoal_config::istio::{JwtRule, jwks_uri_parts};

use super::Model;

/// Who fetches the keys of a `jwksUri` (Istio's `PILOT_JWT_ENABLE_REMOTE_JWKS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JwksFetch {
    /// The control plane fetches every key set and inlines it (Istio's default).
    #[default]
    Shoal,
    /// Envoy fetches through the outbound cluster of the URI's host, which must be a
    /// service of the registry; other URIs get unusable keys.
    Envoy,
    /// Envoy for URIs whose host is a registry service, the control plane for the rest.
    Hybrid,
}

/// A key set to fetch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum JwksRef {
    /// The rule's `jwksUri`.
    Uri(String),
    /// A rule without `jwksUri`: the `jwks_uri` of the issuer's
    /// `/.well-known/openid-configuration`.
    Discover(String),
}

/// Key sets the control plane fetched (JSON, as served), by reference.
pub type FetchedJwks = BTreeMap<JwksRef, Arc<str>>;

/// A syntactically valid key set that verifies no token: its RSA modulus was generated for
/// shoal and the private key discarded. Stands in for keys that could not be fetched.
pub const UNUSABLE_JWKS: &str = r#"{"keys":[{"kty":"RSA","e":"AQAB","kid":"shoal-unusable","alg":"RS256","n":"Z3ig0JUKhr8j3-WSZRtbmSpipduXyE_glB8fkMSbh5rdEIBOg0leSXdH2omJP77-BZv-J-WtGEeHB9sfcPXElxmJLmDMcp0R3SQ7G2A0pl_qEmmM9NI3Yj-AewmvU72V9DEVgzCtDwOTmgDaEGw-linvJ-pNNPj2MTtsUU08qLKtR5k3Oxk8CZTKeEcK8AY3Z1IDYba_xHcZ3RAZ7_XeHZli6HzZa2IlTxVNRoQIdvrlabsYO3njJTnvtSkhBsgmSi9Hjq99CYBQ7tQlsxuqUr_7Ng3P7RJ0pV0bSvQb8cdBIZgqrga8kn6JfNZXomSaey1fTVg9qocPx3-Vln4VpQ"}]}"#;

/// How a rule's keys reach Envoy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeySource<'a> {
    /// The rule's own inline `jwks`.
    Inline(&'a str),
    /// Envoy fetches `uri` through the outbound cluster of (host, port).
    Remote {
        uri: &'a str,
        host: String,
        port: u16,
    },
    /// The control plane fetches it: inline what it has, or [`UNUSABLE_JWKS`].
    Fetched(JwksRef),
}

impl Model {
    /// Where a rule's keys come from, under the mesh's [`JwksFetch`] mode.
    pub(crate) fn key_source<'r>(&self, rule: &'r JwtRule) -> KeySource<'r> {
        if let Some(jwks) = &rule.jwks {
            return KeySource::Inline(jwks);
        }
        let Some(uri) = rule.jwks_uri.as_deref() else {
            return KeySource::Fetched(JwksRef::Discover(rule.issuer.clone()));
        };
        let remote = || {
            let (host, port, _) = jwks_uri_parts(uri)?;
            let known = self
                .services
                .get(host.as_str())
                .is_some_and(|svcs| svcs.iter().any(|s| s.ports.iter().any(|p| p.port == port)));
            Some((host, port, known))
        };
        match self.options.jwks_fetch {
            JwksFetch::Shoal => KeySource::Fetched(JwksRef::Uri(uri.to_string())),
            JwksFetch::Hybrid => match remote() {
                Some((host, port, true)) => KeySource::Remote { uri, host, port },
                _ => KeySource::Fetched(JwksRef::Uri(uri.to_string())),
            },
            JwksFetch::Envoy => match remote() {
                Some((host, port, _)) => KeySource::Remote { uri, host, port },
                // Not a URL Envoy could fetch: nothing verifies its tokens.
                None => KeySource::Inline(UNUSABLE_JWKS),
            },
        }
    }

    /// The key sets the control plane must fetch for the current RequestAuthentications.
    pub fn jwks_refs(&self) -> BTreeSet<JwksRef> {
        self.request_authentications
            .iter()
            .flat_map(|p| p.spec.jwt_rules.iter())
            .filter(|r| !r.issuer.is_empty())
            .filter_map(|r| match self.key_source(r) {
                KeySource::Fetched(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// The fetched key set of a reference, or [`UNUSABLE_JWKS`].
    pub(crate) fn fetched_jwks(&self, r: &JwksRef) -> &str {
        self.jwks.get(r).map_or(UNUSABLE_JWKS, |k| k.as_ref())
    }
}
