//! Step 4 of the abilitazione: the warnings and «Accetto», the printable forms, the
//! "e-mail sent" page and «Ripetizione invio».

use askama::Template;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::cp::change_temp_page;
use super::{Empty, MessagePage, refused, resume_path, see_other, show, step_path};
use crate::accounts::EnablementState;
use crate::enablement::{EnablementError, Modulo, Page, reference_code};
use crate::web::session::{Authed, SessionForm};
use crate::web::{AppError, AppState};

#[derive(Template)]
#[template(path = "adesione.html")]
struct AdesionePage {
    scheme: &'static str,
    /// The version of the texts «Accetto» accepts.
    terms_version: String,
    email: String,
    reference: String,
    retry: bool,
    csrf: String,
}

/// `GET /abilitazione/adesione`: warnings, the modulo, "Accetto".
pub async fn adesione_get(
    State(app): State<AppState>,
    authed: Authed,
) -> Result<Response, AppError> {
    let page = app
        .enablement
        .page(authed.session.account_id, Page::Adesione)
        .await?;
    let account = shown!(page, step_path);
    let page = AdesionePage {
        scheme: authed.session.login.scheme.label(),
        terms_version: app.enablement.terms().version.clone(),
        email: account.email.clone().unwrap_or_default(),
        reference: reference_code(&account),
        retry: account.enablement_state == EnablementState::Accepted,
        csrf: authed.session.csrf.clone(),
    };
    Ok(show(&page))
}

/// `POST /abilitazione/adesione` ("Accetto"): the temporary CP by e-mail.
pub async fn adesione_post(
    State(app): State<AppState>,
    f: SessionForm<Empty>,
) -> Result<Response, AppError> {
    match app.enablement.accept(f.authed.session.account_id).await {
        Ok(_) => Ok(see_other("/abilitazione/inviata")),
        Err(EnablementError::Step(_)) => Ok(see_other("/abilitazione")),
        Err(e) => Err(e.into()),
    }
}

async fn modulo(app: &AppState, authed: &Authed, which: Modulo) -> Result<Response, AppError> {
    let pdf = app
        .enablement
        .modulo(authed.session.account_id, which)
        .await?;
    let bytes = shown!(pdf, resume_path);
    let name = match which {
        Modulo::Adesione => "modulo-adesione.pdf",
    };
    Ok((
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
        .into_response())
}

/// `GET /abilitazione/modulo-adesione.pdf`.
pub async fn modulo_adesione(
    State(app): State<AppState>,
    authed: Authed,
) -> Result<Response, AppError> {
    modulo(&app, &authed, Modulo::Adesione).await
}

/// `GET /abilitazione/inviata`: "e-mail sent", with "Esci".
pub async fn sent(State(app): State<AppState>, authed: Authed) -> Result<Response, AppError> {
    let page = app
        .enablement
        .page(authed.session.account_id, Page::Sent)
        .await?;
    let account = shown!(page, step_path);
    let page = MessagePage {
        title: "E-mail inviata",
        scheme: authed.session.login.scheme.label(),
        step: Some(4),
        paragraphs: vec![
            format!(
                "Abbiamo inviato all'indirizzo {} il Codice Personale temporaneo e il modulo di adesione.",
                account.email.unwrap_or_default()
            ),
            format!(
                "Esci ora. Al prossimo accesso con {} ti sarà chiesto di sostituire il Codice Personale temporaneo con uno scelto da te: con quel passo l'abilitazione è completa.",
                authed.session.login.scheme.label()
            ),
        ],
        link: None,
        show_logout: true,
        csrf: authed.session.csrf.clone(),
    };
    Ok(show(&page))
}

/// `POST /abilitazione/reinvio`: a new temporary CP.
pub async fn resend(State(app): State<AppState>, f: SessionForm<Empty>) -> Response {
    match app.enablement.resend(f.authed.session.account_id).await {
        Ok(_) => see_other("/abilitazione/cambio-cp?reinviato=1"),
        Err(e) => refused(change_temp_page(&f.authed.session), e),
    }
}
