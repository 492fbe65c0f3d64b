//! `[oidc]`: the OpenID Connect provider, validated into its own [`OidcSettings`]; the
//! keys and clients are the oidc module's own config shapes, checked here for what
//! production requires.

use std::time::Duration;

use serde::Deserialize;

use super::checks::{check_url, in_range, invalid, is_demo_material};
use super::{ConfigError, Context};
use crate::oidc::clients::ClientConfig;
use crate::oidc::keys::KeyConfig;
use crate::oidc::provider::OidcSettings;

/// `[oidc]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOidc {
    /// The `iss` of every token; default `server.public_url`.
    #[serde(default)]
    issuer: Option<String>,
    /// Access-token lifetime, seconds.
    #[serde(default = "default_access_ttl")]
    access_token_ttl_seconds: u64,
    /// ID-token lifetime, seconds.
    #[serde(default = "default_access_ttl")]
    id_token_ttl_seconds: u64,
    /// Lifetime of one refresh token, seconds (each use rotates it).
    #[serde(default = "default_refresh_ttl")]
    refresh_token_ttl_seconds: u64,
    /// Absolute lifetime of a token family (the code and every refresh rotated from it),
    /// seconds; rotation never extends it, and it never outlives the session's
    /// `absolute_timeout_seconds`.
    #[serde(default = "default_refresh_ttl")]
    refresh_family_lifetime_seconds: u64,
    /// Authorization-code lifetime, seconds.
    #[serde(default = "default_code_ttl")]
    code_ttl_seconds: u64,
    /// Signing keys: a current EdDSA key is required; ES256 for clients that ask it;
    /// retired keys with `not_after` stay in the JWKS until then.
    keys: Vec<KeyConfig>,
    /// Registered clients.
    #[serde(default)]
    clients: Vec<ClientConfig>,
    /// The server key (at least 32 bytes) the clients' `hmac-sha256:` secret hashes are
    /// made under; needed as soon as one client has such a hash.
    #[serde(default)]
    client_secret_key_file: Option<std::path::PathBuf>,
}

fn default_access_ttl() -> u64 {
    300
}
fn default_refresh_ttl() -> u64 {
    8 * 3600
}
fn default_code_ttl() -> u64 {
    60
}

/// `[oidc]`, validated.
#[derive(Debug, Clone)]
pub struct OidcSection {
    /// Issuer and lifetimes.
    pub settings: OidcSettings,
    /// Signing keys (at least one).
    pub keys: Vec<KeyConfig>,
    /// Registered clients.
    pub clients: Vec<ClientConfig>,
    /// The key file of the client-secret MACs, read by `app` at start.
    pub client_secret_key_file: Option<std::path::PathBuf>,
}

/// `oidc.client_secret_key_file`: no demo key in production, and present as soon as a
/// client's secret hash is a MAC.
fn check_secret_key(raw: &RawOidc, ctx: &Context<'_>) -> Result<(), ConfigError> {
    let key = "oidc.client_secret_key_file";
    if ctx.prod
        && raw
            .client_secret_key_file
            .as_deref()
            .is_some_and(is_demo_material)
    {
        return Err(invalid(
            key,
            "demo/test key material is refused in production",
        ));
    }
    let needs_key = raw.clients.iter().any(|c| {
        c.secret_hash
            .as_deref()
            .is_some_and(|h| h.starts_with(crate::secrets::CLIENT_SECRET_MAC_PREFIX))
    });
    if needs_key && raw.client_secret_key_file.is_none() {
        return Err(invalid(
            key,
            "a client's secret_hash is hmac-sha256: the key it was made under is needed",
        ));
    }
    Ok(())
}

/// Checks `[oidc]`.
pub(super) fn validate(raw: RawOidc, ctx: &Context<'_>) -> Result<OidcSection, ConfigError> {
    check_secret_key(&raw, ctx)?;
    if let Some(iss) = &raw.issuer {
        check_url("oidc.issuer", iss, ctx.prod)?;
    }
    let min = ctx.min_timeout();
    let secs =
        |key: &str, v: u64, lo: u64, hi: u64| in_range(key, v, lo, hi).map(Duration::from_secs);
    let settings = OidcSettings {
        access_ttl: secs(
            "oidc.access_token_ttl_seconds",
            raw.access_token_ttl_seconds,
            30,
            3600,
        )?,
        id_ttl: secs(
            "oidc.id_token_ttl_seconds",
            raw.id_token_ttl_seconds,
            30,
            3600,
        )?,
        refresh_ttl: secs(
            "oidc.refresh_token_ttl_seconds",
            raw.refresh_token_ttl_seconds,
            min,
            30 * 86_400,
        )?,
        family_lifetime: secs(
            "oidc.refresh_family_lifetime_seconds",
            raw.refresh_family_lifetime_seconds,
            min,
            30 * 86_400,
        )?,
        code_ttl: secs("oidc.code_ttl_seconds", raw.code_ttl_seconds, 10, 600)?,
        issuer: raw.issuer.unwrap_or_else(|| ctx.public_url.to_owned()),
    };
    if raw.keys.is_empty() {
        return Err(invalid("oidc.keys", "at least one EdDSA signing key"));
    }
    if ctx.prod && raw.keys.iter().any(|k| is_demo_material(&k.file)) {
        return Err(invalid(
            "oidc.keys",
            "demo/test key material is refused in production",
        ));
    }
    let http = |u: &String| u.starts_with("http://");
    if ctx.prod
        && raw.clients.iter().any(|c| {
            c.redirect_uris
                .iter()
                .chain(&c.backchannel_logout_uri)
                .any(http)
        })
    {
        return Err(invalid(
            "oidc.clients",
            "production redirect and back-channel URIs must be https",
        ));
    }
    Ok(OidcSection {
        settings,
        keys: raw.keys,
        clients: raw.clients,
        client_secret_key_file: raw.client_secret_key_file,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{err, load};

    #[test]
    fn lifetimes_are_durations_and_the_issuer_defaults_to_the_public_url() {
        let o = load(
            "[oidc]\naccess_token_ttl_seconds = 120\nid_token_ttl_seconds = 90\nrefresh_token_ttl_seconds = 3600\nrefresh_family_lifetime_seconds = 7200\ncode_ttl_seconds = 30\n",
            &[],
        )
        .unwrap()
        .oidc
        .unwrap();
        let s = &o.settings;
        assert_eq!(s.issuer, "http://localhost:8080");
        assert_eq!(s.access_ttl, Duration::from_secs(120));
        assert_eq!(s.id_ttl, Duration::from_secs(90));
        assert_eq!(s.refresh_ttl, Duration::from_secs(3600));
        assert_eq!(s.family_lifetime, Duration::from_secs(7200));
        assert_eq!(s.code_ttl, Duration::from_secs(30));
        assert_eq!(o.keys.len(), 2);
        assert_eq!(o.clients[0].client_id, "istanze-esempio");
        let issuer = load("[oidc]\nissuer = \"https://id.example.it\"\n", &[]).unwrap();
        assert_eq!(
            issuer.oidc.unwrap().settings.issuer,
            "https://id.example.it"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            (
                "[oidc]\naccess_token_ttl_seconds = 29\n",
                "oidc.access_token_ttl_seconds",
            ),
            (
                "[oidc]\nid_token_ttl_seconds = 3601\n",
                "oidc.id_token_ttl_seconds",
            ),
            (
                "[oidc]\nrefresh_token_ttl_seconds = 0\n",
                "oidc.refresh_token_ttl_seconds",
            ),
            ("[oidc]\ncode_ttl_seconds = 601\n", "oidc.code_ttl_seconds"),
            ("[oidc]\nissuer = \"not a url\"\n", "oidc.issuer"),
        ] {
            let e = err(toml, &[]);
            assert!(e.contains(key), "{toml} -> {e}");
        }
    }
}
