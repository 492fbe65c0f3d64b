//! SPID-compliant SP signing key and self-signed certificate (Avviso SPID n.29 v3;
//! rules catalog §1.10, checked by AgID's `spid-compliant-certificates` validator).
//!
//! Used by `polis-gateway keygen` and by tests that mint fresh SP and IdP keys at
//! runtime. Key generation is CPU-heavy (tens of milliseconds to seconds for
//! 3072/4096-bit keys): async callers should run [`generate`](crate::keygen::generate) in
//! `tokio::task::spawn_blocking`.
//!
//! What a generated SP certificate carries (each item is asserted by the tests below):
//!
//! | item | value |
//! |---|---|
//! | key | RSA, 2048 / 3072 / 4096 bits, e = 65537, private key as PKCS#8 PEM |
//! | signature | `sha256WithRSAEncryption`, self-signed, X.509 v3, random 159-bit serial |
//! | subject | `C`, `L`, `O`, `organizationIdentifier` (2.5.4.97), `CN`, `uri` (2.5.4.83) — nothing else |
//! | keyUsage | **critical**, digitalSignature + nonRepudiation only |
//! | basicConstraints | non-critical, `CA:FALSE` |
//! | certificatePolicies | non-critical: `1.3.76.16.6` (userNotice "agIDcert") and `1.3.76.16.4.2.1` ("cert_SP_Pub") or `1.3.76.16.4.3.1` ("cert_SP_Priv") |
//! | subjectKeyIdentifier | non-critical, SHA-1 of the public key (as AgID's reference generator does) |
//!
//! The `certificatePolicies` value is DER-encoded by hand (`certificate_policies_der`):
//! the openssl crate has no builder for policy qualifiers, and its config-string path
//! (`X509Extension::new_nid` with `@section` references) needs an `openssl::conf::Conf`
//! loaded from text, which the crate cannot do without `unsafe`.

use openssl::asn1::{Asn1Integer, Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectKeyIdentifier};
use openssl::x509::{X509, X509Builder, X509Extension, X509Name, X509NameBuilder};

/// Which SPID sector the Service Provider belongs to; selects the
/// `organizationIdentifier` syntax and the sector certificate policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpSector {
    /// Public administration: `PA:IT-<codice IPA>`, policy `1.3.76.16.4.2.1` (`cert_SP_Pub`).
    Public,
    /// Private SP: `VATIT-<partita IVA>` or `CF:IT-<codice fiscale>`, policy
    /// `1.3.76.16.4.3.1` (`cert_SP_Priv`).
    Private,
}

/// Everything needed to mint an SP signing certificate. Field values must match
/// the SP metadata (`md:Organization`, `entityID`), as the rules require.
#[derive(Debug, Clone)]
pub struct CertRequest {
    /// Public or private sector.
    pub sector: SpSector,
    /// Subject `commonName` (2.5.4.3) = metadata `OrganizationDisplayName`; at most 64 characters.
    pub common_name: String,
    /// Subject `organizationName` (2.5.4.10) = metadata `OrganizationName`; at most 64 characters.
    pub organization_name: String,
    /// Subject `uri` (2.5.4.83) = the SP `entityID`: an absolute URI, at most 1024 characters.
    pub entity_id: String,
    /// Subject `organizationIdentifier` (2.5.4.97): `PA:IT-<ipa>` (public, 1–16
    /// non-space characters after the prefix) or `VATIT-<11 digits>` /
    /// `CF:IT-<16 alphanumerics>` (private).
    pub organization_identifier: String,
    /// Subject `countryName` (2.5.4.6): ISO 3166-1 alpha-2, upper case, e.g. `IT`.
    pub country: String,
    /// Subject `localityName` (2.5.4.7): the full city name, e.g. `Roma`; at most 128 characters.
    pub locality: String,
    /// RSA modulus size: one of [`ALLOWED_KEY_BITS`] ([`DEFAULT_KEY_BITS`] if unsure).
    pub key_bits: u32,
    /// Validity in days from now, `1..=`[`MAX_DAYS`].
    pub days: u32,
}

/// Why a key or certificate could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    /// An input field breaks a §1.10 rule; `field` is the [`CertRequest`] field name.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// OpenSSL failed while generating the key or building the certificate.
    #[error("openssl: {0}")]
    Openssl(#[from] ErrorStack),
}

/// A freshly generated key pair and certificate, both PEM-encoded.
///
/// `Debug` is implemented by hand and never prints the private key.
pub struct GeneratedCert {
    /// The RSA private key, unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub key_pem: Vec<u8>,
    /// The self-signed X.509 v3 certificate, PEM (`-----BEGIN CERTIFICATE-----`).
    pub cert_pem: Vec<u8>,
}

impl std::fmt::Debug for GeneratedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedCert")
            .field("key_pem", &"<redacted>")
            .field("cert_pem", &String::from_utf8_lossy(&self.cert_pem))
            .finish()
    }
}

/// RSA key sizes accepted by the SPID certificate validator (CERT `key_type_and_size`).
pub const ALLOWED_KEY_BITS: [u32; 3] = [2048, 3072, 4096];
/// Key size used by `polis-gateway keygen` unless told otherwise.
pub const DEFAULT_KEY_BITS: u32 = 3072;
/// Upper bound on validity (100 years): keeps the `notAfter` arithmetic far from overflow.
pub const MAX_DAYS: u32 = 36_500;
/// Validity of [`generate_idp_test_cert`] certificates when `days` is 0 (10 years).
pub const IDP_TEST_CERT_DEFAULT_DAYS: u32 = 3_650;

// Object identifiers, dotted. `uri` (2.5.4.83) is unknown to OpenSSL 3.0, and the
// dotted form of organizationIdentifier works on every OpenSSL version, so the
// subject is built from dotted OIDs rather than short names.
const OID_URI: &str = "2.5.4.83";
const OID_ORGANIZATION_IDENTIFIER: &str = "2.5.4.97";
const OID_CERTIFICATE_POLICIES: &str = "2.5.29.32";
/// `id-qt-unotice` (RFC 5280 §4.2.1.4).
const OID_QT_UNOTICE: &str = "1.3.6.1.5.5.7.2.2";
/// AgID `agIDcert` policy.
const OID_POLICY_AGID_CERT: &str = "1.3.76.16.6";
/// `spid-publicsector-SP`.
const OID_POLICY_SPID_PUBLIC_SP: &str = "1.3.76.16.4.2.1";
/// `spid-privatesector-SP`.
const OID_POLICY_SPID_PRIVATE_SP: &str = "1.3.76.16.4.3.1";

const EXPLICIT_TEXT_AGID_CERT: &str = "agIDcert";
const EXPLICIT_TEXT_PUBLIC_SP: &str = "cert_SP_Pub";
const EXPLICIT_TEXT_PRIVATE_SP: &str = "cert_SP_Priv";

/// X.520 upper bounds (RFC 5280 Appendix A); OpenSSL refuses longer values.
const UB_COMMON_NAME: usize = 64;
const UB_ORGANIZATION_NAME: usize = 64;
const UB_LOCALITY_NAME: usize = 128;
/// SAML metadata schema: `entityID` is an anyURI of at most 1024 characters.
const MAX_ENTITY_ID: usize = 1024;

impl SpSector {
    /// The sector policy OID and its userNotice explicit text.
    fn policy(self) -> (&'static str, &'static str) {
        match self {
            SpSector::Public => (OID_POLICY_SPID_PUBLIC_SP, EXPLICIT_TEXT_PUBLIC_SP),
            SpSector::Private => (OID_POLICY_SPID_PRIVATE_SP, EXPLICIT_TEXT_PRIVATE_SP),
        }
    }
}

impl CertRequest {
    /// Checks every field against §1.10 without touching OpenSSL; the error names
    /// the first offending field.
    pub fn validate(&self) -> Result<(), KeygenError> {
        check_text("common_name", &self.common_name, UB_COMMON_NAME)?;
        check_text(
            "organization_name",
            &self.organization_name,
            UB_ORGANIZATION_NAME,
        )?;
        check_entity_id(&self.entity_id)?;
        check_organization_identifier(self.sector, &self.organization_identifier)?;
        check_country(&self.country)?;
        check_text("locality", &self.locality, UB_LOCALITY_NAME)?;
        check_key_bits(self.key_bits)?;
        check_days("days", self.days)?;
        Ok(())
    }
}

/// Which federation a generated SP certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertProfile {
    /// SPID (Avviso 29 v3): the subject above plus AgID's certificatePolicies.
    Spid,
    /// "Entra con CIE" (CIE manual, `pki.rst`): RSA (we accept 2048, 3072 or 4096 bits,
    /// above the manual's 1024 minimum; `keygen` makes 3072), SHA-256; the same
    /// subject — `C`, `O`, `organizationIdentifier` and `CN`, which ETSI EN 319 412-3
    /// asks of a legal person's seal, plus `L` and `uri` = entityID — and none of the
    /// X.520 attributes the manual forbids in a seal ([`CIE_FORBIDDEN_SUBJECT_OIDS`]);
    /// keyUsage digitalSignature + nonRepudiation (critical), `CA:FALSE`, no AgID
    /// policies (they are SPID's).
    Cie,
}

/// Subject attributes the CIE manual forbids in a seal certificate (`pki.rst`): name
/// (2.5.4.41), surname (2.5.4.4 — the manual prints 2.5.4.42, which is givenName: both
/// are refused), givenName (2.5.4.42), initials (2.5.4.43), generationQualifier
/// (2.5.4.44), familyInformation (2.5.4.64), pseudonym (2.5.4.65).
pub const CIE_FORBIDDEN_SUBJECT_OIDS: [&str; 7] = [
    "2.5.4.41", "2.5.4.4", "2.5.4.42", "2.5.4.43", "2.5.4.44", "2.5.4.64", "2.5.4.65",
];

/// Subject attributes a CIE seal certificate must carry (ETSI EN 319 412-3 §4.2.1:
/// countryName, organizationName, organizationIdentifier, commonName).
pub const CIE_REQUIRED_SUBJECT_OIDS: [&str; 4] = ["2.5.4.6", "2.5.4.10", "2.5.4.97", "2.5.4.3"];

/// Refuses a certificate the CIE federation would not accept as a seal: a forbidden
/// subject attribute, a required one missing, a non-RSA or under-2048-bit key, or a
/// signature digest below SHA-256. The error's `field` is `certificate`.
pub fn check_cie_certificate(cert: &X509) -> Result<(), KeygenError> {
    for bad in CIE_FORBIDDEN_SUBJECT_OIDS {
        if subject_has(cert, bad)? {
            return Err(invalid(
                "certificate",
                format!("subject attribute {bad} is forbidden in a CIE seal certificate"),
            ));
        }
    }
    for required in CIE_REQUIRED_SUBJECT_OIDS {
        if !subject_has(cert, required)? {
            return Err(invalid(
                "certificate",
                format!("subject attribute {required} is required in a CIE seal certificate"),
            ));
        }
    }
    let key = cert.public_key()?;
    if key.rsa().is_err() || key.bits() < 2048 {
        return Err(invalid(
            "certificate",
            "the key must be RSA, at least 2048 bits",
        ));
    }
    let alg = cert.signature_algorithm().object().nid();
    let strong = [
        openssl::nid::Nid::SHA256WITHRSAENCRYPTION,
        openssl::nid::Nid::SHA384WITHRSAENCRYPTION,
        openssl::nid::Nid::SHA512WITHRSAENCRYPTION,
    ];
    if !strong.contains(&alg) {
        return Err(invalid(
            "certificate",
            "the signature must be RSA with SHA-256 or stronger",
        ));
    }
    Ok(())
}

/// Whether the subject has an attribute of type `dotted` (both sides printed by
/// OpenSSL: its name for a known OID, the dotted form otherwise).
fn subject_has(cert: &X509, dotted: &str) -> Result<bool, ErrorStack> {
    let want = Asn1Object::from_str(dotted)?.to_string();
    Ok(cert
        .subject_name()
        .entries()
        .any(|e| e.object().to_string() == want))
}

/// Validates `req`, then generates an RSA key and a self-signed SPID SP certificate.
pub fn generate(req: &CertRequest) -> Result<GeneratedCert, KeygenError> {
    generate_for(req, CertProfile::Spid)
}

/// Validates `req`, then generates an RSA key and a self-signed SP certificate for
/// `profile` (the subject is the same; only SPID carries AgID's policies).
pub fn generate_for(req: &CertRequest, profile: CertProfile) -> Result<GeneratedCert, KeygenError> {
    req.validate()?;
    let key = rsa_key(req.key_bits)?;

    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("C", &req.country)?;
    name.append_entry_by_text("L", &req.locality)?;
    name.append_entry_by_text("O", &req.organization_name)?;
    name.append_entry_by_text(OID_ORGANIZATION_IDENTIFIER, &req.organization_identifier)?;
    name.append_entry_by_text("CN", &req.common_name)?;
    name.append_entry_by_text(OID_URI, &req.entity_id)?;
    let name = name.build();

    let mut builder = self_signed_builder(&key, &name, req.days)?;
    builder.append_extension(
        KeyUsage::new()
            .critical()
            .digital_signature()
            .non_repudiation()
            .build()?,
    )?;
    builder.append_extension(BasicConstraints::new().build()?)?;
    let ski = SubjectKeyIdentifier::new().build(&builder.x509v3_context(None, None))?;
    builder.append_extension(ski)?;
    if profile == CertProfile::Spid {
        builder.append_extension(certificate_policies_extension(req.sector)?)?;
    }
    builder.sign(&key, MessageDigest::sha256())?;
    finish(&key, builder.build())
}

/// A plain self-signed RSA-2048 certificate for test/mock identity providers (CN given,
/// 10-year or `days` validity, SHA-256, keyUsage digitalSignature) — no SPID SP extensions.
///
/// `days == 0` means [`IDP_TEST_CERT_DEFAULT_DAYS`] (10 years). The keyUsage
/// extension is critical and carries digitalSignature only.
pub fn generate_idp_test_cert(common_name: &str, days: u32) -> Result<GeneratedCert, KeygenError> {
    check_text("common_name", common_name, UB_COMMON_NAME)?;
    let days = if days == 0 {
        IDP_TEST_CERT_DEFAULT_DAYS
    } else {
        days
    };
    check_days("days", days)?;
    let key = rsa_key(2048)?;

    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", common_name)?;
    let name = name.build();

    let mut builder = self_signed_builder(&key, &name, days)?;
    builder.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
    builder.sign(&key, MessageDigest::sha256())?;
    finish(&key, builder.build())
}

fn rsa_key(bits: u32) -> Result<PKey<Private>, KeygenError> {
    let rsa = Rsa::generate(bits)?;
    Ok(PKey::from_rsa(rsa)?)
}

/// X.509 v3, random serial, subject = issuer = `name`, valid from now for `days`.
fn self_signed_builder(
    key: &PKey<Private>,
    name: &X509Name,
    days: u32,
) -> Result<X509Builder, KeygenError> {
    let mut builder = X509Builder::new()?;
    builder.set_version(2)?; // 2 = X.509 v3
    let serial = random_serial()?;
    builder.set_serial_number(&serial)?;
    builder.set_subject_name(name)?;
    builder.set_issuer_name(name)?;
    builder.set_pubkey(key)?;
    let not_before = Asn1Time::days_from_now(0)?;
    let not_after = Asn1Time::days_from_now(days)?;
    builder.set_not_before(&not_before)?;
    builder.set_not_after(&not_after)?;
    Ok(builder)
}

/// A positive serial of exactly 159 bits from the CSPRNG: ≥ 64 bits of entropy
/// (CA/B Forum) and at most 20 octets once DER-encoded (RFC 5280 §4.1.2.2).
fn random_serial() -> Result<Asn1Integer, ErrorStack> {
    let mut serial = BigNum::new()?;
    serial.rand(159, MsbOption::ONE, false)?;
    serial.to_asn1_integer()
}

fn finish(key: &PKey<Private>, cert: X509) -> Result<GeneratedCert, KeygenError> {
    Ok(GeneratedCert {
        key_pem: key.private_key_to_pem_pkcs8()?,
        cert_pem: cert.to_pem()?,
    })
}

/// The non-critical `certificatePolicies` extension for `sector`.
fn certificate_policies_extension(sector: SpSector) -> Result<X509Extension, ErrorStack> {
    let oid = Asn1Object::from_str(OID_CERTIFICATE_POLICIES)?;
    let value = Asn1OctetString::new_from_bytes(&certificate_policies_der(sector)?)?;
    X509Extension::new_from_der(&oid, false, &value)
}

// ---------------------------------------------------------------------------
// A minimal DER encoder for the one fixed structure we need (RFC 5280 §4.2.1.4):
//
//   certificatePolicies ::= SEQUENCE SIZE (1..MAX) OF PolicyInformation
//   PolicyInformation ::= SEQUENCE {
//        policyIdentifier   CertPolicyId,                     -- OBJECT IDENTIFIER
//        policyQualifiers   SEQUENCE SIZE (1..MAX) OF PolicyQualifierInfo OPTIONAL }
//   PolicyQualifierInfo ::= SEQUENCE {
//        policyQualifierId  PolicyQualifierId,                -- id-qt-unotice
//        qualifier          ANY DEFINED BY policyQualifierId } -- UserNotice
//   UserNotice ::= SEQUENCE {
//        noticeRef          NoticeReference OPTIONAL,         -- omitted
//        explicitText       DisplayText OPTIONAL }            -- UTF8String
//
// explicitText is a UTF8String, as RFC 5280 says conforming CAs SHOULD use and as
// AgID's Python generator (cryptography's `UserNotice`) emits. Every element here
// is a definite-length TLV, so DER is just "tag, minimal length, content".
// ---------------------------------------------------------------------------

const DER_TAG_OID: u8 = 0x06;
const DER_TAG_UTF8STRING: u8 = 0x0c;
const DER_TAG_SEQUENCE: u8 = 0x30;

/// DER value of `certificatePolicies` for `sector`: the agIDcert policy first,
/// then the sector policy, each with one userNotice carrying its explicit text.
pub(crate) fn certificate_policies_der(sector: SpSector) -> Result<Vec<u8>, ErrorStack> {
    let (sector_oid, sector_text) = sector.policy();
    let mut policies = policy_information(OID_POLICY_AGID_CERT, EXPLICIT_TEXT_AGID_CERT)?;
    policies.extend(policy_information(sector_oid, sector_text)?);
    Ok(der_tlv(DER_TAG_SEQUENCE, &policies))
}

/// `PolicyInformation { oid, [ PolicyQualifierInfo { id-qt-unotice, UserNotice { text } } ] }`.
fn policy_information(policy_oid: &str, explicit_text: &str) -> Result<Vec<u8>, ErrorStack> {
    let user_notice = der_tlv(
        DER_TAG_SEQUENCE,
        &der_tlv(DER_TAG_UTF8STRING, explicit_text.as_bytes()),
    );
    let mut qualifier_info = der_oid(OID_QT_UNOTICE)?;
    qualifier_info.extend(user_notice);
    let qualifiers = der_tlv(
        DER_TAG_SEQUENCE,
        &der_tlv(DER_TAG_SEQUENCE, &qualifier_info),
    );
    let mut info = der_oid(policy_oid)?;
    info.extend(qualifiers);
    Ok(der_tlv(DER_TAG_SEQUENCE, &info))
}

/// An OBJECT IDENTIFIER TLV; OpenSSL does the base-128 arc encoding.
fn der_oid(dotted: &str) -> Result<Vec<u8>, ErrorStack> {
    let oid = Asn1Object::from_str(dotted)?;
    Ok(der_tlv(DER_TAG_OID, oid.as_slice()))
}

/// One DER TLV: `tag`, the length in minimal form (short form below 128, else
/// `0x80 | n` followed by n big-endian octets), then `content`.
fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 10);
    out.push(tag);
    match u8::try_from(content.len()) {
        Ok(short) if short < 0x80 => out.push(short),
        _ => {
            let be = content.len().to_be_bytes();
            let significant: Vec<u8> = be.iter().copied().skip_while(|b| *b == 0).collect();
            // At most size_of::<usize>() (≤ 16) octets, so the cast cannot truncate.
            out.push(0x80 | (significant.len() as u8));
            out.extend(significant);
        }
    }
    out.extend_from_slice(content);
    out
}

// ---------------------------------------------------------------------------
// Input checks (§1.10 plus the X.520 bounds OpenSSL enforces).
// ---------------------------------------------------------------------------

fn invalid(field: &'static str, reason: impl Into<String>) -> KeygenError {
    KeygenError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Non-blank, no surrounding whitespace, no control characters, at most `max` characters.
fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), KeygenError> {
    if value.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.trim() != value {
        return Err(invalid(field, "must not start or end with whitespace"));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    let len = value.chars().count();
    if len > max {
        return Err(invalid(
            field,
            format!("must be at most {max} characters (got {len})"),
        ));
    }
    Ok(())
}

fn check_entity_id(entity_id: &str) -> Result<(), KeygenError> {
    check_text("entity_id", entity_id, MAX_ENTITY_ID)?;
    if entity_id.chars().any(char::is_whitespace) {
        return Err(invalid("entity_id", "must not contain whitespace"));
    }
    url::Url::parse(entity_id)
        .map_err(|e| invalid("entity_id", format!("must be an absolute URI: {e}")))?;
    Ok(())
}

/// Public: `^PA:IT-\S{1,16}$`. Private: `^(CF:IT-[a-zA-Z0-9]{16}|VATIT-\d{11})$`
/// (ASCII digits and letters only — stricter than Python's Unicode `\d`).
///
/// Caveat: the rules catalog allows 16 characters after `PA:IT-` (school IPA codes
/// such as `istsc_rmpc05000c` are 16 long), but every published version of AgID's
/// `spid-compliant-certificates` validator checks `^PA:IT-\S{1,11}$`, so codes of
/// 12–16 characters pass here and fail that tool.
fn check_organization_identifier(sector: SpSector, value: &str) -> Result<(), KeygenError> {
    const FIELD: &str = "organization_identifier";
    let ok = match sector {
        SpSector::Public => value.strip_prefix("PA:IT-").is_some_and(|ipa| {
            let n = ipa.chars().count();
            (1..=16).contains(&n) && !ipa.chars().any(char::is_whitespace)
        }),
        SpSector::Private => {
            let cf = value
                .strip_prefix("CF:IT-")
                .is_some_and(|cf| cf.len() == 16 && cf.chars().all(|c| c.is_ascii_alphanumeric()));
            let vat = value
                .strip_prefix("VATIT-")
                .is_some_and(|vat| vat.len() == 11 && vat.chars().all(|c| c.is_ascii_digit()));
            cf || vat
        }
    };
    if ok {
        return Ok(());
    }
    let expected = match sector {
        SpSector::Public => "PA:IT-<codice IPA, 1-16 non-space characters>",
        SpSector::Private => "VATIT-<11 digits> or CF:IT-<16 letters/digits>",
    };
    Err(invalid(
        FIELD,
        format!("{value:?} does not match {expected} for a {sector:?} SP"),
    ))
}

fn check_country(country: &str) -> Result<(), KeygenError> {
    if country.len() == 2 && country.chars().all(|c| c.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(invalid(
            "country",
            format!(
                "{country:?} is not an ISO 3166-1 alpha-2 code (two upper-case letters, e.g. \"IT\")"
            ),
        ))
    }
}

fn check_key_bits(bits: u32) -> Result<(), KeygenError> {
    if ALLOWED_KEY_BITS.contains(&bits) {
        Ok(())
    } else {
        Err(invalid(
            "key_bits",
            format!("{bits} is not one of 2048, 3072, 4096"),
        ))
    }
}

fn check_days(field: &'static str, days: u32) -> Result<(), KeygenError> {
    if (1..=MAX_DAYS).contains(&days) {
        Ok(())
    } else {
        Err(invalid(field, format!("{days} is not in 1..={MAX_DAYS}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::nid::Nid;
    use openssl::pkey::Id;
    use std::collections::BTreeMap;

    const ENTITY_ID: &str = "https://polis.example.gov.it/spid";

    fn request(sector: SpSector) -> CertRequest {
        let organization_identifier = match sector {
            SpSector::Public => "PA:IT-m_it",
            SpSector::Private => "VATIT-12345678901",
        };
        CertRequest {
            sector,
            common_name: "Istanze OnLine".into(),
            organization_name: "Ministero dell'Istruzione e del Merito".into(),
            entity_id: ENTITY_ID.into(),
            organization_identifier: organization_identifier.into(),
            country: "IT".into(),
            locality: "Roma".into(),
            key_bits: 2048,
            days: 730,
        }
    }

    /// Exact DER encodings of the extensions, as `Extension ::= SEQUENCE { extnID,
    /// critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }` (absent BOOLEAN =
    /// non-critical). The certificatePolicies values were produced independently with
    /// `openssl asn1parse -genconf` (UTF8 explicit texts), not with our encoder.
    const KEY_USAGE_CRITICAL_DS_NR: &str = "300e0603551d0f0101ff0404030206c0";
    const KEY_USAGE_CRITICAL_DS_ONLY: &str = "300e0603551d0f0101ff0404030207 80";
    const BASIC_CONSTRAINTS_CA_FALSE: &str = "30090603551d13040230 00";
    const POLICIES_PUBLIC: &str = "3049302006042b4c10063018301606082b06010505070202300a0c086167494463657274302506062b4c10040201301b301906082b06010505070202300d0c0b636572745f53505f507562";
    const POLICIES_PRIVATE: &str = "304a302006042b4c10063018301606082b06010505070202300a0c086167494463657274302606062b4c10040301301c301a06082b06010505070202300e0c0c636572745f53505f50726976";

    fn bytes(hex_with_spaces: &str) -> Vec<u8> {
        hex::decode(hex_with_spaces.replace(' ', "")).unwrap()
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// The full `Extension` TLV for a non-critical certificatePolicies with `value`.
    fn policies_extension(value_hex: &str) -> Vec<u8> {
        let value = bytes(value_hex);
        let mut ext = der_tlv(DER_TAG_OID, &[0x55, 0x1d, 0x20]);
        ext.extend(der_tlv(0x04, &value));
        der_tlv(DER_TAG_SEQUENCE, &ext)
    }

    /// Subject entries as (OID text as OpenSSL prints it, value).
    fn subject(cert: &X509) -> BTreeMap<String, String> {
        cert.subject_name()
            .entries()
            .map(|e| (e.object().to_string(), e.data().to_string().unwrap()))
            .collect()
    }

    fn oid_text(dotted: &str) -> String {
        Asn1Object::from_str(dotted).unwrap().to_string()
    }

    fn assert_spid_cert(sector: SpSector) {
        let req = request(sector);
        let out = generate(&req).unwrap();
        let cert = X509::from_pem(&out.cert_pem).unwrap();
        let der = cert.to_der().unwrap();

        // Key: RSA 2048 (as requested), PKCS#8 PEM, matching the certificate.
        assert!(out.key_pem.starts_with(b"-----BEGIN PRIVATE KEY-----\n"));
        let key = PKey::private_key_from_pem(&out.key_pem).unwrap();
        assert_eq!(key.id(), Id::RSA);
        assert_eq!(key.bits(), 2048);
        let public = cert.public_key().unwrap();
        assert_eq!(public.id(), Id::RSA);
        assert_eq!(public.bits(), 2048);
        assert!(public.public_eq(&key));

        // Signature: sha256WithRSAEncryption, self-signed, v3, random serial.
        assert_eq!(
            cert.signature_algorithm().object().nid(),
            Nid::SHA256WITHRSAENCRYPTION
        );
        assert!(cert.verify(&public).unwrap());
        assert_eq!(cert.version(), 2);
        assert_eq!(
            cert.issuer_name().to_der().unwrap(),
            cert.subject_name().to_der().unwrap()
        );
        let serial = cert.serial_number().to_bn().unwrap();
        assert!(
            serial.num_bits() >= 64,
            "serial has {} bits",
            serial.num_bits()
        );
        assert!(!serial.is_negative());

        // Validity: days as requested.
        let diff = cert.not_before().diff(cert.not_after()).unwrap();
        assert_eq!(diff.days, 730);

        // Subject: exactly the six attributes, with the requested values.
        let subject = subject(&cert);
        let expected: BTreeMap<String, String> = [
            ("2.5.4.3", req.common_name.as_str()),
            ("2.5.4.10", req.organization_name.as_str()),
            ("2.5.4.83", ENTITY_ID),
            ("2.5.4.97", req.organization_identifier.as_str()),
            ("2.5.4.6", "IT"),
            ("2.5.4.7", "Roma"),
        ]
        .into_iter()
        .map(|(oid, v)| (oid_text(oid), v.to_string()))
        .collect();
        assert_eq!(subject, expected);
        for forbidden in [
            Nid::NAME,
            Nid::SURNAME,
            Nid::GIVENNAME,
            Nid::INITIALS,
            Nid::PSEUDONYM,
        ] {
            assert_eq!(cert.subject_name().entries_by_nid(forbidden).count(), 0);
        }

        // Extensions, byte-exact (criticality included).
        assert!(contains(&der, &bytes(KEY_USAGE_CRITICAL_DS_NR)), "keyUsage");
        assert!(
            contains(&der, &bytes(BASIC_CONSTRAINTS_CA_FALSE)),
            "basicConstraints"
        );
        let (policies, other) = match sector {
            SpSector::Public => (POLICIES_PUBLIC, POLICIES_PRIVATE),
            SpSector::Private => (POLICIES_PRIVATE, POLICIES_PUBLIC),
        };
        assert!(
            contains(&der, &policies_extension(policies)),
            "certificatePolicies"
        );
        assert!(!contains(&der, &bytes(other)));
        assert_eq!(certificate_policies_der(sector).unwrap(), bytes(policies));

        // The same, as OpenSSL's own parser renders it.
        let text = String::from_utf8(cert.to_text().unwrap()).unwrap();
        assert_text(&text, sector);
    }

    /// Assertions on `openssl x509 -text` output (library `to_text` or the CLI).
    fn assert_text(text: &str, sector: SpSector) {
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let after = |header: &str| -> &str {
            let i = lines
                .iter()
                .position(|l| *l == header)
                .unwrap_or_else(|| panic!("{header:?} not in:\n{text}"));
            lines[i + 1]
        };
        assert!(text.contains("Signature Algorithm: sha256WithRSAEncryption"));
        assert!(text.contains("Public-Key: (2048 bit)"));
        assert_eq!(
            after("X509v3 Key Usage: critical"),
            "Digital Signature, Non Repudiation"
        );
        assert_eq!(after("X509v3 Basic Constraints:"), "CA:FALSE");
        assert!(
            lines.contains(&"X509v3 Certificate Policies:"),
            "non-critical policies"
        );
        assert!(lines.contains(&"X509v3 Subject Key Identifier:"));
        assert!(lines.contains(&"Policy: 1.3.76.16.6"));
        assert!(lines.contains(&"Explicit Text: agIDcert"));
        let (policy, explicit, absent) = match sector {
            SpSector::Public => (
                "Policy: 1.3.76.16.4.2.1",
                "Explicit Text: cert_SP_Pub",
                "1.3.76.16.4.3.1",
            ),
            SpSector::Private => (
                "Policy: 1.3.76.16.4.3.1",
                "Explicit Text: cert_SP_Priv",
                "1.3.76.16.4.2.1",
            ),
        };
        assert!(lines.contains(&policy), "{policy} not in:\n{text}");
        assert!(lines.contains(&explicit), "{explicit} not in:\n{text}");
        assert!(!text.contains(absent));
    }

    #[test]
    fn public_certificate_meets_1_10() {
        assert_spid_cert(SpSector::Public);
    }

    #[test]
    fn private_certificate_meets_1_10() {
        assert_spid_cert(SpSector::Private);
    }

    #[test]
    fn cie_certificate_meets_pki_rst() {
        for sector in [SpSector::Public, SpSector::Private] {
            let req = request(sector);
            let out = generate_for(&req, CertProfile::Cie).unwrap();
            let cert = X509::from_pem(&out.cert_pem).unwrap();
            check_cie_certificate(&cert).unwrap();
            // RSA, SHA-256, the subject fields requested and nothing else.
            let key = PKey::private_key_from_pem(&out.key_pem).unwrap();
            assert_eq!((key.id(), key.bits()), (Id::RSA, 2048));
            assert_eq!(
                cert.signature_algorithm().object().nid(),
                Nid::SHA256WITHRSAENCRYPTION
            );
            let expected: BTreeMap<String, String> = [
                ("2.5.4.3", req.common_name.as_str()),
                ("2.5.4.10", req.organization_name.as_str()),
                ("2.5.4.83", ENTITY_ID),
                ("2.5.4.97", req.organization_identifier.as_str()),
                ("2.5.4.6", "IT"),
                ("2.5.4.7", "Roma"),
            ]
            .into_iter()
            .map(|(oid, v)| (oid_text(oid), v.to_string()))
            .collect();
            assert_eq!(subject(&cert), expected);
            for forbidden in CIE_FORBIDDEN_SUBJECT_OIDS {
                assert!(!subject_has(&cert, forbidden).unwrap(), "{forbidden}");
            }
            let der = cert.to_der().unwrap();
            assert!(contains(&der, &bytes(KEY_USAGE_CRITICAL_DS_NR)), "keyUsage");
            assert!(contains(&der, &bytes(BASIC_CONSTRAINTS_CA_FALSE)));
            // No AgID (SPID) policy in a CIE certificate.
            assert!(!contains(&der, &[0x55, 0x1d, 0x20]), "certificatePolicies");
        }
    }

    #[test]
    fn cie_check_refuses_forbidden_and_missing_subject_attributes() {
        let key = rsa_key(2048).unwrap();
        let build = |entries: &[(&str, &str)]| {
            let mut name = X509NameBuilder::new().unwrap();
            for (k, v) in entries {
                name.append_entry_by_text(k, v).unwrap();
            }
            let name = name.build();
            let mut b = self_signed_builder(&key, &name, 1).unwrap();
            b.sign(&key, MessageDigest::sha256()).unwrap();
            b.build()
        };
        let base = [
            ("C", "IT"),
            ("O", "Ente"),
            (OID_ORGANIZATION_IDENTIFIER, "PA:IT-m_pi"),
            ("CN", "Ente"),
        ];
        check_cie_certificate(&build(&base)).unwrap();
        for (oid, value) in [
            ("2.5.4.41", "Mario Rossi"),
            ("2.5.4.4", "Rossi"),
            ("2.5.4.42", "Mario"),
            ("2.5.4.43", "MR"),
            ("2.5.4.44", "Jr"),
            ("2.5.4.64", "famiglia"),
            ("2.5.4.65", "alias"),
        ] {
            let mut entries = base.to_vec();
            entries.push((oid, value));
            let e = check_cie_certificate(&build(&entries)).unwrap_err();
            assert!(e.to_string().contains(oid), "{oid}: {e}");
        }
        let e = check_cie_certificate(&build(&base[..3])).unwrap_err();
        assert!(e.to_string().contains("2.5.4.3"), "{e}");
        // SHA-1 is refused.
        let name = X509NameBuilder::new().unwrap();
        let mut name = name;
        for (k, v) in base {
            name.append_entry_by_text(k, v).unwrap();
        }
        let name = name.build();
        let mut b = self_signed_builder(&key, &name, 1).unwrap();
        b.sign(&key, MessageDigest::sha1()).unwrap();
        assert!(check_cie_certificate(&b.build()).is_err());
    }

    #[test]
    fn serials_differ() {
        let a = generate_idp_test_cert("idp-a", 1).unwrap();
        let b = generate_idp_test_cert("idp-a", 1).unwrap();
        let sa = X509::from_pem(&a.cert_pem)
            .unwrap()
            .serial_number()
            .to_bn()
            .unwrap();
        let sb = X509::from_pem(&b.cert_pem)
            .unwrap()
            .serial_number()
            .to_bn()
            .unwrap();
        assert_ne!(sa, sb);
    }

    #[test]
    fn openssl_cli_agrees() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        if Command::new("openssl").arg("version").output().is_err() {
            eprintln!("openssl CLI not installed: cross-check skipped");
            return;
        }
        for sector in [SpSector::Public, SpSector::Private] {
            let out = generate(&request(sector)).unwrap();
            let mut child = Command::new("openssl")
                .args(["x509", "-noout", "-text", "-nameopt", "oneline"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(&out.cert_pem)
                .unwrap();
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success());
            let text = String::from_utf8(output.stdout).unwrap();
            assert_text(&text, sector);
            assert!(text.contains(&format!("2.5.4.83 = {ENTITY_ID}")), "{text}");
            let org_id = &request(sector).organization_identifier;
            assert!(
                text.contains(&format!("organizationIdentifier = {org_id}")),
                "{text}"
            );
            assert!(text.contains("C = IT"));
            assert!(text.contains("L = Roma"));
            assert!(text.contains("CN = Istanze OnLine"));
        }
    }

    #[test]
    fn idp_test_cert_is_plain() {
        let out = generate_idp_test_cert("Mock IdP", 0).unwrap();
        let cert = X509::from_pem(&out.cert_pem).unwrap();
        let key = PKey::private_key_from_pem(&out.key_pem).unwrap();
        assert_eq!(key.bits(), 2048);
        assert!(cert.public_key().unwrap().public_eq(&key));
        assert_eq!(
            cert.signature_algorithm().object().nid(),
            Nid::SHA256WITHRSAENCRYPTION
        );
        assert_eq!(
            subject(&cert),
            BTreeMap::from([("commonName".to_string(), "Mock IdP".to_string())])
        );
        assert_eq!(cert.not_before().diff(cert.not_after()).unwrap().days, 3650);
        let der = cert.to_der().unwrap();
        assert!(contains(&der, &bytes(KEY_USAGE_CRITICAL_DS_ONLY)));
        let text = String::from_utf8(cert.to_text().unwrap()).unwrap();
        assert!(!text.contains("Certificate Policies"));
        assert!(!text.contains("Basic Constraints"));

        let short = generate_idp_test_cert("Mock IdP", 7).unwrap();
        let short = X509::from_pem(&short.cert_pem).unwrap();
        assert_eq!(short.not_before().diff(short.not_after()).unwrap().days, 7);
        assert!(matches!(
            generate_idp_test_cert("", 1),
            Err(KeygenError::Invalid {
                field: "common_name",
                ..
            })
        ));
    }

    fn field_of(req: &CertRequest) -> Option<&'static str> {
        match req.validate() {
            Ok(()) => None,
            Err(KeygenError::Invalid { field, .. }) => Some(field),
            Err(e) => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn organization_identifier_syntax() {
        let public_ok = [
            "PA:IT-c_h501",
            "PA:IT-m_it",
            "PA:IT-a",
            "PA:IT-1234567890123456",
        ];
        let public_bad = [
            "PA:IT-",
            "PA:IT-12345678901234567",
            "PA:IT-c h501",
            "PA:IT-c_h501 ",
            "pa:it-c_h501",
            "IT-c_h501",
            "VATIT-12345678901",
        ];
        let private_ok = [
            "VATIT-12345678901",
            "CF:IT-RSSMRA80A01H501U",
            "CF:IT-rssmra80a01h501u",
        ];
        let private_bad = [
            "VATIT-1234567890",
            "VATIT-123456789012",
            "VATIT-1234567890a",
            "VATIT-١٢٣٤٥٦٧٨٩٠١", // Arabic-Indic digits: Python's \d takes them, we do not
            "CF:IT-RSSMRA80A01H501",
            "CF:IT-RSSMRA80A01H501U1",
            "CF:IT-RSSMRA80A01H50_U",
            "PA:IT-c_h501",
            "IT12345678901",
        ];
        for (sector, ok, bad) in [
            (SpSector::Public, &public_ok[..], &public_bad[..]),
            (SpSector::Private, &private_ok[..], &private_bad[..]),
        ] {
            for v in ok {
                let mut req = request(sector);
                req.organization_identifier = v.to_string();
                assert_eq!(field_of(&req), None, "{v}");
            }
            for v in bad {
                let mut req = request(sector);
                req.organization_identifier = v.to_string();
                assert_eq!(field_of(&req), Some("organization_identifier"), "{v}");
            }
        }
    }

    #[test]
    fn invalid_fields_are_named() {
        type Edit = fn(&mut CertRequest);
        let cases: [(&str, Edit); 14] = [
            ("key_bits", |r| r.key_bits = 1024),
            ("key_bits", |r| r.key_bits = 2047),
            ("key_bits", |r| r.key_bits = 8192),
            ("country", |r| r.country = "it".into()),
            ("country", |r| r.country = "ITA".into()),
            ("country", |r| r.country = String::new()),
            ("common_name", |r| r.common_name = " ".into()),
            ("common_name", |r| r.common_name = "x".repeat(65)),
            ("organization_name", |r| r.organization_name = "A\nB".into()),
            ("entity_id", |r| r.entity_id = "not a uri".into()),
            ("entity_id", |r| {
                r.entity_id = "polis.example.it/spid".into()
            }),
            ("locality", |r| r.locality = String::new()),
            ("days", |r| r.days = 0),
            ("days", |r| r.days = MAX_DAYS + 1),
        ];
        for (field, edit) in cases {
            let mut req = request(SpSector::Public);
            edit(&mut req);
            assert_eq!(field_of(&req), Some(field), "{req:?}");
            // generate() validates before doing any work.
            match generate(&req) {
                Err(KeygenError::Invalid { field: f, reason }) => {
                    assert_eq!(f, field);
                    assert!(!reason.is_empty());
                }
                other => panic!("{field}: expected Invalid, got {other:?}"),
            }
        }
        let mut ok = request(SpSector::Public);
        ok.key_bits = DEFAULT_KEY_BITS;
        ok.common_name = "x".repeat(64);
        assert_eq!(field_of(&ok), None);
    }

    #[test]
    fn error_message_names_field() {
        let mut req = request(SpSector::Private);
        req.organization_identifier = "PA:IT-c_h501".into();
        let msg = req.validate().unwrap_err().to_string();
        assert!(
            msg.starts_with("invalid organization_identifier: "),
            "{msg}"
        );
    }

    #[test]
    fn der_lengths() {
        assert_eq!(der_tlv(0x04, &[]), vec![0x04, 0x00]);
        assert_eq!(der_tlv(0x04, &[7; 127])[..2], [0x04, 0x7f]);
        assert_eq!(der_tlv(0x04, &[7; 128])[..3], [0x04, 0x81, 0x80]);
        assert_eq!(der_tlv(0x04, &[7; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(der_tlv(0x04, &[7; 300]).len(), 304);
        assert_eq!(
            der_oid(OID_QT_UNOTICE).unwrap(),
            bytes("06082b06010505070202")
        );
    }

    #[test]
    fn sector_deserializes_snake_case() {
        let s: SpSector = serde_json::from_str("\"public\"").unwrap();
        assert_eq!(s, SpSector::Public);
        let s: SpSector = serde_json::from_str("\"private\"").unwrap();
        assert_eq!(s, SpSector::Private);
    }

    #[test]
    fn debug_redacts_key() {
        let out = generate_idp_test_cert("dbg", 1).unwrap();
        let dbg = format!("{out:?}");
        assert!(dbg.contains("<redacted>"));
        assert!(!dbg.contains("PRIVATE KEY"));
    }
}
