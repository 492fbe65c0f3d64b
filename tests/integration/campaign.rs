//! Inactivity campaigns end to end: real pages for the abilitazione, the real SQLite
//! database and outbox, the gateway's clock moved to each notice day; a run that
//! "crashes" (its task aborted while a mail is in flight) and the rerun; revocation at
//! the deadline, the revoked person told why and enabled again; a revocation ending
//! the live session and the OpenID Connect tokens of a person.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use polis_gateway::accounts::{EnablementState, RevokedBy};
use polis_gateway::campaign::{Progress, ReportRow, Rule, RunOptions, Window};
use polis_gateway::clock::{Clock as _, rome_midnight, rome_today};
use polis_gateway::mail::{MailError, Mailer, OutgoingMail};
use polis_gateway::state::MemoryStore;

use crate::support::eventually;
use crate::support::gateway::{Env, EnvOptions};

const SUBJECT: &str = "la tua abilitazione sarà revocata";

fn rule() -> Rule {
    Rule::new("inactivity-15m".into(), Window::Months(15), &[90, 30, 1]).unwrap()
}

fn options() -> RunOptions {
    RunOptions {
        concurrency: 1,
        batch_size: 2,
        mails_per_second: None,
        ..RunOptions::default()
    }
}

/// Moves the gateway's clock to noon (Italian time) of `day`.
fn go_to(env: &Env, day: NaiveDate) {
    let target = rome_midnight(day) + chrono::Duration::hours(12);
    env.clock.advance(target - env.clock.now());
}

/// The notices in the outbox, per recipient.
fn notices_to(env: &Env, email: &str) -> Vec<String> {
    env.outbox_messages()
        .into_iter()
        .filter(|m| m.subject.contains(SUBJECT) && m.to.iter().any(|t| t == email))
        .map(|m| m.text.unwrap_or_default())
        .collect()
}

async fn run(env: &Env) -> (Progress, Vec<ReportRow>) {
    run_with(env, &options()).await
}

/// One run of [`rule`] with `options`: its progress and its report rows.
async fn run_with(env: &Env, options: &RunOptions) -> (Progress, Vec<ReportRow>) {
    let mut rows = Vec::new();
    let progress = env
        .campaign
        .run(
            &rule(),
            options,
            &mut |row| {
                rows.push(row.clone());
                Ok(())
            },
            &mut |_| {},
        )
        .await
        .unwrap();
    (progress, rows)
}

fn email_of(cf: &str) -> String {
    format!("{}@posta.example.it", cf.to_lowercase())
}

/// Delivers through the gateway's outbox, but the `hang_at`-th call (1-based) never
/// returns once its mail is delivered: a process killed after the mail server took
/// the message and before the campaign recorded it.
struct HangsAfterDelivering {
    inner: Arc<dyn Mailer>,
    calls: AtomicUsize,
    hang_at: usize,
}

#[async_trait::async_trait]
impl Mailer for HangsAfterDelivering {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.send(mail).await?;
        if n == self.hang_at {
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

/// Sends into the outbox directory of the Env (what the gateway's own mailer does).
fn outbox_mailer(env: &Env) -> Arc<dyn Mailer> {
    let from = polis_gateway::mail::MailFrom {
        address: "noreply@istanze.example.it".into(),
        name: "Istanze OnLine".into(),
    };
    Arc::new(polis_gateway::mail::outbox::OutboxMailer::new(from, &env.outbox_dir).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_notice_goes_out_once_across_a_crash_and_the_deadline_revokes() {
    let env = Env::start_with(Arc::new(MemoryStore::new()), EnvOptions::default()).await;
    let people: Vec<String> = ["RSSMRA80A01H501U", "BNCGLI85M52F205H", "VRDLCU72T10L219N"]
        .map(String::from)
        .to_vec();
    for cf in &people {
        env.enable_account(&env.client(), cf, "Scuola2026x").await;
    }
    // Each was last seen on the same day, some 100 days short of 15 months ago.
    let today = rome_today(env.clock.now());
    let last_day = (today + chrono::Days::new(100))
        .checked_sub_months(chrono::Months::new(15))
        .unwrap();
    let deadline = rule().deadline(last_day);
    let seen = rome_midnight(last_day) + chrono::Duration::hours(9);
    let mut ids = Vec::new();
    for cf in &people {
        let account = env.account(cf).await.unwrap();
        env.accounts
            .touch_last_access(account.id, None, seen)
            .await
            .unwrap();
        ids.push(account.id);
    }

    // Not yet: 91 days before.
    go_to(&env, deadline - chrono::Days::new(91));
    let (p, _) = run(&env).await;
    assert_eq!((p.notified, p.revoked), (0, 0), "{p:?}");

    // 90 days before: the run dies on its second mail, after the mail server took it.
    go_to(&env, deadline - chrono::Days::new(90));
    let crashing = env.campaign.with_mailer(Arc::new(HangsAfterDelivering {
        inner: outbox_mailer(&env),
        calls: AtomicUsize::new(0),
        hang_at: 2,
    }));
    let task = tokio::spawn(async move {
        crashing
            .run(&rule(), &options(), &mut |_| Ok(()), &mut |_| {})
            .await
    });
    let delivered = || {
        people
            .iter()
            .filter(|cf| !notices_to(&env, &email_of(cf)).is_empty())
            .count()
    };
    eventually(Duration::from_secs(20), "two notices delivered", || {
        std::future::ready((delivered() == 2).then_some(()))
    })
    .await;
    task.abort();
    let _ = task.await;
    // The rerun sends the third only; the same day again sends nothing.
    let (p, rows) = run(&env).await;
    assert_eq!((p.notified, p.already_notified), (1, 2), "{p:?} {rows:?}");
    let (p, _) = run(&env).await;
    assert_eq!((p.notified, p.already_notified), (0, 3), "{p:?}");
    let announced = polis_gateway::clock::italian_date(deadline);
    for cf in &people {
        let notices = notices_to(&env, &email_of(cf));
        assert_eq!(notices.len(), 1, "{cf}: one 90-day notice");
        assert!(notices[0].contains(&announced), "{}", notices[0]);
    }

    // 30 days before, twice, and the next day: one more each.
    go_to(&env, deadline - chrono::Days::new(30));
    assert_eq!(run(&env).await.0.notified, 3);
    assert_eq!(run(&env).await.0.notified, 0);
    go_to(&env, deadline - chrono::Days::new(29));
    assert_eq!(run(&env).await.0.notified, 0);
    // The day before: the last notice. The second person logs in that day.
    go_to(&env, deadline - chrono::Days::new(1));
    assert_eq!(run(&env).await.0.notified, 3);
    for cf in &people {
        assert_eq!(notices_to(&env, &email_of(cf)).len(), 3, "{cf}: 90, 30, 1");
    }
    let r = env.login(&env.client(), &people[1]).await;
    assert_eq!(r.status(), 303);

    // The deadline: the other two are revoked, the one who logged in is not.
    go_to(&env, deadline);
    let (p, rows) = run(&env).await;
    assert_eq!(p.revoked, 2, "{p:?} {rows:?}");
    let revoked: Vec<_> = rows
        .iter()
        .filter(|r| r.action == "revoked")
        .map(|r| r.account)
        .collect();
    assert!(
        revoked.contains(&ids[0]) && revoked.contains(&ids[2]),
        "{rows:?}"
    );
    assert_eq!(
        env.account(&people[1]).await.unwrap().enablement_state,
        EnablementState::Enabled
    );
    let first = env.account(&people[0]).await.unwrap();
    assert_eq!(first.enablement_state, EnablementState::NotEnabled);
    assert_eq!(first.cp_hash, None);
    let record = first.revocation.clone().unwrap();
    assert_eq!(
        record.by,
        RevokedBy::Campaign {
            name: "inactivity-15m".into()
        }
    );
    // A rerun revokes nobody twice.
    assert_eq!(run(&env).await.0.revoked, 0);

    // The revoked person logs in, reads why, and is enabled again at once.
    let browser = env.client();
    let r = env.login(&browser, &people[0]).await;
    assert_eq!(r.status(), 303);
    let (status, page) = env.get(&browser, "/abilitazione/richiesta").await;
    assert_eq!(status, 200);
    assert!(page.contains("è stata revocata"), "{page}");
    assert!(page.contains("15 mesi"), "{page}");
    env.enable_account_at(&env.client(), &env.idp.clone(), &people[0], "Scuola2027y")
        .await;
    let again = env.account(&people[0]).await.unwrap();
    assert_eq!(again.enablement_state, EnablementState::Enabled);
    assert_eq!(again.revocation, first.revocation, "the history stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dry_run_changes_and_sends_nothing() {
    let env = Env::start_with(Arc::new(MemoryStore::new()), EnvOptions::default()).await;
    let cf = "RSSMRA80A01H501U";
    env.enable_account(&env.client(), cf, "Scuola2026x").await;
    let account = env.account(cf).await.unwrap();
    let long_ago = Utc::now() - chrono::Duration::days(800);
    env.accounts
        .touch_last_access(account.id, None, long_ago)
        .await
        .unwrap();
    let before = env.outbox_messages().len();
    let dry = RunOptions {
        dry_run: true,
        ..options()
    };
    let (p, rows) = run_with(&env, &dry).await;
    // Overdue and never told: the notice is what would go out first.
    assert_eq!((p.notified, p.revoked), (1, 0), "{p:?}");
    assert_eq!(rows.len(), 1);
    assert_eq!(env.outbox_messages().len(), before);
    // A real run then sends it (the dry run claimed nothing), and revokes only once the
    // notice's last day has passed.
    assert_eq!(run(&env).await.0.notified, 1);
    assert_eq!(run(&env).await.0.revoked, 0);
    env.clock.advance(chrono::Duration::days(1));
    assert_eq!(run(&env).await.0.revoked, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_ends_the_live_session_and_the_tokens_of_the_person() {
    let env = Env::start_with(
        Arc::new(MemoryStore::new()),
        EnvOptions {
            oidc: true,
            ..EnvOptions::default()
        },
    )
    .await;
    let cf = "RSSMRA80A01H501U";
    let browser = env.client();
    env.enable_account(&browser, cf, "Scuola2026x").await;
    let (status, _) = env.get(&browser, "/area-riservata").await;
    assert_eq!(status, 200);
    let account = env.account(cf).await.unwrap();
    env.enablement
        .revoke(
            account.id,
            polis_gateway::enablement::Revocation {
                by: RevokedBy::HelpDesk {
                    operator: "BNCGLI85M52F205H".into(),
                },
                reason: "richiesta della persona".into(),
            },
        )
        .await
        .unwrap();
    let (status, _) = env.get(&browser, "/area-riservata").await;
    assert_ne!(
        status, 200,
        "the session opened before the revocation ended"
    );
    // A new login opens a new session, which the revocation does not touch.
    let r = env.login(&browser, cf).await;
    assert_eq!(r.status(), 303);
    let (status, page) = env.get(&browser, "/abilitazione/richiesta").await;
    assert_eq!(status, 200);
    assert!(page.contains("richiesta della persona"), "{page}");
}

/// Two replicas' daily runs at once (two concurrent runs on one database): every
/// notice goes out once, whichever run claimed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_runs_at_once_send_each_notice_once() {
    let env = Env::start_with(Arc::new(MemoryStore::new()), EnvOptions::default()).await;
    let people: Vec<String> = ["RSSMRA80A01H501U", "BNCGLI85M52F205H", "VRDLCU72T10L219N"]
        .map(String::from)
        .to_vec();
    for cf in &people {
        env.enable_account(&env.client(), cf, "Scuola2026x").await;
        let account = env.account(cf).await.unwrap();
        let long_ago = Utc::now() - chrono::Duration::days(800);
        env.accounts
            .touch_last_access(account.id, None, long_ago)
            .await
            .unwrap();
    }
    let (a, b) = tokio::join!(run(&env), run(&env));
    assert_eq!(a.0.notified + b.0.notified, 3, "{a:?} {b:?}");
    for cf in &people {
        assert_eq!(notices_to(&env, &email_of(cf)).len(), 1, "{cf}");
    }
}
