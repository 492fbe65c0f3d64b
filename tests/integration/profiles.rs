//! IdP profiles over real HTTP: the AttributeConsumingServiceIndex of the AuthnRequest
//! follows the profile of the IdP it goes to (SPID: the SP's default, CIE 0, FICEP 99
//! or the configured 100), and a Response from an IdP of any profile completes the login.

use std::sync::Arc;

use polis_gateway::clock::Clock;
use polis_gateway::federation::TrustAs;
use polis_gateway::saml::binding::{inflate_base64, parse_query};
use polis_gateway::saml::idp::build_idp_metadata;
use polis_gateway::saml::xml::{self, Limits};
use polis_gateway::saml::{IdpProfile, SigningKey};
use polis_gateway::state::MemoryStore;

use crate::support::craft::Craft;
use crate::support::gateway::{Env, Pending, idp_key};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Trusts a second IdP at `path` on the mock IdP's host, with `trust`.
fn trust(env: &Env, path: &str, trust: TrustAs) -> (String, SigningKey) {
    let (key, _, _) = idp_key(path);
    let entity_id = format!("{}/{path}", env.idp);
    let md = build_idp_metadata(
        &entity_id,
        &format!("{}/sso", env.idp),
        &format!("{}/slo", env.idp),
        path,
        &key,
    )
    .unwrap();
    let warnings = env
        .federation
        .add_metadata_as(&md, trust, path, env.clock.now())
        .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    (entity_id, key)
}

/// The AttributeConsumingServiceIndex of the AuthnRequest in the Redirect URL.
fn attribute_index(pending: &Pending) -> String {
    let query = pending.location.split_once('?').unwrap().1;
    let params = parse_query(query).unwrap();
    let request = &params
        .iter()
        .find(|p| p.name == "SAMLRequest")
        .unwrap()
        .value;
    let xml_text = inflate_base64(request, 1 << 20).unwrap();
    let root = xml::parse(&xml_text, Limits::default()).unwrap();
    root.attr("AttributeConsumingServiceIndex")
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_attribute_index_follows_the_idp_profile() {
    let env = Env::start(Arc::new(MemoryStore::new())).await;
    let c = client();
    let default = attribute_index(&env.start_login_at(&c, &env.idp, 2).await);
    for (path, profile, configured, expected) in [
        ("cie", IdpProfile::Cie, None, "0"),
        ("ficep", IdpProfile::Ficep, None, "99"),
        ("ficep-full", IdpProfile::Ficep, Some(100), "100"),
        ("spid", IdpProfile::Spid, None, default.as_str()),
    ] {
        let t = TrustAs {
            profile,
            attribute_index: configured,
            test: true,
        };
        let (entity_id, key) = trust(&env, path, t);
        let pending = env.start_login_at(&c, &entity_id, 2).await;
        assert_eq!(attribute_index(&pending), expected, "{path}");
        // The IdP's Response is consumed as for any IdP: the login completes.
        let mut craft = Craft::for_login(&env, &pending).issued_by(&entity_id);
        if profile == IdpProfile::Ficep {
            // FICEP: the eIDAS identifier in spidCode, no codice fiscale.
            craft
                .attributes
                .retain(|(n, _)| n != "fiscalNumber" && n != "spidCode");
            craft
                .attributes
                .push(("spidCode".into(), format!("ES/IT/{path}-0001")));
        }
        let xml_text = craft.build(&key);
        let r = env.post_acs_xml(&c, &xml_text, &pending.relay_state).await;
        assert_eq!(r.status(), 303, "{path}: {}", r.text().await.unwrap());
    }
}
