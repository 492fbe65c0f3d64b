//! Wiring: turns a validated [`Config`] into running services. `main` only parses
//! the command line and calls these functions.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;

use crate::blocking::BlockingPool;
use crate::clock::{SharedClock, SystemClock};
use crate::web::server::ServerLimits;

use crate::accounts::{AccountStore, SqlAccountStore};
use crate::config::{Config, Environment, StateBackend};
use crate::enablement::cp::CpKey;
use crate::enablement::{EnablementService, EnablementSettings};
use crate::federation::{self, Federation};
use crate::keygen::SpSector;
use crate::mail::MailTransport;
use crate::mail::outbox::OutboxMailer;
use crate::mock_idp::MockIdp;
use crate::oidc::clients::ClientRegistry;
use crate::oidc::keys::KeyRing;
use crate::oidc::provider::{OidcSettings, Provider};
use crate::saml::request::Binding;
use crate::saml::sp_metadata::{
    AttributeService, Billing, Contact, Organization, SpDescriptor, SpKind, build_sp_metadata,
};
use crate::saml::xml::Limits;
use crate::saml::{Comparison, Level, SigningKey};
use crate::session::{SessionSettings, SessionStore};
use crate::sso::{SsoService, SsoSettings};
use crate::state::{MemoryStore, RedisStore, StateStore};
use crate::txlog::FileTxLog;
use crate::web::{self, AppState};

/// Loads a PEM key and certificate pair.
pub fn load_signing_key(key_file: &Path, cert_file: &Path) -> anyhow::Result<SigningKey> {
    let key = std::fs::read(key_file).with_context(|| format!("reading {}", key_file.display()))?;
    let cert =
        std::fs::read(cert_file).with_context(|| format!("reading {}", cert_file.display()))?;
    SigningKey::from_pem(&key, &cert)
        .with_context(|| format!("loading {} / {}", key_file.display(), cert_file.display()))
}

/// The SP description published in metadata, from config.
pub fn sp_descriptor(cfg: &Config) -> SpDescriptor {
    let sp = &cfg.sp;
    let kind = match sp.sector {
        SpSector::Public => SpKind::Public {
            ipa_code: sp.contact.ipa_code.clone().unwrap_or_default(),
        },
        SpSector::Private => {
            let b = sp.billing.clone();
            SpKind::Private {
                billing: Box::new(match b {
                    Some(b) => Billing {
                        email: b.email,
                        company_name: b.company_name,
                        vat_country: b.vat_country,
                        vat_number: b.vat_number,
                        fiscal_code: b.fiscal_code,
                        address: b.address,
                        street_number: b.street_number,
                        postal_code: b.postal_code,
                        municipality: b.municipality,
                        province: b.province,
                        nation: b.nation,
                    },
                    // validate() guarantees billing for private SPs; an empty block fails SPID checks visibly.
                    None => Billing {
                        email: String::new(),
                        company_name: String::new(),
                        vat_country: None,
                        vat_number: None,
                        fiscal_code: None,
                        address: String::new(),
                        street_number: None,
                        postal_code: String::new(),
                        municipality: String::new(),
                        province: None,
                        nation: String::new(),
                    },
                }),
            }
        }
    };
    SpDescriptor {
        entity_id: sp.entity_id.clone(),
        acs_url: cfg.acs_url(),
        slo_url: cfg.slo_url(),
        organization: Organization {
            name: sp.organization.name.clone(),
            display_name: sp.organization.display_name.clone(),
            url: sp.organization.url.clone(),
        },
        kind,
        contact: Contact {
            email: sp.contact.email.clone(),
            phone: sp.contact.phone.clone(),
            vat_number: sp.contact.vat_number.clone(),
            fiscal_code: sp.contact.fiscal_code.clone(),
        },
        attribute_services: sp
            .attribute_consuming_services
            .iter()
            .map(|s| AttributeService {
                index: s.index,
                name: s.name.clone(),
                attributes: s.attributes.clone(),
            })
            .collect(),
    }
}

/// Builds and signs the SP metadata.
pub fn sp_metadata(cfg: &Config) -> anyhow::Result<String> {
    let key = load_signing_key(&cfg.sp.key_file, &cfg.sp.cert_file)?;
    Ok(build_sp_metadata(&sp_descriptor(cfg), &key)?)
}

/// Opens the configured state store.
pub fn state_store(cfg: &Config) -> anyhow::Result<Arc<dyn StateStore>> {
    Ok(match cfg.state.backend {
        StateBackend::Memory => Arc::new(MemoryStore::new()),
        StateBackend::Redis => {
            let redis = cfg
                .state
                .redis
                .as_ref()
                .context("state.redis is required for the redis backend")?;
            Arc::new(RedisStore::connect(redis)?)
        }
    })
}

/// What the state store's persistence means for replay safety, as log/CLI lines:
/// `Ok(None)` when it is a supported configuration (or the memory backend).
pub async fn state_persistence_warning(
    state: &dyn StateStore,
) -> Result<Option<String>, crate::state::StateError> {
    Ok(state.persistence().await?.warning())
}

/// Logs a warning at start when Redis persists by snapshots only (or cannot be checked).
/// Runs in the background: the gateway starts while Redis is down.
pub fn spawn_persistence_check(cfg: &Config, state: Arc<dyn StateStore>) {
    if cfg.state.backend != StateBackend::Redis {
        return;
    }
    tokio::spawn(async move {
        match state_persistence_warning(state.as_ref()).await {
            Ok(Some(warning)) => tracing::warn!(target: "state", "{warning}"),
            Ok(None) => tracing::info!(target: "state", "Redis persistence: supported"),
            Err(e) => {
                tracing::warn!(target: "state", "cannot check how Redis persists its data: {e}")
            }
        }
    });
}

/// A built gateway: its router and the pieces tests and `demo` need.
pub struct Gateway {
    /// The HTTP router.
    pub router: Router,
    /// Trusted IdPs (the demo adds the mock IdP here).
    pub federation: Arc<Federation>,
    /// The signed SP metadata.
    pub metadata: Arc<String>,
    /// The account store (migrated).
    pub accounts: Arc<dyn AccountStore>,
}

/// The database URL with the password from `database.password_file`, if any.
pub fn database_url(cfg: &Config) -> anyhow::Result<String> {
    let url = cfg.database_url();
    let Some(file) = &cfg.database.password_file else {
        return Ok(url);
    };
    let password = std::fs::read_to_string(file)
        .with_context(|| format!("database.password_file {}", file.display()))?;
    let password = password
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let mut parsed = reqwest::Url::parse(&url).context("database.url is not a URL")?;
    parsed
        .set_password(Some(&password))
        .map_err(|()| anyhow::anyhow!("database.url cannot carry a password"))?;
    Ok(parsed.to_string())
}

/// Connects the account store (its timestamps from `clock`) and applies pending
/// migrations.
pub async fn account_store(
    cfg: &Config,
    clock: SharedClock,
) -> anyhow::Result<Arc<dyn AccountStore>> {
    let url = database_url(cfg)?;
    let store = SqlAccountStore::connect_and_migrate(&url, cfg.database.max_connections)
        .await
        .context("account database")?;
    Ok(Arc::new(store.with_clock(clock)))
}

/// The OpenID Connect provider from `[oidc]`.
pub fn oidc_provider(
    cfg: &Config,
    o: &crate::config::OidcConfig,
    state: Arc<dyn StateStore>,
    argon2: BlockingPool,
) -> anyhow::Result<Provider> {
    let keys = KeyRing::load(&o.keys).context("oidc.keys")?;
    let clients = ClientRegistry::from_config(&o.clients)?;
    let settings = OidcSettings {
        issuer: o
            .issuer
            .clone()
            .unwrap_or_else(|| cfg.server.public_url.clone()),
        access_ttl: Duration::from_secs(o.access_token_ttl_seconds),
        id_ttl: Duration::from_secs(o.id_token_ttl_seconds),
        refresh_ttl: Duration::from_secs(o.refresh_token_ttl_seconds),
        family_lifetime: Duration::from_secs(o.refresh_family_lifetime_seconds),
        code_ttl: Duration::from_secs(o.code_ttl_seconds),
    };
    Ok(Provider::new(settings, keys, clients, state, argon2))
}

/// The `[[oidc.keys]]` entries after a rotation: the new key current, every key
/// current today for `alg` kept with `not_after` = now + the longest signed-token
/// lifetime (plus a minute), the other entries unchanged.
pub fn rotation_snippet(
    cfg: &Config,
    alg: crate::oidc::keys::SigningAlg,
    new_file: &Path,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<String> {
    let o = cfg.oidc.as_ref().context("no [oidc] section to rotate")?;
    let longest = o.access_token_ttl_seconds.max(o.id_token_ttl_seconds) + 60;
    let retire = now + chrono::Duration::seconds(i64::try_from(longest).unwrap_or(i64::MAX / 2));
    let mut out = format!(
        "[[oidc.keys]]\nfile = \"{}\"\nalg = \"{}\"\n",
        new_file.display(),
        alg
    );
    for k in &o.keys {
        let not_after = match k.not_after {
            Some(t) => Some(t),
            None if k.alg == alg => Some(retire),
            None => None,
        };
        out.push_str(&format!(
            "\n[[oidc.keys]]\nfile = \"{}\"\nalg = \"{}\"\n",
            k.file.display(),
            k.alg
        ));
        if let Some(t) = not_after {
            out.push_str(&format!(
                "not_after = \"{}\"\n",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
    }
    Ok(out)
}

/// `polis-gateway migrate`: applies pending migrations; returns how many exist.
pub async fn migrate(cfg: &Config) -> anyhow::Result<usize> {
    account_store(cfg, SystemClock::shared()).await?;
    Ok(crate::accounts::sql::migrator().iter().count())
}

/// `polis-gateway accounts create`.
pub async fn create_account(
    cfg: &Config,
    new: &crate::accounts::NewAccount,
) -> anyhow::Result<crate::accounts::Account> {
    let store = account_store(cfg, SystemClock::shared()).await?;
    store.create(new).await.map_err(|e| match e {
        crate::accounts::AccountError::Duplicate(field) => {
            anyhow::anyhow!("an account with this {field} already exists")
        }
        other => anyhow::anyhow!(other),
    })
}

/// Reads a secret key file (at least 32 bytes once trimmed).
fn secret_file(key: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("{key}: reading {}", path.display()))?;
    let secret = raw.trim_ascii().to_vec();
    anyhow::ensure!(
        secret.len() >= 32,
        "{key}: {} holds fewer than 32 bytes (make one with `openssl rand -base64 64`)",
        path.display()
    );
    Ok(secret)
}

/// Builds the gateway from config with the given state store; connects and migrates
/// the account database and prepares the mailer.
pub async fn build_gateway(
    cfg: &Config,
    state: Arc<dyn StateStore>,
    clock: SharedClock,
) -> anyhow::Result<Gateway> {
    let accounts = account_store(cfg, clock.clone()).await?;
    let mail_cfg = cfg.mail_config();
    let mailer = crate::mail::mailer_from_config(&mail_cfg, clock.clone()).context("mail")?;
    let outbox = match (&mail_cfg.transport, cfg.environment) {
        (MailTransport::Outbox(o), Environment::Demo) => Some(Arc::new(
            OutboxMailer::new(mail_cfg.from.clone(), &o.dir)
                .context("mail outbox")?
                .with_clock(clock.clone()),
        )),
        _ => None,
    };
    let cookie_secret = secret_file("session.cookie_key_file", &cfg.session.cookie_key_file)?;
    // 64 key bytes (AES-256-GCM + HMAC halves) derived from the secret, domain-separated.
    let mut material = b"polis-gateway session cookie v1\0".to_vec();
    material.extend_from_slice(&cookie_secret);
    let cookie_key =
        axum_extra::extract::cookie::Key::try_from(openssl::sha::sha512(&material).as_slice())
            .map_err(|e| anyhow::anyhow!("session.cookie_key_file: {e}"))?;
    let cp_key = CpKey::from_bytes(&secret_file("cp.hmac_key_file", &cfg.cp.hmac_key_file)?)
        .context("cp.hmac_key_file")?;
    // One bound on argon2 work for the CP forms and client-secret checks together.
    let argon2 = BlockingPool::new("argon2", cfg.limits.argon2_pool());
    let enablement = Arc::new(EnablementService::new(
        accounts.clone(),
        state.clone(),
        mailer,
        cp_key,
        EnablementSettings {
            temp_cp_ttl: Duration::from_secs(cfg.cp.temp_cp_ttl_seconds),
            max_attempts: cfg.cp.max_attempts,
            lockout: Duration::from_secs(cfg.cp.lockout_seconds),
            max_resends_per_day: cfg.cp.max_resends_per_day,
            public_url: cfg.server.public_url.clone(),
        },
        argon2.clone(),
        clock.clone(),
    ));
    let sessions = Arc::new(SessionStore::new(
        state.clone(),
        SessionSettings {
            idle_timeout: Duration::from_secs(cfg.session.idle_timeout_seconds),
            absolute_timeout: Duration::from_secs(cfg.session.absolute_timeout_seconds),
        },
    ));
    let key = load_signing_key(&cfg.sp.key_file, &cfg.sp.cert_file)?;
    let metadata = Arc::new(build_sp_metadata(&sp_descriptor(cfg), &key)?);
    let (fed, warnings) = Federation::from_config(&cfg.federation)?;
    for w in warnings {
        tracing::error!(target: "federation", "{w}");
    }
    let federation = Arc::new(fed);
    if let Some(reg) = &cfg.federation.registry {
        match federation::load_registry_cache(&federation, reg, clock.now()) {
            Ok(n) if n > 0 => {
                tracing::info!(target: "federation", "{n} IdPs from the registry cache")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(target: "federation", "registry cache refused: {e}"),
        }
    }
    let txlog = Arc::new(FileTxLog::open(&cfg.txlog.dir)?);
    let sp = &cfg.sp;
    let settings = SsoSettings {
        entity_id: sp.entity_id.clone(),
        acs_url: cfg.acs_url(),
        slo_url: cfg.slo_url(),
        default_level: Level::from_number(sp.default_level).unwrap_or(Level::L2),
        default_binding: match sp.default_binding {
            crate::config::BindingConfig::Redirect => Binding::Redirect,
            crate::config::BindingConfig::Post => Binding::Post,
        },
        comparison: Comparison::parse(&sp.comparison).unwrap_or(Comparison::Minimum),
        attribute_index: sp.attribute_consuming_service_index,
        request_ttl: Duration::from_secs(sp.request_ttl_seconds),
        clock_skew: Duration::from_secs(sp.clock_skew_seconds),
        max_assertion_validity: Duration::from_secs(sp.max_assertion_validity_seconds),
        txlog_unverified_max_bytes: cfg.limits.txlog_unverified_max_kib * 1024,
        limits: Limits::default(),
    };
    let sso = Arc::new(SsoService::new(
        settings,
        key,
        federation.clone(),
        state.clone(),
        txlog,
        BlockingPool::new("verify", cfg.limits.verify_pool()),
    ));
    let oidc = match &cfg.oidc {
        None => None,
        Some(o) => Some(Arc::new(oidc_provider(
            cfg,
            o,
            state.clone(),
            argon2.clone(),
        )?)),
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("HTTP client")?;
    let app_state = AppState {
        sso,
        enablement,
        sessions,
        metadata: metadata.clone(),
        secure_cookies: cfg.server.public_url.starts_with("https://"),
        cookie_key,
        outbox,
        oidc,
        http,
        clock,
    };
    Ok(Gateway {
        router: web::router(
            app_state,
            web::RouterLimits {
                max_body: cfg.server.max_body_bytes,
                request_timeout: Duration::from_secs(cfg.limits.request_timeout_seconds),
                rates: Arc::new(web::ratelimit::RateLimits::new(&cfg.limits)),
            },
        ),
        federation,
        metadata,
        accounts,
    })
}

/// Spawns the periodic registry refresh, if configured.
pub fn spawn_registry_refresh(cfg: &Config, federation: Arc<Federation>) {
    let Some(reg) = cfg.federation.registry.clone() else {
        return;
    };
    tokio::spawn(async move {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(target: "federation", "HTTP client: {e}");
                return;
            }
        };
        let mut every = tokio::time::interval(Duration::from_secs(reg.refresh_hours * 3600));
        loop {
            every.tick().await;
            match federation::refresh_registry(&federation, &reg, &client).await {
                Ok(update) => tracing::info!(
                    target: "federation",
                    "registry refreshed: {} IdPs ({} added, {} removed, {} with new keys)",
                    update.idps,
                    update.added.len(),
                    update.removed.len(),
                    update.keys_changed.len()
                ),
                Err(e) => {
                    tracing::error!(target: "federation", "registry refresh failed, keeping the last good copy until its validUntil: {e}")
                }
            }
        }
    });
}

/// Binds a listener, naming the address on failure.
pub async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("bad listen address {addr}"))?;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The listener's bounds from `[limits]`.
pub fn server_limits(cfg: &Config) -> ServerLimits {
    ServerLimits {
        header_read_timeout: Duration::from_secs(cfg.limits.header_read_timeout_seconds),
        max_connections: cfg.limits.max_connections,
    }
}

/// Serves a router until SIGINT/SIGTERM.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
) -> anyhow::Result<()> {
    crate::web::server::serve(listener, router, limits, shutdown_signal())
        .await
        .context("HTTP server")
}

/// `polis-gateway serve`.
pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    let state = state_store(&cfg)?;
    spawn_persistence_check(&cfg, state.clone());
    let gateway = build_gateway(&cfg, state, SystemClock::shared()).await?;
    spawn_registry_refresh(&cfg, gateway.federation.clone());
    let listener = bind(&cfg.server.listen).await?;
    tracing::info!(
        "polis-gateway listening on {} ({})",
        cfg.server.listen,
        cfg.server.public_url
    );
    serve_router(listener, gateway.router, server_limits(&cfg)).await
}

/// Builds the mock IdP from `[mock_idp]`.
pub fn build_mock_idp(cfg: &Config, clock: SharedClock) -> anyhow::Result<Arc<MockIdp>> {
    let m = cfg
        .mock_idp
        .as_ref()
        .context("the [mock_idp] section is missing")?;
    let key = load_signing_key(&m.key_file, &m.cert_file)?;
    let idp = Arc::new(MockIdp::new(&m.public_url, key, clock)?);
    for file in &m.sp_metadata_files {
        let xml =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        idp.add_sp_metadata(&xml)
            .with_context(|| format!("SP metadata {}", file.display()))?;
    }
    Ok(idp)
}

/// `polis-gateway mock-idp`: the mock IdP alone.
pub async fn mock_idp(cfg: Config) -> anyhow::Result<()> {
    let idp = build_mock_idp(&cfg, SystemClock::shared())?;
    let m = cfg
        .mock_idp
        .as_ref()
        .context("the [mock_idp] section is missing")?;
    let listener = bind(&m.listen).await?;
    tracing::info!(
        "mock SPID IdP listening on {} ({})",
        m.listen,
        idp.entity_id()
    );
    serve_router(listener, crate::mock_idp::router(idp), server_limits(&cfg)).await
}

/// `polis-gateway demo`: gateway and mock IdP in one process, trusting each other.
pub async fn demo(cfg: Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        cfg.federation.allow_test_idps,
        "demo needs federation.allow_test_idps = true"
    );
    let clock = SystemClock::shared();
    let gateway = build_gateway(&cfg, state_store(&cfg)?, clock.clone()).await?;
    let idp = build_mock_idp(&cfg, clock)?;
    gateway
        .federation
        .add_metadata(idp.metadata(), true, "built-in mock IdP")?;
    idp.add_sp_metadata(&gateway.metadata)?;
    let m = cfg
        .mock_idp
        .as_ref()
        .context("the [mock_idp] section is missing")?;
    let gw_listener = bind(&cfg.server.listen).await?;
    let idp_listener = bind(&m.listen).await?;
    println!();
    println!("  polis-gateway demo is running.");
    println!(
        "  Open {}/login and choose \"Mock SPID IdP (test)\".",
        cfg.server.public_url
    );
    println!(
        "  E-mails (the temporary Codice Personale): {}/demo/posta",
        cfg.server.public_url
    );
    println!("  Mock IdP: {}   (Ctrl-C stops both)", m.public_url);
    println!();
    let limits = server_limits(&cfg);
    let idp_task = tokio::spawn(serve_router(
        idp_listener,
        crate::mock_idp::router(idp),
        limits,
    ));
    let gw = serve_router(gw_listener, gateway.router, limits).await;
    idp_task.abort();
    gw
}
