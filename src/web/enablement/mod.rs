//! The abilitazione pages (Path 2), the home page, the personal area and the demo
//! outbox, one file per page group: `request` (richiesta, domanda, riepilogo),
//! `adesione` (adesione, moduli, e-mail sent, «Ripetizione invio»), `cp` (the change of
//! the temporary CP and of the CP), `area` (home, completed, personal area), `recover`
//! (recovery of the CP), `outbox` (the demo mailbox). This file holds what the pages
//! share: the step routing, form pages and their errors, the account rows.
//!
//! Handlers are thin: extract (the session and CSRF via [`SessionForm`]), call one
//! [`EnablementService`](crate::enablement::EnablementService) method, and map its
//! result: the page, a redirect (303; a page that does not fit the account's state
//! goes to the current step), or the form again with its errors (422, or 429 when
//! locked).

/// The data of a [`Step`] that fits, or an early `Ok` redirect (303) to the path
/// `$to(state)` gives for where the person is.
macro_rules! shown {
    ($step:expr, $to:expr) => {
        match $step {
            crate::enablement::Step::Show(data) => data,
            crate::enablement::Step::Elsewhere(state) => return Ok(see_other($to(state))),
        }
    };
}

mod adesione;
mod area;
mod cp;
mod outbox;
mod recover;
mod request;
mod terms;

pub use adesione::{adesione_get, adesione_post, modulo_adesione, resend, sent};
pub use area::{area_get, area_post, completed, home};
pub use cp::{change_cp_get, change_cp_post, change_temp_get, change_temp_post};
pub use outbox::{outbox, outbox_attachment, outbox_message, outbox_raw};
pub use recover::{recover_get, recover_post};
pub use request::{
    recovery_get, recovery_post, request_get, request_post, review_get, review_post,
};
pub use terms::{conditions, privacy};

use askama::Template;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{Authed, form_status};
use super::{AppError, AppState, render};
use crate::accounts::places::birth_place_label;
use crate::accounts::{Account, EnablementState};
use crate::enablement::EnablementError;
use crate::enablement::forms::{ContactForm, FieldErrors, SEX_CHOICES};
use crate::identity::Scheme;
use crate::session::WebSession;

#[cfg(doc)]
use super::session::SessionForm;
#[cfg(doc)]
use crate::enablement::Step;

/// A page that must not be cached (personal data).
fn private_page(status: StatusCode, html: Html<String>) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], html).into_response()
}

/// A private page with 200, or the error page if it cannot be rendered.
fn show(page: &impl Template) -> Response {
    match render(page) {
        Ok(html) => private_page(StatusCode::OK, html),
        Err(e) => e.into_response(),
    }
}

fn see_other(path: &str) -> Response {
    Redirect::to(path).into_response()
}

/// Where the abilitazione continues for an account in `state`.
pub fn step_path(state: EnablementState) -> &'static str {
    match state {
        EnablementState::NotEnabled | EnablementState::RequestData => "/abilitazione/richiesta",
        EnablementState::RecoveryQuestion => "/abilitazione/domanda",
        EnablementState::Review => "/abilitazione/riepilogo",
        EnablementState::Confirmed | EnablementState::Accepted => "/abilitazione/adesione",
        EnablementState::TempCpSent => "/abilitazione/cambio-cp",
        EnablementState::Enabled => "/",
    }
}

/// The Italian label of a state.
pub fn state_label(state: EnablementState) -> &'static str {
    match state {
        EnablementState::NotEnabled => "Non abilitato",
        EnablementState::RequestData
        | EnablementState::RecoveryQuestion
        | EnablementState::Review
        | EnablementState::Confirmed => "Abilitazione in corso",
        EnablementState::Accepted => {
            "Abilitazione in corso: invio del Codice Personale da ripetere"
        }
        EnablementState::TempCpSent => {
            "Codice Personale temporaneo inviato: da sostituire al prossimo accesso"
        }
        EnablementState::Enabled => "Abilitato",
    }
}

/// Where the pages of an enabled account send an account in another state: the
/// current step, by way of `/abilitazione`.
fn resume_path(_: EnablementState) -> &'static str {
    "/abilitazione"
}

/// `GET /abilitazione`: to the current step.
pub async fn resume(State(app): State<AppState>, authed: Authed) -> Result<Response, AppError> {
    let account = app.enablement.account(authed.session.account_id).await?;
    Ok(see_other(step_path(account.enablement_state)))
}

/// One input of a form page. An English label and hint, when set, are shown beside
/// the Italian ones on the pages of an eIDAS login ([`FormPage::new`]).
pub struct Field {
    name: &'static str,
    label: &'static str,
    en: &'static str,
    kind: &'static str,
    value: String,
    error: Option<String>,
    required: bool,
    autocomplete: &'static str,
    hint: &'static str,
    hint_en: &'static str,
    show_en: bool,
    options: Vec<(&'static str, &'static str)>,
}

impl Field {
    fn new(name: &'static str, label: &'static str, kind: &'static str, value: &str) -> Self {
        Self {
            name,
            label,
            en: "",
            kind,
            value: value.to_owned(),
            error: None,
            required: true,
            autocomplete: "",
            hint: "",
            hint_en: "",
            show_en: false,
            options: Vec::new(),
        }
    }
    fn en(mut self, label: &'static str) -> Self {
        self.en = label;
        self
    }
    fn optional(mut self) -> Self {
        self.required = false;
        self
    }
    fn auto(mut self, autocomplete: &'static str) -> Self {
        self.autocomplete = autocomplete;
        self
    }
    fn hint(mut self, hint: &'static str, hint_en: &'static str) -> Self {
        self.hint = hint;
        self.hint_en = hint_en;
        self
    }
    /// A select whose option values are their labels.
    fn options(mut self, options: &[&'static str]) -> Self {
        self.options = options.iter().map(|o| (*o, *o)).collect();
        self
    }
    /// A select of `(value, label)` pairs.
    fn choices(mut self, choices: &[(&'static str, &'static str)]) -> Self {
        self.options = choices.to_vec();
        self
    }
    /// A secret: never echoed back.
    fn secret(name: &'static str, label: &'static str) -> Self {
        Self::new(name, label, "password", "").auto("off")
    }
}

fn with_errors(mut fields: Vec<Field>, errors: &FieldErrors) -> Vec<Field> {
    for f in &mut fields {
        f.error = errors.get(f.name).cloned();
    }
    fields
}

fn contact_fields(form: &ContactForm) -> Vec<Field> {
    vec![
        Field::new("email", "E-mail", "email", &form.email)
            .auto("email")
            .hint(
                "Riceverai qui il Codice Personale temporaneo.",
                "Your temporary Personal Code will be sent here.",
            ),
        Field::new("mobile", "Cellulare", "tel", &form.mobile)
            .en("Mobile phone")
            .optional()
            .auto("tel")
            .hint(
                "Almeno un numero tra cellulare e telefono fisso.",
                "At least one phone number, mobile or landline, with the country prefix (+34…).",
            ),
        Field::new("landline", "Telefono fisso", "tel", &form.landline)
            .en("Landline")
            .optional(),
        Field::new(
            "street",
            "Indirizzo (via e numero civico)",
            "text",
            &form.street,
        )
        .en("Address (street and number)")
        .auto("street-address"),
        Field::new("postal_code", "CAP", "text", &form.postal_code)
            .en("Postcode")
            .auto("postal-code"),
        Field::new("municipality", "Comune", "text", &form.municipality)
            .en("Town or city")
            .auto("address-level2"),
        Field::new("province", "Provincia (sigla)", "text", &form.province)
            .en("Province or region")
            .auto("address-level1")
            .hint(
                "Per esempio RM. Lascia vuoto se il domicilio è all'estero.",
                "Italian addresses only (e.g. RM); optional abroad.",
            ),
        Field::new("nation", "Nazione", "text", &form.nation)
            .en("Country")
            .auto("country-name"),
    ]
}

/// A message above a form.
pub struct FormError {
    code: &'static str,
    message: String,
}

#[derive(Template)]
#[template(path = "form_page.html")]
struct FormPage {
    title: &'static str,
    title_en: &'static str,
    scheme: &'static str,
    english: bool,
    step: Option<(u8, u8)>,
    notice: Option<String>,
    /// Why the person starts again (a revoked enablement), above the form.
    warning: Option<String>,
    error: Option<FormError>,
    intro: Vec<String>,
    intro_en: Vec<&'static str>,
    rules: Vec<&'static str>,
    action: &'static str,
    csrf: String,
    fields: Vec<Field>,
    submit: &'static str,
    back: Option<(&'static str, &'static str)>,
    side_forms: Vec<SideForm>,
    /// The form cannot be used now (a locked or expired code): its fields are disabled
    /// and the one-button forms (the resend) come first, in view without scrolling.
    disabled: bool,
}

/// The fields in error, `(name, message)`, for the error summary's links.
fn errored(fields: &[Field]) -> Vec<(&'static str, &str)> {
    fields
        .iter()
        .filter_map(|f| f.error.as_deref().map(|e| (f.name, e)))
        .collect()
}

impl FormPage {
    fn errored(&self) -> Vec<(&'static str, &str)> {
        errored(&self.fields)
    }
}

/// A one-button form under the main one.
pub struct SideForm {
    action: &'static str,
    label: &'static str,
    note: &'static str,
}

/// Whether the pages of a session carry English beside the Italian: an eIDAS login
/// comes from another EU country, and the person may not read Italian.
fn english_for(session: &WebSession) -> bool {
    session.login.scheme == Scheme::Eidas
}

impl FormPage {
    fn new(
        title: &'static str,
        action: &'static str,
        session: &WebSession,
        fields: Vec<Field>,
    ) -> Self {
        let english = english_for(session);
        let fields = fields
            .into_iter()
            .map(|mut f| {
                f.show_en = english;
                f
            })
            .collect();
        Self {
            title,
            title_en: "",
            scheme: session.login.scheme.label(),
            english,
            step: None,
            notice: None,
            warning: None,
            error: None,
            intro: Vec::new(),
            intro_en: Vec::new(),
            rules: Vec::new(),
            action,
            csrf: session.csrf.clone(),
            fields,
            submit: "Prosegui",
            back: None,
            side_forms: Vec::new(),
            disabled: false,
        }
    }
}

/// The message and status of an error shown on its form, or `None` when the error
/// belongs on an error page.
fn form_error(e: &EnablementError) -> Option<(StatusCode, FormError)> {
    use EnablementError as E;
    let message = match e {
        E::Form(errors) => format!(
            "Alcuni dati non sono validi ({}): correggi i campi indicati.",
            errors.len()
        ),
        E::TempCpWrong { remaining } => format!(
            "Il Codice Personale temporaneo non è corretto. Tentativi rimasti: {remaining}."
        ),
        E::TempCpLocked => "Troppi tentativi errati: il Codice Personale temporaneo è bloccato. Chiedi un nuovo invio con «Ripetizione invio Codice Personale Temporaneo».".to_owned(),
        E::TempCpExpired => "Il Codice Personale temporaneo è scaduto. Chiedi un nuovo invio con «Ripetizione invio Codice Personale Temporaneo».".to_owned(),
        E::CpRules(rules) => {
            let list: Vec<&str> = rules.iter().map(|r| r.message_it()).collect();
            format!("Il nuovo Codice Personale non rispetta le regole: {}", list.join(" "))
        }
        E::CpWrong { remaining } => {
            format!("Il Codice Personale attuale non è corretto. Tentativi rimasti: {remaining}.")
        }
        E::CpLocked => "Troppi tentativi errati: il Codice Personale è bloccato per qualche minuto. Riprova più tardi o usa il recupero del codice personale.".to_owned(),
        E::RecoveryWrong { remaining } => {
            format!("La risposta non è corretta. Tentativi rimasti: {remaining}.")
        }
        E::RecoveryLocked => "Troppi tentativi errati: il recupero è bloccato per qualche minuto. Riprova più tardi.".to_owned(),
        E::ResendLimit => "Hai già chiesto troppi invii oggi. Riprova domani.".to_owned(),
        _ => return None,
    };
    let locked = matches!(
        e,
        E::TempCpLocked | E::CpLocked | E::RecoveryLocked | E::ResendLimit
    );
    Some((
        form_status(locked),
        FormError {
            code: e.code(),
            message,
        },
    ))
}

/// Renders `page` with `e` if it is a form-level error; otherwise the error page.
/// A stale step (another tab, a double post) goes back to the current step.
fn refused(mut page: FormPage, e: EnablementError) -> Response {
    if matches!(e, EnablementError::Step(_)) {
        return see_other("/abilitazione");
    }
    let Some((status, error)) = form_error(&e) else {
        return AppError::from(e).into_response();
    };
    if let EnablementError::Form(errors) = &e {
        page.fields = with_errors(page.fields, errors);
    }
    page.disabled = matches!(
        e,
        EnablementError::TempCpLocked
            | EnablementError::TempCpExpired
            | EnablementError::CpLocked
            | EnablementError::RecoveryLocked
    );
    let info = super::error::ErrorInfo {
        code: error.code,
        detail: e.to_string(),
    };
    page.error = Some(error);
    match render(&page) {
        Ok(html) => {
            let mut resp = private_page(status, html);
            resp.extensions_mut().insert(info);
            resp
        }
        Err(err) => err.into_response(),
    }
}

/// A page shown with a field-error message (422), the error logged by the middleware.
fn invalid_form(page: &impl Template, errors: &FieldErrors) -> Response {
    match render(page) {
        Ok(html) => {
            let mut resp = private_page(StatusCode::UNPROCESSABLE_ENTITY, html);
            resp.extensions_mut().insert(super::error::ErrorInfo {
                code: "POLIS_FORM_INVALID",
                detail: format!("{} invalid field(s)", errors.len()),
            });
            resp
        }
        Err(e) => e.into_response(),
    }
}

fn account_rows(account: &Account) -> Vec<(&'static str, String)> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".to_owned());
    let mut rows = vec![
        ("Nome", account.given_name.clone()),
        ("Cognome", account.family_name.clone()),
        ("Nome utente", account.username.clone()),
        (
            "Data di nascita",
            account
                .birth_date
                .map_or_else(|| "—".to_owned(), |d| d.format("%d/%m/%Y").to_string()),
        ),
        (
            "Luogo di nascita",
            opt(&account.birth_place.as_deref().map(birth_place_label)),
        ),
        (
            "Sesso",
            account
                .sex
                .as_deref()
                .and_then(|v| SEX_CHOICES.iter().find(|(value, _)| *value == v))
                .map_or_else(|| "—".to_owned(), |(_, label)| (*label).to_owned()),
        ),
        ("E-mail", opt(&account.email)),
    ];
    if let Some(code) = account.fiscal_code_str() {
        rows.insert(2, ("Codice fiscale", code.to_owned()));
    }
    if let Some(identifier) = account.eidas_identifier() {
        rows.insert(
            2,
            (
                "Identificativo eIDAS / eIDAS identifier",
                identifier.to_owned(),
            ),
        );
    }
    if let Some(m) = &account.phones.mobile {
        rows.push(("Cellulare", m.clone()));
    }
    if let Some(l) = &account.phones.landline {
        rows.push(("Telefono fisso", l.clone()));
    }
    if let Some(d) = &account.domicile {
        rows.push((
            "Domicilio",
            format!(
                "{}, {} {} {} – {}",
                d.street, d.postal_code, d.municipality, d.province, d.nation
            ),
        ));
    }
    rows
}

/// The contact fields of the request and of the personal area.
const CONTACT_FIELDS: [&str; 8] = [
    "email",
    "mobile",
    "landline",
    "street",
    "postal_code",
    "municipality",
    "province",
    "nation",
];
/// The request's fields: the contacts, the document and the personal data asked.
const REQUEST_FIELDS: [&str; 16] = [
    "email",
    "mobile",
    "landline",
    "street",
    "postal_code",
    "municipality",
    "province",
    "nation",
    "doc_kind",
    "doc_number",
    "doc_issuer",
    "doc_issued_on",
    "doc_expires_on",
    "birth_date",
    "birth_place",
    "sex",
];

/// The forms whose fields are kept when their session expired (`(draft name, fields)`
/// by path): only data, never a code, an answer or a token.
pub fn draft_fields(path: &str) -> Option<(&'static str, &'static [&'static str])> {
    match path {
        "/abilitazione/richiesta" => Some(("richiesta", &REQUEST_FIELDS)),
        "/area-riservata/dati" => Some(("dati", &CONTACT_FIELDS)),
        _ => None,
    }
}

/// What was kept of form `name` for this session's account, as the form `T`, once.
async fn kept_draft<T: serde::de::DeserializeOwned>(
    app: &AppState,
    authed: &Authed,
    name: &str,
) -> Result<Option<T>, AppError> {
    let Some(fields) = app
        .sessions
        .take_draft(authed.session.account_id, name)
        .await?
    else {
        return Ok(None);
    };
    let pairs: Vec<(String, String)> = fields.into_iter().collect();
    Ok(serde_urlencoded::to_string(&pairs)
        .ok()
        .and_then(|q| serde_urlencoded::from_str::<T>(&q).ok()))
}

/// The notice of a form filled again with what was kept.
const DRAFT_NOTICE: &str = "Abbiamo ritrovato i dati che avevi inserito prima che la sessione scadesse: controllali e invia di nuovo il modulo.";

/// A form with only the CSRF token.
#[derive(Debug, Deserialize)]
pub struct Empty {}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    title: &'static str,
    /// «SPID», «CIE» or «eIDAS»: how the session logged in.
    scheme: &'static str,
    step: Option<u8>,
    paragraphs: Vec<String>,
    link: Option<(&'static str, &'static str)>,
    show_logout: bool,
    csrf: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_a_step_and_a_label() {
        for state in EnablementState::ALL {
            assert!(step_path(state).starts_with('/'));
            assert!(!state_label(state).is_empty());
        }
        assert_eq!(step_path(EnablementState::Enabled), "/");
    }
}
