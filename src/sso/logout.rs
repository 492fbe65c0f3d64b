//! The single-logout side of the SSO service (SPID rules §5), on the pure
//! `saml::logout` core:
//!
//! - SP-initiated (S1, S2): our signed LogoutRequest to the login's IdP (Redirect when
//!   it offers it, else POST), remembered as `polis:slo:<ID>` until its LogoutResponse,
//!   which is verified (Redirect: over the raw query octets; POST: enveloped
//!   signature) and consumed once;
//! - IdP-initiated (S3): its LogoutRequest verified with the keys of the IdP it names,
//!   accepted once (replay cache `polis:sloin:<sha256(IdP, ID)>`), and our signed
//!   LogoutResponse Success.
//!
//! Ending the local session in between is `crate::flows::logout`'s part.

use std::sync::Arc;
use std::time::Duration;

use openssl::sha::sha256;

use super::{LoginStart, SloMessage, SsoError, SsoService, chrono_duration};
use crate::identity::LoginSession;
use crate::saml::logout::{self, LogoutOutcome, PendingLogout, VerifiedLogoutRequest};
use crate::saml::request::Binding;
use crate::saml::{IdpProfile, SamlError, ids};

/// [`SloMessage`] owned, to move into the verification pool.
enum OwnedSloMessage {
    Redirect {
        raw_query: String,
    },
    Post {
        value: String,
        relay_state: Option<String>,
    },
}

impl From<SloMessage<'_>> for OwnedSloMessage {
    fn from(m: SloMessage<'_>) -> Self {
        match m {
            SloMessage::Redirect { raw_query } => Self::Redirect {
                raw_query: raw_query.to_owned(),
            },
            SloMessage::Post { value, relay_state } => Self::Post {
                value: value.to_owned(),
                relay_state: relay_state.map(str::to_owned),
            },
        }
    }
}

impl OwnedSloMessage {
    /// The ID of the LogoutRequest a LogoutResponse answers, before verification.
    fn peek_response(&self, limits: crate::saml::xml::Limits) -> Result<String, SamlError> {
        match self {
            Self::Redirect { raw_query } => {
                logout::peek_logout_response_redirect(raw_query, limits)
            }
            Self::Post { value, .. } => logout::peek_logout_response_post(value, limits),
        }
    }

    fn verify_response(
        &self,
        check: &logout::LogoutResponseCheck<'_>,
    ) -> Result<LogoutOutcome, SamlError> {
        match self {
            Self::Redirect { raw_query } => {
                logout::verify_logout_response_redirect(raw_query, check)
            }
            Self::Post { value, relay_state } => {
                logout::verify_logout_response_post(value, relay_state.as_deref(), check)
            }
        }
    }
}

fn pending_logout_key(id: &str) -> String {
    format!("polis:slo:{id}")
}

/// A LogoutRequest of ours waiting for its LogoutResponse, and where the browser goes
/// once it comes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StoredLogout {
    #[serde(flatten)]
    pending: PendingLogout,
    /// An OpenID Connect client's post-logout URI, already checked against its
    /// registration (RP-initiated logout); none: the gateway's own «Sei uscito».
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
}

/// A single logout finished by the IdP's LogoutResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutDone {
    /// What the IdP reports.
    pub outcome: LogoutOutcome,
    /// Where the browser goes next, when an OpenID Connect client asked for the logout.
    pub after: Option<String>,
}

impl SsoService {
    /// SP-initiated single logout (rules §5 S1), after the local session is closed:
    /// a signed LogoutRequest to the IdP of `login` (Redirect when the IdP offers it,
    /// else POST), remembered until its LogoutResponse. `None` when the IdP has no
    /// SLO endpoint or is no longer trusted.
    ///
    /// A CIE IdP has no SAML single logout (manual, «Logout»: it accepts a
    /// LogoutRequest but never answers): the browser goes to its SingleLogoutService
    /// with a plain HTTP-GET, which ends the IdP session and shows «Logout effettuato
    /// con successo»; nothing is remembered, nothing awaited.
    ///
    /// `after` is where the browser goes when the IdP has answered (an OpenID Connect
    /// client's checked post-logout URI), remembered with the request. For CIE, which
    /// never answers, an `after` means no IdP page at all: every CIE login is made with
    /// ForceAuthn, so the IdP session left open cannot log anyone in again, and the
    /// client gets its browser back (`None`: the caller goes to `after` at once).
    pub async fn start_logout(
        &self,
        login: &LoginSession,
        after: Option<&str>,
    ) -> Result<Option<LoginStart>, SsoError> {
        let Some(idp) = self.federation.get(&login.idp_entity_id) else {
            return Ok(None);
        };
        let d = &idp.descriptor;
        if idp.profile == IdpProfile::Cie {
            if after.is_some() {
                return Ok(None);
            }
            return Ok(d.slo_redirect.clone().map(LoginStart::Redirect));
        }
        let (destination, binding) = match (&d.slo_redirect, &d.slo_post) {
            (Some(url), _) => (url.clone(), Binding::Redirect),
            (None, Some(url)) => (url.clone(), Binding::Post),
            (None, None) => return Ok(None),
        };
        let request = logout::build_logout_request(&logout::LogoutRequestParams {
            sp_entity_id: &self.settings.entity_id,
            destination: &destination,
            name_id: &login.name_id,
            name_qualifier: &login.name_qualifier,
            session_index: login.session_index.as_deref(),
            now: self.now(),
        });
        let relay_state = ids::new_token(16);
        let stored = StoredLogout {
            pending: request.pending(&d.entity_id, Some(&relay_state)),
            after: after.map(str::to_owned),
        };
        let value = serde_json::to_vec(&stored).map_err(|e| SsoError::Internal(e.to_string()))?;
        self.state
            .put(
                &pending_logout_key(&stored.pending.id),
                &value,
                self.settings.request_ttl,
            )
            .await?;
        Ok(Some(match binding {
            Binding::Redirect => {
                LoginStart::Redirect(request.redirect_url(Some(&relay_state), &self.key)?)
            }
            Binding::Post => LoginStart::Post {
                action: destination,
                saml_request: request.post_value(&self.key)?,
                relay_state,
            },
        }))
    }

    /// The IdP's LogoutResponse to our LogoutRequest (§5 S2), on Redirect (`raw_query`
    /// exactly as received) or POST. The pending request is consumed on success only.
    pub async fn finish_logout(&self, message: SloMessage<'_>) -> Result<LogoutDone, SsoError> {
        let now = self.now();
        let limits = self.settings.limits;
        let message = OwnedSloMessage::from(message);
        let (message, id) = self
            .pool
            .run(move || message.peek_response(limits).map(|id| (message, id)))
            .await??;
        if id.is_empty() || id.len() > 128 {
            return Err(SsoError::UnknownRequest);
        }
        let key = pending_logout_key(&id);
        let StoredLogout { pending, after } = self.read_pending_logout(&key).await?;
        let idp = self
            .federation
            .get(&pending.idp_entity_id)
            .ok_or(SsoError::UnknownIdp)?;
        let clock_skew = chrono_duration(self.settings.clock_skew)?;
        let max_age = chrono_duration(self.settings.request_ttl)?;
        let slo_url = self.settings.slo_url.clone();
        let outcome = self
            .pool
            .run(move || {
                message.verify_response(&logout::LogoutResponseCheck {
                    pending: &pending,
                    slo_url: &slo_url,
                    idp_certs: &idp.descriptor.signing_certs,
                    now,
                    clock_skew,
                    max_age,
                    limits,
                })
            })
            .await??;
        if self.state.take(&key).await?.is_none() {
            return Err(SsoError::UnknownRequest);
        }
        Ok(LogoutDone { outcome, after })
    }

    async fn read_pending_logout(&self, key: &str) -> Result<StoredLogout, SsoError> {
        let raw = self.state.get(key).await?.ok_or(SsoError::UnknownRequest)?;
        serde_json::from_slice(&raw).map_err(|e| SsoError::Internal(e.to_string()))
    }

    /// An IdP-initiated LogoutRequest (§5 S3), verified with the keys of the IdP it
    /// names, then accepted once: its ID goes into a replay cache
    /// (`polis:sloin:<sha256(IdP, ID)>`, SET NX for as long as the message age window
    /// could still accept it), and a request seen before is [`SsoError::Replay`] with no
    /// effect. The caller ends the matching sessions, then answers with
    /// [`logout_response`](Self::logout_response) — Success also when none existed.
    pub async fn verify_idp_logout(
        &self,
        message: SloMessage<'_>,
    ) -> Result<VerifiedLogoutRequest, SsoError> {
        let now = self.now();
        let clock_skew = chrono_duration(self.settings.clock_skew)?;
        let max_age = chrono_duration(self.settings.request_ttl)?;
        let slo_url = self.settings.slo_url.clone();
        let limits = self.settings.limits;
        let federation = Arc::clone(&self.federation);
        let message = OwnedSloMessage::from(message);
        let request = self
            .pool
            .run(move || {
                let check = logout::LogoutRequestCheck {
                    slo_url: &slo_url,
                    now,
                    clock_skew,
                    max_age,
                    limits,
                };
                let certs = |issuer: &str| {
                    federation
                        .get(issuer)
                        .map(|idp| idp.descriptor.signing_certs.clone())
                };
                match &message {
                    OwnedSloMessage::Redirect { raw_query } => {
                        logout::verify_logout_request_redirect(raw_query, certs, &check)
                    }
                    OwnedSloMessage::Post { value, relay_state } => {
                        logout::verify_logout_request_post(
                            value,
                            relay_state.as_deref(),
                            certs,
                            &check,
                        )
                    }
                }
            })
            .await??;
        self.accept_once(&request).await?;
        Ok(request)
    }

    /// The replay cache of IdP-initiated LogoutRequests. Accepted while IssueInstant ≥
    /// now − max_age − skew and ≤ now + skew: an ID can come back at most max_age + 2 ×
    /// skew from now.
    async fn accept_once(&self, request: &VerifiedLogoutRequest) -> Result<(), SsoError> {
        let ttl = self.settings.request_ttl + 2 * self.settings.clock_skew + Duration::from_secs(1);
        let key = format!(
            "polis:sloin:{}",
            hex::encode(sha256(
                format!("{}\n{}", request.issuer, request.id).as_bytes()
            ))
        );
        if !self.state.put_if_absent(&key, b"1", ttl).await? {
            return Err(SsoError::Replay);
        }
        Ok(())
    }

    /// Our signed LogoutResponse (Success) to a verified IdP LogoutRequest, by
    /// Redirect to the IdP's SLO endpoint (POST when it offers only that).
    pub fn logout_response(&self, request: &VerifiedLogoutRequest) -> Result<LoginStart, SsoError> {
        let idp = self
            .federation
            .get(&request.issuer)
            .ok_or(SsoError::UnknownIdp)?;
        let d = &idp.descriptor;
        let (destination, redirect) = match (&d.slo_redirect, &d.slo_post) {
            (Some(url), _) => (url.clone(), true),
            (None, Some(url)) => (url.clone(), false),
            (None, None) => {
                return Err(SsoError::BadRequest(
                    "the identity provider publishes no SingleLogoutService".into(),
                ));
            }
        };
        let response = logout::build_logout_response(
            &request.id,
            &destination,
            &self.settings.entity_id,
            LogoutOutcome::Success,
            self.now(),
        );
        Ok(if redirect {
            LoginStart::Redirect(response.redirect_url(request.relay_state.as_deref(), &self.key)?)
        } else {
            LoginStart::Post {
                action: destination,
                saml_request: response.post_value(&self.key)?,
                relay_state: request.relay_state.clone().unwrap_or_default(),
            }
        })
    }
}
