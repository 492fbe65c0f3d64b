//! Steps 1–3 of the abilitazione: the request (contacts and identity document), the
//! recovery question, the review and «Conferma».

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::{
    Empty, Field, FormPage, account_rows, contact_fields, refused, see_other, show, step_path,
};
use crate::enablement::Page;
use crate::enablement::forms::{DEFAULT_QUESTION, DOCUMENT_KINDS, RecoveryForm, RequestForm};
use crate::web::session::{Authed, SessionForm};
use crate::web::{AppError, AppState};

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
pub async fn request_get(
    State(app): State<AppState>,
    authed: Authed,
) -> Result<Response, AppError> {
    let page = app
        .enablement
        .page(authed.session.account_id, Page::Request)
        .await?;
    let account = shown!(page, step_path);
    let form = RequestForm::prefill(&account, Some(&authed.session.login));
    Ok(show(&request_page(&authed.session.csrf, &form)))
}

/// `POST /abilitazione/richiesta`.
pub async fn request_post(State(app): State<AppState>, f: SessionForm<RequestForm>) -> Response {
    match app
        .enablement
        .submit_request(f.authed.session.account_id, &f.form)
        .await
    {
        Ok(account) => see_other(step_path(account.enablement_state)),
        Err(e) => refused(request_page(&f.authed.session.csrf, &f.form), e),
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
pub async fn recovery_get(
    State(app): State<AppState>,
    authed: Authed,
) -> Result<Response, AppError> {
    let page = app
        .enablement
        .page(authed.session.account_id, Page::RecoveryQuestion)
        .await?;
    let account = shown!(page, step_path);
    let question = account
        .recovery_question
        .unwrap_or_else(|| DEFAULT_QUESTION.to_owned());
    Ok(show(&recovery_page(&authed.session.csrf, &question)))
}

/// `POST /abilitazione/domanda`.
pub async fn recovery_post(State(app): State<AppState>, f: SessionForm<RecoveryForm>) -> Response {
    match app
        .enablement
        .submit_recovery(f.authed.session.account_id, &f.form)
        .await
    {
        Ok(account) => see_other(step_path(account.enablement_state)),
        Err(e) => refused(recovery_page(&f.authed.session.csrf, &f.form.question), e),
    }
}

#[derive(Template)]
#[template(path = "review.html")]
struct ReviewPage {
    rows: Vec<(&'static str, String)>,
    csrf: String,
}

/// `GET /abilitazione/riepilogo`.
pub async fn review_get(State(app): State<AppState>, authed: Authed) -> Result<Response, AppError> {
    let page = app
        .enablement
        .page(authed.session.account_id, Page::Review)
        .await?;
    let account = shown!(page, step_path);
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
    Ok(show(&page))
}

/// `POST /abilitazione/riepilogo` ("Conferma").
pub async fn review_post(
    State(app): State<AppState>,
    f: SessionForm<Empty>,
) -> Result<Response, AppError> {
    match app.enablement.confirm(f.authed.session.account_id).await {
        Ok(account) => Ok(see_other(step_path(account.enablement_state))),
        Err(crate::enablement::EnablementError::Step(_)) => Ok(see_other("/abilitazione")),
        Err(e) => Err(e.into()),
    }
}
