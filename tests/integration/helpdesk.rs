//! The help-desk console (`/assistenza`) over real HTTP with the mock IdP: who gets in,
//! an operator unlocking a CP the person locked through the real pages, the audit log,
//! the person's personal area, refused forms that change nothing, no hash on any page.

use std::sync::Arc;

use polis_gateway::accounts::{AuditOutcome, EnablementState, HelpdeskAction};
use polis_gateway::clock::Clock as _;
use polis_gateway::state::MemoryStore;

use crate::support::gateway::{Env, EnvOptions, temp_cp_in};

/// The person helped (Mario Rossi at the mock IdP).
const PERSON: &str = "RSSMRA80A01H501U";
/// An operator (Giulia Bianchi).
const OPERATOR: &str = "BNCGLI85M52F205H";
/// A supervisor (Luca Verdi).
const SUPERVISOR: &str = "VRDLCU72T10L219N";
/// Someone the config does not list (Sofia Esposito).
const UNLISTED: &str = "ESPSFO90E41A662F";
/// Mario's CP.
const CP: &str = "Scuola2026x";
const WRONG_CP: &str = "Sbagliato99x";

async fn start() -> Env {
    start_with("").await
}

/// A gateway whose `[helpdesk]` lists [`OPERATOR`] and [`SUPERVISOR`], with `extra` config.
async fn start_with(extra: &str) -> Env {
    let opts = EnvOptions {
        extra_toml: format!(
            "\n[helpdesk]\noperators = [\"{OPERATOR}\"]\nsupervisors = [\"{SUPERVISOR}\"]\n{extra}"
        ),
        ..EnvOptions::default()
    };
    Env::start_with(Arc::new(MemoryStore::new()), opts).await
}

/// A browser with a level-2 session of `user`.
async fn session_of(env: &Env, user: &str) -> reqwest::Client {
    let c = env.client();
    let r = env.login(&c, user).await;
    assert_eq!(r.status(), 303, "login of {user}");
    c
}

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Status and body of a response.
async fn answer(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// Tries a CP change with `current` on the person's personal area.
async fn try_cp(env: &Env, c: &reqwest::Client, current: &str) -> (u16, String) {
    let fields = [
        ("current_cp", current),
        ("new_cp", "Nuovo2026yy"),
        ("new_cp_repeat", "Nuovo2026yy"),
    ];
    let r = env.post_form(c, "/area-riservata/cambio-cp", &fields).await;
    let status = r.status().as_u16();
    let to = location(&r);
    let body = r.text().await.unwrap();
    (status, if status == 303 { to } else { body })
}

/// No page of the console shows a hash, an HMAC or a secret of the account.
fn assert_no_secret(body: &str, account: &polis_gateway::accounts::Account) {
    assert!(
        !body.contains("$argon2"),
        "an argon2 hash on the page:\n{body}"
    );
    for secret in [&account.cp_hash, &account.recovery_answer_hash]
        .into_iter()
        .flatten()
    {
        assert!(!body.contains(secret.as_str()), "a hash on the page");
    }
    for old in &account.cp_history {
        assert!(!body.contains(old.as_str()), "an old CP hash on the page");
    }
    if let Some(temp) = &account.temp_cp {
        assert!(
            !body.contains(&temp.hmac),
            "the temporary CP's HMAC on the page"
        );
        assert!(
            !body.contains(&temp.hmac[..16]),
            "its counter key on the page"
        );
    }
}

/// The acceptance path: the person locks their CP on the real pages; an operator finds
/// them, a missing reason (422) and a missing CSRF token (403) change nothing, the
/// unlock with a reason lets the right CP through, the audit log holds who, what, when
/// and why, and the person's personal area lists the intervention.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_unlocks_a_locked_cp_and_the_person_can_try_again() {
    let env = start().await;
    let person = env.client();
    env.enable_account(&person, PERSON, CP).await;
    for n in 1..=5 {
        let (status, _) = try_cp(&env, &person, WRONG_CP).await;
        assert!(matches!(status, 422 | 429), "wrong CP #{n}: {status}");
    }
    let (status, body) = try_cp(&env, &person, CP).await;
    assert_eq!(status, 429, "locked: the right CP is refused too");
    assert!(body.contains("POLIS_CP_LOCKED"), "{body}");
    let account = env.account(PERSON).await.unwrap();

    let op = session_of(&env, OPERATOR).await;
    assert!(
        env.home(&op).await.contains("href=\"/assistenza\""),
        "the operator's home links the console"
    );
    assert!(
        !env.home(&person).await.contains("/assistenza"),
        "nobody else's does"
    );
    let (status, body) = env.get(&op, "/assistenza").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Cerca una persona"), "{body}");
    let r = env
        .post_form(&op, "/assistenza/cerca", &[("q", "nessuno.qui")])
        .await;
    assert_eq!(r.status(), 404);
    let r = env
        .post_form(&op, "/assistenza/cerca", &[("q", &PERSON.to_lowercase())])
        .await;
    assert_eq!(r.status(), 303);
    let page = location(&r);
    assert_eq!(page, format!("/assistenza/account/{}", account.id));
    let (status, body) = env.get(&op, &page).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("6 tentativi (limite 5)") && body.contains("Bloccato"),
        "{body}"
    );
    assert!(
        body.contains("Ultimi accessi") && body.contains("riuscito"),
        "{body}"
    );
    assert!(body.contains("livello 2"), "{body}");
    assert!(
        !body.contains("Revoca l&#x27;abilitazione") && !body.contains("value=\"revoke\""),
        "operators do not revoke"
    );
    assert_no_secret(&body, &account);
    let action = format!("{page}/intervento");

    // No reason: 422, the form again, nothing changed or recorded.
    let r = env
        .post_form(&op, &action, &[("action", "unlock_cp"), ("reason", "  ")])
        .await;
    let (status, body) = answer(r).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("data-code=\"POLIS_HELPDESK_REASON\""),
        "{body}"
    );
    assert!(body.contains("Il motivo è obbligatorio"), "{body}");
    // No CSRF token: 403 before anything is read.
    let r = env
        .post_raw(
            &op,
            &action,
            &[("action", "unlock_cp"), ("reason", "senza token")],
        )
        .await;
    let (status, body) = answer(r).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("POLIS_CSRF"), "{body}");
    assert!(
        env.accounts
            .entries_for(account.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let (_, body) = env.get(&op, &page).await;
    assert!(
        body.contains("6 tentativi (limite 5)"),
        "still locked:\n{body}"
    );

    let reason = "Telefonata del titolare: ha dimenticato il CP, identità verificata";
    let before = env.clock.now();
    let r = env
        .post_form(&op, &action, &[("action", "unlock_cp"), ("reason", reason)])
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), format!("{page}?fatto=unlock_cp"));
    let (_, body) = env.get(&op, &location(&r)).await;
    assert!(body.contains("Intervento eseguito e registrato"), "{body}");
    assert!(body.contains("0 tentativi (limite 5)"), "{body}");
    assert!(
        body.contains(reason) && body.contains(OPERATOR),
        "the log on the page"
    );

    // The person can try again: the right CP is accepted.
    let (status, to) = try_cp(&env, &person, CP).await;
    assert_eq!(
        (status, to.split('?').next().unwrap()),
        (303, "/area-riservata")
    );

    let entries = env.accounts.entries_for(account.id, 10).await.unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!(e.staff, OPERATOR);
    assert_eq!(e.role, "operator");
    assert_eq!(e.action, HelpdeskAction::UnlockCp);
    assert_eq!(e.reason, reason);
    assert_eq!(e.outcome, AuditOutcome::Done);
    assert!(e.at >= before && e.at <= env.clock.now(), "{:?}", e.at);

    let (status, area) = env.get(&person, "/area-riservata").await;
    assert_eq!(status, 200);
    assert!(
        area.contains("Interventi dell&#x27;assistenza")
            || area.contains("Interventi dell'assistenza"),
        "{area}"
    );
    assert!(
        area.contains("Sblocco del Codice Personale") && area.contains(reason),
        "{area}"
    );
    assert!(!area.contains(OPERATOR), "the person is not told who");
}

/// Only listed codici fiscali at level 2 get in; an operator may not revoke, a
/// supervisor does (audited); nobody acts on their own account; a console nobody is
/// listed for does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn who_may_use_the_console_and_what_each_role_may_do() {
    let env = start().await;
    let anonymous = env.client();
    let (status, _) = env.get(&anonymous, "/assistenza").await;
    assert_eq!(status, 303, "no session: to the home page");

    let unlisted = session_of(&env, UNLISTED).await;
    let (status, body) = env.get(&unlisted, "/assistenza").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("POLIS_HELPDESK_FORBIDDEN"), "{body}");
    let token = env.csrf_of(&unlisted, "/abilitazione/richiesta").await;
    let r = env
        .post_raw(
            &unlisted,
            "/assistenza/cerca",
            &[("q", PERSON), ("csrf", &token)],
        )
        .await;
    assert_eq!(r.status(), 403, "an unlisted person cannot search either");

    // The operator at level 1: refused, whoever they are.
    let low = env.client();
    let answer_l1 = env
        .idp_answer(&low, 1, "redirect", OPERATOR, "success")
        .await;
    let r = env
        .post_acs(&low, &answer_l1.saml_response, &answer_l1.relay_state)
        .await;
    assert_eq!(r.status(), 303);
    let (status, body) = env.get(&low, "/assistenza").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("POLIS_HELPDESK_LEVEL"), "{body}");

    let person = env.client();
    env.enable_account(&person, PERSON, CP).await;
    let account = env.account(PERSON).await.unwrap();
    let page = format!("/assistenza/account/{}", account.id);
    let action = format!("{page}/intervento");

    let op = session_of(&env, OPERATOR).await;
    let r = env
        .post_form(&op, &action, &[("action", "revoke"), ("reason", "prova")])
        .await;
    let (status, body) = answer(r).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("POLIS_HELPDESK_ROLE"), "{body}");
    let own = env.account(OPERATOR).await.unwrap();
    let r = env
        .post_form(
            &op,
            &format!("/assistenza/account/{}/intervento", own.id),
            &[("action", "unlock_cp"), ("reason", "il mio")],
        )
        .await;
    let (status, body) = answer(r).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("POLIS_HELPDESK_OWN_ACCOUNT"), "{body}");
    // A resend does not fit an enabled account: 409, said plainly, nothing recorded.
    let r = env
        .post_form(
            &op,
            &action,
            &[("action", "resend_temp_cp"), ("reason", "mail")],
        )
        .await;
    let (status, body) = answer(r).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("POLIS_HELPDESK_NOT_APPLICABLE"), "{body}");
    assert!(
        env.accounts
            .entries_for(account.id, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let sup = session_of(&env, SUPERVISOR).await;
    let (_, body) = env.get(&sup, &page).await;
    assert!(
        body.contains("value=\"revoke\""),
        "a supervisor is offered the revocation"
    );
    assert_no_secret(&body, &account);
    let reason = "Richiesta scritta del titolare, protocollo 1234";
    let r = env
        .post_form(&sup, &action, &[("action", "revoke"), ("reason", reason)])
        .await;
    assert_eq!(r.status(), 303);
    let revoked = env.account(PERSON).await.unwrap();
    assert_eq!(revoked.enablement_state, EnablementState::NotEnabled);
    assert!(revoked.cp_hash.is_none());
    let entries = env.accounts.entries_for(account.id, 10).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (
            entries[0].staff.as_str(),
            entries[0].role.as_str(),
            entries[0].action
        ),
        (SUPERVISOR, "supervisor", HelpdeskAction::Revoke)
    );
    assert_eq!(entries[0].outcome, AuditOutcome::Done);
    // The person's session ended with the revocation; their next login reads why.
    let (status, _) = env.get(&person, "/area-riservata").await;
    assert_ne!(status, 200, "the revoked session is over");

    // A gateway whose [helpdesk] lists nobody has no console.
    let off = Env::start(Arc::new(MemoryStore::new())).await;
    let c = session_of(&off, OPERATOR).await;
    let (status, body) = off.get(&c, "/assistenza").await;
    assert_eq!(status, 404, "{body}");
}

/// Five wrong temporary CPs on the real page, the last one locking it.
async fn lock_temp_cp(env: &Env, person: &reqwest::Client, right: &str) {
    let wrong: String = right.chars().rev().collect();
    let wrong = if wrong == right {
        "ABCDEFGHJKMN".to_owned()
    } else {
        wrong
    };
    for n in 1..=5 {
        let fields = [
            ("temp_cp", wrong.as_str()),
            ("new_cp", CP),
            ("new_cp_repeat", CP),
        ];
        let r = env
            .post_form(person, "/abilitazione/cambio-cp", &fields)
            .await;
        let status = r.status().as_u16();
        assert!(
            matches!(status, 422 | 429),
            "wrong temporary CP #{n}: {status}"
        );
    }
}

/// The temporary CP: an operator sends a new one (the old one stops working, the mail
/// arrives), then unlocks the new one after the person locked it; the right one is
/// accepted and the abilitazione completes. Both actions are audited, no HMAC shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_sends_a_new_temporary_cp_and_unlocks_it() {
    let env = start().await;
    let person = env.client();
    let first = env
        .until_temp_cp_sent_at(&person, &env.idp.clone(), PERSON)
        .await;
    lock_temp_cp(&env, &person, &first).await;
    let account = env.account(PERSON).await.unwrap();
    let page = format!("/assistenza/account/{}", account.id);
    let action = format!("{page}/intervento");

    let op = session_of(&env, OPERATOR).await;
    let (status, body) = env.get(&op, &page).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("value=\"unlock_temp_cp\"") && body.contains("value=\"resend_temp_cp\""),
        "{body}"
    );
    assert!(body.contains("5 tentativi (limite 5)"), "{body}");
    assert_no_secret(&body, &account);

    let mails = env.outbox_messages().len();
    let r = env
        .post_form(
            &op,
            &action,
            &[
                ("action", "resend_temp_cp"),
                ("reason", "La mail precedente è finita nello spam"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let all = env.outbox_messages();
    assert_eq!(all.len(), mails + 1, "one new message");
    let second = temp_cp_in(&all.last().unwrap().text.clone().unwrap_or_default());
    assert_ne!(second, first);
    let resent = env.account(PERSON).await.unwrap();
    let (_, body) = env.get(&op, &page).await;
    assert!(
        body.contains("0 tentativi (limite 5)"),
        "a new CP, a new counter:\n{body}"
    );
    assert_no_secret(&body, &resent);

    lock_temp_cp(&env, &person, &second).await;
    let fields = [
        ("temp_cp", second.as_str()),
        ("new_cp", CP),
        ("new_cp_repeat", CP),
    ];
    let r = env
        .post_form(&person, "/abilitazione/cambio-cp", &fields)
        .await;
    assert_eq!(
        r.status(),
        429,
        "locked: the right temporary CP is refused too"
    );
    let r = env
        .post_form(
            &op,
            &action,
            &[
                ("action", "unlock_temp_cp"),
                ("reason", "Errori di battitura, identità verificata"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let r = env
        .post_form(&person, "/abilitazione/cambio-cp", &fields)
        .await;
    assert_eq!(r.status(), 303, "the right temporary CP after the unlock");
    assert_eq!(location(&r), "/abilitazione/completata");
    let entries = env.accounts.entries_for(account.id, 10).await.unwrap();
    let actions: Vec<_> = entries
        .iter()
        .map(|e| (e.action, e.outcome.clone()))
        .collect();
    assert_eq!(
        actions,
        [
            (HelpdeskAction::UnlockTempCp, AuditOutcome::Done),
            (HelpdeskAction::ResendTempCp, AuditOutcome::Done)
        ]
    );
}

/// `/assistenza` has its own per-client-IP rate (`helpdesk_per_minute`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_is_rate_limited() {
    let env = start_with("[limits.rate]\nhelpdesk_per_minute = 1\nburst = 2\n").await;
    let op = session_of(&env, OPERATOR).await;
    for _ in 0..2 {
        assert_eq!(env.get(&op, "/assistenza").await.0, 200);
    }
    let (status, body) = env.get(&op, "/assistenza").await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("POLIS_RATE_LIMITED"), "{body}");
}
