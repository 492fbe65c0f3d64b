//! The browser side, by hand: one shared HTTP client (no cookie store, no redirects
//! followed, kept-alive connections), a cookie jar per simulated browser, and the
//! gateway steps (start a login, post to the ACS, follow the gateway's redirects,
//! the OIDC authorization and token exchange, the abilitazione).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use polis_gateway::saml::{binding, xml};
use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};

/// The shared client: redirects are not followed; an idle connection is not reused
/// after 5 s (the gateway closes kept-alive connections idle for 10 s).
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// The cookies of one simulated browser.
#[derive(Debug, Clone, Default)]
pub struct Jar(Vec<(String, String)>);

impl Jar {
    /// Takes the `Set-Cookie`s of an answer (an empty value or `Max-Age=0` deletes).
    pub fn update(&mut self, headers: &HeaderMap) {
        for h in headers.get_all(SET_COOKIE) {
            let Ok(text) = h.to_str() else { continue };
            let mut parts = text.split(';');
            let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else {
                continue;
            };
            let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
            let deleted =
                value.is_empty() || parts.any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            self.0.retain(|(n, _)| *n != name);
            if !deleted {
                self.0.push((name, value));
            }
        }
    }

    /// The `Cookie` header value.
    pub fn header(&self) -> String {
        self.0
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// An answer read whole.
pub struct Answer {
    pub status: u16,
    pub location: String,
    pub retry_after: bool,
    pub body: String,
}

/// Sends `req` with `jar`'s cookies, updates `jar`, reads the answer.
pub async fn send(req: reqwest::RequestBuilder, jar: &mut Jar) -> anyhow::Result<Answer> {
    let req = if jar.0.is_empty() {
        req
    } else {
        req.header(COOKIE, jar.header())
    };
    let resp = req.send().await?;
    jar.update(resp.headers());
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let retry_after = resp.headers().contains_key(reqwest::header::RETRY_AFTER);
    let body = resp.text().await.unwrap_or_default();
    Ok(Answer {
        status,
        location,
        retry_after,
        body,
    })
}

/// A login the gateway has started: what the IdP would receive.
#[derive(Debug, Clone)]
pub struct Pending {
    pub request_id: String,
    pub relay_state: String,
    pub jar: Jar,
}

/// Reads the AuthnRequest ID and RelayState of a 302 to the IdP (Redirect binding).
pub fn pending_from(answer: &Answer, jar: Jar) -> anyhow::Result<Pending> {
    if answer.status != 302 {
        bail!(
            "GET /login: {} (expected 302): {}",
            answer.status,
            snippet(&answer.body)
        );
    }
    let query = answer
        .location
        .split_once('?')
        .context("no query in the /login Location")?
        .1;
    let params = binding::parse_query(query)?;
    let get = |n: &str| {
        params
            .iter()
            .find(|p| p.name == n)
            .map(|p| p.value.clone())
            .with_context(|| format!("no {n} in the /login Location"))
    };
    let text = binding::inflate_base64(&get("SAMLRequest")?, 1 << 20)?;
    let root = xml::parse(&text, xml::Limits::default())?;
    Ok(Pending {
        request_id: root
            .attr("ID")
            .context("AuthnRequest without ID")?
            .to_owned(),
        relay_state: get("RelayState")?,
        jar,
    })
}

/// `GET <gw>/login?idp=…&level=2&binding=redirect` with a fresh jar.
pub async fn start_login(client: &reqwest::Client, gw: &str, idp: &str) -> anyhow::Result<Pending> {
    let mut jar = Jar::default();
    let answer = send(client.get(login_url(gw, idp)), &mut jar).await?;
    pending_from(&answer, jar)
}

pub fn login_url(gw: &str, idp: &str) -> String {
    format!(
        "{gw}/login?idp={}&level=2&binding=redirect",
        binding::encode_component(idp)
    )
}

/// The form body of an ACS post.
pub fn acs_body(response_xml: &str, relay_state: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(response_xml);
    serde_urlencoded::to_string([("SAMLResponse", b64.as_str()), ("RelayState", relay_state)])
        .unwrap_or_default()
}

/// `POST /acs` with a prepared body.
pub async fn post_acs(
    client: &reqwest::Client,
    gw: &str,
    body: String,
    jar: &mut Jar,
) -> anyhow::Result<Answer> {
    send(
        client
            .post(format!("{gw}/acs"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body),
        jar,
    )
    .await
}

/// The ACS accepted: 303 to `/login/complete`.
pub fn acs_accepted(a: &Answer) -> bool {
    a.status == 303 && a.location.starts_with("/login/complete")
}

/// A relative or absolute gateway URL, made absolute.
pub fn absolute(gw: &str, location: &str) -> String {
    if location.starts_with('/') {
        format!("{gw}{location}")
    } else {
        location.to_owned()
    }
}

/// The first 300 characters of a body, on one line.
pub fn snippet(body: &str) -> String {
    let one: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    one.chars().take(300).collect()
}

/// The CSRF token of a page.
fn csrf(html: &str) -> anyhow::Result<String> {
    let at = html
        .find("name=\"csrf\"")
        .context("no csrf input on the page")?;
    let start = html
        .get(..at)
        .and_then(|h| h.rfind('<'))
        .context("csrf tag")?;
    let end = at
        + html
            .get(at..)
            .and_then(|h| h.find('>'))
            .context("csrf tag")?;
    let tag = html.get(start..end).context("csrf tag")?;
    let v = tag.find("value=\"").context("csrf value")? + "value=\"".len();
    let len = tag
        .get(v..)
        .and_then(|t| t.find('"'))
        .context("csrf value")?;
    Ok(tag.get(v..v + len).unwrap_or_default().to_owned())
}

/// GETs the page carrying the form of `path`, posts `fields` + its CSRF token; expects
/// a 303 whose path is `to` (any path when `to` is empty).
pub async fn post_form(
    client: &reqwest::Client,
    gw: &str,
    jar: &mut Jar,
    path: &str,
    fields: &[(&str, &str)],
    to: &str,
) -> anyhow::Result<Answer> {
    let page = send(client.get(format!("{gw}{path}")), jar).await?;
    if page.status != 200 {
        bail!("GET {path}: {} {}", page.status, snippet(&page.body));
    }
    let token = csrf(&page.body)?;
    let mut all: Vec<(&str, &str)> = fields.to_vec();
    all.push(("csrf", &token));
    let a = send(client.post(format!("{gw}{path}")).form(&all), jar).await?;
    let got = a.location.split('?').next().unwrap_or_default();
    if a.status != 303 || (!to.is_empty() && got != to) {
        bail!(
            "POST {path}: {} to {:?} (expected 303 to {to}): {}",
            a.status,
            a.location,
            snippet(&a.body)
        );
    }
    Ok(a)
}

/// The temporary CP mailed to `email`: the newest outbox message to it.
pub fn temp_cp_from_outbox(outbox: &Path, email: &str) -> anyhow::Result<Option<String>> {
    let mut names: Vec<_> = match std::fs::read_dir(outbox) {
        Ok(d) => d
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect(),
        Err(_) => return Ok(None),
    };
    names.sort();
    for path in names.iter().rev() {
        let raw = std::fs::read(path)?;
        let Ok(msg) = polis_gateway::mail::stored::parse(&raw) else {
            continue;
        };
        if !msg.to.iter().any(|t| t.contains(email)) {
            continue;
        }
        if let Some(cp) = msg
            .text
            .lines()
            .find_map(|l| l.trim_end().strip_prefix("Codice Personale temporaneo: "))
        {
            return Ok(Some(cp.trim().to_owned()));
        }
    }
    Ok(None)
}
