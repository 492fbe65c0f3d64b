//! Replay safety that does not depend on how Redis persists (issue 8, class 9): a Redis
//! restored from an RDB snapshot older than accepted logins brings their consumed
//! pending requests back while the replay cache forgot the assertions. Replaying those
//! Responses must be refused, and no session may open.

use std::sync::Arc;
use std::time::Duration;

use polis_gateway::state::{RedisConfig, RedisStore, StateStore};

use crate::support::eventually;
use crate::support::gateway::{Env, EnvOptions, IdpAnswer};
use crate::support::redis::RedisServer;

const MARIO: &str = "RSSMRA80A01H501U";
/// Logins started before the snapshot.
const LOGINS: usize = 4;

/// Posts to the ACS until the answer is not a 503 (the gateway reconnecting to the
/// restarted Redis), within a deadline; returns the status, the body and whether a
/// cookie was set.
async fn post_acs_after_restart(
    env: &Env,
    client: &reqwest::Client,
    answer: &IdpAnswer,
) -> (u16, String, bool) {
    eventually(
        Duration::from_secs(10),
        "the ACS to reach Redis again",
        || async {
            let r = env
                .post_acs(client, &answer.saml_response, &answer.relay_state)
                .await;
            let status = r.status().as_u16();
            let cookie = r.headers().contains_key("set-cookie");
            let body = r.text().await.unwrap();
            (status != 503).then_some((status, body, cookie))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_accepted_after_a_snapshot_are_refused_once_redis_is_restored_from_it() {
    let mut server = tokio::task::block_in_place(RedisServer::start);
    let store: Arc<dyn StateStore> =
        Arc::new(RedisStore::connect(&RedisConfig::standalone(server.url())).unwrap());
    let env = Env::start(store).await;

    // Logins started: their pending requests are in Redis, the IdP's Responses in hand.
    let mut logins = Vec::new();
    for _ in 0..LOGINS {
        let client = env.client();
        let answer = env
            .idp_answer(&client, 2, "redirect", MARIO, "success")
            .await;
        logins.push((client, answer));
    }
    let saved = tokio::task::block_in_place(|| server.command(&["SAVE"]));
    assert_eq!(saved.as_deref(), Some("OK"));

    // The Responses are accepted after the snapshot: pending requests consumed, the
    // assertion IDs in the replay cache.
    for (client, answer) in &logins {
        let r = env
            .post_acs(client, &answer.saml_response, &answer.relay_state)
            .await;
        assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
        assert!(env.home(client).await.contains("Benvenuto"));
    }
    // Control: before the restore a replay is refused as an unknown request.
    let (_, answer) = &logins[0];
    let r = env
        .post_acs(&env.client(), &answer.saml_response, &answer.relay_state)
        .await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("SAML_UNKNOWN_REQUEST"));

    // Redis dies and comes back from the snapshot.
    tokio::task::block_in_place(|| server.restart());
    for (_, answer) in &logins {
        let key = format!("polis:req:{}", answer.in_response_to());
        // The consumed pending requests really are back (what made the replays pass).
        let exists = tokio::task::block_in_place(|| server.command(&["EXISTS", &key]));
        assert_eq!(exists.as_deref(), Some("1"), "{key} restored");
    }

    // Every replay is refused, from a fresh browser and from the original one: a 4xx
    // with a stable code, the «riprova l'accesso» page, no cookie, no session.
    for (original, answer) in &logins {
        for client in [env.client(), original.clone()] {
            let before = env.home(&client).await.contains("Benvenuto");
            let (status, body, cookie) = post_acs_after_restart(&env, &client, answer).await;
            assert_eq!(status, 403, "{body}");
            assert!(body.contains("POLIS_LOGIN_STALE"), "{body}");
            assert!(
                body.contains("Riprova l&#39;accesso") || body.contains("Riprova l'accesso"),
                "{body}"
            );
            assert!(!cookie, "no session cookie on a refused replay");
            // No session opened (the original browser keeps only what it had).
            assert_eq!(env.home(&client).await.contains("Benvenuto"), before);
        }
    }
    let fresh = env.client();
    let (_, answer) = &logins[1];
    let (status, _, _) = post_acs_after_restart(&env, &fresh, answer).await;
    assert_eq!(status, 403);
    assert!(!env.home(&fresh).await.contains("Benvenuto"));
    let stale = env
        .txlog_records()
        .into_iter()
        .filter(|r| r["error_code"] == "POLIS_LOGIN_STALE")
        .count();
    assert!(stale >= 2 * LOGINS, "refusals logged: {stale}");

    // A login started after the restore works.
    let fresh = env.client();
    let r = env.login(&fresh, MARIO).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    assert!(env.home(&fresh).await.contains("Benvenuto"));
}

/// The same restore met by a gateway process started after it (as a replica that never
/// saw the old Redis would be): the check needs no memory of what came before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_started_after_the_restore_refuses_the_replays_too() {
    let mut server = tokio::task::block_in_place(RedisServer::start);
    let store: Arc<dyn StateStore> =
        Arc::new(RedisStore::connect(&RedisConfig::standalone(server.url())).unwrap());
    let mut env = Env::start_with(
        store,
        EnvOptions {
            oidc: true,
            ..EnvOptions::default()
        },
    )
    .await;
    let client = env.client();
    let answer = env
        .idp_answer(&client, 2, "redirect", MARIO, "success")
        .await;
    let saved = tokio::task::block_in_place(|| server.command(&["SAVE"]));
    assert_eq!(saved.as_deref(), Some("OK"));
    let r = env
        .post_acs(&client, &answer.saml_response, &answer.relay_state)
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    tokio::task::block_in_place(|| server.restart());
    // A new gateway process on the same config and Redis.
    let keys = env.oidc().keys.clone();
    env.restart_gateway_with_keys(keys).await;
    let replayer = env.client();
    let (status, body, cookie) = post_acs_after_restart(&env, &replayer, &answer).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("POLIS_LOGIN_STALE"), "{body}");
    assert!(!cookie);
    assert!(!env.home(&replayer).await.contains("Benvenuto"));
    let fresh = env.client();
    let r = env.login(&fresh, MARIO).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
}

/// `check-config` with a Redis backend (a second `--config` file over the Env's).
fn check_config(env: &Env, redis: &RedisServer) -> String {
    let dir = tempfile::tempdir().unwrap();
    let extra = dir.path().join("state.toml");
    std::fs::write(
        &extra,
        format!(
            // Generous timeouts: a loaded test machine must not turn this into "cannot check".
            "[state]\nbackend = \"redis\"\n[state.redis]\nurls = [\"{}\"]\n\
             connect_timeout_ms = 10000\nresponse_timeout_ms = 10000\n",
            redis.url()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_polis-gateway"))
        .arg("check-config")
        .arg("-c")
        .arg(&env.config_path)
        .arg("-c")
        .arg(&extra)
        .output()
        .expect("run polis-gateway");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("configuration is valid"), "{stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_warns_about_snapshot_only_redis_persistence() {
    let env = Env::start(Arc::new(polis_gateway::state::MemoryStore::new())).await;
    let (snapshots, aof, none) = tokio::task::block_in_place(|| {
        (
            RedisServer::start_with(&["--save", "3600 1 300 100"]),
            RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "everysec"]),
            RedisServer::start(),
        )
    });
    let warned = tokio::task::block_in_place(|| check_config(&env, &snapshots));
    assert!(
        warned.contains("warning:") && warned.contains("RDB snapshots only"),
        "{warned}"
    );
    for fine in [&aof, &none] {
        let said = tokio::task::block_in_place(|| check_config(&env, fine));
        assert!(!said.contains("warning:"), "{said}");
        assert!(said.contains("Redis persistence: supported"), "{said}");
    }
}
