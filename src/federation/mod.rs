//! The trusted identity providers: metadata files from config, the AgID registry
//! aggregate (verified against a pinned certificate, refreshed, last good copy
//! kept), and the test-IdP policy.
//!
//! An IdP is usable only with at least one signing certificate from its metadata:
//! one without is refused here (samael would silently skip verification).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use crate::config::{FederationConfig, RegistryConfig};
use crate::saml::TrustedCert;
use crate::saml::idp_metadata::{IdpDescriptor, parse_idp_metadata, parse_signed_aggregate};

/// Errors while loading the federation.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// A metadata file could not be read or parsed.
    #[error("IdP metadata {source_name}: {reason}")]
    Metadata {
        /// File path or URL.
        source_name: String,
        /// What went wrong.
        reason: String,
    },
    /// A test IdP appears where test IdPs are not allowed.
    #[error(
        "{0} is a test identity provider, refused unless federation.allow_test_idps = true (never in production)"
    )]
    TestIdpRefused(String),
}

/// One trusted IdP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idp {
    /// What its metadata says.
    pub descriptor: IdpDescriptor,
    /// A test IdP (mock, spid-sp-test, AgID validator/demo).
    pub test: bool,
}

impl Idp {
    /// Name for the button.
    pub fn display_name(&self) -> &str {
        self.descriptor
            .display_name
            .as_deref()
            .unwrap_or(&self.descriptor.entity_id)
    }
}

/// entityIDs of the public SPID test IdPs (rules §7).
const KNOWN_TEST_IDPS: [&str; 6] = [
    "https://localhost:8443",
    "https://localhost:8443/demo",
    "https://localhost:8080",
    "https://validator.spid.gov.it",
    "https://demo.spid.gov.it",
    "https://demo.spid.gov.it/validator",
];

/// Whether an entityID belongs to a test IdP: the known ones, plain http, or a loopback host.
pub fn is_test_entity(entity_id: &str) -> bool {
    if KNOWN_TEST_IDPS.contains(&entity_id.trim_end_matches('/')) {
        return true;
    }
    match url::Url::parse(entity_id) {
        Ok(u) => {
            u.scheme() != "https"
                || match u.host() {
                    Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                    None => true,
                }
        }
        Err(_) => true,
    }
}

/// The current set of IdPs, swapped atomically on refresh.
#[derive(Debug, Default)]
pub struct Federation {
    idps: RwLock<Arc<BTreeMap<String, Arc<Idp>>>>,
    allow_test: bool,
}

impl Federation {
    /// An empty federation.
    pub fn new(allow_test: bool) -> Self {
        Self {
            idps: RwLock::default(),
            allow_test,
        }
    }

    /// Loads the metadata files named in config. IdPs without a signing certificate
    /// are left out and reported in the returned warnings.
    pub fn from_config(cfg: &FederationConfig) -> Result<(Self, Vec<String>), FederationError> {
        let fed = Self::new(cfg.allow_test_idps);
        let mut warnings = Vec::new();
        for path in &cfg.metadata_files {
            warnings.extend(fed.add_metadata(&read(path)?, false, &path.display().to_string())?);
        }
        if cfg.allow_test_idps {
            for path in &cfg.test_metadata_files {
                warnings.extend(fed.add_metadata(
                    &read(path)?,
                    true,
                    &path.display().to_string(),
                )?);
            }
        }
        Ok((fed, warnings))
    }

    /// Adds the IdPs of one metadata document. `test` marks them as test IdPs.
    pub fn add_metadata(
        &self,
        xml: &str,
        test: bool,
        source_name: &str,
    ) -> Result<Vec<String>, FederationError> {
        let descriptors = parse_idp_metadata(xml).map_err(|e| FederationError::Metadata {
            source_name: source_name.to_owned(),
            reason: e.to_string(),
        })?;
        self.insert(descriptors, test)
    }

    fn insert(
        &self,
        descriptors: Vec<IdpDescriptor>,
        test: bool,
    ) -> Result<Vec<String>, FederationError> {
        let mut warnings = Vec::new();
        let mut accepted = Vec::new();
        for d in descriptors {
            let is_test = test || is_test_entity(&d.entity_id);
            if is_test && !self.allow_test {
                return Err(FederationError::TestIdpRefused(d.entity_id));
            }
            if d.signing_certs.is_empty() {
                warnings.push(format!(
                    "IdP {} refused: its metadata has no signing certificate",
                    d.entity_id
                ));
                continue;
            }
            accepted.push(Arc::new(Idp {
                descriptor: d,
                test: is_test,
            }));
        }
        self.update(|map| {
            for idp in accepted {
                map.insert(idp.descriptor.entity_id.clone(), idp);
            }
        });
        Ok(warnings)
    }

    fn update(&self, f: impl FnOnce(&mut BTreeMap<String, Arc<Idp>>)) {
        let mut guard = self.idps.write().unwrap_or_else(|p| p.into_inner());
        let mut next = (**guard).clone();
        f(&mut next);
        *guard = Arc::new(next);
    }

    fn snapshot(&self) -> Arc<BTreeMap<String, Arc<Idp>>> {
        self.idps.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The IdP with this entityID, if trusted.
    pub fn get(&self, entity_id: &str) -> Option<Arc<Idp>> {
        self.snapshot().get(entity_id).cloned()
    }

    /// Every trusted IdP.
    pub fn list(&self) -> Vec<Arc<Idp>> {
        self.snapshot().values().cloned().collect()
    }

    /// Verifies a registry aggregate with the pinned certificate and merges it in.
    /// Returns (number of IdPs, warnings). Certificate changes are reported as warnings.
    pub fn apply_registry(
        &self,
        xml: &str,
        registry_cert: &TrustedCert,
    ) -> Result<(usize, Vec<String>), FederationError> {
        let descriptors =
            parse_signed_aggregate(xml, registry_cert).map_err(|e| FederationError::Metadata {
                source_name: "registry".into(),
                reason: e.to_string(),
            })?;
        let before = self.snapshot();
        let mut warnings: Vec<String> = descriptors
            .iter()
            .filter(|d| {
                before
                    .get(&d.entity_id)
                    .is_some_and(|old| old.descriptor.signing_certs != d.signing_certs)
            })
            .map(|d| format!("IdP {}: signing certificates changed", d.entity_id))
            .collect();
        let n = descriptors.len();
        warnings.extend(self.insert(descriptors, false)?);
        Ok((n, warnings))
    }
}

fn read(path: &Path) -> Result<String, FederationError> {
    std::fs::read_to_string(path).map_err(|e| FederationError::Metadata {
        source_name: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Fetches, verifies and applies the registry once; on success writes the cache file.
/// On failure the federation keeps what it had (the last good copy).
pub async fn refresh_registry(
    fed: &Federation,
    reg: &RegistryConfig,
    client: &reqwest::Client,
) -> Result<usize, FederationError> {
    let err = |reason: String| FederationError::Metadata {
        source_name: reg.url.clone(),
        reason,
    };
    let cert_pem = tokio::fs::read(&reg.certificate_file)
        .await
        .map_err(|e| err(format!("registry certificate: {e}")))?;
    let cert = TrustedCert::from_pem(&cert_pem).map_err(|e| err(e.to_string()))?;
    let body = client
        .get(&reg.url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| err(e.to_string()))?
        .text()
        .await
        .map_err(|e| err(e.to_string()))?;
    let (n, warnings) = fed.apply_registry(&body, &cert)?;
    for w in warnings {
        tracing::warn!(target: "federation", "{w}");
    }
    if let Some(cache) = &reg.cache_file {
        let tmp = cache.with_extension("tmp");
        let written = async {
            tokio::fs::write(&tmp, body.as_bytes()).await?;
            tokio::fs::rename(&tmp, cache).await
        };
        if let Err(e) = written.await {
            tracing::warn!(target: "federation", "cannot write registry cache {}: {e}", cache.display());
        }
    }
    Ok(n)
}

/// Loads the last verified registry copy from the cache file, if configured and present.
pub fn load_registry_cache(
    fed: &Federation,
    reg: &RegistryConfig,
) -> Result<usize, FederationError> {
    let Some(cache) = &reg.cache_file else {
        return Ok(0);
    };
    if !cache.exists() {
        return Ok(0);
    }
    let cert_pem = std::fs::read(&reg.certificate_file).map_err(|e| FederationError::Metadata {
        source_name: reg.certificate_file.display().to_string(),
        reason: e.to_string(),
    })?;
    let cert = TrustedCert::from_pem(&cert_pem).map_err(|e| FederationError::Metadata {
        source_name: reg.certificate_file.display().to_string(),
        reason: e.to_string(),
    })?;
    let (n, _) = fed.apply_registry(&read(cache)?, &cert)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keygen::generate_idp_test_cert;
    use crate::saml::idp::build_idp_metadata;
    use crate::saml::sign::signature_template;
    use crate::saml::{SigningKey, ids};

    fn key(cn: &str) -> (SigningKey, TrustedCert) {
        let g = generate_idp_test_cert(cn, 30).unwrap();
        (
            SigningKey::from_pem(&g.key_pem, &g.cert_pem).unwrap(),
            TrustedCert::from_pem(&g.cert_pem).unwrap(),
        )
    }

    /// An AgID-style aggregate of two IdPs, signed by `registry`.
    fn aggregate(registry: &SigningKey) -> String {
        let mut entities = String::new();
        for (i, host) in ["https://idp-a.example.it", "https://idp-b.example.it"]
            .iter()
            .enumerate()
        {
            let (k, _) = key(&format!("idp {i}"));
            let md = build_idp_metadata(
                host,
                &format!("{host}/sso"),
                &format!("{host}/slo"),
                "IdP",
                &k,
            )
            .unwrap();
            // Drop each entity's own signature: the registry signs the aggregate.
            let start = md.find("<ds:Signature").unwrap();
            let end = md.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
            entities.push_str(&format!("{}{}", &md[..start], &md[end..]));
        }
        let id = ids::new_id();
        let xml = format!(
            r#"<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" ID="{id}">{}{entities}</md:EntitiesDescriptor>"#,
            signature_template(&id, registry.cert_base64())
        );
        registry.sign_enveloped(&xml).unwrap()
    }

    #[test]
    fn registry_aggregate_is_used_only_when_signed_by_the_pinned_key() {
        let (registry, registry_cert) = key("registry");
        let (_, other_cert) = key("attacker");
        let signed = aggregate(&registry);
        let fed = Federation::new(false);
        let (n, _) = fed.apply_registry(&signed, &registry_cert).unwrap();
        assert_eq!(n, 2);
        assert!(fed.get("https://idp-a.example.it").is_some());
        assert_eq!(
            fed.get("https://idp-a.example.it")
                .unwrap()
                .descriptor
                .signing_certs
                .len(),
            1
        );

        // Another key, a tampered document, or no signature: nothing is applied.
        let fresh = Federation::new(false);
        assert!(fresh.apply_registry(&signed, &other_cert).is_err());
        let tampered = signed.replace("https://idp-b.example.it/sso", "https://evil.example/sso");
        assert!(fresh.apply_registry(&tampered, &registry_cert).is_err());
        let start = signed.find("<ds:Signature").unwrap();
        let end = signed.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
        let unsigned = format!("{}{}", &signed[..start], &signed[end..]);
        assert!(fresh.apply_registry(&unsigned, &registry_cert).is_err());
        assert!(fresh.list().is_empty());
    }

    #[test]
    fn test_idps_need_the_flag_and_keyless_idps_are_refused() {
        let (k, _) = key("mock");
        let md = build_idp_metadata(
            "http://127.0.0.1:9/idp",
            "http://127.0.0.1:9/sso",
            "http://127.0.0.1:9/slo",
            "Mock",
            &k,
        )
        .unwrap();
        let strict = Federation::new(false);
        assert!(matches!(
            strict.add_metadata(&md, false, "f"),
            Err(FederationError::TestIdpRefused(_))
        ));
        let lenient = Federation::new(true);
        assert!(lenient.add_metadata(&md, false, "f").unwrap().is_empty());
        assert!(lenient.get("http://127.0.0.1:9/idp").unwrap().test);
        let keyless = md
            .split("<md:KeyDescriptor")
            .next()
            .map(|head| {
                let tail = md.split("</md:KeyDescriptor>").nth(1).unwrap();
                format!("{head}{tail}")
                    .replace("http://127.0.0.1:9/idp\"", "http://127.0.0.1:9/keyless\"")
            })
            .unwrap();
        let warnings = lenient.add_metadata(&keyless, true, "keyless").unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("no signing certificate"));
    }

    #[test]
    fn classifies_test_entities() {
        for t in [
            "https://localhost:8443",
            "https://validator.spid.gov.it",
            "https://demo.spid.gov.it/validator",
            "http://127.0.0.1:8090",
            "http://idp.example.it",
            "https://localhost",
            "not a url",
        ] {
            assert!(is_test_entity(t), "{t}");
        }
        for p in [
            "https://posteid.poste.it",
            "https://id.lepida.it/idp/shibboleth",
        ] {
            assert!(!is_test_entity(p), "{p}");
        }
    }
}
