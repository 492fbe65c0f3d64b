//! A SPID test identity provider, for `make demo`, our integration tests and our
//! users' test suites. It serves signed IdP metadata, accepts signed AuthnRequests
//! on HTTP-Redirect and HTTP-POST (verified with the SP's metadata certificate),
//! shows a login page with test users, and posts back a signed Response (Assertion
//! and Response signed), or a SPID user anomaly nr19–nr25 / nr30.
//!
//! Single Logout at `/slo` (GET HTTP-Redirect and POST): a signed SP LogoutRequest is
//! verified with the SP's metadata certificate and answered with a signed
//! LogoutResponse `Success`, always by HTTP-Redirect to the SP's SingleLogoutService,
//! as AgID's validator does (rules §5 S4); an SP's LogoutResponse to an IdP-initiated
//! logout ([`MockIdp::logout_request_url`]) is verified and shown.
//!
//! Three modes ([`IdpProfile`]), so tests cover every scheme: a SPID IdP; a CIE IdP
//! (the CIE manual's shape: Issuers without `Format`, only the requested attributes
//! of the eIDAS minimum dataset, no `spidCode`, the CIE error codes 21, 22, 23, 25,
//! and a LogoutRequest-less *Simple Logout* page at `/slo`); and FICEP, the eIDAS
//! node (SPID shape, test persons of other EU countries whose identifier comes in
//! `spidCode`, no codice fiscale). [`MockFederation`] runs one of each on one listener:
//! SPID at the base URL, CIE under `/cie`, FICEP under `/ficep`.
//!
//! It is a TEST tool: its key is demo material, and production configs refuse it.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::clock::SharedClock;
use crate::saml::idp::{ReceivedAuthnRequest, SpInfo, build_idp_metadata, parse_sp_metadata};
use crate::saml::logout::{
    LogoutOutcome, LogoutRequestCheck, LogoutRequestParams, LogoutResponseCheck, PendingLogout,
    VerifiedLogoutRequest, build_logout_request, build_logout_response, peek_logout_response_post,
    peek_logout_response_redirect, verify_logout_request_post, verify_logout_request_redirect,
    verify_logout_response_post, verify_logout_response_redirect,
};
use crate::saml::xml::Limits;
use crate::saml::{IdpProfile, SamlError, SigningKey, ids};

/// The HTTP side: router and handlers.
mod routes;
pub use routes::{LoginForm, federation_router, router};

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
    /// The eIDAS PersonIdentifier of a person from another EU country (FICEP's
    /// `spidCode`, `ES/IT/02635542Y`); empty for the Italian users.
    pub eidas_identifier: &'static str,
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
        eidas_identifier: "",
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
        eidas_identifier: "",
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
        eidas_identifier: "",
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
        eidas_identifier: "",
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
        eidas_identifier: "",
    },
];

/// The test persons of the FICEP mode: eIDAS identities of other EU countries, with no
/// codice fiscale (the form's `user` value is their identifier).
pub const EIDAS_USERS: [TestUser; 3] = [
    TestUser {
        name: "María",
        family_name: "García López",
        fiscal_code: "",
        date_of_birth: "1988-04-12",
        place_of_birth: "",
        county_of_birth: "",
        gender: "F",
        email: "",
        mobile_phone: "",
        address: "Calle de Alcalá 50 28014 Madrid",
        eidas_identifier: "ES/IT/02635542Y",
    },
    TestUser {
        name: "Lukas",
        family_name: "Schmidt",
        fiscal_code: "",
        date_of_birth: "1979-11-03",
        place_of_birth: "",
        county_of_birth: "",
        gender: "M",
        email: "",
        mobile_phone: "",
        address: "Unter den Linden 10 10117 Berlin",
        eidas_identifier: "DE/IT/8f3c2a91d7e54b06",
    },
    TestUser {
        name: "Zoé",
        family_name: "Dubois",
        fiscal_code: "",
        date_of_birth: "1992-06-15",
        place_of_birth: "",
        county_of_birth: "",
        gender: "F",
        email: "",
        mobile_phone: "",
        address: "12 rue de Rivoli 75004 Paris",
        eidas_identifier: "FR/IT/FR7651209348",
    },
];

/// The eIDAS minimum dataset, all a CIE IdP ever releases (the CIE manual).
const CIE_ATTRIBUTES: [&str; 4] = ["name", "familyName", "dateOfBirth", "fiscalNumber"];

impl TestUser {
    /// What the login form's `user` field carries: the codice fiscale, or the eIDAS
    /// identifier of a person with none.
    pub fn id(&self) -> &'static str {
        if self.fiscal_code.is_empty() {
            self.eidas_identifier
        } else {
            self.fiscal_code
        }
    }

    /// The value of a SPID attribute for this user, if it has one.
    pub fn attribute(&self, name: &str) -> Option<String> {
        let value = match name {
            "spidCode" if !self.eidas_identifier.is_empty() => self.eidas_identifier.to_owned(),
            "spidCode" => format!(
                "MOCK{}",
                &self.fiscal_code.get(..10).unwrap_or("0000000000")
            ),
            "fiscalNumber" if self.fiscal_code.is_empty() => return None,
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
        };
        (!value.is_empty()).then_some(value)
    }

    /// [`attribute`](Self::attribute) as an IdP of `profile` releases it: a CIE IdP only
    /// the eIDAS minimum dataset (no `spidCode`).
    pub fn attribute_from(&self, profile: IdpProfile, name: &str) -> Option<String> {
        if profile == IdpProfile::Cie && !CIE_ATTRIBUTES.contains(&name) {
            return None;
        }
        self.attribute(name)
    }
}

/// The user anomalies the CIE mode answers with (the CIE manual's user codes).
pub const CIE_ERROR_CODES: [(u8, &str); 4] = [
    (21, "tempo scaduto"),
    (22, "consenso negato"),
    (23, "CIE scaduta o revocata"),
    (25, "annullato dall'utente"),
];

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
/// Clock difference tolerated on logout messages.
const LOGOUT_CLOCK_SKEW_SECONDS: i64 = 120;
/// Oldest logout message accepted (also the lifetime of an IdP-initiated logout).
const LOGOUT_MAX_AGE_SECONDS: i64 = 600;

struct Pending {
    request: ReceivedAuthnRequest,
    relay_state: Option<String>,
    created: Instant,
}

/// The mock IdP.
pub struct MockIdp {
    entity_id: String,
    profile: IdpProfile,
    key: SigningKey,
    metadata: String,
    sps: RwLock<HashMap<String, SpInfo>>,
    pending: Mutex<HashMap<String, Pending>>,
    /// IdP-initiated logouts waiting for the SP's LogoutResponse, by request ID.
    pending_logouts: Mutex<HashMap<String, PendingLogout>>,
    limits: Limits,
    clock: SharedClock,
}

impl std::fmt::Debug for MockIdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockIdp")
            .field("entity_id", &self.entity_id)
            .finish_non_exhaustive()
    }
}

impl MockIdp {
    /// A mock SPID IdP at `public_url` (also its entityID); SSO at `/sso`, SLO at `/slo`.
    pub fn new(public_url: &str, key: SigningKey, clock: SharedClock) -> Result<Self, SamlError> {
        Self::with_profile(public_url, IdpProfile::Spid, key, clock)
    }

    /// A mock IdP of `profile` at `public_url` (also its entityID).
    pub fn with_profile(
        public_url: &str,
        profile: IdpProfile,
        key: SigningKey,
        clock: SharedClock,
    ) -> Result<Self, SamlError> {
        let name = match profile {
            IdpProfile::Spid => "Mock SPID IdP (test)",
            IdpProfile::Cie => "Mock CIE IdP (test)",
            IdpProfile::Ficep => "Mock FICEP eIDAS node (test)",
        };
        let metadata = build_idp_metadata(
            public_url,
            &format!("{public_url}/sso"),
            &format!("{public_url}/slo"),
            name,
            &key,
        )?;
        Ok(Self {
            entity_id: public_url.to_owned(),
            profile,
            key,
            metadata,
            sps: RwLock::default(),
            pending: Mutex::default(),
            pending_logouts: Mutex::default(),
            limits: Limits::default(),
            clock,
        })
    }

    /// Its SingleLogoutService URL (Redirect and POST).
    pub fn slo_url(&self) -> String {
        format!("{}/slo", self.entity_id)
    }

    /// Its entityID.
    pub fn entity_id(&self) -> &str {
        &self.entity_id
    }

    /// The rules it plays by.
    pub fn profile(&self) -> IdpProfile {
        self.profile
    }

    /// The test persons on its login page.
    pub fn users(&self) -> &'static [TestUser] {
        match self.profile {
            IdpProfile::Ficep => &EIDAS_USERS,
            IdpProfile::Spid | IdpProfile::Cie => &TEST_USERS,
        }
    }

    /// The anomalies its login page offers.
    pub fn error_codes(&self) -> &'static [(u8, &'static str)] {
        match self.profile {
            IdpProfile::Cie => &CIE_ERROR_CODES,
            IdpProfile::Spid | IdpProfile::Ficep => &ERROR_CODES,
        }
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

/// One mock IdP of each profile, sharing a key and one listener: SPID at the base
/// URL, CIE at `<base>/cie`, FICEP at `<base>/ficep` (their entityIDs).
#[derive(Debug, Clone)]
pub struct MockFederation {
    /// The SPID IdP.
    pub spid: std::sync::Arc<MockIdp>,
    /// The CIE IdP.
    pub cie: std::sync::Arc<MockIdp>,
    /// The FICEP eIDAS node.
    pub ficep: std::sync::Arc<MockIdp>,
}

impl MockFederation {
    /// The three IdPs under `public_url`.
    pub fn new(public_url: &str, key: SigningKey, clock: SharedClock) -> Result<Self, SamlError> {
        let base = public_url.trim_end_matches('/');
        let one = |suffix: &str, profile| {
            MockIdp::with_profile(
                &format!("{base}{suffix}"),
                profile,
                key.clone(),
                clock.clone(),
            )
            .map(std::sync::Arc::new)
        };
        Ok(Self {
            spid: one("", IdpProfile::Spid)?,
            cie: one("/cie", IdpProfile::Cie)?,
            ficep: one("/ficep", IdpProfile::Ficep)?,
        })
    }

    /// The three, SPID first.
    pub fn all(&self) -> [&std::sync::Arc<MockIdp>; 3] {
        [&self.spid, &self.cie, &self.ficep]
    }

    /// Trusts an SP everywhere: its SPID metadata at SPID and FICEP, and at CIE unless
    /// a CIE metadata is given (the SP's `/metadata/cie`).
    pub fn add_sp(&self, spid_metadata: &str, cie_metadata: Option<&str>) -> Result<(), SamlError> {
        self.spid.add_sp_metadata(spid_metadata)?;
        self.ficep.add_sp_metadata(spid_metadata)?;
        self.cie
            .add_sp_metadata(cie_metadata.unwrap_or(spid_metadata))?;
        Ok(())
    }
}

/// The mock IdP's Single Logout side (pure: `now` is a parameter).
impl MockIdp {
    fn logout_request_check<'a>(
        &self,
        slo_url: &'a str,
        now: DateTime<Utc>,
    ) -> LogoutRequestCheck<'a> {
        LogoutRequestCheck {
            slo_url,
            now,
            clock_skew: chrono::Duration::seconds(LOGOUT_CLOCK_SKEW_SECONDS),
            max_age: chrono::Duration::seconds(LOGOUT_MAX_AGE_SECONDS),
            limits: self.limits,
        }
    }

    /// Verifies an SP-initiated LogoutRequest (signed with the certificate of a trusted
    /// SP's metadata) and returns the signed HTTP-Redirect URL of the LogoutResponse
    /// `Success` to that SP's SingleLogoutService, RelayState echoed.
    pub fn answer_sp_logout(
        &self,
        request: SpLogoutRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<String, SamlError> {
        let slo_url = self.slo_url();
        let check = self.logout_request_check(&slo_url, now);
        let certs_for = |issuer: &str| self.sp(issuer).map(|sp| sp.certs);
        let req: VerifiedLogoutRequest = match request {
            SpLogoutRequest::Redirect { raw_query } => {
                verify_logout_request_redirect(raw_query, certs_for, &check)?
            }
            SpLogoutRequest::Post {
                saml_request,
                relay_state,
            } => verify_logout_request_post(saml_request, relay_state, certs_for, &check)?,
        };
        let sp = self
            .sp(&req.issuer)
            .ok_or_else(|| SamlError::Mismatch(format!("unknown SP {}", req.issuer)))?;
        let destination = sp
            .slo_location()
            .ok_or(SamlError::Missing("SingleLogoutService"))?;
        build_logout_response(
            &req.id,
            destination,
            &self.entity_id,
            LogoutOutcome::Success,
            now,
        )
        .redirect_url(req.relay_state.as_deref(), &self.key)
    }

    /// Starts an IdP-initiated logout: the signed HTTP-Redirect URL of a LogoutRequest to
    /// the SP's SingleLogoutService (with a RelayState). The SP's answer is checked by
    /// [`Self::verify_logout_response_from_sp`].
    pub fn logout_request_url(
        &self,
        sp_entity_id: &str,
        name_id: &str,
        name_qualifier: &str,
        session_index: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<String, SamlError> {
        let sp = self
            .sp(sp_entity_id)
            .ok_or_else(|| SamlError::Mismatch(format!("unknown SP {sp_entity_id}")))?;
        let destination = sp
            .slo_location()
            .ok_or(SamlError::Missing("SingleLogoutService"))?;
        let built = build_logout_request(&LogoutRequestParams {
            sp_entity_id: &self.entity_id,
            destination,
            name_id,
            name_qualifier,
            session_index,
            now,
        });
        let relay_state = ids::new_token(16);
        let url = built.redirect_url(Some(&relay_state), &self.key)?;
        let max_age = chrono::Duration::seconds(LOGOUT_MAX_AGE_SECONDS);
        let mut map = self
            .pending_logouts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.retain(|_, p| p.issue_instant + max_age > now);
        if map.len() >= PENDING_MAX {
            map.clear();
        }
        map.insert(
            built.id.clone(),
            built.pending(sp_entity_id, Some(&relay_state)),
        );
        Ok(url)
    }

    /// Verifies an SP's LogoutResponse to a logout started with
    /// [`Self::logout_request_url`] (signature with the SP's metadata certificate,
    /// InResponseTo, Issuer = that SP, Destination = our `/slo`); the pending logout is
    /// consumed on success.
    pub fn verify_logout_response_from_sp(
        &self,
        response: SpLogoutResponse<'_>,
        now: DateTime<Utc>,
    ) -> Result<LogoutOutcome, SamlError> {
        let in_response_to = match response {
            SpLogoutResponse::Redirect { raw_query } => {
                peek_logout_response_redirect(raw_query, self.limits)?
            }
            SpLogoutResponse::Post { saml_response, .. } => {
                peek_logout_response_post(saml_response, self.limits)?
            }
        };
        let pending = self
            .pending_logouts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&in_response_to)
            .cloned()
            .ok_or_else(|| SamlError::Mismatch("no pending logout with this ID".into()))?;
        let sp = self
            .sp(&pending.idp_entity_id)
            .ok_or_else(|| SamlError::Mismatch("the SP is no longer trusted".into()))?;
        let slo_url = self.slo_url();
        let check = LogoutResponseCheck {
            pending: &pending,
            slo_url: &slo_url,
            idp_certs: &sp.certs,
            now,
            clock_skew: chrono::Duration::seconds(LOGOUT_CLOCK_SKEW_SECONDS),
            max_age: chrono::Duration::seconds(LOGOUT_MAX_AGE_SECONDS),
            limits: self.limits,
        };
        let outcome = match response {
            SpLogoutResponse::Redirect { raw_query } => {
                verify_logout_response_redirect(raw_query, &check)?
            }
            SpLogoutResponse::Post {
                saml_response,
                relay_state,
            } => verify_logout_response_post(saml_response, relay_state, &check)?,
        };
        self.pending_logouts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&in_response_to);
        Ok(outcome)
    }
}

/// An SP's LogoutRequest as the mock IdP receives it.
#[derive(Debug, Clone, Copy)]
pub enum SpLogoutRequest<'a> {
    /// HTTP-Redirect: the raw query string as received (never re-encoded).
    Redirect {
        /// `SAMLRequest=…&RelayState=…&SigAlg=…&Signature=…`.
        raw_query: &'a str,
    },
    /// HTTP-POST.
    Post {
        /// The base64 `SAMLRequest` field.
        saml_request: &'a str,
        /// The `RelayState` field.
        relay_state: Option<&'a str>,
    },
}

/// An SP's LogoutResponse as the mock IdP receives it.
#[derive(Debug, Clone, Copy)]
pub enum SpLogoutResponse<'a> {
    /// HTTP-Redirect: the raw query string as received (never re-encoded).
    Redirect {
        /// `SAMLResponse=…&RelayState=…&SigAlg=…&Signature=…`.
        raw_query: &'a str,
    },
    /// HTTP-POST.
    Post {
        /// The base64 `SAMLResponse` field.
        saml_response: &'a str,
        /// The `RelayState` field.
        relay_state: Option<&'a str>,
    },
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, LazyLock};

    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use tower::ServiceExt;

    use crate::saml::binding;

    use super::*;
    use crate::keygen::generate_idp_test_cert;
    use crate::saml::TrustedCert;
    use crate::saml::logout::{BuiltLogoutRequest, LogoutResponseCheck};

    const IDP: &str = "https://idp.example.it";
    const SP: &str = "https://sp.example.it";
    const SP_SLO: &str = "https://sp.example.it/slo";

    fn key(cn: &str) -> SigningKey {
        let g = generate_idp_test_cert(cn, 30).unwrap();
        SigningKey::from_pem(&g.key_pem, &g.cert_pem).unwrap()
    }

    static SP_KEY: LazyLock<SigningKey> = LazyLock::new(|| key("sp"));
    static IDP_KEY: LazyLock<SigningKey> = LazyLock::new(|| key("mock idp"));

    fn sp_metadata(cert_b64: &str) -> String {
        format!(
            concat!(
                r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" "#,
                r#"xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{sp}">"#,
                r#"<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">"#,
                r#"<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}"#,
                r#"</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
                r#"<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{slo}"/>"#,
                r#"<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{slo}-post"/>"#,
                r#"<md:AssertionConsumerService index="0" isDefault="true" "#,
                r#"Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{sp}/acs"/>"#,
                "</md:SPSSODescriptor></md:EntityDescriptor>"
            ),
            sp = SP,
            slo = SP_SLO,
            cert = cert_b64
        )
    }

    fn mock() -> Arc<MockIdp> {
        let idp = MockIdp::new(IDP, IDP_KEY.clone(), crate::clock::SystemClock::shared()).unwrap();
        assert_eq!(
            idp.add_sp_metadata(&sp_metadata(SP_KEY.cert_base64()))
                .unwrap(),
            SP
        );
        Arc::new(idp)
    }

    fn idp_certs() -> Vec<TrustedCert> {
        vec![IDP_KEY.trusted_cert().unwrap()]
    }

    fn sp_logout_request() -> BuiltLogoutRequest {
        build_logout_request(&LogoutRequestParams {
            sp_entity_id: SP,
            destination: &format!("{IDP}/slo"),
            name_id: "_nameid",
            name_qualifier: IDP,
            session_index: Some("_sess"),
            now: Utc::now(),
        })
    }

    fn sp_check<'a>(
        pending: &'a PendingLogout,
        certs: &'a [TrustedCert],
    ) -> LogoutResponseCheck<'a> {
        LogoutResponseCheck {
            pending,
            slo_url: SP_SLO,
            idp_certs: certs,
            now: Utc::now(),
            clock_skew: chrono::Duration::seconds(60),
            max_age: chrono::Duration::seconds(600),
            limits: Limits::default(),
        }
    }

    async fn send(idp: &Arc<MockIdp>, req: Request<Body>) -> (StatusCode, Option<String>, String) {
        let resp = router(idp.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, location, String::from_utf8(body.to_vec()).unwrap())
    }

    fn get(path_and_query: &str) -> Request<Body> {
        Request::get(path_and_query).body(Body::empty()).unwrap()
    }

    fn post(form: &[(&str, &str)]) -> Request<Body> {
        Request::post("/slo")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(serde_urlencoded::to_string(form).unwrap()))
            .unwrap()
    }

    #[test]
    fn sp_metadata_keeps_the_slo_locations() {
        let sp = parse_sp_metadata(&sp_metadata(SP_KEY.cert_base64())).unwrap();
        assert_eq!(sp.slo_redirect.as_deref(), Some(SP_SLO));
        assert_eq!(
            sp.slo_post.as_deref(),
            Some("https://sp.example.it/slo-post")
        );
        assert_eq!(sp.slo_location(), Some(SP_SLO));
    }

    #[tokio::test]
    async fn sp_logout_redirect_is_answered_by_redirect() {
        let idp = mock();
        let req = sp_logout_request();
        let url = req.redirect_url(Some("rs-1"), &SP_KEY).unwrap();
        let (_, q) = url.split_once('?').unwrap();
        let (status, location, _) = send(&idp, get(&format!("/slo?{q}"))).await;
        assert_eq!(status, StatusCode::FOUND);
        let location = location.unwrap();
        assert!(
            location.starts_with("https://sp.example.it/slo?SAMLResponse="),
            "{location}"
        );
        assert!(location.contains("&RelayState=rs-1&"));
        let (_, back) = location.split_once('?').unwrap();
        let pending = req.pending(IDP, Some("rs-1"));
        let certs = idp_certs();
        assert_eq!(
            verify_logout_response_redirect(back, &sp_check(&pending, &certs)),
            Ok(LogoutOutcome::Success)
        );
    }

    #[tokio::test]
    async fn sp_logout_post_is_answered_by_redirect() {
        let idp = mock();
        let req = sp_logout_request();
        let value = req.post_value(&SP_KEY).unwrap();
        let (status, location, _) = send(
            &idp,
            post(&[("SAMLRequest", &value), ("RelayState", "rs-2")]),
        )
        .await;
        assert_eq!(status, StatusCode::FOUND);
        let location = location.unwrap();
        let (dest, back) = location.split_once('?').unwrap();
        assert_eq!(dest, SP_SLO);
        let pending = req.pending(IDP, Some("rs-2"));
        let certs = idp_certs();
        assert_eq!(
            verify_logout_response_redirect(back, &sp_check(&pending, &certs)),
            Ok(LogoutOutcome::Success)
        );
    }

    #[tokio::test]
    async fn bad_sp_logout_requests_are_refused() {
        let idp = mock();
        let req = sp_logout_request();
        let url = req.redirect_url(Some("rs"), &SP_KEY).unwrap();
        let (_, q) = url.split_once('?').unwrap();
        // Tampered RelayState, re-encoded SigAlg, no signature, nothing at all.
        for bad in [
            q.replace("RelayState=rs", "RelayState=rx"),
            q.replace("SigAlg=http%3A%2F%2F", "SigAlg=http%3A//"),
            q.split_once("&SigAlg=").unwrap().0.to_owned(),
            String::new(),
        ] {
            let (status, location, _) = send(&idp, get(&format!("/slo?{bad}"))).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(location, None);
        }
        // Signed by a key the SP metadata does not carry.
        let forged = req.redirect_url(Some("rs"), &IDP_KEY).unwrap();
        let (_, fq) = forged.split_once('?').unwrap();
        let (status, _, _) = send(&idp, get(&format!("/slo?{fq}"))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // Unsigned POST.
        let unsigned = binding::encode_post(&req.xml);
        let (status, _, _) = send(&idp, post(&[("SAMLRequest", &unsigned)])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn idp_initiated_logout_round_trip() {
        let idp = mock();
        let now = Utc::now();
        let url = idp
            .logout_request_url(SP, "_nameid", IDP, Some("_sess"), now)
            .unwrap();
        let (dest, q) = url.split_once('?').unwrap();
        assert_eq!(dest, SP_SLO);
        // The SP side verifies it with the IdP's metadata certificate.
        let certs = idp_certs();
        let got = verify_logout_request_redirect(
            q,
            |issuer| (issuer == IDP).then(|| certs.clone()),
            &LogoutRequestCheck {
                slo_url: SP_SLO,
                now,
                clock_skew: chrono::Duration::seconds(60),
                max_age: chrono::Duration::seconds(600),
                limits: Limits::default(),
            },
        )
        .unwrap();
        assert_eq!(got.name_id, "_nameid");
        assert_eq!(got.name_qualifier.as_deref(), Some(IDP));
        assert_eq!(got.session_indexes, vec!["_sess".to_owned()]);
        // A wrong answer (bad InResponseTo) is refused and leaves the logout pending.
        let wrong =
            build_logout_response("_other", &idp.slo_url(), SP, LogoutOutcome::Success, now)
                .redirect_url(got.relay_state.as_deref(), &SP_KEY)
                .unwrap();
        let (_, wq) = wrong.split_once('?').unwrap();
        assert!(
            idp.verify_logout_response_from_sp(SpLogoutResponse::Redirect { raw_query: wq }, now)
                .is_err()
        );
        // The SP's answer, followed through the router.
        let answer =
            build_logout_response(&got.id, &idp.slo_url(), SP, LogoutOutcome::Success, now)
                .redirect_url(got.relay_state.as_deref(), &SP_KEY)
                .unwrap();
        let (_, aq) = answer.split_once('?').unwrap();
        let (status, _, body) = send(&idp, get(&format!("/slo?{aq}"))).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("Logout completato"));
        // Consumed: the same answer again is refused.
        let (status, _, _) = send(&idp, get(&format!("/slo?{aq}"))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn idp_initiated_logout_post_answer_and_partial() {
        let idp = mock();
        let now = Utc::now();
        let url = idp.logout_request_url(SP, "_n", IDP, None, now).unwrap();
        let (_, q) = url.split_once('?').unwrap();
        let id = binding::parse_query(q)
            .ok()
            .and_then(|p| p.into_iter().find(|p| p.name == "SAMLRequest"))
            .map(|p| binding::inflate_base64(&p.value, 1 << 20).unwrap())
            .map(|x| crate::saml::xml::parse(&x, Limits::default()).unwrap())
            .and_then(|e| e.attr("ID").map(str::to_owned))
            .unwrap();
        let answer = build_logout_response(&id, &idp.slo_url(), SP, LogoutOutcome::Partial, now)
            .post_value(&SP_KEY)
            .unwrap();
        // An unsigned answer is refused.
        let unsigned = binding::encode_post(
            &build_logout_response(&id, &idp.slo_url(), SP, LogoutOutcome::Success, now).xml,
        );
        let (status, _, _) = send(&idp, post(&[("SAMLResponse", &unsigned)])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _, body) = send(&idp, post(&[("SAMLResponse", &answer)])).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("Logout parziale"));
    }

    #[test]
    fn logout_request_url_needs_a_known_sp() {
        let idp = mock();
        assert!(matches!(
            idp.logout_request_url("https://other.example.it", "_n", IDP, None, Utc::now()),
            Err(SamlError::Mismatch(_))
        ));
    }
}
