//! Days to expiry of the certificates logins depend on: each trusted IdP's signing
//! certificates (from its current metadata), and the ones the operator configures (our
//! SP certificates, the registry's signing certificate). Reported as a metric at every
//! scrape and logged daily once 30, 7 or 1 days are left.

use chrono::{DateTime, Utc};
use openssl::asn1::Asn1Time;
use openssl::x509::X509;

use super::Federation;

/// One certificate and when it stops being valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertExpiry {
    /// What it is for: `idp`, `sp`, `cie_sp`, `registry`.
    pub kind: &'static str,
    /// Whose: the IdP's entityID, our entityID, the registry URL.
    pub name: String,
    /// `notAfter`.
    pub not_after: DateTime<Utc>,
}

impl CertExpiry {
    /// Whole days left at `now` (negative once expired).
    pub fn days_left(&self, now: DateTime<Utc>) -> i64 {
        (self.not_after - now).num_days()
    }
}

/// The thresholds at which an expiry is logged: 30 days (warning), 7 and 1 (error).
pub const WARN_DAYS: [i64; 3] = [30, 7, 1];

/// The `notAfter` of a certificate.
pub fn not_after(cert: &X509) -> Option<DateTime<Utc>> {
    let epoch = Asn1Time::from_unix(0).ok()?;
    let diff = epoch.diff(cert.not_after()).ok()?;
    DateTime::from_timestamp(i64::from(diff.days) * 86_400 + i64::from(diff.secs), 0)
}

/// The `notAfter` of a DER certificate.
pub fn not_after_der(der: &[u8]) -> Option<DateTime<Utc>> {
    X509::from_der(der).ok().as_ref().and_then(not_after)
}

/// The certificates of PEM files `(kind, name, path)`; a file that cannot be read or
/// parsed is left out (loading it at start fails on its own).
pub fn from_pem_files(files: &[(&'static str, String, &std::path::Path)]) -> Vec<CertExpiry> {
    files
        .iter()
        .filter_map(|(kind, name, path)| {
            let pem = std::fs::read(path).ok()?;
            let cert = X509::from_pem(&pem).ok()?;
            Some(CertExpiry {
                kind,
                name: name.clone(),
                not_after: not_after(&cert)?,
            })
        })
        .collect()
}

/// Every signing certificate of every IdP trusted now.
pub fn idp_certificates(federation: &Federation) -> Vec<CertExpiry> {
    federation
        .list()
        .iter()
        .flat_map(|idp| {
            idp.descriptor.signing_certs.iter().filter_map(|c| {
                Some(CertExpiry {
                    kind: "idp",
                    name: idp.descriptor.entity_id.clone(),
                    not_after: not_after_der(c.der())?,
                })
            })
        })
        .collect()
}

/// Logs each certificate with at most 30 days left: a warning at 30, an error at 7 and
/// at 1 day or past expiry.
pub fn log_expiries(certs: &[CertExpiry], now: DateTime<Utc>) {
    for c in certs {
        let days = c.days_left(now);
        let at = c.not_after.format("%Y-%m-%d");
        if days < 0 {
            tracing::error!(target: "certificates", kind = c.kind, name = %c.name, "certificate expired on {at}");
        } else if days <= WARN_DAYS[1] {
            tracing::error!(target: "certificates", kind = c.kind, name = %c.name, days, "certificate expires in {days} days ({at})");
        } else if days <= WARN_DAYS[0] {
            tracing::warn!(target: "certificates", kind = c.kind, name = %c.name, days, "certificate expires in {days} days ({at})");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn days_left_come_from_not_after() {
        let g = crate::keygen::generate_idp_test_cert("expiry", 10).unwrap();
        let cert = X509::from_pem(&g.cert_pem).unwrap();
        let at = not_after(&cert).unwrap();
        let c = CertExpiry {
            kind: "idp",
            name: "https://idp.example".into(),
            not_after: at,
        };
        let now = Utc::now();
        assert!((9..=10).contains(&c.days_left(now)), "{}", c.days_left(now));
        assert_eq!(c.days_left(at + chrono::Duration::days(2)), -2);
        assert_eq!(not_after_der(&cert.to_der().unwrap()), Some(at));
        assert_eq!(not_after_der(b"not a certificate"), None);
    }
}
