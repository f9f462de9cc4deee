//! `shoal`: parses the command line and runs the subcommand.

use std::process::ExitCode;

use shoal::cli::{self, Command};

// jemalloc returns freed memory to the system and fragments less than the system allocator
// under many concurrent connections, so the server's RSS tracks what it really holds.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let parsed = match cli::parse_from(std::env::args_os()) {
        Ok(p) => p,
        Err(e) => e.exit(),
    };
    shoal::logging::init();
    let result = match parsed.command {
        Command::Serve(args) => shoal::config::Config::resolve(&args, &parsed.explicit)
            .and_then(shoal::app::run)
            .map(|()| ExitCode::SUCCESS),
        Command::Validate(args) => shoal::validate::run(&args),
        Command::Status(args) => shoal::status::run(&args),
        Command::Router(args) => shoal::cluster::run_router(args).map(|()| ExitCode::SUCCESS),
        Command::Ca(args) => shoal::identity::ca_step(&args).map(|()| ExitCode::SUCCESS),
        Command::Crds => {
            print!("{}", shoal_config::crds::crds_yaml());
            Ok(ExitCode::SUCCESS)
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("shoal: {e:#}");
        ExitCode::from(2)
    })
}
