//! The SAML 2.0 + SPID protocol core.
//!
//! Pure: inputs in, values out. No clock reads (`now` is a parameter), no I/O, no
//! async runtime. The ACS verifies Response signatures on the strict reader's own tree
//! ([`verify`], [`c14n`]); samael/xmlsec is the XML-DSig engine of metadata and logout
//! messages and the oracle of the differential tests (see ARCHITECTURE.md, "The ACS
//! trust path").

/// The attributes of a verified Assertion: one value each, bounded.
pub mod attributes;
/// Redirect and POST binding encodings (deflate, base64, query signing octets).
pub mod binding;
/// Exclusive XML canonicalisation of the strict reader's tree.
pub mod c14n;
/// The "Entra con CIE" SP metadata (CIE manual, federazione).
pub mod cie_metadata;
/// Typed errors with stable codes.
pub mod error;
/// Building the mock IdP's signed Responses and metadata (test IdP side).
pub mod idp;
/// Parsing IdP metadata (single entity or registry aggregate).
pub mod idp_metadata;
/// Message identifiers.
pub mod ids;
/// Single Logout (SPID rules §5): LogoutRequest/LogoutResponse, both bindings, both roles.
pub mod logout;
/// AuthnRequest building (SPID rules §2).
pub mod request;
/// Response pre-filter and validation (SPID rules §3), producing [`VerifiedAssertion`].
pub mod response;
/// Signing keys, XML-DSig templates and Redirect query signatures.
pub mod sign;
/// SP metadata building and signing (SPID rules §1).
pub mod sp_metadata;
/// xs:dateTime parsing and formatting.
pub mod time;
/// The one-parse XML-DSig verifier of enveloped signatures (the ACS's).
pub mod verify;
/// A strict, bounded XML reader into a small namespace-aware tree, and escaping.
pub mod xml;

pub use error::{SamlError, SpidErrorCode};
pub use request::{AuthnRequestParams, BuiltAuthnRequest, PendingRequest};
pub use response::{ResponseCheck, ResponseOutcome, VerifiedAssertion};
pub use sign::{SigningKey, TrustedCert};

/// The rules an IdP follows: how requests to it are built and its Responses checked.
/// SPID IdPs follow the SPID rules; CIE ("Entra con CIE") its technical manual; FICEP,
/// the Italian eIDAS node, the SPID rules with the eIDAS attribute services (99/100).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum IdpProfile {
    /// A SPID IdP (the default: every IdP trusted before profiles existed).
    #[default]
    Spid,
    /// The CIE IdP of the Ministero dell'Interno.
    Cie,
    /// FICEP, the Italian eIDAS node.
    Ficep,
}

impl IdpProfile {
    /// Every profile.
    pub const ALL: [Self; 3] = [Self::Spid, Self::Cie, Self::Ficep];

    /// The configured name (`spid`, `cie`, `ficep`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spid => "spid",
            Self::Cie => "cie",
            Self::Ficep => "ficep",
        }
    }
}

impl std::str::FromStr for IdpProfile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown IdP profile {s:?} (spid, cie or ficep)"))
    }
}

/// SAML protocol namespace.
pub const NS_SAMLP: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
/// SAML assertion namespace.
pub const NS_SAML: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
/// SAML metadata namespace.
pub const NS_MD: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
/// XML-DSig namespace.
pub const NS_DS: &str = "http://www.w3.org/2000/09/xmldsig#";
/// SPID metadata extensions.
pub const NS_SPID: &str = "https://spid.gov.it/saml-extensions";
/// SPID invoicing extensions (private SPs).
pub const NS_FPA: &str = "https://spid.gov.it/invoicing-extensions";

/// Issuer / entity NameID format.
pub const FORMAT_ENTITY: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity";
/// Transient NameID format (SPID subjects).
pub const FORMAT_TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";
/// HTTP-POST binding URI.
pub const BINDING_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
/// HTTP-Redirect binding URI.
pub const BINDING_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
/// Bearer subject confirmation.
pub const CM_BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
/// Top-level Success status.
pub const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
/// Status when the IdP reports a user anomaly.
pub const STATUS_RESPONDER: &str = "urn:oasis:names:tc:SAML:2.0:status:Responder";
/// Status when the SP's request was at fault.
pub const STATUS_REQUESTER: &str = "urn:oasis:names:tc:SAML:2.0:status:Requester";
/// Second-level status for user anomalies.
pub const STATUS_AUTHN_FAILED: &str = "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed";

/// The only attribute names SPID accepts in RequestedAttribute (rules §6).
pub const SPID_ATTRIBUTES: [&str; 23] = [
    "spidCode",
    "name",
    "familyName",
    "placeOfBirth",
    "countyOfBirth",
    "dateOfBirth",
    "gender",
    "companyName",
    "registeredOffice",
    "fiscalNumber",
    "ivaCode",
    "idCard",
    "mobilePhone",
    "email",
    "address",
    "expirationDate",
    "digitalAddress",
    "domicileStreetAddress",
    "domicilePostalCode",
    "domicileMunicipality",
    "domicileProvince",
    "domicileNation",
    "companyFiscalNumber",
];

/// A SPID authentication level.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Level {
    /// SpidL1: single factor.
    L1,
    /// SpidL2: two factors.
    L2,
    /// SpidL3: two factors with a hardware device.
    L3,
}

impl Level {
    /// Level from its number 1, 2 or 3.
    pub fn from_number(n: u8) -> Option<Self> {
        match n {
            1 => Some(Self::L1),
            2 => Some(Self::L2),
            3 => Some(Self::L3),
            _ => None,
        }
    }

    /// 1, 2 or 3.
    pub fn number(self) -> u8 {
        match self {
            Self::L1 => 1,
            Self::L2 => 2,
            Self::L3 => 3,
        }
    }

    /// The AuthnContextClassRef URI.
    pub fn uri(self) -> &'static str {
        match self {
            Self::L1 => "https://www.spid.gov.it/SpidL1",
            Self::L2 => "https://www.spid.gov.it/SpidL2",
            Self::L3 => "https://www.spid.gov.it/SpidL3",
        }
    }

    /// Level from an AuthnContextClassRef URI (exact match; the old `urn:…:ac:classes:SpidL1` form is refused).
    pub fn from_uri(uri: &str) -> Option<Self> {
        [Self::L1, Self::L2, Self::L3]
            .into_iter()
            .find(|l| l.uri() == uri)
    }
}

/// `RequestedAuthnContext@Comparison`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// Exactly the level asked (a higher one is still accepted, per SPID).
    Exact,
    /// At least the level asked.
    Minimum,
    /// Strictly higher than the level asked.
    Better,
    /// At most the level asked.
    Maximum,
}

impl Comparison {
    /// Parses the attribute value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "exact" => Some(Self::Exact),
            "minimum" => Some(Self::Minimum),
            "better" => Some(Self::Better),
            "maximum" => Some(Self::Maximum),
            _ => None,
        }
    }

    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Minimum => "minimum",
            Self::Better => "better",
            Self::Maximum => "maximum",
        }
    }

    /// Rule R-ACR: whether `returned` satisfies a request for `requested` under this comparison.
    /// A higher level than requested is accepted for every comparison (RT, "facoltà … livello più alto").
    pub fn accepts(self, requested: Level, returned: Level) -> bool {
        use std::cmp::Ordering::*;
        match returned.cmp(&requested) {
            Greater => true,
            Equal => self != Self::Better,
            Less => self == Self::Maximum,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acr_rule_table() {
        use Comparison::*;
        use Level::*;
        // (comparison, requested, returned, accepted)
        let table = [
            (Exact, L2, L2, true),
            (Exact, L2, L3, true),
            (Exact, L2, L1, false),
            (Minimum, L2, L1, false),
            (Minimum, L2, L3, true),
            (Better, L2, L2, false),
            (Better, L2, L3, true),
            (Maximum, L2, L1, true),
            (Maximum, L2, L3, true),
            (Maximum, L2, L2, true),
        ];
        for (c, req, ret, ok) in table {
            assert_eq!(c.accepts(req, ret), ok, "{c:?} {req:?} {ret:?}");
        }
    }

    #[test]
    fn level_uris_round_trip_and_old_form_refused() {
        for l in [Level::L1, Level::L2, Level::L3] {
            assert_eq!(Level::from_uri(l.uri()), Some(l));
        }
        assert_eq!(
            Level::from_uri("urn:oasis:names:tc:SAML:2.0:ac:classes:SpidL1"),
            None
        );
    }
}
