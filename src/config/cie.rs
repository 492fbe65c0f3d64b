//! `[cie]`: the "Entra con CIE" service provider. Validated into the metadata's
//! [`CieDescriptor`] (entityID, the census and contact data the federation portal
//! checks, the attribute set) plus the key files of the CIE identity (the `[sp]`
//! ones unless set). The Organization, ACS and SLO URLs are the `[sp]` ones: one
//! gateway, one legal person.

use std::collections::HashSet;
use std::path::PathBuf;

use serde::Deserialize;

use super::checks::{check_email, check_nonempty, check_url, invalid, refuse_demo_material};
use super::sp::SpSection;
use super::{ConfigError, Context};
use crate::saml::cie_metadata::{CIE_ATTRIBUTES, CieContact, CieDescriptor, CieSector};

/// `[cie]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCie {
    /// Publish `/metadata/cie` and build the CIE identity.
    #[serde(default)]
    enabled: bool,
    /// The CIE entityID; default `sp.entity_id`.
    #[serde(default)]
    entity_id: Option<String>,
    /// PEM private key of the CIE identity; default `sp.key_file` (set both or neither).
    #[serde(default)]
    key_file: Option<PathBuf>,
    /// PEM certificate of the CIE identity; default `sp.cert_file`.
    #[serde(default)]
    certificate_file: Option<PathBuf>,
    /// `md:ServiceName` of the attribute set (a service-class name or `urn:uuid:<v4>`);
    /// default the name of the `[sp]` attribute service requests use.
    #[serde(default)]
    service_name: Option<String>,
    /// Requested attributes, a subset of the eIDAS minimum set; default all four.
    #[serde(default)]
    attributes: Option<Vec<String>>,
    /// `true`: `cie:Public` (IPA code required); `false`: `cie:Private` (VAT number,
    /// fiscal code and NACE2 code required).
    #[serde(default)]
    public: Option<bool>,
    /// `cie:IPACode` (IndicePA).
    #[serde(default)]
    ipa_code: Option<String>,
    /// `cie:IPACategory`, e.g. `L6`.
    #[serde(default)]
    ipa_category: Option<String>,
    /// `cie:VATNumber` with its country prefix, e.g. `IT12345678901`.
    #[serde(default)]
    vat_number: Option<String>,
    /// `cie:FiscalCode` of the legal person.
    #[serde(default)]
    fiscal_code: Option<String>,
    /// `cie:NACE2Code` (ATECO) codes, e.g. `["84.11.10"]`.
    #[serde(default)]
    nace2_codes: Vec<String>,
    /// `cie:Municipality`: Belfiore code of the registered office, e.g. `H501`.
    #[serde(default)]
    municipality: Option<String>,
    /// `cie:Province`, e.g. `RM`.
    #[serde(default)]
    province: Option<String>,
    /// `cie:Country`, ISO 3166-1 alpha-2.
    #[serde(default)]
    country: Option<String>,
    /// The administrative contact (the SP's).
    #[serde(default)]
    administrative: Option<RawContact>,
    /// A technology partner's technical contact, if one runs the federation.
    #[serde(default)]
    technical: Option<RawTechnical>,
}

/// The `cie:` extension data of one subject (the same keys in `[cie]` and
/// `[cie.technical]`; serde's `flatten` cannot be combined with `deny_unknown_fields`).
#[derive(Debug, Clone)]
struct Census<'a> {
    ipa_code: &'a Option<String>,
    ipa_category: &'a Option<String>,
    vat_number: &'a Option<String>,
    fiscal_code: &'a Option<String>,
    nace2_codes: &'a [String],
    municipality: &'a Option<String>,
    province: &'a Option<String>,
    country: &'a Option<String>,
}

macro_rules! census {
    ($r:expr) => {
        Census {
            ipa_code: &$r.ipa_code,
            ipa_category: &$r.ipa_category,
            vat_number: &$r.vat_number,
            fiscal_code: &$r.fiscal_code,
            nace2_codes: &$r.nace2_codes,
            municipality: &$r.municipality,
            province: &$r.province,
            country: &$r.country,
        }
    };
}

/// `[cie.administrative]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContact {
    /// The mailbox given to the federation portal (institutional, not a PEC).
    email: String,
    /// International prefix, no spaces, not a personal number.
    #[serde(default)]
    phone: Option<String>,
}

/// `[cie.technical]`: the technology partner.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTechnical {
    /// Is the partner a public body? Default private.
    #[serde(default)]
    public: bool,
    /// `md:Company`: the partner's full name.
    company: String,
    /// The partner's mailbox.
    email: String,
    /// The partner's telephone.
    #[serde(default)]
    phone: Option<String>,
    /// `cie:IPACode` (IndicePA).
    #[serde(default)]
    ipa_code: Option<String>,
    /// `cie:IPACategory`, e.g. `L6`.
    #[serde(default)]
    ipa_category: Option<String>,
    /// `cie:VATNumber` with its country prefix, e.g. `IT12345678901`.
    #[serde(default)]
    vat_number: Option<String>,
    /// `cie:FiscalCode` of the legal person.
    #[serde(default)]
    fiscal_code: Option<String>,
    /// `cie:NACE2Code` (ATECO) codes, e.g. `["84.11.10"]`.
    #[serde(default)]
    nace2_codes: Vec<String>,
    /// `cie:Municipality`: Belfiore code of the registered office, e.g. `H501`.
    #[serde(default)]
    municipality: Option<String>,
    /// `cie:Province`, e.g. `RM`.
    #[serde(default)]
    province: Option<String>,
    /// `cie:Country`, ISO 3166-1 alpha-2.
    #[serde(default)]
    country: Option<String>,
}

/// `[cie]`, validated and enabled.
#[derive(Debug, Clone)]
pub struct CieSection {
    /// PEM private key of the CIE identity.
    pub key_file: PathBuf,
    /// PEM certificate of the CIE identity.
    pub cert_file: PathBuf,
    /// What `/metadata/cie` says.
    pub metadata: CieDescriptor,
}

/// Checks `[cie]` against the validated `[sp]`; `None` when absent or not enabled.
pub(super) fn validate(
    raw: Option<RawCie>,
    ctx: &Context<'_>,
    sp: &SpSection,
) -> Result<Option<CieSection>, ConfigError> {
    let Some(raw) = raw.filter(|r| r.enabled) else {
        return Ok(None);
    };
    let entity_id = raw
        .entity_id
        .clone()
        .unwrap_or_else(|| sp.sso.entity_id.clone());
    check_url("cie.entity_id", &entity_id, ctx.prod)?;
    if entity_id.len() > 1024 {
        return Err(invalid("cie.entity_id", "longer than 1024 characters"));
    }
    let (key_file, cert_file) = match (&raw.key_file, &raw.certificate_file) {
        (Some(k), Some(c)) => (k.clone(), c.clone()),
        (None, None) => (sp.key_file.clone(), sp.cert_file.clone()),
        _ => {
            return Err(invalid(
                "cie.key_file",
                "set key_file and certificate_file together (or neither: the [sp] ones)",
            ));
        }
    };
    refuse_demo_material("cie.key_file", &key_file, ctx.prod)?;
    let service_name = service_name(&raw, sp)?;
    let attributes = attributes(raw.attributes.as_deref())?;
    let sector = match raw.public {
        Some(true) => CieSector::Public,
        Some(false) => CieSector::Private,
        None => return Err(invalid("cie.public", "required: true or false")),
    };
    let Some(admin) = &raw.administrative else {
        return Err(invalid("cie.administrative", "required: email (and phone)"));
    };
    let org_name = sp.metadata.organization.name.clone();
    let administrative = contact(
        "cie",
        sector,
        org_name,
        &admin.email,
        admin.phone.as_ref(),
        &census!(raw),
    )?;
    let technical = match &raw.technical {
        None => None,
        Some(t) => {
            check_nonempty("cie.technical.company", &t.company)?;
            let sector = if t.public {
                CieSector::Public
            } else {
                CieSector::Private
            };
            Some(contact(
                "cie.technical",
                sector,
                t.company.clone(),
                &t.email,
                t.phone.as_ref(),
                &census!(t),
            )?)
        }
    };
    Ok(Some(CieSection {
        key_file,
        cert_file,
        metadata: CieDescriptor {
            entity_id,
            acs_url: sp.sso.acs_url.clone(),
            slo_url: sp.sso.slo_url.clone(),
            organization: sp.metadata.organization.clone(),
            service_name,
            attributes,
            administrative,
            technical,
        },
    }))
}

/// The ServiceName: configured, or the `[sp]` attribute service that requests name.
fn service_name(raw: &RawCie, sp: &SpSection) -> Result<String, ConfigError> {
    let name = match &raw.service_name {
        Some(n) => n.clone(),
        None => sp
            .metadata
            .attribute_services
            .iter()
            .find(|s| s.index == sp.sso.attribute_index)
            .map(|s| s.name.clone())
            .unwrap_or_else(|| sp.metadata.organization.display_name.clone()),
    };
    check_nonempty("cie.service_name", &name)?;
    if name.chars().count() > 255 {
        return Err(invalid("cie.service_name", "longer than 255 characters"));
    }
    Ok(name)
}

/// The requested attributes: a non-empty subset of the eIDAS minimum set, none twice.
fn attributes(configured: Option<&[String]>) -> Result<Vec<String>, ConfigError> {
    let Some(list) = configured else {
        return Ok(CIE_ATTRIBUTES.iter().map(|a| (*a).to_owned()).collect());
    };
    if list.is_empty() {
        return Err(invalid("cie.attributes", "at least one attribute"));
    }
    let mut seen = HashSet::new();
    for a in list {
        if !CIE_ATTRIBUTES.contains(&a.as_str()) {
            return Err(invalid(
                "cie.attributes",
                format!(
                    "`{a}` is not in the CIE attribute set ({})",
                    CIE_ATTRIBUTES.join(", ")
                ),
            ));
        }
        if !seen.insert(a) {
            return Err(invalid("cie.attributes", format!("`{a}` listed twice")));
        }
    }
    Ok(list.to_vec())
}

/// One contact with its census data, checked for its sector (`prefix` names the keys).
fn contact(
    prefix: &str,
    sector: CieSector,
    company: String,
    email: &str,
    phone: Option<&String>,
    c: &Census<'_>,
) -> Result<CieContact, ConfigError> {
    let key = |k: &str| format!("{prefix}.{k}");
    let email_key = if prefix == "cie" {
        "cie.administrative.email".to_owned()
    } else {
        key("email")
    };
    check_email(&email_key, email)?;
    if let Some(p) = phone
        && !(p.len() >= 6 && p.starts_with('+') && p.bytes().skip(1).all(|b| b.is_ascii_digit()))
    {
        let phone_key = if prefix == "cie" {
            "cie.administrative.phone".to_owned()
        } else {
            key("phone")
        };
        return Err(invalid(
            &phone_key,
            "an international number: + and digits, no spaces, e.g. +390612345678",
        ));
    }
    let present = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
    match sector {
        CieSector::Public if !present(c.ipa_code) => {
            return Err(invalid(&key("ipa_code"), "required for a public subject"));
        }
        CieSector::Private => {
            for (name, v) in [("vat_number", c.vat_number), ("fiscal_code", c.fiscal_code)] {
                if !present(v) {
                    return Err(invalid(&key(name), "required for a private subject"));
                }
            }
            if c.nace2_codes.is_empty() {
                return Err(invalid(
                    &key("nace2_codes"),
                    "at least one code for a private subject",
                ));
            }
        }
        CieSector::Public => {}
    }
    check_codes(&key, c)?;
    let Some(municipality) = c.municipality.clone() else {
        return Err(invalid(
            &key("municipality"),
            "required (Belfiore code, e.g. H501)",
        ));
    };
    Ok(CieContact {
        sector,
        company,
        email: email.to_owned(),
        phone: phone.cloned(),
        ipa_code: c.ipa_code.clone(),
        ipa_category: c.ipa_category.clone(),
        vat_number: c.vat_number.clone(),
        fiscal_code: c.fiscal_code.clone(),
        nace2_codes: c.nace2_codes.to_vec(),
        municipality,
        province: c.province.clone(),
        country: c.country.clone(),
    })
}

/// The shapes of the census codes.
fn check_codes(key: &dyn Fn(&str) -> String, c: &Census<'_>) -> Result<(), ConfigError> {
    if let Some(m) = c.municipality
        && !is_belfiore(m)
    {
        return Err(invalid(
            &key("municipality"),
            "a Belfiore code: one capital letter and three digits, e.g. H501",
        ));
    }
    let two_capitals = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase());
    if let Some(p) = c.province
        && !two_capitals(p)
    {
        return Err(invalid(&key("province"), "two capital letters, e.g. RM"));
    }
    if let Some(country) = c.country
        && !two_capitals(country)
    {
        return Err(invalid(&key("country"), "ISO 3166-1 alpha-2, e.g. IT"));
    }
    if let Some(vat) = c.vat_number {
        let ok = vat.len() > 2
            && vat.bytes().take(2).all(|b| b.is_ascii_uppercase())
            && vat.bytes().skip(2).all(|b| b.is_ascii_alphanumeric());
        if !ok {
            return Err(invalid(
                &key("vat_number"),
                "country code then the number, no spaces, e.g. IT12345678901",
            ));
        }
    }
    for n in c.nace2_codes {
        if !is_nace2(n) {
            return Err(invalid(
                &key("nace2_codes"),
                format!("`{n}` is not an ATECO/NACE code such as 84.11.10"),
            ));
        }
    }
    for (name, v) in [
        ("ipa_code", c.ipa_code),
        ("ipa_category", c.ipa_category),
        ("fiscal_code", c.fiscal_code),
    ] {
        if let Some(v) = v
            && (v.trim().is_empty() || v.len() > 64 || v.chars().any(char::is_whitespace))
        {
            return Err(invalid(&key(name), "1 to 64 characters, no spaces"));
        }
    }
    Ok(())
}

/// `[A-Z][0-9]{3}`: the cadastral (Belfiore) code of an Italian municipality.
fn is_belfiore(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 4
        && b.first().is_some_and(u8::is_ascii_uppercase)
        && b.iter().skip(1).all(u8::is_ascii_digit)
}

/// `NN`, `NN.N[N]` or `NN.N[N].N[N]`: a NACE rev. 2 / ATECO code.
fn is_nace2(s: &str) -> bool {
    let mut parts = s.split('.');
    let head_ok = parts
        .next()
        .is_some_and(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()));
    let rest: Vec<&str> = parts.collect();
    head_ok
        && rest.len() <= 2
        && rest
            .iter()
            .all(|p| (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{err, load};
    use super::{is_belfiore, is_nace2};
    use crate::saml::cie_metadata::{CIE_ATTRIBUTES, CieSector};

    const PUBLIC: &str = "[cie]\nenabled = true\npublic = true\nipa_code = \"m_pi\"\nmunicipality = \"H501\"\nprovince = \"RM\"\n[cie.administrative]\nemail = \"cie@example.gov.it\"\nphone = \"+390600000000\"\n";

    #[test]
    fn a_public_sp_defaults_to_the_spid_identity_and_the_minimum_set() {
        let cfg = load(PUBLIC, &[]).unwrap();
        let cie = cfg.cie.expect("enabled");
        assert_eq!(cie.key_file, cfg.sp.key_file);
        assert_eq!(cie.cert_file, cfg.sp.cert_file);
        let md = &cie.metadata;
        assert_eq!(md.entity_id, cfg.sp.sso.entity_id);
        assert_eq!(md.acs_url, cfg.sp.sso.acs_url);
        assert_eq!(md.attributes, CIE_ATTRIBUTES);
        assert_eq!(md.administrative.sector, CieSector::Public);
        assert_eq!(md.administrative.company, cfg.sp.metadata.organization.name);
        assert_eq!(md.administrative.municipality, "H501");
        assert!(md.technical.is_none());
        assert!(!md.service_name.is_empty());
    }

    #[test]
    fn absent_or_disabled_means_none() {
        assert!(load("", &[]).unwrap().cie.is_none());
        assert!(load("[cie]\nenabled = false\n", &[]).unwrap().cie.is_none());
    }

    #[test]
    fn own_identity_partner_and_attribute_subset() {
        let own = "entity_id = \"http://localhost:8080/cie\"\nkey_file = \"k.pem\"\ncertificate_file = \"c.pem\"\nattributes = [\"name\", \"fiscalNumber\"]\n[cie.administrative]";
        let tech = "[cie.technical]\ncompany = \"Partner S.r.l.\"\nemail = \"t@partner.it\"\nvat_number = \"IT12345678901\"\nfiscal_code = \"12345678901\"\nnace2_codes = [\"62.01\"]\nmunicipality = \"F205\"\n";
        let toml = format!("{}{tech}", PUBLIC.replace("[cie.administrative]", own));
        let cie = load(&toml, &[]).unwrap().cie.unwrap();
        assert_eq!(cie.metadata.entity_id, "http://localhost:8080/cie");
        assert_eq!(cie.key_file.to_str(), Some("k.pem"));
        assert_eq!(cie.cert_file.to_str(), Some("c.pem"));
        assert_eq!(cie.metadata.attributes, ["name", "fiscalNumber"]);
        let t = cie.metadata.technical.unwrap();
        assert_eq!(t.sector, CieSector::Private);
        assert_eq!(t.company, "Partner S.r.l.");
        assert_eq!(t.nace2_codes, ["62.01"]);
    }

    #[test]
    fn bad_values_name_their_key() {
        let private = "[cie]\nenabled = true\npublic = false\nmunicipality = \"H501\"\nvat_number = \"IT12345678901\"\nfiscal_code = \"12345678901\"\nnace2_codes = [\"62.01.00\"]\n[cie.administrative]\nemail = \"cie@example.it\"\n";
        assert!(load(private, &[]).unwrap().cie.is_some());
        for (toml, key) in [
            (PUBLIC.replace("ipa_code = \"m_pi\"\n", ""), "cie.ipa_code"),
            (PUBLIC.replace("H501", "h501"), "cie.municipality"),
            (PUBLIC.replace("H501", "Roma"), "cie.municipality"),
            (
                PUBLIC.replace("municipality = \"H501\"\n", ""),
                "cie.municipality",
            ),
            (PUBLIC.replace("public = true\n", ""), "cie.public"),
            (PUBLIC.replace("\"RM\"", "\"Rm\""), "cie.province"),
            (
                PUBLIC.replace("+390600000000", "06 000"),
                "cie.administrative.phone",
            ),
            (
                PUBLIC.replace("cie@example.gov.it", "nobody"),
                "cie.administrative.email",
            ),
            (
                PUBLIC.replace(
                    "[cie.administrative]",
                    "attributes = [\"email\"]\n[cie.administrative]",
                ),
                "cie.attributes",
            ),
            (
                PUBLIC.replace(
                    "[cie.administrative]",
                    "key_file = \"k.pem\"\n[cie.administrative]",
                ),
                "cie.key_file",
            ),
            (
                private.replace("nace2_codes = [\"62.01.00\"]\n", ""),
                "cie.nace2_codes",
            ),
            (
                private.replace("fiscal_code = \"12345678901\"\n", ""),
                "cie.fiscal_code",
            ),
            (
                private.replace("vat_number = \"IT12345678901\"\n", ""),
                "cie.vat_number",
            ),
            (private.replace("62.01.00", "6201"), "cie.nace2_codes"),
            (
                format!(
                    "{PUBLIC}[cie.technical]\ncompany = \"P\"\nemail = \"t@p.it\"\nmunicipality = \"F205\"\n"
                ),
                "cie.technical.vat_number",
            ),
            (format!("{PUBLIC}zz_unknown = 1\n"), "zz_unknown"),
        ] {
            let e = err(&toml, &[]);
            assert!(e.contains(key), "{toml} -> {e}");
        }
    }

    #[test]
    fn belfiore_and_nace_shapes() {
        for ok in ["H501", "F205", "Z404"] {
            assert!(is_belfiore(ok), "{ok}");
        }
        for bad in ["h501", "H50", "H5011", "HH01", "", "H5O1"] {
            assert!(!is_belfiore(bad), "{bad}");
        }
        for ok in ["84", "84.1", "84.11", "84.11.10", "62.01.0"] {
            assert!(is_nace2(ok), "{ok}");
        }
        for bad in ["8", "841", "84.", "84.111", "84.11.10.1", "ab.cd", ""] {
            assert!(!is_nace2(bad), "{bad}");
        }
    }
}
