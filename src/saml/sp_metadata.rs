//! SP metadata (SPID rules §1, Avviso 29 v3): built here, not by samael (whose
//! generator writes `AuthnRequestsSigned="false"`, no SPID extensions and no signature),
//! and signed with an enveloped RSA-SHA256 signature carrying our certificate.

use super::error::SamlError;
use super::ids::new_id;
use super::sign::{SigningKey, signature_template};
use super::xml::escape;
use super::{BINDING_POST, BINDING_REDIRECT, FORMAT_TRANSIENT, NS_DS, NS_FPA, NS_MD, NS_SPID};

/// `md:Organization`.
#[derive(Debug, Clone)]
pub struct Organization {
    /// Full legal name.
    pub name: String,
    /// Short name.
    pub display_name: String,
    /// Web site.
    pub url: String,
}

/// Public or private SP, with the identifiers its contact extensions carry.
#[derive(Debug, Clone)]
pub enum SpKind {
    /// Public administration: `spid:IPACode` + `spid:Public`.
    Public {
        /// IPA code.
        ipa_code: String,
    },
    /// Private: `spid:VATNumber` and/or `spid:FiscalCode` + `spid:Private`, plus billing.
    Private {
        /// Billing contact (`fpa:CessionarioCommittente`).
        billing: Box<Billing>,
    },
}

/// `md:ContactPerson contactType="other"`.
#[derive(Debug, Clone)]
pub struct Contact {
    /// Institutional e-mail.
    pub email: String,
    /// `+39…` telephone.
    pub phone: Option<String>,
    /// VAT number with country prefix.
    pub vat_number: Option<String>,
    /// Fiscal code.
    pub fiscal_code: Option<String>,
}

/// Billing data of a private SP.
#[derive(Debug, Clone)]
pub struct Billing {
    /// Billing e-mail.
    pub email: String,
    /// `fpa:Denominazione`.
    pub company_name: String,
    /// `fpa:IdPaese`.
    pub vat_country: Option<String>,
    /// `fpa:IdCodice`.
    pub vat_number: Option<String>,
    /// `fpa:CodiceFiscale`.
    pub fiscal_code: Option<String>,
    /// `fpa:Indirizzo`.
    pub address: String,
    /// `fpa:NumeroCivico`.
    pub street_number: Option<String>,
    /// `fpa:CAP`.
    pub postal_code: String,
    /// `fpa:Comune`.
    pub municipality: String,
    /// `fpa:Provincia`.
    pub province: Option<String>,
    /// `fpa:Nazione`.
    pub nation: String,
}

/// One `md:AttributeConsumingService`.
#[derive(Debug, Clone)]
pub struct AttributeService {
    /// index.
    pub index: u16,
    /// ServiceName (Italian).
    pub name: String,
    /// Requested SPID attribute names.
    pub attributes: Vec<String>,
}

/// Everything the SP metadata says.
#[derive(Debug, Clone)]
pub struct SpDescriptor {
    /// entityID.
    pub entity_id: String,
    /// ACS Location for index 0 (the default).
    pub acs_url: String,
    /// SingleLogoutService Location (Redirect first, then POST).
    pub slo_url: String,
    /// Organization.
    pub organization: Organization,
    /// Public or private, with extension data.
    pub kind: SpKind,
    /// The `other` contact.
    pub contact: Contact,
    /// Attribute services.
    pub attribute_services: Vec<AttributeService>,
}

pub(super) fn opt_el(prefix: &str, name: &str, v: &Option<String>) -> String {
    v.as_ref()
        .map(|v| format!("<{prefix}:{name}>{}</{prefix}:{name}>", escape(v)))
        .unwrap_or_default()
}

/// Builds and signs the metadata document.
pub fn build_sp_metadata(d: &SpDescriptor, key: &SigningKey) -> Result<String, SamlError> {
    let id = new_id();
    let mut x = String::with_capacity(8 * 1024);
    x.push_str(&format!(
        r#"<md:EntityDescriptor xmlns:md="{NS_MD}" xmlns:ds="{NS_DS}" xmlns:spid="{NS_SPID}"{fpa} entityID="{eid}" ID="{id}">"#,
        fpa = if matches!(d.kind, SpKind::Private { .. }) {
            format!(r#" xmlns:fpa="{NS_FPA}""#)
        } else {
            String::new()
        },
        eid = escape(&d.entity_id),
    ));
    x.push_str(&signature_template(&id, key.cert_base64()));
    sp_sso_descriptor(&mut x, d, key);
    organization(&mut x, &d.organization);
    contact_other(&mut x, d);
    if let SpKind::Private { billing } = &d.kind {
        contact_billing(&mut x, billing);
    }
    x.push_str("</md:EntityDescriptor>");
    key.sign_enveloped(&x)
}

/// `md:SPSSODescriptor`: the shared head, then the AttributeConsumingServices
/// (ServiceName in Italian).
fn sp_sso_descriptor(x: &mut String, d: &SpDescriptor, key: &SigningKey) {
    sso_descriptor_head(x, key, &d.slo_url, &d.acs_url);
    for svc in &d.attribute_services {
        x.push_str(&format!(
            r#"<md:AttributeConsumingService index="{}"><md:ServiceName xml:lang="it">{}</md:ServiceName>"#,
            svc.index,
            escape(&svc.name)
        ));
        for a in &svc.attributes {
            x.push_str(&format!(r#"<md:RequestedAttribute Name="{}"/>"#, escape(a)));
        }
        x.push_str("</md:AttributeConsumingService>");
    }
    x.push_str("</md:SPSSODescriptor>");
}

/// The opening `md:SPSSODescriptor` (AuthnRequestsSigned, WantAssertionsSigned) and the
/// parts the SPID and the CIE metadata share: the signing key, SLO (Redirect first,
/// then POST), transient NameIDFormat and the default ACS (index 0, POST). The caller
/// adds its AttributeConsumingServices and closes the element.
pub(super) fn sso_descriptor_head(x: &mut String, key: &SigningKey, slo_url: &str, acs_url: &str) {
    x.push_str(r#"<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol" AuthnRequestsSigned="true" WantAssertionsSigned="true">"#);
    x.push_str(&format!(
        r#"<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
        key.cert_base64()
    ));
    // The first SLO endpoint must accept GET (AgID's validator answers by Redirect there).
    for binding in [BINDING_REDIRECT, BINDING_POST] {
        x.push_str(&format!(
            r#"<md:SingleLogoutService Binding="{binding}" Location="{}"/>"#,
            escape(slo_url)
        ));
    }
    x.push_str(&format!(
        "<md:NameIDFormat>{FORMAT_TRANSIENT}</md:NameIDFormat>"
    ));
    x.push_str(&format!(
        r#"<md:AssertionConsumerService index="0" isDefault="true" Binding="{BINDING_POST}" Location="{}"/>"#,
        escape(acs_url)
    ));
}

/// `md:Organization`.
pub(super) fn organization(x: &mut String, o: &Organization) {
    x.push_str(&format!(
        concat!(
            r#"<md:Organization><md:OrganizationName xml:lang="it">{}</md:OrganizationName>"#,
            r#"<md:OrganizationDisplayName xml:lang="it">{}</md:OrganizationDisplayName>"#,
            r#"<md:OrganizationURL xml:lang="it">{}</md:OrganizationURL></md:Organization>"#
        ),
        escape(&o.name),
        escape(&o.display_name),
        escape(&o.url)
    ));
}

/// The `other` ContactPerson with the SPID extensions (IPACode / Public or Private).
fn contact_other(x: &mut String, d: &SpDescriptor) {
    let c = &d.contact;
    let ext = match &d.kind {
        SpKind::Public { ipa_code } => format!(
            "{}<spid:IPACode>{}</spid:IPACode>{}<spid:Public/>",
            opt_el("spid", "VATNumber", &c.vat_number),
            escape(ipa_code),
            opt_el("spid", "FiscalCode", &c.fiscal_code)
        ),
        SpKind::Private { .. } => format!(
            "{}{}<spid:Private/>",
            opt_el("spid", "VATNumber", &c.vat_number),
            opt_el("spid", "FiscalCode", &c.fiscal_code)
        ),
    };
    x.push_str(&format!(
        r#"<md:ContactPerson contactType="other"><md:Extensions>{ext}</md:Extensions><md:EmailAddress>{}</md:EmailAddress>{}</md:ContactPerson>"#,
        escape(&c.email),
        opt_el("md", "TelephoneNumber", &c.phone)
    ));
}

/// The `billing` ContactPerson of a private SP (fpa:CessionarioCommittente).
fn contact_billing(x: &mut String, b: &Billing) {
    let id_iva = match (&b.vat_country, &b.vat_number) {
        (Some(country), Some(number)) => format!(
            "<fpa:IdFiscaleIVA><fpa:IdPaese>{}</fpa:IdPaese><fpa:IdCodice>{}</fpa:IdCodice></fpa:IdFiscaleIVA>",
            escape(country),
            escape(number)
        ),
        _ => String::new(),
    };
    x.push_str(&format!(
        concat!(
            r#"<md:ContactPerson contactType="billing"><md:Extensions><fpa:CessionarioCommittente>"#,
            "<fpa:DatiAnagrafici>{id_iva}{cf}<fpa:Anagrafica><fpa:Denominazione>{name}</fpa:Denominazione></fpa:Anagrafica></fpa:DatiAnagrafici>",
            "<fpa:Sede><fpa:Indirizzo>{addr}</fpa:Indirizzo>{num}<fpa:CAP>{cap}</fpa:CAP><fpa:Comune>{comune}</fpa:Comune>{prov}<fpa:Nazione>{nation}</fpa:Nazione></fpa:Sede>",
            "</fpa:CessionarioCommittente></md:Extensions><md:EmailAddress>{email}</md:EmailAddress></md:ContactPerson>"
        ),
        id_iva = id_iva,
        cf = opt_el("fpa", "CodiceFiscale", &b.fiscal_code),
        name = escape(&b.company_name),
        addr = escape(&b.address),
        num = opt_el("fpa", "NumeroCivico", &b.street_number),
        cap = escape(&b.postal_code),
        comune = escape(&b.municipality),
        prov = opt_el("fpa", "Provincia", &b.province),
        nation = escape(&b.nation),
        email = escape(&b.email),
    ));
}

/// AttributeConsumingService index of the eIDAS minimum attribute set (FICEP).
pub const EIDAS_MINIMUM_INDEX: u16 = 99;
/// AttributeConsumingService index of the eIDAS full attribute set (FICEP).
pub const EIDAS_FULL_INDEX: u16 = 100;

/// The two AttributeConsumingServices FICEP (the Italian eIDAS node) reads from a SPID
/// SP's metadata: 99 "eIDAS Natural Person Minimum Attribute Set" and 100 "eIDAS
/// Natural Person Full Attribute Set", named and filled as the eIDAS notice and
/// spid-sp-test's `ficep-eidas-sp` profile (constants `FICEP_*`) have them. The
/// eIDAS PersonIdentifier arrives in `spidCode`; an eIDAS user has no `fiscalNumber`.
pub fn eidas_attribute_services() -> [AttributeService; 2] {
    let minimum = ["spidCode", "name", "familyName", "dateOfBirth"];
    let full = minimum
        .iter()
        .chain(["placeOfBirth", "address", "gender"].iter());
    [
        AttributeService {
            index: EIDAS_MINIMUM_INDEX,
            name: "eIDAS Natural Person Minimum Attribute Set".to_owned(),
            attributes: minimum.iter().map(|a| (*a).to_owned()).collect(),
        },
        AttributeService {
            index: EIDAS_FULL_INDEX,
            name: "eIDAS Natural Person Full Attribute Set".to_owned(),
            attributes: full.map(|a| (*a).to_owned()).collect(),
        },
    ]
}
