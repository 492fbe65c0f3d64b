//! The verified login, whatever scheme proved it: who the person is (attributes),
//! which identity provider vouched for it, at which level, and what single logout
//! needs (NameID, SessionIndex). `sso` produces it from a verified SAML Response;
//! `session`, `enablement` and `oidc` read it. Holds no I/O.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::saml::Level;

/// A verified login: what the browser session and the account mapping start from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginSession {
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
