//! Hostile input at the gate (issue 8), over real HTTP: non-UTF-8 documents on every
//! path where XML meets libxml2 (`/slo` on both bindings, the mock IdP's SSO), the
//! XML-DSig engine's own defences when a document is handed to it directly, `/healthz`
//! during an attack, and slow clients at the HTTP edge.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use polis_gateway::saml::binding::{deflate_base64, encode_component};
use polis_gateway::state::MemoryStore;
use samael::crypto::{CertificateDer, Crypto, CryptoProvider, ReduceMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::acs_negative::{hidden_reference, utf7_hidden, with_hidden_markup};
use crate::support::Trap;
use crate::support::craft::Craft;
use crate::support::gateway::{Env, EnvOptions};

const LOGOUT_REQUEST: &str = concat!(
    r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" "#,
    r#"xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_hostile" Version="2.0" "#,
    r#"IssueInstant="2026-01-01T00:00:00Z"><saml:Issuer>x</saml:Issuer>"#,
    r#"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>"#,
    r#"</ds:SignedInfo></ds:Signature></samlp:LogoutRequest>"#
);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A LogoutRequest-shaped document declared in `encoding`, hiding a remote Reference
/// with an XSLT of cost 2^`depth`.
fn hostile_logout_request(trap: &Trap, encoding: &str, depth: u32) -> String {
    with_hidden_markup(
        LOGOUT_REQUEST,
        encoding,
        &hidden_reference(&trap.url("slo"), depth),
    )
}

/// Times of `/healthz` answers taken while `attack` runs; the median must stay under
/// 100 ms and none may take a second.
async fn healthz_during<F: std::future::Future<Output = ()>>(env: &Env, attack: F) {
    let c = client();
    let probe = async {
        let mut times = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let r = c.get(format!("{}/healthz", env.gw)).send().await.unwrap();
            assert_eq!(r.status(), 200);
            times.push(t.elapsed());
        }
        times
    };
    let (mut times, ()) = tokio::join!(probe, attack);
    times.sort();
    let median = times[times.len() / 2];
    assert!(median < Duration::from_millis(100), "{times:?}");
    assert!(times[times.len() - 1] < Duration::from_secs(1), "{times:?}");
}

#[tokio::test]
async fn slo_on_both_bindings_refuses_non_utf8_documents_without_fetching() {
    let env = Env::start(Arc::new(MemoryStore::new())).await;
    let trap = Trap::open();
    let attack = async {
        for encoding in ["UTF-7", "utf-7", "UTF-16", "ISO-8859-1"] {
            for depth in [2, 40] {
                let xml = hostile_logout_request(&trap, encoding, depth);
                // HTTP-POST
                let t = Instant::now();
                let r = client()
                    .post(format!("{}/slo", env.gw))
                    .form(&[("SAMLRequest", STANDARD.encode(&xml))])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 400, "POST {encoding}");
                let page = r.text().await.unwrap();
                assert!(page.contains("SAML_ENCODING"), "{page}");
                assert!(t.elapsed() < Duration::from_secs(5));
                // HTTP-Redirect
                let query = format!(
                    "SAMLRequest={}&SigAlg={}&Signature=AAAA",
                    encode_component(&deflate_base64(&xml).unwrap()),
                    encode_component("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")
                );
                let r = client()
                    .get(format!("{}/slo?{query}", env.gw))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 400, "Redirect {encoding}");
                assert!(r.text().await.unwrap().contains("SAML_ENCODING"));
                trap.assert_untouched(&format!("/slo {encoding} depth {depth}"));
            }
        }
    };
    healthz_during(&env, attack).await;
    trap.assert_untouched("after the attack");
}

#[tokio::test]
async fn the_mock_idp_refuses_non_utf8_authn_requests_without_fetching() {
    let env = Env::start(Arc::new(MemoryStore::new())).await;
    let trap = Trap::open();
    let request = concat!(
        r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" "#,
        r#"xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_hostile" Version="2.0" "#,
        r#"IssueInstant="2026-01-01T00:00:00Z"><saml:Issuer>x</saml:Issuer>"#,
        r#"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>"#,
        r#"</ds:SignedInfo></ds:Signature></samlp:AuthnRequest>"#
    );
    for encoding in ["UTF-7", "UTF-16", "ISO-8859-1"] {
        let xml = with_hidden_markup(request, encoding, &hidden_reference(&trap.url("idp"), 40));
        let t = Instant::now();
        let r = client()
            .post(format!("{}/sso", env.idp))
            .form(&[("SAMLRequest", STANDARD.encode(&xml))])
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{encoding}: {}", r.status());
        assert!(t.elapsed() < Duration::from_secs(5));
        trap.assert_untouched(&format!("mock IdP {encoding}"));
    }
}

/// The XML-DSig engine on its own (our strict reader bypassed): the patched samael
/// must not fetch, load entities or run XSLT whatever the document says.
#[test]
fn the_signature_engine_alone_never_fetches_or_runs_xslt() {
    let trap = Trap::open();
    let (key, _, cert_pem) = crate::support::gateway::idp_key("engine test");
    let cert = openssl::x509::X509::from_pem(&cert_pem).unwrap();
    let certs = [CertificateDer::from(cert.to_der().unwrap())];
    let signed = key
        .sign_enveloped(&format!(
            r#"<r:Root xmlns:r="urn:r" ID="_root">{}<r:Data>x</r:Data></r:Root>"#,
            polis_gateway::saml::sign::signature_template("_root", key.cert_base64())
        ))
        .unwrap();
    // The control: the untouched document verifies.
    assert!(
        Crypto::reduce_xml_to_signed_with_allowed_algorithms(
            &signed,
            &certs,
            ReduceMode::ValidateAndMarkNoAncestors,
            None
        )
        .is_ok()
    );
    let remote = signed.replacen(
        r##"URI="#_root""##,
        &format!(r#"URI="{}""#, trap.url("ref")),
        1,
    );
    let xslt = signed.replacen(
        "</ds:Transforms>",
        &format!(
            r#"<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116"><xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0"><xsl:template match="/"><xsl:copy-of select="document('{}')"/></xsl:template></xsl:stylesheet></ds:Transform></ds:Transforms>"#,
            trap.url("xslt")
        ),
        1,
    );
    let entity = format!(
        r#"<?xml version="1.0"?><!DOCTYPE r:Root [<!ENTITY e SYSTEM "{}">]>{}"#,
        trap.url("entity"),
        signed.replacen("<r:Data>x</r:Data>", "<r:Data>&e;</r:Data>", 1)
    );
    let external_dtd = format!(
        r#"<?xml version="1.0"?><!DOCTYPE r:Root SYSTEM "{}">{signed}"#,
        trap.url("dtd")
    );
    let xinclude = signed.replacen(
        "<r:Data>x</r:Data>",
        &format!(
            r#"<r:Data><xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{}"/></r:Data>"#,
            trap.url("xinclude")
        ),
        1,
    );
    let utf7 = format!(
        r#"<?xml version="1.0" encoding="UTF-7"?>{}"#,
        signed.replacen(
            "<ds:SignedInfo>",
            &format!(
                "<ds:SignedInfo>{}",
                utf7_hidden(&hidden_reference(&trap.url("utf7"), 40))
            ),
            1
        )
    );
    for (what, doc, must_fail) in [
        ("remote Reference", remote, true),
        ("XSLT transform", xslt, true),
        ("external entity", entity, false),
        ("external DTD", external_dtd, false),
        ("XInclude", xinclude, false),
        ("UTF-7 declaration", utf7, false),
    ] {
        let t = Instant::now();
        let r = Crypto::reduce_xml_to_signed_with_allowed_algorithms(
            &doc,
            &certs,
            ReduceMode::ValidateAndMarkNoAncestors,
            None,
        );
        if must_fail {
            assert!(r.is_err(), "{what} was accepted");
        }
        if let Ok(reduced) = &r {
            // Whatever verified is what we signed: nothing was substituted or included.
            assert!(reduced.contains("<r:Data>"), "{what}: {reduced}");
            assert!(!reduced.contains("include"), "{what}: {reduced}");
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{what}");
        trap.assert_untouched(what);
    }
}

/// Opens `n` connections that send a request line and then one header line every
/// `every`, never finishing; returns them.
async fn slow_header_clients(addr: &str, n: usize) -> Vec<TcpStream> {
    let mut conns = Vec::new();
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        conns.push(s);
    }
    conns
}

/// Waits until the server closes `s` (EOF or reset), feeding it a byte of `drip`
/// every 500 ms; panics after `deadline`.
async fn closed_within(mut s: TcpStream, drip: &'static [u8], deadline: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        assert!(started.elapsed() < deadline, "connection still open");
        match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {} // e.g. a 408 answer: keep reading until the close
            Err(_) => {
                if s.write_all(drip).await.is_err() {
                    return started.elapsed();
                }
            }
        }
    }
}

#[tokio::test]
async fn slow_headers_and_slow_bodies_are_cut_off_and_the_gateway_keeps_serving() {
    let env = Env::start_with(
        Arc::new(MemoryStore::new()),
        EnvOptions {
            extra_toml: "\n[limits]\nheader_read_timeout_seconds = 2\nrequest_timeout_seconds = 3\nmax_connections = 512\n".into(),
            ..EnvOptions::default()
        },
    )
    .await;
    let addr = env.gw.trim_start_matches("http://").to_owned();
    let headers = slow_header_clients(&addr, 100).await;
    let mut bodies = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(
            b"POST /acs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\nSAMLRespon",
        )
        .await
        .unwrap();
        bodies.push(s);
    }
    // The gateway serves others meanwhile.
    let (status, _) = env.get(&client(), "/healthz").await;
    assert_eq!(status, 200);
    let mut waits = Vec::new();
    for s in headers {
        waits.push(tokio::spawn(closed_within(
            s,
            b"X-Slow: 1\r\n",
            Duration::from_secs(15),
        )));
    }
    for s in bodies {
        waits.push(tokio::spawn(closed_within(
            s,
            b"0123456789",
            Duration::from_secs(15),
        )));
    }
    let mut longest = Duration::ZERO;
    for w in waits {
        longest = longest.max(w.await.unwrap());
    }
    // Header timeout 2 s, request timeout 3 s: every one closed well before 15 s.
    assert!(longest < Duration::from_secs(10), "{longest:?}");
    let (status, _) = env.get(&client(), "/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let env = Env::start_with(
        Arc::new(MemoryStore::new()),
        EnvOptions {
            extra_toml: "\n[limits]\nheader_read_timeout_seconds = 2\n".into(),
            ..EnvOptions::default()
        },
    )
    .await;
    let addr = env.gw.trim_start_matches("http://").to_owned();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Then silence: the server ends the kept-alive connection by itself.
    let started = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle connection stayed open");
    assert!(started.elapsed() >= Duration::from_millis(1500));
}

#[tokio::test]
async fn a_body_too_slow_gets_the_408_page_with_its_request_id() {
    let env = Env::start_with(
        Arc::new(MemoryStore::new()),
        EnvOptions {
            extra_toml: "\n[limits]\nrequest_timeout_seconds = 2\n".into(),
            ..EnvOptions::default()
        },
    )
    .await;
    let mut s = TcpStream::connect(env.gw.trim_start_matches("http://"))
        .await
        .unwrap();
    s.write_all(
        b"POST /acs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nSAMLResponse=",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut answer))
        .await
        .expect("the gateway answers and closes")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("POLIS_REQUEST_TIMEOUT"), "{answer}");
    let id = answer
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("x-request-id header")
        .trim();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    let (_, body) = answer.split_once("\r\n\r\n").expect("a body");
    assert!(body.contains(id), "the page names the request id: {body}");
}

#[tokio::test]
async fn get_on_post_only_urls_answers_our_page_with_allow() {
    let env = Env::start(Arc::new(MemoryStore::new())).await;
    for path in ["/acs", "/logout", "/oidc/token", "/abilitazione/reinvio"] {
        let r = client()
            .get(format!("{}{path}", env.gw))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 405, "{path}");
        let allow = r.headers()["allow"].to_str().unwrap().to_owned();
        assert!(allow.contains("POST"), "{path}: {allow}");
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        let page = r.text().await.unwrap();
        assert!(page.contains("<html"), "{path}: {page}");
        assert!(
            page.contains("POLIS_METHOD_NOT_ALLOWED") && page.contains(&id),
            "{path}: {page}"
        );
        assert!(page.contains("non aprendolo nel browser"), "{path}");
    }
}

#[tokio::test]
async fn request_ids_are_minted_by_the_server() {
    let env = Env::start(Arc::new(MemoryStore::new())).await;
    let r = client()
        .get(format!("{}/nowhere", env.gw))
        .header("x-request-id", "attacker-chosen")
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, "attacker-chosen");
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let page = r.text().await.unwrap();
    assert!(page.contains(&id) && !page.contains("attacker-chosen"));
}

#[tokio::test]
async fn a_rejected_response_is_logged_truncated_with_its_hash() {
    let env = Env::start(Arc::new(MemoryStore::new())).await;
    let c = env.client();
    let pending = env.start_login(&c, 2).await;
    let mut craft = Craft::for_login(&env, &pending);
    craft.assertion_sig.enabled = false;
    let xml = craft.build(&env.idp_key);
    // Padding in a comment makes the rejected document larger than the 16 KiB kept.
    let xml = xml.replacen(
        "<saml:Issuer",
        &format!("<!--{}--><saml:Issuer", "p".repeat(40_000)),
        1,
    );
    let r = env.post_acs_xml(&c, &xml, &pending.relay_state).await;
    assert_eq!(r.status(), 403);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let rec = env
        .txlog_records()
        .into_iter()
        .find(|r| r["request_id"] == id.as_str())
        .unwrap();
    assert_eq!(rec["outcome"], "rejected");
    assert_eq!(rec["resp_truncated"], true);
    assert_eq!(rec["resp_xml"].as_str().unwrap().len(), 16 * 1024);
    assert_eq!(
        rec["resp_sha256"],
        hex::encode(openssl::sha::sha256(xml.as_bytes())).as_str()
    );
    // An accepted Response is kept whole.
    let answer = env
        .idp_answer(&c, 2, "redirect", "RSSMRA80A01H501U", "success")
        .await;
    let ok = env
        .post_acs(&c, &answer.saml_response, &answer.relay_state)
        .await;
    assert_eq!(ok.status(), 303);
    let id = ok.headers()["x-acs-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let rec = env
        .txlog_records()
        .into_iter()
        .find(|r| r["request_id"] == id.as_str())
        .unwrap();
    assert_eq!(rec["outcome"], "accepted");
    assert!(rec.get("resp_truncated").is_none());
    let whole = STANDARD.decode(&answer.saml_response).unwrap();
    assert_eq!(rec["resp_xml"].as_str().unwrap().as_bytes(), &whole[..]);
}

fn session_index_key(idp: &str, name_id: &str) -> String {
    format!(
        "polis:sesslogin:{}",
        hex::encode(openssl::sha::sha256(format!("{idp}\n{name_id}").as_bytes()))
    )
}

#[tokio::test]
async fn a_response_finished_in_another_browser_opens_nothing_there() {
    // Class 2 of issue 8 (login CSRF): the attacker logs in with their own identity
    // in browser A and makes browser B post the Response.
    let env = Env::start(Arc::new(MemoryStore::new())).await;
    let a = env.client();
    let b = env.client();
    let answer = env
        .idp_answer(&a, 2, "redirect", "RSSMRA80A01H501U", "success")
        .await;
    let acs = b
        .post(format!("{}/acs", env.gw))
        .form(&[
            ("SAMLResponse", answer.saml_response.as_str()),
            ("RelayState", answer.relay_state.as_str()),
        ])
        .send()
        .await
        .unwrap();
    // The ACS judges the Response alone (it is valid) and never sets a cookie.
    assert_eq!(acs.status(), 303);
    assert!(acs.headers().get("set-cookie").is_none());
    let location = acs.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/login/complete?"), "{location}");
    // Browser B follows: refused, no session cookie, a clear page.
    let r = b.get(format!("{}{location}", env.gw)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    let page = r.text().await.unwrap();
    assert!(
        page.contains("POLIS_LOGIN_OTHER_BROWSER") && page.contains("altro browser"),
        "{page}"
    );
    assert!(!env.home(&b).await.contains("Benvenuto"));
    // The parked login was used up: browser A cannot pick it up afterwards either.
    let r = a.get(format!("{}{location}", env.gw)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("POLIS_LOGIN_NOT_PENDING"));
    assert!(!env.home(&a).await.contains("Benvenuto"));
    // The same login finished in the browser that started it works.
    let answer = env
        .idp_answer(&a, 2, "redirect", "RSSMRA80A01H501U", "success")
        .await;
    let ok = env
        .post_acs(&a, &answer.saml_response, &answer.relay_state)
        .await;
    assert_eq!(ok.status(), 303);
    assert!(env.home(&a).await.contains("Benvenuto/a, Mario Rossi"));
    assert!(!env.home(&b).await.contains("Benvenuto"));
}

#[tokio::test]
async fn a_login_for_another_person_ends_the_session_already_open() {
    let env = Env::start(Arc::new(MemoryStore::new())).await;
    let c = env.client();
    let ok = env.login(&c, "RSSMRA80A01H501U").await;
    assert_eq!(ok.status(), 303);
    assert!(env.home(&c).await.contains("Mario Rossi"));
    let mario = env
        .txlog_records()
        .into_iter()
        .rfind(|r| r["outcome"] == "accepted")
        .unwrap();
    let mario_key = session_index_key(
        mario["idp_entity_id"].as_str().unwrap(),
        mario["assertion_subject"].as_str().unwrap(),
    );
    assert!(env.store.get(&mario_key).await.unwrap().is_some());
    // The same browser now logs in as Giulia Bianchi.
    let ok = env.login(&c, "BNCGLI85M52F205H").await;
    assert_eq!(ok.status(), 303);
    let home = env.home(&c).await;
    assert!(
        home.contains("Giulia") && !home.contains("Mario Rossi"),
        "{home}"
    );
    // Mario's session was ended, not just left behind the new cookie.
    assert!(env.store.get(&mario_key).await.unwrap().is_none());
}

#[tokio::test]
async fn per_client_rates_answer_429_with_retry_after_and_spare_other_clients() {
    let env = Env::start_with(
        Arc::new(MemoryStore::new()),
        EnvOptions {
            extra_toml: "\n[limits]\nclient_ip_header = \"x-forwarded-for\"\n[limits.rate]\n\
                         login_per_minute = 1\nacs_per_minute = 1\nslo_per_minute = 1\n\
                         secret_forms_per_minute = 1\ntoken_per_minute = 1\nburst = 5\n"
                .into(),
            ..EnvOptions::default()
        },
    )
    .await;
    let c = client();
    let url = env.login_url(2, "redirect");
    let get = |ip: &'static str| {
        let c = c.clone();
        let url = url.clone();
        async move {
            c.get(&url)
                .header("x-forwarded-for", format!("203.0.113.9, {ip}"))
                .send()
                .await
                .unwrap()
        }
    };
    // 20 parallel logins from one client: the burst of 5 passes, the rest are 429.
    let answers = crate::support::race(20, |_| get("198.51.100.7")).await;
    let ok = answers.iter().filter(|r| r.status() == 302).count();
    let limited: Vec<_> = answers.iter().filter(|r| r.status() == 429).collect();
    assert_eq!(
        ok,
        5,
        "{:?}",
        answers.iter().map(|r| r.status()).collect::<Vec<_>>()
    );
    assert_eq!(limited.len(), 15);
    assert!(
        limited
            .iter()
            .all(|r| r.headers().contains_key("retry-after"))
    );
    // Another client (another address from the proxy) is not affected.
    assert_eq!(get("198.51.100.8").await.status(), 302);
    // The limited page is ours, with its stable code.
    let page = get("198.51.100.7").await.text().await.unwrap();
    assert!(page.contains("POLIS_RATE_LIMITED"), "{page}");
    // /healthz is never limited.
    for _ in 0..20 {
        assert_eq!(env.get(&c, "/healthz").await.0, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_saturated_verification_pool_answers_503_and_healthz_stays_fast() {
    // One worker and a 1 ms queue: 30 large Responses at once cannot all be verified.
    let env = Env::start_with(
        Arc::new(MemoryStore::new()),
        EnvOptions {
            extra_toml: "\n[limits]\nverify_workers = 1\nverify_queue_wait_ms = 1\n".into(),
            ..EnvOptions::default()
        },
    )
    .await;
    let mut posts = Vec::new();
    for _ in 0..30 {
        let c = env.client();
        let pending = env.start_login(&c, 2).await;
        let xml = Craft::for_login(&env, &pending).build(&env.idp_key);
        // A large but well-formed document: padding in a comment before the Issuer.
        let xml = xml.replacen(
            "<saml:Issuer",
            &format!("<!--{}--><saml:Issuer", "p".repeat(150_000)),
            1,
        );
        posts.push((c, STANDARD.encode(xml), pending.relay_state));
    }
    let gw = env.gw.clone();
    let attack = async move {
        let mut set = tokio::task::JoinSet::new();
        for (c, body, relay) in posts {
            let url = format!("{gw}/acs");
            set.spawn(async move {
                let r = c
                    .post(url)
                    .form(&[("SAMLResponse", body), ("RelayState", relay)])
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let retry = r.headers().contains_key("retry-after");
                (status, retry, r.text().await.unwrap())
            });
        }
        set.join_all().await
    };
    let answers = attack.await;
    let busy: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 503).collect();
    assert!(
        !busy.is_empty(),
        "no 503 among {:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    assert!(
        busy.iter()
            .all(|(_, retry, page)| *retry && page.contains("POLIS_BUSY"))
    );
    // Everything else was judged normally (the comment padding is legal).
    assert!(
        answers.iter().all(|(s, _, _)| matches!(s, 303 | 503)),
        "{:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    // And /healthz never waits for the pool.
    healthz_during(&env, async {
        let c = env.client();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let pending = env.start_login(&c, 2).await;
            let xml = Craft::for_login(&env, &pending).build(&env.idp_key);
            let xml = xml.replacen(
                "<saml:Issuer",
                &format!("<!--{}--><saml:Issuer", "p".repeat(150_000)),
                1,
            );
            let (c, url) = (c.clone(), format!("{}/acs", env.gw));
            set.spawn(async move {
                c.post(url)
                    .form(&[
                        ("SAMLResponse", STANDARD.encode(xml)),
                        ("RelayState", pending.relay_state),
                    ])
                    .send()
                    .await
                    .unwrap()
                    .status()
            });
        }
        set.join_all().await;
    })
    .await;
}
