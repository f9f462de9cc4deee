//! Istio's plug-in CA from the cluster: with a `cacerts` Secret in the root namespace,
//! workload certificates chain to the operator's root through their intermediate, and that
//! root is what the namespaces' `istio-ca-root-cert` holds.

use std::time::Duration;

use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use shoal_kube_emulator::ReviewUser;
use shoal_tests::eventually;
use shoal_tests::identity::{create_certificate, csr_for, tls_channel};

use super::{Cluster, root_cert_in, token};

fn ca_params(name: &str, constraints: BasicConstraints) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::OrganizationName, "Example Corp");
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(constraints);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cacerts_secret_is_the_ca() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let root_key = KeyPair::generate().expect("key");
    let root_params = ca_params("Example Root CA", BasicConstraints::Unconstrained);
    let root = root_params.self_signed(&root_key).expect("root").pem();
    let inter_key = KeyPair::generate().expect("key");
    let mut inter_params = ca_params(
        "Example Mesh Intermediate",
        BasicConstraints::Constrained(0),
    );
    inter_params.use_authority_key_identifier_extension = true;
    let inter = inter_params
        .signed_by(&inter_key, &Issuer::new(root_params, root_key))
        .expect("intermediate")
        .pem();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    cluster
        .apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: istio-system}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: cacerts, namespace: istio-system}}\ndata:\n  ca-cert.pem: {}\n  ca-key.pem: {}\n  root-cert.pem: {}\n  cert-chain.pem: {}\n",
            b64(&inter),
            b64(&inter_key.serialize_pem()),
            b64(&root),
            b64(&format!("{inter}{root}")),
        ))
        .await;
    let ca = cluster.dir.path().join("ca");
    let shoal = cluster
        .shoal_with(&["--ca-dir", &ca.display().to_string()])
        .await;
    assert!(
        shoal.log().contains("plug-in CA read from the cluster"),
        "{}",
        shoal.log()
    );

    let token = token("web");
    cluster.emu.add_token_review(
        &token,
        ReviewUser {
            username: "system:serviceaccount:shop:web".into(),
            audiences: vec!["istio-ca".into()],
            ..Default::default()
        },
    );
    // The TLS port's certificate chains to the plug-in root too.
    let channel = tls_channel(shoal.xds_tls().port(), &root).expect("a channel");
    let me = "spiffe://cluster.local/ns/shop/sa/web";
    let issued = create_certificate(&channel, &token, csr_for(me).expect("a CSR"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", shoal.log()));
    let chain: Vec<String> = issued
        .cert_chain
        .iter()
        .map(|c| c.trim().to_string())
        .collect();
    assert_eq!(chain.len(), 3, "leaf, intermediate, root");
    assert_eq!(chain[1], inter.trim());
    assert_eq!(chain[2], root.trim());

    eventually(
        Duration::from_secs(30),
        "the plug-in root in shop",
        || async { root_cert_in(&cluster.emu, "shop").filter(|b| b.trim() == root.trim()) },
    )
    .await
    .expect("istio-ca-root-cert holds the plug-in root");
}
