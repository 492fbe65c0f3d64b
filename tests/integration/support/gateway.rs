//! The gateway and the mock IdP, both real HTTP servers on 127.0.0.1 port 0, with
//! keys minted at start (keygen), a temporary data directory, the state store the
//! test chooses, and the account database the test chooses (a SQLite file in the temp
//! dir by default, or a PostgreSQL URL). Mail goes to an outbox directory in the temp
//! dir, or to a real SMTP server when the test gives its port. Dropping the `Env` stops
//! both servers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use polis_gateway::accounts::{Account, AccountStore, FiscalCode};
use polis_gateway::app;
use polis_gateway::config::Config;
use polis_gateway::keygen::{self, CertRequest, SpSector};
use polis_gateway::saml::{SigningKey, binding, xml};
use polis_gateway::state::StateStore;
use tokio::net::TcpListener;
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
}

impl Default for EnvOptions {
    fn default() -> Self {
        Self {
            request_ttl_seconds: 600,
            database: Database::Sqlite,
            smtp_port: None,
        }
    }
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
    /// Mock IdP base URL (also its entityID).
    pub idp: String,
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
    /// The generated configuration file (for the `polis-gateway` CLI).
    pub config_path: PathBuf,
    /// The outbox directory (used when no SMTP port was given).
    pub outbox_dir: PathBuf,
    tasks: Vec<JoinHandle<()>>,
    _tmp: tempfile::TempDir,
}

impl Drop for Env {
    fn drop(&mut self) {
        for t in &self.tasks {
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
environment = "test"
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
idle_timeout_seconds = 1800
absolute_timeout_seconds = 28800
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
            data_dir = p("data").display(),
            session_key = p("session-cookie.key").display(),
            cp_key = p("cp-hmac.key").display(),
        );
        std::fs::write(p("config.toml"), toml).unwrap();
        let cfg = Config::load_with_env(&[p("config.toml")], Vec::new()).unwrap();
        let gateway = app::build_gateway(&cfg, store.clone()).await.unwrap();
        let mock = app::build_mock_idp(&cfg).unwrap();
        gateway
            .federation
            .add_metadata(mock.metadata(), true, "mock IdP")
            .unwrap();
        mock.add_sp_metadata(&gateway.metadata).unwrap();
        let gw_router = gateway.router;
        let idp_router = polis_gateway::mock_idp::router(mock);
        let tasks = vec![
            tokio::spawn(async move {
                let _ = axum::serve(gw_listener, gw_router).await;
            }),
            tokio::spawn(async move {
                let _ = axum::serve(idp_listener, idp_router).await;
            }),
        ];
        Env {
            gw,
            idp,
            store,
            idp_key,
            federation: gateway.federation,
            txlog_dir,
            accounts: gateway.accounts,
            config_path: p("config.toml"),
            outbox_dir,
            tasks,
            _tmp: tmp,
        }
    }

    /// A browser-like client: cookies kept, redirects NOT followed (tests look at each hop).
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
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
        let resp = client
            .get(self.login_url(level, "redirect"))
            .send()
            .await
            .unwrap();
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
        assert_eq!(login_page.status(), 200, "mock IdP login page");
        let html = login_page.text().await.unwrap();
        let token = form_value(&html, "token");
        let answer = client
            .post(format!("{}/login", self.idp))
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
        client
            .post(format!("{}/acs", self.gw))
            .form(&[("SAMLResponse", saml_response), ("RelayState", relay_state)])
            .send()
            .await
            .unwrap()
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
    /// `/area-riservata` for `/area-riservata/dati`), reads its `csrf` token, and posts
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

fn unescape_html(s: &str) -> String {
    s.replace("&#43;", "+")
        .replace("&#47;", "/")
        .replace("&#61;", "=")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

/// The `value` of the input named `name` in a page.
pub fn form_value(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no input {name} in page:\n{html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    unescape_html(&html[start..end])
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
        other => other,
    }
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
