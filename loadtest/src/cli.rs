//! Command line of `shoal-loadtest`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::mesh::MeshSpec;
use crate::proxy::Kind;
use crate::scenario::{Options, Scenario, Target};

#[derive(Debug, Parser)]
#[command(
    name = "shoal-loadtest",
    version,
    about = "Simulated proxies against an xDS server, and the figures they measure"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

fn duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.trim().split_at(
        s.trim()
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let v: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let scale = match unit {
        "ms" => 0.001,
        "s" | "" => 1.0,
        "m" => 60.0,
        _ => return Err(format!("bad unit in {s:?} (ms, s, m)")),
    };
    Ok(Duration::from_secs_f64(v * scale))
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Command {
    /// Write a synthetic mesh as Istio YAML (to feed `shoal serve --config-dir`).
    Gen {
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        mesh: MeshSpec,
    },
    /// Run a scenario against shoal (started here on a generated mesh, or attached to).
    Run {
        scenario: Scenario,
        /// Simulated proxies.
        #[arg(long, default_value_t = 100)]
        proxies: usize,
        #[arg(long, value_enum, default_value = "sidecar")]
        kind: Kind,
        /// HTTP/2 connections the streams are spread over (0: one per proxy, as in real life).
        #[arg(long, default_value_t = 0)]
        connections: usize,
        /// Streams started per second (0: all at once).
        #[arg(long, default_value_t = 0.0)]
        ramp: f64,
        #[command(flatten)]
        mesh: MeshSpec,
        /// The shoal binary to start (default: `shoal` next to this binary).
        #[arg(long)]
        server_bin: Option<PathBuf>,
        /// Replicas to start (a shard group; `failover` needs at least 2).
        #[arg(long, default_value_t = 1)]
        replicas: usize,
        /// Extra arguments for `shoal serve`.
        #[arg(long, allow_hyphen_values = true, num_args = 1..)]
        server_args: Vec<String>,
        /// Attach to a running server instead (with --admin and --config-dir; --pid to measure it).
        #[arg(long, requires_all = ["admin", "config_dir"])]
        xds: Option<SocketAddr>,
        #[arg(long)]
        admin: Option<SocketAddr>,
        #[arg(long)]
        pid: Option<u32>,
        #[arg(long)]
        config_dir: Option<PathBuf>,
        /// Config changes in the churn scenario.
        #[arg(long, default_value_t = 10)]
        changes: usize,
        /// Time between config changes.
        #[arg(long, default_value = "1s", value_parser = duration)]
        change_interval: Duration,
        /// Churn only scales services' endpoints (e.g. to follow a change made in one
        /// federated group to another group's proxies: attach to the importing group with
        /// --config-dir of the exporting one).
        #[arg(long)]
        endpoint_churn: bool,
        /// Longest any phase may take.
        #[arg(long, default_value = "120s", value_parser = duration)]
        timeout: Duration,
        /// Idle time after convergence before the server's memory is read (its allocator
        /// returns freed memory after about 10 s).
        #[arg(long, default_value = "15s", value_parser = duration)]
        settle: Duration,
        /// Also measure the wire baseline (efficiency).
        #[arg(long)]
        baseline: bool,
        /// Check every proxy holds exactly the server's view (one config dump per proxy).
        #[arg(long)]
        verify: bool,
        /// Write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write an SVG plot of the latency CDFs here.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
}

pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shoal-loadtest: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Gen { out, mesh } => {
            mesh.write(&out)?;
            println!(
                "wrote {} services in {} namespaces to {}",
                mesh.services,
                mesh.namespaces,
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            scenario,
            proxies,
            kind,
            connections,
            ramp,
            mesh,
            server_bin,
            replicas,
            server_args,
            xds,
            admin,
            pid,
            config_dir,
            changes,
            change_interval,
            endpoint_churn,
            timeout,
            settle,
            baseline,
            verify,
            json,
            plot,
            quiet,
        } => {
            anyhow::ensure!(
                !(matches!(kind, Kind::Mixed | Kind::Waypoint)
                    && matches!(scenario, Scenario::Churn | Scenario::All)),
                "churn follows the resources of sidecars or ztunnels: run it with one of those kinds"
            );
            anyhow::ensure!(
                !matches!(kind, Kind::Waypoint | Kind::Mixed) || mesh.waypoints,
                "waypoint proxies need waypoints in the mesh: add --waypoints"
            );
            let target = match (xds, admin, config_dir) {
                (Some(xds), Some(admin), Some(config_dir)) => Target::Attach {
                    xds,
                    admin,
                    pid,
                    config_dir,
                },
                _ => {
                    let bin = match server_bin {
                        Some(b) => b,
                        None => std::env::current_exe()?.with_file_name("shoal"),
                    };
                    anyhow::ensure!(
                        bin.exists(),
                        "{} not found: build it (cargo build --release -p shoal) or pass --server-bin",
                        bin.display()
                    );
                    Target::Spawn {
                        bin,
                        args: server_args,
                        replicas,
                    }
                }
            };
            let opts = Options {
                scenario,
                proxies,
                kind,
                connections,
                ramp,
                mesh,
                target,
                changes,
                change_interval,
                endpoint_churn,
                timeout,
                settle,
                baseline,
                verify,
                progress: !quiet,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let results = runtime.block_on(crate::scenario::run(&opts))?;
            print!("{}", crate::report::table(&results));
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_vec_pretty(&results)?)?;
            }
            if let Some(path) = plot {
                std::fs::write(&path, crate::report::plot(&results))?;
            }
            let converged = results
                .connect
                .as_ref()
                .is_some_and(|c| c.converged == c.proxies);
            let ok = converged && results.errors.is_empty() && results.mismatches.is_empty();
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
