//! What a gateway under test needs: its config file (keys minted here, the bench IdP's
//! metadata, the chosen stores, generous rate limits, one OIDC client), the bench IdP
//! (the mock IdP's demo key, or a fresh one) that signs Responses, and test persons
//! with valid codici fiscali.

use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use chrono::Utc;
use polis_gateway::accounts::FiscalCode;
use polis_gateway::keygen::{self, CertRequest, SpSector};
use polis_gateway::oidc::keys::SigningAlg;
use polis_gateway::saml::idp::{AttributeValue, ResponseSpec, ResponseStatus, build_response};
use polis_gateway::saml::{IdpProfile, Level, SigningKey};

/// The OIDC client the full-login scenario uses (`client_secret_basic`).
pub const CLIENT_ID: &str = "bench";
/// Its redirect URI: never contacted (the driver reads the `Location`).
pub const REDIRECT_URI: &str = "http://127.0.0.1:1/callback";

/// The IdP the gateway trusts: the driver holds its key.
pub struct BenchIdp {
    pub entity_id: String,
    pub key: SigningKey,
    pub metadata: String,
}

impl BenchIdp {
    /// With `certs/demo/mock-idp.{key,crt}` when present (the mock IdP's demo key),
    /// else a fresh RSA-2048 test certificate.
    pub fn new(entity_id: &str) -> anyhow::Result<BenchIdp> {
        let demo = (
            std::fs::read("certs/demo/mock-idp.key"),
            std::fs::read("certs/demo/mock-idp.crt"),
        );
        let key = match demo {
            (Ok(k), Ok(c)) => SigningKey::from_pem(&k, &c).context("certs/demo/mock-idp.*")?,
            _ => {
                let g = keygen::generate_idp_test_cert("bench-load IdP", 30)?;
                SigningKey::from_pem(&g.key_pem, &g.cert_pem)?
            }
        };
        let metadata = polis_gateway::saml::idp::build_idp_metadata(
            entity_id,
            &format!("{entity_id}/sso"),
            &format!("{entity_id}/slo"),
            "Bench IdP (test)",
            &key,
        )?;
        Ok(BenchIdp {
            entity_id: entity_id.to_owned(),
            key,
            metadata,
        })
    }

    /// A signed Success Response (Response and Assertion signed) to `in_response_to`.
    pub fn response(
        &self,
        sp_entity_id: &str,
        acs_url: &str,
        in_response_to: &str,
        person: &Person,
    ) -> anyhow::Result<String> {
        let attributes = person
            .attributes()
            .into_iter()
            .map(|(name, value)| AttributeValue {
                name: name.into(),
                value,
            })
            .collect();
        Ok(build_response(
            &ResponseSpec {
                idp_entity_id: &self.entity_id,
                sp_entity_id,
                acs_url,
                in_response_to,
                status: ResponseStatus::Success {
                    level: Level::L2,
                    attributes,
                },
                now: Utc::now(),
                sign_response: true,
                profile: IdpProfile::Spid,
            },
            &self.key,
        )?)
    }
}

/// A test person (Italian, valid codice fiscale).
#[derive(Debug, Clone)]
pub struct Person {
    pub index: usize,
    pub fiscal_code: String,
    pub date_of_birth: String,
}

impl Person {
    /// Person `index`: "Mario Rossi" born in Rome on a day derived from `index`.
    pub fn new(index: usize) -> Person {
        const MONTHS: &[u8] = b"ABCDEHLMPRST";
        let day = index % 28 + 1;
        let month = (index / 28) % 12;
        let year = 50 + (index / (28 * 12)) % 50;
        let month_letter = char::from(MONTHS.get(month).copied().unwrap_or(b'A'));
        let body = format!("RSSMRA{year:02}{month_letter}{day:02}H501");
        let fiscal_code = (b'A'..=b'Z')
            .map(|c| format!("{body}{}", char::from(c)))
            .find(|cf| FiscalCode::parse(cf).is_ok())
            .unwrap_or_else(|| format!("{body}X"));
        Person {
            index,
            fiscal_code,
            date_of_birth: format!("19{year:02}-{:02}-{day:02}", month + 1),
        }
    }

    pub fn email(&self) -> String {
        format!("mario.rossi.{}@posta.example.it", self.index)
    }

    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![
            ("spidCode", format!("BENCH{:010}", self.index)),
            ("name", "Mario".into()),
            ("familyName", "Rossi".into()),
            ("fiscalNumber", format!("TINIT-{}", self.fiscal_code)),
            ("email", self.email()),
            ("dateOfBirth", self.date_of_birth.clone()),
        ]
    }
}

/// Where the gateway's state lives.
pub enum StateBackend {
    Memory,
    Redis(String),
}

/// The files of one gateway under test.
pub struct GatewayFiles {
    pub config: PathBuf,
    pub outbox: PathBuf,
    pub client_secret: String,
}

fn random_text(bytes: usize) -> String {
    let b: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Writes the keys and `config.toml` into `dir` for a gateway at `gw` (its base URL).
pub fn write_config(
    dir: &Path,
    gw: &str,
    idp: &BenchIdp,
    state: &StateBackend,
    database_url: &str,
    metrics_listen: Option<&str>,
    argon2_client_secret: bool,
) -> anyhow::Result<GatewayFiles> {
    let p = |name: &str| dir.join(name);
    let sp = keygen::generate(&CertRequest {
        sector: SpSector::Public,
        common_name: "MIM".into(),
        organization_name: "Ministero dell'Istruzione e del Merito".into(),
        entity_id: gw.to_owned(),
        organization_identifier: "PA:IT-m_pi".into(),
        country: "IT".into(),
        locality: "Roma".into(),
        key_bits: 2048,
        days: 30,
    })?;
    std::fs::write(p("sp.key"), &sp.key_pem)?;
    std::fs::write(p("sp.crt"), &sp.cert_pem)?;
    std::fs::write(p("idp-metadata.xml"), &idp.metadata)?;
    std::fs::write(p("session-cookie.key"), random_text(64))?;
    std::fs::write(p("cp-hmac.key"), random_text(64))?;
    let secret_key = random_text(32);
    std::fs::write(p("oidc-client-secret.key"), &secret_key)?;
    let client_secret = polis_gateway::saml::ids::new_token(32);
    // An argon2id hash and no HMAC key for builds older than HMAC client secrets
    // (`--argon2-client-secret`); the HMAC-SHA-256 form otherwise.
    let (secret_hash, secret_key_line) = match argon2_client_secret {
        true => (
            polis_gateway::secrets::hash_secret(&client_secret)?,
            String::new(),
        ),
        false => (
            polis_gateway::secrets::client_secret_mac(secret_key.as_bytes(), &client_secret)?,
            format!(
                "client_secret_key_file = \"{}\"\n",
                p("oidc-client-secret.key").display()
            ),
        ),
    };
    std::fs::write(
        p("oidc-ed25519.pem"),
        polis_gateway::oidc::keys::generate_pem(SigningAlg::EdDSA)?,
    )?;
    let state = match state {
        StateBackend::Memory => "[state]\nbackend = \"memory\"\n".to_owned(),
        StateBackend::Redis(url) => {
            format!("[state]\nbackend = \"redis\"\n[state.redis]\nurls = [\"{url}\"]\n")
        }
    };
    let toml = format!(
        r#"environment = "test"
data_dir = "{data}"
[server]
listen = "{listen}"
public_url = "{gw}"
[sp]
entity_id = "{gw}"
key_file = "{sp_key}"
cert_file = "{sp_crt}"
sector = "public"
request_ttl_seconds = 3600
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
test_metadata_files = ["{idp_md}"]
[txlog]
dir = "{txlog}"
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
from = {{ address = "noreply@istanze.example", name = "Istanze OnLine" }}
[mail.transport]
kind = "outbox"
dir = "{outbox}"
{state}
[limits.rate]
login_per_minute = 1000000
acs_per_minute = 1000000
slo_per_minute = 1000000
secret_forms_per_minute = 1000000
token_per_minute = 1000000
burst = 100000
[oidc]
access_token_ttl_seconds = 300
id_token_ttl_seconds = 300
refresh_token_ttl_seconds = 3600
refresh_family_lifetime_seconds = 3600
code_ttl_seconds = 60
{secret_key_line}[[oidc.keys]]
file = "{oidc_key}"
alg = "EdDSA"
[[oidc.clients]]
client_id = "{CLIENT_ID}"
name = "Bench"
secret_hash = "{secret_hash}"
redirect_uris = ["{REDIRECT_URI}"]
scopes = ["openid", "profile", "email", "istanze"]
allow_in_enablement = false
id_token_alg = "EdDSA"
"#,
        data = p("data").display(),
        listen = gw.trim_start_matches("http://"),
        sp_key = p("sp.key").display(),
        sp_crt = p("sp.crt").display(),
        idp_md = p("idp-metadata.xml").display(),
        txlog = p("txlog").display(),
        session_key = p("session-cookie.key").display(),
        cp_key = p("cp-hmac.key").display(),
        outbox = p("outbox").display(),
        oidc_key = p("oidc-ed25519.pem").display(),
    );
    let metrics = metrics_listen
        .map(|addr| format!("[metrics]\nlisten = \"{addr}\"\n"))
        .unwrap_or_default();
    std::fs::write(p("config.toml"), toml + &metrics)?;
    Ok(GatewayFiles {
        config: p("config.toml"),
        outbox: p("outbox"),
        client_secret,
    })
}
