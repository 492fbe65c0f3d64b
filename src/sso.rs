//! The SSO service: starting a SPID login and consuming the IdP's Response.
//! Uses the pure `saml` core, the federation, the state store and the transaction
//! log; knows nothing of HTTP (the `web` module maps its results).
//!
//! State keys (one key per command, so Redis Cluster works):
//! - `polis:req:<AuthnRequest ID>`: the pending request, read for validation and
//!   consumed once with GETDEL when the Response is accepted (or the IdP refused);
//!   a stamped entry ([`StateStore::put_stamped`]): one that the state store reloaded
//!   after a restart or a failover is refused ([`SsoError::StaleRequest`]), since the
//!   store may have forgotten that it was consumed (and the replay cache entry with it);
//! - `polis:aid:<hex sha256(IdP, Assertion ID)>`: replay cache, SET NX until the
//!   SubjectConfirmationData NotOnOrAfter (plus skew).
//!
//! The browser session opened after a login lives in [`crate::session`].

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use openssl::sha::sha256;

use crate::blocking::{BlockingPool, PoolError};
use crate::federation::Federation;
use crate::identity::LoginSession;
use crate::saml::logout::{self, LogoutOutcome};
use crate::saml::request::{Binding, build_authn_request};
use crate::saml::xml::Limits;
use crate::saml::{
    AuthnRequestParams, Comparison, Level, PendingRequest, ResponseCheck, SamlError, SigningKey,
    VerifiedAssertion, binding, ids, response,
};
use crate::state::{StateError, StateStore};
use crate::txlog::{TxLog, TxOutcome, TxRecord};

/// Errors of the SSO service.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    /// A protocol check failed.
    #[error(transparent)]
    Saml(#[from] SamlError),
    /// The `idp` asked for is not a trusted IdP.
    #[error("unknown identity provider")]
    UnknownIdp,
    /// Bad parameters on a login link or form.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The Response answers no outstanding request: unknown, expired or already used.
    #[error("no outstanding request for this response (expired, already used or never issued)")]
    UnknownRequest,
    /// RelayState differs from the one sent with the request.
    #[error("RelayState does not match the request")]
    RelayStateMismatch,
    /// The Assertion was already consumed.
    #[error("assertion already used")]
    Replay,
    /// The pending request predates a restart or failover of the state store (which may
    /// have lost or rewound its state): the login must start again.
    #[error("the login started before the state store lost or reloaded its state")]
    StaleRequest,
    /// The state store cannot be reached.
    #[error(transparent)]
    State(#[from] StateError),
    /// The verification pool is saturated (or a job overran its deadline).
    #[error(transparent)]
    Busy(#[from] PoolError),
    /// An internal failure (task join, serialization).
    #[error("internal error: {0}")]
    Internal(String),
}

impl SsoError {
    /// Stable code for pages, logs and the transaction log.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Saml(e) => e.code(),
            Self::UnknownIdp => "POLIS_UNKNOWN_IDP",
            Self::BadRequest(_) => "POLIS_BAD_REQUEST",
            Self::UnknownRequest => "SAML_UNKNOWN_REQUEST",
            Self::RelayStateMismatch => "SAML_RELAY_STATE",
            Self::Replay => "SAML_REPLAY",
            Self::StaleRequest => "POLIS_LOGIN_STALE",
            Self::State(StateError::Unavailable(_)) => "POLIS_STATE_UNAVAILABLE",
            Self::State(_) => "POLIS_STATE_ERROR",
            Self::Busy(e) => e.code(),
            Self::Internal(_) => "POLIS_INTERNAL",
        }
    }
}

/// Settings of the SSO service, derived from configuration.
#[derive(Debug, Clone)]
pub struct SsoSettings {
    /// Our entityID.
    pub entity_id: String,
    /// Our ACS URL.
    pub acs_url: String,
    /// Our single-logout URL.
    pub slo_url: String,
    /// Level when the link does not say.
    pub default_level: Level,
    /// Binding when the link does not say.
    pub default_binding: Binding,
    /// RequestedAuthnContext Comparison.
    pub comparison: Comparison,
    /// AttributeConsumingServiceIndex.
    pub attribute_index: u16,
    /// Pending-request lifetime.
    pub request_ttl: Duration,
    /// Clock skew tolerated.
    pub clock_skew: Duration,
    /// Furthest ahead an IdP may put an Assertion's NotOnOrAfter (caps the replay TTL).
    pub max_assertion_validity: Duration,
    /// Bytes of a rejected (unverified) Response kept in the transaction log.
    pub txlog_unverified_max_bytes: usize,
    /// Bounds for inbound messages.
    pub limits: Limits,
}

/// How the browser is sent to the IdP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginStart {
    /// HTTP-Redirect: the full signed URL.
    Redirect(String),
    /// HTTP-POST: an auto-submitting form.
    Post {
        /// IdP SSO URL.
        action: String,
        /// Base64 signed AuthnRequest.
        saml_request: String,
        /// Opaque RelayState.
        relay_state: String,
    },
}

/// A SAML logout message as received on `/slo`.
#[derive(Debug, Clone, Copy)]
pub enum SloMessage<'a> {
    /// HTTP-Redirect: the raw query string, exactly as received.
    Redirect {
        /// The raw query.
        raw_query: &'a str,
    },
    /// HTTP-POST: the base64 value and RelayState.
    Post {
        /// `SAMLRequest` or `SAMLResponse`.
        value: &'a str,
        /// RelayState.
        relay_state: Option<&'a str>,
    },
}

/// A Response that passed every check, with what the pending request remembered.
#[derive(Debug, Clone)]
pub struct VerifiedLogin {
    /// The verified identity.
    pub login: LoginSession,
    /// Where the browser continues (a local path), if the login was started for one.
    pub return_to: Option<String>,
    /// Hex SHA-256 of the binding cookie of the browser that started the login.
    pub browser: String,
}

/// The SSO service.
pub struct SsoService {
    settings: SsoSettings,
    key: SigningKey,
    federation: Arc<Federation>,
    state: Arc<dyn StateStore>,
    txlog: Arc<dyn TxLog>,
    pool: BlockingPool,
}

impl std::fmt::Debug for SsoService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoService")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn ttl_until(t: DateTime<Utc>, now: DateTime<Utc>, skew: Duration) -> Duration {
    let secs = (t - now).num_seconds().max(0);
    Duration::from_secs(u64::try_from(secs).unwrap_or(0)) + skew + Duration::from_secs(1)
}

impl SsoService {
    /// Builds the service.
    pub fn new(
        settings: SsoSettings,
        key: SigningKey,
        federation: Arc<Federation>,
        state: Arc<dyn StateStore>,
        txlog: Arc<dyn TxLog>,
        pool: BlockingPool,
    ) -> Self {
        Self {
            settings,
            key,
            federation,
            state,
            txlog,
            pool,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &SsoSettings {
        &self.settings
    }

    /// The federation.
    pub fn federation(&self) -> &Federation {
        &self.federation
    }

    /// Builds, records and encodes an AuthnRequest to `idp`.
    pub async fn start_login(
        &self,
        idp: &str,
        level: Option<Level>,
        binding: Option<Binding>,
        return_to: Option<String>,
        browser: String,
        now: DateTime<Utc>,
    ) -> Result<LoginStart, SsoError> {
        let idp = self.federation.get(idp).ok_or(SsoError::UnknownIdp)?;
        let level = level.unwrap_or(self.settings.default_level);
        let binding = binding.unwrap_or(self.settings.default_binding);
        let d = &idp.descriptor;
        let destination = match binding {
            Binding::Redirect => d.sso_redirect.as_deref(),
            Binding::Post => d.sso_post.as_deref(),
        }
        .ok_or_else(|| {
            SsoError::BadRequest("the identity provider does not support this binding".into())
        })?;
        let request = build_authn_request(&AuthnRequestParams {
            sp_entity_id: &self.settings.entity_id,
            destination,
            acs_index: 0,
            attribute_index: self.settings.attribute_index,
            level,
            comparison: self.settings.comparison,
            now,
        });
        let relay_state = ids::new_token(16);
        let start = match binding {
            Binding::Redirect => {
                LoginStart::Redirect(request.redirect_url(&relay_state, &self.key)?)
            }
            Binding::Post => LoginStart::Post {
                action: destination.to_owned(),
                saml_request: request.post_value(&self.key)?,
                relay_state: relay_state.clone(),
            },
        };
        let pending = PendingRequest {
            id: request.id.clone(),
            issue_instant: request.issue_instant,
            idp_entity_id: d.entity_id.clone(),
            level,
            comparison: self.settings.comparison,
            relay_state,
            binding,
            xml: request.xml,
            return_to,
            browser,
        };
        let value = serde_json::to_vec(&pending).map_err(|e| SsoError::Internal(e.to_string()))?;
        self.state
            .put_stamped(
                &format!("polis:req:{}", pending.id),
                &value,
                self.settings.request_ttl,
            )
            .await?;
        Ok(start)
    }

    /// Validates a posted Response. Every outcome is written to the transaction log.
    /// Returns the verified login; opening a browser session is the caller's step.
    pub async fn consume_response(
        &self,
        saml_response: &str,
        relay_state: Option<&str>,
        http_request_id: &str,
        now: DateTime<Utc>,
    ) -> Result<VerifiedLogin, SsoError> {
        let mut rec = TxRecord::new(now, TxOutcome::Rejected, http_request_id);
        let result = self
            .consume_inner(saml_response, relay_state, now, &mut rec)
            .await;
        if let Some(xml) = rec.resp_xml.take() {
            // An unverified Response is the sender's bytes, not the IdP's: keep a bounded
            // prefix and the hash of the whole.
            let verified = matches!(
                &result,
                Ok(_)
                    | Err(SsoError::Saml(SamlError::IdpStatus {
                        authenticated: true,
                        ..
                    }))
            );
            rec.set_response_xml(
                &xml,
                (!verified).then_some(self.settings.txlog_unverified_max_bytes),
            );
        }
        match &result {
            Ok(_) => rec.outcome = TxOutcome::Accepted,
            Err(SsoError::Saml(SamlError::IdpStatus { code, status, .. })) => {
                rec.outcome = TxOutcome::IdpError;
                rec.error_code = Some(
                    code.map(|c| c.to_string())
                        .unwrap_or_else(|| status.clone()),
                );
            }
            Err(e) => rec.error_code = Some(e.code().to_owned()),
        }
        if let Err(e) = self.txlog.append(&rec).await {
            // The register is a legal duty: a failure is loud, but the person's outcome stands.
            tracing::error!(target: "txlog", error = %e, "cannot write the SPID transaction log");
        }
        result
    }

    async fn consume_inner(
        &self,
        saml_response: &str,
        relay_state: Option<&str>,
        now: DateTime<Utc>,
        rec: &mut TxRecord,
    ) -> Result<VerifiedLogin, SsoError> {
        let limits = self.settings.limits;
        let xml = binding::decode_post(saml_response, limits.max_bytes)?;
        rec.resp_xml = Some(xml.clone());
        let parsed = self
            .pool
            .run(move || response::parse(&xml, limits))
            .await??;
        rec.resp_id = parsed.id().map(str::to_owned);
        rec.resp_issue_instant = parsed.issue_instant().map(str::to_owned);
        rec.resp_issuer = parsed.issuer().map(str::to_owned);
        let request_id = parsed
            .in_response_to()
            .ok_or(SamlError::Missing("InResponseTo"))?
            .to_owned();
        if request_id.len() > 256 {
            return Err(SamlError::invalid("InResponseTo", "too long").into());
        }
        // Read, not consumed: a Response that fails validation changes nothing, so a
        // forged post cannot burn a person's login. The request is consumed (GETDEL)
        // only once validation succeeds, and only one concurrent caller can win that.
        let req_key = format!("polis:req:{request_id}");
        let stored = self
            .state
            .get_stamped(&req_key)
            .await?
            .ok_or(SsoError::UnknownRequest)?;
        let pending: PendingRequest =
            serde_json::from_slice(&stored.value).map_err(|e| SsoError::Internal(e.to_string()))?;
        rec.idp_entity_id = Some(pending.idp_entity_id.clone());
        rec.authn_req_id = Some(pending.id.clone());
        rec.authn_req_issue_instant =
            Some(crate::saml::time::format_instant(pending.issue_instant));
        rec.authn_req_xml = Some(pending.xml.clone());
        if relay_state != Some(pending.relay_state.as_str()) {
            return Err(SsoError::RelayStateMismatch);
        }
        if !stored.current {
            return Err(SsoError::StaleRequest);
        }
        let idp = self
            .federation
            .get(&pending.idp_entity_id)
            .ok_or(SsoError::UnknownIdp)?;
        let certs = idp.descriptor.signing_certs.clone();
        let return_to = pending.return_to.clone();
        let browser = pending.browser.clone();
        let settings = self.settings.clone();
        let skew = chrono::Duration::from_std(settings.clock_skew)
            .map_err(|e| SsoError::Internal(e.to_string()))?;
        let max_validity = chrono::Duration::from_std(settings.max_assertion_validity)
            .map_err(|e| SsoError::Internal(e.to_string()))?;
        let outcome = self
            .pool
            .run(move || {
                response::validate(
                    &parsed,
                    &ResponseCheck {
                        pending: &pending,
                        sp_entity_id: &settings.entity_id,
                        acs_url: &settings.acs_url,
                        idp_certs: &certs,
                        now,
                        clock_skew: skew,
                        max_validity,
                        limits: settings.limits,
                    },
                )
            })
            .await?;
        let verified: VerifiedAssertion = match outcome {
            Ok(v) => v,
            Err(
                e @ SamlError::IdpStatus {
                    authenticated: true,
                    ..
                },
            ) => {
                // The IdP (verifiably) ended this login attempt: the request is spent.
                // An unsigned error page is shown but consumes nothing.
                self.state.take(&req_key).await?;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        rec.assertion_id = Some(verified.assertion_id().to_owned());
        rec.assertion_subject = Some(verified.name_id().to_owned());
        rec.assertion_subject_name_qualifier = Some(verified.name_qualifier().to_owned());
        rec.acr = Some(verified.level().uri().to_owned());
        // R-REPLAY: the assertion ID is remembered until it could no longer be accepted
        // (NotOnOrAfter is capped by `max_assertion_validity`, so the TTL is bounded).
        // Remembered *before* the request is consumed: nothing that can fail runs after
        // the consume, so a person never loses a login to a 5xx.
        let replay_key = format!(
            "polis:aid:{}",
            hex::encode(sha256(
                format!("{}\n{}", verified.idp_entity_id(), verified.assertion_id()).as_bytes()
            ))
        );
        let ttl = ttl_until(verified.not_on_or_after(), now, self.settings.clock_skew);
        if !self.state.put_if_absent(&replay_key, b"1", ttl).await? {
            return Err(SsoError::Replay);
        }
        match self.state.take_stamped(&req_key).await? {
            // Another post of the same Response won the race.
            None => return Err(SsoError::UnknownRequest),
            // Checked again by the command that consumed it: the store restarted since.
            Some(taken) if !taken.current => return Err(SsoError::StaleRequest),
            Some(_) => {}
        }
        let session = LoginSession {
            idp_entity_id: verified.idp_entity_id().to_owned(),
            name_id: verified.name_id().to_owned(),
            name_qualifier: verified.name_qualifier().to_owned(),
            session_index: verified.session_index().map(str::to_owned),
            level: verified.level(),
            attributes: verified.attributes().clone(),
            authenticated_at: now,
        };
        Ok(VerifiedLogin {
            login: session,
            return_to,
            browser,
        })
    }

    /// SP-initiated single logout (rules §5 S1), after the local session is closed:
    /// a signed LogoutRequest to the IdP of `login` (Redirect when the IdP offers it,
    /// else POST), remembered until its LogoutResponse. `None` when the IdP has no
    /// SLO endpoint or is no longer trusted.
    pub async fn start_logout(
        &self,
        login: &LoginSession,
        now: DateTime<Utc>,
    ) -> Result<Option<LoginStart>, SsoError> {
        let Some(idp) = self.federation.get(&login.idp_entity_id) else {
            return Ok(None);
        };
        let d = &idp.descriptor;
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
            now,
        });
        let relay_state = ids::new_token(16);
        let pending = request.pending(&d.entity_id, Some(&relay_state));
        let value = serde_json::to_vec(&pending).map_err(|e| SsoError::Internal(e.to_string()))?;
        self.state
            .put(
                &format!("polis:slo:{}", pending.id),
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
    pub async fn finish_logout(
        &self,
        message: SloMessage<'_>,
        now: DateTime<Utc>,
    ) -> Result<LogoutOutcome, SsoError> {
        let limits = self.settings.limits;
        let message = OwnedSloMessage::from(message);
        let (message, id) = self
            .pool
            .run(move || {
                let id = match &message {
                    OwnedSloMessage::Redirect { raw_query } => {
                        logout::peek_logout_response_redirect(raw_query, limits)
                    }
                    OwnedSloMessage::Post { value, .. } => {
                        logout::peek_logout_response_post(value, limits)
                    }
                };
                id.map(|id| (message, id))
            })
            .await??;
        if id.is_empty() || id.len() > 128 {
            return Err(SsoError::UnknownRequest);
        }
        let key = format!("polis:slo:{id}");
        let raw = self
            .state
            .get(&key)
            .await?
            .ok_or(SsoError::UnknownRequest)?;
        let pending: logout::PendingLogout =
            serde_json::from_slice(&raw).map_err(|e| SsoError::Internal(e.to_string()))?;
        let idp = self
            .federation
            .get(&pending.idp_entity_id)
            .ok_or(SsoError::UnknownIdp)?;
        let clock_skew = chrono::Duration::from_std(self.settings.clock_skew)
            .map_err(|e| SsoError::Internal(e.to_string()))?;
        let max_age = chrono::Duration::from_std(self.settings.request_ttl)
            .map_err(|e| SsoError::Internal(e.to_string()))?;
        let slo_url = self.settings.slo_url.clone();
        let outcome = self
            .pool
            .run(move || {
                let check = logout::LogoutResponseCheck {
                    pending: &pending,
                    slo_url: &slo_url,
                    idp_certs: &idp.descriptor.signing_certs,
                    now,
                    clock_skew,
                    max_age,
                    limits,
                };
                match &message {
                    OwnedSloMessage::Redirect { raw_query } => {
                        logout::verify_logout_response_redirect(raw_query, &check)
                    }
                    OwnedSloMessage::Post { value, relay_state } => {
                        logout::verify_logout_response_post(value, relay_state.as_deref(), &check)
                    }
                }
            })
            .await??;
        if self.state.take(&key).await?.is_none() {
            return Err(SsoError::UnknownRequest);
        }
        Ok(outcome)
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
        now: DateTime<Utc>,
    ) -> Result<logout::VerifiedLogoutRequest, SsoError> {
        let clock_skew = chrono::Duration::from_std(self.settings.clock_skew)
            .map_err(|e| SsoError::Internal(e.to_string()))?;
        let max_age = chrono::Duration::from_std(self.settings.request_ttl)
            .map_err(|e| SsoError::Internal(e.to_string()))?;
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
        // Accepted while IssueInstant ≥ now − max_age − skew and ≤ now + skew: an ID
        // can come back at most max_age + 2 × skew from now.
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
        Ok(request)
    }

    /// Our signed LogoutResponse (Success) to a verified IdP LogoutRequest, by
    /// Redirect to the IdP's SLO endpoint (POST when it offers only that).
    pub fn logout_response(
        &self,
        request: &logout::VerifiedLogoutRequest,
        now: DateTime<Utc>,
    ) -> Result<LoginStart, SsoError> {
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
            logout::LogoutOutcome::Success,
            now,
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

    /// Health of the state store.
    pub async fn ready(&self) -> Result<(), SsoError> {
        Ok(self.state.ping().await?)
    }
}

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
