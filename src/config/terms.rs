//! `[terms]`: the «condizioni di utilizzo» and the privacy «informativa» the person
//! accepts with «Accetto» (plain-text files, see `enablement::terms`), and their version
//! label, recorded with each acceptance. Absent: the built-in demo texts, refused in
//! production.

use std::path::PathBuf;

use serde::Deserialize;

use super::checks::{check_nonempty, invalid};
use super::{ConfigError, Context};

/// `[terms]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTerms {
    /// The version label of the two texts (e.g. `2026-12`); change it with the texts.
    version: String,
    /// The condizioni di utilizzo, UTF-8 text.
    conditions_file: PathBuf,
    /// The informativa sul trattamento dei dati personali, UTF-8 text.
    privacy_file: PathBuf,
}

/// `[terms]`, validated: the files `app` reads at start. `None`: the demo texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermsSection {
    /// The version label.
    pub version: String,
    /// The conditions file.
    pub conditions_file: PathBuf,
    /// The privacy notice file.
    pub privacy_file: PathBuf,
}

/// Longest version label, in characters.
const MAX_VERSION: usize = 64;

/// Checks `[terms]`; production needs it.
pub(super) fn validate(
    raw: Option<RawTerms>,
    ctx: &Context<'_>,
) -> Result<Option<TermsSection>, ConfigError> {
    let Some(raw) = raw else {
        if ctx.prod {
            return Err(invalid(
                "terms",
                "production needs the operator's conditions of use and privacy notice ([terms] version, conditions_file, privacy_file); the built-in texts are demo only",
            ));
        }
        return Ok(None);
    };
    check_nonempty("terms.version", &raw.version)?;
    if raw.version.chars().count() > MAX_VERSION || raw.version.chars().any(char::is_control) {
        return Err(invalid(
            "terms.version",
            format!("at most {MAX_VERSION} characters, no control characters"),
        ));
    }
    Ok(Some(TermsSection {
        version: raw.version.trim().to_owned(),
        conditions_file: raw.conditions_file,
        privacy_file: raw.privacy_file,
    }))
}
