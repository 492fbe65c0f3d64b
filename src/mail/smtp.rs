//! [`SmtpMailer`]: sends through an SMTP relay with lettre's tokio transport.
//!
//! TLS is OpenSSL through native-tls. Errors map to [`MailError`]: connection refused,
//! network and TLS failures, timeouts and 4xx replies are [`MailError::Unavailable`]
//! (retry later); 5xx replies are [`MailError::Rejected`].

use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{MailError, MailFrom, Mailer, OutgoingMail, SmtpConfig, StartTls, build_message};

/// Sends messages through an SMTP relay (connection pool, configured timeout).
pub struct SmtpMailer {
    from: MailFrom,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    relay: String,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("from", &self.from)
            .field("relay", &self.relay)
            .finish()
    }
}

impl SmtpMailer {
    /// Builds the transport; reads `password_file` now (at start). Does not connect.
    ///
    /// Must be called inside a Tokio runtime: lettre's connection pool spawns its
    /// maintenance task when the transport is built (outside one it would panic, so this
    /// returns [`MailError::Config`] instead).
    pub fn new(from: MailFrom, config: &SmtpConfig) -> Result<Self, MailError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(MailError::Config(
                "the SMTP mailer must be created inside a Tokio runtime".to_owned(),
            ));
        }
        // Fail at start on a bad sender, not on the first message.
        super::sender_mailbox(&from)?;
        if config.host.trim().is_empty() {
            return Err(MailError::Config("mail.transport.host is empty".to_owned()));
        }
        if config.timeout_ms == 0 {
            return Err(MailError::Config(
                "mail.transport.timeout_ms must be positive".to_owned(),
            ));
        }
        let tls = match config.starttls {
            StartTls::None => Tls::None,
            StartTls::Opportunistic => Tls::Opportunistic(tls_parameters(&config.host)?),
            StartTls::Required => Tls::Required(tls_parameters(&config.host)?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port)
            .tls(tls)
            .timeout(Some(Duration::from_millis(config.timeout_ms)));
        match (&config.username, &config.password_file) {
            (Some(username), Some(path)) => {
                let password = std::fs::read_to_string(path).map_err(|e| {
                    MailError::Io(format!(
                        "mail.transport.password_file {}: {e}",
                        path.display()
                    ))
                })?;
                let password = password.trim_end_matches(['\r', '\n']).to_owned();
                builder = builder.credentials(Credentials::new(username.clone(), password));
            }
            (Some(_), None) => {
                return Err(MailError::Config(
                    "mail.transport.username is set but mail.transport.password_file is not"
                        .to_owned(),
                ));
            }
            (None, Some(_)) => {
                return Err(MailError::Config(
                    "mail.transport.password_file is set but mail.transport.username is not"
                        .to_owned(),
                ));
            }
            (None, None) => {}
        }
        Ok(Self {
            from,
            transport: builder.build(),
            relay: format!("{}:{}", config.host, config.port),
        })
    }
}

fn tls_parameters(host: &str) -> Result<TlsParameters, MailError> {
    TlsParameters::new(host.to_owned())
        .map_err(|e| MailError::Config(format!("mail.transport TLS setup for {host}: {e}")))
}

/// Maps a lettre SMTP error onto the port's error (5xx → rejected, the rest → retry).
fn map_smtp_error(relay: &str, error: &lettre::transport::smtp::Error) -> MailError {
    if error.is_permanent() {
        MailError::Rejected(format!("{relay}: {error}"))
    } else {
        // Transient 4xx, connection refused, timeouts, TLS and protocol failures:
        // nothing was delivered, the caller may retry or resume.
        MailError::Unavailable(format!("{relay}: {error}"))
    }
}

#[async_trait::async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError> {
        let message = build_message(&self.from, mail)?;
        self.transport
            .send(message)
            .await
            .map(|_response| ())
            .map_err(|e| map_smtp_error(&self.relay, &e))
    }

    /// Connects, greets (EHLO, STARTTLS as configured) and quits.
    async fn check(&self) -> Result<(), MailError> {
        match self.transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(MailError::Unavailable(format!(
                "{}: the relay did not answer NOOP",
                self.relay
            ))),
            Err(e) => Err(map_smtp_error(&self.relay, &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn config() -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".to_owned(),
            port: 25,
            starttls: StartTls::None,
            username: None,
            password_file: None,
            timeout_ms: 1000,
        }
    }

    #[test]
    fn outside_a_runtime_is_an_error_not_a_panic() {
        assert!(matches!(
            SmtpMailer::new(MailFrom::default(), &config()),
            Err(MailError::Config(_))
        ));
    }

    #[tokio::test]
    async fn the_check_fails_when_no_relay_listens() {
        // A port bound and released: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut c = config();
        c.port = port;
        let mailer = SmtpMailer::new(MailFrom::default(), &c).unwrap();
        let err = mailer.check().await.unwrap_err();
        assert_eq!(err.code(), "POLIS_MAIL_UNAVAILABLE", "{err}");
    }

    #[tokio::test]
    async fn credentials_need_both_keys_and_a_readable_file() {
        let mut c = config();
        c.username = Some("u".to_owned());
        assert!(matches!(
            SmtpMailer::new(MailFrom::default(), &c),
            Err(MailError::Config(_))
        ));
        c.password_file = Some("/nonexistent/polis-smtp-password".into());
        let err = SmtpMailer::new(MailFrom::default(), &c).unwrap_err();
        assert_eq!(err.code(), "POLIS_MAIL_IO");
        assert!(err.to_string().contains("password_file"), "{err}");
        c.username = None;
        assert!(matches!(
            SmtpMailer::new(MailFrom::default(), &c),
            Err(MailError::Config(_))
        ));
    }

    #[tokio::test]
    async fn password_is_read_at_start_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret-pw\n").unwrap();
        let mut c = config();
        c.username = Some("u".to_owned());
        c.password_file = Some(path);
        c.starttls = StartTls::Required;
        let mailer = SmtpMailer::new(MailFrom::default(), &c).unwrap();
        assert!(!format!("{mailer:?}").contains("s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[tokio::test]
    async fn bad_sender_and_empty_host_fail_at_start() {
        let from = MailFrom {
            address: "no-at-sign".to_owned(),
            name: "X".to_owned(),
        };
        assert!(matches!(
            SmtpMailer::new(from, &config()),
            Err(MailError::InvalidAddress(_))
        ));
        let mut c = config();
        c.host = " ".to_owned();
        assert!(matches!(
            SmtpMailer::new(MailFrom::default(), &c),
            Err(MailError::Config(_))
        ));
    }
}
