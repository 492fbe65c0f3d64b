//! The SPID transaction log (RT `log.rst`, DPCM 24/10/2014 art. 13 c.2; rules §8).
//!
//! Every authentication transaction — the `<AuthnRequest>` and the `<Response>` that
//! answered it, with the suggested index fields — is appended as one JSON line to a
//! daily file `spid-tx-YYYY-MM-DD.jsonl` (UTC date of [`TxRecord::ts`](crate::txlog::TxRecord::ts)) in a
//! configured directory. The operator must keep these files for **24 months**; the
//! gateway never deletes or rewrites them (retention and archiving are the
//! operator's job).
//!
//! Invariants of [`FileTxLog`](crate::txlog::FileTxLog):
//! - one record = one line; appends from any number of tasks go to one writer
//!   thread, which writes each batch of whole lines with a single `write_all`, so
//!   lines never interleave;
//! - every append is `sync_data`ed before it returns `Ok` — the log is a legal
//!   register, a record acknowledged is a record on disk. Group commit: the records
//!   that queue up while a sync runs share the next one;
//! - the records hold personal data (NameID, full Response XML): the directory is
//!   created `0700` and the files `0600` (unix);
//! - if a previous write was torn (crash, full disk), the next append to that file
//!   first terminates the broken line, so the torn fragment never swallows a record;
//! - a write error is returned to the caller, which decides (the ACS logs it).

use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, NaiveDate, Utc};

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxOutcome {
    /// The Response passed every check and a session was opened.
    Accepted,
    /// The gateway rejected the Response (bad signature, replay, wrong audience, …).
    Rejected,
    /// The IdP answered with a non-Success status (SPID `ErrorCode nrNN`).
    IdpError,
}

/// One transaction-log line: the AuthnRequest/Response pair and its index fields
/// (RT `log.rst`: `AuthnReq_ID`, `AuthnReq_IssueInstant`, `Resp_ID`,
/// `Resp_IssueInstant`, `Resp_Issuer`, `Assertion_ID`, `Assertion_subject`,
/// `Assertion_subject_NameQualifier`). Absent values serialise as `null`, so every
/// line has the same keys.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TxRecord {
    /// When the record was made; also selects the daily file (UTC date).
    pub ts: DateTime<Utc>,
    /// Accepted, rejected by us, or an IdP error status.
    pub outcome: TxOutcome,
    /// Our stable error code when rejected, or the SPID "ErrorCode nrNN".
    pub error_code: Option<String>,
    /// The gateway's HTTP request id (correlates with the application log).
    pub request_id: String,
    /// entityID of the IdP the request was sent to.
    pub idp_entity_id: Option<String>,
    /// `AuthnRequest/@ID`.
    pub authn_req_id: Option<String>,
    /// `AuthnRequest/@IssueInstant`.
    pub authn_req_issue_instant: Option<String>,
    /// The full AuthnRequest XML as sent.
    pub authn_req_xml: Option<String>,
    /// `Response/@ID`.
    pub resp_id: Option<String>,
    /// `Response/@IssueInstant`.
    pub resp_issue_instant: Option<String>,
    /// `Response/saml:Issuer`.
    pub resp_issuer: Option<String>,
    /// `Assertion/@ID`.
    pub assertion_id: Option<String>,
    /// `Assertion/Subject/NameID` (trimmed).
    pub assertion_subject: Option<String>,
    /// `Assertion/Subject/NameID/@NameQualifier`.
    pub assertion_subject_name_qualifier: Option<String>,
    /// `AuthnContextClassRef` of the assertion (SpidL1/L2/L3 URI).
    pub acr: Option<String>,
    /// The Response XML as received (base64-decoded): whole when accepted or signed by
    /// the IdP; for a rejected one at most `limits.txlog_unverified_max_kib` KiB.
    pub resp_xml: Option<String>,
    /// Hex SHA-256 of the whole Response XML as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resp_sha256: Option<String>,
    /// True when `resp_xml` holds only the beginning of the Response.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resp_truncated: bool,
}

impl TxRecord {
    /// A record with the three mandatory fields set and every optional field `None`.
    pub fn new(ts: DateTime<Utc>, outcome: TxOutcome, request_id: impl Into<String>) -> Self {
        Self {
            ts,
            outcome,
            error_code: None,
            request_id: request_id.into(),
            idp_entity_id: None,
            authn_req_id: None,
            authn_req_issue_instant: None,
            authn_req_xml: None,
            resp_id: None,
            resp_issue_instant: None,
            resp_issuer: None,
            assertion_id: None,
            assertion_subject: None,
            assertion_subject_name_qualifier: None,
            acr: None,
            resp_xml: None,
            resp_sha256: None,
            resp_truncated: false,
        }
    }

    /// Keeps the Response XML; with `max_bytes`, only its first bytes (cut on a
    /// character boundary). The SHA-256 of the whole is kept either way.
    pub fn set_response_xml(&mut self, xml: &str, max_bytes: Option<usize>) {
        self.resp_sha256 = Some(hex::encode(openssl::sha::sha256(xml.as_bytes())));
        let keep = match max_bytes {
            Some(max) if xml.len() > max => {
                let mut end = max;
                while !xml.is_char_boundary(end) {
                    end -= 1;
                }
                self.resp_truncated = true;
                xml.get(..end).unwrap_or_default()
            }
            _ => xml,
        };
        self.resp_xml = Some(keep.to_owned());
    }
}

/// Why a record could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TxLogError {
    /// Creating, opening, writing or syncing a log file or its directory failed.
    #[error("transaction log I/O on {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The record could not be serialised to JSON.
    #[error("transaction log serialisation: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The writer thread stopped (it only does when the log is dropped, or panicked).
    #[error("transaction log writer: {0}")]
    Closed(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TxLogError + '_ {
    move |source| TxLogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The transaction-log port. Held as `Arc<dyn TxLog>` in application state.
#[async_trait::async_trait]
pub trait TxLog: Send + Sync + 'static {
    /// Durably appends one record; returns only once it is on stable storage.
    async fn append(&self, rec: &TxRecord) -> Result<(), TxLogError>;
}

/// A [`TxLog`] that discards every record (tests and CLI commands that don't log).
#[derive(Debug, Clone, Copy, Default)]
pub struct NullTxLog;

#[async_trait::async_trait]
impl TxLog for NullTxLog {
    async fn append(&self, _rec: &TxRecord) -> Result<(), TxLogError> {
        Ok(())
    }
}

/// The production [`TxLog`]: daily JSON-lines files in one directory, written by one
/// dedicated thread with **group commit**: the records that arrive while the previous
/// batch is being synced are written together and share one `sync_data`, and every
/// `append` returns only after the sync that covers its own record.
#[derive(Debug)]
pub struct FileTxLog {
    dir: PathBuf,
    jobs: std::sync::mpsc::Sender<Job>,
    stats: Arc<Counters>,
}

/// One record waiting for the writer thread.
#[derive(Debug)]
struct Job {
    date: NaiveDate,
    line: Vec<u8>,
    done: tokio::sync::oneshot::Sender<Result<(), TxLogError>>,
}

/// What the writer has done so far (for metrics and the group-commit test).
#[derive(Debug, Default)]
struct Counters {
    records: AtomicU64,
    syncs: AtomicU64,
}

/// Records written and `sync_data` calls made since the log was opened: with group
/// commit, `syncs` grows more slowly than `records` under concurrent load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxLogStats {
    /// Records acknowledged as durable.
    pub records: u64,
    /// `sync_data` calls that made them so.
    pub syncs: u64,
}

/// The most records one batch takes (one write and one sync).
const MAX_BATCH: usize = 512;

/// The file records are currently appended to, and the UTC date it belongs to.
#[derive(Debug)]
struct OpenFile {
    date: NaiveDate,
    path: PathBuf,
    file: std::fs::File,
}

/// The writer thread's state: the directory and the open day file.
#[derive(Debug)]
struct Writer {
    dir: PathBuf,
    current: Option<OpenFile>,
    stats: Arc<Counters>,
}

impl FileTxLog {
    /// Uses `dir` for the log, creating it (and missing parents) with mode `0700`
    /// on unix, and starts the writer thread. An existing directory keeps its
    /// permissions. No file is opened until the first append.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, TxLogError> {
        let dir = dir.into();
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&dir).map_err(io_err(&dir))?;
        let meta = std::fs::metadata(&dir).map_err(io_err(&dir))?;
        if !meta.is_dir() {
            return Err(TxLogError::Io {
                source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
                path: dir,
            });
        }
        let stats = Arc::new(Counters::default());
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let mut writer = Writer {
            dir: dir.clone(),
            current: None,
            stats: Arc::clone(&stats),
        };
        // The thread ends when the last sender (this log) is dropped.
        std::thread::Builder::new()
            .name("txlog".into())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match queue.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    writer.write_batch(batch);
                }
            })
            .map_err(io_err(&dir))?;
        Ok(Self { dir, jobs, stats })
    }

    /// The directory holding the daily files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that records dated `date` (UTC) go to: `<dir>/spid-tx-YYYY-MM-DD.jsonl`.
    pub fn path_for(&self, date: NaiveDate) -> PathBuf {
        path_for(&self.dir, date)
    }

    /// Records written and syncs made so far.
    pub fn stats(&self) -> TxLogStats {
        TxLogStats {
            records: self.stats.records.load(Ordering::Relaxed),
            syncs: self.stats.syncs.load(Ordering::Relaxed),
        }
    }
}

fn path_for(dir: &Path, date: NaiveDate) -> PathBuf {
    dir.join(format!("spid-tx-{}.jsonl", date.format("%Y-%m-%d")))
}

impl Writer {
    /// Writes a batch: the records of each day (in arrival order) with one `write_all`
    /// and one `sync_data`, then answers every record's waiter with its day's result.
    fn write_batch(&mut self, batch: Vec<Job>) {
        let mut days: Vec<(NaiveDate, Vec<Job>)> = Vec::new();
        for job in batch {
            match days.iter_mut().find(|(d, _)| *d == job.date) {
                Some((_, jobs)) => jobs.push(job),
                None => days.push((job.date, vec![job])),
            }
        }
        for (date, jobs) in days {
            let mut buf = Vec::with_capacity(jobs.iter().map(|j| j.line.len()).sum());
            for job in &jobs {
                buf.extend_from_slice(&job.line);
            }
            let result = self.write_day(date, &buf);
            if result.is_ok() {
                let n = u64::try_from(jobs.len()).unwrap_or(u64::MAX);
                self.stats.records.fetch_add(n, Ordering::Relaxed);
            }
            for job in jobs {
                // A waiter that went away (client disconnected) needs no answer.
                let _ = job
                    .done
                    .send(result.as_ref().map(|_| ()).map_err(TxLogError::copy));
            }
        }
    }

    /// Appends `bytes` (whole lines) to `date`'s file and syncs it.
    fn write_day(&mut self, date: NaiveDate, bytes: &[u8]) -> Result<(), TxLogError> {
        use std::io::Write;
        let mut open = match self.current.take() {
            Some(open) if open.date == date => open,
            // None, or another day's file: dropping the old handle closes it.
            _ => self.open_day(date)?,
        };
        let written = open
            .file
            .write_all(bytes)
            .and_then(|()| open.file.sync_data());
        self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        match written {
            Ok(()) => {
                self.current = Some(open);
                Ok(())
            }
            // Leave no handle behind: the next append reopens the file, and
            // `open_day` terminates any partial line this failure left.
            Err(source) => Err(TxLogError::Io {
                path: open.path,
                source,
            }),
        }
    }

    /// Opens (creating with `0600`) the append-mode file for `date`, tightens
    /// looser permissions, syncs the directory entry, and terminates a torn last
    /// line left by an earlier crash or failed write.
    fn open_day(&self, date: NaiveDate) -> Result<OpenFile, TxLogError> {
        use std::io::{Read, Seek, Write};
        let path = path_for(&self.dir, date);
        let mut options = std::fs::OpenOptions::new();
        options.read(true).append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path).map_err(io_err(&path))?;
        let meta = file.metadata().map_err(io_err(&path))?;

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                file.set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(io_err(&path))?;
            }
        }

        if meta.len() > 0 {
            // Appends always go to the end whatever the cursor; seeking only reads.
            file.seek(std::io::SeekFrom::End(-1))
                .map_err(io_err(&path))?;
            let mut last = [0u8; 1];
            file.read_exact(&mut last).map_err(io_err(&path))?;
            if last != *b"\n" {
                file.write_all(b"\n").map_err(io_err(&path))?;
            }
        } else {
            sync_dir(&self.dir)?;
        }
        Ok(OpenFile { date, path, file })
    }
}

impl TxLogError {
    /// The same error for another waiter of the batch (I/O errors are not `Clone`).
    fn copy(&self) -> TxLogError {
        match self {
            TxLogError::Io { path, source } => TxLogError::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            TxLogError::Serialize(e) => TxLogError::Closed(e.to_string()),
            TxLogError::Closed(m) => TxLogError::Closed(m.clone()),
        }
    }
}

/// Makes a newly created file's directory entry durable (unix; no-op elsewhere).
fn sync_dir(dir: &Path) -> Result<(), TxLogError> {
    #[cfg(unix)]
    {
        let d = std::fs::File::open(dir).map_err(io_err(dir))?;
        d.sync_all().map_err(io_err(dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[async_trait::async_trait]
impl TxLog for FileTxLog {
    async fn append(&self, rec: &TxRecord) -> Result<(), TxLogError> {
        // Serialise on the caller; JSON escapes newlines, so this is one line.
        let mut line = serde_json::to_vec(rec)?;
        line.push(b'\n');
        let (done, wait) = tokio::sync::oneshot::channel();
        let job = Job {
            date: rec.ts.date_naive(),
            line,
            done,
        };
        self.jobs
            .send(job)
            .map_err(|_| TxLogError::Closed("the writer thread is gone".into()))?;
        wait.await
            .map_err(|_| TxLogError::Closed("the writer thread is gone".into()))?
    }
}

/// How long the register is kept: 24 months (RT `log.rst`); the least `[txlog]
/// retention_months` accepts.
pub const MIN_RETENTION_MONTHS: u32 = 24;

/// The UTC day of a daily file `spid-tx-YYYY-MM-DD.jsonl`; `None` for any other name.
pub fn file_date(name: &str) -> Option<NaiveDate> {
    let day = name.strip_prefix("spid-tx-")?.strip_suffix(".jsonl")?;
    NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()
}

/// The first day still kept at `now` with `retention_months` (the same day of the
/// month, that many months back; the month's last day when it has no such day).
pub fn retention_cutoff(now: DateTime<Utc>, retention_months: u32) -> NaiveDate {
    let today = now.date_naive();
    today
        .checked_sub_months(chrono::Months::new(retention_months))
        .unwrap_or(NaiveDate::MIN)
}

/// The daily files in `dir`, oldest first, with their days.
fn daily_files(dir: &Path) -> Result<Vec<(NaiveDate, PathBuf)>, TxLogError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        if let Some(day) = name.to_str().and_then(file_date) {
            files.push((day, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// Deletes the daily files of days before `cutoff` and returns them; every other file
/// is left alone. The register's retention is a legal duty: the caller computes the
/// cutoff from at least [`MIN_RETENTION_MONTHS`].
pub fn prune(dir: &Path, cutoff: NaiveDate) -> Result<Vec<PathBuf>, TxLogError> {
    let mut removed = Vec::new();
    for (day, path) in daily_files(dir)? {
        if day < cutoff {
            std::fs::remove_file(&path).map_err(io_err(&path))?;
            removed.push(path);
        }
    }
    Ok(removed)
}

/// Which records an export selects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportFilter {
    /// First UTC day (inclusive).
    pub from: Option<NaiveDate>,
    /// Last UTC day (inclusive).
    pub to: Option<NaiveDate>,
    /// Only records whose Response names this codice fiscale (`TINIT-<CF>`, the SPID
    /// `fiscalNumber`), upper case.
    pub fiscal_code: Option<String>,
}

/// Writes the records `filter` selects to `out`, whole lines as stored, oldest day
/// first; returns how many.
pub fn export(
    dir: &Path,
    filter: &ExportFilter,
    out: &mut impl std::io::Write,
) -> Result<usize, TxLogError> {
    let mut n = 0;
    for_each_selected(dir, filter, |path, line| {
        writeln!(out, "{line}").map_err(io_err(path))?;
        n += 1;
        Ok(())
    })?;
    Ok(n)
}

/// Calls `each` with every record line `filter` selects, oldest day first, in the
/// order written.
fn for_each_selected(
    dir: &Path,
    filter: &ExportFilter,
    mut each: impl FnMut(&Path, &str) -> Result<(), TxLogError>,
) -> Result<(), TxLogError> {
    use std::io::BufRead;
    let needle = filter.fiscal_code.as_ref().map(|cf| format!("TINIT-{cf}"));
    for (day, path) in daily_files(dir)? {
        if filter.from.is_some_and(|f| day < f) || filter.to.is_some_and(|t| day > t) {
            continue;
        }
        let file = std::fs::File::open(&path).map_err(io_err(&path))?;
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(io_err(&path))?;
            if line.is_empty() || needle.as_ref().is_some_and(|x| !line.contains(x.as_str())) {
                continue;
            }
            each(&path, &line)?;
        }
    }
    Ok(())
}

/// One login of a person as the help desk sees it: when, which IdP, which level, how
/// it ended. Nothing else of the record (no XML, no NameID).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct LoginSummary {
    /// When the Response was handled.
    pub ts: DateTime<Utc>,
    /// Accepted, rejected by us, or an IdP error status.
    pub outcome: TxOutcome,
    /// Our error code, or the SPID `ErrorCode nrNN`.
    pub error_code: Option<String>,
    /// The IdP the request went to.
    pub idp_entity_id: Option<String>,
    /// The SPID level URI of the assertion.
    pub acr: Option<String>,
}

/// The newest `limit` records whose Response names `fiscal_code`, from the UTC day
/// `from` on, newest first. Reads the daily files in that range once, keeping at most
/// `limit` summaries in memory; a line that does not parse is skipped (and logged).
pub fn recent_for_person(
    dir: &Path,
    fiscal_code: &str,
    from: NaiveDate,
    limit: usize,
) -> Result<Vec<LoginSummary>, TxLogError> {
    let filter = ExportFilter {
        from: Some(from),
        to: None,
        fiscal_code: Some(fiscal_code.to_ascii_uppercase()),
    };
    let mut kept = std::collections::VecDeque::with_capacity(limit.saturating_add(1));
    for_each_selected(dir, &filter, |path, line| {
        match serde_json::from_str::<LoginSummary>(line) {
            Ok(summary) => {
                kept.push_back(summary);
                if kept.len() > limit {
                    kept.pop_front();
                }
            }
            Err(e) => {
                tracing::warn!(target: "txlog", file = %path.display(), "unreadable record skipped: {e}")
            }
        }
        Ok(())
    })?;
    Ok(kept.into_iter().rev().collect())
}

/// Runs [`prune`] at start and then daily, keeping `retention_months`.
pub fn spawn_pruning(dir: PathBuf, retention_months: u32, clock: crate::clock::SharedClock) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(24 * 3600));
        loop {
            every.tick().await;
            let cutoff = retention_cutoff(clock.now(), retention_months);
            let dir2 = dir.clone();
            match tokio::task::spawn_blocking(move || prune(&dir2, cutoff)).await {
                Ok(Ok(removed)) if !removed.is_empty() => tracing::info!(
                    target: "txlog",
                    "pruned {} daily file(s) older than {cutoff} ({retention_months} months)",
                    removed.len()
                ),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(target: "txlog", error = %e, "pruning failed"),
                Err(e) => tracing::error!(target: "txlog", error = %e, "pruning task failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::collections::BTreeSet;
    use std::sync::Arc;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    fn full_record(ts: DateTime<Utc>, request_id: &str) -> TxRecord {
        TxRecord {
            error_code: None,
            idp_entity_id: Some("https://idp.example.it".into()),
            authn_req_id: Some(format!("_req-{request_id}")),
            authn_req_issue_instant: Some("2025-01-01T10:00:00Z".into()),
            authn_req_xml: Some(format!(
                "<samlp:AuthnRequest ID=\"_req-{request_id}\">\n  {}\n</samlp:AuthnRequest>",
                "x".repeat(4096)
            )),
            resp_id: Some("_resp".into()),
            resp_issue_instant: Some("2025-01-01T10:00:05Z".into()),
            resp_issuer: Some("https://idp.example.it".into()),
            assertion_id: Some("_assertion".into()),
            assertion_subject: Some("_nameid".into()),
            assertion_subject_name_qualifier: Some("https://idp.example.it".into()),
            acr: Some("https://www.spid.gov.it/SpidL2".into()),
            // Big enough that unserialised writers would interleave.
            resp_xml: Some(format!(
                "<samlp:Response>\n{}\n</samlp:Response>",
                "y".repeat(64 * 1024)
            )),
            ..TxRecord::new(ts, TxOutcome::Accepted, request_id)
        }
    }

    fn read_lines(path: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.ends_with('\n'), "file must end with a newline");
        text.lines().map(str::to_owned).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_never_interleave() {
        let tmp = tempfile::tempdir().unwrap();
        let log = Arc::new(FileTxLog::open(tmp.path()).unwrap());
        let ts = at(2025, 3, 14, 12);
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let dyn_log: Arc<dyn TxLog> = log;
                    dyn_log.append(&full_record(ts, &format!("req-{i}"))).await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let lines = read_lines(&log.path_for(ts.date_naive()));
        assert_eq!(lines.len(), 100);
        let mut ids = BTreeSet::new();
        for line in &lines {
            let rec: TxRecord = serde_json::from_str(line).unwrap();
            assert_eq!(rec, full_record(ts, &rec.request_id));
            ids.insert(rec.request_id);
        }
        let expected: BTreeSet<String> = (0..100).map(|i| format!("req-{i}")).collect();
        assert_eq!(ids, expected);
    }

    #[tokio::test]
    async fn a_batch_shares_one_sync_and_every_waiter_hears_of_it() {
        let tmp = tempfile::tempdir().unwrap();
        let stats = Arc::new(Counters::default());
        let mut writer = Writer {
            dir: tmp.path().to_path_buf(),
            current: None,
            stats: Arc::clone(&stats),
        };
        let day1 = at(2025, 3, 14, 12);
        let day2 = at(2025, 3, 15, 0);
        let mut waits = Vec::new();
        let batch: Vec<Job> = (0..50)
            .map(|i| {
                let ts = if i % 10 == 9 { day2 } else { day1 };
                let mut line = serde_json::to_vec(&full_record(ts, &format!("b{i}"))).unwrap();
                line.push(b'\n');
                let (done, wait) = tokio::sync::oneshot::channel();
                waits.push(wait);
                Job {
                    date: ts.date_naive(),
                    line,
                    done,
                }
            })
            .collect();
        writer.write_batch(batch);
        for w in waits {
            w.await.unwrap().unwrap();
        }
        // 50 records, two days: two writes and two syncs, not fifty.
        assert_eq!(stats.syncs.load(Ordering::Relaxed), 2);
        assert_eq!(stats.records.load(Ordering::Relaxed), 50);
        let ids = |ts: DateTime<Utc>| -> Vec<String> {
            read_lines(&path_for(tmp.path(), ts.date_naive()))
                .iter()
                .map(|l| serde_json::from_str::<TxRecord>(l).unwrap().request_id)
                .collect()
        };
        let expected1: Vec<String> = (0..50)
            .filter(|i| i % 10 != 9)
            .map(|i| format!("b{i}"))
            .collect();
        let expected2: Vec<String> = (0..50)
            .filter(|i| i % 10 == 9)
            .map(|i| format!("b{i}"))
            .collect();
        assert_eq!(ids(day1), expected1, "arrival order kept");
        assert_eq!(ids(day2), expected2);
    }

    #[tokio::test]
    async fn records_go_to_the_file_of_their_utc_day() {
        let tmp = tempfile::tempdir().unwrap();
        let log = FileTxLog::open(tmp.path()).unwrap();
        let feb29 = at(2024, 2, 29, 23);
        let mar01 = at(2024, 3, 1, 0);
        log.append(&TxRecord::new(feb29, TxOutcome::Accepted, "a"))
            .await
            .unwrap();
        log.append(&TxRecord::new(mar01, TxOutcome::Rejected, "b"))
            .await
            .unwrap();
        // A late record for the previous day goes back to that day's file.
        log.append(&TxRecord::new(feb29, TxOutcome::IdpError, "c"))
            .await
            .unwrap();

        let feb_path = tmp.path().join("spid-tx-2024-02-29.jsonl");
        let mar_path = tmp.path().join("spid-tx-2024-03-01.jsonl");
        assert_eq!(log.path_for(feb29.date_naive()), feb_path);
        let feb: Vec<TxRecord> = read_lines(&feb_path)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let mar: Vec<TxRecord> = read_lines(&mar_path)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            feb.iter()
                .map(|r| r.request_id.as_str())
                .collect::<Vec<_>>(),
            ["a", "c"]
        );
        assert_eq!(
            mar.iter()
                .map(|r| r.request_id.as_str())
                .collect::<Vec<_>>(),
            ["b"]
        );
        let mut names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["spid-tx-2024-02-29.jsonl", "spid-tx-2024-03-01.jsonl"]
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn permissions_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("spid").join("tx");
        let log = FileTxLog::open(&dir).unwrap();
        let ts = at(2025, 1, 1, 0);
        log.append(&TxRecord::new(ts, TxOutcome::Accepted, "p"))
            .await
            .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&log.path_for(ts.date_naive())), 0o600);

        // A pre-existing file with loose permissions is tightened on open.
        let other = at(2025, 1, 2, 0);
        let loose = log.path_for(other.date_naive());
        std::fs::write(&loose, b"").unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
        log.append(&TxRecord::new(other, TxOutcome::Accepted, "q"))
            .await
            .unwrap();
        assert_eq!(mode(&loose), 0o600);
    }

    #[tokio::test]
    async fn torn_last_line_is_terminated_before_appending() {
        let tmp = tempfile::tempdir().unwrap();
        let log = FileTxLog::open(tmp.path()).unwrap();
        let ts = at(2025, 5, 5, 5);
        let path = log.path_for(ts.date_naive());
        std::fs::write(&path, b"{\"ts\":\"2025-05-05T04:59:59Z\",\"outc").unwrap();
        log.append(&TxRecord::new(ts, TxOutcome::Accepted, "after-crash"))
            .await
            .unwrap();
        let lines = read_lines(&path);
        assert_eq!(lines.len(), 2);
        let rec: TxRecord = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(rec.request_id, "after-crash");
    }

    #[tokio::test]
    async fn line_shape_is_stable() {
        let tmp = tempfile::tempdir().unwrap();
        let log = FileTxLog::open(tmp.path()).unwrap();
        let ts = at(2025, 6, 1, 8);
        let mut rec = TxRecord::new(ts, TxOutcome::IdpError, "r1");
        rec.error_code = Some("ErrorCode nr22".into());
        log.append(&rec).await.unwrap();
        let lines = read_lines(&log.path_for(ts.date_naive()));
        let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["ts"], "2025-06-01T08:00:00Z");
        assert_eq!(v["outcome"], "idp_error");
        assert_eq!(v["error_code"], "ErrorCode nr22");
        assert_eq!(v["request_id"], "r1");
        assert!(v["resp_xml"].is_null());
        assert_eq!(v.as_object().unwrap().len(), 16, "every key always present");
        for (outcome, text) in [
            (TxOutcome::Accepted, "\"accepted\""),
            (TxOutcome::Rejected, "\"rejected\""),
            (TxOutcome::IdpError, "\"idp_error\""),
        ] {
            assert_eq!(serde_json::to_string(&outcome).unwrap(), text);
        }
    }

    #[tokio::test]
    async fn write_errors_are_returned() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("gone");
        let log = FileTxLog::open(&dir).unwrap();
        std::fs::remove_dir(&dir).unwrap();
        std::fs::write(&dir, b"now a file").unwrap();
        let err = log
            .append(&TxRecord::new(at(2025, 1, 1, 0), TxOutcome::Accepted, "x"))
            .await
            .unwrap_err();
        assert!(matches!(err, TxLogError::Io { .. }), "{err}");
        assert!(
            err.to_string().contains("spid-tx-2025-01-01.jsonl"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn pruning_keeps_24_months_and_export_selects_by_day_and_person() {
        let tmp = tempfile::tempdir().unwrap();
        let log = FileTxLog::open(tmp.path()).unwrap();
        let rec = |ts, id: &str, cf: &str| {
            let mut r = TxRecord::new(ts, TxOutcome::Accepted, id);
            r.resp_xml = Some(format!("<Response>TINIT-{cf}</Response>"));
            r
        };
        for (ts, id, cf) in [
            (at(2023, 12, 31, 9), "old", "AAAAAA00A00A000A"),
            (at(2024, 1, 1, 9), "kept", "RSSMRA80A01H501U"),
            (at(2025, 6, 1, 9), "mid", "AAAAAA00A00A000A"),
            (at(2026, 1, 1, 9), "new", "RSSMRA80A01H501U"),
        ] {
            log.append(&rec(ts, id, cf)).await.unwrap();
        }
        std::fs::write(tmp.path().join("notes.txt"), b"not a daily file").unwrap();

        let cutoff = retention_cutoff(at(2026, 1, 1, 12), MIN_RETENTION_MONTHS);
        assert_eq!(cutoff, NaiveDate::from_ymd_opt(2024, 1, 1).unwrap());
        let removed = prune(tmp.path(), cutoff).unwrap();
        assert_eq!(
            removed,
            vec![log.path_for(NaiveDate::from_ymd_opt(2023, 12, 31).unwrap())]
        );
        assert!(tmp.path().join("notes.txt").exists(), "other files stay");
        assert!(prune(tmp.path(), cutoff).unwrap().is_empty(), "idempotent");

        let ids = |f: &ExportFilter| {
            let mut out = Vec::new();
            let n = export(tmp.path(), f, &mut out).unwrap();
            let ids: Vec<String> = String::from_utf8(out)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<TxRecord>(l).unwrap().request_id)
                .collect();
            assert_eq!(ids.len(), n);
            ids
        };
        assert_eq!(ids(&ExportFilter::default()), ["kept", "mid", "new"]);
        let mario = ExportFilter {
            fiscal_code: Some("RSSMRA80A01H501U".into()),
            ..ExportFilter::default()
        };
        assert_eq!(ids(&mario), ["kept", "new"]);
        let range = ExportFilter {
            from: NaiveDate::from_ymd_opt(2024, 1, 2),
            to: NaiveDate::from_ymd_opt(2025, 12, 31),
            ..ExportFilter::default()
        };
        assert_eq!(ids(&range), ["mid"]);
        assert_eq!(
            file_date("spid-tx-2024-02-29.jsonl"),
            NaiveDate::from_ymd_opt(2024, 2, 29)
        );
        assert_eq!(file_date("spid-tx-2024-02-30.jsonl"), None);
        assert_eq!(file_date("notes.txt"), None);
    }

    #[test]
    fn open_rejects_a_file_path() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(FileTxLog::open(&file), Err(TxLogError::Io { .. })));
    }

    #[tokio::test]
    async fn a_persons_recent_logins_are_the_newest_few_without_xml() {
        let tmp = tempfile::tempdir().unwrap();
        let log = FileTxLog::open(tmp.path()).unwrap();
        for (n, day) in [1u32, 2, 2, 3, 20].into_iter().enumerate() {
            let outcome = if n == 3 {
                TxOutcome::IdpError
            } else {
                TxOutcome::Accepted
            };
            let mut r = TxRecord::new(at(2026, 11, day, 9 + n as u32), outcome, format!("r{n}"));
            r.resp_xml = Some("<Response>TINIT-RSSMRA80A01H501U</Response>".into());
            r.idp_entity_id = Some("https://idp.example".into());
            r.acr = Some("https://www.spid.gov.it/SpidL2".into());
            log.append(&r).await.unwrap();
        }
        let mut other = TxRecord::new(at(2026, 11, 21, 9), TxOutcome::Accepted, "other");
        other.resp_xml = Some("<Response>TINIT-BNCGLI85M52F205H</Response>".into());
        log.append(&other).await.unwrap();
        let from = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
        let recent = recent_for_person(tmp.path(), "rssmra80a01h501u", from, 3).unwrap();
        let hours: Vec<u32> = recent
            .iter()
            .map(|r| chrono::Timelike::hour(&r.ts))
            .collect();
        assert_eq!(
            hours,
            [13, 12, 11],
            "newest first, at most 3, none before {from}"
        );
        assert_eq!(recent[1].outcome, TxOutcome::IdpError);
        assert_eq!(
            recent[0].acr.as_deref(),
            Some("https://www.spid.gov.it/SpidL2")
        );
        let all = recent_for_person(tmp.path(), "RSSMRA80A01H501U", from, 10).unwrap();
        assert_eq!(all.len(), 4);
    }

    #[tokio::test]
    async fn null_log_accepts_everything() {
        let log: Arc<dyn TxLog> = Arc::new(NullTxLog);
        log.append(&TxRecord::new(Utc::now(), TxOutcome::Accepted, "n"))
            .await
            .unwrap();
    }
}
