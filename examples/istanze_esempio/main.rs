//! `istanze-esempio`: the example downstream Istanze service (see `app.rs`).
//!
//! ```sh
//! ISTANZE_ESEMPIO_CLIENT_SECRET=demo-esempio-secret-NON-USARE \
//!   cargo run --example istanze-esempio -- --gateway http://localhost:8080
//! ```
//!
//! The client secret comes from `--client-secret-file` or the environment variable
//! `ISTANZE_ESEMPIO_CLIENT_SECRET`, never from the command line.

mod app;

use std::path::PathBuf;

use clap::Parser;

/// The environment variable with the client secret.
const SECRET_ENV: &str = "ISTANZE_ESEMPIO_CLIENT_SECRET";

/// Example downstream service of the polis-gateway OpenID Connect provider.
#[derive(Debug, Parser)]
#[command(name = "istanze-esempio")]
struct Cli {
    /// The gateway's issuer URL (discovery at <URL>/.well-known/openid-configuration).
    #[arg(long, value_name = "URL", default_value = "http://localhost:8080")]
    gateway: String,
    /// Socket to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
    listen: String,
    /// This service's base URL as browsers see it (redirect URI <URL>/callback).
    #[arg(long, value_name = "URL", default_value = "http://localhost:8081")]
    public_url: String,
    /// The client_id registered at the gateway.
    #[arg(long, default_value = "istanze-esempio")]
    client_id: String,
    /// A file holding the client secret (else $ISTANZE_ESEMPIO_CLIENT_SECRET).
    #[arg(long, value_name = "PATH")]
    client_secret_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let client_secret = match &cli.client_secret_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--client-secret-file {}: {e}", path.display()))?
            .trim()
            .to_owned(),
        None => std::env::var(SECRET_ENV).map_err(|_| {
            anyhow::anyhow!("give the client secret with --client-secret-file or ${SECRET_ENV}")
        })?,
    };
    if client_secret.is_empty() {
        anyhow::bail!("the client secret is empty");
    }
    let router = app::router(app::ExampleConfig {
        gateway: cli.gateway.clone(),
        public_url: cli.public_url.clone(),
        client_id: cli.client_id,
        client_secret,
    })
    .await;
    let listener = tokio::net::TcpListener::bind(&cli.listen)
        .await
        .map_err(|e| anyhow::anyhow!("--listen {}: {e}", cli.listen))?;
    tracing::info!(gateway = %cli.gateway, listen = %cli.listen, "istanze-esempio started");
    println!(
        "Istanze di esempio (servizio downstream OIDC): {}/",
        cli.public_url.trim_end_matches('/')
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
