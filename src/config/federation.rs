//! `[federation]`, `[[federation.idps]]` and `[federation.registry]`: validated into
//! the federation's own [`FederationSettings`], [`IdpFileSettings`] and
//! [`RegistrySettings`].

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::checks::{check_url, in_range, invalid};
use super::{ConfigError, Context};
use crate::federation::{
    FICEP_FULL_SET, FICEP_MINIMUM_SET, FederationSettings, IdpFileSettings, RegistrySettings,
    RemoteAnchor, RemoteSettings, TrustAs,
};
use crate::saml::IdpProfile;

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
    /// Metadata files with a profile (`[[federation.idps]]`).
    #[serde(default)]
    idps: Vec<RawIdp>,
    /// AgID registry aggregate, verified against a pinned certificate.
    #[serde(default)]
    registry: Option<RawRegistry>,
    /// Pinned metadata URLs (`[[federation.remote]]`: CIE, FICEP).
    #[serde(default)]
    remote: Vec<RawRemote>,
}

/// One `[[federation.remote]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemote {
    /// The metadata URL (https in production).
    url: String,
    /// `spid` (default), `cie` or `ficep`.
    #[serde(default)]
    profile: IdpProfile,
    /// AttributeConsumingServiceIndex asked of these IdPs (as in `[[federation.idps]]`).
    #[serde(default)]
    attribute_consuming_service_index: Option<u16>,
    /// Test IdPs: only with `allow_test_idps`.
    #[serde(default)]
    test: bool,
    /// Refresh period in hours (as the registry's).
    #[serde(default = "default_refresh_hours")]
    refresh_hours: u64,
    /// Where the last verified copy is kept.
    #[serde(default)]
    cache_file: Option<PathBuf>,
    /// Anchor 1: the document's enveloped signature by this pinned certificate.
    #[serde(default)]
    signing_certificate_file: Option<PathBuf>,
    /// Anchor 2: unsigned metadata; only these IdP signing certificates are trusted.
    #[serde(default)]
    pinned_idp_certificates: Option<Vec<PathBuf>>,
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

/// One `[[federation.idps]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdp {
    /// The metadata file.
    file: PathBuf,
    /// `spid` (default), `cie` or `ficep`.
    #[serde(default)]
    profile: IdpProfile,
    /// AttributeConsumingServiceIndex asked of these IdPs (FICEP: 99 or 100).
    #[serde(default)]
    attribute_consuming_service_index: Option<u16>,
    /// Test IdPs: loaded only when `allow_test_idps`.
    #[serde(default)]
    test: bool,
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
    let idps = raw
        .idps
        .into_iter()
        .enumerate()
        .map(|(i, r)| idp(i, r, raw.allow_test_idps))
        .collect::<Result<_, _>>()?;
    let mut remote: Vec<RemoteSettings> = Vec::new();
    for (i, r) in raw.remote.into_iter().enumerate() {
        let src = remote_source(i, r, raw.allow_test_idps, ctx.prod)?;
        if remote.iter().any(|o| o.url == src.url) {
            return Err(invalid(
                &format!("federation.remote[{i}].url"),
                "the same URL as an earlier entry",
            ));
        }
        remote.push(src);
    }
    Ok(FederationSettings {
        remote,
        allow_test_idps: raw.allow_test_idps,
        metadata_files: raw.metadata_files,
        test_metadata_files: raw.test_metadata_files,
        idps,
        registry,
    })
}

/// Every IdP asks for an AttributeConsumingService the SPID metadata has: a FICEP IdP
/// needs `[sp.eidas] enabled = true` (services 99 and 100). CIE IdPs use the CIE
/// metadata's one service; SPID ones the checked `sp.attribute_consuming_service_index`.
pub(super) fn check_against_sp(
    federation: &FederationSettings,
    sp: &crate::saml::sp_metadata::SpDescriptor,
) -> Result<(), ConfigError> {
    let files = federation
        .idps
        .iter()
        .enumerate()
        .map(|(i, f)| (format!("federation.idps[{i}].profile"), f.trust));
    let remote = federation
        .remote
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("federation.remote[{i}].profile"), r.trust));
    for (key, trust) in files.chain(remote) {
        if trust.profile != IdpProfile::Ficep {
            continue;
        }
        let index = trust.attribute_index.unwrap_or(FICEP_MINIMUM_SET);
        if !sp.attribute_services.iter().any(|s| s.index == index) {
            return Err(invalid(
                &key,
                "a FICEP IdP needs sp.eidas.enabled = true (AttributeConsumingService 99 and 100 in the SPID metadata)",
            ));
        }
    }
    Ok(())
}

fn idp(i: usize, raw: RawIdp, allow_test: bool) -> Result<IdpFileSettings, ConfigError> {
    let key = format!("federation.idps[{i}]");
    let trust = trust_as(
        &key,
        raw.profile,
        raw.attribute_consuming_service_index,
        raw.test,
        allow_test,
    )?;
    Ok(IdpFileSettings {
        file: raw.file,
        trust,
    })
}

fn remote_source(
    i: usize,
    raw: RawRemote,
    allow_test: bool,
    production: bool,
) -> Result<RemoteSettings, ConfigError> {
    let key = format!("federation.remote[{i}]");
    let trust = trust_as(
        &key,
        raw.profile,
        raw.attribute_consuming_service_index,
        raw.test,
        allow_test,
    )?;
    let url = check_url(&format!("{key}.url"), &raw.url, production)?;
    let hours = in_range(
        &format!("{key}.refresh_hours"),
        raw.refresh_hours,
        1,
        24 * 7,
    )?;
    let anchor = match (raw.signing_certificate_file, raw.pinned_idp_certificates) {
        (Some(file), None) => RemoteAnchor::SignedBy(file),
        (None, Some(pins)) if !pins.is_empty() => RemoteAnchor::PinnedIdpCerts(pins),
        (None, Some(_)) => {
            return Err(invalid(
                &format!("{key}.pinned_idp_certificates"),
                "must list at least one PEM file",
            ));
        }
        _ => {
            return Err(invalid(
                &format!("{key}.signing_certificate_file"),
                "set exactly one of signing_certificate_file (signed metadata) and pinned_idp_certificates (unsigned metadata)",
            ));
        }
    };
    Ok(RemoteSettings {
        url,
        trust,
        anchor,
        refresh_every: Duration::from_secs(hours * 3600),
        cache_file: raw.cache_file,
    })
}

/// The trust of a `[[federation.idps]]` / `[[federation.remote]]` entry at `key`.
fn trust_as(
    key: &str,
    profile: IdpProfile,
    index: Option<u16>,
    test: bool,
    allow_test: bool,
) -> Result<TrustAs, ConfigError> {
    if test && !allow_test {
        return Err(invalid(
            &format!("{key}.test"),
            "a test IdP, but federation.allow_test_idps is false",
        ));
    }
    let allowed = match profile {
        // Checked against sp.attribute_consuming_services by the SP metadata's owner.
        IdpProfile::Spid => true,
        // The CIE SP metadata has one AttributeConsumingService, index 0.
        IdpProfile::Cie => index.is_none_or(|n| n == 0),
        IdpProfile::Ficep => index.is_none_or(|n| n == FICEP_MINIMUM_SET || n == FICEP_FULL_SET),
    };
    if !allowed {
        return Err(invalid(
            &format!("{key}.attribute_consuming_service_index"),
            "CIE IdPs use 0; FICEP 99 (eIDAS minimum set) or 100 (full set)",
        ));
    }
    Ok(TrustAs {
        profile,
        attribute_index: index,
        test,
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
    fn idp_entries_carry_a_profile() {
        use crate::federation::TrustAs;
        use crate::saml::IdpProfile;
        let f = load(
            "[federation]\nmetadata_files = [\"a.xml\"]\n[[federation.idps]]\nfile = \"cie.xml\"\nprofile = \"cie\"\n[[federation.idps]]\nfile = \"ficep.xml\"\nprofile = \"ficep\"\nattribute_consuming_service_index = 100\ntest = true\n[[federation.idps]]\nfile = \"spid.xml\"\n",
            &[],
        )
        .unwrap()
        .federation;
        assert_eq!(f.metadata_files, vec![PathBuf::from("a.xml")]);
        let trusts: Vec<(PathBuf, TrustAs)> =
            f.idps.iter().map(|i| (i.file.clone(), i.trust)).collect();
        assert_eq!(
            trusts,
            vec![
                (
                    PathBuf::from("cie.xml"),
                    TrustAs {
                        profile: IdpProfile::Cie,
                        attribute_index: None,
                        test: false
                    }
                ),
                (
                    PathBuf::from("ficep.xml"),
                    TrustAs {
                        profile: IdpProfile::Ficep,
                        attribute_index: Some(100),
                        test: true
                    }
                ),
                (PathBuf::from("spid.xml"), TrustAs::spid(false)),
            ]
        );
    }

    #[test]
    fn bad_idp_entries_name_their_key() {
        for (entry, key) in [
            (
                "file = \"f.xml\"\nprofile = \"ficep\"\nattribute_consuming_service_index = 1\n",
                "federation.idps[0].attribute_consuming_service_index",
            ),
            (
                "file = \"f.xml\"\nprofile = \"cie\"\nattribute_consuming_service_index = 99\n",
                "federation.idps[0].attribute_consuming_service_index",
            ),
            ("file = \"f.xml\"\nprofile = \"eidas\"\n", "profile"),
            ("file = \"f.xml\"\nurl = \"x\"\n", "url"),
        ] {
            let e = err(&format!("[[federation.idps]]\n{entry}"), &[]);
            assert!(e.contains(key), "{entry} -> {e}");
        }
        let e = err(
            "[federation]\nallow_test_idps = false\n[[federation.idps]]\nfile = \"f.xml\"\ntest = true\n",
            &[],
        );
        assert!(e.contains("federation.idps[0].test"), "{e}");
        // FICEP asks for 99/100: the SPID metadata must have them.
        let e = err(
            "[sp.eidas]\nenabled = false\n[[federation.idps]]\nfile = \"f.xml\"\nprofile = \"ficep\"\n",
            &[],
        );
        assert!(
            e.contains("federation.idps[0].profile") && e.contains("sp.eidas.enabled"),
            "{e}"
        );
    }

    #[test]
    fn remote_sources_need_exactly_one_anchor() {
        use crate::federation::RemoteAnchor;
        let f = load(
            "[[federation.remote]]\nurl = \"https://sp-proxy.pre.eid.gov.it/spproxy/idpitmetadata\"\nprofile = \"ficep\"\nattribute_consuming_service_index = 100\ntest = true\nrefresh_hours = 12\ncache_file = \"data/ficep.xml\"\nsigning_certificate_file = \"metadata/ficep/ficep-qa-metadata-signing.pem\"\n[[federation.remote]]\nurl = \"https://idserver.servizicie.interno.gov.it/idp/shibboleth?Metadata\"\nprofile = \"cie\"\npinned_idp_certificates = [\"metadata/cie/cie-production-signing.pem\"]\n",
            &[],
        )
        .unwrap()
        .federation;
        assert_eq!(f.remote.len(), 2);
        assert_eq!(f.remote[0].trust.attribute_index, Some(100));
        assert!(f.remote[0].trust.test);
        assert_eq!(f.remote[0].refresh_every, Duration::from_secs(12 * 3600));
        assert!(matches!(f.remote[0].anchor, RemoteAnchor::SignedBy(_)));
        assert_eq!(
            f.remote[1].anchor,
            RemoteAnchor::PinnedIdpCerts(vec![PathBuf::from(
                "metadata/cie/cie-production-signing.pem"
            )])
        );
        assert_eq!(f.remote[1].refresh_every, Duration::from_secs(24 * 3600));
        let head = "[[federation.remote]]\nurl = \"https://r.example/md\"\n";
        for (entry, key) in [
            ("", "federation.remote[0].signing_certificate_file"),
            (
                "signing_certificate_file = \"a.pem\"\npinned_idp_certificates = [\"b.pem\"]\n",
                "federation.remote[0].signing_certificate_file",
            ),
            (
                "pinned_idp_certificates = []\n",
                "federation.remote[0].pinned_idp_certificates",
            ),
            (
                "signing_certificate_file = \"a.pem\"\nfile = \"x\"\n",
                "file",
            ),
            (
                "signing_certificate_file = \"a.pem\"\nrefresh_hours = 0\n",
                "federation.remote[0].refresh_hours",
            ),
            (
                "signing_certificate_file = \"a.pem\"\nprofile = \"cie\"\nattribute_consuming_service_index = 99\n",
                "federation.remote[0].attribute_consuming_service_index",
            ),
        ] {
            let e = err(&format!("{head}{entry}"), &[]);
            assert!(e.contains(key), "{entry} -> {e}");
        }
        let e = err(
            "[federation]\nallow_test_idps = false\n[[federation.remote]]\nurl = \"https://r.example/md\"\nsigning_certificate_file = \"a.pem\"\ntest = true\n",
            &[],
        );
        assert!(e.contains("federation.remote[0].test"), "{e}");
        let e = err(
            &format!(
                "{head}signing_certificate_file = \"a.pem\"\n{head}signing_certificate_file = \"a.pem\"\n"
            ),
            &[],
        );
        assert!(e.contains("federation.remote[1].url"), "{e}");
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
