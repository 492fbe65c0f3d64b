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
use crate::clock::ManualClock;
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
    let service = EnablementService::new(
        accounts.clone(),
        Arc::new(MemoryStore::new()),
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
    }
}

impl Fixture {
    /// Mario Rossi's account, with an e-mail, in `state`.
    pub(crate) async fn account_in(&self, state: EnablementState) -> Account {
        let cf = FiscalCode::parse("RSSMRA80A01H501U").unwrap();
        let mut new = NewAccount::new(cf, "Mario".to_owned(), "Rossi".to_owned());
        new.email = Some("mario.rossi@posta.example.it".to_owned());
        let mut account = self.accounts.create(&new).await.unwrap();
        account.enablement_state = state;
        self.accounts.update(&account).await.unwrap()
    }
}
