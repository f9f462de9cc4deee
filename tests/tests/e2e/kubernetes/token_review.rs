//! CSRs authenticated by Kubernetes TokenReview, as istiod authenticates them: the
//! emulator answers for the tokens a test registers (true, false, another audience), and
//! with the API server away a token it never vouched for gets no certificate.

use shoal_kube_emulator::ReviewUser;
use shoal_tests::identity::{create_certificate, csr_for, pem_uris, tls_channel};

use super::{Cluster, token};

fn web(audiences: &[&str]) -> ReviewUser {
    ReviewUser {
        username: "system:serviceaccount:shop:web".into(),
        uid: "u-web".into(),
        groups: vec!["system:serviceaccounts".into()],
        extra: [(
            "authentication.kubernetes.io/pod-name".to_string(),
            vec!["web-1".to_string()],
        )]
        .into(),
        audiences: audiences.iter().map(|a| a.to_string()).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrs_are_authenticated_by_token_review() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let ca = cluster.dir.path().join("ca");
    let shoal = cluster
        .shoal_with(&["--ca-dir", &ca.display().to_string()])
        .await;
    let root = std::fs::read_to_string(ca.join("shoal-root/root-cert.pem")).expect("root");
    let channel = tls_channel(shoal.xds_tls().port(), &root).expect("a channel");
    let me = "spiffe://cluster.local/ns/shop/sa/web";

    let good = token("good");
    cluster.emu.add_token_review(&good, web(&["istio-ca"]));
    let issued = create_certificate(&channel, &good, csr_for(me).expect("a CSR"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", shoal.log()));
    assert_eq!(pem_uris(issued.cert_chain[0].as_bytes()), [me]);
    // Another identity than the reviewed one: refused.
    let other = create_certificate(
        &channel,
        &good,
        csr_for("spiffe://cluster.local/ns/shop/sa/db").expect("a CSR"),
    )
    .await;
    assert!(other.is_err(), "{other:?}");

    // A token the API server does not know, and one issued for another audience.
    let unknown =
        create_certificate(&channel, &token("unknown"), csr_for(me).expect("a CSR")).await;
    assert_eq!(
        unknown.map(|_| ()).unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    let kube_only = token("kube-only");
    cluster
        .emu
        .add_token_review(&kube_only, web(&["https://kubernetes.default.svc"]));
    let wrong = create_certificate(&channel, &kube_only, csr_for(me).expect("a CSR")).await;
    assert_eq!(
        wrong.map(|_| ()).unwrap_err().code(),
        tonic::Code::Unauthenticated
    );

    // The API server away: a token it never answered for gets nothing; one it answered
    // for is still honoured from the cache for its remaining life.
    let late = token("late");
    cluster.emu.add_token_review(&late, web(&["istio-ca"]));
    cluster.emu.stop().await;
    let refused = create_certificate(&channel, &late, csr_for(me).expect("a CSR")).await;
    assert_eq!(
        refused.map(|_| ()).unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    let cached = create_certificate(&channel, &good, csr_for(me).expect("a CSR")).await;
    assert!(cached.is_ok(), "{cached:?}");
    let reviews = shoal.log();
    assert!(reviews.contains("TokenReview"), "{reviews}");
}
