//! The «condizioni di utilizzo» and the privacy «informativa» (public pages, linked from
//! the adesione step and the footer): the texts in force, with their version.

use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::enablement::terms::{Block, Text};
use crate::web::{AppError, AppState, render};

#[derive(Template)]
#[template(path = "terms.html")]
struct TermsPage<'a> {
    title: &'static str,
    version: &'a str,
    demo: bool,
    blocks: &'a [Block],
}

fn page(title: &'static str, version: &str, demo: bool, text: &Text) -> Result<Response, AppError> {
    let html = render(&TermsPage {
        title,
        version,
        demo,
        blocks: &text.blocks,
    })?;
    Ok(html.into_response())
}

/// `GET /condizioni-di-utilizzo`.
pub async fn conditions(State(app): State<AppState>) -> Result<Response, AppError> {
    let terms = app.enablement.terms();
    page(
        "Condizioni di utilizzo",
        &terms.version,
        terms.demo,
        &terms.conditions,
    )
}

/// `GET /informativa-privacy`.
pub async fn privacy(State(app): State<AppState>) -> Result<Response, AppError> {
    let terms = app.enablement.terms();
    page(
        "Informativa sul trattamento dei dati personali",
        &terms.version,
        terms.demo,
        &terms.privacy,
    )
}
