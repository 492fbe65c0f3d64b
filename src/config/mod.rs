//! Typed, layered configuration.
//!
//! Layers, later wins: built-in defaults → each `--config` TOML file in order →
//! environment variables `POLIS__SECTION__KEY=value` (double underscore between
//! levels). Unknown keys are rejected at every level. Each section has its own file
//! here: a raw serde shape as written (`deny_unknown_fields`, the defaults) and one
//! validation function that turns it into a typed value or a [`ConfigError`] naming
//! the key and the reason. The typed value of a section belongs to the module it
//! configures ([`SsoSettings`](crate::sso::SsoSettings),
//! [`FederationSettings`](crate::federation::FederationSettings),
//! [`RateSettings`](crate::web::ratelimit::RateSettings),
//! [`StoreSettings`](crate::state::StoreSettings), …); what only concerns the file
//! itself stays here (the environment, `data_dir`, key file paths, the listener, the
//! database URL). Nothing downstream parses a config string again. Nothing here is
//! global: `main` loads a [`Config`] and hands it down.

mod campaign;
mod checks;
mod cie;
mod cp;
mod database;
mod federation;
mod helpdesk;
mod limits;
mod log;
mod mail;
mod metrics;
mod mock_idp;
mod oidc;
mod server;
mod session;
mod sp;
mod state;
mod terms;
mod txlog;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use cie::CieSection;
pub use cp::CpSection;
pub use database::{DatabaseSettings, DatabaseUrl};
pub use limits::LimitsSection;
pub use log::LogFormat;
pub use mock_idp::MockIdpSettings;
pub use oidc::OidcSection;
pub use server::ServerSettings;
pub use session::SessionSection;
pub use sp::SpSection;
pub use terms::TermsSection;

use crate::federation::FederationSettings;
use crate::mail::MailConfig;
use crate::state::StoreSettings;

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

/// The whole configuration, validated: every section as a typed value.
#[derive(Debug, Clone)]
pub struct Config {
    /// Deployment kind; see [`Environment`].
    pub environment: Environment,
    /// Directory of the embedded defaults: the SQLite file and the mail outbox.
    pub data_dir: PathBuf,
    /// HTTP listener and public address.
    pub server: ServerSettings,
    /// Limits at the HTTP edge and on CPU-bound work.
    pub limits: LimitsSection,
    /// The service provider: SSO settings, metadata, keys.
    pub sp: SpSection,
    /// The "Entra con CIE" identity and metadata; `None` unless `[cie] enabled`.
    pub cie: Option<CieSection>,
    /// Trusted identity providers.
    pub federation: FederationSettings,
    /// Request-state backend.
    pub state: StoreSettings,
    /// Directory of the SPID transaction log.
    pub txlog_dir: PathBuf,
    /// Months the transaction log's daily files are kept (at least 24).
    pub txlog_retention_months: u32,
    /// The built-in mock IdP (`polis-gateway demo` / `mock-idp`), if configured.
    pub mock_idp: Option<MockIdpSettings>,
    /// The account database.
    pub database: DatabaseSettings,
    /// Browser sessions.
    pub session: SessionSection,
    /// Codice Personale: temporary CP, attempts and lockouts.
    pub cp: CpSection,
    /// Outgoing e-mail (`[mail]`, or the outbox under `data_dir`).
    pub mail: MailConfig,
    /// The OpenID Connect provider for downstream services; off when absent.
    pub oidc: Option<OidcSection>,
    /// The operator's conditions of use and privacy notice; `None`: the demo texts.
    pub terms: Option<TermsSection>,
    /// Where `GET /metrics` (Prometheus) listens; no endpoint when absent.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The application log's line format (`[log] format`).
    pub log_format: LogFormat,
    /// The help-desk console's roles (`[helpdesk]`); empty: the console is off.
    pub helpdesk: crate::helpdesk::HelpdeskSettings,
    /// The daily inactivity campaign (`[campaign]`); none when absent.
    pub campaign: Option<crate::campaign::schedule::ScheduleSettings>,
}

/// The file as written: each section's raw shape.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    environment: Environment,
    server: server::RawServer,
    sp: sp::RawSp,
    #[serde(default)]
    cie: Option<cie::RawCie>,
    #[serde(default)]
    federation: federation::RawFederation,
    #[serde(default)]
    state: state::RawState,
    #[serde(default)]
    txlog: txlog::RawTxLog,
    #[serde(default)]
    mock_idp: Option<mock_idp::RawMockIdp>,
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    #[serde(default)]
    database: database::RawDatabase,
    session: session::RawSession,
    cp: cp::RawCp,
    #[serde(default)]
    mail: Option<MailConfig>,
    #[serde(default)]
    oidc: Option<oidc::RawOidc>,
    #[serde(default)]
    limits: limits::RawLimits,
    #[serde(default)]
    terms: Option<terms::RawTerms>,
    #[serde(default)]
    metrics: Option<metrics::RawMetrics>,
    #[serde(default)]
    log: log::RawLog,
    #[serde(default)]
    campaign: Option<campaign::RawCampaign>,
    #[serde(default)]
    helpdesk: Option<helpdesk::RawHelpdesk>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

/// What a section's validation may need from the rest of the file.
struct Context<'a> {
    /// `environment = "production"`.
    prod: bool,
    /// `server.public_url`, validated.
    public_url: &'a str,
    /// `data_dir`.
    data_dir: &'a Path,
}

impl Context<'_> {
    /// The shortest session or refresh lifetime, seconds: outside production a timeout
    /// may be seconds, so tests can watch it end.
    fn min_timeout(&self) -> u64 {
        if self.prod { 60 } else { 1 }
    }
}

impl RawConfig {
    /// Validates every section (the first error wins, in this order).
    fn validate(self) -> Result<Config, ConfigError> {
        let prod = self.environment == Environment::Production;
        let server = server::validate(self.server, prod)?;
        let ctx = Context {
            prod,
            public_url: &server.public_url,
            data_dir: &self.data_dir,
        };
        let limits = limits::validate(self.limits)?;
        let federation = federation::validate(self.federation, &ctx)?;
        let mock_idp = mock_idp::validate(self.mock_idp, &ctx)?;
        let state = state::validate(self.state, &ctx)?;
        let sp = sp::validate(self.sp, &ctx, limits.txlog_unverified_max_bytes)?;
        let cie = cie::validate(self.cie, &ctx, &sp)?;
        federation::check_against_sp(&federation, &sp.metadata)?;
        let session = session::validate(self.session, &ctx)?;
        let cp = cp::validate(self.cp, &ctx)?;
        let database = database::validate(self.database, &ctx)?;
        let mail = mail::validate(self.mail, &ctx)?;
        let oidc = self.oidc.map(|o| oidc::validate(o, &ctx)).transpose()?;
        let terms = terms::validate(self.terms, &ctx)?;
        let (txlog_dir, txlog_retention_months) = txlog::validate(self.txlog)?;
        let metrics_listen = metrics::validate(self.metrics);
        let log_format = log::validate(self.log);
        let campaign = campaign::validate(self.campaign, &ctx)?;
        let helpdesk = helpdesk::validate(self.helpdesk)?;
        Ok(Config {
            environment: self.environment,
            data_dir: self.data_dir,
            server,
            limits,
            sp,
            cie,
            federation,
            state,
            txlog_dir,
            txlog_retention_months,
            mock_idp,
            database,
            session,
            cp,
            mail,
            oidc,
            terms,
            metrics_listen,
            log_format,
            campaign,
            helpdesk,
        })
    }
}

impl Config {
    /// The certificate files logins depend on, as `(kind, name, path)`: our SPID
    /// certificate, the CIE one, the registry's signing certificate.
    pub fn certificate_files(&self) -> Vec<(&'static str, String, &Path)> {
        let mut files = vec![(
            "sp",
            self.sp.metadata.entity_id.clone(),
            self.sp.cert_file.as_path(),
        )];
        if let Some(cie) = &self.cie {
            files.push((
                "cie_sp",
                cie.metadata.entity_id.clone(),
                cie.cert_file.as_path(),
            ));
        }
        if let Some(reg) = &self.federation.registry {
            files.push((
                "registry",
                reg.url.to_string(),
                reg.certificate_file.as_path(),
            ));
        }
        files
    }

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
        let raw: RawConfig = builder
            .build()
            .map_err(|e| ConfigError::Load(e.to_string()))?
            .try_deserialize()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        raw.validate()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// `config/demo.toml` with `extra` layered over it, then `env`.
    pub(in crate::config) fn load(
        extra: &str,
        env: &[(&str, &str)],
    ) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let overlay = dir.path().join("overlay.toml");
        std::fs::write(&overlay, extra).unwrap();
        Config::load_with_env(
            &[PathBuf::from("config/demo.toml"), overlay],
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    /// The error `extra` over the demo config gives.
    pub(in crate::config) fn err(extra: &str, env: &[(&str, &str)]) -> String {
        load(extra, env).unwrap_err().to_string()
    }

    /// `config/demo.toml` rewritten by `edit` (for what a layer cannot remove), loaded.
    pub(in crate::config) fn load_edited(
        edit: impl FnOnce(String) -> String,
    ) -> Result<Config, ConfigError> {
        let demo = std::fs::read_to_string("config/demo.toml").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("edited.toml");
        std::fs::write(&file, edit(demo)).unwrap();
        Config::load_with_env(&[file], Vec::new())
    }

    #[test]
    fn an_unknown_key_is_rejected_in_every_section() {
        let redis = "[state]\nbackend = \"redis\"\n[state.redis]\nurls = [\"redis://127.0.0.1\"]\n";
        let registry = "[federation.registry]\nurl = \"https://r.example/x.xml\"\ncertificate_file = \"r.crt\"\n";
        let billing = "[sp.billing]\nemail = \"b@x.it\"\ncompany_name = \"C\"\naddress = \"A\"\npostal_code = \"1\"\nmunicipality = \"M\"\nnation = \"IT\"\n";
        let cases = [
            String::new(),
            "[server]\n".to_owned(),
            "[limits]\n".to_owned(),
            "[limits.rate]\n".to_owned(),
            "[sp]\n".to_owned(),
            "[sp.organization]\n".to_owned(),
            "[sp.contact]\n".to_owned(),
            billing.to_owned(),
            "[[sp.attribute_consuming_services]]\nindex = 1\nname = \"x\"\nattributes = [\"name\"]\n".to_owned(),
            "[federation]\n".to_owned(),
            registry.to_owned(),
            "[state]\n".to_owned(),
            redis.to_owned(),
            "[database]\n".to_owned(),
            "[session]\n".to_owned(),
            "[cp]\n".to_owned(),
            "[mail]\n".to_owned(),
            "[mail.from]\n".to_owned(),
            "[mail.transport]\nkind = \"outbox\"\ndir = \"o\"\n".to_owned(),
            "[oidc]\n".to_owned(),
            "[[oidc.keys]]\nfile = \"k.pem\"\nalg = \"EdDSA\"\n".to_owned(),
            "[[oidc.clients]]\nclient_id = \"c\"\nredirect_uris = []\n".to_owned(),
            "[txlog]\n".to_owned(),
            "[mock_idp]\n".to_owned(),
            "[cie]\n".to_owned(),
            "[cie.administrative]\nemail = \"a@b.it\"\n".to_owned(),
            "[cie.technical]\ncompany = \"c\"\nemail = \"a@b.it\"\n".to_owned(),
            "[sp.eidas]\n".to_owned(),
            "[metrics]\nlisten = \"127.0.0.1:1\"\n".to_owned(),
            "[log]\n".to_owned(),
            "[helpdesk]\n".to_owned(),
        ];
        for section in cases {
            let e = err(&format!("{section}zz_unknown_key = 1\n"), &[]);
            assert!(e.contains("zz_unknown_key"), "{section:?} -> {e}");
        }
    }

    #[test]
    fn shipped_configs_are_valid() {
        let mut shipped: Vec<PathBuf> = std::fs::read_dir("config")
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        shipped.sort();
        // Every `config/*.toml` (the `*.example.toml` files included) loads.
        for must in [
            "config/demo.toml",
            "config/conformance.toml",
            "config/production.example.toml",
        ] {
            assert!(shipped.contains(&PathBuf::from(must)), "{must} missing");
        }
        for f in shipped {
            if let Err(e) = Config::load_with_env(std::slice::from_ref(&f), Vec::new()) {
                panic!("{}: {e}", f.display());
            }
        }
    }

    #[test]
    fn later_layers_and_environment_override() {
        let cfg = load(
            "[server]\nlisten = \"127.0.0.1:9999\"\npublic_url = \"http://localhost:9999\"\n",
            &[("POLIS__SP__DEFAULT_LEVEL", "3"), ("OTHER_VAR", "ignored")],
        )
        .unwrap();
        assert_eq!(cfg.server.listen, "127.0.0.1:9999".parse().unwrap());
        assert_eq!(cfg.sp.sso.default_level, crate::saml::Level::L3);
        assert_eq!(cfg.sp.sso.acs_url, "http://localhost:9999/acs");
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
    fn production_needs_the_operators_terms() {
        let prod = std::fs::read_to_string("config/production.example.toml").unwrap();
        let cfg = Config::load_with_env(
            &[PathBuf::from("config/production.example.toml")],
            Vec::new(),
        )
        .unwrap();
        assert_eq!(
            cfg.terms.as_ref().map(|t| t.version.as_str()),
            Some("2026-12")
        );
        let start = prod.find("[terms]").unwrap();
        let end = start + prod[start..].find("\n[mail]").unwrap();
        let without = format!("{}{}", &prod[..start], &prod[end..]);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prod.toml");
        std::fs::write(&file, without).unwrap();
        let e = Config::load_with_env(&[file], Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("`terms`") && e.contains("demo only"), "{e}");
        // Outside production the demo texts are the default.
        assert_eq!(load("", &[]).unwrap().terms, None);
        let e = err(
            "[terms]\nversion = \" \"\nconditions_file = \"a\"\nprivacy_file = \"b\"\n",
            &[],
        );
        assert!(e.contains("terms.version"), "{e}");
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
