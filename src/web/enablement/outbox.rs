//! The demo outbox (demo environment with the outbox transport only): the messages
//! the gateway "sent", readable in the browser. A message is shown read back
//! (`mail::stored`: From, To, Subject, the date in Italian time, the text body as
//! escaped text, the attachments as links); its raw `.eml` stays one link away.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::show;
use crate::mail::outbox::OutboxMailer;
use crate::web::{AppError, AppState};

struct OutboxRow {
    when: String,
    to: String,
    subject: String,
    file: String,
}

#[derive(Template)]
#[template(path = "outbox.html")]
struct OutboxPage {
    entries: Vec<OutboxRow>,
}

struct AttachmentLink {
    number: usize,
    filename: String,
    content_type: String,
    size: String,
}

#[derive(Template)]
#[template(path = "outbox_message.html")]
struct MessagePage {
    file: String,
    from: String,
    to: String,
    subject: String,
    when: String,
    text: String,
    attachments: Vec<AttachmentLink>,
}

fn demo_outbox(app: &AppState) -> Result<&OutboxMailer, AppError> {
    app.outbox.as_deref().ok_or_else(AppError::not_found)
}

/// `GET /demo/posta` (demo mode only).
pub async fn outbox(State(app): State<AppState>) -> Result<Response, AppError> {
    let entries = demo_outbox(&app)?
        .list()
        .await
        .map_err(AppError::from_outbox)?;
    let page = OutboxPage {
        entries: entries
            .into_iter()
            .map(|e| OutboxRow {
                when: e
                    .date
                    .map_or_else(String::new, crate::clock::italian_date_time),
                to: e.to.join(", "),
                subject: if e.subject.is_empty() {
                    "(senza oggetto)".to_owned()
                } else {
                    e.subject
                },
                file: e.file_name,
            })
            .collect(),
    };
    Ok(show(&page))
}

/// `GET /demo/posta/{file}` (demo mode only): the message read back.
pub async fn outbox_message(
    State(app): State<AppState>,
    Path(file): Path<String>,
) -> Result<Response, AppError> {
    let message = demo_outbox(&app)?
        .message(&file)
        .await
        .map_err(AppError::from_outbox)?;
    let page = MessagePage {
        from: message.from.join(", "),
        to: message.to.join(", "),
        subject: message.subject,
        when: crate::clock::italian_date_time(message.date),
        text: message.text,
        attachments: message
            .attachments
            .into_iter()
            .enumerate()
            .map(|(i, a)| AttachmentLink {
                number: i + 1,
                filename: a.filename,
                content_type: a.content_type,
                size: human_size(a.bytes.len()),
            })
            .collect(),
        file,
    };
    Ok(show(&page))
}

/// `GET /demo/posta/{file}/eml` (demo mode only): the message as stored, as text.
pub async fn outbox_raw(
    State(app): State<AppState>,
    Path(file): Path<String>,
) -> Result<Response, AppError> {
    let text = demo_outbox(&app)?
        .read(&file)
        .await
        .map_err(AppError::from_outbox)?;
    // `file` passed the outbox's name check: ASCII letters, digits, `.`, `-`, `_`.
    let disposition = content_disposition("inline", &file)?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        text,
    )
        .into_response())
}

/// `GET /demo/posta/{file}/allegati/{n}` (demo mode only): attachment `n` (from 1). A
/// PDF opens in the browser (`inline`); anything else is a download.
pub async fn outbox_attachment(
    State(app): State<AppState>,
    Path((file, number)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let index = number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_sub(1))
        .ok_or_else(AppError::not_found)?;
    let message = demo_outbox(&app)?
        .message(&file)
        .await
        .map_err(AppError::from_outbox)?;
    let attachment = message
        .attachments
        .into_iter()
        .nth(index)
        .ok_or_else(AppError::not_found)?;
    let name = safe_filename(&attachment.filename, index + 1);
    let pdf = attachment
        .content_type
        .eq_ignore_ascii_case("application/pdf");
    let (content_type, disposition) = if pdf {
        ("application/pdf", content_disposition("inline", &name)?)
    } else {
        (
            "application/octet-stream",
            content_disposition("attachment", &name)?,
        )
    };
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        attachment.bytes,
    )
        .into_response())
}

fn content_disposition(kind: &str, name: &str) -> Result<HeaderValue, AppError> {
    HeaderValue::from_str(&format!("{kind}; filename=\"{name}\""))
        .map_err(|e| AppError::internal(format!("content-disposition: {e}")))
}

/// The attachment's name for the `Content-Disposition` header: its own when it is a
/// plain name (ASCII letters, digits, `.`, `-`, `_`, at most 100), else `allegato-<n>`.
fn safe_filename(name: &str, number: usize) -> String {
    let plain = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if plain {
        name.to_owned()
    } else {
        format!("allegato-{number}")
    }
}

/// `3,2 kB` / `812 byte`.
fn human_size(bytes: usize) -> String {
    if bytes < 1024 {
        format!("{bytes} byte")
    } else {
        let tenths = bytes.saturating_mul(10) / 1024;
        format!("{},{} kB", tenths / 10, tenths % 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names_are_plain_or_replaced() {
        assert_eq!(
            safe_filename("modulo-adesione.pdf", 1),
            "modulo-adesione.pdf"
        );
        for bad in ["", ".x", "a\"b.pdf", "a b.pdf", "à.pdf", "a/b", "x\r\ny"] {
            assert_eq!(safe_filename(bad, 2), "allegato-2", "{bad:?}");
        }
        assert_eq!(human_size(812), "812 byte");
        assert_eq!(human_size(3277), "3,2 kB");
    }
}
