//! GRPCRoutes in their HTTP form, as Istio converts them (`convertGRPCRoute`): a gRPC call
//! is an HTTP/2 POST to `/SERVICE/METHOD`, so a method match becomes a path match
//! (`createGRPCURIMatch`):
//!
//! | type | service and method | service only | method only |
//! | --- | --- | --- | --- |
//! | `Exact` | exact `/S/M` | prefix `/S/` | regex `/[^/]+/M` |
//! | `RegularExpression` | regex `/S/M` | regex `/S/.+` | regex `/[^/]+/M` |
//!
//! Header matches, filters (header modifiers and mirrors; the subset of the HTTPRoute's)
//! and weighted backends keep their HTTPRoute meaning. The HTTP form then goes through the
//! HTTPRoute pipeline (`http.rs`): one route per match, merged with the HTTPRoutes of the
//! same listener and host and sorted by precedence, where the path kinds above order the
//! matches as GRPCRoute precedence does (more characters of service, then of method, first;
//! a match without a method last).

use shoal_config::gateway_api::{
    GrpcMethodMatch, GrpcMethodMatchType, GrpcRouteMatch, GrpcRouteSpec, HttpPathMatch,
    HttpRouteMatch, HttpRouteRule, HttpRouteSpec, PathMatchType,
};

/// The HTTPRoute equivalent of a GRPCRoute.
pub(super) fn as_http_route(spec: &GrpcRouteSpec) -> HttpRouteSpec {
    HttpRouteSpec {
        parent_refs: spec.parent_refs.clone(),
        hostnames: spec.hostnames.clone(),
        rules: spec
            .rules
            .iter()
            .map(|r| HttpRouteRule {
                name: r.name.clone(),
                matches: r.matches.iter().map(http_match).collect(),
                filters: r.filters.iter().map(|f| f.to_http()).collect(),
                backend_refs: r.backend_refs.clone(),
                timeouts: None,
            })
            .collect(),
    }
}

fn http_match(m: &GrpcRouteMatch) -> HttpRouteMatch {
    HttpRouteMatch {
        path: m.method.as_ref().and_then(uri_match),
        headers: m.headers.clone(),
        query_params: Vec::new(),
        method: None,
    }
}

/// The path match of a method match; `None` when it names neither service nor method
/// (rejected by validation).
fn uri_match(m: &GrpcMethodMatch) -> Option<HttpPathMatch> {
    let path = |t: PathMatchType, v: String| {
        Some(HttpPathMatch {
            match_type: Some(t),
            value: Some(v),
        })
    };
    use PathMatchType::{Exact, PathPrefix, RegularExpression as Regex};
    match (m.match_type(), m.service(), m.method()) {
        (_, None, None) => None,
        (_, None, Some(method)) => path(Regex, format!("/[^/]+/{method}")),
        (GrpcMethodMatchType::Exact, Some(s), None) => path(PathPrefix, format!("/{s}/")),
        (GrpcMethodMatchType::Exact, Some(s), Some(method)) => {
            path(Exact, format!("/{s}/{method}"))
        }
        (GrpcMethodMatchType::RegularExpression, Some(s), None) => path(Regex, format!("/{s}/.+")),
        (GrpcMethodMatchType::RegularExpression, Some(s), Some(method)) => {
            path(Regex, format!("/{s}/{method}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(t: GrpcMethodMatchType, service: Option<&str>, method: Option<&str>) -> Option<String> {
        let m = GrpcMethodMatch {
            match_type: Some(t),
            service: service.map(Into::into),
            method: method.map(Into::into),
        };
        uri_match(&m).map(|p| {
            let kind = match p.match_type() {
                PathMatchType::Exact => "exact",
                PathMatchType::PathPrefix => "prefix",
                PathMatchType::RegularExpression => "regex",
            };
            format!("{kind} {}", p.value())
        })
    }

    #[test]
    fn method_matches_become_path_matches_as_istio_converts_them() {
        use GrpcMethodMatchType::{Exact, RegularExpression as Re};
        let cases = [
            (
                Exact,
                Some("echo.Echo"),
                Some("Who"),
                "exact /echo.Echo/Who",
            ),
            (Exact, Some("echo.Echo"), None, "prefix /echo.Echo/"),
            (Exact, None, Some("Who"), "regex /[^/]+/Who"),
            (Re, Some("echo\\..*"), Some("W.o"), "regex /echo\\..*/W.o"),
            (Re, Some("echo\\..*"), None, "regex /echo\\..*/.+"),
            (Re, None, Some("W.o"), "regex /[^/]+/W.o"),
        ];
        for (t, s, m, expect) in cases {
            assert_eq!(uri(t, s, m).as_deref(), Some(expect), "{t:?} {s:?} {m:?}");
        }
        // Empty strings are "unset", as the API says; neither set converts to nothing.
        assert_eq!(
            uri(Exact, Some(""), Some("Who")).as_deref(),
            Some("regex /[^/]+/Who")
        );
        assert_eq!(uri(Exact, None, None), None);
        // The default type is Exact.
        let m = GrpcMethodMatch {
            service: Some("a.B".into()),
            ..Default::default()
        };
        assert_eq!(
            uri_match(&m).map(|p| p.match_type()),
            Some(PathMatchType::PathPrefix)
        );
    }

    #[test]
    fn a_grpc_route_keeps_headers_filters_and_backends_in_http_form() {
        use shoal_config::gateway_api::{FilterType, HttpHeaderMatch};
        let text = "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g, namespace: ns}\nspec:\n  parentRefs: [{name: gw}]\n  hostnames: [grpc.example.com]\n  rules:\n  - matches:\n    - method: {service: echo.Echo}\n      headers: [{name: x-v, value: '1'}]\n    - headers: [{name: x-w, value: '2'}]\n    filters:\n    - type: RequestHeaderModifier\n      requestHeaderModifier: {set: [{name: x-a, value: b}]}\n    backendRefs: [{name: a, port: 9000, weight: 3}]\n";
        let docs = shoal_config::parse::parse_yaml("g.yaml", text);
        let Some(shoal_config::parse::Outcome::Accepted { object, .. }) =
            docs.into_iter().next().map(|d| d.outcome)
        else {
            panic!("not accepted");
        };
        let shoal_config::Object::GrpcRoute(route) = object.as_ref() else {
            panic!("not a GRPCRoute");
        };
        let http = as_http_route(&route.spec);
        assert_eq!(http.hostnames, vec!["grpc.example.com"]);
        let rule = &http.rules[0];
        assert_eq!(
            rule.matches[0].path.as_ref().map(|p| p.value()),
            Some("/echo.Echo/")
        );
        assert_eq!(
            rule.matches[0].headers,
            vec![HttpHeaderMatch {
                match_type: None,
                name: "x-v".into(),
                value: "1".into()
            }]
        );
        assert_eq!(rule.matches[1].path, None);
        assert_eq!(
            rule.filters[0].filter_type,
            FilterType::RequestHeaderModifier
        );
        assert_eq!(rule.backend_refs[0].weight, Some(3));
    }
}
