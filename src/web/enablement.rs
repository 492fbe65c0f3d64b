//! The abilitazione pages (Path 2), the home page, the personal area and the demo
//! outbox. Handlers are thin: extract (the session and CSRF via [`SessionForm`]),
//! validate the form, call the enablement service once, and redirect (303) or show
//! the form again with its errors (422, or 429 when locked).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::Utc;
use serde::Deserialize;

use super::session::{Authed, MaybeAuthed, SessionForm, form_status};
use super::{AppError, AppState, render};
use crate::accounts::{Account, EnablementState};
use crate::enablement::cp::CP_RULES_IT;
use crate::enablement::forms::{
    ContactForm, DEFAULT_QUESTION, DOCUMENT_KINDS, FieldErrors, RecoveryForm, RequestForm,
};
use crate::enablement::{EnablementError, Modulo, reference_code};

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

/// One input of a form page.
pub struct Field {
    name: &'static str,
    label: &'static str,
    kind: &'static str,
    value: String,
    error: Option<String>,
    required: bool,
    autocomplete: &'static str,
    hint: &'static str,
    options: Vec<&'static str>,
}

impl Field {
    fn new(name: &'static str, label: &'static str, kind: &'static str, value: &str) -> Self {
        Self {
            name,
            label,
            kind,
            value: value.to_owned(),
            error: None,
            required: true,
            autocomplete: "",
            hint: "",
            options: Vec::new(),
        }
    }
    fn optional(mut self) -> Self {
        self.required = false;
        self
    }
    fn auto(mut self, autocomplete: &'static str) -> Self {
        self.autocomplete = autocomplete;
        self
    }
    fn hint(mut self, hint: &'static str) -> Self {
        self.hint = hint;
        self
    }
    fn options(mut self, options: &[&'static str]) -> Self {
        self.options = options.to_vec();
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
            .hint("Riceverai qui il Codice Personale temporaneo."),
        Field::new("mobile", "Cellulare", "tel", &form.mobile)
            .optional()
            .auto("tel")
            .hint("Almeno un numero tra cellulare e telefono fisso."),
        Field::new("landline", "Telefono fisso", "tel", &form.landline).optional(),
        Field::new(
            "street",
            "Indirizzo (via e numero civico)",
            "text",
            &form.street,
        )
        .auto("street-address"),
        Field::new("postal_code", "CAP", "text", &form.postal_code).auto("postal-code"),
        Field::new("municipality", "Comune", "text", &form.municipality).auto("address-level2"),
        Field::new("province", "Provincia (sigla)", "text", &form.province)
            .auto("address-level1")
            .hint("Per esempio RM. Lascia vuoto se il domicilio è all'estero."),
        Field::new("nation", "Nazione", "text", &form.nation).auto("country-name"),
    ]
}

fn request_fields(form: &RequestForm) -> Vec<Field> {
    let mut fields = contact_fields(&form.contact);
    fields.extend([
        Field::new(
            "doc_kind",
            "Tipo di documento di identità",
            "text",
            &form.doc_kind,
        )
        .options(&DOCUMENT_KINDS),
        Field::new(
            "doc_number",
            "Numero del documento",
            "text",
            &form.doc_number,
        ),
        Field::new("doc_issuer", "Rilasciato da", "text", &form.doc_issuer)
            .hint("Per esempio: Comune di Roma."),
        Field::new(
            "doc_issued_on",
            "Data di rilascio",
            "date",
            &form.doc_issued_on,
        ),
        Field::new(
            "doc_expires_on",
            "Data di scadenza",
            "date",
            &form.doc_expires_on,
        ),
    ]);
    fields
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
    step: Option<(u8, u8)>,
    notice: Option<String>,
    error: Option<FormError>,
    intro: Vec<String>,
    rules: Vec<&'static str>,
    action: &'static str,
    csrf: String,
    fields: Vec<Field>,
    submit: &'static str,
    back: Option<(&'static str, &'static str)>,
    side_forms: Vec<SideForm>,
}

/// A one-button form under the main one.
pub struct SideForm {
    action: &'static str,
    label: &'static str,
    note: &'static str,
}

impl FormPage {
    fn new(title: &'static str, action: &'static str, csrf: &str, fields: Vec<Field>) -> Self {
        Self {
            title,
            step: None,
            notice: None,
            error: None,
            intro: Vec::new(),
            rules: Vec::new(),
            action,
            csrf: csrf.to_owned(),
            fields,
            submit: "Prosegui",
            back: None,
            side_forms: Vec::new(),
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
        return AppError::from_enablement(e).into_response();
    };
    if let EnablementError::Form(errors) = &e {
        page.fields = with_errors(page.fields, errors);
    }
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

async fn load(app: &AppState, authed: &Authed) -> Result<Account, Response> {
    app.enablement
        .account(authed.session.account_id)
        .await
        .map_err(|e| AppError::from(e).into_response())
}

/// Loads the account and checks the page fits its state; otherwise 303 to the step.
async fn load_at(
    app: &AppState,
    authed: &Authed,
    allowed: &[EnablementState],
) -> Result<Account, Response> {
    let account = load(app, authed).await?;
    if allowed.contains(&account.enablement_state) {
        Ok(account)
    } else {
        Err(see_other(step_path(account.enablement_state)))
    }
}

// ---- home ------------------------------------------------------------------------

struct HomeView {
    display_name: String,
    level: u8,
    idp_name: String,
    state_label: &'static str,
    enabled: bool,
    rows: Vec<(&'static str, String)>,
    csrf: String,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    session: Option<HomeView>,
}

fn account_rows(account: &Account) -> Vec<(&'static str, String)> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".to_owned());
    let mut rows = vec![
        ("Nome", account.given_name.clone()),
        ("Cognome", account.family_name.clone()),
        ("Codice fiscale", account.fiscal_code.as_str().to_owned()),
        ("Nome utente", account.username.clone()),
        (
            "Data di nascita",
            account
                .birth_date
                .map_or_else(|| "—".to_owned(), |d| d.format("%d/%m/%Y").to_string()),
        ),
        ("Luogo di nascita", opt(&account.birth_place)),
        ("E-mail", opt(&account.email)),
    ];
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

/// `GET /`: the public page, or the person's home with their data and state.
pub async fn home(State(app): State<AppState>, MaybeAuthed(authed): MaybeAuthed) -> Response {
    let view = match &authed {
        None => None,
        Some(a) => {
            let account = or_return!(load(&app, a).await);
            let s = &a.session.login;
            let idp_name = app
                .sso
                .federation()
                .get(&s.idp_entity_id)
                .map(|i| i.display_name().to_owned())
                .unwrap_or_else(|| s.idp_entity_id.clone());
            Some(HomeView {
                display_name: format!("{} {}", account.given_name, account.family_name),
                level: s.level.number(),
                idp_name,
                state_label: state_label(account.enablement_state),
                enabled: account.enablement_state == EnablementState::Enabled,
                rows: account_rows(&account),
                csrf: a.session.csrf.clone(),
            })
        }
    };
    show(&HomePage { session: view })
}

// ---- abilitazione ----------------------------------------------------------------

/// `GET /abilitazione`: to the current step.
pub async fn resume(State(app): State<AppState>, authed: Authed) -> Response {
    match load(&app, &authed).await {
        Ok(account) => see_other(step_path(account.enablement_state)),
        Err(resp) => resp,
    }
}

const EDITABLE: [EnablementState; 4] = [
    EnablementState::NotEnabled,
    EnablementState::RequestData,
    EnablementState::RecoveryQuestion,
    EnablementState::Review,
];

fn request_page(csrf: &str, form: &RequestForm) -> FormPage {
    let mut page = FormPage::new(
        "Richiesta di abilitazione",
        "/abilitazione/richiesta",
        csrf,
        request_fields(form),
    );
    page.step = Some((1, 5));
    page.intro = vec![
        "Per abilitarti a Istanze OnLine indica il domicilio, i recapiti e il documento di identità. Nome, cognome e codice fiscale arrivano da SPID.".to_owned(),
        "I campi con * sono obbligatori.".to_owned(),
    ];
    page
}

/// `GET /abilitazione/richiesta`.
pub async fn request_get(State(app): State<AppState>, authed: Authed) -> Response {
    let account = or_return!(load_at(&app, &authed, &EDITABLE).await);
    let form = RequestForm::prefill(&account, Some(&authed.session.login));
    show(&request_page(&authed.session.csrf, &form))
}

/// `POST /abilitazione/richiesta`.
pub async fn request_post(State(app): State<AppState>, f: SessionForm<RequestForm>) -> Response {
    let page = request_page(&f.authed.session.csrf, &f.form);
    let data = match f.form.validate(Utc::now().date_naive()) {
        Ok(d) => d,
        Err(errors) => return refused(page, EnablementError::Form(errors)),
    };
    match app
        .enablement
        .submit_request(f.authed.session.account_id, data)
        .await
    {
        Ok(account) => see_other(step_path(account.enablement_state)),
        Err(e) => refused(page, e),
    }
}

fn recovery_page(csrf: &str, question: &str) -> FormPage {
    let mut page = FormPage::new(
        "Domanda di sicurezza",
        "/abilitazione/domanda",
        csrf,
        vec![
            Field::new("question", "Domanda", "text", question)
                .hint("Puoi usare la domanda proposta o scriverne una tua."),
            Field::secret("answer", "Risposta"),
            Field::secret("answer_repeat", "Ripeti la risposta"),
        ],
    );
    page.step = Some((2, 5));
    page.intro = vec![
        "La risposta ti servirà per recuperare il Codice Personale se lo dimentichi. Maiuscole, accenti e spazi non contano.".to_owned(),
    ];
    page.submit = "Conferma";
    page.back = Some(("/abilitazione/richiesta", "Torna ai dati"));
    page
}

/// `GET /abilitazione/domanda`.
pub async fn recovery_get(State(app): State<AppState>, authed: Authed) -> Response {
    let account = or_return!(
        load_at(
            &app,
            &authed,
            &[EnablementState::RecoveryQuestion, EnablementState::Review],
        )
        .await
    );
    let question = account
        .recovery_question
        .unwrap_or_else(|| DEFAULT_QUESTION.to_owned());
    show(&recovery_page(&authed.session.csrf, &question))
}

/// `POST /abilitazione/domanda`.
pub async fn recovery_post(State(app): State<AppState>, f: SessionForm<RecoveryForm>) -> Response {
    let page = recovery_page(&f.authed.session.csrf, &f.form.question);
    let data = match f.form.validate() {
        Ok(d) => d,
        Err(errors) => return refused(page, EnablementError::Form(errors)),
    };
    match app
        .enablement
        .submit_recovery(f.authed.session.account_id, data)
        .await
    {
        Ok(account) => see_other(step_path(account.enablement_state)),
        Err(e) => refused(page, e),
    }
}

#[derive(Template)]
#[template(path = "review.html")]
struct ReviewPage {
    rows: Vec<(&'static str, String)>,
    csrf: String,
}

/// `GET /abilitazione/riepilogo`.
pub async fn review_get(State(app): State<AppState>, authed: Authed) -> Response {
    let account = or_return!(load_at(&app, &authed, &[EnablementState::Review]).await);
    let mut rows = account_rows(&account);
    if let Some(d) = &account.id_document {
        rows.push((
            "Documento di identità",
            format!(
                "{} n. {}, rilasciato da {} il {}, scadenza {}",
                d.kind,
                d.number,
                d.issuer,
                d.issued_on.format("%d/%m/%Y"),
                d.expires_on.format("%d/%m/%Y")
            ),
        ));
    }
    if let Some(q) = &account.recovery_question {
        rows.push(("Domanda di sicurezza", q.clone()));
    }
    let page = ReviewPage {
        rows,
        csrf: authed.session.csrf.clone(),
    };
    show(&page)
}

/// A form with only the CSRF token.
#[derive(Debug, Deserialize)]
pub struct Empty {}

/// `POST /abilitazione/riepilogo` ("Conferma").
pub async fn review_post(State(app): State<AppState>, f: SessionForm<Empty>) -> Response {
    match app.enablement.confirm(f.authed.session.account_id).await {
        Ok(account) => see_other(step_path(account.enablement_state)),
        Err(EnablementError::Step(_)) => see_other("/abilitazione"),
        Err(e) => AppError::from_enablement(e).into_response(),
    }
}

#[derive(Template)]
#[template(path = "adesione.html")]
struct AdesionePage {
    email: String,
    reference: String,
    retry: bool,
    csrf: String,
}

/// `GET /abilitazione/adesione`: warnings, the modulo, "Accetto".
pub async fn adesione_get(State(app): State<AppState>, authed: Authed) -> Response {
    let account = or_return!(
        load_at(
            &app,
            &authed,
            &[EnablementState::Confirmed, EnablementState::Accepted],
        )
        .await
    );
    let page = AdesionePage {
        email: account.email.clone().unwrap_or_default(),
        reference: reference_code(&account),
        retry: account.enablement_state == EnablementState::Accepted,
        csrf: authed.session.csrf.clone(),
    };
    show(&page)
}

/// `POST /abilitazione/adesione` ("Accetto"): the temporary CP by e-mail.
pub async fn adesione_post(State(app): State<AppState>, f: SessionForm<Empty>) -> Response {
    match app
        .enablement
        .accept(f.authed.session.account_id, Utc::now())
        .await
    {
        Ok(_) => see_other("/abilitazione/inviata"),
        Err(EnablementError::Step(_)) => see_other("/abilitazione"),
        Err(e) => AppError::from_enablement(e).into_response(),
    }
}

async fn modulo(app: &AppState, authed: &Authed, which: Modulo) -> Response {
    let account = match load_at(
        app,
        authed,
        &[
            EnablementState::Confirmed,
            EnablementState::Accepted,
            EnablementState::TempCpSent,
            EnablementState::Enabled,
        ],
    )
    .await
    {
        Ok(a) => a,
        Err(_) => return see_other("/abilitazione"),
    };
    let name = match which {
        Modulo::Adesione => "modulo-adesione.pdf",
        Modulo::Delega => "modulo-delega.pdf",
    };
    match app.enablement.modulo(&account, which, Utc::now()) {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "application/pdf".to_owned()),
                (header::CACHE_CONTROL, "no-store".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}\""),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => AppError::from_enablement(e).into_response(),
    }
}

/// `GET /abilitazione/modulo-adesione.pdf`.
pub async fn modulo_adesione(State(app): State<AppState>, authed: Authed) -> Response {
    modulo(&app, &authed, Modulo::Adesione).await
}

/// `GET /abilitazione/modulo-delega.pdf`.
pub async fn modulo_delega(State(app): State<AppState>, authed: Authed) -> Response {
    modulo(&app, &authed, Modulo::Delega).await
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    title: &'static str,
    step: Option<u8>,
    paragraphs: Vec<String>,
    link: Option<(&'static str, &'static str)>,
    show_logout: bool,
    csrf: String,
}

/// `GET /abilitazione/inviata`: "e-mail sent", with "Esci".
pub async fn sent(State(app): State<AppState>, authed: Authed) -> Response {
    let account = or_return!(load_at(&app, &authed, &[EnablementState::TempCpSent]).await);
    let page = MessagePage {
        title: "E-mail inviata",
        step: Some(4),
        paragraphs: vec![
            format!(
                "Abbiamo inviato all'indirizzo {} il Codice Personale temporaneo, il modulo di adesione e il modulo di delega.",
                account.email.unwrap_or_default()
            ),
            "Esci ora. Al prossimo accesso con SPID ti sarà chiesto di sostituire il Codice Personale temporaneo con uno scelto da te: con quel passo l'abilitazione è completa.".to_owned(),
        ],
        link: None,
        show_logout: true,
        csrf: authed.session.csrf.clone(),
    };
    show(&page)
}

/// The mandatory change of the temporary CP.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TempCpForm {
    temp_cp: String,
    new_cp: String,
    new_cp_repeat: String,
}

fn change_temp_page(csrf: &str) -> FormPage {
    let mut page = FormPage::new(
        "Cambio del Codice Personale temporaneo",
        "/abilitazione/cambio-cp",
        csrf,
        vec![
            Field::secret("temp_cp", "Codice Personale temporaneo")
                .hint("Il codice ricevuto per e-mail."),
            Field::secret("new_cp", "Nuovo Codice Personale").auto("new-password"),
            Field::secret("new_cp_repeat", "Ripeti il nuovo Codice Personale").auto("new-password"),
        ],
    );
    page.step = Some((5, 5));
    page.intro = vec![
        "Per completare l'abilitazione sostituisci il Codice Personale temporaneo ricevuto per e-mail con uno scelto da te.".to_owned(),
    ];
    page.rules = CP_RULES_IT.to_vec();
    page.submit = "Conferma";
    page.side_forms = vec![SideForm {
        action: "/abilitazione/reinvio",
        label: "Ripetizione invio Codice Personale Temporaneo",
        note: "Non hai ricevuto il codice, è scaduto o è bloccato? Te ne inviamo uno nuovo; quello precedente non sarà più valido.",
    }];
    page
}

/// Query of the change page.
#[derive(Debug, Default, Deserialize)]
pub struct ChangeQuery {
    #[serde(default)]
    reinviato: Option<String>,
}

/// `GET /abilitazione/cambio-cp`.
pub async fn change_temp_get(
    State(app): State<AppState>,
    authed: Authed,
    axum::extract::Query(query): axum::extract::Query<ChangeQuery>,
) -> Response {
    if let Err(r) = load_at(&app, &authed, &[EnablementState::TempCpSent]).await {
        return r;
    }
    let mut page = change_temp_page(&authed.session.csrf);
    if query.reinviato.is_some() {
        page.notice = Some(
            "Ti abbiamo inviato un nuovo Codice Personale temporaneo: quello precedente non è più valido."
                .to_owned(),
        );
    }
    show(&page)
}

/// `POST /abilitazione/cambio-cp`.
pub async fn change_temp_post(State(app): State<AppState>, f: SessionForm<TempCpForm>) -> Response {
    let page = change_temp_page(&f.authed.session.csrf);
    match app
        .enablement
        .change_temp_cp(
            f.authed.session.account_id,
            &f.form.temp_cp,
            &f.form.new_cp,
            &f.form.new_cp_repeat,
            Utc::now(),
        )
        .await
    {
        Ok(_) => see_other("/abilitazione/completata"),
        Err(e) => refused(page, e),
    }
}

/// `POST /abilitazione/reinvio`: a new temporary CP.
pub async fn resend(State(app): State<AppState>, f: SessionForm<Empty>) -> Response {
    let page = change_temp_page(&f.authed.session.csrf);
    match app
        .enablement
        .resend(f.authed.session.account_id, Utc::now())
        .await
    {
        Ok(_) => see_other("/abilitazione/cambio-cp?reinviato=1"),
        Err(e) => refused(page, e),
    }
}

/// `GET /abilitazione/completata`.
pub async fn completed(State(app): State<AppState>, authed: Authed) -> Response {
    if let Err(r) = load_at(&app, &authed, &[EnablementState::Enabled]).await {
        return r;
    }
    let page = MessagePage {
        title: "Abilitazione completata",
        step: None,
        paragraphs: vec![
            "Il tuo Codice Personale è stato aggiornato: sei abilitato/a a Istanze OnLine."
                .to_owned(),
            "Conserva il Codice Personale: ti verrà chiesto per inoltrare le istanze.".to_owned(),
        ],
        link: Some(("/", "Vai alla home")),
        show_logout: true,
        csrf: authed.session.csrf.clone(),
    };
    show(&page)
}

// ---- personal area ---------------------------------------------------------------

#[derive(Template)]
#[template(path = "area.html")]
struct AreaPage {
    rows: Vec<(&'static str, String)>,
    fields: Vec<Field>,
    notice: Option<String>,
    error: Option<FormError>,
    csrf: String,
}

/// Query of the personal area.
#[derive(Debug, Default, Deserialize)]
pub struct AreaQuery {
    #[serde(default)]
    salvato: Option<String>,
    #[serde(default)]
    cp: Option<String>,
}

fn area_page(account: &Account, csrf: &str, form: &ContactForm) -> AreaPage {
    AreaPage {
        rows: account_rows(account)
            .into_iter()
            .filter(|(label, _)| {
                !matches!(
                    *label,
                    "E-mail" | "Cellulare" | "Telefono fisso" | "Domicilio"
                )
            })
            .collect(),
        fields: contact_fields(form),
        notice: None,
        error: None,
        csrf: csrf.to_owned(),
    }
}

/// `GET /area-riservata`: "I tuoi dati personali".
pub async fn area_get(
    State(app): State<AppState>,
    authed: Authed,
    axum::extract::Query(q): axum::extract::Query<AreaQuery>,
) -> Response {
    let account = match load_at(&app, &authed, &[EnablementState::Enabled]).await {
        Ok(a) => a,
        Err(_) => return see_other("/abilitazione"),
    };
    let mut page = area_page(
        &account,
        &authed.session.csrf,
        &ContactForm::from_account(&account),
    );
    if q.salvato.is_some() {
        page.notice = Some("I tuoi recapiti sono stati aggiornati.".to_owned());
    } else if q.cp.is_some() {
        page.notice = Some("Il Codice Personale è stato modificato.".to_owned());
    }
    show(&page)
}

/// `POST /area-riservata/dati`: e-mail, phones, domicile.
pub async fn area_post(State(app): State<AppState>, f: SessionForm<ContactForm>) -> Response {
    let account = match load_at(&app, &f.authed, &[EnablementState::Enabled]).await {
        Ok(a) => a,
        Err(_) => return see_other("/abilitazione"),
    };
    let result = match f.form.validate() {
        Ok(data) => app
            .enablement
            .update_contacts(account.id, data)
            .await
            .map(|_| ()),
        Err(errors) => Err(EnablementError::Form(errors)),
    };
    match result {
        Ok(()) => see_other("/area-riservata?salvato=1"),
        Err(EnablementError::Form(errors)) => {
            let mut page = area_page(&account, &f.authed.session.csrf, &f.form);
            page.fields = with_errors(page.fields, &errors);
            page.error = Some(FormError {
                code: "POLIS_FORM_INVALID",
                message: "Alcuni dati non sono validi: correggi i campi indicati.".to_owned(),
            });
            match render(&page) {
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
        Err(e) => AppError::from_enablement(e).into_response(),
    }
}

/// The personal-area CP change.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CpForm {
    current_cp: String,
    new_cp: String,
    new_cp_repeat: String,
}

fn change_cp_page(csrf: &str) -> FormPage {
    let mut page = FormPage::new(
        "Modifica del Codice Personale",
        "/area-riservata/cambio-cp",
        csrf,
        vec![
            Field::secret("current_cp", "Codice Personale attuale").auto("current-password"),
            Field::secret("new_cp", "Nuovo Codice Personale").auto("new-password"),
            Field::secret("new_cp_repeat", "Ripeti il nuovo Codice Personale").auto("new-password"),
        ],
    );
    page.rules = CP_RULES_IT.to_vec();
    page.submit = "Modifica";
    page.back = Some(("/area-riservata", "Annulla"));
    page
}

/// `GET /area-riservata/cambio-cp`.
pub async fn change_cp_get(State(app): State<AppState>, authed: Authed) -> Response {
    if load_at(&app, &authed, &[EnablementState::Enabled])
        .await
        .is_err()
    {
        return see_other("/abilitazione");
    }
    show(&change_cp_page(&authed.session.csrf))
}

/// `POST /area-riservata/cambio-cp`.
pub async fn change_cp_post(State(app): State<AppState>, f: SessionForm<CpForm>) -> Response {
    let page = change_cp_page(&f.authed.session.csrf);
    match app
        .enablement
        .change_cp(
            f.authed.session.account_id,
            &f.form.current_cp,
            &f.form.new_cp,
            &f.form.new_cp_repeat,
        )
        .await
    {
        Ok(_) => see_other("/area-riservata?cp=1"),
        Err(e) => refused(page, e),
    }
}

/// The recovery answer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RecoverForm {
    answer: String,
}

fn recover_page(csrf: &str, question: &str) -> FormPage {
    let mut page = FormPage::new(
        "Recupero codice personale",
        "/area-riservata/recupero-cp",
        csrf,
        vec![Field::secret("answer", "Risposta")],
    );
    page.intro = vec![
        format!("Domanda di sicurezza: «{question}»"),
        "Se la risposta è corretta ti invieremo per e-mail un nuovo Codice Personale temporaneo, da sostituire subito con uno scelto da te.".to_owned(),
    ];
    page.submit = "Invia";
    page.back = Some(("/area-riservata", "Annulla"));
    page
}

/// `GET /area-riservata/recupero-cp`.
pub async fn recover_get(State(app): State<AppState>, authed: Authed) -> Response {
    let account = match load_at(&app, &authed, &[EnablementState::Enabled]).await {
        Ok(a) => a,
        Err(_) => return see_other("/abilitazione"),
    };
    let question = account.recovery_question.unwrap_or_default();
    show(&recover_page(&authed.session.csrf, &question))
}

/// `POST /area-riservata/recupero-cp`.
pub async fn recover_post(State(app): State<AppState>, f: SessionForm<RecoverForm>) -> Response {
    let question = match app.enablement.account(f.authed.session.account_id).await {
        Ok(a) => a.recovery_question.unwrap_or_default(),
        Err(e) => return AppError::from_enablement(e).into_response(),
    };
    let page = recover_page(&f.authed.session.csrf, &question);
    match app
        .enablement
        .recover(f.authed.session.account_id, &f.form.answer, Utc::now())
        .await
    {
        Ok(_) => see_other("/abilitazione/cambio-cp"),
        Err(e) => refused(page, e),
    }
}

// ---- demo outbox -----------------------------------------------------------------

struct OutboxRow {
    when: String,
    to: String,
    subject: String,
    file: String,
}

#[derive(Template)]
#[template(path = "outbox.html")]
struct OutboxPage {
    entries: Vec<OutboxRow>,
    message: Option<(String, String)>,
}

async fn outbox_page(app: &AppState, open: Option<String>) -> Response {
    let Some(outbox) = &app.outbox else {
        return AppError::not_found().into_response();
    };
    let entries = match outbox.list().await {
        Ok(list) => list,
        Err(e) => return AppError::internal(e.to_string()).into_response(),
    };
    let message = match open {
        None => None,
        Some(name) => match outbox.read(&name).await {
            Ok(text) => Some((name, decode_quoted_printable_text(&text))),
            Err(_) => return AppError::not_found().into_response(),
        },
    };
    let page = OutboxPage {
        entries: entries
            .into_iter()
            .map(|e| OutboxRow {
                when: e.date,
                to: e.to.join(", "),
                subject: e.subject,
                file: e.file_name,
            })
            .collect(),
        message,
    };
    show(&page)
}

/// The readable part of a message: headers and the quoted-printable text part
/// decoded; base64 attachments elided.
fn decode_quoted_printable_text(raw: &str) -> String {
    let mut out = String::new();
    let mut in_base64 = false;
    let mut bytes: Vec<u8> = Vec::new();
    let flush = |bytes: &mut Vec<u8>, out: &mut String| {
        out.push_str(&String::from_utf8_lossy(bytes));
        bytes.clear();
    };
    for line in raw.lines() {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("content-transfer-encoding: base64") {
            in_base64 = true;
            out.push_str(line);
            out.push('\n');
            continue;
        }
        if line.starts_with("--") {
            in_base64 = false;
        }
        if in_base64 {
            if line.is_empty() {
                continue;
            }
            if !out.ends_with("[allegato]\n") {
                out.push_str("[allegato]\n");
            }
            continue;
        }
        // Quoted-printable: `=XX` escapes and soft line breaks.
        let (content, soft) = match line.strip_suffix('=') {
            Some(c) => (c, true),
            None => (line, false),
        };
        let raw_bytes = content.as_bytes();
        let mut i = 0;
        while let Some(&b) = raw_bytes.get(i) {
            if b == b'='
                && let (Some(h), Some(l)) = (raw_bytes.get(i + 1), raw_bytes.get(i + 2))
                && let Ok(v) = u8::from_str_radix(&format!("{}{}", *h as char, *l as char), 16)
            {
                bytes.push(v);
                i += 3;
                continue;
            }
            bytes.push(b);
            i += 1;
        }
        if !soft {
            bytes.push(b'\n');
            flush(&mut bytes, &mut out);
        }
    }
    flush(&mut bytes, &mut out);
    out
}

/// `GET /demo/posta` (demo mode only).
pub async fn outbox(State(app): State<AppState>) -> Response {
    outbox_page(&app, None).await
}

/// `GET /demo/posta/{file}` (demo mode only).
pub async fn outbox_message(State(app): State<AppState>, Path(file): Path<String>) -> Response {
    outbox_page(&app, Some(file)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_printable_text_is_decoded_and_attachments_elided() {
        let raw = "Subject: x\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCodice Personale temporaneo: ABCD2345EFGH\r\nla citt=C3=A0 =\r\ndi Roma\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0x\r\nAAAA\r\n--b--\r\n";
        let text = decode_quoted_printable_text(raw);
        assert!(text.contains("Codice Personale temporaneo: ABCD2345EFGH"));
        assert!(text.contains("la città di Roma"));
        assert!(text.contains("[allegato]"));
        assert!(!text.contains("JVBERi0x"));
    }

    #[test]
    fn every_state_has_a_step_and_a_label() {
        for state in EnablementState::ALL {
            assert!(step_path(state).starts_with('/'));
            assert!(!state_label(state).is_empty());
        }
        assert_eq!(step_path(EnablementState::Enabled), "/");
    }
}
