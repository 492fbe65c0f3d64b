//! What an inactivity campaign reads and writes: accounts not used since a moment,
//! streamed in pages of bounded size (keyset pagination on `id`, so memory does not grow
//! with the table and a page never repeats or skips an account), and the notice
//! records that make each notice e-mail go out at most once (claimed before it is sent).

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::{AccountError, EnablementState};

/// An account as a campaign sees it: who to write to and since when it is unused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dormant {
    /// The account.
    pub id: Uuid,
    /// Its username.
    pub username: String,
    /// Its reference e-mail address, if any.
    pub email: Option<String>,
    /// Nome.
    pub given_name: String,
    /// Cognome.
    pub family_name: String,
    /// Its enablement state (never `not_enabled`: those have nothing to revoke).
    pub state: EnablementState,
    /// The last login, or the creation of an account never logged into since.
    pub last_active: DateTime<Utc>,
}

/// One notice: to an account, about a deadline, so many days before it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NoticeKey {
    /// The account.
    pub account: Uuid,
    /// The revocation date the notice announces (the campaign's deadline for it).
    pub deadline: NaiveDate,
    /// Days before the deadline this notice belongs to (`--notify-days`).
    pub days: u32,
}

/// The campaign side of the account database.
#[async_trait::async_trait]
pub trait CampaignStore: Send + Sync {
    /// At most `limit` accounts past `not_enabled` whose last activity is before
    /// `inactive_before`, with an id greater than `after`, in id order.
    async fn dormant_page(
        &self,
        inactive_before: DateTime<Utc>,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Dormant>, AccountError>;
    /// Claims a notice for `campaign` at `at`: `true` if this call claimed it, `false`
    /// if it was claimed before (sent, or interrupted by a crash: never sent twice).
    async fn claim_notice(
        &self,
        key: &NoticeKey,
        campaign: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, AccountError>;
    /// Records that the mail server took the claimed notice at `at`.
    async fn notice_sent(&self, key: &NoticeKey, at: DateTime<Utc>) -> Result<(), AccountError>;
    /// Gives a claimed notice back after the mail server refused it (a later run
    /// tries again).
    async fn release_notice(&self, key: &NoticeKey) -> Result<(), AccountError>;
    /// When the first notice about `deadline` that the mail server took went to
    /// `account`, if any.
    async fn first_notice_sent(
        &self,
        account: Uuid,
        deadline: NaiveDate,
    ) -> Result<Option<DateTime<Utc>>, AccountError>;
}
