//! `[helpdesk]`: the help-desk console (`/assistenza`). Who holds which role, by
//! codice fiscale: `operators` look people up, unlock, send a new temporary CP;
//! `supervisors` also revoke an enablement. Absent, or both lists empty: the console is
//! off (404). `login_history_days`: how far back the console reads a person's logins
//! from the transaction log (default 90).

use std::collections::BTreeSet;

use serde::Deserialize;

use super::ConfigError;
use super::checks::{in_range, invalid};
use crate::accounts::FiscalCode;
use crate::helpdesk::HelpdeskSettings;

/// `[helpdesk]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHelpdesk {
    /// Codici fiscali of the operators.
    #[serde(default)]
    operators: Vec<String>,
    /// Codici fiscali of the supervisors.
    #[serde(default)]
    supervisors: Vec<String>,
    /// Days of the transaction log the last logins are read from.
    #[serde(default = "default_history_days")]
    login_history_days: u32,
}

fn default_history_days() -> u32 {
    90
}

/// Each entry of `key` a valid codice fiscale (upper-cased), none twice.
fn fiscal_codes(key: &str, list: &[String]) -> Result<BTreeSet<String>, ConfigError> {
    let mut codes = BTreeSet::new();
    for (n, text) in list.iter().enumerate() {
        let cf = FiscalCode::parse(&text.trim().to_ascii_uppercase())
            .map_err(|e| invalid(&format!("{key}[{n}]"), format!("not a codice fiscale: {e}")))?;
        if !codes.insert(cf.as_str().to_owned()) {
            return Err(invalid(&format!("{key}[{n}]"), "listed twice"));
        }
    }
    Ok(codes)
}

/// Checks `[helpdesk]`.
pub(super) fn validate(raw: Option<RawHelpdesk>) -> Result<HelpdeskSettings, ConfigError> {
    let raw = raw.unwrap_or(RawHelpdesk {
        login_history_days: default_history_days(),
        ..RawHelpdesk::default()
    });
    let operators = fiscal_codes("helpdesk.operators", &raw.operators)?;
    let supervisors = fiscal_codes("helpdesk.supervisors", &raw.supervisors)?;
    if let Some(both) = operators.intersection(&supervisors).next() {
        return Err(invalid(
            "helpdesk.operators",
            format!("{both} is also a supervisor: list each person once, under their role"),
        ));
    }
    in_range(
        "helpdesk.login_history_days",
        u64::from(raw.login_history_days),
        1,
        366,
    )?;
    Ok(HelpdeskSettings {
        operators,
        supervisors,
        login_history_days: raw.login_history_days,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use crate::config::tests::{err, load};

    #[test]
    fn roles_are_validated_codici_fiscali() {
        let cfg = load(
            "[helpdesk]\noperators = [\" bncgli85m52f205h \"]\nsupervisors = [\"VRDLCU72T10L219N\"]\n",
            &[],
        )
        .unwrap();
        let h = &cfg.helpdesk;
        assert!(h.enabled());
        assert_eq!(
            h.role_of("BNCGLI85M52F205H"),
            Some(crate::helpdesk::Role::Operator)
        );
        assert_eq!(
            h.role_of("VRDLCU72T10L219N"),
            Some(crate::helpdesk::Role::Supervisor)
        );
        assert_eq!(h.login_history_days, 90);
        let e = err("[helpdesk]\noperators = [\"RSSMRA80A01H501X\"]\n", &[]);
        assert!(e.contains("helpdesk.operators[0]"), "{e}");
        let e = err(
            "[helpdesk]\noperators = [\"VRDLCU72T10L219N\"]\nsupervisors = [\"VRDLCU72T10L219N\"]\n",
            &[],
        );
        assert!(e.contains("also a supervisor"), "{e}");
        let e = err(
            "[helpdesk]\nsupervisors = [\"VRDLCU72T10L219N\", \"vrdlcu72t10l219n\"]\n",
            &[],
        );
        assert!(
            e.contains("helpdesk.supervisors[1]") && e.contains("twice"),
            "{e}"
        );
        let e = err("[helpdesk]\nlogin_history_days = 0\n", &[]);
        assert!(e.contains("helpdesk.login_history_days"), "{e}");
        let e = err("[helpdesk]\noperator = []\n", &[]);
        assert!(e.contains("operator"), "{e}");
    }

    #[test]
    fn absent_is_off() {
        let off = super::validate(None).unwrap();
        assert!(!off.enabled());
        assert_eq!(off.login_history_days, 90);
        assert_eq!(off.role_of("BNCGLI85M52F205H"), None);
    }
}
