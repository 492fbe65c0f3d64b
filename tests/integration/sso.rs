//! SPID login over real HTTP: gateway + mock IdP on loopback ports, on both state
//! backends (in-memory and a real redis-server started by the test).

use std::sync::Arc;
use std::time::Duration;

use polis_gateway::state::{MemoryStore, RedisConfig, RedisStore, StateStore};

use crate::support::eventually;
use crate::support::gateway::Env;
use crate::support::redis::RedisServer;

const MARIO: &str = "RSSMRA80A01H501U";

fn memory() -> Arc<dyn StateStore> {
    Arc::new(MemoryStore::new())
}

fn redis(server: &RedisServer) -> Arc<dyn StateStore> {
    Arc::new(RedisStore::connect(&RedisConfig::standalone(server.url())).unwrap())
}

async fn round_trip(env: &Env, level: u8, binding: &str) {
    let c = env.client();
    let a = env.idp_answer(&c, level, binding, MARIO, "success").await;
    let r = env.post_acs(&c, &a.saml_response, &a.relay_state).await;
    assert_eq!(
        r.status(),
        303,
        "{binding} L{level}: {}",
        r.text().await.unwrap()
    );
    // Mario's account is new (or not yet enabled): the enablement comes first.
    assert_eq!(r.headers()["location"], "/abilitazione");
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );
    let home = env.home(&c).await;
    assert!(home.contains("Benvenuto/a, Mario Rossi"), "{home}");
    assert!(home.contains(&format!("livello {level}")), "{home}");
    // The codice fiscale of the linked account, without the SPID `TINIT-` prefix.
    assert!(home.contains("RSSMRA80A01H501U"), "{home}");
    assert!(!home.contains("TINIT-"), "{home}");
}

#[tokio::test]
async fn round_trip_every_level_and_binding_on_memory() {
    let env = Env::start(memory()).await;
    for binding in ["redirect", "post"] {
        for level in 1..=3 {
            round_trip(&env, level, binding).await;
        }
    }
    let records = env.txlog_records();
    let accepted: Vec<_> = records
        .iter()
        .filter(|r| r["outcome"] == "accepted")
        .collect();
    assert_eq!(accepted.len(), 6);
    for r in accepted {
        assert!(
            r["authn_req_xml"]
                .as_str()
                .unwrap()
                .contains("AuthnRequest")
        );
        assert!(r["resp_xml"].as_str().unwrap().contains("Assertion"));
        assert_eq!(r["resp_issuer"], env.idp.as_str());
        assert!(r["assertion_id"].as_str().unwrap().starts_with('_'));
        assert!(
            r["acr"]
                .as_str()
                .unwrap()
                .starts_with("https://www.spid.gov.it/SpidL")
        );
    }
}

#[tokio::test]
async fn round_trip_every_level_on_redis() {
    let server = RedisServer::start();
    let env = Env::start(redis(&server)).await;
    for level in 1..=3 {
        round_trip(&env, level, "redirect").await;
    }
    round_trip(&env, 2, "post").await;
}

async fn second_post_is_refused(env: &Env) {
    let c = env.client();
    let a = env.idp_answer(&c, 2, "redirect", MARIO, "success").await;
    assert_eq!(
        env.post_acs(&c, &a.saml_response, &a.relay_state)
            .await
            .status(),
        303
    );
    let other = env.client();
    let again = env.post_acs(&other, &a.saml_response, &a.relay_state).await;
    assert_eq!(again.status(), 403);
    assert!(again.headers().get("set-cookie").is_none());
    let body = again.text().await.unwrap();
    assert!(body.contains("SAML_UNKNOWN_REQUEST"), "{body}");
    assert!(!env.home(&other).await.contains("Benvenuto"));
}

#[tokio::test]
async fn the_same_response_twice_is_refused_on_memory() {
    second_post_is_refused(&Env::start(memory()).await).await;
}

#[tokio::test]
async fn the_same_response_twice_is_refused_on_redis() {
    let server = RedisServer::start();
    second_post_is_refused(&Env::start(redis(&server)).await).await;
}

async fn concurrent_posts_give_one_success(env: &Env) {
    for _ in 0..5 {
        let c = env.client();
        let a = env.idp_answer(&c, 2, "redirect", MARIO, "success").await;
        let mut posts = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let client = env.client();
            let url = format!("{}/acs", env.gw);
            let form = [
                ("SAMLResponse", a.saml_response.clone()),
                ("RelayState", a.relay_state.clone()),
            ];
            posts.spawn(async move {
                client
                    .post(url)
                    .form(&form)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            });
        }
        let statuses: Vec<u16> = posts.join_all().await;
        assert_eq!(
            statuses.iter().filter(|s| **s == 303).count(),
            1,
            "{statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 303 || *s == 403),
            "{statuses:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_posts_of_one_response_give_exactly_one_success_on_memory() {
    concurrent_posts_give_one_success(&Env::start(memory()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_posts_of_one_response_give_exactly_one_success_on_redis() {
    let server = RedisServer::start();
    concurrent_posts_give_one_success(&Env::start(redis(&server)).await).await;
}

async fn expired_pending_request_is_refused(store: Arc<dyn StateStore>) {
    // `sp.request_ttl_seconds` is 600: the clock moves past it while the state store
    // still holds the pending request (its own TTL has not run out in real time).
    let env = Env::start(store).await;
    let c = env.client();
    let a = env.idp_answer(&c, 2, "redirect", MARIO, "success").await;
    let key = format!("polis:req:{}", a.in_response_to());
    env.clock.advance(chrono::Duration::seconds(600));
    assert!(env.store.get(&key).await.unwrap().is_some());
    let r = env.post_acs(&c, &a.saml_response, &a.relay_state).await;
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.text().await.unwrap().contains("SAML_UNKNOWN_REQUEST"));
    assert!(!env.home(&c).await.contains("Benvenuto"));
    let last = env.txlog_records().pop().unwrap();
    assert_eq!(last["outcome"], "rejected");
    assert_eq!(last["error_code"], "SAML_UNKNOWN_REQUEST");
}

#[tokio::test]
async fn an_expired_pending_request_is_refused() {
    expired_pending_request_is_refused(memory()).await;
}

#[tokio::test]
async fn an_expired_pending_request_is_refused_on_redis() {
    let server = RedisServer::start();
    expired_pending_request_is_refused(redis(&server)).await;
}

#[tokio::test]
async fn a_session_ends_when_the_clock_passes_its_idle_timeout() {
    // `[session]` idle 1800 s, absolute 28800 s (the harness defaults).
    let env = Env::start(memory()).await;
    let c = env.client();
    assert_eq!(env.login(&c, MARIO).await.status(), 303);
    env.clock.advance(chrono::Duration::seconds(1799));
    assert!(
        env.home(&c).await.contains("Benvenuto"),
        "used within the idle time"
    );
    // Idle counts from the last use, and the state store still holds the record.
    env.clock.advance(chrono::Duration::seconds(1800));
    assert!(!env.home(&c).await.contains("Benvenuto"));
}

#[tokio::test]
async fn a_session_in_use_ends_at_its_absolute_timeout() {
    let env = Env::start(memory()).await;
    let c = env.client();
    assert_eq!(env.login(&c, MARIO).await.status(), 303);
    // Used every 25 minutes: never idle, until 8 h after the login.
    for _ in 0..19 {
        env.clock.advance(chrono::Duration::minutes(25));
        assert!(env.home(&c).await.contains("Benvenuto"));
    }
    env.clock.advance(chrono::Duration::minutes(5));
    assert!(
        !env.home(&c).await.contains("Benvenuto"),
        "8 h after the login"
    );
}

#[tokio::test]
async fn spid_error_codes_are_shown_with_their_meaning() {
    let env = Env::start(memory()).await;
    for (code, text) in [
        ("19", "credenziali errate"),
        ("20", "livello di sicurezza"),
        ("21", "Tempo scaduto"),
        ("22", "negato il consenso"),
        ("23", "sospesa o revocata"),
        ("25", "Processo di autenticazione annullato"),
        ("30", "tipo di identità digitale diverso"),
    ] {
        let c = env.client();
        let a = env.idp_answer(&c, 2, "redirect", MARIO, code).await;
        let r = env.post_acs(&c, &a.saml_response, &a.relay_state).await;
        assert_eq!(r.status(), 401, "nr{code}");
        assert!(r.headers().get("set-cookie").is_none());
        let page = r.text().await.unwrap();
        assert!(page.contains(text), "nr{code}: {page}");
        // The IdP's code is a technical detail, not part of the message.
        assert!(
            page.contains(&format!("<code>ErrorCode nr{code}</code>")),
            "{page}"
        );
        assert!(!page.contains(&format!("(ErrorCode nr{code})")), "{page}");
        assert!(page.contains("SPID_IDP_STATUS"));
        if code == "25" {
            // Cancelled by the person: a neutral page with «Riprova», no help desk.
            assert!(page.contains("Accesso annullato"), "{page}");
            assert!(
                page.contains("alert-info") && page.contains("Riprova"),
                "{page}"
            );
            assert!(!page.contains("alert-danger"), "{page}");
            assert!(!page.contains("contatta l'assistenza"), "{page}");
        } else {
            assert!(page.contains("alert-danger") && page.contains("Torna indietro"));
        }
        // The attempt is over: the same Response cannot be replayed.
        assert_eq!(
            env.post_acs(&c, &a.saml_response, &a.relay_state)
                .await
                .status(),
            403
        );
    }
    let errors = env
        .txlog_records()
        .into_iter()
        .filter(|r| r["outcome"] == "idp_error")
        .count();
    assert_eq!(errors, 7);
}

/// Starts a login asking `requested`, and has the mock IdP grant `granted`.
async fn answer_granting(
    env: &Env,
    c: &reqwest::Client,
    requested: u8,
    granted: u8,
) -> (String, String) {
    let start = c
        .get(env.login_url(requested, "redirect"))
        .send()
        .await
        .unwrap();
    let a = env
        .idp_answer_from(c, start, granted, MARIO, "success")
        .await;
    (a.saml_response, a.relay_state)
}

#[tokio::test]
async fn a_lower_level_than_requested_is_refused_and_a_higher_one_accepted() {
    let env = Env::start(memory()).await;
    // Ask L3, get L1 (comparison minimum): refused.
    let c = env.client();
    let (response, relay) = answer_granting(&env, &c, 3, 1).await;
    let r = env.post_acs(&c, &response, &relay).await;
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(page.contains("SAML_LEVEL"));
    // Said plainly, with the way back at the right level, not as an attack.
    assert!(
        page.contains("Livello di sicurezza non sufficiente"),
        "{page}"
    );
    assert!(
        page.contains("con il livello 1 di sicurezza") && page.contains("almeno il livello 3"),
        "{page}"
    );
    assert!(
        page.contains(r#"href="/login?level=3">Riprova</a>"#),
        "{page}"
    );
    assert!(!page.contains("contatta l'assistenza"), "{page}");
    // Ask L1, get L3: accepted (RT: a higher level must not fail).
    let c = env.client();
    let (response, relay) = answer_granting(&env, &c, 1, 3).await;
    assert_eq!(env.post_acs(&c, &response, &relay).await.status(), 303);
    assert!(env.home(&c).await.contains("livello 3"));
}

#[tokio::test]
async fn redis_down_gives_503_and_service_comes_back_by_itself() {
    let mut server = RedisServer::start();
    let env = Env::start(redis(&server)).await;
    let c = env.client();
    // A Response obtained while Redis is up, posted while it is down.
    let a = env.idp_answer(&c, 2, "redirect", MARIO, "success").await;
    server.stop();
    let login = c.get(env.login_url(2, "redirect")).send().await.unwrap();
    assert_eq!(login.status(), 503);
    let page = login.text().await.unwrap();
    assert!(
        page.contains("POLIS_STATE_UNAVAILABLE") && page.contains("non disponibile"),
        "{page}"
    );
    let acs = env.post_acs(&c, &a.saml_response, &a.relay_state).await;
    assert_eq!(acs.status(), 503);
    assert_eq!(
        c.get(format!("{}/readyz", env.gw))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    server.restart();
    let url = env.login_url(2, "redirect");
    eventually(
        Duration::from_secs(15),
        "login to work again after Redis restarts",
        || {
            let c = c.clone();
            let url = url.clone();
            async move { (c.get(url).send().await.unwrap().status() == 302).then_some(()) }
        },
    )
    .await;
    // The whole flow works again, without restarting the gateway.
    round_trip(&env, 2, "redirect").await;
}

#[tokio::test]
async fn login_page_lists_idps_with_spid_help_links() {
    let env = Env::start(memory()).await;
    let c = env.client();
    let page = c.get(format!("{}/login", env.gw)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let html = page.text().await.unwrap();
    assert!(html.contains("Entra con SPID"));
    assert!(html.contains(&format!("data-idp=\"{}\"", env.idp)));
    for link in ["Maggiori informazioni", "Non hai SPID?", "Serve aiuto?"] {
        assert!(html.contains(link), "{link}");
    }
    assert!(!html.contains("<script>"), "no inline scripts");
}

#[tokio::test]
async fn unknown_idp_and_bad_parameters_are_400() {
    let env = Env::start(memory()).await;
    let c = env.client();
    for q in [
        "idp=https%3A%2F%2Fevil.example&level=2",
        "level=7",
        "binding=soap",
    ] {
        let r = c.get(format!("{}/login?{q}", env.gw)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{q}");
        let page = r.text().await.unwrap();
        assert!(page.contains("Identificativo richiesta"), "{page}");
    }
}

#[tokio::test]
async fn metadata_is_signed_and_complete() {
    let env = Env::start(memory()).await;
    let r = env
        .client()
        .get(format!("{}/metadata", env.gw))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let md = r.text().await.unwrap();
    for needle in [
        "AuthnRequestsSigned=\"true\"",
        "WantAssertionsSigned=\"true\"",
        "<md:KeyDescriptor use=\"signing\">",
        "index=\"0\" isDefault=\"true\"",
        "<spid:IPACode>m_pi</spid:IPACode><spid:Public/>",
        "contactType=\"other\"",
        "<ds:SignatureValue>",
    ] {
        assert!(md.contains(needle), "{needle}");
    }
    // The signature verifies with the xmlsec1 command line, as spid-sp-test does it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("md.xml");
    std::fs::write(&path, &md).unwrap();
    let out = std::process::Command::new("xmlsec1")
        .args([
            "--verify",
            "--insecure",
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:metadata:EntityDescriptor",
        ])
        .arg(&path)
        .output()
        .expect("xmlsec1 (make test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Admission control over HTTP: with the memory store full of pending requests a new
/// login gets the small 429 page that retries by itself, while the login already under
/// way (its pending request exists) finishes; then there is room again.
#[tokio::test]
async fn a_full_pending_store_answers_new_logins_with_the_admission_page() {
    let env = Env::start_with(
        Arc::new(MemoryStore::with_max_pending(1)),
        crate::support::gateway::EnvOptions {
            extra_toml: "\n[limits.admission]\nretry_after_seconds = 3\n".into(),
            ..Default::default()
        },
    )
    .await;
    let under_way = env.client();
    let answer = env
        .idp_answer(&under_way, 2, "redirect", MARIO, "success")
        .await;

    let newcomer = env.client();
    let refused = newcomer
        .get(env.login_url(2, "redirect"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "3");
    assert!(
        refused.headers().get("set-cookie").is_none(),
        "nothing stored"
    );
    let page = refused.text().await.unwrap();
    assert!(
        page.contains("Troppe richieste: riprova tra 3 secondi"),
        "{page}"
    );
    assert!(
        page.contains(r#"<meta http-equiv="refresh" content="3">"#),
        "retries by itself, without JavaScript: {page}"
    );
    assert!(page.contains("POLIS_SATURATED"), "{page}");

    let r = env
        .post_acs(&under_way, &answer.saml_response, &answer.relay_state)
        .await;
    assert_eq!(r.status(), 303, "the login under way finishes");

    let again = newcomer
        .get(env.login_url(2, "redirect"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        302,
        "room again once the ACS took its request"
    );
}
