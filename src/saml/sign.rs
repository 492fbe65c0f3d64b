//! Keys, XML-DSig templates, the signature-shape allowlist, and Redirect-binding
//! query signatures.
//!
//! Security invariants kept here:
//! - inbound signatures are verified only with certificates the caller passes in
//!   (from IdP metadata); `KeyInfo` in a message is never used;
//! - before xmlsec sees a signature, [`check_signature_shape`] allows exactly one
//!   `Reference` whose URI is `#` + the parent's ID, only the enveloped-signature and
//!   exclusive-c14n transforms, RSA-SHA256/384/512 and SHA-256/384/512 digests, no
//!   `Object`, no `RetrievalMethod`: no remote reference is ever dereferenced and no
//!   XSLT ever runs;
//! - the one exception to `#<parent ID>` is [`ReferenceRule::IdOrWholeDocument`]:
//!   `URI=""` (XML-DSig: the whole document without comments, which the
//!   enveloped-signature transform turns into the root minus this signature) for the
//!   `ds:Signature` that is a **direct child of the root** of a signed **metadata**
//!   document (FICEP's production metadata is signed so). Only
//!   `idp_metadata::parse_signed_aggregate` asks for it, for the root signature alone;
//!   SAML protocol messages (Response, Assertion, LogoutRequest/Response,
//!   AuthnRequest: SPID wants `#ID`) and nested metadata entities use
//!   [`ReferenceRule::IdOnly`]. The same rule goes to [`verify_and_reduce`], so xmlsec
//!   itself enables the empty URI type only then, and only for a signature whose
//!   parent is the document's root element (our patched samael); an absent `URI`
//!   (which xmlsec would also read as the whole document) is always refused;
//! - outbound signatures are RSA-SHA256 over exc-c14n with a SHA-256 digest
//!   (samael's own template defaults to SHA-1).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private, Public};
use openssl::sign::{Signer, Verifier};
use openssl::x509::X509;
use samael::crypto::{
    AllowedSignatureAlgorithm, CertificateDer, Crypto, CryptoProvider, ReduceMode,
};

use super::error::SamlError;
use super::xml::{Element, escape};
use super::{NS_DS, xml};

/// `SignatureMethod` for RSA-SHA256.
pub const ALG_RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
pub(crate) const ALG_RSA_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384";
pub(crate) const ALG_RSA_SHA512: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512";
pub(crate) const DIGEST_SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
pub(crate) const DIGEST_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#sha384";
pub(crate) const DIGEST_SHA512: &str = "http://www.w3.org/2001/04/xmlenc#sha512";
pub(crate) const TRANSFORM_ENVELOPED: &str =
    "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
pub(crate) const C14N_EXCLUSIVE: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";

/// Signature algorithms accepted on inbound messages (SPID: RSA with SHA-256 or better).
pub const ALLOWED_SIGNATURE_ALGORITHMS: [AllowedSignatureAlgorithm; 3] = [
    AllowedSignatureAlgorithm::RsaSha256,
    AllowedSignatureAlgorithm::RsaSha384,
    AllowedSignatureAlgorithm::RsaSha512,
];

fn ossl(e: openssl::error::ErrorStack) -> SamlError {
    SamlError::Signing(e.to_string())
}

/// Our private key and its certificate.
#[derive(Clone)]
pub struct SigningKey {
    pkey: PKey<Private>,
    key_der: Vec<u8>,
    cert: X509,
    cert_b64: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("subject", &self.cert.subject_name())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads a PEM key and certificate; refuses non-RSA keys, keys under 2048 bits,
    /// and a certificate that does not belong to the key.
    pub fn from_pem(key_pem: &[u8], cert_pem: &[u8]) -> Result<Self, SamlError> {
        let pkey = PKey::private_key_from_pem(key_pem).map_err(ossl)?;
        let cert = X509::from_pem(cert_pem).map_err(ossl)?;
        if pkey.rsa().is_err() {
            return Err(SamlError::Signing("the key must be RSA".into()));
        }
        if pkey.bits() < 2048 {
            return Err(SamlError::Signing(
                "the RSA key must have at least 2048 bits".into(),
            ));
        }
        let cert_key = cert.public_key().map_err(ossl)?;
        if !pkey.public_eq(&cert_key) {
            return Err(SamlError::Signing(
                "the certificate does not match the key".into(),
            ));
        }
        let key_der = pkey.private_key_to_der().map_err(ossl)?;
        let cert_b64 = STANDARD.encode(cert.to_der().map_err(ossl)?);
        Ok(Self {
            pkey,
            key_der,
            cert,
            cert_b64,
        })
    }

    /// Base64 DER of the certificate, as published in metadata.
    pub fn cert_base64(&self) -> &str {
        &self.cert_b64
    }

    /// The certificate.
    pub fn certificate(&self) -> &X509 {
        &self.cert
    }

    /// The certificate as a trust anchor (for peers that verify us, e.g. the mock IdP).
    pub fn trusted_cert(&self) -> Result<TrustedCert, SamlError> {
        TrustedCert::from_der(self.cert.to_der().map_err(ossl)?)
    }

    /// Signs the first `ds:Signature` template in `xml` (see [`signature_template`]).
    /// Returns the document without the XML declaration.
    pub fn sign_enveloped(&self, xml: &str) -> Result<String, SamlError> {
        let signed = Crypto::sign_xml(xml, &self.key_der)
            .map_err(|e| SamlError::Signing(format!("{e:?}")))?;
        Ok(strip_xml_declaration(&signed).to_owned())
    }

    /// RSA-SHA256 over `octets`, base64 (the Redirect binding's `Signature`).
    pub fn sign_octets(&self, octets: &[u8]) -> Result<String, SamlError> {
        let mut signer = Signer::new(MessageDigest::sha256(), &self.pkey).map_err(ossl)?;
        signer.update(octets).map_err(ossl)?;
        Ok(STANDARD.encode(signer.sign_to_vec().map_err(ossl)?))
    }
}

/// Removes a leading `<?xml …?>` declaration and surrounding whitespace.
pub fn strip_xml_declaration(xml: &str) -> &str {
    let t = xml.trim_start();
    match t.strip_prefix("<?xml") {
        Some(rest) => rest
            .find("?>")
            .and_then(|i| rest.get(i + 2..))
            .unwrap_or(t)
            .trim(),
        None => t.trim_end(),
    }
}

/// An IdP (or peer) certificate taken from metadata: the only keys we verify with.
/// Its public key is parsed once, here, and reused by every verification.
#[derive(Debug, Clone)]
pub struct TrustedCert {
    der: Vec<u8>,
    key: PKey<Public>,
}

impl PartialEq for TrustedCert {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}

impl Eq for TrustedCert {}

impl TrustedCert {
    /// From DER; refuses what OpenSSL cannot parse, or a certificate without a usable
    /// public key.
    pub fn from_der(der: Vec<u8>) -> Result<Self, SamlError> {
        let key = X509::from_der(&der)
            .and_then(|c| c.public_key())
            .map_err(|_| SamlError::invalid("X509Certificate", "not a certificate"))?;
        Ok(Self { der, key })
    }

    /// From the base64 text of `ds:X509Certificate` (whitespace allowed).
    pub fn from_base64(b64: &str) -> Result<Self, SamlError> {
        let cleaned: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let der = STANDARD
            .decode(cleaned)
            .map_err(|_| SamlError::invalid("X509Certificate", "invalid base64"))?;
        Self::from_der(der)
    }

    /// From PEM.
    pub fn from_pem(pem: &[u8]) -> Result<Self, SamlError> {
        let cert = X509::from_pem(pem)
            .map_err(|_| SamlError::invalid("certificate", "not a PEM certificate"))?;
        Self::from_der(cert.to_der().map_err(ossl)?)
    }

    /// DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Base64 DER.
    pub fn base64(&self) -> String {
        STANDARD.encode(&self.der)
    }

    /// The certificate's public key, parsed when the certificate was read.
    pub fn key(&self) -> &PKey<Public> {
        &self.key
    }
}

/// An enveloped-signature template for the element with `ID = ref_id`: exc-c14n,
/// RSA-SHA256, SHA-256 digest, and our certificate in KeyInfo (SPID rule M8).
pub fn signature_template(ref_id: &str, cert_b64: &str) -> String {
    format!(
        concat!(
            r#"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">"#,
            r#"<ds:SignedInfo><ds:CanonicalizationMethod Algorithm="{c14n}"/>"#,
            r#"<ds:SignatureMethod Algorithm="{alg}"/>"#,
            r##"<ds:Reference URI="#{id}"><ds:Transforms>"##,
            r#"<ds:Transform Algorithm="{env}"/><ds:Transform Algorithm="{c14n}"/>"#,
            r#"</ds:Transforms><ds:DigestMethod Algorithm="{dig}"/><ds:DigestValue></ds:DigestValue>"#,
            r#"</ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue>"#,
            r#"<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"#,
            r#"</ds:Signature>"#
        ),
        c14n = C14N_EXCLUSIVE,
        alg = ALG_RSA_SHA256,
        id = escape(ref_id),
        env = TRANSFORM_ENVELOPED,
        dig = DIGEST_SHA256,
        cert = cert_b64,
    )
}

/// Test helper: [`signature_template`] with `Reference URI=""` (the whole document),
/// the shape FICEP signs its metadata with. Nothing outside tests emits it.
#[cfg(test)]
pub(crate) fn whole_document_template(cert_b64: &str) -> String {
    signature_template("_x", cert_b64).replace(r##"URI="#_x""##, r#"URI="""#)
}

/// `xml` with our enveloped signature over the element `ID = id`, the template inserted
/// at byte `insert_at` (right after Issuer, as the schemas order it).
pub fn sign_enveloped_at(
    xml: &str,
    id: &str,
    insert_at: usize,
    key: &SigningKey,
) -> Result<String, SamlError> {
    let (head, tail) = xml
        .split_at_checked(insert_at)
        .ok_or_else(|| SamlError::Signing("template split".into()))?;
    let with_template = format!("{head}{}{tail}", signature_template(id, key.cert_base64()));
    key.sign_enveloped(&with_template)
}

/// The full HTTP-Redirect URL of a message: `param` (`SAMLRequest` / `SAMLResponse`,
/// deflated), `RelayState` if given, `SigAlg`, `Signature` — signed over exactly the
/// octets emitted (encoded like Python's `quote_plus`, what spid-sp-test rebuilds).
pub fn sign_redirect_url(
    destination: &str,
    param: &str,
    xml: &str,
    relay_state: Option<&str>,
    key: &SigningKey,
) -> Result<String, SamlError> {
    use super::binding::{deflate_base64, encode_component};
    let mut signed = format!("{param}={}", encode_component(&deflate_base64(xml)?));
    if let Some(rs) = relay_state {
        signed.push_str("&RelayState=");
        signed.push_str(&encode_component(rs));
    }
    signed.push_str("&SigAlg=");
    signed.push_str(&encode_component(ALG_RSA_SHA256));
    let signature = key.sign_octets(signed.as_bytes())?;
    let sep = if destination.contains('?') { '&' } else { '?' };
    Ok(format!(
        "{destination}{sep}{signed}&Signature={}",
        encode_component(&signature)
    ))
}

fn algorithm<'a>(el: &'a Element, what: &'static str) -> Result<&'a str, SamlError> {
    el.attr("Algorithm")
        .ok_or(SamlError::SignatureNotAllowed(format!(
            "{what} without Algorithm"
        )))
}

/// Which `Reference URI` a signature may carry (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceRule {
    /// `URI="#<parent ID>"` only: every SAML protocol message, and every metadata
    /// signature that is not the root's own.
    IdOnly,
    /// `URI="#<parent ID>"` or `URI=""` (the whole document): only for the
    /// `ds:Signature` that is a direct child of the root of a signed metadata document.
    IdOrWholeDocument,
}

/// Checks one `ds:Signature` against the allowlist before any cryptography runs.
/// `parent_id` is the `ID` of the element the signature is a direct child of (empty
/// if it has none: then only `URI=""` under [`ReferenceRule::IdOrWholeDocument`] can
/// pass).
pub fn check_signature_shape(
    sig: &Element,
    parent_id: &str,
    rule: ReferenceRule,
) -> Result<(), SamlError> {
    for child in &sig.children {
        let ok = child.ns.as_deref() == Some(NS_DS)
            && matches!(
                child.name.as_str(),
                "SignedInfo" | "SignatureValue" | "KeyInfo"
            );
        if !ok {
            return Err(not_allowed(&format!(
                "unexpected {} in Signature",
                child.name
            )));
        }
    }
    let signed_info = sig.required_child(NS_DS, "SignedInfo")?;
    sig.required_child(NS_DS, "SignatureValue")?;
    if let Some(key_info) = sig.unique_child(NS_DS, "KeyInfo")? {
        for child in &key_info.children {
            let ok = child.ns.as_deref() == Some(NS_DS)
                && matches!(child.name.as_str(), "X509Data" | "KeyName" | "KeyValue");
            if !ok {
                return Err(not_allowed(&format!("{} in KeyInfo", child.name)));
            }
        }
    }
    check_signed_info_algorithms(signed_info)?;
    let mut refs = signed_info.children_named(NS_DS, "Reference");
    let reference = refs
        .next()
        .ok_or(SamlError::SignatureMissing("Reference"))?;
    if refs.next().is_some() {
        return Err(not_allowed("more than one Reference"));
    }
    if signed_info.children.len() != 3 {
        return Err(not_allowed("unexpected content in SignedInfo"));
    }
    check_reference(reference, parent_id, rule)
}

fn not_allowed(m: &str) -> SamlError {
    SamlError::SignatureNotAllowed(m.to_owned())
}

/// SignedInfo's canonicalization (exclusive c14n) and signature method (RSA-SHA256/384/512).
fn check_signed_info_algorithms(signed_info: &Element) -> Result<(), SamlError> {
    let c14n = signed_info.required_child(NS_DS, "CanonicalizationMethod")?;
    if algorithm(c14n, "CanonicalizationMethod")? != C14N_EXCLUSIVE {
        return Err(not_allowed("canonicalization other than exclusive c14n"));
    }
    let method = signed_info.required_child(NS_DS, "SignatureMethod")?;
    if !matches!(
        algorithm(method, "SignatureMethod")?,
        ALG_RSA_SHA256 | ALG_RSA_SHA384 | ALG_RSA_SHA512
    ) {
        return Err(not_allowed(
            "signature algorithm outside RSA-SHA256/384/512",
        ));
    }
    Ok(())
}

/// The Reference URI: `#<parent ID>`, or `""` where `rule` allows the whole document.
fn check_reference_uri(
    reference: &Element,
    parent_id: &str,
    rule: ReferenceRule,
) -> Result<(), SamlError> {
    match (reference.attr("URI"), rule) {
        (Some(""), ReferenceRule::IdOrWholeDocument) => Ok(()),
        (Some(""), ReferenceRule::IdOnly) => Err(not_allowed(
            "Reference URI=\"\" (the whole document) is allowed only for the root signature of signed metadata",
        )),
        _ if parent_id.is_empty() => Err(not_allowed("signed element has no ID")),
        (Some(uri), _) if uri.strip_prefix('#') == Some(parent_id) => Ok(()),
        _ => Err(not_allowed("Reference URI is not the signed element's ID")),
    }
}

/// The one Reference: its URI ([`check_reference_uri`]), only Transforms /
/// DigestMethod / DigestValue, transforms from the allowlist, a SHA-256/384/512 digest.
fn check_reference(
    reference: &Element,
    parent_id: &str,
    rule: ReferenceRule,
) -> Result<(), SamlError> {
    check_reference_uri(reference, parent_id, rule)?;
    for child in &reference.children {
        if child.ns.as_deref() != Some(NS_DS)
            || !matches!(
                child.name.as_str(),
                "Transforms" | "DigestMethod" | "DigestValue"
            )
        {
            return Err(not_allowed(&format!("{} in Reference", child.name)));
        }
    }
    if let Some(transforms) = reference.unique_child(NS_DS, "Transforms")? {
        for t in &transforms.children {
            if !t.is(NS_DS, "Transform") {
                return Err(not_allowed("unexpected element in Transforms"));
            }
            match algorithm(t, "Transform")? {
                TRANSFORM_ENVELOPED if t.children.is_empty() => {}
                // exc-c14n may carry ec:InclusiveNamespaces; nothing else.
                C14N_EXCLUSIVE
                    if t.children.iter().all(|c| {
                        c.ns.as_deref() == Some(C14N_EXCLUSIVE) && c.name == "InclusiveNamespaces"
                    }) => {}
                other => return Err(not_allowed(&format!("transform {other}"))),
            }
        }
    }
    let digest = reference.required_child(NS_DS, "DigestMethod")?;
    if !matches!(
        algorithm(digest, "DigestMethod")?,
        DIGEST_SHA256 | DIGEST_SHA384 | DIGEST_SHA512
    ) {
        return Err(not_allowed("digest outside SHA-256/384/512"));
    }
    reference.required_child(NS_DS, "DigestValue")?;
    Ok(())
}

/// Verifies every signature in `xml` with `certs` only (samael/xmlsec), and returns
/// the document reduced to what the signatures cover, re-read by our strict reader.
/// The caller must already have run [`check_signature_shape`] on every signature, with
/// the same `rule` for the root's own signature ([`ReferenceRule::IdOnly`] for every
/// other one). Under [`ReferenceRule::IdOrWholeDocument`] xmlsec also follows
/// `URI=""`, and only for a signature whose parent is the root element.
pub fn verify_and_reduce(
    xml: &str,
    certs: &[TrustedCert],
    limits: xml::Limits,
    rule: ReferenceRule,
) -> Result<Element, SamlError> {
    if certs.is_empty() {
        // Fail closed: samael would skip verification without keys.
        return Err(SamlError::SignatureInvalid);
    }
    let ders: Vec<CertificateDer> = certs
        .iter()
        .map(|c| CertificateDer::from(c.der.clone()))
        .collect();
    let reduce = match rule {
        ReferenceRule::IdOnly => Crypto::reduce_xml_to_signed_with_allowed_algorithms,
        ReferenceRule::IdOrWholeDocument => Crypto::reduce_xml_to_signed_allowing_root_empty_uri,
    };
    let reduced = reduce(
        xml,
        &ders,
        ReduceMode::ValidateAndMarkNoAncestors,
        Some(&ALLOWED_SIGNATURE_ALGORITHMS),
    )
    .map_err(|_| SamlError::SignatureInvalid)?;
    xml::parse(&reduced, limits)
}

/// xmlsec's verdict on every signature in `xml` with `certs` only, without samael's
/// reduction (which also refuses some valid documents): the oracle the one-parse
/// verifier ([`super::verify`]) is tested and fuzzed against.
pub fn xmlsec_verifies_all(xml: &str, certs: &[TrustedCert]) -> bool {
    let ders: Vec<CertificateDer> = certs
        .iter()
        .map(|c| CertificateDer::from(c.der.clone()))
        .collect();
    !ders.is_empty()
        && Crypto::reduce_xml_to_signed_with_allowed_algorithms(
            xml,
            &ders,
            ReduceMode::PreDigest,
            Some(&ALLOWED_SIGNATURE_ALGORITHMS),
        )
        .is_ok()
}

/// Verifies a Redirect-binding signature over the raw received octets.
pub fn verify_octets(
    octets: &[u8],
    signature_b64: &str,
    sig_alg: &str,
    certs: &[TrustedCert],
) -> Result<(), SamlError> {
    let md = match sig_alg {
        ALG_RSA_SHA256 => MessageDigest::sha256(),
        ALG_RSA_SHA384 => MessageDigest::sha384(),
        ALG_RSA_SHA512 => MessageDigest::sha512(),
        _ => return Err(SamlError::SignatureNotAllowed(format!("SigAlg {sig_alg}"))),
    };
    let cleaned: String = signature_b64
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let sig = STANDARD
        .decode(cleaned)
        .map_err(|_| SamlError::Encoding("Signature is not base64".into()))?;
    for cert in certs {
        let mut verifier = Verifier::new(md, cert.key()).map_err(ossl)?;
        verifier.update(octets).map_err(ossl)?;
        if verifier.verify(&sig).unwrap_or(false) {
            return Ok(());
        }
    }
    Err(SamlError::SignatureInvalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_declaration() {
        assert_eq!(
            strip_xml_declaration("<?xml version=\"1.0\"?>\n<a/>\n"),
            "<a/>"
        );
        assert_eq!(strip_xml_declaration("<a/>"), "<a/>");
    }

    fn shape(sig: &str) -> Result<(), SamlError> {
        let el = xml::parse(sig, xml::Limits::default()).unwrap();
        check_signature_shape(&el, "_abc", ReferenceRule::IdOnly)
    }

    fn key(cn: &str) -> SigningKey {
        let g = crate::keygen::generate_idp_test_cert(cn, 30).unwrap();
        SigningKey::from_pem(&g.key_pem, &g.cert_pem).unwrap()
    }

    #[test]
    fn an_empty_reference_uri_passes_only_the_whole_document_rule() {
        let t = whole_document_template("AAAA");
        assert!(t.contains(r#"<ds:Reference URI="">"#));
        let el = xml::parse(&t, xml::Limits::default()).unwrap();
        // Protocol messages (and nested metadata entities): refused, whatever the ID.
        for id in ["_abc", ""] {
            assert!(matches!(
                check_signature_shape(&el, id, ReferenceRule::IdOnly),
                Err(SamlError::SignatureNotAllowed(_))
            ));
        }
        // The root signature of signed metadata: allowed, with or without a root ID.
        for id in ["_abc", ""] {
            assert_eq!(
                check_signature_shape(&el, id, ReferenceRule::IdOrWholeDocument),
                Ok(())
            );
        }
        // `#ID` still passes the whole-document rule; a wrong ID, a missing URI, a
        // remote one, `#` alone or a blank do not; nor `#ID` when the parent has no ID.
        let by_id =
            xml::parse(&signature_template("_abc", "AAAA"), xml::Limits::default()).unwrap();
        assert_eq!(
            check_signature_shape(&by_id, "_abc", ReferenceRule::IdOrWholeDocument),
            Ok(())
        );
        for bad in [
            r##"URI="#_other""##,
            "",
            r#"URI="http://127.0.0.1:9/x""#,
            r##"URI="#""##,
            r#"URI=" ""#,
        ] {
            let t = t.replace(r#"URI="""#, bad);
            let el = xml::parse(&t, xml::Limits::default()).unwrap();
            assert!(
                matches!(
                    check_signature_shape(&el, "_abc", ReferenceRule::IdOrWholeDocument),
                    Err(SamlError::SignatureNotAllowed(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            check_signature_shape(&by_id, "", ReferenceRule::IdOrWholeDocument),
            Err(SamlError::SignatureNotAllowed(_))
        ));
        // Every other allowlist rule still holds under the whole-document rule.
        let sha1 = t.replace(ALG_RSA_SHA256, "http://www.w3.org/2000/09/xmldsig#rsa-sha1");
        let xslt = t.replace(
            TRANSFORM_ENVELOPED,
            "http://www.w3.org/TR/1999/REC-xslt-19991116",
        );
        let object = t.replace(
            "</ds:Signature>",
            "<ds:Object><x/></ds:Object></ds:Signature>",
        );
        for bad in [sha1, xslt, object] {
            let el = xml::parse(&bad, xml::Limits::default()).unwrap();
            assert!(matches!(
                check_signature_shape(&el, "_abc", ReferenceRule::IdOrWholeDocument),
                Err(SamlError::SignatureNotAllowed(_))
            ));
        }
    }

    #[test]
    fn xmlsec_follows_an_empty_uri_only_under_the_whole_document_rule() {
        let k = key("whole document");
        let cert = k.trusted_cert().unwrap();
        let signed = k
            .sign_enveloped(&format!(
                r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_r" Version="2.0">{}<x>v</x></samlp:Response>"#,
                whole_document_template(k.cert_base64())
            ))
            .unwrap();
        let limits = xml::Limits::default();
        // A protocol message's path: xmlsec itself refuses the empty URI type, even if
        // a caller skipped the shape check.
        assert_eq!(
            verify_and_reduce(
                &signed,
                std::slice::from_ref(&cert),
                limits,
                ReferenceRule::IdOnly
            ),
            Err(SamlError::SignatureInvalid)
        );
        // The metadata path: the whole root verifies and is what comes back.
        let reduced =
            verify_and_reduce(&signed, &[cert], limits, ReferenceRule::IdOrWholeDocument).unwrap();
        assert_eq!(reduced.attr("ID"), Some("_r"));
        assert_eq!(reduced.children.last().map(|c| c.name.as_str()), Some("x"));
        let other = key("other").trusted_cert().unwrap();
        assert_eq!(
            verify_and_reduce(&signed, &[other], limits, ReferenceRule::IdOrWholeDocument),
            Err(SamlError::SignatureInvalid)
        );
    }

    #[test]
    fn signing_keys_loaded_once_per_thread_stay_apart() {
        // xmlsec keeps each private key loaded for the thread after its first use:
        // alternating keys on one thread, every signature is made with its own key.
        let (a, b) = (key("cached a"), key("cached b"));
        let (ca, cb) = (a.trusted_cert().unwrap(), b.trusted_cert().unwrap());
        let doc = |k: &SigningKey, id: &str| {
            format!(
                r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="{id}" Version="2.0">{}<x>v</x></samlp:Response>"#,
                signature_template(id, k.cert_base64())
            )
        };
        for round in 0..3 {
            for (k, own, other) in [(&a, &ca, &cb), (&b, &cb, &ca)] {
                let id = format!("_r{round}");
                let signed = k.sign_enveloped(&doc(k, &id)).unwrap();
                assert!(xmlsec_verifies_all(&signed, std::slice::from_ref(own)));
                assert!(!xmlsec_verifies_all(&signed, std::slice::from_ref(other)));
            }
        }
    }

    #[test]
    fn template_passes_the_shape_check() {
        assert_eq!(shape(&signature_template("_abc", "AAAA")), Ok(()));
        // wrong parent
        let el = xml::parse(
            &signature_template("_other", "AAAA"),
            xml::Limits::default(),
        )
        .unwrap();
        assert!(check_signature_shape(&el, "_abc", ReferenceRule::IdOnly).is_err());
    }

    #[test]
    fn shape_check_refuses_remote_references_xslt_sha1_and_objects() {
        let t = signature_template("_abc", "AAAA");
        let remote = t.replace("URI=\"#_abc\"", "URI=\"http://127.0.0.1:9/x\"");
        assert!(matches!(
            shape(&remote),
            Err(SamlError::SignatureNotAllowed(_))
        ));
        let xslt = t.replace(
            TRANSFORM_ENVELOPED,
            "http://www.w3.org/TR/1999/REC-xslt-19991116",
        );
        assert!(matches!(
            shape(&xslt),
            Err(SamlError::SignatureNotAllowed(_))
        ));
        let sha1 = t.replace(ALG_RSA_SHA256, "http://www.w3.org/2000/09/xmldsig#rsa-sha1");
        assert!(matches!(
            shape(&sha1),
            Err(SamlError::SignatureNotAllowed(_))
        ));
        let sha1d = t.replace(DIGEST_SHA256, "http://www.w3.org/2000/09/xmldsig#sha1");
        assert!(matches!(
            shape(&sha1d),
            Err(SamlError::SignatureNotAllowed(_))
        ));
        let object = t.replace(
            "</ds:Signature>",
            "<ds:Object><x/></ds:Object></ds:Signature>",
        );
        assert!(matches!(
            shape(&object),
            Err(SamlError::SignatureNotAllowed(_))
        ));
        let retrieval = t.replace(
            "<ds:X509Data>",
            "<ds:RetrievalMethod URI=\"http://127.0.0.1:9/k\"/><ds:X509Data>",
        );
        assert!(matches!(
            shape(&retrieval),
            Err(SamlError::SignatureNotAllowed(_))
        ));
        let two_refs = t.replace(
            "</ds:SignedInfo>",
            "<ds:Reference URI=\"#_abc\"><ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/><ds:DigestValue/></ds:Reference></ds:SignedInfo>",
        );
        assert!(matches!(
            shape(&two_refs),
            Err(SamlError::SignatureNotAllowed(_))
        ));
    }
}
