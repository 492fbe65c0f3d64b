//! Single Logout (SPID rules §5), both directions and both roles.
//!
//! - **S1** SP-initiated: [`build_logout_request`] → [`BuiltLogoutRequest`] (signed
//!   Redirect URL or POST value), remembered as a [`PendingLogout`].
//! - **S2** the IdP's answer: [`verify_logout_response_redirect`] /
//!   [`verify_logout_response_post`] → [`LogoutOutcome`].
//! - **S3** IdP-initiated: [`verify_logout_request_redirect`] /
//!   [`verify_logout_request_post`] → [`VerifiedLogoutRequest`], answered with
//!   [`build_logout_response`].
//!
//! The same functions serve the IdP role (the mock IdP): a LogoutRequest is the same
//! message whoever sends it, so request verification takes an issuer → certificates
//! lookup (the SP's metadata certificates for the IdP, the IdP's for the SP), and a
//! [`PendingLogout`] names the peer the request went to.
//!
//! Every inbound message fails closed, in this order: bounded decoding
//! ([`super::binding`]), strict read ([`super::xml`]), structure (root element, an
//! allowlist of its children), a signature that is required (Redirect: `SigAlg` +
//! `Signature` over the raw received query octets, never re-encoded, and no XML
//! signature inside; POST: exactly one enveloped `ds:Signature`, a direct child of the
//! root, shape-checked, verified by xmlsec with the peer's metadata certificates only,
//! and the document reduced to the signed content), then the envelope rules (Version,
//! ID, IssueInstant, Destination, Issuer, InResponseTo, Status) on the verified
//! content only.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::binding::{
    QueryParam, decode_post, encode_post, inflate_base64, parse_query, redirect_signed_octets,
};
use super::error::SamlError;
use super::ids::new_id;
use super::sign::{
    ReferenceRule, SigningKey, TrustedCert, check_signature_shape, sign_enveloped_at,
    sign_redirect_url, verify_and_reduce, verify_octets,
};
use super::time::{format_instant, parse_instant};
use super::xml::{self, Element, Limits, escape};
use super::{
    FORMAT_ENTITY, FORMAT_TRANSIENT, NS_DS, NS_SAML, NS_SAMLP, STATUS_REQUESTER, STATUS_RESPONDER,
    STATUS_SUCCESS,
};

/// Second-level status of a partial logout (SAML core §3.2.2.2; SPID rule S2).
pub const STATUS_PARTIAL_LOGOUT: &str = "urn:oasis:names:tc:SAML:2.0:status:PartialLogout";

// ---------------------------------------------------------------------------
// Outbound messages
// ---------------------------------------------------------------------------

/// The entity Issuer element SPID wants on every logout message (Format entity,
/// NameQualifier = the entityID).
fn issuer_element(entity_id: &str) -> String {
    format!(
        r#"<saml:Issuer Format="{FORMAT_ENTITY}" NameQualifier="{e}">{e}</saml:Issuer>"#,
        e = escape(entity_id)
    )
}

/// What an SP-initiated LogoutRequest says (SPID rule S1).
#[derive(Debug, Clone)]
pub struct LogoutRequestParams<'a> {
    /// The sender's entityID (Issuer text and NameQualifier): ours on the SP side, the
    /// IdP's when the mock IdP starts a logout.
    pub sp_entity_id: &'a str,
    /// The receiver's SingleLogoutService Location for the chosen binding.
    pub destination: &'a str,
    /// The NameID from the Assertion, trimmed.
    pub name_id: &'a str,
    /// The NameID's NameQualifier from the Assertion (the IdP's entityID).
    pub name_qualifier: &'a str,
    /// `AuthnStatement@SessionIndex`; L2/L3 Assertions carry none (rules §9.8).
    pub session_index: Option<&'a str>,
    /// The current time.
    pub now: DateTime<Utc>,
}

/// A built (unsigned) logout message, ready for either binding.
#[derive(Debug, Clone)]
pub struct BuiltMessage {
    /// `_`-prefixed 128-bit ID (a LogoutResponse's InResponseTo must equal its request's).
    pub id: String,
    /// IssueInstant.
    pub issue_instant: DateTime<Utc>,
    /// Where it goes.
    pub destination: String,
    /// The XML without signature (Redirect binding form).
    pub xml: String,
    issuer_end: usize,
    /// `SAMLRequest` or `SAMLResponse`.
    field: &'static str,
}

/// A built (unsigned) LogoutRequest.
pub type BuiltLogoutRequest = BuiltMessage;

/// A built (unsigned) LogoutResponse.
pub type BuiltLogoutResponse = BuiltMessage;

/// Builds the LogoutRequest XML exactly as SPID rule S1 says: ID, Version 2.0,
/// IssueInstant, Destination, entity Issuer with NameQualifier, transient NameID with
/// the IdP's NameQualifier, and SessionIndex when there is one.
pub fn build_logout_request(p: &LogoutRequestParams<'_>) -> BuiltLogoutRequest {
    let id = new_id();
    let head = format!(
        concat!(
            r#"<samlp:LogoutRequest xmlns:samlp="{samlp}" xmlns:saml="{saml}" ID="{id}" Version="2.0" "#,
            r#"IssueInstant="{ii}" Destination="{dest}">{issuer}"#
        ),
        samlp = NS_SAMLP,
        saml = NS_SAML,
        id = id,
        ii = format_instant(p.now),
        dest = escape(p.destination),
        issuer = issuer_element(p.sp_entity_id),
    );
    let issuer_end = head.len();
    let session = p
        .session_index
        .map(|s| format!("<samlp:SessionIndex>{}</samlp:SessionIndex>", escape(s)))
        .unwrap_or_default();
    let tail = format!(
        concat!(
            r#"<saml:NameID Format="{ft}" NameQualifier="{nq}">{nid}</saml:NameID>"#,
            "{session}</samlp:LogoutRequest>"
        ),
        ft = FORMAT_TRANSIENT,
        nq = escape(p.name_qualifier),
        nid = escape(p.name_id.trim()),
        session = session,
    );
    BuiltLogoutRequest {
        id,
        issue_instant: p.now,
        destination: p.destination.to_owned(),
        xml: head + &tail,
        issuer_end,
        field: "SAMLRequest",
    }
}

impl BuiltMessage {
    /// The full Redirect-binding URL: `SAMLRequest` / `SAMLResponse` (deflated),
    /// `RelayState` if given (a LogoutResponse echoes the request's), `SigAlg`,
    /// `Signature`, signed over exactly the octets emitted.
    pub fn redirect_url(
        &self,
        relay_state: Option<&str>,
        key: &SigningKey,
    ) -> Result<String, SamlError> {
        sign_redirect_url(&self.destination, self.field, &self.xml, relay_state, key)
    }

    /// The XML with an enveloped signature right after Issuer (exc-c14n, RSA-SHA256).
    pub fn signed_xml(&self, key: &SigningKey) -> Result<String, SamlError> {
        sign_enveloped_at(&self.xml, &self.id, self.issuer_end, key)
    }

    /// The base64 `SAMLRequest` / `SAMLResponse` value for the POST binding.
    pub fn post_value(&self, key: &SigningKey) -> Result<String, SamlError> {
        Ok(encode_post(&self.signed_xml(key)?))
    }

    /// The record to keep until the answer arrives; `peer_entity_id` is the receiver
    /// (the IdP on the SP side).
    pub fn pending(&self, peer_entity_id: &str, relay_state: Option<&str>) -> PendingLogout {
        PendingLogout {
            id: self.id.clone(),
            idp_entity_id: peer_entity_id.to_owned(),
            issue_instant: self.issue_instant,
            relay_state: relay_state.map(str::to_owned),
        }
    }
}

/// What the sender of a LogoutRequest remembers until the LogoutResponse arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogout {
    /// Request ID (InResponseTo must equal it).
    pub id: String,
    /// The entity the request went to (the Response Issuer must equal it): the IdP on
    /// the SP side, the SP when the mock IdP started the logout.
    pub idp_entity_id: String,
    /// Request IssueInstant (the Response must not precede it).
    pub issue_instant: DateTime<Utc>,
    /// The RelayState sent with the request, if any.
    pub relay_state: Option<String>,
}

/// How a logout ended, as a LogoutResponse reports it (and as [`build_logout_response`]
/// writes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogoutOutcome {
    /// `Success`: global logout.
    Success,
    /// `Requester` + `PartialLogout` (SPID rule S2; also when the IdP session had already
    /// expired): the local session stays closed, the user is told.
    Partial,
}

/// Builds a LogoutResponse (SPID rule S3; the same function for both roles): ID,
/// Version 2.0, IssueInstant, InResponseTo, Destination, entity Issuer with
/// NameQualifier = `issuer`, and `Success` or `Requester`/`PartialLogout`.
pub fn build_logout_response(
    in_response_to: &str,
    destination: &str,
    issuer: &str,
    status: LogoutOutcome,
    now: DateTime<Utc>,
) -> BuiltLogoutResponse {
    let id = new_id();
    let head = format!(
        concat!(
            r#"<samlp:LogoutResponse xmlns:samlp="{samlp}" xmlns:saml="{saml}" ID="{id}" Version="2.0" "#,
            r#"IssueInstant="{ii}" InResponseTo="{irt}" Destination="{dest}">{issuer}"#
        ),
        samlp = NS_SAMLP,
        saml = NS_SAML,
        id = id,
        ii = format_instant(now),
        irt = escape(in_response_to),
        dest = escape(destination),
        issuer = issuer_element(issuer),
    );
    let issuer_end = head.len();
    let status = match status {
        LogoutOutcome::Success => format!(r#"<samlp:StatusCode Value="{STATUS_SUCCESS}"/>"#),
        LogoutOutcome::Partial => format!(
            r#"<samlp:StatusCode Value="{STATUS_REQUESTER}"><samlp:StatusCode Value="{STATUS_PARTIAL_LOGOUT}"/></samlp:StatusCode>"#
        ),
    };
    BuiltLogoutResponse {
        id,
        issue_instant: now,
        destination: destination.to_owned(),
        xml: format!("{head}<samlp:Status>{status}</samlp:Status></samlp:LogoutResponse>"),
        issuer_end,
        field: "SAMLResponse",
    }
}

// ---------------------------------------------------------------------------
// Inbound messages: decoding, structure, signature (shared by both message types)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Request,
    Response,
}

impl Kind {
    fn param(self) -> &'static str {
        match self {
            Self::Request => "SAMLRequest",
            Self::Response => "SAMLResponse",
        }
    }

    fn root(self) -> &'static str {
        match self {
            Self::Request => "LogoutRequest",
            Self::Response => "LogoutResponse",
        }
    }

    /// Children the root may have (SAML core §3.7.1, §3.7.2; BaseID and EncryptedID are
    /// not used in SPID).
    fn child_allowed(self, child: &Element) -> bool {
        let name = child.name.as_str();
        child.is(NS_DS, "Signature")
            || (child.ns.as_deref() == Some(NS_SAML)
                && (name == "Issuer" || (self == Self::Request && name == "NameID")))
            || (child.ns.as_deref() == Some(NS_SAMLP)
                && (name == "Extensions"
                    || (self == Self::Request && name == "SessionIndex")
                    || (self == Self::Response && name == "Status")))
    }
}

/// A message whose signature verified; `root` is the signed content only.
struct Verified {
    root: Element,
    issuer: String,
    relay_state: Option<String>,
}

fn check_structure(root: &Element, kind: Kind) -> Result<(), SamlError> {
    if !root.is(NS_SAMLP, kind.root()) {
        return Err(SamlError::Structure(format!(
            "the root is not samlp:{}",
            kind.root()
        )));
    }
    if let Some(bad) = root.children.iter().find(|c| !kind.child_allowed(c)) {
        return Err(SamlError::Structure(format!(
            "unexpected {} in {}",
            bad.name,
            kind.root()
        )));
    }
    Ok(())
}

/// The Issuer text (trimmed, non-empty; Format absent or entity).
fn issuer_of(root: &Element) -> Result<&str, SamlError> {
    let issuer = root.required_child(NS_SAML, "Issuer")?;
    let text = issuer.trimmed_text();
    if text.is_empty() {
        return Err(SamlError::Missing("Issuer"));
    }
    match issuer.attr("Format") {
        None | Some(FORMAT_ENTITY) => Ok(text),
        Some(_) => Err(SamlError::invalid("Issuer", "Format must be entity")),
    }
}

fn param<'a>(params: &'a [QueryParam], name: &str) -> Option<&'a QueryParam> {
    params.iter().find(|p| p.name == name)
}

/// Decodes and strictly reads a Redirect-binding message, without any signature check
/// (for correlation only).
fn decode_redirect(
    raw_query: &str,
    kind: Kind,
    limits: Limits,
) -> Result<(Vec<QueryParam>, Element), SamlError> {
    let params = parse_query(raw_query)?;
    let msg = param(&params, kind.param()).ok_or(SamlError::Missing(kind.param()))?;
    let root = xml::parse(&inflate_base64(&msg.value, limits.max_bytes)?, limits)?;
    check_structure(&root, kind)?;
    Ok((params, root))
}

/// Redirect binding: the query signature over the raw received octets is required and
/// verified with the certificates `certs_for` gives for the claimed Issuer.
fn verify_redirect(
    raw_query: &str,
    kind: Kind,
    certs_for: &dyn Fn(&str) -> Result<Vec<TrustedCert>, SamlError>,
    limits: Limits,
) -> Result<Verified, SamlError> {
    let (params, root) = decode_redirect(raw_query, kind, limits)?;
    // Also refuses a query carrying both SAMLRequest and SAMLResponse, or no SigAlg.
    let octets = redirect_signed_octets(&params)?;
    let sig_alg = param(&params, "SigAlg").ok_or(SamlError::SignatureMissing("SigAlg"))?;
    let signature = param(&params, "Signature").ok_or(SamlError::SignatureMissing("Signature"))?;
    if root.is(NS_DS, "Signature") || root.descendants().iter().any(|e| e.is(NS_DS, "Signature")) {
        return Err(SamlError::Structure(
            "a Redirect-binding message carries no XML signature".into(),
        ));
    }
    let issuer = issuer_of(&root)?.to_owned();
    let certs = certs_for(&issuer)?;
    verify_octets(octets.as_bytes(), &signature.value, &sig_alg.value, &certs)?;
    Ok(Verified {
        root,
        issuer,
        relay_state: param(&params, "RelayState").map(|p| p.value.clone()),
    })
}

/// Decodes and strictly reads a POST-binding message, without any signature check.
fn decode_post_message(
    b64: &str,
    kind: Kind,
    limits: Limits,
) -> Result<(String, Element), SamlError> {
    let xml_text = decode_post(b64, limits.max_bytes)?;
    let root = xml::parse(&xml_text, limits)?;
    check_structure(&root, kind)?;
    Ok((xml_text, root))
}

/// POST binding: exactly one enveloped signature, a direct child of the root, with the
/// allowed shape, verified by xmlsec with the certificates for the claimed Issuer; the
/// result is the signed content only.
fn verify_post(
    b64: &str,
    relay_state: Option<&str>,
    kind: Kind,
    certs_for: &dyn Fn(&str) -> Result<Vec<TrustedCert>, SamlError>,
    limits: Limits,
) -> Result<Verified, SamlError> {
    let (xml_text, root) = decode_post_message(b64, kind, limits)?;
    let sig = root
        .unique_child(NS_DS, "Signature")?
        .ok_or(SamlError::SignatureMissing(kind.root()))?;
    let id = root.attr("ID").unwrap_or_default();
    check_signature_shape(sig, id, ReferenceRule::IdOnly)?;
    if root
        .descendants()
        .iter()
        .filter(|e| e.is(NS_DS, "Signature"))
        .count()
        != 1
    {
        return Err(SamlError::Structure("misplaced Signature".into()));
    }
    let claimed_issuer = issuer_of(&root)?;
    let certs = certs_for(claimed_issuer)?;
    let reduced = verify_and_reduce(&xml_text, &certs, limits, ReferenceRule::IdOnly)?;
    if !reduced.is(NS_SAMLP, kind.root()) || reduced.attr("ID") != Some(id) {
        return Err(SamlError::Structure(
            "the signature does not cover the message".into(),
        ));
    }
    check_structure(&reduced, kind)?;
    let issuer = issuer_of(&reduced)?.to_owned();
    if issuer != claimed_issuer {
        return Err(SamlError::Structure(
            "the signed Issuer is not the one read".into(),
        ));
    }
    Ok(Verified {
        root: reduced,
        issuer,
        relay_state: relay_state.map(str::to_owned),
    })
}

// ---------------------------------------------------------------------------
// Envelope rules
// ---------------------------------------------------------------------------

fn required_attr<'a>(el: &'a Element, name: &'static str) -> Result<&'a str, SamlError> {
    match el.attr(name) {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(SamlError::Missing(name)),
    }
}

/// Times the envelope is checked against.
struct Clock {
    now: DateTime<Utc>,
    skew: Duration,
    max_age: Duration,
    /// The request's IssueInstant, for a response.
    not_before: Option<DateTime<Utc>>,
}

/// ID, Version 2.0, IssueInstant (not in the future, not older than the max age, not
/// before the request), Destination = our SLO URL.
fn check_envelope(root: &Element, slo_url: &str, clock: &Clock) -> Result<String, SamlError> {
    let id = required_attr(root, "ID")?.to_owned();
    if required_attr(root, "Version")? != "2.0" {
        return Err(SamlError::invalid("Version", "must be 2.0"));
    }
    let t = parse_instant(
        "IssueInstant",
        root.attr("IssueInstant").unwrap_or_default(),
    )?;
    if t > clock.now + clock.skew {
        return Err(SamlError::Time("IssueInstant is in the future".into()));
    }
    if t + clock.max_age + clock.skew < clock.now {
        return Err(SamlError::Time("IssueInstant is too old".into()));
    }
    if let Some(nb) = clock.not_before
        && t + clock.skew < nb
    {
        return Err(SamlError::Time("IssueInstant precedes the request".into()));
    }
    if required_attr(root, "Destination")? != slo_url {
        return Err(SamlError::Mismatch(
            "Destination is not this SingleLogoutService".into(),
        ));
    }
    Ok(id)
}

// ---------------------------------------------------------------------------
// LogoutResponse (S2)
// ---------------------------------------------------------------------------

/// What a LogoutResponse is checked against.
#[derive(Debug, Clone, Copy)]
pub struct LogoutResponseCheck<'a> {
    /// The outstanding LogoutRequest it claims to answer.
    pub pending: &'a PendingLogout,
    /// Our SingleLogoutService URL that received it (Destination).
    pub slo_url: &'a str,
    /// The signing certificates of `pending.idp_entity_id`, from its metadata.
    pub idp_certs: &'a [TrustedCert],
    /// The current time.
    pub now: DateTime<Utc>,
    /// Tolerated clock difference.
    pub clock_skew: Duration,
    /// Oldest IssueInstant accepted, before the skew (e.g. the pending-logout TTL).
    pub max_age: Duration,
    /// Bounds for decoding and reading.
    pub limits: Limits,
}

/// The InResponseTo a Redirect-binding LogoutResponse claims, read before any
/// verification only to find its [`PendingLogout`].
pub fn peek_logout_response_redirect(raw_query: &str, limits: Limits) -> Result<String, SamlError> {
    let (_, root) = decode_redirect(raw_query, Kind::Response, limits)?;
    Ok(required_attr(&root, "InResponseTo")?.to_owned())
}

/// The InResponseTo a POST-binding LogoutResponse claims, read before any verification
/// only to find its [`PendingLogout`].
pub fn peek_logout_response_post(
    saml_response_b64: &str,
    limits: Limits,
) -> Result<String, SamlError> {
    let (_, root) = decode_post_message(saml_response_b64, Kind::Response, limits)?;
    Ok(required_attr(&root, "InResponseTo")?.to_owned())
}

fn response_certs<'a>(
    c: &'a LogoutResponseCheck<'a>,
) -> impl Fn(&str) -> Result<Vec<TrustedCert>, SamlError> + 'a {
    move |issuer: &str| {
        if issuer == c.pending.idp_entity_id {
            Ok(c.idp_certs.to_vec())
        } else {
            Err(SamlError::Mismatch(
                "Issuer is not the entity the LogoutRequest went to".into(),
            ))
        }
    }
}

/// Verifies a Redirect-binding LogoutResponse (query signature over the raw received
/// octets; unsigned refused) and checks it against the pending request.
pub fn verify_logout_response_redirect(
    raw_query: &str,
    check: &LogoutResponseCheck<'_>,
) -> Result<LogoutOutcome, SamlError> {
    let v = verify_redirect(
        raw_query,
        Kind::Response,
        &response_certs(check),
        check.limits,
    )?;
    check_logout_response(&v, check)
}

/// Verifies a POST-binding LogoutResponse (enveloped signature; unsigned refused) and
/// checks it against the pending request. `relay_state` is the posted `RelayState`.
pub fn verify_logout_response_post(
    saml_response_b64: &str,
    relay_state: Option<&str>,
    check: &LogoutResponseCheck<'_>,
) -> Result<LogoutOutcome, SamlError> {
    let v = verify_post(
        saml_response_b64,
        relay_state,
        Kind::Response,
        &response_certs(check),
        check.limits,
    )?;
    check_logout_response(&v, check)
}

fn check_logout_response(
    v: &Verified,
    c: &LogoutResponseCheck<'_>,
) -> Result<LogoutOutcome, SamlError> {
    let root = &v.root;
    check_envelope(
        root,
        c.slo_url,
        &Clock {
            now: c.now,
            skew: c.clock_skew,
            max_age: c.max_age,
            not_before: Some(c.pending.issue_instant),
        },
    )?;
    if required_attr(root, "InResponseTo")? != c.pending.id {
        return Err(SamlError::Mismatch(
            "InResponseTo is not the LogoutRequest ID".into(),
        ));
    }
    if v.issuer != c.pending.idp_entity_id {
        return Err(SamlError::Mismatch(
            "Issuer is not the entity the LogoutRequest went to".into(),
        ));
    }
    // An echoed RelayState must be ours; an absent or empty one is tolerated (AgID's
    // validator may send it empty), InResponseTo and the signature already bind the answer.
    if let (Some(sent), Some(got)) = (&c.pending.relay_state, &v.relay_state)
        && !got.is_empty()
        && got != sent
    {
        return Err(SamlError::Mismatch("RelayState is not the one sent".into()));
    }
    let status = root.required_child(NS_SAMLP, "Status")?;
    let code = status.required_child(NS_SAMLP, "StatusCode")?;
    let value = required_attr(code, "Value")?;
    let sub = code
        .unique_child(NS_SAMLP, "StatusCode")?
        .and_then(|s| s.attr("Value"));
    match (value, sub) {
        (STATUS_SUCCESS | STATUS_REQUESTER | STATUS_RESPONDER, Some(STATUS_PARTIAL_LOGOUT)) => {
            Ok(LogoutOutcome::Partial)
        }
        (STATUS_SUCCESS, _) => Ok(LogoutOutcome::Success),
        (status, sub_status) => Err(SamlError::LogoutStatus {
            status: status.to_owned(),
            sub_status: sub_status.map(str::to_owned),
        }),
    }
}

// ---------------------------------------------------------------------------
// LogoutRequest received (S3, and the mock IdP's side of S1)
// ---------------------------------------------------------------------------

/// What a received LogoutRequest is checked against (besides its sender's certificates).
#[derive(Debug, Clone, Copy)]
pub struct LogoutRequestCheck<'a> {
    /// Our SingleLogoutService URL that received it (Destination).
    pub slo_url: &'a str,
    /// The current time.
    pub now: DateTime<Utc>,
    /// Tolerated clock difference.
    pub clock_skew: Duration,
    /// Oldest IssueInstant accepted, before the skew.
    pub max_age: Duration,
    /// Bounds for decoding and reading.
    pub limits: Limits,
}

/// A LogoutRequest whose signature and envelope passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLogoutRequest {
    /// Request ID (the LogoutResponse's InResponseTo).
    pub id: String,
    /// Issuer: the sender's entityID, whose certificate verified the signature.
    pub issuer: String,
    /// NameID, trimmed.
    pub name_id: String,
    /// NameID NameQualifier, if present (SPID: the IdP's entityID).
    pub name_qualifier: Option<String>,
    /// Every SessionIndex, trimmed (none for L2/L3 logins).
    pub session_indexes: Vec<String>,
    /// RelayState received with it (echo it in the LogoutResponse).
    pub relay_state: Option<String>,
}

fn lookup<F>(certs_for_issuer: F) -> impl Fn(&str) -> Result<Vec<TrustedCert>, SamlError>
where
    F: Fn(&str) -> Option<Vec<TrustedCert>>,
{
    move |issuer: &str| {
        certs_for_issuer(issuer)
            .ok_or_else(|| SamlError::Mismatch(format!("unknown Issuer {issuer}")))
    }
}

/// Verifies a Redirect-binding LogoutRequest: the query signature over the raw received
/// octets is required and checked with `certs_for_issuer(Issuer)` (`None`: unknown
/// sender, refused). Used by the SP for IdP-initiated logout and by the mock IdP for
/// SP-initiated logout.
pub fn verify_logout_request_redirect(
    raw_query: &str,
    certs_for_issuer: impl Fn(&str) -> Option<Vec<TrustedCert>>,
    check: &LogoutRequestCheck<'_>,
) -> Result<VerifiedLogoutRequest, SamlError> {
    let v = verify_redirect(
        raw_query,
        Kind::Request,
        &lookup(certs_for_issuer),
        check.limits,
    )?;
    read_logout_request(v, check)
}

/// Verifies a POST-binding LogoutRequest (enveloped signature required), its signer
/// found by `certs_for_issuer(Issuer)`. `relay_state` is the posted `RelayState`.
pub fn verify_logout_request_post(
    saml_request_b64: &str,
    relay_state: Option<&str>,
    certs_for_issuer: impl Fn(&str) -> Option<Vec<TrustedCert>>,
    check: &LogoutRequestCheck<'_>,
) -> Result<VerifiedLogoutRequest, SamlError> {
    let v = verify_post(
        saml_request_b64,
        relay_state,
        Kind::Request,
        &lookup(certs_for_issuer),
        check.limits,
    )?;
    read_logout_request(v, check)
}

fn read_logout_request(
    v: Verified,
    c: &LogoutRequestCheck<'_>,
) -> Result<VerifiedLogoutRequest, SamlError> {
    let root = &v.root;
    let id = check_envelope(
        root,
        c.slo_url,
        &Clock {
            now: c.now,
            skew: c.clock_skew,
            max_age: c.max_age,
            not_before: None,
        },
    )?;
    if let Some(t) = root.attr("NotOnOrAfter") {
        let t = parse_instant("NotOnOrAfter", t)?;
        if t + c.clock_skew <= c.now {
            return Err(SamlError::Time("the LogoutRequest has expired".into()));
        }
    }
    let name_id_el = root.required_child(NS_SAML, "NameID")?;
    let name_id = name_id_el.trimmed_text();
    if name_id.is_empty() {
        return Err(SamlError::Missing("NameID"));
    }
    let session_indexes = root
        .children_named(NS_SAMLP, "SessionIndex")
        .map(|s| s.trimmed_text().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    Ok(VerifiedLogoutRequest {
        id,
        name_id: name_id.to_owned(),
        name_qualifier: name_id_el
            .attr("NameQualifier")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        session_indexes,
        relay_state: v.relay_state,
        issuer: v.issuer,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use super::*;
    use crate::keygen::generate_idp_test_cert;

    const SP: &str = "https://sp.example.it";
    const SP_SLO: &str = "https://sp.example.it/slo";
    const IDP: &str = "https://idp.example.it";
    const IDP_SLO: &str = "https://idp.example.it/slo";
    const NAME_ID: &str = "_0123456789abcdef0123456789abcdef";

    struct Keys {
        sp: SigningKey,
        idp: SigningKey,
        other: SigningKey,
    }

    fn key(cn: &str) -> SigningKey {
        let g = generate_idp_test_cert(cn, 30).unwrap();
        SigningKey::from_pem(&g.key_pem, &g.cert_pem).unwrap()
    }

    static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys {
        sp: key("sp"),
        idp: key("idp"),
        other: key("other"),
    });

    fn certs(k: &SigningKey) -> Vec<TrustedCert> {
        vec![k.trusted_cert().unwrap()]
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn query(url: &str) -> &str {
        url.split_once('?').unwrap().1
    }

    fn sp_request(session_index: Option<&str>) -> BuiltLogoutRequest {
        build_logout_request(&LogoutRequestParams {
            sp_entity_id: SP,
            destination: IDP_SLO,
            name_id: NAME_ID,
            name_qualifier: IDP,
            session_index,
            now: now(),
        })
    }

    fn request_check(slo_url: &str) -> LogoutRequestCheck<'_> {
        LogoutRequestCheck {
            slo_url,
            now: now() + Duration::seconds(2),
            clock_skew: Duration::seconds(60),
            max_age: Duration::minutes(10),
            limits: Limits::default(),
        }
    }

    fn response_check<'a>(
        pending: &'a PendingLogout,
        idp_certs: &'a [TrustedCert],
    ) -> LogoutResponseCheck<'a> {
        LogoutResponseCheck {
            pending,
            slo_url: SP_SLO,
            idp_certs,
            now: now() + Duration::seconds(5),
            clock_skew: Duration::seconds(60),
            max_age: Duration::minutes(10),
            limits: Limits::default(),
        }
    }

    /// The mock IdP's lookup: only our SP, with its certificate.
    fn sp_lookup(issuer: &str) -> Option<Vec<TrustedCert>> {
        (issuer == SP).then(|| certs(&KEYS.sp))
    }

    /// The SP's lookup: only the IdP, with its certificate.
    fn idp_lookup(issuer: &str) -> Option<Vec<TrustedCert>> {
        (issuer == IDP).then(|| certs(&KEYS.idp))
    }

    fn idp_response(in_response_to: &str, status: LogoutOutcome) -> BuiltLogoutResponse {
        build_logout_response(
            in_response_to,
            SP_SLO,
            IDP,
            status,
            now() + Duration::seconds(1),
        )
    }

    #[test]
    fn request_has_every_spid_field() {
        let r = sp_request(Some("_sess"));
        let e = xml::parse(&r.xml, Limits::default()).unwrap();
        assert!(e.is(NS_SAMLP, "LogoutRequest"));
        assert_eq!(e.attr("ID"), Some(r.id.as_str()));
        assert!(r.id.starts_with('_') && r.id.len() == 33);
        assert_eq!(e.attr("Version"), Some("2.0"));
        assert_eq!(e.attr("IssueInstant"), Some("2026-01-02T03:04:05.678Z"));
        assert_eq!(e.attr("Destination"), Some(IDP_SLO));
        let issuer = e.required_child(NS_SAML, "Issuer").unwrap();
        assert_eq!(issuer.text, SP);
        assert_eq!(issuer.attr("Format"), Some(FORMAT_ENTITY));
        assert_eq!(issuer.attr("NameQualifier"), Some(SP));
        let nid = e.required_child(NS_SAML, "NameID").unwrap();
        assert_eq!(nid.text, NAME_ID);
        assert_eq!(nid.attr("Format"), Some(FORMAT_TRANSIENT));
        assert_eq!(nid.attr("NameQualifier"), Some(IDP));
        assert_eq!(
            e.required_child(NS_SAMLP, "SessionIndex").unwrap().text,
            "_sess"
        );
        let none = sp_request(None);
        assert!(!none.xml.contains("SessionIndex"));
        // Signed POST form: the signature sits right after Issuer.
        let signed = r.signed_xml(&KEYS.sp).unwrap();
        let s = xml::parse(&signed, Limits::default()).unwrap();
        assert_eq!(
            s.children.get(1).map(|c| c.name.as_str()),
            Some("Signature")
        );
    }

    #[test]
    fn response_has_every_spid_field() {
        let r = idp_response("_req", LogoutOutcome::Success);
        let e = xml::parse(&r.xml, Limits::default()).unwrap();
        assert!(e.is(NS_SAMLP, "LogoutResponse"));
        assert_eq!(e.attr("InResponseTo"), Some("_req"));
        assert_eq!(e.attr("Destination"), Some(SP_SLO));
        assert_eq!(e.attr("Version"), Some("2.0"));
        let issuer = e.required_child(NS_SAML, "Issuer").unwrap();
        assert_eq!(issuer.attr("Format"), Some(FORMAT_ENTITY));
        assert_eq!(issuer.attr("NameQualifier"), Some(IDP));
        let code = e
            .required_child(NS_SAMLP, "Status")
            .unwrap()
            .required_child(NS_SAMLP, "StatusCode")
            .unwrap();
        assert_eq!(code.attr("Value"), Some(STATUS_SUCCESS));
        let p = idp_response("_req", LogoutOutcome::Partial);
        assert!(p.xml.contains(STATUS_REQUESTER) && p.xml.contains(STATUS_PARTIAL_LOGOUT));
    }

    /// S1 + S2 on HTTP-Redirect: SP → IdP request, IdP → SP response.
    #[test]
    fn sp_initiated_round_trip_redirect() {
        let req = sp_request(Some("_sess"));
        let url = req.redirect_url(Some("rs123"), &KEYS.sp).unwrap();
        assert!(url.starts_with("https://idp.example.it/slo?SAMLRequest="));
        let got = verify_logout_request_redirect(query(&url), sp_lookup, &request_check(IDP_SLO))
            .unwrap();
        assert_eq!(
            got,
            VerifiedLogoutRequest {
                id: req.id.clone(),
                issuer: SP.into(),
                name_id: NAME_ID.into(),
                name_qualifier: Some(IDP.into()),
                session_indexes: vec!["_sess".into()],
                relay_state: Some("rs123".into()),
            }
        );
        let pending = req.pending(IDP, Some("rs123"));
        let resp = idp_response(&got.id, LogoutOutcome::Success);
        let back = resp
            .redirect_url(got.relay_state.as_deref(), &KEYS.idp)
            .unwrap();
        assert!(back.starts_with("https://sp.example.it/slo?SAMLResponse="));
        assert_eq!(
            peek_logout_response_redirect(query(&back), Limits::default()).unwrap(),
            req.id
        );
        let idp_certs = certs(&KEYS.idp);
        assert_eq!(
            verify_logout_response_redirect(query(&back), &response_check(&pending, &idp_certs)),
            Ok(LogoutOutcome::Success)
        );
    }

    /// S1 + S2 on HTTP-POST, without SessionIndex (an L2/L3 login).
    #[test]
    fn sp_initiated_round_trip_post() {
        let req = sp_request(None);
        let value = req.post_value(&KEYS.sp).unwrap();
        let got =
            verify_logout_request_post(&value, Some("rs"), sp_lookup, &request_check(IDP_SLO))
                .unwrap();
        assert_eq!(got.id, req.id);
        assert!(got.session_indexes.is_empty());
        assert_eq!(got.relay_state.as_deref(), Some("rs"));
        let pending = req.pending(IDP, None);
        let resp = idp_response(&got.id, LogoutOutcome::Partial);
        let posted = resp.post_value(&KEYS.idp).unwrap();
        assert_eq!(
            peek_logout_response_post(&posted, Limits::default()).unwrap(),
            req.id
        );
        let idp_certs = certs(&KEYS.idp);
        assert_eq!(
            verify_logout_response_post(&posted, None, &response_check(&pending, &idp_certs)),
            Ok(LogoutOutcome::Partial)
        );
    }

    /// S3 on both bindings: IdP → SP request, SP → IdP response (roles swapped).
    #[test]
    fn idp_initiated_round_trip_both_bindings() {
        let req = build_logout_request(&LogoutRequestParams {
            sp_entity_id: IDP,
            destination: SP_SLO,
            name_id: NAME_ID,
            name_qualifier: IDP,
            session_index: Some("_s1"),
            now: now(),
        });
        let pending = req.pending(SP, Some("idp-rs"));
        let sp_certs = certs(&KEYS.sp);
        let check = LogoutResponseCheck {
            slo_url: IDP_SLO,
            ..response_check(&pending, &sp_certs)
        };
        // Redirect
        let url = req.redirect_url(Some("idp-rs"), &KEYS.idp).unwrap();
        let got = verify_logout_request_redirect(query(&url), idp_lookup, &request_check(SP_SLO))
            .unwrap();
        assert_eq!(got.issuer, IDP);
        assert_eq!(got.session_indexes, vec!["_s1".to_owned()]);
        let resp = build_logout_response(&got.id, IDP_SLO, SP, LogoutOutcome::Success, now());
        let back = resp
            .redirect_url(got.relay_state.as_deref(), &KEYS.sp)
            .unwrap();
        assert_eq!(
            verify_logout_response_redirect(query(&back), &check),
            Ok(LogoutOutcome::Success)
        );
        // POST
        let got = verify_logout_request_post(
            &req.post_value(&KEYS.idp).unwrap(),
            None,
            idp_lookup,
            &request_check(SP_SLO),
        )
        .unwrap();
        assert_eq!(got.name_id, NAME_ID);
        let resp = build_logout_response(&got.id, IDP_SLO, SP, LogoutOutcome::Success, now());
        assert_eq!(
            verify_logout_response_post(&resp.post_value(&KEYS.sp).unwrap(), None, &check),
            Ok(LogoutOutcome::Success)
        );
    }

    #[test]
    fn tampered_or_reencoded_redirect_query_is_refused() {
        let req = sp_request(Some("_sess"));
        let url = req.redirect_url(Some("rs123"), &KEYS.sp).unwrap();
        let q = query(&url);
        let check = request_check(IDP_SLO);
        // Changed RelayState.
        let tampered = q.replace("RelayState=rs123", "RelayState=rs124");
        assert_eq!(
            verify_logout_request_redirect(&tampered, sp_lookup, &check),
            Err(SamlError::SignatureInvalid)
        );
        // Same decoded values, different octets: `%2F` → `/` and lowercase hex.
        assert!(q.contains("SigAlg=http%3A%2F%2F"));
        for reencoded in [
            q.replace("SigAlg=http%3A%2F%2F", "SigAlg=http%3A//"),
            q.replace("SigAlg=http%3A%2F%2F", "SigAlg=http%3a%2f%2f"),
        ] {
            assert_eq!(
                verify_logout_request_redirect(&reencoded, sp_lookup, &check),
                Err(SamlError::SignatureInvalid),
                "{reencoded}"
            );
        }
        // Signature removed, SigAlg removed, SigAlg outside the allowlist.
        let (unsigned, _) = q.split_once("&Signature=").unwrap();
        assert_eq!(
            verify_logout_request_redirect(unsigned, sp_lookup, &check),
            Err(SamlError::SignatureMissing("Signature"))
        );
        let (no_alg, _) = q.split_once("&SigAlg=").unwrap();
        assert_eq!(
            verify_logout_request_redirect(no_alg, sp_lookup, &check),
            Err(SamlError::SignatureMissing("SigAlg"))
        );
        let sha1 = q.replace("xmldsig-more%23rsa-sha256", "xmldsig-more%23rsa-sha1");
        assert!(matches!(
            verify_logout_request_redirect(&sha1, sp_lookup, &check),
            Err(SamlError::SignatureNotAllowed(_))
        ));
        // Signed by a key the receiver does not trust for this issuer.
        let forged = req.redirect_url(Some("rs123"), &KEYS.other).unwrap();
        assert_eq!(
            verify_logout_request_redirect(query(&forged), sp_lookup, &check),
            Err(SamlError::SignatureInvalid)
        );
        // Unknown issuer.
        assert!(matches!(
            verify_logout_request_redirect(q, idp_lookup, &check),
            Err(SamlError::Mismatch(_))
        ));
    }

    #[test]
    fn redirect_message_with_xml_signature_is_refused() {
        let req = sp_request(None);
        let with_sig = BuiltLogoutRequest {
            xml: req.signed_xml(&KEYS.sp).unwrap(),
            ..req
        };
        let url = with_sig.redirect_url(None, &KEYS.sp).unwrap();
        assert!(matches!(
            verify_logout_request_redirect(query(&url), sp_lookup, &request_check(IDP_SLO)),
            Err(SamlError::Structure(_))
        ));
    }

    #[test]
    fn response_rules() {
        let req = sp_request(None);
        let pending = req.pending(IDP, Some("rs"));
        let idp_certs = certs(&KEYS.idp);
        let check = response_check(&pending, &idp_certs);
        let verify = |r: &BuiltLogoutResponse| {
            verify_logout_response_redirect(
                query(&r.redirect_url(None, &KEYS.idp).unwrap()),
                &check,
            )
        };
        // Wrong InResponseTo.
        assert!(matches!(
            verify(&idp_response("_other", LogoutOutcome::Success)),
            Err(SamlError::Mismatch(m)) if m.contains("InResponseTo")
        ));
        // Wrong Destination.
        let wrong_dest = build_logout_response(
            &req.id,
            "https://sp.example.it/elsewhere",
            IDP,
            LogoutOutcome::Success,
            now(),
        );
        assert!(
            matches!(verify(&wrong_dest), Err(SamlError::Mismatch(m)) if m.contains("Destination"))
        );
        // Wrong Issuer (even when signed with the right key).
        let wrong_issuer = build_logout_response(
            &req.id,
            SP_SLO,
            "https://evil.example.it",
            LogoutOutcome::Success,
            now(),
        );
        assert!(
            matches!(verify(&wrong_issuer), Err(SamlError::Mismatch(m)) if m.contains("Issuer"))
        );
        // Signed by another key.
        let ok = idp_response(&req.id, LogoutOutcome::Success);
        let forged = ok.redirect_url(None, &KEYS.other).unwrap();
        assert_eq!(
            verify_logout_response_redirect(query(&forged), &check),
            Err(SamlError::SignatureInvalid)
        );
        // Echoed RelayState must be ours; absent or empty tolerated.
        for (rs, ok_expected) in [
            (Some("rs"), true),
            (Some(""), true),
            (None, true),
            (Some("zz"), false),
        ] {
            let url = ok.redirect_url(rs, &KEYS.idp).unwrap();
            assert_eq!(
                verify_logout_response_redirect(query(&url), &check).is_ok(),
                ok_expected,
                "{rs:?}"
            );
        }
        // Times: in the future, before the request, too old.
        for (t, label) in [
            (now() + Duration::minutes(5), "future"),
            (now() - Duration::minutes(5), "before request"),
        ] {
            let r = build_logout_response(&req.id, SP_SLO, IDP, LogoutOutcome::Success, t);
            assert!(matches!(verify(&r), Err(SamlError::Time(_))), "{label}");
        }
        let late = LogoutResponseCheck {
            now: now() + Duration::minutes(30),
            ..check
        };
        assert!(matches!(
            verify_logout_response_redirect(
                query(&ok.redirect_url(None, &KEYS.idp).unwrap()),
                &late
            ),
            Err(SamlError::Time(_))
        ));
        // A LogoutRequest where a LogoutResponse is expected.
        let url = req.redirect_url(None, &KEYS.idp).unwrap();
        assert!(verify_logout_response_redirect(query(&url), &check).is_err());
    }

    #[test]
    fn unsigned_post_is_refused() {
        let req = sp_request(None);
        let pending = req.pending(IDP, None);
        let idp_certs = certs(&KEYS.idp);
        let resp = idp_response(&req.id, LogoutOutcome::Success);
        assert_eq!(
            verify_logout_response_post(
                &encode_post(&resp.xml),
                None,
                &response_check(&pending, &idp_certs)
            ),
            Err(SamlError::SignatureMissing("LogoutResponse"))
        );
        assert_eq!(
            verify_logout_request_post(
                &encode_post(&req.xml),
                None,
                sp_lookup,
                &request_check(IDP_SLO)
            ),
            Err(SamlError::SignatureMissing("LogoutRequest"))
        );
        // Signed, then altered after signing.
        let signed = resp.signed_xml(&KEYS.idp).unwrap();
        let altered = signed.replace(STATUS_SUCCESS, STATUS_RESPONDER);
        assert_eq!(
            verify_logout_response_post(
                &encode_post(&altered),
                None,
                &response_check(&pending, &idp_certs)
            ),
            Err(SamlError::SignatureInvalid)
        );
    }

    #[test]
    fn a_whole_document_reference_on_a_logout_message_is_refused() {
        // `URI=""` is for the root signature of signed metadata only: a LogoutRequest
        // or LogoutResponse signed so (with the right key) is refused before xmlsec.
        let whole = |xml: &str, issuer_end: usize, key: &SigningKey| {
            let (head, tail) = xml.split_at(issuer_end);
            key.sign_enveloped(&format!(
                "{head}{}{tail}",
                crate::saml::sign::whole_document_template(key.cert_base64())
            ))
            .unwrap()
        };
        let req = sp_request(None);
        let pending = req.pending(IDP, None);
        let idp_certs = certs(&KEYS.idp);
        let resp = idp_response(&req.id, LogoutOutcome::Success);
        let signed = whole(&resp.xml, resp.issuer_end, &KEYS.idp);
        assert!(signed.contains(r#"<ds:Reference URI="">"#));
        assert!(matches!(
            verify_logout_response_post(
                &encode_post(&signed),
                None,
                &response_check(&pending, &idp_certs)
            ),
            Err(SamlError::SignatureNotAllowed(_))
        ));
        let signed = whole(&req.xml, req.issuer_end, &KEYS.sp);
        assert!(matches!(
            verify_logout_request_post(
                &encode_post(&signed),
                None,
                sp_lookup,
                &request_check(IDP_SLO)
            ),
            Err(SamlError::SignatureNotAllowed(_))
        ));
    }

    #[test]
    fn statuses() {
        let req = sp_request(None);
        let pending = req.pending(IDP, None);
        let idp_certs = certs(&KEYS.idp);
        let check = response_check(&pending, &idp_certs);
        let with_status = |status: &str| {
            let base = idp_response(&req.id, LogoutOutcome::Success);
            let xml = base.xml.replace(
                &format!(r#"<samlp:StatusCode Value="{STATUS_SUCCESS}"/>"#),
                status,
            );
            let r = BuiltLogoutResponse { xml, ..base };
            verify_logout_response_post(&r.post_value(&KEYS.idp).unwrap(), None, &check)
        };
        assert_eq!(
            with_status(&format!(
                r#"<samlp:StatusCode Value="{STATUS_REQUESTER}"><samlp:StatusCode Value="{STATUS_PARTIAL_LOGOUT}"/></samlp:StatusCode>"#
            )),
            Ok(LogoutOutcome::Partial)
        );
        assert_eq!(
            with_status(&format!(
                r#"<samlp:StatusCode Value="{STATUS_SUCCESS}"><samlp:StatusCode Value="{STATUS_PARTIAL_LOGOUT}"/></samlp:StatusCode>"#
            )),
            Ok(LogoutOutcome::Partial)
        );
        let denied = "urn:oasis:names:tc:SAML:2.0:status:RequestDenied";
        let err = with_status(&format!(
            r#"<samlp:StatusCode Value="{STATUS_REQUESTER}"><samlp:StatusCode Value="{denied}"/></samlp:StatusCode>"#
        ))
        .unwrap_err();
        assert_eq!(
            err,
            SamlError::LogoutStatus {
                status: STATUS_REQUESTER.into(),
                sub_status: Some(denied.into()),
            }
        );
        assert_eq!(err.code(), "SAML_LOGOUT_STATUS");
        assert_eq!(
            with_status(&format!(
                r#"<samlp:StatusCode Value="{STATUS_RESPONDER}"/>"#
            )),
            Err(SamlError::LogoutStatus {
                status: STATUS_RESPONDER.into(),
                sub_status: None,
            })
        );
        assert_eq!(with_status(""), Err(SamlError::Missing("StatusCode")));
    }

    #[test]
    fn request_rules() {
        let check = request_check(IDP_SLO);
        let verify = |r: &BuiltLogoutRequest| {
            verify_logout_request_post(&r.post_value(&KEYS.sp).unwrap(), None, sp_lookup, &check)
        };
        // Wrong Destination.
        let wrong = build_logout_request(&LogoutRequestParams {
            destination: "https://idp.example.it/other",
            ..params_at(now())
        });
        assert!(matches!(verify(&wrong), Err(SamlError::Mismatch(_))));
        // IssueInstant in the future / too old.
        for t in [now() + Duration::minutes(5), now() - Duration::hours(1)] {
            assert!(matches!(
                verify(&build_logout_request(&params_at(t))),
                Err(SamlError::Time(_))
            ));
        }
        // NotOnOrAfter passed / still valid.
        let base = build_logout_request(&params_at(now()));
        let with_expiry = |t: DateTime<Utc>| BuiltLogoutRequest {
            xml: base.xml.replacen(
                r#" Version="2.0""#,
                &format!(r#" Version="2.0" NotOnOrAfter="{}""#, format_instant(t)),
                1,
            ),
            issuer_end: base.issuer_end + r#" NotOnOrAfter="2026-01-02T03:04:05.678Z""#.len(),
            ..base.clone()
        };
        assert!(matches!(
            verify(&with_expiry(now() - Duration::minutes(2))),
            Err(SamlError::Time(_))
        ));
        assert!(verify(&with_expiry(now() + Duration::minutes(2))).is_ok());
        // Version, NameID.
        let v1 = BuiltLogoutRequest {
            xml: base.xml.replacen(r#"Version="2.0""#, r#"Version="1.1""#, 1),
            ..base.clone()
        };
        assert!(matches!(verify(&v1), Err(SamlError::Invalid { .. })));
        let start = base.xml.find("<saml:NameID").unwrap();
        let end = base.xml.find("</saml:NameID>").unwrap() + "</saml:NameID>".len();
        let no_nameid = BuiltLogoutRequest {
            xml: format!("{}{}", &base.xml[..start], &base.xml[end..]),
            ..base.clone()
        };
        assert_eq!(verify(&no_nameid), Err(SamlError::Missing("NameID")));
        // Unexpected children (EncryptedID) are refused before any cryptography.
        let enc = BuiltLogoutRequest {
            xml: base.xml.replace("saml:NameID", "saml:EncryptedID"),
            ..base.clone()
        };
        assert!(matches!(verify(&enc), Err(SamlError::Structure(_))));
    }

    fn params_at(t: DateTime<Utc>) -> LogoutRequestParams<'static> {
        LogoutRequestParams {
            sp_entity_id: SP,
            destination: IDP_SLO,
            name_id: NAME_ID,
            name_qualifier: IDP,
            session_index: None,
            now: t,
        }
    }
}
