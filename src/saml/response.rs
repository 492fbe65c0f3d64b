//! The ACS trust path (SPID rules §3): a Response is read strictly, its structure
//! pre-filtered, its signatures verified by xmlsec with the IdP's metadata keys
//! only, and every R-* rule checked on the signed content. The one output is a
//! [`VerifiedAssertion`], which nothing outside this module can construct.
//!
//! Steps, each failing closed:
//! 1. [`parse`]: strict read ([`super::xml`]), then structure: root `samlp:Response`;
//!    children only Issuer, Signature, Extensions, Status, Assertion; at most one
//!    `saml:Assertion` in the whole document and, if any, a direct child of the
//!    root; no EncryptedAssertion; every `ds:Signature` a direct child of the
//!    Response or the Assertion, at most one each, shape-checked
//!    ([`super::sign::check_signature_shape`]).
//! 2. [`validate`]: envelope rules (R-RESP, R-STATUS, R-ISSUER) against the pending
//!    request; a non-Success status becomes [`SamlError::IdpStatus`].
//! 3. The Assertion must carry its own signature; every signature is verified on this
//!    same tree ([`super::verify`]: exclusive c14n of the element the signature is a
//!    child of, digest, RSA with the metadata keys), so what is read next is exactly
//!    what was verified.
//! 4. Assertion rules (R-ASSERTION, R-SUBJECT, R-COND, R-AUTHN, R-ACR, R-ATTR) on
//!    the verified Assertion only.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::error::{SamlError, SpidErrorCode};
use super::request::PendingRequest;
use super::sign::{ReferenceRule, TrustedCert, check_signature_shape};
use super::time::parse_instant;
use super::verify::verify_enveloped;
use super::xml::{self, Element, Limits};
use super::{
    CM_BEARER, FORMAT_ENTITY, FORMAT_TRANSIENT, Level, NS_DS, NS_SAML, NS_SAMLP, STATUS_SUCCESS,
};

/// A Response that passed the strict read and the structural pre-filter. Its content
/// is not trusted yet; only correlation fields may be read before [`validate`].
#[derive(Debug, Clone)]
pub struct ParsedResponse {
    root: Element,
    /// Length of the document read, in bytes.
    source_len: usize,
}

impl ParsedResponse {
    /// Length of the document it was read from, in bytes (how big a job validating
    /// it is).
    pub fn source_len(&self) -> usize {
        self.source_len
    }
    /// `InResponseTo` as claimed (unverified; used to find the pending request).
    pub fn in_response_to(&self) -> Option<&str> {
        self.root.attr("InResponseTo").filter(|s| !s.is_empty())
    }
    /// Response `ID` as claimed (for the transaction log).
    pub fn id(&self) -> Option<&str> {
        self.root.attr("ID")
    }
    /// Response `IssueInstant` as claimed (for the transaction log).
    pub fn issue_instant(&self) -> Option<&str> {
        self.root.attr("IssueInstant")
    }
    /// The tree as read (unverified), for the fuzz targets.
    pub(crate) fn root(&self) -> &Element {
        &self.root
    }
    /// Response Issuer text as claimed (for the transaction log).
    pub fn issuer(&self) -> Option<&str> {
        self.root
            .children_named(NS_SAML, "Issuer")
            .next()
            .map(Element::trimmed_text)
    }
}

/// Reads and structurally pre-filters a decoded Response.
pub fn parse(xml_text: &str, limits: Limits) -> Result<ParsedResponse, SamlError> {
    let root = xml::parse(xml_text, limits)?;
    if !root.is(NS_SAMLP, "Response") {
        return Err(SamlError::Structure(
            "the root is not samlp:Response".into(),
        ));
    }
    for child in &root.children {
        let allowed = (child.ns.as_deref() == Some(NS_SAML)
            && matches!(child.name.as_str(), "Issuer" | "Assertion"))
            || (child.ns.as_deref() == Some(NS_SAMLP)
                && matches!(child.name.as_str(), "Status" | "Extensions"))
            || child.is(NS_DS, "Signature");
        if !allowed {
            return Err(SamlError::Structure(format!(
                "unexpected {} in Response",
                child.name
            )));
        }
    }
    let all = root.descendants();
    if all.iter().any(|e| e.name == "EncryptedAssertion") {
        return Err(SamlError::Structure(
            "encrypted assertions are not used in SPID".into(),
        ));
    }
    let assertions = all.iter().filter(|e| e.is(NS_SAML, "Assertion")).count();
    let direct: Vec<&Element> = root.children_named(NS_SAML, "Assertion").collect();
    if assertions > 1 || assertions != direct.len() {
        return Err(SamlError::Structure(
            "exactly one Assertion, as a direct child of Response, is allowed".into(),
        ));
    }
    let signatures = all.iter().filter(|e| e.is(NS_DS, "Signature")).count();
    let mut placed = 0;
    for parent in std::iter::once(&root).chain(direct.iter().copied()) {
        let mut sigs = parent.children_named(NS_DS, "Signature");
        if let Some(sig) = sigs.next() {
            if sigs.next().is_some() {
                return Err(SamlError::Structure(format!(
                    "more than one Signature in {}",
                    parent.name
                )));
            }
            check_signature_shape(
                sig,
                parent.attr("ID").unwrap_or_default(),
                ReferenceRule::IdOnly,
            )?;
            placed += 1;
        }
    }
    if placed != signatures {
        return Err(SamlError::Structure(
            "a Signature may only be a direct child of Response or Assertion".into(),
        ));
    }
    check_unique_ids(&root, &all)?;
    Ok(ParsedResponse {
        root,
        source_len: xml_text.len(),
    })
}

/// No two elements carry the same `ID` (XML-DSig references name elements by it; the
/// verifier checks the element it reads, and a repeated ID is refused besides, as
/// xmlsec refuses it).
fn check_unique_ids(root: &Element, all: &[&Element]) -> Result<(), SamlError> {
    let mut ids: Vec<&str> = std::iter::once(root)
        .chain(all.iter().copied())
        .filter_map(|e| e.attr("ID"))
        .collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w.first() == w.last()) {
        return Err(SamlError::Structure("the same ID on two elements".into()));
    }
    Ok(())
}

/// What a Response is checked against.
#[derive(Debug, Clone, Copy)]
pub struct ResponseCheck<'a> {
    /// The outstanding request this Response claims to answer.
    pub pending: &'a PendingRequest,
    /// Our entityID (the Audience).
    pub sp_entity_id: &'a str,
    /// The ACS URL that received the Response (Destination, Recipient).
    pub acs_url: &'a str,
    /// The signing certificates of `pending.idp_entity_id`, from its metadata.
    pub idp_certs: &'a [TrustedCert],
    /// The current time.
    pub now: DateTime<Utc>,
    /// Tolerated clock difference.
    pub clock_skew: Duration,
    /// Furthest ahead of `now` an IdP may put NotOnOrAfter (it also caps the
    /// replay-cache TTL).
    pub max_validity: Duration,
    /// Bounds for re-reading the reduced document.
    pub limits: Limits,
}

/// The outcome of a successful validation.
pub type ResponseOutcome = Result<VerifiedAssertion, SamlError>;

/// A SPID identity whose Response passed every check. Only [`validate`] builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    idp_entity_id: String,
    response_id: String,
    assertion_id: String,
    name_id: String,
    name_qualifier: String,
    session_index: Option<String>,
    level: Level,
    not_on_or_after: DateTime<Utc>,
    attributes: BTreeMap<String, Vec<String>>,
}

impl VerifiedAssertion {
    /// The IdP that asserted the identity.
    pub fn idp_entity_id(&self) -> &str {
        &self.idp_entity_id
    }
    /// Response ID.
    pub fn response_id(&self) -> &str {
        &self.response_id
    }
    /// Assertion ID (the replay-cache key).
    pub fn assertion_id(&self) -> &str {
        &self.assertion_id
    }
    /// Transient NameID, trimmed.
    pub fn name_id(&self) -> &str {
        &self.name_id
    }
    /// NameID NameQualifier (the IdP's).
    pub fn name_qualifier(&self) -> &str {
        &self.name_qualifier
    }
    /// AuthnStatement SessionIndex (L1 only).
    pub fn session_index(&self) -> Option<&str> {
        self.session_index.as_deref()
    }
    /// The level actually obtained.
    pub fn level(&self) -> Level {
        self.level
    }
    /// SubjectConfirmationData NotOnOrAfter: keep the assertion ID in the replay cache until then.
    pub fn not_on_or_after(&self) -> DateTime<Utc> {
        self.not_on_or_after
    }
    /// Attributes by name, values trimmed.
    pub fn attributes(&self) -> &BTreeMap<String, Vec<String>> {
        &self.attributes
    }
    /// The first value of an attribute.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}

fn required_attr<'a>(el: &'a Element, name: &'static str) -> Result<&'a str, SamlError> {
    match el.attr(name) {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(SamlError::Missing(name)),
    }
}

fn check_version(el: &Element, what: &'static str) -> Result<(), SamlError> {
    if required_attr(el, "Version")? != "2.0" {
        return Err(SamlError::invalid(what, "Version must be 2.0"));
    }
    Ok(())
}

/// An IssueInstant must be a valid instant, not before the request (minus skew) and
/// not after now (plus skew).
fn check_issue_instant(
    el: &Element,
    field: &'static str,
    c: &ResponseCheck<'_>,
) -> Result<(), SamlError> {
    let t = parse_instant(field, el.attr("IssueInstant").unwrap_or_default())?;
    if t + c.clock_skew < c.pending.issue_instant {
        return Err(SamlError::Time(format!("{field} precedes the request")));
    }
    if t > c.now + c.clock_skew {
        return Err(SamlError::Time(format!("{field} is in the future")));
    }
    Ok(())
}

fn check_issuer(
    parent: &Element,
    field: &'static str,
    expected: &str,
    format_required: bool,
) -> Result<(), SamlError> {
    let issuer = parent.required_child(NS_SAML, "Issuer")?;
    let text = issuer.trimmed_text();
    if text.is_empty() {
        return Err(SamlError::Missing(field));
    }
    if text != expected {
        return Err(SamlError::Mismatch(format!(
            "{field} is not the IdP the request went to"
        )));
    }
    match issuer.attr("Format") {
        Some(FORMAT_ENTITY) => Ok(()),
        None if !format_required => Ok(()),
        None => Err(SamlError::Missing("Issuer Format")),
        Some(_) => Err(SamlError::invalid(field, "Format must be entity")),
    }
}

fn status_of(root: &Element) -> Result<(String, Option<String>, Option<SpidErrorCode>), SamlError> {
    let status = root.required_child(NS_SAMLP, "Status")?;
    let code = status.required_child(NS_SAMLP, "StatusCode")?;
    let value = required_attr(code, "Value")?.to_owned();
    let sub = code
        .unique_child(NS_SAMLP, "StatusCode")?
        .and_then(|s| s.attr("Value"))
        .map(str::to_owned);
    let spid_code = status
        .unique_child(NS_SAMLP, "StatusMessage")?
        .and_then(|m| SpidErrorCode::from_status_message(&m.text));
    Ok((value, sub, spid_code))
}

/// Validates a parsed Response against its pending request (steps 2–4 above).
pub fn validate(parsed: &ParsedResponse, c: &ResponseCheck<'_>) -> ResponseOutcome {
    let root = &parsed.root;
    // R-RESP
    required_attr(root, "ID")?;
    check_version(root, "Response")?;
    check_issue_instant(root, "Response IssueInstant", c)?;
    if required_attr(root, "InResponseTo")? != c.pending.id {
        return Err(SamlError::Mismatch(
            "InResponseTo is not the request ID".into(),
        ));
    }
    if required_attr(root, "Destination")? != c.acs_url {
        return Err(SamlError::Mismatch("Destination is not this ACS".into()));
    }
    // R-ISSUER (Response: Format optional, but entity if present)
    check_issuer(root, "Response Issuer", &c.pending.idp_entity_id, false)?;
    // R-STATUS
    let (status, sub_status, code) = status_of(root)?;
    let response_signed = root.unique_child(NS_DS, "Signature")?.is_some();
    if status != STATUS_SUCCESS {
        // A signed error must verify; an unsigned one is reported but marked as such.
        if response_signed {
            verify_enveloped(&[root], c.idp_certs)?;
        }
        return Err(SamlError::IdpStatus {
            status,
            sub_status,
            code,
            authenticated: response_signed,
            profile: c.pending.profile,
        });
    }
    // R-ASSERTION + R-SIG: the Assertion carries its own signature, the Response's
    // verifies if present; both on this very tree (no ID lookup, no second parse).
    let assertion = root
        .unique_child(NS_SAML, "Assertion")?
        .ok_or(SamlError::Missing("Assertion"))?;
    if assertion.unique_child(NS_DS, "Signature")?.is_none() {
        return Err(SamlError::SignatureMissing("the Assertion must be signed"));
    }
    required_attr(assertion, "ID")?;
    if response_signed {
        verify_enveloped(&[root], c.idp_certs)?;
    }
    verify_enveloped(&[root, assertion], c.idp_certs)?;
    validate_assertion(assertion, parsed, c)
}

fn validate_assertion(
    a: &Element,
    parsed: &ParsedResponse,
    c: &ResponseCheck<'_>,
) -> ResponseOutcome {
    let assertion_id = required_attr(a, "ID")?.to_owned();
    check_version(a, "Assertion")?;
    check_issue_instant(a, "Assertion IssueInstant", c)?;
    // CIE: the Assertion Issuer carries no Format (spid-sp-test's cie-sp-public profile
    // leaves out cases 70 and 71); if present it must still be entity.
    let format_required = c.pending.profile != super::IdpProfile::Cie;
    check_issuer(
        a,
        "Assertion Issuer",
        &c.pending.idp_entity_id,
        format_required,
    )?;
    let subject = check_subject(a, c)?;
    check_conditions(a, c)?;
    let (level, session_index) = check_authn_statement(a, c)?;
    let attributes = super::attributes::read(a)?;
    Ok(VerifiedAssertion {
        idp_entity_id: c.pending.idp_entity_id.clone(),
        response_id: parsed.id().unwrap_or_default().to_owned(),
        assertion_id,
        name_id: subject.name_id,
        name_qualifier: subject.name_qualifier,
        session_index,
        level,
        not_on_or_after: subject.not_on_or_after,
        attributes,
    })
}

/// What R-SUBJECT yields.
struct CheckedSubject {
    name_id: String,
    name_qualifier: String,
    not_on_or_after: DateTime<Utc>,
}

/// R-SUBJECT: a bounded transient NameID with its NameQualifier, and exactly one bearer
/// SubjectConfirmation for this ACS and this request, live and not further ahead than
/// allowed.
fn check_subject(a: &Element, c: &ResponseCheck<'_>) -> Result<CheckedSubject, SamlError> {
    let subject = a.required_child(NS_SAML, "Subject")?;
    let name_id_el = subject.required_child(NS_SAML, "NameID")?;
    let name_id = name_id_el.trimmed_text().to_owned();
    if name_id.is_empty() {
        return Err(SamlError::Missing("NameID"));
    }
    super::attributes::check_bounded("NameID", &name_id, super::attributes::MAX_NAME_ID)?;
    if required_attr(name_id_el, "Format")? != FORMAT_TRANSIENT {
        return Err(SamlError::invalid("NameID", "Format must be transient"));
    }
    let name_qualifier = required_attr(name_id_el, "NameQualifier")?.to_owned();
    super::attributes::check_bounded(
        "NameQualifier",
        &name_qualifier,
        super::attributes::MAX_ENTITY_ID,
    )?;
    let mut confirmations = subject.children_named(NS_SAML, "SubjectConfirmation");
    let confirmation = confirmations
        .next()
        .ok_or(SamlError::Missing("SubjectConfirmation"))?;
    if confirmations.next().is_some() {
        return Err(SamlError::Structure(
            "more than one SubjectConfirmation".into(),
        ));
    }
    if required_attr(confirmation, "Method")? != CM_BEARER {
        return Err(SamlError::invalid(
            "SubjectConfirmation",
            "Method must be bearer",
        ));
    }
    let not_on_or_after = check_confirmation_data(confirmation, c)?;
    Ok(CheckedSubject {
        name_id,
        name_qualifier,
        not_on_or_after,
    })
}

/// SubjectConfirmationData: Recipient, InResponseTo and a NotOnOrAfter that is live
/// and capped (the IdP chooses it, and it sizes the replay cache).
fn check_confirmation_data(
    confirmation: &Element,
    c: &ResponseCheck<'_>,
) -> Result<DateTime<Utc>, SamlError> {
    let scd = confirmation.required_child(NS_SAML, "SubjectConfirmationData")?;
    if required_attr(scd, "Recipient")? != c.acs_url {
        return Err(SamlError::Mismatch("Recipient is not this ACS".into()));
    }
    if required_attr(scd, "InResponseTo")? != c.pending.id {
        return Err(SamlError::Mismatch(
            "SubjectConfirmationData InResponseTo is not the request ID".into(),
        ));
    }
    let scd_not_after = parse_instant(
        "SubjectConfirmationData NotOnOrAfter",
        scd.attr("NotOnOrAfter").unwrap_or_default(),
    )?;
    if scd_not_after + c.clock_skew <= c.now {
        return Err(SamlError::Time(
            "SubjectConfirmationData has expired".into(),
        ));
    }
    if scd_not_after > c.now + c.max_validity {
        return Err(SamlError::Time(
            "SubjectConfirmationData NotOnOrAfter is further ahead than allowed".into(),
        ));
    }
    Ok(scd_not_after)
}

/// R-COND: NotBefore not in the future, NotOnOrAfter live and capped, and every
/// AudienceRestriction naming this SP.
fn check_conditions(a: &Element, c: &ResponseCheck<'_>) -> Result<(), SamlError> {
    let conditions = a.required_child(NS_SAML, "Conditions")?;
    let not_before = parse_instant(
        "Conditions NotBefore",
        conditions.attr("NotBefore").unwrap_or_default(),
    )?;
    if not_before > c.now + c.clock_skew {
        return Err(SamlError::Time(
            "Conditions NotBefore is in the future".into(),
        ));
    }
    let not_after = parse_instant(
        "Conditions NotOnOrAfter",
        conditions.attr("NotOnOrAfter").unwrap_or_default(),
    )?;
    if not_after + c.clock_skew <= c.now {
        return Err(SamlError::Time("Conditions have expired".into()));
    }
    if not_after > c.now + c.max_validity {
        return Err(SamlError::Time(
            "Conditions NotOnOrAfter is further ahead than allowed".into(),
        ));
    }
    let mut restrictions = conditions
        .children_named(NS_SAML, "AudienceRestriction")
        .peekable();
    if restrictions.peek().is_none() {
        return Err(SamlError::Missing("AudienceRestriction"));
    }
    for r in restrictions {
        let audiences: Vec<&str> = r
            .children_named(NS_SAML, "Audience")
            .map(Element::trimmed_text)
            .collect();
        if audiences.iter().all(|a| a.is_empty()) {
            return Err(SamlError::Missing("Audience"));
        }
        if !audiences.contains(&c.sp_entity_id) {
            return Err(SamlError::Mismatch("Audience is not this SP".into()));
        }
    }
    Ok(())
}

/// R-AUTHN + R-ACR: a SPID level that satisfies the request, and the bounded
/// SessionIndex if present.
fn check_authn_statement(
    a: &Element,
    c: &ResponseCheck<'_>,
) -> Result<(Level, Option<String>), SamlError> {
    let authn = a.required_child(NS_SAML, "AuthnStatement")?;
    let context = authn.required_child(NS_SAML, "AuthnContext")?;
    let class_ref = context
        .required_child(NS_SAML, "AuthnContextClassRef")?
        .trimmed_text();
    if class_ref.is_empty() {
        return Err(SamlError::Missing("AuthnContextClassRef"));
    }
    let level = Level::from_uri(class_ref)
        .ok_or_else(|| SamlError::invalid("AuthnContextClassRef", "not a SPID level"))?;
    if !c.pending.comparison.accepts(c.pending.level, level) {
        return Err(SamlError::Level {
            obtained: level.number(),
            requested: c.pending.level.number(),
            comparison: c.pending.comparison.as_str(),
        });
    }
    let session_index = authn
        .attr("SessionIndex")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    if let Some(si) = &session_index {
        super::attributes::check_bounded("SessionIndex", si, super::attributes::MAX_NAME_ID)?;
    }
    Ok((level, session_index))
}
