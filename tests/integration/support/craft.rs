//! A builder of SPID Responses for negative tests (the fixture corpus of
//! `tests/README.md`).
//!
//! [`Craft::new`] (or [`Craft::for_login`] against a running [`Env`]) describes a
//! valid Response of the same shape as `saml::idp::build_response`: a
//! `samlp:Response` with Issuer, optional Signature, Status and one Assertion; the
//! Assertion signed on its own first, then embedded, then (optionally) the Response
//! signed — `SigningKey::sign_enveloped` signs the FIRST `ds:Signature` template in
//! document order, so the order matters. Every field is public and is the raw text
//! that goes into the document, so a test mutates one thing and keeps the rest
//! valid:
//!
//! - `Option<String>` attribute fields: `None` leaves the attribute out ("mancante"),
//!   `Some("")` writes it empty ("non specificato");
//! - [`SigSpec`] per signature: on/off, SignatureMethod / DigestMethod (xmlsec signs
//!   with whatever the template says, SHA-1 included), Reference URI and an extra
//!   `ds:Transform`, each applied [`Stage::BeforeSigning`] (in the template) or
//!   [`Stage::AfterSigning`] (edited into the signed text), another signing key, and
//!   another KeyInfo certificate;
//! - string hooks, in build order: `edit_assertion` (unsigned Assertion),
//!   `edit_signed_assertion` (after the Assertion is signed, before it is embedded),
//!   `edit_envelope` (the Response without its Assertion: the Assertion sits at
//!   [`ASSERTION_SLOT`], so an edit there cannot touch it), `edit_response` (the
//!   whole Response before it is signed), `edit_signed` (the final text), then
//!   `doctype` is put in front.
//!
//! Remote references and XSLT must be added [`Stage::AfterSigning`] when they point
//! at a live listener: xmlsec would otherwise dereference them while *signing*.
//! Text fields (NameID, attribute values, issuers) are written raw, not escaped, so a
//! test can put a comment or an entity reference in them.

use chrono::{DateTime, Duration, Utc};
use polis_gateway::saml::ids::new_id;
use polis_gateway::saml::time::format_instant;
use polis_gateway::saml::{Level, SigningKey};

use super::gateway::{Env, Pending};

/// XML-DSig namespace.
pub const NS_DS: &str = "http://www.w3.org/2000/09/xmldsig#";
/// RSA-SHA256 (what SPID requires).
pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
/// RSA-SHA1 (refused).
pub const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
/// SHA-256 digest.
pub const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
/// SHA-1 digest (refused).
pub const SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";
/// Exclusive canonicalisation.
pub const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
/// The enveloped-signature transform.
pub const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
/// The XSLT transform algorithm.
pub const XSLT: &str = "http://www.w3.org/TR/1999/REC-xslt-19991116";
/// Issuer Format entity.
pub const FORMAT_ENTITY: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity";
/// NameID Format transient.
pub const FORMAT_TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";
/// Bearer confirmation.
pub const CM_BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
/// Attribute NameFormat basic (what SSC sends).
pub const NAME_FORMAT_BASIC: &str = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic";
/// Where the Assertion goes in the envelope while `edit_envelope` runs.
pub const ASSERTION_SLOT: &str = "<!--craft:assertion-->";
/// `samlp:Status` with Success.
pub const STATUS_SUCCESS: &str = r#"<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>"#;

/// The status of a SPID user anomaly (Responder / AuthnFailed / `ErrorCode nrNN`).
pub fn status_error(code: u8) -> String {
    format!(
        concat!(
            r#"<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Responder">"#,
            r#"<samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"/></samlp:StatusCode>"#,
            "<samlp:StatusMessage>ErrorCode nr{:02}</samlp:StatusMessage></samlp:Status>"
        ),
        code
    )
}

/// A text edit applied while building.
pub type Hook = Box<dyn Fn(String) -> String + Send + Sync>;

/// When a signature knob is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// In the template: xmlsec signs it (and so dereferences/executes it while signing).
    BeforeSigning,
    /// Edited into the signed text: the signature no longer matches, but the shape is what is tested.
    AfterSigning,
}

/// One `ds:Signature` (on the Assertion or on the Response).
#[derive(Clone)]
pub struct SigSpec {
    /// Put a signature on this element at all.
    pub enabled: bool,
    /// SignatureMethod Algorithm (in the template).
    pub signature_method: String,
    /// DigestMethod Algorithm (in the template).
    pub digest_method: String,
    /// Reference URI instead of `#<ID>`.
    pub reference_uri: Option<(Stage, String)>,
    /// A raw `<ds:Transform …>…</ds:Transform>` appended to the Transforms.
    pub extra_transform: Option<(Stage, String)>,
    /// Sign with this key instead of the one passed to [`Craft::build`].
    pub key: Option<SigningKey>,
    /// Base64 certificate in KeyInfo instead of the signing key's own.
    pub key_info_cert: Option<String>,
}

impl SigSpec {
    /// RSA-SHA256 / SHA-256, `#ID`, enveloped + exc-c14n: the SPID signature.
    pub fn spid() -> Self {
        Self {
            enabled: true,
            signature_method: RSA_SHA256.into(),
            digest_method: SHA256.into(),
            reference_uri: None,
            extra_transform: None,
            key: None,
            key_info_cert: None,
        }
    }

    /// No signature.
    pub fn none() -> Self {
        Self {
            enabled: false,
            ..Self::spid()
        }
    }

    fn template(&self, id: &str, cert_b64: &str) -> String {
        let uri = match &self.reference_uri {
            Some((Stage::BeforeSigning, uri)) => uri.clone(),
            _ => format!("#{id}"),
        };
        let extra = match &self.extra_transform {
            Some((Stage::BeforeSigning, t)) => t.as_str(),
            _ => "",
        };
        format!(
            concat!(
                r#"<ds:Signature xmlns:ds="{ds}"><ds:SignedInfo>"#,
                r#"<ds:CanonicalizationMethod Algorithm="{c14n}"/><ds:SignatureMethod Algorithm="{alg}"/>"#,
                r#"<ds:Reference URI="{uri}"><ds:Transforms><ds:Transform Algorithm="{env}"/>"#,
                r#"<ds:Transform Algorithm="{c14n}"/>{extra}</ds:Transforms>"#,
                r#"<ds:DigestMethod Algorithm="{dig}"/><ds:DigestValue></ds:DigestValue></ds:Reference>"#,
                r#"</ds:SignedInfo><ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data>"#,
                r#"<ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>"#
            ),
            ds = NS_DS,
            c14n = EXC_C14N,
            alg = self.signature_method,
            uri = uri,
            env = ENVELOPED,
            extra = extra,
            dig = self.digest_method,
            cert = self.key_info_cert.as_deref().unwrap_or(cert_b64),
        )
    }

    /// Signs `xml` (its first template) and applies the after-signing knobs to the
    /// first signature in it.
    fn sign(&self, xml: &str, id: &str, default_key: &SigningKey) -> String {
        let key = self.key.as_ref().unwrap_or(default_key);
        let mut signed = key.sign_enveloped(xml).expect("xmlsec signs the template");
        if let Some((Stage::AfterSigning, uri)) = &self.reference_uri {
            signed = signed.replacen(&format!(r##"URI="#{id}""##), &format!(r#"URI="{uri}""#), 1);
        }
        if let Some((Stage::AfterSigning, t)) = &self.extra_transform {
            signed = signed.replacen("</ds:Transforms>", &format!("{t}</ds:Transforms>"), 1);
        }
        signed
    }
}

/// An Issuer element.
#[derive(Debug, Clone)]
pub struct IssuerSpec {
    /// Text.
    pub value: String,
    /// `Format`, `None` = absent.
    pub format: Option<String>,
}

impl IssuerSpec {
    /// `<saml:Issuer Format="…entity">value</saml:Issuer>`.
    pub fn entity(value: &str) -> Self {
        Self {
            value: value.to_owned(),
            format: Some(FORMAT_ENTITY.to_owned()),
        }
    }

    fn xml(&self) -> String {
        format!(
            "<saml:Issuer{}>{}</saml:Issuer>",
            attr("Format", self.format.as_deref()),
            self.value
        )
    }
}

fn attr(name: &str, value: Option<&str>) -> String {
    value
        .map(|v| format!(r#" {name}="{v}""#))
        .unwrap_or_default()
}

/// A Response under construction. See the module documentation.
pub struct Craft {
    // Response envelope
    /// Response `ID`.
    pub response_id: Option<String>,
    /// Response `Version`.
    pub response_version: Option<String>,
    /// Response `IssueInstant`.
    pub response_issue_instant: Option<String>,
    /// Response `InResponseTo`.
    pub in_response_to: Option<String>,
    /// Response `Destination`.
    pub destination: Option<String>,
    /// Response Issuer, `None` = absent.
    pub response_issuer: Option<IssuerSpec>,
    /// Raw `samlp:Status` (or anything in its place).
    pub status: String,
    /// The Response signature.
    pub response_sig: SigSpec,
    // Assertion
    /// Include the Assertion at all.
    pub include_assertion: bool,
    /// Assertion `ID`.
    pub assertion_id: Option<String>,
    /// Assertion `Version`.
    pub assertion_version: Option<String>,
    /// Assertion `IssueInstant`.
    pub assertion_issue_instant: Option<String>,
    /// Assertion Issuer, `None` = absent.
    pub assertion_issuer: Option<IssuerSpec>,
    /// The Assertion signature.
    pub assertion_sig: SigSpec,
    /// NameID text (raw).
    pub name_id: String,
    /// NameID `Format`.
    pub name_id_format: Option<String>,
    /// NameID `NameQualifier`.
    pub name_qualifier: Option<String>,
    /// SubjectConfirmation `Method`.
    pub method: Option<String>,
    /// SubjectConfirmationData `InResponseTo`.
    pub scd_in_response_to: Option<String>,
    /// SubjectConfirmationData `NotOnOrAfter`.
    pub scd_not_on_or_after: Option<String>,
    /// SubjectConfirmationData `Recipient`.
    pub recipient: Option<String>,
    /// Conditions `NotBefore`.
    pub not_before: Option<String>,
    /// Conditions `NotOnOrAfter`.
    pub not_on_or_after: Option<String>,
    /// Audience text, `None` = no Audience element in the AudienceRestriction.
    pub audience: Option<String>,
    /// AuthnStatement `AuthnInstant`.
    pub authn_instant: String,
    /// AuthnStatement `SessionIndex`.
    pub session_index: Option<String>,
    /// AuthnContextClassRef text (raw).
    pub acr: String,
    /// Released attributes (name, value), one Attribute each; none = no AttributeStatement.
    pub attributes: Vec<(String, String)>,
    /// Attribute `NameFormat`.
    pub attribute_name_format: Option<String>,
    // hooks
    /// On the unsigned Assertion (its signature template included).
    pub edit_assertion: Option<Hook>,
    /// On the signed Assertion, before it is embedded.
    pub edit_signed_assertion: Option<Hook>,
    /// On the Response without its Assertion (which sits at [`ASSERTION_SLOT`]).
    pub edit_envelope: Option<Hook>,
    /// On the whole Response before it is signed.
    pub edit_response: Option<Hook>,
    /// On the final text.
    pub edit_signed: Option<Hook>,
    /// Put in front of the final text (e.g. a DOCTYPE).
    pub doctype: Option<String>,
}

impl Craft {
    /// A valid Response from `idp` to `sp`, answering request `in_response_to`, issued
    /// at `now` (every IssueInstant and NotBefore), valid for 5 minutes, at level 2,
    /// with Mario Rossi's attributes. Both signatures on (the SPID base case).
    pub fn new(
        idp: &str,
        sp: &str,
        acs_url: &str,
        in_response_to: &str,
        now: DateTime<Utc>,
    ) -> Self {
        let issued = format_instant(now);
        let until = format_instant(now + Duration::minutes(5));
        Self {
            response_id: Some(new_id()),
            response_version: Some("2.0".into()),
            response_issue_instant: Some(issued.clone()),
            in_response_to: Some(in_response_to.into()),
            destination: Some(acs_url.into()),
            response_issuer: Some(IssuerSpec::entity(idp)),
            status: STATUS_SUCCESS.into(),
            response_sig: SigSpec::spid(),
            include_assertion: true,
            assertion_id: Some(new_id()),
            assertion_version: Some("2.0".into()),
            assertion_issue_instant: Some(issued.clone()),
            assertion_issuer: Some(IssuerSpec::entity(idp)),
            assertion_sig: SigSpec::spid(),
            name_id: new_id(),
            name_id_format: Some(FORMAT_TRANSIENT.into()),
            name_qualifier: Some(idp.into()),
            method: Some(CM_BEARER.into()),
            scd_in_response_to: Some(in_response_to.into()),
            scd_not_on_or_after: Some(until.clone()),
            recipient: Some(acs_url.into()),
            not_before: Some(issued.clone()),
            not_on_or_after: Some(until),
            audience: Some(sp.into()),
            authn_instant: issued.clone(),
            session_index: None,
            acr: Level::L2.uri().into(),
            attributes: [
                ("spidCode", "MOCK0000000001"),
                ("name", "Mario"),
                ("familyName", "Rossi"),
                ("fiscalNumber", "TINIT-RSSMRA80A01H501U"),
                ("email", "mario.rossi@example.it"),
                ("dateOfBirth", "1980-01-01"),
            ]
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect(),
            attribute_name_format: Some(NAME_FORMAT_BASIC.into()),
            edit_assertion: None,
            edit_signed_assertion: None,
            edit_envelope: None,
            edit_response: None,
            edit_signed: None,
            doctype: None,
        }
    }

    /// A valid Response from the Env's mock IdP to the gateway, answering `pending`.
    /// Its IssueInstants equal the request's (as spid-sp-test sends them: equal is
    /// allowed); the validity window starts now.
    pub fn for_login(env: &Env, pending: &Pending) -> Self {
        let mut c = Self::new(
            &env.idp,
            &env.gw,
            &format!("{}/acs", env.gw),
            &pending.request_id,
            Utc::now(),
        );
        c.response_issue_instant = Some(pending.issue_instant.clone());
        c.assertion_issue_instant = Some(pending.issue_instant.clone());
        c
    }

    /// Sets both issuers (Response and Assertion) and the NameQualifier to `idp`.
    pub fn issued_by(mut self, idp: &str) -> Self {
        self.response_issuer = Some(IssuerSpec::entity(idp));
        self.assertion_issuer = Some(IssuerSpec::entity(idp));
        self.name_qualifier = Some(idp.into());
        self
    }

    /// The Assertion, signed if `assertion_sig.enabled`.
    pub fn assertion_xml(&self, key: &SigningKey) -> String {
        let signer = self.assertion_sig.key.as_ref().unwrap_or(key);
        let id = self.assertion_id.as_deref().unwrap_or_default();
        let sig = if self.assertion_sig.enabled {
            self.assertion_sig.template(id, signer.cert_base64())
        } else {
            String::new()
        };
        let attributes = if self.attributes.is_empty() {
            String::new()
        } else {
            let mut s = String::from("<saml:AttributeStatement>");
            for (name, value) in &self.attributes {
                let ty = if matches!(name.as_str(), "dateOfBirth" | "expirationDate") {
                    "xs:date"
                } else {
                    "xs:string"
                };
                s.push_str(&format!(
                    r#"<saml:Attribute Name="{name}"{nf}><saml:AttributeValue xsi:type="{ty}">{value}</saml:AttributeValue></saml:Attribute>"#,
                    nf = attr("NameFormat", self.attribute_name_format.as_deref()),
                ));
            }
            s.push_str("</saml:AttributeStatement>");
            s
        };
        let audience = self
            .audience
            .as_deref()
            .map(|a| format!("<saml:Audience>{a}</saml:Audience>"))
            .unwrap_or_default();
        let unsigned = format!(
            concat!(
                r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" "#,
                r#"xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"{id}{version}{ii}>"#,
                "{issuer}{sig}",
                r#"<saml:Subject><saml:NameID{nf}{nq}>{name_id}</saml:NameID>"#,
                r#"<saml:SubjectConfirmation{method}><saml:SubjectConfirmationData{irt}{scd_na}{recipient}/>"#,
                r#"</saml:SubjectConfirmation></saml:Subject>"#,
                r#"<saml:Conditions{nb}{na}><saml:AudienceRestriction>{audience}</saml:AudienceRestriction></saml:Conditions>"#,
                r#"<saml:AuthnStatement AuthnInstant="{authn_instant}"{session}><saml:AuthnContext>"#,
                r#"<saml:AuthnContextClassRef>{acr}</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>"#,
                "{attributes}</saml:Assertion>"
            ),
            id = attr("ID", self.assertion_id.as_deref()),
            version = attr("Version", self.assertion_version.as_deref()),
            ii = attr("IssueInstant", self.assertion_issue_instant.as_deref()),
            issuer = self
                .assertion_issuer
                .as_ref()
                .map(IssuerSpec::xml)
                .unwrap_or_default(),
            sig = sig,
            nf = attr("Format", self.name_id_format.as_deref()),
            nq = attr("NameQualifier", self.name_qualifier.as_deref()),
            name_id = self.name_id,
            method = attr("Method", self.method.as_deref()),
            irt = attr("InResponseTo", self.scd_in_response_to.as_deref()),
            scd_na = attr("NotOnOrAfter", self.scd_not_on_or_after.as_deref()),
            recipient = attr("Recipient", self.recipient.as_deref()),
            nb = attr("NotBefore", self.not_before.as_deref()),
            na = attr("NotOnOrAfter", self.not_on_or_after.as_deref()),
            audience = audience,
            authn_instant = self.authn_instant,
            session = attr("SessionIndex", self.session_index.as_deref()),
            acr = self.acr,
            attributes = attributes,
        );
        let unsigned = apply(&self.edit_assertion, unsigned);
        let signed = if self.assertion_sig.enabled {
            self.assertion_sig.sign(&unsigned, id, key)
        } else {
            unsigned
        };
        apply(&self.edit_signed_assertion, signed)
    }

    /// The whole Response, as posted.
    pub fn build(&self, key: &SigningKey) -> String {
        let signer = self.response_sig.key.as_ref().unwrap_or(key);
        let id = self.response_id.as_deref().unwrap_or_default();
        let sig = if self.response_sig.enabled {
            self.response_sig.template(id, signer.cert_base64())
        } else {
            String::new()
        };
        let envelope = format!(
            concat!(
                r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" "#,
                r#"xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"{id}{version}{ii}{irt}{dest}>"#,
                "{issuer}{sig}{status}{slot}</samlp:Response>"
            ),
            id = attr("ID", self.response_id.as_deref()),
            version = attr("Version", self.response_version.as_deref()),
            ii = attr("IssueInstant", self.response_issue_instant.as_deref()),
            irt = attr("InResponseTo", self.in_response_to.as_deref()),
            dest = attr("Destination", self.destination.as_deref()),
            issuer = self
                .response_issuer
                .as_ref()
                .map(IssuerSpec::xml)
                .unwrap_or_default(),
            sig = sig,
            status = self.status,
            slot = ASSERTION_SLOT,
        );
        let envelope = apply(&self.edit_envelope, envelope);
        let assertion = if self.include_assertion {
            self.assertion_xml(key)
        } else {
            String::new()
        };
        let unsigned = apply(
            &self.edit_response,
            envelope.replacen(ASSERTION_SLOT, &assertion, 1),
        );
        let signed = if self.response_sig.enabled {
            self.response_sig.sign(&unsigned, id, key)
        } else {
            unsigned
        };
        let signed = apply(&self.edit_signed, signed);
        match &self.doctype {
            Some(d) => format!("{d}{signed}"),
            None => signed,
        }
    }
}

/// Signature-wrapping shapes (spid-sp-test `xsw*`, SSC 112): the legitimately signed
/// Assertion is kept somewhere the attacker hopes the verifier looks, and an unsigned
/// "evil" copy (new ID, subject `_evil_subject`) goes where the application reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Xsw {
    /// Signed Assertion inside `samlp:Extensions`, evil copy after it.
    AssertionInExtensions,
    /// Evil copy in the Assertion's place, signed Assertion inside a `ds:Object`: of
    /// the Response's signature when the Response is signed, else of the legitimate
    /// Assertion signature the evil copy carries.
    AssertionInObject,
    /// Evil copy first, then the signed Assertion: two Assertions in the Response.
    TwoAssertions,
    /// The whole signed Response inside the `samlp:Extensions` of an unsigned evil Response.
    ResponseInExtensions,
    /// The Assertion's signature moved from the Assertion into its `saml:Subject`.
    SignatureInSubject,
    /// A foreign `md:EntityDescriptor` as first child of the Response (SSC 112).
    EntityDescriptorInResponse,
}

impl Craft {
    /// The Assertion as an attacker would forge it from a signed one: no signature,
    /// a new ID, another subject.
    pub fn evil_copy(&self, signed_assertion: &str) -> String {
        let unsigned = if signed_assertion.contains("<ds:Signature") {
            without(signed_assertion, "ds:Signature")
        } else {
            signed_assertion.to_owned()
        };
        unsigned
            .replace(
                self.assertion_id.as_deref().unwrap_or("_"),
                "_evil_assertion",
            )
            .replace(&self.name_id, "_evil_subject")
    }

    /// Rearranges the built Response into `shape` (the legitimate parts are signed with `key`).
    pub fn wrapped(mut self, shape: Xsw, key: &SigningKey) -> Self {
        let signed = self.assertion_xml(key);
        let evil = self.evil_copy(&signed);
        match shape {
            Xsw::AssertionInExtensions => {
                let moved = format!("<samlp:Extensions>{signed}</samlp:Extensions>{evil}");
                self.edit_signed_assertion = Some(Box::new(move |_| moved.clone()));
            }
            Xsw::AssertionInObject => {
                let response_signed = self.response_sig.enabled;
                let original_id = format!(
                    r#" ID="{}""#,
                    self.assertion_id.as_deref().unwrap_or_default()
                );
                let name_id = self.name_id.clone();
                self.edit_signed = Some(Box::new(move |x| {
                    let object = format!("<ds:Object>{signed}</ds:Object></ds:Signature>");
                    if response_signed {
                        replace_element(&x, "saml:Assertion", &evil).replacen(
                            "</ds:Signature>",
                            &object,
                            1,
                        )
                    } else {
                        // The evil Assertion keeps the legitimate signature, whose
                        // Reference still names the original ID, now inside its Object.
                        let evil_signed = signed
                            .replacen(&original_id, r#" ID="_evil_assertion""#, 1)
                            .replace(&name_id, "_evil_subject")
                            .replacen("</ds:Signature>", &object, 1);
                        replace_element(&x, "saml:Assertion", &evil_signed)
                    }
                }));
            }
            Xsw::TwoAssertions => {
                self.edit_signed_assertion = Some(Box::new(move |_| format!("{evil}{signed}")));
            }
            Xsw::ResponseInExtensions => {
                let legit = self.build(key);
                self.response_sig = SigSpec::none();
                self.assertion_sig = SigSpec::none();
                self.name_id = "_evil_subject".into();
                self.response_id = Some(new_id());
                self.edit_signed = Some(Box::new(move |x| {
                    x.replacen(
                        "<samlp:Status>",
                        &format!("<samlp:Extensions>{legit}</samlp:Extensions><samlp:Status>"),
                        1,
                    )
                }));
            }
            Xsw::SignatureInSubject => {
                self.edit_signed_assertion = Some(Box::new(|a| {
                    let sig = element(&a, "ds:Signature").to_owned();
                    without(&a, "ds:Signature").replacen(
                        "</saml:Subject>",
                        &format!("{sig}</saml:Subject>"),
                        1,
                    )
                }));
            }
            Xsw::EntityDescriptorInResponse => {
                self.edit_envelope = Some(Box::new(|x| {
                    x.replacen(
                        "<saml:Issuer",
                        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://evil.example"/><saml:Issuer"#,
                        1,
                    )
                }));
            }
        }
        self
    }
}

fn apply(hook: &Option<Hook>, xml: String) -> String {
    match hook {
        Some(f) => f(xml),
        None => xml,
    }
}

/// The byte range of the first element named `qname` (e.g. `"saml:Assertion"`), from
/// its start tag to its matching end tag (nesting of the same name counted; a
/// self-closing `<qname …/>` is one tag). Panics when absent.
pub fn element_range(xml: &str, qname: &str) -> std::ops::Range<usize> {
    let open = format!("<{qname}");
    let close = format!("</{qname}>");
    let find_open = |from: usize| {
        let mut at = from;
        while let Some(p) = xml[at..].find(&open) {
            let p = p + at;
            match xml.as_bytes().get(p + open.len()) {
                Some(b' ' | b'>' | b'/') => return Some(p),
                _ => at = p + open.len(),
            }
        }
        None
    };
    let start = find_open(0).unwrap_or_else(|| panic!("no <{qname}> in {xml}"));
    let mut depth = 0usize;
    let mut i = start;
    loop {
        let next_close = xml[i..].find(&close).map(|p| p + i);
        match (find_open(i), next_close) {
            (Some(o), c) if c.is_none_or(|c| o < c) => {
                let tag_end = xml[o..].find('>').unwrap() + o;
                if xml.as_bytes()[tag_end - 1] == b'/' {
                    if depth == 0 {
                        return start..tag_end + 1;
                    }
                } else {
                    depth += 1;
                }
                i = tag_end + 1;
            }
            (_, Some(c)) => {
                depth -= 1;
                i = c + close.len();
                if depth == 0 {
                    return start..i;
                }
            }
            _ => panic!("unbalanced <{qname}> in {xml}"),
        }
    }
}

/// The text of the first `qname` element.
pub fn element<'a>(xml: &'a str, qname: &str) -> &'a str {
    &xml[element_range(xml, qname)]
}

/// `xml` without the first `qname` element.
pub fn without(xml: &str, qname: &str) -> String {
    replace_element(xml, qname, "")
}

/// `xml` with the first `qname` element replaced by `with`.
pub fn replace_element(xml: &str, qname: &str, with: &str) -> String {
    let r = element_range(xml, qname);
    format!("{}{with}{}", &xml[..r.start], &xml[r.end..])
}
