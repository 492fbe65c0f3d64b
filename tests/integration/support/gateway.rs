//! The gateway and the mock IdP, both real HTTP servers on 127.0.0.1 port 0, with
//! keys minted at start (keygen), a temporary data directory, the state store the
//! test chooses, and the account database the test chooses (a SQLite file in the temp
//! dir by default, or a PostgreSQL URL). Mail goes to an outbox directory in the temp
//! dir, or to a real SMTP server when the test gives its port. Dropping the `Env` stops
//! both servers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use polis_gateway::accounts::{Account, AccountStore, FiscalCode, IdentityKey};
use polis_gateway::app;
use polis_gateway::clock::ManualClock;
use polis_gateway::config::Config;
use polis_gateway::identity::Scheme;
use polis_gateway::keygen::{self, CertRequest, SpSector};
use polis_gateway::mock_idp::MockFederation;
use polis_gateway::oidc::keys::SigningAlg;
use polis_gateway::saml::{SigningKey, binding, xml};
use polis_gateway::state::{MemoryStore, StateStore};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::smtp::{ReceivedMail, parse_eml};

/// The account database of an [`Env`].
#[derive(Debug, Clone, Default)]
pub enum Database {
    /// A SQLite file `polis.db` in the Env's temp dir (the embedded default).
    #[default]
    Sqlite,
    /// A PostgreSQL URL, e.g. from `PostgresServer::create_database`.
    Postgres(String),
}

/// Knobs for [`Env::start_with`].
pub struct EnvOptions {
    /// `sp.request_ttl_seconds`.
    pub request_ttl_seconds: u64,
    /// `[database]`.
    pub database: Database,
    /// `Some(port)`: `[mail.transport] kind = "smtp"` on 127.0.0.1:port (no TLS);
    /// `None`: `kind = "outbox"` in `<temp dir>/outbox`.
    pub smtp_port: Option<u16>,
    /// Writes an `[oidc]` section: fresh EdDSA + ES256 signing keys and the clients
    /// [`OIDC_CLIENT`] (secret) and [`OIDC_JWT_CLIENT`] (`private_key_jwt`).
    pub oidc: bool,
    /// The clients' redirect URI (default [`DEFAULT_REDIRECT_URI`]).
    pub oidc_redirect_uri: Option<String>,
    /// The clients' post-logout redirect URI (default [`DEFAULT_POST_LOGOUT_URI`]).
    pub oidc_post_logout_uri: Option<String>,
    /// [`OIDC_CLIENT`]'s `backchannel_logout_uri` (none by default).
    pub oidc_backchannel: Option<String>,
    /// More configuration, appended as is (e.g. a `[limits]` section).
    pub extra_toml: String,
    /// `[session]` `idle_timeout_seconds` and `absolute_timeout_seconds`.
    pub session_timeouts: (u64, u64),
    /// `[oidc]` `refresh_token_ttl_seconds` and `refresh_family_lifetime_seconds`.
    pub oidc_refresh_lifetimes: (u64, u64),
    /// `environment` (`"test"`; `"demo"` serves the outbox pages at `/demo/posta`).
    pub environment: &'static str,
}

/// `[metrics]` for [`EnvOptions::extra_toml`]: the address a deployment would listen
/// on; the harness serves `/metrics` on a free port ([`Env::metrics_url`]).
pub const METRICS_TOML: &str = "\n[metrics]\nlisten = \"127.0.0.1:9464\"\n";

impl Default for EnvOptions {
    fn default() -> Self {
        Self {
            request_ttl_seconds: 600,
            database: Database::Sqlite,
            smtp_port: None,
            oidc: false,
            oidc_redirect_uri: None,
            oidc_post_logout_uri: None,
            oidc_backchannel: None,
            extra_toml: String::new(),
            session_timeouts: (1800, 28800),
            oidc_refresh_lifetimes: (3600, 3600),
            environment: "test",
        }
    }
}

/// The secret-authenticated OIDC client of an Env with `oidc`.
pub const OIDC_CLIENT: &str = "app";
/// Its client secret (the config holds only its argon2id hash).
pub const OIDC_SECRET: &str = "app-secret-0123456789";
/// The `private_key_jwt` client (ID tokens in ES256); its key is [`OidcEnv::jwt_client_pem`].
pub const OIDC_JWT_CLIENT: &str = "app-jwt";
/// A client that is a resource server for [`OIDC_CLIENT`] (`introspect_for`), with
/// [`OIDC_SECRET`] as its secret; it allows accounts in enablement.
pub const OIDC_RS_CLIENT: &str = "app-rs";
/// The `kid` of [`OIDC_JWT_CLIENT`]'s key in its JWKS file.
pub const OIDC_JWT_CLIENT_KID: &str = "app-jwt-key-1";
/// Redirect URI registered by default: never contacted (tests read the `Location`).
pub const DEFAULT_REDIRECT_URI: &str = "http://127.0.0.1:1/callback";
/// Post-logout redirect URI registered by default.
pub const DEFAULT_POST_LOGOUT_URI: &str = "http://127.0.0.1:1/logged-out";

/// One OIDC signing key of the gateway's config.
#[derive(Debug, Clone)]
pub struct OidcKey {
    /// PKCS#8 PEM private key.
    pub pem: Vec<u8>,
    /// Its algorithm.
    pub alg: SigningAlg,
    /// `not_after` (a previous key), or `None` (a current signer).
    pub not_after: Option<chrono::DateTime<chrono::Utc>>,
}

impl OidcKey {
    /// A freshly generated current key.
    pub fn generate(alg: SigningAlg) -> OidcKey {
        OidcKey {
            pem: polis_gateway::oidc::keys::generate_pem(alg).unwrap(),
            alg,
            not_after: None,
        }
    }

    /// Its `kid` (the RFC 7638 thumbprint, as the gateway computes it).
    pub fn kid(&self) -> String {
        let (encoding, alg) = match self.alg {
            SigningAlg::EdDSA => (
                jsonwebtoken::EncodingKey::from_ed_pem(&self.pem).unwrap(),
                jsonwebtoken::Algorithm::EdDSA,
            ),
            SigningAlg::ES256 => (
                jsonwebtoken::EncodingKey::from_ec_pem(&self.pem).unwrap(),
                jsonwebtoken::Algorithm::ES256,
            ),
        };
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, alg).unwrap();
        polis_gateway::oidc::keys::jwk_thumbprint(&jwk).unwrap()
    }
}

/// What an Env with `oidc` configured.
#[derive(Debug, Clone)]
pub struct OidcEnv {
    /// The registered redirect URI (both clients).
    pub redirect_uri: String,
    /// The registered post-logout redirect URI (both clients).
    pub post_logout_uri: String,
    /// [`OIDC_CLIENT`]'s back-channel logout URI.
    pub backchannel: Option<String>,
    /// The signing keys in the gateway's config now, in order.
    pub keys: Vec<OidcKey>,
    /// [`OIDC_JWT_CLIENT`]'s Ed25519 private key (PEM), to sign client assertions.
    pub jwt_client_pem: Vec<u8>,
    /// `hmac-sha256:` of [`OIDC_SECRET`] under [`OIDC_SECRET_KEY`] ([`OIDC_CLIENT`]).
    secret_hash: String,
    /// The earlier argon2id hash of [`OIDC_SECRET`] ([`OIDC_RS_CLIENT`], still accepted).
    legacy_secret_hash: String,
    /// `refresh_token_ttl_seconds`, `refresh_family_lifetime_seconds`.
    refresh_lifetimes: (u64, u64),
}

/// The sender every Env's mail comes from.
pub const MAIL_FROM: &str = "noreply@istanze.example";

/// 64 random bytes, base64: the text of a `[session]` / `[cp]` key file.
fn random_key_text() -> String {
    let bytes: Vec<u8> = (0..64).map(|_| rand::random::<u8>()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A running gateway + mock IdP.
pub struct Env {
    /// Gateway base URL, e.g. `http://127.0.0.1:41234` (also its entityID).
    pub gw: String,
    /// `GET /metrics` of the gateway, when the config has `[metrics]`.
    pub metrics_url: Option<String>,
    /// Mock IdP base URL (also its entityID).
    pub idp: String,
    /// The mock CIE IdP's entityID (`<idp>/cie`).
    pub cie_idp: String,
    /// The mock FICEP eIDAS node's entityID (`<idp>/ficep`).
    pub ficep_idp: String,
    /// The state store the gateway uses.
    pub store: Arc<dyn StateStore>,
    /// The mock IdP's signing key (for crafting Responses in negative tests).
    pub idp_key: SigningKey,
    /// The federation, to register extra IdPs.
    pub federation: Arc<polis_gateway::federation::Federation>,
    /// Transaction-log directory.
    pub txlog_dir: PathBuf,
    /// The account store the gateway uses (`gateway.accounts`).
    pub accounts: Arc<dyn AccountStore>,
    /// The gateway's inactivity campaigns.
    pub campaign: Arc<polis_gateway::campaign::Campaign>,
    /// The gateway's abilitazione service.
    pub enablement: Arc<polis_gateway::enablement::EnablementService>,
    /// The generated configuration file (for the `polis-gateway` CLI).
    pub config_path: PathBuf,
    /// The outbox directory (used when no SMTP port was given).
    pub outbox_dir: PathBuf,
    /// The `[oidc]` section, when `EnvOptions::oidc`.
    pub oidc: Option<OidcEnv>,
    /// The clock of the gateway and the mock IdP (the system time plus what a test
    /// [`ManualClock::advance`]s): how tests move time.
    pub clock: Arc<ManualClock>,
    /// The config file without its `[oidc]` section.
    base_toml: String,
    mocks: MockFederation,
    gateway_task: Option<(JoinHandle<()>, oneshot::Sender<()>)>,
    tasks: Vec<JoinHandle<()>>,
    _tmp: tempfile::TempDir,
}

impl Drop for Env {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some((t, _)) = &self.gateway_task {
            t.abort();
        }
    }
}

/// Mints a fresh RSA-2048 test key pair for an IdP.
pub fn idp_key(cn: &str) -> (SigningKey, Vec<u8>, Vec<u8>) {
    let g = keygen::generate_idp_test_cert(cn, 30).unwrap();
    (
        SigningKey::from_pem(&g.key_pem, &g.cert_pem).unwrap(),
        g.key_pem,
        g.cert_pem,
    )
}

impl Env {
    /// Starts with defaults.
    pub async fn start(store: Arc<dyn StateStore>) -> Env {
        Self::start_with(store, EnvOptions::default()).await
    }

    /// Starts on the memory store with `/metrics` served ([`METRICS_TOML`]).
    pub async fn start_with_metrics(opts: EnvOptions) -> Env {
        let mut opts = opts;
        opts.extra_toml.push_str(METRICS_TOML);
        Env::start_with(Arc::new(MemoryStore::new()), opts).await
    }

    /// Starts with options.
    pub async fn start_with(store: Arc<dyn StateStore>, opts: EnvOptions) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let gw_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let idp_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gw = format!("http://{}", gw_listener.local_addr().unwrap());
        let idp = format!("http://{}", idp_listener.local_addr().unwrap());
        let sp_cert = keygen::generate(&CertRequest {
            sector: SpSector::Public,
            common_name: "MIM".into(),
            organization_name: "Ministero dell'Istruzione e del Merito".into(),
            entity_id: gw.clone(),
            organization_identifier: "PA:IT-m_pi".into(),
            country: "IT".into(),
            locality: "Roma".into(),
            key_bits: 2048,
            days: 30,
        })
        .unwrap();
        let (idp_key, idp_key_pem, idp_cert_pem) = idp_key("Mock IdP (integration tests)");
        let p = |name: &str| tmp.path().join(name);
        std::fs::write(p("sp.key"), &sp_cert.key_pem).unwrap();
        std::fs::write(p("sp.crt"), &sp_cert.cert_pem).unwrap();
        std::fs::write(p("idp.key"), &idp_key_pem).unwrap();
        std::fs::write(p("idp.crt"), &idp_cert_pem).unwrap();
        std::fs::write(p("session-cookie.key"), random_key_text()).unwrap();
        std::fs::write(p("cp-hmac.key"), random_key_text()).unwrap();
        let txlog_dir = p("txlog");
        let outbox_dir = p("outbox");
        let database_url = match &opts.database {
            Database::Sqlite => format!("sqlite://{}", p("polis.db").display()),
            Database::Postgres(url) => url.clone(),
        };
        let transport = match opts.smtp_port {
            Some(port) => {
                format!("kind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\nstarttls = \"none\"")
            }
            None => format!("kind = \"outbox\"\ndir = \"{}\"", outbox_dir.display()),
        };
        let toml = format!(
            r#"
environment = "{environment}"
data_dir = "{data_dir}"
[server]
listen = "{gw_addr}"
public_url = "{gw}"
[sp]
entity_id = "{gw}"
key_file = "{sp_key}"
cert_file = "{sp_crt}"
sector = "public"
request_ttl_seconds = {ttl}
[sp.organization]
name = "Ministero dell'Istruzione e del Merito"
display_name = "MIM"
url = "https://www.mim.gov.it"
[sp.contact]
email = "istanze.online@example.gov.it"
phone = "+390658491"
ipa_code = "m_pi"
[[sp.attribute_consuming_services]]
index = 0
name = "Istanze OnLine"
attributes = ["spidCode", "name", "familyName", "fiscalNumber", "email", "dateOfBirth"]
[federation]
allow_test_idps = true
[txlog]
dir = "{txlog}"
[mock_idp]
listen = "{idp_addr}"
public_url = "{idp}"
key_file = "{idp_key}"
cert_file = "{idp_crt}"
[database]
url = "{database_url}"
max_connections = 8
[session]
cookie_key_file = "{session_key}"
idle_timeout_seconds = {idle}
absolute_timeout_seconds = {absolute}
[cp]
hmac_key_file = "{cp_key}"
temp_cp_ttl_seconds = 259200
max_attempts = 5
lockout_seconds = 900
max_resends_per_day = 5
[mail]
from = {{ address = "{MAIL_FROM}", name = "Istanze OnLine" }}
[mail.transport]
{transport}
"#,
            gw_addr = gw.trim_start_matches("http://"),
            idp_addr = idp.trim_start_matches("http://"),
            sp_key = p("sp.key").display(),
            sp_crt = p("sp.crt").display(),
            idp_key = p("idp.key").display(),
            idp_crt = p("idp.crt").display(),
            txlog = txlog_dir.display(),
            ttl = opts.request_ttl_seconds,
            environment = opts.environment,
            data_dir = p("data").display(),
            session_key = p("session-cookie.key").display(),
            cp_key = p("cp-hmac.key").display(),
            idle = opts.session_timeouts.0,
            absolute = opts.session_timeouts.1,
        );
        let oidc = opts.oidc.then(|| OidcEnv {
            redirect_uri: opts
                .oidc_redirect_uri
                .clone()
                .unwrap_or_else(|| DEFAULT_REDIRECT_URI.to_owned()),
            post_logout_uri: opts
                .oidc_post_logout_uri
                .clone()
                .unwrap_or_else(|| DEFAULT_POST_LOGOUT_URI.to_owned()),
            backchannel: opts.oidc_backchannel.clone(),
            keys: vec![
                OidcKey::generate(SigningAlg::EdDSA),
                OidcKey::generate(SigningAlg::ES256),
            ],
            jwt_client_pem: polis_gateway::oidc::keys::generate_pem(SigningAlg::EdDSA).unwrap(),
            secret_hash: polis_gateway::secrets::client_secret_mac(OIDC_SECRET_KEY, OIDC_SECRET)
                .unwrap(),
            legacy_secret_hash: polis_gateway::secrets::hash_secret(OIDC_SECRET).unwrap(),
            refresh_lifetimes: opts.oidc_refresh_lifetimes,
        });
        // Every test client comes from 127.0.0.1: per-IP rates out of the way unless a
        // test sets its own.
        let rates = if opts.extra_toml.contains("[limits.rate]") {
            ""
        } else {
            "\n[limits.rate]\nlogin_per_minute = 1000000\nacs_per_minute = 1000000\n\
             slo_per_minute = 1000000\nsecret_forms_per_minute = 1000000\n\
             token_per_minute = 1000000\nburst = 100000\n"
        };
        let toml = toml + &opts.extra_toml + rates;
        let mut text = toml.clone();
        if let Some(oidc) = &oidc {
            text.push_str(&oidc_section(tmp.path(), oidc));
        }
        std::fs::write(p("config.toml"), text).unwrap();
        let cfg = Config::load_with_env(&[p("config.toml")], Vec::new()).unwrap();
        let clock = ManualClock::following_system();
        let mocks = app::build_mock_federation(&cfg, clock.clone()).unwrap();
        let running = spawn_gateway(&cfg, store.clone(), &mocks, gw_listener, clock.clone()).await;
        let idp_router = polis_gateway::mock_idp::federation_router(&mocks);
        let idp_limits = app::server_limits(&cfg);
        let tasks = vec![tokio::spawn(async move {
            let _ = polis_gateway::web::server::serve(
                idp_listener,
                idp_router,
                idp_limits,
                std::future::pending(),
            )
            .await;
        })];
        Env {
            gw,
            cie_idp: mocks.cie.entity_id().to_owned(),
            ficep_idp: mocks.ficep.entity_id().to_owned(),
            idp,
            store,
            idp_key,
            metrics_url: running.metrics_url,
            federation: running.federation,
            txlog_dir,
            accounts: running.accounts,
            campaign: running.campaign,
            enablement: running.enablement,
            config_path: p("config.toml"),
            outbox_dir,
            oidc,
            base_toml: toml,
            mocks,
            gateway_task: Some((running.task, running.stop)),
            tasks,
            clock,
            _tmp: tmp,
        }
    }

    /// Stops the gateway (gracefully: open connections are closed) and starts a new one
    /// on the same address, same state store, database and keys on disk, with `keys` as
    /// its `[[oidc.keys]]`. Use new HTTP clients afterwards.
    pub async fn restart_gateway_with_keys(&mut self, keys: Vec<OidcKey>) {
        let Some(oidc) = self.oidc.as_mut() else {
            panic!("restart_gateway_with_keys needs EnvOptions::oidc");
        };
        oidc.keys = keys;
        let oidc = oidc.clone();
        let oidc = &oidc;
        let (task, stop) = self.gateway_task.take().unwrap();
        let _ = stop.send(());
        tokio::time::timeout(std::time::Duration::from_secs(10), task)
            .await
            .expect("the old gateway stops within 10 s")
            .unwrap();
        let listener = TcpListener::bind(self.gw.trim_start_matches("http://"))
            .await
            .unwrap();
        let mut text = self.base_toml.clone();
        text.push_str(&oidc_section(self._tmp.path(), oidc));
        std::fs::write(&self.config_path, text).unwrap();
        let cfg =
            Config::load_with_env(std::slice::from_ref(&self.config_path), Vec::new()).unwrap();
        let running = spawn_gateway(
            &cfg,
            self.store.clone(),
            &self.mocks,
            listener,
            self.clock.clone(),
        )
        .await;
        self.federation = running.federation;
        self.accounts = running.accounts;
        self.campaign = running.campaign;
        self.enablement = running.enablement;
        self.metrics_url = running.metrics_url;
        self.gateway_task = Some((running.task, running.stop));
    }

    /// Starts a second gateway as its own OS process: the built `polis-gateway serve`
    /// with this Env's configuration (same SP keys, account database, session-cookie and
    /// CP keys, `[oidc]` if any) on another port, with `[state]` = the Redis at
    /// `redis_url`. This Env's gateway must use that same Redis; a browser's session
    /// cookie is then good on both (cookies do not depend on the port). Returns once the
    /// process answers `/healthz`; dropping the handle kills it.
    pub async fn start_gateway_process(&self, redis_url: &str) -> GatewayProcess {
        let listen = format!("127.0.0.1:{}", super::free_port());
        let own = format!("listen = \"{}\"", self.gw.trim_start_matches("http://"));
        assert!(self.base_toml.contains(&own), "the [server] listen line");
        let mut text = self
            .base_toml
            .replace(&own, &format!("listen = \"{listen}\""));
        if let Some(oidc) = &self.oidc {
            text.push_str(&oidc_section(self._tmp.path(), oidc));
        }
        text.push_str(&format!(
            "\n[state]\nbackend = \"redis\"\n[state.redis]\nurls = [\"{redis_url}\"]\n"
        ));
        let n = std::fs::read_dir(self._tmp.path()).unwrap().count();
        let config = self._tmp.path().join(format!("gateway-process-{n}.toml"));
        std::fs::write(&config, text).unwrap();
        let log = std::fs::File::create(config.with_extension("log")).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_polis-gateway"))
            .arg("serve")
            .arg("-c")
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start polis-gateway serve");
        let process = GatewayProcess {
            url: format!("http://{listen}"),
            log: config.with_extension("log"),
            child,
        };
        let health = format!("{}/healthz", process.url);
        super::eventually(
            std::time::Duration::from_secs(30),
            "the gateway process to answer /healthz",
            || {
                let health = health.clone();
                async move {
                    let ok = reqwest::get(&health)
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    ok.then_some(())
                }
            },
        )
        .await;
        process
    }

    /// A browser-like client: cookies kept, redirects NOT followed (tests look at each hop).
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            // The gateway closes a kept-alive connection idle for
            // `limits.header_read_timeout_seconds` (10 s): like a browser, never reuse one
            // that old (a POST on a connection the server is closing fails).
            .pool_idle_timeout(std::time::Duration::from_secs(5))
            .build()
            .unwrap()
    }

    /// The login link for the mock IdP.
    pub fn login_url(&self, level: u8, binding: &str) -> String {
        format!(
            "{}/login?idp={}&level={level}&binding={binding}",
            self.gw,
            binding::encode_component(&self.idp)
        )
    }

    /// Starts a login at the gateway (Redirect binding) and returns the AuthnRequest
    /// ID and RelayState the gateway recorded, without visiting the IdP.
    pub async fn start_login(&self, client: &reqwest::Client, level: u8) -> Pending {
        self.start_login_at(client, &self.idp.clone(), level).await
    }

    /// [`start_login`](Self::start_login) to the IdP `idp` (any trusted entityID).
    pub async fn start_login_at(&self, client: &reqwest::Client, idp: &str, level: u8) -> Pending {
        let url = format!(
            "{}/login?idp={}&level={level}&binding=redirect",
            self.gw,
            binding::encode_component(idp)
        );
        let resp = client.get(url).send().await.unwrap();
        assert_eq!(resp.status(), 302);
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        let query = location.split_once('?').unwrap().1;
        let params = binding::parse_query(query).unwrap();
        let get = |n: &str| params.iter().find(|p| p.name == n).unwrap().value.clone();
        let xml_text = binding::inflate_base64(&get("SAMLRequest"), 1 << 20).unwrap();
        let root = xml::parse(&xml_text, xml::Limits::default()).unwrap();
        Pending {
            request_id: root.attr("ID").unwrap().to_owned(),
            issue_instant: root.attr("IssueInstant").unwrap().to_owned(),
            relay_state: get("RelayState"),
            location,
        }
    }

    /// Walks the whole login through the mock IdP and returns what the IdP posts back
    /// (not yet sent to the ACS). `outcome` is `success` or an error code like `19`.
    pub async fn idp_answer(
        &self,
        client: &reqwest::Client,
        level: u8,
        binding_name: &str,
        user: &str,
        outcome: &str,
    ) -> IdpAnswer {
        let resp = client
            .get(self.login_url(level, binding_name))
            .send()
            .await
            .unwrap();
        self.idp_answer_from(client, resp, level, user, outcome)
            .await
    }

    /// From the gateway's answer to `GET /login?idp=…` (302 for the Redirect binding,
    /// the auto-submitting form for POST), the login at the mock IdP as `user` at
    /// `level`; returns what the IdP posts back (not yet sent to the ACS).
    pub async fn idp_answer_from(
        &self,
        client: &reqwest::Client,
        resp: reqwest::Response,
        level: u8,
        user: &str,
        outcome: &str,
    ) -> IdpAnswer {
        let login_page = match resp.status().as_u16() {
            302 => {
                let location = resp.headers()["location"].to_str().unwrap().to_owned();
                assert!(location.starts_with(&self.idp), "{location}");
                client.get(location).send().await.unwrap()
            }
            200 => {
                let html = resp.text().await.unwrap();
                let action = attr_value(&html, "action");
                client
                    .post(action)
                    .form(&[
                        ("SAMLRequest", form_value(&html, "SAMLRequest")),
                        ("RelayState", form_value(&html, "RelayState")),
                    ])
                    .send()
                    .await
                    .unwrap()
            }
            s => panic!("unexpected /login status {s}"),
        };
        self.answer_at_login_page(client, login_page, level, user, outcome)
            .await
    }

    /// The login of a started login (its Redirect URL to the mock IdP) as `user` at
    /// `level`; returns what the IdP posts back (not yet sent to the ACS).
    pub async fn idp_answer_for(
        &self,
        client: &reqwest::Client,
        pending: &Pending,
        level: u8,
        user: &str,
        outcome: &str,
    ) -> IdpAnswer {
        let login_page = client.get(&pending.location).send().await.unwrap();
        self.answer_at_login_page(client, login_page, level, user, outcome)
            .await
    }

    /// At the mock IdP's login page: choose `user`, `level` and `outcome`.
    async fn answer_at_login_page(
        &self,
        client: &reqwest::Client,
        login_page: reqwest::Response,
        level: u8,
        user: &str,
        outcome: &str,
    ) -> IdpAnswer {
        assert_eq!(login_page.status(), 200, "mock IdP login page");
        // The form posts to `login` next to the SSO endpoint (`/sso`, `/cie/sso`, …).
        let page_url = login_page.url().as_str().to_owned();
        let idp_base = page_url.split("/sso").next().unwrap().to_owned();
        let html = login_page.text().await.unwrap();
        let token = form_value(&html, "token");
        let answer = client
            .post(format!("{idp_base}/login"))
            .form(&[
                ("token", token.as_str()),
                ("user", user),
                ("level", &level.to_string()),
                ("outcome", outcome),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "mock IdP answer");
        let html = answer.text().await.unwrap();
        assert_eq!(attr_value(&html, "action"), format!("{}/acs", self.gw));
        IdpAnswer {
            saml_response: form_value(&html, "SAMLResponse"),
            relay_state: form_value(&html, "RelayState"),
        }
    }

    /// Posts a Response to the ACS, as the browser would.
    pub async fn post_acs(
        &self,
        client: &reqwest::Client,
        saml_response: &str,
        relay_state: &str,
    ) -> reqwest::Response {
        let acs = client
            .post(format!("{}/acs", self.gw))
            .form(&[("SAMLResponse", saml_response), ("RelayState", relay_state)])
            .send()
            .await
            .unwrap();
        self.complete(client, acs).await
    }

    /// After the ACS: follows its 303 to `/login/complete` with the same client (the
    /// browser that started the login), as a browser does; any other answer is returned
    /// as it is. The returned response carries the ACS request's id as
    /// `x-acs-request-id` (the transaction log records that one).
    pub async fn complete(
        &self,
        client: &reqwest::Client,
        acs: reqwest::Response,
    ) -> reqwest::Response {
        let location = acs
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if acs.status() != 303 || !location.starts_with("/login/complete?") {
            return acs;
        }
        let acs_id = acs.headers().get("x-request-id").cloned();
        let mut r = client
            .get(format!("{}{location}", self.gw))
            .send()
            .await
            .unwrap();
        if let Some(id) = acs_id {
            r.headers_mut().insert("x-acs-request-id", id);
        }
        r
    }

    /// Posts raw XML (base64-encoded here) to the ACS.
    pub async fn post_acs_xml(
        &self,
        client: &reqwest::Client,
        xml_text: &str,
        relay_state: &str,
    ) -> reqwest::Response {
        let b64 = base64::engine::general_purpose::STANDARD.encode(xml_text);
        self.post_acs(client, &b64, relay_state).await
    }

    /// The home page as the client sees it.
    pub async fn home(&self, client: &reqwest::Client) -> String {
        client
            .get(format!("{}/", self.gw))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A full login through the mock IdP at level 2 (Redirect binding) as the test user
    /// `user` (the mock IdP's `user` value: a codice fiscale of `TEST_USERS`); returns
    /// the ACS response.
    pub async fn login(&self, client: &reqwest::Client, user: &str) -> reqwest::Response {
        let answer = self
            .idp_answer(client, 2, "redirect", user, "success")
            .await;
        self.post_acs(client, &answer.saml_response, &answer.relay_state)
            .await
    }

    /// [`login`](Self::login) at the mock IdP `idp` (`self.idp`, `self.cie_idp` or
    /// `self.ficep_idp`), `user` one of its test persons (codice fiscale, or the eIDAS
    /// identifier at FICEP).
    pub async fn login_at(
        &self,
        client: &reqwest::Client,
        idp: &str,
        user: &str,
    ) -> reqwest::Response {
        let url = format!(
            "{}/login?idp={}&level=2&binding=redirect",
            self.gw,
            binding::encode_component(idp)
        );
        let resp = client.get(url).send().await.unwrap();
        let answer = self.idp_answer_from(client, resp, 2, user, "success").await;
        self.post_acs(client, &answer.saml_response, &answer.relay_state)
            .await
    }

    /// The account an identity is linked to.
    pub async fn account_by_identity(&self, scheme: Scheme, subject: &str) -> Option<Account> {
        self.accounts
            .find_by_identity(&IdentityKey::new(scheme, subject))
            .await
            .unwrap()
    }

    /// GETs `path` and returns the status and the body.
    pub async fn get(&self, client: &reqwest::Client, path: &str) -> (u16, String) {
        let resp = client
            .get(format!("{}{path}", self.gw))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    /// The CSRF token on the page `page` (asserted 200).
    pub async fn csrf_of(&self, client: &reqwest::Client, page: &str) -> String {
        let (status, html) = self.get(client, page).await;
        assert_eq!(status, 200, "GET {page}: {html}");
        csrf(&html)
    }

    /// Posts `fields` to `path` as a form, exactly as given (no token added).
    pub async fn post_raw(
        &self,
        client: &reqwest::Client,
        path: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        client
            .post(format!("{}{path}", self.gw))
            .form(fields)
            .send()
            .await
            .unwrap()
    }

    /// Like a browser submitting a form: GETs the page that carries the form for `path`
    /// (the page itself, or for POST-only actions the page with that button: `/` for
    /// `/logout`, `/abilitazione/cambio-cp` for `/abilitazione/reinvio`,
    /// `/area-riservata` for `/area-riservata/dati`, `/assistenza` for the search, the
    /// account page for a help-desk action), reads its `csrf` token, and posts
    /// `fields` plus the token.
    pub async fn post_form(
        &self,
        client: &reqwest::Client,
        path: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let token = self.csrf_of(client, form_page(path)).await;
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf", &token));
        self.post_raw(client, path, &all).await
    }

    /// The account of a codice fiscale, read from the store the gateway uses.
    pub async fn account(&self, fiscal_code: &str) -> Option<Account> {
        self.accounts
            .find_by_fiscal_code(&FiscalCode::parse(fiscal_code).unwrap())
            .await
            .unwrap()
    }

    /// Runs the built `polis-gateway` binary with `args` followed by `-c <config>`.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_polis-gateway"))
            .args(args)
            .arg("-c")
            .arg(&self.config_path)
            .output()
            .expect("run polis-gateway")
    }

    // -----------------------------------------------------------------------------
    // OpenID Connect (EnvOptions::oidc)
    // -----------------------------------------------------------------------------

    /// The `[oidc]` settings of this Env (panics without `EnvOptions::oidc`).
    pub fn oidc(&self) -> &OidcEnv {
        self.oidc.as_ref().expect("EnvOptions::oidc")
    }

    /// `<gateway>/oidc/authorize?<params>`.
    pub fn authorize_url(&self, params: &[(&str, &str)]) -> String {
        format!(
            "{}/oidc/authorize?{}",
            self.gw,
            serde_urlencoded::to_string(params).unwrap()
        )
    }

    /// The authorization request parameters of [`OIDC_CLIENT`] with PKCE S256 for
    /// `challenge`, `state` and `nonce`; tests change or remove entries.
    pub fn authorize_params(&self, challenge: &str) -> Vec<(&'static str, String)> {
        vec![
            ("response_type", "code".to_owned()),
            ("client_id", OIDC_CLIENT.to_owned()),
            ("redirect_uri", self.oidc().redirect_uri.clone()),
            ("scope", "openid profile email istanze".to_owned()),
            ("state", "st-4711".to_owned()),
            ("nonce", "n-0815".to_owned()),
            ("code_challenge", challenge.to_owned()),
            ("code_challenge_method", "S256".to_owned()),
        ]
    }

    /// Like a browser: GETs `url` and follows the gateway's redirects through the
    /// OIDC authorization. Whenever the gateway sends the browser to `/login` (no IdP
    /// chosen), the person picks the mock IdP and logs in there as `user` at `level`
    /// (the IdP's answer goes to the ACS, whose 303 is followed). Stops at the first
    /// answer that is not a redirect to `/oidc/authorize…` or `/login`: the client's
    /// redirect URI, `/oidc/cp`, `/abilitazione`, or a page.
    pub async fn oidc_browse(
        &self,
        client: &reqwest::Client,
        url: &str,
        user: &str,
        level: u8,
    ) -> Hop {
        self.oidc_browse_at(client, url, &self.idp.clone(), user, level)
            .await
    }

    /// [`oidc_browse`](Self::oidc_browse), logging in at the mock IdP `idp`.
    pub async fn oidc_browse_at(
        &self,
        client: &reqwest::Client,
        url: &str,
        idp: &str,
        user: &str,
        level: u8,
    ) -> Hop {
        let base = reqwest::Url::parse(&self.gw).unwrap();
        let mut url = base.join(url).unwrap();
        let mut logins = Vec::new();
        for _ in 0..30 {
            let resp = client.get(url.clone()).send().await.unwrap();
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get("location")
                .map(|l| base.join(l.to_str().unwrap()).unwrap());
            let internal = location.as_ref().filter(|l| {
                l.origin() == base.origin()
                    && (l.path().starts_with("/oidc/authorize") || l.path() == "/login")
            });
            let Some(next) = internal.cloned() else {
                return Hop {
                    status,
                    location: location.map(String::from),
                    body: resp.text().await.unwrap(),
                    logins,
                };
            };
            if next.path() == "/login" {
                assert!(logins.len() < 3, "login loop: {logins:?}");
                logins.push(next.to_string());
                let mut pick = next.clone();
                pick.query_pairs_mut().append_pair("idp", idp);
                let resp = client.get(pick).send().await.unwrap();
                let answer = self
                    .idp_answer_from(client, resp, level, user, "success")
                    .await;
                let acs = self
                    .post_acs(client, &answer.saml_response, &answer.relay_state)
                    .await;
                let status = acs.status().as_u16();
                let to = acs
                    .headers()
                    .get("location")
                    .map(|l| l.to_str().unwrap().to_owned());
                let body = acs.text().await.unwrap();
                assert_eq!(status, 303, "ACS after the OIDC login: {body}");
                url = base.join(&to.unwrap()).unwrap();
            } else {
                url = next;
            }
        }
        panic!("more than 30 redirects from {url}");
    }

    /// A whole authorization as `user` (logging in at level 2 if the gateway asks):
    /// asserts the 303 to the redirect URI with `state` and `iss`, returns the code.
    pub async fn oidc_authorize(
        &self,
        client: &reqwest::Client,
        user: &str,
        params: &[(&str, &str)],
    ) -> String {
        let hop = self
            .oidc_browse(client, &self.authorize_url(params), user, 2)
            .await;
        self.code_of(&hop, params)
    }

    /// The code of a hop that must be the redirect to the client with `code`, the
    /// request's `state` and our `iss`.
    pub fn code_of(&self, hop: &Hop, params: &[(&str, &str)]) -> String {
        let redirect_uri = params
            .iter()
            .find(|(k, _)| *k == "redirect_uri")
            .map_or(self.oidc().redirect_uri.as_str(), |(_, v)| *v);
        let location = hop.location.clone().unwrap_or_default();
        assert!(
            hop.status == 303 && location.starts_with(&format!("{redirect_uri}?")),
            "expected 303 to {redirect_uri}, got {} {location:?}: {}",
            hop.status,
            hop.body
        );
        let query = hop.query();
        assert_eq!(query.get("error"), None, "{location}");
        let state = params.iter().find(|(k, _)| *k == "state").map(|(_, v)| *v);
        assert_eq!(query.get("state").map(String::as_str), state, "{location}");
        assert_eq!(query.get("iss"), Some(&self.gw), "{location}");
        query.get("code").cloned().expect("a code")
    }

    /// POSTs `form` to `path` (an OIDC token-style endpoint) with `auth`.
    pub async fn oidc_post(&self, path: &str, form: &[(&str, &str)], auth: &Auth) -> Reply {
        let mut fields: Vec<(String, String)> = form
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut request = reqwest::Client::new().post(format!("{}{path}", self.gw));
        match auth {
            Auth::Basic(id, secret) => request = request.basic_auth(id, Some(secret)),
            Auth::Post(id, secret) => {
                fields.push(("client_id".into(), id.clone()));
                fields.push(("client_secret".into(), secret.clone()));
            }
            Auth::Assertion(assertion) => {
                fields.push((
                    "client_assertion_type".into(),
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                ));
                fields.push(("client_assertion".into(), assertion.clone()));
            }
            Auth::None => {}
        }
        let resp = request.form(&fields).send().await.unwrap();
        Reply::read(resp).await
    }

    /// `POST /oidc/token`.
    pub async fn token(&self, form: &[(&str, &str)], auth: &Auth) -> Reply {
        self.oidc_post("/oidc/token", form, auth).await
    }

    /// Exchanges `code` for [`OIDC_CLIENT`] (Basic); asserts 200, returns the tokens.
    pub async fn exchange(&self, code: &str, verifier: &str) -> serde_json::Value {
        let reply = self.exchange_as(code, verifier, &Auth::app()).await;
        assert_eq!(reply.status, 200, "token: {}", reply.json);
        reply.json
    }

    /// `POST /oidc/token` exchanging `code` (with its PKCE `verifier`, the registered
    /// redirect URI) as the client `auth` authenticates; the reply as it is.
    pub async fn exchange_as(&self, code: &str, verifier: &str, auth: &Auth) -> Reply {
        self.token(
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &self.oidc().redirect_uri),
                ("code_verifier", verifier),
            ],
            auth,
        )
        .await
    }

    /// `POST /oidc/introspect` as [`OIDC_CLIENT`]; asserts 200, returns the answer.
    pub async fn introspect(&self, token: &str) -> serde_json::Value {
        let reply = self
            .oidc_post("/oidc/introspect", &[("token", token)], &Auth::app())
            .await;
        assert_eq!(reply.status, 200, "introspect: {}", reply.json);
        reply.json
    }

    /// `POST /oidc/introspect` as the client of `auth`; asserts 200, returns the answer.
    pub async fn introspect_as(&self, token: &str, auth: &Auth) -> serde_json::Value {
        let reply = self
            .oidc_post("/oidc/introspect", &[("token", token)], auth)
            .await;
        assert_eq!(reply.status, 200, "introspect: {}", reply.json);
        reply.json
    }

    /// `GET /oidc/userinfo` with `access_token`.
    pub async fn userinfo(&self, access_token: &str) -> Reply {
        let resp = reqwest::Client::new()
            .get(format!("{}/oidc/userinfo", self.gw))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap();
        Reply::read(resp).await
    }

    /// A `private_key_jwt` assertion of [`OIDC_JWT_CLIENT`] for `aud`, valid 2 minutes.
    pub fn client_assertion(&self, aud: &str) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(OIDC_JWT_CLIENT_KID.to_owned());
        let claims = serde_json::json!({
            "iss": OIDC_JWT_CLIENT,
            "sub": OIDC_JWT_CLIENT,
            "aud": aud,
            "iat": now,
            "exp": now + 120,
            "jti": polis_gateway::saml::ids::new_token(16),
        });
        let key = jsonwebtoken::EncodingKey::from_ed_pem(&self.oidc().jwt_client_pem).unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    /// A new person goes through the whole abilitazione (an Env without `smtp_port`: the
    /// temporary CP is read from the outbox) with the chosen
    /// CP `cp`; `client` keeps the level-2 session of that login.
    pub async fn enable_account(&self, client: &reqwest::Client, user: &str, cp: &str) {
        assert!(self.account(user).await.is_none(), "{user} is new");
        self.enable_account_at(client, &self.idp.clone(), user, cp)
            .await;
        let account = self.account(user).await.unwrap();
        assert_eq!(
            account.enablement_state,
            polis_gateway::accounts::EnablementState::Enabled
        );
    }

    /// A new person at the mock IdP `idp` goes through the abilitazione up to the mail
    /// of the temporary CP (an Env without `smtp_port`); returns that CP. `client`
    /// keeps the level-2 session of that login.
    pub async fn until_temp_cp_sent_at(
        &self,
        client: &reqwest::Client,
        idp: &str,
        user: &str,
    ) -> String {
        let r = self.login_at(client, idp, user).await;
        expect_303(r, "/abilitazione", "first login").await;
        let local: String = user
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '.' })
            .collect();
        let email = format!("{local}@posta.example.it");
        let fields = [
            ("email", email.as_str()),
            ("mobile", "+39 333 7654321"),
            ("landline", ""),
            ("street", "Via dei Mille 5"),
            ("postal_code", "20124"),
            ("municipality", "Milano"),
            ("province", "MI"),
            ("nation", "Italia"),
            ("doc_kind", "Carta d'identità"),
            ("doc_number", "CA98765ZZ"),
            ("doc_issuer", "Comune di Milano"),
            ("doc_issued_on", "2021-03-15"),
            ("doc_expires_on", "2099-03-15"),
            // Asked only of the logins that did not vouch for them (eIDAS), and
            // ignored otherwise.
            ("birth_date", "1990-05-04"),
            ("birth_place", "Madrid, Spagna"),
            ("sex", "F"),
        ];
        let r = self
            .post_form(client, "/abilitazione/richiesta", &fields)
            .await;
        expect_303(r, "/abilitazione/domanda", "richiesta").await;
        let answer = "Dell'Orto";
        let r = self
            .post_form(
                client,
                "/abilitazione/domanda",
                &[
                    ("question", "Cognome da nubile della madre"),
                    ("answer", answer),
                    ("answer_repeat", answer),
                ],
            )
            .await;
        expect_303(r, "/abilitazione/riepilogo", "domanda").await;
        let r = self.post_form(client, "/abilitazione/riepilogo", &[]).await;
        expect_303(r, "/abilitazione/adesione", "riepilogo").await;
        let before = self.outbox_messages().len();
        let r = self.post_form(client, "/abilitazione/adesione", &[]).await;
        expect_303(r, "/abilitazione/inviata", "adesione").await;
        let mails = super::eventually(
            std::time::Duration::from_secs(10),
            "the temporary CP message",
            || {
                let mails = self.outbox_messages();
                std::future::ready((mails.len() > before).then_some(mails))
            },
        )
        .await;
        let text = mails.last().unwrap().text.clone().unwrap_or_default();
        temp_cp_in(&text)
    }

    /// [`enable_account`](Self::enable_account) for a new person logging in at the mock
    /// IdP `idp` (any scheme); the e-mail is derived from `user`.
    pub async fn enable_account_at(
        &self,
        client: &reqwest::Client,
        idp: &str,
        user: &str,
        cp: &str,
    ) {
        let temp = self.until_temp_cp_sent_at(client, idp, user).await;
        let r = self
            .post_form(
                client,
                "/abilitazione/cambio-cp",
                &[("temp_cp", &temp), ("new_cp", cp), ("new_cp_repeat", cp)],
            )
            .await;
        // A waiting authorization may continue instead of the completion page.
        assert_eq!(r.status(), 303, "cambio-cp");
    }

    /// Every message in the outbox (oldest first), parsed by Python's `email` package.
    pub fn outbox_messages(&self) -> Vec<ReceivedMail> {
        outbox_messages(&self.outbox_dir)
    }

    /// Every record written to the transaction log so far.
    pub fn txlog_records(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        if let Ok(dir) = std::fs::read_dir(&self.txlog_dir) {
            for f in dir.flatten() {
                for line in std::fs::read_to_string(f.path()).unwrap().lines() {
                    out.push(serde_json::from_str(line).unwrap());
                }
            }
        }
        out
    }
}

/// A gateway running as a child process ([`Env::start_gateway_process`]); killed on drop.
pub struct GatewayProcess {
    /// Its base URL, e.g. `http://127.0.0.1:41235`.
    pub url: String,
    /// Its log (stdout and stderr), printed when a test panics while it runs.
    log: PathBuf,
    child: std::process::Child,
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- {} log ---\n{log}", self.url);
        }
    }
}

/// A gateway being served.
struct RunningGateway {
    task: JoinHandle<()>,
    stop: oneshot::Sender<()>,
    federation: Arc<polis_gateway::federation::Federation>,
    accounts: Arc<dyn AccountStore>,
    campaign: Arc<polis_gateway::campaign::Campaign>,
    enablement: Arc<polis_gateway::enablement::EnablementService>,
    /// `http://127.0.0.1:<port>/metrics` when the config has `[metrics]`.
    metrics_url: Option<String>,
}

/// Builds the gateway from `cfg`, trusting `mock`, and serves it on `listener` until
/// `stop` is sent (graceful: open connections are closed first).
async fn spawn_gateway(
    cfg: &Config,
    store: Arc<dyn StateStore>,
    mocks: &MockFederation,
    listener: TcpListener,
    clock: Arc<ManualClock>,
) -> RunningGateway {
    let gateway = app::build_gateway(cfg, store.clone(), clock).await.unwrap();
    app::trust_mock_federation(cfg, &gateway.federation, mocks).unwrap();
    mocks
        .add_sp(
            &gateway.metadata,
            gateway.cie_metadata.as_deref().map(String::as_str),
        )
        .unwrap();
    if gateway.metrics.is_some() {
        // As `serve` does (spawn_jobs), more often: the dependency gauges.
        app::spawn_dependency_probe(&gateway, store, std::time::Duration::from_millis(100));
    }
    let router = gateway.router;
    let limits = app::server_limits(cfg);
    // `[metrics]`: its router on a loopback port of its own (the configured address is
    // only a placeholder here), served until the test ends.
    let metrics_url = match gateway.metrics {
        Some(metrics) => {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/metrics", l.local_addr().unwrap());
            tokio::spawn(async move {
                let _ =
                    polis_gateway::web::server::serve(l, metrics, limits, std::future::pending())
                        .await;
            });
            Some(url)
        }
        None => None,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = polis_gateway::web::server::serve(listener, router, limits, async {
            let _ = stopped.await;
        })
        .await;
    });
    RunningGateway {
        task,
        stop,
        federation: gateway.federation,
        accounts: gateway.accounts,
        campaign: gateway.campaign,
        enablement: gateway.enablement,
        metrics_url,
    }
}

/// TEST server key of the client-secret MACs (`oidc.client_secret_key_file`).
pub const OIDC_SECRET_KEY: &[u8] = b"TEST client-secret MAC key, not for use anywhere else";

/// The `[oidc]` section for `oidc` (key and JWKS files written to the temp dir).
fn oidc_section(dir: &Path, oidc: &OidcEnv) -> String {
    let secret_key = dir.join("oidc-client-secret.key");
    std::fs::write(&secret_key, OIDC_SECRET_KEY).unwrap();
    let mut out = format!(
        "\n[oidc]\naccess_token_ttl_seconds = 300\nid_token_ttl_seconds = 300\n\
         refresh_token_ttl_seconds = {}\nrefresh_family_lifetime_seconds = {}\n\
         code_ttl_seconds = 60\nclient_secret_key_file = \"{}\"\n",
        oidc.refresh_lifetimes.0,
        oidc.refresh_lifetimes.1,
        secret_key.display()
    );
    for (n, key) in oidc.keys.iter().enumerate() {
        let file = dir.join(format!("oidc-key-{n}.pem"));
        std::fs::write(&file, &key.pem).unwrap();
        out.push_str(&format!(
            "[[oidc.keys]]\nfile = \"{}\"\nalg = \"{}\"\n",
            file.display(),
            key.alg
        ));
        if let Some(t) = key.not_after {
            out.push_str(&format!("not_after = \"{}\"\n", t.to_rfc3339()));
        }
    }
    // The private_key_jwt client's public key, as its JWKS file.
    let encoding = jsonwebtoken::EncodingKey::from_ed_pem(&oidc.jwt_client_pem).unwrap();
    let mut jwk =
        jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, jsonwebtoken::Algorithm::EdDSA)
            .unwrap();
    jwk.common.key_id = Some(OIDC_JWT_CLIENT_KID.to_owned());
    let jwks_file = dir.join("app-jwt.jwks.json");
    std::fs::write(
        &jwks_file,
        serde_json::to_vec(&jsonwebtoken::jwk::JwkSet { keys: vec![jwk] }).unwrap(),
    )
    .unwrap();
    let backchannel = oidc
        .backchannel
        .as_ref()
        .map(|uri| format!("backchannel_logout_uri = \"{uri}\"\n"))
        .unwrap_or_default();
    out.push_str(&format!(
        r#"[[oidc.clients]]
client_id = "{OIDC_CLIENT}"
name = "App di prova"
secret_hash = "{hash}"
redirect_uris = ["{redirect}"]
post_logout_redirect_uris = ["{post_logout}"]
scopes = ["openid", "profile", "email", "istanze"]
{backchannel}allow_in_enablement = false
id_token_alg = "EdDSA"
[[oidc.clients]]
client_id = "{OIDC_JWT_CLIENT}"
jwks_file = "{jwks}"
redirect_uris = ["{redirect}"]
post_logout_redirect_uris = ["{post_logout}"]
allow_in_enablement = false
id_token_alg = "ES256"
[[oidc.clients]]
client_id = "{OIDC_RS_CLIENT}"
name = "Servizio di prova"
secret_hash = "{legacy}"
redirect_uris = ["{redirect}"]
introspect_for = ["{OIDC_CLIENT}"]
allow_in_enablement = true
"#,
        hash = oidc.secret_hash,
        legacy = oidc.legacy_secret_hash,
        redirect = oidc.redirect_uri,
        post_logout = oidc.post_logout_uri,
        jwks = jwks_file.display(),
    ));
    out
}

/// Client authentication at a token-style endpoint.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `client_secret_basic`.
    Basic(String, String),
    /// `client_secret_post`.
    Post(String, String),
    /// `private_key_jwt`: the assertion.
    Assertion(String),
    /// Nothing.
    None,
}

impl Auth {
    /// [`OIDC_CLIENT`] with its secret, Basic.
    pub fn app() -> Auth {
        Auth::Basic(OIDC_CLIENT.to_owned(), OIDC_SECRET.to_owned())
    }
}

/// A JSON answer of an OIDC endpoint.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body as JSON (`Null` if it is not JSON).
    pub json: serde_json::Value,
}

impl Reply {
    async fn read(resp: reqwest::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        Reply {
            status,
            headers,
            json: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        }
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

/// Where [`Env::oidc_browse`] stopped.
#[derive(Debug)]
pub struct Hop {
    /// HTTP status of the last answer.
    pub status: u16,
    /// Its `Location`, made absolute.
    pub location: Option<String>,
    /// Its body.
    pub body: String,
    /// The gateway `/login` URLs the browser was sent to (one SPID login each).
    pub logins: Vec<String>,
}

impl Hop {
    /// The query parameters of the `Location`.
    pub fn query(&self) -> std::collections::HashMap<String, String> {
        let location = self.location.as_deref().unwrap_or_default();
        reqwest::Url::parse(location)
            .map(|u| u.query_pairs().into_owned().collect())
            .unwrap_or_default()
    }

    /// The path of the `Location` (`None` without one).
    pub fn location_path(&self) -> Option<String> {
        let location = self.location.as_deref()?;
        reqwest::Url::parse(location)
            .ok()
            .map(|u| u.path().to_owned())
    }
}

/// A PKCE pair: `(verifier, S256 challenge)`.
pub fn pkce() -> (String, String) {
    let verifier = polis_gateway::saml::ids::new_token(48);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(openssl::sha::sha256(verifier.as_bytes()));
    (verifier, challenge)
}

/// `(k, v)` pairs as borrowed pairs, for the helpers that take `&[(&str, &str)]`.
pub fn pairs<'a>(params: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    params.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Asserts a 303 whose `Location` path is `to`.
async fn expect_303(r: reqwest::Response, to: &str, what: &str) {
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = r.text().await.unwrap();
    let path = location.split('?').next().unwrap_or_default();
    assert_eq!(
        (status, path),
        (303, to),
        "{what}: expected 303 to {to}, got {location:?}:\n{body}"
    );
}

/// A login started at the gateway.
#[derive(Debug, Clone)]
pub struct Pending {
    /// AuthnRequest ID.
    pub request_id: String,
    /// AuthnRequest IssueInstant.
    pub issue_instant: String,
    /// RelayState.
    pub relay_state: String,
    /// The Redirect URL to the IdP.
    pub location: String,
}

/// What the IdP posts back.
#[derive(Debug, Clone)]
pub struct IdpAnswer {
    /// Base64 Response.
    pub saml_response: String,
    /// RelayState.
    pub relay_state: String,
}

impl IdpAnswer {
    /// The ID of the AuthnRequest the Response answers (its `InResponseTo`).
    pub fn in_response_to(&self) -> String {
        self.xml()
            .split("InResponseTo=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a Response with InResponseTo")
            .to_owned()
    }

    /// The decoded Response XML.
    pub fn xml(&self) -> String {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(&self.saml_response)
                .unwrap(),
        )
        .unwrap()
    }
}

/// Undoes HTML escaping as askama writes it: the named entities `lt`, `gt`, `amp`,
/// `quot`, `apos` and decimal or hex character references; anything else is kept as it
/// is.
pub fn unescape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                    .map(|hex| u32::from_str_radix(hex, 16))
                    .or_else(|| entity.strip_prefix('#').map(str::parse::<u32>))
                    .and_then(Result::ok)
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, end + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The `value` of the `<input name="…">` of a page (whatever the attribute order),
/// unescaped; `None` without such an input.
pub fn input_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    let tag = &html[start..end];
    let v = tag.find("value=\"")? + "value=\"".len();
    let len = tag[v..].find('"')?;
    Some(unescape_html(&tag[v..v + len]))
}

/// The `value` of the input named `name` in a page (panics without one).
pub fn form_value(html: &str, name: &str) -> String {
    input_value(html, name).unwrap_or_else(|| panic!("no input {name} in page:\n{html}"))
}

/// The value of the hidden `csrf` input of a page.
pub fn csrf(html: &str) -> String {
    let token = form_value(html, "csrf");
    assert!(!token.is_empty(), "empty csrf token in page:\n{html}");
    token
}

/// The page that carries the form posting to `path`.
pub fn form_page(path: &str) -> &str {
    match path {
        "/logout" => "/",
        "/abilitazione/reinvio" => "/abilitazione/cambio-cp",
        "/area-riservata/dati" => "/area-riservata",
        "/assistenza/cerca" => "/assistenza",
        other => other.strip_suffix("/intervento").unwrap_or(other),
    }
}

/// The temporary CP a message gives.
pub fn temp_cp_in(text: &str) -> String {
    text.lines()
        .find_map(|l| l.trim_end().strip_prefix("Codice Personale temporaneo: "))
        .unwrap_or_else(|| panic!("no temporary CP in:\n{text}"))
        .trim()
        .to_owned()
}

/// The `.eml` files of an outbox directory, oldest first (their names start with a
/// UTC timestamp), parsed by Python's `email` package.
pub fn outbox_messages(dir: &Path) -> Vec<ReceivedMail> {
    let mut names: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    names.sort();
    names
        .iter()
        .map(|path| parse_eml(&std::fs::read(path).unwrap()))
        .collect()
}

/// The first occurrence of `attr="…"` in a page.
pub fn attr_value(html: &str, attr: &str) -> String {
    let marker = format!("{attr}=\"");
    let start = html.find(&marker).unwrap() + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    unescape_html(&html[start..end])
}

#[test]
fn unescape_html_decodes_what_askama_writes() {
    assert_eq!(
        unescape_html("D&#39;Amico &amp; C. &lt;a&gt; &#x2f;&#47;&#43;&#61; &quot;x&quot;"),
        "D'Amico & C. <a> //+= \"x\""
    );
    // Not an entity: kept.
    assert_eq!(
        unescape_html("a & b &bogus; &#xZZ; &"),
        "a & b &bogus; &#xZZ; &"
    );
    assert_eq!(
        input_value(r#"<input value="it&#39;s" type="hidden" name="q">"#, "q").as_deref(),
        Some("it's")
    );
    assert_eq!(input_value("<p>no input</p>", "q"), None);
}
