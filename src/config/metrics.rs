//! `[metrics]`: where the Prometheus `/metrics` endpoint listens (its own listener, so
//! it is never exposed with the public site; absent: no endpoint).

use std::net::SocketAddr;

use serde::Deserialize;

/// `[metrics]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    /// The listener of `GET /metrics`, e.g. `127.0.0.1:9464` (an internal address).
    listen: SocketAddr,
}

/// `[metrics]`, validated: the listener address, if the section is present.
pub(super) fn validate(raw: Option<RawMetrics>) -> Option<SocketAddr> {
    raw.map(|m| m.listen)
}

#[cfg(test)]
mod tests {
    use super::super::tests::load;

    #[test]
    fn the_listener_is_optional() {
        assert_eq!(load("", &[]).unwrap().metrics_listen, None);
        let cfg = load("[metrics]\nlisten = \"127.0.0.1:9464\"\n", &[]).unwrap();
        assert_eq!(cfg.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
    }
}
