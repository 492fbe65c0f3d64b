//! Forged and hostile Responses over real HTTP (gateway + mock IdP on loopback
//! ports). Every case is answered with the expected 4xx and has NO other effect,
//! which [`assert_refused_without_effect`] checks the same way each time:
//!
//! 1. the status and the stable error code on our own error page;
//! 2. no `Set-Cookie`, and the home page shows no session;
//! 3. the transaction log holds a `rejected` record with that code for this very
//!    HTTP request (or, for bodies refused before the SSO service reads them, none);
//! 4. the strong check: the genuine Response the mock IdP issues for the same pending
//!    request is STILL accepted afterwards (303, session opened), because the gateway
//!    consumes a pending request only after a Response for it validates.
//!
//! Cases that could make the gateway reach out (entities, remote references, XSLT)
//! point at a [`Trap`]: a TCP listener the test opened on 127.0.0.1 that must never
//! see a connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use polis_gateway::saml::binding::{deflate_base64, encode_component, inflate_base64};
use polis_gateway::saml::idp::build_idp_metadata;
use polis_gateway::saml::ids::new_id;
use polis_gateway::saml::sign::{ReferenceRule, verify_and_reduce};
use polis_gateway::saml::xml::Limits;
use polis_gateway::saml::{SamlError, SigningKey};
use polis_gateway::state::MemoryStore;

use crate::support::Trap;
use crate::support::craft::{
    Craft, RSA_SHA1, SHA1, SigSpec, Stage, XSLT, Xsw, element, status_error, without,
};
use crate::support::gateway::{Env, Pending, idp_key};

const MARIO: &str = "RSSMRA80A01H501U";

async fn env() -> Env {
    Env::start(Arc::new(MemoryStore::new())).await
}

/// A browser-like client (cookies kept, redirects not followed) with a timeout, so a
/// gateway blocked on an outbound fetch fails the test instead of hanging it.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// An `application/x-www-form-urlencoded` body.
fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// What an attacker posts to the ACS while `pending` is outstanding.
struct Forged {
    pending: Pending,
    body: String,
    /// Whether the body reaches the SSO service (and so the transaction log): false
    /// for bodies the HTTP layer refuses (over the size limit, fields missing).
    logged: bool,
}

impl Forged {
    /// `xml` base64-encoded as SAMLResponse, with the pending request's RelayState.
    fn xml(pending: &Pending, xml: &str) -> Self {
        Self::fields(pending, &STANDARD.encode(xml), &pending.relay_state)
    }

    /// Arbitrary SAMLResponse and RelayState values.
    fn fields(pending: &Pending, saml_response: &str, relay_state: &str) -> Self {
        Self {
            pending: pending.clone(),
            body: form(&[("SAMLResponse", saml_response), ("RelayState", relay_state)]),
            logged: true,
        }
    }

    /// A raw body.
    fn raw(pending: &Pending, body: String, logged: bool) -> Self {
        Self {
            pending: pending.clone(),
            body,
            logged,
        }
    }
}

async fn post_body(env: &Env, client: &reqwest::Client, body: String) -> reqwest::Response {
    client
        .post(format!("{}/acs", env.gw))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Walks the pending login through the mock IdP (Mario Rossi, level 2, success) and
/// returns the (SAMLResponse, RelayState) it posts back: the genuine answer.
async fn genuine_answer(
    env: &Env,
    client: &reqwest::Client,
    pending: &Pending,
) -> (String, String) {
    let answer = env
        .idp_answer_for(client, pending, 2, MARIO, "success")
        .await;
    (answer.saml_response, answer.relay_state)
}

fn record_of(env: &Env, resp: &reqwest::Response) -> Option<serde_json::Value> {
    let request_id = resp
        .headers()
        .get("x-acs-request-id")
        .unwrap_or(&resp.headers()["x-request-id"])
        .to_str()
        .unwrap()
        .to_owned();
    let mut found: Vec<_> = env
        .txlog_records()
        .into_iter()
        .filter(|r| r["request_id"] == request_id.as_str())
        .collect();
    assert!(found.len() <= 1, "one record per request: {found:?}");
    found.pop()
}

/// Posts `forged`, asserts the refusal (status, code, page), that nothing changed
/// (no cookie, no session, a `rejected` log record with the code), and that the
/// genuine Response for the same pending request is still accepted afterwards.
/// Returns how long the refused request took.
async fn assert_refused_without_effect(
    env: &Env,
    client: &reqwest::Client,
    forged: Forged,
    expected_status: u16,
    expected_code: &str,
) -> Duration {
    let records_before = env.txlog_records().len();
    let started = Instant::now();
    let resp = post_body(env, client, forged.body).await;
    let elapsed = started.elapsed();
    assert_eq!(resp.status(), expected_status, "status");
    assert!(
        resp.headers().get_all("set-cookie").iter().next().is_none(),
        "a refused post sets no cookie"
    );
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "an error page, not a plain-text rejection"
    );
    let record = record_of(env, &resp);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains(expected_code) && page.contains("Identificativo richiesta"),
        "our error page with {expected_code}: {page}"
    );
    if forged.logged {
        let r = record.expect("a transaction-log record for the refused post");
        if expected_status == 401 {
            // An IdP status: logged as such, with the SPID ErrorCode.
            assert_eq!(r["outcome"], "idp_error", "{r}");
        } else {
            assert_eq!(r["outcome"], "rejected", "{r}");
            assert_eq!(r["error_code"], expected_code, "{r}");
        }
        assert_eq!(env.txlog_records().len(), records_before + 1);
    } else {
        assert!(record.is_none(), "{record:?}");
        assert_eq!(env.txlog_records().len(), records_before);
    }
    assert!(
        !env.home(client).await.contains("Benvenuto"),
        "no session after a refused post"
    );
    // The strong check: the pending request survived, the genuine answer still logs in.
    let (saml_response, relay_state) = genuine_answer(env, client, &forged.pending).await;
    let ok = env.post_acs(client, &saml_response, &relay_state).await;
    assert_eq!(
        ok.status(),
        303,
        "the genuine Response after a refused one: {}",
        ok.text().await.unwrap()
    );
    assert!(ok.headers().get("set-cookie").is_some());
    // Mario's account is not enabled: the ACS sends him to the enablement.
    assert_eq!(ok.headers()["location"], "/abilitazione");
    let accepted = record_of(env, &ok).unwrap();
    assert_eq!(accepted["outcome"], "accepted");
    assert_eq!(accepted["authn_req_id"], forged.pending.request_id.as_str());
    assert!(env.home(client).await.contains("Benvenuto/a, Mario Rossi"));
    elapsed
}

/// Starts a login with a fresh client, builds a Response for it with `make`, and
/// asserts the refusal without effect.
async fn refuse(
    env: &Env,
    expected_status: u16,
    expected_code: &str,
    make: impl FnOnce(&Pending) -> Forged,
) -> Duration {
    let c = client();
    let pending = env.start_login(&c, 2).await;
    let forged = make(&pending);
    assert_refused_without_effect(env, &c, forged, expected_status, expected_code).await
}

/// A Response crafted for `pending`, changed by `f`, signed with the mock IdP's key.
fn crafted(env: &Env, pending: &Pending, f: impl FnOnce(&mut Craft)) -> Forged {
    let mut c = Craft::for_login(env, pending);
    f(&mut c);
    Forged::xml(pending, &c.build(&env.idp_key))
}

#[tokio::test]
async fn the_crafted_base_response_is_accepted() {
    // The control for every case below: the unmutated craft logs in, signed both ways.
    let env = env().await;
    for sign_response in [true, false] {
        let c = client();
        let pending = env.start_login(&c, 2).await;
        let mut craft = Craft::for_login(&env, &pending);
        craft.response_sig.enabled = sign_response;
        let r = env
            .post_acs_xml(&c, &craft.build(&env.idp_key), &pending.relay_state)
            .await;
        assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
        assert_eq!(r.headers()["location"], "/abilitazione");
        let record = record_of(&env, &r).unwrap();
        assert_eq!(record["assertion_subject"], craft.name_id.as_str());
        assert!(env.home(&c).await.contains("Benvenuto/a, Mario Rossi"));
    }
}

#[tokio::test]
async fn doctype_entities_are_refused_before_any_xml_engine_sees_them() {
    let env = env().await;
    let trap = Trap::open();
    let laughs = (1..10)
        .map(|i| {
            format!(
                r#"<!ENTITY lol{i} "{}">"#,
                format!("&lol{};", i - 1).repeat(10)
            )
        })
        .collect::<String>();
    let cases = [
        (
            "billion laughs",
            format!(r#"<!DOCTYPE samlp:Response [<!ENTITY lol0 "lol">{laughs}]>"#),
            "&lol9;",
        ),
        (
            "external entity",
            format!(
                r#"<!DOCTYPE samlp:Response [<!ENTITY xxe SYSTEM "{}">]>"#,
                trap.url("entity")
            ),
            "&xxe;",
        ),
        (
            "external DTD",
            format!(r#"<!DOCTYPE samlp:Response SYSTEM "{}">"#, trap.url("dtd")),
            "",
        ),
        (
            "parameter entity",
            format!(
                r#"<!DOCTYPE samlp:Response [<!ENTITY % pe SYSTEM "{}"> %pe;]>"#,
                trap.url("pe")
            ),
            "",
        ),
    ];
    for (what, doctype, reference) in cases {
        refuse(&env, 400, "SAML_XML", |p| {
            crafted(&env, p, |c| {
                c.doctype = Some(format!(r#"<?xml version="1.0"?>{doctype}"#));
                let name_id = c.name_id.clone();
                let reference = reference.to_owned();
                if !reference.is_empty() {
                    // Added after signing: xmlsec would resolve it while signing.
                    c.edit_signed = Some(Box::new(move |x| {
                        x.replace(&format!(">{name_id}<"), &format!(">{reference}<"))
                    }));
                }
            })
        })
        .await;
        trap.assert_untouched(what);
    }
}

#[tokio::test]
async fn a_5_mb_body_is_413_and_the_gateway_stays_healthy() {
    let env = env().await;
    let five_mb = "A".repeat(5 * 1024 * 1024);
    let elapsed = refuse(&env, 413, "SAML_TOO_LARGE", |p| {
        Forged::raw(
            p,
            format!("SAMLResponse={five_mb}&RelayState={}", p.relay_state),
            false,
        )
    })
    .await;
    eprintln!("[timing] 5 MB ACS body refused with 413 in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    let health = client()
        .get(format!("{}/healthz", env.gw))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // Under the body limit but over the decoded-message cap (256 KiB): refused by the
    // service after base64 decoding, and logged.
    let big = STANDARD.encode("x".repeat(300 * 1024));
    refuse(&env, 413, "SAML_TOO_LARGE", |p| {
        Forged::fields(p, &big, &p.relay_state)
    })
    .await;
}

#[tokio::test]
async fn a_deflate_bomb_on_the_redirect_binding_is_refused_fast() {
    let env = env().await;
    // The shared decoder: 10 MB (and 100 MB) of expansion stop at the 256 KiB cap.
    let cap = Limits::default().max_bytes;
    for mb in [10, 100] {
        let bomb = deflate_base64(&"A".repeat(mb * 1024 * 1024)).unwrap();
        let started = Instant::now();
        assert_eq!(inflate_base64(&bomb, cap), Err(SamlError::TooLarge));
        let elapsed = started.elapsed();
        eprintln!(
            "[timing] inflate_base64: {mb} MB bomb ({} bytes of base64) refused in {elapsed:?}",
            bomb.len()
        );
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    }
    // The same bomb as a Redirect-binding AuthnRequest to the mock IdP's /sso: refused
    // before its signature is even looked at.
    let bomb = deflate_base64(&"A".repeat(10 * 1024 * 1024)).unwrap();
    let url = format!(
        "{}/sso?SAMLRequest={}&RelayState=x&SigAlg={}&Signature=AAAA",
        env.idp,
        encode_component(&bomb),
        encode_component("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")
    );
    let c = client();
    let started = Instant::now();
    let r = c.get(&url).send().await.unwrap();
    let elapsed = started.elapsed();
    eprintln!(
        "[timing] mock IdP GET /sso with a 10 MB deflate bomb: {} in {elapsed:?}",
        r.status()
    );
    assert_eq!(r.status(), 413);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.text().await.unwrap().contains("SAML_TOO_LARGE"));
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    // No other effect: the mock IdP still serves a whole login.
    let a = env.idp_answer(&c, 2, "redirect", MARIO, "success").await;
    assert_eq!(
        env.post_acs(&c, &a.saml_response, &a.relay_state)
            .await
            .status(),
        303
    );
}

#[tokio::test]
async fn remote_reference_uris_are_refused_without_fetching() {
    let env = env().await;
    let trap = Trap::open();
    for on_assertion in [true, false] {
        let uri = trap.url("reference");
        refuse(&env, 403, "SAML_SIGNATURE_NOT_ALLOWED", |p| {
            crafted(&env, p, |c| {
                let sig = if on_assertion {
                    &mut c.assertion_sig
                } else {
                    &mut c.response_sig
                };
                sig.reference_uri = Some((Stage::AfterSigning, uri));
            })
        })
        .await;
        trap.assert_untouched(&format!(
            "remote Reference (on the Assertion: {on_assertion})"
        ));
    }
}

#[tokio::test]
async fn xslt_transforms_are_refused_without_running() {
    let env = env().await;
    let trap = Trap::open();
    for on_assertion in [true, false] {
        let transform = format!(
            concat!(
                r#"<ds:Transform Algorithm="{}"><xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0">"#,
                r#"<xsl:template match="/"><xsl:copy-of select="document('{}')"/></xsl:template></xsl:stylesheet></ds:Transform>"#
            ),
            XSLT,
            trap.url("xslt")
        );
        refuse(&env, 403, "SAML_SIGNATURE_NOT_ALLOWED", |p| {
            crafted(&env, p, |c| {
                let sig = if on_assertion {
                    &mut c.assertion_sig
                } else {
                    &mut c.response_sig
                };
                sig.extra_transform = Some((Stage::AfterSigning, transform));
            })
        })
        .await;
        trap.assert_untouched(&format!("XSLT (on the Assertion: {on_assertion})"));
    }
}

#[tokio::test]
async fn sha1_signatures_are_refused() {
    let env = env().await;
    // Real SHA-1 signatures: xmlsec signs with what the template says.
    for (method, digest) in [(RSA_SHA1, None), (RSA_SHA1, Some(SHA1)), ("", Some(SHA1))] {
        for on_assertion in [true, false] {
            refuse(&env, 403, "SAML_SIGNATURE_NOT_ALLOWED", |p| {
                crafted(&env, p, |c| {
                    let sig = if on_assertion {
                        &mut c.assertion_sig
                    } else {
                        &mut c.response_sig
                    };
                    if !method.is_empty() {
                        sig.signature_method = method.into();
                    }
                    if let Some(d) = digest {
                        sig.digest_method = d.into();
                    }
                })
            })
            .await;
        }
    }
}

#[tokio::test]
async fn an_unsigned_assertion_is_refused_even_in_a_signed_response() {
    let env = env().await;
    refuse(&env, 403, "SAML_SIGNATURE_MISSING", |p| {
        crafted(&env, p, |c| c.assertion_sig = SigSpec::none())
    })
    .await;
    refuse(&env, 403, "SAML_SIGNATURE_MISSING", |p| {
        crafted(&env, p, |c| {
            c.assertion_sig = SigSpec::none();
            c.response_sig = SigSpec::none();
        })
    })
    .await;
}

/// Metadata of an IdP at `entity_id` whose SSO is on the mock IdP's host, signed with `key`.
fn idp_metadata(env: &Env, entity_id: &str, key: &SigningKey) -> String {
    build_idp_metadata(
        entity_id,
        &format!("{}/sso", env.idp),
        &format!("{}/slo", env.idp),
        "Second test IdP",
        key,
    )
    .unwrap()
}

#[tokio::test]
async fn an_idp_whose_metadata_has_no_signing_key_is_refused() {
    let env = env().await;
    let (key, _, _) = idp_key("Keyless IdP");
    let entity_id = format!("{}/keyless", env.idp);
    let md = idp_metadata(&env, &entity_id, &key);
    let keyless = without(&md, "md:KeyDescriptor");
    assert!(!keyless.contains("KeyDescriptor"));
    let warnings = env
        .federation
        .add_metadata(&keyless, true, "keyless test IdP")
        .unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(&entity_id) && warnings[0].contains("no signing certificate"),
        "{warnings:?}"
    );
    assert!(env.federation.get(&entity_id).is_none());
    let c = client();
    let r = c
        .get(format!(
            "{}/login?idp={}&level=2",
            env.gw,
            encode_component(&entity_id)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("set-cookie").is_none());
    let page = r.text().await.unwrap();
    assert!(page.contains("POLIS_UNKNOWN_IDP"), "{page}");
    let list = c.get(format!("{}/login", env.gw)).send().await.unwrap();
    assert!(!list.text().await.unwrap().contains(&entity_id));
    // A Response in its name, signed with its key, for a login to the mock IdP.
    refuse(&env, 403, "SAML_MISMATCH", |p| {
        let craft = Craft::for_login(&env, p).issued_by(&entity_id);
        Forged::xml(p, &craft.build(&key))
    })
    .await;
    // The pure guard: no keys, nothing verifies (samael alone would skip verification).
    let acs = format!("{}/acs", env.gw);
    let xml_text = Craft::new(&entity_id, &env.gw, &acs, &new_id(), chrono::Utc::now()).build(&key);
    assert_eq!(
        verify_and_reduce(&xml_text, &[], Limits::default(), ReferenceRule::IdOnly),
        Err(SamlError::SignatureInvalid)
    );
}

#[tokio::test]
async fn a_response_from_another_idp_or_key_is_refused() {
    let env = env().await;
    let (second_key, _, _) = idp_key("Second IdP");
    let second = format!("{}/second", env.idp);
    let warnings = env
        .federation
        .add_metadata(
            &idp_metadata(&env, &second, &second_key),
            true,
            "second IdP",
        )
        .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    // Control: the second IdP is trusted; its own Responses to its own logins pass.
    let c = client();
    let pending = env.start_login_at(&c, &second, 2).await;
    let own = Craft::for_login(&env, &pending)
        .issued_by(&second)
        .build(&second_key);
    let r = env.post_acs_xml(&c, &own, &pending.relay_state).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    // A login to the mock IdP answered by the second IdP: Issuer mismatch.
    refuse(&env, 403, "SAML_MISMATCH", |p| {
        let craft = Craft::for_login(&env, p).issued_by(&second);
        Forged::xml(p, &craft.build(&second_key))
    })
    .await;
    // The right Issuer, signed with the second IdP's key (its cert in KeyInfo, or the
    // mock IdP's cert claimed in KeyInfo): the metadata key of the mock IdP decides.
    for claim_mock_cert in [false, true] {
        refuse(&env, 403, "SAML_SIGNATURE_INVALID", |p| {
            crafted(&env, p, |c| {
                for sig in [&mut c.assertion_sig, &mut c.response_sig] {
                    sig.key = Some(second_key.clone());
                    if claim_mock_cert {
                        sig.key_info_cert = Some(env.idp_key.cert_base64().to_owned());
                    }
                }
            })
        })
        .await;
    }
    // An attacker's own key with its certificate in KeyInfo.
    let (attacker, _, _) = idp_key("Attacker");
    refuse(&env, 403, "SAML_SIGNATURE_INVALID", |p| {
        let craft = Craft::for_login(&env, p);
        Forged::xml(p, &craft.build(&attacker))
    })
    .await;
}

#[tokio::test]
async fn signature_wrapping_shapes_are_refused() {
    let env = env().await;
    for shape in [
        Xsw::AssertionInExtensions,
        Xsw::AssertionInObject,
        Xsw::TwoAssertions,
        Xsw::ResponseInExtensions,
        Xsw::SignatureInSubject,
    ] {
        refuse(&env, 403, "SAML_STRUCTURE", |p| {
            let craft = Craft::for_login(&env, p).wrapped(shape, &env.idp_key);
            Forged::xml(p, &craft.build(&env.idp_key))
        })
        .await;
    }
    // The Response's signature moved to reference the Assertion instead.
    refuse(&env, 403, "SAML_SIGNATURE_NOT_ALLOWED", |p| {
        crafted(&env, p, |c| {
            let aid = c.assertion_id.clone().unwrap();
            c.response_sig.reference_uri = Some((Stage::AfterSigning, format!("#{aid}")));
        })
    })
    .await;
    // The Assertion's signature moved up into the Response (a signature in an
    // unexpected place for what it signs).
    refuse(&env, 403, "SAML_SIGNATURE_NOT_ALLOWED", |p| {
        crafted(&env, p, |c| {
            c.response_sig = SigSpec::none();
            c.edit_signed = Some(Box::new(|x| {
                let sig = element(&x, "ds:Signature").to_owned();
                without(&x, "ds:Signature").replacen(
                    "<samlp:Status>",
                    &format!("{sig}<samlp:Status>"),
                    1,
                )
            }));
        })
    })
    .await;
}

#[tokio::test]
async fn tampering_and_correlation_failures_are_refused() {
    let env = env().await;
    // NameID changed after signing.
    refuse(&env, 403, "SAML_SIGNATURE_INVALID", |p| {
        crafted(&env, p, |c| {
            let n = c.name_id.clone();
            c.edit_signed = Some(Box::new(move |x| x.replace(&n, "_someone_else")));
        })
    })
    .await;
    // Unsolicited: a valid Response to a request the gateway never issued.
    refuse(&env, 403, "SAML_UNKNOWN_REQUEST", |p| {
        let mut craft = Craft::for_login(&env, p);
        let never_issued = new_id();
        craft.in_response_to = Some(never_issued.clone());
        craft.scd_in_response_to = Some(never_issued);
        Forged::xml(p, &craft.build(&env.idp_key))
    })
    .await;
    // The genuine-looking Response with the wrong RelayState, or none.
    for relay in [Some("another-relay-state"), None] {
        refuse(&env, 403, "SAML_RELAY_STATE", |p| {
            let xml_text = Craft::for_login(&env, p).build(&env.idp_key);
            let b64 = STANDARD.encode(xml_text);
            match relay {
                Some(r) => Forged::fields(p, &b64, r),
                None => Forged::raw(p, form(&[("SAMLResponse", b64.as_str())]), true),
            }
        })
        .await;
    }
}

#[tokio::test]
async fn an_unsigned_error_status_does_not_end_someone_elses_login() {
    // Anyone can post "ErrorCode nr25" (user cancelled) without a signature for a
    // pending request: it is shown as an IdP status, but must not consume the request.
    let env = env().await;
    refuse(&env, 401, "SPID_IDP_STATUS", |p| {
        crafted(&env, p, |c| {
            c.include_assertion = false;
            c.status = status_error(25);
            c.response_sig = SigSpec::none();
        })
    })
    .await;
}

#[tokio::test]
async fn a_comment_in_the_name_id_is_refused_not_truncated() {
    // Exclusive c14n drops comments, so xmlsec signs "user.evil"; samael's reduction
    // finds a comment node the signed pre-digest does not have and fails closed. The
    // gateway never reads "user" alone (see saml_rules for the pure-level proof).
    let env = env().await;
    refuse(&env, 403, "SAML_SIGNATURE_INVALID", |p| {
        crafted(&env, p, |c| c.name_id = "user<!---->.evil".into())
    })
    .await;
}

#[tokio::test]
async fn malformed_posts_are_400_on_our_page() {
    let env = env().await;
    refuse(&env, 400, "SAML_ENCODING", |p| {
        Forged::fields(p, "this is not base64!", &p.relay_state)
    })
    .await;
    refuse(&env, 400, "SAML_ENCODING", |p| {
        Forged::fields(p, &STANDARD.encode([0xff_u8, 0xfe, 0x00]), &p.relay_state)
    })
    .await;
    refuse(&env, 400, "SAML_XML", |p| Forged::xml(p, "<samlp:Response")).await;
    // Missing field: our error page (not axum's plain-text rejection), not logged.
    refuse(&env, 400, "POLIS_BAD_REQUEST", |p| {
        Forged::raw(p, form(&[("RelayState", &p.relay_state)]), false)
    })
    .await;
}

/// `markup` as UTF-7 carries it past a UTF-8 reader: `<`, `>` and `"` in shifted
/// base64, everything else as itself. A UTF-8 reader sees text; a UTF-7 reader sees
/// elements.
pub fn utf7_hidden(markup: &str) -> String {
    markup
        .chars()
        .map(|c| match c {
            '<' => "+ADw-".to_owned(),
            '>' => "+AD4-".to_owned(),
            '"' => "+ACI-".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// A second `ds:Reference` to `url` with an XSLT transform whose cost is 2^`depth`
/// template calls, written as markup (to be hidden with [`utf7_hidden`]).
pub fn hidden_reference(url: &str, depth: u32) -> String {
    format!(
        concat!(
            r#"<ds:Reference URI="{url}"><ds:Transforms><ds:Transform Algorithm="{xslt}">"#,
            r#"<xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0">"#,
            r#"<xsl:template match="/"><xsl:call-template name="t"><xsl:with-param name="n" select="{depth}"/></xsl:call-template></xsl:template>"#,
            r#"<xsl:template name="t"><xsl:param name="n"/><xsl:if test="$n &gt; 0">"#,
            r#"<xsl:call-template name="t"><xsl:with-param name="n" select="$n - 1"/></xsl:call-template>"#,
            r#"<xsl:call-template name="t"><xsl:with-param name="n" select="$n - 1"/></xsl:call-template>"#,
            r#"</xsl:if></xsl:template></xsl:stylesheet></ds:Transform></ds:Transforms>"#,
            r#"<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue>AAAA</ds:DigestValue></ds:Reference>"#
        ),
        url = url,
        xslt = XSLT,
        depth = depth,
    )
}

/// `xml` declared in `encoding`, with `hidden` (UTF-7-encoded) inside the first
/// SignedInfo, where only a UTF-7 reader would find it.
pub fn with_hidden_markup(xml: &str, encoding: &str, hidden: &str) -> String {
    let body = polis_gateway::saml::sign::strip_xml_declaration(xml);
    let at = body.find("SignedInfo>").unwrap() + "SignedInfo>".len();
    format!(
        r#"<?xml version="1.0" encoding="{encoding}"?>{}{}{}"#,
        &body[..at],
        utf7_hidden(hidden),
        &body[at..]
    )
}

#[tokio::test]
async fn non_utf8_encodings_hiding_a_remote_reference_and_xslt_are_refused() {
    // Class 1 of issue 8: a UTF-7 declaration hid markup from the strict reader that
    // libxml2 then parsed (a remote Reference fetched, an exponential XSLT run).
    let env = env().await;
    let trap = Trap::open();
    for encoding in [
        "UTF-7",
        "utf-7",
        "UTF7",
        "csUnicode11UTF7",
        "UTF-16",
        "ISO-8859-1",
        "EBCDIC-CP-US",
    ] {
        let mut elapsed = Vec::new();
        for depth in [2, 40] {
            let hidden = hidden_reference(&trap.url("utf7"), depth);
            elapsed.push(
                refuse(&env, 400, "SAML_ENCODING", |p| {
                    let xml = Craft::for_login(&env, p).build(&env.idp_key);
                    Forged::xml(p, &with_hidden_markup(&xml, encoding, &hidden))
                })
                .await,
            );
            trap.assert_untouched(&format!("{encoding}, XSLT depth {depth}"));
        }
        // 2^40 template calls would run for days: the answer must not depend on it.
        assert!(
            elapsed[1] < elapsed[0] * 4 + Duration::from_secs(1),
            "{encoding}: {elapsed:?}"
        );
    }
}

#[tokio::test]
async fn ambiguous_identities_are_refused_with_no_account_and_no_session() {
    // Class 3 of issue 8: the first value used to win.
    let env = env().await;
    const GIULIA: &str = "BNCGLI85M52F205H";
    const LUCA: &str = "VRDLCU72T10L219N";
    let attrs = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = vec![
            ("name".into(), "Giulia".into()),
            ("familyName".into(), "Bianchi".into()),
        ];
        v.extend(
            extra
                .iter()
                .map(|(k, x)| ((*k).to_owned(), (*x).to_owned())),
        );
        v
    };
    let giulia = format!("TINIT-{GIULIA}");
    let luca = format!("TINIT-{LUCA}");
    let two_fiscal_numbers = attrs(&[("fiscalNumber", &giulia), ("fiscalNumber", &luca)]);
    type Edit = Box<dyn Fn(&mut Craft)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "two fiscalNumber attributes",
            Box::new(move |c: &mut Craft| c.attributes = two_fiscal_numbers.clone()),
        ),
        (
            "one attribute with two values",
            Box::new({
                let (giulia, luca) = (giulia.clone(), luca.clone());
                move |c: &mut Craft| {
                    c.attributes = attrs(&[("fiscalNumber", &giulia)]);
                    let (g, l) = (giulia.clone(), luca.clone());
                    c.edit_assertion = Some(Box::new(move |a| {
                        a.replacen(
                            &format!("{g}</saml:AttributeValue>"),
                            &format!("{g}</saml:AttributeValue><saml:AttributeValue>{l}</saml:AttributeValue>"),
                            1,
                        )
                    }));
                }
            }),
        ),
        (
            "two AttributeStatements",
            Box::new({
                let giulia = giulia.clone();
                move |c: &mut Craft| {
                    c.attributes = attrs(&[("fiscalNumber", &giulia)]);
                    c.edit_assertion = Some(Box::new(|a| {
                        a.replacen(
                            "</saml:AttributeStatement>",
                            "</saml:AttributeStatement><saml:AttributeStatement><saml:Attribute Name=\"email\"><saml:AttributeValue>x@example.it</saml:AttributeValue></saml:Attribute></saml:AttributeStatement>",
                            1,
                        )
                    }));
                }
            }),
        ),
        (
            "a 100 KB name",
            Box::new({
                let giulia = giulia.clone();
                move |c: &mut Craft| {
                    c.attributes = attrs(&[("fiscalNumber", &giulia)]);
                    c.attributes[0].1 = "G".repeat(100_000);
                }
            }),
        ),
        (
            "an e-mail with CR/LF",
            Box::new({
                let giulia = giulia.clone();
                move |c: &mut Craft| {
                    c.attributes = attrs(&[
                        ("fiscalNumber", &giulia),
                        ("email", "g@example.it\r\nBcc: all@example.it"),
                    ]);
                }
            }),
        ),
        (
            "a 200 KB NameID",
            Box::new({
                let giulia = giulia.clone();
                move |c: &mut Craft| {
                    c.attributes = attrs(&[("fiscalNumber", &giulia)]);
                    c.name_id = "n".repeat(200_000);
                }
            }),
        ),
    ];
    for (what, edit) in cases {
        refuse(&env, 403, "SAML_ATTRIBUTE", |p| {
            crafted(&env, p, |c| edit(c))
        })
        .await;
        assert!(
            env.account(GIULIA).await.is_none(),
            "{what}: an account was made"
        );
        assert!(
            env.account(LUCA).await.is_none(),
            "{what}: an account was made"
        );
    }
}
