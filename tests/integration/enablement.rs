//! The SPID *abilitazione* (issue 3) end to end over real HTTP: the gateway and the
//! mock IdP on loopback ports, accounts in a real SQLite file or a real PostgreSQL
//! (`support::postgres`), mail through a real SMTP server (`support::smtp`) or the
//! outbox directory. Every step is a real browser-like request; every effect is read
//! back from the account store, the state store or the mailbox.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use chrono::Utc;
use polis_gateway::accounts::{
    Account, AccountError, EnablementState, FiscalCode, NewAccount, UniqueField,
};
use polis_gateway::clock::Clock as _;
use polis_gateway::enablement::terms::DEMO_VERSION;
use polis_gateway::mock_idp::{TEST_USERS, TestUser};
use polis_gateway::state::MemoryStore;

use crate::support::craft::Craft;
use crate::support::gateway::{
    Database, Env, EnvOptions, MAIL_FROM, csrf, form_page, input_value, pairs,
};
use crate::support::postgres::PostgresServer;
use crate::support::smtp::{ReceivedMail, SmtpServer};
use crate::support::{eventually, join_all};

const MARIO: &str = "RSSMRA80A01H501U";
const GIULIA: &str = "BNCGLI85M52F205H";
const LUCA: &str = "VRDLCU72T10L219N";
const SOFIA: &str = "ESPSFO90E41A662F";
const GIUSEPPE: &str = "FRRGPP68C15G273Z";

/// The subject of the temporary-CP message.
const CP_SUBJECT: &str = "Istanze OnLine – Codice Personale temporaneo";
/// The alphabet of temporary CPs.
const TEMP_CP_ALPHABET: &str = "ABCDEFGHJKMNPQRSTUVWXYZ23456789";
/// The default recovery question.
const QUESTION: &str = "Cognome da nubile della madre";
/// A recovery answer with an apostrophe and an accent.
const ANSWER: &str = "Dell'Orto Verdì";
/// A CP of the user's choice that follows every rule.
const NEW_CP: &str = "Scuola2026x";
/// Another one.
const NEW_CP_2: &str = "Lavagna77q";
/// And a third.
const NEW_CP_3: &str = "Quaderno31z";
/// `cp.temp_cp_ttl_seconds` of the harness's configuration.
const TEMP_CP_TTL_SECONDS: i64 = 259_200;

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// One PostgreSQL server for the whole test binary; a fresh database per test.
fn postgres_server() -> &'static PostgresServer {
    PostgresServer::shared()
}

fn postgres() -> Database {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    Database::Postgres(postgres_server().create_database(&format!("enablement_{n}")))
}

/// An [`Env`] plus, when the test wants one, the SMTP server its mail goes to.
struct Harness {
    env: Env,
    smtp: Option<SmtpServer>,
}

impl Harness {
    async fn start(database: Database, with_smtp: bool) -> Harness {
        let smtp = with_smtp.then(SmtpServer::start);
        let env = Env::start_with(
            std::sync::Arc::new(MemoryStore::new()),
            EnvOptions {
                database,
                smtp_port: smtp.as_ref().map(SmtpServer::port),
                ..EnvOptions::default()
            },
        )
        .await;
        Harness { env, smtp }
    }

    /// Every message sent so far, oldest first (SMTP server or outbox).
    fn mails(&self) -> Vec<ReceivedMail> {
        match &self.smtp {
            Some(server) => server.messages(),
            None => self.env.outbox_messages(),
        }
    }

    /// Waits until `n` messages have arrived, and asserts that there are no more.
    async fn wait_for_mails(&self, n: usize) -> Vec<ReceivedMail> {
        let mails = eventually(Duration::from_secs(10), &format!("{n} message(s)"), || {
            let mails = self.mails();
            std::future::ready((mails.len() >= n).then_some(mails))
        })
        .await;
        assert_eq!(mails.len(), n, "exactly {n} message(s): {mails:#?}");
        mails
    }
}

fn test_user(fiscal_code: &str) -> &'static TestUser {
    TEST_USERS
        .iter()
        .find(|u| u.fiscal_code == fiscal_code)
        .unwrap()
}

fn cf(code: &str) -> FiscalCode {
    FiscalCode::parse(code).unwrap()
}

/// The `Location` of a response.
fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// «Esci»: the local session is closed and the browser goes to the IdP with a signed
/// LogoutRequest (Redirect); the mock IdP answers Success to `/slo`, which shows the
/// logged-out page.
async fn expect_spid_logout(env: &Env, c: &reqwest::Client, r: reqwest::Response) {
    assert_eq!(r.status().as_u16(), 302, "logout goes to the IdP");
    let to_idp = location(&r);
    assert!(
        to_idp.starts_with(&format!("{}/slo?SAMLRequest=", env.idp)),
        "{to_idp}"
    );
    assert!(to_idp.contains("&Signature="), "{to_idp}");
    let r = c.get(&to_idp).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 302, "mock IdP answers by Redirect");
    let back = location(&r);
    assert!(
        back.starts_with(&format!("{}/slo?SAMLResponse=", env.gw)),
        "{back}"
    );
    let r = c.get(&back).send().await.unwrap();
    assert_eq!(
        r.status().as_u16(),
        303,
        "the logged-out page has its own address"
    );
    assert_eq!(location(&r), "/uscito");
    // The page can be reloaded (the LogoutResponse URL cannot).
    for _ in 0..2 {
        let (status, page) = env.get(c, "/uscito").await;
        assert_eq!(status, 200);
        assert!(page.contains("Sei uscito"), "{page}");
    }
    // The LogoutResponse is consumed: a replay is refused.
    let again = c.get(&back).send().await.unwrap();
    assert_eq!(again.status().as_u16(), 403);
}

/// Asserts a 303 to the page `to`. A query string after the path (the product adds
/// one for a notice, e.g. `/area-riservata?salvato=1`) is allowed; the path is exact.
async fn expect_redirect(r: reqwest::Response, to: &str, what: &str) {
    let status = r.status().as_u16();
    let loc = location(&r);
    let body = r.text().await.unwrap();
    let path = loc.split_once('?').map_or(loc.as_str(), |(path, _)| path);
    assert_eq!(
        (status, path),
        (303, to),
        "{what}: expected 303 to {to}, got Location {loc:?}; body:\n{body}"
    );
}

/// Asserts `status` with the stable `code` in the page; returns the page. For 422 the
/// code must be the form's `data-code`.
async fn expect_error(r: reqwest::Response, status: u16, code: &str, what: &str) -> String {
    let got = r.status().as_u16();
    let body = r.text().await.unwrap();
    assert_eq!(
        got, status,
        "{what}: expected {status} {code}; body:\n{body}"
    );
    if status == 422 {
        assert!(
            body.contains(&format!("data-code=\"{code}\"")),
            "{what}: data-code=\"{code}\" missing:\n{body}"
        );
    } else {
        assert!(body.contains(code), "{what}: {code} missing:\n{body}");
    }
    body
}

/// GETs `path` and asserts a 303 to `to`.
async fn expect_get_redirect(env: &Env, c: &reqwest::Client, path: &str, to: &str) {
    let r = c.get(format!("{}{path}", env.gw)).send().await.unwrap();
    expect_redirect(r, to, &format!("GET {path}")).await;
}

/// GETs `path` and asserts 200; returns the page.
async fn page(env: &Env, c: &reqwest::Client, path: &str) -> String {
    let (status, html) = env.get(c, path).await;
    assert_eq!(status, 200, "GET {path}:\n{html}");
    html
}

/// A valid enablement request for `email`.
fn request_fields(email: &str) -> Vec<(&'static str, String)> {
    [
        ("email", email),
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
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect()
}

/// Collapses whitespace, so words split across text runs or lines still match.
fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses a PDF with lopdf (one page) and returns its text, whitespace collapsed.
fn pdf_text(bytes: &[u8], what: &str) -> String {
    assert!(bytes.starts_with(b"%PDF-"), "{what} is not a PDF");
    let doc = lopdf::Document::load_mem(bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    assert_eq!(pages.len(), 1, "{what}: one page");
    squash(
        &doc.extract_text(&pages)
            .unwrap_or_else(|e| panic!("{what}: {e}")),
    )
}

/// The PDF's text holds the person's names and codice fiscale.
fn assert_pdf_names(bytes: &[u8], what: &str, user: &TestUser) {
    let text = pdf_text(bytes, what);
    for needle in [user.name, user.family_name, user.fiscal_code] {
        assert!(
            text.contains(needle),
            "{what}: {needle:?} missing from:\n{text}"
        );
    }
}

/// Checks a temporary-CP message to `email` for `user` and returns the CP.
fn temp_cp_of(mail: &ReceivedMail, email: &str, user: &TestUser) -> String {
    assert_eq!(mail.to, vec![email.to_owned()], "To: {mail:#?}");
    if !mail.rcpt_tos.is_empty() {
        // Over SMTP: the envelope too.
        assert_eq!(mail.rcpt_tos, vec![email.to_owned()]);
        assert_eq!(mail.mail_from, MAIL_FROM);
    }
    assert_eq!(mail.subject, CP_SUBJECT);
    let text = mail.text.as_deref().expect("a text/plain body");
    let cp = text
        .lines()
        .find_map(|line| {
            line.trim_end()
                .strip_prefix("Codice Personale temporaneo: ")
        })
        .unwrap_or_else(|| panic!("no `Codice Personale temporaneo: ` line in:\n{text}"))
        .trim()
        .to_owned();
    assert_eq!(cp.chars().count(), 12, "{cp:?}");
    assert!(
        cp.chars().all(|c| TEMP_CP_ALPHABET.contains(c)),
        "{cp:?} uses the unambiguous alphabet"
    );
    let names: Vec<&str> = mail
        .attachments
        .iter()
        .map(|a| a.filename.as_str())
        .collect();
    assert_eq!(
        names,
        ["modulo-adesione.pdf"],
        "no modulo di delega: nobody has to go to a school"
    );
    for a in &mail.attachments {
        assert_eq!(a.content_type, "application/pdf", "{}", a.filename);
        assert_pdf_names(&a.bytes, &a.filename, user);
    }
    cp
}

/// A temporary CP that is not `cp` (same alphabet and length).
fn wrong_cp(cp: &str) -> String {
    let wrong = "ABCDEFGHJKMN";
    if cp == wrong {
        "NMKJHGFEDCBA".to_owned()
    } else {
        wrong.to_owned()
    }
}

/// Posts the mandatory change of the temporary CP.
async fn change_temp_cp(
    env: &Env,
    c: &reqwest::Client,
    temp_cp: &str,
    new_cp: &str,
) -> reqwest::Response {
    env.post_form(
        c,
        "/abilitazione/cambio-cp",
        &[
            ("temp_cp", temp_cp),
            ("new_cp", new_cp),
            ("new_cp_repeat", new_cp),
        ],
    )
    .await
}

/// First login of a new person: the ACS sends them to the enablement.
async fn first_login(env: &Env, c: &reqwest::Client, user: &str) {
    let r = env.login(c, user).await;
    assert!(r.headers().get("set-cookie").is_some(), "a session opens");
    expect_redirect(r, "/abilitazione", "first login").await;
}

/// Steps 1–3 (request, recovery question, review and «Conferma»), from a live session.
async fn fill_in_and_confirm(env: &Env, c: &reqwest::Client, email: &str, answer: &str) {
    let fields = request_fields(email);
    let r = env
        .post_form(c, "/abilitazione/richiesta", &pairs(&fields))
        .await;
    expect_redirect(r, "/abilitazione/domanda", "richiesta").await;
    let r = env
        .post_form(
            c,
            "/abilitazione/domanda",
            &[
                ("question", QUESTION),
                ("answer", answer),
                ("answer_repeat", answer),
            ],
        )
        .await;
    expect_redirect(r, "/abilitazione/riepilogo", "domanda").await;
    let r = env.post_form(c, "/abilitazione/riepilogo", &[]).await;
    expect_redirect(r, "/abilitazione/adesione", "riepilogo").await;
}

/// A new person logs in and goes as far as «Accetto»; returns the temporary CP of the
/// message that arrived.
async fn until_temp_cp_sent(
    h: &Harness,
    c: &reqwest::Client,
    user: &str,
    email: &str,
    answer: &str,
) -> String {
    let env = &h.env;
    first_login(env, c, user).await;
    fill_in_and_confirm(env, c, email, answer).await;
    let before = h.mails().len();
    let r = env.post_form(c, "/abilitazione/adesione", &[]).await;
    expect_redirect(r, "/abilitazione/inviata", "Accetto").await;
    let mails = h.wait_for_mails(before + 1).await;
    let cp = temp_cp_of(mails.last().unwrap(), email, test_user(user));
    let account = env.account(user).await.unwrap();
    assert_eq!(account.enablement_state, EnablementState::TempCpSent);
    cp
}

/// A new person goes through the whole enablement (same session) with `cp`.
async fn until_enabled(
    h: &Harness,
    c: &reqwest::Client,
    user: &str,
    email: &str,
    answer: &str,
    cp: &str,
) {
    let temp = until_temp_cp_sent(h, c, user, email, answer).await;
    let r = change_temp_cp(&h.env, c, &temp, cp).await;
    expect_redirect(r, "/abilitazione/completata", "cambio-cp").await;
    let account = h.env.account(user).await.unwrap();
    assert_eq!(account.enablement_state, EnablementState::Enabled);
}

// ---------------------------------------------------------------------------------------
// (a) The whole path, on SQLite and on PostgreSQL, mail over SMTP
// ---------------------------------------------------------------------------------------

async fn full_path(database: Database) {
    let h = Harness::start(database, true).await;
    let env = &h.env;
    let giulia = test_user(GIULIA);
    let email = "giulia.b@posta.example.it";
    let c = env.client();

    // First SPID login: a new account, not enabled.
    assert!(env.account(GIULIA).await.is_none());
    first_login(env, &c, GIULIA).await;
    let account = env
        .account(GIULIA)
        .await
        .expect("created at the first login");
    assert_eq!(account.username, "giulia.bianchi");
    assert_eq!(account.given_name, "Giulia");
    assert_eq!(account.family_name, "Bianchi");
    assert_eq!(account.spid_level, Some(2));
    assert_ne!(account.enablement_state, EnablementState::Enabled);
    assert!(account.cp_hash.is_none() && account.temp_cp.is_none());
    let home = env.home(&c).await;
    assert!(home.contains("Benvenuto/a, Giulia Bianchi"), "{home}");
    assert!(home.contains("livello 2"), "{home}");
    assert!(home.contains(GIULIA) && !home.contains("TINIT-"), "{home}");
    assert!(home.contains("href=\"/abilitazione\""), "{home}");
    // Not enabled: no personal area, no PDFs yet, no skipping steps.
    expect_get_redirect(env, &c, "/area-riservata", "/abilitazione").await;
    expect_get_redirect(
        env,
        &c,
        "/abilitazione/modulo-adesione.pdf",
        "/abilitazione",
    )
    .await;
    expect_get_redirect(env, &c, "/abilitazione", "/abilitazione/richiesta").await;
    expect_get_redirect(
        env,
        &c,
        "/abilitazione/riepilogo",
        "/abilitazione/richiesta",
    )
    .await;

    // Step 1: the request, prefilled from SPID; personal pages are not cached.
    let r = c
        .get(format!("{}/abilitazione/richiesta", env.gw))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cache = r.headers()["cache-control"].to_str().unwrap().to_owned();
    assert!(cache.contains("no-store"), "{cache}");
    let html = r.text().await.unwrap();
    assert_eq!(
        input_value(&html, "email").as_deref(),
        Some(giulia.email),
        "{html}"
    );
    // A required field missing: 422, the field's error, nothing stored.
    let mut fields = request_fields(email);
    fields.retain(|(k, _)| *k != "street");
    let r = env
        .post_form(&c, "/abilitazione/richiesta", &pairs(&fields))
        .await;
    let body = expect_error(r, 422, "POLIS_FORM_INVALID", "street missing").await;
    assert!(body.contains("id=\"e-street\""), "{body}");
    // The refusal is an error summary that takes the focus (no script: autofocus)
    // and links to each field in error; the field names its error.
    assert!(
        body.contains(r#"id="error-summary" tabindex="-1" autofocus"#),
        "{body}"
    );
    assert!(body.contains(r##"<li><a href="#f-street">"##), "{body}");
    assert!(
        body.contains(r#"aria-describedby=" e-street""#)
            || body.contains(r#"aria-describedby="h-street e-street""#),
        "{body}"
    );
    assert!(
        !body.contains("<fieldset disabled>"),
        "a wrong field does not lock the form"
    );
    assert_eq!(
        input_value(&body, "doc_number").as_deref(),
        Some("CA98765ZZ")
    );
    // No phone at all: 422 too.
    let mut fields = request_fields(email);
    fields.retain(|(k, _)| *k != "mobile");
    let r = env
        .post_form(&c, "/abilitazione/richiesta", &pairs(&fields))
        .await;
    expect_error(r, 422, "POLIS_FORM_INVALID", "no phone").await;
    let account = env.account(GIULIA).await.unwrap();
    assert!(account.domicile.is_none() && account.id_document.is_none());
    // Valid.
    let fields = request_fields(email);
    let r = env
        .post_form(&c, "/abilitazione/richiesta", &pairs(&fields))
        .await;
    expect_redirect(r, "/abilitazione/domanda", "richiesta").await;
    let account = env.account(GIULIA).await.unwrap();
    assert_eq!(account.email.as_deref(), Some(email));
    assert_eq!(account.phones.mobile.as_deref(), Some("+393337654321"));
    let domicile = account.domicile.as_ref().unwrap();
    assert_eq!(
        (domicile.street.as_str(), domicile.postal_code.as_str()),
        ("Via dei Mille 5", "20124")
    );
    assert_eq!(account.id_document.as_ref().unwrap().number, "CA98765ZZ");
    assert_eq!(account.enablement_state, EnablementState::RecoveryQuestion);

    // Step 2: the recovery question, proposed by default.
    let html = page(env, &c, "/abilitazione/domanda").await;
    assert!(html.contains(QUESTION), "{html}");
    let r = env
        .post_form(
            &c,
            "/abilitazione/domanda",
            &[
                ("question", QUESTION),
                ("answer", ANSWER),
                ("answer_repeat", ANSWER),
            ],
        )
        .await;
    expect_redirect(r, "/abilitazione/riepilogo", "domanda").await;
    let account = env.account(GIULIA).await.unwrap();
    assert_eq!(account.recovery_question.as_deref(), Some(QUESTION));
    let answer_hash = account.recovery_answer_hash.clone().unwrap();
    assert!(!answer_hash.contains("Orto"), "only a hash is stored");

    // Step 3: review and «Conferma».
    let html = page(env, &c, "/abilitazione/riepilogo").await;
    for needle in ["Via dei Mille 5", "CA98765ZZ", email, "Conferma"] {
        assert!(html.contains(needle), "{needle}: {html}");
    }
    let r = env.post_form(&c, "/abilitazione/riepilogo", &[]).await;
    expect_redirect(r, "/abilitazione/adesione", "Conferma").await;
    assert_eq!(
        env.account(GIULIA).await.unwrap().enablement_state,
        EnablementState::Confirmed
    );

    // Step 4 offers the correction of a typo seen in the modulo: back to step 1, the
    // form prefilled, and on to the review, to be confirmed again.
    let html = page(env, &c, "/abilitazione/adesione").await;
    assert!(html.contains(r#"href="/abilitazione/richiesta""#), "{html}");
    let html = page(env, &c, "/abilitazione/richiesta").await;
    assert_eq!(
        input_value(&html, "street").as_deref(),
        Some("Via dei Mille 5")
    );
    let mut fields = request_fields(email);
    for (k, v) in &mut fields {
        if *k == "street" {
            *v = "Via dei Mille 7".into();
        }
    }
    let r = env
        .post_form(&c, "/abilitazione/richiesta", &pairs(&fields))
        .await;
    expect_redirect(r, "/abilitazione/riepilogo", "correction").await;
    let account = env.account(GIULIA).await.unwrap();
    assert_eq!(account.enablement_state, EnablementState::Review);
    assert_eq!(account.domicile.as_ref().unwrap().street, "Via dei Mille 7");
    assert_eq!(account.recovery_question.as_deref(), Some(QUESTION), "kept");
    let html = page(env, &c, "/abilitazione/riepilogo").await;
    assert!(html.contains("Via dei Mille 7"), "{html}");
    let r = env.post_form(&c, "/abilitazione/riepilogo", &[]).await;
    expect_redirect(r, "/abilitazione/adesione", "Conferma again").await;

    // Step 4: warnings, the modulo di adesione, «Accetto».
    let html = page(env, &c, "/abilitazione/adesione").await;
    assert!(html.contains("Accetto"), "{html}");
    assert!(html.contains("/abilitazione/modulo-adesione.pdf"), "{html}");
    let path = "/abilitazione/modulo-adesione.pdf";
    let r = c.get(format!("{}{path}", env.gw)).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("application/pdf"), "{path}: {ct}");
    assert_pdf_names(&r.bytes().await.unwrap(), "modulo di adesione", giulia);
    assert!(!html.contains("delega"), "no modulo di delega: {html}");
    let r = c
        .get(format!("{}/abilitazione/modulo-delega.pdf", env.gw))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // The texts «Accetto» accepts are linked, with their version, and published.
    assert!(html.contains(r#"href="/condizioni-di-utilizzo""#), "{html}");
    assert!(html.contains(r#"href="/informativa-privacy""#), "{html}");
    assert!(html.contains(DEMO_VERSION), "{html}");
    for (path, title) in [
        ("/condizioni-di-utilizzo", "Condizioni di utilizzo"),
        (
            "/informativa-privacy",
            "Informativa sul trattamento dei dati personali",
        ),
    ] {
        let (status, text) = env.get(&env.client(), path).await;
        assert_eq!(status, 200, "{path}: public");
        assert!(
            text.contains(title) && text.contains(DEMO_VERSION),
            "{text}"
        );
        assert!(text.contains("Testo dimostrativo"), "{text}");
    }
    assert_eq!(
        env.account(GIULIA).await.unwrap().terms,
        None,
        "not before «Accetto»"
    );
    assert!(h.mails().is_empty(), "nothing sent before «Accetto»");
    let r = env.post_form(&c, "/abilitazione/adesione", &[]).await;
    expect_redirect(r, "/abilitazione/inviata", "Accetto").await;
    let account = env.account(GIULIA).await.unwrap();
    assert_eq!(account.enablement_state, EnablementState::TempCpSent);
    let terms = account.terms.as_ref().expect("the accepted texts recorded");
    assert_eq!(terms.version, DEMO_VERSION);
    assert!((Utc::now() - terms.accepted_at).num_seconds() < 60);
    let temp_cp = account.temp_cp.as_ref().expect("a temporary CP in force");
    assert!(temp_cp.expires_at > Utc::now());

    // Exactly one message, to the address entered, with both PDFs and the CP.
    let mails = h.wait_for_mails(1).await;
    let temp = temp_cp_of(&mails[0], email, giulia);
    assert!(
        !temp_cp.hmac.contains(&temp),
        "the temporary CP is stored as an HMAC only"
    );

    // «Esci» on the "e-mail inviata" page.
    let html = page(env, &c, "/abilitazione/inviata").await;
    assert!(html.contains("action=\"/logout\""), "{html}");
    let r = env.post_raw(&c, "/logout", &[("csrf", &csrf(&html))]).await;
    expect_spid_logout(env, &c, r).await;
    assert!(!env.home(&c).await.contains("Benvenuto"));

    // Next login: the mandatory change of the temporary CP.
    let r = env.login(&c, GIULIA).await;
    expect_redirect(r, "/abilitazione", "second login").await;
    expect_get_redirect(env, &c, "/abilitazione", "/abilitazione/cambio-cp").await;
    let html = page(env, &c, "/abilitazione/cambio-cp").await;
    assert!(html.contains("/abilitazione/reinvio"), "{html}");
    let r = change_temp_cp(env, &c, &temp, "abc12").await;
    expect_error(r, 422, "POLIS_CP_RULES", "a CP breaking the rules").await;
    let r = change_temp_cp(env, &c, &temp, "Bianchi2026").await;
    expect_error(r, 422, "POLIS_CP_RULES", "a CP with the family name").await;
    assert_eq!(
        env.account(GIULIA).await.unwrap().enablement_state,
        EnablementState::TempCpSent
    );
    let r = change_temp_cp(env, &c, &temp, NEW_CP).await;
    expect_redirect(r, "/abilitazione/completata", "cambio-cp").await;
    let html = page(env, &c, "/abilitazione/completata").await;
    assert!(html.to_lowercase().contains("abilitat"), "{html}");

    let account = env.account(GIULIA).await.unwrap();
    assert_eq!(account.enablement_state, EnablementState::Enabled);
    let cp_hash = account.cp_hash.as_deref().expect("the chosen CP, hashed");
    assert!(cp_hash.starts_with("$argon2"), "{cp_hash}");
    assert!(account.temp_cp.is_none());
    assert!(account.enabled_at.is_some());

    // Third login: straight to the home page, enabled.
    let c = env.client();
    let r = env.login(&c, GIULIA).await;
    expect_redirect(r, "/", "third login").await;
    let home = env.home(&c).await;
    for needle in [
        "Benvenuto/a, Giulia Bianchi",
        "livello 2",
        "Abilitato",
        "giulia.bianchi",
        GIULIA,
        email,
    ] {
        assert!(home.contains(needle), "{needle}: {home}");
    }
    assert!(!home.contains("TINIT-"), "{home}");
    expect_get_redirect(env, &c, "/abilitazione", "/").await;
    assert_eq!(h.mails().len(), 1, "no other message");
}

#[tokio::test]
async fn a_new_person_is_enabled_end_to_end_on_sqlite() {
    full_path(Database::Sqlite).await;
}

#[tokio::test]
async fn a_new_person_is_enabled_end_to_end_on_postgres() {
    full_path(postgres()).await;
}

// ---------------------------------------------------------------------------------------
// (b) Existing accounts are linked, never duplicated
// ---------------------------------------------------------------------------------------

async fn existing_account_is_linked(database: Database) {
    let h = Harness::start(database, false).await;
    let env = &h.env;
    // Created before SPID, with another spelling of the given name and an e-mail.
    let out = env.cli(&[
        "accounts",
        "create",
        "--fiscal-code",
        &LUCA.to_lowercase(),
        "--given-name",
        "Lucas",
        "--family-name",
        "Verdi",
        "--email",
        "l.verdi@scuola.example.it",
    ]);
    assert!(
        out.status.success(),
        "accounts create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "lucas.verdi");
    let before = env.account(LUCA).await.expect("the CLI wrote the account");
    assert_eq!(before.username, "lucas.verdi");

    let c = env.client();
    first_login(env, &c, LUCA).await;
    let after = env.account(LUCA).await.unwrap();
    assert_eq!(after.id, before.id, "the same account");
    assert_eq!(after.username, "lucas.verdi", "the username never changes");
    assert_eq!(after.given_name, "Luca", "SPID vouches for the name");
    assert_eq!(after.family_name, "Verdi");
    assert_eq!(
        after.email.as_deref(),
        Some("l.verdi@scuola.example.it"),
        "the e-mail on file is kept"
    );
    assert_eq!(after.spid_level, Some(2));
    assert_eq!(after.created_at, before.created_at);
    // Still one account for the codice fiscale.
    assert!(
        env.accounts
            .find_by_username("luca.verdi")
            .await
            .unwrap()
            .is_none()
    );
    let dup = env
        .accounts
        .create(&NewAccount::new(cf(LUCA), "Luca", "Verdi"))
        .await;
    assert!(
        matches!(dup, Err(AccountError::Duplicate(UniqueField::FiscalCode))),
        "{dup:?}"
    );
    let home = env.home(&c).await;
    assert!(home.contains("Benvenuto/a, Luca Verdi"), "{home}");
    assert!(home.contains("lucas.verdi"), "{home}");
    // A second login links to the same account again.
    let c2 = env.client();
    first_login(env, &c2, LUCA).await;
    assert_eq!(env.account(LUCA).await.unwrap().id, before.id);
}

#[tokio::test]
async fn an_account_created_by_the_cli_is_linked_on_sqlite() {
    existing_account_is_linked(Database::Sqlite).await;
}

#[tokio::test]
async fn an_account_created_by_the_cli_is_linked_on_postgres() {
    existing_account_is_linked(postgres()).await;
}

async fn racing_first_logins(database: Database) {
    let h = Harness::start(database, false).await;
    let env = &h.env;
    for user in [SOFIA, GIUSEPPE, MARIO] {
        assert!(env.account(user).await.is_none());
        let (c1, c2) = (env.client(), env.client());
        let a1 = env.idp_answer(&c1, 2, "redirect", user, "success").await;
        let a2 = env.idp_answer(&c2, 2, "redirect", user, "success").await;
        let (r1, r2) = tokio::join!(
            env.post_acs(&c1, &a1.saml_response, &a1.relay_state),
            env.post_acs(&c2, &a2.saml_response, &a2.relay_state),
        );
        expect_redirect(r1, "/abilitazione", "first racer").await;
        expect_redirect(r2, "/abilitazione", "second racer").await;
        let account = env.account(user).await.expect("one account");
        let u = test_user(user);
        let base = format!("{}.{}", u.name.to_lowercase(), u.family_name.to_lowercase());
        assert_eq!(account.username, base);
        assert!(
            env.accounts
                .find_by_username(&format!("{base}2"))
                .await
                .unwrap()
                .is_none(),
            "no second account for {user}"
        );
        let dup = env
            .accounts
            .create(&NewAccount::new(cf(user), u.name, u.family_name))
            .await;
        assert!(
            matches!(dup, Err(AccountError::Duplicate(UniqueField::FiscalCode))),
            "{dup:?}"
        );
        // Both sessions belong to that one account.
        for c in [&c1, &c2] {
            let home = env.home(c).await;
            assert!(home.contains(&account.username), "{home}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_first_logins_make_one_account_on_sqlite() {
    racing_first_logins(Database::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_first_logins_make_one_account_on_postgres() {
    racing_first_logins(postgres()).await;
}

// ---------------------------------------------------------------------------------------
// (c) Attempts, lockouts, resend, expiry, recovery, personal area
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn five_wrong_temporary_cps_lock_it_until_a_resend() {
    let h = Harness::start(Database::Sqlite, true).await;
    let env = &h.env;
    let email = "luca.verdi@posta.example.it";
    let c = env.client();
    let temp = until_temp_cp_sent(&h, &c, LUCA, email, ANSWER).await;
    let wrong = wrong_cp(&temp);
    for attempt in 1..=4 {
        let r = change_temp_cp(env, &c, &wrong, NEW_CP).await;
        expect_error(r, 422, "POLIS_TEMP_CP_WRONG", &format!("wrong #{attempt}")).await;
    }
    let r = change_temp_cp(env, &c, &wrong, NEW_CP).await;
    let body = expect_error(r, 429, "POLIS_TEMP_CP_LOCKED", "wrong #5").await;
    // The locked form is disabled, and the resend comes first, right under the
    // focused refusal: in view without scrolling on a phone.
    assert!(body.contains("<fieldset disabled>"), "{body}");
    let summary = body
        .find(r#"id="error-summary""#)
        .expect("the error summary");
    let resend = body
        .find(r#"action="/abilitazione/reinvio""#)
        .expect("the resend");
    let main_form = body
        .find(r#"action="/abilitazione/cambio-cp""#)
        .expect("the form");
    assert!(summary < resend && resend < main_form, "{body}");
    let r = change_temp_cp(env, &c, &temp, NEW_CP).await;
    expect_error(r, 429, "POLIS_TEMP_CP_LOCKED", "the right CP once locked").await;
    let account = env.account(LUCA).await.unwrap();
    assert_eq!(account.enablement_state, EnablementState::TempCpSent);
    assert!(account.cp_hash.is_none());

    // «Ripetizione invio»: a second message with another CP.
    let r = env.post_form(&c, "/abilitazione/reinvio", &[]).await;
    expect_redirect(r, "/abilitazione/cambio-cp", "reinvio").await;
    let mails = h.wait_for_mails(2).await;
    let second = temp_cp_of(&mails[1], email, test_user(LUCA));
    assert_ne!(second, temp, "a new temporary CP");
    let r = change_temp_cp(env, &c, &temp, NEW_CP).await;
    expect_error(r, 422, "POLIS_TEMP_CP_WRONG", "the old CP after the resend").await;
    let r = change_temp_cp(env, &c, &second, NEW_CP).await;
    expect_redirect(r, "/abilitazione/completata", "the new CP").await;
    let account = env.account(LUCA).await.unwrap();
    assert_eq!(account.enablement_state, EnablementState::Enabled);
    assert!(account.temp_cp.is_none());
}

#[tokio::test]
async fn an_expired_temporary_cp_is_refused() {
    // The longest sessions the configuration allows (idle 24 h, absolute 7 days), so
    // the one session lives through the temporary CP's 72 h with a page every 20 h.
    let env = Env::start_with(
        std::sync::Arc::new(MemoryStore::new()),
        EnvOptions {
            session_timeouts: (86_400, 604_800),
            ..EnvOptions::default()
        },
    )
    .await;
    let h = Harness { env, smtp: None };
    let env = &h.env;
    let email = "sofia.esposito@posta.example.it";
    let c = env.client();
    let temp = until_temp_cp_sent(&h, &c, SOFIA, email, ANSWER).await;
    // The clock moves past `cp.temp_cp_ttl_seconds`; the stored row is not touched.
    let mut left = TEMP_CP_TTL_SECONDS + 1;
    while left > 0 {
        let step = left.min(20 * 3600);
        env.clock.advance(chrono::Duration::seconds(step));
        left -= step;
        page(env, &c, "/abilitazione/cambio-cp").await;
    }
    let account = env.account(SOFIA).await.unwrap();
    assert!(
        account.temp_cp.as_ref().unwrap().expires_at <= env.clock.now(),
        "the clock is past the expiry"
    );

    let r = change_temp_cp(env, &c, &temp, NEW_CP).await;
    expect_error(r, 422, "POLIS_TEMP_CP_EXPIRED", "expired").await;
    let account = env.account(SOFIA).await.unwrap();
    assert_eq!(account.enablement_state, EnablementState::TempCpSent);
    assert!(account.cp_hash.is_none());
    // A resend gives a fresh one that works.
    let r = env.post_form(&c, "/abilitazione/reinvio", &[]).await;
    expect_redirect(r, "/abilitazione/cambio-cp", "reinvio").await;
    let mails = h.wait_for_mails(2).await;
    let fresh = temp_cp_of(&mails[1], email, test_user(SOFIA));
    let r = change_temp_cp(env, &c, &fresh, NEW_CP).await;
    expect_redirect(r, "/abilitazione/completata", "fresh CP").await;
}

#[tokio::test]
async fn more_than_five_resends_a_day_are_refused() {
    let h = Harness::start(Database::Sqlite, false).await;
    let env = &h.env;
    let email = "mario.r@posta.example.it";
    let c = env.client();
    let mut cps = vec![until_temp_cp_sent(&h, &c, MARIO, email, ANSWER).await];
    for resend in 1..=5 {
        let r = env.post_form(&c, "/abilitazione/reinvio", &[]).await;
        expect_redirect(r, "/abilitazione/cambio-cp", &format!("resend #{resend}")).await;
        let mails = h.wait_for_mails(resend + 1).await;
        cps.push(temp_cp_of(mails.last().unwrap(), email, test_user(MARIO)));
    }
    let r = env.post_form(&c, "/abilitazione/reinvio", &[]).await;
    expect_error(r, 429, "POLIS_RESEND_LIMIT", "resend #6").await;
    assert_eq!(h.mails().len(), 6, "no seventh message");
    // Every CP was new, and only the last one works.
    let mut distinct = cps.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), cps.len(), "{cps:?}");
    let r = change_temp_cp(env, &c, &cps[4], NEW_CP).await;
    expect_error(r, 422, "POLIS_TEMP_CP_WRONG", "an earlier CP").await;
    let r = change_temp_cp(env, &c, &cps[5], NEW_CP).await;
    expect_redirect(r, "/abilitazione/completata", "the last CP").await;
}

#[tokio::test]
async fn a_mail_failure_leaves_the_enablement_resumable() {
    // The gateway's SMTP port has no server yet: «Accetto» cannot send.
    let port = crate::support::free_port();
    let env = Env::start_with(
        std::sync::Arc::new(MemoryStore::new()),
        EnvOptions {
            smtp_port: Some(port),
            ..EnvOptions::default()
        },
    )
    .await;
    let email = "giulia.r@posta.example.it";
    let c = env.client();
    first_login(&env, &c, GIULIA).await;
    fill_in_and_confirm(&env, &c, email, ANSWER).await;
    let r = env.post_form(&c, "/abilitazione/adesione", &[]).await;
    expect_error(r, 503, "POLIS_MAIL_UNAVAILABLE", "Accetto without SMTP").await;
    let account = env.account(GIULIA).await.unwrap();
    assert_eq!(account.enablement_state, EnablementState::Accepted);
    expect_get_redirect(&env, &c, "/abilitazione", "/abilitazione/adesione").await;
    // The server comes up; «Accetto» again sends the one message.
    let server = SmtpServer::start_on(port);
    let r = env.post_form(&c, "/abilitazione/adesione", &[]).await;
    expect_redirect(r, "/abilitazione/inviata", "Accetto again").await;
    let mails = server.messages();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let temp = temp_cp_of(&mails[0], email, test_user(GIULIA));
    let r = change_temp_cp(&env, &c, &temp, NEW_CP).await;
    expect_redirect(r, "/abilitazione/completata", "cambio-cp").await;
}

#[tokio::test]
async fn five_wrong_recovery_answers_lock_the_recovery() {
    let h = Harness::start(Database::Sqlite, false).await;
    let env = &h.env;
    let c = env.client();
    until_enabled(
        &h,
        &c,
        GIUSEPPE,
        "g.ferrari@posta.example.it",
        ANSWER,
        NEW_CP,
    )
    .await;
    let html = page(env, &c, "/area-riservata/recupero-cp").await;
    assert!(html.contains(QUESTION), "the question is shown: {html}");
    let before = env.account(GIUSEPPE).await.unwrap();
    for attempt in 1..=4 {
        let r = env
            .post_form(&c, "/area-riservata/recupero-cp", &[("answer", "Rossi")])
            .await;
        expect_error(
            r,
            422,
            "POLIS_RECOVERY_WRONG",
            &format!("wrong answer #{attempt}"),
        )
        .await;
    }
    let r = env
        .post_form(&c, "/area-riservata/recupero-cp", &[("answer", "Bianchi")])
        .await;
    expect_error(r, 429, "POLIS_RECOVERY_LOCKED", "wrong answer #5").await;
    let r = env
        .post_form(&c, "/area-riservata/recupero-cp", &[("answer", ANSWER)])
        .await;
    expect_error(
        r,
        429,
        "POLIS_RECOVERY_LOCKED",
        "the right answer once locked",
    )
    .await;
    let after = env.account(GIUSEPPE).await.unwrap();
    assert_eq!(after.enablement_state, EnablementState::Enabled);
    assert_eq!(after.cp_hash, before.cp_hash);
    assert!(after.temp_cp.is_none());
    assert_eq!(h.mails().len(), 1, "no new temporary CP was sent");
}

#[tokio::test]
async fn the_right_recovery_answer_sends_a_new_temporary_cp() {
    let h = Harness::start(Database::Sqlite, false).await;
    let env = &h.env;
    let email = "giuseppe.f@posta.example.it";
    let c = env.client();
    until_enabled(&h, &c, GIUSEPPE, email, ANSWER, NEW_CP).await;
    let old_hash = env.account(GIUSEPPE).await.unwrap().cp_hash.unwrap();
    // Other case, no apostrophe, no accent, extra spaces: the same answer.
    let r = env
        .post_form(
            &c,
            "/area-riservata/recupero-cp",
            &[("answer", "  DELLORTO    verdi ")],
        )
        .await;
    expect_redirect(r, "/abilitazione/cambio-cp", "recupero").await;
    let mails = h.wait_for_mails(2).await;
    let first = temp_cp_of(&mails[0], email, test_user(GIUSEPPE));
    let temp = temp_cp_of(&mails[1], email, test_user(GIUSEPPE));
    assert_ne!(temp, first);
    let account = env.account(GIUSEPPE).await.unwrap();
    assert_eq!(account.enablement_state, EnablementState::TempCpSent);
    assert!(account.temp_cp.is_some());
    // The change is mandatory, and an earlier CP cannot come back.
    expect_get_redirect(env, &c, "/abilitazione", "/abilitazione/cambio-cp").await;
    let r = change_temp_cp(env, &c, &temp, NEW_CP).await;
    expect_error(r, 422, "POLIS_CP_RULES", "the earlier CP again").await;
    let r = change_temp_cp(env, &c, &temp, NEW_CP_2).await;
    expect_redirect(r, "/abilitazione/completata", "cambio-cp").await;
    let account = env.account(GIUSEPPE).await.unwrap();
    assert_eq!(account.enablement_state, EnablementState::Enabled);
    assert!(account.temp_cp.is_none());
    assert_ne!(account.cp_hash.as_deref(), Some(old_hash.as_str()));
}

/// The contact fields of the personal area.
fn contact_fields(email: &str) -> Vec<(&'static str, String)> {
    request_fields(email)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("doc_"))
        .map(|(k, v)| match k {
            "mobile" => (k, "+39 340 1112223".to_owned()),
            "landline" => (k, "02 7654321".to_owned()),
            "street" => (k, "Piazza Duomo 1".to_owned()),
            "postal_code" => (k, "20122".to_owned()),
            _ => (k, v),
        })
        .collect()
}

#[tokio::test]
async fn the_personal_area_changes_contacts_and_the_cp() {
    let h = Harness::start(Database::Sqlite, false).await;
    let env = &h.env;
    let c = env.client();
    until_enabled(&h, &c, SOFIA, "sofia.e@posta.example.it", ANSWER, NEW_CP).await;
    let html = page(env, &c, "/area-riservata").await;
    assert!(html.contains("I tuoi dati personali"), "{html}");

    // Contacts: an invalid e-mail is refused and nothing changes.
    let before = env.account(SOFIA).await.unwrap();
    let bad = contact_fields("non-un-indirizzo");
    let r = env
        .post_form(&c, "/area-riservata/dati", &pairs(&bad))
        .await;
    expect_error(r, 422, "POLIS_FORM_INVALID", "bad e-mail").await;
    assert_eq!(env.account(SOFIA).await.unwrap(), before);
    // Valid: stored.
    let fields = contact_fields("sofia.nuova@posta.example.it");
    let r = env
        .post_form(&c, "/area-riservata/dati", &pairs(&fields))
        .await;
    expect_redirect(r, "/area-riservata", "dati").await;
    let account = env.account(SOFIA).await.unwrap();
    assert_eq!(
        account.email.as_deref(),
        Some("sofia.nuova@posta.example.it")
    );
    assert_eq!(account.phones.mobile.as_deref(), Some("+393401112223"));
    assert_eq!(account.phones.landline.as_deref(), Some("027654321"));
    let domicile = account.domicile.as_ref().unwrap();
    assert_eq!(domicile.street, "Piazza Duomo 1");
    assert_eq!(domicile.postal_code, "20122");
    assert_eq!(account.enablement_state, EnablementState::Enabled);
    assert_eq!(
        account.id_document, before.id_document,
        "not part of this form"
    );
    let html = page(env, &c, "/area-riservata").await;
    assert!(html.contains("sofia.nuova@posta.example.it"), "{html}");

    // The CP: the current one is required.
    let change = |current: &'static str, new: &'static str| {
        let c = c.clone();
        async move {
            env.post_form(
                &c,
                "/area-riservata/cambio-cp",
                &[
                    ("current_cp", current),
                    ("new_cp", new),
                    ("new_cp_repeat", new),
                ],
            )
            .await
        }
    };
    let r = change("Sbagliato99", NEW_CP_2).await;
    expect_error(r, 422, "POLIS_CP_WRONG", "wrong current CP").await;
    assert_eq!(env.account(SOFIA).await.unwrap().cp_hash, account.cp_hash);
    let r = change(NEW_CP, NEW_CP_2).await;
    expect_redirect(r, "/area-riservata", "cambio-cp").await;
    let changed = env.account(SOFIA).await.unwrap();
    assert_ne!(changed.cp_hash, account.cp_hash);
    // Now the new CP is the one required.
    let r = change(NEW_CP, NEW_CP_3).await;
    expect_error(r, 422, "POLIS_CP_WRONG", "the replaced CP").await;
    let r = change(NEW_CP_2, NEW_CP_3).await;
    expect_redirect(r, "/area-riservata", "second cambio-cp").await;
    assert_ne!(env.account(SOFIA).await.unwrap().cp_hash, changed.cp_hash);
}

// ---------------------------------------------------------------------------------------
// (d) CSRF
// ---------------------------------------------------------------------------------------

/// `token` with its last character changed.
fn tampered(token: &str) -> String {
    let mut t: Vec<char> = token.chars().collect();
    let last = t.last_mut().unwrap();
    *last = if *last == 'A' { 'B' } else { 'A' };
    t.into_iter().collect()
}

/// Posts `fields` to `path` without a token, with a wrong one, with an empty one and
/// with `other_session_token`: each 403 `POLIS_CSRF`, and the account of `user` exactly
/// as it was.
async fn assert_csrf_refused(
    env: &Env,
    c: &reqwest::Client,
    user: &str,
    path: &str,
    fields: &[(&str, &str)],
    other_session_token: &str,
) {
    let good = env.csrf_of(c, form_page(path)).await;
    assert_ne!(good, other_session_token, "one token per session");
    let before: Account = env.account(user).await.unwrap();
    let wrong = tampered(&good);
    for (label, token) in [
        ("no token", None),
        ("empty token", Some("")),
        ("wrong token", Some(wrong.as_str())),
        ("another session's token", Some(other_session_token)),
    ] {
        let mut all = fields.to_vec();
        if let Some(token) = token {
            all.push(("csrf", token));
        }
        let r = env.post_raw(c, path, &all).await;
        expect_error(r, 403, "POLIS_CSRF", &format!("{path} with {label}")).await;
        assert_eq!(
            env.account(user).await.unwrap(),
            before,
            "{path} with {label} changed the account"
        );
    }
}

#[tokio::test]
async fn forms_without_a_valid_csrf_token_are_refused_and_change_nothing() {
    let h = Harness::start(Database::Sqlite, false).await;
    let env = &h.env;
    // Another person's session, for its token.
    let other = env.client();
    first_login(env, &other, MARIO).await;
    let other_token = env.csrf_of(&other, "/").await;

    let c = env.client();
    let email = "luca.v@posta.example.it";
    first_login(env, &c, LUCA).await;
    // No session at all: 401.
    let anonymous = env.client();
    let r = env
        .post_raw(
            &anonymous,
            "/abilitazione/richiesta",
            &[("csrf", &other_token)],
        )
        .await;
    expect_error(r, 401, "POLIS_SESSION_REQUIRED", "no session").await;

    // The enablement request.
    expect_get_redirect(env, &c, "/abilitazione", "/abilitazione/richiesta").await;
    let fields = request_fields(email);
    assert_csrf_refused(
        env,
        &c,
        LUCA,
        "/abilitazione/richiesta",
        &pairs(&fields),
        &other_token,
    )
    .await;
    // Logout: refused, the session lives on.
    assert_csrf_refused(env, &c, LUCA, "/logout", &[], &other_token).await;
    assert!(env.home(&c).await.contains("Benvenuto/a, Luca Verdi"));

    // The same forms with the right token go through (so the 403s were the token's).
    fill_in_and_confirm(env, &c, email, ANSWER).await;
    let r = env.post_form(&c, "/abilitazione/adesione", &[]).await;
    expect_redirect(r, "/abilitazione/inviata", "Accetto").await;
    let mails = h.wait_for_mails(1).await;
    let temp = temp_cp_of(&mails[0], email, test_user(LUCA));

    // The change of the temporary CP (with the right temporary CP).
    assert_csrf_refused(
        env,
        &c,
        LUCA,
        "/abilitazione/cambio-cp",
        &[
            ("temp_cp", &temp),
            ("new_cp", NEW_CP),
            ("new_cp_repeat", NEW_CP),
        ],
        &other_token,
    )
    .await;
    assert_csrf_refused(env, &c, LUCA, "/abilitazione/reinvio", &[], &other_token).await;
    assert_eq!(h.mails().len(), 1, "no resend happened");
    let r = change_temp_cp(env, &c, &temp, NEW_CP).await;
    expect_redirect(r, "/abilitazione/completata", "cambio-cp").await;

    // The personal area.
    let fields = contact_fields("luca.nuovo@posta.example.it");
    assert_csrf_refused(
        env,
        &c,
        LUCA,
        "/area-riservata/dati",
        &pairs(&fields),
        &other_token,
    )
    .await;
    assert_csrf_refused(
        env,
        &c,
        LUCA,
        "/area-riservata/cambio-cp",
        &[
            ("current_cp", NEW_CP),
            ("new_cp", NEW_CP_2),
            ("new_cp_repeat", NEW_CP_2),
        ],
        &other_token,
    )
    .await;
    let r = env
        .post_form(&c, "/area-riservata/dati", &pairs(&fields))
        .await;
    expect_redirect(r, "/area-riservata", "dati with the token").await;
    assert_eq!(
        env.account(LUCA).await.unwrap().email.as_deref(),
        Some("luca.nuovo@posta.example.it")
    );
    // The other session was never disturbed.
    assert!(env.home(&other).await.contains("Benvenuto/a, Mario Rossi"));
}

// ---------------------------------------------------------------------------------------
// (e) Missing SPID attributes
// ---------------------------------------------------------------------------------------

/// A change to the crafted Response's attributes.
type AttributeEdit = fn(&mut Vec<(String, String)>);

#[tokio::test]
async fn a_response_without_required_attributes_writes_no_account() {
    let h = Harness::start(Database::Sqlite, false).await;
    let env = &h.env;
    // The crafted Response carries Mario Rossi's attributes.
    let cases: [(&str, AttributeEdit); 5] = [
        ("no fiscalNumber", |a| {
            a.retain(|(n, _)| n != "fiscalNumber")
        }),
        ("empty fiscalNumber", |a| {
            for (n, v) in a.iter_mut() {
                if n == "fiscalNumber" {
                    v.clear();
                }
            }
        }),
        ("no name", |a| a.retain(|(n, _)| n != "name")),
        ("no familyName", |a| a.retain(|(n, _)| n != "familyName")),
        ("no attributes at all", Vec::clear),
    ];
    for (label, mutate) in cases {
        let c = env.client();
        let pending = env.start_login(&c, 2).await;
        let mut craft = Craft::for_login(env, &pending);
        mutate(&mut craft.attributes);
        let r = env
            .post_acs_xml(&c, &craft.build(&env.idp_key), &pending.relay_state)
            .await;
        assert!(
            r.headers().get_all("set-cookie").iter().next().is_none(),
            "{label}: no session cookie"
        );
        expect_error(r, 403, "POLIS_SPID_ATTRIBUTES_MISSING", label).await;
        assert!(env.account(MARIO).await.is_none(), "{label}: no account");
        assert!(!env.home(&c).await.contains("Benvenuto"), "{label}");
    }
    // Control: the same Response with every attribute creates Mario's account.
    let c = env.client();
    let pending = env.start_login(&c, 2).await;
    let craft = Craft::for_login(env, &pending);
    let r = env
        .post_acs_xml(&c, &craft.build(&env.idp_key), &pending.relay_state)
        .await;
    expect_redirect(r, "/abilitazione", "the complete Response").await;
    assert_eq!(env.account(MARIO).await.unwrap().username, "mario.rossi");
}

// ---------------------------------------------------------------------------------------
// (f) The session cookie
// ---------------------------------------------------------------------------------------

/// A client without a cookie store, to send a chosen `Cookie` header.
fn bare_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn home_with_cookie(env: &Env, value: &str) -> String {
    bare_client()
        .get(format!("{}/", env.gw))
        .header("cookie", format!("polis_session={value}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_session_cookie_is_encrypted_http_only_and_lax() {
    let h = Harness::start(Database::Sqlite, false).await;
    let env = &h.env;
    let c = env.client();
    let r = env.login(&c, MARIO).await;
    assert_eq!(r.status(), 303);
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .filter(|v| v.starts_with("polis_session="))
        .collect();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let cookie = &cookies[0];
    let attributes: Vec<String> = cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_lowercase())
        .collect();
    assert!(attributes.iter().any(|a| a == "httponly"), "{cookie}");
    assert!(attributes.iter().any(|a| a == "samesite=lax"), "{cookie}");
    let value = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("polis_session=")
        .to_owned();
    assert!(value.len() >= 32, "{value}");
    // Not a demo environment: no outbox page.
    assert_eq!(env.get(&c, "/demo/posta").await.0, 404);
    // Not the state-store token: no session record is named by it.
    for candidate in [
        value.clone(),
        polis_gateway::saml::binding::decode_component(&value).unwrap_or_else(|_| value.clone()),
    ] {
        let key = format!("polis:sess:{candidate}");
        assert!(env.store.get(&key).await.unwrap().is_none(), "{key}");
    }
    // The value opens the session; the same value with one character changed does not.
    assert!(
        home_with_cookie(env, &value)
            .await
            .contains("Benvenuto/a, Mario Rossi")
    );
    let mid = value.len() / 2;
    let flipped = if &value[mid..=mid] == "A" { "B" } else { "A" };
    let forged = format!("{}{flipped}{}", &value[..mid], &value[mid + 1..]);
    assert!(!home_with_cookie(env, &forged).await.contains("Benvenuto"));
    // Logging out ends the session server-side: the old value no longer works.
    let r = env.post_form(&c, "/logout", &[]).await;
    expect_spid_logout(env, &c, r).await;
    assert!(!home_with_cookie(env, &value).await.contains("Benvenuto"));
}

// ---------------------------------------------------------------------------------------
// (e) Races (issue 8, classes 6 and 10): lockouts count a try before evaluating it,
//     a transition that sends mail sends once, namesakes all get a username
// ---------------------------------------------------------------------------------------

/// The request-state backend of a race test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// One gateway on the embedded `MemoryStore`.
    Memory,
    /// One gateway on a real `redis-server`.
    Redis,
    /// Two gateway processes (this test's and a `polis-gateway serve` child) sharing
    /// one `redis-server` and one SQLite file; the tries alternate between them.
    TwoProcesses,
}

/// An [`Env`] on `backend`, its SMTP server, and the base URLs the tries go to.
struct RaceHarness {
    h: Harness,
    gateways: Vec<String>,
    _redis: Option<crate::support::redis::RedisServer>,
    _process: Option<crate::support::gateway::GatewayProcess>,
}

impl RaceHarness {
    async fn start(backend: Backend) -> RaceHarness {
        use polis_gateway::state::{RedisConfig, RedisStore, StateStore};
        let redis = (backend != Backend::Memory).then(crate::support::redis::RedisServer::start);
        let store: std::sync::Arc<dyn StateStore> = match &redis {
            None => std::sync::Arc::new(MemoryStore::new()),
            Some(server) => std::sync::Arc::new(
                RedisStore::connect(&RedisConfig::standalone(server.url())).unwrap(),
            ),
        };
        let smtp = SmtpServer::start();
        let env = Env::start_with(
            store,
            EnvOptions {
                smtp_port: Some(smtp.port()),
                ..EnvOptions::default()
            },
        )
        .await;
        let mut gateways = vec![env.gw.clone()];
        let process = match (&redis, backend) {
            (Some(server), Backend::TwoProcesses) => {
                let process = env.start_gateway_process(&server.url()).await;
                gateways.push(process.url.clone());
                Some(process)
            }
            _ => None,
        };
        RaceHarness {
            h: Harness {
                env,
                smtp: Some(smtp),
            },
            gateways,
            _redis: redis,
            _process: process,
        }
    }

    /// The gateway that the `n`-th try goes to (alternating with two processes).
    fn gateway(&self, n: usize) -> &str {
        &self.gateways[n % self.gateways.len()]
    }
}

/// Posts `fields` (the CSRF token included) to `path` on the gateway at `base`.
async fn post_at(
    base: &str,
    c: &reqwest::Client,
    path: &str,
    fields: &[(&str, String)],
) -> reqwest::Response {
    c.post(format!("{base}{path}"))
        .form(fields)
        .send()
        .await
        .unwrap()
}

/// The secrets guarded by a lockout counter.
#[derive(Debug, Clone, Copy)]
enum Secret {
    /// The temporary CP at the mandatory change (`/abilitazione/cambio-cp`).
    TempCp,
    /// The current CP in the personal area (`/area-riservata/cambio-cp`).
    CurrentCp,
    /// The recovery answer (`/area-riservata/recupero-cp`).
    Recovery,
}

/// How one answer to a try reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// 422 with the "wrong" code: the secret was evaluated and was wrong.
    Wrong,
    /// 429 with the "locked" code.
    Locked,
    /// The success redirect: the secret was evaluated and was right.
    Right,
    /// A 303 to the current step or a 409: the step no longer fits (the right try
    /// already changed the account); nothing was evaluated.
    Stale,
}

impl Secret {
    fn path(self) -> &'static str {
        match self {
            Secret::TempCp => "/abilitazione/cambio-cp",
            Secret::CurrentCp => "/area-riservata/cambio-cp",
            Secret::Recovery => "/area-riservata/recupero-cp",
        }
    }

    fn codes(self) -> (&'static str, &'static str) {
        match self {
            Secret::TempCp => ("POLIS_TEMP_CP_WRONG", "POLIS_TEMP_CP_LOCKED"),
            Secret::CurrentCp => ("POLIS_CP_WRONG", "POLIS_CP_LOCKED"),
            Secret::Recovery => ("POLIS_RECOVERY_WRONG", "POLIS_RECOVERY_LOCKED"),
        }
    }

    fn success_to(self) -> &'static str {
        match self {
            Secret::TempCp => "/abilitazione/completata",
            Secret::CurrentCp => "/area-riservata",
            Secret::Recovery => "/abilitazione/cambio-cp",
        }
    }

    /// The form fields of a try with `secret`.
    fn fields(self, secret: &str, csrf: &str) -> Vec<(&'static str, String)> {
        let mut fields = match self {
            Secret::TempCp => vec![
                ("temp_cp", secret.to_owned()),
                ("new_cp", NEW_CP.to_owned()),
                ("new_cp_repeat", NEW_CP.to_owned()),
            ],
            Secret::CurrentCp => vec![
                ("current_cp", secret.to_owned()),
                ("new_cp", NEW_CP_2.to_owned()),
                ("new_cp_repeat", NEW_CP_2.to_owned()),
            ],
            Secret::Recovery => vec![("answer", secret.to_owned())],
        };
        fields.push(("csrf", csrf.to_owned()));
        fields
    }

    /// Brings `user` to where `self` is asked, with a live session in `c`; returns the
    /// right secret and a wrong one.
    async fn prepare(self, h: &Harness, c: &reqwest::Client, user: &str) -> (String, String) {
        let email = format!("{}@posta.example.it", user.to_lowercase());
        match self {
            Secret::TempCp => {
                let temp = until_temp_cp_sent(h, c, user, &email, ANSWER).await;
                let wrong = wrong_cp(&temp);
                (temp, wrong)
            }
            Secret::CurrentCp => {
                until_enabled(h, c, user, &email, ANSWER, NEW_CP).await;
                (NEW_CP.to_owned(), "Sbagliato99x".to_owned())
            }
            Secret::Recovery => {
                until_enabled(h, c, user, &email, ANSWER, NEW_CP).await;
                (ANSWER.to_owned(), "Bianchi".to_owned())
            }
        }
    }

    async fn classify(self, r: reqwest::Response, what: &str) -> Answer {
        let status = r.status().as_u16();
        let to = location(&r);
        let body = r.text().await.unwrap();
        let (wrong, locked) = self.codes();
        let path = to.split_once('?').map_or(to.as_str(), |(p, _)| p);
        match status {
            422 if body.contains(&format!("data-code=\"{wrong}\"")) => Answer::Wrong,
            429 if body.contains(locked) => Answer::Locked,
            303 if path == self.success_to() => Answer::Right,
            303 if path == "/abilitazione" => Answer::Stale,
            409 if body.contains("POLIS_ACCOUNT_CONFLICT") => Answer::Stale,
            _ => panic!("{what}: unexpected answer {status} {to:?}:\n{body}"),
        }
    }
}

/// Sends the tries concurrently, try `n` to `rh.gateway(n)`; returns the answers in order.
async fn concurrent_tries(
    rh: &RaceHarness,
    secret: Secret,
    c: &reqwest::Client,
    tries: &[String],
    csrf: &str,
) -> Vec<Answer> {
    let posts = tries.iter().enumerate().map(|(n, s)| {
        let fields = secret.fields(s, csrf);
        let base = rh.gateway(n).to_owned();
        let c = c.clone();
        async move {
            let r = post_at(&base, &c, secret.path(), &fields).await;
            secret.classify(r, &format!("try #{n} at {base}")).await
        }
    });
    join_all(posts).await
}

/// 20 parallel wrong tries, then the right one: exactly `max_attempts` (5) are
/// evaluated, i.e. 4 answers "wrong, N left" and 16 "locked" (the fifth wrong try
/// locks), and the right secret, once locked, is refused without any effect. Then a
/// second person sends 20 wrong tries and the right one all at once: at most 5 of the
/// 21 are evaluated (answered "wrong" or accepted), whatever the interleaving.
async fn parallel_tries_evaluate_at_most_the_limit(secret: Secret, backend: Backend) {
    let rh = RaceHarness::start(backend).await;
    let h = &rh.h;
    let env = &h.env;
    let (wrong_code, _) = secret.codes();

    // The deterministic half.
    let c = env.client();
    let (right, wrong) = secret.prepare(h, &c, LUCA).await;
    let before = env.account(LUCA).await.unwrap();
    let mails = h.mails().len();
    let csrf = env.csrf_of(&c, form_page(secret.path())).await;
    let answers = concurrent_tries(&rh, secret, &c, &vec![wrong.clone(); 20], &csrf).await;
    let count = |a: &[Answer], which: Answer| a.iter().filter(|x| **x == which).count();
    assert_eq!(
        (
            count(&answers, Answer::Wrong),
            count(&answers, Answer::Locked)
        ),
        (4, 16),
        "{secret:?} on {backend:?}: 4 × {wrong_code} and 16 × locked: {answers:?}"
    );
    let r = post_at(
        rh.gateway(1),
        &c,
        secret.path(),
        &secret.fields(&right, &csrf),
    )
    .await;
    assert_eq!(
        secret.classify(r, "the right secret once locked").await,
        Answer::Locked,
        "{secret:?} on {backend:?}"
    );
    let after = env.account(LUCA).await.unwrap();
    assert_eq!(after, before, "the refused right secret changed nothing");
    assert_eq!(h.mails().len(), mails, "no mail was sent");

    // The mixed half: the right one among 20 wrong ones, all at once.
    let c = env.client();
    let (right, wrong) = secret.prepare(h, &c, SOFIA).await;
    let before = env.account(SOFIA).await.unwrap();
    let csrf = env.csrf_of(&c, form_page(secret.path())).await;
    let mut tries = vec![wrong; 20];
    tries.insert(10, right);
    let answers = concurrent_tries(&rh, secret, &c, &tries, &csrf).await;
    let evaluated = count(&answers, Answer::Wrong) + count(&answers, Answer::Right);
    assert!(
        evaluated <= 5,
        "{secret:?} on {backend:?}: {evaluated} of 21 parallel tries evaluated: {answers:?}"
    );
    for (n, a) in answers.iter().enumerate() {
        if n != 10 {
            assert_ne!(*a, Answer::Right, "a wrong secret accepted: {answers:?}");
        }
    }
    let after = env.account(SOFIA).await.unwrap();
    match answers[10] {
        Answer::Right => assert_ne!(after, before, "the accepted right secret took effect"),
        Answer::Locked => assert_eq!(after, before, "the refused right secret changed nothing"),
        other => panic!("the right try answered {other:?}: {answers:?}"),
    }
    println!("{secret:?} on {backend:?}: mixed batch {answers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_temp_cp_tries_evaluate_at_most_five_on_memory() {
    parallel_tries_evaluate_at_most_the_limit(Secret::TempCp, Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_temp_cp_tries_evaluate_at_most_five_on_redis() {
    parallel_tries_evaluate_at_most_the_limit(Secret::TempCp, Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_temp_cp_tries_evaluate_at_most_five_across_two_processes() {
    parallel_tries_evaluate_at_most_the_limit(Secret::TempCp, Backend::TwoProcesses).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_current_cp_tries_evaluate_at_most_five_on_memory() {
    parallel_tries_evaluate_at_most_the_limit(Secret::CurrentCp, Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_current_cp_tries_evaluate_at_most_five_on_redis() {
    parallel_tries_evaluate_at_most_the_limit(Secret::CurrentCp, Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_current_cp_tries_evaluate_at_most_five_across_two_processes() {
    parallel_tries_evaluate_at_most_the_limit(Secret::CurrentCp, Backend::TwoProcesses).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_recovery_answers_evaluate_at_most_five_on_memory() {
    parallel_tries_evaluate_at_most_the_limit(Secret::Recovery, Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_recovery_answers_evaluate_at_most_five_on_redis() {
    parallel_tries_evaluate_at_most_the_limit(Secret::Recovery, Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_recovery_answers_evaluate_at_most_five_across_two_processes() {
    parallel_tries_evaluate_at_most_the_limit(Secret::Recovery, Backend::TwoProcesses).await;
}

/// 10 parallel «Accetto» posts (and then 10 parallel «Ripetizione invio») of one
/// session: exactly one message each time at the real SMTP listener; the posts that
/// lost the race did not count against the resend limit.
async fn parallel_posts_send_one_mail(backend: Backend) {
    let rh = RaceHarness::start(backend).await;
    let h = &rh.h;
    let env = &h.env;
    let email = "giulia.b@posta.example.it";
    let c = env.client();
    first_login(env, &c, GIULIA).await;
    fill_in_and_confirm(env, &c, email, ANSWER).await;
    let csrf = env.csrf_of(&c, "/abilitazione/adesione").await;
    let post = |path: &'static str, n: usize| {
        let (c, csrf, base) = (c.clone(), csrf.clone(), rh.gateway(n).to_owned());
        async move {
            let r = post_at(&base, &c, path, &[("csrf", csrf)]).await;
            let status = r.status().as_u16();
            let to = location(&r);
            let body = r.text().await.unwrap();
            assert!(status < 500, "{path} #{n} at {base}: {status}:\n{body}");
            let to = to
                .split_once('?')
                .map_or(to.as_str(), |(p, _)| p)
                .to_owned();
            (status, to)
        }
    };

    // A post that did not send changed nothing: it found the transition claimed by
    // another post (409) or, after it, a step that no longer fits (303 to the step).
    let others_changed_nothing = |answers: &[(u16, String)], winner: &str| {
        for (status, to) in answers {
            assert!(
                (*status == 303 && (to == winner || to == "/abilitazione")) || *status == 409,
                "{answers:?}"
            );
        }
    };
    let answers = join_all((0..10).map(|n| post("/abilitazione/adesione", n))).await;
    let sent = answers
        .iter()
        .filter(|(s, to)| *s == 303 && to == "/abilitazione/inviata")
        .count();
    assert_eq!(sent, 1, "one «Accetto» went through: {answers:?}");
    others_changed_nothing(&answers, "/abilitazione/inviata");
    // Every answer is in, and a post sends before it answers: the count is final.
    let mails = h.wait_for_mails(1).await;
    let first = temp_cp_of(&mails[0], email, test_user(GIULIA));
    let account = env.account(GIULIA).await.unwrap();
    assert_eq!(account.enablement_state, EnablementState::TempCpSent);

    let answers = join_all((0..10).map(|n| post("/abilitazione/reinvio", n))).await;
    let resent = answers
        .iter()
        .filter(|(s, to)| *s == 303 && to == "/abilitazione/cambio-cp")
        .count();
    assert_eq!(
        resent, 1,
        "one «Ripetizione invio» went through: {answers:?}"
    );
    others_changed_nothing(&answers, "/abilitazione/cambio-cp");
    let mails = h.wait_for_mails(2).await;
    let second = temp_cp_of(&mails[1], email, test_user(GIULIA));
    assert_ne!(second, first);
    // The nine posts that lost did not use up the day's allowance (5): four more
    // resends go through, the fifth after the racing one is refused.
    for resend in 2..=5 {
        let r = env.post_form(&c, "/abilitazione/reinvio", &[]).await;
        expect_redirect(r, "/abilitazione/cambio-cp", &format!("resend #{resend}")).await;
    }
    let r = env.post_form(&c, "/abilitazione/reinvio", &[]).await;
    expect_error(r, 429, "POLIS_RESEND_LIMIT", "resend #6").await;
    let mails = h.wait_for_mails(6).await;
    let last = temp_cp_of(&mails[5], email, test_user(GIULIA));
    let r = change_temp_cp(env, &c, &second, NEW_CP).await;
    expect_error(r, 422, "POLIS_TEMP_CP_WRONG", "a replaced CP").await;
    let r = change_temp_cp(env, &c, &last, NEW_CP).await;
    expect_redirect(r, "/abilitazione/completata", "the CP of the last resend").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_parallel_accetto_posts_send_one_mail_on_memory() {
    parallel_posts_send_one_mail(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_parallel_accetto_posts_send_one_mail_across_two_processes() {
    parallel_posts_send_one_mail(Backend::TwoProcesses).await;
}

/// 100 different people, all called Mario Rossi, log in for the first time at once
/// (Responses crafted with the mock IdP's key, each with its own valid codice fiscale):
/// 100 accounts, `mario.rossi` and `mario.rossi2` … `mario.rossi100`, no 5xx.
async fn a_hundred_namesakes_log_in_at_once(database: Database) {
    let h = Harness::start(database, false).await;
    let env = &h.env;
    let codes = crate::support::mario_rossi_fiscal_codes(100);
    let mut logins = Vec::new();
    for code in &codes {
        let c = env.client();
        let pending = env.start_login(&c, 2).await;
        let mut craft = Craft::for_login(env, &pending);
        for (name, value) in &mut craft.attributes {
            match name.as_str() {
                "fiscalNumber" => *value = format!("TINIT-{code}"),
                "spidCode" => *value = format!("MOCK{}", &code[6..10]),
                "email" => *value = format!("{}@example.it", code.to_lowercase()),
                _ => {}
            }
        }
        logins.push((c, craft.build(&env.idp_key), pending.relay_state));
    }
    let started = std::time::Instant::now();
    let acs = format!("{}/acs", env.gw);
    let gw = env.gw.clone();
    let answers = join_all(logins.into_iter().map(|(c, xml, relay)| {
        let (acs, gw) = (acs.clone(), gw.clone());
        async move {
            let response = base64::engine::general_purpose::STANDARD.encode(xml);
            let r = c
                .post(acs)
                .form(&[("SAMLResponse", response), ("RelayState", relay)])
                .send()
                .await
                .unwrap();
            // The browser follows the ACS to /login/complete, where the session opens.
            let to = location(&r);
            if r.status() != 303 || !to.starts_with("/login/complete?") {
                return (r.status().as_u16(), to);
            }
            let r = c.get(format!("{gw}{to}")).send().await.unwrap();
            (r.status().as_u16(), location(&r))
        }
    }))
    .await;
    let took = started.elapsed();
    for (n, (status, to)) in answers.iter().enumerate() {
        assert_eq!(
            (*status, to.as_str()),
            (303, "/abilitazione"),
            "login #{n} ({}): {answers:?}",
            codes[n]
        );
    }
    let mut usernames = std::collections::HashSet::new();
    for code in &codes {
        let account = env.account(code).await.expect("an account for each person");
        assert_eq!(
            (account.given_name.as_str(), account.family_name.as_str()),
            ("Mario", "Rossi")
        );
        usernames.insert(account.username);
    }
    let expected: std::collections::HashSet<String> = std::iter::once("mario.rossi".to_owned())
        .chain((2..=100).map(|n| format!("mario.rossi{n}")))
        .collect();
    assert_eq!(usernames, expected);
    println!("100 concurrent first logins of namesakes answered in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_namesakes_log_in_at_once_on_sqlite() {
    a_hundred_namesakes_log_in_at_once(Database::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_namesakes_log_in_at_once_on_postgres() {
    a_hundred_namesakes_log_in_at_once(postgres()).await;
}

// ---------------------------------------------------------------------------------------
// The demo outbox pages (demo environment, outbox transport)
// ---------------------------------------------------------------------------------------

/// A date string (`CreationDate`, `ModDate`) of a PDF's information dictionary.
fn pdf_info_date(pdf: &[u8], key: &[u8]) -> String {
    let doc = lopdf::Document::load_mem(pdf).unwrap();
    let info = doc.trailer.get(b"Info").unwrap().as_reference().unwrap();
    let dict = doc.get_dictionary(info).unwrap();
    String::from_utf8(dict.get(key).unwrap().as_str().unwrap().to_vec()).unwrap()
}

/// The message page of a real temporary-CP e-mail shows the message read back (not its
/// MIME source), each attachment link opens its PDF, dated when it was made; bad ids,
/// numbers and a broken file get Italian error pages.
#[tokio::test]
async fn demo_outbox_renders_the_message_and_opens_its_pdfs() {
    let env = Env::start_with(
        std::sync::Arc::new(MemoryStore::new()),
        EnvOptions {
            environment: "demo",
            ..EnvOptions::default()
        },
    )
    .await;
    let h = Harness { env, smtp: None };
    let env = &h.env;
    let c = env.client();
    let email = "mario.rossi.con.un.indirizzo.molto.lungo.per.il.telefono@posta.example.it";
    let temp = until_temp_cp_sent(&h, &c, MARIO, email, ANSWER).await;
    let issued_at = env.account(MARIO).await.unwrap().temp_cp.unwrap().issued_at;

    let (status, list) = env.get(&c, "/demo/posta").await;
    assert_eq!(status, 200, "{list}");
    assert!(list.contains(CP_SUBJECT), "{list}");
    assert!(list.contains("(ora italiana)"), "{list}");
    let file = list
        .split("href=\"/demo/posta/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    assert!(file.ends_with(".eml"), "{file}");

    let r = c
        .get(format!("{}/demo/posta/{file}", env.gw))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let page = r.text().await.unwrap();
    assert!(page.contains(CP_SUBJECT), "{page}");
    assert!(
        page.contains(&format!("Codice Personale temporaneo: {temp}")),
        "{page}"
    );
    assert!(page.contains(email), "{page}");
    assert!(page.contains(MAIL_FROM), "{page}");
    assert!(page.contains("(ora italiana)"), "{page}");
    for mime in [
        "Content-Transfer-Encoding",
        "Content-Type: multipart",
        "MIME-Version",
        "JVBERi0",
    ] {
        assert!(!page.contains(mime), "{mime} in {page}");
    }
    // The quoted-printable body is decoded.
    assert!(page.contains("sarà chiesto"), "{page}");
    assert!(page.contains(&format!("/demo/posta/{file}/eml")), "{page}");

    let want_date = issued_at.format("D:%Y%m%d%H%M%S+00'00'").to_string();
    let beyond = format!("/demo/posta/{file}/allegati/2");
    assert!(!page.contains(&beyond), "one attachment only: {page}");
    for (n, name) in [(1, "modulo-adesione.pdf")] {
        let href = format!("/demo/posta/{file}/allegati/{n}");
        assert!(page.contains(&href), "{href} in {page}");
        assert!(page.contains(name), "{name} in {page}");
        let r = c.get(format!("{}{href}", env.gw)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{href}");
        let headers = r.headers().clone();
        assert_eq!(headers["content-type"], "application/pdf");
        assert_eq!(
            headers["content-disposition"],
            format!("inline; filename=\"{name}\"").as_str()
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["cache-control"], "no-store");
        let pdf = r.bytes().await.unwrap();
        assert!(pdf.starts_with(b"%PDF-"), "{href}");
        assert_eq!(pdf_info_date(&pdf, b"CreationDate"), want_date, "{href}");
        assert_eq!(pdf_info_date(&pdf, b"ModDate"), want_date, "{href}");
    }

    // The raw message, for developers: as text, with its MIME headers.
    let r = c
        .get(format!("{}/demo/posta/{file}/eml", env.gw))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Content-Transfer-Encoding")
    );

    // Out of range, not a number, unknown or unsafe ids: the Italian 404 page.
    for path in [
        format!("/demo/posta/{file}/allegati/3"),
        format!("/demo/posta/{file}/allegati/0"),
        format!("/demo/posta/{file}/allegati/uno"),
        format!("/demo/posta/{file}/allegati/18446744073709551616"),
        "/demo/posta/20260101T000000Z-missing.eml".to_owned(),
        "/demo/posta/20260101T000000Z-missing.eml/allegati/1".to_owned(),
        "/demo/posta/20260101T000000Z-missing.eml/eml".to_owned(),
        "/demo/posta/..%2Fpolis.db".to_owned(),
        "/demo/posta/x.txt".to_owned(),
    ] {
        let (status, body) = env.get(&c, &path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.contains("Pagina non trovata"), "{path}: {body}");
    }

    // A stored file that is not a message: its own page, no panic.
    let broken = "20260101T000000.000000Z-broken.eml";
    std::fs::write(env.outbox_dir.join(broken), "questo non è un messaggio").unwrap();
    for path in [
        format!("/demo/posta/{broken}"),
        format!("/demo/posta/{broken}/allegati/1"),
    ] {
        let (status, body) = env.get(&c, &path).await;
        assert_eq!(status, 422, "{path}: {body}");
        assert!(body.contains("Messaggio non leggibile"), "{path}: {body}");
        assert!(
            body.contains("POLIS_MAIL_OUTBOX_MALFORMED"),
            "{path}: {body}"
        );
    }
    // The listing still shows the others.
    let (status, list) = env.get(&c, "/demo/posta").await;
    assert_eq!(status, 200);
    assert!(list.contains(CP_SUBJECT), "{list}");
}

/// `/favicon.ico` is the project's icon, cached like the other static files; every page
/// links it.
#[tokio::test]
async fn favicon_is_served() {
    let h = Harness::start(Database::Sqlite, false).await;
    let env = &h.env;
    let c = env.client();
    for (path, kind) in [
        ("/favicon.ico", "image/x-icon"),
        ("/static/favicon.svg", "image/svg+xml"),
    ] {
        let r = c.get(format!("{}{path}", env.gw)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], kind, "{path}");
        assert_eq!(
            r.headers()["cache-control"],
            "public, max-age=3600",
            "{path}"
        );
        assert!(!r.bytes().await.unwrap().is_empty());
    }
    let (_, login) = env.get(&c, "/login").await;
    assert!(login.contains("rel=\"icon\""), "{login}");
    // The mock IdP's pages too.
    let r = c
        .get(format!("{}/favicon.ico", env.idp))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/x-icon");
}

// ---------------------------------------------------------------------------------------
// Session expiry
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn after_expiry_a_link_says_so_and_a_form_keeps_what_was_typed_for_its_owner() {
    // `[session]` idle 1800 s (the harness default).
    let h = Harness::start(Database::Sqlite, false).await;
    let env = &h.env;

    // A link followed after the session expired: «La sessione è scaduta», the cookie
    // dropped; then, with no cookie left, the usual way home.
    let c = env.client();
    expect_redirect(env.login(&c, MARIO).await, "/abilitazione", "login").await;
    env.clock.advance(chrono::Duration::seconds(1801));
    let (status, body) = env.get(&c, "/abilitazione/domanda").await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("La sessione è scaduta"), "{body}");
    assert!(body.contains("POLIS_SESSION_EXPIRED"), "{body}");
    let r = c
        .get(format!("{}/abilitazione/domanda", env.gw))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "the expired cookie was dropped");

    // A form posted after expiry: the same page, nothing saved, what was typed kept
    // (never the CSRF token or a secret) for the same person's next login.
    let c = env.client();
    expect_redirect(env.login(&c, GIULIA).await, "/abilitazione", "login").await;
    let token = csrf(&page(env, &c, "/abilitazione/richiesta").await);
    env.clock.advance(chrono::Duration::seconds(1801));
    let mut typed = request_fields("giulia.b@posta.example.it");
    typed.push(("csrf", token.clone()));
    typed.push(("answer", "segreto".to_owned()));
    let r = env
        .post_raw(&c, "/abilitazione/richiesta", &pairs(&typed))
        .await;
    assert_eq!(r.status(), 401);
    let body = r.text().await.unwrap();
    assert!(body.contains("La sessione è scaduta"), "{body}");
    assert!(body.contains("li abbiamo conservati"), "{body}");
    let account = env.account(GIULIA).await.unwrap();
    assert!(account.domicile.is_none(), "nothing saved");

    // Someone else logging in on this browser gets nothing of it.
    expect_redirect(env.login(&c, LUCA).await, "/abilitazione", "login").await;
    let other = page(env, &c, "/abilitazione/richiesta").await;
    assert!(!other.contains("Via dei Mille 5"), "{other}");
    assert!(!other.contains("giulia.b@"), "{other}");

    // Giulia, logging in again, finds her data in the form, once.
    let c = env.client();
    expect_redirect(env.login(&c, GIULIA).await, "/abilitazione", "login").await;
    let html = page(env, &c, "/abilitazione/richiesta").await;
    assert!(html.contains("Abbiamo ritrovato i dati"), "{html}");
    assert_eq!(
        input_value(&html, "street").as_deref(),
        Some("Via dei Mille 5")
    );
    assert_eq!(
        input_value(&html, "email").as_deref(),
        Some("giulia.b@posta.example.it")
    );
    assert_ne!(input_value(&html, "csrf").as_deref(), Some(token.as_str()));
    let again = page(env, &c, "/abilitazione/richiesta").await;
    assert!(!again.contains("Abbiamo ritrovato i dati"), "once: {again}");

    // After «Esci», the cookie gone, a form post is the plain 401: nothing expired.
    let html = page(env, &c, "/abilitazione/richiesta").await;
    let token = csrf(&html);
    let r = env.post_raw(&c, "/logout", &[("csrf", &token)]).await;
    assert!(r.status().is_redirection());
    let r = env
        .post_raw(&c, "/abilitazione/richiesta", &[("csrf", &token)])
        .await;
    assert_eq!(r.status(), 401);
    let body = r.text().await.unwrap();
    assert!(body.contains("POLIS_SESSION_REQUIRED"), "{body}");
}
