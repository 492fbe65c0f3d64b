//! Steps 1–3 of the abilitazione: the request (contacts and identity document), the
//! recovery question, the review and «Conferma».

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::{
    DRAFT_NOTICE, Empty, Field, FormPage, account_rows, contact_fields, kept_draft, refused,
    see_other, show, step_path,
};
use crate::enablement::Page;
use crate::enablement::forms::{
    Asked, DEFAULT_QUESTION, DOCUMENT_KINDS, RecoveryForm, RequestForm, SEX_CHOICES,
};
use crate::identity::Scheme;
use crate::session::WebSession;
use crate::web::session::{Authed, SessionForm};
use crate::web::{AppError, AppState};

fn request_fields(form: &RequestForm, asked: Asked) -> Vec<Field> {
    let mut fields = Vec::new();
    if asked.birth_date {
        fields.push(
            Field::new("birth_date", "Data di nascita", "date", &form.birth_date)
                .en("Date of birth")
                .auto("bday"),
        );
    }
    if asked.birth_place {
        fields.push(
            Field::new(
                "birth_place",
                "Luogo di nascita (città e Stato)",
                "text",
                &form.birth_place,
            )
            .en("Place of birth (town and country)")
            .hint(
                "Per esempio: Madrid, Spagna.",
                "For example: Madrid, Spain.",
            ),
        );
    }
    if asked.sex {
        fields.push(
            Field::new("sex", "Sesso", "text", &form.sex)
                .en("Sex")
                .choices(&SEX_CHOICES),
        );
    }
    fields.extend(contact_fields(&form.contact));
    fields.extend([
        Field::new(
            "doc_kind",
            "Tipo di documento di identità",
            "text",
            &form.doc_kind,
        )
        .en("Identity document")
        .options(&DOCUMENT_KINDS)
        .hint(
            "",
            "Carta d'identità = identity card; Passaporto = passport; Patente di guida = driving licence.",
        ),
        Field::new(
            "doc_number",
            "Numero del documento",
            "text",
            &form.doc_number,
        )
        .en("Document number"),
        Field::new("doc_issuer", "Rilasciato da", "text", &form.doc_issuer)
            .en("Issued by")
            .hint(
                "Per esempio: Comune di Roma.",
                "For example: Ministerio del Interior, España.",
            ),
        Field::new(
            "doc_issued_on",
            "Data di rilascio",
            "date",
            &form.doc_issued_on,
        )
        .en("Date of issue"),
        Field::new(
            "doc_expires_on",
            "Data di scadenza",
            "date",
            &form.doc_expires_on,
        )
        .en("Expiry date"),
    ]);
    fields
}

fn request_page(session: &WebSession, form: &RequestForm) -> FormPage {
    let asked = Asked::for_login(&session.login);
    let mut page = FormPage::new(
        "Richiesta di abilitazione",
        "/abilitazione/richiesta",
        session,
        request_fields(form, asked),
    );
    page.title_en = "Application for access to Istanze OnLine";
    page.step = Some((1, 5));
    let vouched = match session.login.scheme {
        Scheme::Eidas => {
            "Nome, cognome e identificativo eIDAS arrivano dall'identità digitale del tuo Paese; indica anche i dati che non ha fornito."
        }
        Scheme::Spid | Scheme::Cie => {
            "Nome, cognome e codice fiscale arrivano dalla tua identità digitale."
        }
    };
    page.intro = vec![
        format!(
            "Per abilitarti a Istanze OnLine indica il domicilio, i recapiti e il documento di identità. {vouched}"
        ),
        "I campi con * sono obbligatori.".to_owned(),
    ];
    page.intro_en = vec![
        "To use Istanze OnLine, give your address, your contacts and an identity document. Your name and eIDAS identifier come from your country's digital identity; please add what it did not provide.",
        "Fields marked * are required.",
    ];
    page
}

/// What a person whose enablement was revoked reads when they start again.
fn revoked_notice(account: &crate::accounts::Account) -> Option<String> {
    let record = account.revocation.as_ref()?;
    if account.enablement_state != crate::accounts::EnablementState::NotEnabled {
        return None;
    }
    Some(format!(
        "La tua abilitazione a Istanze OnLine è stata revocata il {}. Motivo: {} I tuoi dati sono rimasti: puoi ripetere subito l'abilitazione da questa pagina, senza recarti in una scuola, perché la tua identità digitale ha già confermato chi sei. Riceverai per e-mail un nuovo codice personale temporaneo.",
        crate::clock::italian_date_time(record.at),
        end_with_period(&record.reason),
    ))
}

fn end_with_period(text: &str) -> String {
    let text = text.trim();
    if text.ends_with(['.', '!', '?']) {
        text.to_owned()
    } else {
        format!("{text}.")
    }
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
    let (form, notice) = match kept_draft::<RequestForm>(&app, &authed, "richiesta").await? {
        Some(kept) => (kept, Some(DRAFT_NOTICE.to_owned())),
        None => (
            RequestForm::prefill(&account, Some(&authed.session.login)),
            None,
        ),
    };
    let mut page = request_page(&authed.session, &form);
    page.notice = notice;
    page.warning = revoked_notice(&account);
    Ok(show(&page))
}

/// `POST /abilitazione/richiesta`.
pub async fn request_post(State(app): State<AppState>, f: SessionForm<RequestForm>) -> Response {
    match app
        .enablement
        .submit_request(
            f.authed.session.account_id,
            &f.form,
            Asked::for_login(&f.authed.session.login),
        )
        .await
    {
        Ok(account) => see_other(step_path(account.enablement_state)),
        Err(e) => refused(request_page(&f.authed.session, &f.form), e),
    }
}

fn recovery_page(session: &WebSession, question: &str) -> FormPage {
    let mut page = FormPage::new(
        "Domanda di sicurezza",
        "/abilitazione/domanda",
        session,
        vec![
            Field::new("question", "Domanda", "text", question)
                .en("Security question")
                .hint(
                    "Puoi usare la domanda proposta o scriverne una tua.",
                    "Keep the proposed one («Mother's maiden name») or write your own, in any language.",
                ),
            Field::secret("answer", "Risposta").en("Answer"),
            Field::secret("answer_repeat", "Ripeti la risposta").en("Answer again"),
        ],
    );
    page.title_en = "Security question";
    page.step = Some((2, 5));
    page.intro = vec![
        "La risposta ti servirà per recuperare il Codice Personale se lo dimentichi. Maiuscole, accenti e spazi non contano.".to_owned(),
    ];
    page.intro_en = vec![
        "You will need the answer to recover your Personal Code if you forget it. Capitals, accents and spaces do not matter.",
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
    Ok(show(&recovery_page(&authed.session, &question)))
}

/// `POST /abilitazione/domanda`.
pub async fn recovery_post(State(app): State<AppState>, f: SessionForm<RecoveryForm>) -> Response {
    match app
        .enablement
        .submit_recovery(f.authed.session.account_id, &f.form)
        .await
    {
        Ok(account) => see_other(step_path(account.enablement_state)),
        Err(e) => refused(recovery_page(&f.authed.session, &f.form.question), e),
    }
}

#[derive(Template)]
#[template(path = "review.html")]
struct ReviewPage {
    scheme: &'static str,
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
        scheme: authed.session.login.scheme.label(),
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
