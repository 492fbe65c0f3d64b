//! Outgoing e-mail: the [`Mailer`] port, the message model and its configuration.
//!
//! Two backends: [`outbox::OutboxMailer`] (the embedded default) writes every message as
//! an RFC 5322 `.eml` file into a directory, where the demo "outbox" page can read it;
//! [`smtp::SmtpMailer`] hands it to an SMTP relay with lettre. Both build the same MIME
//! message with [`build_message`]: `multipart/mixed` with the text body (plus an optional
//! HTML alternative) and the attachments, UTF-8 throughout, with `Date` and `Message-ID`.
//!
//! The bodies may hold a temporary Codice Personale, so [`OutgoingMail`]'s `Debug` output
//! never shows them, and no error message in this module quotes them.

/// The outbox directory backend: `.eml` files, listed and read by the demo page.
pub mod outbox;
/// The SMTP backend (lettre, tokio, native-tls).
pub mod smtp;
/// Reading a stored `.eml` back (mail-parser): headers, text body, attachments.
pub mod stored;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Attachment as LettreAttachment, Mailbox, MultiPart, SinglePart};
use serde::Deserialize;

use crate::clock::SharedClock;

/// Why a message could not be sent (or an outbox file not read).
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// A recipient or sender address (or an attachment's content type) is malformed.
    #[error("invalid address: {0}")]
    InvalidAddress(String),
    /// The mail server cannot be reached, timed out, or answered 4xx: nothing was
    /// delivered, and the caller may retry or resume later.
    #[error("mail server unavailable: {0}")]
    Unavailable(String),
    /// The mail server refused the message for good (5xx): retrying will not help.
    #[error("message rejected by the mail server: {0}")]
    Rejected(String),
    /// A local I/O failure (outbox directory, password file).
    #[error("mail i/o error: {0}")]
    Io(String),
    /// The mail configuration is unusable (the message names the key).
    #[error("invalid mail configuration: {0}")]
    Config(String),
    /// An outbox file name that is not a plain `*.eml` name (path traversal and the like).
    #[error("invalid outbox file name")]
    BadFileName,
    /// No such file in the outbox.
    #[error("no such outbox message")]
    NotFound,
    /// An outbox file that does not read as an e-mail message (what is wrong).
    #[error("outbox message not readable: {0}")]
    Malformed(String),
}

impl MailError {
    /// Stable code for pages and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidAddress(_) => "POLIS_MAIL_INVALID_ADDRESS",
            Self::Unavailable(_) => "POLIS_MAIL_UNAVAILABLE",
            Self::Rejected(_) => "POLIS_MAIL_REJECTED",
            Self::Io(_) => "POLIS_MAIL_IO",
            Self::Config(_) => "POLIS_MAIL_CONFIG",
            Self::BadFileName => "POLIS_MAIL_OUTBOX_BAD_NAME",
            Self::NotFound => "POLIS_MAIL_OUTBOX_NOT_FOUND",
            Self::Malformed(_) => "POLIS_MAIL_OUTBOX_MALFORMED",
        }
    }
}

/// A file attached to a message.
#[derive(Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The file name the recipient sees (e.g. `modulo-adesione.pdf`).
    pub filename: String,
    /// MIME type, e.g. `application/pdf`.
    pub content_type: String,
    /// The content.
    pub bytes: Vec<u8>,
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("filename", &self.filename)
            .field("content_type", &self.content_type)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// A message to send. The sender comes from [`MailConfig::from`].
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    /// Recipient addresses (`To`), at least one.
    pub to: Vec<String>,
    /// The subject (UTF-8; encoded as needed).
    pub subject: String,
    /// The plain-text body (always present).
    pub text_body: String,
    /// An optional HTML rendering of the same content (`multipart/alternative`).
    pub html_body: Option<String>,
    /// Files attached after the body.
    pub attachments: Vec<Attachment>,
}

impl fmt::Debug for OutgoingMail {
    /// Bodies are redacted: they may carry a temporary Codice Personale.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingMail")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .field(
                "text_body",
                &format_args!("<{} bytes>", self.text_body.len()),
            )
            .field(
                "html_body",
                &self
                    .html_body
                    .as_ref()
                    .map(|html| format!("<{} bytes>", html.len())),
            )
            .field("attachments", &self.attachments)
            .finish()
    }
}

/// The outgoing-mail port. Implementations are shared as `Arc<dyn Mailer>`.
#[async_trait::async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Sends (or, for the outbox, stores) one message. `Ok` means the server accepted it
    /// for every recipient (or the file is complete on disk).
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError>;

    /// Whether the transport can take mail now (the SMTP relay answers, the outbox
    /// directory is there), for the health metrics. Sends nothing.
    async fn check(&self) -> Result<(), MailError> {
        Ok(())
    }
}

/// A [`Mailer`] that times every send: `polis_mail_send_duration_seconds{outcome}`
/// (`sent` or the error code) for each message, whatever its kind.
pub struct MeteredMailer(pub Arc<dyn Mailer>);

#[async_trait::async_trait]
impl Mailer for MeteredMailer {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError> {
        let started = std::time::Instant::now();
        let sent = self.0.send(mail).await;
        let outcome = match &sent {
            Ok(()) => "sent",
            Err(e) => e.code(),
        };
        metrics::histogram!("polis_mail_send_duration_seconds", "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        sent
    }

    async fn check(&self) -> Result<(), MailError> {
        self.0.check().await
    }
}

/// The `From` of every message.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MailFrom {
    /// The sender address, e.g. `noreply@istanze.example.it`.
    pub address: String,
    /// The display name, e.g. `Istanze OnLine`.
    pub name: String,
}

impl Default for MailFrom {
    fn default() -> Self {
        Self {
            address: "noreply@polis.invalid".to_owned(),
            name: "Istanze OnLine".to_owned(),
        }
    }
}

/// How `STARTTLS` is used on an SMTP connection.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StartTls {
    /// Upgrade with `STARTTLS` and fail if the server does not offer it (production).
    Required,
    /// Upgrade when the server offers `STARTTLS`, else stay in clear (discouraged).
    Opportunistic,
    /// Plain SMTP, never TLS: only for a relay on loopback or a trusted local network.
    None,
}

/// The SMTP transport settings.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Relay host name (also the name its TLS certificate is checked against).
    pub host: String,
    /// TCP port (587 for submission with STARTTLS, 25 for a local relay).
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// `required` (default), `opportunistic` or `none`.
    #[serde(default = "default_starttls")]
    pub starttls: StartTls,
    /// SMTP AUTH user name; when set, `password_file` is required.
    #[serde(default)]
    pub username: Option<String>,
    /// A file holding the SMTP AUTH password (one line; a trailing newline is
    /// ignored), read once at start. Secrets are never written inline in config.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Timeout of the connection and of each SMTP command, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("starttls", &self.starttls)
            .field("username", &self.username)
            .field("password_file", &self.password_file)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

fn default_smtp_port() -> u16 {
    587
}

fn default_starttls() -> StartTls {
    StartTls::Required
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// The outbox transport settings.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// Directory of the `.eml` files; created with mode 0700 if missing.
    pub dir: PathBuf,
}

impl Default for OutboxConfig {
    /// No directory yet: config validation puts it under `data_dir` (`<data_dir>/outbox`).
    fn default() -> Self {
        Self {
            dir: PathBuf::new(),
        }
    }
}

/// Where messages go, tagged by `kind`:
/// `{ kind = "outbox", dir = "…" }` or `{ kind = "smtp", host = "…", … }`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MailTransport {
    /// Write `.eml` files into a directory (the embedded default; demo and tests).
    Outbox(OutboxConfig),
    /// Send through an SMTP relay.
    Smtp(SmtpConfig),
}

impl Default for MailTransport {
    fn default() -> Self {
        Self::Outbox(OutboxConfig::default())
    }
}

/// The `[mail]` configuration section.
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// The sender of every message.
    #[serde(default)]
    pub from: MailFrom,
    /// The backend; the outbox in `<data_dir>/outbox` when absent.
    #[serde(default)]
    pub transport: MailTransport,
}

/// Builds the configured backend. Reads the SMTP password file and creates the outbox
/// directory, so call it once at start. The outbox names its files from `clock`.
pub fn mailer_from_config(
    config: &MailConfig,
    clock: SharedClock,
) -> Result<Arc<dyn Mailer>, MailError> {
    match &config.transport {
        MailTransport::Outbox(outbox) => Ok(Arc::new(
            outbox::OutboxMailer::new(config.from.clone(), &outbox.dir)?.with_clock(clock),
        )),
        MailTransport::Smtp(smtp) => {
            Ok(Arc::new(smtp::SmtpMailer::new(config.from.clone(), smtp)?))
        }
    }
}

/// Parses `address` as a bare e-mail address (no display name).
fn parse_address(address: &str) -> Result<lettre::Address, MailError> {
    address
        .trim()
        .parse::<lettre::Address>()
        .map_err(|e| MailError::InvalidAddress(format!("{address:?}: {e}")))
}

/// The sender mailbox (display name + address).
fn sender_mailbox(from: &MailFrom) -> Result<Mailbox, MailError> {
    let address = parse_address(&from.address)?;
    let name = from.name.trim();
    Ok(Mailbox::new(
        (!name.is_empty()).then(|| name.to_owned()),
        address,
    ))
}

/// Builds the MIME message: `multipart/mixed` holding the text body (or a
/// `multipart/alternative` of text and HTML) followed by the attachments; UTF-8,
/// `Date` now, `Message-ID` `<uuid@sender domain>`.
pub fn build_message(from: &MailFrom, mail: &OutgoingMail) -> Result<Message, MailError> {
    let sender = sender_mailbox(from)?;
    if mail.to.is_empty() {
        return Err(MailError::InvalidAddress("no recipient".to_owned()));
    }
    let message_id = format!(
        "<{}@{}>",
        uuid::Uuid::new_v4().simple(),
        sender.email.domain()
    );
    let mut builder = Message::builder()
        .from(sender)
        .subject(mail.subject.clone())
        .message_id(Some(message_id))
        .date_now();
    for to in &mail.to {
        builder = builder.to(Mailbox::new(None, parse_address(to)?));
    }

    // Quoted-printable keeps ASCII lines (a code, a link) readable in the raw message.
    let text = SinglePart::builder()
        .header(ContentType::TEXT_PLAIN)
        .header(lettre::message::header::ContentTransferEncoding::QuotedPrintable)
        .body(mail.text_body.clone());
    let body = match &mail.html_body {
        Some(html) => MultiPart::alternative().singlepart(text).singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_HTML)
                .body(html.clone()),
        ),
        None => MultiPart::mixed().singlepart(text),
    };
    let mut mixed = match &mail.html_body {
        Some(_) => MultiPart::mixed().multipart(body),
        None => body,
    };
    for attachment in &mail.attachments {
        let content_type = ContentType::parse(&attachment.content_type).map_err(|e| {
            MailError::InvalidAddress(format!(
                "content type {:?} of {:?}: {e}",
                attachment.content_type, attachment.filename
            ))
        })?;
        mixed = mixed.singlepart(
            LettreAttachment::new(attachment.filename.clone())
                .body(attachment.bytes.clone(), content_type),
        );
    }
    builder
        .multipart(mixed)
        .map_err(|e| MailError::InvalidAddress(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn mail() -> OutgoingMail {
        OutgoingMail {
            to: vec!["mario.rossi@example.it".to_owned()],
            subject: "Istanze OnLine – codice personale temporaneo".to_owned(),
            text_body: "Il suo codice personale temporaneo è ABCD2345EF".to_owned(),
            html_body: Some("<p>codice ABCD2345EF</p>".to_owned()),
            attachments: vec![Attachment {
                filename: "modulo-adesione.pdf".to_owned(),
                content_type: "application/pdf".to_owned(),
                bytes: b"%PDF-1.7 test".to_vec(),
            }],
        }
    }

    #[test]
    fn debug_redacts_bodies() {
        let shown = format!("{:?}", mail());
        assert!(!shown.contains("ABCD2345EF"), "{shown}");
        assert!(shown.contains("mario.rossi@example.it"));
        assert!(shown.contains("modulo-adesione.pdf"));
    }

    #[test]
    fn message_has_headers_parts_and_attachment() {
        let message = build_message(&MailFrom::default(), &mail()).unwrap();
        let text = String::from_utf8(message.formatted()).unwrap();
        assert!(text.contains("Date: "), "{text}");
        assert!(text.contains("Message-ID: <"), "{text}");
        assert!(text.contains("@polis.invalid>"), "{text}");
        assert!(
            text.contains("From: \"Istanze OnLine\" <noreply@polis.invalid>"),
            "{text}"
        );
        assert!(text.contains("To: mario.rossi@example.it"), "{text}");
        assert!(text.contains("multipart/mixed"), "{text}");
        assert!(text.contains("multipart/alternative"), "{text}");
        assert!(text.contains("Content-Type: application/pdf"), "{text}");
        assert!(text.contains("filename=\"modulo-adesione.pdf\""), "{text}");
        let envelope = message.envelope();
        assert_eq!(envelope.to().len(), 1);
    }

    #[test]
    fn bad_addresses_are_refused() {
        let mut bad = mail();
        bad.to = vec!["not an address".to_owned()];
        let err = build_message(&MailFrom::default(), &bad).unwrap_err();
        assert_eq!(err.code(), "POLIS_MAIL_INVALID_ADDRESS");
        bad.to.clear();
        assert!(matches!(
            build_message(&MailFrom::default(), &bad),
            Err(MailError::InvalidAddress(_))
        ));
        let from = MailFrom {
            address: "nobody".to_owned(),
            name: String::new(),
        };
        assert!(matches!(
            build_message(&from, &mail()),
            Err(MailError::InvalidAddress(_))
        ));
    }

    #[test]
    fn config_is_tagged_and_strict() {
        let config: MailConfig = serde_json::from_str(
            r#"{"from": {"address": "a@b.it", "name": "X"},
                "transport": {"kind": "smtp", "host": "smtp.example.it",
                              "starttls": "none", "port": 25}}"#,
        )
        .unwrap();
        match config.transport {
            MailTransport::Smtp(smtp) => {
                assert_eq!(smtp.port, 25);
                assert_eq!(smtp.starttls, StartTls::None);
                assert_eq!(smtp.timeout_ms, 10_000);
                assert!(smtp.username.is_none());
            }
            other => panic!("{other:?}"),
        }
        let default: MailConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(
            default.transport,
            MailTransport::Outbox(OutboxConfig::default())
        );
        for bad in [
            r#"{"transport": {"kind": "smtp", "host": "h", "password": "inline"}}"#,
            r#"{"transport": {"kind": "outbox", "dir": "d", "extra": 1}}"#,
            r#"{"transport": {"kind": "carrier-pigeon"}}"#,
            r#"{"sender": "a@b.it"}"#,
        ] {
            assert!(serde_json::from_str::<MailConfig>(bad).is_err(), "{bad}");
        }
    }
}
