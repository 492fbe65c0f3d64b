//! `[server]`: the listener address and the public URL (config's own: `app` binds the
//! address, and the URL is the base of every other section's default URLs).

use std::net::SocketAddr;

use serde::Deserialize;

use super::ConfigError;
use super::checks::{check_url, in_range, invalid, socket_addr};

/// `[server]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    /// Socket address to bind, e.g. `127.0.0.1:8080`.
    listen: String,
    /// Base URL users and IdPs reach the gateway at, without trailing slash.
    public_url: String,
    /// Largest accepted request body on the ACS and SLO endpoints, in bytes.
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
}

fn default_max_body() -> usize {
    512 * 1024
}

/// The HTTP server, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Socket address to bind.
    pub listen: SocketAddr,
    /// Base URL users and IdPs reach the gateway at (http(s), no trailing slash).
    pub public_url: String,
    /// Whether `public_url` is https (then cookies are `Secure` and `__Host-`).
    pub https: bool,
    /// Largest accepted request body on the ACS and SLO endpoints, in bytes.
    pub max_body_bytes: usize,
}

/// Checks `[server]`.
pub(super) fn validate(raw: RawServer, production: bool) -> Result<ServerSettings, ConfigError> {
    let listen = socket_addr(
        "server.listen",
        &raw.listen,
        "must be an IP socket address like 127.0.0.1:8080",
    )?;
    let url = check_url("server.public_url", &raw.public_url, production)?;
    if raw.public_url.ends_with('/') {
        return Err(invalid("server.public_url", "must not end with '/'"));
    }
    let max_body_bytes = in_range(
        "server.max_body_bytes",
        raw.max_body_bytes,
        16 * 1024,
        4 * 1024 * 1024,
    )?;
    Ok(ServerSettings {
        listen,
        https: url.scheme() == "https",
        public_url: raw.public_url,
        max_body_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{err, load};

    #[test]
    fn the_listener_and_public_url_are_typed() {
        let cfg = load(
            "[server]\nlisten = \"0.0.0.0:8443\"\npublic_url = \"https://polis.example.it\"\nmax_body_bytes = 65536\n",
            &[],
        )
        .unwrap();
        assert_eq!(cfg.server.listen, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(cfg.server.public_url, "https://polis.example.it");
        assert!(cfg.server.https);
        assert_eq!(cfg.server.max_body_bytes, 65536);
        assert!(!load("", &[]).unwrap().server.https, "demo is plain http");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            ("[server]\nmax_body_bytes = 1000\n", "server.max_body_bytes"),
            (
                "[server]\npublic_url = \"http://localhost:8080/\"\n",
                "server.public_url",
            ),
            ("[server]\nlisten = \"127.0.0.1\"\n", "server.listen"),
        ] {
            let e = err(toml, &[]);
            assert!(e.contains(key), "{toml} -> {e}");
        }
    }
}
