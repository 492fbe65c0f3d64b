//! IdP metadata: one `md:EntityDescriptor` or an `md:EntitiesDescriptor` aggregate
//! (the AgID registry). Signing certificates are taken from `KeyDescriptor`s with
//! `use="signing"` or no `use`; an IdP without one is returned with an empty list so
//! the caller can refuse it (samael would skip verification: fail-open).
//!
//! `validUntil` (SAML metadata §2.3.1, on `EntitiesDescriptor`, `EntityDescriptor` and
//! role descriptors) is read into [`IdpDescriptor::valid_until`]: the earliest one among
//! the IdP's descriptor and everything enclosing it. Whether it has passed is decided with
//! a `now` the caller passes ([`IdpDescriptor::is_valid_at`], [`parse_signed_aggregate`]).

use chrono::{DateTime, Utc};

use super::error::SamlError;
use super::sign::{ReferenceRule, TrustedCert, check_signature_shape, verify_and_reduce};
use super::xml::{self, Element, Limits};
use super::{BINDING_POST, BINDING_REDIRECT, NS_DS, NS_MD};

/// Bounds for metadata documents (an aggregate is much larger than a message).
pub const METADATA_LIMITS: Limits = Limits {
    max_bytes: 16 * 1024 * 1024,
    max_depth: 32,
    max_elements: 500_000,
    max_attributes: 64,
};

/// What the gateway needs to know about one IdP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpDescriptor {
    /// entityID.
    pub entity_id: String,
    /// OrganizationDisplayName (Italian when available), for the button.
    pub display_name: Option<String>,
    /// SingleSignOnService Location for HTTP-Redirect.
    pub sso_redirect: Option<String>,
    /// SingleSignOnService Location for HTTP-POST.
    pub sso_post: Option<String>,
    /// SingleLogoutService Location for HTTP-Redirect.
    pub slo_redirect: Option<String>,
    /// SingleLogoutService Location for HTTP-POST.
    pub slo_post: Option<String>,
    /// Signing certificates: the only keys its messages are verified with.
    pub signing_certs: Vec<TrustedCert>,
    /// The earliest `validUntil` of its IDPSSODescriptor, its EntityDescriptor and the
    /// EntitiesDescriptors around it; `None` when none of them has one.
    pub valid_until: Option<DateTime<Utc>>,
}

impl IdpDescriptor {
    /// Whether its metadata may still be used at `now` (`validUntil` not reached).
    pub fn is_valid_at(&self, now: DateTime<Utc>) -> bool {
        self.valid_until.is_none_or(|until| now < until)
    }
}

/// The `validUntil` of `el`, if any, combined with the one inherited from its parents.
fn valid_until(
    el: &Element,
    inherited: Option<DateTime<Utc>>,
) -> Result<Option<DateTime<Utc>>, SamlError> {
    let own = el
        .attr("validUntil")
        .map(|v| super::time::parse_instant("validUntil", v.trim()))
        .transpose()?;
    Ok(match (own, inherited) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

fn endpoint(desc: &Element, name: &'static str, binding: &str) -> Option<String> {
    desc.children_named(NS_MD, name)
        .find(|e| e.attr("Binding") == Some(binding))
        .and_then(|e| e.attr("Location"))
        .map(str::to_owned)
}

fn localized(org: Option<&Element>, name: &'static str) -> Option<String> {
    let org = org?;
    let mut items = org.children_named(NS_MD, name);
    let all: Vec<&Element> = items.by_ref().collect();
    all.iter()
        .find(|e| e.attrs.iter().any(|a| a.name == "lang" && a.value == "it"))
        .or_else(|| all.first())
        .map(|e| e.trimmed_text().to_owned())
        .filter(|s| !s.is_empty())
}

/// Signing certificates of a role descriptor.
pub fn signing_certs(desc: &Element) -> Result<Vec<TrustedCert>, SamlError> {
    let mut certs = Vec::new();
    for kd in desc.children_named(NS_MD, "KeyDescriptor") {
        if !matches!(kd.attr("use"), None | Some("signing")) {
            continue;
        }
        for cert in kd
            .descendants()
            .into_iter()
            .filter(|e| e.is(NS_DS, "X509Certificate"))
        {
            if !cert.trimmed_text().is_empty() {
                certs.push(TrustedCert::from_base64(cert.trimmed_text())?);
            }
        }
    }
    Ok(certs)
}

fn descriptor(
    entity: &Element,
    inherited: Option<DateTime<Utc>>,
) -> Result<Option<IdpDescriptor>, SamlError> {
    let Some(idp) = entity.unique_child(NS_MD, "IDPSSODescriptor")? else {
        return Ok(None);
    };
    let until = valid_until(idp, valid_until(entity, inherited)?)?;
    let entity_id = entity
        .attr("entityID")
        .filter(|s| !s.is_empty())
        .ok_or(SamlError::Missing("entityID"))?
        .to_owned();
    let org = entity.unique_child(NS_MD, "Organization")?;
    Ok(Some(IdpDescriptor {
        display_name: localized(org, "OrganizationDisplayName")
            .or_else(|| localized(org, "OrganizationName")),
        sso_redirect: endpoint(idp, "SingleSignOnService", BINDING_REDIRECT),
        sso_post: endpoint(idp, "SingleSignOnService", BINDING_POST),
        slo_redirect: endpoint(idp, "SingleLogoutService", BINDING_REDIRECT),
        slo_post: endpoint(idp, "SingleLogoutService", BINDING_POST),
        signing_certs: signing_certs(idp)?,
        valid_until: until,
        entity_id,
    }))
}

/// The IdPs of an `EntitiesDescriptor` (nested ones included), each with the
/// `validUntil` it inherits.
fn collect(
    group: &Element,
    inherited: Option<DateTime<Utc>>,
    out: &mut Vec<IdpDescriptor>,
) -> Result<(), SamlError> {
    let until = valid_until(group, inherited)?;
    for child in &group.children {
        if child.is(NS_MD, "EntityDescriptor") {
            out.extend(descriptor(child, until)?);
        } else if child.is(NS_MD, "EntitiesDescriptor") {
            collect(child, until, out)?;
        }
    }
    Ok(())
}

fn descriptors_of(root: &Element) -> Result<Vec<IdpDescriptor>, SamlError> {
    if root.is(NS_MD, "EntityDescriptor") {
        return Ok(descriptor(root, None)?.into_iter().collect());
    }
    if root.is(NS_MD, "EntitiesDescriptor") {
        let mut out = Vec::new();
        collect(root, None, &mut out)?;
        return Ok(out);
    }
    Err(SamlError::Structure("not SAML metadata".into()))
}

/// Reads IdP metadata from a trusted local file (operator-provided trust material):
/// no signature is required, but the document must be well-formed and bounded.
pub fn parse_idp_metadata(text: &str) -> Result<Vec<IdpDescriptor>, SamlError> {
    descriptors_of(&xml::parse(text, METADATA_LIMITS)?)
}

/// Reads a signed aggregate (the AgID registry) or a single signed EntityDescriptor
/// (FICEP): the root must carry an enveloped signature, as its direct child, that
/// verifies with `registry_cert`; only the signed content is used. That root signature
/// may reference the root by ID (`URI="#<ID>"`) or the whole document (`URI=""`,
/// [`ReferenceRule::IdOrWholeDocument`]); a per-entity signature inside an aggregate
/// must name its EntityDescriptor's ID. An aggregate whose own `validUntil` is not
/// after `now` is refused whole ([`SamlError::Time`]); entities inside it that expire
/// earlier carry their `valid_until` for the caller to check. The signing
/// certificate's own validity dates are not checked (xmlsec verifies with its key
/// only): the pin is the trust anchor.
pub fn parse_signed_aggregate(
    text: &str,
    registry_cert: &TrustedCert,
    now: DateTime<Utc>,
) -> Result<Vec<IdpDescriptor>, SamlError> {
    let root = xml::parse(text, METADATA_LIMITS)?;
    let sig = root
        .unique_child(NS_DS, "Signature")?
        .ok_or(SamlError::SignatureMissing(
            "the registry aggregate must be signed",
        ))?;
    check_signature_shape(
        sig,
        root.attr("ID").unwrap_or_default(),
        ReferenceRule::IdOrWholeDocument,
    )?;
    // Per-entity signatures may also be present: each must sit directly in its
    // EntityDescriptor, pass the shape check, and (below) verify with the registry key.
    let mut placed = 1;
    for entity in root.descendants() {
        if entity.is(NS_MD, "EntityDescriptor")
            && let Some(s) = entity.unique_child(NS_DS, "Signature")?
        {
            check_signature_shape(
                s,
                entity.attr("ID").unwrap_or_default(),
                ReferenceRule::IdOnly,
            )?;
            placed += 1;
        }
    }
    let signatures = root
        .descendants()
        .into_iter()
        .filter(|e| e.is(NS_DS, "Signature"))
        .count();
    if signatures != placed {
        return Err(SamlError::Structure(
            "a Signature is misplaced in the aggregate".into(),
        ));
    }
    let reduced = verify_and_reduce(
        text,
        std::slice::from_ref(registry_cert),
        METADATA_LIMITS,
        ReferenceRule::IdOrWholeDocument,
    )?;
    if reduced.ns != root.ns || reduced.name != root.name || reduced.attr("ID") != root.attr("ID") {
        return Err(SamlError::Structure(
            "the signature does not cover the whole aggregate".into(),
        ));
    }
    if let Some(until) = valid_until(&reduced, None)?
        && now >= until
    {
        return Err(SamlError::Time(format!(
            "the aggregate expired at {} (validUntil)",
            super::time::format_instant(until)
        )));
    }
    descriptors_of(&reduced)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn entity(id: &str, attrs: &str, role_attrs: &str) -> String {
        format!(
            r#"<md:EntityDescriptor entityID="{id}" {attrs}><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol" {role_attrs}/></md:EntityDescriptor>"#
        )
    }

    fn at(s: &str) -> DateTime<Utc> {
        super::super::time::parse_instant("t", s).unwrap()
    }

    #[test]
    fn valid_until_is_the_earliest_of_the_idp_and_what_encloses_it() {
        let xml = format!(
            r#"<md:EntitiesDescriptor xmlns:md="{NS_MD}" validUntil="2026-06-01T00:00:00Z">{}{}<md:EntitiesDescriptor validUntil="2026-04-01T00:00:00Z">{}</md:EntitiesDescriptor>{}</md:EntitiesDescriptor>"#,
            entity("https://a.example", "", ""),
            entity(
                "https://b.example",
                r#"validUntil="2026-05-01T00:00:00Z""#,
                ""
            ),
            entity(
                "https://c.example",
                r#"validUntil="2026-05-01T00:00:00Z""#,
                ""
            ),
            entity(
                "https://d.example",
                "",
                r#"validUntil="2026-03-01T00:00:00+01:00""#
            ),
        );
        let found = parse_idp_metadata(&xml).unwrap();
        let until: Vec<_> = found
            .iter()
            .map(|d| (d.entity_id.as_str(), d.valid_until))
            .collect();
        assert_eq!(
            until,
            vec![
                ("https://a.example", Some(at("2026-06-01T00:00:00Z"))),
                ("https://b.example", Some(at("2026-05-01T00:00:00Z"))),
                ("https://c.example", Some(at("2026-04-01T00:00:00Z"))),
                ("https://d.example", Some(at("2026-02-28T23:00:00Z"))),
            ]
        );
        let d = &found[3];
        assert!(d.is_valid_at(at("2026-02-28T22:59:59Z")));
        assert!(
            !d.is_valid_at(at("2026-02-28T23:00:00Z")),
            "validUntil itself is past"
        );
        let single = parse_idp_metadata(&format!(
            r#"<md:EntityDescriptor xmlns:md="{NS_MD}" entityID="https://e.example"><md:IDPSSODescriptor protocolSupportEnumeration="x"/></md:EntityDescriptor>"#
        ))
        .unwrap();
        assert_eq!(single[0].valid_until, None);
        assert!(single[0].is_valid_at(at("2999-01-01T00:00:00Z")));
    }

    fn key(cn: &str) -> (crate::saml::SigningKey, TrustedCert) {
        let g = crate::keygen::generate_idp_test_cert(cn, 30).unwrap();
        let k = crate::saml::SigningKey::from_pem(&g.key_pem, &g.cert_pem).unwrap();
        let c = k.trusted_cert().unwrap();
        (k, c)
    }

    /// An aggregate whose root holds `root_sig` first, then entities A and B (`inner`
    /// inside B's EntityDescriptor, `deep` inside its IDPSSODescriptor).
    fn aggregate(root_attrs: &str, root_sig: &str, inner: &str, deep: &str) -> String {
        format!(
            r#"<md:EntitiesDescriptor xmlns:md="{NS_MD}" {root_attrs}>{root_sig}{}<md:EntityDescriptor entityID="https://b.example" ID="_b">{inner}<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">{deep}<md:SingleSignOnService Binding="{BINDING_POST}" Location="https://b.example/sso"/></md:IDPSSODescriptor></md:EntityDescriptor></md:EntitiesDescriptor>"#,
            entity("https://a.example", r#"ID="_a""#, ""),
        )
    }

    fn whole(k: &crate::saml::SigningKey) -> String {
        super::super::sign::whole_document_template(k.cert_base64())
    }

    #[test]
    fn a_root_signature_over_the_whole_document_verifies_and_covers_it() {
        let (k, cert) = key("registry");
        let now = at("2026-03-02T10:00:00Z");
        for root_attrs in [r#"ID="_agg" Name="reg""#, r#"Name="no ID""#] {
            let signed = k
                .sign_enveloped(&aggregate(root_attrs, &whole(&k), "", ""))
                .unwrap();
            assert!(signed.contains(r#"<ds:Reference URI="">"#));
            let idps = parse_signed_aggregate(&signed, &cert, now).unwrap();
            assert_eq!(idps, parse_idp_metadata(&signed).unwrap(), "{root_attrs}");
            assert_eq!(idps.len(), 2);
            assert_eq!(idps[1].sso_post.as_deref(), Some("https://b.example/sso"));
            // Any change anywhere in the document breaks it.
            for tampered in [
                signed.replace("https://b.example/sso", "https://evil.example/sso"),
                signed.replace(
                    r#"entityID="https://a.example""#,
                    r#"entityID="https://c.example""#,
                ),
                signed.replace(
                    "</md:EntitiesDescriptor>",
                    &format!(
                        "{}</md:EntitiesDescriptor>",
                        entity("https://x.example", "", "")
                    ),
                ),
            ] {
                assert_eq!(
                    parse_signed_aggregate(&tampered, &cert, now),
                    Err(SamlError::SignatureInvalid),
                    "{root_attrs}"
                );
            }
            let (_, other) = key("not the registry");
            assert_eq!(
                parse_signed_aggregate(&signed, &other, now),
                Err(SamlError::SignatureInvalid)
            );
        }
        // validUntil still applies to a whole-document signature.
        let signed = k
            .sign_enveloped(&aggregate(
                r#"validUntil="2026-03-01T00:00:00Z""#,
                &whole(&k),
                "",
                "",
            ))
            .unwrap();
        assert!(matches!(
            parse_signed_aggregate(&signed, &cert, now),
            Err(SamlError::Time(_))
        ));
    }

    #[test]
    fn an_empty_reference_uri_anywhere_but_on_the_root_signature_is_refused() {
        let (k, cert) = key("registry");
        let now = at("2026-03-02T10:00:00Z");
        let by_id = super::super::sign::signature_template("_agg", k.cert_base64());
        // A nested EntityDescriptor's own signature with URI="" (the root's by ID, or
        // whole-document too): refused by the shape check, before any cryptography.
        for root_sig in [&by_id, &whole(&k)] {
            let signed = k
                .sign_enveloped(&aggregate(r#"ID="_agg""#, root_sig, &whole(&k), ""))
                .unwrap();
            let err = parse_signed_aggregate(&signed, &cert, now).unwrap_err();
            assert!(
                matches!(&err, SamlError::SignatureNotAllowed(m) if m.contains("URI=\"\"")),
                "{err}"
            );
        }
        // A URI="" signature deeper than the root (in an IDPSSODescriptor): misplaced;
        // with no root signature at all: the document is not signed.
        let signed = k
            .sign_enveloped(&aggregate(r#"ID="_agg""#, &by_id, "", &whole(&k)))
            .unwrap();
        assert!(matches!(
            parse_signed_aggregate(&signed, &cert, now),
            Err(SamlError::Structure(_))
        ));
        let signed = k
            .sign_enveloped(&aggregate(r#"ID="_agg""#, "", "", &whole(&k)))
            .unwrap();
        assert!(matches!(
            parse_signed_aggregate(&signed, &cert, now),
            Err(SamlError::SignatureMissing(_))
        ));
        // Below the shape check, xmlsec (our patched samael) itself follows URI="" only
        // for a signature whose parent is the root: the same whole-document signature
        // verifies at the root and fails one level down.
        let limits = METADATA_LIMITS;
        let rule = ReferenceRule::IdOrWholeDocument;
        let at_root = k
            .sign_enveloped(&aggregate(r#"ID="_agg""#, &whole(&k), "", ""))
            .unwrap();
        assert!(verify_and_reduce(&at_root, std::slice::from_ref(&cert), limits, rule).is_ok());
        let nested = k
            .sign_enveloped(&aggregate(r#"ID="_agg""#, "", &whole(&k), ""))
            .unwrap();
        assert_eq!(
            verify_and_reduce(&nested, std::slice::from_ref(&cert), limits, rule),
            Err(SamlError::SignatureInvalid)
        );
    }

    #[test]
    fn a_malformed_valid_until_is_refused() {
        let xml = format!(
            r#"<md:EntitiesDescriptor xmlns:md="{NS_MD}" validUntil="tomorrow">{}</md:EntitiesDescriptor>"#,
            entity("https://a.example", "", "")
        );
        assert!(matches!(
            parse_idp_metadata(&xml),
            Err(SamlError::Invalid { .. })
        ));
    }
}
