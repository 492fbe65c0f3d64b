//! The OpenID Connect provider (issue 4) over real HTTP: the gateway and the mock IdP
//! on loopback ports, the in-memory state store, accounts in a real SQLite file. Every
//! authorization is a browser walk (`/oidc/authorize` → `/login` → mock IdP → ACS →
//! resume → the client's redirect URI, whose `Location` is read, never followed);
//! every token is checked against the JWKS the gateway publishes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use polis_gateway::accounts::EnablementState;
use polis_gateway::clock::Clock as _;
use polis_gateway::oidc::keys::SigningAlg;
use polis_gateway::state::{MemoryStore, RedisConfig, RedisStore, StateStore};
use serde_json::{Value, json};

use crate::support::eventually;
use crate::support::gateway::{
    Auth, Env, EnvOptions, Hop, OIDC_CLIENT, OIDC_JWT_CLIENT, OIDC_RS_CLIENT, OIDC_SECRET, OidcKey,
    Reply, csrf, form_value, pairs, pkce,
};
use crate::support::redis::RedisServer;

const MARIO: &str = "RSSMRA80A01H501U";
const GIULIA: &str = "BNCGLI85M52F205H";
/// Mario's Codice Personale (chosen at the end of his abilitazione).
const CP: &str = "Scuola2026x";
const L2: &str = "https://www.spid.gov.it/SpidL2";
const L3: &str = "https://www.spid.gov.it/SpidL3";
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

async fn start(opts: EnvOptions) -> Env {
    Env::start_with(
        Arc::new(MemoryStore::new()),
        EnvOptions { oidc: true, ..opts },
    )
    .await
}

/// An Env with Mario enabled (CP [`CP`]); the returned browser keeps his L2 session.
async fn with_mario(opts: EnvOptions) -> (Env, reqwest::Client) {
    let env = start(opts).await;
    let browser = env.client();
    env.enable_account(&browser, MARIO, CP).await;
    (env, browser)
}

/// Authorization request parameters, as `Env::authorize_params` makes them.
type Params = Vec<(&'static str, String)>;

/// Sets (or adds) `key` in the authorization parameters.
fn set(params: &mut Params, key: &'static str, value: &str) {
    params.retain(|(k, _)| *k != key);
    params.push((key, value.to_owned()));
}

/// Removes `key` from the authorization parameters.
fn unset(params: &mut Params, key: &str) {
    params.retain(|(k, _)| *k != key);
}

/// An authorization of [`OIDC_CLIENT`] for `browser` (logging in as Mario if asked)
/// and the code exchange: the token response.
async fn tokens_for(env: &Env, browser: &reqwest::Client) -> Value {
    let (verifier, challenge) = pkce();
    let params = env.authorize_params(&challenge);
    let code = env.oidc_authorize(browser, MARIO, &pairs(&params)).await;
    env.exchange(&code, &verifier).await
}

/// The gateway's JWKS.
async fn jwks(env: &Env) -> JwkSet {
    let resp = reqwest::get(format!("{}/oidc/jwks", env.gw)).await.unwrap();
    assert_eq!(resp.status(), 200);
    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
}

/// GETs a JSON document.
async fn get_json(url: &str) -> Value {
    let resp = reqwest::get(url).await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
}

/// Verifies a JWT with the key of the published JWKS named by its `kid` (alg, iss, and
/// `aud` when given; `exp` checked); returns the header and the claims.
async fn verify(env: &Env, token: &str, aud: Option<&str>) -> (Header, Value) {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let kid = header.kid.clone().expect("a kid in every token");
    let set = jwks(env).await;
    let jwk = set
        .find(&kid)
        .unwrap_or_else(|| panic!("kid {kid} is not in the JWKS"));
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[env.gw.as_str()]);
    match aud {
        Some(aud) => validation.set_audience(&[aud]),
        None => validation.validate_aud = false,
    }
    let data =
        jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .unwrap_or_else(|e| panic!("{kid}: {e}"));
    (header, data.claims)
}

/// The `kid` of a JWT's header.
fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// The token-endpoint error: asserts `status` and `error`.
fn assert_oauth_error(reply: &crate::support::gateway::Reply, status: u16, error: &str) {
    assert_eq!(
        (reply.status, reply.json["error"].as_str()),
        (status, Some(error)),
        "{}",
        reply.json
    );
    assert_eq!(reply.header("cache-control").as_deref(), Some("no-store"));
}

/// Asserts an error page (no redirect anywhere) with `status` and `code`.
fn assert_page(hop: &Hop, status: u16, code: &str) {
    assert_eq!(hop.status, status, "{}", hop.body);
    assert_eq!(hop.location, None, "no Location at all: {}", hop.body);
    assert!(hop.body.contains(code), "{code} missing:\n{}", hop.body);
}

/// A refresh of [`OIDC_CLIENT`].
async fn refresh(env: &Env, refresh_token: &str) -> crate::support::gateway::Reply {
    env.token(
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
        &Auth::app(),
    )
    .await
}

/// The string `tokens[name]`.
fn s(tokens: &Value, name: &str) -> String {
    tokens[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} in {tokens}"))
        .to_owned()
}

/// Snapshot settings: the gateway's origin (a random port) becomes `[gateway]`.
fn redact_gateway(env: &Env) -> insta::internals::Redaction {
    let gw = env.gw.clone();
    insta::dynamic_redaction(move |value, _| match value.as_str() {
        Some(text) if text.starts_with(&gw) => text.replacen(&gw, "[gateway]", 1).into(),
        _ => value,
    })
}

// ---------------------------------------------------------------------------------------
// Discovery and JWKS
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn discovery_and_jwks_are_published() {
    let env = start(EnvOptions::default()).await;
    let doc = get_json(&format!("{}/.well-known/openid-configuration", env.gw)).await;
    assert_eq!(doc["issuer"], env.gw.as_str());
    assert_eq!(doc["jwks_uri"], format!("{}/oidc/jwks", env.gw));
    insta::assert_json_snapshot!("discovery", doc, { ".*" => redact_gateway(&env) });

    let set = jwks(&env).await;
    let kids: Vec<String> = env.oidc().keys.iter().map(OidcKey::kid).collect();
    let published: Vec<String> = set
        .keys
        .iter()
        .map(|k| k.common.key_id.clone().unwrap())
        .collect();
    assert_eq!(
        published, kids,
        "EdDSA then ES256, kid = RFC 7638 thumbprint"
    );
    let raw = get_json(&format!("{}/oidc/jwks", env.gw)).await;
    for key in raw["keys"].as_array().unwrap() {
        assert!(key.get("d").is_none(), "no private part: {key}");
    }
    insta::assert_json_snapshot!("jwks", raw, {
        ".keys[].kid" => "[kid]",
        ".keys[].x" => "[x]",
        ".keys[].y" => "[y]",
    });
}

// ---------------------------------------------------------------------------------------
// Authorization requests
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn pkce_is_required_and_only_s256() {
    let env = start(EnvOptions::default()).await;
    let browser = env.client();
    let (_, challenge) = pkce();
    let mut no_challenge = env.authorize_params(&challenge);
    unset(&mut no_challenge, "code_challenge");
    unset(&mut no_challenge, "code_challenge_method");
    let mut plain = env.authorize_params(&challenge);
    set(&mut plain, "code_challenge_method", "plain");
    let mut no_method = env.authorize_params(&challenge);
    unset(&mut no_method, "code_challenge_method");
    for (what, params) in [
        ("no code_challenge", no_challenge),
        ("code_challenge_method=plain", plain),
        ("no code_challenge_method", no_method),
    ] {
        let hop = env
            .oidc_browse(&browser, &env.authorize_url(&pairs(&params)), MARIO, 2)
            .await;
        let location = hop.location.clone().unwrap_or_default();
        assert!(
            hop.status == 303 && location.starts_with(&format!("{}?", env.oidc().redirect_uri)),
            "{what}: {} {location}",
            hop.status
        );
        let q = hop.query();
        assert_eq!(
            q.get("error").map(String::as_str),
            Some("invalid_request"),
            "{what}"
        );
        assert_eq!(
            q.get("state").map(String::as_str),
            Some("st-4711"),
            "{what}"
        );
        assert_eq!(q.get("iss"), Some(&env.gw), "{what}");
        assert!(!q.contains_key("code"), "{what}");
        assert!(hop.logins.is_empty(), "{what}: refused before any login");
    }
}

#[tokio::test]
async fn unregistered_redirect_uri_or_unknown_client_is_a_page_never_a_redirect() {
    let env = start(EnvOptions::default()).await;
    let browser = env.client();
    let (_, challenge) = pkce();
    let registered = env.oidc().redirect_uri.clone();
    for (what, key, value) in [
        (
            "unknown redirect_uri",
            "redirect_uri",
            "https://evil.example/cb".to_owned(),
        ),
        ("a longer path", "redirect_uri", format!("{registered}/x")),
        (
            "an extra query",
            "redirect_uri",
            format!("{registered}?a=b"),
        ),
        ("unknown client_id", "client_id", "nobody".to_owned()),
    ] {
        let mut params = env.authorize_params(&challenge);
        set(&mut params, key, &value);
        // Even with another error the client would be told about (no PKCE).
        unset(&mut params, "code_challenge");
        let url = env.authorize_url(&pairs(&params));
        let resp = browser.get(&url).send().await.unwrap();
        let hop = Hop {
            status: resp.status().as_u16(),
            location: resp
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_owned()),
            body: resp.text().await.unwrap(),
            logins: Vec::new(),
        };
        assert_page(&hop, 400, "POLIS_OIDC_UNTRUSTED_REQUEST");
        assert!(!hop.body.contains("evil.example"), "{what}: {}", hop.body);
    }
}

#[tokio::test]
async fn an_account_not_yet_enabled_is_sent_to_the_abilitazione() {
    let env = start(EnvOptions::default()).await;
    let browser = env.client();
    let (_, challenge) = pkce();
    let params = env.authorize_params(&challenge);
    let hop = env
        .oidc_browse(&browser, &env.authorize_url(&pairs(&params)), GIULIA, 2)
        .await;
    assert_eq!(hop.logins.len(), 1, "a SPID login first");
    assert_eq!(hop.status, 303, "{}", hop.body);
    assert_eq!(hop.location_path().as_deref(), Some("/abilitazione"));
    assert!(!hop.query().contains_key("code"));
    let account = env.account(GIULIA).await.unwrap();
    assert_ne!(account.enablement_state, EnablementState::Enabled);
}

// ---------------------------------------------------------------------------------------
// The code flow, the tokens and their claims
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn code_flow_tokens_verify_and_carry_the_claims() {
    let env = start(EnvOptions::default()).await;
    let browser = env.client();
    env.enable_account(&browser, MARIO, CP).await;
    let account = env.account(MARIO).await.unwrap();
    // A fresh browser: the authorization itself asks for the SPID login.
    let fresh = env.client();
    let before = Utc::now().timestamp();
    let (verifier, challenge) = pkce();
    let params = env.authorize_params(&challenge);
    let hop = env
        .oidc_browse(&fresh, &env.authorize_url(&pairs(&params)), MARIO, 2)
        .await;
    assert_eq!(hop.logins.len(), 1, "one SPID login");
    assert!(
        hop.logins[0].contains("level=2"),
        "default level: {:?}",
        hop.logins
    );
    let code = env.code_of(&hop, &pairs(&params));
    let tokens = env.exchange(&code, &verifier).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 300);
    assert_eq!(tokens["scope"], "openid profile email istanze");

    let (id_header, id) = verify(&env, &s(&tokens, "id_token"), Some(OIDC_CLIENT)).await;
    assert_eq!(id_header.alg, Algorithm::EdDSA);
    assert_eq!(id_header.typ.as_deref(), Some("JWT"));
    assert_eq!(
        id_header.kid.as_deref(),
        Some(env.oidc().keys[0].kid().as_str())
    );
    assert_eq!(id["sub"], account.id.to_string());
    assert_eq!(id["nonce"], "n-0815");
    assert_eq!(id["acr"], L2);
    assert_eq!(id["amr"], json!(["spid"]));
    assert!(id["auth_time"].as_i64().unwrap() >= before);
    assert_eq!(id["fiscal_number"], MARIO);
    assert_eq!(id["enablement_state"], "enabled");
    assert!(id.get("cp_time").is_none());
    insta::assert_json_snapshot!("id_token_claims", id, {
        ".sub" => "[account id]",
        ".sid" => "[sid]",
        ".iat" => "[time]",
        ".exp" => "[time]",
        ".auth_time" => "[time]",
        ".spid_auth_time" => "[time]",
        ".iss" => "[gateway]",
    });

    let (at_header, at) = verify(&env, &s(&tokens, "access_token"), Some(OIDC_CLIENT)).await;
    assert_eq!(at_header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(at["sub"], id["sub"]);
    assert_eq!(at["sid"], id["sid"]);
    assert_eq!(at["client_id"], OIDC_CLIENT);
    assert_eq!(at["acr"], L2);
    insta::assert_json_snapshot!("access_token_claims", at, {
        ".sub" => "[account id]",
        ".sid" => "[sid]",
        ".fam" => "[family]",
        ".jti" => "[jti]",
        ".iat" => "[time]",
        ".exp" => "[time]",
        ".auth_time" => "[time]",
        ".iss" => "[gateway]",
    });

    let info = env.userinfo(&s(&tokens, "access_token")).await;
    assert_eq!(info.status, 200, "{}", info.json);
    assert_eq!(info.json["sub"], id["sub"]);
    assert_eq!(info.json["fiscal_number"], MARIO);
    insta::assert_json_snapshot!("userinfo", info.json, {
        ".sub" => "[account id]",
    });

    let active = env.introspect(&s(&tokens, "access_token")).await;
    assert_eq!(active["active"], true, "{active}");
    assert_eq!(active["sub"], id["sub"]);
    assert_eq!(active["client_id"], OIDC_CLIENT);
    let refresh_info = env.introspect(&s(&tokens, "refresh_token")).await;
    assert_eq!(refresh_info["active"], true, "{refresh_info}");
    assert_eq!(refresh_info["token_type"], "refresh_token");
    let nothing = env.introspect("not-a-token").await;
    assert_eq!(nothing, json!({"active": false}));
}

#[tokio::test]
async fn a_code_used_twice_is_refused_and_its_tokens_revoked() {
    let (env, browser) = with_mario(EnvOptions::default()).await;
    let (verifier, challenge) = pkce();
    let params = env.authorize_params(&challenge);
    let code = env.oidc_authorize(&browser, MARIO, &pairs(&params)).await;
    let tokens = env.exchange(&code, &verifier).await;
    let access = s(&tokens, "access_token");
    assert_eq!(env.introspect(&access).await["active"], true);

    let again = env.exchange_as(&code, &verifier, &Auth::app()).await;
    assert_oauth_error(&again, 400, "invalid_grant");
    assert_eq!(env.introspect(&access).await, json!({"active": false}));
    let info = env.userinfo(&access).await;
    assert_eq!(info.status, 401, "{}", info.json);
    assert!(
        info.header("www-authenticate")
            .is_some_and(|h| h.starts_with("Bearer")),
        "{:?}",
        info.headers
    );
    assert_oauth_error(
        &refresh(&env, &s(&tokens, "refresh_token")).await,
        400,
        "invalid_grant",
    );
}

#[tokio::test]
async fn a_wrong_code_verifier_or_redirect_uri_is_invalid_grant() {
    let (env, browser) = with_mario(EnvOptions::default()).await;
    let redirect = env.oidc().redirect_uri.clone();
    let (verifier, challenge) = pkce();
    let (other_verifier, _) = pkce();
    let params = env.authorize_params(&challenge);
    for (what, verifier_sent, redirect_sent) in [
        (
            "another verifier",
            Some(other_verifier.as_str()),
            redirect.as_str(),
        ),
        ("no verifier", None, redirect.as_str()),
        (
            "another redirect_uri",
            Some(verifier.as_str()),
            "http://127.0.0.1:1/other",
        ),
    ] {
        let code = env.oidc_authorize(&browser, MARIO, &pairs(&params)).await;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect_sent),
        ];
        if let Some(v) = verifier_sent {
            form.push(("code_verifier", v));
        }
        let reply = env.token(&form, &Auth::app()).await;
        assert_oauth_error(&reply, 400, "invalid_grant");
        // The code is spent: the right verifier afterwards gets nothing either.
        let retry = env
            .token(
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", &redirect),
                    ("code_verifier", &verifier),
                ],
                &Auth::app(),
            )
            .await;
        assert_oauth_error(&retry, 400, "invalid_grant");
        assert!(retry.json.get("access_token").is_none(), "{what}");
    }
}

#[tokio::test]
async fn revoked_tokens_introspect_inactive() {
    let (env, browser) = with_mario(EnvOptions::default()).await;
    let tokens = tokens_for(&env, &browser).await;
    let access = s(&tokens, "access_token");
    let refresh_token = s(&tokens, "refresh_token");

    // Another client cannot revoke it (same 200 answer, nothing happens).
    let assertion = env.client_assertion(&format!("{}/oidc/revoke", env.gw));
    let reply = env
        .oidc_post(
            "/oidc/revoke",
            &[("token", &access)],
            &Auth::Assertion(assertion),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    assert_eq!(env.introspect(&access).await["active"], true);

    let reply = env
        .oidc_post("/oidc/revoke", &[("token", &access)], &Auth::app())
        .await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    assert_eq!(env.introspect(&access).await, json!({"active": false}));
    assert_eq!(env.userinfo(&access).await.status, 401);
    // Revoking the access token leaves the refresh token alone…
    assert_eq!(env.introspect(&refresh_token).await["active"], true);
    // …which is revoked on its own, with its family.
    let reply = env
        .oidc_post("/oidc/revoke", &[("token", &refresh_token)], &Auth::app())
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        env.introspect(&refresh_token).await,
        json!({"active": false})
    );
    assert_oauth_error(&refresh(&env, &refresh_token).await, 400, "invalid_grant");
    // Revocation needs client authentication.
    let reply = env
        .oidc_post("/oidc/revoke", &[("token", &access)], &Auth::None)
        .await;
    assert_oauth_error(&reply, 401, "invalid_client");
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_refresh_token_revokes_the_family() {
    let (env, browser) = with_mario(EnvOptions::default()).await;
    let first = tokens_for(&env, &browser).await;
    let rt1 = s(&first, "refresh_token");

    let second = refresh(&env, &rt1).await;
    assert_eq!(second.status, 200, "{}", second.json);
    let rt2 = s(&second.json, "refresh_token");
    let at2 = s(&second.json, "access_token");
    assert_ne!(rt2, rt1, "a new refresh token");
    assert_ne!(at2, s(&first, "access_token"));
    let (_, claims) = verify(&env, &at2, Some(OIDC_CLIENT)).await;
    let (_, first_claims) = verify(&env, &s(&first, "access_token"), None).await;
    assert_eq!(claims["fam"], first_claims["fam"], "same family");
    assert_eq!(env.introspect(&at2).await["active"], true);
    assert_eq!(env.introspect(&rt1).await["active"], false, "rt1 is spent");

    let third = refresh(&env, &rt2).await;
    assert_eq!(third.status, 200, "{}", third.json);
    let rt3 = s(&third.json, "refresh_token");
    let at3 = s(&third.json, "access_token");
    assert_eq!(env.introspect(&at3).await["active"], true);

    // The old refresh token again: refused, and the whole family dies.
    assert_oauth_error(&refresh(&env, &rt1).await, 400, "invalid_grant");
    for (what, token) in [
        ("newest access token", &at3),
        ("newest refresh token", &rt3),
        ("earlier access token", &at2),
        ("first access token", &s(&first, "access_token")),
    ] {
        assert_eq!(
            env.introspect(token).await,
            json!({"active": false}),
            "{what}"
        );
    }
    assert_oauth_error(&refresh(&env, &rt3).await, 400, "invalid_grant");
    assert_eq!(env.userinfo(&at3).await.status, 401);
}

// ---------------------------------------------------------------------------------------
// Client authentication
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn client_authentication_basic_post_and_private_key_jwt() {
    let (env, browser) = with_mario(EnvOptions::default()).await;
    let redirect = env.oidc().redirect_uri.clone();
    let token_endpoint = format!("{}/oidc/token", env.gw);
    let (verifier, challenge) = pkce();
    let params = env.authorize_params(&challenge);
    let exchange = |code: String| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code),
            ("redirect_uri", redirect.clone()),
            ("code_verifier", verifier.clone()),
        ]
    };

    // Failed client authentication: 401 invalid_client with WWW-Authenticate, and the
    // code is not spent.
    let code = env.oidc_authorize(&browser, MARIO, &pairs(&params)).await;
    for (what, auth) in [
        (
            "wrong secret",
            Auth::Basic(OIDC_CLIENT.into(), "app-secret-wrong".into()),
        ),
        (
            "unknown client",
            Auth::Basic("nobody".into(), "app-secret-0123456789".into()),
        ),
        (
            "wrong secret (post)",
            Auth::Post(OIDC_CLIENT.into(), "x".into()),
        ),
        ("no authentication", Auth::None),
    ] {
        let reply = env.token(&pairs(&exchange(code.clone())), &auth).await;
        assert_oauth_error(&reply, 401, "invalid_client");
        assert!(
            reply.header("www-authenticate").is_some(),
            "{what}: WWW-Authenticate: {:?}",
            reply.headers
        );
    }
    // client_secret_basic.
    let reply = env.token(&pairs(&exchange(code)), &Auth::app()).await;
    assert_eq!(reply.status, 200, "basic: {}", reply.json);

    // client_secret_post.
    let code = env.oidc_authorize(&browser, MARIO, &pairs(&params)).await;
    let reply = env
        .token(
            &pairs(&exchange(code)),
            &Auth::Post(OIDC_CLIENT.into(), "app-secret-0123456789".into()),
        )
        .await;
    assert_eq!(reply.status, 200, "post: {}", reply.json);

    // private_key_jwt, for the client that has no secret; its ID tokens are ES256.
    let mut jwt_params = env.authorize_params(&challenge);
    set(&mut jwt_params, "client_id", OIDC_JWT_CLIENT);
    let code = env
        .oidc_authorize(&browser, MARIO, &pairs(&jwt_params))
        .await;
    // Wrong audience: refused, the code survives.
    let wrong_aud = env.client_assertion("https://other.example/token");
    let reply = env
        .token(&pairs(&exchange(code.clone())), &Auth::Assertion(wrong_aud))
        .await;
    assert_oauth_error(&reply, 401, "invalid_client");
    // Not this client's key: an assertion signed by the gateway's own key.
    let foreign = {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(crate::support::gateway::OIDC_JWT_CLIENT_KID.to_owned());
        let now = Utc::now().timestamp();
        jsonwebtoken::encode(
            &header,
            &json!({"iss": OIDC_JWT_CLIENT, "sub": OIDC_JWT_CLIENT, "aud": token_endpoint,
                    "iat": now, "exp": now + 60, "jti": "foreign-1"}),
            &jsonwebtoken::EncodingKey::from_ed_pem(&env.oidc().keys[0].pem).unwrap(),
        )
        .unwrap()
    };
    let reply = env
        .token(&pairs(&exchange(code.clone())), &Auth::Assertion(foreign))
        .await;
    assert_oauth_error(&reply, 401, "invalid_client");
    // A secret is not how this client authenticates.
    let reply = env
        .token(
            &pairs(&exchange(code.clone())),
            &Auth::Basic(OIDC_JWT_CLIENT.into(), "app-secret-0123456789".into()),
        )
        .await;
    assert_oauth_error(&reply, 401, "invalid_client");
    // The good assertion.
    let assertion = env.client_assertion(&token_endpoint);
    let reply = env
        .token(&pairs(&exchange(code)), &Auth::Assertion(assertion.clone()))
        .await;
    assert_eq!(reply.status, 200, "private_key_jwt: {}", reply.json);
    let (header, id) = verify(&env, &s(&reply.json, "id_token"), Some(OIDC_JWT_CLIENT)).await;
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(
        header.kid.as_deref(),
        Some(env.oidc().keys[1].kid().as_str())
    );
    assert_eq!(id["aud"], OIDC_JWT_CLIENT);
    // The same assertion again (a refresh): replay refused.
    let reply = env
        .token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &s(&reply.json, "refresh_token")),
            ],
            &Auth::Assertion(assertion),
        )
        .await;
    assert_oauth_error(&reply, 401, "invalid_client");
    assert!(reply.header("www-authenticate").is_some());
}

// ---------------------------------------------------------------------------------------
// Levels, prompt=login, the CP confirmation
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn acr_is_the_level_actually_obtained() {
    let env = start(EnvOptions::default()).await;
    env.enable_account(&env.client(), MARIO, CP).await;

    // L2 asked, the person logs in at L3 at the IdP: acr says L3.
    let browser = env.client();
    let (verifier, challenge) = pkce();
    let mut params = env.authorize_params(&challenge);
    set(&mut params, "acr_values", L2);
    let hop = env
        .oidc_browse(&browser, &env.authorize_url(&pairs(&params)), MARIO, 3)
        .await;
    assert_eq!(hop.logins.len(), 1);
    assert!(hop.logins[0].contains("level=2"), "{:?}", hop.logins);
    let code = env.code_of(&hop, &pairs(&params));
    let tokens = env.exchange(&code, &verifier).await;
    let (_, id) = verify(&env, &s(&tokens, "id_token"), Some(OIDC_CLIENT)).await;
    assert_eq!(id["acr"], L3);
    let (_, at) = verify(&env, &s(&tokens, "access_token"), None).await;
    assert_eq!(at["acr"], L3);

    // An L2 session and L3 asked: a new SPID login at level 3 (step-up).
    let l2 = env.client();
    let r = env.login(&l2, MARIO).await;
    assert_eq!(r.status(), 303);
    let (verifier, challenge) = pkce();
    let mut params = env.authorize_params(&challenge);
    set(&mut params, "acr_values", L3);
    let hop = env
        .oidc_browse(&l2, &env.authorize_url(&pairs(&params)), MARIO, 3)
        .await;
    assert_eq!(hop.logins.len(), 1, "step-up login");
    assert!(hop.logins[0].contains("level=3"), "{:?}", hop.logins);
    let code = env.code_of(&hop, &pairs(&params));
    let tokens = env.exchange(&code, &verifier).await;
    let (_, id) = verify(&env, &s(&tokens, "id_token"), Some(OIDC_CLIENT)).await;
    assert_eq!(id["acr"], L3);
}

#[tokio::test]
async fn prompt_login_forces_a_new_spid_login() {
    let (env, browser) = with_mario(EnvOptions::default()).await;
    let (_, challenge) = pkce();
    // The session is enough without prompt…
    let params = env.authorize_params(&challenge);
    let hop = env
        .oidc_browse(&browser, &env.authorize_url(&pairs(&params)), MARIO, 2)
        .await;
    assert!(hop.logins.is_empty(), "{:?}", hop.logins);
    env.code_of(&hop, &pairs(&params));
    // …prompt=login sends the browser to /login again.
    let (verifier, challenge) = pkce();
    let mut params = env.authorize_params(&challenge);
    set(&mut params, "prompt", "login");
    let before = Utc::now().timestamp();
    let hop = env
        .oidc_browse(&browser, &env.authorize_url(&pairs(&params)), MARIO, 2)
        .await;
    assert_eq!(hop.logins.len(), 1, "a new SPID login");
    let code = env.code_of(&hop, &pairs(&params));
    let tokens = env.exchange(&code, &verifier).await;
    let (_, id) = verify(&env, &s(&tokens, "id_token"), Some(OIDC_CLIENT)).await;
    assert!(id["auth_time"].as_i64().unwrap() >= before, "{id}");
    // prompt=none cannot be honoured: the client is told.
    let mut params = env.authorize_params(&challenge);
    set(&mut params, "prompt", "none");
    let hop = env
        .oidc_browse(&browser, &env.authorize_url(&pairs(&params)), MARIO, 2)
        .await;
    assert_eq!(
        hop.query().get("error").map(String::as_str),
        Some("invalid_request")
    );
}

#[tokio::test]
async fn cp_confirmation_puts_cp_in_amr_with_its_time() {
    let (env, browser) = with_mario(EnvOptions::default()).await;
    let (verifier, challenge) = pkce();
    let mut params = env.authorize_params(&challenge);
    set(&mut params, "acr_values", "urn:polis:acr:cp");
    let hop = env
        .oidc_browse(&browser, &env.authorize_url(&pairs(&params)), MARIO, 2)
        .await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    assert_eq!(hop.location_path().as_deref(), Some("/oidc/cp"));
    let cp_url = hop.location.clone().unwrap();
    let id = hop.query().get("id").cloned().unwrap();

    let page = browser.get(&cp_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let token = csrf(&html);

    // A wrong CP: the form again, 422 with the stable code; no code issued.
    let wrong = env
        .post_raw(
            &browser,
            "/oidc/cp",
            &[("id", &id), ("cp", "Sbagliato99x"), ("csrf", &token)],
        )
        .await;
    assert_eq!(wrong.status(), 422);
    assert!(wrong.headers().get("location").is_none());
    let body = wrong.text().await.unwrap();
    assert!(body.contains("data-code=\"POLIS_CP_WRONG\""), "{body}");

    // No CSRF token: refused.
    let no_csrf = env
        .post_raw(&browser, "/oidc/cp", &[("id", &id), ("cp", CP)])
        .await;
    assert_eq!(no_csrf.status(), 403);

    // The right CP: back to the authorization, then the code.
    let posted_at = Utc::now().timestamp();
    let right = env
        .post_raw(
            &browser,
            "/oidc/cp",
            &[("id", &id), ("cp", CP), ("csrf", &token)],
        )
        .await;
    assert_eq!(right.status(), 303);
    let resume = right.headers()["location"].to_str().unwrap().to_owned();
    let hop = env.oidc_browse(&browser, &resume, MARIO, 2).await;
    assert!(hop.logins.is_empty());
    let code = env.code_of(&hop, &pairs(&params));
    let tokens = env.exchange(&code, &verifier).await;
    let (_, claims) = verify(&env, &s(&tokens, "id_token"), Some(OIDC_CLIENT)).await;
    assert_eq!(claims["amr"], json!(["spid", "cp"]), "{claims}");
    let cp_time = claims["cp_time"].as_i64().expect("cp_time");
    assert!(cp_time >= posted_at, "cp_time {cp_time} < {posted_at}");
    assert!(
        claims["auth_time"].as_i64().unwrap() >= posted_at,
        "{claims}"
    );
    assert!(claims["iat"].as_i64().unwrap() >= cp_time, "{claims}");
    assert_eq!(claims["acr"], L2);

    // A refreshed ID token does not claim the CP again.
    let reply = refresh(&env, &s(&tokens, "refresh_token")).await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    let (_, refreshed) = verify(&env, &s(&reply.json, "id_token"), Some(OIDC_CLIENT)).await;
    assert_eq!(refreshed["amr"], json!(["spid"]), "{refreshed}");

    // A new request asking the CP asks it again (a confirmation is per request).
    let hop = env
        .oidc_browse(&browser, &env.authorize_url(&pairs(&params)), MARIO, 2)
        .await;
    assert_eq!(hop.location_path().as_deref(), Some("/oidc/cp"));
}

// ---------------------------------------------------------------------------------------
// Logout
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn rp_initiated_logout_returns_to_the_client_and_revokes() {
    let (env, browser) = with_mario(EnvOptions::default()).await;
    let tokens = tokens_for(&env, &browser).await;
    let id_token = s(&tokens, "id_token");
    let access = s(&tokens, "access_token");
    let post_logout = env.oidc().post_logout_uri.clone();

    // An unregistered post_logout_redirect_uri: a page, nothing ended.
    let url = format!(
        "{}/oidc/logout?{}",
        env.gw,
        serde_urlencoded::to_string([
            ("id_token_hint", id_token.as_str()),
            ("post_logout_redirect_uri", "https://evil.example/bye"),
            ("state", "s-1"),
        ])
        .unwrap()
    );
    let resp = browser.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("location").is_none());
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("POLIS_OIDC_UNTRUSTED_REQUEST")
    );
    assert_eq!(env.introspect(&access).await["active"], true);

    let url = format!(
        "{}/oidc/logout?{}",
        env.gw,
        serde_urlencoded::to_string([
            ("id_token_hint", id_token.as_str()),
            ("post_logout_redirect_uri", post_logout.as_str()),
            ("state", "s-2"),
        ])
        .unwrap()
    );
    let resp = browser.get(&url).send().await.unwrap();
    // Like «Esci»: the SAML LogoutRequest to the IdP, whose LogoutResponse returns
    // the browser to the client.
    let location = through_idp_logout(&env, &browser, resp).await;
    assert_eq!(location, format!("{post_logout}?state=s-2"));
    assert_eq!(env.introspect(&access).await, json!({"active": false}));
    assert_eq!(env.userinfo(&access).await.status, 401);
    assert_oauth_error(
        &refresh(&env, &s(&tokens, "refresh_token")).await,
        400,
        "invalid_grant",
    );
    // The gateway session is over: the next authorization needs a SPID login.
    let (_, challenge) = pkce();
    let params = env.authorize_params(&challenge);
    let hop = env
        .oidc_browse(&browser, &env.authorize_url(&pairs(&params)), MARIO, 2)
        .await;
    assert_eq!(hop.logins.len(), 1, "the session ended");
}

/// An RP-initiated logout's answer followed through the mock IdP: the signed
/// LogoutRequest (Redirect) to its SingleLogoutService, its LogoutResponse back to
/// `/slo`, and the `Location` the gateway then sends the browser to.
async fn through_idp_logout(env: &Env, browser: &reqwest::Client, r: reqwest::Response) -> String {
    let location = |r: &reqwest::Response| {
        r.headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(r.status(), 302, "the logout goes on to the IdP");
    let to_idp = location(&r);
    assert!(
        to_idp.starts_with(&format!("{}/slo?SAMLRequest=", env.idp)),
        "{to_idp}"
    );
    assert!(to_idp.contains("&Signature="), "{to_idp}");
    let r = browser.get(&to_idp).send().await.unwrap();
    assert_eq!(r.status(), 302, "the mock IdP answers by Redirect");
    let back = location(&r);
    assert!(
        back.starts_with(&format!("{}/slo?SAMLResponse=", env.gw)),
        "{back}"
    );
    let r = browser.get(&back).send().await.unwrap();
    assert_eq!(r.status(), 303);
    location(&r)
}

/// The `logout_token`s a back-channel endpoint received.
type Received = Arc<Mutex<Vec<String>>>;

/// A tiny relying party endpoint that records the `logout_token`s posted to it.
async fn backchannel_listener() -> (String, Received) {
    async fn receive(
        State(seen): State<Arc<Mutex<Vec<String>>>>,
        axum::Form(form): axum::Form<std::collections::HashMap<String, String>>,
    ) -> &'static str {
        if let Some(token) = form.get("logout_token") {
            seen.lock().unwrap().push(token.clone());
        }
        "ok"
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/backchannel-logout",
        listener.local_addr().unwrap()
    );
    let app = Router::new()
        .route("/backchannel-logout", post(receive))
        .with_state(seen.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen)
}

/// Mario logged in, with tokens of a client that has a back-channel logout URI: the
/// Env, the browser, the tokens, the ID token's claims and what the client receives.
async fn mario_with_backchannel() -> (Env, reqwest::Client, Value, Value, Received) {
    let (url, seen) = backchannel_listener().await;
    let (env, browser) = with_mario(EnvOptions {
        oidc_backchannel: Some(url),
        ..EnvOptions::default()
    })
    .await;
    let tokens = tokens_for(&env, &browser).await;
    let (_, id) = verify(&env, &s(&tokens, "id_token"), Some(OIDC_CLIENT)).await;
    assert!(seen.lock().unwrap().is_empty());
    (env, browser, tokens, id, seen)
}

/// Waits for the first logout token the client receives and checks it names the
/// session of the ID token `id`; its claims.
async fn first_logout_token(env: &Env, seen: &Received, id: &Value) -> Value {
    let token = eventually(Duration::from_secs(10), "a logout_token", || {
        let first = seen.lock().unwrap().first().cloned();
        std::future::ready(first)
    })
    .await;
    let (header, claims) = verify(env, &token, Some(OIDC_CLIENT)).await;
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    assert_eq!(claims["sid"], id["sid"]);
    assert_eq!(claims["events"], json!({ BACKCHANNEL_EVENT: {} }));
    claims
}

#[tokio::test]
async fn gateway_logout_revokes_tokens_and_sends_a_backchannel_logout_token() {
    let (env, browser, tokens, id, seen) = mario_with_backchannel().await;
    let access = s(&tokens, "access_token");

    // The local session ends first; then the browser goes on to the IdP's single
    // logout: the mock IdP publishes a Redirect SLO first, so exactly a 302 there with
    // a signed LogoutRequest.
    let r = env.post_form(&browser, "/logout", &[]).await;
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(status, 302, "logout: {location:?}");
    assert!(
        location.starts_with(&format!("{}/slo?SAMLRequest=", env.idp))
            && location.contains("&Signature="),
        "logout: {location:?}"
    );
    assert_eq!(env.introspect(&access).await, json!({"active": false}));
    assert_eq!(env.userinfo(&access).await.status, 401);

    let claims = first_logout_token(&env, &seen, &id).await;
    assert_eq!(claims["sub"], id["sub"]);
    assert!(claims.get("nonce").is_none(), "{claims}");
    assert!(
        claims["jti"].is_string() && claims["iat"].is_i64(),
        "{claims}"
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "one token for the one client"
    );
}

#[tokio::test]
async fn idp_initiated_single_logout_revokes_tokens_and_sends_a_backchannel_logout_token() {
    let (env, _browser, tokens, id, seen) = mario_with_backchannel().await;
    let access = s(&tokens, "access_token");
    let refresh = s(&tokens, "refresh_token");
    assert_eq!(env.introspect(&access).await["active"], json!(true));

    // The IdP ends the SPID session: a signed LogoutRequest for this login's NameID.
    let name_id = crate::slo::last_name_id(&env);
    let logout = crate::slo::idp_logout_url(&env, &env.idp_key, &name_id);
    let r = env.client().get(&logout).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 302, "LogoutResponse by Redirect");
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with(&format!("{}/slo?SAMLResponse=", env.idp))
    );

    // Tokens of that session are dead, refresh included.
    assert_eq!(env.introspect(&access).await, json!({"active": false}));
    assert_eq!(env.userinfo(&access).await.status, 401);
    assert_eq!(env.introspect(&refresh).await, json!({"active": false}));

    // And the client heard it on its back channel.
    first_logout_token(&env, &seen, &id).await;
}

// ---------------------------------------------------------------------------------------
// Family lifetimes, atomic reuse detection (issue 8)
// ---------------------------------------------------------------------------------------

/// The claims of a JWT, unverified (tests read what they already verified).
fn payload(token: &str) -> Value {
    use base64::Engine as _;
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

/// A refresh of `client` (`auth`).
async fn refresh_as(env: &Env, refresh_token: &str, auth: &Auth) -> Reply {
    env.token(
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
        auth,
    )
    .await
}

/// [`OIDC_RS_CLIENT`] with its secret.
fn rs_auth() -> Auth {
    Auth::Basic(OIDC_RS_CLIENT.into(), OIDC_SECRET.into())
}

/// Rotates the family of `refresh_token` while moving the gateway's clock: the family
/// began between `began` and `ready` (clock times) and must end `lifetime` later.
/// Every tenth of the lifetime (less than a refresh token's own lifetime) a rotation
/// succeeds, keeps the refresh token's `exp` (the family's end) and gives an access
/// token that does not outlive it, until 5 s before the end; 5 s after the end the
/// refresh is refused as the family's end and the token introspects inactive.
/// Returns the number of successful rotations.
async fn rotate_until_refused(
    env: &Env,
    refresh_token: &str,
    auth: &Auth,
    began: DateTime<Utc>,
    ready: DateTime<Utc>,
    lifetime: chrono::Duration,
) -> u32 {
    let mut rt = refresh_token.to_owned();
    let mut rotations = 0;
    let first_end = env.introspect_as(&rt, auth).await["exp"].clone();
    let end = first_end
        .as_i64()
        .and_then(|t| DateTime::from_timestamp(t, 0))
        .unwrap_or_else(|| panic!("the refresh token's exp: {first_end}"));
    // Whole seconds: the end is fixed when the code is issued, `lifetime` after it.
    assert!(
        end.timestamp() >= (began + lifetime).timestamp()
            && end.timestamp() <= (ready + lifetime).timestamp(),
        "the family ends at {end}, not {lifetime} after {began}..{ready}"
    );
    let step = lifetime / 10;
    let last = end - chrono::Duration::seconds(5);
    while env.clock.now() < last {
        env.clock.advance(step.min(last - env.clock.now()));
        let reply = refresh_as(env, &rt, auth).await;
        assert_eq!(
            reply.status,
            200,
            "a refresh {} before the family's end: {}",
            end - env.clock.now(),
            reply.json
        );
        rt = s(&reply.json, "refresh_token");
        rotations += 1;
        // Rotation never moves the end, and no access token outlives it.
        let info = env.introspect_as(&rt, auth).await;
        assert_eq!(info["exp"], first_end, "{info}");
        let at = payload(&s(&reply.json, "access_token"));
        assert!(at["exp"].as_i64() <= first_end.as_i64(), "{at}");
    }
    env.clock.advance(chrono::Duration::seconds(10));
    let reply = refresh_as(env, &rt, auth).await;
    assert_oauth_error(&reply, 400, "invalid_grant");
    assert!(
        reply.json["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("absolute lifetime")),
        "{}",
        reply.json
    );
    assert_eq!(env.introspect_as(&rt, auth).await, json!({"active": false}));
    rotations
}

#[tokio::test]
async fn a_refresh_family_dies_at_its_absolute_lifetime_whatever_its_rotations() {
    // Refresh tokens live an hour each; the family lives an hour in all (the defaults).
    let (env, browser) = with_mario(EnvOptions::default()).await;
    let (verifier, challenge) = pkce();
    let params = env.authorize_params(&challenge);
    let began = env.clock.now();
    let code = env.oidc_authorize(&browser, MARIO, &pairs(&params)).await;
    let tokens = env.exchange(&code, &verifier).await;
    let ready = env.clock.now();
    let rotations = rotate_until_refused(
        &env,
        &s(&tokens, "refresh_token"),
        &Auth::app(),
        began,
        ready,
        chrono::Duration::hours(1),
    )
    .await;
    assert!(rotations >= 9, "only {rotations} rotations");
}

#[tokio::test]
async fn a_refresh_family_never_outlives_the_session_absolute_timeout() {
    // The family could live a day; the session ends 8 hours (the default absolute
    // timeout) after the SPID login.
    let env = start(EnvOptions {
        oidc_refresh_lifetimes: (3600, 24 * 3600),
        ..EnvOptions::default()
    })
    .await;
    let browser = env.client();
    let (verifier, challenge) = pkce();
    let mut params = env.authorize_params(&challenge);
    set(&mut params, "client_id", OIDC_RS_CLIENT);
    let began = env.clock.now();
    // GIULIA has no account yet: the SPID login of this walk opens the session, and
    // this client allows accounts in enablement.
    let hop = env
        .oidc_browse(&browser, &env.authorize_url(&pairs(&params)), GIULIA, 2)
        .await;
    assert_eq!(hop.logins.len(), 1);
    let code = env.code_of(&hop, &pairs(&params));
    let reply = env.exchange_as(&code, &verifier, &rs_auth()).await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    let ready = env.clock.now();
    let rotations = rotate_until_refused(
        &env,
        &s(&reply.json, "refresh_token"),
        &rs_auth(),
        began,
        ready,
        chrono::Duration::hours(8),
    )
    .await;
    assert!(rotations >= 9, "only {rotations} rotations");
}

/// Sends the 20 `forms` to `/oidc/token` at once (each with its own fresh client
/// assertion of [`OIDC_JWT_CLIENT`]), released together by a barrier.
async fn race(env: &Env, form: Vec<(&'static str, String)>) -> Vec<Reply> {
    const N: usize = 20;
    let barrier = Arc::new(tokio::sync::Barrier::new(N));
    let token_endpoint = format!("{}/oidc/token", env.gw);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..N {
        let mut fields: Vec<(String, String)> = form
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        fields.push((
            "client_assertion_type".into(),
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
        ));
        fields.push((
            "client_assertion".into(),
            env.client_assertion(&token_endpoint),
        ));
        let request = reqwest::Client::new()
            .post(&token_endpoint)
            .form(&fields)
            .build()
            .unwrap();
        let barrier = barrier.clone();
        tasks.spawn(async move {
            let client = reqwest::Client::new();
            barrier.wait().await;
            let resp = client.execute(request).await.unwrap();
            let status = resp.status().as_u16();
            let json: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
            (status, json)
        });
    }
    let mut out = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (status, json) = done.unwrap();
        out.push(Reply {
            status,
            headers: reqwest::header::HeaderMap::new(),
            json,
        });
    }
    out
}

/// Tokens of [`OIDC_JWT_CLIENT`] for Mario's session, and the code's exchange form.
async fn jwt_client_code(env: &Env, browser: &reqwest::Client) -> Vec<(&'static str, String)> {
    let (verifier, challenge) = pkce();
    let mut params = env.authorize_params(&challenge);
    set(&mut params, "client_id", OIDC_JWT_CLIENT);
    let code = env.oidc_authorize(browser, MARIO, &pairs(&params)).await;
    vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code),
        ("redirect_uri", env.oidc().redirect_uri.clone()),
        ("code_verifier", verifier),
    ]
}

/// `POST /oidc/introspect` as [`OIDC_JWT_CLIENT`].
async fn introspect_jwt(env: &Env, token: &str) -> Value {
    let assertion = env.client_assertion(&format!("{}/oidc/introspect", env.gw));
    let reply = env
        .oidc_post(
            "/oidc/introspect",
            &[("token", token)],
            &Auth::Assertion(assertion),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    reply.json
}

/// An Env with Mario enabled on `store`.
async fn with_mario_on(store: Arc<dyn StateStore>) -> (Env, reqwest::Client) {
    let env = Env::start_with(
        store,
        EnvOptions {
            oidc: true,
            ..EnvOptions::default()
        },
    )
    .await;
    let browser = env.client();
    env.enable_account(&browser, MARIO, CP).await;
    (env, browser)
}

#[tokio::test]
async fn twenty_concurrent_redemptions_of_one_code_give_one_answer_and_revoke_it() {
    concurrent_redemptions(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn twenty_concurrent_redemptions_of_one_code_on_redis() {
    let server = RedisServer::start();
    concurrent_redemptions(redis(&server)).await;
}

#[tokio::test]
async fn twenty_concurrent_refreshes_of_one_token_succeed_at_most_once_and_revoke_the_family() {
    concurrent_refreshes(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn twenty_concurrent_refreshes_of_one_token_on_redis() {
    let server = RedisServer::start();
    concurrent_refreshes(redis(&server)).await;
}

fn redis(server: &RedisServer) -> Arc<dyn StateStore> {
    Arc::new(RedisStore::connect(&RedisConfig::standalone(server.url())).unwrap())
}

async fn concurrent_redemptions(store: Arc<dyn StateStore>) {
    let (env, browser) = with_mario_on(store).await;
    let form = jwt_client_code(&env, &browser).await;
    let replies = race(&env, form).await;
    let ok: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        ok.len(),
        1,
        "{:?}",
        replies.iter().map(|r| &r.json).collect::<Vec<_>>()
    );
    // Each of the 19 others saw the reuse (none took the code for unknown).
    for r in replies.iter().filter(|r| r.status != 200) {
        assert_eq!(
            (r.status, r.json["error"].as_str()),
            (400, Some("invalid_grant")),
            "{}",
            r.json
        );
        assert!(
            r.json["error_description"]
                .as_str()
                .is_some_and(|d| d.contains("already used")),
            "{}",
            r.json
        );
    }
    // Every other use found the code spent and revoked what it gave.
    let winner = &ok[0].json;
    let access = s(winner, "access_token");
    assert_eq!(
        introspect_jwt(&env, &access).await,
        json!({"active": false})
    );
    assert_eq!(env.userinfo(&access).await.status, 401);
    let assertion = env.client_assertion(&format!("{}/oidc/token", env.gw));
    let again = refresh_as(
        &env,
        &s(winner, "refresh_token"),
        &Auth::Assertion(assertion),
    )
    .await;
    assert_oauth_error(&again, 400, "invalid_grant");
}

async fn concurrent_refreshes(store: Arc<dyn StateStore>) {
    let (env, browser) = with_mario_on(store).await;
    let form = jwt_client_code(&env, &browser).await;
    let assertion = env.client_assertion(&format!("{}/oidc/token", env.gw));
    let tokens = env.token(&pairs(&form), &Auth::Assertion(assertion)).await;
    assert_eq!(tokens.status, 200, "{}", tokens.json);
    let access = s(&tokens.json, "access_token");
    assert_eq!(introspect_jwt(&env, &access).await["active"], true);
    let replies = race(
        &env,
        vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", s(&tokens.json, "refresh_token")),
        ],
    )
    .await;
    let ok: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    assert!(ok.len() <= 1, "{} refreshes succeeded", ok.len());
    assert!(
        replies
            .iter()
            .filter(|r| r.status != 200)
            .all(|r| r.status == 400 && r.json["error"] == "invalid_grant"),
        "{:?}",
        replies.iter().map(|r| &r.json).collect::<Vec<_>>()
    );
    // Every use but the one that took the token saw the reuse.
    let reuses = replies
        .iter()
        .filter(|r| {
            r.json["error_description"]
                .as_str()
                .is_some_and(|d| d.contains("reused"))
        })
        .count();
    assert!(reuses >= 19, "{reuses} uses saw the reuse");
    // The family is dead: the first access token and whatever a winner got.
    assert_eq!(
        introspect_jwt(&env, &access).await,
        json!({"active": false})
    );
    for r in ok {
        let at = s(&r.json, "access_token");
        assert_eq!(introspect_jwt(&env, &at).await, json!({"active": false}));
        let assertion = env.client_assertion(&format!("{}/oidc/token", env.gw));
        let again = refresh_as(
            &env,
            &s(&r.json, "refresh_token"),
            &Auth::Assertion(assertion),
        )
        .await;
        assert_oauth_error(&again, 400, "invalid_grant");
    }
}

// ---------------------------------------------------------------------------------------
// typ on every token kind, introspection scope (issue 8)
// ---------------------------------------------------------------------------------------

/// `token` re-signed by the gateway's own key that signed it, with header `typ`: a
/// genuine signature on a token of another kind.
fn resigned(env: &Env, token: &str, typ: Option<&str>) -> String {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let kid = header.kid.clone().unwrap();
    let key = env
        .oidc()
        .keys
        .iter()
        .find(|k| k.kid() == kid)
        .unwrap_or_else(|| panic!("{kid} is not a key of the Env"));
    let encoding = match key.alg {
        SigningAlg::EdDSA => jsonwebtoken::EncodingKey::from_ed_pem(&key.pem).unwrap(),
        SigningAlg::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(&key.pem).unwrap(),
    };
    let mut h = Header::new(header.alg);
    h.kid = Some(kid);
    h.typ = typ.map(str::to_owned);
    jsonwebtoken::encode(&h, &payload(token), &encoding).unwrap()
}

/// `GET /oidc/logout?id_token_hint=…` in `browser`.
async fn logout_with_hint(env: &Env, browser: &reqwest::Client, hint: &str) -> (u16, String) {
    let url = format!(
        "{}/oidc/logout?{}",
        env.gw,
        serde_urlencoded::to_string([("id_token_hint", hint)]).unwrap()
    );
    let resp = browser.get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

#[tokio::test]
async fn a_token_of_one_kind_is_refused_as_another() {
    let (env, browser) = with_mario(EnvOptions::default()).await;
    let tokens = tokens_for(&env, &browser).await;
    let access = s(&tokens, "access_token");
    let id_token = s(&tokens, "id_token");

    // Access tokens: `at+jwt` only. The control: the same claims re-signed as at+jwt work.
    assert_eq!(
        env.userinfo(&resigned(&env, &access, Some("at+jwt")))
            .await
            .status,
        200
    );
    assert_eq!(
        env.userinfo(&resigned(&env, &access, Some("application/at+jwt")))
            .await
            .status,
        200
    );
    for (what, token) in [
        (
            "an access token typed JWT",
            resigned(&env, &access, Some("JWT")),
        ),
        ("an access token without typ", resigned(&env, &access, None)),
        (
            "an access token typed logout+jwt",
            resigned(&env, &access, Some("logout+jwt")),
        ),
        ("the ID token", id_token.clone()),
    ] {
        let info = env.userinfo(&token).await;
        assert_eq!(info.status, 401, "{what}: {}", info.json);
        assert_eq!(
            env.introspect(&token).await,
            json!({"active": false}),
            "{what}"
        );
    }

    // id_token_hint: only an ID token (typ JWT). The access token carries the same
    // `aud` and `sid`, a logout token would too: neither ends the session.
    for (what, hint) in [
        ("the access token", access.clone()),
        (
            "the ID token typed at+jwt",
            resigned(&env, &id_token, Some("at+jwt")),
        ),
        (
            "the ID token typed logout+jwt",
            resigned(&env, &id_token, Some("logout+jwt")),
        ),
        ("the ID token without typ", resigned(&env, &id_token, None)),
    ] {
        let (status, body) = logout_with_hint(&env, &browser, &hint).await;
        assert_eq!(status, 200, "{what}: the confirmation page\n{body}");
        assert!(body.contains(r#"action="/oidc/logout""#), "{what}: {body}");
        assert!(env.home(&browser).await.contains("Benvenuto"), "{what}");
        assert_eq!(env.introspect(&access).await["active"], true, "{what}");
    }

    // Client assertions: a JWT or client-authentication+jwt, never a token of another kind.
    let introspect_endpoint = format!("{}/oidc/introspect", env.gw);
    let assertion_typed = |typ: Option<&str>| {
        let genuine = env.client_assertion(&introspect_endpoint);
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(crate::support::gateway::OIDC_JWT_CLIENT_KID.to_owned());
        header.typ = typ.map(str::to_owned);
        let mut claims = payload(&genuine);
        claims["jti"] = json!(polis_gateway::saml::ids::new_token(16));
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ed_pem(&env.oidc().jwt_client_pem).unwrap(),
        )
        .unwrap()
    };
    for typ in [Some("at+jwt"), Some("logout+jwt"), Some("secevent+jwt")] {
        let reply = env
            .oidc_post(
                "/oidc/introspect",
                &[("token", &access)],
                &Auth::Assertion(assertion_typed(typ)),
            )
            .await;
        assert_oauth_error(&reply, 401, "invalid_client");
    }
    for typ in [None, Some("JWT"), Some("client-authentication+jwt")] {
        let reply = env
            .oidc_post(
                "/oidc/introspect",
                &[("token", &access)],
                &Auth::Assertion(assertion_typed(typ)),
            )
            .await;
        assert_eq!(reply.status, 200, "{typ:?}: {}", reply.json);
    }

    // The control: the genuine ID token as hint ends the session.
    let (status, _) = logout_with_hint(&env, &browser, &id_token).await;
    assert_eq!(status, 302, "on to the IdP's single logout");
    assert!(!env.home(&browser).await.contains("Benvenuto"));
    assert_eq!(env.introspect(&access).await, json!({"active": false}));
}

#[tokio::test]
async fn introspection_answers_only_the_client_and_its_resource_servers() {
    let (env, browser) = with_mario(EnvOptions::default()).await;
    let tokens = tokens_for(&env, &browser).await;
    let access = s(&tokens, "access_token");
    let refresh_token = s(&tokens, "refresh_token");
    for token in [&access, &refresh_token] {
        // The client itself.
        let own = env.introspect(token).await;
        assert_eq!(own["active"], true, "{own}");
        assert_eq!(own["client_id"], OIDC_CLIENT);
        // Another client: exactly the answer for an unknown token.
        assert_eq!(introspect_jwt(&env, token).await, json!({"active": false}));
        assert_eq!(
            introspect_jwt(&env, "no-such-token").await,
            json!({"active": false})
        );
        // A resource server for the client (`introspect_for`).
        let rs = env.introspect_as(token, &rs_auth()).await;
        assert_eq!(rs["active"], true, "{rs}");
        assert_eq!(rs["client_id"], OIDC_CLIENT);
        assert_eq!(rs["sub"], own["sub"]);
    }
    // introspect_for is one-way: the client learns nothing of the resource server's tokens.
    let (verifier, challenge) = pkce();
    let mut params = env.authorize_params(&challenge);
    set(&mut params, "client_id", OIDC_RS_CLIENT);
    let code = env.oidc_authorize(&browser, MARIO, &pairs(&params)).await;
    let reply = env.exchange_as(&code, &verifier, &rs_auth()).await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    let rs_access = s(&reply.json, "access_token");
    assert_eq!(
        env.introspect_as(&rs_access, &rs_auth()).await["active"],
        true
    );
    assert_eq!(env.introspect(&rs_access).await, json!({"active": false}));
}

// ---------------------------------------------------------------------------------------
// RP-initiated logout without a hint: a confirmation (issue 8)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn rp_logout_without_a_valid_hint_asks_and_needs_the_csrf_token() {
    let (env, browser) = with_mario(EnvOptions::default()).await;
    let tokens = tokens_for(&env, &browser).await;
    let access = s(&tokens, "access_token");
    let post_logout = env.oidc().post_logout_uri.clone();

    // A cross-site link: no hint. A page, nothing ended, no cookie touched.
    let url = format!(
        "{}/oidc/logout?{}",
        env.gw,
        serde_urlencoded::to_string([
            ("client_id", OIDC_CLIENT),
            ("post_logout_redirect_uri", post_logout.as_str()),
            ("state", "s-<3>"),
        ])
        .unwrap()
    );
    let resp = browser.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("set-cookie").is_none());
    assert!(resp.headers().get("location").is_none());
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let page = resp.text().await.unwrap();
    assert!(page.contains("Vuoi uscire"), "{page}");
    assert!(page.contains("App di prova"), "the client is named: {page}");
    assert!(!page.contains("<script"), "no script: {page}");
    assert!(page.contains(r#"<form method="post" action="/oidc/logout">"#));
    assert_eq!(form_value(&page, "state"), "s-<3>");
    assert!(env.home(&browser).await.contains("Benvenuto"));
    assert_eq!(env.introspect(&access).await["active"], true);

    // A link with no session behind it at all: nothing to end, straight back.
    let anonymous = env.client();
    let resp = anonymous.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert!(
        resp.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with(&post_logout)
    );

    // The form posted without the session's token, or with another: 403, nothing ends.
    let fields = [
        ("client_id", OIDC_CLIENT),
        ("post_logout_redirect_uri", post_logout.as_str()),
        ("state", "s-<3>"),
    ];
    for csrf_sent in [None, Some("wrong"), Some("")] {
        let mut form = fields.to_vec();
        if let Some(c) = csrf_sent {
            form.push(("csrf", c));
        }
        let r = env.post_raw(&browser, "/oidc/logout", &form).await;
        assert_eq!(r.status(), 403, "csrf {csrf_sent:?}");
        assert!(r.text().await.unwrap().contains("POLIS_CSRF"));
        assert!(env.home(&browser).await.contains("Benvenuto"));
        assert_eq!(env.introspect(&access).await["active"], true);
    }
    // Another browser's session token does not work either.
    let other = env.client();
    env.login(&other, GIULIA).await;
    let other_csrf = form_value(&env.home(&other).await, "csrf");
    let mut form = fields.to_vec();
    form.push(("csrf", &other_csrf));
    let r = env.post_raw(&browser, "/oidc/logout", &form).await;
    assert_eq!(r.status(), 403);
    assert!(env.home(&browser).await.contains("Benvenuto"));

    // A tampered return target on the confirmed form: refused, nothing ends.
    let token = csrf(&page);
    let r = env
        .post_raw(
            &browser,
            "/oidc/logout",
            &[
                ("csrf", &token),
                ("client_id", OIDC_CLIENT),
                ("post_logout_redirect_uri", "https://evil.example/"),
            ],
        )
        .await;
    assert_eq!(r.status(), 400);
    assert!(env.home(&browser).await.contains("Benvenuto"));

    // The person confirms: logged out, tokens revoked, back to the client with state.
    let mut form = fields.to_vec();
    form.push(("csrf", &token));
    let r = env.post_raw(&browser, "/oidc/logout", &form).await;
    assert_eq!(
        through_idp_logout(&env, &browser, r).await,
        format!("{post_logout}?state=s-%3C3%3E")
    );
    assert!(!env.home(&browser).await.contains("Benvenuto"));
    assert_eq!(env.introspect(&access).await, json!({"active": false}));
    assert_eq!(env.userinfo(&access).await.status, 401);
    // Giulia's session, in the other browser, is untouched.
    assert!(env.home(&other).await.contains("Benvenuto"));
}

// ---------------------------------------------------------------------------------------
// Key rotation
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn key_rotation_keeps_old_tokens_valid_and_signs_with_the_new_key() {
    let mut env = start(EnvOptions::default()).await;
    env.enable_account(&env.client(), MARIO, CP).await;
    let key_a = env.oidc().keys[0].clone();
    let es256 = env.oidc().keys[1].clone();
    let kid_a = key_a.kid();
    let old = tokens_for(&env, &env.client()).await;
    let old_access = s(&old, "access_token");
    assert_eq!(kid_of(&old_access), kid_a);
    assert_eq!(kid_of(&s(&old, "id_token")), kid_a);

    // Rotation: B current, A kept until its tokens expire.
    let key_b = OidcKey::generate(SigningAlg::EdDSA);
    let kid_b = key_b.kid();
    env.restart_gateway_with_keys(vec![
        key_b,
        OidcKey {
            not_after: Some(Utc::now() + chrono::Duration::hours(1)),
            ..key_a.clone()
        },
        es256.clone(),
    ])
    .await;
    let published: Vec<String> = jwks(&env)
        .await
        .keys
        .iter()
        .map(|k| k.common.key_id.clone().unwrap())
        .collect();
    assert_eq!(published, vec![kid_b.clone(), kid_a.clone(), es256.kid()]);
    // A's tokens still verify.
    verify(&env, &old_access, Some(OIDC_CLIENT)).await;
    assert_eq!(env.introspect(&old_access).await["active"], true);
    assert_eq!(env.userinfo(&old_access).await.status, 200);
    // New tokens carry B's kid: a new authorization and a refresh of A's grant.
    let new = tokens_for(&env, &env.client()).await;
    assert_eq!(kid_of(&s(&new, "access_token")), kid_b);
    assert_eq!(kid_of(&s(&new, "id_token")), kid_b);
    verify(&env, &s(&new, "id_token"), Some(OIDC_CLIENT)).await;
    let refreshed = refresh(&env, &s(&old, "refresh_token")).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.json);
    assert_eq!(kid_of(&s(&refreshed.json, "access_token")), kid_b);

    // Past A's not_after: unpublished and refused.
    env.restart_gateway_with_keys(vec![
        env.oidc().keys[0].clone(),
        OidcKey {
            not_after: Some(Utc::now() - chrono::Duration::seconds(1)),
            ..key_a
        },
        es256,
    ])
    .await;
    let published: Vec<String> = jwks(&env)
        .await
        .keys
        .iter()
        .map(|k| k.common.key_id.clone().unwrap())
        .collect();
    assert!(!published.contains(&kid_a), "{published:?}");
    assert_eq!(env.introspect(&old_access).await, json!({"active": false}));
    assert_eq!(env.userinfo(&old_access).await.status, 401);
    assert_eq!(
        env.introspect(&s(&new, "access_token")).await["active"],
        true
    );
}
