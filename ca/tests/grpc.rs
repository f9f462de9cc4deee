//! The Istio CSR API over the wire: a tonic server on loopback and a hand-built client.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use prost_types::value::Kind;
use shoal_ca::auth::{IssuerKeys, TrustedIssuer};
use shoal_ca::grpc::{
    CREATE_CERTIFICATE_PATH, CertificateService, IMPERSONATED_IDENTITY_KEY,
    IstioCertificateRequest, IstioCertificateResponse, PeerCertificates,
};
use shoal_ca::{Authorizer, CertificateAuthority, Identity, JwtAuthenticator, NodeDirectory};
use tokio::task::JoinHandle;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::{Code, Request, Status};

/// `productpage` runs on node-a; nothing else runs anywhere.
struct Nodes;
impl NodeDirectory for Nodes {
    fn has_workload_on_node(&self, node: &str, identity: &Identity) -> bool {
        node == "node-a" && *identity == id("default", "productpage")
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    ca: Arc<CertificateAuthority>,
    issuer: EcIssuer,
    service: CertificateService,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(new_ca(dir.path()));
    let issuer = EcIssuer::new("k1");
    let jwt = JwtAuthenticator::new(
        TD,
        vec![TrustedIssuer::new(ISSUER, IssuerKeys::Jwks(issuer.jwks()))],
    )
    .unwrap();
    let service = CertificateService::new(
        ca.clone(),
        Arc::new(jwt),
        Authorizer::new(TD).unwrap(),
        Arc::new(Nodes),
    );
    Fixture {
        _dir: dir,
        ca,
        issuer,
        service,
    }
}

struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(service: CertificateService) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await;
    });
    Server { addr, task }
}

fn request(
    csr: &str,
    token: Option<&str>,
    impersonate: Option<&str>,
) -> Request<IstioCertificateRequest> {
    let metadata = impersonate.map(|uri| prost_types::Struct {
        fields: BTreeMap::from([(
            IMPERSONATED_IDENTITY_KEY.to_string(),
            prost_types::Value {
                kind: Some(Kind::StringValue(uri.to_string())),
            },
        )]),
    });
    let mut req = Request::new(IstioCertificateRequest {
        csr: csr.to_string(),
        validity_duration: 3600,
        metadata,
    });
    if let Some(token) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    req
}

async fn call(
    addr: SocketAddr,
    req: Request<IstioCertificateRequest>,
) -> Result<IstioCertificateResponse, Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    grpc.unary(
        req,
        PathAndQuery::from_static(CREATE_CERTIFICATE_PATH),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .map(|r| r.into_inner())
}

#[tokio::test]
async fn create_certificate_over_the_wire() {
    let f = fixture();
    let server = serve(f.service.clone()).await;
    let app = id("default", "productpage");

    // A workload for itself.
    let token = f
        .issuer
        .sign(&k8s_claims("default", "productpage", Some("node-a")));
    let resp = call(server.addr, request(&csr_for(&app).1, Some(&token), None))
        .await
        .unwrap();
    assert_eq!(resp.cert_chain.len(), 2);
    assert_eq!(resp.cert_chain[1], f.ca.trust_bundle()[0]);
    assert_eq!(
        f.ca.authenticate_client_cert(&[der(&resp.cert_chain[0])])
            .unwrap()
            .identity,
        app
    );

    // ztunnel for a pod on its node.
    let ztunnel = f
        .issuer
        .sign(&k8s_claims("istio-system", "ztunnel", Some("node-a")));
    let resp = call(
        server.addr,
        request(&csr_for(&app).1, Some(&ztunnel), Some(&app.spiffe_uri())),
    )
    .await
    .unwrap();
    assert_eq!(
        f.ca.authenticate_client_cert(&[der(&resp.cert_chain[0])])
            .unwrap()
            .identity,
        app
    );
}

#[tokio::test]
async fn refusals_over_the_wire() {
    let f = fixture();
    let server = serve(f.service.clone()).await;
    let app = id("default", "productpage");
    let code = |r: Result<IstioCertificateResponse, Status>| r.unwrap_err().code();

    // No credentials; a forged token.
    assert_eq!(
        code(call(server.addr, request(&csr_for(&app).1, None, None)).await),
        Code::Unauthenticated
    );
    let forged = EcIssuer::new("k1").sign(&k8s_claims("default", "productpage", None));
    let err = call(server.addr, request(&csr_for(&app).1, Some(&forged), None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(err.message(), "token signature is invalid");

    // A CSR for someone else; impersonation by a workload; impersonation off-node.
    let token = f
        .issuer
        .sign(&k8s_claims("default", "productpage", Some("node-a")));
    let admin = id("kube-system", "admin");
    assert_eq!(
        code(call(server.addr, request(&csr_for(&admin).1, Some(&token), None)).await),
        Code::PermissionDenied
    );
    let reviews = id("default", "reviews");
    assert_eq!(
        code(
            call(
                server.addr,
                request(
                    &csr_for(&reviews).1,
                    Some(&token),
                    Some(&reviews.spiffe_uri())
                )
            )
            .await
        ),
        Code::PermissionDenied
    );
    let ztunnel_b = f
        .issuer
        .sign(&k8s_claims("istio-system", "ztunnel", Some("node-b")));
    assert_eq!(
        code(
            call(
                server.addr,
                request(&csr_for(&app).1, Some(&ztunnel_b), Some(&app.spiffe_uri()))
            )
            .await
        ),
        Code::PermissionDenied
    );

    // Malformed input.
    assert_eq!(
        code(call(server.addr, request("garbage", Some(&token), None)).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            call(
                server.addr,
                request(&csr_for(&app).1, Some(&token), Some("not-a-uri"))
            )
            .await
        ),
        Code::InvalidArgument
    );

    // A lifetime above the maximum is refused, in Istio's words, not silently shortened.
    let mut long = request(&csr_for(&app).1, Some(&token), None);
    long.get_mut().validity_duration = 91 * 24 * 3600;
    let err = call(server.addr, long).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.message(),
        "requested TTL 2184h0m0s is greater than the max allowed TTL 2160h0m0s"
    );
}

#[tokio::test]
async fn renewal_with_a_client_certificate() {
    let f = fixture();
    let app = id("default", "productpage");
    let current =
        f.ca.issue_keypair(&app, std::time::Duration::from_secs(3600))
            .unwrap();

    let mut req = request(&csr_for(&app).1, None, None);
    req.extensions_mut()
        .insert(PeerCertificates(vec![der(&current.cert_chain[0])]));
    let resp = f
        .service
        .create_certificate(req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        f.ca.authenticate_client_cert(&[der(&resp.cert_chain[0])])
            .unwrap()
            .identity,
        app
    );

    // A self-signed impostor is not trusted.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![uri(&app.spiffe_uri())];
    let impostor = params.self_signed(&key).unwrap();
    let mut req = request(&csr_for(&app).1, None, None);
    req.extensions_mut()
        .insert(PeerCertificates(vec![impostor.der().clone()]));
    assert_eq!(
        f.service.create_certificate(req).await.unwrap_err().code(),
        Code::Unauthenticated
    );
}
