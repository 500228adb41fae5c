//! `ehrgate`: the gateway binary.

mod cli;
mod inputs;
mod reference;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ehrgate", version, about = "A governed gateway between EHRs, interface engines and a Delta Lake")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with adapter components.
    Adapter {
        #[command(subcommand)]
        command: AdapterCommand,
    },
    /// Map sample data through an adapter and report what came out (the main job:
    /// defaults to the reference adapter over ../shared/data/hl7).
    Run(cli::run::Args),
}

#[derive(Subcommand)]
enum AdapterCommand {
    /// Map HL7v2 files (single messages or batches) or FHIR NDJSON files through a
    /// component and print the FHIR resources as JSON, one per line.
    Test {
        /// The adapter component (.wasm), or `reference` for the built-in one.
        component: String,
        /// HL7v2 (.hl7, any other extension) or NDJSON (.ndjson) files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print what a component says about itself (describe()) as JSON.
    Describe {
        /// The adapter component (.wasm), or `reference`.
        component: String,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EHRGATE_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Adapter { command: AdapterCommand::Test { component, files } } => cli::adapter_test::run(&component, &files).await,
            Command::Adapter { command: AdapterCommand::Describe { component } } => cli::adapter_test::describe(&component).await,
            Command::Run(args) => cli::run::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
