//! [`OutboxMailer`]: every message becomes an RFC 5322 `.eml` file in a directory.
//!
//! The embedded default and the demo's mailbox: a page lists the files ([`OutboxMailer::list`])
//! and shows one ([`OutboxMailer::read`]) so the temporary Codice Personale can be read
//! without a mail server. The directory is private (0700) and each file 0600. A file is
//! written under a hidden temporary name, flushed to disk, then renamed to
//! `<UTC timestamp>-<random>.eml`, so a reader never sees half a message.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rand::Rng as _;

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
    /// The `Date` header as written (RFC 5322 format).
    pub date: String,
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
            let bytes = std::fs::read(&path).map_err(|e| io_error(&path, &e))?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
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
        let headers = parse_headers(&String::from_utf8_lossy(&bytes));
        let header = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.clone())
                .unwrap_or_default()
        };
        entries.push(OutboxEntry {
            to: split_addresses(&header("To")),
            subject: decode_encoded_words(&header("Subject")),
            date: header("Date"),
            file_name,
        });
    }
    // Names start with a UTC timestamp: reverse name order is newest first.
    entries.sort_by(|a, b| b.file_name.cmp(&a.file_name));
    Ok(entries)
}

/// The header section of an RFC 5322 message, unfolded, as (name, value) pairs.
fn parse_headers(text: &str) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    headers
}

/// `a@b, "Name" <c@d>` → `["a@b", "c@d"]`.
fn split_addresses(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| match (part.rfind('<'), part.rfind('>')) {
            (Some(open), Some(close)) if open < close => {
                part.get(open + 1..close).unwrap_or(part).trim().to_owned()
            }
            _ => part.to_owned(),
        })
        .collect()
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`); whitespace
/// between two encoded words is dropped, as the RFC says. Anything else is kept as is.
fn decode_encoded_words(value: &str) -> String {
    let mut out = String::new();
    let mut pending_space = String::new();
    let mut previous_was_word = false;
    for token in value.split_inclusive([' ', '\t']) {
        let word = token.trim_end_matches([' ', '\t']);
        let trailing = token.get(word.len()..).unwrap_or("");
        match decode_word(word) {
            Some(decoded) => {
                if !previous_was_word {
                    out.push_str(&pending_space);
                }
                out.push_str(&decoded);
                previous_was_word = true;
            }
            None => {
                out.push_str(&pending_space);
                out.push_str(word);
                previous_was_word = false;
            }
        }
        pending_space = trailing.to_owned();
    }
    out
}

fn decode_word(word: &str) -> Option<String> {
    let inner = word.strip_prefix("=?")?.strip_suffix("?=")?;
    let mut parts = inner.splitn(3, '?');
    let charset = parts.next()?;
    let encoding = parts.next()?;
    let text = parts.next()?;
    let charset = charset.split('*').next().unwrap_or(charset);
    if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("us-ascii") {
        return None;
    }
    let bytes = if encoding.eq_ignore_ascii_case("b") {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?
    } else if encoding.eq_ignore_ascii_case("q") {
        decode_q(text)?
    } else {
        return None;
    };
    String::from_utf8(bytes).ok()
}

fn decode_q(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'_' => out.push(b' '),
            b'=' => {
                let hi = char::from(bytes.next()?).to_digit(16)?;
                let lo = char::from(bytes.next()?).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            other => out.push(other),
        }
    }
    Some(out)
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
        assert!(!entries[0].date.is_empty());
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

    #[test]
    fn encoded_words_decode() {
        assert_eq!(decode_encoded_words("plain subject"), "plain subject");
        assert_eq!(
            decode_encoded_words("=?utf-8?b?aWRlbnRpdMOg?= =?utf-8?q?_e_citt=C3=A0?= fine"),
            "identità e città fine"
        );
        assert_eq!(
            decode_encoded_words("=?iso-8859-1?q?x?="),
            "=?iso-8859-1?q?x?="
        );
        assert_eq!(
            split_addresses("\"A\" <a@b.it>, c@d.it"),
            vec!["a@b.it", "c@d.it"]
        );
    }
}
