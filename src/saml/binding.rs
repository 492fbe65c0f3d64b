//! SAML HTTP bindings: the Redirect encoding (raw DEFLATE + base64 + query) and the
//! POST encoding (base64), with decoding bounded against size and deflate bombs.
//!
//! Query-string signatures are computed and verified over the raw octets exactly
//! as sent or received (SAML Bindings §3.4.4.1): we never re-encode a received
//! query. Our own encoder matches Python's `quote_plus` (spid-sp-test rebuilds the
//! signed string with it): only `A-Z a-z 0-9 _ . - ~` stay as they are, space
//! becomes `+`, everything else `%XX` with uppercase hex.

use std::io::{Read, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;

use super::error::SamlError;

/// Percent-encodes one query component the way spid-sp-test's `quote_plus` does.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(
                    HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0'),
                ));
                out.push(char::from(
                    HEX.get(usize::from(b & 15)).copied().unwrap_or(b'0'),
                ));
            }
        }
    }
    out
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space).
pub fn decode_component(raw: &str) -> Result<String, SamlError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| SamlError::Encoding("bad percent-escape".into()))?;
                out.push(hex);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| SamlError::Encoding("query is not UTF-8".into()))
}

/// One query parameter: its name, the raw value as received, and the decoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryParam {
    /// Decoded name.
    pub name: String,
    /// Raw (still percent-encoded) value, as received.
    pub raw: String,
    /// Decoded value.
    pub value: String,
}

/// Splits a raw query string, refusing repeated names (an ambiguity attackers use).
pub fn parse_query(raw_query: &str) -> Result<Vec<QueryParam>, SamlError> {
    let mut params: Vec<QueryParam> = Vec::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (name, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode_component(name)?;
        if params.iter().any(|p| p.name == name) {
            return Err(SamlError::Encoding(format!("parameter `{name}` repeated")));
        }
        params.push(QueryParam {
            value: decode_component(raw)?,
            raw: raw.to_owned(),
            name,
        });
    }
    Ok(params)
}

/// The octets a Redirect-binding signature covers, built from raw received values:
/// `SAMLRequest|SAMLResponse=…[&RelayState=…]&SigAlg=…`.
pub fn redirect_signed_octets(params: &[QueryParam]) -> Result<String, SamlError> {
    let find = |n: &str| params.iter().find(|p| p.name == n);
    let (msg_name, msg) = match (find("SAMLRequest"), find("SAMLResponse")) {
        (Some(m), None) => ("SAMLRequest", m),
        (None, Some(m)) => ("SAMLResponse", m),
        _ => {
            return Err(SamlError::Encoding(
                "exactly one of SAMLRequest and SAMLResponse is required".into(),
            ));
        }
    };
    let sig_alg = find("SigAlg").ok_or(SamlError::SignatureMissing("SigAlg"))?;
    let mut out = format!("{msg_name}={}", msg.raw);
    if let Some(rs) = find("RelayState") {
        out.push_str("&RelayState=");
        out.push_str(&rs.raw);
    }
    out.push_str("&SigAlg=");
    out.push_str(&sig_alg.raw);
    Ok(out)
}

/// Raw DEFLATE then base64 (the Redirect binding's message encoding).
pub fn deflate_base64(xml: &str) -> Result<String, SamlError> {
    let mut enc = DeflateEncoder::new(Vec::new(), Compression::default());
    enc.write_all(xml.as_bytes())
        .map_err(|e| SamlError::Encoding(e.to_string()))?;
    let bytes = enc
        .finish()
        .map_err(|e| SamlError::Encoding(e.to_string()))?;
    Ok(STANDARD.encode(bytes))
}

fn base64_decode(b64: &str, max_out: usize) -> Result<Vec<u8>, SamlError> {
    let cleaned: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    // Base64 expands by 4/3: refuse before allocating when the output cannot fit.
    if cleaned.len() / 4 * 3 > max_out + 3 {
        return Err(SamlError::TooLarge);
    }
    STANDARD
        .decode(cleaned.as_bytes())
        .map_err(|_| SamlError::Encoding("invalid base64".into()))
}

/// Decodes a Redirect-binding message: base64, then raw INFLATE bounded by `max_out`
/// bytes (a deflate bomb stops at the bound with [`SamlError::TooLarge`]).
pub fn inflate_base64(b64: &str, max_out: usize) -> Result<String, SamlError> {
    let compressed = base64_decode(b64, max_out)?;
    let mut out = Vec::new();
    let limit = u64::try_from(max_out).unwrap_or(u64::MAX).saturating_add(1);
    DeflateDecoder::new(compressed.as_slice())
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|_| SamlError::Encoding("invalid DEFLATE data".into()))?;
    if out.len() > max_out {
        return Err(SamlError::TooLarge);
    }
    String::from_utf8(out).map_err(|_| SamlError::Encoding("message is not UTF-8".into()))
}

/// Decodes a POST-binding message (base64, whitespace tolerated), bounded by `max_out`.
pub fn decode_post(b64: &str, max_out: usize) -> Result<String, SamlError> {
    let bytes = base64_decode(b64, max_out)?;
    if bytes.len() > max_out {
        return Err(SamlError::TooLarge);
    }
    String::from_utf8(bytes).map_err(|_| SamlError::Encoding("message is not UTF-8".into()))
}

/// Base64 for the POST binding.
pub fn encode_post(xml: &str) -> String {
    STANDARD.encode(xml.as_bytes())
}

/// The form of an HTTP-POST binding message as it is posted to an SLO endpoint:
/// `SAMLRequest` or `SAMLResponse` (the receiver requires exactly one), and `RelayState`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct PostedMessage {
    /// `SAMLRequest` (base64).
    #[serde(rename = "SAMLRequest")]
    pub saml_request: Option<String>,
    /// `SAMLResponse` (base64).
    #[serde(rename = "SAMLResponse")]
    pub saml_response: Option<String>,
    /// `RelayState`.
    #[serde(rename = "RelayState")]
    pub relay_state: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_quote_plus() {
        assert_eq!(encode_component("a b+/=:#~*"), "a+b%2B%2F%3D%3A%23~%2A");
        assert_eq!(decode_component("a+b%2B%2f").unwrap(), "a b+/");
        assert!(decode_component("%G0").is_err());
        assert!(decode_component("%4").is_err());
    }

    #[test]
    fn deflate_round_trip_and_bomb() {
        let xml = "<a>hello</a>";
        assert_eq!(
            inflate_base64(&deflate_base64(xml).unwrap(), 1024).unwrap(),
            xml
        );
        let bomb = deflate_base64(&"A".repeat(10 * 1024 * 1024)).unwrap();
        assert!(bomb.len() < 30_000);
        assert_eq!(inflate_base64(&bomb, 256 * 1024), Err(SamlError::TooLarge));
        assert!(inflate_base64("not base64!", 1024).is_err());
    }

    #[test]
    fn query_parsing_keeps_raw_octets_and_refuses_repeats() {
        let q = "SAMLResponse=ab%2fc&RelayState=xy&SigAlg=http%3A%2F%2Fx&Signature=s";
        let params = parse_query(q).unwrap();
        assert_eq!(params[0].raw, "ab%2fc");
        assert_eq!(params[0].value, "ab/c");
        assert_eq!(
            redirect_signed_octets(&params).unwrap(),
            "SAMLResponse=ab%2fc&RelayState=xy&SigAlg=http%3A%2F%2Fx"
        );
        assert!(parse_query("a=1&a=2").is_err());
        let no_alg = parse_query("SAMLRequest=x&Signature=y").unwrap();
        assert!(redirect_signed_octets(&no_alg).is_err());
    }

    #[test]
    fn post_decoding_is_bounded() {
        assert_eq!(decode_post(&encode_post("<x/>"), 100).unwrap(), "<x/>");
        assert_eq!(
            decode_post(&encode_post(&"x".repeat(1000)), 100),
            Err(SamlError::TooLarge)
        );
    }
}
