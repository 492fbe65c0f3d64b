//! Errors of the protocol core. Each variant has a stable code shown to users and
//! written to logs; the HTTP edge maps them to statuses. No HTTP types here.

use std::fmt;

/// A SPID `ErrorCode nrNN` reported by the IdP (rules §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SpidErrorCode(pub u8);

impl SpidErrorCode {
    /// Extracts `nrNN` from a StatusMessage such as `ErrorCode nr19`.
    pub fn from_status_message(msg: &str) -> Option<Self> {
        let lower = msg.to_ascii_lowercase();
        let pos = lower.find("nr")?;
        let digits: String = lower
            .get(pos + 2..)?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if digits.is_empty() || digits.len() > 2 {
            return None;
        }
        digits.parse().ok().map(Self)
    }

    /// The Italian courtesy text AgID prescribes for the user anomalies (19–25, 30).
    pub fn user_message(self) -> Option<&'static str> {
        Some(match self.0 {
            19 => {
                "Autenticazione fallita per ripetuta sottomissione di credenziali errate. Inserisci credenziali corrette."
            }
            20 => {
                "Non disponi di credenziali compatibili con il livello di sicurezza richiesto dal servizio. Ottieni credenziali adeguate dal tuo gestore di identità."
            }
            21 => {
                "Tempo scaduto durante l'autenticazione: l'operazione deve essere completata entro un tempo limite."
            }
            22 => "Hai negato il consenso all'invio dei dati al fornitore del servizio.",
            23 => "Identità digitale sospesa o revocata, o credenziali bloccate.",
            25 => "Processo di autenticazione annullato dall'utente.",
            30 => "Il servizio richiede un tipo di identità digitale diverso da quello utilizzato.",
            _ => return None,
        })
    }

    /// The courtesy text for this code from an IdP of `profile`: the CIE manual's
    /// codes (2, 3 system; 21, 22, 23, 25 user; `codici-errori-*.csv`) read as it
    /// says, the others as [`user_message`](Self::user_message).
    pub fn user_message_for(self, profile: super::IdpProfile) -> Option<&'static str> {
        if profile != super::IdpProfile::Cie {
            return self.user_message();
        }
        Some(match self.0 {
            2 | 3 => {
                "Il sistema di autenticazione CIE non è disponibile in questo momento. Ripeti l'accesso più tardi."
            }
            21 => {
                "Tempo scaduto: l'accesso con la CIE deve essere completato entro un tempo limite. Ripeti l'accesso."
            }
            22 => {
                "Hai negato il consenso all'invio dei tuoi dati: senza il consenso non è possibile accedere al servizio."
            }
            23 => {
                "La tua CIE risulta scaduta o revocata. Verifica che la carta sia valida; per assistenza scrivi a cie.cittadini@interno.it."
            }
            25 => "Hai annullato l'accesso con la CIE.",
            _ => return self.user_message(),
        })
    }
}

impl fmt::Display for SpidErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ErrorCode nr{:02}", self.0)
    }
}

/// How a rejection is classified at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The message could not be read (encoding, XML, size).
    Malformed,
    /// The message was read but failed a security or protocol check.
    Rejected,
    /// The IdP answered with a non-Success status.
    IdpStatus,
    /// Our own material or configuration is wrong (not the sender's fault).
    Internal,
}

/// Errors of the SAML core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SamlError {
    /// Message larger than the configured cap (after decoding/inflating).
    #[error("message too large")]
    TooLarge,
    /// Base64, deflate or URL encoding is invalid.
    #[error("invalid encoding: {0}")]
    Encoding(String),
    /// Not well-formed XML, or a forbidden construct (DOCTYPE, entity, PI).
    #[error("invalid XML: {0}")]
    Xml(String),
    /// Structure not allowed (wrong root, several assertions, misplaced signature, …).
    #[error("structure refused: {0}")]
    Structure(String),
    /// A signature is missing where SPID requires one.
    #[error("missing signature: {0}")]
    SignatureMissing(&'static str),
    /// A signature uses a transform, algorithm or reference outside the allowlist.
    #[error("signature not allowed: {0}")]
    SignatureNotAllowed(String),
    /// Cryptographic verification failed against the IdP's metadata keys.
    #[error("signature verification failed")]
    SignatureInvalid,
    /// A required element or attribute is absent or empty.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A value is present but wrong.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The element or attribute.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An attribute is ambiguous (twice, several values, several statements) or breaks
    /// a bound (length, control characters, not an e-mail address).
    #[error("attribute refused: {0}")]
    Attribute(String),
    /// A time check failed (expired, in the future, before the request).
    #[error("time check failed: {0}")]
    Time(String),
    /// The Response does not answer the pending request (InResponseTo, Issuer, Destination).
    #[error("response does not match the request: {0}")]
    Mismatch(String),
    /// The AuthnContextClassRef does not satisfy the requested level.
    #[error(
        "authentication level refused: SpidL{obtained} returned, SpidL{requested} requested with comparison {comparison}"
    )]
    Level {
        /// The level the IdP asserted (1–3).
        obtained: u8,
        /// The level requested (1–3).
        requested: u8,
        /// The RequestedAuthnContext Comparison.
        comparison: &'static str,
    },
    /// The IdP answered with a non-Success status.
    #[error("identity provider status {status}{}", code.map(|c| format!(" ({c})")).unwrap_or_default())]
    IdpStatus {
        /// Top-level StatusCode value.
        status: String,
        /// Second-level StatusCode value, if any.
        sub_status: Option<String>,
        /// `ErrorCode nrNN` from StatusMessage, if any.
        code: Option<SpidErrorCode>,
        /// The Response carrying this status was signed and verified with the IdP's key.
        authenticated: bool,
        /// The profile of the IdP (the same code reads differently for CIE).
        profile: super::IdpProfile,
    },
    /// Our own key or template failed (configuration problem).
    #[error("signing failed: {0}")]
    Signing(String),
    /// A verified LogoutResponse reports neither Success nor a partial logout.
    #[error("logout status {status}{}", sub_status.as_ref().map(|s| format!(" / {s}")).unwrap_or_default())]
    LogoutStatus {
        /// Top-level StatusCode value.
        status: String,
        /// Second-level StatusCode value, if any.
        sub_status: Option<String>,
    },
}

impl SamlError {
    /// Stable, documented code for users, logs and the transaction log.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge => "SAML_TOO_LARGE",
            Self::Encoding(_) => "SAML_ENCODING",
            Self::Xml(_) => "SAML_XML",
            Self::Structure(_) => "SAML_STRUCTURE",
            Self::SignatureMissing(_) => "SAML_SIGNATURE_MISSING",
            Self::SignatureNotAllowed(_) => "SAML_SIGNATURE_NOT_ALLOWED",
            Self::SignatureInvalid => "SAML_SIGNATURE_INVALID",
            Self::Missing(_) => "SAML_MISSING_FIELD",
            Self::Invalid { .. } => "SAML_INVALID_FIELD",
            Self::Attribute(_) => "SAML_ATTRIBUTE",
            Self::Time(_) => "SAML_TIME",
            Self::Mismatch(_) => "SAML_MISMATCH",
            Self::Level { .. } => "SAML_LEVEL",
            Self::IdpStatus { .. } => "SPID_IDP_STATUS",
            Self::Signing(_) => "SAML_SIGNING",
            Self::LogoutStatus { .. } => "SAML_LOGOUT_STATUS",
        }
    }

    /// Coarse class used by the HTTP edge to choose a status.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::TooLarge | Self::Encoding(_) | Self::Xml(_) => ErrorClass::Malformed,
            Self::IdpStatus { .. } | Self::LogoutStatus { .. } => ErrorClass::IdpStatus,
            Self::Signing(_) => ErrorClass::Internal,
            _ => ErrorClass::Rejected,
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_from_status_message() {
        assert_eq!(
            SpidErrorCode::from_status_message("ErrorCode nr19"),
            Some(SpidErrorCode(19))
        );
        assert_eq!(
            SpidErrorCode::from_status_message("  ErrorCode nr25 "),
            Some(SpidErrorCode(25))
        );
        assert_eq!(SpidErrorCode::from_status_message("something else"), None);
        assert_eq!(SpidErrorCode::from_status_message("nr"), None);
        assert_eq!(SpidErrorCode::from_status_message("nr123"), None);
        assert_eq!(SpidErrorCode(19).to_string(), "ErrorCode nr19");
        for n in [19, 20, 21, 22, 23, 25, 30] {
            assert!(SpidErrorCode(n).user_message().is_some(), "nr{n}");
        }
        assert!(SpidErrorCode(24).user_message().is_none());
        use super::super::IdpProfile;
        for n in [2, 3, 21, 22, 23, 25] {
            let cie = SpidErrorCode(n).user_message_for(IdpProfile::Cie).unwrap();
            assert!(cie.contains("CIE") || n == 22, "nr{n}: {cie}");
        }
        assert!(
            SpidErrorCode(23)
                .user_message_for(IdpProfile::Cie)
                .unwrap()
                .contains("cie.cittadini@interno.it")
        );
        assert_eq!(
            SpidErrorCode(23).user_message_for(IdpProfile::Spid),
            SpidErrorCode(23).user_message()
        );
        assert_eq!(
            SpidErrorCode(19).user_message_for(IdpProfile::Cie),
            SpidErrorCode(19).user_message()
        );
    }
}
