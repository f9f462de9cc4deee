//! The `jwt_authn` configuration of RequestAuthentications.

#![allow(clippy::unwrap_used)]

use shoal_config::ConfigStore;
use shoal_config::parse::parse_yaml;

use super::*;
use crate::MeshOptions;
use crate::model::JwksRef;

fn model(yaml: &str) -> Model {
    model_with(yaml, MeshOptions::default())
}

fn model_with(yaml: &str, options: MeshOptions) -> Model {
    let mut store = ConfigStore::new();
    store.apply("t.yaml", parse_yaml("t.yaml", yaml));
    let errors: Vec<String> = store
        .issues()
        .iter()
        .filter(|i| i.is_error())
        .map(ToString::to_string)
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    Model::build(store.snapshot(), options)
}

fn ra(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1beta1\nkind: RequestAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}---\n"
    )
}

const KEYS: &str = r#"'{"keys": []}'"#;

fn config_of(yaml: &str) -> Option<JwtConfig> {
    config_in(&model(yaml))
}

/// The filter for every RequestAuthentication of the model (the tests' all apply).
fn config_in(m: &Model) -> Option<JwtConfig> {
    let list: Vec<_> = m.request_authentications.iter().collect();
    build(m, &list)
}

fn inline_keys(p: &JwtProvider) -> Option<&str> {
    match &p.jwks_source_specifier {
        Some(JwksSourceSpecifier::LocalJwks(DataSource {
            specifier: Some(Specifier::InlineString(s)),
            ..
        })) => Some(s),
        _ => None,
    }
}

#[test]
fn providers_follow_jwt_rules() {
    let se = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: idp, namespace: shop}\nspec:\n  hosts: [idp.example.com]\n  location: MESH_EXTERNAL\n  resolution: DNS\n  ports: [{number: 443, name: https, protocol: TLS}]\n---\n";
    let spec = format!(
        "  jwtRules:\n  - issuer: https://inline.example\n    audiences: [shop]\n    jwks: {KEYS}\n    fromHeaders: [{{name: x-token, prefix: 'Bearer '}}]\n    fromParams: [t]\n    fromCookies: [c]\n    outputPayloadToHeader: x-payload\n    forwardOriginalToken: true\n    outputClaimToHeaders: [{{header: x-sub, claim: sub}}]\n  - issuer: https://idp.example.com\n    jwksUri: https://idp.example.com/keys\n    timeout: 2s\n  - issuer: https://unknown.example\n    jwksUri: https://unknown.example/keys\n"
    );
    // Envoy fetches keys of registry hosts, shoal the others (Istio's "hybrid").
    let options = MeshOptions {
        jwks_fetch: crate::model::JwksFetch::Hybrid,
        ..MeshOptions::default()
    };
    let c = config_in(&model_with(
        &(se.to_string() + &ra("shop", "jwt", &spec)),
        options,
    ))
    .unwrap();
    assert_eq!(
        c.issuers,
        [
            "https://inline.example",
            "https://idp.example.com",
            "https://unknown.example"
        ]
    );
    let mut names: Vec<&String> = c.filter.providers.keys().collect();
    names.sort();
    assert_eq!(names, ["shop/jwt[0]", "shop/jwt[1]", "shop/jwt[2]"]);
    // Not fetched (yet): keys that verify nothing, never a rule left out.
    assert_eq!(
        inline_keys(&c.filter.providers["shop/jwt[2]"]),
        Some(crate::model::UNUSABLE_JWKS)
    );

    let inline = &c.filter.providers["shop/jwt[0]"];
    assert_eq!(inline.audiences, ["shop"]);
    assert!(inline.forward);
    assert_eq!(inline.from_headers[0].name, "x-token");
    assert_eq!(inline.from_headers[0].value_prefix, "Bearer ");
    assert_eq!(inline.from_params, ["t"]);
    assert_eq!(inline.from_cookies, ["c"]);
    assert_eq!(inline.forward_payload_header, "x-payload");
    assert_eq!(inline.claim_to_headers[0].header_name, "x-sub");
    assert_eq!(inline.claim_to_headers[0].claim_name, "sub");
    assert_eq!(inline.payload_in_metadata, PAYLOAD_KEY);
    assert!(matches!(
        &inline.jwks_source_specifier,
        Some(JwksSourceSpecifier::LocalJwks(d))
            if d.specifier == Some(Specifier::InlineString(r#"{"keys": []}"#.into()))
    ));

    let remote = &c.filter.providers["shop/jwt[1]"];
    assert!(remote.from_headers.is_empty(), "Envoy's default locations");
    match &remote.jwks_source_specifier {
        Some(JwksSourceSpecifier::RemoteJwks(r)) => {
            let uri = r.http_uri.as_ref().unwrap();
            assert_eq!(uri.uri, "https://idp.example.com/keys");
            assert_eq!(
                uri.http_upstream_type,
                Some(HttpUpstreamType::Cluster(
                    "outbound|443||idp.example.com".into()
                ))
            );
            assert_eq!(uri.timeout.as_ref().map(|t| t.seconds), Some(2));
        }
        other => panic!("{other:?}"),
    }

    // A missing token passes, an invalid one fails: any provider, or allow_missing.
    let rule = &c.filter.rules[0];
    let Some(RequirementType::Requires(req)) = &rule.requirement_type else {
        panic!("{rule:?}");
    };
    let Some(RequiresType::RequiresAny(any)) = &req.requires_type else {
        panic!("{req:?}");
    };
    let kinds: Vec<String> = any
        .requirements
        .iter()
        .map(|r| match &r.requires_type {
            Some(RequiresType::ProviderName(n)) => n.clone(),
            Some(RequiresType::AllowMissing(_)) => "allow_missing".into(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        ["shop/jwt[0]", "shop/jwt[1]", "shop/jwt[2]", "allow_missing"]
    );
}

#[test]
fn fetched_keys_are_inlined_and_missing_ones_verify_nothing() {
    let yaml = ra(
        "shop",
        "jwt",
        "  jwtRules:\n  - {issuer: https://a.example, jwksUri: 'https://a.example/k'}\n  - {issuer: https://b.example}\n",
    );
    let mut m = model(&yaml);
    let refs: Vec<JwksRef> = m.jwks_refs().into_iter().collect();
    assert_eq!(
        refs,
        [
            JwksRef::Uri("https://a.example/k".into()),
            JwksRef::Discover("https://b.example".into()),
        ]
    );
    let c = config_in(&m).unwrap();
    for p in c.filter.providers.values() {
        assert_eq!(inline_keys(p), Some(crate::model::UNUSABLE_JWKS));
    }
    m.jwks = std::sync::Arc::new(
        [
            (refs[0].clone(), r#"{"keys":["a"]}"#.into()),
            (refs[1].clone(), r#"{"keys":["b"]}"#.into()),
        ]
        .into_iter()
        .collect(),
    );
    let c = config_in(&m).unwrap();
    assert_eq!(
        inline_keys(&c.filter.providers["shop/jwt[0]"]),
        Some(r#"{"keys":["a"]}"#)
    );
    assert_eq!(
        inline_keys(&c.filter.providers["shop/jwt[1]"]),
        Some(r#"{"keys":["b"]}"#)
    );
    // Envoy mode: a registry-less URI cannot be fetched by anyone.
    let m = model_with(
        &yaml,
        MeshOptions {
            jwks_fetch: crate::model::JwksFetch::Envoy,
            ..MeshOptions::default()
        },
    );
    assert_eq!(
        m.jwks_refs().into_iter().collect::<Vec<_>>(),
        [JwksRef::Discover("https://b.example".into())]
    );
    assert!(config_of(&ra("shop", "empty", "  {}\n")).is_none());
}
