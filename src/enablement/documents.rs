//! What the service writes for the person: the temporary-CP e-mail and the printable
//! modulo di adesione filled from the account. (The seeds' modulo di delega, which
//! appointed someone to take the signed form to a school for the recognition, has no
//! place in a path where SPID, CIE or eIDAS already identified the person.)

use chrono::{DateTime, Utc};

use crate::accounts::Account;
use crate::accounts::places::birth_place_label;
use crate::mail::{Attachment, OutgoingMail};
use crate::pdf::{self, FormData};

use super::{EnablementError, EnablementService, Modulo, reference_code};

/// The scheme the person is logging in with: the identity used last (the one that
/// started this step), SPID for an account without identities.
fn current_scheme(account: &Account) -> crate::identity::Scheme {
    account
        .identities
        .iter()
        .max_by_key(|i| i.last_login_at.unwrap_or(i.linked_at))
        .map_or(crate::identity::Scheme::Spid, |i| i.scheme)
}

/// `dd/mm/yyyy` for the forms.
fn italian_date(d: chrono::NaiveDate) -> String {
    d.format("%d/%m/%Y").to_string()
}

impl EnablementService {
    /// The temporary-CP message, with the modulo di adesione attached.
    pub(super) fn temp_cp_mail(
        &self,
        account: &Account,
        email: &str,
        temp: &str,
        now: DateTime<Utc>,
    ) -> Result<OutgoingMail, EnablementError> {
        let expires = account
            .temp_cp
            .as_ref()
            .map(|t| crate::clock::italian_date_time(t.expires_at))
            .unwrap_or_default();
        let text_body = format!(
            "Gentile {given} {family},\n\n\
             ecco il Codice Personale temporaneo per Istanze OnLine.\n\n\
             Codice Personale temporaneo: {temp}\n\n\
             Il codice vale fino al {expires}. Al prossimo accesso con {scheme} su\n\
             {url} ti sarà chiesto di sostituirlo con un Codice Personale scelto da te.\n\n\
             Utente: {username}\n\
             Codice di riferimento: {reference}\n\n\
             In allegato il modulo di adesione: conservalo.\n\
             Non è necessario recarsi presso una scuola: l'identità è già stata verificata\n\
             con {scheme}.\n\n\
             Se non hai chiesto tu questo codice, ignora questo messaggio e accedi al\n\
             servizio per modificare il tuo Codice Personale.\n\n\
             Istanze OnLine – Ministero dell'Istruzione e del Merito\n\
             (messaggio automatico, non rispondere)\n",
            given = account.given_name,
            family = account.family_name,
            url = self.settings.public_url,
            username = account.username,
            reference = reference_code(account),
            scheme = current_scheme(account).label(),
        );
        let adesione = modulo_pdf(account, Modulo::Adesione, now)?;
        Ok(OutgoingMail {
            to: vec![email.to_owned()],
            subject: "Istanze OnLine – Codice Personale temporaneo".to_owned(),
            text_body,
            html_body: None,
            attachments: vec![Attachment {
                filename: "modulo-adesione.pdf".to_owned(),
                content_type: "application/pdf".to_owned(),
                bytes: adesione,
            }],
        })
    }
}

/// One of the printable forms for an account, dated `now`.
pub(super) fn modulo_pdf(
    account: &Account,
    which: Modulo,
    now: DateTime<Utc>,
) -> Result<Vec<u8>, EnablementError> {
    let data = form_data(account, now);
    Ok(match which {
        Modulo::Adesione => pdf::modulo_adesione(&data)?,
    })
}

fn form_data(account: &Account, now: DateTime<Utc>) -> FormData {
    let domicile = account.domicile.as_ref().map(|d| {
        let province = if d.province.is_empty() {
            String::new()
        } else {
            format!(" ({})", d.province)
        };
        format!(
            "{}, {} {}{}, {}",
            d.street, d.postal_code, d.municipality, province, d.nation
        )
    });
    let phone = match (&account.phones.mobile, &account.phones.landline) {
        (Some(m), Some(l)) => Some(format!("{m} / {l}")),
        (Some(p), None) | (None, Some(p)) => Some(p.clone()),
        (None, None) => None,
    };
    let id_document = account.id_document.as_ref().map(|d| {
        format!(
            "{} n. {}, rilasciato da {} il {}, scadenza {}",
            d.kind,
            d.number,
            d.issuer,
            italian_date(d.issued_on),
            italian_date(d.expires_on)
        )
    });
    FormData {
        given_name: account.given_name.clone(),
        family_name: account.family_name.clone(),
        fiscal_code: account.fiscal_code_str().unwrap_or_default().to_owned(),
        eidas_identifier: account.eidas_identifier().map(str::to_owned),
        birth_date: account.birth_date.map(italian_date),
        birth_place: account.birth_place.as_deref().map(birth_place_label),
        email: account.email.clone(),
        domicile,
        phone,
        id_document,
        reference_code: reference_code(account),
        date: italian_date(crate::clock::rome(now).date_naive()),
        created_at: now,
        username: Some(account.username.clone()),
        scheme: current_scheme(account).label().to_owned(),
        terms_version: account.terms.as_ref().map(|t| t.version.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::{FiscalCode, NewAccount};

    #[test]
    fn the_modulo_names_the_place_of_birth_and_the_account_keeps_the_code() {
        let now = Utc::now();
        let cf = FiscalCode::parse("BNCGLI85M52F205H").unwrap();
        let mut new = NewAccount::new(cf, "Giulia", "Bianchi");
        new.birth_place = Some("F205".to_owned());
        let account = new.into_account(uuid::Uuid::nil(), "giulia.bianchi".to_owned(), now);
        let data = form_data(&account, now);
        assert_eq!(data.birth_place.as_deref(), Some("Milano (MI)"));
        assert_eq!(account.birth_place.as_deref(), Some("F205"));

        let mut eidas = account.clone();
        eidas.birth_place = Some("Madrid, Spagna".to_owned());
        let data = form_data(&eidas, now);
        assert_eq!(data.birth_place.as_deref(), Some("Madrid, Spagna"));
    }
}
