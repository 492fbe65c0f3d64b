//! SPID single logout initiated by the IdP (rules §5 S3) over real HTTP: the
//! gateway ends the session named by the NameID and answers a signed LogoutResponse
//! Success by Redirect — also when no session exists; forged requests change nothing.
//! (The SP-initiated direction is walked in `enablement.rs`: «Esci» → IdP → `/slo`.)

use polis_gateway::saml::logout::{LogoutRequestParams, build_logout_request};
use polis_gateway::saml::{SigningKey, binding, xml};
use polis_gateway::state::{MemoryStore, RedisConfig, RedisStore, StateStore};
use std::sync::Arc;

use crate::support::craft::Craft;
use crate::support::gateway::{Env, idp_key};
use crate::support::redis::RedisServer;

const MARIO: &str = "RSSMRA80A01H501U";

/// The NameID of the last accepted login, from the transaction log.
pub(crate) fn last_name_id(env: &Env) -> String {
    env.txlog_records()
        .iter()
        .rev()
        .find(|r| r["outcome"] == "accepted")
        .and_then(|r| r["assertion_subject"].as_str().map(str::to_owned))
        .expect("an accepted login in the txlog")
}

/// A signed IdP-initiated LogoutRequest (Redirect) to the gateway's `/slo`.
pub(crate) fn idp_logout_url(env: &Env, key: &SigningKey, name_id: &str) -> String {
    let request = build_logout_request(&LogoutRequestParams {
        sp_entity_id: &env.idp, // the Issuer: here the IdP
        destination: &format!("{}/slo", env.gw),
        name_id,
        name_qualifier: &env.idp,
        session_index: None,
        now: chrono::Utc::now(),
    });
    request.redirect_url(Some("rs-idp"), key).unwrap()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_owned()
}

/// Decodes the LogoutResponse of a Redirect URL and returns its root element.
fn logout_response(url: &str) -> xml::Element {
    let query = url.split_once('?').unwrap().1;
    let params = binding::parse_query(query).unwrap();
    let get = |n: &str| {
        params
            .iter()
            .find(|p| p.name == n)
            .map(|p| p.value.clone())
            .unwrap_or_else(|| panic!("{n} missing in {url}"))
    };
    assert_eq!(get("RelayState"), "rs-idp", "RelayState echoed");
    assert!(!get("Signature").is_empty());
    let text = binding::inflate_base64(&get("SAMLResponse"), 1 << 20).unwrap();
    xml::parse(&text, xml::Limits::default()).unwrap()
}

fn status_code(root: &xml::Element) -> String {
    root.children
        .iter()
        .find(|c| c.name == "Status")
        .and_then(|s| s.children.iter().find(|c| c.name == "StatusCode"))
        .and_then(|c| c.attr("Value"))
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn idp_initiated_logout_ends_the_session_and_answers_success() {
    let env = Env::start(Arc::new(MemoryStore::new())).await;
    let browser = env.client();
    let r = env.login(&browser, MARIO).await;
    assert_eq!(r.status().as_u16(), 303);
    assert!(env.home(&browser).await.contains("Benvenuto"));
    let name_id = last_name_id(&env);

    let url = idp_logout_url(&env, &env.idp_key, &name_id);
    assert!(url.starts_with(&format!("{}/slo?SAMLRequest=", env.gw)));
    // The IdP's front channel: another tab of the same browser, or a plain client.
    let r = env.client().get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 302, "{}", r.text().await.unwrap());
    let back = location(&r);
    assert!(
        back.starts_with(&format!("{}/slo?SAMLResponse=", env.idp)),
        "{back}"
    );
    let root = logout_response(&back);
    assert_eq!(root.name, "LogoutResponse");
    assert_eq!(
        status_code(&root),
        "urn:oasis:names:tc:SAML:2.0:status:Success"
    );
    assert_eq!(
        root.attr("Destination"),
        Some(format!("{}/slo", env.idp).as_str())
    );
    assert!(
        root.attr("InResponseTo")
            .is_some_and(|v| v.starts_with('_'))
    );
    // The person's session is over.
    assert!(!env.home(&browser).await.contains("Benvenuto"));
}

#[tokio::test]
async fn idp_initiated_logout_without_a_session_still_answers_success() {
    let env = Env::start(Arc::new(MemoryStore::new())).await;
    let url = idp_logout_url(&env, &env.idp_key, "_never-logged-in");
    let r = env.client().get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 302);
    let root = logout_response(&location(&r));
    assert_eq!(
        status_code(&root),
        "urn:oasis:names:tc:SAML:2.0:status:Success"
    );
}

#[tokio::test]
async fn forged_logout_requests_are_refused_and_change_nothing() {
    let env = Env::start(Arc::new(MemoryStore::new())).await;
    let browser = env.client();
    env.login(&browser, MARIO).await;
    let name_id = last_name_id(&env);

    // Signed with a key the gateway does not trust for this IdP.
    let (other, _, _) = idp_key("attacker");
    let forged = idp_logout_url(&env, &other, &name_id);
    let r = env.client().get(&forged).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.headers().get("location").is_none());

    // The genuine request with its signature stripped.
    let genuine = idp_logout_url(&env, &env.idp_key, &name_id);
    let unsigned = genuine.split("&SigAlg=").next().unwrap().to_owned();
    let r = env.client().get(&unsigned).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.headers().get("location").is_none());
    let body = r.text().await.unwrap();
    assert!(body.contains("SAML_SIGNATURE_MISSING"), "{body}");

    // Re-encoded query octets (a `%2F` spelled differently) break the signature.
    let tampered = genuine.replacen("%2F", "%2f", 1);
    if tampered != genuine {
        let r = env.client().get(&tampered).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 403);
    }

    // Neither changed anything: the session is still alive.
    assert!(env.home(&browser).await.contains("Benvenuto"));
}

#[tokio::test]
async fn an_unsolicited_logout_response_is_refused() {
    let env = Env::start(Arc::new(MemoryStore::new())).await;
    let response = polis_gateway::saml::logout::build_logout_response(
        "_never-sent",
        &format!("{}/slo", env.gw),
        &env.idp,
        polis_gateway::saml::logout::LogoutOutcome::Success,
        chrono::Utc::now(),
    );
    let url = response.redirect_url(None, &env.idp_key).unwrap();
    let r = env.client().get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
}

/// A login whose Response carries `name_id` (an IdP that gives the same person the
/// same NameID again); `browser` gets the session.
async fn login_with_name_id(env: &Env, browser: &reqwest::Client, name_id: &str) {
    let pending = env.start_login(browser, 2).await;
    let mut craft = Craft::for_login(env, &pending);
    craft.name_id = name_id.to_owned();
    let r = env
        .post_acs_xml(browser, &craft.build(&env.idp_key), &pending.relay_state)
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    assert!(env.home(browser).await.contains("Benvenuto"));
}

/// A signed IdP-initiated LogoutRequest for a NameID, on one binding (a new ID each
/// [`Sent::new`]), that can be sent again byte for byte.
enum Sent {
    Redirect(String),
    Post(String),
}

impl Sent {
    fn new(env: &Env, binding_name: &str, name_id: &str) -> Sent {
        let request = build_logout_request(&LogoutRequestParams {
            sp_entity_id: &env.idp,
            destination: &format!("{}/slo", env.gw),
            name_id,
            name_qualifier: &env.idp,
            session_index: None,
            now: chrono::Utc::now(),
        });
        match binding_name {
            "redirect" => {
                Sent::Redirect(request.redirect_url(Some("rs-idp"), &env.idp_key).unwrap())
            }
            _ => Sent::Post(request.post_value(&env.idp_key).unwrap()),
        }
    }

    async fn send(&self, env: &Env) -> reqwest::Response {
        let client = env.client();
        match self {
            Sent::Redirect(url) => client.get(url).send().await.unwrap(),
            Sent::Post(value) => client
                .post(format!("{}/slo", env.gw))
                .form(&[("SAMLRequest", value.as_str()), ("RelayState", "rs-idp")])
                .send()
                .await
                .unwrap(),
        }
    }
}

async fn replayed_logout_requests_change_nothing(store: Arc<dyn StateStore>) {
    let env = Env::start(store).await;
    for binding_name in ["redirect", "post"] {
        let name_id = format!("_same-person-{binding_name}");
        let first = env.client();
        login_with_name_id(&env, &first, &name_id).await;
        let request = Sent::new(&env, binding_name, &name_id);
        let r = request.send(&env).await;
        assert_eq!(
            r.status().as_u16(),
            302,
            "{binding_name}: {}",
            r.text().await.unwrap()
        );
        let root = logout_response(&location(&r));
        assert_eq!(
            status_code(&root),
            "urn:oasis:names:tc:SAML:2.0:status:Success"
        );
        assert!(
            !env.home(&first).await.contains("Benvenuto"),
            "{binding_name}"
        );

        // The person logs in again and the IdP names them the same way.
        let second = env.client();
        login_with_name_id(&env, &second, &name_id).await;

        // The captured LogoutRequest, within its age window, sent again: refused with a
        // stable code, no LogoutResponse, the new session untouched.
        for _ in 0..2 {
            let r = request.send(&env).await;
            assert_eq!(r.status().as_u16(), 403, "{binding_name} replay");
            assert!(r.headers().get("location").is_none());
            let body = r.text().await.unwrap();
            assert!(body.contains("SAML_REPLAY"), "{binding_name}: {body}");
            assert!(
                env.home(&second).await.contains("Benvenuto"),
                "{binding_name}: the replay ended the new session"
            );
        }

        // A new LogoutRequest from the IdP (a new ID) still ends it.
        let r = Sent::new(&env, binding_name, &name_id).send(&env).await;
        assert_eq!(r.status().as_u16(), 302, "{binding_name}");
        assert!(!env.home(&second).await.contains("Benvenuto"));
    }
}

#[tokio::test]
async fn a_replayed_idp_logout_request_is_refused_and_ends_no_later_session() {
    replayed_logout_requests_change_nothing(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn a_replayed_idp_logout_request_is_refused_on_redis_too() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&RedisConfig::standalone(server.url())).unwrap();
    replayed_logout_requests_change_nothing(Arc::new(store)).await;
}
