//! The Codice Personale pages: the mandatory change of the temporary CP (step 5 of the
//! abilitazione) and the CP change of the personal area.

use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::{Field, FormPage, SideForm, refused, resume_path, see_other, show, step_path};
use crate::enablement::Page;
use crate::enablement::cp::CP_RULES_IT;
use crate::session::WebSession;
use crate::web::session::{Authed, SessionForm};
use crate::web::{AppError, AppState};

/// The mandatory change of the temporary CP.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TempCpForm {
    temp_cp: String,
    new_cp: String,
    new_cp_repeat: String,
}

pub(super) fn change_temp_page(session: &WebSession) -> FormPage {
    let mut page = FormPage::new(
        "Cambio del Codice Personale temporaneo",
        "/abilitazione/cambio-cp",
        session,
        vec![
            Field::secret("temp_cp", "Codice Personale temporaneo")
                .en("Temporary Personal Code")
                .hint(
                    "Il codice ricevuto per e-mail.",
                    "The code you received by e-mail.",
                ),
            Field::secret("new_cp", "Nuovo Codice Personale")
                .en("New Personal Code")
                .auto("new-password"),
            Field::secret("new_cp_repeat", "Ripeti il nuovo Codice Personale")
                .en("New Personal Code again")
                .auto("new-password"),
        ],
    );
    page.title_en = "Change of the temporary Personal Code";
    page.intro_en = vec![
        "To finish, replace the temporary Personal Code you received by e-mail with one of your own: you will need it to submit applications.",
    ];
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
    Query(query): Query<ChangeQuery>,
) -> Result<Response, AppError> {
    let page = app
        .enablement
        .page(authed.session.account_id, Page::ChangeTempCp)
        .await?;
    shown!(page, step_path);
    let mut page = change_temp_page(&authed.session);
    if query.reinviato.is_some() {
        page.notice = Some(
            "Ti abbiamo inviato un nuovo Codice Personale temporaneo: quello precedente non è più valido."
                .to_owned(),
        );
    }
    Ok(show(&page))
}

/// `POST /abilitazione/cambio-cp`.
pub async fn change_temp_post(State(app): State<AppState>, f: SessionForm<TempCpForm>) -> Response {
    match app
        .enablement
        .change_temp_cp(
            f.authed.session.account_id,
            &f.form.temp_cp,
            &f.form.new_cp,
            &f.form.new_cp_repeat,
        )
        .await
    {
        Ok(_) => see_other("/abilitazione/completata"),
        Err(e) => refused(change_temp_page(&f.authed.session), e),
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

fn change_cp_page(session: &WebSession) -> FormPage {
    let mut page = FormPage::new(
        "Modifica del Codice Personale",
        "/area-riservata/cambio-cp",
        session,
        vec![
            Field::secret("current_cp", "Codice Personale attuale")
                .en("Current Personal Code")
                .auto("current-password"),
            Field::secret("new_cp", "Nuovo Codice Personale")
                .en("New Personal Code")
                .auto("new-password"),
            Field::secret("new_cp_repeat", "Ripeti il nuovo Codice Personale")
                .en("New Personal Code again")
                .auto("new-password"),
        ],
    );
    page.title_en = "Change your Personal Code";
    page.rules = CP_RULES_IT.to_vec();
    page.submit = "Modifica";
    page.back = Some(("/area-riservata", "Annulla"));
    page
}

/// `GET /area-riservata/cambio-cp`.
pub async fn change_cp_get(
    State(app): State<AppState>,
    authed: Authed,
) -> Result<Response, AppError> {
    let page = app
        .enablement
        .page(authed.session.account_id, Page::Enabled)
        .await?;
    shown!(page, resume_path);
    Ok(show(&change_cp_page(&authed.session)))
}

/// `POST /area-riservata/cambio-cp`.
pub async fn change_cp_post(State(app): State<AppState>, f: SessionForm<CpForm>) -> Response {
    let page = change_cp_page(&f.authed.session);
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
