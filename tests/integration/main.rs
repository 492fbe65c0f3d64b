//! The single integration-test binary: real servers on port 0, one module per area.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

/// SPID login over real HTTP with the mock IdP.
mod sso;
/// The `StateStore` contract suite, run on every backend.
mod state_contract;
/// Test harnesses for real components (redis-server, ...).
mod support;
