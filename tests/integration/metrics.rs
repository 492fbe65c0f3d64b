//! Operations: `GET /metrics` on its own listener (a login moves the counters, a refused
//! Response is counted with our error code, and the gauges of admission control, the
//! verification pool and the transaction log are exported), `/readyz`, JSON logs, the
//! `txlog` commands.

use std::sync::Arc;

use polis_gateway::state::MemoryStore;

use crate::support::gateway::{Env, EnvOptions};

const MARIO: &str = "RSSMRA80A01H501U";

/// The value of the sample `name{labels…}` (every pair must be among its labels), or
/// 0 when absent. The recorder is per process: tests compare before and after.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .sum()
}

/// The `polis_…` series names a PromQL expression reads.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("polis_") {
        let tail = rest.get(i..).unwrap_or_default();
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail.get(..end).unwrap_or_default().to_owned());
        rest = tail.get(end..).unwrap_or_default();
    }
    names
}

/// Every metric the shipped Grafana dashboard queries is in `scrape`.
fn assert_dashboard_metrics_exported(after: &str) {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/grafana/polis-gateway.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(exprs.len() >= 7, "{exprs:?}");
    let exported: std::collections::BTreeSet<&str> = after
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for expr in &exprs {
        for name in metric_names(expr) {
            assert!(
                exported.contains(name.as_str()),
                "the dashboard queries {name}, which /metrics does not export ({expr})"
            );
        }
    }
}

/// How much `name{labels}` grew from `before` to `after`.
fn delta_of(before: &str, after: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(after, name, labels) - sample(before, name, labels)
}

/// Scrapes `url` until `holds` is true of the text (at most 10 s), and returns it.
async fn scrape_until(url: &str, what: &str, holds: impl Fn(&str) -> bool) -> String {
    let holds = &holds;
    crate::support::eventually(std::time::Duration::from_secs(10), what, || async move {
        let text = scrape(url).await;
        holds(&text).then_some(text)
    })
    .await
}

/// Whether the exposition has the exact line `line`.
fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

async fn scrape(url: &str) -> String {
    let r = reqwest::get(url).await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    r.text().await.unwrap()
}

#[tokio::test]
async fn logins_move_the_counters_and_the_pools_are_exported() {
    let env = Env::start_with_metrics(EnvOptions::default()).await;
    let url = env.metrics_url.clone().expect("[metrics] serves /metrics");
    let before = scrape(&url).await;
    let started = [
        ("idp", env.idp.as_str()),
        ("level", "2"),
        ("profile", "spid"),
    ];
    assert_eq!(sample(&before, "polis_logins_started_total", &started), 0.0);

    let c = env.client();
    let a = env.idp_answer(&c, 2, "redirect", MARIO, "success").await;
    let r = env.post_acs(&c, &a.saml_response, &a.relay_state).await;
    assert_eq!(r.status(), 303);
    // The same Response again: its request is spent.
    let again = env
        .post_acs(&env.client(), &a.saml_response, &a.relay_state)
        .await;
    assert_eq!(again.status(), 403);

    let after = scrape(&url).await;
    assert_eq!(
        sample(&after, "polis_logins_started_total", &started),
        1.0,
        "{after}"
    );
    let delta = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    let finished = [
        ("idp", env.idp.as_str()),
        ("level", "2"),
        ("profile", "spid"),
        ("outcome", "accepted"),
    ];
    assert_eq!(
        sample(&after, "polis_logins_finished_total", &finished),
        1.0,
        "the replay answered no stored request: not a finished login\n{after}"
    );
    assert!(
        sample(
            &after,
            "polis_login_duration_seconds_count",
            &[("profile", "spid")]
        ) >= 1.0
    );
    // Other tests of this process may count too: at least ours.
    assert!(delta("polis_acs_responses_total", &[("outcome", "accepted")]) >= 1.0);
    assert!(
        delta(
            "polis_acs_responses_total",
            &[("outcome", "rejected"), ("code", "SAML_UNKNOWN_REQUEST")]
        ) >= 1.0,
        "{after}"
    );
    assert!(
        delta(
            "polis_acs_duration_seconds_count",
            &[("outcome", "accepted")]
        ) >= 1.0
    );
    assert!(
        delta("polis_txlog_records_total", &[]) >= 2.0,
        "both consumes logged"
    );
    for gauge in [
        "polis_login_requests_in_flight",
        "polis_pending_requests",
        "polis_verify_pool_waiting",
        "polis_verify_pool_running",
        "polis_db_connections_max",
        "polis_admission_refused_total",
        "polis_txlog_syncs_total",
    ] {
        assert!(
            after.lines().any(|l| l.starts_with(gauge)),
            "{gauge} missing:\n{after}"
        );
    }
    // Days to expiry of the IdP's signing certificate and of ours.
    let idp_days = sample(
        &after,
        "polis_certificate_expiry_days",
        &[("kind", "idp"), ("name", env.idp.as_str())],
    );
    assert!(idp_days > 0.0, "{after}");
    assert!(
        sample(
            &after,
            "polis_certificate_expiry_days",
            &[("kind", "sp"), ("name", env.gw.as_str())]
        ) > 0.0,
        "{after}"
    );
    // The dependency probe: the state store, the database and the mail outbox answer.
    let probed = scrape_until(&url, "the dependencies probed", |text| {
        ["state", "database", "mail"].iter().all(|d| {
            has_line(
                text,
                &format!("polis_dependency_up{{dependency=\"{d}\"}} 1"),
            )
        })
    })
    .await;
    for d in ["state", "database", "mail"] {
        let count = sample(
            &probed,
            "polis_dependency_check_duration_seconds_count",
            &[("dependency", d)],
        );
        assert!(count >= 1.0, "{d}:\n{probed}");
    }
    // Nothing else on that listener.
    let other = reqwest::get(url.replace("/metrics", "/login"))
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}

/// `/readyz` asks the account database too: with its database gone the gateway is not
/// ready (503, a page), while `/healthz` (liveness) still answers 200, and the
/// dependency probe reports the database down.
#[tokio::test]
async fn readiness_needs_the_account_database() {
    let pg = crate::support::postgres::PostgresServer::shared();
    let url = pg.create_database("readyz_outage");
    let env = Env::start_with_metrics(EnvOptions {
        database: crate::support::gateway::Database::Postgres(url),
        ..Default::default()
    })
    .await;
    let metrics = env.metrics_url.clone().unwrap();
    let database_is = |up: u8| {
        let line = format!("polis_dependency_up{{dependency=\"database\"}} {up}");
        let metrics = metrics.clone();
        async move {
            scrape_until(&metrics, "the probe's view of the database", |text| {
                has_line(text, &line)
            })
            .await
        }
    };
    database_is(1).await;
    let c = env.client();
    let get = |path: &'static str| {
        let c = c.clone();
        let url = format!("{}{path}", env.gw);
        async move { c.get(url).send().await.unwrap() }
    };
    assert_eq!(get("/readyz").await.status(), 200);
    pg.drop_database("readyz_outage");
    let r = get("/readyz").await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some());
    let page = r.text().await.unwrap();
    assert!(page.contains("POLIS_ACCOUNTS_UNAVAILABLE"), "{page}");
    assert_eq!(get("/healthz").await.status(), 200, "still alive");
    database_is(0).await;
}

/// `[log] format = "json"` (here through the environment layer, `POLIS__LOG__FORMAT`):
/// every line of the application log is one JSON object; the default stays text.
#[tokio::test]
async fn the_log_is_json_lines_when_configured() {
    let env = Env::start(Arc::new(MemoryStore::new())).await;
    let run = |format: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_polis-gateway"));
        cmd.args(["migrate", "-c"])
            .arg(&env.config_path)
            .env("POLIS_LOG", "debug");
        if let Some(f) = format {
            cmd.env("POLIS__LOG__FORMAT", f);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    // The command's own messages (e.g. «database is up to date») are plain lines; every
    // log record is a JSON object.
    let json = run(Some("json"));
    let records: Vec<serde_json::Value> = json
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        !records.is_empty(),
        "migrate logs its queries at debug:\n{json}"
    );
    assert!(!json.lines().any(|l| l.contains(" DEBUG ")), "{json}");
    for v in &records {
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{v}");
        assert!(v["target"].is_string(), "{v}");
    }
    let text = run(None);
    assert!(text.lines().any(|l| l.contains(" DEBUG ")), "{text}");
    assert!(!text.lines().any(|l| l.starts_with('{')), "{text}");
}

/// `polis-gateway txlog export` prints the register's records of one person (by the
/// codice fiscale their Response names) or of a day range; `txlog prune` keeps the
/// last 24 months (nothing to delete here).
#[tokio::test]
async fn the_txlog_commands_export_one_person_and_prune_nothing_recent() {
    let env = Env::start(Arc::new(MemoryStore::new())).await;
    let c = env.client();
    let a = env.idp_answer(&c, 2, "redirect", MARIO, "success").await;
    assert_eq!(
        env.post_acs(&c, &a.saml_response, &a.relay_state)
            .await
            .status(),
        303
    );
    let export = |args: &[&str]| {
        let out = env.cli(&[&["txlog", "export"], args].concat());
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let mario = export(&["--fiscal-code", &MARIO.to_lowercase()]);
    let records: Vec<serde_json::Value> = mario
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 1, "{mario}");
    assert_eq!(records[0]["outcome"], "accepted");
    assert!(
        export(&["--fiscal-code", "VRDGPP80A01F205X"])
            .trim()
            .is_empty()
    );
    let today = chrono::Utc::now().date_naive().to_string();
    assert_eq!(export(&["--from", &today]).lines().count(), 1);
    assert!(export(&["--to", "2000-01-01"]).trim().is_empty());
    let prune = env.cli(&["txlog", "prune"]);
    assert!(prune.status.success(), "{prune:?}");
    assert!(prune.stdout.is_empty(), "nothing older than 24 months");
    assert!(
        String::from_utf8_lossy(&prune.stderr).contains("0 daily file(s)"),
        "{prune:?}"
    );
}

/// The abilitazione's steps, the temporary-CP mail, the OIDC tokens and revocations
/// and the argon2 pool are on `/metrics` too.
#[tokio::test]
async fn the_abilitazione_and_the_oidc_tokens_are_counted() {
    use crate::support::gateway::{Auth, pkce};
    let env = Env::start_with_metrics(EnvOptions {
        oidc: true,
        // A closed port: the delivery fails, and is counted as such.
        oidc_backchannel: Some("http://127.0.0.1:9/backchannel".into()),
        ..Default::default()
    })
    .await;
    let url = env.metrics_url.clone().unwrap();
    let before = scrape(&url).await;
    let browser = env.client();
    env.enable_account(&browser, MARIO, "Scuola2026x").await;
    let (verifier, challenge) = pkce();
    let params = env.authorize_params(&challenge);
    let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let code = env.oidc_authorize(&browser, MARIO, &pairs).await;
    let tokens = env.exchange(&code, &verifier).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let revoked = env
        .oidc_post("/oidc/revoke", &[("token", access.as_str())], &Auth::app())
        .await;
    assert_eq!(revoked.status, 200);
    // Mario, unused for 16 months, gets the inactivity notice.
    let account = env.account(MARIO).await.unwrap();
    let long_ago = polis_gateway::clock::Clock::now(&*env.clock) - chrono::Duration::days(490);
    env.accounts
        .touch_last_access(account.id, None, long_ago)
        .await
        .unwrap();
    let rule = polis_gateway::campaign::Rule::new(
        "metrics-test".into(),
        polis_gateway::campaign::Window::Months(15),
        &[30, 1],
    )
    .unwrap();
    let options = polis_gateway::campaign::RunOptions::default();
    let progress = env
        .campaign
        .run(&rule, &options, &mut |_| Ok(()), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(progress.notified, 1, "{progress:?}");
    let after = scrape(&url).await;
    let campaign = [("campaign", "metrics-test")];
    let notified = [("campaign", "metrics-test"), ("action", "notified")];
    assert_eq!(
        delta_of(&before, &after, "polis_campaign_accounts_total", &notified),
        1.0
    );
    assert!(delta_of(&before, &after, "polis_campaign_scanned_total", &campaign) >= 1.0);
    assert!(
        after
            .lines()
            .any(|l| l == "polis_campaign_running{campaign=\"metrics-test\"} 0"),
        "{after}"
    );
    assert!(
        sample(
            &after,
            "polis_campaign_last_finished_timestamp_seconds",
            &campaign
        ) > 0.0
    );
    let delta = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    for state in [
        "recovery_question",
        "review",
        "confirmed",
        "temp_cp_sent",
        "enabled",
    ] {
        assert!(
            delta("polis_enablement_steps_total", &[("state", state)]) >= 1.0,
            "{state}:\n{after}"
        );
    }
    assert!(
        delta(
            "polis_mail_total",
            &[("kind", "temp_cp"), ("outcome", "sent")]
        ) >= 1.0
    );
    assert!(
        delta(
            "polis_mail_send_duration_seconds_count",
            &[("outcome", "sent")]
        ) >= 1.0,
        "{after}"
    );
    assert!(
        delta(
            "polis_oidc_tokens_total",
            &[("grant", "authorization_code"), ("outcome", "issued")]
        ) >= 1.0,
        "{after}"
    );
    assert!(delta("polis_oidc_revocations_total", &[]) >= 1.0);
    for gauge in ["polis_argon2_pool_waiting", "polis_argon2_pool_running"] {
        assert!(
            after.lines().any(|l| l.starts_with(gauge)),
            "{gauge}:\n{after}"
        );
    }
    // «Esci»: the back-channel logout to the client (nobody listens there) is counted.
    let r = env.post_form(&browser, "/logout", &[]).await;
    assert!(r.status().is_redirection(), "{}", r.status());
    let counted = scrape_until(&url, "the back-channel logout counted", |text| {
        sample(
            text,
            "polis_backchannel_logout_total",
            &[("outcome", "failed")],
        ) >= 1.0
    })
    .await;
    // Every series the shipped dashboard queries is exported by now.
    assert_dashboard_metrics_exported(&counted);
}
