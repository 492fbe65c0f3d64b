//! [`HelpdeskAudit`] on the SQL account store (SQLite and PostgreSQL alike).

use sqlx::Row;
use uuid::Uuid;

use super::row::{bad_data, parse_timestamp, timestamp_text};
use super::{SqlAccountStore, map_error};
use crate::accounts::{AccountError, AuditEntry, AuditOutcome, HelpdeskAudit};

const RECORD: &str = "INSERT INTO helpdesk_audit (id, at, staff_fiscal_code, staff_role, \
     action, account_id, reason, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
const FINISH: &str = "UPDATE helpdesk_audit SET outcome = $2 WHERE id = $1";
const FOR_ACCOUNT: &str = "SELECT id, at, staff_fiscal_code, staff_role, action, account_id, \
     reason, outcome FROM helpdesk_audit WHERE account_id = $1 ORDER BY at DESC, id DESC \
     LIMIT $2";

fn entry_from_row(row: &sqlx::any::AnyRow) -> Result<AuditEntry, AccountError> {
    let text = |column: &str| row.try_get::<String, _>(column).map_err(map_error);
    Ok(AuditEntry {
        id: Uuid::parse_str(&text("id")?).map_err(bad_data("id"))?,
        at: parse_timestamp(&text("at")?)?,
        staff: text("staff_fiscal_code")?,
        role: text("staff_role")?,
        action: text("action")?.parse()?,
        account: Uuid::parse_str(&text("account_id")?).map_err(bad_data("account_id"))?,
        reason: text("reason")?,
        outcome: AuditOutcome::from_text(&text("outcome")?),
    })
}

#[async_trait::async_trait]
impl HelpdeskAudit for SqlAccountStore {
    async fn record(&self, entry: &AuditEntry) -> Result<(), AccountError> {
        sqlx::query(RECORD)
            .bind(entry.id.to_string())
            .bind(timestamp_text(entry.at))
            .bind(entry.staff.clone())
            .bind(entry.role.clone())
            .bind(entry.action.as_str().to_owned())
            .bind(entry.account.to_string())
            .bind(entry.reason.clone())
            .bind(entry.outcome.as_text().to_owned())
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn finish(&self, id: Uuid, outcome: &AuditOutcome) -> Result<(), AccountError> {
        let done = sqlx::query(FINISH)
            .bind(id.to_string())
            .bind(outcome.as_text().to_owned())
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        if done.rows_affected() == 0 {
            return Err(AccountError::NotFound);
        }
        Ok(())
    }

    async fn entries_for(
        &self,
        account: Uuid,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, AccountError> {
        let rows = sqlx::query(FOR_ACCOUNT)
            .bind(account.to_string())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map_error)?;
        rows.iter().map(entry_from_row).collect()
    }
}
