//! Wiring: turns a validated [`Config`] into running services. `main` only parses
//! the command line and calls these functions.

mod campaign;
mod jobs;

pub use campaign::campaign_inactivity;
pub use jobs::{
    spawn_dependency_probe, spawn_jobs, spawn_metadata_refresh, spawn_persistence_check,
};

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
use crate::config::{Config, DatabaseUrl, Environment, OidcSection};
use crate::enablement::EnablementService;
use crate::enablement::cp::CpKey;
use crate::enablement::terms::{self, Terms, Text};
use crate::federation::expiry::CertExpiry;
use crate::federation::{self, Federation, TrustAs};
use crate::flows::login::LoginFlow;
use crate::flows::logout::LogoutFlow;
use crate::mail::MailTransport;
use crate::mail::outbox::OutboxMailer;
use crate::mock_idp::{MockFederation, MockIdp};
use crate::oidc::clients::ClientRegistry;
use crate::oidc::keys::KeyRing;
use crate::oidc::provider::Provider;
use crate::saml::SigningKey;
use crate::saml::cie_metadata::build_cie_metadata;
use crate::saml::sp_metadata::build_sp_metadata;
use crate::session::SessionStore;
use crate::sso::{SpIdentity, SsoPorts, SsoService};
use crate::state::{MemoryStore, RedisStore, StateStore, StoreSettings};
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

/// Builds and signs the SP metadata.
pub fn sp_metadata(cfg: &Config) -> anyhow::Result<String> {
    let key = load_signing_key(&cfg.sp.key_file, &cfg.sp.cert_file)?;
    Ok(build_sp_metadata(&cfg.sp.metadata, &key)?)
}

/// The "Entra con CIE" SP identity (the entityID CIE AuthnRequests are issued under,
/// the key that signs them and `/metadata/cie`: the `[sp]` ones unless `[cie]` sets
/// its own) and its signed metadata; `None` unless `[cie]` is enabled.
pub fn cie_identity(cfg: &Config) -> anyhow::Result<Option<(SpIdentity, String)>> {
    let Some(cie) = &cfg.cie else {
        return Ok(None);
    };
    let key = load_signing_key(&cie.key_file, &cie.cert_file).context("[cie] key")?;
    // The federation portal refuses a certificate pki.rst forbids: fatal in production,
    // a warning elsewhere (the demo certificate is not a seal).
    if let Err(e) = crate::keygen::check_cie_certificate(key.certificate()) {
        anyhow::ensure!(
            cfg.environment != Environment::Production,
            "[cie] certificate {}: {e}",
            cie.cert_file.display()
        );
        tracing::warn!(target: "cie", "[cie] certificate {}: {e}", cie.cert_file.display());
    }
    let metadata = build_cie_metadata(&cie.metadata, &key)?;
    let identity = SpIdentity {
        entity_id: cie.metadata.entity_id.clone(),
        key,
    };
    Ok(Some((identity, metadata)))
}

/// Builds and signs the CIE SP metadata (`polis-gateway metadata --profile cie`).
pub fn cie_metadata(cfg: &Config) -> anyhow::Result<String> {
    cie_identity(cfg)?
        .map(|(_, md)| md)
        .context("the CIE metadata needs [cie] enabled = true")
}

/// Opens the configured state store.
pub fn state_store(cfg: &Config) -> anyhow::Result<Arc<dyn StateStore>> {
    Ok(match &cfg.state {
        StoreSettings::Memory {
            max_pending_requests,
        } => Arc::new(MemoryStore::with_max_pending(*max_pending_requests)),
        StoreSettings::Redis(redis) => Arc::new(RedisStore::connect(redis)?),
    })
}

/// What the state store's persistence means for replay safety, as log/CLI lines:
/// `Ok(None)` when it is a supported configuration (or the memory backend).
pub async fn state_persistence_warning(
    state: &dyn StateStore,
) -> Result<Option<String>, crate::state::StateError> {
    Ok(state.persistence().await?.warning())
}

/// A built gateway: its router and the pieces tests and `demo` need.
pub struct Gateway {
    /// The HTTP router.
    pub router: Router,
    /// Trusted IdPs (the demo adds the mock IdP here).
    pub federation: Arc<Federation>,
    /// The signed SP metadata.
    pub metadata: Arc<String>,
    /// The signed CIE SP metadata, when `[cie]` is enabled.
    pub cie_metadata: Option<Arc<String>>,
    /// The account store (migrated).
    pub accounts: Arc<dyn AccountStore>,
    /// `GET /metrics` (Prometheus), to serve on `[metrics] listen`; `None` without it.
    pub metrics: Option<Router>,
    /// Inactivity campaigns on this gateway's database, state store and mailer.
    pub campaign: Arc<crate::campaign::Campaign>,
    /// The abilitazione service (revocations by the help desk and the campaigns).
    pub enablement: Arc<EnablementService>,
    /// The mail transport (timed by `MeteredMailer`), checked by the dependency probe.
    pub mailer: Arc<dyn crate::mail::Mailer>,
}

/// The database URL with the password from `database.password_file`, if any.
pub fn database_url(cfg: &Config) -> anyhow::Result<String> {
    let (url, file) = match &cfg.database.url {
        DatabaseUrl::Plain(url) => return Ok(url.clone()),
        DatabaseUrl::WithPasswordFile { url, password_file } => (url, password_file),
    };
    let password = std::fs::read_to_string(file)
        .with_context(|| format!("database.password_file {}", file.display()))?;
    let password = password.lines().next().unwrap_or_default().trim();
    let mut url = url.clone();
    url.set_password(Some(password))
        .map_err(|()| anyhow::anyhow!("database.url cannot carry a password"))?;
    Ok(url.to_string())
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
    o: &OidcSection,
    state: Arc<dyn StateStore>,
    argon2: BlockingPool,
    clock: SharedClock,
) -> anyhow::Result<Provider> {
    let keys = KeyRing::load(&o.keys).context("oidc.keys")?;
    let secret_key = o
        .client_secret_key_file
        .as_deref()
        .map(client_secret_key)
        .transpose()?;
    let clients = ClientRegistry::from_config(&o.clients, secret_key)?;
    Ok(Provider::new(
        o.settings.clone(),
        keys,
        clients,
        state,
        argon2,
        clock,
    ))
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
    let longest = o.settings.access_ttl.max(o.settings.id_ttl) + Duration::from_secs(60);
    let retire = now + chrono::Duration::from_std(longest).context("oidc token lifetimes")?;
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

/// The server key of the client-secret MACs, from its file (at least 32 bytes).
pub fn client_secret_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    secret_file("oidc.client_secret_key_file", path)
}

/// The conditions of use and the privacy notice: the `[terms]` files, or the built-in
/// demo texts (config validation refuses that in production).
fn load_terms(cfg: &Config) -> anyhow::Result<Terms> {
    let Some(section) = &cfg.terms else {
        return Ok(Terms::demo());
    };
    let read = |key: &str, path: &Path| -> anyhow::Result<Text> {
        let bytes =
            std::fs::read(path).with_context(|| format!("{key}: reading {}", path.display()))?;
        anyhow::ensure!(
            bytes.len() <= terms::MAX_TEXT_BYTES,
            "{key}: {} is longer than {} bytes",
            path.display(),
            terms::MAX_TEXT_BYTES
        );
        let source = String::from_utf8(bytes)
            .with_context(|| format!("{key}: {} is not UTF-8", path.display()))?;
        Text::parse(&source).with_context(|| format!("{key}: {}", path.display()))
    };
    Ok(Terms {
        version: section.version.clone(),
        conditions: read("terms.conditions_file", &section.conditions_file)?,
        privacy: read("terms.privacy_file", &section.privacy_file)?,
        demo: false,
    })
}

/// Builds the gateway from config with the given state store; connects and migrates
/// the account database and prepares the mailer.
pub async fn build_gateway(
    cfg: &Config,
    state: Arc<dyn StateStore>,
    clock: SharedClock,
) -> anyhow::Result<Gateway> {
    let accounts = account_store(cfg, clock.clone()).await?;
    let (mailer, outbox) = mailers(cfg, &clock)?;
    let cookie_key = session_cookie_key(cfg)?;
    // One bound on argon2 work for the CP forms and client-secret checks together.
    let argon2 = BlockingPool::new("argon2", cfg.limits.argon2_pool);
    let (enablement, campaign, helpdesk) =
        enablement_service(cfg, &accounts, &state, mailer.clone(), &argon2, &clock)?;
    let sessions = Arc::new(SessionStore::new(state.clone(), cfg.session.settings));
    let key = load_signing_key(&cfg.sp.key_file, &cfg.sp.cert_file)?;
    let metadata = Arc::new(build_sp_metadata(&cfg.sp.metadata, &key)?);
    let (cie, cie_metadata) = match cie_identity(cfg)? {
        Some((identity, md)) => (Some(identity), Some(Arc::new(md))),
        None => (None, None),
    };
    let federation = federation(cfg, &clock)?;
    let (verify, admission, txlog, metrics) =
        verification(cfg, (&accounts, &state), (&federation, &argon2), &clock)?;
    let mut sso = sso_service(cfg, key, &federation, &state, (verify, txlog), &clock)?;
    if let Some(cie) = cie {
        sso = sso.with_cie_identity(cie);
    }
    let sso = Arc::new(sso);
    let oidc = match &cfg.oidc {
        None => None,
        Some(o) => Some(Arc::new(oidc_provider(
            o,
            state.clone(),
            argon2.clone(),
            clock.clone(),
        )?)),
    };
    let (login, logout) = flows(&sso, &enablement, &sessions, oidc.as_ref(), &clock)?;
    let app_state = AppState {
        sso,
        enablement,
        helpdesk,
        sessions,
        login,
        logout,
        metadata: metadata.clone(),
        cie_metadata: cie_metadata.clone(),
        secure_cookies: cfg.server.https,
        cookie_key,
        outbox,
        oidc,
        admission,
        clock,
    };
    let enablement = app_state.enablement.clone();
    Ok(Gateway {
        router: web::router(
            app_state,
            web::RouterLimits {
                max_body: cfg.server.max_body_bytes,
                request_timeout: cfg.limits.request_timeout,
                rates: Arc::new(web::ratelimit::RateLimits::new(&cfg.limits.rates)),
            },
        ),
        federation,
        metadata,
        cie_metadata,
        accounts,
        metrics,
        campaign,
        enablement,
        mailer,
    })
}

/// The abilitazione service, and the inactivity campaigns and the help desk that act
/// through it.
fn enablement_service(
    cfg: &Config,
    accounts: &Arc<dyn AccountStore>,
    state: &Arc<dyn StateStore>,
    mailer: Arc<dyn crate::mail::Mailer>,
    argon2: &BlockingPool,
    clock: &SharedClock,
) -> anyhow::Result<(
    Arc<EnablementService>,
    Arc<crate::campaign::Campaign>,
    Arc<crate::helpdesk::HelpdeskService>,
)> {
    let cp_key = CpKey::from_bytes(&secret_file("cp.hmac_key_file", &cfg.cp.hmac_key_file)?)
        .context("cp.hmac_key_file")?;
    let enablement = Arc::new(
        EnablementService::new(
            accounts.clone(),
            state.clone(),
            mailer.clone(),
            cp_key,
            cfg.cp.settings.clone(),
            argon2.clone(),
            clock.clone(),
        )
        .with_terms(load_terms(cfg)?),
    );
    let campaign = Arc::new(crate::campaign::Campaign::new(
        accounts.clone(),
        enablement.clone(),
        mailer,
        cfg.server.public_url.clone(),
        clock.clone(),
    ));
    let helpdesk = Arc::new(crate::helpdesk::HelpdeskService::new(
        cfg.helpdesk.clone(),
        enablement.clone(),
        accounts.clone(),
        Arc::new(crate::helpdesk::TxLogHistory::new(cfg.txlog_dir.clone())),
        clock.clone(),
    ));
    Ok((enablement, campaign, helpdesk))
}

/// The outbox the demo's mail page reads.
type DemoOutbox = Arc<OutboxMailer>;

/// The mailer, and in the demo environment with the outbox transport the outbox the
/// demo's mail page reads.
fn mailers(
    cfg: &Config,
    clock: &SharedClock,
) -> anyhow::Result<(Arc<dyn crate::mail::Mailer>, Option<DemoOutbox>)> {
    let mail_cfg = &cfg.mail;
    let mailer: Arc<dyn crate::mail::Mailer> = Arc::new(crate::mail::MeteredMailer(
        crate::mail::mailer_from_config(mail_cfg, clock.clone()).context("mail")?,
    ));
    let outbox = match (&mail_cfg.transport, cfg.environment) {
        (MailTransport::Outbox(o), Environment::Demo) => Some(Arc::new(
            OutboxMailer::new(mail_cfg.from.clone(), &o.dir)
                .context("mail outbox")?
                .with_clock(clock.clone()),
        )),
        _ => None,
    };
    Ok((mailer, outbox))
}

/// The key that encrypts and authenticates the session cookie: 64 bytes (AES-256-GCM +
/// HMAC halves) derived from `session.cookie_key_file`, domain-separated.
fn session_cookie_key(cfg: &Config) -> anyhow::Result<axum_extra::extract::cookie::Key> {
    let cookie_secret = secret_file("session.cookie_key_file", &cfg.session.cookie_key_file)?;
    let mut material = b"polis-gateway session cookie v1\0".to_vec();
    material.extend_from_slice(&cookie_secret);
    axum_extra::extract::cookie::Key::try_from(openssl::sha::sha512(&material).as_slice())
        .map_err(|e| anyhow::anyhow!("session.cookie_key_file: {e}"))
}

/// The trusted IdPs from `[federation]`, with the registry's last good copy if any.
fn federation(cfg: &Config, clock: &SharedClock) -> anyhow::Result<Arc<Federation>> {
    let (fed, warnings) = Federation::from_settings(&cfg.federation, clock.clone())?;
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
    for src in &cfg.federation.remote {
        match federation::load_remote_cache(&federation, src, clock.now()) {
            Ok(n) if n > 0 => {
                tracing::info!(target: "federation", "{n} IdPs from the cache of {}", src.url)
            }
            Ok(_) => {}
            Err(e) => tracing::error!(target: "federation", "cache of {} refused: {e}", src.url),
        }
    }
    Ok(federation)
}

/// The verification pool, the admission control over it, the transaction log, `/metrics`.
type Verification = (
    BlockingPool,
    Arc<crate::admission::Admission>,
    Arc<FileTxLog>,
    Option<Router>,
);

fn verification(
    cfg: &Config,
    (accounts, state): (&Arc<dyn AccountStore>, &Arc<dyn StateStore>),
    (federation, argon2): (&Arc<Federation>, &BlockingPool),
    clock: &SharedClock,
) -> anyhow::Result<Verification> {
    let verify = BlockingPool::new("verify", cfg.limits.verify_pool);
    let admission = Arc::new(crate::admission::Admission::new(
        cfg.limits.admission,
        verify.clone(),
        accounts.clone(),
    ));
    let txlog = Arc::new(FileTxLog::open(&cfg.txlog_dir)?);
    let metrics = metrics_router(
        cfg,
        (&admission, state),
        &txlog,
        (federation, argon2),
        clock,
    );
    Ok((verify, admission, txlog, metrics))
}

/// The `/metrics` router, when `[metrics]` sets a listener (and the process's recorder
/// could be installed).
fn metrics_router(
    cfg: &Config,
    (admission, state): (&Arc<crate::admission::Admission>, &Arc<dyn StateStore>),
    txlog: &Arc<FileTxLog>,
    (federation, argon2): (&Arc<Federation>, &BlockingPool),
    clock: &SharedClock,
) -> Option<Router> {
    cfg.metrics_listen?;
    let metrics = crate::telemetry::Metrics::new()?
        .with_sampler(crate::telemetry::admission_sampler(admission.clone()))
        .with_sampler(crate::telemetry::pending_sampler(state.clone()))
        .with_sampler(crate::telemetry::txlog_sampler(txlog.clone()))
        .with_sampler(crate::telemetry::argon2_sampler(argon2.clone()))
        .with_sampler(crate::telemetry::certificate_sampler(
            configured_certificates(cfg),
            federation.clone(),
            clock.clone(),
        ));
    Some(web::metrics_router(Arc::new(metrics)))
}

/// The certificates the configuration names (ours, the registry's), with their expiry.
pub fn configured_certificates(cfg: &Config) -> Vec<CertExpiry> {
    federation::expiry::from_pem_files(&cfg.certificate_files())
}

/// The SSO service: its settings, the SP key, the federation, the state store, the
/// transaction log and the bounded verification pool.
fn sso_service(
    cfg: &Config,
    key: SigningKey,
    federation: &Arc<Federation>,
    state: &Arc<dyn StateStore>,
    (verify, txlog): (BlockingPool, Arc<FileTxLog>),
    clock: &SharedClock,
) -> anyhow::Result<SsoService> {
    Ok(SsoService::new(
        cfg.sp.sso.clone(),
        key,
        SsoPorts {
            federation: federation.clone(),
            state: state.clone(),
            txlog,
            pool: verify,
            clock: clock.clone(),
        },
    ))
}

/// The use cases that span services: the login and the logout flows.
fn flows(
    sso: &Arc<SsoService>,
    enablement: &Arc<EnablementService>,
    sessions: &Arc<SessionStore>,
    oidc: Option<&Arc<Provider>>,
    clock: &SharedClock,
) -> anyhow::Result<(Arc<LoginFlow>, Arc<LogoutFlow>)> {
    let logout = Arc::new(
        LogoutFlow::new(sso.clone(), sessions.clone(), oidc.cloned(), clock.clone())
            .context("back-channel logout HTTP client")?,
    );
    let login = Arc::new(LoginFlow::new(
        sso.clone(),
        enablement.clone(),
        sessions.clone(),
        logout.clone(),
        clock.clone(),
    ));
    Ok((login, logout))
}

/// Binds a listener, naming the address on failure.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
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
    cfg.limits.server
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
    let gateway = build_gateway(&cfg, state.clone(), SystemClock::shared()).await?;
    spawn_metadata_refresh(&cfg, gateway.federation.clone());
    spawn_jobs(&cfg, &gateway, state);
    let listener = bind(cfg.server.listen).await?;
    tracing::info!(
        "polis-gateway listening on {} ({})",
        cfg.server.listen,
        cfg.server.public_url
    );
    if let (Some(addr), Some(router)) = (cfg.metrics_listen, gateway.metrics) {
        let metrics_listener = bind(addr).await?;
        tracing::info!("metrics on http://{addr}/metrics");
        let limits = server_limits(&cfg);
        tokio::spawn(async move {
            if let Err(e) = serve_router(metrics_listener, router, limits).await {
                tracing::error!("metrics listener: {e:#}");
            }
        });
    }
    serve_router(listener, gateway.router, server_limits(&cfg)).await
}

/// Builds the mock IdP (the SPID one) from `[mock_idp]`.
pub fn build_mock_idp(cfg: &Config, clock: SharedClock) -> anyhow::Result<Arc<MockIdp>> {
    Ok(build_mock_federation(cfg, clock)?.spid)
}

/// Builds the three mock IdPs (SPID, CIE under `/cie`, FICEP under `/ficep`) from
/// `[mock_idp]`, trusting its SP metadata files (a CIE SP metadata, one with the `cie:`
/// namespace, goes to the CIE IdP only).
pub fn build_mock_federation(cfg: &Config, clock: SharedClock) -> anyhow::Result<MockFederation> {
    let m = cfg
        .mock_idp
        .as_ref()
        .context("the [mock_idp] section is missing")?;
    let key = load_signing_key(&m.key_file, &m.cert_file)?;
    let mocks = MockFederation::new(&m.public_url, key, clock)?;
    for file in &m.sp_metadata_files {
        let xml =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let added = if xml.contains(crate::saml::cie_metadata::NS_CIE) {
            mocks.cie.add_sp_metadata(&xml).map(|_| ())
        } else {
            mocks.add_sp(&xml, None)
        };
        added.with_context(|| format!("SP metadata {}", file.display()))?;
    }
    Ok(mocks)
}

/// `polis-gateway mock-idp`: the mock IdPs alone.
pub async fn mock_idp(cfg: Config) -> anyhow::Result<()> {
    let mocks = build_mock_federation(&cfg, SystemClock::shared())?;
    let m = cfg
        .mock_idp
        .as_ref()
        .context("the [mock_idp] section is missing")?;
    let listener = bind(m.listen).await?;
    for idp in mocks.all() {
        tracing::info!(
            "mock {} IdP listening on {} ({})",
            idp.profile().as_str(),
            m.listen,
            idp.entity_id()
        );
    }
    let router = crate::mock_idp::federation_router(&mocks);
    serve_router(listener, router, server_limits(&cfg)).await
}

/// Trusts the mock IdPs, each with its profile, as test IdPs: all three, the FICEP one
/// only when the SPID metadata has the eIDAS attribute sets (`[sp.eidas]`).
pub fn trust_mock_federation(
    cfg: &Config,
    federation: &Federation,
    mocks: &MockFederation,
) -> anyhow::Result<()> {
    let eidas = cfg
        .sp
        .metadata
        .attribute_services
        .iter()
        .any(|s| s.index == federation::FICEP_MINIMUM_SET);
    for idp in mocks.all() {
        if idp.profile() == crate::saml::IdpProfile::Ficep && !eidas {
            tracing::info!("mock FICEP node not trusted: [sp.eidas] is not enabled");
            continue;
        }
        let trust = TrustAs {
            profile: idp.profile(),
            attribute_index: None,
            test: true,
        };
        let source = format!("built-in mock {} IdP", idp.profile().as_str());
        federation.add_trusted(idp.metadata(), trust, &source)?;
    }
    Ok(())
}

/// `polis-gateway demo`: gateway and mock IdP in one process, trusting each other.
pub async fn demo(cfg: Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        cfg.federation.allow_test_idps,
        "demo needs federation.allow_test_idps = true"
    );
    let clock = SystemClock::shared();
    let state = state_store(&cfg)?;
    let gateway = build_gateway(&cfg, state.clone(), clock.clone()).await?;
    spawn_jobs(&cfg, &gateway, state);
    let mocks = build_mock_federation(&cfg, clock)?;
    trust_mock_federation(&cfg, &gateway.federation, &mocks)?;
    mocks.add_sp(
        &gateway.metadata,
        gateway.cie_metadata.as_deref().map(String::as_str),
    )?;
    let m = cfg
        .mock_idp
        .as_ref()
        .context("the [mock_idp] section is missing")?;
    let gw_listener = bind(cfg.server.listen).await?;
    let idp_listener = bind(m.listen).await?;
    println!();
    println!("  polis-gateway demo is running.");
    println!(
        "  Open {}/login: \"Mock SPID IdP (test)\" under «Entra con SPID», the mock CIE \
         and eIDAS IdPs under «Entra con CIE» and «Login with eIDAS».",
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
        crate::mock_idp::federation_router(&mocks),
        limits,
    ));
    let gw = serve_router(gw_listener, gateway.router, limits).await;
    idp_task.abort();
    gw
}
