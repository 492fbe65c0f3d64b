//! The verified login, whatever scheme proved it: who the person is (attributes),
//! which identity provider vouched for it, at which level, and what single logout
//! needs (NameID, SessionIndex). `sso` produces it from a verified SAML Response;
//! `session`, `enablement` and `oidc` read it. Holds no I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::saml::Level;

/// The identity scheme a login came through. An identity is (scheme, subject): SPID
/// and CIE are keyed by the codice fiscale, eIDAS (through FICEP) by the eIDAS
/// PersonIdentifier FICEP delivers in `spidCode` (`ES/IT/02635542Y`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// SPID (the AgID federation).
    #[default]
    Spid,
    /// CIE ("Entra con CIE", the electronic identity card).
    Cie,
    /// eIDAS-notified identities of other EU countries, through FICEP.
    Eidas,
}

impl Scheme {
    /// Every scheme.
    pub const ALL: [Scheme; 3] = [Self::Spid, Self::Cie, Self::Eidas];

    /// The stored and claimed name (`spid`, `cie`, `eidas`: the `idp_scheme` claim).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spid => "spid",
            Self::Cie => "cie",
            Self::Eidas => "eidas",
        }
    }

    /// The name people read ("SPID", "CIE", "eIDAS").
    pub fn label(self) -> &'static str {
        match self {
            Self::Spid => "SPID",
            Self::Cie => "CIE",
            Self::Eidas => "eIDAS",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown scheme name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown identity scheme {0:?} (spid, cie or eidas)")]
pub struct UnknownScheme(pub String);

impl FromStr for Scheme {
    type Err = UnknownScheme;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| UnknownScheme(text.to_owned()))
    }
}

/// A verified login: what the browser session and the account mapping start from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginSession {
    /// The scheme of the IdP (its profile); logins stored before schemes existed are SPID.
    #[serde(default)]
    pub scheme: Scheme,
    /// The IdP that authenticated the person.
    pub idp_entity_id: String,
    /// Transient NameID (for single logout).
    pub name_id: String,
    /// NameID NameQualifier.
    pub name_qualifier: String,
    /// SessionIndex (L1 only).
    pub session_index: Option<String>,
    /// Level obtained.
    pub level: Level,
    /// SPID attributes.
    pub attributes: BTreeMap<String, Vec<String>>,
    /// When the Response was accepted.
    pub authenticated_at: DateTime<Utc>,
}

impl LoginSession {
    /// First value of an attribute.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// The codice fiscale: `fiscalNumber` without `TINIT-`, uppercased.
    pub fn fiscal_code(&self) -> Option<String> {
        self.attribute("fiscalNumber").map(|f| {
            f.trim()
                .strip_prefix("TINIT-")
                .unwrap_or(f.trim())
                .to_ascii_uppercase()
        })
    }

    /// The eIDAS PersonIdentifier (`spidCode` of an eIDAS login, e.g.
    /// `ES/IT/02635542Y`); `None` for SPID and CIE logins, whose `spidCode` is only
    /// the IdP's own code.
    pub fn eidas_identifier(&self) -> Option<&str> {
        match self.scheme {
            Scheme::Eidas => self.attribute("spidCode").map(str::trim),
            Scheme::Spid | Scheme::Cie => None,
        }
    }

    /// The subject of the identity (scheme, subject): the codice fiscale for SPID and
    /// CIE, the eIDAS identifier for eIDAS. Unvalidated text as the IdP sent it.
    pub fn subject(&self) -> Option<String> {
        match self.scheme {
            Scheme::Spid | Scheme::Cie => self.fiscal_code(),
            Scheme::Eidas => self.eidas_identifier().map(str::to_owned),
        }
    }
}

#[cfg(test)]
impl LoginSession {
    /// A level-2 login of `name_id` at `idp` with these attributes (one value each),
    /// accepted at `at`: the fixture of the unit tests.
    pub(crate) fn sample(
        idp: &str,
        name_id: &str,
        attrs: &[(&str, &str)],
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            scheme: Scheme::Spid,
            idp_entity_id: idp.into(),
            name_id: name_id.into(),
            name_qualifier: idp.into(),
            session_index: None,
            level: Level::L2,
            attributes: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()]))
                .collect(),
            authenticated_at: at,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn scheme_names_round_trip() {
        for scheme in Scheme::ALL {
            assert_eq!(scheme.as_str().parse::<Scheme>().unwrap(), scheme);
            assert_eq!(
                serde_json::to_string(&scheme).unwrap(),
                format!("\"{}\"", scheme.as_str())
            );
        }
        assert!("SPID".parse::<Scheme>().is_err());
    }

    #[test]
    fn subject_depends_on_the_scheme() {
        let at = Utc::now();
        let mut l = LoginSession::sample(
            "https://idp",
            "_n",
            &[
                ("fiscalNumber", "TINIT-rssmra80a01h501u"),
                ("spidCode", " ES/IT/02635542Y "),
            ],
            at,
        );
        assert_eq!(l.subject().as_deref(), Some("RSSMRA80A01H501U"));
        assert_eq!(l.eidas_identifier(), None);
        l.scheme = Scheme::Cie;
        assert_eq!(l.subject().as_deref(), Some("RSSMRA80A01H501U"));
        l.scheme = Scheme::Eidas;
        assert_eq!(l.subject().as_deref(), Some("ES/IT/02635542Y"));
        assert_eq!(l.eidas_identifier(), Some("ES/IT/02635542Y"));
    }

    #[test]
    fn logins_stored_before_schemes_are_spid() {
        let l = LoginSession::sample("https://idp", "_n", &[], Utc::now());
        let mut json = serde_json::to_value(&l).unwrap();
        json.as_object_mut().unwrap().remove("scheme");
        let back: LoginSession = serde_json::from_value(json).unwrap();
        assert_eq!(back.scheme, Scheme::Spid);
    }
}
