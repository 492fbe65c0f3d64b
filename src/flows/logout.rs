//! Closing a session everywhere, and the logouts that do it:
//!
//! - [`LogoutFlow::close`]: the session record (and its IdP-logout index), its OIDC
//!   tokens revoked by `sid`, and a `logout+jwt` token posted to every client with a
//!   back-channel URI — delivered in the background from here (one attempt each,
//!   logged), with this service's own HTTP client: [`BACKCHANNEL_TIMEOUT`], no
//!   redirects followed;
//! - [`LogoutFlow::logout`] («Esci»): close, then the SPID single logout start;
//! - [`LogoutFlow::idp_logout`]: an IdP-initiated LogoutRequest verified and accepted
//!   once, the session of that login closed, the signed LogoutResponse Success —
//!   also when no session existed.

use std::sync::Arc;
use std::time::Duration;

use super::{FlowError, SessionRef};
use crate::clock::SharedClock;
use crate::oidc::provider::Provider;
use crate::session::SessionStore;
use crate::sso::{LoginStart, SloMessage, SsoService};

/// Time limit of one back-channel logout delivery.
pub const BACKCHANNEL_TIMEOUT: Duration = Duration::from_secs(5);

/// Ends sessions everywhere and runs the logouts.
pub struct LogoutFlow {
    sso: Arc<SsoService>,
    sessions: Arc<SessionStore>,
    oidc: Option<Arc<Provider>>,
    http: reqwest::Client,
    clock: SharedClock,
}

impl std::fmt::Debug for LogoutFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogoutFlow")
            .field("oidc", &self.oidc.is_some())
            .finish_non_exhaustive()
    }
}

impl LogoutFlow {
    /// The flow over these services; builds its back-channel HTTP client.
    pub fn new(
        sso: Arc<SsoService>,
        sessions: Arc<SessionStore>,
        oidc: Option<Arc<Provider>>,
        clock: SharedClock,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(BACKCHANNEL_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            sso,
            sessions,
            oidc,
            http,
            clock,
        })
    }

    /// Ends the gateway session everywhere: the session record, its OIDC tokens
    /// (revoked by `sid`), and the clients told by back-channel logout (delivered in
    /// the background, one attempt each, logged).
    pub async fn close(&self, current: SessionRef<'_>) -> Result<(), FlowError> {
        self.sessions.end(current.token).await?;
        if let Some(p) = &self.oidc {
            let deliveries = p
                .end_session(
                    &current.session.sid,
                    current.session.account_id,
                    self.clock.now(),
                )
                .await?;
            for (uri, token) in deliveries {
                tokio::spawn(deliver(self.http.clone(), uri, token));
            }
        }
        Ok(())
    }

    /// «Esci», and the RP-initiated logout of an OpenID Connect client (`after`: its
    /// checked post-logout URI, where the browser goes once the IdP has answered):
    /// closes the session, then starts the single logout at the login's IdP. `None`
    /// when there is nothing to send (the IdP has no SingleLogoutService, is no longer
    /// trusted, is CIE with an `after`, or the request could not be built: the session
    /// is closed anyway and the failure logged).
    pub async fn logout(
        &self,
        current: SessionRef<'_>,
        after: Option<&str>,
    ) -> Result<Option<LoginStart>, FlowError> {
        self.close(current).await?;
        // Local session first (closed above), then SPID single logout at the IdP.
        match self.sso.start_logout(&current.session.login, after).await {
            Ok(start) => Ok(start),
            Err(e) => {
                tracing::warn!(code = e.code(), error = %e, "SP-initiated SPID logout not sent");
                Ok(None)
            }
        }
    }

    /// An IdP-initiated logout: the LogoutRequest verified and accepted once, the
    /// session of that login closed (tokens revoked, clients told), then our signed
    /// LogoutResponse Success — also when no session existed (RT).
    pub async fn idp_logout(&self, message: SloMessage<'_>) -> Result<LoginStart, FlowError> {
        let request = self.sso.verify_idp_logout(message).await?;
        let token = self
            .sessions
            .token_for_login(&request.issuer, &request.name_id)
            .await?;
        if let Some(token) = token
            && let Some(session) = self.sessions.load(&token, self.clock.now()).await?
        {
            self.close(SessionRef {
                token: &token,
                session: &session,
            })
            .await?;
        }
        Ok(self.sso.logout_response(&request)?)
    }
}

/// One back-channel logout delivery (OpenID Connect Back-Channel Logout 1.0 §2.5).
async fn deliver(http: reqwest::Client, uri: String, token: String) {
    let body = serde_urlencoded::to_string([("logout_token", token.as_str())]).unwrap_or_default();
    let result = http
        .post(&uri)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .send()
        .await;
    let outcome = match result {
        Ok(r) if r.status().is_success() => {
            tracing::info!(%uri, "back-channel logout delivered");
            "delivered"
        }
        Ok(r) => {
            tracing::warn!(%uri, status = r.status().as_u16(), "back-channel logout refused");
            "refused"
        }
        Err(e) => {
            tracing::warn!(%uri, error = %e, "back-channel logout failed");
            "failed"
        }
    };
    metrics::counter!("polis_backchannel_logout_total", "outcome" => outcome).increment(1);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use uuid::Uuid;

    use super::*;
    use crate::clock::Clock;
    use crate::flows::tests_support::{IDP, login, world};
    use crate::state::StateStore;

    #[tokio::test]
    async fn close_ends_the_record_and_the_idp_logout_index() {
        let w = world();
        let now = w.clock.now();
        let (token, session) = w
            .sessions
            .open(login("_n"), Uuid::new_v4(), now)
            .await
            .unwrap();
        let (other, _) = w
            .sessions
            .open(login("_other"), Uuid::new_v4(), now)
            .await
            .unwrap();
        assert_eq!(
            w.sessions.token_for_login(IDP, "_n").await.unwrap(),
            Some(token.clone())
        );
        w.logout
            .close(SessionRef {
                token: &token,
                session: &session,
            })
            .await
            .unwrap();
        assert!(w.sessions.load(&token, now).await.unwrap().is_none());
        assert!(
            w.state
                .get(&format!("polis:sess:{token}"))
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(w.sessions.token_for_login(IDP, "_n").await.unwrap(), None);
        // Only that session.
        assert!(w.sessions.load(&other, now).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn logout_closes_the_session_even_when_the_idp_cannot_be_told() {
        // The IdP of this login is not (or no longer) trusted: nothing to send.
        let w = world();
        let now = w.clock.now();
        let (token, session) = w
            .sessions
            .open(login("_n"), Uuid::new_v4(), now)
            .await
            .unwrap();
        let next = w
            .logout
            .logout(
                SessionRef {
                    token: &token,
                    session: &session,
                },
                None,
            )
            .await
            .unwrap();
        assert_eq!(next, None);
        assert!(w.sessions.load(&token, now).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_back_channel_delivery_posts_the_logout_token_as_a_form() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}/bcl", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&seen).contains("logout_token=a.b.c") {
                let n = conn.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
                seen.extend_from_slice(&buf[..n]);
            }
            conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(seen).unwrap()
        });
        let w = world();
        deliver(w.logout.http.clone(), uri, "a.b.c".into()).await;
        let request = server.await.unwrap();
        assert!(request.starts_with("POST /bcl HTTP/1.1"), "{request}");
        assert!(
            request
                .to_ascii_lowercase()
                .contains("content-type: application/x-www-form-urlencoded"),
            "{request}"
        );
    }
}
