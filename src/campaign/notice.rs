//! The notice e-mail and the reason recorded with a campaign's revocation.

use chrono::NaiveDate;

use super::rule::{Rule, Window};
use crate::accounts::Dormant;
use crate::clock::italian_date;
use crate::mail::{MailError, OutgoingMail};

/// The notice to `account` that its enablement will be revoked on `revoke_on`.
pub(super) fn mail(
    account: &Dormant,
    revoke_on: NaiveDate,
    public_url: &str,
) -> Result<OutgoingMail, MailError> {
    let email = account
        .email
        .as_deref()
        .ok_or_else(|| MailError::InvalidAddress("the account has no e-mail address".into()))?;
    let last = italian_date(crate::clock::rome_today(account.last_active));
    let revoke_on = italian_date(revoke_on);
    let text_body = format!(
        "Gentile {given} {family},\n\n\
         non accedi a Istanze OnLine dal {last}. Le utenze non usate vengono revocate \
         periodicamente: l'abilitazione della tua utenza {username} sarà revocata il \
         {revoke_on} se prima di quel giorno non accedi.\n\n\
         Per mantenerla basta accedere una volta, con SPID, CIE o eIDAS, da {public_url}\n\n\
         Se l'abilitazione verrà revocata potrai ripeterla subito al primo accesso, senza \
         recarti in una scuola: i tuoi dati restano.\n\n\
         Questo messaggio è inviato automaticamente: non rispondere. Non ti chiederemo mai \
         per e-mail il tuo codice personale.\n\n\
         Ministero dell'Istruzione e del Merito – Istanze OnLine\n",
        given = account.given_name,
        family = account.family_name,
        username = account.username,
    );
    Ok(OutgoingMail {
        to: vec![email.to_owned()],
        subject: format!("Istanze OnLine – la tua abilitazione sarà revocata il {revoke_on}"),
        text_body,
        html_body: None,
        attachments: Vec::new(),
    })
}

/// The reason the person reads at the next login.
pub(super) fn revocation_reason(rule: &Rule, last_day: NaiveDate) -> String {
    let last = italian_date(last_day);
    match &rule.window {
        Window::Months(n) => format!(
            "nessun accesso a Istanze OnLine dal {last}: le utenze non usate per {n} mesi vengono revocate, come annunciato per e-mail."
        ),
        Window::Since { since, .. } => format!(
            "nessun accesso a Istanze OnLine dal {} (campagna di revoca delle utenze non usate dal {}), come annunciato per e-mail.",
            last,
            italian_date(*since)
        ),
    }
}
