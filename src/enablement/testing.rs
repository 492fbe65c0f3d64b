//! Test support for the service: SQLite in memory, the memory state store, a mailer
//! that records, a stopped [`ManualClock`].

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeZone, Utc};

use super::cp::CpKey;
use super::{EnablementService, EnablementSettings};
use crate::accounts::{Account, AccountStore, EnablementState, FiscalCode, NewAccount};
use crate::blocking::{BlockingPool, PoolLimits};
use crate::clock::{Clock as _, ManualClock};
use crate::mail::{MailError, Mailer, OutgoingMail};
use crate::state::MemoryStore;

/// A mailer that keeps what it was given.
#[derive(Debug, Default)]
pub(crate) struct Recorder(Mutex<Vec<OutgoingMail>>);

impl Recorder {
    pub(crate) fn sent(&self) -> Vec<OutgoingMail> {
        self.0.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Mailer for Recorder {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError> {
        self.0.lock().unwrap().push(mail.clone());
        Ok(())
    }
}

/// A service and what it works with.
pub(crate) struct Fixture {
    pub(crate) service: EnablementService,
    pub(crate) accounts: Arc<dyn AccountStore>,
    pub(crate) mails: Arc<Recorder>,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) state: Arc<dyn crate::state::StateStore>,
}

/// `cp.temp_cp_ttl_seconds` of the fixture.
pub(crate) const TEMP_CP_TTL: Duration = Duration::from_secs(72 * 3600);

pub(crate) async fn fixture() -> Fixture {
    let store = crate::accounts::SqlAccountStore::connect("sqlite::memory:", 1)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let clock = ManualClock::at(Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap());
    let accounts: Arc<dyn AccountStore> = Arc::new(store.with_clock(clock.clone()));
    let mails = Arc::new(Recorder::default());
    let state: Arc<dyn crate::state::StateStore> = Arc::new(MemoryStore::new());
    let service = EnablementService::new(
        accounts.clone(),
        state.clone(),
        mails.clone(),
        CpKey::from_bytes(&[7u8; 32]).unwrap(),
        EnablementSettings {
            temp_cp_ttl: TEMP_CP_TTL,
            max_attempts: 5,
            lockout: Duration::from_secs(900),
            max_resends_per_day: 5,
            public_url: "https://polis.example.it".to_owned(),
        },
        BlockingPool::new(
            "argon2",
            PoolLimits {
                workers: 2,
                queue_wait: Duration::from_secs(30),
                deadline: Duration::from_secs(60),
            },
        ),
        clock.clone(),
    );
    Fixture {
        service,
        accounts,
        mails,
        clock,
        state,
    }
}

impl Fixture {
    /// Mario Rossi's account, with an e-mail, in `state`.
    pub(crate) async fn account_in(&self, state: EnablementState) -> Account {
        let cf = FiscalCode::parse("RSSMRA80A01H501U").unwrap();
        self.account_for(cf, state).await
    }

    /// An enabled account of Mario Rossi, with a CP, a recovery answer and a document.
    pub(crate) async fn enabled_account(&self) -> Account {
        let cf = FiscalCode::parse("RSSMRA80A01H501U").unwrap();
        self.enabled_account_for(cf).await
    }

    /// An enabled account of `cf`, with a CP, a recovery answer and a document.
    pub(crate) async fn enabled_account_for(&self, cf: FiscalCode) -> Account {
        let mut account = self.account_for(cf, EnablementState::Enabled).await;
        account.cp_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned());
        account.cp_history = vec!["$argon2id$v=19$m=19456,t=2,p=1$c2FsdDE$aGFzaDE".to_owned()];
        account.recovery_question = Some("nome del primo animale".to_owned());
        account.recovery_answer_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$cw$aA".to_owned());
        account.enabled_at = Some(self.clock.now());
        account.id_document = Some(crate::accounts::IdDocument {
            kind: "Passaporto".to_owned(),
            number: "YA1234567".to_owned(),
            issuer: "Questura di Roma".to_owned(),
            issued_on: chrono::NaiveDate::from_ymd_opt(2020, 1, 1).unwrap(),
            expires_on: chrono::NaiveDate::from_ymd_opt(2030, 1, 1).unwrap(),
        });
        self.accounts.update(&account).await.unwrap()
    }

    /// `cf`'s account, with an e-mail, in `state`.
    pub(crate) async fn account_for(&self, cf: FiscalCode, state: EnablementState) -> Account {
        let mut new = NewAccount::new(cf, "Mario".to_owned(), "Rossi".to_owned());
        new.email = Some("mario.rossi@posta.example.it".to_owned());
        let mut account = self.accounts.create(&new).await.unwrap();
        account.enablement_state = state;
        self.accounts.update(&account).await.unwrap()
    }
}
