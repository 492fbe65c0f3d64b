//! Checks shared by the section validations: each names the key it refuses.

use std::path::Path;

use super::ConfigError;

/// The error for `key`, with the reason.
pub(super) fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// Key files committed in this repository live under `certs/`; production keys never do.
pub(super) fn is_demo_material(path: &Path) -> bool {
    path.components().any(|c| c.as_os_str() == "certs")
}

/// In production, refuses a key file that is demo/test material.
pub(super) fn refuse_demo_material(
    key: &str,
    path: &Path,
    production: bool,
) -> Result<(), ConfigError> {
    if production && is_demo_material(path) {
        return Err(invalid(
            key,
            "demo/test key material is refused in production",
        ));
    }
    Ok(())
}

pub(super) fn check_nonempty(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    Ok(())
}

pub(super) fn check_email(key: &str, value: &str) -> Result<(), ConfigError> {
    let mut parts = value.split('@');
    let ok = matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(l), Some(d), None) if !l.is_empty() && d.contains('.') && !value.contains(' ')
    );
    if !ok {
        return Err(invalid(key, "not an e-mail address"));
    }
    Ok(())
}

/// An http(s) URL; in production https without an explicit port.
pub(super) fn check_url(key: &str, value: &str, production: bool) -> Result<url::Url, ConfigError> {
    let url = url::Url::parse(value).map_err(|e| invalid(key, format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(key, "must be an http(s) URL"));
    }
    if production {
        if url.scheme() != "https" {
            return Err(invalid(key, "must use https in production"));
        }
        if url.port().is_some() {
            return Err(invalid(
                key,
                "must not carry an explicit port in production",
            ));
        }
    }
    Ok(url)
}

/// An IP socket address such as `127.0.0.1:8080`.
pub(super) fn socket_addr(
    key: &str,
    value: &str,
    reason: &str,
) -> Result<std::net::SocketAddr, ConfigError> {
    value.parse().map_err(|_| invalid(key, reason))
}

/// `value` if it lies in `lo..=hi`, else the usual «must be between» error.
pub(super) fn in_range<T>(key: &str, value: T, lo: T, hi: T) -> Result<T, ConfigError>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    if value < lo || value > hi {
        return Err(invalid(key, format!("must be between {lo} and {hi}")));
    }
    Ok(value)
}

/// Seconds in `lo..=hi` as a [`std::time::Duration`].
pub(super) fn seconds(
    key: &str,
    value: u64,
    lo: u64,
    hi: u64,
) -> Result<std::time::Duration, ConfigError> {
    in_range(key, value, lo, hi).map(std::time::Duration::from_secs)
}
