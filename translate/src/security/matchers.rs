//! Istio's authorization values as Envoy matchers. Istio values are exact, prefix (`x*`),
//! suffix (`*x`) or presence (`*`); each attribute maps to its own Envoy matcher, as
//! Istio's `pilot/pkg/networking/util/matcher` does.

use shoal_api::pb::envoy::config::core::v3::{CidrRange, TypedExtensionConfig};
use shoal_api::pb::envoy::config::route::v3::{
    HeaderMatcher, header_matcher::HeaderMatchSpecifier,
};
use shoal_api::pb::envoy::extensions::path::r#match::uri_template::v3::UriTemplateMatchConfig;
use shoal_api::pb::envoy::r#type::matcher::v3::{
    ListMatcher, MetadataMatcher, OrMatcher, PathMatcher, RegexMatcher, StringMatcher,
    ValueMatcher, list_matcher, metadata_matcher::PathSegment,
    metadata_matcher::path_segment::Segment, path_matcher, string_matcher::MatchPattern,
    value_matcher,
};

use shoal_config::istio::envoy_path_template;

use super::jwt::PAYLOAD_KEY;
use crate::envoy::{filters, u32v};

/// The SPIFFE URI scheme of workload identities.
pub(crate) const SPIFFE: &str = "spiffe://";
/// Istio's default trust domain; principals naming it mean the mesh's own trust domain
/// and its aliases.
const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// Escapes RE2 metacharacters.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn pattern(p: MatchPattern, ignore_case: bool) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(p),
        ignore_case,
    }
}

pub(crate) fn regex(r: String) -> StringMatcher {
    pattern(
        MatchPattern::SafeRegex(RegexMatcher {
            regex: r,
            ..Default::default()
        }),
        false,
    )
}

/// Istio's `StringMatcherWithPrefix`: `*` is "any non-empty value", `*x` a suffix, `x*` a
/// prefix, anything else exact; `prefix` is prepended to what is matched (a regex joins
/// them when the value is a suffix).
pub(crate) fn string_match(v: &str, prefix: &str) -> StringMatcher {
    if v == "*" {
        return regex(".+".into());
    }
    if let Some(suffix) = v.strip_prefix('*') {
        if prefix.is_empty() {
            return pattern(MatchPattern::Suffix(suffix.into()), false);
        }
        return regex(format!("{}.*{}", quote(prefix), quote(suffix)));
    }
    if let Some(p) = v.strip_suffix('*') {
        return pattern(MatchPattern::Prefix(format!("{prefix}{p}")), false);
    }
    pattern(MatchPattern::Exact(format!("{prefix}{v}")), false)
}

/// Istio's `stringMatch` of trust domains: equal, `*`, or a prefix (`x*`) or suffix (`*x`)
/// pattern on either side.
fn trust_domain_matches(a: &str, b: &str) -> bool {
    let prefix = |s: &str, p: &str| p.strip_suffix('*').is_some_and(|p| s.starts_with(p));
    let suffix = |s: &str, p: &str| p.strip_prefix('*').is_some_and(|p| s.ends_with(p));
    a == b || b == "*" || prefix(a, b) || prefix(b, a) || suffix(a, b) || suffix(b, a)
}

/// Istio's trust domain bundle (`ReplaceTrustDomainAliases`): a principal
/// `TD/ns/NS/sa/SA` whose trust domain is the mesh's, one of `aliases` or `cluster.local`
/// (which stands for the mesh's own) becomes one principal per trust domain of the bundle
/// (the mesh's first, then the aliases, without duplicates); a trust domain written as a
/// `*x` pattern is kept as written for the bundle members it matches. Other principals (another
/// trust domain, `*` as trust domain, not five path segments) are kept as written.
pub(crate) fn trust_domain_principals(
    principal: &str,
    trust_domain: &str,
    aliases: &[String],
) -> Vec<String> {
    let parts: Vec<&str> = principal.split('/').collect();
    let bundle = std::iter::once(trust_domain).chain(aliases.iter().map(String::as_str));
    let Some((&td, rest)) = parts.split_first() else {
        return vec![principal.to_string()];
    };
    if parts.len() != 5
        || td == "*"
        || !(td == DEFAULT_TRUST_DOMAIN || bundle.clone().any(|b| trust_domain_matches(td, b)))
    {
        return vec![principal.to_string()];
    }
    let mut out: Vec<String> = Vec::new();
    for member in bundle {
        let p = match td.strip_prefix('*') {
            Some(suffix) if member.ends_with(suffix) => principal.to_string(),
            _ => format!("{member}/{}", rest.join("/")),
        };
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// A `principals` value (after [`trust_domain_principals`]) as a matcher on the peer
/// certificate's URI SAN.
pub(crate) fn principal(v: &str) -> StringMatcher {
    string_match(v, SPIFFE)
}

/// A `namespaces` value as a matcher on the peer's SPIFFE identity: `…/ns/NS/…` in any
/// trust domain the mesh CA vouches for (Istio matches it with this regex); `*` in the
/// value matches any characters.
pub(crate) fn namespace(v: &str) -> StringMatcher {
    let ns: Vec<String> = v.split('*').map(quote).collect();
    regex(format!(".*/ns/{}/.*", ns.join(".*")))
}

/// A `serviceAccounts` value (`NS/SA`, or `SA` in the policy's namespace `default_ns`) as a
/// matcher on the peer's SPIFFE identity, as Istio builds it: any trust domain, `/ns/NS/`,
/// then `sa/SA` as a whole path element (`…/sa/web` never matches `…/sa/web-2`).
pub(crate) fn service_account(v: &str, default_ns: &str) -> StringMatcher {
    let (ns, sa) = v.split_once('/').unwrap_or((default_ns, v));
    regex(format!(
        "spiffe://.+/ns/{}/(.+/|)sa/{}(/.+)?",
        quote(ns),
        quote(sa)
    ))
}

/// The name Istio gives the `uri_template` extension of an RBAC permission.
const URI_TEMPLATE_EXTENSION: &str = "uri-template";

/// A path template (`{*}`, `{**}`) as Envoy's `uri_template` path matcher.
pub(crate) fn path_template(v: &str) -> TypedExtensionConfig {
    TypedExtensionConfig {
        name: URI_TEMPLATE_EXTENSION.into(),
        typed_config: Some(shoal_api::pack(&UriTemplateMatchConfig {
            path_template: envoy_path_template(v),
        })),
    }
}

/// A `paths` value as a matcher on the path without its query string.
pub(crate) fn path(v: &str) -> PathMatcher {
    PathMatcher {
        rule: Some(path_matcher::Rule::Path(string_match(v, ""))),
    }
}

fn header(name: &str, spec: HeaderMatchSpecifier) -> HeaderMatcher {
    HeaderMatcher {
        name: name.into(),
        header_match_specifier: Some(spec),
        ..Default::default()
    }
}

/// A `hosts` value as a case-insensitive match on `:authority`.
pub(crate) fn host(v: &str) -> HeaderMatcher {
    let name = ":authority";
    if v == "*" {
        return header(name, HeaderMatchSpecifier::PresentMatch(true));
    }
    let p = if let Some(s) = v.strip_prefix('*') {
        MatchPattern::Suffix(s.into())
    } else if let Some(p) = v.strip_suffix('*') {
        MatchPattern::Prefix(p.into())
    } else {
        MatchPattern::Exact(v.into())
    };
    header(name, HeaderMatchSpecifier::StringMatch(pattern(p, true)))
}

/// A `methods` value as a match on `:method`.
pub(crate) fn method(v: &str) -> HeaderMatcher {
    if v == "*" {
        return header(":method", HeaderMatchSpecifier::PresentMatch(true));
    }
    header(
        ":method",
        HeaderMatchSpecifier::StringMatch(string_match(v, "")),
    )
}

/// A `request.headers[NAME]` value. Envoy joins repeated headers with commas, so the value
/// may be any element of that list (Istio's regex).
pub(crate) fn request_header(name: &str, v: &str) -> HeaderMatcher {
    if v == "*" {
        return header(name, HeaderMatchSpecifier::PresentMatch(true));
    }
    let r = if let Some(s) = v.strip_prefix('*') {
        format!(".*{}", quote(s))
    } else if let Some(p) = v.strip_suffix('*') {
        format!("{}.*", quote(p))
    } else {
        quote(v)
    };
    header(
        name,
        HeaderMatchSpecifier::StringMatch(regex(format!("^{r}$|^{r},.*|.*,{r},.*|.*,{r}$"))),
    )
}

fn string_value(m: StringMatcher) -> ValueMatcher {
    ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::StringMatch(m)),
    }
}

/// A claim of the verified JWT payload (`jwt_authn`'s dynamic metadata) at `path`.
fn payload_claim(path: &[&str], value: ValueMatcher) -> MetadataMatcher {
    MetadataMatcher {
        filter: filters::HTTP_JWT_AUTHN.into(),
        path: std::iter::once(PAYLOAD_KEY)
            .chain(path.iter().copied())
            .map(|k| PathSegment {
                segment: Some(Segment::Key(k.to_string())),
            })
            .collect(),
        value: Some(value),
        invert: false,
    }
}

/// A claim matched by a `request.auth.*` value: a string claim, or any element of a list
/// claim (`aud`, `groups`, … may be either).
pub(crate) fn claim(path: &[&str], v: &str) -> MetadataMatcher {
    let list = ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::ListMatch(Box::new(
            ListMatcher {
                match_pattern: Some(list_matcher::MatchPattern::OneOf(Box::new(string_value(
                    string_match(v, ""),
                )))),
            },
        ))),
    };
    let or = ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::OrMatch(OrMatcher {
            value_matchers: vec![string_value(string_match(v, "")), list],
        })),
    };
    payload_claim(path, or)
}

/// A string claim matched by an Envoy string matcher.
fn string_claim(name: &str, m: StringMatcher) -> MetadataMatcher {
    payload_claim(&[name], string_value(m))
}

/// A request principal (`ISS/SUB`, or `*`, `x*`, `*x`) as alternatives, each an AND of
/// matchers on the `iss` and `sub` claims. Issuers may contain `/`, so the value is split
/// at each issuer the workload verifies (`issuers`); an empty result matches nothing.
pub(crate) fn request_principal(v: &str, issuers: &[String]) -> Vec<Vec<MetadataMatcher>> {
    let exact = |s: &str| pattern(MatchPattern::Exact(s.into()), false);
    let iss = |i: &str| string_claim("iss", exact(i));
    let mut out = Vec::new();
    if v == "*" {
        out.push(vec![string_claim("iss", string_match("*", ""))]);
        return out;
    }
    if let Some(suffix) = v.strip_prefix('*') {
        // The subject ends with the suffix, or the suffix reaches into the issuer.
        out.push(vec![
            string_claim("iss", string_match("*", "")),
            string_claim("sub", pattern(MatchPattern::Suffix(suffix.into()), false)),
        ]);
        for i in issuers {
            let full = format!("{i}/");
            for (k, _) in suffix.char_indices().skip(1) {
                let (head, sub) = suffix.split_at(k);
                if full.ends_with(head) && !sub.is_empty() {
                    out.push(vec![iss(i), string_claim("sub", exact(sub))]);
                }
            }
        }
        return out;
    }
    if let Some(prefix) = v.strip_suffix('*') {
        for i in issuers {
            let full = format!("{i}/");
            if full.starts_with(prefix) {
                out.push(vec![iss(i)]);
            } else if let Some(sub) = prefix.strip_prefix(full.as_str()) {
                out.push(vec![
                    iss(i),
                    string_claim("sub", pattern(MatchPattern::Prefix(sub.into()), false)),
                ]);
            }
        }
        return out;
    }
    for i in issuers {
        if let Some(sub) = v.strip_prefix(i.as_str()).and_then(|r| r.strip_prefix('/')) {
            out.push(vec![iss(i), string_claim("sub", exact(sub))]);
        }
    }
    out
}

/// An IP address or CIDR block; `None` when it is neither.
pub(crate) fn cidr(v: &str) -> Option<CidrRange> {
    let (ip, len) = match v.split_once('/') {
        Some((ip, len)) => (ip, len.parse::<u32>().ok()?),
        None => (v, if v.contains(':') { 128 } else { 32 }),
    };
    let max = match ip.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(_) => 32,
        std::net::IpAddr::V6(_) => 128,
    };
    (len <= max).then(|| CidrRange {
        address_prefix: ip.to_string(),
        prefix_len: Some(u32v(len)),
    })
}

/// A port number value.
pub(crate) fn port(v: &str) -> Option<u32> {
    v.parse::<u16>().ok().map(u32::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(m: &StringMatcher) -> String {
        match &m.match_pattern {
            Some(MatchPattern::Exact(s)) => format!("exact:{s}"),
            Some(MatchPattern::Prefix(s)) => format!("prefix:{s}"),
            Some(MatchPattern::Suffix(s)) => format!("suffix:{s}"),
            Some(MatchPattern::SafeRegex(r)) => format!("regex:{}", r.regex),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn principals_carry_the_spiffe_scheme() {
        assert_eq!(
            show(&principal("cluster.local/ns/default/sa/sleep")),
            "exact:spiffe://cluster.local/ns/default/sa/sleep"
        );
        assert_eq!(
            show(&principal("example.org/ns/default/*")),
            "prefix:spiffe://example.org/ns/default/"
        );
        assert_eq!(show(&principal("*/sa/sleep")), "regex:spiffe://.*/sa/sleep");
        assert_eq!(show(&principal("*")), "regex:.+");
        // A suffix with regex metacharacters is matched literally.
        assert_eq!(show(&principal("*.a+b")), r"regex:spiffe://.*\.a\+b");
    }

    /// Istio's `TestReplaceTrustDomainAliases` cases (pilot/pkg/security/trustdomain).
    #[test]
    fn principals_expand_over_the_trust_domain_bundle() {
        let expand = |td: &str, aliases: &[&str], principals: &[&str]| -> Vec<String> {
            let aliases: Vec<String> = aliases.iter().map(|a| a.to_string()).collect();
            principals
                .iter()
                .flat_map(|p| trust_domain_principals(p, td, &aliases))
                .collect()
        };
        /// (trust domain, aliases, principals, expected principals)
        type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str], &'a [&'a str]);
        let cases: [Case<'_>; 11] = [
            (
                "cluster.local",
                &[],
                &["cluster.local/ns/foo/sa/bar"],
                &["cluster.local/ns/foo/sa/bar"],
            ),
            ("cluster.local", &[], &["*"], &["*"]),
            (
                "cluster.local",
                &[],
                &["*/ns/foo/sa/bar"],
                &["*/ns/foo/sa/bar"],
            ),
            (
                "td2",
                &["td1"],
                &["td1/ns/foo/sa/bar"],
                &["td2/ns/foo/sa/bar", "td1/ns/foo/sa/bar"],
            ),
            (
                "td1",
                &["cluster.local"],
                &["cluster.local/ns/foo/sa/bar", "cluster.local/ns/yyy/sa/zzz"],
                &[
                    "td1/ns/foo/sa/bar",
                    "cluster.local/ns/foo/sa/bar",
                    "td1/ns/yyy/sa/zzz",
                    "cluster.local/ns/yyy/sa/zzz",
                ],
            ),
            (
                "td1",
                &["cluster.local"],
                &["*/ns/foo/sa/bar", "*sa/zzz", "*"],
                &["*/ns/foo/sa/bar", "*sa/zzz", "*"],
            ),
            (
                "td2",
                &["td1", "cluster.local"],
                &["cluster.local/ns/foo/sa/bar", "td1/ns/yyy/sa/zzz"],
                &[
                    "td2/ns/foo/sa/bar",
                    "td1/ns/foo/sa/bar",
                    "cluster.local/ns/foo/sa/bar",
                    "td2/ns/yyy/sa/zzz",
                    "td1/ns/yyy/sa/zzz",
                    "cluster.local/ns/yyy/sa/zzz",
                ],
            ),
            (
                "td2",
                &["foo-td1", "cluster.local"],
                &["*-td1/ns/foo/sa/bar"],
                &[
                    "td2/ns/foo/sa/bar",
                    "*-td1/ns/foo/sa/bar",
                    "cluster.local/ns/foo/sa/bar",
                ],
            ),
            (
                "td1",
                &["td2"],
                &["some-td/ns/foo/sa/bar"],
                &["some-td/ns/foo/sa/bar"],
            ),
            (
                "td1",
                &["td2", "some-td"],
                &["some-td/ns/foo/sa/bar"],
                &[
                    "td1/ns/foo/sa/bar",
                    "td2/ns/foo/sa/bar",
                    "some-td/ns/foo/sa/bar",
                ],
            ),
            (
                "new-td",
                &["td2", "td3"],
                &["td1/ns/some-ns/sa/some-sa", "td2/ns/foo/sa/bar"],
                &[
                    "td1/ns/some-ns/sa/some-sa",
                    "new-td/ns/foo/sa/bar",
                    "td2/ns/foo/sa/bar",
                    "td3/ns/foo/sa/bar",
                ],
            ),
        ];
        for (td, aliases, principals, expect) in cases {
            assert_eq!(
                expand(td, aliases, principals),
                expect,
                "{td} {aliases:?} {principals:?}"
            );
        }
        // `cluster.local` stands for the mesh's trust domain, without aliases too.
        assert_eq!(
            expand("example.org", &[], &["cluster.local/ns/a/sa/b"]),
            ["example.org/ns/a/sa/b"]
        );
        // Only five-segment identities are rewritten (Istio's SPIFFE format check).
        assert_eq!(
            expand("example.org", &["old.org"], &["cluster.local/ns/default/*"]),
            ["cluster.local/ns/default/*"]
        );
        assert_eq!(
            expand("example.org", &["old.org"], &["old.org/ns/a/sa/*"]),
            ["example.org/ns/a/sa/*", "old.org/ns/a/sa/*"]
        );
    }

    #[test]
    fn namespaces_match_the_identity_path() {
        assert_eq!(show(&namespace("default")), "regex:.*/ns/default/.*");
        assert_eq!(show(&namespace("team-*")), "regex:.*/ns/team-.*/.*");
        assert_eq!(show(&namespace("*")), "regex:.*/ns/.*/.*");
    }

    #[test]
    fn paths_are_exact_prefix_suffix_or_present() {
        let p = |v: &str| match path(v).rule {
            Some(path_matcher::Rule::Path(m)) => show(&m),
            None => "none".into(),
        };
        assert_eq!(p("/api"), "exact:/api");
        assert_eq!(p("/api/*"), "prefix:/api/");
        assert_eq!(p("*.png"), "suffix:.png");
        assert_eq!(p("*"), "regex:.+");
    }

    #[test]
    fn service_accounts_match_any_trust_domain() {
        assert_eq!(
            show(&service_account("shop/web", "other")),
            r"regex:spiffe://.+/ns/shop/(.+/|)sa/web(/.+)?"
        );
        // Without a namespace: the policy's.
        assert_eq!(
            show(&service_account("web", "shop")),
            r"regex:spiffe://.+/ns/shop/(.+/|)sa/web(/.+)?"
        );
        // Names are matched literally.
        assert_eq!(
            show(&service_account("a.b/c.d", "shop")),
            r"regex:spiffe://.+/ns/a\.b/(.+/|)sa/c\.d(/.+)?"
        );
    }

    #[test]
    fn path_templates_become_uri_templates() {
        let t = path_template("/api/{*}/orders/{**}");
        assert_eq!(t.name, "uri-template");
        let any = t.typed_config.unwrap_or_default();
        assert_eq!(
            any.type_url,
            "type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig"
        );
        let config = <UriTemplateMatchConfig as prost::Message>::decode(any.value.as_slice());
        assert_eq!(
            config.map(|c| c.path_template).ok().as_deref(),
            Some("/api/*/orders/**")
        );
    }

    #[test]
    fn headers() {
        let h = host("*.example.com");
        match h.header_match_specifier {
            Some(HeaderMatchSpecifier::StringMatch(m)) => {
                assert!(m.ignore_case);
                assert_eq!(show(&m), "suffix:.example.com");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            host("*").header_match_specifier,
            Some(HeaderMatchSpecifier::PresentMatch(true))
        );
        match method("GET").header_match_specifier {
            Some(HeaderMatchSpecifier::StringMatch(m)) => assert_eq!(show(&m), "exact:GET"),
            other => panic!("{other:?}"),
        }
        match request_header("x-user", "j.*").header_match_specifier {
            Some(HeaderMatchSpecifier::StringMatch(m)) => {
                assert_eq!(show(&m), r"regex:^j\..*$|^j\..*,.*|.*,j\..*,.*|.*,j\..*$")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cidrs_and_ports() {
        let c = cidr("10.0.0.0/8").map(|c| (c.address_prefix, c.prefix_len.map(|l| l.value)));
        assert_eq!(c, Some(("10.0.0.0".into(), Some(8))));
        assert_eq!(
            cidr("1.2.3.4").and_then(|c| c.prefix_len).map(|l| l.value),
            Some(32)
        );
        assert_eq!(
            cidr("::1").and_then(|c| c.prefix_len).map(|l| l.value),
            Some(128)
        );
        assert!(cidr("1.2.3.4/40").is_none());
        assert!(cidr("nope").is_none());
        assert_eq!(port("8080"), Some(8080));
        assert_eq!(port("70000"), None);
    }

    /// A request principal's alternatives as `claim=matcher` ANDs.
    fn principal_alts(v: &str, issuers: &[&str]) -> Vec<String> {
        let issuers: Vec<String> = issuers.iter().map(|s| s.to_string()).collect();
        request_principal(v, &issuers)
            .iter()
            .map(|all| {
                all.iter()
                    .map(|m| {
                        let claim = match m.path.last().and_then(|p| p.segment.as_ref()) {
                            Some(Segment::Key(k)) => k.clone(),
                            None => String::new(),
                        };
                        assert_eq!(m.filter, filters::HTTP_JWT_AUTHN);
                        let value = match m.value.as_ref().and_then(|v| v.match_pattern.as_ref()) {
                            Some(value_matcher::MatchPattern::StringMatch(s)) => show(s),
                            other => format!("{other:?}"),
                        };
                        format!("{claim}={value}")
                    })
                    .collect::<Vec<_>>()
                    .join("&")
            })
            .collect()
    }

    #[test]
    fn request_principals_split_at_known_issuers() {
        let iss = ["https://idp.example", "other"];
        assert_eq!(
            principal_alts("https://idp.example/alice", &iss),
            ["iss=exact:https://idp.example&sub=exact:alice"]
        );
        assert!(principal_alts("unknown/alice", &iss).is_empty());
        assert_eq!(principal_alts("*", &iss), ["iss=regex:.+"]);
        assert_eq!(
            principal_alts("https://idp.example/*", &iss),
            ["iss=exact:https://idp.example"]
        );
        assert_eq!(
            principal_alts("https://idp.example/adm*", &iss),
            ["iss=exact:https://idp.example&sub=prefix:adm"]
        );
        assert_eq!(
            principal_alts("https://*", &iss),
            ["iss=exact:https://idp.example"]
        );
        assert_eq!(
            principal_alts("*/alice", &iss),
            [
                "iss=regex:.+&sub=suffix:/alice",
                "iss=exact:https://idp.example&sub=exact:alice",
                "iss=exact:other&sub=exact:alice",
            ]
        );
        assert_eq!(
            principal_alts("*ample/bob", &iss),
            [
                "iss=regex:.+&sub=suffix:ample/bob",
                "iss=exact:https://idp.example&sub=exact:bob",
            ]
        );
    }
}
