//! Reading a stored `.eml` message back (the outbox pages): headers, the text body and
//! the attachments, parsed with `mail-parser` (MIME structure, transfer encodings,
//! RFC 2047 words, charsets). Nothing here renders HTML: an HTML-only message is
//! given as text (mail-parser's conversion), for the page to escape like any text.

use chrono::{DateTime, Utc};
use mail_parser::{Address, MessageParser, MimeHeaders as _};

use super::{Attachment, MailError};

/// A stored message, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The `From` addresses (`Name <a@b>` or `a@b`).
    pub from: Vec<String>,
    /// The `To` addresses, as `from`.
    pub to: Vec<String>,
    /// The decoded `Subject` (empty when there is none).
    pub subject: String,
    /// The `Date` header.
    pub date: DateTime<Utc>,
    /// The first text body (decoded; an HTML-only body as text).
    pub text: String,
    /// The attachments, in message order.
    pub attachments: Vec<Attachment>,
}

/// What the listing needs of a message, also for one that does not read as mail
/// (then everything is empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The `To` addresses (bare).
    pub to: Vec<String>,
    /// The decoded `Subject`.
    pub subject: String,
    /// The `Date` header, when readable.
    pub date: Option<DateTime<Utc>>,
}

/// Reads `raw` as an RFC 5322 message. One without a `From` or a valid `Date` (both
/// required by RFC 5322; every message we write has them) is
/// [`MailError::Malformed`].
pub fn parse(raw: &[u8]) -> Result<StoredMessage, MailError> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or_else(|| MailError::Malformed("not an RFC 5322 message".to_owned()))?;
    let from = message
        .from()
        .map(|a| addresses(a, true))
        .filter(|list| !list.is_empty())
        .ok_or_else(|| MailError::Malformed("no From header".to_owned()))?;
    let date = message
        .date()
        .filter(|d| d.is_valid())
        .and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0))
        .ok_or_else(|| MailError::Malformed("no valid Date header".to_owned()))?;
    let attachments = message
        .attachments()
        .enumerate()
        .map(|(i, part)| Attachment {
            filename: part
                .attachment_name()
                .map_or_else(|| format!("allegato-{}", i + 1), str::to_owned),
            content_type: part.content_type().map_or_else(
                || "application/octet-stream".to_owned(),
                |t| match t.subtype() {
                    Some(sub) => format!("{}/{sub}", t.ctype()),
                    None => t.ctype().to_owned(),
                },
            ),
            bytes: part.contents().to_vec(),
        })
        .collect();
    Ok(StoredMessage {
        from,
        to: message.to().map(|a| addresses(a, true)).unwrap_or_default(),
        subject: message.subject().unwrap_or_default().to_owned(),
        date,
        text: message
            .body_text(0)
            .map(std::borrow::Cow::into_owned)
            .unwrap_or_default(),
        attachments,
    })
}

/// The listing's fields of `raw`; empty ones when it does not read as mail.
pub fn summary(raw: &[u8]) -> Summary {
    let Some(message) = MessageParser::default().parse_headers(raw) else {
        return Summary::default();
    };
    Summary {
        to: message
            .to()
            .map(|a| addresses(a, false))
            .unwrap_or_default(),
        subject: message.subject().unwrap_or_default().to_owned(),
        date: message
            .date()
            .filter(|d| d.is_valid())
            .and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0)),
    }
}

/// The addresses of a header; with `names`, `Name <a@b>` where a display name is given.
fn addresses(address: &Address<'_>, names: bool) -> Vec<String> {
    address
        .iter()
        .filter_map(|a| {
            let mail = a.address()?;
            Some(match a.name() {
                Some(name) if names && !name.is_empty() => format!("{name} <{mail}>"),
                _ => mail.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;
    use crate::mail::{MailFrom, OutgoingMail, build_message};

    fn built() -> Vec<u8> {
        let mail = OutgoingMail {
            to: vec!["mario.rossi@example.it".to_owned()],
            subject: "Istanze OnLine – Codice Personale temporaneo per l’identità".to_owned(),
            text_body: "Gentile Mario,\n\nCodice Personale temporaneo: ABCD2345EFGH\nla città \
                        di Forlì, una riga lunga abbastanza da essere spezzata dal \
                        quoted-printable in più righe del messaggio\n"
                .to_owned(),
            html_body: None,
            attachments: vec![
                Attachment {
                    filename: "modulo-adesione.pdf".to_owned(),
                    content_type: "application/pdf".to_owned(),
                    bytes: b"%PDF-1.7\n\x00\x01\xff binary".to_vec(),
                },
                Attachment {
                    filename: "modulo-delega.pdf".to_owned(),
                    content_type: "application/pdf".to_owned(),
                    bytes: b"%PDF-1.7 delega".to_vec(),
                },
            ],
        };
        build_message(&MailFrom::default(), &mail)
            .unwrap()
            .formatted()
    }

    #[test]
    fn a_built_message_reads_back_whole() {
        let message = parse(&built()).unwrap();
        assert_eq!(message.to, vec!["mario.rossi@example.it"]);
        assert_eq!(message.from.len(), 1);
        assert!(message.from[0].contains('@'), "{:?}", message.from);
        assert_eq!(
            message.subject,
            "Istanze OnLine – Codice Personale temporaneo per l’identità"
        );
        assert!(
            message
                .text
                .contains("Codice Personale temporaneo: ABCD2345EFGH")
        );
        assert!(
            message.text.contains("la città di Forlì"),
            "{}",
            message.text
        );
        assert!(message.text.contains("in più righe del messaggio"));
        assert!(!message.text.contains("=C3"), "{}", message.text);
        assert_eq!(message.attachments.len(), 2);
        assert_eq!(message.attachments[0].filename, "modulo-adesione.pdf");
        assert_eq!(message.attachments[0].content_type, "application/pdf");
        assert_eq!(
            message.attachments[0].bytes,
            b"%PDF-1.7\n\x00\x01\xff binary".to_vec()
        );
        assert_eq!(message.attachments[1].filename, "modulo-delega.pdf");
        assert!(message.date.timestamp() > 1_700_000_000, "{}", message.date);

        let summary = summary(&built());
        assert_eq!(summary.to, vec!["mario.rossi@example.it"]);
        assert_eq!(summary.subject, message.subject);
        assert!(summary.date.is_some());
    }

    #[test]
    fn hand_written_mime_decodes() {
        let raw = "From: \"Istanze OnLine\" <noreply@example.it>\r\n\
                   To: a@example.it, \"B\" <b@example.it>\r\n\
                   Subject: =?utf-8?b?aWRlbnRpdMOg?= =?utf-8?q?_e_citt=C3=A0?=\r\n\
                   Date: Wed, 02 Dec 2026 20:05:00 +0000\r\n\
                   MIME-Version: 1.0\r\n\
                   Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
                   --b1\r\n\
                   Content-Type: text/plain; charset=utf-8\r\n\
                   Content-Transfer-Encoding: quoted-printable\r\n\r\n\
                   la citt=C3=A0 =\r\ndi Roma <b>non grassetto</b>\r\n\
                   --b1\r\n\
                   Content-Type: application/pdf\r\n\
                   Content-Disposition: attachment; filename=\"x.pdf\"\r\n\
                   Content-Transfer-Encoding: base64\r\n\r\n\
                   JVBERi0x\r\n\
                   --b1--\r\n";
        let message = parse(raw.as_bytes()).unwrap();
        assert_eq!(message.from, vec!["Istanze OnLine <noreply@example.it>"]);
        assert_eq!(message.to, vec!["a@example.it", "B <b@example.it>"]);
        assert_eq!(message.subject, "identità e città");
        assert_eq!(message.date.to_rfc3339(), "2026-12-02T20:05:00+00:00");
        assert!(
            message
                .text
                .contains("la città di Roma <b>non grassetto</b>")
        );
        assert_eq!(message.attachments[0].filename, "x.pdf");
        assert_eq!(message.attachments[0].bytes, b"%PDF-1".to_vec());
        assert_eq!(
            summary(raw.as_bytes()).to,
            vec!["a@example.it", "b@example.it"]
        );
    }

    #[test]
    fn malformed_messages_are_refused_not_panicked_on() {
        for raw in [
            &b""[..],
            b"not a message at all",
            b"\xff\xfe\x00garbage\r\n\r\n",
            b"To: a@example.it\r\nSubject: x\r\n\r\nno From, no Date",
            b"From: a@example.it\r\nDate: yesterday\r\n\r\nbad date",
            b"From: a@example.it\r\nDate: Wed, 02 Dec 2026 20:05:00 +0000\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64",
        ] {
            match parse(raw) {
                Err(MailError::Malformed(_)) => {}
                // Lenient MIME: a truncated part still reads; it must not panic.
                Ok(message) => assert!(message.from.len() == 1, "{raw:?}"),
                Err(other) => panic!("{other:?} for {raw:?}"),
            }
            let _ = summary(raw);
        }
        assert!(matches!(parse(b""), Err(MailError::Malformed(_))));
        assert!(matches!(
            parse(b"To: a@example.it\r\n\r\nx"),
            Err(MailError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"From: a@example.it\r\nDate: yesterday\r\n\r\nx"),
            Err(MailError::Malformed(_))
        ));
    }
}
