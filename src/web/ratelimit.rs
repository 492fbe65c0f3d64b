//! Per-client-IP request rates on the endpoints where one request costs state or a
//! secret check: `/login` (stores a pending request), `/acs` and `/slo` (XML-DSig
//! verification), the forms that check a CP or recovery answer, and the OIDC endpoints
//! that check client secrets (argon2), and the help-desk console (`/assistenza`: each
//! lookup reads the account, its counters and the transaction log).
//!
//! GCRA per client IP (the `governor` crate), in process memory: each replica counts its
//! own clients. The limits that must hold across replicas — tries on a CP or a recovery
//! answer, resends — are the state-store counters of the abilitazione; these rates only
//! keep one client from monopolising a replica.
//!
//! The client IP is the last entry of `limits.client_ip_header` when configured (the
//! header a trusted reverse proxy sets), else the peer address. Nothing else a client
//! sends is believed.
//!
//! Owns its settings ([`RateSettings`]); `config` builds them from `[limits]`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::AppError;

type Keyed = RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>;

/// Which rate a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Login,
    Acs,
    Slo,
    Secrets,
    Token,
    Helpdesk,
}

fn class_of(method: &Method, path: &str) -> Option<Class> {
    match path {
        "/login" => Some(Class::Login),
        "/acs" => Some(Class::Acs),
        "/slo" => Some(Class::Slo),
        "/abilitazione/cambio-cp"
        | "/area-riservata/cambio-cp"
        | "/area-riservata/recupero-cp"
        | "/oidc/cp"
            if method == Method::POST =>
        {
            Some(Class::Secrets)
        }
        "/oidc/token" | "/oidc/introspect" | "/oidc/revoke" => Some(Class::Token),
        _ if path == "/assistenza" || path.starts_with("/assistenza/") => Some(Class::Helpdesk),
        _ => None,
    }
}

/// How often (in checked requests) idle client entries are swept.
const SWEEP_EVERY: u64 = 4096;

/// The limiters of one replica.
pub struct RateLimits {
    login: Keyed,
    acs: Keyed,
    slo: Keyed,
    secrets: Keyed,
    token: Keyed,
    helpdesk: Keyed,
    client_ip_header: Option<HeaderName>,
    checked: AtomicU64,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("client_ip_header", &self.client_ip_header)
            .finish_non_exhaustive()
    }
}

/// Per-client-IP rates (requests per minute, `burst` at once) and where the client IP
/// comes from: `[limits.rate]` and `limits.client_ip_header`, validated by `config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateSettings {
    /// `/login` (each one stores a pending request).
    pub login_per_minute: NonZeroU32,
    /// `/acs`.
    pub acs_per_minute: NonZeroU32,
    /// `/slo`.
    pub slo_per_minute: NonZeroU32,
    /// The forms that check a secret: temporary CP, CP, recovery answer, `/oidc/cp`.
    pub secret_forms_per_minute: NonZeroU32,
    /// `/oidc/token`, `/oidc/introspect`, `/oidc/revoke` (client-secret checks).
    pub token_per_minute: NonZeroU32,
    /// Every request to the help-desk console (`/assistenza`, lookups and actions).
    pub helpdesk_per_minute: NonZeroU32,
    /// Requests allowed at once above the steady rate.
    pub burst: NonZeroU32,
    /// Header a trusted reverse proxy sets with the client IP (its last entry is used);
    /// `None`: the peer address is the client.
    pub client_ip_header: Option<HeaderName>,
}

fn keyed(per_minute: NonZeroU32, burst: NonZeroU32) -> Keyed {
    RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst))
}

impl RateLimits {
    /// The limiters for these rates.
    pub fn new(r: &RateSettings) -> Self {
        Self {
            login: keyed(r.login_per_minute, r.burst),
            acs: keyed(r.acs_per_minute, r.burst),
            slo: keyed(r.slo_per_minute, r.burst),
            secrets: keyed(r.secret_forms_per_minute, r.burst),
            token: keyed(r.token_per_minute, r.burst),
            helpdesk: keyed(r.helpdesk_per_minute, r.burst),
            client_ip_header: r.client_ip_header.clone(),
            checked: AtomicU64::new(0),
        }
    }

    fn limiter(&self, class: Class) -> &Keyed {
        match class {
            Class::Login => &self.login,
            Class::Acs => &self.acs,
            Class::Slo => &self.slo,
            Class::Secrets => &self.secrets,
            Class::Token => &self.token,
            Class::Helpdesk => &self.helpdesk,
        }
    }

    /// The client IP of `req` (see the module comment).
    fn client_ip(&self, req: &Request<Body>) -> IpAddr {
        if let Some(h) = &self.client_ip_header {
            let from_proxy = req
                .headers()
                .get_all(h)
                .iter()
                .next_back()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|v| v.trim().parse::<IpAddr>().ok());
            if let Some(ip) = from_proxy {
                return ip;
            }
        }
        req.extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
    }

    fn sweep_now_and_then(&self) {
        if self
            .checked
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY)
        {
            for l in [
                &self.login,
                &self.acs,
                &self.slo,
                &self.secrets,
                &self.token,
                &self.helpdesk,
            ] {
                l.retain_recent();
                l.shrink_to_fit();
            }
        }
    }
}

/// The middleware: 429 (our page, `Retry-After`) over a rate, else the request goes on.
pub async fn limit(
    State(limits): State<Arc<RateLimits>>,
    req: Request<Body>,
    next: Next,
) -> Response {
    if let Some(class) = class_of(req.method(), req.uri().path()) {
        limits.sweep_now_and_then();
        let ip = limits.client_ip(&req);
        if limits.limiter(class).check_key(&ip).is_err() {
            tracing::warn!(target: "ratelimit", %ip, ?class, "rate limit");
            return AppError::rate_limited().into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(header: Option<&str>, per_minute: u32, burst: u32) -> RateLimits {
        let n = |v: u32| NonZeroU32::new(v).unwrap();
        RateLimits::new(&RateSettings {
            login_per_minute: n(per_minute),
            acs_per_minute: n(60),
            slo_per_minute: n(60),
            secret_forms_per_minute: n(20),
            token_per_minute: n(600),
            helpdesk_per_minute: n(60),
            burst: n(burst),
            client_ip_header: header.map(|h| HeaderName::try_from(h).unwrap()),
        })
    }

    fn request(peer: &str, forwarded: Option<&str>) -> Request<Body> {
        let mut b = axum::http::Request::builder().uri("/login");
        if let Some(f) = forwarded {
            b = b.header("x-forwarded-for", f);
        }
        let mut r = b.body(Body::empty()).unwrap();
        r.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        r
    }

    #[test]
    fn the_client_ip_comes_from_the_proxy_header_only_when_configured() {
        let direct = limits(None, 60, 5);
        assert_eq!(
            direct.client_ip(&request("10.0.0.1:5000", Some("1.2.3.4"))),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        let proxied = limits(Some("x-forwarded-for"), 60, 5);
        // The last entry: the one the trusted proxy appended.
        assert_eq!(
            proxied.client_ip(&request("10.0.0.1:5000", Some("6.6.6.6, 1.2.3.4"))),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        // A garbled header falls back to the peer.
        assert_eq!(
            proxied.client_ip(&request("10.0.0.1:5000", Some("nonsense"))),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds_per_client() {
        let l = limits(None, 1, 3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(l.login.check_key(&a).is_ok());
        }
        assert!(l.login.check_key(&a).is_err());
        // Another client is not affected.
        assert!(l.login.check_key(&b).is_ok());
    }

    #[test]
    fn only_the_costly_endpoints_are_limited() {
        assert_eq!(class_of(&Method::GET, "/login"), Some(Class::Login));
        assert_eq!(class_of(&Method::POST, "/acs"), Some(Class::Acs));
        assert_eq!(class_of(&Method::GET, "/slo"), Some(Class::Slo));
        assert_eq!(
            class_of(&Method::POST, "/area-riservata/cambio-cp"),
            Some(Class::Secrets)
        );
        assert_eq!(class_of(&Method::GET, "/area-riservata/cambio-cp"), None);
        assert_eq!(class_of(&Method::POST, "/oidc/token"), Some(Class::Token));
        assert_eq!(class_of(&Method::GET, "/healthz"), None);
        assert_eq!(class_of(&Method::GET, "/assistenza"), Some(Class::Helpdesk));
        assert_eq!(
            class_of(&Method::POST, "/assistenza/account/x/intervento"),
            Some(Class::Helpdesk)
        );
        assert_eq!(class_of(&Method::GET, "/assistenzax"), None);
        assert_eq!(class_of(&Method::GET, "/login/complete"), None);
    }
}
