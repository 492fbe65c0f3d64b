//! Typed, layered configuration.
//!
//! Layers, later wins: built-in defaults → each `--config` TOML file in order →
//! environment variables `POLIS__SECTION__KEY=value` (double underscore between
//! levels). Unknown keys are rejected at every level, and [`Config::validate`]
//! checks the values, naming the key and the reason. Nothing here is global:
//! `main` loads a `Config` and hands it down.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::keygen::SpSector;
use crate::state::RedisConfig;

/// Errors while loading or validating configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read or a value could not be parsed; the message names the key.
    #[error("configuration: {0}")]
    Load(String),
    /// A value is present but not acceptable.
    #[error("configuration key `{key}`: {reason}")]
    Invalid {
        /// Dotted path of the key, e.g. `sp.entity_id`.
        key: String,
        /// Why the value is refused.
        reason: String,
    },
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// Where the gateway runs. `production` forbids test identity providers and demo material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    /// `make demo`: mock IdP, demo keys, in-memory state.
    Demo,
    /// Automated tests and conformance runs.
    Test,
    /// The real federation.
    Production,
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Deployment kind; see [`Environment`].
    pub environment: Environment,
    /// HTTP listener and public address.
    pub server: ServerConfig,
    /// The service provider as published in its metadata.
    pub sp: SpConfig,
    /// Trusted identity providers.
    #[serde(default)]
    pub federation: FederationConfig,
    /// Request-state backend.
    #[serde(default)]
    pub state: StateConfig,
    /// SPID transaction log.
    #[serde(default)]
    pub txlog: TxLogConfig,
    /// The built-in mock IdP (`polis-gateway demo` / `mock-idp`).
    #[serde(default)]
    pub mock_idp: Option<MockIdpConfig>,
    /// Directory of the embedded defaults: the SQLite file and the mail outbox.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The account database.
    #[serde(default)]
    pub database: DatabaseConfig,
    /// Browser sessions.
    pub session: SessionConfig,
    /// Codice Personale: temporary CP, attempts and lockouts.
    pub cp: CpConfig,
    /// Outgoing e-mail; the outbox under `data_dir` when absent.
    #[serde(default)]
    pub mail: Option<crate::mail::MailConfig>,
    /// The OpenID Connect provider for downstream services; off when absent.
    #[serde(default)]
    pub oidc: Option<OidcConfig>,
    /// Limits at the HTTP edge and on CPU-bound work.
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// Limits at the HTTP edge and on CPU-bound work (every one has a default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// A client must send a request's headers within this time, seconds (≤ 10). The same
    /// timer bounds how long an idle keep-alive connection waits for its next request.
    pub header_read_timeout_seconds: u64,
    /// A whole request (body included) must be handled within this time, seconds (≤ 30);
    /// a slower one gets 408 and its connection is closed.
    pub request_timeout_seconds: u64,
    /// Most connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// XML parsing and signature verification jobs running at once (0: one per CPU).
    pub verify_workers: usize,
    /// How long a verification job may wait for a worker before the answer is 503.
    pub verify_queue_wait_ms: u64,
    /// How long a verification job may run before the answer is 503.
    pub verify_deadline_seconds: u64,
    /// argon2 hashes (CP, recovery answer, client secrets) computed at once (0: one per CPU).
    pub argon2_workers: usize,
    /// How long an argon2 job may wait for a worker before the answer is 503.
    pub argon2_queue_wait_ms: u64,
    /// Header carrying the client IP set by a trusted reverse proxy (e.g.
    /// `x-forwarded-for`: its last entry is used). Absent: the peer address is the client.
    pub client_ip_header: Option<String>,
    /// Per-client-IP request rates (requests per minute, with a burst).
    pub rate: RateLimitsConfig,
    /// At most this many KiB of a Response rejected before any signature verified are
    /// kept in the transaction log (with the SHA-256 of the whole).
    pub txlog_unverified_max_kib: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_seconds: 10,
            request_timeout_seconds: 30,
            max_connections: 4096,
            verify_workers: 0,
            verify_queue_wait_ms: 2000,
            verify_deadline_seconds: 10,
            argon2_workers: 0,
            argon2_queue_wait_ms: 5000,
            client_ip_header: None,
            rate: RateLimitsConfig::default(),
            txlog_unverified_max_kib: 16,
        }
    }
}

/// Per-client-IP rates, requests per minute; `burst` requests may come at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    /// `/login` (each one stores a pending request).
    pub login_per_minute: u32,
    /// `/acs`.
    pub acs_per_minute: u32,
    /// `/slo`.
    pub slo_per_minute: u32,
    /// The forms that check a secret: temporary CP, CP, recovery answer, `/oidc/cp`.
    pub secret_forms_per_minute: u32,
    /// `/oidc/token`, `/oidc/introspect`, `/oidc/revoke` (client-secret checks).
    pub token_per_minute: u32,
    /// Requests allowed at once above the steady rate.
    pub burst: u32,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        Self {
            login_per_minute: 60,
            acs_per_minute: 60,
            slo_per_minute: 60,
            secret_forms_per_minute: 20,
            token_per_minute: 600,
            burst: 20,
        }
    }
}

impl LimitsConfig {
    /// Checks the section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=10).contains(&self.header_read_timeout_seconds) {
            return Err(invalid(
                "limits.header_read_timeout_seconds",
                "must be between 1 and 10",
            ));
        }
        if !(1..=30).contains(&self.request_timeout_seconds) {
            return Err(invalid(
                "limits.request_timeout_seconds",
                "must be between 1 and 30",
            ));
        }
        if self.max_connections == 0 {
            return Err(invalid("limits.max_connections", "must be at least 1"));
        }
        if !(1..=60).contains(&self.verify_deadline_seconds) {
            return Err(invalid(
                "limits.verify_deadline_seconds",
                "must be between 1 and 60",
            ));
        }
        for (key, ms) in [
            ("limits.verify_queue_wait_ms", self.verify_queue_wait_ms),
            ("limits.argon2_queue_wait_ms", self.argon2_queue_wait_ms),
        ] {
            if !(1..=30_000).contains(&ms) {
                return Err(invalid(key, "must be between 1 and 30000"));
            }
        }
        if let Some(h) = &self.client_ip_header
            && axum::http::HeaderName::try_from(h.as_str()).is_err()
        {
            return Err(invalid("limits.client_ip_header", "not a header name"));
        }
        let r = &self.rate;
        for (key, v) in [
            ("limits.rate.login_per_minute", r.login_per_minute),
            ("limits.rate.acs_per_minute", r.acs_per_minute),
            ("limits.rate.slo_per_minute", r.slo_per_minute),
            (
                "limits.rate.secret_forms_per_minute",
                r.secret_forms_per_minute,
            ),
            ("limits.rate.token_per_minute", r.token_per_minute),
            ("limits.rate.burst", r.burst),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if !(1..=1024).contains(&self.txlog_unverified_max_kib) {
            return Err(invalid(
                "limits.txlog_unverified_max_kib",
                "must be between 1 and 1024",
            ));
        }
        Ok(())
    }

    fn workers(n: usize) -> usize {
        if n > 0 {
            n
        } else {
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
        }
    }

    /// The verification pool's bounds.
    pub fn verify_pool(&self) -> crate::blocking::PoolLimits {
        crate::blocking::PoolLimits {
            workers: Self::workers(self.verify_workers),
            queue_wait: std::time::Duration::from_millis(self.verify_queue_wait_ms),
            deadline: std::time::Duration::from_secs(self.verify_deadline_seconds),
        }
    }

    /// The argon2 pool's bounds (a hash is never abandoned half-way: long deadline).
    pub fn argon2_pool(&self) -> crate::blocking::PoolLimits {
        crate::blocking::PoolLimits {
            workers: Self::workers(self.argon2_workers),
            queue_wait: std::time::Duration::from_millis(self.argon2_queue_wait_ms),
            deadline: std::time::Duration::from_secs(60),
        }
    }
}

/// The OpenID Connect provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The `iss` of every token; default `server.public_url`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Access-token lifetime, seconds.
    #[serde(default = "default_access_ttl")]
    pub access_token_ttl_seconds: u64,
    /// ID-token lifetime, seconds.
    #[serde(default = "default_access_ttl")]
    pub id_token_ttl_seconds: u64,
    /// Lifetime of one refresh token, seconds (each use rotates it).
    #[serde(default = "default_refresh_ttl")]
    pub refresh_token_ttl_seconds: u64,
    /// Absolute lifetime of a token family (the code and every refresh rotated from it),
    /// seconds; rotation never extends it, and it never outlives the session's
    /// `absolute_timeout_seconds`.
    #[serde(default = "default_refresh_ttl")]
    pub refresh_family_lifetime_seconds: u64,
    /// Authorization-code lifetime, seconds.
    #[serde(default = "default_code_ttl")]
    pub code_ttl_seconds: u64,
    /// Signing keys: a current EdDSA key is required; ES256 for clients that ask it;
    /// retired keys with `not_after` stay in the JWKS until then.
    pub keys: Vec<crate::oidc::keys::KeyConfig>,
    /// Registered clients.
    #[serde(default)]
    pub clients: Vec<crate::oidc::clients::ClientConfig>,
}

fn default_access_ttl() -> u64 {
    300
}
fn default_refresh_ttl() -> u64 {
    8 * 3600
}
fn default_code_ttl() -> u64 {
    60
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

/// The account database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` or `postgres://user@host:port/db`; default: the SQLite
    /// file `polis.db` under `data_dir`. Put a PostgreSQL password in `password_file`,
    /// not in the URL.
    #[serde(default)]
    pub url: Option<String>,
    /// File holding the PostgreSQL password (first line), added to the URL at start.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Connection-pool size.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            password_file: None,
            max_connections: default_max_connections(),
        }
    }
}

fn default_max_connections() -> u32 {
    8
}

/// Browser sessions: an encrypted cookie naming a record in the state store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Secret (at least 32 bytes of text, e.g. `openssl rand -base64 64`) the session
    /// cookie is encrypted and authenticated with. Replicas share it.
    pub cookie_key_file: PathBuf,
    /// A session unused this long ends, in seconds.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_seconds: u64,
    /// A session ends this long after the SPID login whatever happens, in seconds.
    #[serde(default = "default_absolute_timeout")]
    pub absolute_timeout_seconds: u64,
}

fn default_idle_timeout() -> u64 {
    1800
}
fn default_absolute_timeout() -> u64 {
    8 * 3600
}

/// The Codice Personale.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpConfig {
    /// Secret (at least 32 bytes of text) the temporary CP is stored under as an HMAC.
    pub hmac_key_file: PathBuf,
    /// How long a temporary CP is accepted, in seconds.
    #[serde(default = "default_temp_cp_ttl")]
    pub temp_cp_ttl_seconds: u64,
    /// Wrong attempts before a temporary CP, the CP or the recovery answer is locked.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// How long the CP and the recovery answer stay locked after `max_attempts`, in
    /// seconds. A locked temporary CP stays locked until a new one is sent.
    #[serde(default = "default_lockout")]
    pub lockout_seconds: u64,
    /// Resends of the temporary CP («Ripetizione invio») one account may ask in 24
    /// hours; the first CP and recoveries do not count.
    #[serde(default = "default_max_resends")]
    pub max_resends_per_day: u32,
}

fn default_temp_cp_ttl() -> u64 {
    72 * 3600
}
fn default_max_attempts() -> u32 {
    5
}
fn default_lockout() -> u64 {
    900
}
fn default_max_resends() -> u32 {
    5
}

/// HTTP server settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Socket address to bind, e.g. `127.0.0.1:8080`.
    pub listen: String,
    /// Base URL users and IdPs reach the gateway at, without trailing slash.
    pub public_url: String,
    /// Largest accepted request body on the ACS and SLO endpoints, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

fn default_max_body() -> usize {
    512 * 1024
}

/// The SAML service provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpConfig {
    /// SP entityID; must equal the `uri` field of the signing certificate.
    pub entity_id: String,
    /// PEM private key (PKCS#8 or PKCS#1) used to sign metadata and requests.
    pub key_file: PathBuf,
    /// PEM certificate published in the metadata.
    pub cert_file: PathBuf,
    /// ACS URL; default `server.public_url + "/acs"`.
    #[serde(default)]
    pub acs_url: Option<String>,
    /// Single-logout URL; default `server.public_url + "/slo"`.
    #[serde(default)]
    pub slo_url: Option<String>,
    /// Binding used for AuthnRequests unless the login link asks otherwise.
    #[serde(default)]
    pub default_binding: BindingConfig,
    /// SPID level asked when the login link does not say (1, 2 or 3).
    #[serde(default = "default_level")]
    pub default_level: u8,
    /// `Comparison` of RequestedAuthnContext: exact, minimum, better or maximum.
    #[serde(default = "default_comparison")]
    pub comparison: String,
    /// AttributeConsumingServiceIndex sent in AuthnRequests.
    #[serde(default)]
    pub attribute_consuming_service_index: u16,
    /// How long a pending AuthnRequest may wait for its Response, in seconds.
    #[serde(default = "default_request_ttl")]
    pub request_ttl_seconds: u64,
    /// Tolerated clock difference with IdPs, in seconds.
    #[serde(default = "default_skew")]
    pub clock_skew_seconds: u64,
    /// Furthest ahead of now an IdP may put an Assertion's NotOnOrAfter, in seconds;
    /// a later one is refused (it would also keep the replay cache that long).
    #[serde(default = "default_max_assertion_validity")]
    pub max_assertion_validity_seconds: u64,
    /// Public or private SP: decides the metadata extensions and certificate policy.
    pub sector: SpSector,
    /// Organization block of the metadata.
    pub organization: OrganizationConfig,
    /// The `other` contact (and SPID extensions).
    pub contact: ContactConfig,
    /// The `billing` contact; required for private SPs.
    #[serde(default)]
    pub billing: Option<BillingConfig>,
    /// AttributeConsumingService entries.
    pub attribute_consuming_services: Vec<AttributeServiceConfig>,
}

fn default_level() -> u8 {
    2
}
fn default_comparison() -> String {
    "minimum".to_owned()
}
fn default_request_ttl() -> u64 {
    600
}
fn default_max_assertion_validity() -> u64 {
    1800
}
fn default_skew() -> u64 {
    60
}

/// SAML binding choice for outbound requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BindingConfig {
    /// HTTP-Redirect: deflated request in the query, signature in `SigAlg`/`Signature`.
    #[default]
    Redirect,
    /// HTTP-POST: auto-submitting form with an enveloped signature.
    Post,
}

/// `md:Organization` (Italian texts; `xml:lang="it"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrganizationConfig {
    /// Full legal name (= certificate `O`).
    pub name: String,
    /// Short name shown by IdPs (= certificate `CN`).
    pub display_name: String,
    /// Organization web site.
    pub url: String,
}

/// `md:ContactPerson contactType="other"` and its SPID extensions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactConfig {
    /// Institutional mailbox (not a person's).
    pub email: String,
    /// Telephone with `+39` prefix, no spaces.
    #[serde(default)]
    pub phone: Option<String>,
    /// IPA code; required for public SPs, forbidden for private ones.
    #[serde(default)]
    pub ipa_code: Option<String>,
    /// VAT number with country prefix, e.g. `IT12345678901`.
    #[serde(default)]
    pub vat_number: Option<String>,
    /// Fiscal code of the organization.
    #[serde(default)]
    pub fiscal_code: Option<String>,
}

/// Billing contact for private SPs (`fpa:CessionarioCommittente`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillingConfig {
    /// Billing mailbox (company or PEC).
    pub email: String,
    /// Company name (`fpa:Denominazione`).
    pub company_name: String,
    /// VAT number: country code and number, e.g. `IT` + `12345678901`.
    #[serde(default)]
    pub vat_country: Option<String>,
    /// VAT number digits.
    #[serde(default)]
    pub vat_number: Option<String>,
    /// Fiscal code (`fpa:CodiceFiscale`).
    #[serde(default)]
    pub fiscal_code: Option<String>,
    /// Street address.
    pub address: String,
    /// Street number.
    #[serde(default)]
    pub street_number: Option<String>,
    /// Postal code.
    pub postal_code: String,
    /// Municipality.
    pub municipality: String,
    /// Province code.
    #[serde(default)]
    pub province: Option<String>,
    /// Nation code, e.g. `IT`.
    pub nation: String,
}

/// One `md:AttributeConsumingService`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeServiceConfig {
    /// Index referenced by AuthnRequests.
    pub index: u16,
    /// `md:ServiceName` (Italian).
    pub name: String,
    /// SPID attribute names requested.
    pub attributes: Vec<String>,
}

/// The trusted identity providers.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    /// Accept test IdPs (mock IdP, spid-sp-test, AgID validator/demo). Refused in production.
    #[serde(default)]
    pub allow_test_idps: bool,
    /// Production IdP metadata files (single EntityDescriptor or an EntitiesDescriptor).
    #[serde(default)]
    pub metadata_files: Vec<PathBuf>,
    /// Test IdP metadata files, loaded only when `allow_test_idps` is true.
    #[serde(default)]
    pub test_metadata_files: Vec<PathBuf>,
    /// AgID registry aggregate, verified against a pinned certificate.
    #[serde(default)]
    pub registry: Option<RegistryConfig>,
}

/// The AgID registry aggregate source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// URL of the signed `md:EntitiesDescriptor`.
    pub url: String,
    /// PEM certificate AgID signs the aggregate with (obtained out of band).
    pub certificate_file: PathBuf,
    /// Refresh period in hours.
    #[serde(default = "default_refresh_hours")]
    pub refresh_hours: u64,
    /// Where the last verified copy is kept, used at start when the registry is unreachable.
    #[serde(default)]
    pub cache_file: Option<PathBuf>,
}

fn default_refresh_hours() -> u64 {
    24
}

/// Which request-state backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StateBackend {
    /// In-process map: single instance only (the embedded default).
    #[default]
    Memory,
    /// Redis (standalone, Sentinel or Cluster): shared by replicas.
    Redis,
}

/// Request-state settings.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Backend kind.
    #[serde(default)]
    pub backend: StateBackend,
    /// Redis connection, required when `backend = "redis"`.
    #[serde(default)]
    pub redis: Option<RedisConfig>,
}

/// Transaction log settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxLogConfig {
    /// Directory of the daily JSON-lines files.
    pub dir: PathBuf,
}

impl Default for TxLogConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("data/txlog"),
        }
    }
}

/// The built-in mock IdP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockIdpConfig {
    /// Socket address to bind.
    pub listen: String,
    /// Base URL of the mock IdP; also its entityID.
    pub public_url: String,
    /// PEM private key (test material only).
    pub key_file: PathBuf,
    /// PEM certificate published in its metadata.
    pub cert_file: PathBuf,
    /// SP metadata files the mock IdP trusts (besides the gateway it runs with in demo mode).
    #[serde(default)]
    pub sp_metadata_files: Vec<PathBuf>,
}

impl Config {
    /// Loads the files in order, then the `POLIS__…` environment, and validates.
    pub fn load(files: &[PathBuf]) -> Result<Self, ConfigError> {
        Self::load_with_env(files, std::env::vars())
    }

    /// As [`Config::load`], with the environment given explicitly (for tests).
    pub fn load_with_env(
        files: &[PathBuf],
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        for file in files {
            let text = std::fs::read_to_string(file)
                .map_err(|e| ConfigError::Load(format!("cannot read {}: {e}", file.display())))?;
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("POLIS__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("POLIS")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        );
        let raw = builder
            .build()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        let cfg: Config = raw
            .try_deserialize()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The ACS URL published in metadata and checked on every Response.
    pub fn acs_url(&self) -> String {
        self.sp
            .acs_url
            .clone()
            .unwrap_or_else(|| format!("{}/acs", self.server.public_url))
    }

    /// The single-logout URL published in metadata.
    pub fn slo_url(&self) -> String {
        self.sp
            .slo_url
            .clone()
            .unwrap_or_else(|| format!("{}/slo", self.server.public_url))
    }

    /// The account database URL: `database.url`, or the SQLite file under `data_dir`.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("polis.db").display()),
        }
    }

    /// The mail settings: `[mail]`, or the outbox under `data_dir`.
    pub fn mail_config(&self) -> crate::mail::MailConfig {
        self.mail
            .clone()
            .unwrap_or_else(|| crate::mail::MailConfig {
                from: crate::mail::MailFrom::default(),
                transport: crate::mail::MailTransport::Outbox(crate::mail::OutboxConfig {
                    dir: self.data_dir.join("outbox"),
                }),
            })
    }

    /// Checks values that the types alone cannot, naming the key on failure.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let prod = self.environment == Environment::Production;
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "server.listen",
                "must be an IP socket address like 127.0.0.1:8080",
            ));
        }
        check_url("server.public_url", &self.server.public_url, prod)?;
        if self.server.public_url.ends_with('/') {
            return Err(invalid("server.public_url", "must not end with '/'"));
        }
        if self.server.max_body_bytes < 16 * 1024 || self.server.max_body_bytes > 4 * 1024 * 1024 {
            return Err(invalid(
                "server.max_body_bytes",
                "must be between 16384 and 4194304",
            ));
        }
        self.limits.validate()?;
        let sp = &self.sp;
        check_url("sp.entity_id", &sp.entity_id, prod)?;
        if sp.entity_id.len() > 1024 {
            return Err(invalid("sp.entity_id", "longer than 1024 characters"));
        }
        check_url("sp.acs_url", &self.acs_url(), prod)?;
        check_url("sp.slo_url", &self.slo_url(), prod)?;
        if !(1..=3).contains(&sp.default_level) {
            return Err(invalid("sp.default_level", "must be 1, 2 or 3"));
        }
        if crate::saml::Comparison::parse(&sp.comparison).is_none() {
            return Err(invalid(
                "sp.comparison",
                "must be exact, minimum, better or maximum",
            ));
        }
        if !(1..=3600).contains(&sp.request_ttl_seconds) {
            return Err(invalid(
                "sp.request_ttl_seconds",
                "must be between 1 and 3600",
            ));
        }
        if !(60..=86_400).contains(&sp.max_assertion_validity_seconds) {
            return Err(invalid(
                "sp.max_assertion_validity_seconds",
                "must be between 60 and 86400",
            ));
        }
        if sp.clock_skew_seconds > 300 {
            return Err(invalid("sp.clock_skew_seconds", "must be at most 300"));
        }
        check_nonempty("sp.organization.name", &sp.organization.name)?;
        check_nonempty(
            "sp.organization.display_name",
            &sp.organization.display_name,
        )?;
        check_url("sp.organization.url", &sp.organization.url, false)?;
        check_email("sp.contact.email", &sp.contact.email)?;
        if let Some(phone) = &sp.contact.phone
            && (!phone.starts_with("+39")
                || phone.len() < 6
                || !phone.bytes().skip(1).all(|b| b.is_ascii_digit()))
        {
            return Err(invalid(
                "sp.contact.phone",
                "must start with +39 and contain only digits, no spaces",
            ));
        }
        match sp.sector {
            SpSector::Public => {
                if sp.contact.ipa_code.as_deref().is_none_or(str::is_empty) {
                    return Err(invalid("sp.contact.ipa_code", "required for a public SP"));
                }
            }
            SpSector::Private => {
                if sp.contact.ipa_code.is_some() {
                    return Err(invalid(
                        "sp.contact.ipa_code",
                        "must not be set for a private SP",
                    ));
                }
                if sp.contact.vat_number.is_none() && sp.contact.fiscal_code.is_none() {
                    return Err(invalid(
                        "sp.contact.vat_number",
                        "a private SP needs vat_number or fiscal_code",
                    ));
                }
                let Some(billing) = &sp.billing else {
                    return Err(invalid("sp.billing", "required for a private SP"));
                };
                check_email("sp.billing.email", &billing.email)?;
                if billing.vat_number.is_none() && billing.fiscal_code.is_none() {
                    return Err(invalid(
                        "sp.billing.vat_number",
                        "billing needs vat_number or fiscal_code",
                    ));
                }
            }
        }
        if let Some(vat) = &sp.contact.vat_number {
            let ok = vat.len() > 2
                && vat.bytes().take(2).all(|b| b.is_ascii_uppercase())
                && !vat.contains(' ');
            if !ok {
                return Err(invalid(
                    "sp.contact.vat_number",
                    "must start with an ISO 3166 country code and have no spaces, e.g. IT12345678901",
                ));
            }
        }
        if sp.attribute_consuming_services.is_empty() {
            return Err(invalid(
                "sp.attribute_consuming_services",
                "at least one service is required",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, svc) in sp.attribute_consuming_services.iter().enumerate() {
            let key = format!("sp.attribute_consuming_services[{i}]");
            if !seen.insert(svc.index) {
                return Err(invalid(&format!("{key}.index"), "duplicate index"));
            }
            check_nonempty(&format!("{key}.name"), &svc.name)?;
            if svc.attributes.is_empty() {
                return Err(invalid(
                    &format!("{key}.attributes"),
                    "at least one attribute",
                ));
            }
            let mut names = std::collections::HashSet::new();
            for a in &svc.attributes {
                if !crate::saml::SPID_ATTRIBUTES.contains(&a.as_str()) {
                    return Err(invalid(
                        &format!("{key}.attributes"),
                        format!("`{a}` is not a SPID attribute"),
                    ));
                }
                if !names.insert(a) {
                    return Err(invalid(
                        &format!("{key}.attributes"),
                        format!("`{a}` listed twice"),
                    ));
                }
            }
        }
        if !seen.contains(&sp.attribute_consuming_service_index) {
            return Err(invalid(
                "sp.attribute_consuming_service_index",
                "no attribute_consuming_services entry has this index",
            ));
        }
        let fed = &self.federation;
        if prod && fed.allow_test_idps {
            return Err(invalid(
                "federation.allow_test_idps",
                "test identity providers are refused in production",
            ));
        }
        if !fed.allow_test_idps && !fed.test_metadata_files.is_empty() {
            return Err(invalid(
                "federation.test_metadata_files",
                "set, but federation.allow_test_idps is false",
            ));
        }
        if prod && self.mock_idp.is_some() {
            return Err(invalid("mock_idp", "the mock IdP is refused in production"));
        }
        if let Some(reg) = &fed.registry {
            check_url("federation.registry.url", &reg.url, prod)?;
            if reg.refresh_hours == 0 || reg.refresh_hours > 24 * 7 {
                return Err(invalid(
                    "federation.registry.refresh_hours",
                    "must be between 1 and 168",
                ));
            }
        }
        if self.state.backend == StateBackend::Redis {
            let Some(redis) = &self.state.redis else {
                return Err(invalid(
                    "state.redis",
                    "required when state.backend = \"redis\"",
                ));
            };
            if redis.urls.is_empty() {
                return Err(invalid("state.redis.urls", "at least one URL"));
            }
        }
        if prod && self.state.backend == StateBackend::Memory {
            return Err(invalid(
                "state.backend",
                "production needs the shared \"redis\" backend",
            ));
        }
        if prod && is_demo_material(&sp.key_file) {
            return Err(invalid(
                "sp.key_file",
                "demo/test key material is refused in production",
            ));
        }
        let session = &self.session;
        // Outside production a timeout may be seconds, so tests can watch it end.
        let min_timeout = if prod { 60 } else { 1 };
        if !(min_timeout..=86_400).contains(&session.idle_timeout_seconds) {
            return Err(invalid(
                "session.idle_timeout_seconds",
                format!("must be between {min_timeout} and 86400"),
            ));
        }
        if session.absolute_timeout_seconds < session.idle_timeout_seconds
            || session.absolute_timeout_seconds > 7 * 86_400
        {
            return Err(invalid(
                "session.absolute_timeout_seconds",
                "must be between session.idle_timeout_seconds and 604800",
            ));
        }
        let cp = &self.cp;
        if !(60..=30 * 86_400).contains(&cp.temp_cp_ttl_seconds) {
            return Err(invalid(
                "cp.temp_cp_ttl_seconds",
                "must be between 60 and 2592000",
            ));
        }
        if !(1..=10).contains(&cp.max_attempts) {
            return Err(invalid("cp.max_attempts", "must be between 1 and 10"));
        }
        if !(60..=86_400).contains(&cp.lockout_seconds) {
            return Err(invalid(
                "cp.lockout_seconds",
                "must be between 60 and 86400",
            ));
        }
        if !(1..=50).contains(&cp.max_resends_per_day) {
            return Err(invalid(
                "cp.max_resends_per_day",
                "must be between 1 and 50",
            ));
        }
        if let Some(url) = &self.database.url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database.url",
                "must start with sqlite: or postgres://",
            ));
        }
        if !(1..=200).contains(&self.database.max_connections) {
            return Err(invalid(
                "database.max_connections",
                "must be between 1 and 200",
            ));
        }
        if prod {
            for (key, path) in [
                ("session.cookie_key_file", &session.cookie_key_file),
                ("cp.hmac_key_file", &cp.hmac_key_file),
            ] {
                if is_demo_material(path) {
                    return Err(invalid(
                        key,
                        "demo/test key material is refused in production",
                    ));
                }
            }
            if self.database_url().starts_with("sqlite:") {
                return Err(invalid(
                    "database.url",
                    "production needs PostgreSQL (the SQLite file is one replica's)",
                ));
            }
            if !matches!(
                self.mail.as_ref().map(|m| &m.transport),
                Some(crate::mail::MailTransport::Smtp(_))
            ) {
                return Err(invalid(
                    "mail.transport",
                    "production sends e-mail over SMTP, not to the outbox",
                ));
            }
        }
        if let Some(o) = &self.oidc {
            if let Some(iss) = &o.issuer {
                check_url("oidc.issuer", iss, prod)?;
            }
            for (key, v, lo, hi) in [
                (
                    "oidc.access_token_ttl_seconds",
                    o.access_token_ttl_seconds,
                    30,
                    3600,
                ),
                (
                    "oidc.id_token_ttl_seconds",
                    o.id_token_ttl_seconds,
                    30,
                    3600,
                ),
                (
                    "oidc.refresh_token_ttl_seconds",
                    o.refresh_token_ttl_seconds,
                    min_timeout,
                    30 * 86_400,
                ),
                (
                    "oidc.refresh_family_lifetime_seconds",
                    o.refresh_family_lifetime_seconds,
                    min_timeout,
                    30 * 86_400,
                ),
                ("oidc.code_ttl_seconds", o.code_ttl_seconds, 10, 600),
            ] {
                if !(lo..=hi).contains(&v) {
                    return Err(invalid(key, format!("must be between {lo} and {hi}")));
                }
            }
            if o.keys.is_empty() {
                return Err(invalid("oidc.keys", "at least one EdDSA signing key"));
            }
            if prod && o.keys.iter().any(|k| is_demo_material(&k.file)) {
                return Err(invalid(
                    "oidc.keys",
                    "demo/test key material is refused in production",
                ));
            }
            if prod
                && o.clients.iter().any(|c| {
                    c.redirect_uris
                        .iter()
                        .chain(&c.backchannel_logout_uri)
                        .any(|u| u.starts_with("http://"))
                })
            {
                return Err(invalid(
                    "oidc.clients",
                    "production redirect and back-channel URIs must be https",
                ));
            }
        }
        if let Some(m) = &self.mock_idp {
            if m.listen.parse::<std::net::SocketAddr>().is_err() {
                return Err(invalid("mock_idp.listen", "must be an IP socket address"));
            }
            check_url("mock_idp.public_url", &m.public_url, false)?;
        }
        Ok(())
    }
}

/// Key files committed in this repository live under `certs/`; production keys never do.
fn is_demo_material(path: &Path) -> bool {
    path.components().any(|c| c.as_os_str() == "certs")
}

fn check_nonempty(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    Ok(())
}

fn check_email(key: &str, value: &str) -> Result<(), ConfigError> {
    let mut parts = value.split('@');
    let ok = matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(l), Some(d), None) if !l.is_empty() && d.contains('.') && !value.contains(' ')
    );
    if !ok {
        return Err(invalid(key, "not an e-mail address"));
    }
    Ok(())
}

fn check_url(key: &str, value: &str, production: bool) -> Result<(), ConfigError> {
    let url = url::Url::parse(value).map_err(|e| invalid(key, format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(key, "must be an http(s) URL"));
    }
    if production {
        if url.scheme() != "https" {
            return Err(invalid(key, "must use https in production"));
        }
        if url.port().is_some() {
            return Err(invalid(
                key,
                "must not carry an explicit port in production",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(extra: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let overlay = dir.path().join("overlay.toml");
        std::fs::write(&overlay, extra).unwrap();
        Config::load_with_env(
            &[PathBuf::from("config/demo.toml"), overlay],
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    fn err(extra: &str, env: &[(&str, &str)]) -> String {
        load(extra, env).unwrap_err().to_string()
    }

    #[test]
    fn shipped_configs_are_valid() {
        for f in [
            "config/demo.toml",
            "config/conformance.toml",
            "config/production.example.toml",
        ] {
            Config::load_with_env(&[PathBuf::from(f)], Vec::new()).unwrap();
        }
    }

    #[test]
    fn later_layers_and_environment_override() {
        let cfg = load(
            "[server]\nlisten = \"127.0.0.1:9999\"\npublic_url = \"http://localhost:9999\"\n",
            &[("POLIS__SP__DEFAULT_LEVEL", "3"), ("OTHER_VAR", "ignored")],
        )
        .unwrap();
        assert_eq!(cfg.server.listen, "127.0.0.1:9999");
        assert_eq!(cfg.sp.default_level, 3);
        assert_eq!(cfg.acs_url(), "http://localhost:9999/acs");
    }

    #[test]
    fn unknown_keys_are_rejected_and_named() {
        assert!(err("[sp]\nentity_idd = \"x\"\n", &[]).contains("entity_idd"));
        assert!(err("typo = 1\n", &[]).contains("typo"));
        assert!(err("", &[("POLIS__SERVER__LISTN", "x")]).contains("listn"));
    }

    #[test]
    fn values_are_validated_with_the_key_named() {
        let cases = [
            ("[sp]\ndefault_level = 4\n", "sp.default_level"),
            ("[sp]\ncomparison = \"most\"\n", "sp.comparison"),
            ("[sp.contact]\nphone = \"06 1234\"\n", "sp.contact.phone"),
            ("[server]\nlisten = \"localhost\"\n", "server.listen"),
            ("[server]\npublic_url = \"ftp://x\"\n", "server.public_url"),
            ("[state]\nbackend = \"redis\"\n", "state.redis"),
            (
                "[oidc]\nrefresh_family_lifetime_seconds = 0\n",
                "oidc.refresh_family_lifetime_seconds",
            ),
            (
                "[oidc]\nrefresh_family_lifetime_seconds = 2600000\n",
                "oidc.refresh_family_lifetime_seconds",
            ),
            (
                "[session]\nidle_timeout_seconds = 0\n",
                "session.idle_timeout_seconds",
            ),
            (
                "[federation]\nallow_test_idps = false\ntest_metadata_files = [\"x.xml\"]\n",
                "federation.test_metadata_files",
            ),
            ("[sp]\nsector = \"private\"\n", "sp.contact.ipa_code"),
            (
                "[[sp.attribute_consuming_services]]\nindex = 0\nname = \"a\"\nattributes = [\"name\"]\n[[sp.attribute_consuming_services]]\nindex = 0\nname = \"b\"\nattributes = [\"name\"]\n",
                "sp.attribute_consuming_services[1].index",
            ),
        ];
        for (toml, key) in cases {
            let e = err(toml, &[]);
            assert!(e.contains(key), "{toml} -> {e}");
        }
    }

    #[test]
    fn attribute_names_must_be_spid_attributes() {
        let e = err(
            "[[sp.attribute_consuming_services]]\nindex = 1\nname = \"x\"\nattributes = [\"shoeSize\"]\n",
            &[],
        );
        assert!(e.contains("shoeSize"), "{e}");
    }

    #[test]
    fn production_refuses_test_idps_demo_keys_http_and_memory_state() {
        let e = err("environment = \"production\"\n", &[]);
        assert!(e.contains("must use https in production"), "{e}");
        let https = "environment = \"production\"\n[server]\npublic_url = \"https://polis.example.gov.it\"\n[sp]\nentity_id = \"https://polis.example.gov.it\"\n";
        let e = err(https, &[]);
        assert!(e.contains("federation.allow_test_idps"), "{e}");
        let e = err(
            &format!("{https}[federation]\nallow_test_idps = false\n"),
            &[],
        );
        assert!(e.contains("mock_idp"), "{e}");
    }
}
