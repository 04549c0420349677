//! The `sluice` binary: a clustered API gateway node.
//!
//! This crate owns the process's edges: the CLI, the HTTP listeners, the request
//! lifecycle (`proxy.rs`, read it top to bottom; its server-independent decisions
//! are in `phases.rs`, the rate-limit step's in `limits.rs`, the client address
//! behind trusted proxies in `forwarded.rs`), the data plane's view of the
//! replicated state
//! (`dataplane.rs`, kept current by `cluster.rs`), the admin API (`admin/`, a
//! module per area), the generation of the cluster's signing keys (`signing.rs`),
//! the built-in endpoints and signal handling. The config model
//! lives in `cluster-config`, the replicated state in `sluice-raft`, per-upstream
//! state in `sluice-actors`.
//!
//! It must never put Raft, disk or another node on the request path: requests
//! read one `ArcSwap` and atomics, and report to actors without waiting.
#![forbid(unsafe_code)]

mod admin;
mod auth;
mod body;
mod cli;
mod cluster;
mod dataplane;
mod echo;
mod endpoints;
mod errors;
mod forwarded;
mod headers;
mod limits;
mod listener;
mod load;
mod path;
mod phases;
mod proxy;
mod server;
mod signing;
mod telemetry;
mod tls;
mod upstream_client;
mod upstream_h1;
mod webhooks;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc malloc: the proxy allocates and frees many small
/// buffers per request across threads, where glibc's allocator showed up at ~15%
/// of user-space time in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "sluice", version, about = "Sluice: a clustered API gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a node.
    Run {
        /// Config directory: every *.yaml in it is merged.
        #[arg(long, short, default_value = "./config")]
        config: PathBuf,
    },
    /// Check a config directory, print every error, exit 1 on any.
    Validate {
        #[arg(long, short, default_value = "./config")]
        config: PathBuf,
    },
    /// Push the gateway part of a config directory to the cluster (like `deck sync`).
    Apply {
        #[arg(long, short, default_value = "./config")]
        config: PathBuf,
        /// Any node's admin address, e.g. http://127.0.0.1:9080
        #[arg(long, env = "SLUICE_ADMIN_URL")]
        admin: String,
        #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true)]
        token: String,
    },
    /// Cluster commands.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// A tiny demo/test upstream (JSON echo, /delay/{ms}, /status/{code}, /bytes/{n})
    /// and webhook receiver (POST /sink/... records the webhook-id; GET /sink lists them).
    EchoServer {
        #[arg(long, default_value = "127.0.0.1:9001")]
        listen: String,
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN) with this PEM certificate
        /// chain (needs --tls-key).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// A traffic generator that resolves the target's host name on every new
    /// connection, spreads requests over the addresses, retries a refused
    /// connection on the next one, and reports counts per node and per status.
    Load {
        /// e.g. http://gateway:8080/api/hello (plain HTTP/1.1)
        #[arg(long)]
        target: String,
        /// How long to send: 500ms, 10s, 2m.
        #[arg(long, default_value = "10s", value_parser = load::parse_duration)]
        duration: std::time::Duration,
        /// Connections in flight (one thread each).
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Requests per second over all connections; 0 = unlimited.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// Connect and read timeout per request.
        #[arg(long, default_value = "2s", value_parser = load::parse_duration)]
        timeout: std::time::Duration,
        /// Extra request header, `Name: value` (repeatable).
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
        /// Report format.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        report: String,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Leader, term, members and each node's applied index.
    Status {
        #[arg(long, env = "SLUICE_ADMIN_URL")]
        admin: String,
        #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true)]
        token: String,
    },
}

fn report(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => {
            let loaded = match cluster_config::load_dir(&config) {
                Ok(l) => l,
                Err(errors) => {
                    eprintln!("sluice: invalid config in {}:", config.display());
                    for e in &errors.0 {
                        eprintln!("  {e}");
                    }
                    return ExitCode::from(2);
                }
            };
            telemetry::init_logging(loaded.node.log_format, &loaded.node.log_level);
            match server::run(loaded) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "sluice failed");
                    eprintln!("sluice: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Validate { config } => match cluster_config::load_dir(&config) {
            Ok(l) => {
                println!(
                    "{}: ok ({} services, {} routes)",
                    config.display(),
                    l.gateway.services.len(),
                    l.gateway.routes.routes().len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for e in &errors.0 {
                    println!("{e}");
                }
                println!("{} error(s)", errors.0.len());
                ExitCode::FAILURE
            }
        },
        Command::Apply {
            config,
            admin,
            token,
        } => report(cli::apply(&config, &admin, &token)),
        Command::Cluster {
            command: ClusterCommand::Status { admin, token },
        } => report(cli::status(&admin, &token)),
        Command::Load {
            target,
            duration,
            concurrency,
            rate,
            timeout,
            headers,
            report: format,
        } => report(load::run(load::Options {
            target,
            duration,
            concurrency,
            rate,
            timeout,
            headers,
            json: format == "json",
        })),
        Command::EchoServer {
            listen,
            workers,
            tls_cert,
            tls_key,
        } => {
            telemetry::init_logging(cluster_config::LogFormat::Pretty, "warn");
            let tls = tls_cert.zip(tls_key).map(|(cert_file, key_file)| {
                tls::server_config(
                    &cluster_config::TlsFiles {
                        cert_file,
                        key_file,
                    },
                    None,
                )
            });
            match tls
                .transpose()
                .and_then(|tls| echo::run(&listen, workers, tls))
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("echo-server: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
