//! [`SqlAccountStore`]: the [`AccountStore`] on sqlx `AnyPool`, one code path for SQLite
//! (the embedded default) and PostgreSQL.
//!
//! Portability rules (see `migrations/0001_accounts.sql`): only TEXT and BIGINT columns,
//! `$N` placeholders, ids (UUID v4) generated here, timestamps as fixed-width RFC 3339
//! UTC text with nanoseconds, dates as `YYYY-MM-DD`, nested data (domicile, phones,
//! identity document) as JSON text. The `Any` driver only moves booleans, integers,
//! floats, text and bytes, so every conversion happens in this file.
//!
//! Concurrency: every write is one autocommit statement, except `create`, which bumps
//! the name's counter in `username_counters` and inserts the account (and, from
//! `link_or_create`, its first identity) in one transaction (so each namesake gets its
//! own suffix, a failed insert gives its number back, and an account never exists
//! without the identity that made it). The UNIQUE indexes on `fiscal_code` and
//! `username` and the primary key of `account_identities` decide races (a losing first
//! login of the same person is re-read; a username taken by an account older than the
//! counter moves the counter on and draws again, which cannot run out), linking an
//! identity to an existing account is `INSERT … ON CONFLICT DO NOTHING`, and `update`
//! is a compare-and-set on `version` with `RETURNING`.

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::any::{AnyArguments, AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Any, AnyPool, ConnectOptions, Connection, Row, SqlSafeStr};
use uuid::Uuid;

use crate::clock::{SharedClock, SystemClock};
use crate::identity::Scheme;

mod audit;
mod campaign;
mod row;

use row::{account_from_row, bind_data, identities_from_rows, timestamp_text};

use super::{
    Account, AccountError, AccountStore, FiscalCode, IdentityKey, LinkedIdentity, NewAccount,
    UniqueField, username_base,
};

/// The migrations embedded in the binary: `(version, description, SQL)`, one entry per
/// file in `migrations/` (a unit test checks the two agree). Listed by hand rather than
/// with `sqlx::migrate!` so the build needs no `sqlx-macros`, which would compile both
/// database drivers (and SQLite's C sources) a second time for the host.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "accounts",
        include_str!("../../../migrations/0001_accounts.sql"),
    ),
    (
        2,
        "username_counters",
        include_str!("../../../migrations/0002_username_counters.sql"),
    ),
    (
        3,
        "account_identities",
        include_str!("../../../migrations/0003_account_identities.sql"),
    ),
    (
        4,
        "terms_acceptance",
        include_str!("../../../migrations/0004_terms_acceptance.sql"),
    ),
    (
        5,
        "revocation_campaigns",
        include_str!("../../../migrations/0005_revocation_campaigns.sql"),
    ),
    (
        6,
        "helpdesk_audit",
        include_str!("../../../migrations/0006_helpdesk_audit.sql"),
    ),
];

/// How long a caller waits for a pooled connection before `Unavailable`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLite: how long (ms) a writer waits for the database lock before `Unavailable`.
const SQLITE_BUSY_TIMEOUT: &str = "PRAGMA busy_timeout = 5000";
/// Draws the next suffix of a username base (1 for the first account of that name).
const NEXT_SUFFIX: &str = "INSERT INTO username_counters (base, last_suffix) VALUES ($1, 1) \
     ON CONFLICT (base) DO UPDATE SET last_suffix = username_counters.last_suffix + 1 \
     RETURNING last_suffix";
/// Moves a base's counter up to `$2` (never down).
const RAISE_SUFFIX: &str = "INSERT INTO username_counters (base, last_suffix) VALUES ($1, $2) \
     ON CONFLICT (base) DO UPDATE SET last_suffix = excluded.last_suffix \
     WHERE username_counters.last_suffix < excluded.last_suffix";

/// Links an identity; the primary key refuses a second link (create path).
const INSERT_IDENTITY: &str = "INSERT INTO account_identities (scheme, subject, account_id, \
     linked_at) VALUES ($1, $2, $3, $4)";
/// Links an identity to an existing account unless it is linked already.
const LINK_IDENTITY: &str = "INSERT INTO account_identities (scheme, subject, account_id, \
     linked_at) VALUES ($1, $2, $3, $4) ON CONFLICT (scheme, subject) DO NOTHING";
/// Stamps the login on an identity.
const TOUCH_IDENTITY: &str = "UPDATE account_identities SET last_login_at = $3 \
     WHERE scheme = $1 AND subject = $2";

/// The columns of `accounts` in the order `account_from_row` reads them: one literal,
/// spliced with `concat!` so every query stays `&'static str` (sqlx 0.9).
macro_rules! account_columns {
    () => {
        "id, username, fiscal_code, given_name, family_name, birth_date, \
         birth_place, sex, email, domicile_json, phones_json, id_document_json, recovery_question, \
         recovery_answer_hash, cp_hash, temp_cp_hmac, temp_cp_issued_at, temp_cp_expires_at, \
         cp_history_json, enablement_state, created_at, updated_at, enabled_at, last_access_at, \
         spid_level, spid_code, terms_json, revocation_json, version"
    };
}

/// The columns of `account_identities` as `identity_from_row` reads them (prefixed
/// `i_`, so they can sit beside an account's columns in one row).
macro_rules! identity_columns {
    () => {
        "account_identities.scheme AS i_scheme, account_identities.subject AS i_subject, \
         account_identities.linked_at AS i_linked_at, \
         account_identities.last_login_at AS i_last_login_at"
    };
}

/// Identities oldest first (ties by scheme and subject, so the order is total).
macro_rules! identity_order {
    () => {
        "i_linked_at, i_scheme, i_subject"
    };
}

/// One account found by `$where` with its identities, in one statement: a row per
/// identity (one row with NULL identity columns when it has none).
macro_rules! account_with_identities {
    ($where:literal) => {
        concat!(
            "SELECT ",
            account_columns!(),
            ", ",
            identity_columns!(),
            " FROM accounts LEFT JOIN account_identities \
             ON account_identities.account_id = accounts.id WHERE ",
            $where,
            " ORDER BY ",
            identity_order!()
        )
    };
}

/// The identities of an account, oldest first (the columns `identity_from_row` reads).
const IDENTITIES_OF: &str = concat!(
    "SELECT ",
    identity_columns!(),
    " FROM account_identities WHERE account_id = $1 ORDER BY ",
    identity_order!()
);

const INSERT: &str = "INSERT INTO accounts (id, username, fiscal_code, given_name, family_name, \
     birth_date, birth_place, sex, email, domicile_json, phones_json, id_document_json, \
     recovery_question, recovery_answer_hash, cp_hash, temp_cp_hmac, temp_cp_issued_at, \
     temp_cp_expires_at, cp_history_json, enablement_state, enabled_at, spid_level, spid_code, \
     terms_json, revocation_json, last_access_at, created_at, updated_at, version) VALUES ($1, \
     $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, \
     $22, $23, $24, $25, $26, $27, $28, $29)";

/// Compare-and-set on `version`. `last_access_at` and `created_at` are not written.
const UPDATE: &str = concat!(
    "UPDATE accounts SET username = $2, fiscal_code = $3, given_name = $4, \
     family_name = $5, birth_date = $6, birth_place = $7, sex = $8, email = $9, \
     domicile_json = $10, phones_json = $11, id_document_json = $12, recovery_question = $13, \
     recovery_answer_hash = $14, cp_hash = $15, temp_cp_hmac = $16, temp_cp_issued_at = $17, \
     temp_cp_expires_at = $18, cp_history_json = $19, enablement_state = $20, \
     enabled_at = $21, spid_level = $22, spid_code = $23, terms_json = $24, revocation_json = $25, \
     updated_at = $26, version = $27 WHERE id = $1 AND version = $28 RETURNING ",
    account_columns!()
);

type AnyQuery<'q> = sqlx::query::Query<'q, Any, AnyArguments>;

/// Which database a [`SqlAccountStore`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (or `sqlite::memory:`).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// The [`AccountStore`] on SQLite or PostgreSQL. Cheap to clone (it is a pool handle).
#[derive(Clone, Debug)]
pub struct SqlAccountStore {
    pool: AnyPool,
    backend: Backend,
    /// Where `created_at` and `updated_at` come from.
    clock: SharedClock,
}

impl SqlAccountStore {
    /// Opens a pool of at most `max_connections` on `url`:
    ///
    /// - `sqlite://<path>[?mode=rwc]` (also `sqlite:<path>`): the parent directory is
    ///   created, the file too unless the URL sets another `mode`; the database is put in
    ///   WAL mode, and every connection gets `foreign_keys = ON` and a 5 s
    ///   `busy_timeout`. `sqlite::memory:` is one connection (each would be its own
    ///   database).
    /// - `postgres://…` / `postgresql://…`.
    ///
    /// Does not migrate: call [`AccountStore::migrate`].
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, AccountError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(AccountError::Backend(
                "database url must start with sqlite: or postgres://".to_owned(),
            ));
        };
        let mut url = url.to_owned();
        let mut options = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT);
        if backend == Backend::Sqlite {
            let memory = is_sqlite_memory(&url);
            if memory {
                options = options
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None);
            } else {
                url = prepare_sqlite_file(&url).await?;
                enable_wal(&url).await?;
            }
            // A SQLite connection is a file handle, not a socket that can go stale: the
            // ping before every acquire would only be a round trip to its worker thread
            // (sqlx still pings on release, which catches a connection left mid-query).
            options = options.test_before_acquire(false);
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    sqlx::query("PRAGMA foreign_keys = ON")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query(SQLITE_BUSY_TIMEOUT).execute(&mut *conn).await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(&url).await.map_err(map_connect_error)?;
        Ok(Self {
            pool,
            backend,
            clock: SystemClock::shared(),
        })
    }

    /// The same store reading `created_at` / `updated_at` from `clock` (the system
    /// clock by default).
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// [`connect`](Self::connect), then apply pending migrations: what the gateway does
    /// at start and what `polis-gateway migrate` does (then exits).
    pub async fn connect_and_migrate(
        url: &str,
        max_connections: u32,
    ) -> Result<Self, AccountError> {
        let store = Self::connect(url, max_connections).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// The database behind this store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool (waits for checked-out connections to come back).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The account a lookup query (`lookup::*`: account and identity columns, a row
    /// per identity) finds: one statement, one connection.
    async fn fetch_account(&self, query: AnyQuery<'_>) -> Result<Option<Account>, AccountError> {
        let rows = query.fetch_all(&self.pool).await.map_err(map_error)?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut account = account_from_row(first)?;
        account.identities = identities_from_rows(&rows)?;
        Ok(Some(account))
    }

    /// The account an `UPDATE … RETURNING <account columns>` wrote, with its identities.
    async fn fetch_one_where(&self, query: AnyQuery<'_>) -> Result<Option<Account>, AccountError> {
        let row = query.fetch_optional(&self.pool).await.map_err(map_error)?;
        let Some(mut account) = row.as_ref().map(account_from_row).transpose()? else {
            return Ok(None);
        };
        account.identities = self.identities_of(account.id).await?;
        Ok(Some(account))
    }

    async fn identities_of(&self, id: Uuid) -> Result<Vec<LinkedIdentity>, AccountError> {
        let rows = sqlx::query(IDENTITIES_OF)
            .bind(id.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(map_error)?;
        identities_from_rows(&rows)
    }

    /// Creates the account of `new` with `key` as its first identity, in one
    /// transaction.
    async fn create_linked(
        &self,
        new: &NewAccount,
        key: Option<&IdentityKey>,
    ) -> Result<Account, AccountError> {
        let now = self.clock.now();
        let base = username_base(&new.given_name, &new.family_name);
        let mut account = new.into_account(Uuid::new_v4(), String::new(), now);
        // Every draw from the counter is a number no other caller gets, so only an
        // account older than the counter (or one of another base whose name ends in
        // digits) can hold the username drawn. Then the counter moves past every suffix
        // in use and we draw again: each draw is larger than the last and the taken
        // usernames are finite, so this ends, usually at the first try.
        loop {
            match self
                .insert_with_next_username(&mut account, &base, key)
                .await
            {
                Ok(()) => return Ok(account),
                Err(AccountError::Duplicate(UniqueField::Username)) => {
                    let largest = self.largest_suffix(&base).await?;
                    let largest = i64::try_from(largest).map_err(|_| {
                        AccountError::Backend("username suffix out of range".to_owned())
                    })?;
                    sqlx::query(RAISE_SUFFIX)
                        .bind(base.clone())
                        .bind(largest)
                        .execute(&self.pool)
                        .await
                        .map_err(map_error)?;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// The account `key` is linked to, or an error naming the broken invariant.
    async fn linked_account(&self, key: &IdentityKey) -> Result<Account, AccountError> {
        self.find_by_identity(key).await?.ok_or_else(|| {
            AccountError::Backend("identity reported linked but no account found".to_owned())
        })
    }

    /// spid / cie: the account of the codice fiscale (created if none), then the
    /// identity linked to it.
    async fn link_by_fiscal_code(
        &self,
        new: &NewAccount,
        key: &IdentityKey,
        fiscal_code: &FiscalCode,
    ) -> Result<(Account, bool), AccountError> {
        let existing = match self.find_by_fiscal_code(fiscal_code).await? {
            Some(existing) => existing,
            None => match self.create_linked(new, Some(key)).await {
                Ok(created) => return Ok((created, true)),
                // A concurrent first login of this identity won.
                Err(AccountError::Duplicate(UniqueField::Identity)) => {
                    return Ok((self.linked_account(key).await?, false));
                }
                // A concurrent first login with another scheme created the account.
                Err(AccountError::Duplicate(UniqueField::FiscalCode)) => self
                    .find_by_fiscal_code(fiscal_code)
                    .await?
                    .ok_or_else(|| {
                        AccountError::Backend(
                            "fiscal code reported duplicate but no account found".to_owned(),
                        )
                    })?,
                Err(err) => return Err(err),
            },
        };
        sqlx::query(LINK_IDENTITY)
            .bind(key.scheme.as_str().to_owned())
            .bind(key.subject.clone())
            .bind(existing.id.to_string())
            .bind(timestamp_text(self.clock.now()))
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok((self.linked_account(key).await?, false))
    }

    /// The largest suffix in use for `base` at this moment (0 when none is).
    async fn largest_suffix(&self, base: &str) -> Result<u64, AccountError> {
        let rows = sqlx::query("SELECT username FROM accounts WHERE username LIKE $1")
            .bind(format!("{base}%"))
            .fetch_all(&self.pool)
            .await
            .map_err(map_error)?;
        let mut largest = 0;
        for row in &rows {
            let username: String = row.try_get(0).map_err(map_error)?;
            if let Some(n) = username_suffix(base, &username) {
                largest = largest.max(n);
            }
        }
        Ok(largest)
    }

    /// One try of `create`: in one transaction, the next suffix of the base's counter
    /// and the insert. On any error the transaction rolls back (the number is given
    /// back).
    async fn insert_with_next_username(
        &self,
        account: &mut Account,
        base: &str,
        key: Option<&IdentityKey>,
    ) -> Result<(), AccountError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let suffix: i64 = sqlx::query(NEXT_SUFFIX)
            .bind(base.to_owned())
            .fetch_one(&mut *tx)
            .await
            .map_err(map_error)?
            .try_get(0)
            .map_err(map_error)?;
        account.username = if suffix <= 1 {
            base.to_owned()
        } else {
            format!("{base}{suffix}")
        };
        let query = bind_data(sqlx::query(INSERT).bind(account.id.to_string()), account)?
            .bind(account.last_access_at.map(timestamp_text))
            .bind(timestamp_text(account.created_at))
            .bind(timestamp_text(account.updated_at))
            .bind(account.version);
        query.execute(&mut *tx).await.map_err(map_error)?;
        account.identities.clear();
        if let Some(key) = key {
            sqlx::query(INSERT_IDENTITY)
                .bind(key.scheme.as_str().to_owned())
                .bind(key.subject.clone())
                .bind(account.id.to_string())
                .bind(timestamp_text(account.created_at))
                .execute(&mut *tx)
                .await
                .map_err(map_error)?;
            account.identities.push(LinkedIdentity {
                scheme: key.scheme,
                subject: key.subject.clone(),
                linked_at: account.created_at,
                last_login_at: None,
            });
        }
        tx.commit().await.map_err(map_error)
    }
}

#[async_trait::async_trait]
impl AccountStore for SqlAccountStore {
    async fn create(&self, new: &NewAccount) -> Result<Account, AccountError> {
        self.create_linked(new, None).await
    }

    async fn find_by_id(&self, id: Uuid) -> Result<Option<Account>, AccountError> {
        self.fetch_account(sqlx::query(lookup::BY_ID).bind(id.to_string()))
            .await
    }

    async fn find_by_fiscal_code(
        &self,
        fiscal_code: &FiscalCode,
    ) -> Result<Option<Account>, AccountError> {
        self.fetch_account(
            sqlx::query(lookup::BY_FISCAL_CODE).bind(fiscal_code.as_str().to_owned()),
        )
        .await
    }

    async fn find_by_identity(&self, key: &IdentityKey) -> Result<Option<Account>, AccountError> {
        self.fetch_account(
            sqlx::query(lookup::BY_IDENTITY)
                .bind(key.scheme.as_str().to_owned())
                .bind(key.subject.clone()),
        )
        .await
    }

    async fn find_by_username(&self, username: &str) -> Result<Option<Account>, AccountError> {
        self.fetch_account(sqlx::query(lookup::BY_USERNAME).bind(username.to_owned()))
            .await
    }

    async fn update(&self, account: &Account) -> Result<Account, AccountError> {
        let next_version = account
            .version
            .checked_add(1)
            .ok_or_else(|| AccountError::Backend("version overflow".to_owned()))?;
        let query = bind_data(sqlx::query(UPDATE).bind(account.id.to_string()), account)?
            .bind(timestamp_text(self.clock.now()))
            .bind(next_version)
            .bind(account.version);
        if let Some(updated) = self.fetch_one_where(query).await? {
            return Ok(updated);
        }
        // Nothing matched: either the id is unknown or the version moved on.
        let exists = sqlx::query("SELECT version FROM accounts WHERE id = $1")
            .bind(account.id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_error)?;
        Err(match exists {
            Some(_) => AccountError::Conflict,
            None => AccountError::NotFound,
        })
    }

    async fn link_or_create(
        &self,
        new: &NewAccount,
        key: &IdentityKey,
    ) -> Result<(Account, bool), AccountError> {
        if let Some(existing) = self.find_by_identity(key).await? {
            return Ok((existing, false));
        }
        match (key.scheme, &new.fiscal_code) {
            (Scheme::Spid | Scheme::Cie, Some(fiscal_code))
                if fiscal_code.as_str() == key.subject =>
            {
                self.link_by_fiscal_code(new, key, fiscal_code).await
            }
            (Scheme::Eidas, None) => match self.create_linked(new, Some(key)).await {
                Ok(created) => Ok((created, true)),
                // A concurrent first login won: ours rolled back.
                Err(AccountError::Duplicate(UniqueField::Identity)) => {
                    Ok((self.linked_account(key).await?, false))
                }
                Err(err) => Err(err),
            },
            _ => Err(AccountError::Backend(format!(
                "a {} identity does not fit this account data",
                key.scheme
            ))),
        }
    }

    async fn touch_last_access(
        &self,
        id: Uuid,
        identity: Option<&IdentityKey>,
        at: DateTime<Utc>,
    ) -> Result<(), AccountError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let result = sqlx::query("UPDATE accounts SET last_access_at = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(timestamp_text(at))
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        if result.rows_affected() == 0 {
            return Err(AccountError::NotFound);
        }
        if let Some(key) = identity {
            sqlx::query(TOUCH_IDENTITY)
                .bind(key.scheme.as_str().to_owned())
                .bind(key.subject.clone())
                .bind(timestamp_text(at))
                .execute(&mut *tx)
                .await
                .map_err(map_error)?;
        }
        tx.commit().await.map_err(map_error)
    }

    async fn migrate(&self) -> Result<(), AccountError> {
        migrator().run(&self.pool).await.map_err(|err| match err {
            sqlx::migrate::MigrateError::Execute(inner) => map_error(inner),
            other => AccountError::Backend(format!("migration failed: {other}")),
        })
    }

    async fn ping(&self) -> Result<(), AccountError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    fn pool_load(&self) -> Option<crate::accounts::PoolLoad> {
        let size = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        Some(crate::accounts::PoolLoad {
            in_use: size.saturating_sub(idle),
            max: self.pool.options().get_max_connections(),
        })
    }
}

/// The embedded migrations as a sqlx [`Migrator`].
pub fn migrator() -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// The lookup queries (an account and its identities, [`account_with_identities`]),
/// spelled out so they stay `&'static str` (sqlx 0.9 only takes other strings wrapped in
/// `AssertSqlSafe`).
mod lookup {
    pub const BY_ID: &str = account_with_identities!("accounts.id = $1");
    pub const BY_FISCAL_CODE: &str = account_with_identities!("accounts.fiscal_code = $1");
    pub const BY_IDENTITY: &str = account_with_identities!(
        "accounts.id = (SELECT k.account_id FROM account_identities AS k \
         WHERE k.scheme = $1 AND k.subject = $2)"
    );
    pub const BY_USERNAME: &str = account_with_identities!("accounts.username = $1");
}

/// `Some(1)` for `base` itself, `Some(n)` for `base` + `n` (no leading zero, n ≥ 2).
fn username_suffix(base: &str, username: &str) -> Option<u64> {
    let rest = username.strip_prefix(base)?;
    if rest.is_empty() {
        return Some(1);
    }
    if rest.starts_with('0') || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok().filter(|n| *n >= 2)
}

/// Which unique column a violation is about: PostgreSQL names the index
/// (`accounts_username_key`), SQLite the column (`accounts.username`).
fn unique_field(db: &dyn sqlx::error::DatabaseError) -> Option<UniqueField> {
    let name = db.constraint().unwrap_or_else(|| db.message());
    if name.contains("account_identities") {
        Some(UniqueField::Identity)
    } else if name.contains("fiscal_code") {
        Some(UniqueField::FiscalCode)
    } else if name.contains("username") {
        Some(UniqueField::Username)
    } else {
        None
    }
}

fn map_error(err: sqlx::Error) -> AccountError {
    use sqlx::error::ErrorKind;
    match err {
        sqlx::Error::Database(db) => {
            if db.kind() == ErrorKind::UniqueViolation
                && let Some(field) = unique_field(db.as_ref())
            {
                return AccountError::Duplicate(field);
            }
            // SQLite SQLITE_BUSY (5) / SQLITE_LOCKED (6) and extended codes: the lock wait
            // ran out, which is an overload, not a bug.
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            if matches!(code.as_str(), "5" | "6" | "261" | "262" | "517") {
                return AccountError::Unavailable(db.message().to_owned());
            }
            AccountError::Backend(db.message().to_owned())
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => AccountError::Unavailable(err.to_string()),
        other => AccountError::Backend(other.to_string()),
    }
}

/// Like [`map_error`], but anything at connect time means the database is unreachable.
fn map_connect_error(err: sqlx::Error) -> AccountError {
    match map_error(err) {
        AccountError::Backend(message) => AccountError::Unavailable(message),
        other => other,
    }
}

fn is_sqlite_memory(url: &str) -> bool {
    let (path, query) = split_sqlite_url(url);
    path == ":memory:" || path.is_empty() || query.split('&').any(|pair| pair == "mode=memory")
}

/// `(path, query)` of `sqlite://path?query` or `sqlite:path?query`.
fn split_sqlite_url(url: &str) -> (&str, &str) {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    rest.split_once('?').unwrap_or((rest, ""))
}

/// Creates the parent directory of a SQLite file and adds `mode=rwc` when the URL sets
/// no mode, so the embedded default creates its database on first start.
async fn prepare_sqlite_file(url: &str) -> Result<String, AccountError> {
    let (path, query) = split_sqlite_url(url);
    if let Some(parent) = Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        tokio::fs::create_dir_all(parent).await.map_err(|err| {
            AccountError::Unavailable(format!("cannot create {}: {err}", parent.display()))
        })?;
    }
    if query.split('&').any(|pair| pair.starts_with("mode=")) {
        Ok(url.to_owned())
    } else if query.is_empty() {
        Ok(format!("{url}?mode=rwc"))
    } else {
        Ok(format!("{url}&mode=rwc"))
    }
}

/// WAL is a property of the database file: set it once, on a single connection, before
/// the pool opens (switching needs an exclusive lock that `busy_timeout` cannot wait on).
async fn enable_wal(url: &str) -> Result<(), AccountError> {
    let options: AnyConnectOptions = url.parse().map_err(map_connect_error)?;
    let mut conn = options.connect().await.map_err(map_connect_error)?;
    sqlx::query("PRAGMA journal_mode = WAL")
        .execute(&mut conn)
        .await
        .map_err(map_error)?;
    conn.close().await.map_err(map_error)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::row::parse_timestamp;
    use chrono::Timelike;

    use super::*;

    /// The columns of `accounts`, in the order [`account_from_row`] reads them.
    const SELECT: &str = "SELECT id, username, fiscal_code, given_name, family_name, birth_date, \
         birth_place, sex, email, domicile_json, phones_json, id_document_json, recovery_question, \
         recovery_answer_hash, cp_hash, temp_cp_hmac, temp_cp_issued_at, temp_cp_expires_at, \
         cp_history_json, enablement_state, created_at, updated_at, enabled_at, last_access_at, \
         spid_level, spid_code, terms_json, revocation_json, version FROM accounts";

    #[tokio::test]
    async fn timestamps_come_from_the_clock() {
        let at = DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = crate::clock::ManualClock::at(at);
        let store = SqlAccountStore::connect("sqlite::memory:", 1)
            .await
            .unwrap()
            .with_clock(clock.clone());
        store.migrate().await.unwrap();
        let cf = FiscalCode::parse("RSSMRA80A01H501U").unwrap();
        let created = store
            .create(&NewAccount::new(cf, "Mario", "Rossi"))
            .await
            .unwrap();
        assert_eq!((created.created_at, created.updated_at), (at, at));
        clock.advance(chrono::Duration::hours(1));
        let updated = store.update(&created).await.unwrap();
        assert_eq!(updated.created_at, at);
        assert_eq!(updated.updated_at, at + chrono::Duration::hours(1));
    }

    #[test]
    fn every_migration_file_is_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        files.sort();
        let embedded: Vec<String> = MIGRATIONS
            .iter()
            .map(|(version, description, _)| format!("{version:04}_{description}.sql"))
            .collect();
        assert_eq!(files, embedded);
        for ((_, _, sql), file) in MIGRATIONS.iter().zip(&files) {
            assert_eq!(*sql, std::fs::read_to_string(dir.join(file)).unwrap());
        }
    }

    #[test]
    fn select_lists_agree() {
        for query in [
            lookup::BY_ID,
            lookup::BY_FISCAL_CODE,
            lookup::BY_IDENTITY,
            lookup::BY_USERNAME,
        ] {
            let columns = SELECT.strip_suffix(" FROM accounts").unwrap();
            let identities = concat!(", ", identity_columns!(), " FROM accounts LEFT JOIN ");
            assert!(
                query.starts_with(&format!("{columns}{identities}")),
                "{query}"
            );
        }
        let returning = UPDATE.split("RETURNING ").nth(1).unwrap();
        assert_eq!(
            format!("SELECT {returning} FROM accounts"),
            SELECT,
            "UPDATE … RETURNING lists the SELECT columns"
        );
    }

    #[test]
    fn username_suffixes() {
        assert_eq!(username_suffix("mario.rossi", "mario.rossi"), Some(1));
        assert_eq!(username_suffix("mario.rossi", "mario.rossi2"), Some(2));
        assert_eq!(username_suffix("mario.rossi", "mario.rossi17"), Some(17));
        assert_eq!(username_suffix("mario.rossi", "mario.rossi02"), None);
        assert_eq!(username_suffix("mario.rossi", "mario.rossi1"), None);
        assert_eq!(username_suffix("mario.rossi", "mario.rossini"), None);
        assert_eq!(username_suffix("mario.rossi", "maria.rossi"), None);
    }

    #[test]
    fn timestamps_are_fixed_width_and_lossless() {
        let at = DateTime::parse_from_rfc3339("2026-01-31T08:15:00.000000001Z")
            .unwrap()
            .with_timezone(&Utc);
        let text = timestamp_text(at);
        assert_eq!(text, "2026-01-31T08:15:00.000000001Z");
        assert_eq!(parse_timestamp(&text).unwrap(), at);
        assert_eq!(
            timestamp_text(at.with_nanosecond(0).unwrap()).len(),
            text.len()
        );
    }

    #[test]
    fn sqlite_urls() {
        assert!(is_sqlite_memory("sqlite::memory:"));
        assert!(is_sqlite_memory("sqlite://x.db?mode=memory&cache=shared"));
        assert!(!is_sqlite_memory("sqlite://data/polis.db?mode=rwc"));
        assert_eq!(
            split_sqlite_url("sqlite:///var/lib/polis/a.db?mode=rwc"),
            ("/var/lib/polis/a.db", "mode=rwc")
        );
        assert_eq!(split_sqlite_url("sqlite:data/a.db"), ("data/a.db", ""));
    }
}
