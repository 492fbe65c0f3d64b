//! The scenarios: `acs` (the ACS alone, Responses pre-signed for pending requests),
//! `full` (a whole OIDC login: authorize → /login → ACS → /login/complete → resume →
//! token), `memory` (what a pending request costs the store) and `overload` (in-flight
//! logins while new ones arrive at twice the saturation rate).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use serde_json::{Value, json};

use crate::client::{
    self, Answer, Jar, Pending, absolute, acs_accepted, acs_body, post_acs, send, snippet,
};
use crate::services::Redis;
use crate::setup::{BenchIdp, CLIENT_ID, Person, REDIRECT_URI};
use crate::stats::{Meter, Outcome, Row, closed_loop, histogram, latency, statuses};

/// A gateway being driven.
pub struct Target {
    pub backend: String,
    pub gw: String,
    pub sp_entity_id: String,
    pub acs_url: String,
    pub idp: Arc<BenchIdp>,
    pub client: reqwest::Client,
    pub meter: Meter,
    /// The outbox (the abilitazione reads the temporary CP there); `None` for a
    /// gateway the driver did not start.
    pub outbox: Option<PathBuf>,
    pub client_secret: Option<String>,
    /// The gateway's `/metrics` on its own listener, when the driver gave it one.
    pub metrics_url: Option<String>,
}

/// Runs `f(i)` for i in 0..n with `c` tasks; results in no particular order.
pub async fn run_collect<R, F, Fut>(n: usize, c: usize, f: F) -> Vec<R>
where
    R: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let f = Arc::new(f);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..c.max(1) {
        let (next, f) = (next.clone(), f.clone());
        set.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                out.push(f(i).await);
            }
            out
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(Ok(v)) = set.join_next().await {
        all.extend(v);
    }
    all
}

/// `n` pending logins (16 at a time); fails on the first refused one.
async fn create_pendings(t: &Arc<Target>, n: usize) -> anyhow::Result<Vec<Pending>> {
    let t2 = t.clone();
    let got = run_collect(n, 16, move |_| {
        let t = t2.clone();
        async move { client::start_login(&t.client, &t.gw, &t.idp.entity_id).await }
    })
    .await;
    got.into_iter().collect()
}

/// A POST /acs ready to send.
#[derive(Clone)]
pub struct AcsItem {
    body: Arc<String>,
    jar: Jar,
}

/// `n` pendings, each with its signed Response (persons from `pool`, in turn).
async fn prepare_acs(t: &Arc<Target>, n: usize, pool: usize) -> anyhow::Result<Vec<AcsItem>> {
    let pendings = create_pendings(t, n).await?;
    let mut items = Vec::with_capacity(n);
    for (i, p) in pendings.into_iter().enumerate() {
        let person = Person::new(i % pool.max(1));
        let xml = t
            .idp
            .response(&t.sp_entity_id, &t.acs_url, &p.request_id, &person)?;
        items.push(AcsItem {
            body: Arc::new(acs_body(&xml, &p.relay_state)),
            jar: p.jar,
        });
    }
    Ok(items)
}

async fn acs_once(t: Arc<Target>, item: AcsItem) -> Outcome {
    let mut jar = item.jar;
    let start = Instant::now();
    let r = post_acs(&t.client, &t.gw, (*item.body).clone(), &mut jar).await;
    let latency = start.elapsed();
    match r {
        Ok(a) if acs_accepted(&a) => Outcome {
            ok: true,
            status: a.status,
            latency,
            detail: None,
        },
        Ok(a) => Outcome::failed(
            latency,
            a.status,
            format!(
                "{}{} {:?}: {}",
                if a.retry_after { "retry-after: " } else { "" },
                a.status,
                a.location,
                snippet(&a.body)
            ),
        ),
        Err(e) => Outcome::failed(latency, 0, format!("{e:#}")),
    }
}

/// Scenario `acs`: accounts of the pool are created by an unmeasured warm-up, then one
/// measured run per concurrency.
pub async fn acs(
    t: &Arc<Target>,
    concurrency: &[usize],
    n_for: impl Fn(usize) -> usize,
    pool: usize,
) -> anyhow::Result<Vec<Row>> {
    let warm = prepare_acs(t, pool, pool).await?;
    let (out, _) = closed_loop(warm, 4, {
        let t = t.clone();
        move |i| acs_once(t.clone(), i)
    })
    .await;
    if let Some(bad) = out.iter().find(|o| !o.ok) {
        bail!("ACS warm-up refused: {:?}", bad.detail);
    }
    let mut rows = Vec::new();
    for &c in concurrency {
        let n = n_for(c);
        eprintln!(
            "[{}] acs c={c}: preparing {n} pending requests + Responses",
            t.backend
        );
        let items = prepare_acs(t, n, pool).await?;
        let tt = t.clone();
        rows.push(measured(t, "acs", c, items, move |i| acs_once(tt.clone(), i)).await);
    }
    Ok(rows)
}

/// One measured closed-loop run of `f` over `items` at concurrency `c`, with the CPU
/// meters read before and after; its progress line printed.
async fn measured<T, F, Fut>(
    t: &Arc<Target>,
    scenario: &'static str,
    c: usize,
    items: Vec<T>,
    f: F,
) -> Row
where
    T: Send + Sync + Clone + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    // A line to attach a profiler on (`perf record -p <gateway pid>`).
    eprintln!("[{}] {scenario} c={c}: measuring", t.backend);
    let before = t.meter.snapshot();
    let (outcomes, wall) = closed_loop(items, c, f).await;
    let after = t.meter.snapshot();
    let row = Row {
        backend: t.backend.clone(),
        scenario,
        concurrency: c,
        outcomes,
        wall,
        before,
        after,
    };
    report_progress(&row);
    row
}

fn report_progress(row: &Row) {
    let l = latency(&row.outcomes);
    eprintln!(
        "[{}] {} c={}: {} ok, {} refused, {:.1}/s, p99 {:.2} ms",
        row.backend,
        row.scenario,
        row.concurrency,
        row.accepted(),
        row.rejections(),
        row.accepted() as f64 / row.wall.as_secs_f64().max(1e-9),
        l.p99
    );
    for d in row
        .outcomes
        .iter()
        .filter_map(|o| o.detail.as_ref())
        .take(3)
    {
        eprintln!("    refused: {d}");
    }
}

const CP: &str = "BenchCp2026x";

/// The abilitazione of `person` through HTTP, as `enable_account_at` in the
/// integration tests does (the temporary CP from the outbox).
pub async fn enable(t: &Target, person: &Person) -> anyhow::Result<()> {
    let outbox = t
        .outbox
        .as_ref()
        .context("the abilitazione needs the gateway's outbox (a gateway the driver started)")?;
    let (c, gw) = (&t.client, t.gw.as_str());
    let p = client::start_login(c, gw, &t.idp.entity_id).await?;
    let xml = t
        .idp
        .response(&t.sp_entity_id, &t.acs_url, &p.request_id, person)?;
    let mut jar = p.jar;
    let a = post_acs(c, gw, acs_body(&xml, &p.relay_state), &mut jar).await?;
    if !acs_accepted(&a) {
        bail!("ACS: {} {}", a.status, snippet(&a.body));
    }
    let a = send(c.get(absolute(gw, &a.location)), &mut jar).await?;
    let to = a.location.split('?').next().unwrap_or_default();
    if a.status == 303 && to == "/" {
        return Ok(()); // already enabled
    }
    if a.status != 303 || to != "/abilitazione" {
        bail!("first login: {} {:?}", a.status, a.location);
    }
    let email = person.email();
    let fields = [
        ("email", email.as_str()),
        ("mobile", "+39 333 7654321"),
        ("landline", ""),
        ("street", "Via dei Mille 5"),
        ("postal_code", "20124"),
        ("municipality", "Milano"),
        ("province", "MI"),
        ("nation", "Italia"),
        ("doc_kind", "Carta d'identità"),
        ("doc_number", "CA98765ZZ"),
        ("doc_issuer", "Comune di Milano"),
        ("doc_issued_on", "2021-03-15"),
        ("doc_expires_on", "2099-03-15"),
    ];
    let step = |path: &'static str, to: &'static str| (path, to);
    let (path, to) = step("/abilitazione/richiesta", "/abilitazione/domanda");
    client::post_form(c, gw, &mut jar, path, &fields, to).await?;
    let answer = "Dell'Orto";
    client::post_form(
        c,
        gw,
        &mut jar,
        "/abilitazione/domanda",
        &[
            ("question", "Cognome da nubile della madre"),
            ("answer", answer),
            ("answer_repeat", answer),
        ],
        "/abilitazione/riepilogo",
    )
    .await?;
    let (path, to) = step("/abilitazione/riepilogo", "/abilitazione/adesione");
    client::post_form(c, gw, &mut jar, path, &[], to).await?;
    let (path, to) = step("/abilitazione/adesione", "/abilitazione/inviata");
    client::post_form(c, gw, &mut jar, path, &[], to).await?;
    let start = Instant::now();
    let temp = loop {
        if let Some(cp) = client::temp_cp_from_outbox(outbox, &email)? {
            break cp;
        }
        if start.elapsed() > Duration::from_secs(15) {
            bail!("no temporary CP mailed to {email} in {}", outbox.display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    client::post_form(
        c,
        gw,
        &mut jar,
        "/abilitazione/cambio-cp",
        &[("temp_cp", &temp), ("new_cp", CP), ("new_cp_repeat", CP)],
        "",
    )
    .await?;
    Ok(())
}

/// A PKCE pair: `(verifier, S256 challenge)`.
fn pkce() -> (String, String) {
    let verifier = polis_gateway::saml::ids::new_token(48);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(openssl::sha::sha256(verifier.as_bytes()));
    (verifier, challenge)
}

fn is_redirect(a: &Answer) -> bool {
    matches!(a.status, 302 | 303) && !a.location.is_empty()
}

/// One whole login through OIDC, up to the token; the error says where it stopped.
async fn full_login(t: &Target, person: Person) -> anyhow::Result<()> {
    let (c, gw) = (&t.client, t.gw.as_str());
    let secret = t
        .client_secret
        .as_deref()
        .context("no OIDC client secret")?;
    let (verifier, challenge) = pkce();
    let nonce = polis_gateway::saml::ids::new_token(12);
    let q = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", REDIRECT_URI),
        ("scope", "openid profile email istanze"),
        ("state", "bench"),
        ("nonce", &nonce),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ])?;
    let mut jar = Jar::default();
    let mut a = send(c.get(format!("{gw}/oidc/authorize?{q}")), &mut jar).await?;
    // authorize → /oidc/authorize/resume?id=… → /login?level=2&next=…
    for _ in 0..5 {
        if !is_redirect(&a) || !a.location.starts_with("/oidc/authorize") {
            break;
        }
        a = send(c.get(absolute(gw, &a.location)), &mut jar).await?;
    }
    if !is_redirect(&a) || !a.location.starts_with("/login") {
        bail!(
            "authorize: {} {:?} {}",
            a.status,
            a.location,
            snippet(&a.body)
        );
    }
    let login = format!(
        "{}&idp={}",
        absolute(gw, &a.location),
        polis_gateway::saml::binding::encode_component(&t.idp.entity_id)
    );
    let a = send(c.get(login), &mut jar).await?;
    let p = client::pending_from(&a, jar)?;
    let idp = t.idp.clone();
    let (sp, acs, id) = (t.sp_entity_id.clone(), t.acs_url.clone(), p.request_id);
    let xml = tokio::task::spawn_blocking(move || idp.response(&sp, &acs, &id, &person)).await??;
    let mut jar = p.jar;
    let a = post_acs(c, gw, acs_body(&xml, &p.relay_state), &mut jar).await?;
    if !acs_accepted(&a) {
        bail!("ACS: {} {:?} {}", a.status, a.location, snippet(&a.body));
    }
    let mut location = a.location;
    for _ in 0..10 {
        if location.starts_with(REDIRECT_URI) {
            break;
        }
        let a = send(c.get(absolute(gw, &location)), &mut jar).await?;
        if !is_redirect(&a) {
            bail!("GET {location}: {} {}", a.status, snippet(&a.body));
        }
        location = a.location;
    }
    let url = url::Url::parse(&location).with_context(|| format!("redirect {location:?}"))?;
    let code = url
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .with_context(|| format!("no code in {location}"))?;
    let resp = c
        .post(format!("{gw}/oidc/token"))
        .basic_auth(CLIENT_ID, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &verifier),
        ])
        .send()
        .await?;
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if status != 200 || json.get("access_token").and_then(Value::as_str).is_none() {
        bail!("token: {status} {}", snippet(&body));
    }
    Ok(())
}

async fn full_once(t: Arc<Target>, person: Person) -> Outcome {
    let start = Instant::now();
    match full_login(&t, person).await {
        Ok(()) => Outcome {
            ok: true,
            status: 200,
            latency: start.elapsed(),
            detail: None,
        },
        Err(e) => Outcome::failed(start.elapsed(), 0, format!("{e:#}")),
    }
}

/// Scenario `full`: `pool` persons enabled first (unmeasured), then one measured run
/// per concurrency.
pub async fn full(
    t: &Arc<Target>,
    concurrency: &[usize],
    n_for: impl Fn(usize) -> usize,
    pool: usize,
) -> anyhow::Result<Vec<Row>> {
    eprintln!("[{}] full: enabling {pool} accounts", t.backend);
    for i in 0..pool {
        enable(t, &Person::new(i))
            .await
            .with_context(|| format!("abilitazione of person {i}"))?;
    }
    let mut rows = Vec::new();
    for &c in concurrency {
        let n = n_for(c);
        let persons: Vec<Person> = (0..n).map(|i| Person::new(i % pool)).collect();
        let tt = t.clone();
        rows.push(measured(t, "full", c, persons, move |p| full_once(tt.clone(), p)).await);
    }
    Ok(rows)
}

/// Scenario `memory`: the gateway's VmRSS (memory backend) or Redis `used_memory`
/// before and after `n` new pending requests (64 at a time, never consumed).
pub async fn memory(
    t: &Arc<Target>,
    gateway_pid: Option<u32>,
    redis: Option<&Redis>,
    n: usize,
) -> anyhow::Result<Value> {
    let rss = || gateway_pid.and_then(crate::services::rss_kib);
    let used = || redis.and_then(|r| r.used_memory().ok());
    let (rss0, used0) = (rss(), used());
    let start = Instant::now();
    let t2 = t.clone();
    let answers = run_collect(n, 64, move |_| {
        let t = t2.clone();
        async move {
            let mut jar = Jar::default();
            let url = client::login_url(&t.gw, &t.idp.entity_id);
            match send(t.client.get(url), &mut jar).await {
                Ok(a) if a.status == 302 => (a.status, a.retry_after, None),
                Ok(a) => (
                    a.status,
                    a.retry_after,
                    Some(format!("{}: {}", a.status, snippet(&a.body))),
                ),
                Err(e) => (0, false, Some(format!("{e:#}"))),
            }
        }
    })
    .await;
    let wall = start.elapsed();
    let (rss1, used1) = (rss(), used());
    let ok = answers.iter().filter(|(s, _, _)| *s == 302).count();
    let mut by_status = std::collections::BTreeMap::new();
    for (s, _, _) in &answers {
        *by_status.entry(s.to_string()).or_insert(0usize) += 1;
    }
    let per = |a: Option<u64>, b: Option<u64>| {
        a.zip(b)
            .filter(|_| ok > 0)
            .map(|(a, b)| (b as f64 - a as f64) / ok as f64)
    };
    let v = json!({
        "backend": t.backend,
        "requested": n,
        "created": ok,
        "statuses": by_status,
        "with_retry_after": answers.iter().filter(|(_, r, _)| *r).count(),
        "first_refusals": answers.iter().filter_map(|(_, _, d)| d.clone()).take(5).collect::<Vec<_>>(),
        "wall_s": wall.as_secs_f64(),
        "logins_per_s": ok as f64 / wall.as_secs_f64().max(1e-9),
        "gateway_rss_kib": {"before": rss0, "after": rss1},
        "kib_per_pending": per(rss0, rss1),
        "redis_used_memory": {"before": used0, "after": used1},
        "redis_bytes_per_pending": per(used0, used1),
    });
    eprintln!("[{}] memory: {v}", t.backend);
    Ok(v)
}

/// Scenario `overload`: for `seconds`, POST /acs of pre-created pendings at `rate`/s
/// (the in-flight logins) while new logins (GET /login) arrive at 2×`rate`/s, both
/// open-loop.
/// `GET /metrics` (its own listener, or under the base URL of a remote gateway) if the
/// gateway answers 200 there.
pub async fn scrape_metrics(t: &Target) -> Option<String> {
    let url = t
        .metrics_url
        .clone()
        .unwrap_or_else(|| format!("{}/metrics", t.gw));
    let r = t.client.get(url).send().await.ok()?;
    if r.status() != 200 {
        return None;
    }
    r.text().await.ok()
}

/// The gateway's own ACS time (`polis_acs_duration_seconds`, accepted Responses)
/// between two scrapes: its count and the upper bounds of the buckets holding the
/// p50 and p99 (the driver's latencies also hold its own queueing when it is busy).
fn server_acs(before: Option<&str>, after: Option<&str>) -> Value {
    const METRIC: &str = "polis_acs_duration_seconds_bucket";
    const LABEL: &str = "outcome=\"accepted\"";
    match (before, after) {
        (Some(b), Some(a)) => {
            let d = histogram::diff(
                &histogram::buckets(b, METRIC, LABEL),
                &histogram::buckets(a, METRIC, LABEL),
            );
            json!({
                "count": histogram::total(&d),
                "p50_le_ms": histogram::quantile_bound(&d, 0.50).map(|s| s * 1000.0),
                "p99_le_ms": histogram::quantile_bound(&d, 0.99).map(|s| s * 1000.0),
            })
        }
        _ => Value::Null,
    }
}

pub async fn overload(
    t: &Arc<Target>,
    rate: f64,
    seconds: f64,
    then_acs: bool,
) -> anyhow::Result<Value> {
    let rate = rate.max(1.0);
    let n_inflight = (rate * seconds).ceil() as usize + 1;
    eprintln!(
        "[{}] overload: R = {rate:.1}/s, preparing {n_inflight} in-flight logins",
        t.backend
    );
    let items = prepare_acs(t, n_inflight, 64).await?;
    let scrape_before = scrape_metrics(t).await;
    let before = t.meter.snapshot();
    let start = Instant::now();
    let inflight = tokio::spawn(open_loop(items, rate, seconds, {
        let t = t.clone();
        move |item| acs_once(t.clone(), item)
    }));
    let newcomer_acs = Arc::new(std::sync::Mutex::new(Vec::new()));
    let fresh: Vec<usize> = (0..(2.0 * rate * seconds).ceil() as usize).collect();
    let newcomers = tokio::spawn(open_loop(fresh, 2.0 * rate, seconds, {
        let t = t.clone();
        let acs_out = newcomer_acs.clone();
        move |_| new_login(t.clone(), then_acs, acs_out.clone())
    }));
    let inflight = inflight.await?;
    let newcomers = newcomers.await?;
    let wall = start.elapsed();
    let after = t.meter.snapshot();
    let scrape_after = scrape_metrics(t).await;
    let row = Row {
        backend: t.backend.clone(),
        scenario: "overload",
        concurrency: 0,
        outcomes: inflight.clone(),
        wall,
        before,
        after,
    };
    let l = latency(&inflight);
    let five = |o: &&Outcome| o.status >= 500;
    let inflight_5xx = inflight.iter().filter(five).count();
    let shed = |o: &&Outcome| {
        matches!(o.status, 503 | 429)
            && o.detail
                .as_deref()
                .is_some_and(|d| d.starts_with("retry-after"))
    };
    let new_shed = newcomers.iter().filter(shed).count();
    let new_5xx_bad = newcomers
        .iter()
        .filter(|o| o.status >= 500 && !shed(o))
        .count();
    let nl = latency(&newcomers);
    let newcomer_acs: Vec<Outcome> = newcomer_acs.lock().map(|v| v.clone()).unwrap_or_default();
    let na = latency(&newcomer_acs);
    let newcomer_acs_5xx = newcomer_acs.iter().filter(five).count();
    let row_json = row.json();
    let server_cpu_s = row_json.get("server_cpu_s").and_then(Value::as_f64);
    let driver_cpu_s = row_json.get("driver_cpu_s").and_then(Value::as_f64);
    let per_wall = |c: Option<f64>| c.map(|c| c / wall.as_secs_f64().max(1e-9));
    let v = json!({
        "backend": t.backend,
        "rate_per_s": rate,
        "seconds": seconds,
        "inflight": {
            "sent": inflight.len(),
            "accepted": inflight.iter().filter(|o| o.ok).count(),
            "statuses": statuses(&inflight),
            "latency_ms": {"p50": l.p50, "p99": l.p99, "max": l.max},
            "5xx": inflight_5xx,
            "with_retry_after": inflight.iter().filter(shed).count(),
            "target": n_inflight - 1,
            "issued_per_s": inflight.len() as f64 / seconds,
            "first_rejections": inflight.iter().filter_map(|o| o.detail.clone()).take(5).collect::<Vec<_>>(),
        },
        "new_logins": {
            "sent": newcomers.len(),
            "statuses": statuses(&newcomers),
            "shed_with_retry_after": new_shed,
            "target": (2.0 * rate * seconds).ceil() as usize,
            "issued_per_s": newcomers.len() as f64 / seconds,
            "5xx_without_retry_after": new_5xx_bad,
            "latency_ms": {"p50": nl.p50, "p99": nl.p99, "max": nl.max},
            "then_acs": then_acs,
            "acs": {
                "sent": newcomer_acs.len(),
                "accepted": newcomer_acs.iter().filter(|o| o.ok).count(),
                "statuses": statuses(&newcomer_acs),
                "latency_ms": {"p50": na.p50, "p99": na.p99, "max": na.max},
                "5xx": newcomer_acs_5xx,
                "with_retry_after": newcomer_acs.iter().filter(shed).count(),
            },
        },
        "errors_5xx": inflight_5xx + new_5xx_bad + newcomer_acs_5xx,
        "server_cpu_s": server_cpu_s,
        "server_cpu_utilisation": per_wall(server_cpu_s),
        "driver_cpu_s": driver_cpu_s,
        "driver_cpu_utilisation": per_wall(driver_cpu_s),
        "server_acs": server_acs(scrape_before.as_deref(), scrape_after.as_deref()),
        "wall_s": wall.as_secs_f64(),
    });
    Ok(v)
}

/// A new login: `GET /login`; with `then_acs`, once admitted (302) the person comes back
/// with a Response signed now (its outcome goes to `acs_out`).
async fn new_login(
    t: Arc<Target>,
    then_acs: bool,
    acs_out: Arc<std::sync::Mutex<Vec<Outcome>>>,
) -> Outcome {
    let mut jar = Jar::default();
    let start = Instant::now();
    let url = client::login_url(&t.gw, &t.idp.entity_id);
    let a = match send(t.client.get(url), &mut jar).await {
        Ok(a) => a,
        Err(e) => return Outcome::failed(start.elapsed(), 0, format!("{e:#}")),
    };
    let login = Outcome {
        ok: a.status == 302,
        status: a.status,
        latency: start.elapsed(),
        detail: a.retry_after.then(|| "retry-after".to_owned()),
    };
    if then_acs && login.ok {
        let acs = match client::pending_from(&a, jar) {
            Ok(p) => {
                let idp = t.idp.clone();
                let (sp, url, id) = (t.sp_entity_id.clone(), t.acs_url.clone(), p.request_id);
                let person = Person::new(rand::random::<u32>() as usize % 64);
                let signed =
                    tokio::task::spawn_blocking(move || idp.response(&sp, &url, &id, &person))
                        .await;
                match signed {
                    Ok(Ok(xml)) => {
                        let item = AcsItem {
                            body: Arc::new(acs_body(&xml, &p.relay_state)),
                            jar: p.jar,
                        };
                        acs_once(t.clone(), item).await
                    }
                    Ok(Err(e)) => Outcome::failed(Duration::ZERO, 0, format!("sign: {e:#}")),
                    Err(e) => Outcome::failed(Duration::ZERO, 0, format!("sign: {e}")),
                }
            }
            Err(e) => Outcome::failed(Duration::ZERO, 0, format!("{e:#}")),
        };
        if let Ok(mut v) = acs_out.lock() {
            v.push(acs);
        }
    }
    login
}

/// Issues `f(item)` at `rate`/s for at most `seconds` (or until items run out), never
/// waiting for answers before the next; then waits for every answer.
async fn open_loop<T, F, Fut>(items: Vec<T>, rate: f64, seconds: f64, f: F) -> Vec<Outcome>
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for item in items {
        tick.tick().await;
        if start.elapsed().as_secs_f64() > seconds {
            break;
        }
        set.spawn(f(item));
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(o) => out.push(o),
            Err(e) => out.push(Outcome::failed(Duration::ZERO, 0, format!("task: {e}"))),
        }
    }
    out
}
