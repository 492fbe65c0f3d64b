//! The pages of a logged-in person outside the steps: the home page (public, or the
//! person's data and state), "abilitazione completata" and the personal area's data.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::{
    DRAFT_NOTICE, Field, FormError, MessagePage, account_rows, contact_fields, english_for,
    invalid_form, kept_draft, resume_path, see_other, show, state_label, step_path, with_errors,
};
use crate::accounts::{Account, EnablementState};
use crate::enablement::forms::ContactForm;
use crate::enablement::{EnablementError, Page, Refusal, Step};
use crate::session::WebSession;
use crate::web::session::{Authed, MaybeAuthed, SessionForm};
use crate::web::{AppError, AppState};

struct HomeView {
    display_name: String,
    level: u8,
    /// «SPID», «CIE» or «eIDAS»: how this session logged in.
    scheme: &'static str,
    idp_name: String,
    state_label: &'static str,
    enabled: bool,
    /// The session may use the help-desk console (a link to it).
    helpdesk: bool,
    rows: Vec<(&'static str, String)>,
    csrf: String,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    session: Option<HomeView>,
}

/// `GET /`: the public page, or the person's home with their data and state.
pub async fn home(
    State(app): State<AppState>,
    MaybeAuthed(authed): MaybeAuthed,
) -> Result<Response, AppError> {
    let view = match &authed {
        None => None,
        Some(a) => {
            let account = app.enablement.account(a.session.account_id).await?;
            let s = &a.session.login;
            // The IdP's display name: a lookup in the federation, not a use case.
            let idp_name = app
                .sso
                .federation()
                .get(&s.idp_entity_id)
                .map(|i| i.display_name().to_owned())
                .unwrap_or_else(|| s.idp_entity_id.clone());
            Some(HomeView {
                display_name: format!("{} {}", account.given_name, account.family_name),
                level: s.level.number(),
                scheme: s.scheme.label(),
                idp_name,
                state_label: state_label(account.enablement_state),
                enabled: account.enablement_state == EnablementState::Enabled,
                helpdesk: app.helpdesk.enabled() && app.helpdesk.staff(s).is_ok(),
                rows: account_rows(&account),
                csrf: a.session.csrf.clone(),
            })
        }
    };
    Ok(show(&HomePage { session: view }))
}

/// `GET /abilitazione/completata`.
pub async fn completed(State(app): State<AppState>, authed: Authed) -> Result<Response, AppError> {
    let page = app
        .enablement
        .page(authed.session.account_id, Page::Enabled)
        .await?;
    shown!(page, step_path);
    let page = MessagePage {
        title: "Abilitazione completata",
        scheme: authed.session.login.scheme.label(),
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
    Ok(show(&page))
}

#[derive(Template)]
#[template(path = "area.html")]
struct AreaPage {
    scheme: &'static str,
    english: bool,
    rows: Vec<(&'static str, String)>,
    fields: Vec<Field>,
    notice: Option<String>,
    error: Option<FormError>,
    /// «Interventi dell'assistenza»: date, what, why (never who).
    interventions: Vec<(String, &'static str, String)>,
    csrf: String,
}

impl AreaPage {
    fn errored(&self) -> Vec<(&'static str, &str)> {
        super::errored(&self.fields)
    }
}

/// Query of the personal area.
#[derive(Debug, Default, Deserialize)]
pub struct AreaQuery {
    #[serde(default)]
    salvato: Option<String>,
    #[serde(default)]
    cp: Option<String>,
}

fn area_page(account: &Account, session: &WebSession, form: &ContactForm) -> AreaPage {
    let english = english_for(session);
    let fields = contact_fields(form)
        .into_iter()
        .map(|mut f| {
            f.show_en = english;
            f
        })
        .collect();
    AreaPage {
        scheme: session.login.scheme.label(),
        english,
        rows: account_rows(account)
            .into_iter()
            .filter(|(label, _)| {
                !matches!(
                    *label,
                    "E-mail" | "Cellulare" | "Telefono fisso" | "Domicilio"
                )
            })
            .collect(),
        fields,
        notice: None,
        error: None,
        interventions: Vec::new(),
        csrf: session.csrf.clone(),
    }
}

/// `GET /area-riservata`: "I tuoi dati personali".
pub async fn area_get(
    State(app): State<AppState>,
    authed: Authed,
    Query(q): Query<AreaQuery>,
) -> Result<Response, AppError> {
    let page = app
        .enablement
        .page(authed.session.account_id, Page::Enabled)
        .await?;
    let account = shown!(page, resume_path);
    let kept = kept_draft::<ContactForm>(&app, &authed, "dati").await?;
    let form = kept
        .clone()
        .unwrap_or_else(|| ContactForm::from_account(&account));
    let mut page = area_page(&account, &authed.session, &form);
    page.interventions = app
        .helpdesk
        .interventions(account.id)
        .await
        .map_err(crate::web::helpdesk::app_error)?
        .into_iter()
        .map(|i| {
            let at = crate::clock::italian_date_time(i.at);
            (at, i.action.label(), i.reason)
        })
        .collect();
    if kept.is_some() {
        page.notice = Some(DRAFT_NOTICE.to_owned());
    } else if q.salvato.is_some() {
        page.notice = Some("I tuoi recapiti sono stati aggiornati.".to_owned());
    } else if q.cp.is_some() {
        page.notice = Some("Il Codice Personale è stato modificato.".to_owned());
    }
    Ok(show(&page))
}

/// `POST /area-riservata/dati`: e-mail, phones, domicile.
pub async fn area_post(
    State(app): State<AppState>,
    f: SessionForm<ContactForm>,
) -> Result<Response, AppError> {
    match app
        .enablement
        .update_contacts(f.authed.session.account_id, &f.form)
        .await
    {
        Ok(Step::Show(_)) => Ok(see_other("/area-riservata?salvato=1")),
        Ok(Step::Elsewhere(state)) => Ok(see_other(resume_path(state))),
        Err(Refusal {
            error: EnablementError::Form(errors),
            shown: Some(account),
        }) => {
            let mut page = area_page(&account, &f.authed.session, &f.form);
            page.fields = with_errors(page.fields, &errors);
            page.error = Some(FormError {
                code: "POLIS_FORM_INVALID",
                message: "Alcuni dati non sono validi: correggi i campi indicati.".to_owned(),
            });
            Ok(invalid_form(&page, &errors))
        }
        Err(refusal) => Err(refusal.error.into()),
    }
}
