//! XML-DSig verification of an enveloped signature on the strict reader's tree: the
//! ACS's one-parse verifier (issue 12). The element the signature covers is the very
//! element the caller goes on to read, so there is no ID lookup to confuse (signature
//! wrapping) and no second parser with its own view of the bytes.
//!
//! Only the one shape SPID, CIE and eIDAS IdPs sign with is verified, and anything
//! else is refused before any cryptography:
//! - `ds:Signature` a direct child of the signed element, whose `ID` is non-empty and
//!   is what the single `Reference URI="#…"` names;
//! - the transforms exactly enveloped-signature then exclusive c14n (with an optional
//!   `InclusiveNamespaces PrefixList`), and exclusive c14n for `SignedInfo`;
//! - SHA-256/384/512 digests, RSA-SHA256/384/512 signatures;
//! - no comment in signed text (as samael's reduction refuses), only between elements;
//! - keys only from the caller's [`TrustedCert`]s (IdP metadata), each parsed once
//!   when the metadata was read; `KeyInfo` is never looked at.
//!
//! xmlsec (through samael) remains the verifier of metadata and logout messages, and
//! the oracle of this one: the differential tests below and the `signature_differential`
//! fuzz target check that both accept and refuse the same documents.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use openssl::hash::{MessageDigest, hash};
use openssl::sign::Verifier;

use super::NS_DS;
use super::c14n::{self, Subset};
use super::error::SamlError;
use super::sign::{
    ALG_RSA_SHA256, ALG_RSA_SHA384, ALG_RSA_SHA512, C14N_EXCLUSIVE, DIGEST_SHA256, DIGEST_SHA384,
    DIGEST_SHA512, TRANSFORM_ENVELOPED, TrustedCert,
};
use super::xml::Element;

fn not_allowed(m: &str) -> SamlError {
    SamlError::SignatureNotAllowed(m.to_owned())
}

/// Verifies the enveloped `ds:Signature` child of the last element of `path` (its
/// ancestors from the root first, then the signed element) with `certs` only.
pub fn verify_enveloped(path: &[&Element], certs: &[TrustedCert]) -> Result<(), SamlError> {
    let signed = *path
        .last()
        .ok_or_else(|| SamlError::Structure("nothing signed".into()))?;
    let sig = signed
        .unique_child(NS_DS, "Signature")?
        .ok_or(SamlError::SignatureMissing("Signature"))?;
    // Exclusive c14n without comments drops a comment and signs the text around it
    // joined; xmlsec's reduction (samael) refuses a comment inside signed text, and so
    // do we (the truncation attacks on NameID). Between elements it is harmless.
    if certs.is_empty() || signed.comment_in_text() {
        return Err(SamlError::SignatureInvalid);
    }
    let signed_info = sig.required_child(NS_DS, "SignedInfo")?;
    let reference = single_reference(signed_info, signed)?;
    let inclusive = reference_transforms(reference)?;
    let prefixes = prefix_list(inclusive);
    let digest_input = c14n::exclusive(&Subset {
        path,
        omit: Some(sig),
        inclusive: &prefixes,
    })?;
    let md = digest_method(reference)?;
    let digest = hash(md, &digest_input).map_err(|_| SamlError::SignatureInvalid)?;
    let claimed = base64_text(reference.required_child(NS_DS, "DigestValue")?)?;
    if claimed.len() != digest.len() || !openssl::memcmp::eq(&claimed, &digest) {
        return Err(SamlError::SignatureInvalid);
    }
    let c14n_method = signed_info.required_child(NS_DS, "CanonicalizationMethod")?;
    if c14n_method.attr("Algorithm") != Some(C14N_EXCLUSIVE) {
        return Err(not_allowed("canonicalization other than exclusive c14n"));
    }
    let si_prefixes = prefix_list(inclusive_namespaces(c14n_method)?);
    let mut si_path = path.to_vec();
    si_path.extend([sig, signed_info]);
    let signed_octets = c14n::exclusive(&Subset {
        path: &si_path,
        omit: None,
        inclusive: &si_prefixes,
    })?;
    let md = signature_method(signed_info)?;
    let value = base64_text(sig.required_child(NS_DS, "SignatureValue")?)?;
    for cert in certs {
        let verified = Verifier::new(md, cert.key())
            .and_then(|mut v| {
                v.update(&signed_octets)?;
                v.verify(&value)
            })
            .unwrap_or(false);
        if verified {
            return Ok(());
        }
    }
    Err(SamlError::SignatureInvalid)
}

/// Every signature of a Response tree verifies: the Response's if present, the
/// Assertion's (required). The ACS checks the same in `response::validate`, with its
/// own errors; this is the fuzz targets' and the tests' form.
pub fn verify_all(root: &Element, certs: &[TrustedCert]) -> Result<(), SamlError> {
    if root.unique_child(NS_DS, "Signature")?.is_some() {
        verify_enveloped(&[root], certs)?;
    }
    let assertion = root
        .unique_child(super::NS_SAML, "Assertion")?
        .ok_or(SamlError::Missing("Assertion"))?;
    verify_enveloped(&[root, assertion], certs)
}

/// The one `Reference`, naming the signed element by its non-empty `ID`.
fn single_reference<'a>(
    signed_info: &'a Element,
    signed: &Element,
) -> Result<&'a Element, SamlError> {
    let mut refs = signed_info.children_named(NS_DS, "Reference");
    let reference = refs
        .next()
        .ok_or(SamlError::SignatureMissing("Reference"))?;
    if refs.next().is_some() {
        return Err(not_allowed("more than one Reference"));
    }
    let id = signed.attr("ID").filter(|id| !id.is_empty());
    match (reference.attr("URI").and_then(|u| u.strip_prefix('#')), id) {
        (Some(uri), Some(id)) if uri == id => Ok(reference),
        _ => Err(not_allowed("Reference URI is not the signed element's ID")),
    }
}

/// The transforms: exactly enveloped-signature, then exclusive c14n; returns the
/// latter's `InclusiveNamespaces` if any.
fn reference_transforms(reference: &Element) -> Result<Option<&Element>, SamlError> {
    let transforms = reference.required_child(NS_DS, "Transforms")?;
    match transforms.children.as_slice() {
        [enveloped, exclusive]
            if enveloped.is(NS_DS, "Transform")
                && exclusive.is(NS_DS, "Transform")
                && enveloped.attr("Algorithm") == Some(TRANSFORM_ENVELOPED)
                && enveloped.children.is_empty()
                && exclusive.attr("Algorithm") == Some(C14N_EXCLUSIVE) =>
        {
            inclusive_namespaces(exclusive)
        }
        _ => Err(not_allowed(
            "transforms other than enveloped-signature then exclusive c14n",
        )),
    }
}

/// At most one `ec:InclusiveNamespaces` child, and nothing else.
fn inclusive_namespaces(method: &Element) -> Result<Option<&Element>, SamlError> {
    match method.children.as_slice() {
        [] => Ok(None),
        [one] if one.is(C14N_EXCLUSIVE, "InclusiveNamespaces") && one.children.is_empty() => {
            Ok(Some(one))
        }
        _ => Err(not_allowed("unexpected content in a c14n method")),
    }
}

/// The `PrefixList` tokens (`#default` is the default namespace, `None`).
fn prefix_list(inclusive: Option<&Element>) -> Vec<Option<&str>> {
    inclusive
        .and_then(|e| e.attr("PrefixList"))
        .map(|list| {
            list.split([' ', '\t', '\n', '\r'])
                .filter(|t| !t.is_empty())
                .map(|t| (t != "#default").then_some(t))
                .collect()
        })
        .unwrap_or_default()
}

fn digest_method(reference: &Element) -> Result<MessageDigest, SamlError> {
    let method = reference.required_child(NS_DS, "DigestMethod")?;
    if !method.children.is_empty() {
        return Err(not_allowed("unexpected content in DigestMethod"));
    }
    match method.attr("Algorithm") {
        Some(DIGEST_SHA256) => Ok(MessageDigest::sha256()),
        Some(DIGEST_SHA384) => Ok(MessageDigest::sha384()),
        Some(DIGEST_SHA512) => Ok(MessageDigest::sha512()),
        _ => Err(not_allowed("digest outside SHA-256/384/512")),
    }
}

fn signature_method(signed_info: &Element) -> Result<MessageDigest, SamlError> {
    let method = signed_info.required_child(NS_DS, "SignatureMethod")?;
    if !method.children.is_empty() {
        return Err(not_allowed("unexpected content in SignatureMethod"));
    }
    match method.attr("Algorithm") {
        Some(ALG_RSA_SHA256) => Ok(MessageDigest::sha256()),
        Some(ALG_RSA_SHA384) => Ok(MessageDigest::sha384()),
        Some(ALG_RSA_SHA512) => Ok(MessageDigest::sha512()),
        _ => Err(not_allowed(
            "signature algorithm outside RSA-SHA256/384/512",
        )),
    }
}

/// The base64 content of `DigestValue` / `SignatureValue` (XML white space allowed,
/// no child element).
fn base64_text(el: &Element) -> Result<Vec<u8>, SamlError> {
    if !el.children.is_empty() {
        return Err(SamlError::Structure(format!(
            "unexpected element in {}",
            el.name
        )));
    }
    let cleaned: Vec<u8> = el
        .text
        .bytes()
        .filter(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .collect();
    STANDARD
        .decode(cleaned)
        .map_err(|_| SamlError::Encoding(format!("{} is not base64", el.name)))
}

/// Differential tests: xmlsec signs (its own parse, libxml2's canonicalisation) and
/// verifies through samael, this module verifies on the strict reader's tree; over
/// documents that stress canonicalisation, both must accept and refuse alike.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::saml::sign::{SigningKey, sign_enveloped_at};
    use crate::saml::xml::{Limits, parse};
    use crate::saml::{NS_SAML, NS_SAMLP};

    fn key() -> SigningKey {
        let g = crate::keygen::generate_idp_test_cert("differential", 30).unwrap();
        SigningKey::from_pem(&g.key_pem, &g.cert_pem).unwrap()
    }

    /// An Assertion signed on its own (as IdPs and our mock IdP build it), put in a
    /// Response that is signed too when `sign_response`.
    fn signed_document(key: &SigningKey, sign_response: bool) -> String {
        let assertion = concat!(
            r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" "#,
            r#"xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" "#,
            r#"ID="_a1" Version="2.0" xml:lang="it">"#,
            "\n  <saml:Issuer>https://idp.example/</saml:Issuer>\n",
            r#"  <saml:Subject><saml:NameID Format="f&amp;g">  x &amp; y &lt;z&gt; "q" 'a' </saml:NameID></saml:Subject>"#,
            "\n",
            r#"  <saml:AttributeStatement><saml:Attribute Name="a&#9;b&#10;c"><saml:AttributeValue xsi:type="xs:string">Città è <![CDATA[<cdata>&]]>&#13;</saml:AttributeValue></saml:Attribute></saml:AttributeStatement>"#,
            "\n",
            r#"  <ext xmlns="urn:default"><inner xmlns=""/><p:q xmlns:p="urn:p" p:a="1" b="2" a="&quot;"/></ext>"#,
            "\n</saml:Assertion>"
        );
        let at = assertion.find("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
        let assertion = sign_enveloped_at(assertion, "_a1", at, key).unwrap();
        let response = format!(
            concat!(
                r#"<samlp:Response xmlns:samlp="{}" xmlns:saml="{}" ID="_r1" Version="2.0" Destination="https://sp.example/acs">"#,
                "<saml:Issuer>https://idp.example/</saml:Issuer>\n{}\n</samlp:Response>"
            ),
            NS_SAMLP, NS_SAML, assertion
        );
        if !sign_response {
            return response;
        }
        let at = response.find("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
        sign_enveloped_at(&response, "_r1", at, key).unwrap()
    }

    fn native(doc: &str, certs: &[TrustedCert]) -> bool {
        parse(doc, Limits::default()).is_ok_and(|root| verify_all(&root, certs).is_ok())
    }

    fn xmlsec(doc: &str, certs: &[TrustedCert]) -> bool {
        crate::saml::sign::xmlsec_verifies_all(doc, certs)
    }

    #[test]
    fn both_verifiers_agree_on_equivalent_and_tampered_documents() {
        let key = key();
        let certs = [key.trusted_cert().unwrap()];
        for sign_response in [true, false] {
            let doc = signed_document(&key, sign_response);
            // (what, edit, still valid)
            type Edit = Box<dyn Fn(&str) -> String>;
            let cases: Vec<(&str, Edit, bool)> = vec![
                ("as signed", Box::new(|d: &str| d.to_owned()), true),
                (
                    "single quotes",
                    Box::new(|d: &str| d.replacen(r#"b="2""#, "b='2'", 1)),
                    true,
                ),
                (
                    "space in a tag",
                    Box::new(|d: &str| d.replace("<saml:Subject>", "<saml:Subject \n >")),
                    true,
                ),
                (
                    "redundant declaration",
                    Box::new(|d: &str| {
                        d.replace("<saml:Subject>", r#"<saml:Subject xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:unused="urn:u">"#)
                    }),
                    true,
                ),
                (
                    "expanded empty element",
                    Box::new(|d: &str| {
                        d.replace(r#"<inner xmlns=""/>"#, r#"<inner xmlns=""></inner>"#)
                    }),
                    true,
                ),
                (
                    "character references",
                    Box::new(|d: &str| d.replace("x &amp; y", "&#120; &#38; y")),
                    true,
                ),
                (
                    "CRLF line ends",
                    Box::new(|d: &str| d.replace("\n  <saml:Subject>", "\r\n  <saml:Subject>")),
                    true,
                ),
                (
                    "CDATA for text",
                    Box::new(|d: &str| d.replace("Città è ", "<![CDATA[Città è ]]>")),
                    true,
                ),
                (
                    "attribute order",
                    Box::new(|d: &str| d.replace(r#"p:a="1" b="2""#, r#"b="2" p:a="1""#)),
                    true,
                ),
                (
                    "envelope changed",
                    Box::new(|d: &str| d.replace("sp.example/acs", "sp.example/acz")),
                    !sign_response,
                ),
                (
                    "text changed",
                    Box::new(|d: &str| d.replace("x &amp; y", "x &amp; z")),
                    false,
                ),
                (
                    "attribute changed",
                    Box::new(|d: &str| d.replace(r#"p:a="1""#, r#"p:a="2""#)),
                    false,
                ),
                (
                    "attribute added",
                    Box::new(|d: &str| d.replace("<saml:Subject>", r#"<saml:Subject a="1">"#)),
                    false,
                ),
                (
                    "whitespace added",
                    Box::new(|d: &str| d.replace("<saml:Subject>", "<saml:Subject> ")),
                    false,
                ),
                (
                    "prefix renamed",
                    Box::new(|d: &str| {
                        d.replace(
                            "<saml:Subject>",
                            r#"<s2:Subject xmlns:s2="urn:oasis:names:tc:SAML:2.0:assertion">"#,
                        )
                        .replace("</saml:Subject>", "</s2:Subject>")
                    }),
                    false,
                ),
                (
                    "default namespace moved",
                    Box::new(|d: &str| d.replace(r#"<inner xmlns=""/>"#, "<inner/>")),
                    false,
                ),
                (
                    "digest changed",
                    Box::new(|d: &str| {
                        let i = d.find("<ds:DigestValue>").unwrap() + "<ds:DigestValue>".len();
                        let mut s = d.to_owned();
                        let c = if s.as_bytes()[i] == b'A' { "B" } else { "A" };
                        s.replace_range(i..i + 1, c);
                        s
                    }),
                    false,
                ),
                (
                    "signature truncated",
                    Box::new(|d: &str| {
                        let i = d.find("</ds:SignatureValue>").unwrap();
                        format!("{}{}", &d[..i - 8], &d[i..])
                    }),
                    false,
                ),
            ];
            for (what, edit, valid) in cases {
                let edited = edit(&doc);
                assert!(
                    edited != doc || what == "as signed",
                    "{what}: the edit changed nothing"
                );
                let (n, x) = (native(&edited, &certs), xmlsec(&edited, &certs));
                assert_eq!(
                    (n, x),
                    (valid, valid),
                    "{what} (response signed: {sign_response}): native {n}, xmlsec {x}"
                );
            }
            // The one deliberate difference: a comment in signed text. xmlsec verifies
            // the joined text; we refuse it (so did samael's reduction).
            let commented = doc.replace("x &amp; y", "x <!---->&amp; y");
            assert_eq!(
                (native(&commented, &certs), xmlsec(&commented, &certs)),
                (false, true)
            );
            // Between elements, a comment changes nothing for either.
            let between = doc.replace("<saml:Subject>", "<!-- c --><saml:Subject><!-- d -->");
            assert_eq!(
                (native(&between, &certs), xmlsec(&between, &certs)),
                (true, true)
            );
        }
    }

    #[test]
    fn only_the_metadata_keys_verify_and_the_shape_is_fixed() {
        let (key, other) = (key(), key());
        let doc = signed_document(&key, true);
        let mine = [key.trusted_cert().unwrap()];
        let theirs = [other.trusted_cert().unwrap()];
        assert!(native(&doc, &mine));
        assert!(!native(&doc, &theirs) && !xmlsec(&doc, &theirs));
        assert!(!native(&doc, &[]));
        // Any key of the list will do (a rollover publishes two).
        assert!(native(&doc, &[theirs[0].clone(), mine[0].clone()]));
        let root = parse(&doc, Limits::default()).unwrap();
        let refused = |edit: &dyn Fn(&str) -> String| {
            let edited = edit(&doc);
            let root = parse(&edited, Limits::default()).unwrap();
            verify_enveloped(&[&root], &mine)
        };
        assert_eq!(verify_enveloped(&[&root], &mine), Ok(()));
        for (what, edit) in [
            (
                "transforms swapped",
                Box::new(|d: &str| {
                    d.replacen(TRANSFORM_ENVELOPED, "@@", 1)
                        .replacen(
                            &format!(r#"<ds:Transform Algorithm="{C14N_EXCLUSIVE}"/>"#),
                            &format!(r#"<ds:Transform Algorithm="{TRANSFORM_ENVELOPED}"/>"#),
                            1,
                        )
                        .replacen("@@", C14N_EXCLUSIVE, 1)
                }) as Box<dyn Fn(&str) -> String>,
            ),
            (
                "reference to the assertion",
                Box::new(|d: &str| d.replacen(r##"URI="#_r1""##, r##"URI="#_a1""##, 1)),
            ),
            (
                "sha1",
                Box::new(|d: &str| {
                    d.replacen(DIGEST_SHA256, "http://www.w3.org/2000/09/xmldsig#sha1", 1)
                }),
            ),
        ] {
            assert!(
                matches!(
                    refused(&*edit),
                    Err(SamlError::SignatureNotAllowed(_)) | Err(SamlError::SignatureInvalid)
                ),
                "{what}"
            );
        }
    }
}
