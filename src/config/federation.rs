//! `[federation]` and `[federation.registry]`: validated into the federation's own
//! [`FederationSettings`] and [`RegistrySettings`].

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::checks::{check_url, in_range, invalid};
use super::{ConfigError, Context};
use crate::federation::{FederationSettings, RegistrySettings};

/// `[federation]` as written.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFederation {
    /// Accept test IdPs (mock IdP, spid-sp-test, AgID validator/demo). Refused in production.
    #[serde(default)]
    allow_test_idps: bool,
    /// Production IdP metadata files (single EntityDescriptor or an EntitiesDescriptor).
    #[serde(default)]
    metadata_files: Vec<PathBuf>,
    /// Test IdP metadata files, loaded only when `allow_test_idps` is true.
    #[serde(default)]
    test_metadata_files: Vec<PathBuf>,
    /// AgID registry aggregate, verified against a pinned certificate.
    #[serde(default)]
    registry: Option<RawRegistry>,
}

/// `[federation.registry]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    /// URL of the signed `md:EntitiesDescriptor`.
    url: String,
    /// PEM certificate AgID signs the aggregate with (obtained out of band).
    certificate_file: PathBuf,
    /// Refresh period in hours.
    #[serde(default = "default_refresh_hours")]
    refresh_hours: u64,
    /// Where the last verified copy is kept, used at start when the registry is unreachable.
    #[serde(default)]
    cache_file: Option<PathBuf>,
}

fn default_refresh_hours() -> u64 {
    24
}

/// Checks `[federation]`.
pub(super) fn validate(
    raw: RawFederation,
    ctx: &Context<'_>,
) -> Result<FederationSettings, ConfigError> {
    if ctx.prod && raw.allow_test_idps {
        return Err(invalid(
            "federation.allow_test_idps",
            "test identity providers are refused in production",
        ));
    }
    if !raw.allow_test_idps && !raw.test_metadata_files.is_empty() {
        return Err(invalid(
            "federation.test_metadata_files",
            "set, but federation.allow_test_idps is false",
        ));
    }
    let registry = raw.registry.map(|r| registry(r, ctx.prod)).transpose()?;
    Ok(FederationSettings {
        allow_test_idps: raw.allow_test_idps,
        metadata_files: raw.metadata_files,
        test_metadata_files: raw.test_metadata_files,
        registry,
    })
}

fn registry(raw: RawRegistry, production: bool) -> Result<RegistrySettings, ConfigError> {
    let url = check_url("federation.registry.url", &raw.url, production)?;
    let hours = in_range(
        "federation.registry.refresh_hours",
        raw.refresh_hours,
        1,
        24 * 7,
    )?;
    Ok(RegistrySettings {
        url,
        certificate_file: raw.certificate_file,
        refresh_every: Duration::from_secs(hours * 3600),
        cache_file: raw.cache_file,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::super::tests::{err, load};

    #[test]
    fn the_registry_becomes_a_url_and_a_period() {
        let f = load(
            "[federation]\nmetadata_files = [\"idps/a.xml\"]\n[federation.registry]\nurl = \"https://registry.spid.gov.it/entities-idp\"\ncertificate_file = \"agid.crt\"\nrefresh_hours = 6\ncache_file = \"data/registry.xml\"\n",
            &[],
        )
        .unwrap()
        .federation;
        assert!(f.allow_test_idps);
        assert_eq!(f.metadata_files, vec![PathBuf::from("idps/a.xml")]);
        let reg = f.registry.unwrap();
        assert_eq!(
            reg.url.as_str(),
            "https://registry.spid.gov.it/entities-idp"
        );
        assert_eq!(reg.refresh_every, Duration::from_secs(6 * 3600));
        assert_eq!(reg.certificate_file, PathBuf::from("agid.crt"));
        assert_eq!(reg.cache_file, Some(PathBuf::from("data/registry.xml")));
        let default = load(
            "[federation.registry]\nurl = \"https://r.example/x.xml\"\ncertificate_file = \"r.crt\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            default.federation.registry.unwrap().refresh_every,
            Duration::from_secs(24 * 3600)
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let reg = "[federation.registry]\ncertificate_file = \"r.crt\"\n";
        for (toml, key) in [
            (
                format!("{reg}url = \"https://r.example/x\"\nrefresh_hours = 0\n"),
                "federation.registry.refresh_hours",
            ),
            (
                format!("{reg}url = \"https://r.example/x\"\nrefresh_hours = 169\n"),
                "federation.registry.refresh_hours",
            ),
            (
                format!("{reg}url = \"file:///etc/x\"\n"),
                "federation.registry.url",
            ),
        ] {
            let e = err(&toml, &[]);
            assert!(e.contains(key), "{toml} -> {e}");
        }
    }
}
