//! Sidecar resources through a real Envoy: an ingress listener that remaps the port a
//! workload receives traffic on to the one its application listens on.

use std::time::Duration;

use shoal_tests::eventually;
use shoal_tests::ingress::IngressApi;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_listener_forwards_its_port_to_the_application() {
    let Some(api) = IngressApi::start("", &[]).await.unwrap() else {
        return;
    };
    // A request to the ingress port reaches the application on its own port.
    let (status, body) = eventually(Duration::from_secs(20), "the ingress listener", || async {
        api.get("/", &[]).await.ok()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", api.logs()));
    assert_eq!((status, body.as_str()), (200, "api"));
    // The listener is the Sidecar's: nothing for the service's port, which it replaced.
    let listeners = api.envoy.listeners().await.unwrap();
    assert_eq!(
        listeners,
        [api.via.to_string().replace(':', "_")],
        "{listeners:?}"
    );
}
