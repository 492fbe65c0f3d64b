//! `[sp]`: the SAML service provider. Validated into the SSO service's
//! [`SsoSettings`] (entityID, URLs, level, binding, comparison, lifetimes) and the
//! [`SpDescriptor`] published in the metadata (organization, contacts, billing,
//! attribute services: config-file material shown in metadata), plus the key files.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::checks::{
    check_email, check_nonempty, check_url, invalid, refuse_demo_material, seconds,
};
use super::{ConfigError, Context};
use crate::keygen::SpSector;
use crate::saml::request::Binding;
use crate::saml::sp_metadata::{
    AttributeService, Billing, Contact, EIDAS_FULL_INDEX, EIDAS_MINIMUM_INDEX, Organization,
    SpDescriptor, SpKind, eidas_attribute_services,
};
use crate::saml::xml::Limits;
use crate::saml::{Comparison, Level};
use crate::sso::SsoSettings;

/// `[sp]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSp {
    /// SP entityID; must equal the `uri` field of the signing certificate.
    entity_id: String,
    /// PEM private key (PKCS#8 or PKCS#1) used to sign metadata and requests.
    key_file: PathBuf,
    /// PEM certificate published in the metadata.
    cert_file: PathBuf,
    /// ACS URL; default `server.public_url + "/acs"`.
    #[serde(default)]
    acs_url: Option<String>,
    /// Single-logout URL; default `server.public_url + "/slo"`.
    #[serde(default)]
    slo_url: Option<String>,
    /// Binding used for AuthnRequests unless the login link asks otherwise.
    #[serde(default = "default_binding")]
    default_binding: Binding,
    /// SPID level asked when the login link does not say (1, 2 or 3).
    #[serde(default = "default_level")]
    default_level: u8,
    /// `Comparison` of RequestedAuthnContext: exact, minimum, better or maximum.
    #[serde(default = "default_comparison")]
    comparison: String,
    /// AttributeConsumingServiceIndex sent in AuthnRequests.
    #[serde(default)]
    attribute_consuming_service_index: u16,
    /// How long a pending AuthnRequest may wait for its Response, in seconds.
    #[serde(default = "default_request_ttl")]
    request_ttl_seconds: u64,
    /// Tolerated clock difference with IdPs, in seconds.
    #[serde(default = "default_skew")]
    clock_skew_seconds: u64,
    /// Furthest ahead of now an IdP may put an Assertion's NotOnOrAfter, in seconds;
    /// a later one is refused (it would also keep the replay cache that long).
    #[serde(default = "default_max_assertion_validity")]
    max_assertion_validity_seconds: u64,
    /// Public or private SP: decides the metadata extensions and certificate policy.
    sector: SpSector,
    /// Organization block of the metadata.
    organization: RawOrganization,
    /// The `other` contact (and SPID extensions).
    contact: RawContact,
    /// The `billing` contact; required for private SPs.
    #[serde(default)]
    billing: Option<RawBilling>,
    /// AttributeConsumingService entries.
    attribute_consuming_services: Vec<RawAttributeService>,
    /// `[sp.eidas]`: the FICEP attribute sets 99 and 100.
    #[serde(default)]
    eidas: RawEidas,
}

/// `[sp.eidas]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEidas {
    /// Publish AttributeConsumingService 99 ("eIDAS Natural Person Minimum Attribute
    /// Set") and 100 ("… Full Attribute Set") for FICEP, the Italian eIDAS node.
    #[serde(default)]
    enabled: bool,
}

fn default_binding() -> Binding {
    Binding::Redirect
}
fn default_level() -> u8 {
    2
}
fn default_comparison() -> String {
    "minimum".to_owned()
}
fn default_request_ttl() -> u64 {
    600
}
fn default_max_assertion_validity() -> u64 {
    1800
}
fn default_skew() -> u64 {
    60
}

/// `md:Organization` (Italian texts; `xml:lang="it"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrganization {
    /// Full legal name (= certificate `O`).
    name: String,
    /// Short name shown by IdPs (= certificate `CN`).
    display_name: String,
    /// Organization web site.
    url: String,
}

/// `md:ContactPerson contactType="other"` and its SPID extensions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContact {
    /// Institutional mailbox (not a person's).
    email: String,
    /// Telephone with `+39` prefix, no spaces.
    #[serde(default)]
    phone: Option<String>,
    /// IPA code; required for public SPs, forbidden for private ones.
    #[serde(default)]
    ipa_code: Option<String>,
    /// VAT number with country prefix, e.g. `IT12345678901`.
    #[serde(default)]
    vat_number: Option<String>,
    /// Fiscal code of the organization.
    #[serde(default)]
    fiscal_code: Option<String>,
}

/// Billing contact for private SPs (`fpa:CessionarioCommittente`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBilling {
    /// Billing mailbox (company or PEC).
    email: String,
    /// Company name (`fpa:Denominazione`).
    company_name: String,
    /// VAT number: country code and number, e.g. `IT` + `12345678901`.
    #[serde(default)]
    vat_country: Option<String>,
    /// VAT number digits.
    #[serde(default)]
    vat_number: Option<String>,
    /// Fiscal code (`fpa:CodiceFiscale`).
    #[serde(default)]
    fiscal_code: Option<String>,
    /// Street address.
    address: String,
    /// Street number.
    #[serde(default)]
    street_number: Option<String>,
    /// Postal code.
    postal_code: String,
    /// Municipality.
    municipality: String,
    /// Province code.
    #[serde(default)]
    province: Option<String>,
    /// Nation code, e.g. `IT`.
    nation: String,
}

/// One `md:AttributeConsumingService`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttributeService {
    /// Index referenced by AuthnRequests.
    index: u16,
    /// `md:ServiceName` (Italian).
    name: String,
    /// SPID attribute names requested.
    attributes: Vec<String>,
}

/// `[sp]`, validated.
#[derive(Debug, Clone)]
pub struct SpSection {
    /// PEM private key signing metadata and requests.
    pub key_file: PathBuf,
    /// PEM certificate published in the metadata.
    pub cert_file: PathBuf,
    /// What the SSO service needs.
    pub sso: SsoSettings,
    /// What the metadata says.
    pub metadata: SpDescriptor,
}

/// Checks `[sp]`; `txlog_unverified_max_bytes` comes from `[limits]`.
pub(super) fn validate(
    raw: RawSp,
    ctx: &Context<'_>,
    txlog_unverified_max_bytes: usize,
) -> Result<SpSection, ConfigError> {
    let sso = sso_settings(&raw, ctx, txlog_unverified_max_bytes)?;
    let organization = organization(&raw.organization)?;
    let (contact, kind) = contact_and_kind(&raw)?;
    let attribute_services = attribute_services(&raw)?;
    refuse_demo_material("sp.key_file", &raw.key_file, ctx.prod)?;
    let metadata = SpDescriptor {
        entity_id: sso.entity_id.clone(),
        acs_url: sso.acs_url.clone(),
        slo_url: sso.slo_url.clone(),
        organization,
        kind,
        contact,
        attribute_services,
    };
    Ok(SpSection {
        key_file: raw.key_file,
        cert_file: raw.cert_file,
        sso,
        metadata,
    })
}

/// The protocol half of `[sp]`.
fn sso_settings(
    raw: &RawSp,
    ctx: &Context<'_>,
    txlog_unverified_max_bytes: usize,
) -> Result<SsoSettings, ConfigError> {
    check_url("sp.entity_id", &raw.entity_id, ctx.prod)?;
    if raw.entity_id.len() > 1024 {
        return Err(invalid("sp.entity_id", "longer than 1024 characters"));
    }
    let acs_url = (raw.acs_url.clone()).unwrap_or_else(|| format!("{}/acs", ctx.public_url));
    let slo_url = (raw.slo_url.clone()).unwrap_or_else(|| format!("{}/slo", ctx.public_url));
    check_url("sp.acs_url", &acs_url, ctx.prod)?;
    check_url("sp.slo_url", &slo_url, ctx.prod)?;
    let default_level = Level::from_number(raw.default_level)
        .ok_or_else(|| invalid("sp.default_level", "must be 1, 2 or 3"))?;
    let comparison = Comparison::parse(&raw.comparison)
        .ok_or_else(|| invalid("sp.comparison", "must be exact, minimum, better or maximum"))?;
    let request_ttl = seconds("sp.request_ttl_seconds", raw.request_ttl_seconds, 1, 3600)?;
    let max_assertion_validity = seconds(
        "sp.max_assertion_validity_seconds",
        raw.max_assertion_validity_seconds,
        60,
        86_400,
    )?;
    if raw.clock_skew_seconds > 300 {
        return Err(invalid("sp.clock_skew_seconds", "must be at most 300"));
    }
    Ok(SsoSettings {
        entity_id: raw.entity_id.clone(),
        acs_url,
        slo_url,
        default_level,
        default_binding: raw.default_binding,
        comparison,
        attribute_index: raw.attribute_consuming_service_index,
        request_ttl,
        clock_skew: Duration::from_secs(raw.clock_skew_seconds),
        max_assertion_validity,
        txlog_unverified_max_bytes,
        limits: Limits::default(),
    })
}

fn organization(o: &RawOrganization) -> Result<Organization, ConfigError> {
    check_nonempty("sp.organization.name", &o.name)?;
    check_nonempty("sp.organization.display_name", &o.display_name)?;
    check_url("sp.organization.url", &o.url, false)?;
    Ok(Organization {
        name: o.name.clone(),
        display_name: o.display_name.clone(),
        url: o.url.clone(),
    })
}

/// The `other` contact and the public/private extensions (with billing).
fn contact_and_kind(raw: &RawSp) -> Result<(Contact, SpKind), ConfigError> {
    let c = &raw.contact;
    check_email("sp.contact.email", &c.email)?;
    if let Some(phone) = &c.phone
        && (!phone.starts_with("+39")
            || phone.len() < 6
            || !phone.bytes().skip(1).all(|b| b.is_ascii_digit()))
    {
        return Err(invalid(
            "sp.contact.phone",
            "must start with +39 and contain only digits, no spaces",
        ));
    }
    let kind = match raw.sector {
        SpSector::Public => match c.ipa_code.as_deref() {
            Some(ipa) if !ipa.is_empty() => SpKind::Public {
                ipa_code: ipa.to_owned(),
            },
            _ => return Err(invalid("sp.contact.ipa_code", "required for a public SP")),
        },
        SpSector::Private => SpKind::Private {
            billing: Box::new(private_billing(c, raw.billing.as_ref())?),
        },
    };
    if let Some(vat) = &c.vat_number {
        let ok = vat.len() > 2
            && vat.bytes().take(2).all(|b| b.is_ascii_uppercase())
            && !vat.contains(' ');
        if !ok {
            return Err(invalid(
                "sp.contact.vat_number",
                "must start with an ISO 3166 country code and have no spaces, e.g. IT12345678901",
            ));
        }
    }
    let contact = Contact {
        email: c.email.clone(),
        phone: c.phone.clone(),
        vat_number: c.vat_number.clone(),
        fiscal_code: c.fiscal_code.clone(),
    };
    Ok((contact, kind))
}

/// A private SP's identifiers and its billing contact.
fn private_billing(c: &RawContact, billing: Option<&RawBilling>) -> Result<Billing, ConfigError> {
    if c.ipa_code.is_some() {
        return Err(invalid(
            "sp.contact.ipa_code",
            "must not be set for a private SP",
        ));
    }
    if c.vat_number.is_none() && c.fiscal_code.is_none() {
        return Err(invalid(
            "sp.contact.vat_number",
            "a private SP needs vat_number or fiscal_code",
        ));
    }
    let Some(b) = billing else {
        return Err(invalid("sp.billing", "required for a private SP"));
    };
    check_email("sp.billing.email", &b.email)?;
    if b.vat_number.is_none() && b.fiscal_code.is_none() {
        return Err(invalid(
            "sp.billing.vat_number",
            "billing needs vat_number or fiscal_code",
        ));
    }
    Ok(Billing {
        email: b.email.clone(),
        company_name: b.company_name.clone(),
        vat_country: b.vat_country.clone(),
        vat_number: b.vat_number.clone(),
        fiscal_code: b.fiscal_code.clone(),
        address: b.address.clone(),
        street_number: b.street_number.clone(),
        postal_code: b.postal_code.clone(),
        municipality: b.municipality.clone(),
        province: b.province.clone(),
        nation: b.nation.clone(),
    })
}

/// The AttributeConsumingService entries, and the index requests name among them.
fn attribute_services(raw: &RawSp) -> Result<Vec<AttributeService>, ConfigError> {
    let services = &raw.attribute_consuming_services;
    if services.is_empty() {
        return Err(invalid(
            "sp.attribute_consuming_services",
            "at least one service is required",
        ));
    }
    let mut seen = HashSet::new();
    for (i, svc) in services.iter().enumerate() {
        let key = format!("sp.attribute_consuming_services[{i}]");
        if raw.eidas.enabled && [EIDAS_MINIMUM_INDEX, EIDAS_FULL_INDEX].contains(&svc.index) {
            return Err(invalid(
                &format!("{key}.index"),
                "99 and 100 are the eIDAS attribute sets while sp.eidas.enabled = true",
            ));
        }
        if !seen.insert(svc.index) {
            return Err(invalid(&format!("{key}.index"), "duplicate index"));
        }
        check_nonempty(&format!("{key}.name"), &svc.name)?;
        check_attributes(&format!("{key}.attributes"), &svc.attributes)?;
    }
    let eidas = if raw.eidas.enabled {
        eidas_attribute_services().to_vec()
    } else {
        Vec::new()
    };
    seen.extend(eidas.iter().map(|s| s.index));
    if !seen.contains(&raw.attribute_consuming_service_index) {
        return Err(invalid(
            "sp.attribute_consuming_service_index",
            "no attribute_consuming_services entry has this index",
        ));
    }
    Ok(services
        .iter()
        .map(|s| AttributeService {
            index: s.index,
            name: s.name.clone(),
            attributes: s.attributes.clone(),
        })
        .chain(eidas)
        .collect())
}

/// At least one attribute, each a SPID attribute, none twice.
fn check_attributes(key: &str, attributes: &[String]) -> Result<(), ConfigError> {
    if attributes.is_empty() {
        return Err(invalid(key, "at least one attribute"));
    }
    let mut names = HashSet::new();
    for a in attributes {
        if !crate::saml::SPID_ATTRIBUTES.contains(&a.as_str()) {
            return Err(invalid(key, format!("`{a}` is not a SPID attribute")));
        }
        if !names.insert(a) {
            return Err(invalid(key, format!("`{a}` listed twice")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{err, load, load_edited};
    use crate::saml::request::Binding;
    use crate::saml::sp_metadata::SpKind;
    use crate::saml::{Comparison, Level};

    #[test]
    fn the_protocol_values_are_typed() {
        let cfg = load(
            "[sp]\ndefault_level = 3\ncomparison = \"exact\"\ndefault_binding = \"post\"\nrequest_ttl_seconds = 120\nclock_skew_seconds = 5\nmax_assertion_validity_seconds = 600\nattribute_consuming_service_index = 0\n",
            &[],
        )
        .unwrap();
        let sso = &cfg.sp.sso;
        assert_eq!(sso.default_level, Level::L3);
        assert_eq!(sso.comparison, Comparison::Exact);
        assert_eq!(sso.default_binding, Binding::Post);
        assert_eq!(sso.request_ttl, Duration::from_secs(120));
        assert_eq!(sso.clock_skew, Duration::from_secs(5));
        assert_eq!(sso.max_assertion_validity, Duration::from_secs(600));
        assert_eq!(sso.txlog_unverified_max_bytes, 16 * 1024);
        assert_eq!(sso.acs_url, "http://localhost:8080/acs");
        assert_eq!(sso.slo_url, "http://localhost:8080/slo");
        let d = load("", &[]).unwrap().sp.sso;
        assert_eq!(
            (d.default_level, d.comparison, d.default_binding),
            (Level::L2, Comparison::Minimum, Binding::Redirect)
        );
    }

    #[test]
    fn the_metadata_description_is_built() {
        let cfg = load("[sp]\nacs_url = \"http://localhost:8080/other-acs\"\n", &[]).unwrap();
        let md = &cfg.sp.metadata;
        assert_eq!(md.entity_id, "http://localhost:8080");
        assert_eq!(md.acs_url, "http://localhost:8080/other-acs");
        assert_eq!(cfg.sp.sso.acs_url, md.acs_url);
        assert!(matches!(&md.kind, SpKind::Public { ipa_code } if ipa_code == "m_pi"));
        assert_eq!(md.organization.display_name, "MIM");
        // The demo's own service, then eIDAS 99 and 100 (`[sp.eidas]` is on in the demo).
        let indexes: Vec<u16> = md.attribute_services.iter().map(|s| s.index).collect();
        assert_eq!(indexes, [0, 99, 100]);
        assert!(
            md.attribute_services[0]
                .attributes
                .contains(&"fiscalNumber".to_owned())
        );
    }

    fn private(billing: &str) -> String {
        let b = format!(
            "vat_number = \"IT12345678901\"\n\n[sp.billing]\nemail = \"fatture@example.it\"\ncompany_name = \"Example S.p.A.\"\n{billing}address = \"Via Roma\"\npostal_code = \"00100\"\nmunicipality = \"Roma\"\nnation = \"IT\"\n"
        );
        let cfg = load_edited(move |demo| {
            demo.replace("sector = \"public\"", "sector = \"private\"")
                .replace("ipa_code = \"m_pi\"\n", &b)
        });
        match cfg {
            Ok(cfg) => match cfg.sp.metadata.kind {
                SpKind::Private { billing } => format!("ok {}", billing.company_name),
                SpKind::Public { .. } => "public".to_owned(),
            },
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_private_sp_gets_its_billing_contact() {
        assert_eq!(
            private("fiscal_code = \"12345678901\"\n"),
            "ok Example S.p.A."
        );
        let e = private("");
        assert!(e.contains("sp.billing.vat_number"), "{e}");
    }

    #[test]
    fn eidas_adds_the_ficep_sets_99_and_100() {
        let off = load("[sp.eidas]\nenabled = false\n", &[])
            .unwrap()
            .sp
            .metadata
            .attribute_services;
        assert!(off.iter().all(|s| s.index != 99 && s.index != 100));
        let on = load("[sp.eidas]\nenabled = true\n", &[]).unwrap();
        let services = &on.sp.metadata.attribute_services;
        assert_eq!(services.len(), off.len() + 2);
        let min = services.iter().find(|s| s.index == 99).unwrap();
        assert_eq!(min.name, "eIDAS Natural Person Minimum Attribute Set");
        assert_eq!(
            min.attributes,
            ["spidCode", "name", "familyName", "dateOfBirth"]
        );
        let full = services.iter().find(|s| s.index == 100).unwrap();
        assert_eq!(full.name, "eIDAS Natural Person Full Attribute Set");
        assert_eq!(
            full.attributes,
            [
                "spidCode",
                "name",
                "familyName",
                "dateOfBirth",
                "placeOfBirth",
                "address",
                "gender"
            ]
        );
        // Requests may name them.
        let idx = "[sp]\nattribute_consuming_service_index = 99\n[sp.eidas]\nenabled = true\n";
        assert_eq!(load(idx, &[]).unwrap().sp.sso.attribute_index, 99);
        // A user-defined entry at 99 or 100 is refused while eIDAS is on, allowed when off.
        for index in [99, 100] {
            let own = format!(
                "[[sp.attribute_consuming_services]]\nindex = 0\nname = \"base\"\nattributes = [\"name\"]\n[[sp.attribute_consuming_services]]\nindex = {index}\nname = \"mine\"\nattributes = [\"name\"]\n"
            );
            assert!(load(&format!("{own}[sp.eidas]\nenabled = false\n"), &[]).is_ok());
            let e = err(&format!("{own}[sp.eidas]\nenabled = true\n"), &[]);
            assert!(
                e.contains("sp.attribute_consuming_services[1].index") && e.contains("eIDAS"),
                "{e}"
            );
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            ("[sp]\ndefault_level = 0\n", "sp.default_level"),
            ("[sp]\ncomparison = \"Minimum \"\n", "sp.comparison"),
            ("[sp]\ndefault_binding = \"artifact\"\n", "default_binding"),
            ("[sp]\nrequest_ttl_seconds = 0\n", "sp.request_ttl_seconds"),
            ("[sp]\nclock_skew_seconds = 301\n", "sp.clock_skew_seconds"),
            (
                "[sp]\nmax_assertion_validity_seconds = 59\n",
                "sp.max_assertion_validity_seconds",
            ),
            ("[sp]\nslo_url = \"mailto:x@y.it\"\n", "sp.slo_url"),
            (
                "[sp]\nattribute_consuming_service_index = 7\n",
                "sp.attribute_consuming_service_index",
            ),
            ("[sp.organization]\nname = \" \"\n", "sp.organization.name"),
            ("[sp.contact]\nemail = \"nobody\"\n", "sp.contact.email"),
            (
                "[sp.contact]\nvat_number = \"it123\"\n",
                "sp.contact.vat_number",
            ),
        ] {
            let e = err(toml, &[]);
            assert!(e.contains(key), "{toml} -> {e}");
        }
    }
}
