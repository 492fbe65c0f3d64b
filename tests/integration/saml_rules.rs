//! SPID Response rules (spid-sp-rules.md §3) on the pure core: `saml::response::parse`
//! then `validate`, with a FIXED `now` (no clock), one test per rule family. Each case
//! is the base Response of `support::craft` with one change, named by its row in the
//! §3.2 case table, and asserts the precise `SamlError` variant; accepted cases assert
//! what the `VerifiedAssertion` carries.

use std::sync::OnceLock;

use chrono::{DateTime, Duration, Utc};
use polis_gateway::saml::request::Binding;
use polis_gateway::saml::response::{ResponseCheck, ResponseOutcome, parse, validate};
use polis_gateway::saml::sign::{ReferenceRule, verify_and_reduce};
use polis_gateway::saml::xml::Limits;
use polis_gateway::saml::{
    Comparison, Level, PendingRequest, SamlError, SigningKey, SpidErrorCode, VerifiedAssertion,
};

use crate::support::craft::{
    Craft, IssuerSpec, RSA_SHA1, SHA1, STATUS_SUCCESS, SigSpec, Stage, XSLT, Xsw, element,
    replace_element, status_error, without,
};
use crate::support::gateway::idp_key;

const IDP: &str = "https://idp.example.it";
const SP: &str = "https://sp.example.it";
const ACS: &str = "https://sp.example.it/acs";
const REQ_ID: &str = "_0123456789abcdef0123456789abcdef";
const SKEW_SECONDS: i64 = 60;
const MAX_VALIDITY_SECONDS: i64 = 1800;

/// The validation instant of every case.
fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// The IdP's key: the one in its metadata.
fn idp() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| idp_key("Rules IdP").0)
}

/// A key the IdP's metadata does not list (the attacker's, or another IdP's).
fn foreign() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| idp_key("agid.gov.it (foreign)").0)
}

fn pending(level: Level, comparison: Comparison) -> PendingRequest {
    PendingRequest {
        id: REQ_ID.into(),
        issue_instant: now() - Duration::seconds(60),
        idp_entity_id: IDP.into(),
        level,
        comparison,
        relay_state: "rs".into(),
        binding: Binding::Redirect,
        xml: String::new(),
        return_to: None,
        browser: String::new(),
        profile: polis_gateway::saml::IdpProfile::Spid,
    }
}

/// The base Response (both signatures, level 2), issued 30 s before `now`.
fn base() -> Craft {
    Craft::new(IDP, SP, ACS, REQ_ID, now() - Duration::seconds(30))
}

/// The base Response with one change.
fn with(f: impl FnOnce(&mut Craft)) -> Craft {
    let mut c = base();
    f(&mut c);
    c
}

fn validate_xml(xml: &str, pending: &PendingRequest) -> ResponseOutcome {
    let parsed = parse(xml, Limits::default())?;
    let certs = [idp().trusted_cert().unwrap()];
    validate(
        &parsed,
        &ResponseCheck {
            pending,
            sp_entity_id: SP,
            acs_url: ACS,
            idp_certs: &certs,
            now: now(),
            clock_skew: Duration::seconds(SKEW_SECONDS),
            max_validity: Duration::seconds(MAX_VALIDITY_SECONDS),
            limits: Limits::default(),
        },
    )
}

/// Signs `craft` with the IdP key and validates it against a level-2 `minimum` request.
fn outcome(craft: &Craft) -> ResponseOutcome {
    validate_xml(
        &craft.build(idp()),
        &pending(Level::L2, Comparison::Minimum),
    )
}

fn accepted(case: &str, craft: &Craft) -> VerifiedAssertion {
    match outcome(craft) {
        Ok(v) => v,
        Err(e) => panic!("case {case}: expected acceptance, got {e:?}"),
    }
}

/// Asserts that a case is refused with an error matching the pattern.
macro_rules! refused {
    ($case:expr, $craft:expr, $pat:pat) => {{
        let r = outcome(&$craft);
        assert!(
            matches!(r, Err($pat)),
            "case {}: expected {}, got {:?}",
            $case,
            stringify!($pat),
            r
        );
    }};
}

/// An instant as text, relative to `now`.
fn at(offset_seconds: i64) -> Option<String> {
    Some(polis_gateway::saml::time::format_instant(
        now() + Duration::seconds(offset_seconds),
    ))
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

#[test]
fn base_response_is_accepted_with_its_identity() {
    let craft = base();
    let v = accepted("1 (1-NS, level 2 without SessionIndex)", &craft);
    assert_eq!(v.idp_entity_id(), IDP);
    assert_eq!(v.response_id(), craft.response_id.as_deref().unwrap());
    assert_eq!(v.assertion_id(), craft.assertion_id.as_deref().unwrap());
    assert_eq!(v.name_id(), craft.name_id);
    assert_eq!(v.name_qualifier(), IDP);
    assert_eq!(v.level(), Level::L2);
    assert_eq!(v.session_index(), None);
    assert_eq!(
        v.not_on_or_after(),
        now() - Duration::seconds(30) + Duration::minutes(5)
    );
    assert_eq!(v.attribute("fiscalNumber"), Some("TINIT-RSSMRA80A01H501U"));
    assert_eq!(v.attribute("name"), Some("Mario"));
    assert_eq!(v.attribute("familyName"), Some("Rossi"));
    assert_eq!(v.attribute("dateOfBirth"), Some("1980-01-01"));
    assert_eq!(v.attributes().len(), 6);
    // SPID makes the Response signature optional: the Assertion's alone suffices.
    let unsigned = with(|c| c.response_sig = SigSpec::none());
    let v = accepted("Response unsigned", &unsigned);
    assert_eq!(v.name_id(), unsigned.name_id);
}

#[test]
fn r_sig_signatures() {
    // 2: neither signed; 3: Response signed around an unsigned Assertion.
    refused!(
        "2",
        with(|c| {
            c.response_sig = SigSpec::none();
            c.assertion_sig = SigSpec::none();
        }),
        SamlError::SignatureMissing(_)
    );
    refused!(
        "3",
        with(|c| c.assertion_sig = SigSpec::none()),
        SamlError::SignatureMissing(_)
    );
    // 4 / 5: signed with a key not in the IdP metadata; its cert in KeyInfo does not help,
    // nor does putting the IdP's own cert in KeyInfo.
    let by_foreign = |key_info: Option<String>| {
        with(move |c| {
            for sig in [&mut c.response_sig, &mut c.assertion_sig] {
                sig.key = Some(foreign().clone());
                sig.key_info_cert = key_info.clone();
            }
        })
    };
    refused!("4/5", by_foreign(None), SamlError::SignatureInvalid);
    refused!(
        "4 (IdP cert in KeyInfo)",
        by_foreign(Some(idp().cert_base64().to_owned())),
        SamlError::SignatureInvalid
    );
    // 100: only the Assertion signed with a foreign key; and the converse.
    refused!(
        "100",
        with(|c| c.assertion_sig.key = Some(foreign().clone())),
        SamlError::SignatureInvalid
    );
    refused!(
        "Response signed with a foreign key",
        with(|c| c.response_sig.key = Some(foreign().clone())),
        SamlError::SignatureInvalid
    );
    // Content changed after signing: the NameID, or a Response attribute.
    let name_id = base().name_id;
    refused!(
        "NameID tampered",
        with(|c| {
            c.response_sig = SigSpec::none();
            let n = c.name_id.clone();
            c.edit_signed = Some(Box::new(move |x| x.replace(&format!(">{n}<"), ">_evil<")));
        }),
        SamlError::SignatureInvalid
    );
    let later = at(-29).unwrap();
    refused!(
        "Response IssueInstant tampered",
        with(move |c| {
            let ii = c.response_issue_instant.clone().unwrap();
            c.edit_signed = Some(Box::new(move |x| x.replacen(&ii, &later, 1)));
        }),
        SamlError::SignatureInvalid
    );
    assert_ne!(name_id, "_evil");
    // xslt: an XSLT transform, added after signing (xmlsec would run it while signing).
    let xslt = format!(
        r#"<ds:Transform Algorithm="{XSLT}"><xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0"><xsl:template match="/"><xsl:copy-of select="document('http://127.0.0.1:9/')"/></xsl:template></xsl:stylesheet></ds:Transform>"#
    );
    for (case, on_assertion) in [("xslt (Assertion)", true), ("xslt (Response)", false)] {
        let t = xslt.clone();
        refused!(
            case,
            with(move |c| {
                let sig = if on_assertion {
                    &mut c.assertion_sig
                } else {
                    &mut c.response_sig
                };
                sig.extra_transform = Some((Stage::AfterSigning, t));
            }),
            SamlError::SignatureNotAllowed(_)
        );
    }
    // Remote, whole-document and cross references.
    for uri in ["http://127.0.0.1:9/x", "", "#_other"] {
        refused!(
            format!("Reference URI={uri:?}"),
            with(|c| c.assertion_sig.reference_uri = Some((Stage::AfterSigning, uri.into()))),
            SamlError::SignatureNotAllowed(_)
        );
    }
    // A real signature over the whole document (URI=""), made by xmlsec.
    refused!(
        "Reference URI=\"\" signed",
        with(|c| {
            c.response_sig = SigSpec::none();
            c.assertion_sig.reference_uri = Some((Stage::BeforeSigning, String::new()));
        }),
        SamlError::SignatureNotAllowed(_)
    );
    // The same on the Response's own signature, a direct child of the root: the shape
    // that signed metadata may use (`ReferenceRule::IdOrWholeDocument`), never a
    // protocol message.
    refused!(
        "Response signature with Reference URI=\"\" signed",
        with(|c| c.response_sig.reference_uri = Some((Stage::BeforeSigning, String::new()))),
        SamlError::SignatureNotAllowed(_)
    );
    let response_id = base().response_id.unwrap();
    refused!(
        "Assertion signature referencing the Response",
        with(|c| {
            c.response_id = Some(response_id.clone());
            c.response_sig = SigSpec::none();
            c.assertion_sig.reference_uri = Some((Stage::AfterSigning, format!("#{response_id}")));
        }),
        SamlError::SignatureNotAllowed(_)
    );
    // SHA-1: real rsa-sha1 and sha1-digest signatures (xmlsec signs what the template says).
    refused!(
        "rsa-sha1",
        with(|c| c.assertion_sig.signature_method = RSA_SHA1.into()),
        SamlError::SignatureNotAllowed(_)
    );
    refused!(
        "sha1 digest",
        with(|c| c.response_sig.digest_method = SHA1.into()),
        SamlError::SignatureNotAllowed(_)
    );
    // ds:Object, RetrievalMethod, a second Reference.
    refused!(
        "ds:Object",
        with(|c| {
            c.response_sig = SigSpec::none();
            c.edit_signed = Some(Box::new(|x| {
                x.replacen(
                    "</ds:Signature>",
                    "<ds:Object><x xmlns=\"urn:x\"/></ds:Object></ds:Signature>",
                    1,
                )
            }));
        }),
        SamlError::SignatureNotAllowed(_)
    );
    refused!(
        "RetrievalMethod",
        with(|c| {
            c.edit_signed = Some(Box::new(|x| {
                x.replacen(
                    "<ds:X509Data>",
                    "<ds:RetrievalMethod URI=\"http://127.0.0.1:9/k\"/><ds:X509Data>",
                    1,
                )
            }));
        }),
        SamlError::SignatureNotAllowed(_)
    );
    // Without keys nothing verifies (an IdP whose metadata has no signing certificate).
    let xml = base().build(idp());
    assert_eq!(
        verify_and_reduce(&xml, &[], Limits::default(), ReferenceRule::IdOnly).unwrap_err(),
        SamlError::SignatureInvalid
    );
    let only_foreign = [foreign().trusted_cert().unwrap()];
    assert_eq!(
        verify_and_reduce(
            &xml,
            &only_foreign,
            Limits::default(),
            ReferenceRule::IdOnly
        )
        .unwrap_err(),
        SamlError::SignatureInvalid
    );
    // A non-Success Response whose signature does not verify is a signature failure,
    // not an IdP status.
    refused!(
        "104 tampered",
        with(|c| {
            c.include_assertion = false;
            c.status = status_error(19);
            c.edit_signed = Some(Box::new(|x| x.replace("nr19", "nr20")));
        }),
        SamlError::SignatureInvalid
    );
}

#[test]
fn r_sig_wrapping_and_misplaced_signatures() {
    // xsw*: the signed Assertion (or Response) kept where a verifier might look, an
    // unsigned evil copy where the application reads; with and without a Response signature.
    for shape in [
        Xsw::AssertionInExtensions,
        Xsw::AssertionInObject,
        Xsw::TwoAssertions,
        Xsw::ResponseInExtensions,
        Xsw::SignatureInSubject,
    ] {
        for sign_response in [true, false] {
            let mut c = base();
            if !sign_response {
                c.response_sig = SigSpec::none();
            }
            refused!(
                format!("{shape:?} (Response signed: {sign_response})"),
                c.wrapped(shape, idp()),
                SamlError::Structure(_)
            );
        }
    }
    // Signatures in unexpected places.
    refused!(
        "Signature inside Status",
        with(|c| {
            c.edit_signed = Some(Box::new(|x| {
                let sig = element(&x, "ds:Signature").to_owned();
                without(&x, "ds:Signature").replacen(
                    "</samlp:Status>",
                    &format!("{sig}</samlp:Status>"),
                    1,
                )
            }));
        }),
        SamlError::Structure(_)
    );
    refused!(
        "two Signatures in the Assertion",
        with(|c| {
            c.response_sig = SigSpec::none();
            c.edit_signed_assertion = Some(Box::new(|a| {
                let sig = element(&a, "ds:Signature").to_owned();
                a.replacen("<saml:Subject>", &format!("{sig}<saml:Subject>"), 1)
            }));
        }),
        SamlError::Structure(_)
    );
    // 112: a foreign EntityDescriptor as the first child of the Response, which is
    // signed with a foreign key, around an unsigned Assertion.
    refused!(
        "112",
        with(|c| {
            c.assertion_sig = SigSpec::none();
            c.response_sig.key = Some(foreign().clone());
        })
        .wrapped(Xsw::EntityDescriptorInResponse, idp()),
        SamlError::Structure(_)
    );
    refused!(
        "EncryptedAssertion",
        with(|c| {
            c.edit_signed_assertion = Some(Box::new(|a| format!("{a}<saml:EncryptedAssertion/>")));
        }),
        SamlError::Structure(_)
    );
}

#[test]
fn r_sig_comment_in_name_id_is_refused_and_never_truncates() {
    // Exclusive c14n without comments drops the comment, so xmlsec signs the
    // concatenation "user.evil" (the xmlsec1 command line verifies this document).
    // samael's reduction matches the signed pre-digest node by node, finds a comment
    // where the signed text has none, and fails closed: the gateway refuses it.
    let commented = with(|c| c.name_id = "user<!---->.evil".into());
    refused!("comment in NameID", commented, SamlError::SignatureInvalid);
    // Had it got through, the gateway reads the full concatenation, never "user".
    let xml = commented.build(idp());
    let root = polis_gateway::saml::xml::parse(&xml, Limits::default()).unwrap();
    let name_id = root
        .descendants()
        .into_iter()
        .find(|e| e.name == "NameID")
        .unwrap()
        .trimmed_text()
        .to_owned();
    assert_eq!(name_id, "user.evil");
    // What xmlsec signed is "user.evil": the same signature verifies once the comment
    // is removed, and the gateway then uses exactly that value.
    let comment_removed = with(|c| {
        c.name_id = "user<!---->.evil".into();
        c.edit_signed = Some(Box::new(|x| x.replace("user<!---->.evil", "user.evil")));
    });
    assert_eq!(
        accepted("comment removed after signing", &comment_removed).name_id(),
        "user.evil"
    );
    // And the comment hides nothing from the signature.
    refused!(
        "text after the comment changed",
        with(|c| {
            c.name_id = "user<!---->.evil".into();
            c.edit_signed = Some(Box::new(|x| x.replace("<!---->.evil", "<!---->.good")));
        }),
        SamlError::SignatureInvalid
    );
}

#[test]
fn r_resp_response_envelope() {
    let unsigned = |f: fn(&mut Craft)| {
        with(move |c| {
            c.response_sig = SigSpec::none();
            f(c);
        })
    };
    refused!(
        "8",
        unsigned(|c| c.response_id = s("")),
        SamlError::Missing("ID")
    );
    refused!(
        "9",
        unsigned(|c| c.response_id = None),
        SamlError::Missing("ID")
    );
    // A signed Response without ID is refused before that: its signature has nothing to reference.
    for (case, to) in [("8 signed", r#" ID="""#), ("9 signed", "")] {
        refused!(
            case,
            with(move |c| {
                let id = format!(r#" ID="{}""#, c.response_id.clone().unwrap());
                c.edit_signed = Some(Box::new(move |x| x.replacen(&id, to, 1)));
            }),
            SamlError::SignatureNotAllowed(_)
        );
    }
    refused!(
        "10",
        with(|c| c.response_version = s("1.0")),
        SamlError::Invalid {
            field: "Response",
            ..
        }
    );
    refused!(
        "11",
        with(|c| c.response_issue_instant = s("")),
        SamlError::Missing("Response IssueInstant")
    );
    refused!(
        "12",
        with(|c| c.response_issue_instant = None),
        SamlError::Missing("Response IssueInstant")
    );
    refused!(
        "13",
        with(|c| c.response_issue_instant = s("2018-09-04")),
        SamlError::Invalid {
            field: "Response IssueInstant",
            ..
        }
    );
    refused!(
        "14",
        with(|c| c.response_issue_instant = s("2018-01-01T00:00:00Z")),
        SamlError::Time(_)
    );
    refused!(
        "15",
        with(|c| c.response_issue_instant = s("2099-01-01T00:00:00Z")),
        SamlError::Time(_)
    );
    refused!(
        "16",
        with(|c| {
            c.in_response_to = s("");
            c.scd_in_response_to = s("");
        }),
        SamlError::Missing("InResponseTo")
    );
    refused!(
        "17",
        with(|c| {
            c.in_response_to = None;
            c.scd_in_response_to = None;
        }),
        SamlError::Missing("InResponseTo")
    );
    refused!(
        "18",
        with(|c| c.in_response_to = s("_another_request")),
        SamlError::Mismatch(_)
    );
    refused!(
        "19",
        with(|c| c.destination = s("")),
        SamlError::Missing("Destination")
    );
    refused!(
        "20",
        with(|c| c.destination = None),
        SamlError::Missing("Destination")
    );
    refused!(
        "21",
        with(|c| c.destination = s("https://sp.example.it/other-acs")),
        SamlError::Mismatch(_)
    );
    // Equal to the request's IssueInstant (spid-sp-test does that), and within the skew.
    accepted(
        "IssueInstant = request IssueInstant",
        &with(|c| c.response_issue_instant = at(-60)),
    );
    accepted(
        "IssueInstant just inside the skew",
        &with(|c| c.response_issue_instant = at(SKEW_SECONDS - 1)),
    );
    // 110: fractional seconds, 3 (SSC) and 6 (SST) digits.
    for ii in ["2026-03-02T09:59:30.123Z", "2026-03-02T09:59:30.123456Z"] {
        accepted(
            "110",
            &with(|c| {
                c.response_issue_instant = s(ii);
                c.assertion_issue_instant = s(ii);
            }),
        );
    }
}

#[test]
fn r_status_status_codes() {
    refused!(
        "22/25",
        with(|c| c.status = "<samlp:Status/>".into()),
        SamlError::Missing("StatusCode")
    );
    refused!(
        "23",
        with(|c| c.status = String::new()),
        SamlError::Missing("Status")
    );
    refused!(
        "24",
        with(
            |c| c.status = STATUS_SUCCESS.replace("urn:oasis:names:tc:SAML:2.0:status:Success", "")
        ),
        SamlError::Missing("Value")
    );
    let invalid = "urn:oasis:names:tc:SAML:2.0:status:statuscodenonvalido";
    assert_eq!(
        outcome(&with(|c| c.status = STATUS_SUCCESS
            .replace("urn:oasis:names:tc:SAML:2.0:status:Success", invalid))),
        Err(SamlError::IdpStatus {
            status: invalid.into(),
            sub_status: None,
            code: None,
            authenticated: true,
            profile: polis_gateway::saml::IdpProfile::Spid,
        }),
        "case 26"
    );
    // 104–108, 111 (and nr30): Responder / AuthnFailed / ErrorCode nrNN, no Assertion,
    // Response signed (verified, so `authenticated`) or not.
    for (case, nr) in [
        ("104", 19),
        ("105", 20),
        ("106", 21),
        ("107", 22),
        ("108", 23),
        ("111", 25),
        ("nr30", 30),
    ] {
        for signed in [true, false] {
            let craft = with(|c| {
                c.include_assertion = false;
                c.status = status_error(nr);
                if !signed {
                    c.response_sig = SigSpec::none();
                }
            });
            assert_eq!(
                outcome(&craft),
                Err(SamlError::IdpStatus {
                    status: "urn:oasis:names:tc:SAML:2.0:status:Responder".into(),
                    sub_status: Some("urn:oasis:names:tc:SAML:2.0:status:AuthnFailed".into()),
                    code: Some(SpidErrorCode(nr)),
                    authenticated: signed,
                    profile: polis_gateway::saml::IdpProfile::Spid,
                }),
                "case {case} (Response signed: {signed})"
            );
        }
    }
}

#[test]
fn r_issuer_issuers() {
    refused!(
        "27",
        with(|c| c.response_issuer.as_mut().unwrap().value = String::new()),
        SamlError::Missing("Response Issuer")
    );
    refused!(
        "28",
        with(|c| {
            c.response_issuer = None;
            c.assertion_issuer.as_mut().unwrap().value = String::new();
            c.response_sig = SigSpec::none();
        }),
        SamlError::Missing("Issuer")
    );
    refused!(
        "29",
        with(|c| c.response_issuer = Some(IssuerSpec::entity("https://other-idp.example.it"))),
        SamlError::Mismatch(_)
    );
    refused!(
        "30",
        with(|c| {
            c.response_issuer.as_mut().unwrap().format =
                s("urn:oasis:names:tc:SAML:2.0:nameid-format:diversodaentity")
        }),
        SamlError::Invalid {
            field: "Response Issuer",
            ..
        }
    );
    accepted(
        "31",
        &with(|c| c.response_issuer.as_mut().unwrap().format = None),
    );
    refused!(
        "67",
        with(|c| c.assertion_issuer.as_mut().unwrap().value = String::new()),
        SamlError::Missing("Assertion Issuer")
    );
    refused!(
        "68",
        with(|c| c.assertion_issuer = None),
        SamlError::Missing("Issuer")
    );
    refused!(
        "69",
        with(|c| c.assertion_issuer = Some(IssuerSpec::entity("https://other-idp.example.it"))),
        SamlError::Mismatch(_)
    );
    refused!(
        "70",
        with(|c| c.assertion_issuer.as_mut().unwrap().format = s("")),
        SamlError::Invalid {
            field: "Assertion Issuer",
            ..
        }
    );
    refused!(
        "71",
        with(|c| c.assertion_issuer.as_mut().unwrap().format = None),
        SamlError::Missing("Issuer Format")
    );
    refused!(
        "72",
        with(|c| {
            c.assertion_issuer.as_mut().unwrap().format =
                s("urn:oasis:names:tc:SAML:2.0:nameid-format:transient")
        }),
        SamlError::Invalid {
            field: "Assertion Issuer",
            ..
        }
    );
    // Whitespace around the Issuer text is not a difference.
    accepted(
        "padded Issuer",
        &with(|c| c.response_issuer.as_mut().unwrap().value = format!("\n  {IDP}\n")),
    );
}

#[test]
fn r_assertion_assertion() {
    refused!(
        "32",
        with(|c| c.include_assertion = false),
        SamlError::Missing("Assertion")
    );
    // 33/34: a signed Assertion without ID: its signature has nothing to reference.
    for (case, to) in [("33", r#" ID="""#), ("34", "")] {
        refused!(
            case,
            with(move |c| {
                c.response_sig = SigSpec::none();
                let id = format!(r#" ID="{}""#, c.assertion_id.clone().unwrap());
                c.edit_signed_assertion = Some(Box::new(move |a| a.replacen(&id, to, 1)));
            }),
            SamlError::SignatureNotAllowed(_)
        );
    }
    refused!(
        "35",
        with(|c| c.assertion_version = s("1.0")),
        SamlError::Invalid {
            field: "Assertion",
            ..
        }
    );
    refused!(
        "36",
        with(|c| c.assertion_issue_instant = s("")),
        SamlError::Missing("Assertion IssueInstant")
    );
    refused!(
        "37",
        with(|c| c.assertion_issue_instant = None),
        SamlError::Missing("Assertion IssueInstant")
    );
    refused!(
        "38",
        with(|c| c.assertion_issue_instant = s("2018-09-06 16:00")),
        SamlError::Invalid {
            field: "Assertion IssueInstant",
            ..
        }
    );
    refused!(
        "39",
        with(|c| c.assertion_issue_instant = s("2000-01-01T00:00:00Z")),
        SamlError::Time(_)
    );
    refused!(
        "40",
        with(|c| c.assertion_issue_instant = s("2099-01-01T00:00:00Z")),
        SamlError::Time(_)
    );
}

#[test]
fn r_subject_subject_and_confirmation() {
    let edit = |f: fn(String) -> String| {
        with(move |c| {
            c.edit_assertion = Some(Box::new(f));
        })
    };
    refused!(
        "41",
        edit(|a| replace_element(&a, "saml:Subject", "<saml:Subject/>")),
        SamlError::Missing("NameID")
    );
    refused!(
        "42",
        edit(|a| without(&a, "saml:Subject")),
        SamlError::Missing("Subject")
    );
    refused!(
        "43",
        with(|c| {
            c.name_id = String::new();
            c.name_qualifier = s("");
        }),
        SamlError::Missing("NameID")
    );
    refused!(
        "44",
        edit(|a| without(&a, "saml:NameID")),
        SamlError::Missing("NameID")
    );
    refused!(
        "45",
        with(|c| c.name_id_format = s("")),
        SamlError::Missing("Format")
    );
    refused!(
        "46",
        with(|c| c.name_id_format = None),
        SamlError::Missing("Format")
    );
    refused!(
        "47",
        with(|c| c.name_id_format = s("urn:oasis:names:tc:SAML:2.0:nameid-format:persistent")),
        SamlError::Invalid {
            field: "NameID",
            ..
        }
    );
    refused!(
        "48",
        with(|c| c.name_qualifier = s("")),
        SamlError::Missing("NameQualifier")
    );
    refused!(
        "49",
        with(|c| c.name_qualifier = None),
        SamlError::Missing("NameQualifier")
    );
    // (50, removed from the suite): a NameQualifier other than the SP's is fine.
    accepted(
        "NameQualifier = IdP",
        &with(|c| c.name_qualifier = s("https://whatever.example.it")),
    );
    refused!(
        "51/56",
        edit(|a| without(&a, "saml:SubjectConfirmationData")),
        SamlError::Missing("SubjectConfirmationData")
    );
    refused!(
        "52",
        edit(|a| without(&a, "saml:SubjectConfirmation")),
        SamlError::Missing("SubjectConfirmation")
    );
    refused!(
        "two SubjectConfirmations",
        edit(|a| {
            let sc = element(&a, "saml:SubjectConfirmation").to_owned();
            a.replacen("</saml:Subject>", &format!("{sc}</saml:Subject>"), 1)
        }),
        SamlError::Structure(_)
    );
    refused!(
        "53",
        with(|c| c.method = s("")),
        SamlError::Missing("Method")
    );
    refused!(
        "54",
        with(|c| c.method = None),
        SamlError::Missing("Method")
    );
    refused!(
        "55",
        with(|c| c.method = s("urn:oasis:names:tc:SAML:2.0:cm:holder-of-key")),
        SamlError::Invalid {
            field: "SubjectConfirmation",
            ..
        }
    );
    refused!(
        "57",
        with(|c| c.recipient = s("")),
        SamlError::Missing("Recipient")
    );
    refused!(
        "58",
        with(|c| c.recipient = None),
        SamlError::Missing("Recipient")
    );
    refused!(
        "59",
        with(|c| c.recipient = s("https://sp.example.it/other-acs")),
        SamlError::Mismatch(_)
    );
    refused!(
        "60",
        with(|c| c.scd_in_response_to = s("")),
        SamlError::Missing("InResponseTo")
    );
    refused!(
        "61",
        with(|c| c.scd_in_response_to = None),
        SamlError::Missing("InResponseTo")
    );
    refused!(
        "62",
        with(|c| c.scd_in_response_to = s("_another_request")),
        SamlError::Mismatch(_)
    );
    refused!(
        "63",
        with(|c| c.scd_not_on_or_after = s("")),
        SamlError::Missing("SubjectConfirmationData NotOnOrAfter")
    );
    refused!(
        "64",
        with(|c| c.scd_not_on_or_after = None),
        SamlError::Missing("SubjectConfirmationData NotOnOrAfter")
    );
    refused!(
        "65",
        with(|c| c.scd_not_on_or_after = s("2018.09.18")),
        SamlError::Invalid {
            field: "SubjectConfirmationData NotOnOrAfter",
            ..
        }
    );
    refused!(
        "66",
        with(|c| c.scd_not_on_or_after = s("2000-01-01T00:00:00Z")),
        SamlError::Time(_)
    );
    refused!(
        "66 (expired by more than the skew)",
        with(|c| c.scd_not_on_or_after = at(-SKEW_SECONDS - 1)),
        SamlError::Time(_)
    );
    // The base NameID is padded with whitespace by both validators: trimmed.
    let v = accepted(
        "padded NameID",
        &with(|c| c.name_id = "\n      _padded_transient_id\n    ".into()),
    );
    assert_eq!(v.name_id(), "_padded_transient_id");
}

#[test]
fn r_cond_conditions() {
    let edit = |f: fn(String) -> String| {
        with(move |c| {
            c.edit_assertion = Some(Box::new(f));
        })
    };
    refused!(
        "73/84",
        edit(|a| without(&a, "saml:AudienceRestriction")),
        SamlError::Missing("AudienceRestriction")
    );
    refused!(
        "74",
        edit(|a| without(&a, "saml:Conditions")),
        SamlError::Missing("Conditions")
    );
    refused!(
        "75",
        with(|c| c.not_before = s("")),
        SamlError::Missing("Conditions NotBefore")
    );
    refused!(
        "76",
        with(|c| c.not_before = None),
        SamlError::Missing("Conditions NotBefore")
    );
    refused!(
        "77",
        with(|c| c.not_before = s("2018/09/10")),
        SamlError::Invalid {
            field: "Conditions NotBefore",
            ..
        }
    );
    refused!(
        "78",
        with(|c| c.not_before = s("2099-01-01T00:00:00Z")),
        SamlError::Time(_)
    );
    refused!(
        "79",
        with(|c| c.not_on_or_after = s("")),
        SamlError::Missing("Conditions NotOnOrAfter")
    );
    refused!(
        "80",
        with(|c| c.not_on_or_after = None),
        SamlError::Missing("Conditions NotOnOrAfter")
    );
    refused!(
        "81",
        with(|c| c.not_on_or_after = s("10-09-2018")),
        SamlError::Invalid {
            field: "Conditions NotOnOrAfter",
            ..
        }
    );
    refused!(
        "82",
        with(|c| c.not_on_or_after = s("2000-01-01T00:00:00Z")),
        SamlError::Time(_)
    );
    refused!(
        "83/86",
        with(|c| c.audience = None),
        SamlError::Missing("Audience")
    );
    refused!(
        "85",
        with(|c| c.audience = s("")),
        SamlError::Missing("Audience")
    );
    refused!(
        "87",
        with(|c| c.audience = s("https://other-sp.example.it")),
        SamlError::Mismatch(_)
    );
    accepted(
        "NotBefore within the skew",
        &with(|c| c.not_before = at(SKEW_SECONDS - 1)),
    );
}

#[test]
fn r_authn_authn_statement() {
    let edit = |f: fn(String) -> String| {
        with(move |c| {
            c.edit_assertion = Some(Box::new(f));
        })
    };
    refused!(
        "88/91",
        edit(|a| without(&a, "saml:AuthnContext")),
        SamlError::Missing("AuthnContext")
    );
    refused!(
        "89",
        with(|c| {
            c.attributes.clear();
            c.edit_assertion = Some(Box::new(|a| without(&a, "saml:AuthnStatement")));
        }),
        SamlError::Missing("AuthnStatement")
    );
    refused!(
        "90/93",
        edit(|a| without(&a, "saml:AuthnContextClassRef")),
        SamlError::Missing("AuthnContextClassRef")
    );
    refused!(
        "92",
        with(|c| c.acr = String::new()),
        SamlError::Missing("AuthnContextClassRef")
    );
    refused!(
        "97",
        with(|c| c.acr = "urn:oasis:names:tc:SAML:2.0:ac:classes:SpidL1".into()),
        SamlError::Invalid {
            field: "AuthnContextClassRef",
            ..
        }
    );
    // SessionIndex at L1 is kept; its absence at L2/L3 is the norm (case 1-NS).
    let l1 = with(|c| {
        c.acr = Level::L1.uri().into();
        c.session_index = s("_session_1");
    });
    let v = validate_xml(&l1.build(idp()), &pending(Level::L1, Comparison::Minimum)).unwrap();
    assert_eq!(v.session_index(), Some("_session_1"));
    assert_eq!(v.level(), Level::L1);
}

#[test]
fn r_acr_returned_level_against_requested_level_and_comparison() {
    // RT: a higher level than requested never fails; an equal one fails only for
    // `better`; a lower one passes only for `maximum` (cases 94–96 for every request).
    let levels = [Level::L1, Level::L2, Level::L3];
    for comparison in [
        Comparison::Exact,
        Comparison::Minimum,
        Comparison::Better,
        Comparison::Maximum,
    ] {
        for requested in levels {
            for returned in levels {
                let expect_ok = returned > requested
                    || (returned == requested && comparison != Comparison::Better)
                    || (returned < requested && comparison == Comparison::Maximum);
                let craft = with(|c| c.acr = returned.uri().into());
                let r = validate_xml(&craft.build(idp()), &pending(requested, comparison));
                let what = format!(
                    "case 9{}: requested L{} {}, returned L{}",
                    3 + returned.number(),
                    requested.number(),
                    comparison.as_str(),
                    returned.number()
                );
                if expect_ok {
                    assert_eq!(r.map(|v| v.level()), Ok(returned), "{what}");
                } else {
                    assert!(matches!(r, Err(SamlError::Level { .. })), "{what}: {r:?}");
                }
            }
        }
    }
}

#[test]
fn r_attr_attributes() {
    refused!(
        "98",
        with(|c| {
            c.edit_assertion = Some(Box::new(|a| {
                replace_element(
                    &a,
                    "saml:AttributeStatement",
                    "<saml:AttributeStatement></saml:AttributeStatement>",
                )
            }));
        }),
        SamlError::Missing("Attribute")
    );
    refused!(
        "99",
        with(|c| {
            c.edit_assertion = Some(Box::new(|a| {
                replace_element(&a, "saml:Attribute", r#"<saml:Attribute Name="spidCode"/>"#)
            }));
        }),
        SamlError::Invalid {
            field: "Attribute",
            ..
        }
    );
    refused!(
        "Attribute without Name",
        with(|c| {
            c.edit_assertion = Some(Box::new(|a| a.replacen(r#" Name="spidCode""#, "", 1)));
        }),
        SamlError::Missing("Name")
    );
    // 109: no NameFormat (and an XML declaration in front).
    let v = accepted(
        "109",
        &with(|c| {
            c.attribute_name_format = None;
            c.doctype = s(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        }),
    );
    assert_eq!(v.attribute("spidCode"), Some("MOCK0000000001"));
    // No AttributeStatement at all: accepted, no attributes.
    let v = accepted("no AttributeStatement", &with(|c| c.attributes.clear()));
    assert!(v.attributes().is_empty());
    // Values are trimmed.
    let v = accepted(
        "padded",
        &with(|c| {
            c.attributes = vec![("email".into(), "  a@example.it\n".into())];
        }),
    );
    assert_eq!(
        v.attributes().get("email").map(Vec::as_slice),
        Some(["a@example.it".to_owned()].as_slice())
    );
    // One identity per Response (issue 8): an attribute named twice is refused, not
    // resolved to its first value.
    refused!(
        "repeated",
        with(|c| {
            c.attributes = vec![
                ("fiscalNumber".into(), "TINIT-RSSMRA80A01H501U".into()),
                ("fiscalNumber".into(), "TINIT-VRDGPP80A01H501P".into()),
            ];
        }),
        SamlError::Attribute(_)
    );
    refused!(
        "e-mail with CR/LF",
        with(|c| {
            c.attributes = vec![("email".into(), "a@example.it&#13;&#10;Bcc: x@y.it".into())];
        }),
        SamlError::Attribute(_)
    );
    refused!(
        "200 KB NameID",
        with(|c| c.name_id = "x".repeat(200_000)),
        SamlError::Attribute(_)
    );
}

/// The keys really differ (a guard against the fixture quietly signing with one key).
#[test]
fn fixture_keys_are_distinct() {
    assert_ne!(idp().cert_base64(), foreign().cert_base64());
}
