//! The `polis-gateway` command line. Parses arguments, loads configuration, and
//! hands over to `app`; nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use polis_gateway::accounts::{FiscalCode, NewAccount};
use polis_gateway::clock::{Clock, SystemClock};
use polis_gateway::config::{Config, LogFormat};
use polis_gateway::keygen::{CertRequest, SpSector};
use polis_gateway::oidc::keys::{SigningAlg, generate_pem};
use polis_gateway::{app, keygen};

/// mimalloc instead of glibc's allocator: an ACS allocates a few thousand small
/// objects across the async workers, the verification pool and the transaction-log
/// thread, where glibc's arenas spent about a sixth of the CPU (see ARCHITECTURE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "polis-gateway",
    version,
    about = "SPID identity-federation gateway for Istanze OnLine (POLIS)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// Configuration file(s); later ones override earlier ones, then POLIS__… environment variables.
    #[arg(long = "config", short = 'c', required = true)]
    config: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(ConfigArgs),
    /// Run the gateway together with the built-in mock SPID IdP (embedded defaults).
    Demo(ConfigArgs),
    /// Run only the mock SPID IdP.
    MockIdp(ConfigArgs),
    /// Print the signed SP metadata (`--profile spid`, the default) or the CIE one.
    Metadata(MetadataArgs),
    /// Validate the configuration and exit.
    CheckConfig(ConfigArgs),
    /// Create an SP key and self-signed certificate: SPID (Avviso 29 v3) or CIE (pki.rst).
    Keygen(KeygenArgs),
    /// Apply pending account-database migrations and exit (the gateway also does it at start).
    Migrate(ConfigArgs),
    /// Manage POLIS accounts.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// OpenID Connect signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// OpenID Connect client helpers.
    #[command(subcommand)]
    Oidc(OidcCommand),
    /// The SPID transaction log: export records, delete files past the retention.
    #[command(subcommand)]
    Txlog(TxlogCommand),
    /// Campaigns on the accounts.
    #[command(subcommand)]
    Campaign(CampaignCommand),
}

#[derive(Subcommand)]
enum CampaignCommand {
    /// Notify the accounts unused for a while and, at their deadline, revoke their
    /// enablement. Each notice goes out once, whatever the reruns (see README).
    Inactivity(InactivityArgs),
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("window").required(true).args(["inactive_since", "inactive_months"])))]
struct InactivityArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Accounts with no login on or after this date (YYYY-MM-DD, Italian time)…
    #[arg(long, requires = "deadline")]
    inactive_since: Option<chrono::NaiveDate>,
    /// …are revoked on this date (YYYY-MM-DD) unless they log in before.
    #[arg(long)]
    deadline: Option<chrono::NaiveDate>,
    /// Or: revoked this many months after the last login (today's rule: 15).
    #[arg(long, conflicts_with = "deadline")]
    inactive_months: Option<u32>,
    /// Days before the deadline on which a notice is e-mailed.
    #[arg(long, value_delimiter = ',', default_value = "90,60,30,10,1")]
    notify_days: Vec<u32>,
    /// Send nothing and change nothing: report what would be done.
    #[arg(long)]
    dry_run: bool,
    /// The campaign's name (notice records and report); default from the window.
    #[arg(long)]
    name: Option<String>,
    /// Notices per second at most.
    #[arg(long, default_value_t = 20)]
    mails_per_second: u32,
    /// Accounts per database page.
    #[arg(long, default_value_t = 1000)]
    batch_size: u32,
    /// The CSV report (default: <data_dir>/campaigns/<name>-<time>.csv).
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Subcommand)]
enum TxlogCommand {
    /// Print the records (JSON lines, oldest first) of a time range and/or one person.
    Export {
        #[command(flatten)]
        config: ConfigArgs,
        /// First UTC day, YYYY-MM-DD (inclusive).
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        /// Last UTC day, YYYY-MM-DD (inclusive).
        #[arg(long)]
        to: Option<chrono::NaiveDate>,
        /// Only the records whose Response names this codice fiscale.
        #[arg(long)]
        fiscal_code: Option<String>,
    },
    /// Delete the daily files older than `[txlog] retention_months` (the gateway also
    /// does it daily) and list them.
    Prune(ConfigArgs),
}

#[derive(clap::Args)]
struct MetadataArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// spid: the SPID metadata (/metadata); cie: the "Entra con CIE" one (/metadata/cie).
    #[arg(long, value_parser = ["spid", "cie"], default_value = "spid")]
    profile: String,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Write a new signing key (PKCS#8 PEM, mode 0600).
    Generate {
        /// EdDSA (the default signer) or ES256.
        #[arg(long, value_parser = ["EdDSA", "ES256"], default_value = "EdDSA")]
        alg: String,
        /// Where to write it (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a new signing key for `alg` and print the `[[oidc.keys]]` entries that make
    /// it current while the old key stays published until the tokens it signed expire.
    Rotate {
        #[command(flatten)]
        config: ConfigArgs,
        /// EdDSA or ES256.
        #[arg(long, value_parser = ["EdDSA", "ES256"], default_value = "EdDSA")]
        alg: String,
        /// Where to write the new key (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum OidcCommand {
    /// Print a new random client secret of 256 bits (give it to the client) and its
    /// `hmac-sha256:` hash under the server key (put it in `[[oidc.clients]]
    /// secret_hash`; the key file is `[oidc] client_secret_key_file`).
    ClientSecret {
        /// The server key file (`oidc.client_secret_key_file`, at least 32 bytes; make
        /// one with `openssl rand -base64 48`).
        #[arg(long)]
        key_file: std::path::PathBuf,
        /// Hash the secret read from standard input (at least 43 characters) instead of
        /// making one.
        #[arg(long)]
        stdin: bool,
    },
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Create an account (e.g. one registered before SPID); prints its username.
    /// A later SPID login with the same codice fiscale is linked to it.
    Create(AccountCreateArgs),
}

#[derive(clap::Args)]
struct AccountCreateArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Codice fiscale (16 characters; validated).
    #[arg(long)]
    fiscal_code: String,
    /// Nome.
    #[arg(long)]
    given_name: String,
    /// Cognome.
    #[arg(long)]
    family_name: String,
    /// E-mail address.
    #[arg(long)]
    email: Option<String>,
}

#[derive(clap::Args)]
struct KeygenArgs {
    /// spid: Avviso 29 v3 (AgID policies); cie: the CIE manual's pki.rst (no AgID
    /// policies, no personal-name attributes). Same subject either way.
    #[arg(long, value_parser = ["spid", "cie"], default_value = "spid")]
    profile: String,
    /// public or private SP.
    #[arg(long, value_parser = ["public", "private"], default_value = "public")]
    sector: String,
    /// commonName = OrganizationDisplayName.
    #[arg(long)]
    common_name: String,
    /// organizationName = OrganizationName.
    #[arg(long)]
    organization_name: String,
    /// uri = the SP entityID.
    #[arg(long)]
    entity_id: String,
    /// PA:IT-<IPA code> (public) or VATIT-<11 digits> / CF:IT-<16 chars> (private).
    #[arg(long)]
    organization_identifier: String,
    /// ISO 3166 country code.
    #[arg(long, default_value = "IT")]
    country: String,
    /// Full city name.
    #[arg(long)]
    locality: String,
    /// RSA key size: 2048, 3072 or 4096.
    #[arg(long, default_value_t = 3072)]
    key_bits: u32,
    /// Validity in days.
    #[arg(long, default_value_t = 730)]
    days: u32,
    /// Where to write the private key (PEM, mode 0600).
    #[arg(long)]
    out_key: PathBuf,
    /// Where to write the certificate (PEM).
    #[arg(long)]
    out_cert: PathBuf,
}

fn parse_alg(alg: &str) -> SigningAlg {
    if alg == "ES256" {
        SigningAlg::ES256
    } else {
        SigningAlg::EdDSA
    }
}

/// Loads the configuration and applies its log format.
fn load(args: &ConfigArgs) -> anyhow::Result<Config> {
    let cfg = Config::load(&args.config)?;
    if cfg.log_format != LogFormat::Text
        && let Some(handle) = LOG_FORMAT.get()
    {
        handle
            .reload(log_layer(cfg.log_format))
            .map_err(|e| anyhow::anyhow!("[log] format: {e}"))?;
    }
    Ok(cfg)
}

/// `polis-gateway campaign inactivity`.
async fn inactivity(args: InactivityArgs) -> anyhow::Result<()> {
    use polis_gateway::campaign::{Rule, RunOptions, Window};
    let cfg = load(&args.config)?;
    let window = match (args.inactive_since, args.deadline, args.inactive_months) {
        (Some(since), Some(deadline), None) => Window::Since { since, deadline },
        (None, None, Some(months)) => Window::Months(months),
        _ => anyhow::bail!("give --inactive-since with --deadline, or --inactive-months"),
    };
    let name = args.name.unwrap_or_else(|| match &window {
        Window::Since { since, .. } => format!("inactivity-{since}"),
        Window::Months(n) => format!("inactivity-{n}m"),
    });
    let rule = Rule::new(name, window, &args.notify_days)?;
    let options = RunOptions {
        dry_run: args.dry_run,
        batch_size: args.batch_size.max(1),
        mails_per_second: std::num::NonZeroU32::new(args.mails_per_second),
        ..RunOptions::default()
    };
    let (p, report) = app::campaign_inactivity(&cfg, &rule, &options, args.report).await?;
    let dry = if args.dry_run {
        " (dry run: nothing sent or changed)"
    } else {
        ""
    };
    println!(
        "{}: {} accounts scanned, {} notified, {} already notified, {} revoked, {} failed{dry}; report {}",
        rule.name,
        p.scanned,
        p.notified,
        p.already_notified,
        p.revoked,
        p.failed,
        report.display()
    );
    if p.failed > 0 {
        anyhow::bail!("{} accounts failed; a rerun retries them", p.failed);
    }
    Ok(())
}

/// `polis-gateway txlog export|prune`.
fn txlog_command(cmd: TxlogCommand) -> anyhow::Result<()> {
    match cmd {
        TxlogCommand::Export {
            config,
            from,
            to,
            fiscal_code,
        } => {
            let cfg = load(&config)?;
            let fiscal_code = fiscal_code
                .map(|cf| FiscalCode::parse(&cf).map(|c| c.as_str().to_owned()))
                .transpose()
                .map_err(|e| anyhow::anyhow!("--fiscal-code: {}", e.message_it()))?;
            let filter = polis_gateway::txlog::ExportFilter {
                from,
                to,
                fiscal_code,
            };
            let n = polis_gateway::txlog::export(
                &cfg.txlog_dir,
                &filter,
                &mut std::io::stdout().lock(),
            )?;
            eprintln!("{n} record(s) from {}", cfg.txlog_dir.display());
            Ok(())
        }
        TxlogCommand::Prune(c) => {
            let cfg = load(&c)?;
            let cutoff = polis_gateway::txlog::retention_cutoff(
                SystemClock.now(),
                cfg.txlog_retention_months,
            );
            let removed = polis_gateway::txlog::prune(&cfg.txlog_dir, cutoff)?;
            for path in &removed {
                println!("{}", path.display());
            }
            eprintln!(
                "{} daily file(s) before {cutoff} deleted ({} months kept)",
                removed.len(),
                cfg.txlog_retention_months
            );
            Ok(())
        }
    }
}

fn write_private(path: &PathBuf, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot create {} (it must not exist yet): {e}",
            path.display()
        )
    })?;
    f.write_all(data)?;
    Ok(())
}

fn keygen_cmd(a: KeygenArgs) -> anyhow::Result<()> {
    let req = CertRequest {
        sector: if a.sector == "private" {
            SpSector::Private
        } else {
            SpSector::Public
        },
        common_name: a.common_name,
        organization_name: a.organization_name,
        entity_id: a.entity_id,
        organization_identifier: a.organization_identifier,
        country: a.country,
        locality: a.locality,
        key_bits: a.key_bits,
        days: a.days,
    };
    let profile = if a.profile == "cie" {
        keygen::CertProfile::Cie
    } else {
        keygen::CertProfile::Spid
    };
    let generated = keygen::generate_for(&req, profile)?;
    write_private(&a.out_key, &generated.key_pem)?;
    std::fs::write(&a.out_cert, &generated.cert_pem)?;
    eprintln!("wrote {} and {}", a.out_key.display(), a.out_cert.display());
    Ok(())
}

fn metadata_cmd(m: &MetadataArgs) -> anyhow::Result<()> {
    let cfg = load(&m.config)?;
    let xml = if m.profile == "cie" {
        app::cie_metadata(&cfg)?
    } else {
        app::sp_metadata(&cfg)?
    };
    println!("{xml}");
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(c) => app::serve(load(&c)?).await,
        Command::Demo(c) => app::demo(load(&c)?).await,
        Command::MockIdp(c) => app::mock_idp(load(&c)?).await,
        Command::Metadata(m) => metadata_cmd(&m),
        Command::CheckConfig(c) => {
            let cfg = load(&c)?;
            eprintln!("configuration is valid");
            if matches!(cfg.state, polis_gateway::state::StoreSettings::Redis(_)) {
                let state = app::state_store(&cfg)?;
                match app::state_persistence_warning(state.as_ref()).await {
                    Ok(Some(warning)) => eprintln!("warning: {warning}"),
                    Ok(None) => eprintln!("Redis persistence: supported"),
                    Err(e) => eprintln!("warning: cannot check how Redis persists its data: {e}"),
                }
            }
            Ok(())
        }
        Command::Keygen(a) => keygen_cmd(a),
        Command::Migrate(c) => {
            let applied = app::migrate(&load(&c)?).await?;
            eprintln!("database is up to date ({applied} migration(s) known)");
            Ok(())
        }
        Command::Keys(KeysCommand::Generate { alg, out }) => {
            let alg = parse_alg(&alg);
            write_private(&out, &generate_pem(alg)?)?;
            eprintln!("wrote {} ({alg})", out.display());
            Ok(())
        }
        Command::Keys(KeysCommand::Rotate { config, alg, out }) => {
            let cfg = load(&config)?;
            let alg = parse_alg(&alg);
            write_private(&out, &generate_pem(alg)?)?;
            println!(
                "{}",
                app::rotation_snippet(&cfg, alg, &out, SystemClock.now())?
            );
            eprintln!(
                "wrote {}; replace the [[oidc.keys]] entries with the ones above and restart",
                out.display()
            );
            Ok(())
        }
        Command::Oidc(OidcCommand::ClientSecret { key_file, stdin }) => {
            let secret = if stdin {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                let line = line.trim().to_owned();
                // A machine secret: as long as a generated one (256 bits, base64url).
                anyhow::ensure!(
                    line.len() >= 43,
                    "a client secret needs at least 43 characters (256 random bits)"
                );
                line
            } else {
                polis_gateway::saml::ids::new_token(32)
            };
            let key = app::client_secret_key(&key_file)?;
            let hash = polis_gateway::secrets::client_secret_mac(&key, &secret)?;
            println!("client_secret = {secret}");
            println!("secret_hash = \"{hash}\"");
            Ok(())
        }
        Command::Txlog(cmd) => txlog_command(cmd),
        Command::Campaign(CampaignCommand::Inactivity(args)) => inactivity(args).await,
        Command::Accounts(AccountsCommand::Create(a)) => {
            let cfg = load(&a.config)?;
            let fiscal_code = FiscalCode::parse(&a.fiscal_code)
                .map_err(|e| anyhow::anyhow!("--fiscal-code: {}", e.message_it()))?;
            let mut new = NewAccount::new(fiscal_code, a.given_name, a.family_name);
            new.email = a.email;
            let account = app::create_account(&cfg, &new).await?;
            println!("{}", account.username);
            eprintln!("created account {} ({})", account.username, account.id);
            Ok(())
        }
    }
}

/// The application log's formatting layer, swapped once the configuration is read
/// (`[log] format`): text until then.
type LogLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

static LOG_FORMAT: std::sync::OnceLock<
    tracing_subscriber::reload::Handle<LogLayer, tracing_subscriber::Registry>,
> = std::sync::OnceLock::new();

fn log_layer(format: LogFormat) -> LogLayer {
    use tracing_subscriber::Layer;
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    }
}

/// Logging to stderr: `POLIS_LOG` filters (default `info,tower_http=warn`), text until
/// a configuration chooses otherwise.
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (layer, handle) = tracing_subscriber::reload::Layer::new(log_layer(LogFormat::Text));
    let filter = tracing_subscriber::EnvFilter::try_from_env("POLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn"));
    tracing_subscriber::registry()
        .with(layer)
        .with(filter)
        .init();
    let _ = LOG_FORMAT.set(handle);
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("polis-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("polis-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}
