//! The CSV report of a run: one row per account acted on.

use std::io::Write;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use uuid::Uuid;

use super::CampaignError;

/// One account in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    /// The account.
    pub account: Uuid,
    /// Its username.
    pub username: String,
    /// Its last activity.
    pub last_active: DateTime<Utc>,
    /// Its deadline under the rule.
    pub deadline: NaiveDate,
    /// `notified`, `already_notified`, `revoked`, `failed`.
    pub action: &'static str,
    /// The notice's days and announced date, or why it failed.
    pub detail: String,
}

/// The header line.
pub const HEADER: &str = "account_id,username,last_active,deadline,action,detail";

/// A CSV field, quoted when it needs it (RFC 4180); a leading `=`, `+`, `-` or `@` is
/// prefixed with `'` so a spreadsheet does not read it as a formula.
fn field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

impl ReportRow {
    /// The row as one CSV line (without the line end).
    pub fn csv(&self) -> String {
        [
            self.account.to_string(),
            field(&self.username),
            self.last_active.to_rfc3339_opts(SecondsFormat::Secs, true),
            self.deadline.to_string(),
            self.action.to_owned(),
            field(&self.detail),
        ]
        .join(",")
    }
}

/// Writes rows to a file (or any writer), header first.
pub struct CsvReport<W: Write> {
    out: W,
}

impl<W: Write> CsvReport<W> {
    /// Starts a report with its header.
    pub fn new(mut out: W) -> Result<Self, CampaignError> {
        writeln!(out, "{HEADER}").map_err(|e| CampaignError::Report(e.to_string()))?;
        Ok(Self { out })
    }

    /// Appends a row.
    pub fn row(&mut self, row: &ReportRow) -> Result<(), CampaignError> {
        writeln!(self.out, "{}", row.csv()).map_err(|e| CampaignError::Report(e.to_string()))
    }

    /// Flushes and gives the writer back.
    pub fn finish(mut self) -> Result<W, CampaignError> {
        self.out
            .flush()
            .map_err(|e| CampaignError::Report(e.to_string()))?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        assert_eq!(field("mario.rossi"), "mario.rossi");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        let row = ReportRow {
            account: Uuid::nil(),
            username: "mario.rossi".into(),
            last_active: DateTime::parse_from_rfc3339("2025-09-11T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            deadline: "2026-12-11".parse().unwrap(),
            action: "notified",
            detail: "90 days; revocation on 2026-12-11".into(),
        };
        let mut report = CsvReport::new(Vec::new()).unwrap();
        report.row(&row).unwrap();
        let text = String::from_utf8(report.finish().unwrap()).unwrap();
        assert_eq!(
            text,
            format!(
                "{HEADER}\n00000000-0000-0000-0000-000000000000,mario.rossi,2025-09-11T10:00:00Z,2026-12-11,notified,90 days; revocation on 2026-12-11\n"
            )
        );
    }
}
