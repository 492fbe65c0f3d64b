//! [`CampaignStore`] on the SQL account store (SQLite and PostgreSQL alike).

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::row::{bad_data, parse_timestamp, timestamp_text};
use super::{SqlAccountStore, map_error};
use crate::accounts::{AccountError, CampaignStore, Dormant, NoticeKey};

/// Accounts past `not_enabled` unused since `$1`, after id `$2`, in id order. The last
/// activity of an account never logged into since its creation is its creation.
const DORMANT_PAGE: &str = "SELECT id, username, email, given_name, family_name, \
     enablement_state, COALESCE(last_access_at, created_at) AS last_active FROM accounts \
     WHERE enablement_state <> 'not_enabled' AND COALESCE(last_access_at, created_at) < $1 \
     AND id > $2 ORDER BY id LIMIT $3";
const CLAIM: &str = "INSERT INTO inactivity_notices (account_id, deadline, notice_days, \
     campaign, claimed_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (account_id, deadline, notice_days) DO NOTHING";
const SENT: &str = "UPDATE inactivity_notices SET sent_at = $4 WHERE account_id = $1 \
     AND deadline = $2 AND notice_days = $3";
const RELEASE: &str = "DELETE FROM inactivity_notices WHERE account_id = $1 \
     AND deadline = $2 AND notice_days = $3 AND sent_at IS NULL";
const FIRST_SENT: &str = "SELECT MIN(sent_at) AS first FROM inactivity_notices \
     WHERE account_id = $1 AND deadline = $2 AND sent_at IS NOT NULL";

fn date_text(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

fn bind_key<'q>(query: super::AnyQuery<'q>, key: &NoticeKey) -> super::AnyQuery<'q> {
    query
        .bind(key.account.to_string())
        .bind(date_text(key.deadline))
        .bind(i64::from(key.days))
}

fn dormant_from_row(row: &sqlx::any::AnyRow) -> Result<Dormant, AccountError> {
    let text = |column: &str| row.try_get::<String, _>(column).map_err(map_error);
    Ok(Dormant {
        id: Uuid::parse_str(&text("id")?).map_err(bad_data("id"))?,
        username: text("username")?,
        email: row
            .try_get::<Option<String>, _>("email")
            .map_err(map_error)?,
        given_name: text("given_name")?,
        family_name: text("family_name")?,
        state: text("enablement_state")?.parse()?,
        last_active: parse_timestamp(&text("last_active")?)?,
    })
}

#[async_trait::async_trait]
impl CampaignStore for SqlAccountStore {
    async fn dormant_page(
        &self,
        inactive_before: DateTime<Utc>,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Dormant>, AccountError> {
        // Every id is a UUID's text, and "" sorts before all of them.
        let after = after.map(|id| id.to_string()).unwrap_or_default();
        let rows = sqlx::query(DORMANT_PAGE)
            .bind(timestamp_text(inactive_before))
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map_error)?;
        rows.iter().map(dormant_from_row).collect()
    }

    async fn claim_notice(
        &self,
        key: &NoticeKey,
        campaign: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, AccountError> {
        let done = bind_key(sqlx::query(CLAIM), key)
            .bind(campaign.to_owned())
            .bind(timestamp_text(at))
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn notice_sent(&self, key: &NoticeKey, at: DateTime<Utc>) -> Result<(), AccountError> {
        bind_key(sqlx::query(SENT), key)
            .bind(timestamp_text(at))
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn release_notice(&self, key: &NoticeKey) -> Result<(), AccountError> {
        bind_key(sqlx::query(RELEASE), key)
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn first_notice_sent(
        &self,
        account: Uuid,
        deadline: NaiveDate,
    ) -> Result<Option<DateTime<Utc>>, AccountError> {
        let row = sqlx::query(FIRST_SENT)
            .bind(account.to_string())
            .bind(date_text(deadline))
            .fetch_one(&self.pool)
            .await
            .map_err(map_error)?;
        row.try_get::<Option<String>, _>("first")
            .map_err(map_error)?
            .as_deref()
            .map(parse_timestamp)
            .transpose()
    }
}
