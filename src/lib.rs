//! polis-gateway: a SPID identity-federation gateway for Istanze OnLine (POLIS).
//!
//! Layers (see ARCHITECTURE.md): `saml` is the pure protocol core; `federation`
//! holds the trusted IdPs; `state` the shared request state; `web` is the only
//! module that knows HTTP; `mock_idp` is a SPID test IdP built on `saml`.

/// Accounts: the model, codice fiscale validation, the `AccountStore` port (SQLite, PostgreSQL).
pub mod accounts;
/// Admission control: new logins wait while the gateway is saturated.
pub mod admission;
/// Wiring configuration into running services.
pub mod app;
/// Bounded pools for CPU-bound work on untrusted input (XML-DSig, argon2).
pub mod blocking;
/// Inactivity campaigns: notices before the deadline, revocation at it, the daily job.
pub mod campaign;
/// The clock port: the system clock, and a manual one for tests.
pub mod clock;
/// Typed, layered configuration (TOML + environment), validated at start.
pub mod config;
/// The SPID abilitazione: state machine, Codice Personale, forms, the service.
pub mod enablement;
/// The set of trusted identity providers and the test-IdP policy.
pub mod federation;
/// Use cases that span services: the login (ACS → account → parked → session) and
/// closing a session everywhere (records, OIDC tokens, back-channel logout, SPID SLO).
pub mod flows;
/// Entry points of the fuzz targets in `fuzz/` (also replayed by `cargo test`).
pub mod fuzzing;
/// The help-desk console's use cases: staff access, lookups, audited actions.
pub mod helpdesk;
/// HTTP helpers shared by `web` and `mock_idp`: request ids, security headers, the POST-binding form.
pub mod httpkit;
/// The verified login (scheme-neutral identity) the services share.
pub mod identity;
/// SP signing key and certificate generation (`polis-gateway keygen`).
pub mod keygen;
/// Outgoing e-mail: the `Mailer` port, its SMTP and outbox backends.
pub mod mail;
/// A SPID test identity provider for demos and test suites.
pub mod mock_idp;
/// The OpenID Connect provider: keys, clients, codes and tokens.
pub mod oidc;
/// The printable forms (modulo di adesione, modulo di delega) as one-page A4 PDFs.
pub mod pdf;
/// The SAML + SPID protocol core: pure functions, `now` passed in.
pub mod saml;
/// argon2id hashing of chosen CPs, recovery answers and client secrets.
pub mod secrets;
/// Browser sessions: encrypted-cookie tokens, data in the state store, CSRF tokens.
pub mod session;
/// The SSO service: starting logins and consuming Responses (no HTTP types).
pub mod sso;
/// Request state shared by replicas: the `StateStore` port and its backends.
pub mod state;
/// Prometheus metrics: the recorder, scrape-time gauges, the exposition.
pub mod telemetry;
/// The SPID transaction log (RT log.rst): request/response pairs as JSON lines.
pub mod txlog;
/// The HTTP edge: router, handlers, templates, `AppError`.
pub mod web;
