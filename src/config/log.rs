//! `[log]`: how the gateway writes its application log (stderr): human-readable text
//! (the default) or one JSON object per line for log collectors. The filter stays
//! `POLIS_LOG` (a tracing filter).

use serde::Deserialize;

/// The application log's line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// `2026-12-03T07:40:00Z  INFO target: message key=value` (ANSI colours on a TTY).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`, the spans.
    Json,
}

/// `[log]` as written.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    #[serde(default)]
    format: LogFormat,
}

/// `[log]`, validated: the format.
pub(super) fn validate(raw: RawLog) -> LogFormat {
    raw.format
}

#[cfg(test)]
mod tests {
    use super::super::tests::{err, load};
    use super::LogFormat;

    #[test]
    fn the_format_is_text_or_json() {
        assert_eq!(load("", &[]).unwrap().log_format, LogFormat::Text);
        let cfg = load("[log]\nformat = \"json\"\n", &[]).unwrap();
        assert_eq!(cfg.log_format, LogFormat::Json);
        assert!(err("[log]\nformat = \"xml\"\n", &[]).contains("format"));
    }
}
