//! The `AccountStore` contract: one suite, run on every backend.
//!
//! Each `async fn` below takes an `Arc<dyn AccountStore>` (already migrated) and states
//! one rule of the port. The `contract!` macro runs every one of them on SQLite (module
//! `sqlite`: a database file in a fresh temp dir, as the embedded default) and on
//! PostgreSQL (module `postgres`: a fresh database on one real server shared by the
//! test binary).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use polis_gateway::accounts::{
    AccountError, AccountStore, AuditEntry, AuditOutcome, Domicile, EnablementState, FiscalCode,
    HelpdeskAction, HelpdeskAudit, IdDocument, IdentityKey, NewAccount, Phones, SqlAccountStore,
    TempCp, UniqueField,
};
use polis_gateway::identity::Scheme;
use tempfile::TempDir;

use crate::support::postgres::PostgresServer;
use crate::support::race;

/// Concurrent first logins in the race test.
const RACERS: usize = 20;
/// Pool size of the stores under test (smaller than RACERS, so callers queue too).
const POOL: u32 = 8;

fn cf(code: &str) -> FiscalCode {
    FiscalCode::parse(code).expect("valid test fiscal code")
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("valid timestamp")
        .with_timezone(&Utc)
}

/// The SPID identity of an account's codice fiscale.
fn spid(new: &NewAccount) -> IdentityKey {
    keyed(Scheme::Spid, new)
}

fn keyed(scheme: Scheme, new: &NewAccount) -> IdentityKey {
    let code = new.fiscal_code.as_ref().expect("a fiscal code");
    IdentityKey::new(scheme, code.as_str())
}

/// A person with an eIDAS identity (no codice fiscale).
fn lucia() -> (NewAccount, IdentityKey) {
    let mut new = NewAccount::without_fiscal_code("Lucía", "García");
    new.birth_date = NaiveDate::from_ymd_opt(1990, 5, 4);
    (new, IdentityKey::new(Scheme::Eidas, "ES/IT/02635542Y"))
}

fn mario() -> NewAccount {
    NewAccount::new(cf("RSSMRA80A01H501U"), "Mario", "Rossi")
}

/// A new account with every optional field set.
fn full_new_account() -> NewAccount {
    let mut new = NewAccount::new(cf("BNCGLI85M52F205H"), "Giulia", "Bianchi");
    new.birth_date = NaiveDate::from_ymd_opt(1985, 8, 12);
    new.birth_place = Some("Milano".to_owned());
    new.sex = Some("F".to_owned());
    new.email = Some("giulia.bianchi@example.it".to_owned());
    new.domicile = Some(Domicile {
        street: "Via dell'Università 7".to_owned(),
        postal_code: "20121".to_owned(),
        municipality: "Milano".to_owned(),
        province: "MI".to_owned(),
        nation: "Italia".to_owned(),
    });
    new.phones = Phones {
        mobile: Some("+39 333 1234567".to_owned()),
        landline: None,
    };
    new.id_document = Some(IdDocument {
        kind: "carta d'identità".to_owned(),
        number: "CA12345AB".to_owned(),
        issuer: "Comune di Milano".to_owned(),
        issued_on: NaiveDate::from_ymd_opt(2020, 2, 29).expect("date"),
        expires_on: NaiveDate::from_ymd_opt(2031, 8, 12).expect("date"),
    });
    new.spid_level = Some(2);
    new.spid_code = Some("SPID-0001".to_owned());
    new
}

// ---------------------------------------------------------------------------------------
// The contract
// ---------------------------------------------------------------------------------------

async fn create_then_find(store: Arc<dyn AccountStore>) {
    let created = store.create(&mario()).await.unwrap();
    assert_eq!(created.username, "mario.rossi");
    assert_eq!(created.fiscal_code_str(), Some("RSSMRA80A01H501U"));
    assert_eq!(created.enablement_state, EnablementState::NotEnabled);
    assert_eq!(created.version, 1);
    assert_eq!(created.created_at, created.updated_at);

    let by_id = store.find_by_id(created.id).await.unwrap();
    assert_eq!(by_id.as_ref(), Some(&created));
    let by_cf = store
        .find_by_fiscal_code(created.fiscal_code.as_ref().unwrap())
        .await
        .unwrap();
    assert_eq!(by_cf.as_ref(), Some(&created));
    let by_username = store.find_by_username("mario.rossi").await.unwrap();
    assert_eq!(by_username.as_ref(), Some(&created));

    assert!(
        store
            .find_by_id(uuid::Uuid::new_v4())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .find_by_fiscal_code(&cf("VRDLCU72T10L219N"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .find_by_username("MARIO.ROSSI")
            .await
            .unwrap()
            .is_none()
    );
    store.ping().await.unwrap();
}

async fn username_collisions_get_suffixes(store: Arc<dyn AccountStore>) {
    let codes = ["RSSMRA80A01H501U", "RSSMRA80A01H50MM", "RSSMRA80A01H5LMX"];
    let mut usernames = Vec::new();
    for code in codes {
        let account = store
            .create(&NewAccount::new(cf(code), "Mario", "Rossi"))
            .await
            .unwrap();
        usernames.push(account.username);
    }
    assert_eq!(usernames, ["mario.rossi", "mario.rossi2", "mario.rossi3"]);

    let niccolo = store
        .create(&NewAccount::new(
            cf("VRDLCU72T10L219N"),
            "Niccolò",
            "D'Amico",
        ))
        .await
        .unwrap();
    assert_eq!(niccolo.username, "niccolo.damico");
    // The names themselves keep their accents and apostrophes.
    assert_eq!(niccolo.given_name, "Niccolò");
    assert_eq!(niccolo.family_name, "D'Amico");

    // A base that is a prefix of another does not count the other's suffixes.
    let maria = store
        .create(&NewAccount::new(cf("FRRGPP68C15G273Z"), "Mario", "Rossini"))
        .await
        .unwrap();
    assert_eq!(maria.username, "mario.rossini");
}

async fn concurrent_namesakes_get_distinct_usernames(store: Arc<dyn AccountStore>) {
    // Ten different people called Mario Rossi log in for the first time at once.
    let codes = [
        "RSSMRA80A01H501U",
        "RSSMRA80A01H50MM",
        "RSSMRA80A01H5LMX",
        "RSSMRA80A01HRLMS",
        "RSSMRA80A0MH501M",
        "RSSMRAU0A01H501R",
        "RSSMRAULALMHRLMD",
        "RSSMRA80B29H501Q",
        "RSSMRA80A41H501Y",
        "DMCNCC90A01H501I",
    ];
    let tasks: Vec<_> = codes
        .iter()
        .map(|code| {
            let store = store.clone();
            let new = NewAccount::new(cf(code), "Mario", "Rossi");
            tokio::spawn(async move { store.create(&new).await })
        })
        .collect();
    let mut usernames = HashSet::new();
    for task in tasks {
        usernames.insert(task.await.unwrap().unwrap().username);
    }
    let expected: HashSet<String> = std::iter::once("mario.rossi".to_owned())
        .chain((2..=10).map(|n| format!("mario.rossi{n}")))
        .collect();
    assert_eq!(usernames, expected);
}

async fn a_hundred_concurrent_namesakes_all_get_an_account(store: Arc<dyn AccountStore>) {
    // Issue 8, class 10: with the old "smallest free suffix, retry on collision" scheme
    // some of these ran out of attempts (500 POLIS_ACCOUNTS_ERROR).
    let codes = crate::support::mario_rossi_fiscal_codes(100);
    let results = race(codes.len(), |i| {
        let store = store.clone();
        let new = NewAccount::new(cf(&codes[i]), "Mario", "Rossi");
        async move { store.link_or_create(&new, &spid(&new)).await }
    })
    .await;
    let mut usernames = HashSet::new();
    for result in results {
        let (account, created) = result.unwrap();
        assert!(created);
        usernames.insert(account.username);
    }
    let expected: HashSet<String> = std::iter::once("mario.rossi".to_owned())
        .chain((2..=100).map(|n| format!("mario.rossi{n}")))
        .collect();
    assert_eq!(usernames, expected, "100 distinct usernames, no gaps");
    for code in &codes {
        assert!(
            store
                .find_by_fiscal_code(&cf(code))
                .await
                .unwrap()
                .is_some()
        );
    }
}

async fn a_username_already_taken_by_another_base_is_skipped(store: Arc<dyn AccountStore>) {
    // "Mario Rossi1" (digits survive in usernames) owns `mario.rossi1` and
    // `mario.rossi12`; the twelfth Mario Rossi would draw `mario.rossi12` from his
    // name's counter, finds it taken, and gets the next number instead.
    let codes = crate::support::mario_rossi_fiscal_codes(14);
    let (others, ours) = codes.split_at(2);
    for (code, expected) in others.iter().zip(["mario.rossi1", "mario.rossi12"]) {
        let account = store
            .create(&NewAccount::new(cf(code), "Mario", "Rossi1"))
            .await
            .unwrap();
        assert_eq!(account.username, expected);
    }
    let mut usernames = Vec::new();
    for code in ours {
        let account = store
            .create(&NewAccount::new(cf(code), "Mario", "Rossi"))
            .await
            .unwrap();
        usernames.push(account.username);
    }
    let expected: Vec<String> = std::iter::once("mario.rossi".to_owned())
        .chain((2..=11).map(|n| format!("mario.rossi{n}")))
        .chain(std::iter::once("mario.rossi13".to_owned()))
        .collect();
    assert_eq!(usernames, expected);
    // And the counter went on from there.
    let next = store
        .create(&NewAccount::new(cf("VRDLCU72T10L219N"), "Mario", "Rossi"))
        .await
        .unwrap();
    assert_eq!(next.username, "mario.rossi14");
}

async fn fiscal_code_is_unique(store: Arc<dyn AccountStore>) {
    let first = store.create(&mario()).await.unwrap();
    let mut again = NewAccount::new(cf("RSSMRA80A01H501U"), "Marco", "Verdi");
    again.email = Some("other@example.it".to_owned());
    let err = store.create(&again).await.unwrap_err();
    assert!(
        matches!(err, AccountError::Duplicate(UniqueField::FiscalCode)),
        "{err:?}"
    );
    assert_eq!(err.code(), "POLIS_ACCOUNT_DUPLICATE_FISCAL_CODE");
    // Nothing of the refused account was written, not even its username.
    assert!(
        store
            .find_by_username("marco.verdi")
            .await
            .unwrap()
            .is_none()
    );
    let stored = store
        .find_by_fiscal_code(first.fiscal_code.as_ref().unwrap())
        .await
        .unwrap();
    assert_eq!(stored, Some(first));
}

async fn link_or_create_links_existing(store: Arc<dyn AccountStore>) {
    let giulia = full_new_account();
    let (created, was_created) = store.link_or_create(&giulia, &spid(&giulia)).await.unwrap();
    assert!(was_created);
    // A second login, with different data from SPID: the stored account comes back as is.
    let mut later = full_new_account();
    later.email = Some("nuova@example.it".to_owned());
    later.given_name = "Giulietta".to_owned();
    let (linked, was_created) = store.link_or_create(&later, &spid(&later)).await.unwrap();
    assert!(!was_created);
    assert_eq!(linked, created);

    // An account created elsewhere (e.g. `polis-gateway accounts create`) is linked too.
    let existing = store.create(&mario()).await.unwrap();
    assert!(existing.identities.is_empty());
    let (linked, was_created) = store
        .link_or_create(&mario(), &spid(&mario()))
        .await
        .unwrap();
    assert!(!was_created);
    assert_eq!(linked.id, existing.id);
    assert_eq!(linked.identities.len(), 1);
    assert_eq!(linked.identities[0].scheme, Scheme::Spid);
    assert_eq!(
        store.find_by_identity(&spid(&mario())).await.unwrap(),
        Some(linked)
    );
    assert!(
        store
            .find_by_username("mario.rossi2")
            .await
            .unwrap()
            .is_none()
    );
}

async fn racing_first_logins_make_one_account(store: Arc<dyn AccountStore>) {
    let results = race(RACERS, |_| {
        let store = store.clone();
        async move {
            let new = full_new_account();
            store.link_or_create(&new, &spid(&new)).await
        }
    })
    .await;
    let mut ids = HashSet::new();
    let mut created = 0;
    for result in results {
        let (account, was_created) = result.unwrap();
        ids.insert(account.id);
        created += usize::from(was_created);
    }
    assert_eq!(ids.len(), 1, "all callers see the same account");
    assert_eq!(created, 1, "exactly one caller created it");
    let account = store
        .find_by_fiscal_code(&cf("BNCGLI85M52F205H"))
        .await
        .unwrap()
        .unwrap();
    assert!(ids.contains(&account.id));
    assert_eq!(account.username, "giulia.bianchi");
    // No orphan username was left behind by the losers.
    assert!(
        store
            .find_by_username("giulia.bianchi2")
            .await
            .unwrap()
            .is_none()
    );
}

async fn stale_update_conflicts(store: Arc<dyn AccountStore>) {
    let created = store.create(&mario()).await.unwrap();
    let mut first = created.clone();
    first.email = Some("mario@example.it".to_owned());
    let updated = store.update(&first).await.unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.email.as_deref(), Some("mario@example.it"));
    assert!(updated.updated_at >= created.updated_at);
    assert_eq!(updated.created_at, created.created_at);

    // A second writer still holding version 1 loses and changes nothing.
    let mut second = created.clone();
    second.email = Some("stale@example.it".to_owned());
    let err = store.update(&second).await.unwrap_err();
    assert!(matches!(err, AccountError::Conflict), "{err:?}");
    let stored = store.find_by_id(created.id).await.unwrap().unwrap();
    assert_eq!(stored, updated);

    // Re-read and retry works.
    let mut retry = stored;
    retry.sex = Some("M".to_owned());
    assert_eq!(store.update(&retry).await.unwrap().version, 3);

    // Unknown id.
    let mut ghost = retry.clone();
    ghost.id = uuid::Uuid::new_v4();
    assert!(matches!(
        store.update(&ghost).await,
        Err(AccountError::NotFound)
    ));

    // Taking someone else's username is a Duplicate, not a Conflict.
    let other = store
        .create(&NewAccount::new(cf("VRDLCU72T10L219N"), "Luca", "Verdi"))
        .await
        .unwrap();
    let mut thief = other;
    thief.username = "mario.rossi".to_owned();
    assert!(matches!(
        store.update(&thief).await,
        Err(AccountError::Duplicate(UniqueField::Username))
    ));
}

async fn concurrent_updates_exactly_one_wins(store: Arc<dyn AccountStore>) {
    let created = store.create(&mario()).await.unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|n| {
            let store = store.clone();
            let mut account = created.clone();
            account.spid_code = Some(format!("writer-{n}"));
            tokio::spawn(async move { store.update(&account).await })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(account) => {
                winners += 1;
                assert_eq!(account.version, 2);
            }
            Err(AccountError::Conflict) => {}
            Err(err) => panic!("unexpected {err:?}"),
        }
    }
    assert_eq!(winners, 1);
}

async fn touch_last_access_keeps_version(store: Arc<dyn AccountStore>) {
    let created = store.create(&mario()).await.unwrap();
    let login = at("2026-03-01T09:30:00.123456789Z");
    store
        .touch_last_access(created.id, None, login)
        .await
        .unwrap();
    let stored = store.find_by_id(created.id).await.unwrap().unwrap();
    assert_eq!(stored.last_access_at, Some(login));
    assert_eq!(stored.version, created.version);
    // An update from a copy read before the login does not undo the login time.
    let mut form = created.clone();
    form.email = Some("mario@example.it".to_owned());
    let updated = store.update(&form).await.unwrap();
    assert_eq!(updated.last_access_at, Some(login));

    // With the identity of the login: its last login too.
    store
        .link_or_create(&mario(), &spid(&mario()))
        .await
        .unwrap();
    let cie_login = at("2026-03-02T10:00:00Z");
    let (linked, _) = {
        let key = keyed(Scheme::Cie, &mario());
        let linked = store.link_or_create(&mario(), &key).await.unwrap();
        store
            .touch_last_access(created.id, Some(&key), cie_login)
            .await
            .unwrap();
        linked
    };
    let stored = store.find_by_id(linked.id).await.unwrap().unwrap();
    assert_eq!(stored.last_access_at, Some(cie_login));
    assert_eq!(stored.version, updated.version);
    let last_logins: Vec<_> = stored
        .identities
        .iter()
        .map(|i| (i.scheme, i.last_login_at))
        .collect();
    assert_eq!(
        last_logins,
        [(Scheme::Spid, None), (Scheme::Cie, Some(cie_login))]
    );

    assert!(matches!(
        store
            .touch_last_access(uuid::Uuid::new_v4(), Some(&spid(&mario())), login)
            .await,
        Err(AccountError::NotFound)
    ));
}

async fn spid_then_cie_is_one_account(store: Arc<dyn AccountStore>) {
    let (first, created) = store
        .link_or_create(&mario(), &spid(&mario()))
        .await
        .unwrap();
    assert!(created);
    let cie = keyed(Scheme::Cie, &mario());
    assert_eq!(store.find_by_identity(&cie).await.unwrap(), None);
    let (second, created) = store.link_or_create(&mario(), &cie).await.unwrap();
    assert!(!created);
    assert_eq!((second.id, &second.username), (first.id, &first.username));
    let schemes: Vec<_> = second.identities.iter().map(|i| i.scheme).collect();
    assert_eq!(schemes, [Scheme::Spid, Scheme::Cie]);
    assert_eq!(
        store.find_by_identity(&cie).await.unwrap(),
        Some(second.clone())
    );
    // Later logins with either scheme find it, and link nothing more.
    for key in [spid(&mario()), cie] {
        let (again, created) = store.link_or_create(&mario(), &key).await.unwrap();
        assert!(!created);
        assert_eq!(again, second);
    }
}

async fn racing_spid_and_cie_first_logins_make_one_account(store: Arc<dyn AccountStore>) {
    let results = race(RACERS, |i| {
        let store = store.clone();
        let scheme = if i % 2 == 0 {
            Scheme::Spid
        } else {
            Scheme::Cie
        };
        async move {
            let new = full_new_account();
            store.link_or_create(&new, &keyed(scheme, &new)).await
        }
    })
    .await;
    let mut ids = HashSet::new();
    let mut created = 0;
    for result in results {
        let (account, was_created) = result.unwrap();
        ids.insert(account.id);
        created += usize::from(was_created);
    }
    assert_eq!(ids.len(), 1, "all callers see the same account");
    assert_eq!(created, 1, "exactly one caller created it");
    let account = store
        .find_by_identity(&keyed(Scheme::Cie, &full_new_account()))
        .await
        .unwrap()
        .unwrap();
    assert!(ids.contains(&account.id));
    let mut schemes: Vec<_> = account.identities.iter().map(|i| i.scheme).collect();
    schemes.sort();
    assert_eq!(schemes, [Scheme::Spid, Scheme::Cie]);
    assert_eq!(
        store
            .find_by_identity(&spid(&full_new_account()))
            .await
            .unwrap(),
        Some(account.clone())
    );
    assert_eq!(account.username, "giulia.bianchi");
    assert!(
        store
            .find_by_username("giulia.bianchi2")
            .await
            .unwrap()
            .is_none()
    );
}

async fn racing_eidas_first_logins_make_one_account(store: Arc<dyn AccountStore>) {
    let results = race(RACERS, |_| {
        let store = store.clone();
        async move {
            let (new, key) = lucia();
            store.link_or_create(&new, &key).await
        }
    })
    .await;
    let mut ids = HashSet::new();
    let mut created = 0;
    for result in results {
        let (account, was_created) = result.unwrap();
        ids.insert(account.id);
        created += usize::from(was_created);
    }
    assert_eq!(ids.len(), 1, "all callers see the same account");
    assert_eq!(created, 1, "exactly one caller created it");
    let (_, key) = lucia();
    let account = store.find_by_identity(&key).await.unwrap().unwrap();
    assert!(ids.contains(&account.id));
    assert_eq!(account.fiscal_code, None);
    assert_eq!(account.eidas_identifier(), Some("ES/IT/02635542Y"));
    assert_eq!(account.identities.len(), 1);
    assert_eq!(account.username, "lucia.garcia");
    // The losers' transactions rolled back: no second account, no orphan username.
    assert!(
        store
            .find_by_username("lucia.garcia2")
            .await
            .unwrap()
            .is_none()
    );
    let next = store
        .create(&NewAccount::without_fiscal_code("Lucía", "García"))
        .await
        .unwrap();
    assert_eq!(
        next.username, "lucia.garcia2",
        "the losers gave their numbers back"
    );
}

async fn eidas_and_spid_people_never_merge(store: Arc<dyn AccountStore>) {
    // Same names and birth date, one with SPID, two with eIDAS identities: three people.
    let (spid_account, _) = store
        .link_or_create(&mario(), &spid(&mario()))
        .await
        .unwrap();
    let mut eidas_new = NewAccount::without_fiscal_code("Mario", "Rossi");
    eidas_new.birth_date = spid_account.birth_date;
    let es = IdentityKey::new(Scheme::Eidas, "ES/IT/RSSMRA80A01H501U");
    let de = IdentityKey::new(Scheme::Eidas, "DE/IT/123456789");
    let (es_account, created_es) = store.link_or_create(&eidas_new, &es).await.unwrap();
    let (de_account, created_de) = store.link_or_create(&eidas_new, &de).await.unwrap();
    assert!(created_es && created_de);
    let ids: HashSet<_> = [spid_account.id, es_account.id, de_account.id].into();
    assert_eq!(ids.len(), 3);
    // Two accounts without a codice fiscale coexist (NULLs are distinct).
    assert_eq!(
        (
            es_account.fiscal_code.clone(),
            de_account.fiscal_code.clone()
        ),
        (None, None)
    );
    assert_eq!(
        store.find_by_identity(&es).await.unwrap().map(|a| a.id),
        Some(es_account.id)
    );
    let again = store
        .find_by_identity(&spid(&mario()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        again.identities.len(),
        1,
        "the SPID account got no eIDAS identity"
    );
    // Account data that does not fit the identity is refused, nothing written.
    for (new, key) in [
        (mario(), IdentityKey::new(Scheme::Eidas, "FR/IT/1")),
        (
            eidas_new.clone(),
            IdentityKey::new(Scheme::Spid, "VRDLCU72T10L219N"),
        ),
        (mario(), IdentityKey::new(Scheme::Cie, "VRDLCU72T10L219N")),
    ] {
        let err = store.link_or_create(&new, &key).await.unwrap_err();
        assert!(matches!(err, AccountError::Backend(_)), "{err:?}");
        assert_eq!(store.find_by_identity(&key).await.unwrap(), None);
    }
}

async fn migrate_is_idempotent(store: Arc<dyn AccountStore>) {
    let created = store.create(&mario()).await.unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.find_by_id(created.id).await.unwrap(), Some(created));
}

async fn every_field_round_trips(store: Arc<dyn AccountStore>) {
    // Minimal account: every optional field None.
    let bare = store.create(&mario()).await.unwrap();
    let stored = store.find_by_id(bare.id).await.unwrap().unwrap();
    assert_eq!(stored, bare);
    assert_eq!(stored.birth_date, None);
    assert_eq!(stored.domicile, None);
    assert_eq!(stored.phones, Phones::default());
    assert_eq!(stored.temp_cp, None);

    // Full account: every field Some, through create and then update.
    let created = store.create(&full_new_account()).await.unwrap();
    assert_eq!(
        store.find_by_id(created.id).await.unwrap().as_ref(),
        Some(&created)
    );
    let mut full = created.clone();
    full.phones.landline = Some("02 1234567".to_owned());
    full.recovery_question = Some("cognome da nubile della madre".to_owned());
    full.recovery_answer_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned());
    full.cp_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdDI$aGFzaDI".to_owned());
    full.cp_history = vec!["$argon2id$v=19$m=19456,t=2,p=1$c2FsdDE$aGFzaDE".to_owned()];
    full.temp_cp = Some(TempCp {
        hmac: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".to_owned(),
        issued_at: at("2026-03-01T09:00:00.000000001Z"),
        expires_at: at("2026-03-04T09:00:00Z"),
    });
    full.enablement_state = EnablementState::TempCpSent;
    full.enabled_at = Some(Utc.with_ymd_and_hms(2026, 3, 5, 10, 0, 0).unwrap());
    full.spid_level = Some(3);
    full.spid_code = Some("SPID-0002".to_owned());
    full.terms = Some(polis_gateway::accounts::TermsAcceptance {
        version: "2026-12 «prova»".to_owned(),
        accepted_at: at("2026-03-01T08:59:59.000000001Z"),
    });
    full.revocation = Some(polis_gateway::accounts::RevocationRecord {
        at: at("2026-02-01T07:00:00.000000002Z"),
        by: polis_gateway::accounts::RevokedBy::HelpDesk {
            operator: "BNCLRA85C41F205X".to_owned(),
        },
        reason: "richiesta dell'interessata «via telefono»".to_owned(),
    });
    let updated = store.update(&full).await.unwrap();
    let stored = store.find_by_id(created.id).await.unwrap().unwrap();
    assert_eq!(stored, updated);
    let expected = polis_gateway::accounts::Account {
        version: 2,
        updated_at: updated.updated_at,
        ..full.clone()
    };
    assert_eq!(stored, expected);

    // And back to None.
    let mut cleared = stored;
    cleared.temp_cp = None;
    cleared.id_document = None;
    cleared.domicile = None;
    cleared.phones = Phones::default();
    cleared.spid_level = None;
    cleared.enabled_at = None;
    cleared.terms = None;
    cleared.revocation = None;
    let updated = store.update(&cleared).await.unwrap();
    assert_eq!(
        store.find_by_id(cleared.id).await.unwrap(),
        Some(updated.clone())
    );
    assert_eq!(updated.temp_cp, None);
    assert_eq!(updated.id_document, None);

    // Every enablement state is stored and read back.
    let mut account = updated;
    for state in EnablementState::ALL {
        account.enablement_state = state;
        account = store.update(&account).await.unwrap();
        let stored = store.find_by_id(account.id).await.unwrap().unwrap();
        assert_eq!(stored.enablement_state, state);
    }
}

// ---------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------

/// A migrated store and whatever must outlive it (the SQLite temp dir).
struct Fixture {
    store: Arc<dyn AccountStore>,
    /// The same store as the help desk's audit log.
    audit: Arc<dyn HelpdeskAudit>,
    _dir: Option<TempDir>,
}

/// SQLite in a file under a not-yet-existing subdirectory of a fresh temp dir.
async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("data").join("accounts.db").display()
    );
    let store = Arc::new(SqlAccountStore::connect(&url, POOL).await.unwrap());
    store.migrate().await.unwrap();
    Fixture {
        store: store.clone(),
        audit: store,
        _dir: Some(dir),
    }
}

/// The PostgreSQL server shared by this test binary (stopped by its watchdog at exit).
fn postgres_server() -> &'static PostgresServer {
    PostgresServer::shared()
}

/// A fresh database on the shared PostgreSQL server.
async fn postgres() -> Fixture {
    let server = tokio::task::block_in_place(postgres_server);
    let name = format!("accounts_{}", uuid::Uuid::new_v4().simple());
    let url = tokio::task::block_in_place(|| server.create_database(&name));
    let store = Arc::new(SqlAccountStore::connect(&url, POOL).await.unwrap());
    store.migrate().await.unwrap();
    Fixture {
        store: store.clone(),
        audit: store,
        _dir: None,
    }
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        /// The contract on SQLite (a database file, as the embedded default).
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let fixture = super::sqlite().await;
                    let start = std::time::Instant::now();
                    super::$name(fixture.store.clone()).await;
                    eprintln!("sqlite {} in {:?}", stringify!($name), start.elapsed());
                }
            )*
        }

        /// The contract on PostgreSQL: a fresh database on a real server.
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let fixture = super::postgres().await;
                    let start = std::time::Instant::now();
                    super::$name(fixture.store.clone()).await;
                    eprintln!("postgres {} in {:?}", stringify!($name), start.elapsed());
                }
            )*
        }
    };
}

contract!(
    create_then_find,
    username_collisions_get_suffixes,
    concurrent_namesakes_get_distinct_usernames,
    a_hundred_concurrent_namesakes_all_get_an_account,
    a_username_already_taken_by_another_base_is_skipped,
    fiscal_code_is_unique,
    link_or_create_links_existing,
    racing_first_logins_make_one_account,
    stale_update_conflicts,
    concurrent_updates_exactly_one_wins,
    touch_last_access_keeps_version,
    spid_then_cie_is_one_account,
    racing_spid_and_cie_first_logins_make_one_account,
    racing_eidas_first_logins_make_one_account,
    eidas_and_spid_people_never_merge,
    migrate_is_idempotent,
    every_field_round_trips,
);

// ---------------------------------------------------------------------------------------
// The help desk's audit log (HelpdeskAudit), same store
// ---------------------------------------------------------------------------------------

fn audit_entry(account: uuid::Uuid, action: HelpdeskAction, at: DateTime<Utc>) -> AuditEntry {
    AuditEntry {
        id: uuid::Uuid::new_v4(),
        at,
        staff: "BNCGLI85M52F205H".to_owned(),
        role: "operator".to_owned(),
        action,
        account,
        reason: "Telefonata del 3 dicembre: «ho sbagliato il codice» — sblocco".to_owned(),
        outcome: AuditOutcome::Started,
    }
}

/// Entries are recorded, finished with their outcome and listed newest first, only
/// for their account, at most `limit`.
async fn audit_entries_round_trip(store: Arc<dyn AccountStore>, audit: Arc<dyn HelpdeskAudit>) {
    let a = store.create(&mario()).await.unwrap();
    let (other, _) = lucia();
    let b = store.create(&other).await.unwrap();
    let first = audit_entry(
        a.id,
        HelpdeskAction::UnlockCp,
        at("2026-12-01T09:00:00.000000001Z"),
    );
    let second = audit_entry(
        a.id,
        HelpdeskAction::ResendTempCp,
        at("2026-12-02T10:30:00Z"),
    );
    let elsewhere = audit_entry(b.id, HelpdeskAction::Revoke, at("2026-12-02T11:00:00Z"));
    for e in [&first, &second, &elsewhere] {
        audit.record(e).await.unwrap();
    }
    audit.finish(first.id, &AuditOutcome::Done).await.unwrap();
    audit
        .finish(
            second.id,
            &AuditOutcome::Failed("POLIS_MAIL_UNAVAILABLE".into()),
        )
        .await
        .unwrap();
    let listed = audit.entries_for(a.id, 10).await.unwrap();
    let mut want_second = second.clone();
    want_second.outcome = AuditOutcome::Failed("POLIS_MAIL_UNAVAILABLE".into());
    let mut want_first = first.clone();
    want_first.outcome = AuditOutcome::Done;
    assert_eq!(listed, vec![want_second.clone(), want_first]);
    assert_eq!(audit.entries_for(a.id, 1).await.unwrap(), vec![want_second]);
    assert_eq!(audit.entries_for(b.id, 10).await.unwrap(), vec![elsewhere]);
    assert!(
        audit
            .entries_for(uuid::Uuid::new_v4(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let missing = audit
        .finish(uuid::Uuid::new_v4(), &AuditOutcome::Done)
        .await;
    assert!(
        matches!(missing, Err(AccountError::NotFound)),
        "{missing:?}"
    );
}

/// Parallel records of one account all land (nothing is lost or merged).
async fn concurrent_audit_records_all_land(
    store: Arc<dyn AccountStore>,
    audit: Arc<dyn HelpdeskAudit>,
) {
    let a = store.create(&mario()).await.unwrap();
    let base = at("2026-12-03T08:00:00Z");
    let entries: Vec<AuditEntry> = (0..RACERS)
        .map(|n| {
            let offset = chrono::Duration::seconds(i64::try_from(n).unwrap());
            audit_entry(a.id, HelpdeskAction::UnlockRecovery, base + offset)
        })
        .collect();
    let recorded = entries.clone();
    let racing = audit.clone();
    race(RACERS, move |n| {
        let audit = racing.clone();
        let entry = recorded[n].clone();
        async move { audit.record(&entry).await.unwrap() }
    })
    .await;
    let listed = audit.entries_for(a.id, 100).await.unwrap();
    assert_eq!(listed.len(), RACERS);
    let mut newest_first = entries;
    newest_first.reverse();
    assert_eq!(listed, newest_first);
}

macro_rules! audit_contract {
    ($($name:ident),* $(,)?) => {
        /// The audit contract on SQLite.
        mod audit_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let fixture = super::sqlite().await;
                    super::$name(fixture.store.clone(), fixture.audit.clone()).await;
                }
            )*
        }

        /// The audit contract on PostgreSQL.
        mod audit_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let fixture = super::postgres().await;
                    super::$name(fixture.store.clone(), fixture.audit.clone()).await;
                }
            )*
        }
    };
}

audit_contract!(audit_entries_round_trip, concurrent_audit_records_all_land);

// ---------------------------------------------------------------------------------------
// Backend-specific
// ---------------------------------------------------------------------------------------

/// `sqlite::memory:` works too (one connection), for quick tools and tests.
#[tokio::test]
async fn sqlite_in_memory() {
    let store = SqlAccountStore::connect("sqlite::memory:", 4)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    create_then_find(Arc::new(store)).await;
}

/// The SQLite file is in WAL mode and survives reopening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("polis.db");
    let url = format!("sqlite://{}", path.display());
    let store = SqlAccountStore::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let created = store.create(&mario()).await.unwrap();
    store.close().await;
    assert!(path.is_file());
    assert!(
        dir.path().join("nested").join("polis.db-wal").exists()
            || std::fs::read(&path).unwrap().get(18..20) == Some(&[2, 2][..]),
        "database is in WAL mode"
    );
    let reopened = SqlAccountStore::connect_and_migrate(&url, 2).await.unwrap();
    assert_eq!(
        reopened.find_by_id(created.id).await.unwrap(),
        Some(created)
    );
}

/// The harness's own URL (the `postgres` database) answers a ping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_server_url_answers() {
    let server = tokio::task::block_in_place(postgres_server);
    let store = SqlAccountStore::connect(&server.url(), 1).await.unwrap();
    store.ping().await.unwrap();
}

/// An unreachable PostgreSQL is `Unavailable`, not a panic or a hang.
#[tokio::test]
async fn postgres_down_is_unavailable() {
    let port = crate::support::free_port();
    let started = Instant::now();
    let err = SqlAccountStore::connect(&format!("postgres://postgres@127.0.0.1:{port}/x"), 2)
        .await
        .unwrap_err();
    assert!(matches!(err, AccountError::Unavailable(_)), "{err:?}");
    assert_eq!(err.code(), "POLIS_ACCOUNTS_UNAVAILABLE");
    assert!(started.elapsed().as_secs() < 10);
}

/// An unsupported URL is refused up front.
#[tokio::test]
async fn unsupported_url_is_refused() {
    let err = SqlAccountStore::connect("mysql://localhost/x", 1)
        .await
        .unwrap_err();
    assert!(matches!(err, AccountError::Backend(_)), "{err:?}");
}

// ---------------------------------------------------------------------------------------
// Upgrade from the previous release (migrations 0001 + 0002 only)
// ---------------------------------------------------------------------------------------

/// Accounts of the previous schema, as its store wrote them: a fresh login, an enabled
/// account with every secret and JSON field, one waiting with a temporary CP, one
/// half-way through the request. `(fiscal code, username, name, surname)` come first.
const OLD_ACCOUNTS: &str = "INSERT INTO accounts (id, username, fiscal_code, given_name, \
     family_name, birth_date, birth_place, sex, email, domicile_json, phones_json, \
     id_document_json, recovery_question, recovery_answer_hash, cp_hash, temp_cp_hmac, \
     temp_cp_issued_at, temp_cp_expires_at, cp_history_json, enablement_state, created_at, \
     updated_at, enabled_at, last_access_at, spid_level, spid_code, version) VALUES \
     ('11111111-1111-4111-8111-111111111111', 'mario.rossi', 'RSSMRA80A01H501U', 'Mario', \
      'Rossi', NULL, NULL, NULL, NULL, NULL, '{\"mobile\":null,\"landline\":null}', NULL, \
      NULL, NULL, NULL, NULL, NULL, NULL, '[]', 'not_enabled', \
      '2026-01-10T08:00:00.000000000Z', '2026-01-10T08:00:00.000000000Z', NULL, \
      '2026-01-10T08:00:00.000000000Z', 2, 'SPID-0001', 1), \
     ('22222222-2222-4222-8222-222222222222', 'giulia.bianchi', 'BNCGLI85M52F205H', 'Giulia', \
      'Bianchi', '1985-08-12', 'Milano', 'F', 'giulia.bianchi@example.it', \
      '{\"street\":\"Via dell''Università 7\",\"postal_code\":\"20121\",\"municipality\":\"Milano\",\"province\":\"MI\",\"nation\":\"Italia\"}', \
      '{\"mobile\":\"+39 333 1234567\",\"landline\":\"02 1234567\"}', \
      '{\"kind\":\"carta d''identità\",\"number\":\"CA12345AB\",\"issuer\":\"Comune di Milano\",\"issued_on\":\"2020-03-02\",\"expires_on\":\"2031-03-02\"}', \
      'cognome da nubile della madre', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$YW5zd2Vy', \
      '$argon2id$v=19$m=19456,t=2,p=1$c2FsdDI$Y3A', NULL, NULL, NULL, \
      '[\"$argon2id$v=19$m=19456,t=2,p=1$c2FsdDE$b2xk\"]', 'enabled', \
      '2026-01-11T09:00:00.000000001Z', '2026-02-01T10:00:00.000000000Z', \
      '2026-01-20T12:00:00.000000000Z', '2026-02-01T10:00:00.000000000Z', 3, 'SPID-0002', 7), \
     ('33333333-3333-4333-8333-333333333333', 'mario.rossi2', 'RSSMRA80A41H501Y', 'Mario', \
      'Rossi', '1980-01-01', 'Roma', 'M', 'mario2@example.it', NULL, \
      '{\"mobile\":\"+39 320 0000000\",\"landline\":null}', NULL, 'nome del primo animale', \
      '$argon2id$v=19$m=19456,t=2,p=1$c2FsdDM$YQ', NULL, \
      '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08', \
      '2026-03-01T09:00:00.000000000Z', '2026-03-04T09:00:00.000000000Z', '[]', \
      'temp_cp_sent', '2026-02-20T07:00:00.000000000Z', '2026-03-01T09:00:00.000000000Z', \
      NULL, NULL, 1, NULL, 4), \
     ('44444444-4444-4444-8444-444444444444', 'luca.verdi', 'VRDLCU72T10L219N', 'Luca', \
      'Verdi', NULL, NULL, NULL, 'luca@example.it', \
      '{\"street\":\"Corso Francia 1\",\"postal_code\":\"10138\",\"municipality\":\"Torino\",\"province\":\"TO\",\"nation\":\"Italia\"}', \
      '{\"mobile\":null,\"landline\":null}', NULL, NULL, NULL, NULL, NULL, NULL, NULL, '[]', \
      'review', '2026-02-25T07:00:00.000000000Z', '2026-02-25T07:05:00.000000000Z', NULL, \
      '2026-02-25T07:00:00.000000000Z', 2, NULL, 3)";

/// Every column as text, by id: what "every field intact" is compared on.
const ALL_COLUMNS: &str = "SELECT id, username, fiscal_code, given_name, family_name, \
     birth_date, birth_place, sex, email, domicile_json, phones_json, id_document_json, \
     recovery_question, recovery_answer_hash, cp_hash, temp_cp_hmac, temp_cp_issued_at, \
     temp_cp_expires_at, cp_history_json, enablement_state, created_at, updated_at, \
     enabled_at, last_access_at, CAST(spid_level AS TEXT) AS spid_level, spid_code, \
     CAST(version AS TEXT) AS version FROM accounts ORDER BY id";

async fn all_columns(pool: &sqlx::AnyPool) -> Vec<Vec<Option<String>>> {
    use sqlx::Row;
    let rows = sqlx::query(ALL_COLUMNS).fetch_all(pool).await.unwrap();
    rows.iter()
        .map(|row| {
            (0..row.len())
                .map(|i| row.try_get::<Option<String>, _>(i).unwrap())
                .collect()
        })
        .collect()
}

/// Builds a database of the previous release at `url` (only 0001 and 0002 applied,
/// from the SQL files, recorded as sqlx did), fills it, migrates it with today's store
/// and checks that every account, field and login survived.
async fn upgrade_keeps_accounts_and_logins(url: &str) {
    use sqlx::SqlSafeStr;
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    sqlx::any::install_default_drivers();
    let previous = Migrator::with_migrations(
        [
            (
                1,
                "accounts",
                include_str!("../../migrations/0001_accounts.sql"),
            ),
            (
                2,
                "username_counters",
                include_str!("../../migrations/0002_username_counters.sql"),
            ),
        ]
        .into_iter()
        .map(|(version, description, sql)| {
            Migration::new(
                version,
                description.into(),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect(),
    );
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap();
    previous.run(&pool).await.unwrap();
    sqlx::query(OLD_ACCOUNTS).execute(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO username_counters (base, last_suffix) VALUES ('mario.rossi', 2), \
         ('giulia.bianchi', 1), ('luca.verdi', 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let before = all_columns(&pool).await;
    assert_eq!(before.len(), 4);

    let store = SqlAccountStore::connect(url, 2).await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(all_columns(&pool).await, before, "every field intact");
    pool.close().await;

    let enabled = store
        .find_by_fiscal_code(&cf("BNCGLI85M52F205H"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(enabled.enablement_state, EnablementState::Enabled);
    assert_eq!(enabled.cp_history.len(), 1);
    assert_eq!(enabled.domicile.unwrap().street, "Via dell'Università 7");
    assert_eq!(enabled.id_document.unwrap().kind, "carta d'identità");
    let temp = store
        .find_by_fiscal_code(&cf("RSSMRA80A41H501Y"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(temp.temp_cp.unwrap().expires_at, at("2026-03-04T09:00:00Z"));

    for row in &before {
        let (id, username, code, created_at) = (
            row[0].clone().unwrap(),
            row[1].clone().unwrap(),
            row[2].clone().unwrap(),
            row[20].clone().unwrap(),
        );
        let account = store
            .find_by_identity(&IdentityKey::new(Scheme::Spid, code.as_str()))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{code} has its SPID identity"));
        assert_eq!(account.id.to_string(), id);
        assert_eq!(account.identities.len(), 1);
        assert_eq!(account.identities[0].scheme, Scheme::Spid);
        assert_eq!(account.identities[0].linked_at, at(&created_at));
        // A SPID login of the person finds the same account, and so does a CIE one.
        let new = NewAccount::new(cf(&code), "Altro", "Nome");
        for scheme in [Scheme::Spid, Scheme::Cie] {
            let (found, created) = store
                .link_or_create(&new, &keyed(scheme, &new))
                .await
                .unwrap();
            assert!(!created, "{code} {scheme}");
            assert_eq!(
                (found.id.to_string(), &found.username),
                (id.clone(), &username)
            );
        }
    }
    // The username counters carried over.
    let next = store
        .create(&NewAccount::new(cf("RSSMRA80B29H501Q"), "Mario", "Rossi"))
        .await
        .unwrap();
    assert_eq!(next.username, "mario.rossi3");
    // An eIDAS user without a codice fiscale now fits.
    let (new, key) = lucia();
    let (eidas, created) = store.link_or_create(&new, &key).await.unwrap();
    assert!(created);
    assert_eq!(eidas.fiscal_code, None);
}

/// A SQLite database of the previous release migrates with every account and login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_database_of_the_previous_release_upgrades() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    upgrade_keeps_accounts_and_logins(&url).await;
}

/// A PostgreSQL database of the previous release migrates with every account and login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_database_of_the_previous_release_upgrades() {
    let server = tokio::task::block_in_place(postgres_server);
    let name = format!("upgrade_{}", uuid::Uuid::new_v4().simple());
    let url = tokio::task::block_in_place(|| server.create_database(&name));
    upgrade_keeps_accounts_and_logins(&url).await;
}
