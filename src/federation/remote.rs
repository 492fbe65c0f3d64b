//! `[[federation.remote]]`: IdP metadata fetched from a pinned URL (the CIE IdP, the
//! FICEP eIDAS node), each source its own set, refreshed like the registry.
//!
//! Two trust anchors: the document's enveloped signature by one pinned certificate
//! (FICEP; the registry's own verification), or, for unsigned metadata fetched over
//! HTTPS (CIE), pinned IdP signing certificates: a certificate in the document that is
//! not pinned is not trusted (warned with its SHA-256 fingerprint: a rollover the
//! operator confirms by adding the pin), and an IdP none of whose signing certificates
//! is pinned is refused, its last good copy kept.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{
    Federation, FederationError, Idp, RegistryUpdate, TrustAs, fetch_metadata, fingerprints, read,
};
use crate::saml::TrustedCert;
use crate::saml::idp_metadata::{parse_idp_metadata, parse_signed_aggregate};

/// What a remote source's metadata is trusted by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteAnchor {
    /// `signing_certificate_file`: the document must carry a valid enveloped signature
    /// by exactly this certificate.
    SignedBy(PathBuf),
    /// `pinned_idp_certificates`: unsigned metadata; only these IdP signing
    /// certificates are trusted.
    PinnedIdpCerts(Vec<PathBuf>),
}

/// One `[[federation.remote]]` entry, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSettings {
    /// The metadata URL (https in production); also the key of the source's set.
    pub url: url::Url,
    /// How its IdPs are trusted.
    pub trust: TrustAs,
    /// What the document is verified with.
    pub anchor: RemoteAnchor,
    /// How often it is fetched again (1 hour to 7 days).
    pub refresh_every: Duration,
    /// Where the last verified copy is kept, loaded at start.
    pub cache_file: Option<PathBuf>,
}

/// The anchor's certificates, read from their files.
enum Pins {
    Signer(TrustedCert),
    Idp(Vec<TrustedCert>),
}

fn load_cert(path: &std::path::Path) -> Result<TrustedCert, FederationError> {
    let err = |reason: String| FederationError::Metadata {
        source_name: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    TrustedCert::from_pem(&pem).map_err(|e| err(e.to_string()))
}

fn load_pins(anchor: &RemoteAnchor) -> Result<Pins, FederationError> {
    Ok(match anchor {
        RemoteAnchor::SignedBy(file) => Pins::Signer(load_cert(file)?),
        RemoteAnchor::PinnedIdpCerts(files) => Pins::Idp(
            files
                .iter()
                .map(|f| load_cert(f))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// What applying a document changed, and whether every IdP in it was trusted (only
/// then is it worth caching).
struct Applied {
    update: RegistryUpdate,
    complete: bool,
}

impl Federation {
    /// Verifies one document of `src` and, if it verifies, makes it that source's set
    /// (see the module doc); on error nothing changes.
    fn apply_remote(
        &self,
        src: &RemoteSettings,
        xml: &str,
        pins: &Pins,
        source_name: &str,
        now: DateTime<Utc>,
    ) -> Result<Applied, FederationError> {
        let err = |reason: String| FederationError::Metadata {
            source_name: source_name.to_owned(),
            reason,
        };
        let set = src.url.as_str();
        let mut descriptors = match pins {
            Pins::Signer(cert) => {
                parse_signed_aggregate(xml, cert, now).map_err(|e| err(e.to_string()))?
            }
            Pins::Idp(_) => parse_idp_metadata(xml).map_err(|e| err(e.to_string()))?,
        };
        let mut kept = Vec::new();
        let mut refused = Vec::new();
        if let Pins::Idp(pinned) = pins {
            let previous = self.remote_set(set);
            descriptors.retain_mut(|d| {
                let (trusted, unpinned): (Vec<_>, Vec<_>) = std::mem::take(&mut d.signing_certs)
                    .into_iter()
                    .partition(|c| pinned.contains(c));
                if !unpinned.is_empty() {
                    tracing::warn!(target: "federation", "IdP {} ({source_name}): signing certificates {} are not pinned and not trusted; a rollover? add the pin once confirmed", d.entity_id, fingerprints(&unpinned));
                }
                d.signing_certs = trusted;
                if d.signing_certs.is_empty() {
                    refused.push(format!("IdP {} ({source_name}) refused: none of its signing certificates is pinned", d.entity_id));
                    kept.extend(previous.get(&d.entity_id).cloned());
                }
                !d.signing_certs.is_empty()
            });
            if descriptors.is_empty() {
                return Err(err(format!(
                    "no IdP with a pinned signing certificate: {}",
                    refused.join("; ")
                )));
            }
        }
        let kept: Vec<Arc<Idp>> = kept;
        let mut update = self.replace_set(set, descriptors, src.trust, source_name, now, kept)?;
        for w in &refused {
            tracing::error!(target: "federation", "{w}");
        }
        let complete = refused.is_empty();
        update.warnings.extend(refused);
        Ok(Applied { update, complete })
    }
}

/// Fetches, verifies and applies one remote source; writes its cache file (atomically)
/// after a fetch whose IdPs were all trusted. On failure the source's set and cache
/// stay as they were (each copy trusted only until its own `validUntil`).
pub async fn refresh_remote(
    fed: &Federation,
    src: &RemoteSettings,
    client: &reqwest::Client,
) -> Result<RegistryUpdate, FederationError> {
    let pins = load_pins(&src.anchor)?;
    let body =
        fetch_metadata(client, &src.url)
            .await
            .map_err(|reason| FederationError::Metadata {
                source_name: src.url.to_string(),
                reason,
            })?;
    let applied = fed.apply_remote(src, &body, &pins, src.url.as_str(), fed.clock.now())?;
    if let (Some(cache), true) = (&src.cache_file, applied.complete) {
        super::write_cache(cache, &body).await;
    }
    Ok(applied.update)
}

/// Loads a remote source's cache file, if configured and present, verified as a fetch is.
pub fn load_remote_cache(
    fed: &Federation,
    src: &RemoteSettings,
    now: DateTime<Utc>,
) -> Result<usize, FederationError> {
    let Some(cache) = src.cache_file.as_ref().filter(|c| c.exists()) else {
        return Ok(0);
    };
    let pins = load_pins(&src.anchor)?;
    let applied = fed.apply_remote(src, &read(cache)?, &pins, &cache.display().to_string(), now)?;
    Ok(applied.update.idps)
}
