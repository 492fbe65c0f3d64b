//! The last logins of a person, from the SPID transaction log: the [`LoginHistory`] port
//! and [`TxLogHistory`], which reads the daily files (off the async threads).

use std::path::PathBuf;

use chrono::NaiveDate;

use crate::txlog::{self, LoginSummary};

use super::HelpdeskError;

/// Where the console reads a person's last logins from.
#[async_trait::async_trait]
pub trait LoginHistory: Send + Sync {
    /// The newest `limit` logins naming `fiscal_code` from the UTC day `from` on,
    /// newest first.
    async fn recent(
        &self,
        fiscal_code: &str,
        from: NaiveDate,
        limit: usize,
    ) -> Result<Vec<LoginSummary>, HelpdeskError>;
}

/// [`LoginHistory`] over the transaction log's directory.
#[derive(Debug, Clone)]
pub struct TxLogHistory {
    dir: PathBuf,
}

impl TxLogHistory {
    /// The history kept in `dir` (`[txlog] dir`).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
}

#[async_trait::async_trait]
impl LoginHistory for TxLogHistory {
    async fn recent(
        &self,
        fiscal_code: &str,
        from: NaiveDate,
        limit: usize,
    ) -> Result<Vec<LoginSummary>, HelpdeskError> {
        let dir = self.dir.clone();
        let fiscal_code = fiscal_code.to_owned();
        tokio::task::spawn_blocking(move || {
            txlog::recent_for_person(&dir, &fiscal_code, from, limit)
        })
        .await
        .map_err(|e| HelpdeskError::History(e.to_string()))?
        .map_err(|e| HelpdeskError::History(e.to_string()))
    }
}
