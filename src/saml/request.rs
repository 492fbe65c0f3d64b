//! AuthnRequest building (SPID rules §2) and the pending-request record the ACS
//! checks Responses against (rule A21).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::binding::encode_post;
use super::error::SamlError;
use super::ids::new_id;
use super::sign::{SigningKey, sign_enveloped_at, sign_redirect_url};
use super::time::format_instant;
use super::xml::escape;
use super::{Comparison, FORMAT_ENTITY, FORMAT_TRANSIENT, Level, NS_SAML, NS_SAMLP};

/// Which binding carries the request to the IdP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Binding {
    /// HTTP-Redirect.
    Redirect,
    /// HTTP-POST.
    Post,
}

/// What an AuthnRequest asks for.
#[derive(Debug, Clone)]
pub struct AuthnRequestParams<'a> {
    /// Our entityID (Issuer text and NameQualifier).
    pub sp_entity_id: &'a str,
    /// The IdP's SingleSignOnService Location for the chosen binding.
    pub destination: &'a str,
    /// AssertionConsumerServiceIndex (an index in our metadata).
    pub acs_index: u16,
    /// AttributeConsumingServiceIndex.
    pub attribute_index: u16,
    /// Requested level.
    pub level: Level,
    /// RequestedAuthnContext Comparison.
    pub comparison: Comparison,
    /// The IdP's profile: CIE asks ForceAuthn on every request (its manual), SPID and
    /// FICEP from level 2.
    pub profile: super::IdpProfile,
    /// The current time.
    pub now: DateTime<Utc>,
}

/// A built (unsigned) AuthnRequest.
#[derive(Debug, Clone)]
pub struct BuiltAuthnRequest {
    /// `_`-prefixed 128-bit ID.
    pub id: String,
    /// IssueInstant.
    pub issue_instant: DateTime<Utc>,
    /// Where it goes.
    pub destination: String,
    /// The XML without signature (Redirect binding form).
    pub xml: String,
    issuer_end: usize,
}

/// Builds the AuthnRequest XML exactly as rules A1–A15 say (and, for a CIE IdP, the
/// CIE manual: ForceAuthn always; Destination is the SSO Location of the binding used,
/// which is what SPID requests carry too).
pub fn build_authn_request(p: &AuthnRequestParams<'_>) -> BuiltAuthnRequest {
    let id = new_id();
    let force = if p.level >= Level::L2 || p.profile == super::IdpProfile::Cie {
        r#" ForceAuthn="true""#
    } else {
        ""
    };
    let head = format!(
        concat!(
            r#"<samlp:AuthnRequest xmlns:samlp="{samlp}" xmlns:saml="{saml}" ID="{id}" Version="2.0" "#,
            r#"IssueInstant="{ii}" Destination="{dest}"{force} AssertionConsumerServiceIndex="{acs}" "#,
            r#"AttributeConsumingServiceIndex="{attr}">"#,
            r#"<saml:Issuer Format="{fmt}" NameQualifier="{sp}">{sp}</saml:Issuer>"#
        ),
        samlp = NS_SAMLP,
        saml = NS_SAML,
        id = id,
        ii = format_instant(p.now),
        dest = escape(p.destination),
        force = force,
        acs = p.acs_index,
        attr = p.attribute_index,
        fmt = FORMAT_ENTITY,
        sp = escape(p.sp_entity_id),
    );
    let issuer_end = head.len();
    let tail = format!(
        concat!(
            r#"<samlp:NameIDPolicy Format="{transient}"/>"#,
            r#"<samlp:RequestedAuthnContext Comparison="{cmp}">"#,
            r#"<saml:AuthnContextClassRef>{acr}</saml:AuthnContextClassRef>"#,
            r#"</samlp:RequestedAuthnContext></samlp:AuthnRequest>"#
        ),
        transient = FORMAT_TRANSIENT,
        cmp = p.comparison.as_str(),
        acr = p.level.uri(),
    );
    BuiltAuthnRequest {
        id,
        issue_instant: p.now,
        destination: p.destination.to_owned(),
        xml: head + &tail,
        issuer_end,
    }
}

impl BuiltAuthnRequest {
    /// The full Redirect-binding URL: `SAMLRequest`, `RelayState`, `SigAlg`, `Signature`
    /// (rule A18), signed over exactly the octets we emit.
    pub fn redirect_url(&self, relay_state: &str, key: &SigningKey) -> Result<String, SamlError> {
        sign_redirect_url(
            &self.destination,
            "SAMLRequest",
            &self.xml,
            Some(relay_state),
            key,
        )
    }

    /// The XML with an enveloped signature right after Issuer (rule A17).
    pub fn signed_xml(&self, key: &SigningKey) -> Result<String, SamlError> {
        sign_enveloped_at(&self.xml, &self.id, self.issuer_end, key)
    }

    /// The base64 `SAMLRequest` value for the POST binding.
    pub fn post_value(&self, key: &SigningKey) -> Result<String, SamlError> {
        Ok(encode_post(&self.signed_xml(key)?))
    }
}

/// What the SP remembers about an outstanding AuthnRequest until its Response arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRequest {
    /// Request ID (InResponseTo must equal it).
    pub id: String,
    /// Request IssueInstant (Response times must not precede it).
    pub issue_instant: DateTime<Utc>,
    /// The IdP the request went to (Issuer must equal it).
    pub idp_entity_id: String,
    /// Level asked.
    pub level: Level,
    /// Comparison asked.
    pub comparison: Comparison,
    /// The opaque RelayState sent with it.
    pub relay_state: String,
    /// Binding used.
    pub binding: Binding,
    /// The request XML as sent (without the Redirect signature), for the transaction log.
    pub xml: String,
    /// Where the browser continues after the login (a local path chosen by the SP;
    /// not part of the protocol).
    #[serde(default)]
    pub return_to: Option<String>,
    /// Hex SHA-256 of the browser-binding cookie of the browser that started the login
    /// (not part of the protocol): only that browser may open the session. Empty for a
    /// request stored before bindings existed, which then opens nothing.
    #[serde(default)]
    pub browser: String,
    /// The profile of the IdP when the request was sent (decides how its Response is
    /// read and which scheme the login is); requests stored before profiles are SPID.
    #[serde(default)]
    pub profile: super::IdpProfile,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saml::xml;

    fn params(level: Level) -> AuthnRequestParams<'static> {
        AuthnRequestParams {
            sp_entity_id: "https://sp.example.it",
            destination: "https://idp.example.it/sso",
            acs_index: 0,
            attribute_index: 0,
            level,
            comparison: Comparison::Minimum,
            profile: crate::saml::IdpProfile::Spid,
            now: chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z")
                .unwrap()
                .with_timezone(&Utc),
        }
    }

    #[test]
    fn request_has_every_spid_field() {
        let r = build_authn_request(&params(Level::L2));
        let e = xml::parse(&r.xml, xml::Limits::default()).unwrap();
        assert!(e.is(NS_SAMLP, "AuthnRequest"));
        assert_eq!(e.attr("ID"), Some(r.id.as_str()));
        assert_eq!(e.attr("Version"), Some("2.0"));
        assert_eq!(e.attr("IssueInstant"), Some("2026-01-02T03:04:05.678Z"));
        assert_eq!(e.attr("ForceAuthn"), Some("true"));
        assert_eq!(e.attr("AssertionConsumerServiceIndex"), Some("0"));
        assert_eq!(e.attr("AttributeConsumingServiceIndex"), Some("0"));
        assert_eq!(e.attr("IsPassive"), None);
        assert_eq!(e.attr("AssertionConsumerServiceURL"), None);
        let issuer = e.required_child(NS_SAML, "Issuer").unwrap();
        assert_eq!(issuer.text, "https://sp.example.it");
        assert_eq!(issuer.attr("Format"), Some(FORMAT_ENTITY));
        assert_eq!(issuer.attr("NameQualifier"), Some("https://sp.example.it"));
        let policy = e.required_child(NS_SAMLP, "NameIDPolicy").unwrap();
        assert_eq!(policy.attr("Format"), Some(FORMAT_TRANSIENT));
        assert_eq!(policy.attr("AllowCreate"), None);
        let rac = e.required_child(NS_SAMLP, "RequestedAuthnContext").unwrap();
        assert_eq!(rac.attr("Comparison"), Some("minimum"));
        assert_eq!(
            rac.required_child(NS_SAML, "AuthnContextClassRef")
                .unwrap()
                .text,
            "https://www.spid.gov.it/SpidL2"
        );
        let l1 = build_authn_request(&params(Level::L1));
        assert!(!l1.xml.contains("ForceAuthn"));
    }

    #[test]
    fn a_cie_request_forces_authentication_at_every_level() {
        for level in [Level::L1, Level::L2, Level::L3] {
            let r = build_authn_request(&AuthnRequestParams {
                profile: crate::saml::IdpProfile::Cie,
                ..params(level)
            });
            let e = xml::parse(&r.xml, xml::Limits::default()).unwrap();
            assert_eq!(e.attr("ForceAuthn"), Some("true"), "{level:?}");
            assert_eq!(e.attr("IsPassive"), None);
            assert_eq!(e.attr("Destination"), Some("https://idp.example.it/sso"));
            let policy = e.required_child(NS_SAMLP, "NameIDPolicy").unwrap();
            assert_eq!(policy.attr("AllowCreate"), None);
        }
    }
}
