//! xs:dateTime handling. SAML times are UTC; we accept RFC 3339 with `T`, an
//! optional fraction and a zone (`Z` or an offset), and refuse anything else
//! (dates without time, spaces, missing zone: SPID cases 13, 38, 65, 77, 81).

use chrono::{DateTime, SecondsFormat, Utc};

use super::error::SamlError;

/// Parses a SAML instant, naming `field` on failure.
pub fn parse_instant(field: &'static str, value: &str) -> Result<DateTime<Utc>, SamlError> {
    if value.is_empty() {
        return Err(SamlError::Missing(field));
    }
    if !value.contains('T') {
        return Err(SamlError::invalid(field, "not an xs:dateTime"));
    }
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| SamlError::invalid(field, "not an xs:dateTime"))
}

/// Formats an instant as SPID examples do: `2017-03-05T18:03:10.531Z`.
pub fn format_instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_fractions_and_zones() {
        for ok in [
            "2024-01-02T03:04:05Z",
            "2024-01-02T03:04:05.123Z",
            "2024-01-02T03:04:05.123456Z",
            "2024-01-02T04:04:05+01:00",
        ] {
            assert!(parse_instant("t", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_non_datetimes() {
        for bad in [
            "2018-09-04",
            "2018-09-06 16:00",
            "2018.09.18",
            "10-09-2018",
            "2018/09/10",
            "2024-01-02T03:04:05",
        ] {
            assert!(parse_instant("t", bad).is_err(), "{bad}");
        }
        assert_eq!(parse_instant("t", ""), Err(SamlError::Missing("t")));
    }

    #[test]
    fn formats_with_millis() {
        let t = parse_instant("t", "2017-03-05T18:03:10.531Z").unwrap();
        assert_eq!(format_instant(t), "2017-03-05T18:03:10.531Z");
    }
}
