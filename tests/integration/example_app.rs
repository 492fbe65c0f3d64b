//! The example downstream service (`examples/istanze_esempio`, issue 4 item 7) against
//! the real gateway and mock IdP: every hop a real HTTP request of one browser-like
//! client, the example app served on its own loopback port and talking to the gateway
//! through the `openidconnect` crate (discovery, PKCE, code exchange with
//! `client_secret_basic`, ID token verification), the CP confirmation, and the logout
//! both ways with Back-Channel Logout delivered by the gateway to the example.

use std::sync::Arc;
use std::time::Duration;

use polis_gateway::state::MemoryStore;
use tokio::net::TcpListener;

use crate::support::eventually;
use crate::support::gateway::{
    Env, EnvOptions, Hop, OIDC_CLIENT, OIDC_SECRET, form_value, unescape_html,
};

#[path = "../../examples/istanze_esempio/app.rs"]
mod app;

const GIULIA: &str = "BNCGLI85M52F205H";
const GIULIA_CP: &str = "Scuola2026x";

/// The gateway + mock IdP (OIDC client registered with the example's URIs) and the
/// example app on its own port.
struct Chain {
    env: Env,
    /// The example's base URL, e.g. `http://127.0.0.1:41235`.
    ex: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Chain {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Chain {
    async fn start() -> Chain {
        Self::start_with("").await
    }

    /// [`start`](Self::start) with `extra_toml` in the gateway's configuration.
    async fn start_with(extra_toml: &str) -> Chain {
        // The example's port first: the gateway's client registration names it.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ex = format!("http://{}", listener.local_addr().unwrap());
        let env = Env::start_with(
            Arc::new(MemoryStore::new()),
            EnvOptions {
                oidc: true,
                oidc_redirect_uri: Some(format!("{ex}/callback")),
                oidc_post_logout_uri: Some(format!("{ex}/")),
                oidc_backchannel: Some(format!("{ex}/backchannel-logout")),
                extra_toml: extra_toml.to_owned(),
                ..EnvOptions::default()
            },
        )
        .await;
        let router = app::router(app::ExampleConfig {
            gateway: env.gw.clone(),
            public_url: ex.clone(),
            client_id: OIDC_CLIENT.to_owned(),
            client_secret: OIDC_SECRET.to_owned(),
        })
        .await;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Chain { env, ex, task }
    }

    /// GET on the example; status, `Location`, body.
    async fn get(&self, c: &reqwest::Client, path_or_url: &str) -> (u16, String, String) {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.ex)
        };
        let r = c.get(url).send().await.unwrap();
        read(r).await
    }

    /// The example's `/status`.
    async fn status(&self) -> serde_json::Value {
        let body = reqwest::get(format!("{}/status", self.ex))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        serde_json::from_str(&body).unwrap()
    }

    /// Follows the gateway from `hop_url` as `user` (SPID login when asked) until it
    /// leaves the gateway; asserts that it is the 303 to the example's callback, GETs
    /// the callback and returns where the example sends the browser.
    async fn through_gateway(&self, c: &reqwest::Client, url: &str, logins: usize) -> String {
        let hop = self.env.oidc_browse(c, url, GIULIA, 2).await;
        assert_eq!(hop.logins.len(), logins, "SPID logins: {hop:?}");
        self.callback(c, &hop).await
    }

    /// The hop must be the 303 to the example's callback; GETs it and returns the
    /// example's `Location`.
    async fn callback(&self, c: &reqwest::Client, hop: &Hop) -> String {
        let location = hop.location.clone().unwrap_or_default();
        assert!(
            hop.status == 303 && location.starts_with(&format!("{}/callback?", self.ex)),
            "expected 303 to the example's callback, got {} {location:?}: {}",
            hop.status,
            hop.body
        );
        let q = hop.query();
        assert!(
            q.contains_key("code") && q.contains_key("state"),
            "{location}"
        );
        assert_eq!(q.get("iss"), Some(&self.env.gw), "{location}");
        let (status, to, body) = self.get(c, &location).await;
        assert_eq!(status, 303, "example /callback: {body}");
        to
    }
}

async fn read(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, location, r.text().await.unwrap())
}

/// The value cell of the claim `name` in the example's home table.
fn claim(html: &str, name: &str) -> Option<String> {
    let marker = format!("<tr><th>{name}</th><td>");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find("</td>")? + start;
    Some(unescape_html(&html[start..end]))
}

async fn post_form(
    c: &reqwest::Client,
    url: String,
    form: &[(&str, &str)],
) -> (u16, String, String) {
    read(c.post(url).form(form).send().await.unwrap()).await
}

/// The redirects from the gateway's `/oidc/logout` (`to`) until the browser is back at
/// the example: the hops and the example URL it lands on.
async fn back_to_the_example(
    chain: &Chain,
    browser: &reqwest::Client,
    to: String,
) -> (Vec<String>, String) {
    let mut hops = Vec::new();
    let mut next = to;
    while !next.starts_with(&chain.ex) {
        assert!(hops.len() < 5, "too many redirects: {hops:?}");
        let r = browser.get(&next).send().await.unwrap();
        let (status, to, body) = read(r).await;
        assert!(matches!(status, 302 | 303), "{next}: {status}\n{body}");
        hops.push(next);
        next = to;
    }
    (hops, next)
}

/// The chain once per scheme: a person enabled through the mock IdP of that scheme
/// logs in at the example through the gateway; the example shows the scheme and the
/// identifiers the ID token carries; the example's «Esci» ends both sessions.
async fn chain_for_scheme(scheme: &str) {
    let chain = Chain::start_with("\n[sp.eidas]\nenabled = true\n").await;
    let env = &chain.env;
    let (idp, user, label) = match scheme {
        "spid" => (env.idp.clone(), GIULIA, "SPID"),
        "cie" => (env.cie_idp.clone(), GIULIA, "CIE"),
        _ => (env.ficep_idp.clone(), "DE/IT/8f3c2a91d7e54b06", "eIDAS"),
    };
    env.enable_account_at(&env.client(), &idp, user, GIULIA_CP)
        .await;
    let browser = env.client();
    let (status, to, _) = chain.get(&browser, "/login").await;
    assert_eq!(status, 303);
    let hop = env.oidc_browse_at(&browser, &to, &idp, user, 2).await;
    assert_eq!(hop.logins.len(), 1, "{scheme}: {hop:?}");
    assert_eq!(chain.callback(&browser, &hop).await, "/");
    let (_, _, home) = chain.get(&browser, "/").await;
    assert!(home.contains(&format!("Accesso con {label}")), "{home}");
    assert_eq!(
        claim(&home, "idp_scheme").as_deref(),
        Some(scheme),
        "{home}"
    );
    assert_eq!(claim(&home, "amr").as_deref(), Some(scheme), "{home}");
    if scheme == "eidas" {
        assert_eq!(
            claim(&home, "eidas_person_identifier").as_deref(),
            Some(user)
        );
        assert_eq!(claim(&home, "fiscal_number"), None, "{home}");
        assert_eq!(claim(&home, "family_name").as_deref(), Some("Schmidt"));
    } else {
        assert_eq!(claim(&home, "fiscal_number").as_deref(), Some(GIULIA));
        assert_eq!(claim(&home, "eidas_person_identifier"), None, "{home}");
    }
    // «Esci» at the example: RP-initiated logout at the gateway, back to the example.
    let csrf = form_value(&home, "csrf");
    let (status, to, _) =
        post_form(&browser, format!("{}/logout", chain.ex), &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    // The gateway ends its session and, like its own «Esci», sends the SAML
    // LogoutRequest to the IdP, whose LogoutResponse returns the browser here. CIE
    // never answers a LogoutRequest: straight back.
    let (hops, next) = back_to_the_example(&chain, &browser, to).await;
    let via_idp = hops
        .iter()
        .any(|h| h.starts_with(&format!("{idp}/slo?SAMLRequest=")));
    assert_eq!(via_idp, scheme != "cie", "{scheme}: {hops:?}");
    assert!(next.starts_with(&format!("{}/?state=", chain.ex)), "{next}");
    let (_, _, home) = chain.get(&browser, &next).await;
    assert!(home.contains("Sei uscito"), "{home}");
    assert!(home.contains("Accedi con Istanze OnLine"), "{home}");
    let (_, _, again) = chain.get(&browser, &next).await;
    assert!(
        !again.contains("Sei uscito"),
        "only once, for the logout this browser started"
    );
    assert!(
        !env.home(&browser).await.contains("Benvenuto/a"),
        "gateway session ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_with_spid() {
    chain_for_scheme("spid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_with_cie() {
    chain_for_scheme("cie").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_with_eidas() {
    chain_for_scheme("eidas").await;
}

/// mock IdP → gateway → example app and back: login through the standard client
/// library, the claims, the CP confirmation, then the gateway logout reaching the
/// example by Back-Channel Logout; then a second login and the example's «Esci»
/// (RP-initiated logout at the gateway, back to the example).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_chain_login_cp_confirmation_and_backchannel_logout() {
    let chain = Chain::start().await;
    let env = &chain.env;
    let ex = &chain.ex;

    // Giulia completes the abilitazione at the gateway (her own browser session).
    let setup = env.client();
    env.enable_account(&setup, GIULIA, GIULIA_CP).await;

    // A fresh browser at the example: not logged in.
    let browser = env.client();
    let (status, _, home) = chain.get(&browser, "/").await;
    assert_eq!(status, 200);
    assert!(home.contains("Accedi con Istanze OnLine"), "{home}");

    // «Accedi»: discovery, PKCE S256, state, nonce; 303 to the gateway.
    let (status, to, body) = chain.get(&browser, "/login").await;
    assert_eq!(status, 303, "{body}");
    let authorize = reqwest::Url::parse(&to).unwrap();
    assert!(
        to.starts_with(&format!("{}/oidc/authorize?", env.gw)),
        "{to}"
    );
    let q: std::collections::HashMap<String, String> =
        authorize.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], OIDC_CLIENT);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["redirect_uri"], format!("{ex}/callback"));
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q.contains_key("code_challenge") && q.contains_key("nonce") && q.contains_key("state"));
    let scopes: Vec<&str> = q["scope"].split(' ').collect();
    for s in ["openid", "profile", "email", "istanze"] {
        assert!(scopes.contains(&s), "{scopes:?}");
    }

    // The gateway: SPID login at the mock IdP (level 2), then the code to the example,
    // which exchanges it and verifies the ID token.
    let to = chain.through_gateway(&browser, &to, 1).await;
    assert_eq!(to, "/", "after the login");
    let (status, _, home) = chain.get(&browser, "/").await;
    assert_eq!(status, 200);
    assert!(home.contains("Benvenuto/a, Giulia Bianchi"), "{home}");
    // The scheme used, shown by the app and carried by the ID token.
    assert!(home.contains("Accesso con SPID"), "{home}");
    assert_eq!(
        claim(&home, "idp_scheme").as_deref(),
        Some("spid"),
        "{home}"
    );
    assert_eq!(claim(&home, "eidas_person_identifier"), None, "{home}");
    assert_eq!(
        claim(&home, "fiscal_number").as_deref(),
        Some(GIULIA),
        "{home}"
    );
    assert_eq!(
        claim(&home, "given_name").as_deref(),
        Some("Giulia"),
        "{home}"
    );
    assert_eq!(
        claim(&home, "family_name").as_deref(),
        Some("Bianchi"),
        "{home}"
    );
    assert_eq!(
        claim(&home, "acr").as_deref(),
        Some("https://www.spid.gov.it/SpidL2"),
        "{home}"
    );
    assert_eq!(claim(&home, "amr").as_deref(), Some("spid"), "{home}");
    assert_eq!(
        claim(&home, "enablement_state").as_deref(),
        Some("enabled"),
        "{home}"
    );
    assert_eq!(
        claim(&home, "iss").as_deref(),
        Some(env.gw.as_str()),
        "{home}"
    );
    let sid = claim(&home, "sid").expect("the ID token carries sid");
    assert!(!sid.is_empty());
    let status = chain.status().await;
    assert_eq!(status["sessions"], 1, "{status}");
    assert_eq!(status["sids"], serde_json::json!([sid]), "{status}");

    // A callback that answers no request of this browser is refused.
    let (forged, _, _) = chain
        .get(&browser, "/callback?code=abc&state=nessuno")
        .await;
    assert_eq!(forged, 400);

    // «Conferma con il Codice Personale»: a new authorization with
    // acr_values=urn:polis:acr:cp; the gateway asks for the CP at /oidc/cp.
    let csrf = form_value(&home, "csrf");
    let (status, to, body) = post_form(&browser, format!("{ex}/confirm"), &[("csrf", &csrf)]).await;
    assert_eq!(status, 303, "{body}");
    let q: std::collections::HashMap<String, String> = reqwest::Url::parse(&to)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(
        q.get("acr_values").map(String::as_str),
        Some(app::ACR_CP),
        "{to}"
    );
    let hop = env.oidc_browse(&browser, &to, GIULIA, 2).await;
    assert!(hop.logins.is_empty(), "no new SPID login: {hop:?}");
    assert_eq!(hop.location_path().as_deref(), Some("/oidc/cp"), "{hop:?}");
    let cp_url = hop.location.clone().unwrap();
    let page = browser
        .get(&cp_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let id = form_value(&page, "id");
    let gw_csrf = form_value(&page, "csrf");
    let r = browser
        .post(format!("{}/oidc/cp", env.gw))
        .form(&[
            ("id", id.as_str()),
            ("cp", GIULIA_CP),
            ("csrf", gw_csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let (status, resume, body) = read(r).await;
    assert_eq!(status, 303, "POST /oidc/cp: {body}");
    let to = chain.through_gateway(&browser, &resume, 0).await;
    assert_eq!(to, "/confermata");
    let (status, _, page) = chain.get(&browser, "/confermata").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Istanza confermata"), "{page}");
    assert!(
        page.contains(&format!(
            "<tr><th>amr</th><td>spid, {}</td></tr>",
            app::AMR_CP
        )),
        "{page}"
    );
    assert!(page.contains("<tr><th>auth_time</th>"), "{page}");
    // Still the same local session.
    assert_eq!(chain.status().await["sessions"], 1);

    // A refused back-channel logout: a genuine gateway-signed token that is not a
    // logout token (an ID token of this client) and garbage; nothing ends.
    let id_token = {
        let (verifier, challenge) = crate::support::gateway::pkce();
        let params = env.authorize_params(&challenge);
        let code = env
            .oidc_authorize(&setup, GIULIA, &crate::support::gateway::pairs(&params))
            .await;
        let tokens = env.exchange(&code, &verifier).await;
        tokens["id_token"].as_str().unwrap().to_owned()
    };
    for bad in [id_token.as_str(), "abc.def.ghi", ""] {
        let r = reqwest::Client::new()
            .post(format!("{ex}/backchannel-logout"))
            .form(&[("logout_token", bad)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "logout_token {bad:?}");
        assert_eq!(r.headers()["cache-control"], "no-store");
    }
    let status = chain.status().await;
    assert_eq!(status["sessions"], 1, "{status}");
    assert_eq!(status["backchannel_logouts_accepted"], 0, "{status}");
    assert_eq!(status["backchannel_logouts_refused"], 3, "{status}");

    // Logout at the gateway (its own «Esci», CSRF-checked): the gateway ends the
    // session and tells the example by Back-Channel Logout; the example ends its
    // session with that sid.
    // Then SPID single logout: the mock IdP publishes a Redirect SingleLogoutService,
    // so a 302 there with our signed LogoutRequest; the gateway session and its tokens
    // end before that redirect.
    let r = env.post_form(&browser, "/logout", &[]).await;
    let (status, to, body) = read(r).await;
    assert_eq!(status, 302, "gateway POST /logout: {to:?}\n{body}");
    let slo = format!("{}/slo?SAMLRequest=", env.idp);
    assert!(
        to.starts_with(&slo) && to.contains("&RelayState=") && to.contains("&Signature="),
        "gateway POST /logout: {to:?}"
    );
    let chain_ref = &chain;
    let status = eventually(
        Duration::from_secs(10),
        "the example's back-channel logout",
        || async move {
            let chain = chain_ref;
            let s = chain.status().await;
            (s["backchannel_logouts_accepted"] == 1).then_some(s)
        },
    )
    .await;
    assert_eq!(status["sessions"], 0, "{status}");
    assert_eq!(status["sids"], serde_json::json!([]), "{status}");
    assert_eq!(status["backchannel_sessions_ended"], 1, "{status}");
    let (_, _, home) = chain.get(&browser, "/").await;
    assert!(home.contains("Accedi con Istanze OnLine"), "{home}");
    assert!(claim(&home, "sid").is_none());

    // A second login (a new SPID login: the gateway session is gone), then the
    // example's «Esci»: local session dropped, RP-initiated logout at the gateway with
    // id_token_hint, back to the example.
    let (status, to, _) = chain.get(&browser, "/login").await;
    assert_eq!(status, 303);
    assert_eq!(chain.through_gateway(&browser, &to, 1).await, "/");
    let (_, _, home) = chain.get(&browser, "/").await;
    let sid2 = claim(&home, "sid").unwrap();
    assert_ne!(sid2, sid, "a new gateway session");
    let csrf = form_value(&home, "csrf");
    // Without the form's token, nothing happens.
    let (status, _, _) = post_form(&browser, format!("{ex}/logout"), &[("csrf", "x")]).await;
    assert_eq!(status, 403);
    assert_eq!(chain.status().await["sessions"], 1);
    let (status, to, _) = post_form(&browser, format!("{ex}/logout"), &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    assert_eq!(
        chain.status().await["sessions"],
        0,
        "local session dropped first"
    );
    let end = reqwest::Url::parse(&to).unwrap();
    assert_eq!(
        format!("{}{}", end.origin().ascii_serialization(), end.path()),
        format!("{}/oidc/logout", env.gw)
    );
    let q: std::collections::HashMap<String, String> = end.query_pairs().into_owned().collect();
    assert!(q.contains_key("id_token_hint"), "{to}");
    assert_eq!(q["post_logout_redirect_uri"], format!("{ex}/"));
    let (hops, back) = back_to_the_example(&chain, &browser, end.to_string()).await;
    assert!(
        hops.iter()
            .any(|h| h.starts_with(&format!("{}/slo?SAMLRequest=", env.idp))),
        "the SAML single logout at the IdP: {hops:?}"
    );
    assert!(back.starts_with(&format!("{ex}/?state=")), "{back}");
    let (_, _, home) = chain.get(&browser, &back).await;
    assert!(home.contains("Sei uscito"), "{home}");
    assert!(home.contains("Accedi con Istanze OnLine"), "{home}");
    // The gateway session ended too: its back-channel logout reaches the example
    // (no local session is left to end).
    let status = eventually(
        Duration::from_secs(10),
        "the second back-channel logout",
        || async move {
            let chain = chain_ref;
            let s = chain.status().await;
            (s["backchannel_logouts_accepted"] == 2).then_some(s)
        },
    )
    .await;
    assert_eq!(status["backchannel_sessions_ended"], 1, "{status}");
    let gw_home = env.home(&browser).await;
    assert!(
        !gw_home.contains("Benvenuto/a"),
        "gateway session ended:\n{gw_home}"
    );
}

/// SPID single logout started by the IdP: the gateway ends the session, and the
/// example app receives a valid back-channel logout token and ends its own.
#[tokio::test]
async fn idp_initiated_spid_logout_ends_the_example_session() {
    let chain = Chain::start().await;
    let env = &chain.env;
    env.enable_account(&env.client(), GIULIA, GIULIA_CP).await;

    let browser = env.client();
    let (_, to, _) = chain.get(&browser, "/login").await;
    let to = chain.through_gateway(&browser, &to, 1).await;
    assert_eq!(to, "/");
    let (_, _, home) = chain.get(&browser, "/").await;
    let sid = claim(&home, "sid").expect("sid claim");
    assert_eq!(chain.status().await["sessions"], 1);

    let name_id = crate::slo::last_name_id(env);
    let logout = crate::slo::idp_logout_url(env, &env.idp_key, &name_id);
    let r = env.client().get(&logout).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 302, "LogoutResponse by Redirect");

    let status = eventually(
        Duration::from_secs(10),
        "the example's session to end",
        || {
            let chain = &chain;
            async move {
                let s = chain.status().await;
                (s["backchannel_logouts_accepted"] == 1).then_some(s)
            }
        },
    )
    .await;
    assert_eq!(status["sessions"], 0, "{status}");
    assert_eq!(status["backchannel_logouts_refused"], 0, "{status}");
    let (_, _, home) = chain.get(&browser, "/").await;
    assert!(home.contains("Accedi con Istanze OnLine"), "{home}");
    assert!(!home.contains(&sid));
}
