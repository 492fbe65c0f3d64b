//! The trusted identity providers: metadata files from config, the AgID registry
//! aggregate (verified against a pinned certificate, refreshed, last good copy
//! kept), and the test-IdP policy.
//!
//! An IdP is usable only with at least one signing certificate from its metadata:
//! one without is refused here (samael would silently skip verification).
//!
//! Owns its settings ([`FederationSettings`], [`RegistrySettings`]: `config` builds
//! them from `[federation]`) and reads the time from its [`SharedClock`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::SharedClock;
use crate::saml::idp_metadata::{
    IdpDescriptor, METADATA_LIMITS, parse_idp_metadata, parse_signed_aggregate,
};
use crate::saml::{IdpProfile, TrustedCert};

/// Days to expiry of the IdP and configured certificates.
pub mod expiry;
mod remote;
pub use remote::{RemoteAnchor, RemoteSettings, load_remote_cache, refresh_remote};

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

/// The trusted identity providers as configured (`[federation]`, validated).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FederationSettings {
    /// Accept test IdPs (mock IdP, spid-sp-test, AgID validator/demo).
    pub allow_test_idps: bool,
    /// Production IdP metadata files (single EntityDescriptor or an EntitiesDescriptor).
    pub metadata_files: Vec<PathBuf>,
    /// Test IdP metadata files (loaded only when `allow_test_idps`; config refuses them
    /// otherwise).
    pub test_metadata_files: Vec<PathBuf>,
    /// `[[federation.idps]]`: metadata files with a profile (test ones only when
    /// `allow_test_idps`; config refuses them otherwise).
    pub idps: Vec<IdpFileSettings>,
    /// The AgID registry aggregate, if used.
    pub registry: Option<RegistrySettings>,
    /// `[[federation.remote]]`: other pinned metadata URLs (CIE, FICEP), each its own set.
    pub remote: Vec<RemoteSettings>,
}

/// How the IdPs of one metadata source are trusted: their profile, the
/// AttributeConsumingServiceIndex asked of them, whether they are test IdPs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrustAs {
    /// Request shape and Response rules.
    pub profile: IdpProfile,
    /// AttributeConsumingServiceIndex for requests to them; `None`: the profile's
    /// default (see [`Idp::attribute_index`]).
    pub attribute_index: Option<u16>,
    /// Test IdPs (mock, spid-sp-test, AgID validator/demo, pre-production).
    pub test: bool,
}

impl TrustAs {
    /// SPID rules, the SP's default attribute service; `test` as given.
    pub fn spid(test: bool) -> Self {
        Self {
            test,
            ..Self::default()
        }
    }
}

/// One `[[federation.idps]]` entry, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpFileSettings {
    /// The metadata file (single EntityDescriptor or an EntitiesDescriptor).
    pub file: PathBuf,
    /// How its IdPs are trusted.
    pub trust: TrustAs,
}

/// The AgID registry aggregate source (`[federation.registry]`, validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySettings {
    /// URL of the signed `md:EntitiesDescriptor` (http or https).
    pub url: url::Url,
    /// PEM certificate AgID signs the aggregate with (obtained out of band).
    pub certificate_file: PathBuf,
    /// How often the aggregate is fetched again (1 hour to 7 days).
    pub refresh_every: Duration,
    /// Where the last verified copy is kept, used at start when the registry is unreachable.
    pub cache_file: Option<PathBuf>,
}

/// One trusted IdP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idp {
    /// What its metadata says.
    pub descriptor: IdpDescriptor,
    /// A test IdP (mock, spid-sp-test, AgID validator/demo).
    pub test: bool,
    /// The rules it follows (request shape, Response checks, scheme of its logins).
    pub profile: IdpProfile,
    /// AttributeConsumingServiceIndex configured for it, if any.
    pub attribute_index_override: Option<u16>,
    /// Where its metadata came from (file path, registry URL or cache file), for logs.
    pub source: String,
}

impl Idp {
    /// Name for the button.
    pub fn display_name(&self) -> &str {
        self.descriptor
            .display_name
            .as_deref()
            .unwrap_or(&self.descriptor.entity_id)
    }

    /// The AttributeConsumingServiceIndex of requests to it: the configured one, else
    /// by profile: SPID `spid_default` (`sp.attribute_consuming_service_index`), CIE 0
    /// (the CIE SP metadata has one service), FICEP 99 (eIDAS minimum attribute set).
    pub fn attribute_index(&self, spid_default: u16) -> u16 {
        self.attribute_index_override.unwrap_or(match self.profile {
            IdpProfile::Spid => spid_default,
            IdpProfile::Cie => 0,
            IdpProfile::Ficep => FICEP_MINIMUM_SET,
        })
    }
}

/// AttributeConsumingServiceIndex of the eIDAS Natural Person Minimum Attribute Set.
pub const FICEP_MINIMUM_SET: u16 = 99;
/// AttributeConsumingServiceIndex of the eIDAS Natural Person Full Attribute Set.
pub const FICEP_FULL_SET: u16 = 100;

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

/// What one registry refresh changed (also logged by [`Federation::apply_registry`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryUpdate {
    /// IdPs trusted from the registry now.
    pub idps: usize,
    /// entityIDs that were in the previous aggregate and are not in this one: removed.
    pub removed: Vec<String>,
    /// entityIDs new in this aggregate.
    pub added: Vec<String>,
    /// entityIDs whose signing certificates changed.
    pub keys_changed: Vec<String>,
    /// IdPs of the aggregate left out (no signing certificate, metadata expired).
    pub warnings: Vec<String>,
}

/// The trusted IdPs by origin, and their union.
#[derive(Debug, Default)]
struct Sets {
    /// From metadata files and [`Federation::add_metadata`]: the operator's own trust
    /// material, never touched by a registry refresh.
    local: BTreeMap<String, Arc<Idp>>,
    /// Per remote source (the registry under [`REGISTRY_SET`], each
    /// `[[federation.remote]]` under its URL): the last copy that verified, replaced
    /// whole on each refresh of that source.
    remote: BTreeMap<String, BTreeMap<String, Arc<Idp>>>,
    /// The remote sets (in key order, a later one winning a shared entityID)
    /// overlaid with `local`: what lookups read.
    merged: Arc<BTreeMap<String, Arc<Idp>>>,
}

impl Sets {
    fn remerge(&mut self) {
        let mut merged = BTreeMap::new();
        for set in self.remote.values() {
            merged.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        merged.extend(self.local.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.merged = Arc::new(merged);
    }
}

/// The key of the AgID registry's set among the remote sets.
const REGISTRY_SET: &str = "AgID registry";

/// The current set of IdPs, swapped atomically on refresh.
///
/// An IdP whose metadata `validUntil` has passed is never returned: the first lookup
/// that meets it removes it and logs an error naming its source.
#[derive(Debug)]
pub struct Federation {
    sets: RwLock<Sets>,
    allow_test: bool,
    clock: SharedClock,
}

/// SHA-256 fingerprints of certificates, for logs.
fn fingerprints(certs: &[TrustedCert]) -> String {
    let all: Vec<String> = certs
        .iter()
        .map(|c| format!("sha256:{}", hex::encode(openssl::sha::sha256(c.der()))))
        .collect();
    format!("[{}]", all.join(", "))
}

fn format_time(t: DateTime<Utc>) -> String {
    crate::saml::time::format_instant(t)
}

impl Federation {
    /// An empty federation reading the time from `clock`.
    pub fn new(allow_test: bool, clock: SharedClock) -> Self {
        Self {
            sets: RwLock::default(),
            allow_test,
            clock,
        }
    }

    /// Loads the metadata files named in the settings. IdPs without a signing
    /// certificate, or whose metadata is past its `validUntil`, are left out and
    /// reported in the returned warnings (the caller logs them as errors).
    pub fn from_settings(
        cfg: &FederationSettings,
        clock: SharedClock,
    ) -> Result<(Self, Vec<String>), FederationError> {
        let fed = Self::new(cfg.allow_test_idps, clock);
        let mut warnings = Vec::new();
        let now = fed.clock.now();
        let spid = cfg.metadata_files.iter().map(|f| (f, TrustAs::spid(false)));
        let spid_test = cfg
            .test_metadata_files
            .iter()
            .map(|f| (f, TrustAs::spid(true)));
        let listed = cfg.idps.iter().map(|i| (&i.file, i.trust));
        for (path, trust) in spid.chain(spid_test).chain(listed) {
            if trust.test && !cfg.allow_test_idps {
                continue;
            }
            let source = path.display().to_string();
            warnings.extend(fed.add_metadata_as(&read(path)?, trust, &source, now)?);
        }
        Ok((fed, warnings))
    }

    /// Adds the IdPs of one metadata document, as of now. `test` marks them as test IdPs.
    pub fn add_metadata(
        &self,
        xml: &str,
        test: bool,
        source_name: &str,
    ) -> Result<Vec<String>, FederationError> {
        self.add_trusted(xml, TrustAs::spid(test), source_name)
    }

    /// [`add_metadata`](Self::add_metadata) with the clock given.
    pub fn add_metadata_at(
        &self,
        xml: &str,
        test: bool,
        source_name: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, FederationError> {
        self.add_metadata_as(xml, TrustAs::spid(test), source_name, now)
    }

    /// Adds the IdPs of one metadata document, trusted as `trust` says, as of now.
    pub fn add_trusted(
        &self,
        xml: &str,
        trust: TrustAs,
        source_name: &str,
    ) -> Result<Vec<String>, FederationError> {
        self.add_metadata_as(xml, trust, source_name, self.clock.now())
    }

    /// Adds the IdPs of one metadata document, trusted as `trust` says, as of `now`.
    pub fn add_metadata_as(
        &self,
        xml: &str,
        trust: TrustAs,
        source_name: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, FederationError> {
        let descriptors = parse_idp_metadata(xml).map_err(|e| FederationError::Metadata {
            source_name: source_name.to_owned(),
            reason: e.to_string(),
        })?;
        let (accepted, warnings) = self.admit(descriptors, trust, source_name, now)?;
        self.update(|sets| {
            for idp in accepted {
                sets.local.insert(idp.descriptor.entity_id.clone(), idp);
            }
        });
        Ok(warnings)
    }

    /// The descriptors that may be trusted at `now`, and warnings for those left out.
    fn admit(
        &self,
        descriptors: Vec<IdpDescriptor>,
        trust: TrustAs,
        source_name: &str,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Arc<Idp>>, Vec<String>), FederationError> {
        let mut warnings = Vec::new();
        let mut accepted = Vec::new();
        for d in descriptors {
            let is_test = trust.test || is_test_entity(&d.entity_id);
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
            if let Some(until) = d.valid_until.filter(|_| !d.is_valid_at(now)) {
                warnings.push(format!(
                    "IdP {} from {source_name} refused: its metadata expired at {} (validUntil)",
                    d.entity_id,
                    format_time(until)
                ));
                continue;
            }
            accepted.push(Arc::new(Idp {
                descriptor: d,
                test: is_test,
                profile: trust.profile,
                attribute_index_override: trust.attribute_index,
                source: source_name.to_owned(),
            }));
        }
        Ok((accepted, warnings))
    }

    fn update<T>(&self, f: impl FnOnce(&mut Sets) -> T) -> T {
        let mut guard = self.sets.write().unwrap_or_else(|p| p.into_inner());
        let out = f(&mut guard);
        guard.remerge();
        out
    }

    fn snapshot(&self) -> Arc<BTreeMap<String, Arc<Idp>>> {
        self.sets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .merged
            .clone()
    }

    /// Removes every IdP whose metadata has expired at `now`, with an error log line each.
    fn drop_expired(&self, now: DateTime<Utc>) {
        let removed = self.update(|sets| {
            let mut removed = Vec::new();
            for set in std::iter::once(&mut sets.local).chain(sets.remote.values_mut()) {
                set.retain(|_, idp| {
                    let keep = idp.descriptor.is_valid_at(now);
                    if !keep {
                        removed.push(idp.clone());
                    }
                    keep
                });
            }
            removed
        });
        for idp in removed {
            tracing::error!(
                target: "federation",
                "IdP {} from {}: its metadata expired at {} (validUntil); it is no longer trusted",
                idp.descriptor.entity_id,
                idp.source,
                idp.descriptor.valid_until.map(format_time).unwrap_or_default()
            );
        }
    }

    /// The IdP with this entityID, if trusted now.
    pub fn get(&self, entity_id: &str) -> Option<Arc<Idp>> {
        self.get_at(entity_id, self.clock.now())
    }

    /// The IdP with this entityID, if trusted at `now`.
    pub fn get_at(&self, entity_id: &str, now: DateTime<Utc>) -> Option<Arc<Idp>> {
        let idp = self.snapshot().get(entity_id).cloned()?;
        if idp.descriptor.is_valid_at(now) {
            return Some(idp);
        }
        self.drop_expired(now);
        None
    }

    /// Every IdP trusted now.
    pub fn list(&self) -> Vec<Arc<Idp>> {
        self.list_at(self.clock.now())
    }

    /// Every IdP trusted at `now`.
    pub fn list_at(&self, now: DateTime<Utc>) -> Vec<Arc<Idp>> {
        let all = self.snapshot();
        if all.values().any(|idp| !idp.descriptor.is_valid_at(now)) {
            self.drop_expired(now);
        }
        all.values()
            .filter(|idp| idp.descriptor.is_valid_at(now))
            .cloned()
            .collect()
    }

    /// Verifies a registry aggregate with the pinned certificate and, if it verifies and
    /// has not expired at `now`, makes it the registry's set: IdPs it no longer lists
    /// are removed, IdPs from metadata files are untouched. Logs removals and key
    /// changes (warn, with old and new SHA-256 fingerprints) and expired entities (error).
    /// On error nothing changes.
    pub fn apply_registry(
        &self,
        xml: &str,
        registry_cert: &TrustedCert,
        source_name: &str,
        now: DateTime<Utc>,
    ) -> Result<RegistryUpdate, FederationError> {
        let descriptors = parse_signed_aggregate(xml, registry_cert, now).map_err(|e| {
            FederationError::Metadata {
                source_name: source_name.to_owned(),
                reason: e.to_string(),
            }
        })?;
        self.replace_set(
            REGISTRY_SET,
            descriptors,
            TrustAs::spid(false),
            source_name,
            now,
            Vec::new(),
        )
    }

    /// Admits `descriptors` as `trust` says and makes them the set `set`, plus
    /// `kept` (last good copies the caller carries over); logs what changed.
    fn replace_set(
        &self,
        set: &str,
        descriptors: Vec<IdpDescriptor>,
        trust: TrustAs,
        source_name: &str,
        now: DateTime<Utc>,
        kept: Vec<Arc<Idp>>,
    ) -> Result<RegistryUpdate, FederationError> {
        let (accepted, warnings) = self.admit(descriptors, trust, source_name, now)?;
        let next: BTreeMap<String, Arc<Idp>> = accepted
            .into_iter()
            .chain(kept)
            .map(|idp| (idp.descriptor.entity_id.clone(), idp))
            .collect();
        let before = self
            .update(|sets| sets.remote.insert(set.to_owned(), next.clone()))
            .unwrap_or_default();
        let mut warnings = warnings;
        warnings.extend(self.shadowed(set, &next));
        let mut update = RegistryUpdate {
            idps: next.len(),
            warnings,
            ..RegistryUpdate::default()
        };
        for (id, old) in &before {
            match next.get(id) {
                None => {
                    tracing::warn!(target: "federation", "IdP {id} is no longer in {set} ({source_name}): removed, no longer trusted");
                    update.removed.push(id.clone());
                }
                Some(new) if new.descriptor.signing_certs != old.descriptor.signing_certs => {
                    tracing::warn!(
                        target: "federation",
                        "IdP {id}: signing certificates changed in {set} ({source_name}): old {} new {}",
                        fingerprints(&old.descriptor.signing_certs),
                        fingerprints(&new.descriptor.signing_certs)
                    );
                    update.keys_changed.push(id.clone());
                }
                Some(_) => {}
            }
        }
        for id in next.keys().filter(|id| !before.contains_key(*id)) {
            tracing::info!(target: "federation", "IdP {id} added from {set} ({source_name})");
            update.added.push(id.clone());
        }
        for w in &update.warnings {
            tracing::error!(target: "federation", "{w}");
        }
        Ok(update)
    }

    /// One warning per entityID of `next` (about to become set `set`) that another
    /// source also brings: lookups use one copy only (the operator's local files over
    /// every remote set, then the later remote set in key order), so the operator must
    /// learn that two sources disagree about who an IdP is.
    fn shadowed(&self, set: &str, next: &BTreeMap<String, Arc<Idp>>) -> Vec<String> {
        let sets = self.sets.read().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for id in next.keys() {
            let mut others: Vec<&str> = sets
                .remote
                .iter()
                .filter(|(name, other)| name.as_str() != set && other.contains_key(id))
                .map(|(name, _)| name.as_str())
                .collect();
            if sets.local.contains_key(id) {
                others.push("the local metadata files");
            }
            if !others.is_empty() {
                out.push(format!(
                    "IdP {id} comes from {set} and from {}: only one copy is used (local files first, then the last remote source in order); remove it from all but one source",
                    others.join(", ")
                ));
            }
        }
        out
    }

    /// The IdPs of remote set `set` now.
    fn remote_set(&self, set: &str) -> BTreeMap<String, Arc<Idp>> {
        self.sets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .remote
            .get(set)
            .cloned()
            .unwrap_or_default()
    }
}

fn read(path: &Path) -> Result<String, FederationError> {
    std::fs::read_to_string(path).map_err(|e| FederationError::Metadata {
        source_name: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The `User-Agent` of every metadata fetch: FICEP's server answers 403 to a request
/// without one (AgID/eidas-italian-node#14). Product and version only: no contact URL
/// is claimed that the operator has not chosen.
pub const USER_AGENT: &str = concat!("polis-gateway/", env!("CARGO_PKG_VERSION"));

/// The largest metadata body read: the metadata parser's own bound
/// ([`METADATA_LIMITS`]), so nothing larger than what could be parsed is buffered.
pub const MAX_METADATA_BYTES: usize = METADATA_LIMITS.max_bytes;

/// Connect timeout of a metadata fetch.
const FETCH_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time limit of a whole metadata fetch, body included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// The HTTP client for metadata: our `User-Agent`, connect and total timeouts, and
/// **no redirects** (a metadata URL is pinned in config; a 3xx is a failed fetch).
pub fn metadata_client() -> Result<reqwest::Client, FederationError> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(FETCH_CONNECT_TIMEOUT)
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| FederationError::Metadata {
            source_name: "metadata HTTP client".to_owned(),
            reason: e.to_string(),
        })
}

/// GETs one metadata document: sends [`USER_AGENT`] whatever client is given, refuses
/// a non-2xx answer and a redirected one, and stops reading past
/// [`MAX_METADATA_BYTES`]. Nothing is fetched after this: verification is offline.
pub async fn fetch_metadata(client: &reqwest::Client, url: &url::Url) -> Result<String, String> {
    let mut resp = client
        .get(url.clone())
        .header(reqwest::header::USER_AGENT, USER_AGENT)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() || resp.url() != url {
        return Err(format!(
            "answered {} (redirects are not followed)",
            resp.status()
        ));
    }
    let too_large = || format!("the body is larger than {MAX_METADATA_BYTES} bytes");
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_METADATA_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len().saturating_add(chunk.len()) > MAX_METADATA_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| "the body is not UTF-8".to_owned())
}

/// Fetches, verifies and applies the registry once; on success writes the cache file.
///
/// On failure (unreachable, bad signature, an aggregate past its `validUntil`) the
/// federation keeps the last good copy, and the cache file is not touched; that copy
/// is itself used only until its own `validUntil` (fail closed: past it, its IdPs are
/// dropped at the next lookup with an error log, and logins to them are refused).
pub async fn refresh_registry(
    fed: &Federation,
    reg: &RegistrySettings,
    client: &reqwest::Client,
) -> Result<RegistryUpdate, FederationError> {
    let err = |reason: String| FederationError::Metadata {
        source_name: reg.url.to_string(),
        reason,
    };
    let cert_pem = tokio::fs::read(&reg.certificate_file)
        .await
        .map_err(|e| err(format!("registry certificate: {e}")))?;
    let cert = TrustedCert::from_pem(&cert_pem).map_err(|e| err(e.to_string()))?;
    let body = fetch_metadata(client, &reg.url).await.map_err(err)?;
    let update = fed.apply_registry(&body, &cert, reg.url.as_str(), fed.clock.now())?;
    if let Some(cache) = &reg.cache_file {
        write_cache(cache, &body).await;
    }
    Ok(update)
}

/// Writes a verified copy to `cache` atomically (a temporary file, then a rename);
/// a failure is logged, the copy in memory stays in use.
async fn write_cache(cache: &Path, body: &str) {
    let tmp = cache.with_extension("tmp");
    let written = async {
        tokio::fs::write(&tmp, body.as_bytes()).await?;
        tokio::fs::rename(&tmp, cache).await
    };
    if let Err(e) = written.await {
        tracing::warn!(target: "federation", "cannot write metadata cache {}: {e}", cache.display());
    }
}

/// Loads the last verified registry copy from the cache file, if configured and present.
/// A copy that no longer verifies, or whose `validUntil` has passed, is refused.
pub fn load_registry_cache(
    fed: &Federation,
    reg: &RegistrySettings,
    now: DateTime<Utc>,
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
    let update = fed.apply_registry(&read(cache)?, &cert, &cache.display().to_string(), now)?;
    Ok(update.idps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
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

    const A: &str = "https://idp-a.example.it";
    const B: &str = "https://idp-b.example.it";

    fn now() -> DateTime<Utc> {
        crate::saml::time::parse_instant("now", "2026-03-02T10:00:00Z").unwrap()
    }

    /// A federation whose clock stands at [`now`].
    fn federation(allow_test: bool) -> Federation {
        Federation::new(allow_test, ManualClock::at(now()))
    }

    /// One IdP's metadata without its own signature (the registry signs the aggregate),
    /// with `valid_until` on its EntityDescriptor.
    fn entity(host: &str, key: &SigningKey, valid_until: Option<&str>) -> String {
        let md = build_idp_metadata(
            host,
            &format!("{host}/sso"),
            &format!("{host}/slo"),
            "IdP",
            key,
        )
        .unwrap();
        let start = md.find("<ds:Signature").unwrap();
        let end = md.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
        let md = format!("{}{}", &md[..start], &md[end..]);
        match valid_until {
            Some(t) => md.replacen(
                "<md:EntityDescriptor ",
                &format!("<md:EntityDescriptor validUntil=\"{t}\" "),
                1,
            ),
            None => md,
        }
    }

    /// An AgID-style aggregate of `entities`, signed by `registry`, with `valid_until`
    /// on the EntitiesDescriptor.
    fn aggregate_of(
        registry: &SigningKey,
        entities: &[String],
        valid_until: Option<&str>,
    ) -> String {
        let id = ids::new_id();
        let until = valid_until
            .map(|t| format!(" validUntil=\"{t}\""))
            .unwrap_or_default();
        let xml = format!(
            r#"<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" ID="{id}"{until}>{}{}</md:EntitiesDescriptor>"#,
            signature_template(&id, registry.cert_base64()),
            entities.concat()
        );
        registry.sign_enveloped(&xml).unwrap()
    }

    /// An AgID-style aggregate of two IdPs, signed by `registry`.
    fn aggregate(registry: &SigningKey) -> String {
        let (ka, _) = key("idp 0");
        let (kb, _) = key("idp 1");
        aggregate_of(
            registry,
            &[entity(A, &ka, None), entity(B, &kb, None)],
            None,
        )
    }

    #[test]
    fn registry_aggregate_is_used_only_when_signed_by_the_pinned_key() {
        let (registry, registry_cert) = key("registry");
        let (_, other_cert) = key("attacker");
        let signed = aggregate(&registry);
        let fed = federation(false);
        let update = fed
            .apply_registry(&signed, &registry_cert, "registry", now())
            .unwrap();
        assert_eq!(update.idps, 2);
        assert_eq!(update.added, vec![A.to_owned(), B.to_owned()]);
        assert!(fed.get_at(A, now()).is_some());
        assert_eq!(
            fed.get_at(A, now()).unwrap().descriptor.signing_certs.len(),
            1
        );

        // Another key, a tampered document, or no signature: nothing is applied.
        let fresh = federation(false);
        assert!(
            fresh
                .apply_registry(&signed, &other_cert, "r", now())
                .is_err()
        );
        let tampered = signed.replace("https://idp-b.example.it/sso", "https://evil.example/sso");
        assert!(
            fresh
                .apply_registry(&tampered, &registry_cert, "r", now())
                .is_err()
        );
        let start = signed.find("<ds:Signature").unwrap();
        let end = signed.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
        let unsigned = format!("{}{}", &signed[..start], &signed[end..]);
        assert!(
            fresh
                .apply_registry(&unsigned, &registry_cert, "r", now())
                .is_err()
        );
        assert!(fresh.list_at(now()).is_empty());
    }

    #[test]
    fn an_idp_two_sources_bring_is_reported() {
        let (registry, registry_cert) = key("registry");
        let (ka, _) = key("a");
        let fed = federation(false);
        let md = build_idp_metadata(A, &format!("{A}/sso"), &format!("{A}/slo"), "A", &ka).unwrap();
        fed.add_metadata_at(&md, false, "a.xml", now()).unwrap();
        let (kb, _) = key("b");
        let both = aggregate_of(
            &registry,
            &[entity(A, &ka, None), entity(B, &kb, None)],
            None,
        );
        let update = fed
            .apply_registry(&both, &registry_cert, "registry", now())
            .unwrap();
        assert_eq!(update.warnings.len(), 1, "{:?}", update.warnings);
        assert!(update.warnings[0].contains(A), "{:?}", update.warnings);
        assert!(update.warnings[0].contains("local metadata files"));
        assert!(!update.warnings[0].contains(B));
    }

    #[test]
    fn a_refresh_removes_idps_no_longer_listed_and_reports_key_changes() {
        let (registry, registry_cert) = key("registry");
        let (ka, _) = key("a");
        let (kb, _) = key("b");
        let (kb2, _) = key("b, new key");
        let fed = federation(false);
        // An IdP from a metadata file (the operator's own trust material).
        let (kl, _) = key("local");
        let local = "https://idp-local.example.it";
        let md = build_idp_metadata(
            local,
            &format!("{local}/sso"),
            &format!("{local}/slo"),
            "L",
            &kl,
        )
        .unwrap();
        assert!(
            fed.add_metadata_at(&md, false, "local.xml", now())
                .unwrap()
                .is_empty()
        );

        let first = aggregate_of(
            &registry,
            &[entity(A, &ka, None), entity(B, &kb, None)],
            None,
        );
        fed.apply_registry(&first, &registry_cert, "registry", now())
            .unwrap();
        assert_eq!(fed.list_at(now()).len(), 3);

        // A is gone from the registry and B has a new key.
        let second = aggregate_of(&registry, &[entity(B, &kb2, None)], None);
        let update = fed
            .apply_registry(&second, &registry_cert, "registry", now())
            .unwrap();
        assert_eq!(update.removed, vec![A.to_owned()]);
        assert_eq!(update.keys_changed, vec![B.to_owned()]);
        assert!(update.added.is_empty());
        assert!(
            fed.get_at(A, now()).is_none(),
            "removed from the trusted set"
        );
        let b = fed.get_at(B, now()).unwrap();
        assert_eq!(
            b.descriptor.signing_certs,
            vec![TrustedCert::from_base64(kb2.cert_base64()).unwrap()]
        );
        assert!(
            fed.get_at(local, now()).is_some(),
            "a file IdP is not the registry's to remove"
        );
        assert_eq!(
            fingerprints(&b.descriptor.signing_certs),
            format!(
                "[sha256:{}]",
                hex::encode(openssl::sha::sha256(b.descriptor.signing_certs[0].der()))
            )
        );

        // A refresh that fails verification changes nothing.
        let forged = second.replace("idp-b.example.it/sso", "evil.example/sso");
        assert!(
            fed.apply_registry(&forged, &registry_cert, "registry", now())
                .is_err()
        );
        assert!(fed.get_at(B, now()).is_some());
    }

    #[test]
    fn expired_metadata_is_never_used() {
        let (registry, registry_cert) = key("registry");
        let (ka, _) = key("a");
        let (kb, _) = key("b");
        let fed = federation(false);
        let good = aggregate_of(
            &registry,
            &[entity(A, &ka, None), entity(B, &kb, None)],
            Some("2026-03-09T10:00:00Z"),
        );
        fed.apply_registry(&good, &registry_cert, "registry", now())
            .unwrap();

        // An aggregate past its validUntil (a replayed old copy, say) is refused whole,
        // even though its signature verifies; the last good copy stays.
        let stale = aggregate_of(
            &registry,
            &[entity(A, &ka, None)],
            Some("2026-03-02T09:59:59Z"),
        );
        let err = fed
            .apply_registry(&stale, &registry_cert, "registry", now())
            .unwrap_err();
        assert!(err.to_string().contains("validUntil"), "{err}");
        assert!(fed.get_at(B, now()).is_some());

        // Inside a valid aggregate, an entity past its own validUntil is left out.
        let mixed = aggregate_of(
            &registry,
            &[
                entity(A, &ka, Some("2026-03-01T00:00:00Z")),
                entity(B, &kb, None),
            ],
            Some("2026-03-09T10:00:00Z"),
        );
        let update = fed
            .apply_registry(&mixed, &registry_cert, "registry", now())
            .unwrap();
        assert_eq!(update.idps, 1);
        assert_eq!(update.removed, vec![A.to_owned()]);
        assert!(
            update.warnings[0].contains("expired"),
            "{:?}",
            update.warnings
        );
        assert!(fed.get_at(A, now()).is_none());

        // The copy in use expires with its own validUntil: B is dropped then.
        let later = crate::saml::time::parse_instant("t", "2026-03-09T10:00:00Z").unwrap();
        assert!(
            fed.get_at(B, later - chrono::Duration::seconds(1))
                .is_some()
        );
        assert!(fed.list_at(later).is_empty());
        assert!(fed.get_at(B, later).is_none());
        assert!(fed.get_at(B, now()).is_none(), "dropped, not hidden");

        // A metadata file past its validUntil: its IdP is left out, with a warning.
        let (kl, _) = key("local");
        let local = "https://idp-local.example.it";
        let md = build_idp_metadata(
            local,
            &format!("{local}/sso"),
            &format!("{local}/slo"),
            "L",
            &kl,
        )
        .unwrap()
        .replacen(
            "<md:EntityDescriptor ",
            "<md:EntityDescriptor validUntil=\"2026-01-01T00:00:00Z\" ",
            1,
        );
        let warnings = fed
            .add_metadata_at(&md, false, "/etc/idp.xml", now())
            .unwrap();
        assert!(
            warnings[0].contains("/etc/idp.xml") && warnings[0].contains("expired"),
            "{warnings:?}"
        );
        assert!(fed.get_at(local, now()).is_none());
    }

    #[test]
    fn an_expired_cache_copy_is_refused_at_start() {
        let (registry, _) = key("registry");
        let dir = tempfile::tempdir().unwrap();
        let cert_file = dir.path().join("registry.crt");
        let pem = openssl::x509::X509::from_der(
            &base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                registry.cert_base64(),
            )
            .unwrap(),
        )
        .unwrap()
        .to_pem()
        .unwrap();
        std::fs::write(&cert_file, pem).unwrap();
        let cache = dir.path().join("cache.xml");
        let (ka, _) = key("a");
        std::fs::write(
            &cache,
            aggregate_of(
                &registry,
                &[entity(A, &ka, None)],
                Some("2026-03-02T10:00:00Z"),
            ),
        )
        .unwrap();
        let reg = RegistrySettings {
            url: url::Url::parse("https://registry.example/idps.xml").unwrap(),
            certificate_file: cert_file,
            refresh_every: Duration::from_secs(24 * 3600),
            cache_file: Some(cache),
        };
        let fed = federation(false);
        let before = now() - chrono::Duration::seconds(1);
        assert_eq!(load_registry_cache(&fed, &reg, before).unwrap(), 1);
        let fed = federation(false);
        let err = load_registry_cache(&fed, &reg, now()).unwrap_err();
        assert!(err.to_string().contains("validUntil"), "{err}");
        assert!(fed.list_at(now()).is_empty());
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
        let strict = federation(false);
        assert!(matches!(
            strict.add_metadata(&md, false, "f"),
            Err(FederationError::TestIdpRefused(_))
        ));
        let lenient = federation(true);
        assert!(lenient.add_metadata(&md, false, "f").unwrap().is_empty());
        assert_eq!(lenient.get("http://127.0.0.1:9/idp").unwrap().source, "f");
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
    fn idps_carry_their_profile_and_attribute_index() {
        let (k, _) = key("p");
        let md = |id: &str| {
            build_idp_metadata(id, &format!("{id}/sso"), &format!("{id}/slo"), "P", &k).unwrap()
        };
        let fed = federation(false);
        let cases = [
            ("https://spid.example.it", IdpProfile::Spid, None, 7),
            ("https://cie.example.it", IdpProfile::Cie, None, 0),
            ("https://ficep.example.it", IdpProfile::Ficep, None, 99),
            (
                "https://ficep-full.example.it",
                IdpProfile::Ficep,
                Some(100),
                100,
            ),
        ];
        for (id, profile, attribute_index, _) in cases {
            let trust = TrustAs {
                profile,
                attribute_index,
                test: false,
            };
            assert!(
                fed.add_metadata_as(&md(id), trust, id, now())
                    .unwrap()
                    .is_empty()
            );
        }
        for (id, profile, _, index) in cases {
            let idp = fed.get_at(id, now()).unwrap();
            assert_eq!(idp.profile, profile, "{id}");
            assert_eq!(idp.attribute_index(7), index, "{id}");
        }
        // The registry and the plain metadata files are SPID IdPs.
        fed.add_metadata_at(&md("https://old.example.it"), false, "f", now())
            .unwrap();
        let old = fed.get_at("https://old.example.it", now()).unwrap();
        assert_eq!((old.profile, old.attribute_index(3)), (IdpProfile::Spid, 3));
    }

    #[test]
    fn test_entries_load_only_when_test_idps_are_allowed() {
        let (k, _) = key("t");
        let dir = tempfile::tempdir().unwrap();
        let id = "https://cie-preprod.example.it";
        let file = dir.path().join("cie.xml");
        std::fs::write(
            &file,
            build_idp_metadata(id, &format!("{id}/sso"), &format!("{id}/slo"), "C", &k).unwrap(),
        )
        .unwrap();
        let entry = IdpFileSettings {
            file,
            trust: TrustAs {
                profile: IdpProfile::Cie,
                attribute_index: None,
                test: true,
            },
        };
        let mut cfg = FederationSettings {
            allow_test_idps: true,
            idps: vec![entry],
            ..FederationSettings::default()
        };
        let (fed, _) = Federation::from_settings(&cfg, ManualClock::at(now())).unwrap();
        let idp = fed.get_at(id, now()).unwrap();
        assert!(idp.test);
        assert_eq!(idp.profile, IdpProfile::Cie);
        cfg.allow_test_idps = false;
        let (fed, _) = Federation::from_settings(&cfg, ManualClock::at(now())).unwrap();
        assert!(fed.list_at(now()).is_empty());
    }

    #[test]
    fn lookups_read_the_federation_clock() {
        let (k, _) = key("local");
        let local = "https://idp-local.example.it";
        let md = build_idp_metadata(
            local,
            &format!("{local}/sso"),
            &format!("{local}/slo"),
            "L",
            &k,
        )
        .unwrap()
        .replacen(
            "<md:EntityDescriptor ",
            "<md:EntityDescriptor validUntil=\"2026-03-02T11:00:00Z\" ",
            1,
        );
        let clock = ManualClock::at(now());
        let fed = Federation::new(false, clock.clone());
        assert!(fed.add_metadata(&md, false, "idp.xml").unwrap().is_empty());
        assert!(fed.get(local).is_some());
        assert_eq!(fed.list().len(), 1);
        // An hour later by the clock the metadata has expired: no lookup returns it.
        clock.advance(chrono::Duration::hours(1));
        assert!(fed.get(local).is_none());
        assert!(fed.list().is_empty());
        // And metadata added now is judged at the clock's time too.
        let warnings = fed.add_metadata(&md, false, "idp.xml").unwrap();
        assert!(warnings[0].contains("expired"), "{warnings:?}");
    }

    /// The trust material in the top-level `metadata/` folder (see its README).
    fn shipped(path: &str) -> Vec<u8> {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("metadata")
                .join(path),
        )
        .unwrap()
    }

    #[test]
    fn shipped_pins_parse_and_the_ficep_production_metadata_verifies() {
        for pem in [
            "cie/cie-production-signing.pem",
            "cie/cie-preproduction-signing.pem",
            "ficep/ficep-production-metadata-signing.pem",
            "ficep/ficep-qa-metadata-signing.pem",
        ] {
            TrustedCert::from_pem(&shipped(pem)).unwrap_or_else(|e| panic!("{pem}: {e}"));
        }
        // The signed FICEP production document: an enveloped root signature with
        // `Reference URI=""` (the whole document), RSA-SHA512. It verifies with the
        // production pin, and everything in it is covered (the verified IdPs are those
        // of the whole document). The pin expired on 2024-10-27 and `now()` is in 2026:
        // a metadata-signing pin's own validity dates are not checked (xmlsec uses its
        // key only; the pin is the anchor, `validUntil` the expiry), as before.
        let xml = String::from_utf8(shipped("ficep/ficep-production.xml")).unwrap();
        let pin =
            TrustedCert::from_pem(&shipped("ficep/ficep-production-metadata-signing.pem")).unwrap();
        let idps = parse_signed_aggregate(&xml, &pin, now()).unwrap();
        assert_eq!(idps, parse_idp_metadata(&xml).unwrap());
        assert_eq!(idps.len(), 1);
        assert_eq!(
            idps[0].entity_id,
            "https://sp-proxy.eid.gov.it/spproxy/idpit"
        );
        assert!(idps[0].sso_redirect.is_some() || idps[0].sso_post.is_some());
        // One attribute changed in the IDPSSODescriptor: refused.
        let location = r#"Location="https://sp-proxy.eid.gov.it/spproxy/samlsso""#;
        assert!(xml.contains(location), "the fixture changed");
        let tampered = xml.replacen(location, r#"Location="https://evil.example/samlsso""#, 1);
        assert_eq!(
            parse_signed_aggregate(&tampered, &pin, now()),
            Err(crate::saml::SamlError::SignatureInvalid)
        );
        // Another certificate (the FICEP QA pin, a test key): refused.
        let qa = TrustedCert::from_pem(&shipped("ficep/ficep-qa-metadata-signing.pem")).unwrap();
        let (_, test_cert) = key("not FICEP");
        for other in [qa, test_cert] {
            assert_eq!(
                parse_signed_aggregate(&xml, &other, now()),
                Err(crate::saml::SamlError::SignatureInvalid)
            );
        }
        // The CIE documents are unsigned: their IdP signing certificate is the pin.
        for (md, pem) in [
            ("cie/cie-production.xml", "cie/cie-production-signing.pem"),
            (
                "cie/cie-preproduction.xml",
                "cie/cie-preproduction-signing.pem",
            ),
        ] {
            let idps = parse_idp_metadata(&String::from_utf8(shipped(md)).unwrap()).unwrap();
            let pin = TrustedCert::from_pem(&shipped(pem)).unwrap();
            assert_eq!(idps.len(), 1, "{md}");
            assert_eq!(idps[0].signing_certs, vec![pin], "{md}");
        }
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
