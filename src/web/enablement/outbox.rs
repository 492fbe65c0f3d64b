//! The demo outbox (demo environment with the outbox transport only): the messages
//! the gateway "sent", readable in the browser.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use super::show;
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
    message: Option<(String, String)>,
}

async fn outbox_page(app: &AppState, open: Option<String>) -> Response {
    let Some(outbox) = &app.outbox else {
        return AppError::not_found().into_response();
    };
    let entries = match outbox.list().await {
        Ok(list) => list,
        Err(e) => return AppError::internal(e.to_string()).into_response(),
    };
    let message = match open {
        None => None,
        Some(name) => match outbox.read(&name).await {
            Ok(text) => Some((name, decode_quoted_printable_text(&text))),
            Err(_) => return AppError::not_found().into_response(),
        },
    };
    let page = OutboxPage {
        entries: entries
            .into_iter()
            .map(|e| OutboxRow {
                when: e.date,
                to: e.to.join(", "),
                subject: e.subject,
                file: e.file_name,
            })
            .collect(),
        message,
    };
    show(&page)
}

/// The readable part of a message: headers and the quoted-printable text part
/// decoded; base64 attachments elided.
fn decode_quoted_printable_text(raw: &str) -> String {
    let mut out = String::new();
    let mut in_base64 = false;
    let mut bytes: Vec<u8> = Vec::new();
    let flush = |bytes: &mut Vec<u8>, out: &mut String| {
        out.push_str(&String::from_utf8_lossy(bytes));
        bytes.clear();
    };
    for line in raw.lines() {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("content-transfer-encoding: base64") {
            in_base64 = true;
            out.push_str(line);
            out.push('\n');
            continue;
        }
        if line.starts_with("--") {
            in_base64 = false;
        }
        if in_base64 {
            if line.is_empty() {
                continue;
            }
            if !out.ends_with("[allegato]\n") {
                out.push_str("[allegato]\n");
            }
            continue;
        }
        // Quoted-printable: `=XX` escapes and soft line breaks.
        let (content, soft) = match line.strip_suffix('=') {
            Some(c) => (c, true),
            None => (line, false),
        };
        let raw_bytes = content.as_bytes();
        let mut i = 0;
        while let Some(&b) = raw_bytes.get(i) {
            if b == b'='
                && let (Some(h), Some(l)) = (raw_bytes.get(i + 1), raw_bytes.get(i + 2))
                && let Ok(v) = u8::from_str_radix(&format!("{}{}", *h as char, *l as char), 16)
            {
                bytes.push(v);
                i += 3;
                continue;
            }
            bytes.push(b);
            i += 1;
        }
        if !soft {
            bytes.push(b'\n');
            flush(&mut bytes, &mut out);
        }
    }
    flush(&mut bytes, &mut out);
    out
}

/// `GET /demo/posta` (demo mode only).
pub async fn outbox(State(app): State<AppState>) -> Response {
    outbox_page(&app, None).await
}

/// `GET /demo/posta/{file}` (demo mode only).
pub async fn outbox_message(State(app): State<AppState>, Path(file): Path<String>) -> Response {
    outbox_page(&app, Some(file)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_printable_text_is_decoded_and_attachments_elided() {
        let raw = "Subject: x\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCodice Personale temporaneo: ABCD2345EFGH\r\nla citt=C3=A0 =\r\ndi Roma\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0x\r\nAAAA\r\n--b--\r\n";
        let text = decode_quoted_printable_text(raw);
        assert!(text.contains("Codice Personale temporaneo: ABCD2345EFGH"));
        assert!(text.contains("la città di Roma"));
        assert!(text.contains("[allegato]"));
        assert!(!text.contains("JVBERi0x"));
    }
}
