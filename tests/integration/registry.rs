//! The AgID registry aggregate over real HTTP (issue 8, class 8): served by a listener
//! the test runs, fetched and verified by `federation::refresh_registry` against a
//! pinned certificate, and applied to the running gateway's federation. A refresh that
//! no longer lists an IdP removes it (no login to it, no Response from it); an
//! aggregate past its `validUntil` is refused and changes nothing, the cache included.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use polis_gateway::clock::Clock;
use polis_gateway::federation::{self, FederationError, RegistrySettings, RegistryUpdate};
use polis_gateway::saml::SigningKey;
use polis_gateway::saml::binding::encode_component;
use polis_gateway::saml::idp::build_idp_metadata;
use polis_gateway::saml::ids::new_id;
use polis_gateway::saml::sign::signature_template;
use polis_gateway::state::MemoryStore;

use crate::support::craft::Craft;
use crate::support::gateway::{Env, idp_key};

/// An IdP of the test aggregate: its entityID (under the mock IdP's URL, so a
/// test IdP the Env allows) and its key.
struct RegIdp {
    entity_id: String,
    key: SigningKey,
}

impl RegIdp {
    fn new(env: &Env, name: &str) -> RegIdp {
        RegIdp {
            entity_id: format!("{}/{name}", env.idp),
            key: idp_key(name).0,
        }
    }

    /// Its EntityDescriptor without a signature of its own (the registry signs the whole).
    fn entity(&self, env: &Env, key: &SigningKey) -> String {
        let md = build_idp_metadata(
            &self.entity_id,
            &format!("{}/sso", env.idp),
            &format!("{}/slo", env.idp),
            "Registry test IdP",
            key,
        )
        .unwrap();
        let start = md.find("<ds:Signature").unwrap();
        let end = md.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
        format!("{}{}", &md[..start], &md[end..])
    }
}

/// A signed `md:EntitiesDescriptor` of `entities` with `validUntil`.
fn aggregate(registry: &SigningKey, entities: &[String], valid_until: &str) -> String {
    let id = new_id();
    let xml = format!(
        r#"<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" ID="{id}" validUntil="{valid_until}">{}{}</md:EntitiesDescriptor>"#,
        signature_template(&id, registry.cert_base64()),
        entities.concat()
    );
    registry.sign_enveloped(&xml).unwrap()
}

/// `validUntil` `days` from the Env's now (negative: in the past).
fn days_from_now(env: &Env, days: i64) -> String {
    (env.clock.now() + chrono::Duration::days(days))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The registry endpoint: serves whatever `body` holds, counting fetches.
struct RegistryServer {
    url: String,
    body: Arc<Mutex<String>>,
    fetches: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl RegistryServer {
    async fn start() -> RegistryServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/metadata/idp/spid-entities-idps.xml",
            listener.local_addr().unwrap()
        );
        let body = Arc::new(Mutex::new(String::new()));
        let fetches = Arc::new(Mutex::new(0));
        let (b, f) = (body.clone(), fetches.clone());
        let router = axum::Router::new().route(
            "/metadata/idp/spid-entities-idps.xml",
            axum::routing::get(move || {
                let (b, f) = (b.clone(), f.clone());
                async move {
                    *f.lock().unwrap() += 1;
                    let text = b.lock().unwrap().clone();
                    ([("content-type", "application/samlmetadata+xml")], text)
                }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        RegistryServer {
            url,
            body,
            fetches,
            task,
        }
    }

    fn serve(&self, xml: &str) {
        *self.body.lock().unwrap() = xml.to_owned();
    }

    fn fetches(&self) -> usize {
        *self.fetches.lock().unwrap()
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn refresh(env: &Env, reg: &RegistrySettings) -> Result<RegistryUpdate, FederationError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    federation::refresh_registry(&env.federation, reg, &client).await
}

/// `GET /login?idp=…` status.
async fn login_status(env: &Env, idp: &str) -> (u16, String) {
    let r = env
        .client()
        .get(format!(
            "{}/login?idp={}&level=2&binding=redirect",
            env.gw,
            encode_component(idp)
        ))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_removes_unlisted_idps_and_an_expired_aggregate_is_refused() {
    let env = Env::start(Arc::new(MemoryStore::new())).await;
    let (registry_key, _, registry_pem) = idp_key("Registry (pinned)");
    let dir = tempfile::tempdir().unwrap();
    let certificate_file = dir.path().join("registry.crt");
    std::fs::write(&certificate_file, &registry_pem).unwrap();
    let cache = dir.path().join("registry-cache.xml");
    let server = RegistryServer::start().await;
    let reg = RegistrySettings {
        url: url::Url::parse(&server.url).unwrap(),
        certificate_file,
        refresh_every: Duration::from_secs(24 * 3600),
        cache_file: Some(cache.clone()),
    };
    let x = RegIdp::new(&env, "reg-x");
    let y = RegIdp::new(&env, "reg-y");

    // First aggregate: X and Y.
    let first = aggregate(
        &registry_key,
        &[x.entity(&env, &x.key), y.entity(&env, &y.key)],
        &days_from_now(&env, 7),
    );
    server.serve(&first);
    let update = refresh(&env, &reg).await.unwrap();
    assert_eq!(update.idps, 2);
    assert_eq!(server.fetches(), 1);
    assert_eq!(std::fs::read_to_string(&cache).unwrap(), first);
    // Control: X is trusted, a Response it signs is accepted.
    let c = env.client();
    let pending = env.start_login_at(&c, &x.entity_id, 2).await;
    let own = Craft::for_login(&env, &pending)
        .issued_by(&x.entity_id)
        .build(&x.key);
    let r = env.post_acs_xml(&c, &own, &pending.relay_state).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    // A login to X started before the next refresh.
    let victim = env.client();
    let in_flight = env.start_login_at(&victim, &x.entity_id, 2).await;

    // Second aggregate: X is gone; Y has a new signing key.
    let (y_new_key, _, _) = idp_key("reg-y, new key");
    let second = aggregate(
        &registry_key,
        &[y.entity(&env, &y_new_key)],
        &days_from_now(&env, 7),
    );
    server.serve(&second);
    let update = refresh(&env, &reg).await.unwrap();
    assert_eq!(update.idps, 1);
    assert_eq!(update.removed, vec![x.entity_id.clone()]);
    assert_eq!(update.keys_changed, vec![y.entity_id.clone()]);
    assert_eq!(std::fs::read_to_string(&cache).unwrap(), second);

    // X is no longer trusted: no login to it, not on the login page, and a Response
    // it signs for the login started before the refresh is refused.
    let (status, body) = login_status(&env, &x.entity_id).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("POLIS_UNKNOWN_IDP"), "{body}");
    let (_, page) = env.get(&env.client(), "/login").await;
    // The entityIDs end in `/reg-x` and `/reg-y` (in `href` and `data-idp`).
    assert!(!page.contains("reg-x"), "X still on the login page");
    assert!(page.contains("reg-y"), "Y on the login page");
    let late = Craft::for_login(&env, &in_flight)
        .issued_by(&x.entity_id)
        .build(&x.key);
    let r = env
        .post_acs_xml(&victim, &late, &in_flight.relay_state)
        .await;
    assert!(r.headers().get("set-cookie").is_none());
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("POLIS_UNKNOWN_IDP"));
    assert!(!env.home(&victim).await.contains("Benvenuto"));
    // Y's old key is no longer accepted; its new one is.
    let c = env.client();
    let p = env.start_login_at(&c, &y.entity_id, 2).await;
    let old_key = Craft::for_login(&env, &p)
        .issued_by(&y.entity_id)
        .build(&y.key);
    let r = env.post_acs_xml(&c, &old_key, &p.relay_state).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("SAML_SIGNATURE_INVALID"));
    let new_key = Craft::for_login(&env, &p)
        .issued_by(&y.entity_id)
        .build(&y_new_key);
    let r = env.post_acs_xml(&c, &new_key, &p.relay_state).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());

    // An aggregate past its validUntil, validly signed and listing X again: refused;
    // nothing changes, and the cache keeps the last good copy.
    let expired = aggregate(
        &registry_key,
        &[x.entity(&env, &x.key), y.entity(&env, &y_new_key)],
        &days_from_now(&env, -1),
    );
    server.serve(&expired);
    let err = refresh(&env, &reg).await.unwrap_err();
    assert!(err.to_string().contains("validUntil"), "{err}");
    assert_eq!(server.fetches(), 3);
    assert_eq!(login_status(&env, &x.entity_id).await.0, 400);
    assert_eq!(login_status(&env, &y.entity_id).await.0, 302);
    assert_eq!(std::fs::read_to_string(&cache).unwrap(), second);

    // The same expired aggregate as the cache copy at start-up is refused too.
    std::fs::write(&cache, &expired).unwrap();
    let fresh = polis_gateway::federation::Federation::new(true, env.clock.clone());
    let err = federation::load_registry_cache(&fresh, &reg, env.clock.now()).unwrap_err();
    assert!(err.to_string().contains("validUntil"), "{err}");
    assert!(fresh.list().is_empty());
}
