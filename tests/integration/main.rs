//! The single integration-test binary: real servers on port 0, one module per area.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

/// The `AccountStore` contract suite, run on SQLite and on a real PostgreSQL.
mod accounts_contract;
/// Forged and hostile Responses over real HTTP: refused with a 4xx and no other effect.
mod acs_negative;
/// Inactivity campaigns and revocations.
mod campaign;
/// The SPID abilitazione end to end (issue 3): new and existing accounts, the CP,
/// lockouts, CSRF, the session cookie; SQLite and PostgreSQL, SMTP and outbox.
mod enablement;
/// The example downstream service (`examples/istanze_esempio`) through the whole chain.
mod example_app;
/// The fuzz corpora replayed through the fuzz targets' entry points (no instrumentation).
mod fuzz_corpus;
/// The help-desk console (issue 13): access by role and level, an operator's unlock
/// through the real pages, the audit log, the person's personal area, no secret shown.
mod helpdesk;
/// Hostile input at the gate (issue 8): encodings on every XML path, the DSig engine's
/// own defences, slow clients, request ids, the transaction log of rejected posts.
mod hostile;
/// The structure checks: layers (ARCHITECTURE.md's table), the clock, sizes.
mod layers;
/// E-mail: `SmtpMailer` against a real SMTP server on loopback, and the outbox.
mod mail;
/// Metadata fetches (issue 10): the User-Agent header, no redirects, the body cap.
mod metadata_fetch;
/// Operations: `/metrics` on its own listener, `/readyz`, JSON logs, `txlog` commands.
mod metrics;
/// The OpenID Connect provider (issue 4): authorization, tokens, client
/// authentication, revocation, refresh rotation, the CP confirmation, logout, key
/// rotation; discovery, JWKS and claims snapshot-tested.
mod oidc;
/// IdP profiles (SPID, CIE, FICEP): requests built by the profile of their IdP.
mod profiles;
/// The AgID registry aggregate over HTTP: removals, validUntil, key changes.
mod registry;
/// `[[federation.remote]]` sources (issue 10): signed and pinned-certificate anchors.
mod remote_sources;
/// IdP health (a notice beside a failing IdP) and signing-key rollovers (both keys
/// accepted during the overlap).
mod rollover;
/// SPID Response rules (spid-sp-rules.md §3) on the pure core, with a fixed clock.
mod saml_rules;
/// SPID, CIE and eIDAS over real HTTP with the mock federation: one account per
/// person, the CIE request/Response shape and logout, an eIDAS abilitazione.
mod schemes;
/// SPID single logout initiated by the IdP: sessions ended, Success answered, forgeries refused.
mod slo;
/// The SP metadata over real HTTP: `/metadata/cie` (signed, the `cie:` extensions) and
/// the SPID metadata with the eIDAS attribute sets 99 and 100.
mod sp_metadata;
/// SPID login over real HTTP with the mock IdP.
mod sso;
/// The `StateStore` contract suite, run on every backend.
mod state_contract;
/// Replays after Redis is restored from an older RDB snapshot are refused.
mod store_restore;
/// Test harnesses for real components (redis-server, ...).
mod support;
