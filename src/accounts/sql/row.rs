//! Row mapping for [`super::SqlAccountStore`]: how an [`Account`] becomes the bound
//! parameters of INSERT/UPDATE and how a row becomes an [`Account`] again. The `Any`
//! driver moves only booleans, integers, floats, text and bytes, so every conversion
//! (timestamps, dates, JSON columns) lives here.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::{AnyQuery, map_error};
use crate::accounts::{Account, AccountError, FiscalCode, LinkedIdentity, Phones, TempCp};
use crate::identity::Scheme;

/// Binds `$2`…`$24`: the columns both INSERT and UPDATE write, in that order.
pub(super) fn bind_data<'q>(
    query: AnyQuery<'q>,
    account: &Account,
) -> Result<AnyQuery<'q>, AccountError> {
    let temp = account.temp_cp.as_ref();
    Ok(query
        .bind(account.username.clone())
        .bind(account.fiscal_code.as_ref().map(|f| f.as_str().to_owned()))
        .bind(account.given_name.clone())
        .bind(account.family_name.clone())
        .bind(account.birth_date.map(date_text))
        .bind(account.birth_place.clone())
        .bind(account.sex.clone())
        .bind(account.email.clone())
        .bind(account.domicile.as_ref().map(to_json).transpose()?)
        .bind(to_json(&account.phones)?)
        .bind(account.id_document.as_ref().map(to_json).transpose()?)
        .bind(account.recovery_question.clone())
        .bind(account.recovery_answer_hash.clone())
        .bind(account.cp_hash.clone())
        .bind(temp.map(|t| t.hmac.clone()))
        .bind(temp.map(|t| timestamp_text(t.issued_at)))
        .bind(temp.map(|t| timestamp_text(t.expires_at)))
        .bind(to_json(&account.cp_history)?)
        .bind(account.enablement_state.as_str().to_owned())
        .bind(account.enabled_at.map(timestamp_text))
        .bind(account.spid_level.map(i64::from))
        .bind(account.spid_code.clone())
        .bind(account.terms.as_ref().map(to_json).transpose()?)
        .bind(account.revocation.as_ref().map(to_json).transpose()?))
}

/// The identities in `rows` (`identity_columns!`, prefixed `i_`), in row order; a row
/// whose `i_scheme` is NULL (the LEFT JOIN of an account without identities) holds none.
pub(super) fn identities_from_rows(rows: &[AnyRow]) -> Result<Vec<LinkedIdentity>, AccountError> {
    let mut identities = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(scheme) = row
            .try_get::<Option<String>, _>("i_scheme")
            .map_err(map_error)?
        else {
            continue;
        };
        let linked_at: String = row.try_get("i_linked_at").map_err(map_error)?;
        let last_login_at: Option<String> = row.try_get("i_last_login_at").map_err(map_error)?;
        identities.push(LinkedIdentity {
            scheme: scheme.parse::<Scheme>().map_err(bad_data("scheme"))?,
            subject: row.try_get("i_subject").map_err(map_error)?,
            linked_at: parse_timestamp(&linked_at)?,
            last_login_at: last_login_at.as_deref().map(parse_timestamp).transpose()?,
        });
    }
    Ok(identities)
}

pub(super) fn account_from_row(row: &AnyRow) -> Result<Account, AccountError> {
    let text = |column: &str| -> Result<String, AccountError> {
        row.try_get::<String, _>(column).map_err(map_error)
    };
    let opt_text = |column: &str| -> Result<Option<String>, AccountError> {
        row.try_get::<Option<String>, _>(column).map_err(map_error)
    };
    let opt_int = |column: &str| -> Result<Option<i64>, AccountError> {
        row.try_get::<Option<i64>, _>(column).map_err(map_error)
    };
    let opt_time = |column: &str| -> Result<Option<DateTime<Utc>>, AccountError> {
        opt_text(column)?
            .as_deref()
            .map(parse_timestamp)
            .transpose()
    };

    let id = Uuid::parse_str(&text("id")?).map_err(bad_data("id"))?;
    let fiscal_code = opt_text("fiscal_code")?
        .as_deref()
        .map(FiscalCode::parse)
        .transpose()
        .map_err(bad_data("fiscal_code"))?;
    let temp_cp = match (
        opt_text("temp_cp_hmac")?,
        opt_time("temp_cp_issued_at")?,
        opt_time("temp_cp_expires_at")?,
    ) {
        (Some(hmac), Some(issued_at), Some(expires_at)) => Some(TempCp {
            hmac,
            issued_at,
            expires_at,
        }),
        _ => None,
    };
    let phones: Phones = from_json(&text("phones_json")?, "phones_json")?;
    Ok(Account {
        id,
        username: text("username")?,
        fiscal_code,
        identities: Vec::new(),
        given_name: text("given_name")?,
        family_name: text("family_name")?,
        birth_date: opt_text("birth_date")?
            .as_deref()
            .map(parse_date)
            .transpose()?,
        birth_place: opt_text("birth_place")?,
        sex: opt_text("sex")?,
        email: opt_text("email")?,
        domicile: opt_text("domicile_json")?
            .map(|json| from_json(&json, "domicile_json"))
            .transpose()?,
        phones,
        id_document: opt_text("id_document_json")?
            .map(|json| from_json(&json, "id_document_json"))
            .transpose()?,
        recovery_question: opt_text("recovery_question")?,
        recovery_answer_hash: opt_text("recovery_answer_hash")?,
        cp_hash: opt_text("cp_hash")?,
        cp_history: from_json(&text("cp_history_json")?, "cp_history_json")?,
        temp_cp,
        enablement_state: text("enablement_state")?.parse()?,
        created_at: parse_timestamp(&text("created_at")?)?,
        updated_at: parse_timestamp(&text("updated_at")?)?,
        enabled_at: opt_time("enabled_at")?,
        last_access_at: opt_time("last_access_at")?,
        spid_level: opt_int("spid_level")?
            .map(u8::try_from)
            .transpose()
            .map_err(bad_data("spid_level"))?,
        spid_code: opt_text("spid_code")?,
        terms: opt_json(row, "terms_json")?,
        revocation: opt_json(row, "revocation_json")?,
        version: row.try_get::<i64, _>("version").map_err(map_error)?,
    })
}

/// RFC 3339, UTC, nanoseconds, `Z`: fixed width, so text order is time order.
/// A nullable JSON column.
fn opt_json<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    column: &'static str,
) -> Result<Option<T>, AccountError> {
    row.try_get::<Option<String>, _>(column)
        .map_err(map_error)?
        .map(|json| from_json(&json, column))
        .transpose()
}

pub(super) fn timestamp_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

pub(super) fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, AccountError> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(bad_data("timestamp"))
}

fn date_text(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

fn parse_date(text: &str) -> Result<NaiveDate, AccountError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(bad_data("date"))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, AccountError> {
    serde_json::to_string(value).map_err(|err| AccountError::Backend(format!("json: {err}")))
}

fn from_json<T: serde::de::DeserializeOwned>(
    json: &str,
    column: &'static str,
) -> Result<T, AccountError> {
    serde_json::from_str(json).map_err(bad_data(column))
}

pub(super) fn bad_data<E: std::fmt::Display>(column: &'static str) -> impl Fn(E) -> AccountError {
    move |err| AccountError::Backend(format!("bad stored {column}: {err}"))
}
