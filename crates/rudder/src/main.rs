//! `rudder`: one binary for the whole system. Subcommands are added as their components
//! land (see ARCHITECTURE.md); today only `version` exists.

use clap::{Parser, Subcommand};

/// The Kubernetes version rudder's API reports and follows.
const KUBERNETES_VERSION: &str = "v1.33.0";

#[derive(Parser)]
#[command(
    name = "rudder",
    version,
    about = "A Kubernetes-compatible container orchestrator in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print rudder's version and the Kubernetes API version it implements.
    Version,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Version => {
            println!("rudder {} (Kubernetes {KUBERNETES_VERSION})", env!("CARGO_PKG_VERSION"));
        }
    }
    Ok(())
}
