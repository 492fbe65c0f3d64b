//! A real SMTP server for tests: Debian's `python3-aiosmtpd`, run with the system
//! interpreter (`/usr/bin/python3`; a pyenv `python3` on PATH lacks the module), on a
//! free port on 127.0.0.1, plain SMTP (no TLS), one temp dir per server.
//!
//! A small handler script records every message: the raw DATA bytes (`<n>.eml`) and, as
//! `<n>.json`, the envelope (MAIL FROM, RCPT TO) plus the message parsed by Python's own
//! `email` package (decoded subject, text and HTML bodies, attachments with file name,
//! content type and base64 bytes), so the test checks our MIME output with an
//! independent parser. `RCPT TO` an address at `rejected.invalid` gets a `550` reply.

use std::io::{BufRead as _, BufReader, ErrorKind};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use tempfile::TempDir;

use super::free_port;

/// The system interpreter that has Debian's `aiosmtpd` module.
const PYTHON: &str = "/usr/bin/python3";
/// How long the server gets to accept connections.
const DEADLINE: Duration = Duration::from_secs(10);

/// The recorder (`serve HOST PORT DIR`) and parser (`parse FILE`, JSON on stdout).
const SCRIPT: &str = r#"
import asyncio, base64, email, email.policy, json, os, sys

def describe(raw):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    return {
        "subject": str(msg["subject"] or ""),
        "from": str(msg["from"] or ""),
        "to": [a.addr_spec for a in (msg["to"].addresses if msg["to"] else ())],
        "date": str(msg["date"] or ""),
        "message_id": str(msg["message-id"] or ""),
        "content_type": msg.get_content_type(),
        "text": text.get_content() if text is not None else None,
        "html": html.get_content() if html is not None else None,
        "attachments": [
            {
                "filename": part.get_filename(),
                "content_type": part.get_content_type(),
                "bytes": base64.b64encode(part.get_payload(decode=True)).decode("ascii"),
            }
            for part in msg.iter_attachments()
        ],
    }

class Recorder:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower().endswith("@rejected.invalid"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = os.path.join(self.directory, "%04d" % self.count)
        raw = envelope.original_content or envelope.content
        record = describe(raw)
        record["mail_from"] = envelope.mail_from
        record["rcpt_tos"] = list(envelope.rcpt_tos)
        with open(base + ".eml.tmp", "wb") as f:
            f.write(raw)
        with open(base + ".json.tmp", "w") as f:
            json.dump(record, f)
        os.rename(base + ".eml.tmp", base + ".eml")
        os.rename(base + ".json.tmp", base + ".json")
        return "250 OK"

async def serve(host, port, directory):
    from aiosmtpd.smtp import SMTP
    handler = Recorder(directory)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="polis-test-smtp"), host, port)
    print("ready", flush=True)
    await server.serve_forever()

if sys.argv[1] == "serve":
    asyncio.run(serve(sys.argv[2], int(sys.argv[3]), sys.argv[4]))
else:
    with open(sys.argv[2], "rb") as f:
        json.dump(describe(f.read()), sys.stdout)
"#;

/// An attachment as Python's `email` package decoded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedAttachment {
    /// `Content-Disposition` file name.
    pub filename: String,
    /// MIME type, e.g. `application/pdf`.
    pub content_type: String,
    /// The decoded content.
    pub bytes: Vec<u8>,
}

/// A message as the server received it (or as [`parse_eml`] read it).
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// Envelope `MAIL FROM` (empty for [`parse_eml`]).
    pub mail_from: String,
    /// Envelope `RCPT TO` addresses (empty for [`parse_eml`]).
    pub rcpt_tos: Vec<String>,
    /// The decoded `Subject`.
    pub subject: String,
    /// The `From` header.
    pub from: String,
    /// The `To` addresses.
    pub to: Vec<String>,
    /// The `Date` header.
    pub date: String,
    /// The `Message-ID` header.
    pub message_id: String,
    /// The top-level content type (`multipart/mixed`).
    pub content_type: String,
    /// The decoded `text/plain` body.
    pub text: Option<String>,
    /// The decoded `text/html` body.
    pub html: Option<String>,
    /// The attachments, in order.
    pub attachments: Vec<ReceivedAttachment>,
}

fn from_json(json: &serde_json::Value) -> ReceivedMail {
    let string = |key: &str| json[key].as_str().unwrap_or_default().to_owned();
    let strings = |key: &str| -> Vec<String> {
        json[key]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let attachments = json["attachments"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|a| ReceivedAttachment {
                    filename: a["filename"].as_str().unwrap_or_default().to_owned(),
                    content_type: a["content_type"].as_str().unwrap_or_default().to_owned(),
                    bytes: base64::engine::general_purpose::STANDARD
                        .decode(a["bytes"].as_str().unwrap_or_default())
                        .expect("attachment base64 from the python parser"),
                })
                .collect()
        })
        .unwrap_or_default();
    ReceivedMail {
        mail_from: string("mail_from"),
        rcpt_tos: strings("rcpt_tos"),
        subject: string("subject"),
        from: string("from"),
        to: strings("to"),
        date: string("date"),
        message_id: string("message_id"),
        content_type: string("content_type"),
        text: json["text"].as_str().map(str::to_owned),
        html: json["html"].as_str().map(str::to_owned),
        attachments,
    }
}

/// Parses an RFC 5322 message with Python's `email` package (independent of lettre).
pub fn parse_eml(raw: &[u8]) -> ReceivedMail {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("smtp_recorder.py");
    std::fs::write(&script, SCRIPT).expect("write script");
    let file = dir.path().join("message.eml");
    std::fs::write(&file, raw).expect("write message");
    let out = Command::new(PYTHON)
        .arg(&script)
        .arg("parse")
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("{PYTHON}: {e}"));
    assert!(
        out.status.success(),
        "parse failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    from_json(&serde_json::from_slice(&out.stdout).expect("parser JSON"))
}

/// An aiosmtpd server owned by a test; killed on drop.
pub struct SmtpServer {
    port: u16,
    dir: TempDir,
    child: Child,
}

impl SmtpServer {
    /// Starts the server on a free port and waits until it greets with `220`.
    ///
    /// Panics if `/usr/bin/python3` or its `aiosmtpd` module is missing
    /// (`scripts/install-deps.sh --test` installs `python3-aiosmtpd`).
    pub fn start() -> SmtpServer {
        Self::start_on(free_port())
    }

    /// Like [`start`](Self::start), on a port the test chose (e.g. one a gateway was
    /// configured with while nothing listened there).
    pub fn start_on(port: u16) -> SmtpServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let script = dir.path().join("smtp_recorder.py");
        std::fs::write(&script, SCRIPT).expect("write script");
        let mail_dir = dir.path().join("mail");
        std::fs::create_dir(&mail_dir).expect("create mail dir");
        let child = Command::new(PYTHON)
            .arg(&script)
            .args(["serve", "127.0.0.1", &port.to_string()])
            .arg(&mail_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("aiosmtpd.log")).expect("log file"),
            ))
            .spawn()
            .unwrap_or_else(|e| panic!("{PYTHON} (for python3-aiosmtpd): {e}"));
        let mut server = SmtpServer { port, dir, child };
        server.wait_until_ready();
        server
    }

    fn wait_until_ready(&mut self) {
        let start = Instant::now();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let err = std::fs::read_to_string(self.dir.path().join("aiosmtpd.log"))
                    .unwrap_or_default();
                panic!(
                    "aiosmtpd exited with {status} (is python3-aiosmtpd installed? \
                     scripts/install-deps.sh --test): {err}"
                );
            }
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(stream) => {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut greeting = String::new();
                    if BufReader::new(stream).read_line(&mut greeting).is_ok()
                        && greeting.starts_with("220")
                    {
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
                Err(e) => panic!("connect to aiosmtpd: {e}"),
            }
            assert!(
                start.elapsed() < DEADLINE,
                "aiosmtpd did not accept connections on {addr} within {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every message received so far, in order.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        let mail_dir = self.dir.path().join("mail");
        let mut names: Vec<_> = std::fs::read_dir(&mail_dir)
            .expect("read mail dir")
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        names.sort();
        names.iter().map(|path| read_record(path)).collect()
    }

    /// The raw bytes of message `index` (0-based) as received in DATA.
    pub fn raw(&self, index: usize) -> Vec<u8> {
        let path = self
            .dir
            .path()
            .join("mail")
            .join(format!("{:04}.eml", index + 1));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
}

fn read_record(path: &Path) -> ReceivedMail {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    from_json(&serde_json::from_slice(&text).expect("record JSON"))
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
