//! `RequestAuthentication` (`security.istio.io` v1, with the v1beta1 alias): the JWTs a
//! workload accepts. A request without a token passes; one with an invalid token is
//! rejected. Requiring a token is the job of an AuthorizationPolicy (`requestPrincipals`).

use serde::{Deserialize, Serialize};

use super::{Attached, PolicySelector, PolicyTarget};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestAuthenticationSpec {
    #[serde(default)]
    pub selector: Option<PolicySelector>,
    /// Gateway-API style attachment (gateways and waypoints), see [`PolicyTarget`].
    #[serde(default)]
    pub target_ref: Option<serde_json::Value>,
    #[serde(default)]
    pub target_refs: Vec<serde_json::Value>,
    #[serde(default)]
    pub jwt_rules: Vec<JwtRule>,
}

impl Attached for RequestAuthenticationSpec {
    fn target(&self) -> PolicyTarget<'_> {
        PolicyTarget {
            selector: self.selector.as_ref().map(|s| &s.match_labels),
            target_ref: self.target_ref.as_ref(),
            target_refs: &self.target_refs,
        }
    }
}

/// One accepted issuer and how its tokens are found, verified and passed on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtRule {
    #[serde(default)]
    pub issuer: String,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// An inline JSON Web Key Set.
    #[serde(default)]
    pub jwks: Option<String>,
    #[serde(default)]
    pub from_headers: Vec<JwtHeader>,
    #[serde(default)]
    pub from_params: Vec<String>,
    #[serde(default)]
    pub from_cookies: Vec<String>,
    #[serde(default)]
    pub output_payload_to_header: Option<String>,
    #[serde(default)]
    pub forward_original_token: bool,
    #[serde(default)]
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// Timeout of the JWKS fetch (a duration).
    #[serde(default)]
    pub timeout: Option<String>,
}

/// A header carrying the token, with the prefix before it (`Bearer `).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtHeader {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub prefix: String,
}

/// A claim copied into a request header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimToHeader {
    #[serde(default)]
    pub header: String,
    #[serde(default)]
    pub claim: String,
}

/// The `http`/`https` authority of a JWKS URI: (host, port, path). `None` when it is not
/// such a URL or has no host.
pub fn jwks_uri_parts(uri: &str) -> Option<(String, u16, String)> {
    let (scheme, rest) = uri.split_once("://")?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        (h, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (authority, default_port),
        }
    };
    if host.is_empty() || port == 0 {
        return None;
    }
    let path = if path.is_empty() { "/" } else { path };
    Some((host.to_ascii_lowercase(), port, path.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_uris() {
        assert_eq!(
            jwks_uri_parts("https://auth.example.com/.well-known/jwks.json"),
            Some((
                "auth.example.com".into(),
                443,
                "/.well-known/jwks.json".into()
            ))
        );
        assert_eq!(
            jwks_uri_parts("http://Keys.Svc:8080"),
            Some(("keys.svc".into(), 8080, "/".into()))
        );
        assert_eq!(
            jwks_uri_parts("http://[::1]:9/k"),
            Some(("::1".into(), 9, "/k".into()))
        );
        assert_eq!(jwks_uri_parts("ftp://a/b"), None);
        assert_eq!(jwks_uri_parts("https:///path"), None);
        assert_eq!(jwks_uri_parts("https://a:x/"), None);
        assert_eq!(jwks_uri_parts("auth.example.com"), None);
    }
}
