//! E-mail end to end: `SmtpMailer` against a real SMTP server on loopback
//! (`support::smtp`, Debian's aiosmtpd) and the outbox directory backend.

use std::time::{Duration, Instant};

use polis_gateway::mail::outbox::OutboxMailer;
use polis_gateway::mail::smtp::SmtpMailer;
use polis_gateway::mail::{
    Attachment, MailError, MailFrom, Mailer, OutgoingMail, SmtpConfig, StartTls,
};
use polis_gateway::pdf::{FormData, modulo_adesione};

use crate::support::free_port;
use crate::support::smtp::{SmtpServer, parse_eml};

fn from() -> MailFrom {
    MailFrom {
        address: "noreply@istanze.example.it".to_owned(),
        name: "Istanze OnLine".to_owned(),
    }
}

fn smtp_config(port: u16) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".to_owned(),
        port,
        starttls: StartTls::None,
        username: None,
        password_file: None,
        timeout_ms: 5_000,
    }
}

fn form() -> FormData {
    FormData {
        eidas_identifier: None,
        given_name: "Niccolò".to_owned(),
        family_name: "Rossi".to_owned(),
        fiscal_code: "RSSNCL80A01H501U".to_owned(),
        birth_date: Some("01/01/1980".to_owned()),
        birth_place: Some("Roma (RM)".to_owned()),
        email: Some("niccolo.rossi@example.it".to_owned()),
        domicile: Some("Via Roma 1, 00100 Roma".to_owned()),
        phone: Some("+39 06 1234567".to_owned()),
        id_document: Some("Carta d'identità CA00000AA".to_owned()),
        reference_code: "ADS-TEST-0001".to_owned(),
        date: "23/11/2026".to_owned(),
        created_at: chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 11, 23, 9, 30, 0)
            .unwrap(),
        username: Some("niccolo.rossi".to_owned()),
        scheme: "SPID".to_owned(),
        terms_version: Some("demo-2026-12".to_owned()),
    }
}

/// The temporary-CP message: text + HTML, both PDFs attached.
fn cp_mail(to: Vec<String>) -> OutgoingMail {
    let data = form();
    OutgoingMail {
        to,
        subject: "Istanze OnLine – Codice Personale temporaneo".to_owned(),
        text_body: "Gentile Niccolò Rossi,\n\nil suo Codice Personale temporaneo è K7P2M9X4QH.\n\
                    In allegato il modulo di adesione e la sua copia.\n"
            .to_owned(),
        html_body: Some(
            "<p>Gentile Niccolò Rossi,</p><p>il suo Codice Personale temporaneo è \
             <b>K7P2M9X4QH</b>.</p>"
                .to_owned(),
        ),
        attachments: vec![
            Attachment {
                filename: "modulo-adesione.pdf".to_owned(),
                content_type: "application/pdf".to_owned(),
                bytes: modulo_adesione(&data).expect("modulo di adesione"),
            },
            Attachment {
                filename: "modulo-adesione-copia.pdf".to_owned(),
                content_type: "application/pdf".to_owned(),
                bytes: modulo_adesione(&FormData {
                    reference_code: "ADS-TEST-0002".to_owned(),
                    ..data.clone()
                })
                .expect("second modulo"),
            },
        ],
    }
}

#[tokio::test]
async fn smtp_delivers_the_message_with_both_pdfs_intact() {
    let server = SmtpServer::start();
    let mailer = SmtpMailer::new(from(), &smtp_config(server.port())).expect("mailer");
    let recipients = vec![
        "niccolo.rossi@example.it".to_owned(),
        "segreteria@scuola.example.it".to_owned(),
    ];
    let mail = cp_mail(recipients.clone());
    mailer.send(&mail).await.expect("send");

    let received = server.messages();
    assert_eq!(received.len(), 1);
    let got = &received[0];
    assert_eq!(got.mail_from, "noreply@istanze.example.it");
    assert_eq!(got.rcpt_tos, recipients);
    assert_eq!(got.to, recipients);
    assert_eq!(got.from, "Istanze OnLine <noreply@istanze.example.it>");
    assert_eq!(got.subject, mail.subject);
    assert_eq!(got.content_type, "multipart/mixed");
    assert!(!got.date.is_empty());
    assert!(
        got.message_id.starts_with('<') && got.message_id.ends_with("@istanze.example.it>"),
        "{}",
        got.message_id
    );
    let text = got.text.as_deref().expect("text/plain part");
    assert!(
        text.contains("Codice Personale temporaneo è K7P2M9X4QH"),
        "{text}"
    );
    assert!(text.contains("Gentile Niccolò Rossi"), "{text}");
    let html = got.html.as_deref().expect("text/html part");
    assert!(html.contains("<b>K7P2M9X4QH</b>"), "{html}");

    assert_eq!(got.attachments.len(), 2);
    for (sent, arrived) in mail.attachments.iter().zip(&got.attachments) {
        assert_eq!(arrived.filename, sent.filename);
        assert_eq!(arrived.content_type, "application/pdf");
        assert_eq!(
            arrived.bytes, sent.bytes,
            "{} changed in transit",
            sent.filename
        );
        assert!(arrived.bytes.starts_with(b"%PDF-"));
    }
    // The raw DATA is 7-bit clean (UTF-8 text is transfer-encoded).
    assert!(server.raw(0).iter().all(u8::is_ascii));
}

#[tokio::test]
async fn smtp_5xx_on_a_recipient_is_rejected() {
    let server = SmtpServer::start();
    let mailer = SmtpMailer::new(from(), &smtp_config(server.port())).expect("mailer");
    let err = mailer
        .send(&cp_mail(vec!["nobody@rejected.invalid".to_owned()]))
        .await
        .expect_err("550 must fail");
    assert!(matches!(err, MailError::Rejected(_)), "{err:?}");
    assert_eq!(err.code(), "POLIS_MAIL_REJECTED");
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn smtp_server_down_is_unavailable_quickly() {
    // Nothing listens on this port: connection refused.
    let mailer = SmtpMailer::new(from(), &smtp_config(free_port())).expect("mailer");
    let start = Instant::now();
    let err = mailer
        .send(&cp_mail(vec!["a@example.it".to_owned()]))
        .await
        .expect_err("no server");
    assert!(matches!(err, MailError::Unavailable(_)), "{err:?}");
    assert_eq!(err.code(), "POLIS_MAIL_UNAVAILABLE");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    // The body (with the CP) is never part of the error.
    assert!(!err.to_string().contains("K7P2M9X4QH"));
}

#[tokio::test]
async fn outbox_writes_a_parseable_eml_that_list_and_read_see() {
    let base = tempfile::tempdir().expect("temp dir");
    let outbox = OutboxMailer::new(from(), &base.path().join("outbox")).expect("outbox");
    let mail = cp_mail(vec!["niccolo.rossi@example.it".to_owned()]);
    outbox.send(&mail).await.expect("send");

    let entries = outbox.list().await.expect("list");
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert!(entry.file_name.ends_with(".eml"), "{}", entry.file_name);
    assert_eq!(entry.to, vec!["niccolo.rossi@example.it".to_owned()]);
    assert_eq!(entry.subject, mail.subject);
    assert!(entry.date.is_some());

    let text = outbox.read(&entry.file_name).await.expect("read");
    let parsed = parse_eml(text.as_bytes());
    assert_eq!(parsed.subject, mail.subject);
    assert!(
        parsed
            .text
            .as_deref()
            .is_some_and(|t| t.contains("K7P2M9X4QH"))
    );
    assert_eq!(parsed.attachments.len(), 2);
    for (sent, stored) in mail.attachments.iter().zip(&parsed.attachments) {
        assert_eq!(stored.filename, sent.filename);
        assert_eq!(stored.content_type, "application/pdf");
        assert_eq!(stored.bytes, sent.bytes);
    }

    for bad in ["../outbox/x.eml", "/etc/passwd", "..", "a/../../b.eml"] {
        assert!(
            matches!(outbox.read(bad).await, Err(MailError::BadFileName)),
            "{bad}"
        );
    }
}
