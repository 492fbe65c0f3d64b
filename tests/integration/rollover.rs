//! IdP health and key rollovers. A signing-key rollover without a failed login: the
//! IdP's metadata gains the new key beside the old one, and during that overlap
//! Responses signed with either key are accepted; once the metadata drops the old key,
//! only the new one verifies. Each key is reported with its days to expiry on
//! `/metrics`. An IdP whose Responses fail on its side gets a notice on the login page.

use polis_gateway::saml::SigningKey;
use polis_gateway::saml::idp::build_idp_metadata;

use crate::support::craft::Craft;
use crate::support::gateway::{Env, EnvOptions, idp_key};

/// The IdP's metadata with `keys` as its signing certificates (signed by the first).
fn metadata(env: &Env, entity_id: &str, keys: &[&SigningKey]) -> String {
    let first = keys.first().copied().unwrap();
    let md = build_idp_metadata(
        entity_id,
        &format!("{}/sso", env.idp),
        &format!("{}/slo", env.idp),
        "Rollover test IdP",
        first,
    )
    .unwrap();
    let head = r#"<md:KeyDescriptor use="signing">"#;
    let extra: String = keys
        .iter()
        .skip(1)
        .map(|k| {
            format!(
                r#"{head}<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
                k.cert_base64()
            )
        })
        .collect();
    md.replacen(head, &format!("{extra}{head}"), 1)
}

/// A login to `idp` answered with a Response signed by `key`: the ACS status.
async fn login_signed_by(env: &Env, idp: &str, key: &SigningKey) -> u16 {
    let c = env.client();
    let pending = env.start_login_at(&c, idp, 2).await;
    let xml = Craft::for_login(env, &pending).issued_by(idp).build(key);
    env.post_acs_xml(&c, &xml, &pending.relay_state)
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_key_rollover_loses_no_login() {
    let env = Env::start_with_metrics(EnvOptions::default()).await;
    let (old, _, _) = idp_key("Rollover IdP, old key");
    let (new, _, _) = idp_key("Rollover IdP, new key");
    let idp = format!("{}/rollover", env.idp);
    let add = |md: String| {
        env.federation
            .add_metadata(&md, true, "rollover IdP")
            .unwrap()
    };

    add(metadata(&env, &idp, &[&old]));
    assert_eq!(login_signed_by(&env, &idp, &old).await, 303);
    assert_eq!(
        login_signed_by(&env, &idp, &new).await,
        403,
        "not yet published"
    );

    // The overlap: the metadata lists both keys; logins signed with either pass.
    add(metadata(&env, &idp, &[&old, &new]));
    assert_eq!(login_signed_by(&env, &idp, &old).await, 303);
    assert_eq!(login_signed_by(&env, &idp, &new).await, 303);
    let scrape = reqwest::get(env.metrics_url.clone().unwrap())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = scrape
        .lines()
        .find(|l| {
            l.starts_with("polis_certificate_expiry_days{")
                && l.contains(r#"kind="idp""#)
                && l.contains(&format!(r#"name="{idp}""#))
        })
        .unwrap_or_else(|| panic!("no expiry for {idp}:\n{scrape}"));
    let days: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(days > 0.0, "{line}");

    // The old key retired: only the new one verifies.
    add(metadata(&env, &idp, &[&new]));
    assert_eq!(login_signed_by(&env, &idp, &new).await, 303);
    assert_eq!(login_signed_by(&env, &idp, &old).await, 403);
}

/// IdP health: when most of one IdP's recent Responses fail on its side (here: signed
/// with a key its metadata does not publish), the login page shows a notice beside
/// that IdP only, every IdP stays listed, and `/metrics` reports it degraded; Responses
/// of the person's doing (a cancelled login) never count.
#[tokio::test]
async fn an_idp_whose_responses_fail_gets_a_notice_on_the_login_page() {
    let env = Env::start_with_metrics(EnvOptions::default()).await;
    let (key, _, _) = idp_key("Troubled IdP");
    let (stranger, _, _) = idp_key("Not the troubled IdP's key");
    let idp = format!("{}/troubled", env.idp);
    env.federation
        .add_metadata(&metadata(&env, &idp, &[&key]), true, "troubled IdP")
        .unwrap();
    let notice = "Questo gestore ha difficoltà in questo momento";
    let page = || async { env.get(&env.client(), "/login").await.1 };
    assert!(!page().await.contains(notice));

    // Cancelled logins (SPID nr25) are the person's doing: no notice, however many.
    for _ in 0..25 {
        let c = env.client();
        let a = env
            .idp_answer(&c, 2, "redirect", "RSSMRA80A01H501U", "25")
            .await;
        env.post_acs(&c, &a.saml_response, &a.relay_state).await;
    }
    assert!(!page().await.contains(notice));

    for _ in 0..20 {
        assert_eq!(login_signed_by(&env, &idp, &stranger).await, 403);
    }
    let html = page().await;
    let item = html
        .split("<li")
        .find(|li| li.contains(&format!("data-idp=\"{idp}\"")))
        .unwrap_or_else(|| panic!("{idp} still listed:\n{html}"));
    assert!(item.contains(notice), "{item}");
    assert_eq!(html.matches(notice).count(), 1, "only beside that IdP");
    assert!(
        html.contains(&format!("data-idp=\"{}\"", env.idp)),
        "every IdP listed"
    );
    let metrics = reqwest::get(env.metrics_url.clone().unwrap())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("polis_idp_degraded{") && l.contains(&idp) && l.ends_with(" 1")),
        "{metrics}"
    );
}
