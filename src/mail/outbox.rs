//! [`OutboxMailer`]: every message becomes an RFC 5322 `.eml` file in a directory.
//!
//! The embedded default and the demo's mailbox: a page lists the files ([`OutboxMailer::list`])
//! and shows one read back with `mail-parser` ([`OutboxMailer::message`]; the raw text
//! with [`OutboxMailer::read`]) so the temporary Codice Personale can be read without a
//! mail server. The directory is private (0700) and each file 0600. A file is
//! written under a hidden temporary name, flushed to disk, then renamed to
//! `<UTC timestamp>-<random>.eml`, so a reader never sees half a message.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use rand::Rng as _;

use super::stored::{self, StoredMessage};
use super::{MailError, MailFrom, Mailer, OutgoingMail, build_message};
use crate::clock::{SharedClock, SystemClock};

/// One message in the outbox, as the listing page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The file name (`<UTC timestamp>-<random>.eml`), the key for [`OutboxMailer::read`].
    pub file_name: String,
    /// The `To` addresses.
    pub to: Vec<String>,
    /// The decoded `Subject`.
    pub subject: String,
    /// The `Date` header, when it reads.
    pub date: Option<chrono::DateTime<chrono::Utc>>,
}

/// Writes messages as `.eml` files into a private directory.
#[derive(Debug, Clone)]
pub struct OutboxMailer {
    from: MailFrom,
    dir: PathBuf,
    /// Where the file names' timestamps come from.
    clock: SharedClock,
}

impl OutboxMailer {
    /// Creates `dir` (and its parents) if missing; the directory itself gets mode 0700.
    pub fn new(from: MailFrom, dir: &Path) -> Result<Self, MailError> {
        super::sender_mailbox(&from)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_error(dir, &e))?;
        // An existing directory may have been created wider: messages hold secrets.
        let mode = std::fs::metadata(dir)
            .map_err(|e| io_error(dir, &e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| io_error(dir, &e))?;
        }
        Ok(Self {
            from,
            dir: dir.to_path_buf(),
            clock: SystemClock::shared(),
        })
    }

    /// The same outbox naming its files from `clock` (the system clock by default).
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The outbox directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The messages in the directory, newest first. Files that are not `*.eml` (such as
    /// the temporary names of messages being written) are skipped.
    pub async fn list(&self) -> Result<Vec<OutboxEntry>, MailError> {
        let dir = self.dir.clone();
        run_blocking(move || list_dir(&dir)).await
    }

    /// The whole `.eml` text of `file_name`. Anything but a plain `*.eml` name in the
    /// directory (a `/`, `..`, a hidden or non-`.eml` name) is [`MailError::BadFileName`].
    pub async fn read(&self, file_name: &str) -> Result<String, MailError> {
        let bytes = self.read_bytes(file_name).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// `file_name` read back as a message (headers, text body, attachments); one that
    /// does not read as mail is [`MailError::Malformed`], names as for [`Self::read`].
    pub async fn message(&self, file_name: &str) -> Result<StoredMessage, MailError> {
        let bytes = self.read_bytes(file_name).await?;
        run_blocking(move || stored::parse(&bytes)).await
    }

    async fn read_bytes(&self, file_name: &str) -> Result<Vec<u8>, MailError> {
        if !is_safe_file_name(file_name) {
            return Err(MailError::BadFileName);
        }
        let path = self.dir.join(file_name);
        run_blocking(move || {
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(MailError::NotFound);
                }
                Err(e) => return Err(io_error(&path, &e)),
            };
            if !meta.file_type().is_file() {
                return Err(MailError::NotFound);
            }
            std::fs::read(&path).map_err(|e| io_error(&path, &e))
        })
        .await
    }
}

#[async_trait::async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError> {
        let bytes = build_message(&self.from, mail)?.formatted();
        let dir = self.dir.clone();
        let now = self.clock.now();
        run_blocking(move || write_atomically(&dir, &bytes, now).map(|_| ())).await
    }

    /// The outbox directory is there and is a directory.
    async fn check(&self) -> Result<(), MailError> {
        let dir = self.dir.clone();
        run_blocking(move || match std::fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(MailError::Io(format!("{}: not a directory", dir.display()))),
            Err(e) => Err(io_error(&dir, &e)),
        })
        .await
    }
}

async fn run_blocking<T, F>(job: F) -> Result<T, MailError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, MailError> + Send + 'static,
{
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| MailError::Io(format!("outbox task failed: {e}")))?
}

fn io_error(path: &Path, error: &std::io::Error) -> MailError {
    MailError::Io(format!("{}: {error}", path.display()))
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// Writes `bytes` to `<dir>/.<random>.tmp` (0600, fsync), renames it to its final
/// `<timestamp>-<random>.eml` name and syncs the directory. Returns the final name.
fn write_atomically(
    dir: &Path,
    bytes: &[u8],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, MailError> {
    let stamp = now.format("%Y%m%dT%H%M%S%.6fZ");
    let suffix = random_hex(8);
    let file_name = format!("{stamp}-{suffix}.eml");
    let temp = dir.join(format!(".{suffix}.tmp"));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, dir.join(&file_name))?;
        std::fs::File::open(dir)?.sync_all()
    })();
    match result {
        Ok(()) => Ok(file_name),
        Err(e) => {
            // Best effort: no half-written leftovers (the name is not *.eml anyway).
            let _ = std::fs::remove_file(&temp);
            Err(io_error(dir, &e))
        }
    }
}

/// A plain `*.eml` file name: ASCII letters, digits, `.`, `-`, `_`; not hidden; no `..`.
fn is_safe_file_name(name: &str) -> bool {
    name.len() <= 255
        && name.ends_with(".eml")
        && !name.starts_with('.')
        && !name.contains("..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn list_dir(dir: &Path) -> Result<Vec<OutboxEntry>, MailError> {
    let mut entries = Vec::new();
    for item in std::fs::read_dir(dir).map_err(|e| io_error(dir, &e))? {
        let item = item.map_err(|e| io_error(dir, &e))?;
        let Ok(file_name) = item.file_name().into_string() else {
            continue;
        };
        if !is_safe_file_name(&file_name) || !item.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let path = item.path();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            // Removed between read_dir and read: not an error for a listing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(&path, &e)),
        };
        let summary = stored::summary(&bytes);
        entries.push(OutboxEntry {
            to: summary.to,
            subject: summary.subject,
            date: summary.date,
            file_name,
        });
    }
    // Names start with a UTC timestamp: reverse name order is newest first.
    entries.sort_by(|a, b| b.file_name.cmp(&a.file_name));
    Ok(entries)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::mail::Attachment;

    fn mail(subject: &str) -> OutgoingMail {
        OutgoingMail {
            to: vec![
                "mario.rossi@example.it".to_owned(),
                "b@example.it".to_owned(),
            ],
            subject: subject.to_owned(),
            text_body: "Il suo codice personale temporaneo è ABCD2345EF.".to_owned(),
            html_body: None,
            attachments: vec![Attachment {
                filename: "modulo-adesione.pdf".to_owned(),
                content_type: "application/pdf".to_owned(),
                bytes: vec![0, 1, 2, 255],
            }],
        }
    }

    #[tokio::test]
    async fn writes_private_files_and_lists_them_newest_first() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("nested/outbox");
        let outbox = OutboxMailer::new(MailFrom::default(), &dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);

        outbox.send(&mail("Primo messaggio")).await.unwrap();
        let long = "Istanze OnLine – codice personale temporaneo e modulo di adesione all’identità";
        outbox.send(&mail(long)).await.unwrap();

        let entries = outbox.list().await.unwrap();
        assert_eq!(entries.len(), 2, "{entries:?}");
        assert_eq!(entries[0].subject, long);
        assert_eq!(entries[1].subject, "Primo messaggio");
        assert_eq!(
            entries[0].to,
            vec![
                "mario.rossi@example.it".to_owned(),
                "b@example.it".to_owned()
            ]
        );
        assert!(entries[0].date.is_some());
        for entry in &entries {
            assert!(entry.file_name.ends_with(".eml"));
            let path = dir.join(&entry.file_name);
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", entry.file_name);
            let text = outbox.read(&entry.file_name).await.unwrap();
            assert!(text.contains("Content-Type: application/pdf"));
        }
        // No temporary leftovers.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    }

    #[tokio::test]
    async fn file_names_carry_the_clocks_time() {
        use chrono::TimeZone as _;
        let base = tempfile::tempdir().unwrap();
        let at = chrono::Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
        let clock = crate::clock::ManualClock::at(at);
        let outbox = OutboxMailer::new(MailFrom::default(), base.path())
            .unwrap()
            .with_clock(clock.clone());
        outbox.send(&mail("Primo")).await.unwrap();
        clock.advance(chrono::Duration::hours(1));
        outbox.send(&mail("Secondo")).await.unwrap();
        let names: Vec<String> = outbox
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.file_name)
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(
            names[0].starts_with("20260302T100000.000000Z-"),
            "{names:?}"
        );
        assert!(
            names[1].starts_with("20260302T090000.000000Z-"),
            "{names:?}"
        );
    }

    #[tokio::test]
    async fn read_refuses_traversal_and_unknown_names() {
        let base = tempfile::tempdir().unwrap();
        std::fs::write(base.path().join("secret.eml"), "x").unwrap();
        let dir = base.path().join("outbox");
        let outbox = OutboxMailer::new(MailFrom::default(), &dir).unwrap();
        for bad in [
            "../secret.eml",
            "..",
            "a/b.eml",
            "/etc/passwd",
            ".hidden.eml",
            "x.txt",
            "",
            "a\\b.eml",
            "..eml",
        ] {
            let err = outbox.read(bad).await.unwrap_err();
            assert_eq!(err.code(), "POLIS_MAIL_OUTBOX_BAD_NAME", "{bad}");
        }
        assert!(matches!(
            outbox.read("20260101T000000Z-missing.eml").await,
            Err(MailError::NotFound)
        ));
    }

    #[test]
    fn existing_wide_directory_is_tightened() {
        let base = tempfile::tempdir().unwrap();
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        OutboxMailer::new(MailFrom::default(), base.path()).unwrap();
        let mode = std::fs::metadata(base.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[tokio::test]
    async fn a_sent_message_reads_back_and_a_broken_one_is_malformed() {
        let base = tempfile::tempdir().unwrap();
        let outbox = OutboxMailer::new(MailFrom::default(), base.path()).unwrap();
        outbox.send(&mail("Codice")).await.unwrap();
        let name = outbox.list().await.unwrap().remove(0).file_name;
        let message = outbox.message(&name).await.unwrap();
        assert_eq!(message.subject, "Codice");
        assert!(message.text.contains("temporaneo è ABCD2345EF"));
        assert_eq!(message.attachments.len(), 1);
        assert_eq!(message.attachments[0].bytes, vec![0, 1, 2, 255]);

        std::fs::write(base.path().join("20260101T000000Z-broken.eml"), "garbage").unwrap();
        assert!(matches!(
            outbox.message("20260101T000000Z-broken.eml").await,
            Err(MailError::Malformed(_))
        ));
        // Listed all the same, with empty fields.
        let entries = outbox.list().await.unwrap();
        assert_eq!(entries.len(), 2);
        assert!(matches!(
            outbox.message("../x.eml").await,
            Err(MailError::BadFileName)
        ));
    }
}
