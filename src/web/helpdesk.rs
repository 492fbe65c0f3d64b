//! The help-desk console (`/assistenza`), routed only when `[helpdesk]` lists someone.
//! Every page needs the support person's own live session (`Authed`: opened by their
//! SPID login in this browser) and a [`Staff`] from it (level ≥ 2, a listed codice
//! fiscale; else 403); every POST goes through [`SessionForm`] (CSRF first). The
//! search is a POST, so no codice fiscale travels in a URL (nor in access logs): it
//! answers 303 to `/assistenza/account/<id>`. Each handler makes one
//! [`HelpdeskService`](crate::helpdesk::HelpdeskService) call; a refused action shows
//! the account page again with the reason's error (422) or why it does not fit (409,
//! 429, 503).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::enablement::state_label;
use super::session::{Authed, SessionForm};
use super::{AppError, AppState, render};
use crate::accounts::{AuditOutcome, HelpdeskAction};
use crate::clock::italian_date_time;
use crate::enablement::{EnablementError, Lock};
use crate::helpdesk::{Dossier, HelpdeskError, MAX_REASON_CHARS, Staff, TxOutcome};

/// A private page (personal data): never cached; a refusal carries its code for the log.
fn page(
    status: StatusCode,
    t: &impl Template,
    refused: Option<(&'static str, String)>,
) -> Response {
    match render(t) {
        Ok(html) => {
            let mut resp = (
                status,
                [(axum::http::header::CACHE_CONTROL, "no-store")],
                html,
            )
                .into_response();
            if let Some((code, detail)) = refused {
                resp.extensions_mut()
                    .insert(super::error::ErrorInfo { code, detail });
            }
            resp
        }
        Err(e) => e.into_response(),
    }
}

/// The page of a console refusal.
pub fn app_error(e: HelpdeskError) -> AppError {
    use HelpdeskError as E;
    if let E::Enablement(inner) = e {
        return AppError::from_enablement(inner);
    }
    let code = e.code();
    let detail = e.to_string();
    let (status, title, message) = match &e {
        E::Enablement(_) => return AppError::internal(detail),
        E::Level => (
            StatusCode::FORBIDDEN,
            "Livello di sicurezza insufficiente",
            "La console dell'assistenza richiede un accesso con SPID di livello 2 o superiore (o con CIE). Esci e accedi di nuovo scegliendo il livello 2.",
        ),
        E::Forbidden => (
            StatusCode::FORBIDDEN,
            "Accesso non consentito",
            "Il tuo codice fiscale non è abilitato alla console dell'assistenza di Istanze OnLine. Se ne hai bisogno, chiedi al responsabile del servizio.",
        ),
        E::Role(..) => (
            StatusCode::FORBIDDEN,
            "Intervento non consentito",
            "Il tuo ruolo non consente questo intervento: la revoca dell'abilitazione è riservata ai supervisori.",
        ),
        E::OwnAccount => (
            StatusCode::FORBIDDEN,
            "Intervento non consentito",
            "Non puoi intervenire sul tuo stesso account: chiedi a un collega dell'assistenza.",
        ),
        E::NotFound => (
            StatusCode::NOT_FOUND,
            "Account non trovato",
            "Nessun account corrisponde alla richiesta.",
        ),
        E::Query | E::Reason => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "Dati non validi",
            "I dati inviati non sono validi. Torna indietro e correggili.",
        ),
        E::NotApplicable(_) => (
            StatusCode::CONFLICT,
            "Intervento non possibile",
            "L'intervento non è possibile nello stato attuale dell'account.",
        ),
        E::Accounts(crate::accounts::AccountError::Unavailable(_)) | E::History(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Servizio temporaneamente non disponibile",
            "Il servizio è momentaneamente non disponibile. Riprova tra qualche minuto.",
        ),
        E::Accounts(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Errore interno",
            "Si è verificato un errore interno. Riprova tra qualche minuto.",
        ),
    };
    // Someone who may not use the console goes home, a member back to the search.
    let back = if matches!(e, E::Level | E::Forbidden) {
        "/"
    } else {
        "/assistenza"
    };
    AppError::page(status, code, title, message, detail, back)
}

fn staff_of(app: &AppState, authed: &Authed) -> Result<Staff, AppError> {
    app.helpdesk.staff(&authed.session.login).map_err(app_error)
}

fn staff_line(staff: &Staff) -> String {
    format!("{} {}", staff.role().label(), staff.fiscal_code())
}

#[derive(Template)]
#[template(path = "helpdesk_search.html")]
struct SearchPage {
    staff: String,
    query: String,
    /// Code and message of a refused search.
    message: Option<(&'static str, &'static str)>,
    csrf: String,
}

/// `GET /assistenza`: the search form.
pub async fn search_get(State(app): State<AppState>, authed: Authed) -> Result<Response, AppError> {
    let staff = staff_of(&app, &authed)?;
    let view = SearchPage {
        staff: staff_line(&staff),
        query: String::new(),
        message: None,
        csrf: authed.session.csrf.clone(),
    };
    Ok(page(StatusCode::OK, &view, None))
}

/// The search form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SearchForm {
    q: String,
}

/// `POST /assistenza/cerca`: to the account found (303), or the form again.
pub async fn search_post(
    State(app): State<AppState>,
    f: SessionForm<SearchForm>,
) -> Result<Response, AppError> {
    let staff = staff_of(&app, &f.authed)?;
    let (status, code, message) = match app.helpdesk.lookup(&staff, &f.form.q).await {
        Ok(id) => return Ok(Redirect::to(&format!("/assistenza/account/{id}")).into_response()),
        Err(HelpdeskError::Query) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "POLIS_HELPDESK_QUERY",
            "Scrivi un codice fiscale (16 caratteri) o un nome utente (nome.cognome).",
        ),
        Err(HelpdeskError::NotFound) => (
            StatusCode::NOT_FOUND,
            "POLIS_HELPDESK_NOT_FOUND",
            "Nessun account con questo codice fiscale o nome utente.",
        ),
        Err(e) => return Err(app_error(e)),
    };
    let view = SearchPage {
        staff: staff_line(&staff),
        query: f.form.q.chars().take(64).collect(),
        message: Some((code, message)),
        csrf: f.authed.session.csrf.clone(),
    };
    Ok(page(status, &view, Some((code, message.to_owned()))))
}

/// One action form of the account page.
struct ActionView {
    name: &'static str,
    label: &'static str,
    button: &'static str,
    hint: &'static str,
    danger: bool,
    reason: String,
    error: Option<&'static str>,
}

fn action_view(action: HelpdeskAction) -> ActionView {
    let (button, hint, danger) = match action {
        HelpdeskAction::UnlockTempCp => (
            "Sblocca il CP temporaneo",
            "Azzera i tentativi sul Codice Personale temporaneo in vigore.",
            false,
        ),
        HelpdeskAction::UnlockCp => (
            "Sblocca il Codice Personale",
            "Azzera i tentativi sul Codice Personale: la persona può riprovare subito.",
            false,
        ),
        HelpdeskAction::UnlockRecovery => (
            "Sblocca la domanda di recupero",
            "Azzera i tentativi di risposta alla domanda di recupero.",
            false,
        ),
        HelpdeskAction::ResendTempCp => (
            "Invia un nuovo CP temporaneo",
            "Un nuovo Codice Personale temporaneo va all'e-mail dell'account; il precedente smette di valere.",
            false,
        ),
        HelpdeskAction::Revoke => (
            "Revoca l'abilitazione",
            "L'account torna non abilitato, perde Codice Personale e domanda di recupero e le sue sessioni si chiudono. La persona legge il motivo al prossimo accesso.",
            true,
        ),
    };
    ActionView {
        name: action.as_str(),
        label: action.label(),
        button,
        hint,
        danger,
        reason: String::new(),
        error: None,
    }
}

#[derive(Template)]
#[template(path = "helpdesk_account.html")]
struct AccountPage {
    staff: String,
    id: String,
    title: String,
    notice: Option<String>,
    /// Code and message of a refused action.
    alert: Option<(&'static str, String)>,
    rows: Vec<(&'static str, String)>,
    locks: Vec<(&'static str, String, &'static str)>,
    logins: Vec<[String; 4]>,
    actions: Vec<ActionView>,
    audit: Vec<[String; 5]>,
    max_reason: usize,
    csrf: String,
}

fn when(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(italian_date_time).unwrap_or_else(|| "—".to_owned())
}

fn set(yes: bool) -> String {
    if yes { "impostato" } else { "non impostato" }.to_owned()
}

fn profile_rows(d: &Dossier) -> Vec<(&'static str, String)> {
    let p = &d.profile;
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".to_owned());
    let mut rows = vec![
        ("Nome e cognome", p.name.clone()),
        ("Nome utente", p.username.clone()),
        ("Codice fiscale", dash(&p.fiscal_code)),
    ];
    if let Some(eidas) = &p.eidas_identifier {
        rows.push(("Identificativo eIDAS", eidas.clone()));
    }
    rows.extend([
        ("E-mail", dash(&p.email)),
        ("Stato", state_label(p.state).to_owned()),
        ("Codice Personale", set(p.has_cp)),
        (
            "Risposta di recupero",
            set(p.has_recovery).replace("impostato", "impostata"),
        ),
        (
            "Codice Personale temporaneo",
            match p.temp_cp {
                Some((issued, expires)) => format!(
                    "inviato il {}, valido fino al {}",
                    italian_date_time(issued),
                    italian_date_time(expires)
                ),
                None => "nessuno in vigore".to_owned(),
            },
        ),
        ("Creato", italian_date_time(p.created_at)),
        ("Abilitato", when(p.enabled_at)),
        ("Ultimo accesso", when(p.last_access_at)),
    ]);
    if let Some(r) = &p.revocation {
        rows.push((
            "Ultima revoca",
            format!("{}: {}", italian_date_time(r.at), r.reason),
        ));
    }
    rows
}

fn lock_rows(d: &Dossier) -> Vec<(&'static str, String, &'static str)> {
    let max = d.locks.max_attempts;
    [
        ("Codice Personale temporaneo", Lock::TempCp),
        ("Codice Personale", Lock::Cp),
        ("Domanda di recupero", Lock::Recovery),
    ]
    .into_iter()
    .map(|(label, lock)| match d.locks.counter(lock) {
        None => (label, "nessun CP temporaneo in vigore".to_owned(), ""),
        Some(c) => (
            label,
            format!("{} tentativi (limite {max})", c.tries),
            if c.locked { "Bloccato" } else { "Non bloccato" },
        ),
    })
    .collect()
}

fn login_rows(d: &Dossier, idp_name: impl Fn(&str) -> String) -> Vec<[String; 4]> {
    d.logins
        .iter()
        .map(|l| {
            let level = l
                .acr
                .as_deref()
                .and_then(|acr| acr.strip_prefix("https://www.spid.gov.it/SpidL"))
                .map_or_else(|| "—".to_owned(), |n| format!("livello {n}"));
            let outcome = match l.outcome {
                TxOutcome::Accepted => "riuscito".to_owned(),
                TxOutcome::Rejected => {
                    format!("rifiutato ({})", l.error_code.as_deref().unwrap_or("—"))
                }
                TxOutcome::IdpError => format!(
                    "errore del gestore ({})",
                    l.error_code.as_deref().unwrap_or("—")
                ),
            };
            [
                italian_date_time(l.ts),
                l.idp_entity_id
                    .as_deref()
                    .map_or_else(|| "—".to_owned(), &idp_name),
                level,
                outcome,
            ]
        })
        .collect()
}

fn audit_rows(d: &Dossier) -> Vec<[String; 5]> {
    d.audit
        .iter()
        .map(|e| {
            let outcome = match &e.outcome {
                AuditOutcome::Done => "eseguito".to_owned(),
                AuditOutcome::Started => "non confermato".to_owned(),
                AuditOutcome::Failed(code) => format!("non eseguito ({code})"),
            };
            [
                italian_date_time(e.at),
                format!("{} ({})", e.staff, e.role),
                e.action.label().to_owned(),
                e.reason.clone(),
                outcome,
            ]
        })
        .collect()
}

fn account_page(app: &AppState, staff: &Staff, d: &Dossier, csrf: &str) -> AccountPage {
    // The IdP's display name: a lookup in the federation, not a use case.
    let idp_name = |id: &str| {
        app.sso
            .federation()
            .get(id)
            .map_or_else(|| id.to_owned(), |i| i.display_name().to_owned())
    };
    AccountPage {
        staff: staff_line(staff),
        id: d.profile.id.to_string(),
        title: format!("Account di {}", d.profile.name),
        notice: None,
        alert: None,
        rows: profile_rows(d),
        locks: lock_rows(d),
        logins: login_rows(d, idp_name),
        actions: d.actions.iter().copied().map(action_view).collect(),
        audit: audit_rows(d),
        max_reason: MAX_REASON_CHARS,
        csrf: csrf.to_owned(),
    }
}

fn account_id(text: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(text).map_err(|_| AppError::not_found())
}

/// Query of the account page: the action just done.
#[derive(Debug, Default, Deserialize)]
pub struct AccountQuery {
    #[serde(default)]
    fatto: Option<String>,
}

/// `GET /assistenza/account/<id>`: what the console shows of an account.
pub async fn account_get(
    State(app): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
    Query(q): Query<AccountQuery>,
) -> Result<Response, AppError> {
    let staff = staff_of(&app, &authed)?;
    let id = account_id(&id)?;
    let dossier = app.helpdesk.dossier(&staff, id).await.map_err(app_error)?;
    let mut view = account_page(&app, &staff, &dossier, &authed.session.csrf);
    view.notice = q
        .fatto
        .as_deref()
        .and_then(|a| a.parse::<HelpdeskAction>().ok())
        .map(|a| format!("Intervento eseguito e registrato: {}.", a.label()));
    Ok(page(StatusCode::OK, &view, None))
}

/// An action form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ActionForm {
    action: String,
    reason: String,
}

/// How a refused action is shown on the account page: its status, and either the
/// reason field's error or an alert.
fn refusal(e: &HelpdeskError) -> Option<(StatusCode, Result<&'static str, String>)> {
    use EnablementError as N;
    let limit =
        format!("Scrivi il motivo dell'intervento (al massimo {MAX_REASON_CHARS} caratteri).");
    Some(match e {
        HelpdeskError::Reason => (StatusCode::UNPROCESSABLE_ENTITY, Err(limit)),
        HelpdeskError::NotApplicable(why) => (StatusCode::CONFLICT, Ok(*why)),
        HelpdeskError::Enablement(N::ResendLimit) => (
            StatusCode::TOO_MANY_REQUESTS,
            Ok(
                "Oggi sono già stati inviati tutti i Codici Personali temporanei consentiti per questo account: riprova domani.",
            ),
        ),
        HelpdeskError::Enablement(N::Conflict | N::Step(_)) => (
            StatusCode::CONFLICT,
            Ok(
                "L'account è cambiato nel frattempo: ricarica la pagina e ripeti l'intervento se serve ancora.",
            ),
        ),
        HelpdeskError::Enablement(N::Mail(_)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Ok(
                "Il nuovo Codice Personale temporaneo è registrato ma l'e-mail non è partita: riprova tra qualche minuto.",
            ),
        ),
        _ => return None,
    })
}

/// `POST /assistenza/account/<id>/intervento`: one action with its reason; 303 back to
/// the account page, or the page again with why it was refused.
pub async fn act(
    State(app): State<AppState>,
    Path(id): Path<String>,
    f: SessionForm<ActionForm>,
) -> Result<Response, AppError> {
    let staff = staff_of(&app, &f.authed)?;
    let id = account_id(&id)?;
    let action = f
        .form
        .action
        .parse::<HelpdeskAction>()
        .map_err(|e| AppError::bad_request(e.to_string()))?;
    let e = match app.helpdesk.act(&staff, id, action, &f.form.reason).await {
        Ok(_) => {
            let to = format!("/assistenza/account/{id}?fatto={action}");
            return Ok(Redirect::to(&to).into_response());
        }
        Err(e) => e,
    };
    let Some((status, shown)) = refusal(&e) else {
        return Err(app_error(e));
    };
    let dossier = app.helpdesk.dossier(&staff, id).await.map_err(app_error)?;
    let mut view = account_page(&app, &staff, &dossier, &f.authed.session.csrf);
    match shown {
        Err(field) => {
            if let Some(a) = view.actions.iter_mut().find(|a| a.name == action.as_str()) {
                a.error = Some("Il motivo è obbligatorio.");
                a.reason = f.form.reason.chars().take(MAX_REASON_CHARS + 1).collect();
            }
            view.alert = Some((e.code(), field));
        }
        Ok(message) => view.alert = Some((e.code(), message.to_owned())),
    }
    Ok(page(status, &view, Some((e.code(), e.to_string()))))
}
