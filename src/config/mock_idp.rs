//! `[mock_idp]`: the built-in test IdP (`demo` / `mock-idp`), refused in production.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::checks::{check_url, invalid, socket_addr};
use super::{ConfigError, Context};

/// `[mock_idp]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMockIdp {
    /// Socket address to bind.
    listen: String,
    /// Base URL of the mock IdP; also its entityID.
    public_url: String,
    /// PEM private key (test material only).
    key_file: PathBuf,
    /// PEM certificate published in its metadata.
    cert_file: PathBuf,
    /// SP metadata files the mock IdP trusts (besides the gateway it runs with in demo mode).
    #[serde(default)]
    sp_metadata_files: Vec<PathBuf>,
}

/// `[mock_idp]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockIdpSettings {
    /// Socket address to bind.
    pub listen: SocketAddr,
    /// Base URL of the mock IdP; also its entityID.
    pub public_url: String,
    /// PEM private key (test material only).
    pub key_file: PathBuf,
    /// PEM certificate published in its metadata.
    pub cert_file: PathBuf,
    /// SP metadata files the mock IdP trusts.
    pub sp_metadata_files: Vec<PathBuf>,
}

/// Checks `[mock_idp]` (absent is fine; present is refused in production).
pub(super) fn validate(
    raw: Option<RawMockIdp>,
    ctx: &Context<'_>,
) -> Result<Option<MockIdpSettings>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if ctx.prod {
        return Err(invalid("mock_idp", "the mock IdP is refused in production"));
    }
    let listen = socket_addr(
        "mock_idp.listen",
        &raw.listen,
        "must be an IP socket address",
    )?;
    check_url("mock_idp.public_url", &raw.public_url, false)?;
    Ok(Some(MockIdpSettings {
        listen,
        public_url: raw.public_url,
        key_file: raw.key_file,
        cert_file: raw.cert_file,
        sp_metadata_files: raw.sp_metadata_files,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{err, load};

    #[test]
    fn the_listener_is_a_socket_address() {
        let m = load("", &[]).unwrap().mock_idp.unwrap();
        assert_eq!(m.listen, "127.0.0.1:8090".parse().unwrap());
        assert_eq!(m.public_url, "http://localhost:8090");
        let e = err("[mock_idp]\nlisten = \"localhost:8090\"\n", &[]);
        assert!(e.contains("mock_idp.listen"), "{e}");
        let e = err("[mock_idp]\npublic_url = \"localhost\"\n", &[]);
        assert!(e.contains("mock_idp.public_url"), "{e}");
    }
}
