//! The single `AppError` of the HTTP edge. It only converts: the status and the
//! Italian page come from the error. The error-page middleware (`super::error_pages`)
//! renders the page once, with the request id, from the `PendingPage` extension, and
//! writes the log line from the [`ErrorInfo`] extension.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::enablement::EnablementError;
use crate::saml::SamlError;
use crate::saml::error::ErrorClass;
use crate::sso::SsoError;
use crate::state::StateError;

/// `Retry-After` on 503 and 429 pages, seconds.
const RETRY_AFTER_SECONDS: &str = "5";

/// What the logging middleware records about a failed request.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    /// Stable code.
    pub code: &'static str,
    /// Technical detail (never shown to users).
    pub detail: String,
}

/// An error page (boxed: errors stay one pointer wide in `Result`s).
#[derive(Debug)]
pub struct AppError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    message: String,
    hint: Option<String>,
    detail: String,
    back: &'static str,
    /// A technical detail for the support box (the IdP's `ErrorCode nrNN`), never in
    /// the message itself.
    technical: Option<String>,
    /// Not a failure: the person chose it (SPID nr25, cancelled): an informative page
    /// with «Riprova», no call to the help desk.
    neutral: bool,
    /// The admission page: `Retry-After` and a `<meta refresh>` after this many seconds.
    retry_after: Option<u32>,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
    hint: Option<&'a str>,
    code: &'a str,
    request_id: &'a str,
    back: &'a str,
    technical: Option<&'a str>,
    neutral: bool,
    refresh: Option<u32>,
}

impl AppError {
    /// A 400 for malformed parameters.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self(Box::new(Inner {
            status: StatusCode::BAD_REQUEST,
            code: "POLIS_BAD_REQUEST",
            title: "Richiesta non valida",
            message: "La richiesta non è valida. Torna indietro e riprova.".into(),
            hint: None,
            detail: detail.into(),
            back: "/",
            technical: None,
            neutral: false,
            retry_after: None,
        }))
    }

    /// The admission page (429): the gateway is saturated, so this new login waits
    /// `retry_after_seconds` and the page reloads itself (no JavaScript).
    pub fn saturated(s: crate::admission::Saturated) -> Self {
        let n = s.retry_after_seconds;
        Self(Box::new(Inner {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "POLIS_SATURATED",
            title: "Troppe richieste",
            message: format!(
                "Troppe richieste: riprova tra {n} secondi. In questo momento molte persone stanno accedendo al servizio."
            ),
            hint: Some(format!(
                "La pagina si ricaricherà da sola tra {n} secondi; non serve fare altro."
            )),
            detail: s.to_string(),
            // The same address again (what the refresh also loads).
            back: "",
            technical: None,
            neutral: true,
            retry_after: Some(n),
        }))
    }

    /// A 404.
    pub fn not_found() -> Self {
        Self(Box::new(Inner {
            status: StatusCode::NOT_FOUND,
            code: "POLIS_NOT_FOUND",
            title: "Pagina non trovata",
            message: "La pagina richiesta non esiste.".into(),
            hint: None,
            detail: String::new(),
            back: "/",
            technical: None,
            neutral: false,
            retry_after: None,
        }))
    }

    /// A 405 for a method the URL does not take (`GET /acs`, `GET /logout`): a page,
    /// not axum's empty answer.
    pub fn method_not_allowed() -> Self {
        Self(Box::new(Inner {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "POLIS_METHOD_NOT_ALLOWED",
            title: "Indirizzo da non aprire direttamente",
            message: "Questo indirizzo si raggiunge da un modulo del servizio o dal gestore \
                      dell'identità digitale, non aprendolo nel browser."
                .into(),
            hint: Some("Torna alla pagina iniziale e ripeti l'operazione.".to_owned()),
            detail: String::new(),
            back: "/",
            technical: None,
            neutral: false,
            retry_after: None,
        }))
    }

    /// A 413 for a body over the limit.
    pub fn too_large() -> Self {
        Self(Box::new(Inner {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "SAML_TOO_LARGE",
            title: "Richiesta troppo grande",
            message: "Il messaggio ricevuto supera la dimensione consentita.".into(),
            hint: None,
            detail: "body over the configured limit".into(),
            back: "/",
            technical: None,
            neutral: false,
            retry_after: None,
        }))
    }

    /// A 408 for a request that ran out of time (body too slow, or handling too long).
    pub fn timeout() -> Self {
        Self::page(
            StatusCode::REQUEST_TIMEOUT,
            "POLIS_REQUEST_TIMEOUT",
            "Richiesta scaduta",
            "La richiesta ha impiegato troppo tempo ed è stata interrotta. Riprova.",
            "request not completed within the time limit",
            "/",
        )
    }

    /// The outbox's errors: a bad or unknown name 404, a file that does not read as
    /// mail 422 with its own page, anything else 500.
    pub fn from_outbox(e: crate::mail::MailError) -> Self {
        match e {
            crate::mail::MailError::BadFileName | crate::mail::MailError::NotFound => {
                Self::not_found()
            }
            crate::mail::MailError::Malformed(detail) => Self::page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "POLIS_MAIL_OUTBOX_MALFORMED",
                "Messaggio non leggibile",
                "Il file salvato nella posta inviata non è un messaggio e-mail leggibile. \
                 Torna alla posta inviata e apri un altro messaggio.",
                detail,
                "/demo/posta",
            ),
            other => Self::internal(other.to_string()),
        }
    }

    /// A 500 for our own failures.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self(Box::new(Inner {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "POLIS_INTERNAL",
            title: "Errore interno",
            message: "Si è verificato un errore interno. Riprova tra qualche minuto.".into(),
            hint: None,
            detail: detail.into(),
            back: "/",
            technical: None,
            neutral: false,
            retry_after: None,
        }))
    }

    /// Maps an SSO error to its page and status.
    pub fn from_sso(e: SsoError) -> Self {
        let detail = e.to_string();
        let code = e.code();
        let login_failed = "Accesso non riuscito";
        let (status, title, message, hint) = match &e {
            SsoError::Saml(s) => saml_page(s),
            SsoError::UnknownIdp => (
                StatusCode::BAD_REQUEST,
                login_failed,
                "Il gestore di identità scelto non è riconosciuto.".to_owned(),
                None,
            ),
            SsoError::BadRequest(_) => (
                StatusCode::BAD_REQUEST,
                "Richiesta non valida",
                "La richiesta non è valida. Torna indietro e riprova.".to_owned(),
                None,
            ),
            SsoError::UnknownRequest | SsoError::RelayStateMismatch => (
                StatusCode::FORBIDDEN,
                login_failed,
                "La risposta non corrisponde a un accesso in corso: potrebbe essere scaduta o già utilizzata.".to_owned(),
                Some("Riprova l'accesso dall'inizio.".to_owned()),
            ),
            SsoError::StaleRequest => (
                StatusCode::FORBIDDEN,
                login_failed,
                "L'accesso era iniziato prima di un riavvio del servizio e non può essere completato.".to_owned(),
                Some("Riprova l'accesso dall'inizio.".to_owned()),
            ),
            SsoError::Replay => (
                StatusCode::FORBIDDEN,
                login_failed,
                "Questa risposta di autenticazione è già stata utilizzata.".to_owned(),
                Some("Riprova l'accesso dall'inizio.".to_owned()),
            ),
            SsoError::State(StateError::Unavailable(_)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Servizio temporaneamente non disponibile",
                "Il servizio è momentaneamente non disponibile. Riprova tra qualche minuto.".to_owned(),
                None,
            ),
            SsoError::Busy(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Servizio temporaneamente non disponibile",
                "Il servizio sta ricevendo molte richieste in questo momento. Riprova tra qualche secondo.".to_owned(),
                None,
            ),
            SsoError::State(StateError::Full(_)) => (
                StatusCode::TOO_MANY_REQUESTS,
                "Troppe richieste",
                "Troppe richieste: riprova tra qualche secondo.".to_owned(),
                None,
            ),
            SsoError::State(_) | SsoError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Errore interno",
                "Si è verificato un errore interno. Riprova tra qualche minuto.".to_owned(),
                None,
            ),
        };
        let (technical, neutral, title, back) = login_outcome(&e, title);
        Self(Box::new(Inner {
            status,
            code,
            title,
            message,
            hint,
            detail,
            back,
            technical,
            neutral,
            retry_after: None,
        }))
    }

    /// A page with everything chosen by the caller.
    pub(super) fn page(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        message: impl Into<String>,
        detail: impl Into<String>,
        back: &'static str,
    ) -> Self {
        Self(Box::new(Inner {
            status,
            code,
            title,
            message: message.into(),
            hint: None,
            detail: detail.into(),
            back,
            technical: None,
            neutral: false,
            retry_after: None,
        }))
    }

    /// A 403 for a form posted without this session's CSRF token.
    pub fn csrf() -> Self {
        Self::page(
            StatusCode::FORBIDDEN,
            "POLIS_CSRF",
            "Modulo non valido",
            "Il modulo inviato non è valido o è scaduto: nessuna modifica è stata salvata. Ricarica la pagina e riprova.",
            "missing or wrong CSRF token",
            "/",
        )
    }

    /// A 403 at `/login/complete` when the verified login was started in another
    /// browser: nothing is opened (login CSRF).
    pub fn login_other_browser() -> Self {
        let mut e = Self::page(
            StatusCode::FORBIDDEN,
            "POLIS_LOGIN_OTHER_BROWSER",
            "Accesso non completato",
            "Questo accesso è stato avviato in un altro browser: per la tua sicurezza non è stato aperto qui. Se l'hai avviato tu, ricomincia l'accesso da questo browser.",
            "login binding cookie missing or different",
            "/login",
        );
        e.0.hint = Some("Nessun dato è stato modificato.".to_owned());
        e
    }

    /// A 403 at `/login/complete` without a login waiting (expired, already used).
    pub fn login_not_pending() -> Self {
        Self::page(
            StatusCode::FORBIDDEN,
            "POLIS_LOGIN_NOT_PENDING",
            "Accesso non completato",
            "Questo collegamento di accesso è scaduto o è già stato usato. Riprova l'accesso dall'inizio.",
            "no parked login for this key",
            "/login",
        )
    }

    /// A 429 for a client over its request rate (`Retry-After` added).
    pub fn rate_limited() -> Self {
        Self::page(
            StatusCode::TOO_MANY_REQUESTS,
            "POLIS_RATE_LIMITED",
            "Troppe richieste",
            "Sono arrivate troppe richieste da questo indirizzo in poco tempo. Attendi qualche secondo e riprova.",
            "per-client-IP rate limit",
            "/",
        )
    }

    /// A 401 for a form posted without a live session.
    pub fn session_required() -> Self {
        Self::page(
            StatusCode::UNAUTHORIZED,
            "POLIS_SESSION_REQUIRED",
            "Sessione scaduta",
            "La sessione è scaduta o non è valida: nessuna modifica è stata salvata. Accedi di nuovo con SPID.",
            "no live session",
            "/login",
        )
    }

    /// A 401 for a link followed or a form posted after the session expired; `kept`:
    /// what the form held was kept for the next login.
    pub fn session_expired(kept: bool) -> Self {
        let mut e = Self::page(
            StatusCode::UNAUTHORIZED,
            "POLIS_SESSION_EXPIRED",
            "Sessione scaduta",
            "La sessione è scaduta per inattività o per durata massima: per la tua sicurezza devi accedere di nuovo.",
            "the session of this cookie expired",
            "/login",
        );
        e.0.hint = Some(if kept {
            "I dati che avevi inserito nel modulo non sono stati salvati, ma li abbiamo conservati: dopo il nuovo accesso li ritroverai nel modulo, da controllare e inviare. I codici e le risposte segrete non vengono mai conservati.".to_owned()
        } else {
            "Nessuna modifica è stata salvata.".to_owned()
        });
        e.0.neutral = true;
        e
    }

    /// A 503/500 for the state store.
    pub fn from_state(e: StateError) -> Self {
        Self::from_sso(crate::sso::SsoError::State(e))
    }

    /// Maps an enablement error to its page and status. Field-level errors are
    /// normally shown on the form itself; this is the fallback page.
    pub fn from_enablement(e: EnablementError) -> Self {
        use EnablementError as E;
        let code = e.code();
        let detail = e.to_string();
        let (status, title, message, back): (StatusCode, &'static str, String, &'static str) =
            match &e {
                E::MissingAttributes(names) => (
                    StatusCode::FORBIDDEN,
                    "Dati SPID insufficienti",
                    format!(
                        "Il gestore di identità non ha trasmesso dati indispensabili per Istanze OnLine ({}). Nessun account è stato creato o modificato. Verifica i dati della tua identità SPID presso il gestore e riprova.",
                        names.join(", ")
                    ),
                    "/login",
                ),
                E::InvalidFiscalCode => (
                    StatusCode::FORBIDDEN,
                    "Codice fiscale non valido",
                    "Il codice fiscale trasmesso dal gestore di identità non è valido. Nessun account è stato creato o modificato.".to_owned(),
                    "/login",
                ),
                E::InvalidEidasIdentifier => (
                    StatusCode::FORBIDDEN,
                    "Identificativo eIDAS non valido / Invalid eIDAS identifier",
                    "L'identificativo eIDAS trasmesso dal nodo eIDAS non è valido. Nessun account è stato creato o modificato. / The eIDAS identifier sent by the eIDAS node is not valid. No account was created or changed.".to_owned(),
                    "/login",
                ),
                E::Step(_) | E::Conflict => (
                    StatusCode::CONFLICT,
                    "Pagina non più attuale",
                    "I tuoi dati sono cambiati nel frattempo (per esempio in un'altra finestra). Riprendi dal passo corrente.".to_owned(),
                    "/abilitazione",
                ),
                E::Form(_) | E::RevocationReason | E::CpRules(_) | E::TempCpWrong { .. } | E::TempCpExpired | E::CpWrong { .. } | E::RecoveryWrong { .. } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Dati non validi",
                    "Alcuni dati non sono validi. Torna indietro e correggili.".to_owned(),
                    "/abilitazione",
                ),
                E::TempCpLocked | E::CpLocked | E::RecoveryLocked | E::ResendLimit => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Troppi tentativi",
                    "Sono stati fatti troppi tentativi. Riprova più tardi.".to_owned(),
                    "/",
                ),
                E::NoEmail => (
                    StatusCode::CONFLICT,
                    "Indirizzo e-mail mancante",
                    "Non è indicato un indirizzo e-mail a cui inviare il Codice Personale: inseriscilo nei tuoi dati.".to_owned(),
                    "/abilitazione",
                ),
                E::AccountGone => (
                    StatusCode::UNAUTHORIZED,
                    "Sessione non valida",
                    "L'account di questa sessione non esiste più. Accedi di nuovo con SPID.".to_owned(),
                    "/login",
                ),
                E::Mail(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Invio dell'e-mail non riuscito",
                    "Non è stato possibile inviare l'e-mail con il Codice Personale temporaneo. I tuoi dati sono salvati: riprova tra qualche minuto dalla stessa pagina.".to_owned(),
                    "/abilitazione",
                ),
                E::Accounts(crate::accounts::AccountError::Unavailable(_))
                | E::State(StateError::Unavailable(_))
                | E::Busy(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Servizio temporaneamente non disponibile",
                    "Il servizio è momentaneamente non disponibile. Riprova tra qualche minuto.".to_owned(),
                    "/",
                ),
                E::Accounts(_) | E::State(_) | E::Pdf(_) | E::Cp(_) | E::Internal(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Errore interno",
                    "Si è verificato un errore interno. Riprova tra qualche minuto.".to_owned(),
                    "/",
                ),
            };
        Self::page(status, code, title, message, detail, back)
    }

    /// An OpenID Connect error shown as a page (an untrusted client or redirect URI,
    /// an expired authorization): never redirected anywhere.
    pub fn from_oidc(e: crate::oidc::provider::OidcError) -> Self {
        use crate::oidc::provider::OidcError as E;
        let (status, title, message): (StatusCode, &'static str, &str) = match &e {
            E::Untrusted(_) | E::InvalidRequest(_) | E::InvalidScope(_) => (
                StatusCode::BAD_REQUEST,
                "Richiesta del servizio non valida",
                "Il servizio che ti ha indirizzato qui ha inviato una richiesta di accesso non valida o non registrata. Torna al servizio e riprova.",
            ),
            E::AuthzExpired => (
                StatusCode::BAD_REQUEST,
                "Richiesta scaduta",
                "La richiesta di accesso del servizio è scaduta. Torna al servizio e accedi di nuovo.",
            ),
            E::State(StateError::Unavailable(_)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Servizio temporaneamente non disponibile",
                "Il servizio è momentaneamente non disponibile. Riprova tra qualche minuto.",
            ),
            _ => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Errore interno",
                "Si è verificato un errore interno. Riprova tra qualche minuto.",
            ),
        };
        let code = e.code();
        Self::page(status, code, title, message, e.to_string(), "/")
    }

    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// Stable code.
    pub fn code(&self) -> &'static str {
        self.0.code
    }
}

/// The page of a refused SAML message: the IdP's own refusal (401, with the SPID
/// ErrorCode explained), a malformed one (400, 413), our failure (500) or a check that
/// failed (403).
/// The technical detail, the tone, the title and the way back of a failed login: the
/// IdP's own code goes to the technical details; a cancelled login (nr25) is the
/// person's choice, not a failure; a level lower than asked is retried at the level
/// asked.
fn login_outcome(
    e: &SsoError,
    title: &'static str,
) -> (Option<String>, bool, &'static str, &'static str) {
    match e {
        SsoError::Saml(SamlError::IdpStatus { code: Some(c), .. }) if c.0 == 25 => {
            (Some(c.to_string()), true, "Accesso annullato", "/login")
        }
        SsoError::Saml(SamlError::IdpStatus { code: Some(c), .. }) => {
            (Some(c.to_string()), false, title, "/login")
        }
        SsoError::Saml(SamlError::Level { requested, .. }) => {
            (None, true, title, retry_at(*requested))
        }
        _ => (None, false, title, "/login"),
    }
}

/// How a person recognises an access of SPID level `level`.
fn level_hint(level: u8) -> &'static str {
    match level {
        1 => "nome utente e password",
        2 => "nome utente e password più un codice temporaneo o la conferma con l'app",
        _ => "con un dispositivo di sicurezza, come la carta con il lettore o la firma digitale",
    }
}

/// The login page that asks level `level` again.
fn retry_at(level: u8) -> &'static str {
    match level {
        1 => "/login?level=1",
        2 => "/login?level=2",
        _ => "/login?level=3",
    }
}

fn saml_page(e: &SamlError) -> (StatusCode, &'static str, String, Option<String>) {
    let login_failed = "Accesso non riuscito";
    match e {
    SamlError::IdpStatus {
            code: spid,
            profile,
            ..
        } => {
            let msg = spid
                .and_then(|c| c.user_message_for(*profile).map(str::to_owned))
                .unwrap_or_else(|| {
                    "Autenticazione non riuscita: il gestore di identità non ha confermato l'accesso."
                        .to_owned()
                });
            (StatusCode::UNAUTHORIZED, login_failed, msg, None)
        }
        SamlError::Level {
            obtained, requested, ..
        } => (
            StatusCode::FORBIDDEN,
            "Livello di sicurezza non sufficiente",
            format!(
                "Hai effettuato l'accesso con il livello {obtained} di sicurezza, ma questo servizio richiede almeno il livello {requested}."
            ),
            Some(format!(
                "Riprova: presso il tuo gestore di identità scegli un accesso di livello {requested} ({}).",
                level_hint(*requested)
            )),
        ),
    s => match s.class() {
            ErrorClass::Malformed if *s == SamlError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                login_failed,
                "Il messaggio ricevuto dal gestore di identità supera la dimensione consentita.".to_owned(),
                None,
            ),
            ErrorClass::Malformed => (
                StatusCode::BAD_REQUEST,
                login_failed,
                "Il messaggio ricevuto dal gestore di identità non è leggibile.".to_owned(),
                None,
            ),
            ErrorClass::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Errore interno",
                "Si è verificato un errore interno. Riprova tra qualche minuto.".to_owned(),
                None,
            ),
            _ => (
                StatusCode::FORBIDDEN,
                login_failed,
                "La risposta del gestore di identità non ha superato i controlli di sicurezza: l'accesso è stato rifiutato.".to_owned(),
                Some("Riprova l'accesso dall'inizio.".to_owned()),
            ),
        },
    }
}

/// The parts of an error page, kept on the response until [`finish_page`] renders it
/// with the request id.
#[derive(Debug, Clone)]
struct PendingPage {
    title: &'static str,
    message: String,
    hint: Option<String>,
    code: &'static str,
    back: &'static str,
    technical: Option<String>,
    neutral: bool,
    refresh: Option<u32>,
}

impl PendingPage {
    fn render(&self, request_id: &str) -> String {
        ErrorPage {
            title: self.title,
            message: &self.message,
            hint: self.hint.as_deref(),
            code: self.code,
            request_id,
            back: self.back,
            technical: self.technical.as_deref(),
            neutral: self.neutral,
            refresh: self.refresh,
        }
        .render()
        .unwrap_or_else(|_| format!("{} ({})", self.message, self.code))
    }
}

/// Renders the page of an [`AppError`] response with this request's id (the
/// error-page middleware calls it; a response of another kind is left as it is).
pub(super) fn finish_page(resp: &mut Response, request_id: &str) {
    if let Some(page) = resp.extensions_mut().remove::<PendingPage>() {
        *resp.body_mut() = axum::body::Body::from(page.render(request_id));
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let this = *self.0;
        let page = PendingPage {
            title: this.title,
            message: this.message,
            hint: this.hint,
            code: this.code,
            back: this.back,
            technical: this.technical,
            neutral: this.neutral,
            refresh: this.retry_after,
        };
        // The body is rendered once, by the error-page middleware every router of the
        // gateway has (`web::harden`), when the request id is known.
        let mut resp = (this.status, Html(String::new())).into_response();
        // Every 503 (and 429) tells clients when to come back.
        if let Some(n) = this.retry_after {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(n),
            );
        } else if matches!(
            this.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        resp.extensions_mut().insert(ErrorInfo {
            code: this.code,
            detail: this.detail,
        });
        resp.extensions_mut().insert(page);
        resp
    }
}

impl From<SsoError> for AppError {
    fn from(e: SsoError) -> Self {
        Self::from_sso(e)
    }
}

impl From<StateError> for AppError {
    fn from(e: StateError) -> Self {
        Self::from_state(e)
    }
}

impl From<EnablementError> for AppError {
    fn from(e: EnablementError) -> Self {
        Self::from_enablement(e)
    }
}

impl From<crate::oidc::provider::OidcError> for AppError {
    fn from(e: crate::oidc::provider::OidcError) -> Self {
        Self::from_oidc(e)
    }
}
