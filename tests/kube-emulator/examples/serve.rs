//! Runs an emulator until interrupted, for poking at it by hand:
//! `cargo run -p shoal-kube-emulator --example serve -- /tmp/kubeconfig` then
//! `KUBECONFIG=/tmp/kubeconfig kubectl get ns`.

use shoal_kube_emulator::{Emulator, Options};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "kubeconfig.emulator".to_string());
    let emu = Emulator::start(Options::default()).await?;
    emu.kubeconfig(std::path::Path::new(&path))?;
    println!("serving {} (kubeconfig: {path})", emu.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
