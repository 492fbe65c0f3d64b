//! The login side of the SSO service: the AuthnRequest and its pending request
//! (`polis:req:<ID>`, a stamped entry), consuming the IdP's Response (strict parse,
//! validation against the pending request, the replay cache `polis:aid:…`, the
//! stamped take of the pending request) and the transaction log record of every
//! outcome.
//!
//! Order of a consume: the pending request is only *read* while the Response is
//! validated (a forged post changes nothing); once it validates, the assertion ID goes
//! into the replay cache (SET NX), then the pending request is taken with
//! [`StateStore::take_stamped`] (of concurrent posts exactly one wins, and a request
//! the store reloaded after a restart is refused); nothing that can fail runs after
//! that take.

use chrono::{DateTime, Utc};
use openssl::sha::sha256;

use super::{LoginStart, SsoError, SsoService, VerifiedLogin, chrono_duration};
use crate::blocking::INLINE_MAX_BYTES;
use crate::identity::{LoginSession, Scheme};
use crate::saml::request::{Binding, build_authn_request};
use crate::saml::response::ParsedResponse;
use crate::saml::{
    AuthnRequestParams, IdpProfile, Level, PendingRequest, ResponseCheck, ResponseOutcome,
    SamlError, VerifiedAssertion, binding, ids, response,
};
#[cfg(doc)]
use crate::state::StateStore;
use crate::txlog::{TxOutcome, TxRecord};

/// How long the replay cache keeps an assertion ID: until its NotOnOrAfter, plus skew.
fn ttl_until(
    t: DateTime<Utc>,
    now: DateTime<Utc>,
    skew: std::time::Duration,
) -> std::time::Duration {
    let secs = (t - now).num_seconds().max(0);
    std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0))
        + skew
        + std::time::Duration::from_secs(1)
}

fn request_key(id: &str) -> String {
    format!("polis:req:{id}")
}

/// A pending request read (not yet taken) for a Response.
struct Pending {
    key: String,
    request: PendingRequest,
}

impl SsoService {
    /// Builds, records and encodes an AuthnRequest to `idp`. `return_to` is where the
    /// browser continues after the login; `browser` the hash of its binding cookie.
    pub async fn start_login(
        &self,
        idp: &str,
        level: Option<Level>,
        binding: Option<Binding>,
        return_to: Option<String>,
        browser: String,
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
        let (sp_entity_id, key) = self.identity(idp.profile);
        let request = build_authn_request(&AuthnRequestParams {
            sp_entity_id,
            destination,
            acs_index: 0,
            attribute_index: idp.attribute_index(self.settings.attribute_index),
            level,
            comparison: self.settings.comparison,
            profile: idp.profile,
            now: self.now(),
        });
        let relay_state = ids::new_token(16);
        let start = match binding {
            Binding::Redirect => LoginStart::Redirect(request.redirect_url(&relay_state, key)?),
            Binding::Post => LoginStart::Post {
                action: destination.to_owned(),
                saml_request: request.post_value(key)?,
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
            profile: idp.profile,
        };
        let value = serde_json::to_vec(&pending).map_err(|e| SsoError::Internal(e.to_string()))?;
        self.state
            .put_stamped(&request_key(&pending.id), &value, self.settings.request_ttl)
            .await?;
        metrics::counter!(
            "polis_logins_started_total",
            "idp" => pending.idp_entity_id,
            "level" => level.number().to_string(),
            "profile" => idp.profile.as_str(),
        )
        .increment(1);
        Ok(start)
    }

    /// Validates a posted Response. Every outcome is written to the transaction log.
    /// Returns the verified login; mapping it to an account and opening a browser
    /// session are the caller's steps.
    pub async fn consume_response(
        &self,
        saml_response: &str,
        relay_state: Option<&str>,
        http_request_id: &str,
    ) -> Result<VerifiedLogin, SsoError> {
        let started = std::time::Instant::now();
        let now = self.now();
        let mut rec = TxRecord::new(now, TxOutcome::Rejected, http_request_id);
        let mut answered = None;
        let result = self
            .consume_inner(saml_response, relay_state, now, &mut rec, &mut answered)
            .await;
        self.record(rec, &result).await;
        let (outcome, code) = count_response(&result, started.elapsed());
        if let Some(request) = &answered {
            count_finished(request, outcome, code, now);
        }
        result
    }

    /// Finishes the transaction log record of a consume and appends it.
    async fn record(&self, mut rec: TxRecord, result: &Result<VerifiedLogin, SsoError>) {
        if let Some(xml) = rec.resp_xml.take() {
            // An unverified Response is the sender's bytes, not the IdP's: keep a bounded
            // prefix and the hash of the whole.
            let verified = matches!(
                result,
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
        match result {
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
        self.note_health(rec.idp_entity_id.as_deref(), result);
        if let Err(e) = self.txlog.append(&rec).await {
            // The register is a legal duty: a failure is loud, but the person's outcome stands.
            tracing::error!(target: "txlog", error = %e, "cannot write the SPID transaction log");
        }
    }

    /// Counts the outcome in the IdP's health window (the IdP of the stored pending
    /// request only: never a name read from an unverified message) and reports a
    /// change of state.
    fn note_health(&self, idp: Option<&str>, result: &Result<VerifiedLogin, SsoError>) {
        let (Some(idp), Some(failed)) =
            (idp, super::health::idp_side(&result.as_ref().map(|_| ())))
        else {
            return;
        };
        let side = if failed { "failed" } else { "ok" };
        metrics::counter!("polis_idp_responses_total", "idp" => idp.to_owned(), "side" => side)
            .increment(1);
        match self.health.record(idp, failed, self.now()) {
            Some(super::health::Change::Degraded) => {
                tracing::warn!(target: "federation", idp, "IdP degraded: at least half of its recent Responses failed on its side");
                metrics::gauge!("polis_idp_degraded", "idp" => idp.to_owned()).set(1.0);
            }
            Some(super::health::Change::Recovered) => {
                tracing::info!(target: "federation", idp, "IdP recovered");
                metrics::gauge!("polis_idp_degraded", "idp" => idp.to_owned()).set(0.0);
            }
            None => {}
        }
    }

    async fn consume_inner(
        &self,
        saml_response: &str,
        relay_state: Option<&str>,
        now: DateTime<Utc>,
        rec: &mut TxRecord,
        answered: &mut Option<Answered>,
    ) -> Result<VerifiedLogin, SsoError> {
        let (parsed, request_id) = self.parse_response(saml_response, rec).await?;
        let pending = self
            .read_pending(&request_id, relay_state, now, rec)
            .await?;
        *answered = Some(Answered {
            idp: pending.request.idp_entity_id.clone(),
            level: pending.request.level,
            profile: pending.request.profile,
            issued: pending.request.issue_instant,
        });
        let outcome = self.validate(parsed, &pending.request, now).await?;
        let verified = match outcome {
            Ok(v) => v,
            Err(
                e @ SamlError::IdpStatus {
                    authenticated: true,
                    ..
                },
            ) => {
                // The IdP (verifiably) ended this login attempt: the request is spent.
                // An unsigned error page is shown but consumes nothing.
                self.state.take(&pending.key).await?;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        rec.assertion_id = Some(verified.assertion_id().to_owned());
        rec.assertion_subject = Some(verified.name_id().to_owned());
        rec.assertion_subject_name_qualifier = Some(verified.name_qualifier().to_owned());
        rec.acr = Some(verified.level().uri().to_owned());
        self.spend(&verified, &pending.key, now).await?;
        Ok(VerifiedLogin {
            login: login_of(&verified, pending.request.profile, now),
            return_to: pending.request.return_to,
            browser: pending.request.browser,
        })
    }

    /// Decodes and strictly parses the Response (a small job when the document is
    /// small); returns it with the request it answers.
    async fn parse_response(
        &self,
        saml_response: &str,
        rec: &mut TxRecord,
    ) -> Result<(ParsedResponse, String), SsoError> {
        let limits = self.settings.limits;
        let xml = binding::decode_post(saml_response, limits.max_bytes)?;
        rec.resp_xml = Some(xml.clone());
        let small = xml.len() <= INLINE_MAX_BYTES;
        let job = move || response::parse(&xml, limits);
        let parsed = match small {
            true => self.pool.run_small(job).await??,
            false => self.pool.run(job).await??,
        };
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
        Ok((parsed, request_id))
    }

    /// Reads (does not take) the pending request `request_id`. Read, not consumed: a
    /// Response that fails validation changes nothing, so a forged post cannot burn a
    /// person's login. Refused when unknown, older than `request_ttl` by the clock (the
    /// state store's TTL is not trusted alone), with another RelayState, or stored
    /// before the state store restarted.
    async fn read_pending(
        &self,
        request_id: &str,
        relay_state: Option<&str>,
        now: DateTime<Utc>,
        rec: &mut TxRecord,
    ) -> Result<Pending, SsoError> {
        let key = request_key(request_id);
        let stored = self
            .state
            .get_stamped(&key)
            .await?
            .ok_or(SsoError::UnknownRequest)?;
        let request: PendingRequest =
            serde_json::from_slice(&stored.value).map_err(|e| SsoError::Internal(e.to_string()))?;
        rec.idp_entity_id = Some(request.idp_entity_id.clone());
        rec.authn_req_id = Some(request.id.clone());
        rec.authn_req_issue_instant =
            Some(crate::saml::time::format_instant(request.issue_instant));
        rec.authn_req_xml = Some(request.xml.clone());
        if now - request.issue_instant >= chrono_duration(self.settings.request_ttl)? {
            // Expired: the same answer as when the store has already dropped it.
            return Err(SsoError::UnknownRequest);
        }
        if relay_state != Some(request.relay_state.as_str()) {
            return Err(SsoError::RelayStateMismatch);
        }
        if !stored.current {
            return Err(SsoError::StaleRequest);
        }
        Ok(Pending { key, request })
    }

    /// Validates the Response against its pending request (a small job: see
    /// [`crate::blocking::BlockingPool::run_small`]).
    async fn validate(
        &self,
        parsed: ParsedResponse,
        pending: &PendingRequest,
        now: DateTime<Utc>,
    ) -> Result<ResponseOutcome, SsoError> {
        let idp = self
            .federation
            .get(&pending.idp_entity_id)
            .ok_or(SsoError::UnknownIdp)?;
        let certs = idp.descriptor.signing_certs.clone();
        let settings = self.settings.clone();
        // The Audience is the entityID the request went out with.
        let audience = self.identity(pending.profile).0.to_owned();
        let pending = pending.clone();
        let clock_skew = chrono_duration(settings.clock_skew)?;
        let max_validity = chrono_duration(settings.max_assertion_validity)?;
        let small = parsed.source_len() <= INLINE_MAX_BYTES;
        let job = move || {
            response::validate(
                &parsed,
                &ResponseCheck {
                    pending: &pending,
                    sp_entity_id: &audience,
                    acs_url: &settings.acs_url,
                    idp_certs: &certs,
                    now,
                    clock_skew,
                    max_validity,
                    limits: settings.limits,
                },
            )
        };
        Ok(match small {
            true => self.pool.run_small(job).await?,
            false => self.pool.run(job).await?,
        })
    }

    /// R-REPLAY, then the consume: the assertion ID is remembered until it could no
    /// longer be accepted (NotOnOrAfter is capped by `max_assertion_validity`, so the
    /// TTL is bounded), *before* the request is taken: nothing that can fail runs
    /// after the take, so a person never loses a login to a 5xx.
    async fn spend(
        &self,
        verified: &VerifiedAssertion,
        request_key: &str,
        now: DateTime<Utc>,
    ) -> Result<(), SsoError> {
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
        match self.state.take_stamped(request_key).await? {
            // Another post of the same Response won the race.
            None => Err(SsoError::UnknownRequest),
            // Checked again by the command that consumed it: the store restarted since.
            Some(taken) if !taken.current => Err(SsoError::StaleRequest),
            Some(_) => Ok(()),
        }
    }
}

/// What the metrics of a finished login say of the stored request it answered.
struct Answered {
    idp: String,
    level: Level,
    profile: IdpProfile,
    issued: DateTime<Utc>,
}

/// Counts a Response that answered a stored pending request, by that request's IdP,
/// level and profile (never names read from the unverified message) and our outcome
/// and code; an accepted one also records the login's duration, from the AuthnRequest
/// to its Response (the person's time at the IdP included).
fn count_finished(request: &Answered, outcome: &'static str, code: String, now: DateTime<Utc>) {
    let profile = request.profile.as_str();
    metrics::counter!(
        "polis_logins_finished_total",
        "idp" => request.idp.clone(),
        "level" => request.level.number().to_string(),
        "profile" => profile,
        "outcome" => outcome,
        "code" => code,
    )
    .increment(1);
    if outcome == "accepted" {
        let took = (now - request.issued).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::histogram!("polis_login_duration_seconds", "profile" => profile).record(took);
    }
}

/// Counts a consumed Response by outcome and our error code (bounded values only: an
/// IdP error is `nrNN` or `status`, never text from the message) and records how long
/// the consume took. Returns the outcome and the code.
fn count_response(
    result: &Result<VerifiedLogin, SsoError>,
    took: std::time::Duration,
) -> (&'static str, String) {
    let (outcome, code): (&'static str, String) = match result {
        Ok(_) => ("accepted", String::new()),
        Err(SsoError::Saml(SamlError::IdpStatus { code, .. })) => (
            "idp_error",
            code.map_or_else(|| "status".to_owned(), |c| format!("nr{:02}", c.0)),
        ),
        Err(e) => ("rejected", e.code().to_owned()),
    };
    metrics::counter!("polis_acs_responses_total", "outcome" => outcome, "code" => code.clone())
        .increment(1);
    metrics::histogram!("polis_acs_duration_seconds", "outcome" => outcome)
        .record(took.as_secs_f64());
    (outcome, code)
}

/// The identity scheme of logins through an IdP of this profile: FICEP delivers eIDAS
/// identities.
pub fn scheme_of(profile: IdpProfile) -> Scheme {
    match profile {
        IdpProfile::Spid => Scheme::Spid,
        IdpProfile::Cie => Scheme::Cie,
        IdpProfile::Ficep => Scheme::Eidas,
    }
}

/// The scheme-neutral login of a verified assertion from an IdP of `profile`.
fn login_of(verified: &VerifiedAssertion, profile: IdpProfile, now: DateTime<Utc>) -> LoginSession {
    LoginSession {
        scheme: scheme_of(profile),
        idp_entity_id: verified.idp_entity_id().to_owned(),
        name_id: verified.name_id().to_owned(),
        name_qualifier: verified.name_qualifier().to_owned(),
        session_index: verified.session_index().map(str::to_owned),
        level: verified.level(),
        attributes: verified.attributes().clone(),
        authenticated_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_follows_the_idp_profile() {
        assert_eq!(scheme_of(IdpProfile::Spid), Scheme::Spid);
        assert_eq!(scheme_of(IdpProfile::Cie), Scheme::Cie);
        assert_eq!(scheme_of(IdpProfile::Ficep), Scheme::Eidas);
    }

    #[test]
    fn pending_requests_stored_before_profiles_are_spid() {
        let pending = PendingRequest {
            id: "_r".into(),
            issue_instant: DateTime::<Utc>::UNIX_EPOCH,
            idp_entity_id: "https://idp.example.it".into(),
            level: Level::L2,
            comparison: crate::saml::Comparison::Minimum,
            relay_state: "rs".into(),
            binding: Binding::Post,
            xml: String::new(),
            return_to: None,
            browser: String::new(),
            profile: IdpProfile::Ficep,
        };
        let mut json = serde_json::to_value(&pending).unwrap();
        assert_eq!(json["profile"], "ficep");
        json.as_object_mut().unwrap().remove("profile");
        let old: PendingRequest = serde_json::from_value(json).unwrap();
        assert_eq!(old.profile, IdpProfile::Spid);
    }
}
