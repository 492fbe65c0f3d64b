//! The entry points of the cargo-fuzz targets in `fuzz/` (one per parser of untrusted
//! input), kept here so that `cargo test` replays the committed corpora through exactly
//! the same code (`tests/integration/fuzz_corpus.rs`) without an instrumented build.
//!
//! Each function takes arbitrary bytes, must never panic, and checks what must hold
//! whatever the input (round trips, bounds); a violated property panics, which is what
//! the fuzzer reports.

use crate::accounts::FiscalCode;
use crate::saml::xml::{self, Element, Limits};
use crate::saml::{binding, logout, response};

/// Bound on decoded messages, as on the ACS.
const MAX_DECODED: usize = 256 * 1024;

/// The strict XML reader: never panics; what it accepts stays within its limits.
pub fn xml_reader(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(root) = xml::parse(text, Limits::default()) {
        let elements = 1 + root.descendants().len();
        assert!(elements <= Limits::default().max_elements, "element limit");
    }
}

/// The HTTP-POST binding decoder: never panics, never returns more than its bound.
pub fn post_binding(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(decoded) = binding::decode_post(text, MAX_DECODED) {
        assert!(decoded.len() <= MAX_DECODED, "post decoding bound");
    }
}

/// The HTTP-Redirect binding: query parsing, percent-decoding, base64 + inflate with a
/// bound (deflate bombs), and the LogoutResponse peek that reads a query before any
/// signature is checked.
pub fn redirect_binding(data: &[u8]) {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(params) = binding::parse_query(query) {
        for p in &params {
            if let Ok(inflated) = binding::inflate_base64(&p.value, MAX_DECODED) {
                assert!(inflated.len() <= MAX_DECODED, "inflate bound");
            }
        }
    }
    let _ = logout::peek_logout_response_redirect(query, Limits::default());
}

/// The Response reader (before any signature): never panics, and what it claims
/// (ID, InResponseTo, Issuer) is what the document holds.
pub fn response_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = response::parse(text, Limits::default()) {
        let _ = (
            parsed.id(),
            parsed.issue_instant(),
            parsed.issuer(),
            parsed.in_response_to(),
        );
    }
}

/// The one-parse signature verifier against xmlsec, on Responses that pass the
/// structural pre-filter, with the demo mock IdP's certificate as the trusted key (the
/// corpus holds documents it signed, which the fuzzer then mutates):
/// - what the verifier accepts, xmlsec accepts (it never trusts more than the oracle);
/// - what xmlsec accepts, the verifier accepts too, unless a comment stands in the
///   signed text (refused on purpose): a difference is a canonicalisation bug.
pub fn signature_differential(data: &[u8]) {
    use crate::saml::sign::TrustedCert;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = response::parse(text, Limits::default()) else {
        return;
    };
    let cert = TrustedCert::from_pem(include_bytes!("../certs/demo/mock-idp.crt"));
    assert!(cert.is_ok(), "the demo certificate must load");
    let Ok(cert) = cert else {
        return;
    };
    let certs = [cert];
    let root = parsed.root();
    let native = crate::saml::verify::verify_all(root, &certs).is_ok();
    let oracle = crate::saml::sign::xmlsec_verifies_all(text, &certs);
    assert!(
        !native || oracle,
        "the verifier accepted what xmlsec refuses"
    );
    assert!(
        !oracle || native || root.comment_in_text(),
        "xmlsec accepted what the verifier refuses"
    );
}

/// The codice fiscale parser: never panics; what it accepts is 16 characters and
/// parses again to itself.
pub fn fiscal_code(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cf) = FiscalCode::parse(text) {
        assert_eq!(cf.as_str().chars().count(), 16, "length");
        let again = FiscalCode::parse(cf.as_str()).map(|c| c.as_str().to_owned());
        assert_eq!(again.as_deref(), Ok(cf.as_str()), "round trip");
    }
}

/// What the strict reader accepted, as a flat list (element, attribute and text events
/// in document order) to compare with another parser's reading of the same bytes.
pub fn strict_view(data: &[u8]) -> Option<Vec<String>> {
    let text = std::str::from_utf8(data).ok()?;
    let root = xml::parse(text, Limits::default()).ok()?;
    let mut out = Vec::new();
    flatten(&root, &mut out);
    Some(out)
}

/// [`strict_view`] in the form libxml2's safe bindings can give (attributes by local
/// name, the first of a name kept): what the differential target compares.
pub fn strict_view_comparable(data: &[u8]) -> Option<Vec<String>> {
    let text = std::str::from_utf8(data).ok()?;
    let root = xml::parse(text, Limits::default()).ok()?;
    let mut out = Vec::new();
    flatten_comparable(&root, &mut out);
    Some(out)
}

fn flatten_comparable(e: &Element, out: &mut Vec<String>) {
    out.push(format!(
        "element {{{}}}{}",
        e.ns.as_deref().unwrap_or(""),
        e.name
    ));
    let mut by_name: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    for a in &e.attrs {
        by_name.entry(a.name.as_str()).or_insert(a.value.as_str());
    }
    // Sorted as formatted lines, as `fuzz/libxml_view.rs` sorts libxml2's (sorting by
    // name alone put `x` before `x0…`, the lines put `attr x0…` before `attr x=`).
    let mut attrs: Vec<String> = by_name
        .iter()
        .map(|(k, v)| format!("attr {k}={v:?}"))
        .collect();
    attrs.sort();
    out.extend(attrs);
    out.push(format!("text {:?}", e.text));
    for c in &e.children {
        flatten_comparable(c, out);
    }
    out.push("end".to_owned());
}

fn flatten(e: &Element, out: &mut Vec<String>) {
    out.push(format!(
        "element {{{}}}{}",
        e.ns.as_deref().unwrap_or(""),
        e.name
    ));
    let mut attrs: Vec<String> = e
        .attrs
        .iter()
        .map(|a| {
            format!(
                "attr {{{}}}{}={:?}",
                a.ns.as_deref().unwrap_or(""),
                a.name,
                a.value
            )
        })
        .collect();
    attrs.sort();
    out.extend(attrs);
    out.push(format!("text {:?}", e.text));
    for c in &e.children {
        flatten(c, out);
    }
    out.push("end".to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_points_take_anything() {
        for input in [
            &b""[..],
            b"\xff\xfe",
            b"<r/>",
            b"SAMLRequest=%%%&SigAlg=x",
            b"RSSMRA80A01H501U",
            b"rssmra80a01h501u",
            b"<?xml version=\"1.0\" encoding=\"UTF-7\"?><r/>",
        ] {
            xml_reader(input);
            post_binding(input);
            redirect_binding(input);
            response_parse(input);
            fiscal_code(input);
            let _ = strict_view(input);
        }
    }

    #[test]
    fn the_strict_view_lists_elements_attributes_and_text() {
        let v = strict_view(br#"<a:r xmlns:a="urn:a" k="v">t<b/></a:r>"#).unwrap();
        assert_eq!(
            v,
            [
                "element {urn:a}r",
                "attr {}k=\"v\"",
                "text \"t\"",
                "element {}b",
                "text \"\"",
                "end",
                "end"
            ]
        );
    }
}
