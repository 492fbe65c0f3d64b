//! `[mail]`: the mail module's own [`MailConfig`] (already typed as written), or the
//! outbox under `data_dir` when absent; production must send over SMTP.

use super::checks::invalid;
use super::{ConfigError, Context};
use crate::mail::{MailConfig, MailFrom, MailTransport, OutboxConfig};

/// Checks `[mail]` and fills in the default outbox.
pub(super) fn validate(
    raw: Option<MailConfig>,
    ctx: &Context<'_>,
) -> Result<MailConfig, ConfigError> {
    let mut mail = raw.unwrap_or_else(|| MailConfig {
        from: MailFrom::default(),
        transport: MailTransport::default(),
    });
    // A `[mail]` without a transport (or no `[mail]`): the outbox under `data_dir`, as
    // overridden by a later layer or `POLIS__DATA_DIR`.
    if let MailTransport::Outbox(o) = &mut mail.transport
        && o.dir.as_os_str().is_empty()
    {
        *o = OutboxConfig {
            dir: ctx.data_dir.join("outbox"),
        };
    }
    if ctx.prod && !matches!(mail.transport, MailTransport::Smtp(_)) {
        return Err(invalid(
            "mail.transport",
            "production sends e-mail over SMTP, not to the outbox",
        ));
    }
    Ok(mail)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::tests::load_edited;
    use crate::mail::MailTransport;

    #[test]
    fn without_a_mail_section_the_outbox_is_under_data_dir() {
        let cfg = load_edited(|demo| {
            let start = demo.find("[mail]").unwrap();
            let end = demo.find("[txlog]").unwrap();
            format!("{}{}", &demo[..start], &demo[end..])
                .replace("data_dir = \"data\"", "data_dir = \"/srv/polis\"")
        })
        .unwrap();
        assert_eq!(cfg.mail.from.address, "noreply@polis.invalid");
        assert!(matches!(
            cfg.mail.transport,
            MailTransport::Outbox(o) if o.dir == Path::new("/srv/polis/outbox")
        ));
    }

    #[test]
    fn a_mail_section_without_transport_follows_data_dir_too() {
        // The demo's [mail] has a sender but no transport; the browser check moves
        // data_dir to a temporary directory, and the outbox must follow it.
        let cfg = load_edited(|demo| demo.replace("data_dir = \"data\"", "data_dir = \"/tmp/x\""))
            .unwrap();
        assert!(
            cfg.mail.from.address.contains("istanze"),
            "{:?}",
            cfg.mail.from
        );
        assert!(matches!(
            cfg.mail.transport,
            MailTransport::Outbox(o) if o.dir == Path::new("/tmp/x/outbox")
        ));
    }
}
