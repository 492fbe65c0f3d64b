//! The SP metadata for "Entra con CIE" (CIE manual, `federazione.rst`, `ciespid.rst`):
//! one signed `md:EntityDescriptor` (the federation portal takes exactly one), the
//! same SPSSODescriptor head as the SPID metadata (signing key, SLO Redirect + POST,
//! transient NameIDFormat, ACS 0 on POST), one AttributeConsumingService with the
//! eIDAS minimum set (or a subset) whose ServiceName has `xml:lang=""`, the
//! Organization, and one `administrative` ContactPerson (plus a `technical` one for
//! a technology partner) carrying the `cie:` extensions and `md:Company`. Checked
//! against spid-sp-test's `cie-sp-public` profile and its CIE XSD
//! (`xsd/cie/saml-schema-metadata-sp-cie.xsd`, `cie.xsd`). Pure: no I/O, no clock.

use super::error::SamlError;
use super::ids::new_id;
use super::sign::{SigningKey, signature_template};
use super::sp_metadata::{Organization, opt_el, organization, sso_descriptor_head};
use super::xml::escape;
use super::{NS_DS, NS_MD};

/// The CIE metadata extensions namespace.
pub const NS_CIE: &str = "https://www.cartaidentita.interno.gov.it/saml-extensions";
/// The attributes a CIE attribute set may request: the eIDAS minimum data set.
pub const CIE_ATTRIBUTES: [&str; 4] = ["name", "familyName", "dateOfBirth", "fiscalNumber"];
/// The index of our one CIE AttributeConsumingService (what CIE AuthnRequests name).
pub const CIE_ATTRIBUTE_INDEX: u16 = 0;
/// `NameFormat` of the requested attributes (as the manual's example writes them).
const ATTRNAME_BASIC: &str = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic";

/// `cie:Public` (public administrations, public-service operators) or `cie:Private`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CieSector {
    /// `cie:Public`: `cie:IPACode` required.
    Public,
    /// `cie:Private`: `cie:VATNumber`, `cie:FiscalCode`, `cie:NACE2Code` required.
    Private,
}

/// One `md:ContactPerson` of the CIE metadata with its `cie:` extensions.
#[derive(Debug, Clone)]
pub struct CieContact {
    /// `cie:Public` or `cie:Private`.
    pub sector: CieSector,
    /// `md:Company`: for the administrative contact exactly the OrganizationName.
    pub company: String,
    /// `md:EmailAddress`: the mailbox given to the federation portal.
    pub email: String,
    /// `md:TelephoneNumber`: international prefix, no spaces.
    pub phone: Option<String>,
    /// `cie:IPACode`.
    pub ipa_code: Option<String>,
    /// `cie:IPACategory`, e.g. `L6`.
    pub ipa_category: Option<String>,
    /// `cie:VATNumber` with its ISO 3166 prefix, e.g. `IT12345678901`.
    pub vat_number: Option<String>,
    /// `cie:FiscalCode` of the legal person.
    pub fiscal_code: Option<String>,
    /// `cie:NACE2Code` (ATECO), one element each.
    pub nace2_codes: Vec<String>,
    /// `cie:Municipality`: the Belfiore code of the registered office, e.g. `H501`.
    pub municipality: String,
    /// `cie:Province`, e.g. `RM`.
    pub province: Option<String>,
    /// `cie:Country`, ISO 3166-1 alpha-2.
    pub country: Option<String>,
}

/// Everything the CIE metadata says.
#[derive(Debug, Clone)]
pub struct CieDescriptor {
    /// entityID (the SPID one unless configured).
    pub entity_id: String,
    /// ACS Location (index 0, HTTP-POST).
    pub acs_url: String,
    /// SingleLogoutService Location (Redirect, then POST).
    pub slo_url: String,
    /// `md:Organization` (the SPID one).
    pub organization: Organization,
    /// ServiceName of the attribute set: a service-class name or `urn:uuid:<v4>`.
    pub service_name: String,
    /// The requested attributes, a subset of [`CIE_ATTRIBUTES`].
    pub attributes: Vec<String>,
    /// The SP's own contact (`contactType="administrative"`).
    pub administrative: CieContact,
    /// The technology partner's contact (`contactType="technical"`), if any.
    pub technical: Option<CieContact>,
}

/// Builds and signs the CIE metadata document.
pub fn build_cie_metadata(d: &CieDescriptor, key: &SigningKey) -> Result<String, SamlError> {
    let id = new_id();
    let mut x = String::with_capacity(8 * 1024);
    x.push_str(&format!(
        r#"<md:EntityDescriptor xmlns:md="{NS_MD}" xmlns:ds="{NS_DS}" xmlns:cie="{NS_CIE}" entityID="{}" ID="{id}">"#,
        escape(&d.entity_id),
    ));
    x.push_str(&signature_template(&id, key.cert_base64()));
    sso_descriptor_head(&mut x, key, &d.slo_url, &d.acs_url);
    x.push_str(&format!(
        r#"<md:AttributeConsumingService index="{CIE_ATTRIBUTE_INDEX}"><md:ServiceName xml:lang="">{}</md:ServiceName>"#,
        escape(&d.service_name)
    ));
    for a in &d.attributes {
        x.push_str(&format!(
            r#"<md:RequestedAttribute Name="{}" NameFormat="{ATTRNAME_BASIC}"/>"#,
            escape(a)
        ));
    }
    x.push_str("</md:AttributeConsumingService></md:SPSSODescriptor>");
    organization(&mut x, &d.organization);
    contact(&mut x, "administrative", &d.administrative);
    if let Some(t) = &d.technical {
        contact(&mut x, "technical", t);
    }
    x.push_str("</md:EntityDescriptor>");
    key.sign_enveloped(&x)
}

/// One ContactPerson: `md:Extensions` with the `cie:` elements (in the manual's
/// order), then Company, EmailAddress, TelephoneNumber (the CIE XSD's sequence).
fn contact(x: &mut String, contact_type: &str, c: &CieContact) {
    let sector = match c.sector {
        CieSector::Public => "<cie:Public/>",
        CieSector::Private => "<cie:Private/>",
    };
    let nace: String = c
        .nace2_codes
        .iter()
        .map(|n| format!("<cie:NACE2Code>{}</cie:NACE2Code>", escape(n)))
        .collect();
    x.push_str(&format!(
        concat!(
            r#"<md:ContactPerson contactType="{ct}"><md:Extensions>{sector}{ipa}{ipacat}{nace}{vat}{fc}"#,
            "<cie:Municipality>{mun}</cie:Municipality>{prov}{country}</md:Extensions>",
            "<md:Company>{company}</md:Company><md:EmailAddress>{email}</md:EmailAddress>{phone}</md:ContactPerson>"
        ),
        ct = contact_type,
        sector = sector,
        ipa = opt_el("cie", "IPACode", &c.ipa_code),
        ipacat = opt_el("cie", "IPACategory", &c.ipa_category),
        nace = nace,
        vat = opt_el("cie", "VATNumber", &c.vat_number),
        fc = opt_el("cie", "FiscalCode", &c.fiscal_code),
        mun = escape(&c.municipality),
        prov = opt_el("cie", "Province", &c.province),
        country = opt_el("cie", "Country", &c.country),
        company = escape(&c.company),
        email = escape(&c.email),
        phone = opt_el("md", "TelephoneNumber", &c.phone),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saml::sign::{ReferenceRule, TrustedCert, check_signature_shape, verify_and_reduce};
    use crate::saml::xml::{self, Element, Limits};

    fn descriptor() -> CieDescriptor {
        CieDescriptor {
            entity_id: "https://istanze.example.gov.it".into(),
            acs_url: "https://istanze.example.gov.it/acs".into(),
            slo_url: "https://istanze.example.gov.it/slo".into(),
            organization: Organization {
                name: "Ministero dell'Istruzione e del Merito".into(),
                display_name: "MIM".into(),
                url: "https://www.mim.gov.it".into(),
            },
            service_name: "urn:uuid:5f0b5c1e-8c1a-4b7e-9d3a-2f1e0c9b8a76".into(),
            attributes: CIE_ATTRIBUTES.iter().map(|a| (*a).to_owned()).collect(),
            administrative: CieContact {
                sector: CieSector::Public,
                company: "Ministero dell'Istruzione e del Merito".into(),
                email: "cie@example.gov.it".into(),
                phone: Some("+390600000000".into()),
                ipa_code: Some("m_pi".into()),
                ipa_category: Some("C10".into()),
                vat_number: None,
                fiscal_code: Some("80185250588".into()),
                nace2_codes: vec!["84.12.10".into()],
                municipality: "H501".into(),
                province: Some("RM".into()),
                country: Some("IT".into()),
            },
            technical: Some(CieContact {
                sector: CieSector::Private,
                company: "Partner S.r.l.".into(),
                email: "tech@partner.example.it".into(),
                phone: None,
                ipa_code: None,
                ipa_category: None,
                vat_number: Some("IT12345678901".into()),
                fiscal_code: Some("12345678901".into()),
                nace2_codes: vec!["62.01.00".into()],
                municipality: "F205".into(),
                province: Some("MI".into()),
                country: Some("IT".into()),
            }),
        }
    }

    fn key() -> SigningKey {
        let g = crate::keygen::generate_idp_test_cert("cie metadata test", 1).unwrap();
        SigningKey::from_pem(&g.key_pem, &g.cert_pem).unwrap()
    }

    fn texts<'a>(root: &'a Element, ns: &str, name: &str) -> Vec<&'a str> {
        root.descendants()
            .into_iter()
            .filter(|e| e.is(ns, name))
            .map(|e| e.trimmed_text())
            .collect()
    }

    #[test]
    fn the_metadata_is_one_signed_entity_with_the_cie_extensions() {
        let key = key();
        let xml_text = build_cie_metadata(&descriptor(), &key).unwrap();
        let root = xml::parse(&xml_text, Limits::default()).unwrap();
        assert!(root.is(NS_MD, "EntityDescriptor"));
        let id = root.attr("ID").unwrap().to_owned();
        let sig = root.required_child(NS_DS, "Signature").unwrap();
        check_signature_shape(sig, &id, ReferenceRule::IdOnly).unwrap();
        let cert = TrustedCert::from_der(key.certificate().to_der().unwrap()).unwrap();
        verify_and_reduce(&xml_text, &[cert], Limits::default(), ReferenceRule::IdOnly).unwrap();

        let sp = root.required_child(NS_MD, "SPSSODescriptor").unwrap();
        assert_eq!(sp.attr("AuthnRequestsSigned"), Some("true"));
        assert_eq!(sp.attr("WantAssertionsSigned"), Some("true"));
        let slo: Vec<_> = sp.children_named(NS_MD, "SingleLogoutService").collect();
        assert_eq!(slo.len(), 2);
        assert!(slo[0].attr("Binding").unwrap().ends_with("HTTP-Redirect"));
        let acs = sp
            .required_child(NS_MD, "AssertionConsumerService")
            .unwrap();
        assert_eq!(acs.attr("index"), Some("0"));
        assert_eq!(
            acs.attr("Location"),
            Some("https://istanze.example.gov.it/acs")
        );
        let atcs: Vec<_> = sp
            .children_named(NS_MD, "AttributeConsumingService")
            .collect();
        assert_eq!(atcs.len(), 1);
        let requested: Vec<_> = atcs[0]
            .children_named(NS_MD, "RequestedAttribute")
            .filter_map(|r| r.attr("Name"))
            .collect();
        assert_eq!(requested, CIE_ATTRIBUTES);
        assert!(xml_text.contains(r#"<md:ServiceName xml:lang="">urn:uuid:"#));

        let contacts: Vec<_> = root.children_named(NS_MD, "ContactPerson").collect();
        let types: Vec<_> = contacts
            .iter()
            .filter_map(|c| c.attr("contactType"))
            .collect();
        assert_eq!(types, ["administrative", "technical"]);
        assert_eq!(
            texts(&root, NS_MD, "Company"),
            ["Ministero dell'Istruzione e del Merito", "Partner S.r.l."]
        );
        assert_eq!(texts(&root, NS_CIE, "Municipality"), ["H501", "F205"]);
        assert_eq!(texts(&root, NS_CIE, "IPACode"), ["m_pi"]);
        assert_eq!(texts(&root, NS_CIE, "NACE2Code"), ["84.12.10", "62.01.00"]);
        let admin = contacts[0];
        let ext = admin.required_child(NS_MD, "Extensions").unwrap();
        assert!(ext.unique_child(NS_CIE, "Public").unwrap().is_some());
        assert!(ext.unique_child(NS_CIE, "Private").unwrap().is_none());
        let tech = contacts[1].required_child(NS_MD, "Extensions").unwrap();
        assert!(tech.unique_child(NS_CIE, "Private").unwrap().is_some());
    }

    #[test]
    fn without_a_partner_there_is_one_administrative_contact() {
        let mut d = descriptor();
        d.technical = None;
        d.administrative.phone = None;
        let xml_text = build_cie_metadata(&d, &key()).unwrap();
        let root = xml::parse(&xml_text, Limits::default()).unwrap();
        let contacts: Vec<_> = root.children_named(NS_MD, "ContactPerson").collect();
        assert_eq!(contacts.len(), 1);
        assert!(!xml_text.contains("TelephoneNumber"));
        assert!(!xml_text.contains("spid:"), "no SPID extension");
    }
}
