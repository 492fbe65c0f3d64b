//! A SPID test identity provider, for `make demo`, our integration tests and our
//! users' test suites. It serves signed IdP metadata, accepts signed AuthnRequests
//! on HTTP-Redirect and HTTP-POST (verified with the SP's metadata certificate),
//! shows a login page with test users, and posts back a signed Response (Assertion
//! and Response signed), or a SPID user anomaly nr19–nr25 / nr30.
//!
//! It is a TEST tool: its key is demo material, and production configs refuse it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::saml::idp::{
    AttributeValue, ReceivedAuthnRequest, ResponseSpec, ResponseStatus, SpInfo, build_idp_metadata,
    build_response, decode_redirect_request, parse_sp_metadata, peek_issuer, verify_post_request,
    verify_redirect_request,
};
use crate::saml::xml::Limits;
use crate::saml::{Level, SamlError, SigningKey, SpidErrorCode, binding, ids};

/// A test identity with realistic data (valid codici fiscali).
#[derive(Debug, Clone)]
pub struct TestUser {
    /// Given name.
    pub name: &'static str,
    /// Family name.
    pub family_name: &'static str,
    /// Codice fiscale.
    pub fiscal_code: &'static str,
    /// YYYY-MM-DD.
    pub date_of_birth: &'static str,
    /// Belfiore code of the place of birth.
    pub place_of_birth: &'static str,
    /// Province of birth.
    pub county_of_birth: &'static str,
    /// M or F.
    pub gender: &'static str,
    /// E-mail.
    pub email: &'static str,
    /// Mobile phone.
    pub mobile_phone: &'static str,
    /// Address.
    pub address: &'static str,
}

/// The built-in test users.
pub const TEST_USERS: [TestUser; 5] = [
    TestUser {
        name: "Mario",
        family_name: "Rossi",
        fiscal_code: "RSSMRA80A01H501U",
        date_of_birth: "1980-01-01",
        place_of_birth: "H501",
        county_of_birth: "RM",
        gender: "M",
        email: "mario.rossi@example.it",
        mobile_phone: "3331234567",
        address: "Via del Corso 12 00186 Roma RM",
    },
    TestUser {
        name: "Giulia",
        family_name: "Bianchi",
        fiscal_code: "BNCGLI85M52F205H",
        date_of_birth: "1985-08-12",
        place_of_birth: "F205",
        county_of_birth: "MI",
        gender: "F",
        email: "giulia.bianchi@example.it",
        mobile_phone: "3479876543",
        address: "Corso Buenos Aires 45 20124 Milano MI",
    },
    TestUser {
        name: "Luca",
        family_name: "Verdi",
        fiscal_code: "VRDLCU72T10L219N",
        date_of_birth: "1972-12-10",
        place_of_birth: "L219",
        county_of_birth: "TO",
        gender: "M",
        email: "luca.verdi@example.it",
        mobile_phone: "3201112233",
        address: "Via Roma 3 10121 Torino TO",
    },
    TestUser {
        name: "Sofia",
        family_name: "Esposito",
        fiscal_code: "ESPSFO90E41A662F",
        date_of_birth: "1990-05-01",
        place_of_birth: "A662",
        county_of_birth: "BA",
        gender: "F",
        email: "sofia.esposito@example.it",
        mobile_phone: "3924455667",
        address: "Via Sparano 100 70121 Bari BA",
    },
    TestUser {
        name: "Giuseppe",
        family_name: "Ferrari",
        fiscal_code: "FRRGPP68C15G273Z",
        date_of_birth: "1968-03-15",
        place_of_birth: "G273",
        county_of_birth: "PA",
        gender: "M",
        email: "giuseppe.ferrari@example.it",
        mobile_phone: "3381239876",
        address: "Via Maqueda 200 90133 Palermo PA",
    },
];

impl TestUser {
    /// The value of a SPID attribute for this user, if it has one.
    pub fn attribute(&self, name: &str) -> Option<String> {
        Some(match name {
            "spidCode" => format!(
                "MOCK{}",
                &self.fiscal_code.get(..10).unwrap_or("0000000000")
            ),
            "name" => self.name.to_owned(),
            "familyName" => self.family_name.to_owned(),
            "fiscalNumber" => format!("TINIT-{}", self.fiscal_code),
            "dateOfBirth" => self.date_of_birth.to_owned(),
            "placeOfBirth" => self.place_of_birth.to_owned(),
            "countyOfBirth" => self.county_of_birth.to_owned(),
            "gender" => self.gender.to_owned(),
            "email" => self.email.to_owned(),
            "mobilePhone" => self.mobile_phone.to_owned(),
            "address" => self.address.to_owned(),
            _ => return None,
        })
    }
}

/// The user anomalies the mock IdP can answer with (code, Italian label).
pub const ERROR_CODES: [(u8, &str); 7] = [
    (19, "credenziali errate ripetute"),
    (20, "credenziali di livello insufficiente"),
    (21, "tempo scaduto"),
    (22, "consenso negato"),
    (23, "identità sospesa o revocata"),
    (25, "annullato dall'utente"),
    (30, "tipo di identità non adeguato"),
];

const PENDING_TTL: Duration = Duration::from_secs(600);
const PENDING_MAX: usize = 10_000;

struct Pending {
    request: ReceivedAuthnRequest,
    relay_state: Option<String>,
    created: Instant,
}

/// The mock IdP.
pub struct MockIdp {
    entity_id: String,
    key: SigningKey,
    metadata: String,
    sps: RwLock<HashMap<String, SpInfo>>,
    pending: Mutex<HashMap<String, Pending>>,
    limits: Limits,
}

impl std::fmt::Debug for MockIdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockIdp")
            .field("entity_id", &self.entity_id)
            .finish_non_exhaustive()
    }
}

impl MockIdp {
    /// A mock IdP at `public_url` (also its entityID); SSO at `/sso`, SLO at `/slo`.
    pub fn new(public_url: &str, key: SigningKey) -> Result<Self, SamlError> {
        let metadata = build_idp_metadata(
            public_url,
            &format!("{public_url}/sso"),
            &format!("{public_url}/slo"),
            "Mock SPID IdP (test)",
            &key,
        )?;
        Ok(Self {
            entity_id: public_url.to_owned(),
            key,
            metadata,
            sps: RwLock::default(),
            pending: Mutex::default(),
            limits: Limits::default(),
        })
    }

    /// Its entityID.
    pub fn entity_id(&self) -> &str {
        &self.entity_id
    }

    /// Its signed metadata.
    pub fn metadata(&self) -> &str {
        &self.metadata
    }

    /// Trusts an SP from its metadata.
    pub fn add_sp_metadata(&self, xml: &str) -> Result<String, SamlError> {
        let sp = parse_sp_metadata(xml)?;
        let id = sp.entity_id.clone();
        self.sps
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), sp);
        Ok(id)
    }

    fn sp(&self, entity_id: &str) -> Option<SpInfo> {
        self.sps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(entity_id)
            .cloned()
    }

    fn remember(&self, request: ReceivedAuthnRequest, relay_state: Option<String>) -> String {
        let token = ids::new_token(16);
        let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, p| p.created.elapsed() < PENDING_TTL);
        if map.len() >= PENDING_MAX {
            map.clear();
        }
        map.insert(
            token.clone(),
            Pending {
                request,
                relay_state,
                created: Instant::now(),
            },
        );
        token
    }

    fn take(&self, token: &str) -> Option<Pending> {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token)
            .filter(|p| p.created.elapsed() < PENDING_TTL)
    }
}

fn fail(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, format!("mock IdP: {msg}\n")).into_response()
}

fn saml_fail(e: SamlError) -> Response {
    let status = if e == SamlError::TooLarge {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::BAD_REQUEST
    };
    fail(status, format!("{} ({})", e, e.code()))
}

#[derive(Template)]
#[template(path = "mock_login.html")]
struct LoginPage<'a> {
    sp_entity_id: &'a str,
    requested_level: u8,
    token: &'a str,
    users: &'a [TestUser],
    levels: [u8; 3],
    error_codes: &'a [(u8, &'a str)],
}

fn login_page(
    idp: &MockIdp,
    request: ReceivedAuthnRequest,
    relay_state: Option<String>,
) -> Response {
    let sp_entity_id = request.issuer.clone();
    let level = request.level.number();
    let token = idp.remember(request, relay_state);
    let page = LoginPage {
        sp_entity_id: &sp_entity_id,
        requested_level: level,
        token: &token,
        users: &TEST_USERS,
        levels: [1, 2, 3],
        error_codes: &ERROR_CODES,
    };
    match page.render() {
        Ok(html) => ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response(),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn sso_redirect(State(idp): State<Arc<MockIdp>>, RawQuery(q): RawQuery) -> Response {
    let q = q.unwrap_or_default();
    let idp2 = idp.clone();
    let result = tokio::task::spawn_blocking(move || {
        let (xml, relay) = decode_redirect_request(&q, idp2.limits)?;
        let issuer = peek_issuer(&xml, idp2.limits)?;
        let sp = idp2
            .sp(&issuer)
            .ok_or_else(|| SamlError::Mismatch(format!("unknown SP {issuer}")))?;
        let req = verify_redirect_request(&q, &sp.certs, idp2.limits)?;
        Ok::<_, SamlError>((req, relay))
    })
    .await;
    match result {
        Ok(Ok((req, relay))) => login_page(&idp, req, relay),
        Ok(Err(e)) => saml_fail(e),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[derive(Deserialize)]
struct SsoPost {
    #[serde(rename = "SAMLRequest")]
    saml_request: String,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

async fn sso_post(
    State(idp): State<Arc<MockIdp>>,
    form: Result<Form<SsoPost>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return fail(StatusCode::BAD_REQUEST, "SAMLRequest missing");
    };
    let relay = form.relay_state.clone();
    let idp2 = idp.clone();
    let result = tokio::task::spawn_blocking(move || {
        let xml = binding::decode_post(&form.saml_request, idp2.limits.max_bytes)?;
        let issuer = peek_issuer(&xml, idp2.limits)?;
        let sp = idp2
            .sp(&issuer)
            .ok_or_else(|| SamlError::Mismatch(format!("unknown SP {issuer}")))?;
        verify_post_request(&xml, &sp.certs, idp2.limits)
    })
    .await;
    match result {
        Ok(Ok(req)) => login_page(&idp, req, relay),
        Ok(Err(e)) => saml_fail(e),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// The login form of the mock IdP.
#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    user: String,
    level: u8,
    outcome: String,
}

async fn do_login(
    State(idp): State<Arc<MockIdp>>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return fail(StatusCode::BAD_REQUEST, "incomplete login form");
    };
    let Some(pending) = idp.take(&form.token) else {
        return fail(
            StatusCode::BAD_REQUEST,
            "unknown or expired login; start again from the service",
        );
    };
    let Some(sp) = idp.sp(&pending.request.issuer) else {
        return fail(StatusCode::BAD_REQUEST, "unknown SP");
    };
    let Some(acs_url) = sp.acs_url(pending.request.acs_index).map(str::to_owned) else {
        return fail(
            StatusCode::BAD_REQUEST,
            "the AssertionConsumerServiceIndex is not in the SP metadata",
        );
    };
    let status = if form.outcome == "success" {
        let Some(user) = TEST_USERS.iter().find(|u| u.fiscal_code == form.user) else {
            return fail(StatusCode::BAD_REQUEST, "unknown test user");
        };
        let Some(level) = Level::from_number(form.level) else {
            return fail(StatusCode::BAD_REQUEST, "level must be 1, 2 or 3");
        };
        let requested = sp
            .attributes(pending.request.attribute_index)
            .unwrap_or_default();
        let attributes = requested
            .iter()
            .filter_map(|name| {
                user.attribute(name).map(|value| AttributeValue {
                    name: name.clone(),
                    value,
                })
            })
            .collect();
        ResponseStatus::Success { level, attributes }
    } else {
        match form.outcome.parse::<u8>() {
            Ok(code) if ERROR_CODES.iter().any(|(c, _)| *c == code) => {
                ResponseStatus::Error(SpidErrorCode(code))
            }
            _ => return fail(StatusCode::BAD_REQUEST, "unknown outcome"),
        }
    };
    let idp2 = idp.clone();
    let irt = pending.request.id.clone();
    let sp_id = sp.entity_id.clone();
    let acs = acs_url.clone();
    let built = tokio::task::spawn_blocking(move || {
        build_response(
            &ResponseSpec {
                idp_entity_id: &idp2.entity_id,
                sp_entity_id: &sp_id,
                acs_url: &acs,
                in_response_to: &irt,
                status,
                now: chrono::Utc::now(),
                sign_response: true,
            },
            &idp2.key,
        )
    })
    .await;
    let xml = match built {
        Ok(Ok(xml)) => xml,
        Ok(Err(e)) => return fail(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => return fail(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    match crate::web::sso::post_form(
        &acs_url,
        "SAMLResponse",
        &binding::encode_post(&xml),
        pending.relay_state.as_deref().unwrap_or_default(),
        "-",
    ) {
        Ok(html) => ([(header::CACHE_CONTROL, "no-store")], html).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn metadata(State(idp): State<Arc<MockIdp>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/samlmetadata+xml; charset=utf-8",
        )],
        idp.metadata.clone(),
    )
        .into_response()
}

/// The mock IdP's router: `/metadata`, `/sso` (GET Redirect, POST), `/login`.
pub fn router(idp: Arc<MockIdp>) -> Router {
    let routes = Router::new()
        .route("/metadata", get(metadata))
        .route("/sso", get(sso_redirect).post(sso_post))
        .route("/login", post(do_login))
        .route("/healthz", get(|| async { "ok" }))
        .route("/static/{name}", get(crate::web::static_asset))
        .with_state(idp);
    crate::web::harden(routes)
}
