//! "Recupero codice personale": the security question of the personal area; the right
//! answer mails a new temporary CP and leads to its mandatory change.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::{Field, FormPage, refused, resume_path, see_other, show};
use crate::enablement::Page;
use crate::session::WebSession;
use crate::web::session::{Authed, SessionForm};
use crate::web::{AppError, AppState};

/// The recovery answer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RecoverForm {
    answer: String,
}

fn recover_page(session: &WebSession, question: &str) -> FormPage {
    let mut page = FormPage::new(
        "Recupero codice personale",
        "/area-riservata/recupero-cp",
        session,
        vec![Field::secret("answer", "Risposta").en("Answer")],
    );
    page.title_en = "Recover your Personal Code";
    page.intro_en = vec![
        "If the answer to your security question is right, we e-mail you a new temporary Personal Code, to be replaced at once with one of your own.",
    ];
    page.intro = vec![
        format!("Domanda di sicurezza: «{question}»"),
        "Se la risposta è corretta ti invieremo per e-mail un nuovo Codice Personale temporaneo, da sostituire subito con uno scelto da te.".to_owned(),
    ];
    page.submit = "Invia";
    page.back = Some(("/area-riservata", "Annulla"));
    page
}

/// `GET /area-riservata/recupero-cp`.
pub async fn recover_get(
    State(app): State<AppState>,
    authed: Authed,
) -> Result<Response, AppError> {
    let page = app
        .enablement
        .page(authed.session.account_id, Page::Enabled)
        .await?;
    let account = shown!(page, resume_path);
    let question = account.recovery_question.unwrap_or_default();
    Ok(show(&recover_page(&authed.session, &question)))
}

/// `POST /area-riservata/recupero-cp`.
pub async fn recover_post(State(app): State<AppState>, f: SessionForm<RecoverForm>) -> Response {
    match app
        .enablement
        .recover(f.authed.session.account_id, &f.form.answer)
        .await
    {
        Ok(_) => see_other("/abilitazione/cambio-cp"),
        Err(refusal) => refused(
            recover_page(&f.authed.session, &refusal.shown),
            refusal.error,
        ),
    }
}
