//! The identity-provider side, for the mock IdP and for tests: reading SP
//! metadata, verifying and reading AuthnRequests on both bindings, and building
//! signed SPID Responses (Assertion signed, then the Response) and IdP metadata.

use chrono::{DateTime, Duration, Utc};

use super::binding::{inflate_base64, parse_query, redirect_signed_octets};
use super::error::{SamlError, SpidErrorCode};
use super::idp_metadata::signing_certs;
use super::ids::new_id;
use super::sign::{
    ReferenceRule, SigningKey, TrustedCert, check_signature_shape, verify_and_reduce, verify_octets,
};
use super::time::format_instant;
use super::xml::{self, Element, Limits, escape};
use super::{
    BINDING_POST, BINDING_REDIRECT, CM_BEARER, Comparison, FORMAT_ENTITY, FORMAT_TRANSIENT, Level,
    NS_DS, NS_MD, NS_SAML, NS_SAMLP, STATUS_AUTHN_FAILED, STATUS_RESPONDER, STATUS_SUCCESS,
};

/// What an IdP needs to know about one SP, from its metadata.
#[derive(Debug, Clone)]
pub struct SpInfo {
    /// entityID.
    pub entity_id: String,
    /// (index, Location, isDefault) of each POST AssertionConsumerService.
    pub acs: Vec<(u16, String, bool)>,
    /// (index, requested attribute names) of each AttributeConsumingService.
    pub attribute_services: Vec<(u16, Vec<String>)>,
    /// Signing certificates.
    pub certs: Vec<TrustedCert>,
    /// SingleLogoutService Location for HTTP-Redirect.
    pub slo_redirect: Option<String>,
    /// SingleLogoutService Location for HTTP-POST.
    pub slo_post: Option<String>,
}

impl SpInfo {
    /// The ACS Location for an index.
    pub fn acs_url(&self, index: u16) -> Option<&str> {
        self.acs
            .iter()
            .find(|(i, _, _)| *i == index)
            .map(|(_, url, _)| url.as_str())
    }

    /// Where the IdP sends its HTTP-Redirect logout messages: the Redirect
    /// SingleLogoutService, else the POST one (AgID's validator always answers by
    /// Redirect, rules M19).
    pub fn slo_location(&self) -> Option<&str> {
        self.slo_redirect.as_deref().or(self.slo_post.as_deref())
    }

    /// Requested attributes for an index.
    pub fn attributes(&self, index: u16) -> Option<&[String]> {
        self.attribute_services
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, a)| a.as_slice())
    }
}

/// Reads SP metadata (a trusted local copy; the signature is not required here).
pub fn parse_sp_metadata(text: &str) -> Result<SpInfo, SamlError> {
    let root = xml::parse(text, super::idp_metadata::METADATA_LIMITS)?;
    if !root.is(NS_MD, "EntityDescriptor") {
        return Err(SamlError::Structure("not an EntityDescriptor".into()));
    }
    let sp = root.required_child(NS_MD, "SPSSODescriptor")?;
    let parse_index = |e: &Element| -> Result<u16, SamlError> {
        e.attr("index")
            .and_then(|i| i.parse().ok())
            .ok_or_else(|| SamlError::invalid("index", "not an unsigned short"))
    };
    let mut acs = Vec::new();
    for e in sp.children_named(NS_MD, "AssertionConsumerService") {
        if e.attr("Binding") == Some(BINDING_POST) {
            acs.push((
                parse_index(e)?,
                e.attr("Location")
                    .ok_or(SamlError::Missing("Location"))?
                    .to_owned(),
                e.attr("isDefault") == Some("true"),
            ));
        }
    }
    let slo = |binding: &str| {
        sp.children_named(NS_MD, "SingleLogoutService")
            .find(|e| e.attr("Binding") == Some(binding))
            .and_then(|e| e.attr("Location"))
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
    };
    let mut attribute_services = Vec::new();
    for e in sp.children_named(NS_MD, "AttributeConsumingService") {
        let names = e
            .children_named(NS_MD, "RequestedAttribute")
            .filter_map(|r| r.attr("Name"))
            .map(str::to_owned)
            .collect();
        attribute_services.push((parse_index(e)?, names));
    }
    Ok(SpInfo {
        entity_id: root
            .attr("entityID")
            .ok_or(SamlError::Missing("entityID"))?
            .to_owned(),
        acs,
        attribute_services,
        certs: signing_certs(sp)?,
        slo_redirect: slo(BINDING_REDIRECT),
        slo_post: slo(BINDING_POST),
    })
}

/// A verified AuthnRequest as the IdP reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedAuthnRequest {
    /// ID.
    pub id: String,
    /// Issuer (SP entityID).
    pub issuer: String,
    /// IssueInstant text.
    pub issue_instant: String,
    /// AssertionConsumerServiceIndex (0 when absent).
    pub acs_index: u16,
    /// AttributeConsumingServiceIndex (0 when absent).
    pub attribute_index: u16,
    /// Requested level.
    pub level: Level,
    /// Comparison.
    pub comparison: Comparison,
    /// ForceAuthn.
    pub force_authn: bool,
}

fn read_authn_request(root: &Element) -> Result<ReceivedAuthnRequest, SamlError> {
    if !root.is(NS_SAMLP, "AuthnRequest") {
        return Err(SamlError::Structure("not an AuthnRequest".into()));
    }
    let index = |name: &'static str| -> Result<u16, SamlError> {
        match root.attr(name) {
            None => Ok(0),
            Some(v) => v
                .parse()
                .map_err(|_| SamlError::invalid(name, "not an index")),
        }
    };
    let rac = root.required_child(NS_SAMLP, "RequestedAuthnContext")?;
    let comparison = Comparison::parse(rac.attr("Comparison").unwrap_or("exact"))
        .ok_or_else(|| SamlError::invalid("Comparison", "unknown"))?;
    let level = Level::from_uri(
        rac.required_child(NS_SAML, "AuthnContextClassRef")?
            .trimmed_text(),
    )
    .ok_or_else(|| SamlError::invalid("AuthnContextClassRef", "not a SPID level"))?;
    Ok(ReceivedAuthnRequest {
        id: root
            .attr("ID")
            .filter(|s| !s.is_empty())
            .ok_or(SamlError::Missing("ID"))?
            .to_owned(),
        issuer: root
            .required_child(NS_SAML, "Issuer")?
            .trimmed_text()
            .to_owned(),
        issue_instant: root
            .attr("IssueInstant")
            .ok_or(SamlError::Missing("IssueInstant"))?
            .to_owned(),
        acs_index: index("AssertionConsumerServiceIndex")?,
        attribute_index: index("AttributeConsumingServiceIndex")?,
        level,
        comparison,
        force_authn: matches!(root.attr("ForceAuthn"), Some("true" | "1")),
    })
}

/// Issuer of a request, read before verification to find the SP's certificates.
pub fn peek_issuer(xml_text: &str, limits: Limits) -> Result<String, SamlError> {
    let root = xml::parse(xml_text, limits)?;
    Ok(root
        .required_child(NS_SAML, "Issuer")?
        .trimmed_text()
        .to_owned())
}

/// Decodes a Redirect-binding request from the raw query; returns the XML and RelayState.
/// The signature is verified by [`verify_redirect_request`].
pub fn decode_redirect_request(
    raw_query: &str,
    limits: Limits,
) -> Result<(String, Option<String>), SamlError> {
    let params = parse_query(raw_query)?;
    let msg = params
        .iter()
        .find(|p| p.name == "SAMLRequest")
        .ok_or(SamlError::Missing("SAMLRequest"))?;
    let xml_text = inflate_base64(&msg.value, limits.max_bytes)?;
    let relay = params
        .iter()
        .find(|p| p.name == "RelayState")
        .map(|p| p.value.clone());
    Ok((xml_text, relay))
}

/// Verifies a Redirect-binding request's query signature over the raw octets and reads it.
pub fn verify_redirect_request(
    raw_query: &str,
    sp_certs: &[TrustedCert],
    limits: Limits,
) -> Result<ReceivedAuthnRequest, SamlError> {
    let params = parse_query(raw_query)?;
    let octets = redirect_signed_octets(&params)?;
    let get = |n: &'static str| {
        params
            .iter()
            .find(|p| p.name == n)
            .map(|p| p.value.as_str())
            .ok_or(SamlError::SignatureMissing(n))
    };
    verify_octets(
        octets.as_bytes(),
        get("Signature")?,
        get("SigAlg")?,
        sp_certs,
    )?;
    let (xml_text, _) = decode_redirect_request(raw_query, limits)?;
    let root = xml::parse(&xml_text, limits)?;
    if root.unique_child(NS_DS, "Signature")?.is_some() {
        return Err(SamlError::Structure(
            "a Redirect request carries no XML signature".into(),
        ));
    }
    read_authn_request(&root)
}

/// Verifies a POST-binding request's enveloped signature and reads it.
pub fn verify_post_request(
    xml_text: &str,
    sp_certs: &[TrustedCert],
    limits: Limits,
) -> Result<ReceivedAuthnRequest, SamlError> {
    let root = xml::parse(xml_text, limits)?;
    let sig = root
        .unique_child(NS_DS, "Signature")?
        .ok_or(SamlError::SignatureMissing("AuthnRequest"))?;
    check_signature_shape(
        sig,
        root.attr("ID").unwrap_or_default(),
        ReferenceRule::IdOnly,
    )?;
    if root
        .descendants()
        .iter()
        .filter(|e| e.is(NS_DS, "Signature"))
        .count()
        != 1
    {
        return Err(SamlError::Structure("misplaced Signature".into()));
    }
    let reduced = verify_and_reduce(xml_text, sp_certs, limits, ReferenceRule::IdOnly)?;
    if reduced.attr("ID") != root.attr("ID") {
        return Err(SamlError::Structure(
            "the signature does not cover the request".into(),
        ));
    }
    read_authn_request(&reduced)
}

/// One attribute to release.
#[derive(Debug, Clone)]
pub struct AttributeValue {
    /// SPID attribute name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// What the IdP answers.
#[derive(Debug, Clone)]
pub enum ResponseStatus {
    /// Authenticated: the subject and level.
    Success {
        /// Level obtained.
        level: Level,
        /// Attributes released.
        attributes: Vec<AttributeValue>,
    },
    /// A user anomaly `ErrorCode nrNN` (Responder / AuthnFailed), no Assertion.
    Error(SpidErrorCode),
}

/// Everything a Response needs.
#[derive(Debug, Clone)]
pub struct ResponseSpec<'a> {
    /// IdP entityID (Issuer, NameQualifier).
    pub idp_entity_id: &'a str,
    /// SP entityID (Audience).
    pub sp_entity_id: &'a str,
    /// The ACS Location (Destination, Recipient).
    pub acs_url: &'a str,
    /// The request ID (InResponseTo).
    pub in_response_to: &'a str,
    /// Outcome.
    pub status: ResponseStatus,
    /// Now.
    pub now: DateTime<Utc>,
    /// Sign the Response envelope too (SPID makes it optional; the Assertion is always signed).
    pub sign_response: bool,
    /// The shape: a CIE IdP writes both Issuers without `Format`; SPID and FICEP with it.
    pub profile: super::IdpProfile,
}

/// `<saml:Issuer>` of an IdP: with `Format` entity, except in the CIE shape.
fn idp_issuer(spec: &ResponseSpec<'_>) -> String {
    let idp = escape(spec.idp_entity_id);
    if spec.profile == super::IdpProfile::Cie {
        format!(r#"<saml:Issuer>{idp}</saml:Issuer>"#)
    } else {
        format!(
            r#"<saml:Issuer Format="{FORMAT_ENTITY}" NameQualifier="{idp}">{idp}</saml:Issuer>"#
        )
    }
}

/// Builds and signs a SPID Response.
pub fn build_response(spec: &ResponseSpec<'_>, key: &SigningKey) -> Result<String, SamlError> {
    let response_id = new_id();
    let now = format_instant(spec.now);
    let issuer = idp_issuer(spec);
    let (status, assertion) = match &spec.status {
        ResponseStatus::Success { level, attributes } => (
            format!(r#"<samlp:Status><samlp:StatusCode Value="{STATUS_SUCCESS}"/></samlp:Status>"#),
            build_assertion(spec, *level, attributes, key)?,
        ),
        ResponseStatus::Error(code) => (
            format!(
                concat!(
                    r#"<samlp:Status><samlp:StatusCode Value="{}"><samlp:StatusCode Value="{}"/></samlp:StatusCode>"#,
                    "<samlp:StatusMessage>{}</samlp:StatusMessage></samlp:Status>"
                ),
                STATUS_RESPONDER, STATUS_AUTHN_FAILED, code
            ),
            String::new(),
        ),
    };
    let signature = if spec.sign_response {
        super::sign::signature_template(&response_id, key.cert_base64())
    } else {
        String::new()
    };
    let xml_text = format!(
        concat!(
            r#"<samlp:Response xmlns:samlp="{samlp}" xmlns:saml="{saml}" ID="{id}" Version="2.0" "#,
            r#"IssueInstant="{now}" InResponseTo="{irt}" Destination="{dest}">"#,
            "{issuer}{signature}{status}{assertion}</samlp:Response>"
        ),
        samlp = NS_SAMLP,
        saml = NS_SAML,
        id = response_id,
        now = now,
        irt = escape(spec.in_response_to),
        dest = escape(spec.acs_url),
        issuer = issuer,
        signature = signature,
        status = status,
        assertion = assertion,
    );
    if spec.sign_response {
        key.sign_enveloped(&xml_text)
    } else {
        Ok(xml_text)
    }
}

fn build_assertion(
    spec: &ResponseSpec<'_>,
    level: Level,
    attributes: &[AttributeValue],
    key: &SigningKey,
) -> Result<String, SamlError> {
    let id = new_id();
    let now = format_instant(spec.now);
    let not_after = format_instant(spec.now + Duration::minutes(5));
    let idp = escape(spec.idp_entity_id);
    // SessionIndex only at level 1 (only L1 creates an IdP session).
    let session = if level == Level::L1 {
        format!(r#" SessionIndex="{}""#, new_id())
    } else {
        String::new()
    };
    let mut attrs = String::new();
    if !attributes.is_empty() {
        attrs.push_str("<saml:AttributeStatement>");
        for a in attributes {
            let ty = if matches!(a.name.as_str(), "dateOfBirth" | "expirationDate") {
                "xs:date"
            } else {
                "xs:string"
            };
            attrs.push_str(&format!(
                r#"<saml:Attribute Name="{}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic"><saml:AttributeValue xsi:type="{ty}">{}</saml:AttributeValue></saml:Attribute>"#,
                escape(&a.name),
                escape(&a.value)
            ));
        }
        attrs.push_str("</saml:AttributeStatement>");
    }
    let unsigned = format!(
        concat!(
            r#"<saml:Assertion xmlns:saml="{saml}" xmlns:xs="http://www.w3.org/2001/XMLSchema" "#,
            r#"xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="{id}" Version="2.0" IssueInstant="{now}">"#,
            r#"{issuer}{sig}"#,
            r#"<saml:Subject><saml:NameID Format="{ft}" NameQualifier="{idp}">{nameid}</saml:NameID>"#,
            r#"<saml:SubjectConfirmation Method="{bearer}"><saml:SubjectConfirmationData "#,
            r#"InResponseTo="{irt}" NotOnOrAfter="{na}" Recipient="{acs}"/></saml:SubjectConfirmation></saml:Subject>"#,
            r#"<saml:Conditions NotBefore="{now}" NotOnOrAfter="{na}"><saml:AudienceRestriction>"#,
            r#"<saml:Audience>{aud}</saml:Audience></saml:AudienceRestriction></saml:Conditions>"#,
            r#"<saml:AuthnStatement AuthnInstant="{now}"{session}><saml:AuthnContext>"#,
            r#"<saml:AuthnContextClassRef>{acr}</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>"#,
            "{attrs}</saml:Assertion>"
        ),
        saml = NS_SAML,
        id = id,
        now = now,
        issuer = idp_issuer(spec),
        idp = idp,
        sig = super::sign::signature_template(&id, key.cert_base64()),
        ft = FORMAT_TRANSIENT,
        nameid = new_id(),
        bearer = CM_BEARER,
        irt = escape(spec.in_response_to),
        na = not_after,
        acs = escape(spec.acs_url),
        aud = escape(spec.sp_entity_id),
        session = session,
        acr = level.uri(),
        attrs = attrs,
    );
    key.sign_enveloped(&unsigned)
}

/// Signed IdP metadata (for the mock IdP).
pub fn build_idp_metadata(
    entity_id: &str,
    sso_url: &str,
    slo_url: &str,
    organization: &str,
    key: &SigningKey,
) -> Result<String, SamlError> {
    let id = new_id();
    let cert = key.cert_base64();
    let mut x = format!(
        r#"<md:EntityDescriptor xmlns:md="{NS_MD}" xmlns:ds="{NS_DS}" xmlns:saml="{NS_SAML}" entityID="{eid}" ID="{id}">"#,
        eid = escape(entity_id)
    );
    x.push_str(&super::sign::signature_template(&id, cert));
    x.push_str(r#"<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol" WantAuthnRequestsSigned="true">"#);
    x.push_str(&format!(
        r#"<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#
    ));
    for b in [BINDING_REDIRECT, BINDING_POST] {
        x.push_str(&format!(
            r#"<md:SingleLogoutService Binding="{b}" Location="{}"/>"#,
            escape(slo_url)
        ));
    }
    x.push_str(&format!(
        "<md:NameIDFormat>{FORMAT_TRANSIENT}</md:NameIDFormat>"
    ));
    for b in [BINDING_REDIRECT, BINDING_POST] {
        x.push_str(&format!(
            r#"<md:SingleSignOnService Binding="{b}" Location="{}"/>"#,
            escape(sso_url)
        ));
    }
    for name in super::SPID_ATTRIBUTES {
        x.push_str(&format!(r#"<saml:Attribute Name="{name}"/>"#));
    }
    x.push_str(&format!(
        concat!(
            r#"</md:IDPSSODescriptor><md:Organization><md:OrganizationName xml:lang="it">{o}</md:OrganizationName>"#,
            r#"<md:OrganizationDisplayName xml:lang="it">{o}</md:OrganizationDisplayName>"#,
            r#"<md:OrganizationURL xml:lang="it">{u}</md:OrganizationURL></md:Organization></md:EntityDescriptor>"#
        ),
        o = escape(organization),
        u = escape(entity_id)
    ));
    key.sign_enveloped(&x)
}
